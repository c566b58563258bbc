"""Topology templates: the pure generator and the API that creates slices from them."""

import itertools

import pytest

from slices import topologies
from slices.models import VM, Link, Slice
from slices.naming import MAX_DATA_INTERFACES


def _degrees(topo):
    deg = [0] * len(topo.vm_names)
    for a, b in topo.links:
        deg[a] += 1
        deg[b] += 1
    return deg


@pytest.mark.parametrize(
    ("kind", "count", "links"),
    [("linear", 5, 4), ("ring", 5, 5), ("star", 5, 4), ("mesh", 5, 10), ("tree", 7, 6), ("mesh", 17, 136)],
)
def test_link_counts(kind, count, links):
    topo = topologies.build(kind, count)
    assert topo.vm_names == [f"vm{i}" for i in range(1, count + 1)]
    assert len(topo.links) == links
    assert len({frozenset(p) for p in topo.links}) == links  # no duplicate pair
    assert all(a != b for a, b in topo.links)


def test_shapes():
    assert topologies.build("linear", 4).links == [(0, 1), (1, 2), (2, 3)]
    assert topologies.build("ring", 3).links == [(0, 1), (1, 2), (2, 0)]
    assert topologies.build("star", 4).links == [(0, 1), (0, 2), (0, 3)]
    assert topologies.build("tree", 7).links == [(0, 1), (0, 2), (1, 3), (1, 4), (2, 5), (2, 6)]


@pytest.mark.parametrize("kind", list(topologies.KINDS))
def test_interfaces_positions_and_limits(kind):
    spec = topologies.KINDS[kind]
    for count in (spec.min_count, spec.max_count):
        topo = topologies.build(kind, count)
        assert topo.data_interfaces == _degrees(topo)
        assert max(topo.data_interfaces) <= MAX_DATA_INTERFACES
        # each link end uses an interface no other link uses, within the VM's count
        ends = [(e.vm_a, e.iface_a) for e in topo.ends] + [(e.vm_b, e.iface_b) for e in topo.ends]
        assert len(ends) == len(set(ends))
        assert all(1 <= i <= topo.data_interfaces[v] for v, i in ends)
        # positions: on the canvas (non-negative) and never two nodes on top of each other
        assert len(topo.positions) == count
        assert all(x >= 0 and y >= 0 for x, y in topo.positions)
        for (x1, y1), (x2, y2) in itertools.combinations(topo.positions, 2):
            assert (x1 - x2) ** 2 + (y1 - y2) ** 2 >= 60**2


@pytest.mark.parametrize(
    ("kind", "count", "field"),
    [
        ("hexagon", 4, "topology"),
        ("ring", 2, "count"),
        ("linear", 1, "count"),
        ("linear", 65, "count"),
        ("mesh", 18, "count"),
        ("star", 18, "count"),
        ("tree", 0, "count"),
        ("ring", True, "count"),
        ("ring", "4", "count"),
    ],
)
def test_bad_topology_or_count(kind, count, field):
    with pytest.raises(topologies.TopologyError) as info:
        topologies.build(kind, count)
    assert info.value.field == field


def test_templates_endpoint_lists_limits(api):
    r = api.get("/api/templates/")
    assert r.status_code == 200
    by_name = {t["name"]: t for t in r.json()}
    assert set(by_name) == {"linear", "ring", "star", "mesh", "tree"}
    assert by_name["ring"]["min_count"] == 3
    assert by_name["linear"]["max_count"] == 64
    assert by_name["mesh"]["max_count"] == MAX_DATA_INTERFACES + 1
    assert all(t["description"] for t in by_name.values())


@pytest.mark.parametrize(("kind", "count"), [("linear", 4), ("ring", 5), ("star", 6), ("mesh", 5), ("tree", 9)])
def test_from_template_builds_the_slice(api, user, flavor, image, kind, count):
    r = api.post(
        "/api/slices/from-template/",
        {"name": f"t-{kind}", "topology": kind, "count": count, "internet_enabled": True},
        format="json",
    )
    assert r.status_code == 201, r.json()
    body = r.json()
    topo = topologies.build(kind, count)
    assert len(body["vms"]) == count
    assert len(body["links"]) == len(topo.links)
    slice_obj = Slice.objects.get(pk=body["id"], owner=user)
    vms = {vm.name: vm for vm in VM.objects.filter(slice=slice_obj)}
    for name, needed, (x, y) in zip(topo.vm_names, topo.data_interfaces, topo.positions, strict=True):
        assert vms[name].data_interfaces_count == needed
        assert (vms[name].x, vms[name].y) == (x, y)
        assert vms[name].internet_enabled
        assert vms[name].interfaces.get(index=0).vlan == 400
    pairs = {frozenset((link.a.vm.name, link.b.vm.name)) for link in Link.objects.filter(slice=slice_obj)}
    assert pairs == {frozenset((topo.vm_names[a], topo.vm_names[b])) for a, b in topo.links}
    vlans = list(Link.objects.filter(slice=slice_obj).values_list("vlan", flat=True))
    assert len(set(vlans)) == len(vlans) and 400 not in vlans


def test_from_template_with_flavor(api, flavor, image):
    from inventory.models import Flavor

    small = Flavor.objects.get(name="small")
    r = api.post(
        "/api/slices/from-template/",
        {"name": "t1", "topology": "ring", "count": 3, "flavor": small.pk, "image": image.pk},
        format="json",
    )
    assert r.status_code == 201, r.json()
    assert {vm["flavor"] for vm in r.json()["vms"]} == {small.pk}


@pytest.mark.parametrize(
    ("payload", "field", "words"),
    [
        ({"topology": "hexagon", "count": 4}, "topology", "Unknown topology"),
        ({"topology": "ring", "count": 2}, "count", "from 3 to 64"),
        ({"topology": "mesh", "count": 18}, "count", "from 2 to 17"),
        ({"topology": "linear", "count": 65}, "count", "from 2 to 64"),
        ({"topology": "linear", "count": "many"}, "count", "whole number"),
        ({"topology": "linear"}, "count", "required"),
        ({"count": 3}, "topology", "required"),
    ],
)
def test_from_template_bad_requests(api, flavor, image, payload, field, words):
    r = api.post("/api/slices/from-template/", {"name": "bad", **payload}, format="json")
    assert r.status_code == 400
    assert words in str(r.json()["errors"][field])
    assert not Slice.objects.exists()


def test_from_template_is_atomic_when_vlans_run_out(api, flavor, image, vlan_range):
    vlan_range(100, 104)  # 5 VLANs, a ring of 6 needs 6
    r = api.post("/api/slices/from-template/", {"name": "big", "topology": "ring", "count": 6}, format="json")
    assert r.status_code == 409
    assert "No free VLAN" in r.json()["detail"]
    assert not Slice.objects.exists() and not VM.objects.exists()
