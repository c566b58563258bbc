"""Reads of the provisioning domain: deployments, and previews of plans and placement (no host I/O)."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Max, OuterRef, Prefetch, QuerySet, Subquery
from django.db.models.functions import Coalesce

from inventory.models import Host
from slices.models import VM, Slice

from . import placement, plans, specs
from .models import Deployment, DeploymentStep
from .runners import DryRunRunner

PLAN_KINDS = ("deploy", "redeploy", "destroy")


def deployment_list(*, user: AbstractBaseUser) -> QuerySet[Deployment]:
    """Deployments of the user's slices (staff: all)."""
    qs = Deployment.objects.select_related("slice", "requested_by")
    return qs if user.is_staff else qs.filter(slice__owner=user)


def deployment_detail_queryset(
    *, user: AbstractBaseUser, steps_after: int = 0, with_plan: bool = True
) -> QuerySet[Deployment]:
    """Deployments with their steps (only those of revision > ``steps_after``) and ``steps_revision``.

    ``steps_revision`` is read in the main query, before the steps: every row up to it
    is already committed (see ``stepbook.StepBook``), so a poller that asks next for
    ``steps_after=steps_revision`` misses nothing (it may see a row twice).
    """
    latest = (
        DeploymentStep.objects.filter(deployment=OuterRef("pk"))
        .order_by()
        .values("deployment")
        .annotate(m=Max("revision"))
        .values("m")
    )
    steps = DeploymentStep.objects.filter(revision__gt=steps_after) if steps_after else DeploymentStep.objects.all()
    qs = deployment_list(user=user).annotate(steps_revision=Coalesce(Subquery(latest), 0))
    qs = qs.prefetch_related(Prefetch("steps", queryset=steps))
    return qs if with_plan else qs.defer("plan")


def default_plan_kind(slice_obj) -> str:
    return "deploy" if slice_obj.status == Slice.Status.DRAFT else "redeploy"


def plan_preview(*, slice_obj, kind: str | None = None) -> dict:
    """The exact commands a deploy/redeploy/destroy of the slice would send now, per stage and host.

    Built like the job builds it (placement computed but not saved, the deployed
    footprint diffed against the design) and rendered by the dry-run runner,
    whose counters give the SSH connections, round trips and ovs-vsctl calls.
    """
    kind = kind or default_plan_kind(slice_obj)
    footprint = specs.deployed_footprint(slice_id=slice_obj.pk)
    target = None
    if kind != "destroy":
        where = placement.place_slice(slice_obj=slice_obj, save=False)
        target = specs.build_spec(slice_obj=slice_obj, hosts=where.hosts)
    plan, _ = specs.plan_for(slice_id=slice_obj.pk, kind=kind, target=target, footprint=footprint)
    runner = DryRunRunner()
    stages = []
    for stage in plan.stages:
        scripts = {h: [c for p in stage.phases_of(h) for c in p.commands] for h in stage.hosts()}
        for _event in runner.run_stage(scripts):
            pass
        by_host = {r["host"]: r for r in runner.records if r["stage"] == len(stages) + 1}
        stages.append(
            {
                "name": stage.name,
                "hosts": [
                    {
                        "host": host,
                        "phases": [p.name for p in stage.phases_of(host)],
                        "script": by_host[host]["script"],
                        "steps": by_host[host]["steps"],
                    }
                    for host in stage.hosts()
                ],
            }
        )
    stats = {h: s.to_dict() for h, s in runner.stats.items()}
    for host, trips in plans.round_trips(plan).items():  # the job sends each host's lane, not a script per stage
        stats[host]["round_trips"] = trips
    pending = []
    if target is not None:
        due = Host.objects.filter(
            name__in=[w.name for w in target.workers], accel=Host.Accel.AUTO, accel_detected=""
        ).values_list("name", flat=True)
        pending = sorted(due)
    return {
        "slice": slice_obj.pk,
        "kind": kind,
        "steps": plan.step_count(),
        "stages": stages,
        "stats": stats,
        "accel_probe_pending": pending,
        "notes": (
            [f"KVM is probed on {', '.join(pending)} when the job runs; the QEMU commands show TCG until then."]
            if pending
            else []
        ),
    }


def placement_preview(*, slice_obj) -> dict:
    """Where each VM would run if the slice were deployed now (nothing is saved)."""
    vms = list(VM.objects.filter(slice=slice_obj).select_related("flavor", "host").order_by("name", "id"))
    try:
        result = placement.place_slice(slice_obj=slice_obj, save=False)
    except placement.PlacementError as exc:
        return {"slice": slice_obj.pk, "fits": False, "error": exc.message, "vms": [], "workers": []}
    return {
        "slice": slice_obj.pk,
        "fits": True,
        "error": None,
        "vms": [
            {
                "id": vm.pk,
                "name": vm.name,
                "vcpus": vm.flavor.vcpus,
                "ram_mib": vm.flavor.ram_mib,
                "host": result.hosts[vm.pk].name,
                "proposed": vm.pk in result.new,
            }
            for vm in vms
        ],
        "workers": [
            {
                "name": w.name,
                "vcpus": w.vcpus,
                "ram_mib": w.ram_mib,
                "used_vcpus": w.used_vcpus,
                "used_ram_mib": w.used_ram_mib,
            }
            for w in result.workers
        ],
    }
