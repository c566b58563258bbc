"""History retention: many deploy/destroy cycles, then pruning bounds the rows and keeps what slices need."""

from datetime import timedelta

from django.utils import timezone

from provisioning import executor, retention, services, specs
from provisioning.models import Deployment, DeploymentStep
from provisioning.runners import DryRunRunner

from .test_api import linked

CYCLES = 12


def run(slice_obj, user, kind: str, *, dry_run: bool = False) -> Deployment:
    request = {
        "deploy": services.deploy_request,
        "redeploy": services.redeploy_request,
        "destroy": services.destroy_request,
    }[kind]
    dep = request(slice_obj=slice_obj, user=user, dry_run=dry_run)
    return executor.execute(deployment_id=dep.pk, runner=DryRunRunner())


def age_all(days: int) -> None:
    """Make every deployment so far ``days`` old (the clock cannot wait a month)."""
    for dep in Deployment.objects.all():
        Deployment.objects.filter(pk=dep.pk).update(created=dep.created - timedelta(days=days))


def test_pruning_after_many_cycles_bounds_rows_and_keeps_the_latest(inventory, user, make_slice, settings):
    settings.PROVISIONING_HISTORY_DAYS, settings.PROVISIONING_HISTORY_KEEP = 30, 4
    cycled = linked(make_slice, user)
    for _ in range(CYCLES):
        assert run(cycled, user, "deploy").status == "succeeded"
        assert run(cycled, user, "destroy").status == "succeeded"
    assert run(cycled, user, "deploy").status == "succeeded"  # left deployed
    once = linked(make_slice, user)  # one old deployment only: it is its latest
    assert run(once, user, "deploy").status == "succeeded"
    age_all(40)
    recent = run(cycled, user, "redeploy")  # new: younger than the age limit

    total = Deployment.objects.filter(slice=cycled).count()
    assert total == 2 * CYCLES + 2
    steps_before = DeploymentStep.objects.count()
    footprint = specs.deployed_footprint(slice_id=cycled.pk)

    result = retention.prune_history()  # what the scheduled job (jobs.prune_history) runs, with the settings
    assert result.deployments == total - 4

    kept = list(Deployment.objects.filter(slice=cycled).order_by("-created", "-id"))
    assert len(kept) == 4 and kept[0].pk == recent.pk  # the latest 4 of the slice
    assert Deployment.objects.filter(slice=once).count() == 1  # a slice's latest is never pruned
    assert DeploymentStep.objects.count() < steps_before / 4
    assert not DeploymentStep.objects.exclude(deployment__in=Deployment.objects.all()).exists()
    assert specs.deployed_footprint(slice_id=cycled.pk) == footprint  # what destroy will tear down
    assert retention.prune_history().deployments == 0  # a second round finds nothing


def test_pruning_keeps_every_job_the_footprint_depends_on(inventory, user, make_slice, settings):
    s = linked(make_slice, user)
    assert run(s, user, "deploy").status == "succeeded"
    failed = []
    for _ in range(5):  # redeploys that fail: the footprint is the deploy's spec merged with theirs
        dep = services.redeploy_request(slice_obj=s, user=user)
        Deployment.objects.filter(pk=dep.pk).update(status="running")
        dep.refresh_from_db()
        dep.mark_failed("host unreachable")
        s.refresh_from_db()
        s.mark_failed()
        failed.append(dep.pk)
    for _ in range(3):
        run(s, user, "redeploy", dry_run=True)
    age_all(40)
    footprint = specs.deployed_footprint(slice_id=s.pk)
    pruned = retention.prune_history(keep=1, days=30)
    assert pruned.deployments == 2  # dry runs only (not the latest): the failed jobs still count on the hosts
    assert specs.deployed_footprint(slice_id=s.pk) == footprint
    assert set(failed) <= set(Deployment.objects.values_list("pk", flat=True))


def test_running_and_young_jobs_are_never_pruned(inventory, user, make_slice):
    s = linked(make_slice, user)
    for _ in range(3):
        run(s, user, "deploy")
        run(s, user, "destroy")
    age_all(40)
    queued = services.deploy_request(slice_obj=s, user=user)
    Deployment.objects.filter(pk=queued.pk).update(created=timezone.now() - timedelta(days=90))
    pruned = retention.prune_history(keep=1, days=30)
    assert Deployment.objects.filter(pk=queued.pk).exists()
    assert pruned.deployments == 5  # all but the last destroy (the footprint's reset) and the queued job
