"""POST /api/slices/{id}/links/bulk/: a whole set of links in one request, all or nothing."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from slices.models import Link, SliceVlan

from .helpers import vms_of


def _bulk(api, slice_obj, pairs):
    return api.post(f"/api/slices/{slice_obj.pk}/links/bulk/", {"links": pairs}, format="json")


def _chain(vms, n):
    return [{"vm_a": vms[f"vm{i}"].pk, "vm_b": vms[f"vm{i + 1}"].pk} for i in range(1, n)]


def test_bulk_creates_every_link_in_order(api, user, make_slice):
    s = make_slice(user, name="bulk", vms=5, data=2)
    vms = vms_of(s)
    pairs = _chain(vms, 5)
    pairs[0].update(iface_a="eth2", iface_b="eth2")
    r = _bulk(api, s, pairs)
    assert r.status_code == 201, r.json()
    links = r.json()["links"]
    assert [link["vlan"] for link in links] == [100, 101, 102, 103]
    assert [(link["a"]["vm_name"], link["b"]["vm_name"]) for link in links] == [
        ("vm1", "vm2"),
        ("vm2", "vm3"),
        ("vm3", "vm4"),
        ("vm4", "vm5"),
    ]
    assert (links[0]["a"]["interface"], links[0]["b"]["interface"]) == ("eth2", "eth2")
    assert links[1]["a"]["ip_address"] == "10.64.101.10" and links[1]["subnet"] == "10.64.101.0/24"
    assert api.get(f"/api/slices/{s.pk}/").json()["vlan_pool"] == ["100-103"]


@pytest.mark.parametrize(
    ("change", "code", "where"),
    [
        (lambda p, vms: p.append(dict(p[0])), "duplicate_link", "links[4]"),  # a pair of this very request
        (lambda p, vms: p[2].update(vm_b=p[2]["vm_a"]), "same_vm", "links[2]"),
        (lambda p, vms: p[1].update(iface_a="eth0"), "management_interface", "links[1].iface_a"),
        (lambda p, vms: p[3].update(iface_b="eth9"), "no_such_interface", "links[3].iface_b"),
        (lambda p, vms: p.append({"vm_a": vms["vm1"].pk, "vm_b": vms["vm3"].pk}), "no_free_interface", "links[5]"),
    ],
)
def test_one_refused_link_creates_none(api, user, make_slice, change, code, where):
    s = make_slice(user, name="bulk", vms=5, data=2)
    vms = vms_of(s)
    pairs = _chain(vms, 5)
    pairs += [{"vm_a": vms["vm1"].pk, "vm_b": vms["vm5"].pk}]  # every VM now has both interfaces linked
    pairs = pairs[:4] if code != "no_free_interface" else pairs
    change(pairs, vms)
    r = _bulk(api, s, pairs)
    assert r.status_code == 400, r.json()
    body = r.json()
    assert body["code"] == code and where in body["errors"], body
    assert body["detail"].startswith(where.split(".")[0])
    assert not Link.objects.exists() and not SliceVlan.objects.exists()


def test_another_slices_vm_is_refused_without_its_name(api, other_api, user, other_user, make_slice):
    mine = make_slice(user, name="mine", vms=2)
    theirs = make_slice(other_user, name="secretname", vms=2)
    hidden = vms_of(theirs)["vm1"]
    r = _bulk(api, mine, [{"vm_a": vms_of(mine)["vm1"].pk, "vm_b": hidden.pk}])
    assert r.status_code == 400
    assert r.json()["code"] == "cross_slice" and "links[0].vm_b" in r.json()["errors"]
    assert "secretname" not in r.content.decode() and hidden.name not in r.json()["detail"].split("VM ")[1][:4]
    assert _bulk(other_api, mine, []).status_code == 404  # and another user's slice is a 404


def test_bulk_body_is_checked(api, user, make_slice):
    s = make_slice(user, name="bulk", vms=2)
    assert _bulk(api, s, []).status_code == 400
    assert api.post(f"/api/slices/{s.pk}/links/bulk/", {}, format="json").status_code == 400
    r = _bulk(api, s, [{"vm_a": "1", "vm_b": 2}])
    assert r.status_code == 400 and r.json()["code"] == "invalid"


def test_vlans_running_out_is_a_409_naming_the_first_link_left_without(api, user, make_slice, vlan_range):
    vlan_range(100, 102)
    s = make_slice(user, name="bulk", vms=6, data=2)
    r = _bulk(api, s, _chain(vms_of(s), 6))
    assert r.status_code == 409
    assert r.json()["code"] == "vlan_pool_exhausted" and "links[3]" in r.json()["errors"]
    assert not Link.objects.exists() and not SliceVlan.objects.exists()


def test_bulk_queries_do_not_grow_with_the_links(api, user, make_slice):
    counts = []
    for n in (4, 32):
        s = make_slice(user, vms=n + 1, data=2)
        with CaptureQueriesContext(connection) as ctx:
            assert _bulk(api, s, _chain(vms_of(s), n + 1)).status_code == 201
        counts.append(len(ctx.captured_queries))
    assert counts[0] == counts[1], counts


def test_an_import_without_links_or_vms_creates_the_slice(user):
    """Found by the schemathesis contract test after the bulk link path landed: `IN ()` was a SQL error."""
    from slices import io, services

    s = services.slice_import(owner=user, document=io.parse_document({"name": "empty", "vms": []}))
    assert s.vms.count() == 0 and s.links.count() == 0
