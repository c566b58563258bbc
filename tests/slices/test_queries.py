"""List endpoints run the same number of SQL queries at 1 row and at 50 rows."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from slices import services

from .helpers import vms_of


def _queries(client, url, expected_rows):
    with CaptureQueriesContext(connection) as ctx:
        r = client.get(url)
    assert r.status_code == 200
    body = r.json()
    rows = body["count"] if "count" in body else None
    if expected_rows is not None:
        assert rows == expected_rows, (url, rows)
    return len(ctx.captured_queries)


def _chain_slice(owner, name, n_vms):
    """A slice of n VMs (2 data interfaces each, eth0 on VLAN 400) linked in a chain: n-1 links."""
    s = services.slice_create(owner=owner, name=name)
    for i in range(1, n_vms + 1):
        services.vm_create(slice_obj=s, name=f"vm{i}", data_interfaces_count=2, internet_enabled=True)
    vms = vms_of(s)
    for i in range(1, n_vms):
        services.link_connect(slice_obj=s, vm_a=vms[f"vm{i}"], vm_b=vms[f"vm{i + 1}"])
    return s


@pytest.fixture
def small_and_big(make_user, client_for, flavor, image):
    small, big = make_user("small"), make_user("big")
    one = _chain_slice(small, "one", 2)  # 2 VMs, 1 link
    fifty = _chain_slice(big, "fifty", 51)  # 51 VMs, 50 links
    for k in range(49):  # big has 50 slices
        services.slice_create(owner=big, name=f"extra{k}")
    return {"small": client_for(small), "big": client_for(big), "one": one, "fifty": fifty}


def test_slice_list(small_and_big):
    assert _queries(small_and_big["small"], "/api/slices/", 1) == _queries(small_and_big["big"], "/api/slices/", 50)


def test_vm_list(small_and_big):
    one, fifty = small_and_big["one"], small_and_big["fifty"]
    services.vm_delete(vm=vms_of(one)["vm2"])  # exactly one VM
    services.vm_delete(vm=vms_of(fifty)["vm51"])  # exactly fifty
    assert _queries(small_and_big["small"], "/api/vms/", 1) == _queries(small_and_big["big"], "/api/vms/", 50)


def test_link_list(small_and_big):
    assert _queries(small_and_big["small"], "/api/links/", 1) == _queries(small_and_big["big"], "/api/links/", 50)


def test_interface_list(small_and_big):
    # one page of 1 row vs one page of 50 rows (linked interfaces, eth0s on VLAN 400, free ones)
    small, big = small_and_big["small"], small_and_big["big"]
    assert len(small.get("/api/interfaces/?limit=1").json()["results"]) == 1
    assert len(big.get("/api/interfaces/?limit=50").json()["results"]) == 50
    assert _queries(small, "/api/interfaces/?limit=1", 6) == _queries(big, "/api/interfaces/?limit=50", 51 * 3)


def test_slice_detail(small_and_big):
    one, fifty = small_and_big["one"], small_and_big["fifty"]
    small = _queries(small_and_big["small"], f"/api/slices/{one.pk}/", None)
    big = _queries(small_and_big["big"], f"/api/slices/{fifty.pk}/", None)
    assert small == big
    body = small_and_big["big"].get(f"/api/slices/{fifty.pk}/").json()
    assert len(body["vms"]) == 51 and len(body["links"]) == 50


def test_slice_export(small_and_big):
    one, fifty = small_and_big["one"], small_and_big["fifty"]
    small = _queries(small_and_big["small"], f"/api/slices/{one.pk}/export/", None)
    big = _queries(small_and_big["big"], f"/api/slices/{fifty.pk}/export/", None)
    assert small == big
