"""First behaviour checks of the design core through the API."""

from slices.models import Link


def test_create_slice_vms_and_link_records_vlan_on_both_ends(api, user, flavor, image):
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
