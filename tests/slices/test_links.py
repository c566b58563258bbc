"""Link rules and VLAN allocation, through the API as a user meets them."""

import pytest

from slices import services
from slices.models import Interface, Link, Slice, SliceVlan

from .helpers import vms_of


def _link(api, slice_obj, a, b, ia=None, ib=None):
    payload = {"slice": slice_obj.pk, "vm_a": a.pk, "vm_b": b.pk}
    if ia is not None:
        payload["iface_a"] = ia
    if ib is not None:
        payload["iface_b"] = ib
    return api.post("/api/links/", payload, format="json")


def test_link_records_vlan_subnet_and_addresses(api, designed):
    vms = designed["vms"]
    r = _link(api, designed["slice"], vms["vm3"], vms["vm4"], "eth2", "eth1")
    assert r.status_code == 201, r.json()
    body = r.json()
    assert body["vlan"] == 101  # vm1-vm2 took 100
    assert body["subnet"] == "10.64.101.0/24" and body["gateway"] == "10.64.101.1"
    assert {body["a"]["interface"], body["b"]["interface"]} == {"eth2", "eth1"}
    ends = Interface.objects.filter(vm__in=[vms["vm3"], vms["vm4"]], vlan=101)
    assert {(i.vm.name, i.name) for i in ends} == {("vm3", "eth2"), ("vm4", "eth1")}
    assert {i.ip_address for i in ends} == {"10.64.101.10", "10.64.101.11"}


def test_first_free_interfaces_when_omitted(api, designed):
    vms = designed["vms"]
    r = _link(api, designed["slice"], vms["vm1"], vms["vm3"])
    assert r.status_code == 201, r.json()
    assert (r.json()["a"]["interface"], r.json()["b"]["interface"]) == ("eth2", "eth1")  # vm1.eth1 is taken


@pytest.mark.parametrize(
    ("case", "code", "words"),
    [
        ("eth0_a", "management_interface", "eth0 is the management interface"),
        ("eth0_b", "management_interface", "eth0 is the management interface"),
        ("same_vm", "same_vm", "two distinct VMs"),
        ("interface_linked", "interface_linked", "vm1.eth1 already carries a link"),
        ("duplicate", "duplicate_link", "already linked"),
        ("duplicate_reversed", "duplicate_link", "already linked"),
        ("no_such_interface", "no_such_interface", "has no eth3"),
        ("not_an_interface", "invalid", "is not an interface name"),
        ("no_free_interface", "no_free_interface", "no free data interface"),
    ],
)
def test_link_rules_each_refused_with_a_400_naming_the_problem(api, designed, case, code, words):
    vms, s = designed["vms"], designed["slice"]
    if case == "no_free_interface":  # vm2 has eth1 (linked) and eth2: take eth2 first
        assert _link(api, s, vms["vm2"], vms["vm4"], "eth2", "eth2").status_code == 201
    args = {
        "eth0_a": (vms["vm3"], vms["vm4"], "eth0", "eth1"),
        "eth0_b": (vms["vm3"], vms["vm4"], "eth1", "eth0"),
        "same_vm": (vms["vm3"], vms["vm3"], "eth1", "eth2"),
        "interface_linked": (vms["vm1"], vms["vm3"], "eth1", "eth1"),
        "duplicate": (vms["vm1"], vms["vm2"], "eth2", "eth2"),
        "duplicate_reversed": (vms["vm2"], vms["vm1"], None, None),
        "no_such_interface": (vms["vm3"], vms["vm4"], "eth3", "eth1"),
        "not_an_interface": (vms["vm3"], vms["vm4"], "ens3", "eth1"),
        "no_free_interface": (vms["vm2"], vms["vm3"], None, None),
    }[case]
    before = set(Link.objects.values_list("pk", flat=True))
    r = _link(api, s, *args)
    assert r.status_code == 400, r.json()
    assert r.json()["code"] == code
    assert words in r.json()["detail"]
    assert set(Link.objects.values_list("pk", flat=True)) == before


def test_cross_slice_link_refused(api, user, designed, make_slice):
    other = make_slice(user, name="other", vms=1)
    vm_other = vms_of(other)["vm1"]
    r = _link(api, designed["slice"], designed["vms"]["vm3"], vm_other)
    assert r.status_code == 400
    assert r.json()["code"] == "cross_slice"
    assert "not in slice 'lab'" in r.json()["detail"]
    # and the service itself refuses it too (admin, jobs)
    from slices.errors import InvalidRequest

    with pytest.raises(InvalidRequest, match="same slice"):
        services.link_connect(slice_obj=designed["slice"], vm_a=designed["vms"]["vm3"], vm_b=vm_other)


def test_another_users_slice_or_vm_is_refused(other_api, other_user, designed, make_slice):
    vms = designed["vms"]
    r = _link(other_api, designed["slice"], vms["vm3"], vms["vm4"])
    assert r.status_code == 400
    assert "No such slice" in str(r.json()["errors"]["slice"])
    # linking into one's own slice with someone else's VM never reveals that VM's name
    mine = make_slice(other_user, name="mine", vms=1)
    r = _link(other_api, mine, vms_of(mine)["vm1"], vms["vm3"])
    assert r.status_code == 400
    assert r.json() == {"detail": "vm_b: No such VM.", "code": "does_not_exist", "errors": {"vm_b": ["No such VM."]}}


def test_lowering_data_interfaces_below_a_linked_interface_is_refused(api, designed):
    vms = designed["vms"]
    assert _link(api, designed["slice"], vms["vm3"], vms["vm4"], "eth2", "eth2").status_code == 201
    r = api.patch(f"/api/vms/{vms['vm3'].pk}/", {"data_interfaces_count": 1}, format="json")
    assert r.status_code == 400
    assert r.json()["code"] == "interface_linked"
    assert "eth2 carries a link" in r.json()["detail"]
    assert list(r.json()["errors"]) == ["data_interfaces_count"]
    assert vms["vm3"].interfaces.count() == 3
    # lowering to a count that keeps the linked interface works and drops only the free ones
    r = api.patch(f"/api/vms/{vms['vm1'].pk}/", {"data_interfaces_count": 1}, format="json")
    assert r.status_code == 200, r.json()
    assert [i["name"] for i in r.json()["interfaces"]] == ["eth0", "eth1"]
    r = api.patch(f"/api/vms/{vms['vm1'].pk}/", {"data_interfaces_count": 4}, format="json")
    assert [i["name"] for i in r.json()["interfaces"]] == ["eth0", "eth1", "eth2", "eth3", "eth4"]


def test_internet_toggle_moves_eth0_on_and_off_vlan_400(api, designed):
    vm = designed["vms"]["vm3"]
    r = api.patch(f"/api/vms/{vm.pk}/", {"internet_enabled": True}, format="json")
    eth0 = r.json()["interfaces"][0]
    assert (eth0["name"], eth0["vlan"], eth0["subnet"], eth0["gateway"]) == ("eth0", 400, "10.60.7.0/24", "10.60.7.1")
    r = api.patch(f"/api/vms/{vm.pk}/", {"internet_enabled": False}, format="json")
    assert r.json()["interfaces"][0]["vlan"] is None


def test_deleting_a_link_returns_its_vlan(api, designed):
    link = designed["link"]
    assert api.delete(f"/api/links/{link.pk}/").status_code == 204
    assert not Interface.objects.exclude(vlan=None).exists()
    vms = designed["vms"]
    r = _link(api, designed["slice"], vms["vm3"], vms["vm4"])
    assert r.json()["vlan"] == 100  # reused


def test_deleting_a_vm_clears_the_peer(api, designed):
    vm2 = designed["vms"]["vm2"]
    assert api.delete(f"/api/vms/{designed['vms']['vm1'].pk}/").status_code == 204
    assert not Link.objects.exists()
    assert not vm2.interfaces.exclude(vlan=None).exists()
    assert not vm2.interfaces.exclude(ip_address=None).exists()
    assert not SliceVlan.objects.exists()  # a draft slice gives back the VLANs no link uses


def test_busy_slice_refuses_design_changes_with_409(api, designed):
    Slice.objects.filter(pk=designed["slice"].pk).update(status=Slice.Status.DEPLOYING)
    vms = designed["vms"]
    r = _link(api, designed["slice"], vms["vm3"], vms["vm4"])
    assert r.status_code == 409 and r.json()["code"] == "slice_busy"
    # moving a node on the canvas is still fine
    assert api.patch(f"/api/vms/{vms['vm3'].pk}/", {"x": 10, "y": 20}, format="json").status_code == 200


# --- VLAN pools ----------------------------------------------------------------------------


def _chain(user, make_slice, n, name=None):
    s = make_slice(user, name=name, vms=n, data=2)
    vms = [vms_of(s)[f"vm{i}"] for i in range(1, n + 1)]
    return s, vms


def test_pool_exhaustion_is_a_409(api, user, make_slice, vlan_range):
    vlan_range(100, 103)  # 4 VLANs
    s, vms = _chain(user, make_slice, 6)
    for i in range(4):
        assert _link(api, s, vms[i], vms[i + 1]).status_code == 201
    r = _link(api, s, vms[4], vms[5])
    assert r.status_code == 409
    assert r.json()["code"] == "vlan_pool_exhausted"
    assert "No free VLAN left: the global range 100-103 is exhausted" in r.json()["detail"]
    assert sorted(Link.objects.values_list("vlan", flat=True)) == [100, 101, 102, 103]


def test_pool_exhaustion_across_slices(api, user, make_slice, vlan_range):
    vlan_range(100, 103)
    s1, a = _chain(user, make_slice, 3, "one")
    s2, b = _chain(user, make_slice, 5, "two")
    assert _link(api, s1, a[0], a[1]).json()["vlan"] == 100  # s1 holds 100 only
    assert _link(api, s2, b[0], b[1]).json()["vlan"] == 101  # no VLAN is stranded in s1's pool
    assert _link(api, s2, b[1], b[2]).json()["vlan"] == 102
    assert _link(api, s1, a[1], a[2]).json()["vlan"] == 103
    assert _link(api, s2, b[2], b[3]).status_code == 409  # the whole range is on links


def test_vlan_400_is_never_given_to_a_link(api, user, make_slice, vlan_range):
    vlan_range(396, 404)  # 400 sits inside the range
    s, vms = _chain(user, make_slice, 10)
    got = []
    for i in range(9):
        r = _link(api, s, vms[i], vms[i + 1])
        if r.status_code == 409:
            break
        assert r.status_code == 201, r.json()
        got.append(r.json()["vlan"])
    assert got == [396, 397, 398, 399, 401, 402, 403, 404]
    assert 400 not in Link.objects.values_list("vlan", flat=True)


def test_vlan_400_is_skipped_at_the_edge_of_the_range(api, user, make_slice, vlan_range):
    vlan_range(399, 401)
    s, vms = _chain(user, make_slice, 4)
    assert [_link(api, s, vms[i], vms[i + 1]).status_code for i in range(3)] == [201, 201, 409]
    assert sorted(Link.objects.values_list("vlan", flat=True)) == [399, 401]
    assert sorted(SliceVlan.objects.values_list("vlan", flat=True)) == [399, 401]


def test_the_slice_pool_lists_the_vlans_it_holds(api, user, make_slice, vlan_range):
    vlan_range(100, 199)
    s, vms = _chain(user, make_slice, 7)
    other, o = _chain(user, make_slice, 2, "other")
    for i in range(3):
        assert _link(api, s, vms[i], vms[i + 1]).status_code == 201
    assert _link(api, other, o[0], o[1]).json()["vlan"] == 103
    for i in range(3, 5):
        assert _link(api, s, vms[i], vms[i + 1]).status_code == 201
    assert list(SliceVlan.objects.filter(slice=s).values_list("vlan", flat=True)) == [100, 101, 102, 104, 105]
    detail = api.get(f"/api/slices/{s.pk}/").json()
    assert detail["vlan_pool"] == ["100-102", "104-105"]


def test_a_deployed_slice_keeps_the_vlan_of_a_deleted_link(api, user, make_slice, vlan_range):
    # The VLAN may still be configured on the hosts until the slice is redeployed or destroyed.
    vlan_range(100, 101)
    s, vms = _chain(user, make_slice, 3)
    other, o = _chain(user, make_slice, 3, "other")
    link = _link(api, s, vms[0], vms[1]).json()
    Slice.objects.filter(pk=s.pk).update(status=Slice.Status.ACTIVE)
    assert api.delete(f"/api/links/{link['id']}/").status_code == 204
    assert _link(api, other, o[0], o[1]).json()["vlan"] == 101
    assert _link(api, other, o[1], o[2]).status_code == 409  # 100 is still s's
    assert _link(api, s, vms[1], vms[2]).json()["vlan"] == 100  # and s reuses it


def test_database_refuses_a_shared_vlan_or_vlan_400(designed):
    from django.db import IntegrityError, transaction

    link = designed["link"]
    vm3, vm4 = designed["vms"]["vm3"], designed["vms"]["vm4"]
    a, b = sorted([vm3.interfaces.get(index=1), vm4.interfaces.get(index=1)], key=lambda i: i.pk)
    for vlan in (link.vlan, 400, 0, 4095):
        with pytest.raises(IntegrityError), transaction.atomic():
            Link.objects.create(slice=designed["slice"], a=a, b=b, vlan=vlan, subnet="x")
    with pytest.raises(IntegrityError), transaction.atomic():  # a is always the lower id
        Link.objects.create(slice=designed["slice"], a=b, b=a, vlan=200, subnet="x")
    for vlan in (link.vlan, 400, 0, 4095):  # a VLAN held twice, the internet VLAN, outside 802.1Q
        with pytest.raises(IntegrityError), transaction.atomic():
            SliceVlan.objects.create(slice=designed["slice"], vlan=vlan)
    with pytest.raises(IntegrityError), transaction.atomic():  # VLAN 400 on a data interface
        Interface.objects.filter(pk=a.pk).update(vlan=400)


def test_a_link_made_through_the_api_records_its_vlan_and_addresses_on_both_ends(api, user, flavor, image):
    s = api.post("/api/slices/", {"name": "lab1"}, format="json")
    assert s.status_code == 201, s.data
    sid = s.data["id"]
    vm_ids = []
    for name in ("vm1", "vm2"):
        r = api.post("/api/vms/", {"slice": sid, "name": name, "data_interfaces_count": 2}, format="json")
        assert r.status_code == 201, r.data
        assert [i["name"] for i in r.data["interfaces"]] == ["eth0", "eth1", "eth2"]
        vm_ids.append(r.data["id"])
    r = api.post("/api/links/", {"slice": sid, "vm_a": vm_ids[0], "vm_b": vm_ids[1]}, format="json")
    assert r.status_code == 201, r.data
    assert r.data["vlan"] == 100
    assert r.data["subnet"] == "10.64.100.0/24"
    assert r.data["gateway"] == "10.64.100.1"
    link = Link.objects.get()
    assert link.a.vlan == link.b.vlan == 100
    assert {link.a.ip_address, link.b.ip_address} == {"10.64.100.10", "10.64.100.11"}


def test_link_connect_is_three_statements_whatever_the_slice_holds(user, make_slice):
    """On PostgreSQL: the slice lock, one read of the VMs/interfaces/links, one claim-and-write (issue 15).

    Plus the audit log's one row (issue 17): who linked what, written in the same transaction.
    """
    from django.conf import settings
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from slices import ipam

    if connection.vendor != "postgresql":
        pytest.skip("the one-statement claim is PostgreSQL's")
    s = make_slice(user, vms=4, data=2)
    vms = vms_of(s)
    services.link_connect(slice_obj=s, vm_a=vms["vm1"], vm_b=vms["vm2"])
    with CaptureQueriesContext(connection) as queries:
        link = services.link_connect(slice_obj=s, vm_a=vms["vm3"], vm_b=vms["vm4"])
    statements = [q["sql"] for q in queries if "SAVEPOINT" not in q["sql"]]  # the test's own transaction
    audit = [sql for sql in statements if sql.startswith('INSERT INTO "audit_auditevent"')]
    assert len(audit) == 1, "one audit row per link"
    statements = [sql for sql in statements if sql not in audit]
    assert len(statements) == 3, [sql[:80] for sql in statements]
    link.refresh_from_db()
    net = ipam.vlan_network(link.vlan, settings.SLICE_LINK_SUPERNET)
    assert link.subnet == str(net.subnet)
    a, b = Interface.objects.get(pk=link.a_id), Interface.objects.get(pk=link.b_id)
    assert (a.vlan, a.ip_address, b.vlan, b.ip_address) == (
        link.vlan, str(net.endpoint_address(0)), link.vlan, str(net.endpoint_address(1))
    )  # fmt: skip
