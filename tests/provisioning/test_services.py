"""Specs from the database, the deployed footprint, the state machine, retries, abandoned jobs."""

import os
import socket
from datetime import timedelta

import pytest
from django.utils import timezone

from inventory.models import Host
from provisioning import lifecycle, queue, reaper, services, specs
from provisioning.models import Deployment, DeploymentStep
from provisioning.plans import SliceSpec
from slices import services as slice_services
from slices.errors import Conflict
from slices.models import VM, Interface, Slice


def linked_slice(make_slice, user, *, internet=False, name=None):
    s = make_slice(user, name=name, vms=2, internet=internet)
    vm1, vm2 = VM.objects.filter(slice=s).order_by("name")
    slice_services.link_connect(slice_obj=s, vm_a=vm1, vm_b=vm2)
    return s


# --- specs -------------------------------------------------------------------------------------------


def test_build_spec_from_the_design(inventory, user, make_slice):
    s = linked_slice(make_slice, user, internet=True)
    VM.objects.filter(slice=s).update(host=inventory["workers"][0])
    spec = specs.build_spec(slice_obj=s)
    assert spec.slice_name == s.name and spec.internet is True
    assert spec.netnode.name == "netnode" and spec.netnode.uplink == "ens3"
    assert [w.name for w in spec.workers] == ["worker1"] and spec.workers[0].accel == "tcg"
    vm1 = spec.vms[0]
    assert [n.index for n in vm1.nics] == [0, 1, 2]
    assert vm1.nics[0].vlan == 400 and vm1.nics[1].vlan == 100 and vm1.nics[2].vlan is None
    assert vm1.nics[1].tap == f"tap_{vm1.id}_eth1"
    (vlan,) = spec.vlans
    assert vlan.vlan == 100 and vlan.subnet == "10.64.100.0/24"
    assert sorted(ip for _, ip in vlan.reservations) == ["10.64.100.10", "10.64.100.11"]
    assert spec.keep_internet is False and spec.keep_isolation is False


def test_build_spec_needs_a_network_node_and_placement(inventory, user, make_slice):
    s = make_slice(user, vms=1)
    with pytest.raises(Conflict, match="has no worker"):
        specs.build_spec(slice_obj=s)
    Host.objects.filter(role=Host.Role.NETWORK).update(enabled=False)
    with pytest.raises(Conflict, match="no enabled network node"):
        specs.build_spec(slice_obj=s)


def test_keep_flags_follow_other_live_slices(inventory, user, other_user, make_slice):
    mine = make_slice(user, vms=1, internet=True)
    VM.objects.filter(slice=mine).update(host=inventory["workers"][0])
    theirs = make_slice(other_user, vms=1, internet=True)
    assert specs.build_spec(slice_obj=mine).keep_isolation is False  # theirs is a draft
    Slice.objects.filter(pk=theirs.pk).update(status="active")
    spec = specs.build_spec(slice_obj=mine)
    assert spec.keep_isolation is True and spec.keep_internet is True
    VM.objects.filter(slice=theirs).update(internet_enabled=False)
    Interface.objects.filter(vm__slice=theirs, index=0).update(vlan=None)
    assert specs.internet_users(slice_id=mine.pk) is None


def test_a_slice_being_destroyed_keeps_nothing_shared_for_itself(inventory, user, other_user, make_slice):
    """Two slices destroyed at once: neither keeps the shared things for the other (both would stay)."""
    mine = make_slice(user, vms=1, internet=True)
    theirs = make_slice(other_user, vms=1, internet=True)
    Slice.objects.filter(pk=theirs.pk).update(status="destroying")
    assert specs.netnode_users(slice_id=mine.pk) is None
    assert specs.internet_users(slice_id=mine.pk) is None
    Slice.objects.filter(pk=theirs.pk).update(status="failed")  # its destroy failed: it may hold VLANs
    assert specs.netnode_users(slice_id=mine.pk) == f"slice {theirs.pk} (failed)"
    assert specs.internet_users(slice_id=mine.pk) == f"slice {theirs.pk}"


def _dep(s, kind, status, spec=None):
    return Deployment.objects.create(slice=s, kind=kind, status=status, spec=spec.to_dict() if spec else {})


def test_footprint_from_past_jobs(inventory, user, make_slice):
    from .factories import spec as make_spec
    from .factories import vm

    s = make_slice(user, vms=0)
    v1 = make_spec([vm(1, vlans=(None,))])
    v2 = make_spec([vm(1, vlans=(None,)), vm(2, vlans=(None,))])
    assert specs.deployed_footprint(slice_id=s.pk) is None
    _dep(s, "deploy", "succeeded", v1)
    assert specs.deployed_footprint(slice_id=s.pk) == v1
    failed = _dep(s, "redeploy", "failed", v2)
    assert [v.id for v in specs.deployed_footprint(slice_id=s.pk).vms] == [1, 2]  # union
    assert specs.deployed_footprint(slice_id=s.pk, exclude_id=failed.pk) == v1
    _dep(s, "destroy", "failed")
    assert [v.id for v in specs.deployed_footprint(slice_id=s.pk).vms] == [1, 2]
    _dep(s, "destroy", "succeeded")
    assert specs.deployed_footprint(slice_id=s.pk) is None
    Deployment.objects.create(slice=s, kind="deploy", status="succeeded", dry_run=True, spec=v2.to_dict())
    assert specs.deployed_footprint(slice_id=s.pk) is None  # dry runs leave nothing


# --- requests and the state machine ---------------------------------------------------------------


def test_deploy_request_places_snapshots_and_queues_after_commit(
    inventory, user, make_slice, rq_queue, django_capture_on_commit_callbacks
):
    s = linked_slice(make_slice, user)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        dep = services.deploy_request(slice_obj=s, user=user)
        assert rq_queue.count == 0  # nothing is queued before the commit
    assert len(callbacks) == 1
    s.refresh_from_db()
    assert s.status == "queued" and dep.status == "queued" and dep.kind == "deploy"
    assert dep.requested_by == user and dep.job_id.startswith(f"deployment-{dep.pk}-")
    assert not VM.objects.filter(slice=s, host__isnull=True).exists()
    assert SliceSpec.from_dict(dep.spec).vms[0].host in ("worker1", "worker2")
    (job,) = [rq_queue.fetch_job(j) for j in rq_queue.get_job_ids()]
    assert job.id == dep.job_id and job.args == (dep.pk,) and job.timeout == 1800
    assert job.func_name == "provisioning.jobs.run_deployment"


def test_one_job_per_slice(inventory, user, make_slice, rq_queue, django_capture_on_commit_callbacks):
    s = linked_slice(make_slice, user)
    with django_capture_on_commit_callbacks(execute=True):
        services.deploy_request(slice_obj=s, user=user)
    with pytest.raises(Conflict, match="already has a job") as err:
        services.deploy_request(slice_obj=s, user=user)
    assert err.value.code == "slice_busy"
    with pytest.raises(Conflict):
        services.destroy_request(slice_obj=s, user=user)


def test_the_database_constraint_backs_the_check(inventory, user, make_slice):
    from django.db import IntegrityError, transaction

    s = make_slice(user, vms=1)
    Deployment.objects.create(slice=s, kind="deploy", status="running")
    with pytest.raises(IntegrityError), transaction.atomic():
        Deployment.objects.create(slice=s, kind="destroy", status="queued")


@pytest.mark.parametrize(
    "status,kind,ok",
    [
        ("draft", "deploy", True),
        ("draft", "redeploy", False),
        ("draft", "destroy", False),
        ("active", "deploy", True),
        ("active", "redeploy", True),
        ("active", "destroy", True),
        ("failed", "deploy", True),
        ("failed", "redeploy", True),
        ("failed", "destroy", True),
        ("queued", "deploy", False),
        ("deploying", "destroy", False),
        ("destroying", "deploy", False),
    ],
)
def test_allowed_transitions(inventory, user, make_slice, rq_queue, status, kind, ok):
    s = make_slice(user, vms=1)
    Slice.objects.filter(pk=s.pk).update(status=status)
    request = {"deploy": services.deploy_request, "redeploy": services.redeploy_request}.get(
        kind, services.destroy_request
    )
    if ok:
        assert request(slice_obj=s, user=user).status == "queued"
        s.refresh_from_db()
        assert s.status == "queued"
    else:
        with pytest.raises(Conflict):
            request(slice_obj=s, user=user)
        s.refresh_from_db()
        assert s.status == status


def test_dry_run_changes_no_state(inventory, user, make_slice, rq_queue):
    s = make_slice(user, vms=2)
    dep = services.deploy_request(slice_obj=s, user=user, dry_run=True)
    s.refresh_from_db()
    assert dep.dry_run and s.status == "draft"
    assert VM.objects.filter(slice=s, host__isnull=True).count() == 2


def test_empty_slice_and_no_capacity_are_refused(inventory, user, make_slice, rq_queue):
    from inventory.models import Flavor

    with pytest.raises(Conflict, match="no VM"):
        services.deploy_request(slice_obj=make_slice(user, vms=0), user=user)
    s = make_slice(user, vms=1)
    VM.objects.filter(slice=s).update(flavor=Flavor.objects.create(name="xxl", vcpus=64, ram_mib=1 << 20))
    with pytest.raises(Conflict, match="fits on no enabled worker"):
        services.deploy_request(slice_obj=s, user=user)
    s.refresh_from_db()
    assert s.status == "draft"


def test_transitions_of_a_job(inventory, user, make_slice, rq_queue):
    s = make_slice(user, vms=2)
    dep = services.deploy_request(slice_obj=s, user=user)
    assert dep.claim(worker="here:1")
    lifecycle.on_started(dep)
    s.refresh_from_db()
    assert s.status == "deploying" and set(VM.objects.filter(slice=s).values_list("status", flat=True)) == {"deploying"}
    lifecycle.on_succeeded(dep, spec=specs.spec_of(dep))
    s.refresh_from_db()
    assert s.status == "active" and set(VM.objects.filter(slice=s).values_list("status", flat=True)) == {"running"}
    destroy = services.destroy_request(slice_obj=s, user=user)
    destroy.claim(worker="here:1")
    lifecycle.on_started(destroy)
    s.refresh_from_db()
    assert s.status == "destroying"
    lifecycle.on_succeeded(destroy, spec=None)
    s.refresh_from_db()
    assert s.status == "draft" and set(VM.objects.filter(slice=s).values_list("status", flat=True)) == {"designed"}


def test_failure_keeps_started_vms_running(inventory, user, make_slice, rq_queue):
    s = make_slice(user, vms=2)
    dep = services.deploy_request(slice_obj=s, user=user)
    dep.claim(worker="here:1")
    lifecycle.on_started(dep)
    vm1 = VM.objects.get(slice=s, name="vm1")
    lifecycle.on_failed(dep, "worker2: step 'Start QEMU for vm2' failed", started_vms={vm1.pk})
    s.refresh_from_db()
    dep.refresh_from_db()
    assert s.status == "failed" and dep.status == "failed" and "worker2" in dep.error
    assert dict(VM.objects.filter(slice=s).values_list("name", "status")) == {"vm1": "running", "vm2": "failed"}


def test_retry_only_failed(inventory, user, make_slice, rq_queue):
    s = make_slice(user, vms=1)
    dep = services.deploy_request(slice_obj=s, user=user)
    dep.claim(worker="x:1")
    with pytest.raises(Conflict):
        services.retry_deployment(deployment=dep, user=user)
    lifecycle.on_failed(dep, "boom")
    again = services.retry_deployment(deployment=dep, user=user)
    assert again.pk != dep.pk and again.kind == "deploy" and again.status == "queued"


# --- abandoned jobs --------------------------------------------------------------------------------


def test_stale_heartbeat_is_abandoned(inventory, user, make_slice, rq_queue):
    s = make_slice(user, vms=1)
    dep = services.deploy_request(slice_obj=s, user=user)
    dep.claim(worker="elsewhere:4242")
    lifecycle.on_started(dep)
    DeploymentStep.objects.create(
        deployment=dep, seq=1, host="worker1", phase="vms", description="Start QEMU for vm1", command="x",
        status="running",
    )  # fmt: skip
    assert reaper.reap_abandoned(slice_id=s.pk) == []  # fresh heartbeat, job in Redis: alive
    Deployment.objects.filter(pk=dep.pk).update(heartbeat=timezone.now() - timedelta(minutes=5))
    (found,) = reaper.reap_abandoned(slice_id=s.pk)
    dep.refresh_from_db()
    s.refresh_from_db()
    assert dep.status == "failed" and s.status == "failed"
    assert "no sign of life" in dep.error and "Start QEMU for vm1" in dep.error and "worker1" in dep.error
    assert DeploymentStep.objects.get(deployment=dep).status == "failed"
    assert found.deployment_id == dep.pk


def test_dead_local_worker_process_is_abandoned_at_once(inventory, user, make_slice, rq_queue):
    import subprocess

    proc = subprocess.Popen(["true"])
    proc.wait()  # a pid that no longer exists
    s = make_slice(user, vms=1)
    dep = services.deploy_request(slice_obj=s, user=user)
    dep.claim(worker=f"{socket.gethostname()}:{proc.pid}")
    (found,) = reaper.reap_abandoned(slice_id=s.pk)
    assert f"{proc.pid}) is gone" in found.reason
    dep.claim(worker=f"{socket.gethostname()}:{os.getpid()}")  # (no-op: already failed)
    assert Deployment.objects.get(pk=dep.pk).status == "failed"


def test_queued_job_missing_from_redis_is_abandoned_after_a_grace(inventory, user, make_slice, rq_queue):
    s = make_slice(user, vms=1)
    dep = services.deploy_request(slice_obj=s, user=user)  # on_commit never runs here: no RQ job
    assert reaper.reap_abandoned(slice_id=s.pk) == []
    later = timezone.now() + timedelta(minutes=2)
    (found,) = reaper.reap_abandoned(slice_id=s.pk, now=later)
    assert "gone from the queue" in found.reason
    s.refresh_from_db()
    assert s.status == "failed"
    # a new request works at once
    assert services.deploy_request(slice_obj=s, user=user).status == "queued"
    assert Deployment.objects.get(pk=dep.pk).status == "failed"


def test_failed_rq_job_is_abandoned(inventory, user, make_slice, rq_queue, django_capture_on_commit_callbacks):
    s = make_slice(user, vms=1)
    with django_capture_on_commit_callbacks(execute=True):
        dep = services.deploy_request(slice_obj=s, user=user)
    dep.refresh_from_db()
    job = rq_queue.fetch_job(dep.job_id)
    job.set_status("failed")
    (found,) = reaper.reap_abandoned(slice_id=s.pk)
    assert "is failed" in found.reason


def test_enqueue_failure_fails_the_deployment(inventory, user, make_slice, monkeypatch):
    def broken():
        raise ConnectionError("redis down")

    monkeypatch.setattr(queue, "provisioning_queue", broken)
    s = make_slice(user, vms=1)
    dep = services.deploy_request(slice_obj=s, user=user)
    queue.enqueue(dep.pk)
    dep.refresh_from_db()
    s.refresh_from_db()
    assert dep.status == "failed" and "could not queue the job" in dep.error and s.status == "failed"


def test_reap_command(inventory, user, make_slice, rq_queue):
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("reap_deployments", stdout=out)
    assert "0 abandoned" in out.getvalue()
