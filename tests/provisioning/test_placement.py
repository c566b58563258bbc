"""Placement rules (pure) and placement of a slice's VMs (database), and its preview in the API."""

import pytest

from inventory.models import Flavor, Host
from provisioning.placement import Capacity, Demand, PlacementError, place, place_slice
from slices import services as slice_services
from slices.models import VM, Slice


def caps(*specs):
    return [Capacity(name, cpu, ram, ucpu, uram) for name, cpu, ram, ucpu, uram in specs]


def test_spreads_load_over_workers_deterministically():
    workers = caps(("w1", 4, 4096, 0, 0), ("w2", 4, 4096, 0, 0))
    demands = [Demand(i, f"vm{i}", 1, 512) for i in range(1, 7)]
    chosen, after = place(demands, workers)
    assert sorted(chosen.values()).count("w1") == 3 and sorted(chosen.values()).count("w2") == 3
    assert place(demands, list(reversed(workers)))[0] == chosen  # order of input does not matter
    assert {c.name: (c.used_vcpus, c.used_ram_mib) for c in after} == {"w1": (3, 1536), "w2": (3, 1536)}


def test_prefers_the_emptier_worker():
    workers = caps(("w1", 8, 8192, 6, 6000), ("w2", 8, 8192, 1, 1000))
    chosen, _ = place([Demand(1, "vm1", 1, 512)], workers)
    assert chosen == {1: "w2"}


def test_biggest_first_so_a_big_vm_still_fits():
    workers = caps(("w1", 4, 4096, 0, 0), ("w2", 4, 2048, 0, 0))
    demands = [Demand(1, "small1", 1, 1024), Demand(2, "small2", 1, 1024), Demand(3, "big", 2, 3072)]
    chosen, _ = place(demands, workers)
    assert chosen[3] == "w1"


def test_ties_go_to_the_first_worker_by_name():
    chosen, _ = place([Demand(1, "a", 1, 128)], caps(("w2", 4, 4096, 0, 0), ("w1", 4, 4096, 0, 0)))
    assert chosen == {1: "w1"}


def test_error_names_the_vm_and_every_workers_free_capacity():
    with pytest.raises(PlacementError) as err:
        place([Demand(1, "huge", 8, 65536)], caps(("w1", 4, 4096, 1, 1024), ("w2", 2, 2048, 0, 0)))
    message = err.value.message
    assert "'huge' (8 vCPU, 65536 MiB)" in message
    assert "w1 has 3 vCPU and 3072 MiB free" in message and "w2 has 2 vCPU and 2048 MiB free" in message
    assert err.value.status_code == 409


def test_error_reports_what_was_free_before_this_slice_and_what_it_needs():
    # w2 has 1 vCPU free; the slice's first VM takes it, the second fits nowhere: the error must not say "0 free".
    workers = caps(("w1", 4, 4096, 4, 0), ("w2", 4, 4096, 3, 0))
    with pytest.raises(PlacementError) as err:
        place([Demand(1, "a", 1, 128), Demand(2, "b", 1, 128)], workers)
    message = err.value.message
    assert "Free before this slice: w1 has 0 vCPU and 4096 MiB free; w2 has 1 vCPU and 4096 MiB free." in message
    assert "This slice needs 2 vCPU and 256 MiB in all." in message


def test_slice_placement_error_counts_its_pinned_vms_as_needs_not_as_used(inventory, user, make_slice):
    mine = make_slice(user, vms=2)
    Host.objects.filter(pk=inventory["workers"][0].pk).update(enabled=False)
    quad = Flavor.objects.create(name="quad", vcpus=4, ram_mib=1024)
    VM.objects.filter(slice=mine, name="vm1").update(host=inventory["workers"][1], flavor=quad)
    with pytest.raises(PlacementError) as err:
        place_slice(slice_obj=mine, save=False)
    message = err.value.message
    assert "'vm2' (1 vCPU, 128 MiB)" in message
    assert "Free before this slice: worker2 has 4 vCPU and 4096 MiB free." in message
    assert "This slice needs 5 vCPU and 1152 MiB in all." in message


def test_no_worker_at_all():
    with pytest.raises(PlacementError, match="there is no enabled worker"):
        place([Demand(1, "vm1", 1, 128)], [])


def test_ram_and_vcpus_both_count():
    with pytest.raises(PlacementError):
        place([Demand(1, "cpu-heavy", 5, 128)], caps(("w1", 4, 65536, 0, 0)))


# --- database --------------------------------------------------------------------------------------


@pytest.fixture
def medium(db):
    return Flavor.objects.get(name="medium")  # 2 vCPU, 2048 MiB (default flavors migration)


def test_place_slice_counts_other_deployed_slices_and_saves_only_when_asked(
    inventory, user, other_user, make_slice, medium
):
    busy = make_slice(other_user, vms=2)
    VM.objects.filter(slice=busy).update(host=inventory["workers"][0], flavor=medium)
    Slice.objects.filter(pk=busy.pk).update(status=Slice.Status.ACTIVE)
    mine = make_slice(user, vms=2)
    preview = place_slice(slice_obj=mine, save=False)
    assert {h.name for h in preview.hosts.values()} == {"worker2"}  # worker1 is half full
    assert VM.objects.filter(slice=mine, host__isnull=True).count() == 2  # nothing saved
    saved = place_slice(slice_obj=mine, save=True)
    assert saved.hosts == preview.hosts
    assert set(VM.objects.filter(slice=mine).values_list("host__name", flat=True)) == {"worker2"}


def test_draft_slices_do_not_use_capacity(inventory, user, other_user, make_slice, medium):
    draft = make_slice(other_user, vms=2)
    VM.objects.filter(slice=draft).update(host=inventory["workers"][0], flavor=medium)
    mine = make_slice(user, vms=2)
    hosts = place_slice(slice_obj=mine, save=False).hosts
    assert sorted(h.name for h in hosts.values()) == ["worker1", "worker2"]


def test_pinned_vm_is_kept_and_counted(inventory, user, make_slice):
    mine = make_slice(user, vms=3)
    vm1 = VM.objects.get(slice=mine, name="vm1")
    slice_services.vm_update(vm=vm1, host=inventory["workers"][1])
    result = place_slice(slice_obj=mine, save=False)
    assert result.hosts[vm1.pk].name == "worker2" and vm1.pk not in result.new
    assert sorted(h.name for h in result.hosts.values()) == ["worker1", "worker1", "worker2"]


def test_pinned_to_a_disabled_worker_is_refused(inventory, user, make_slice):
    mine = make_slice(user, vms=1)
    VM.objects.filter(slice=mine).update(host=inventory["workers"][0], pinned=True)
    Host.objects.filter(pk=inventory["workers"][0].pk).update(enabled=False)
    with pytest.raises(PlacementError, match=r"'vm1' is pinned to 'worker1' .*not an enabled worker"):
        place_slice(slice_obj=mine, save=False)


def test_placement_api_shows_the_choice_before_deploy(api, inventory, user, make_slice):
    mine = make_slice(user, vms=3)
    response = api.get(f"/api/slices/{mine.pk}/placement/")
    assert response.status_code == 200, response.data
    body = response.json()
    assert body["fits"] is True and body["error"] is None
    assert [v["name"] for v in body["vms"]] == ["vm1", "vm2", "vm3"]
    assert all(v["proposed"] for v in body["vms"])
    assert {w["name"]: w["used_vcpus"] for w in body["workers"]} == {"worker1": 2, "worker2": 1}
    assert VM.objects.filter(slice=mine, host__isnull=True).count() == 3


def test_placement_api_reports_what_does_not_fit(api, inventory, user, make_slice):
    mine = make_slice(user, vms=1)
    VM.objects.filter(slice=mine).update(flavor=Flavor.objects.create(name="xl", vcpus=64, ram_mib=1 << 20))
    body = api.get(f"/api/slices/{mine.pk}/placement/").json()
    assert body["fits"] is False and "fits on no enabled worker" in body["error"]


def test_placement_api_hides_other_users_slices(api, inventory, other_user, make_slice):
    theirs = make_slice(other_user, vms=1)
    assert api.get(f"/api/slices/{theirs.pk}/placement/").status_code == 404
