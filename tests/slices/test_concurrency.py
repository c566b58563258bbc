"""Many users creating links, slices and VMs at the same moment, on the real database.

Each test runs its requests from several threads, each with its own database
connection (Django's connections are per thread), released at the end. What a
user would notice is asserted: every request either succeeds or gets a clear
4xx, no VLAN is ever shared or held twice, VLAN 400 is never handed out.
"""

import random
import threading
from collections import Counter

import pytest
from django.db import connection, connections
from rest_framework.test import APIClient

from slices import services
from slices.models import VM, Interface, Link, Slice, SliceVlan, UserQuota

from .helpers import vms_of

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrency needs PostgreSQL (SQLite locks whole)"),
]

THREADS = 8


def run_concurrently(jobs, threads=THREADS):
    """Run ``jobs`` (callables taking an APIClient) from ``threads`` threads started together.

    Returns the results in job order; an exception is returned in place of a result.
    """
    results: list = [None] * len(jobs)
    pending = list(enumerate(jobs))
    random.Random(7).shuffle(pending)
    lock = threading.Lock()
    barrier = threading.Barrier(threads)

    def worker():
        client = APIClient()
        try:
            barrier.wait(timeout=30)
            while True:
                with lock:
                    if not pending:
                        return
                    index, job = pending.pop()
                try:
                    results[index] = job(client)
                except Exception as exc:  # reported by the test, never swallowed
                    results[index] = exc
        finally:
            connections.close_all()

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in pool), "a worker thread hung"
    return results


def post(user, url, payload):
    def job(client):
        client.force_authenticate(user)
        response = client.post(url, payload, format="json")
        return response.status_code, response.json()

    return job


def link_job(user, slice_obj, a, b):
    return post(user, "/api/links/", {"slice": slice_obj.pk, "vm_a": a.pk, "vm_b": b.pk})


def assert_vlan_integrity():
    """No VLAN shared, never 400, each held by its own slice, both ends carry it."""
    links = list(Link.objects.select_related("a", "b"))
    vlans = [link.vlan for link in links]
    assert len(vlans) == len(set(vlans)), "a VLAN was given twice"
    assert 400 not in vlans
    holder = dict(SliceVlan.objects.values_list("vlan", "slice_id"))
    ends = Counter()
    for link in links:
        assert holder.get(link.vlan) == link.slice_id, "a link's VLAN is not held by its slice"
        assert link.a.vlan == link.b.vlan == link.vlan
        ends.update([link.a_id, link.b_id])
    assert all(n == 1 for n in ends.values()), "an interface carries two links"
    assert Interface.objects.filter(index__gt=0).exclude(vlan=None).count() == 2 * len(links)


def test_250_concurrent_link_requests_in_one_slice(make_user, flavor, image):
    owner = make_user("racer")
    slice_obj = services.slice_create(owner=owner, name="race")
    n = 40
    for i in range(1, n + 1):
        services.vm_create(slice_obj=slice_obj, name=f"vm{i}", data_interfaces_count=10)
    vms = [vms_of(slice_obj)[f"vm{i}"] for i in range(1, n + 1)]
    pairs = [(i, (i + d) % n) for i in range(n) for d in range(1, 6)]  # 200 distinct pairs, degree 10
    assert len({frozenset(p) for p in pairs}) == 200
    duplicates = random.Random(1).sample(pairs, 50)  # the same pairs again, reversed
    jobs = [link_job(owner, slice_obj, vms[a], vms[b]) for a, b in pairs]
    jobs += [link_job(owner, slice_obj, vms[b], vms[a]) for a, b in duplicates]

    results = run_concurrently(jobs)

    assert not [r for r in results if isinstance(r, Exception)]
    statuses = Counter(status for status, _ in results)
    assert statuses == {201: 200, 400: 50}, statuses
    for status, body in results:
        if status == 400:
            assert body["code"] == "duplicate_link" and "already linked" in body["detail"]
    assert Link.objects.count() == 200
    assert_vlan_integrity()
    # 200 links, 200 VLANs held, the lowest ones (no 400 in range yet)
    assert sorted(SliceVlan.objects.filter(slice=slice_obj).values_list("vlan", flat=True)) == list(range(100, 300))


def test_concurrent_links_in_different_slices_claim_disjoint_vlans(make_user, flavor, image, vlan_range):
    vlan_range(100, 3999)
    jobs = []
    slices = []
    for k in range(6):
        owner = make_user(f"u{k}")
        s = services.slice_create(owner=owner, name=f"s{k}")
        for i in range(1, 21):
            services.vm_create(slice_obj=s, name=f"vm{i}", data_interfaces_count=4)
        vms = [vms_of(s)[f"vm{i}"] for i in range(1, 21)]
        slices.append(s)
        jobs += [link_job(owner, s, vms[i], vms[(i + d) % 20]) for i in range(20) for d in (1, 2)]
    assert len(jobs) == 240

    results = run_concurrently(jobs, threads=12)

    assert not [r for r in results if isinstance(r, Exception)]
    assert Counter(status for status, _ in results) == {201: 240}
    assert_vlan_integrity()
    for s in slices:
        assert Link.objects.filter(slice=s).count() == 40
        assert SliceVlan.objects.filter(slice=s).count() == 40
    # every claim took the lowest VLAN free at its moment: the 240 lowest, no gap
    assert sorted(SliceVlan.objects.values_list("vlan", flat=True)) == list(range(100, 340))


def test_concurrent_exhaustion_every_request_succeeds_or_gets_a_409(make_user, flavor, image, vlan_range):
    vlan_range(390, 421)  # 32 VLANs less VLAN 400: 31 usable
    jobs = []
    for k in range(4):
        owner = make_user(f"e{k}")
        s = services.slice_create(owner=owner, name="ex")
        for i in range(1, 18):
            services.vm_create(slice_obj=s, name=f"vm{i}", data_interfaces_count=2)
        vms = [vms_of(s)[f"vm{i}"] for i in range(1, 18)]
        jobs += [link_job(owner, s, vms[i], vms[i + 1]) for i in range(16)]

    results = run_concurrently(jobs)

    assert not [r for r in results if isinstance(r, Exception)]
    statuses = Counter(status for status, _ in results)
    assert statuses == {201: 31, 409: 33}, statuses
    for status, body in results:
        if status == 409:
            assert body["code"] == "vlan_pool_exhausted"
            assert "No free VLAN left" in body["detail"]
    assert_vlan_integrity()
    assert sorted(Link.objects.values_list("vlan", flat=True)) == [v for v in range(390, 422) if v != 400]


def test_concurrent_templates_claiming_many_vlans_each(make_user, flavor, image, vlan_range):
    # Each request claims 20 VLANs inside one transaction, racing the others.
    vlan_range(100, 3999)
    users = [make_user(f"t{k}") for k in range(8)]
    jobs = [post(u, "/api/slices/from-template/", {"name": "ring", "topology": "ring", "count": 20}) for u in users]

    results = run_concurrently(jobs)

    assert not [r for r in results if isinstance(r, Exception)]
    assert [status for status, _ in results] == [201] * 8, [b for s, b in results if s != 201]
    assert Link.objects.count() == 160
    assert_vlan_integrity()


def test_concurrent_vm_creation_respects_the_quota_across_slices(make_user, flavor, image):
    owner = make_user("quota")
    UserQuota.objects.create(user=owner, max_vms=10)
    slices = [services.slice_create(owner=owner, name=f"q{k}") for k in range(4)]
    jobs = [post(owner, "/api/vms/", {"slice": s.pk, "name": f"vm{i}"}) for s in slices for i in range(5)]

    results = run_concurrently(jobs)

    assert not [r for r in results if isinstance(r, Exception)]
    assert Counter(status for status, _ in results) == {201: 10, 403: 10}
    for status, body in results:
        if status == 403:
            assert body["code"] == "quota_exceeded" and "your limit is 10" in body["detail"]
    assert VM.objects.filter(slice__owner=owner).count() == 10


def test_concurrent_slice_creation_with_the_same_name(make_user):
    owner = make_user("twins")
    jobs = [post(owner, "/api/slices/", {"name": "same"}) for _ in range(16)]

    results = run_concurrently(jobs)

    assert not [r for r in results if isinstance(r, Exception)]
    assert Counter(status for status, _ in results) == {201: 1, 400: 15}
    assert Slice.objects.filter(owner=owner, name="same").count() == 1
