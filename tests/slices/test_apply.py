"""Apply a document by name (POST /api/slices/apply/), the by-name lookup and the compact status."""

import itertools

import pytest
import yaml
from django.db import connection
from django.test.utils import CaptureQueriesContext

from slices.models import VM, Interface, Link, Slice

DOC = {
    "name": "lab",
    "vms": [{"name": "r1"}, {"name": "r2"}, {"name": "r3", "data_interfaces_count": 2}],
    "links": [["r1:eth1", "r2:eth1"], ["r2:eth2", "r3:eth1"]],
}


def post_apply(api, doc, dry_run=False, fmt="json"):
    url = "/api/slices/apply/" + ("?dry_run=true" if dry_run else "")
    if fmt == "yaml":
        return api.generic("POST", url, yaml.safe_dump(doc), content_type="application/yaml")
    return api.post(url, doc, format="json")


def test_apply_creates_then_same_document_is_unchanged(api, user, flavor, image):
    r = post_apply(api, DOC, dry_run=True)
    assert r.status_code == 200, r.json()
    assert r.json()["slice"] is None and r.json()["created"] and not Slice.objects.exists()
    r = post_apply(api, DOC, fmt="yaml")
    assert r.status_code == 201, r.json()
    body = r.json()
    assert body["summary"] == "created: 3 VMs, 2 links"
    assert "+ link r1:eth1 <-> r2:eth1" in body["lines"]
    s = Slice.objects.get(name="lab")
    # NICs inferred from the links when not given: r2 uses eth2, r1 only eth1
    assert dict(s.vms.values_list("name", "data_interfaces_count")) == {"r1": 1, "r2": 2, "r3": 2}
    vlans = set(Link.objects.values_list("vlan", flat=True))
    r = post_apply(api, DOC)
    assert r.status_code == 200
    body = r.json()
    assert body["summary"] == "unchanged" and body["changed"] is False and body["lines"] == []
    assert set(Link.objects.values_list("vlan", flat=True)) == vlans


def test_apply_changes_only_what_differs_and_keeps_the_rest(api, user, flavor, image):
    post_apply(api, DOC)
    s = Slice.objects.get(name="lab")
    kept = {
        vm.name: (vm.pk, sorted(vm.interfaces.filter(index__lte=1).values_list("mac", flat=True))) for vm in s.vms.all()
    }
    kept_link = Link.objects.get(a__vm__name__in=["r1", "r2"], b__vm__name__in=["r1", "r2"])
    edited = {
        "name": "lab",
        "description": "edited",
        "vms": [*DOC["vms"], {"name": "r4", "internet_enabled": True}],
        "links": [["r1:eth1", "r2:eth1"], ["r3:eth2", "r4:eth1"]],
    }
    dry = post_apply(api, edited, dry_run=True).json()
    assert Link.objects.count() == 2 and not VM.objects.filter(name="r4").exists()  # a dry run writes nothing
    r = post_apply(api, edited)
    assert r.status_code == 200, r.json()
    body = r.json()
    assert body["diff"] == dry["diff"]
    assert body["lines"] == [
        "+ vm r4 (tiny, busybox, 1 data NIC, internet)",
        "~ vm r2: data_interfaces_count 2 -> 1",
        "+ link r3:eth2 <-> r4:eth1",
        "- link r2:eth2 <-> r3:eth1",
        "~ description '' -> 'edited'",
    ]
    assert body["summary"] == "changed: 1 VM added, 1 VM changed, 1 link added, 1 link removed, description changed"
    assert body["redeploy_needed"] is False  # a draft
    for name, (pk, macs) in kept.items():
        vm = VM.objects.get(slice=s, name=name)
        assert vm.pk == pk and set(macs) <= set(vm.interfaces.values_list("mac", flat=True))
    assert Link.objects.get(pk=kept_link.pk).vlan == kept_link.vlan
    assert post_apply(api, edited).json()["summary"] == "unchanged"
    # and a VM removed: its links go with it
    smaller = {"name": "lab", "description": "edited", "vms": DOC["vms"][:2], "links": [["r1:eth1", "r2:eth1"]]}
    body = post_apply(api, smaller).json()
    assert "- vm r3" in body["lines"] and "- vm r4" in body["lines"]
    assert sorted(s.vms.values_list("name", flat=True)) == ["r1", "r2"]


def test_apply_is_atomic_and_names_the_field(api, user, flavor, image):
    post_apply(api, DOC)
    bad = {**DOC, "vms": [*DOC["vms"], {"name": "r9", "flavor": "no-such"}], "links": DOC["links"][:1]}
    r = post_apply(api, bad)
    assert r.status_code == 400
    assert list(r.json()["errors"]) == ["vms[3].flavor"] and "no-such" in r.json()["detail"]
    assert Link.objects.count() == 2 and not VM.objects.filter(name="r9").exists()


def test_apply_on_a_deployed_slice_says_redeploy_and_refuses_while_busy(api, user, flavor, image):
    post_apply(api, DOC)
    Slice.objects.filter(name="lab").update(status=Slice.Status.ACTIVE)
    edited = {**DOC, "links": DOC["links"][:1]}
    assert post_apply(api, edited, dry_run=True).json()["redeploy_needed"] is True
    Slice.objects.filter(name="lab").update(status=Slice.Status.DEPLOYING)
    r = post_apply(api, edited)
    assert r.status_code == 409 and r.json()["code"] == "slice_busy"
    Slice.objects.filter(name="lab").update(status=Slice.Status.ACTIVE)
    layout = {**DOC, "vms": [{**DOC["vms"][0], "x": 5, "y": 6}, *DOC["vms"][1:]]}
    body = post_apply(api, layout).json()
    assert body["changed"] and body["redeploy_needed"] is False  # positions only


def test_apply_is_per_owner(api, other_api, user, other_user, flavor, image):
    post_apply(api, DOC)
    r = post_apply(other_api, DOC)
    assert r.status_code == 201  # bob gets his own "lab"
    assert Slice.objects.filter(name="lab").count() == 2


def test_by_name_and_status(api, other_api, user, flavor, image, make_slice):
    post_apply(api, DOC)
    s = Slice.objects.get(name="lab")
    r = api.get("/api/slices/by-name/lab/")
    assert r.status_code == 200 and r.json()["id"] == s.pk and len(r.json()["vms"]) == 3
    assert api.get("/api/slices/by-name/nope/").status_code == 404
    assert other_api.get("/api/slices/by-name/lab/").status_code == 404
    assert other_api.get(f"/api/slices/{s.pk}/status/").status_code == 404
    Interface.objects.filter(vm__name="r1", index=1).update(lease_address="10.64.1.10")
    body = api.get(f"/api/slices/{s.pk}/status/").json()
    assert body["status"] == "draft"
    r1 = body["vms"][0]
    assert r1["name"] == "r1" and r1["host"] is None and r1["status"] == "designed"
    assert r1["interfaces"][0]["name"] == "eth1" and r1["interfaces"][0]["lease"] == "10.64.1.10"


def test_status_of_a_128_vm_slice_is_small_and_constant_in_queries(api, user, flavor, image, settings):
    settings.SLICE_QUOTA_VMS = 200
    settings.SLICE_QUOTA_VCPUS = 400
    settings.SLICE_QUOTA_RAM_MIB = 10**6
    names = [f"vm{i}" for i in range(128)]
    doc = {
        "name": "big",
        "vms": [{"name": n, "data_interfaces_count": 2} for n in names],
        "links": [[f"{a}:eth2", f"{b}:eth1"] for a, b in itertools.pairwise(names)],
    }
    assert post_apply(api, doc).status_code == 201
    s = Slice.objects.get(name="big")
    with CaptureQueriesContext(connection) as queries:
        r = api.get(f"/api/slices/{s.pk}/status/")
    assert r.status_code == 200 and len(r.json()["vms"]) == 128
    assert len(queries) <= 6, [q["sql"] for q in queries]
    assert len(r.content) < 40_000, len(r.content)


@pytest.mark.parametrize("value", ["yes", "2"])
def test_apply_dry_run_flag_is_strict(api, user, flavor, image, value):
    r = api.post(f"/api/slices/apply/?dry_run={value}", DOC, format="json")
    assert r.status_code == 400 and "dry_run" in r.json()["errors"]
