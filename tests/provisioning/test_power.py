"""Power actions as jobs: requests (409s, access), step rows, the VM's status from the host's probe,
cancel and retry, the API (dry-run runner; real QEMU in tests/lab/test_power.py)."""

import pytest
from rest_framework.test import APIClient

from provisioning import executor, services
from provisioning.models import Deployment, DeploymentStep
from provisioning.plans import power
from provisioning.runners import DryRunRunner, Event
from slices import services as slice_services
from slices.errors import Conflict, InvalidRequest
from slices.models import VM

from .test_api import linked


class HostRunner(DryRunRunner):
    """A dry-run runner whose status probes answer like a host: ``states`` maps VM id -> state."""

    def __init__(self, states=None, *, fail: str = "") -> None:
        super().__init__()
        self.states = states or {}
        self.fail = fail  # a step whose description starts with this fails

    def _run_host(self, host, commands, emit) -> None:
        for i, cmd in enumerate(commands):
            emit(Event("began", host, i))
            if self.fail and cmd.description.startswith(self.fail):
                emit(Event("ended", host, i, status="failed", exit_code=1, output="boom"))
                emit(Event("host", host, ok=False))
                return
            if cmd.argv[:4] == ("sh", "-c", power.SH_POWER_STATUS, "sp-power-status"):
                ids = cmd.argv[4::3]
                out = "".join(f"power vm={v} state={self.states.get(int(v), 'running')}\n" for v in ids)
                emit(Event("ended", host, i, status="ok", exit_code=0, output=out))
            else:
                emit(Event("ended", host, i, status="skipped", output="dry run: not executed"))
        emit(Event("host", host, ok=True))


def no_lock(_name):
    from contextlib import nullcontext

    return nullcontext()


def run(dep, runner=None):
    return executor.execute(deployment_id=dep.pk, runner=runner or HostRunner(), lock_factory=no_lock)


@pytest.fixture
def deployed(inventory, user, make_slice):
    """A linked 2-VM slice, deployed (dry-run runner): active, VMs running, a footprint."""
    s = linked(make_slice, user)
    assert run(services.deploy_request(slice_obj=s, user=user)).status == "succeeded"
    s.refresh_from_db()
    assert s.status == "active"
    return s


def vms(s):
    return VM.objects.filter(slice=s).order_by("name")


def test_the_model_actions_are_the_plans_actions():
    assert tuple(Deployment.Action.values) == power.POWER_ACTIONS


@pytest.mark.parametrize(
    "action, state, first",
    [
        ("start", "running", "VM state directory"),
        ("shutdown", "stopped", "Shut down vm1 (ACPI power button"),
        ("reboot", "running", "Reboot vm1"),
        ("reset", "running", "Reset vm1 (hard reset"),
        ("force_off", "stopped", "Force off vm1"),
    ],
)
def test_every_action_is_a_job_with_step_rows_and_the_vm_status_from_the_host(deployed, user, action, state, first):
    vm1, vm2 = vms(deployed)
    dep = services.power_request(vm=vm1, action=action, user=user)
    assert (dep.kind, dep.action, dep.vm_id, dep.status) == ("power", action, vm1.pk, "queued")
    deployed.refresh_from_db()
    assert deployed.status == "active"  # a power job leaves the slice as it is
    done = run(dep, HostRunner({vm1.pk: state}))
    assert done.status == "succeeded", done.error
    rows = list(DeploymentStep.objects.filter(deployment=done).order_by("seq"))
    assert rows[0].description.startswith(first) and rows[0].phase == action
    assert rows[-1].phase == "status" and rows[-1].vm == vm1.pk and rows[-1].output_tail.startswith("power vm=")
    assert {r.host for r in rows} == {vm1.host.name}
    assert {r.vm for r in rows} <= {vm1.pk, None}
    vm1.refresh_from_db()
    vm2.refresh_from_db()
    assert (vm1.status, vm2.status) == (state, "running")
    deployed.refresh_from_db()
    assert deployed.status == "active"


def test_status_comes_from_the_host_not_from_the_request(deployed, user):
    vm1 = vms(deployed)[0]
    # A reboot whose probe finds the guest gone (it crashed on the way): stopped, not running.
    run(services.power_request(vm=vm1, action="reboot", user=user), HostRunner({vm1.pk: "stopped"}))
    vm1.refresh_from_db()
    assert vm1.status == "stopped"
    run(services.power_request(vm=vm1, action="start", user=user), HostRunner({vm1.pk: "guest-panicked"}))
    vm1.refresh_from_db()
    assert vm1.status == "failed"


def test_a_failed_action_keeps_the_slice_active_and_can_be_retried(deployed, user):
    vm1 = vms(deployed)[0]
    dep = services.power_request(vm=vm1, action="reset", user=user)
    done = run(dep, HostRunner(fail="Reset"))
    assert done.status == "failed" and "Reset vm1" in done.error
    assert DeploymentStep.objects.get(deployment=done, phase="status").status == "not_run"
    deployed.refresh_from_db()
    vm1.refresh_from_db()
    assert (deployed.status, vm1.status) == ("active", "running")  # the probe did not run: unchanged
    again = services.retry_deployment(deployment=done, user=user)
    assert (again.kind, again.action, again.vm_id) == ("power", "reset", vm1.pk)
    assert run(again).status == "succeeded"


def test_refusals(deployed, user, inventory, make_slice):
    vm1 = vms(deployed)[0]
    with pytest.raises(InvalidRequest, match="Unknown power action"):
        services.power_request(vm=vm1, action="hibernate", user=user)
    first = services.power_request(vm=vm1, action="reboot", user=user)
    for action in ("reboot", "start"):  # busy: one job per slice
        with pytest.raises(Conflict, match="already has a job running") as exc:
            services.power_request(vm=vm1, action=action, user=user)
        assert exc.value.code == "slice_busy"
    with pytest.raises(Conflict, match="already has a job running"):
        services.redeploy_request(slice_obj=deployed, user=user)
    run(first)
    # A VM added to the design after the deploy is not on the hosts.
    vm3 = slice_services.vm_create(slice_obj=deployed, name="vm3")
    with pytest.raises(Conflict, match="not on the hosts yet") as exc:
        services.power_request(vm=vm3, action="start", user=user)
    assert exc.value.code == "not_deployed"
    # A draft slice: nothing to act on.
    draft = linked(make_slice, user)
    with pytest.raises(Conflict, match="not deployed") as exc:
        services.power_request(vm=vms(draft)[0], action="start", user=user)
    assert exc.value.code == "bad_state"


def test_cancel_leaves_the_slice_active(deployed, user):
    vm1 = vms(deployed)[0]
    dep = services.power_request(vm=vm1, action="shutdown", user=user)
    services.cancel_request(deployment=dep, user=user)
    dep.refresh_from_db()
    deployed.refresh_from_db()
    assert (dep.status, deployed.status) == ("cancelled", "active")


def test_a_dry_run_changes_nothing(deployed, user):
    vm1 = vms(deployed)[0]
    dep = services.power_request(vm=vm1, action="force_off", user=user, dry_run=True)
    assert run(dep, HostRunner({vm1.pk: "stopped"})).status == "succeeded"
    vm1.refresh_from_db()
    assert vm1.status == "running"


def test_a_redeploy_after_force_off_starts_the_vm_again(deployed, user):
    vm1 = vms(deployed)[0]
    run(services.power_request(vm=vm1, action="force_off", user=user), HostRunner({vm1.pk: "stopped"}))
    vm1.refresh_from_db()
    assert vm1.status == "stopped"
    dep = services.redeploy_request(slice_obj=deployed, user=user)
    done = run(dep)
    assert done.status == "succeeded"
    # The redeploy's plan still holds vm1's QEMU start (its check, "pid alive", decides on the host).
    assert DeploymentStep.objects.filter(deployment=done, description__startswith="Start QEMU for vm1").exists()
    vm1.refresh_from_db()
    assert vm1.status == "running"
    # Power jobs do not change the footprint: the next power action still finds the VM.
    assert services.power_request(vm=vm1, action="start", user=user).status == "queued"


# --- API ------------------------------------------------------------------------------------------


def test_api_power_returns_202_with_the_job(api, deployed, user, django_capture_on_commit_callbacks):
    vm1 = vms(deployed)[0]
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        r = api.post(f"/api/vms/{vm1.pk}/power/", {"action": "shutdown"}, format="json")
    assert r.status_code == 202, r.data
    assert (r.data["kind"], r.data["action"], r.data["vm"], r.data["status"]) == ("power", "shutdown", vm1.pk, "queued")
    assert len(callbacks) == 1  # enqueued after commit
    assert api.post(f"/api/vms/{vm1.pk}/power/", {"action": "start"}, format="json").status_code == 409
    listed = api.get(f"/api/deployments/?slice={deployed.pk}").json()["results"]
    assert listed[0]["action"] == "shutdown" and listed[1]["action"] is None and listed[1]["vm"] is None


def test_api_power_validation_and_access(api, deployed, user, other_user, staff_user):
    vm1 = vms(deployed)[0]
    url = f"/api/vms/{vm1.pk}/power/"
    r = api.post(url, {"action": "hibernate"}, format="json")
    assert r.status_code == 400 and "action" in r.json()["errors"]
    assert api.post(url, {}, format="json").status_code == 400
    stranger = APIClient()
    stranger.force_authenticate(other_user)
    assert stranger.post(url, {"action": "start"}, format="json").status_code == 404
    assert APIClient().post(url, {"action": "start"}, format="json").status_code in (401, 403)
    assert api.post("/api/vms/999999/power/", {"action": "start"}, format="json").status_code == 404
    staff = APIClient()
    staff.force_authenticate(staff_user)
    r = staff.post(url, {"action": "reboot", "dry_run": True}, format="json")
    assert r.status_code == 202 and r.data["dry_run"] is True


def test_admin_power_actions_on_vms(client, deployed, staff_user):
    staff_user.is_superuser = True
    staff_user.save()
    client.force_login(staff_user)
    vm1, vm2 = vms(deployed)
    listing = client.get("/admin/slices/vm/")
    assert listing.status_code == 200 and b"power_force_off" in listing.content
    r = client.post("/admin/slices/vm/", {"action": "power_force_off", "_selected_action": [vm1.pk]}, follow=True)
    assert r.status_code == 200 and b"force off queued as deployment" in r.content
    job = Deployment.objects.get(slice=deployed, kind="power")
    assert (job.action, job.vm_id, job.requested_by_id) == ("force_off", vm1.pk, staff_user.pk)
    # The second VM of the same slice: busy (one job per slice), said as a warning, not a crash.
    r = client.post("/admin/slices/vm/", {"action": "power_start", "_selected_action": [vm2.pk]}, follow=True)
    assert r.status_code == 200 and b"already has a job running" in r.content
    assert client.get(f"/admin/provisioning/deployment/{job.pk}/change/").status_code == 200
