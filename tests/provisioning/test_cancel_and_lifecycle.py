"""Cancel, dry runs that change nothing, deletes racing jobs, and step rows that name what they touch."""

import pytest
from rest_framework.test import APIClient

from inventory.models import Host
from provisioning import executor, services
from provisioning.models import DeploymentStep
from provisioning.runners import DryRunRunner, Event
from slices import services as slice_services
from slices.errors import Conflict, NotFound
from slices.models import VM, Slice

from .test_api import linked


def test_cancel_a_queued_job_at_once_and_the_slice_stays_repairable(api, inventory, user, make_slice):
    s = linked(make_slice, user)
    dep = api.post(f"/api/slices/{s.pk}/deploy/", {}, format="json").json()
    r = api.post(f"/api/deployments/{dep['id']}/cancel/")
    assert r.status_code == 202 and r.json()["status"] == "cancelled" and r.json()["cancel_requested"] is True
    assert "before it started" in r.json()["error"]
    s.refresh_from_db()
    assert s.status == "failed"  # deploy, redeploy or destroy repair it
    assert api.post(f"/api/deployments/{dep['id']}/cancel/").status_code == 409  # already ended
    assert executor.execute(deployment_id=dep["id"]).status == "cancelled"  # the job finds it so, does nothing
    assert not DeploymentStep.objects.filter(deployment_id=dep["id"]).exists()
    assert api.post(f"/api/slices/{s.pk}/deploy/", {}, format="json").status_code == 202


def test_only_the_owner_and_staff_cancel(inventory, user, other_user, make_slice):
    s = linked(make_slice, user)
    dep = services.deploy_request(slice_obj=s, user=user)
    stranger = APIClient()
    stranger.force_authenticate(other_user)
    assert stranger.post(f"/api/deployments/{dep.pk}/cancel/").status_code == 404
    assert APIClient().post(f"/api/deployments/{dep.pk}/cancel/").status_code in (401, 403)


class CancellingRunner(DryRunRunner):
    """A dry-run runner whose job is cancelled (as the heartbeat thread would) after N steps ended."""

    def __init__(self, after: int):
        super().__init__()
        self.after = after
        self.ended = 0

    def run_host(self, host, commands, emit):
        # Called by the executor's lane threads (one per host): no database here, only the flag
        # the heartbeat thread would set.
        def counting(event):
            emit(event)
            if event.kind == "ended":
                with self._lock:
                    self.ended += 1
                    if self.ended == self.after:
                        self.stop.set()

        super().run_host(host, commands, counting)


def test_a_running_job_stops_at_the_next_step_boundary(inventory, user, make_slice):
    s = linked(make_slice, user)
    dep = services.deploy_request(slice_obj=s, user=user)
    done = executor.execute(deployment_id=dep.pk, runner=CancellingRunner(after=3))
    assert done.status == "cancelled"
    steps = list(DeploymentStep.objects.filter(deployment=done).order_by("seq"))
    # hosts run in parallel: the error names the last step the job saw end, one that ran
    ran = [st for st in steps if st.status == "skipped"]
    assert any(done.error.startswith(f"Cancelled after step '{st.description}' on {st.host}.") for st in ran)
    assert {st.status for st in steps} <= {"skipped", "not_run"} and any(st.status == "not_run" for st in steps)
    s.refresh_from_db()
    assert s.status == "failed"
    assert set(VM.objects.filter(slice=s).values_list("status", flat=True)) == {"failed"}  # no QEMU started
    again = services.redeploy_request(slice_obj=s, user=user)
    assert executor.execute(deployment_id=again.pk, runner=DryRunRunner()).status == "succeeded"


def test_step_rows_name_the_vm_and_vlan_they_touch(inventory, user, make_slice):
    s = linked(make_slice, user)
    vm1 = VM.objects.get(slice=s, name="vm1")
    link = s.links.get()
    dep = services.deploy_request(slice_obj=s, user=user)
    executor.execute(deployment_id=dep.pk, runner=DryRunRunner())
    vm1.refresh_from_db()
    rows = DeploymentStep.objects.filter(deployment=dep)
    qemu = rows.get(description__startswith="Start QEMU for vm1")
    assert (qemu.vm, qemu.host) == (vm1.pk, vm1.host.name)
    dnsmasq = rows.get(description__startswith=f"Start dnsmasq for VLAN {link.vlan} ")
    assert dnsmasq.vlan == link.vlan and dnsmasq.vm is None
    assert {r.vm for r in rows.filter(description__startswith="Create TAP")} == set(
        VM.objects.filter(slice=s).values_list("pk", flat=True)
    )
    body = APIClient()
    body.force_authenticate(user)
    step = body.get(f"/api/deployments/{dep.pk}/?plan=false").json()["steps"][0]
    assert {"vm", "vlan", "host"} <= step.keys()


def test_a_dry_run_changes_no_state_nor_capacity(inventory, user, make_slice):
    s = linked(make_slice, user)
    Host.objects.filter(role="worker").update(vcpus=2)
    dep = services.deploy_request(slice_obj=s, user=user, dry_run=True)
    assert executor.execute(deployment_id=dep.pk).status == "succeeded"
    s.refresh_from_db()
    assert s.status == "draft"
    assert set(VM.objects.filter(slice=s).values_list("status", "host")) == {("designed", None)}
    other = linked(make_slice, user)  # 2 more vCPUs: fits only if the dry run took none
    real = services.deploy_request(slice_obj=other, user=user)
    assert real.status == "queued"


def test_delete_racing_a_job(inventory, user, make_slice):
    s = linked(make_slice, user)
    dep = services.deploy_request(slice_obj=s, user=user, dry_run=True)  # a draft with a job in flight
    with pytest.raises(Conflict, match="has a job running"):
        slice_services.slice_delete(slice_obj=s)
    executor.execute(deployment_id=dep.pk)
    stale = Slice.objects.get(pk=s.pk)
    slice_services.slice_delete(slice_obj=s)
    with pytest.raises(NotFound):  # the deploy request that lost the race: 404, not a 500
        services.deploy_request(slice_obj=stale, user=user)
    assert executor.execute(deployment_id=dep.pk).status == "cancelled"  # a job whose record went: ends cleanly


def test_a_failed_host_event_is_not_a_cancel():
    assert Event("host", "w", ok=False, error="x").cancelled is False
