"""Host maintenance: drained workers take no new VMs, automatic placements are forgotten on destroy, pins stay."""

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from inventory.models import Host
from provisioning import executor, services
from provisioning.placement import PlacementError, place_slice
from provisioning.runners import DryRunRunner
from slices import services as slice_services
from slices.errors import InvalidRequest
from slices.models import VM

from .test_api import linked


def deploy(slice_obj, user, kind="deploy"):
    """Request and run a job with the dry-run runner (the hosts are never contacted)."""
    request = {"deploy": services.deploy_request, "redeploy": services.redeploy_request}.get(kind)
    dep = (
        request(slice_obj=slice_obj, user=user) if request else services.destroy_request(slice_obj=slice_obj, user=user)
    )
    done = executor.execute(deployment_id=dep.pk, runner=DryRunRunner())
    assert done.status == "succeeded", done.error
    return done


def hosts_of(slice_obj) -> dict[str, str | None]:
    return {
        vm.name: vm.host.name if vm.host else None for vm in VM.objects.filter(slice=slice_obj).select_related("host")
    }


def drain(name: str, drained: bool = True) -> str:
    out = io.StringIO()
    call_command("hosts", "drain" if drained else "undrain", name, stdout=out)
    return out.getvalue()


def test_a_drained_worker_takes_no_new_vm_and_its_running_slices_stay(inventory, user, make_slice):
    running = linked(make_slice, user)
    deploy(running, user)
    assert set(hosts_of(running).values()) == {"worker1", "worker2"}  # spread over both

    out = drain("worker2")
    assert "worker2 drained" in out
    running_vm_on_2 = next(name for name, host in hosts_of(running).items() if host == "worker2")
    assert f"{running.name}/{running_vm_on_2} (alice, running)" in out  # what still runs there

    new = linked(make_slice, user)
    deploy(new, user)
    assert set(hosts_of(new).values()) == {"worker1"}

    # A redeploy of the running slice keeps its VM on the drained worker (running slices keep running).
    before = hosts_of(running)
    deploy(running, user, "redeploy")
    assert hosts_of(running) == before

    assert "takes new VMs again" in drain("worker2", drained=False)
    third = linked(make_slice, user)
    deploy(third, user)
    assert "worker2" in set(hosts_of(third).values())


def test_destroy_forgets_automatic_placements_and_keeps_pins(inventory, user, make_slice):
    s = linked(make_slice, user)
    vm1 = VM.objects.get(slice=s, name="vm1")
    slice_services.vm_update(vm=vm1, host=inventory["workers"][0])
    deploy(s, user)
    assert hosts_of(s) == {"vm1": "worker1", "vm2": "worker2"}
    deploy(s, user, "destroy")
    assert hosts_of(s) == {"vm1": "worker1", "vm2": None}
    assert VM.objects.get(pk=vm1.pk).pinned is True


def test_a_slice_auto_placed_on_a_disabled_worker_redeploys_elsewhere(inventory, user, make_slice):
    s = linked(make_slice, user)
    deploy(s, user)
    deploy(s, user, "destroy")
    Host.objects.filter(name="worker2").update(enabled=False)
    deploy(s, user)
    assert set(hosts_of(s).values()) == {"worker1"}


def test_a_stale_placement_from_before_the_pin_field_is_placed_again(inventory, user, make_slice):
    s = make_slice(user, vms=1)
    VM.objects.filter(slice=s).update(host=inventory["workers"][1], pinned=False)  # left by an old destroy
    drain("worker2")
    assert {h.name for h in place_slice(slice_obj=s, save=False).hosts.values()} == {"worker1"}


def test_a_pin_on_a_disabled_or_drained_worker_is_refused_naming_the_pin(inventory, user, make_slice):
    s = make_slice(user, vms=1)
    vm = VM.objects.get(slice=s)
    slice_services.vm_update(vm=vm, host=inventory["workers"][1])
    drain("worker2")
    with pytest.raises(PlacementError, match=r"'vm1' is pinned to 'worker2' .*drained for maintenance") as exc:
        services.deploy_request(slice_obj=s, user=user)
    assert exc.value.code == "host_drained"
    Host.objects.filter(name="worker2").update(enabled=False)
    with pytest.raises(PlacementError, match=r"'vm1' is pinned to 'worker2' .*not an enabled worker"):
        services.deploy_request(slice_obj=s, user=user)
    # Clearing the pin lets placement choose.
    slice_services.vm_update(vm=vm, host=None)
    assert VM.objects.get(pk=vm.pk).pinned is False
    deploy(s, user)
    assert hosts_of(s) == {"vm1": "worker1"}


def test_a_new_pin_on_a_drained_worker_is_refused(api, inventory, user, make_slice):
    s = make_slice(user, vms=1)
    drain("worker1")
    r = api.post("/api/vms/", {"slice": s.pk, "name": "pinme", "host": inventory["workers"][0].pk}, format="json")
    assert r.status_code == 400 and "drained for maintenance" in str(r.data)
    r = api.post("/api/vms/", {"slice": s.pk, "name": "pinme", "host": inventory["workers"][1].pk}, format="json")
    assert r.status_code == 201 and VM.objects.get(pk=r.data["id"]).pinned


def test_hosts_command_names_an_unknown_host(inventory):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match=r"No host named 'nope' .*worker1"):
        drain("nope")


def test_the_hosts_admin_drains_and_lists_what_runs_there(client, inventory, user, make_slice):
    s = linked(make_slice, user)
    deploy(s, user)
    get_user_model().objects.create_superuser("op", "op@example.org", "pw")
    client.login(username="op", password="pw")
    worker2 = Host.objects.get(name="worker2")
    r = client.post("/admin/inventory/host/", {"action": "drain", "_selected_action": [worker2.pk]}, follow=True)
    assert r.status_code == 200 and "Worker2 drained. 1 VM(s) still run on worker2" in r.content.decode()
    assert Host.objects.get(name="worker2").drained
    page = client.get(f"/admin/inventory/host/{worker2.pk}/change/").content.decode()
    on2 = next(name for name, host in hosts_of(s).items() if host == "worker2")
    assert f"{s.name}/{on2} (alice, running)" in page
    assert (
        "Nothing runs here." in client.get(f"/admin/inventory/host/{inventory['netnode'].pk}/change/").content.decode()
    )


def test_pin_invalid_host_kind_is_still_refused(inventory, user, make_slice):
    s = make_slice(user, vms=1)
    with pytest.raises(InvalidRequest, match="not an enabled worker"):
        slice_services.vm_update(vm=VM.objects.get(slice=s), host=inventory["netnode"])
