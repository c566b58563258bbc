"""Import and export of slices as YAML and JSON."""

import json

import pytest
import yaml
from django.core.files.uploadedfile import SimpleUploadedFile

from inventory.models import Flavor
from slices import io, services
from slices.models import VM, Interface, Link, Slice, UserQuota

from .helpers import vms_of


@pytest.fixture
def rich(user, flavor, image):
    """A tree of 5 plus a VM with internet, a bigger flavor, no data interface and its own position."""
    s = services.slice_from_template(owner=user, name="rich", topology="tree", count=5, description="a tree")
    services.vm_create(
        slice_obj=s,
        name="edge",
        flavor=Flavor.objects.get(name="small"),
        image=image,
        data_interfaces_count=0,
        internet_enabled=True,
        x=12.5,
        y=-3,
    )
    vms = vms_of(s)
    services.vm_update(vm=vms["vm5"], data_interfaces_count=3)
    services.vm_update(vm=vms["vm3"], data_interfaces_count=3)
    services.link_connect(slice_obj=s, vm_a=vms["vm5"], vm_b=vms["vm3"], iface_a="eth3", iface_b="eth3")
    return s


def _without_name(doc):
    return {k: v for k, v in doc.items() if k != "name"}


def test_export_yaml_is_a_download(api, rich):
    r = api.get(f"/api/slices/{rich.pk}/export/?format=yaml")
    assert r.status_code == 200
    assert r["Content-Type"] == "application/yaml; charset=utf-8"
    assert r["Content-Disposition"] == 'attachment; filename="rich.yaml"'
    doc = yaml.safe_load(r.content)
    assert doc["name"] == "rich" and doc["description"] == "a tree" and doc["version"] == 1
    assert [vm["name"] for vm in doc["vms"]] == ["edge", "vm1", "vm2", "vm3", "vm4", "vm5"]
    edge = doc["vms"][0]
    assert edge == {
        "name": "edge",
        "flavor": "small",
        "image": "busybox",
        "data_interfaces_count": 0,
        "internet_enabled": True,
        "x": 12.5,
        "y": -3.0,
    }
    assert ["vm1:eth1", "vm2:eth1"] in doc["links"]
    assert ["vm3:eth3", "vm5:eth3"] in doc["links"]
    assert len(doc["links"]) == 5


def test_export_json(api, rich):
    r = api.get(f"/api/slices/{rich.pk}/export/?format=json")
    assert r.status_code == 200
    assert r["Content-Type"] == "application/json"
    assert r["Content-Disposition"] == 'attachment; filename="rich.json"'
    assert json.loads(r.content)["name"] == "rich"
    assert api.get(f"/api/slices/{rich.pk}/export/").json()["name"] == "rich"  # JSON by default


def test_export_unknown_format_is_a_400(api, rich):
    r = api.get(f"/api/slices/{rich.pk}/export/?format=xml")
    assert r.status_code == 400
    assert "Unknown export format 'xml'" in r.json()["detail"]


@pytest.mark.parametrize("fmt", ["yaml", "json"])
@pytest.mark.parametrize("how", ["body", "upload", "text"])
def test_round_trip_gives_the_same_slice(api, rich, fmt, how):
    exported = api.get(f"/api/slices/{rich.pk}/export/?format={fmt}").content
    if how == "body":
        content_type = "application/yaml" if fmt == "yaml" else "application/json"
        r = api.post("/api/slices/import/?name=copy", exported, content_type=content_type)
    elif how == "upload":
        upload = SimpleUploadedFile(f"rich.{fmt}", exported)
        r = api.post("/api/slices/import/", {"file": upload, "name": "copy"}, format="multipart")
    else:
        r = api.post("/api/slices/import/?name=copy", exported, content_type="text/plain")
    assert r.status_code == 201, r.json()
    copy = Slice.objects.get(pk=r.json()["id"])
    assert copy.name == "copy"
    again = api.get(f"/api/slices/{copy.pk}/export/?format=json").json()
    original = api.get(f"/api/slices/{rich.pk}/export/?format=json").json()
    assert _without_name(again) == _without_name(original)
    # same wiring, fresh VLANs: the copy shares nothing with the original
    assert not set(Link.objects.filter(slice=copy).values_list("vlan", flat=True)) & set(
        Link.objects.filter(slice=rich).values_list("vlan", flat=True)
    )
    assert Interface.objects.filter(vm__slice=copy, index=0, vlan=400).count() == 1


def test_import_json_object_body(api, flavor, image):
    doc = {
        "name": "small",
        "vms": [{"name": "a", "x": 1, "y": 2}, {"name": "b", "data_interfaces_count": 2}],
        "links": [["a:eth1", "b:eth2"]],
    }
    r = api.post("/api/slices/import/", doc, format="json")
    assert r.status_code == 201, r.json()
    body = r.json()
    assert [vm["name"] for vm in body["vms"]] == ["a", "b"]
    link = body["links"][0]
    assert (link["a"]["vm_name"], link["a"]["interface"], link["b"]["vm_name"], link["b"]["interface"]) == (
        "a",
        "eth1",
        "b",
        "eth2",
    )
    a = VM.objects.get(slice_id=body["id"], name="a")
    assert (a.x, a.y, a.flavor.name, a.image.name) == (1.0, 2.0, "tiny", "busybox")  # defaults


BAD = [
    ({"name": "x", "vms": [{"name": "a"}, {"name": "b"}, {"name": "a;rm -rf /"}]}, "vms[2].name", "Invalid VM name"),
    ({"name": "x", "vms": [{"name": "a"}, {"name": "a"}]}, "vms[1].name", "unique"),
    ({"name": "x", "vms": [{"name": "a", "colour": "red"}]}, "vms[0].colour", "Unknown field"),
    ({"name": "x", "vms": [{"name": "a", "flavor": "jumbo"}]}, "vms[0].flavor", "No flavor named 'jumbo'"),
    ({"name": "x", "vms": [{"name": "a", "image": "nope"}]}, "vms[0].image", "No image named 'nope'"),
    ({"name": "x", "vms": [{"name": "a", "data_interfaces_count": 17}]}, "vms[0].data_interfaces_count", "0 to 16"),
    ({"name": "x", "vms": [{"name": "a", "internet_enabled": "yes"}]}, "vms[0].internet_enabled", "true or false"),
    ({"name": "x", "vms": [{"name": "a", "x": "left"}]}, "vms[0].x", "A number"),
    ({"name": "x", "vms": [{"name": "a"}], "links": [["a:eth1", "z:eth1"]]}, "links[0][1]", "No VM named 'z'"),
    ({"name": "x", "vms": [{"name": "a"}, {"name": "b"}], "links": [["a:eth0", "b:eth1"]]}, "links[0][0]", "eth0"),
    (
        {
            "name": "x",
            "vms": [{"name": "a", "data_interfaces_count": 1}, {"name": "b"}],
            "links": [["a:eth2", "b:eth1"]],
        },
        "links[0][0]",
        "no eth2",
    ),
    ({"name": "x", "vms": [{"name": "a"}, {"name": "b"}], "links": [["a:eth17", "b:eth1"]]}, "links[0][0]", "eth16"),
    ({"name": "x", "vms": [{"name": "a"}, {"name": "b"}], "links": [["a:eth1", "a:eth1"]]}, "links[0]", "distinct"),
    ({"name": "x", "vms": [{"name": "a"}, {"name": "b"}], "links": [["a-eth1", "b:eth1"]]}, "links[0][0]", "vm:ethN"),
    ({"name": "x", "vms": [{"name": "a"}, {"name": "b"}], "links": [["a:eth1"]]}, "links[0]", "pair"),
    (
        {"name": "x", "vms": [{"name": "a", "data_interfaces_count": 2}, {"name": "b", "data_interfaces_count": 2}]}
        | {"links": [["a:eth1", "b:eth1"], ["a:eth2", "b:eth2"]]},
        "links[1]",
        "duplicate link",
    ),
    (
        {"name": "x", "vms": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}
        | {"links": [["a:eth1", "b:eth1"], ["a:eth1", "c:eth1"]]},
        "links[1][0]",
        "already linked by links[0]",
    ),
    ({"vms": []}, "name", "required"),
    ({"name": "../x", "vms": []}, "name", "Invalid slice name"),
    ({"name": "x", "vms": {"a": 1}}, "vms", "A list"),
    ({"name": "x", "version": 2}, "version", "Unsupported version"),
    ({"name": "x", "description": "d" * 2001}, "description", "2000"),
    ({"name": "x", "extra": 1}, "extra", "Unknown field"),
]


@pytest.mark.parametrize(("doc", "path", "words"), BAD, ids=[b[1] + ":" + b[2] for b in BAD])
def test_bad_documents_name_the_field(api, flavor, image, doc, path, words):
    r = api.post("/api/slices/import/", doc, format="json")
    assert r.status_code == 400, r.json()
    body = r.json()
    assert path in body["errors"], body
    assert words in " ".join(body["errors"][path]), body
    assert not Slice.objects.exists()


def test_every_problem_is_reported_at_once(api, flavor, image):
    doc = {"name": "x", "vms": [{"name": "$(id)"}, {"name": "ok", "flavor": 3}], "links": "no"}
    body = api.post("/api/slices/import/", doc, format="json").json()
    assert set(body["errors"]) == {"vms[0].name", "vms[1].flavor", "links"}
    assert "and 2 more problems" in body["detail"]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("name: x\nvms: [", "Invalid YAML at line"),
        ("- just\n- a list\n", "must be a mapping"),
        ("name: &a x\nvms: *a\n", "aliases"),
        ("name: x\nvms: !!python/object/apply:os.system ['id']\n", "Invalid YAML"),
        ("[" * 50 + "]" * 50, "nests deeper"),
        ('{"name": "x", "vms": [}', "Invalid JSON at line 1"),
        ('{"name": "x", "vms": [{"name": "a", "x": NaN}]}', "Unreadable"),
        ("", "Send the document as the request body"),
        ("42", "must be a mapping"),
    ],
)
def test_unreadable_text_is_refused(api, flavor, image, text, words):
    r = api.post("/api/slices/import/", text, content_type="text/plain")
    assert r.status_code == 400, r.json()
    assert words in r.json()["detail"], r.json()
    assert not Slice.objects.exists()


def test_yaml_billion_laughs_is_refused_quickly(api):
    lol = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 9):
        prev = chr(ord("a") + i - 1)
        lol.append(f"{chr(ord('a') + i)}: &{chr(ord('a') + i)} [{','.join(['*' + prev] * 9)}]")
    r = api.post("/api/slices/import/", "\n".join(lol), content_type="application/yaml")
    assert r.status_code == 400
    assert "aliases" in r.json()["detail"]


def test_too_large_is_a_413(api, settings, flavor, image):
    settings.SLICE_IMPORT_MAX_BYTES = 1000
    text = "name: big\ndescription: " + "x" * 2000 + "\n"
    assert api.post("/api/slices/import/", text, content_type="application/yaml").status_code == 413
    upload = SimpleUploadedFile("big.yaml", text.encode())
    r = api.post("/api/slices/import/", {"file": upload}, format="multipart")
    assert r.status_code == 413
    assert "limit is 1000 bytes" in r.json()["detail"]


def test_upload_without_a_file_says_how(api):
    r = api.post("/api/slices/import/", {"name": "x"}, format="multipart")
    assert r.status_code == 400
    assert "file field named 'file'" in r.json()["detail"]


def test_not_utf8_is_refused(api):
    upload = SimpleUploadedFile("x.yaml", "name: café".encode("latin-1"))
    r = api.post("/api/slices/import/", {"file": upload}, format="multipart")
    assert r.status_code == 400 and "not UTF-8" in r.json()["detail"]


def test_import_is_atomic_on_quota(api, user, flavor, image):
    UserQuota.objects.create(user=user, max_vms=2)
    doc = {"name": "three", "vms": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}
    r = api.post("/api/slices/import/", doc, format="json")
    assert r.status_code == 403
    assert "your limit is 2" in r.json()["detail"]
    assert not Slice.objects.exists() and not VM.objects.exists()


def test_import_is_atomic_when_vlans_run_out(api, flavor, image, vlan_range):
    vlan_range(100, 101)
    doc = {
        "name": "chain",
        "vms": [{"name": n, "data_interfaces_count": 2} for n in "abcd"],
        "links": [["a:eth1", "b:eth1"], ["b:eth2", "c:eth1"], ["c:eth2", "d:eth1"]],
    }
    r = api.post("/api/slices/import/", doc, format="json")
    assert r.status_code == 409
    assert "links[2]" in r.json()["errors"]
    assert not Slice.objects.exists() and not Link.objects.exists()


def test_import_under_an_existing_name_is_refused(api, rich):
    exported = api.get(f"/api/slices/{rich.pk}/export/?format=yaml").content
    r = api.post("/api/slices/import/", exported, content_type="application/yaml")
    assert r.status_code == 400
    assert "name" in r.json()["errors"] and "already have a slice named 'rich'" in r.json()["detail"]
    r = api.post("/api/slices/import/?name=a%20b", exported, content_type="application/yaml")
    assert r.status_code == 400 and "name" in r.json()["errors"]


def test_data_interfaces_are_inferred_from_the_links_when_not_given():
    doc = io.parse_document(
        {
            "name": "x",
            "vms": [{"name": "a"}, {"name": "b"}, {"name": "c"}, {"name": "d", "data_interfaces_count": 4}],
            "links": [["a:eth3", "b:eth1"], ["d:eth1", "a:eth1"]],
        }
    )
    counts = {vm.name: vm.data_interfaces_count for vm in doc.vms}
    assert counts == {"a": 3, "b": 1, "c": 1, "d": 4}  # the highest linked NIC, at least one; given counts kept
