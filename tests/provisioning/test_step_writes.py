"""Progress writes (issue 15): a job's SQL statements grow with its stages, not with its steps.

A 128-VM dry-run job used to make two single-row UPDATEs per step (4,542 of them);
the step book now writes the events of a burst in one statement, each row with
its own revision, still in order.
"""

from contextlib import nullcontext

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from inventory.models import Host
from provisioning import executor, services
from provisioning.models import Deployment, DeploymentStep
from slices import services as slice_services


@pytest.fixture
def big_hosts(db):
    Host.objects.create(name="netnode", role=Host.Role.NETWORK, management_address="192.0.2.3", state_dir="/var/lib/sp")
    for i in (1, 2):
        Host.objects.create(
            name=f"worker{i}",
            role=Host.Role.WORKER,
            management_address=f"192.0.2.{10 + i}",
            vcpus=256,
            ram_mib=1 << 20,
            accel=Host.Accel.TCG,
            state_dir="/var/lib/sp",
        )


def _dry_run_job(user, count: int) -> tuple[Deployment, int, list[str]]:
    s = slice_services.slice_from_template(owner=user, name=f"ring{count}", topology="ring", count=count)
    dep = services.deploy_request(slice_obj=s, user=user, dry_run=True)
    with CaptureQueriesContext(connection) as ctx:
        executor.execute(deployment_id=dep.pk, lock_factory=lambda _name: nullcontext())
    dep.refresh_from_db()
    assert dep.status == Deployment.Status.SUCCEEDED, dep.error
    return dep, len(ctx.captured_queries), [q["sql"] for q in ctx.captured_queries]


def test_a_dry_run_jobs_statements_grow_with_stages_not_steps(big_hosts, user, settings, flavor, image):
    settings.SLICE_QUOTA_VMS, settings.SLICE_QUOTA_VCPUS, settings.SLICE_QUOTA_RAM_MIB = 200, 400, 1 << 20
    small, small_queries, _ = _dry_run_job(user, 16)
    big, big_queries, sql = _dry_run_job(user, 64)
    small_steps = DeploymentStep.objects.filter(deployment=small).count()
    big_steps = DeploymentStep.objects.filter(deployment=big).count()
    assert big_steps - small_steps > 500  # four times the VMs: hundreds more steps
    # The same stages: a few statements more at most (a burst may split), never one per step.
    print(f"job statements: {small_steps} steps {small_queries}, {big_steps} steps {big_queries}")
    assert big_queries - small_queries <= 20, (small_queries, big_queries)
    assert big_queries < big_steps / 4, (big_queries, big_steps)
    # every row ended, each with its own revision, none left behind
    revisions = list(DeploymentStep.objects.filter(deployment=big).values_list("revision", flat=True))
    assert DeploymentStep.objects.filter(deployment=big).exclude(status="skipped").count() == 0
    assert len(set(revisions)) == len(revisions)  # every ended row its own revision
    assert sum(1 for q in sql if q.startswith("UPDATE")) < 100
