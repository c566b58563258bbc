"""containerlab topologies: read as slice documents, through import and apply."""

from pathlib import Path

import pytest
import yaml

from inventory.models import Image
from slices import clab
from slices.errors import InvalidRequest
from slices.models import Link, Slice

LEAF_SPINE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "leaf-spine.clab.yml"


def convert(data, image_map=None, images=("busybox",)):
    return clab.convert(data, image_map=image_map or {}, known_images=set(images))


@pytest.mark.parametrize(
    ("name", "expected"),
    [("eth3", 3), ("e1-2", 2), ("ethernet-1/7", 7), ("Ethernet4", 4), ("Et5", 5), ("swp6", 6), ("Gi0-0-0-1", None)],
)
def test_interface_rules(name, expected):
    mapped = clab.map_interface(name)
    assert (mapped[0] if mapped else None) == expected


def test_leaf_spine_reads_with_every_mapping_and_omission_reported():
    result = convert(yaml.safe_load(LEAF_SPINE.read_text()))
    doc = result.document
    assert doc["name"] == "leafspine" and len(doc["vms"]) == 10 and len(doc["links"]) == 12
    assert all("image" not in vm for vm in doc["vms"])  # no map: the default image
    assert ["leaf1:eth2", "spine1:eth1"] in doc["links"]  # e1-49 is beyond eth16: the next free NIC
    assert ["host1:eth1", "leaf1:eth1"] in doc["links"]
    mapped = {(m["node"], m["interface"]): (m["mapped"], m["rule"]) for m in result.interfaces}
    assert mapped["leaf1", "e1-49"] == ("eth2", "next free")
    assert mapped["leaf1", "e1-50"] == ("eth3", "next free")
    assert mapped["spine2", "e1-4"] == ("eth4", "SR Linux e1-N")
    assert ("host1", "eth1") not in mapped  # unchanged names are not reported
    warnings = {(w["node"], w["message"]) for w in result.warnings}
    assert ("spine1", "Not represented in a slice (ignored): startup-config.") in warnings
    assert ("host1", "Not represented in a slice (ignored): binds.") in warnings
    assert ("*", "'mgmt' is not represented in a slice (ignored).") in warnings


def test_image_map_by_image_then_kind_then_star_and_unknown_kind_names_the_node():
    data = {
        "name": "t",
        "topology": {
            "nodes": {
                "a": {"kind": "linux", "image": "alpine:3"},
                "b": {"kind": "linux"},
                "c": {"kind": "ceos"},
            }
        },
    }
    result = convert(data, {"alpine:3": "alpine", "linux": "busybox", "*": ""}, images=("alpine", "busybox"))
    assert [vm.get("image") for vm in result.document["vms"]] == ["alpine", "busybox", None]
    with pytest.raises(InvalidRequest) as exc:
        convert(data, {"linux": "busybox"})
    assert exc.value.errors == {
        "topology.nodes.c.kind": ["Node 'c': kind 'ceos' has no image on this portal; SLICE_CLAB_IMAGE_MAP maps linux."]
    }
    with pytest.raises(InvalidRequest, match="gives image 'nope', not here"):
        convert(data, {"*": "nope"})


def test_links_a_slice_cannot_hold_are_reported_per_node():
    data = {
        "name": "t",
        "topology": {
            "nodes": {"a": {"kind": "linux"}, "b": {"kind": "linux"}, "br": {"kind": "bridge"}},
            "links": [
                {"endpoints": ["a:eth1", "b:eth1"], "mtu": 9000},
                {"endpoints": [{"node": "a", "interface": "eth2"}, {"node": "b", "interface": "eth2"}]},
                {"endpoints": ["a:eth3", "host:veth-a"]},
                {"endpoints": ["b:eth3", "br:eth1"]},
                {"type": "macvlan", "endpoints": ["a:eth4", "macvlan:enp0s3"]},
            ],
        },
    }
    result = convert(data)
    assert result.document["links"] == [["a:eth1", "b:eth1"]]
    messages = [(w["node"], w["message"]) for w in result.warnings]
    assert ("br", "A bridge node is not represented: a slice has no bridges.") in messages
    assert ("a", "Link a:eth1 - b:eth1: mtu ignored.") in messages
    assert any(
        n == "a" and "a:eth2 - b:eth2 is not represented" in m and "links two VMs once" in m for n, m in messages
    )
    assert ("a", "Link a:eth3 - host:veth-a is not represented: it ends on 'host'.") in messages
    assert ("b", "Link b:eth3 - br:eth1 is not represented: it ends on 'br'.") in messages
    assert ("a", "Link a:eth4 - macvlan:enp0s3 is not represented: its type is 'macvlan'.") in messages


def test_bad_node_name_and_unknown_endpoint_are_errors():
    with pytest.raises(InvalidRequest) as exc:
        convert(
            {"name": "t", "topology": {"nodes": {"1bad": {}, "a": {}}, "links": [{"endpoints": ["a:eth1", "z:eth1"]}]}}
        )
    assert set(exc.value.errors) == {"topology.nodes.1bad", "topology.links[0].endpoints"}


def test_import_and_apply_a_clab_file_through_the_api(api, user, flavor, image, settings):
    text = LEAF_SPINE.read_text()
    r = api.generic("POST", "/api/slices/import/", text, content_type="application/yaml")
    assert r.status_code == 201, r.json()
    body = r.json()
    assert body["source"] == "containerlab" and len(body["vms"]) == 10 and len(body["links"]) == 12
    assert any(w["node"] == "spine1" for w in body["warnings"])
    counts = {vm["name"]: vm["data_interfaces_count"] for vm in body["vms"]}
    assert counts == {**{f"spine{i}": 4 for i in (1, 2)}, **{f"leaf{i}": 3 for i in range(1, 5)}} | {
        f"host{i}": 1 for i in range(1, 5)
    }
    # positions laid out on a grid, not all at 0,0
    assert len({(vm["x"], vm["y"]) for vm in body["vms"]}) == 10
    # apply the same file: unchanged
    r = api.generic("POST", "/api/slices/apply/", text, content_type="application/yaml")
    assert r.status_code == 200 and r.json()["summary"] == "unchanged", r.json()
    assert r.json()["source"] == "containerlab" and r.json()["interfaces"]
    # a file upload (the designer's import) works too
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("ls.clab.yml", text.encode(), content_type="application/yaml")
    r = api.post("/api/slices/import/?name=copy", {"file": upload}, format="multipart")
    assert r.status_code == 201 and r.json()["name"] == "copy"
    assert Slice.objects.count() == 2 and Link.objects.count() == 24


def test_clab_image_map_setting_refuses_an_unmapped_kind_via_the_api(api, user, flavor, image, settings):
    Image.objects.create(name="alpine", kind=Image.Kind.KERNEL, kernel_path="/boot/vmlinuz")
    settings.SLICE_CLAB_IMAGE_MAP = {"linux": "alpine"}
    r = api.generic("POST", "/api/slices/apply/", LEAF_SPINE.read_text(), content_type="application/yaml")
    assert r.status_code == 400
    assert "topology.nodes.spine1.kind" in r.json()["errors"]
    assert "Node 'spine1': kind 'nokia_srlinux'" in r.json()["detail"]
    assert not Slice.objects.exists()
