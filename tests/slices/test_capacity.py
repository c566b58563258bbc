"""Capacity (issue 15): every VLAN of the configured range can be on a link at once, however many slices.

With blocks of 16 VLANs per slice, at most 244 slices could hold a link at once
in the whole installation (a 1-link slice stranded 15 VLANs). Here 1,000 small
slices fill the whole default range 100-3999 (less VLAN 400) through the bulk
service, from four threads at once, without one duplicate; the next link gets
a clear 409, and a VLAN given back by one slice goes to the next that asks.
"""

import itertools
import threading

import pytest
from django.conf import settings
from django.db import connection, connections

from slices import services, vlans
from slices.errors import Conflict
from slices.links import LinkRequest
from slices.models import VM, Interface, Link, Slice, SliceVlan

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent claims need PostgreSQL"),
]

SLICES = 1000
THREADS = 4


def _chains(owner, flavor, image, sizes: list[int]) -> list[tuple[Slice, list[int]]]:
    """One slice per size: a chain of size + 1 VMs with two data interfaces each, written in bulk."""
    slices = Slice.objects.bulk_create(Slice(owner=owner, name=f"s{k}") for k in range(len(sizes)))
    vms = VM.objects.bulk_create(
        VM(slice=s, name=f"vm{i}", flavor=flavor, image=image, data_interfaces_count=2)
        for s, n in zip(slices, sizes, strict=True)
        for i in range(n + 1)
    )
    Interface.objects.bulk_create(
        Interface(vm=vm, index=i, mac=f"52:54:{(n >> 16) & 0xFF:02x}:{(n >> 8) & 0xFF:02x}:{n & 0xFF:02x}:0{i}")
        for vm in vms
        for n in [vm.pk]  # unique per VM
        for i in range(3)
    )
    out, at = [], 0
    for s, n in zip(slices, sizes, strict=True):
        out.append((s, [vm.pk for vm in vms[at : at + n + 1]]))
        at += n + 1
    return out


def test_the_whole_range_fits_on_links_of_1000_slices_then_409(make_user, flavor, image):
    usable = vlans.usable_count()
    assert (settings.SLICE_VLAN_MIN, settings.SLICE_VLAN_MAX, usable) == (100, 3999, 3899)
    # 1000 slices of 3 or 4 links: 899 * 4 + 101 * 3 = 3899 links, every usable VLAN once.
    sizes = [4] * 899 + [3] * 101
    assert len(sizes) == SLICES and sum(sizes) == usable
    owner = make_user("many")
    work = _chains(owner, flavor, image, sizes)
    errors: list[BaseException] = []

    def worker(share: list[tuple[Slice, list[int]]]) -> None:
        try:
            for s, ids in share:
                requests = [LinkRequest(a, b) for a, b in itertools.pairwise(ids)]
                services.links_connect(slice_obj=s, requests=requests)
        except BaseException as exc:  # reported below, never swallowed
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(work[t::THREADS],)) for t in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not errors, errors[:3]

    on_links = list(Link.objects.values_list("vlan", flat=True))
    assert len(on_links) == usable and len(set(on_links)) == usable  # 0 duplicates
    assert sorted(on_links) == [v for v in range(100, 4000) if v != 400]
    held = dict(SliceVlan.objects.values_list("vlan", "slice_id"))
    assert held == dict(Link.objects.values_list("vlan", "slice_id"))  # each held by its link's slice
    assert Slice.objects.filter(links__isnull=False).distinct().count() == SLICES

    # The range is full: the next link is a clear 409, and nothing was written for it.
    newcomer, ids = _chains(make_user("late"), flavor, image, [1])[0]
    with pytest.raises(Conflict) as refused:
        services.link_connect(slice_obj=newcomer, vm_a=VM(pk=ids[0]), vm_b=VM(pk=ids[1]))
    assert refused.value.code == "vlan_pool_exhausted"
    assert refused.value.status_code == 409
    assert "No free VLAN left: the global range 100-3999 is exhausted" in refused.value.message
    assert not SliceVlan.objects.filter(slice=newcomer).exists()

    # A draft slice deletes a link: its VLAN is free again, for whoever asks next.
    freed = Link.objects.filter(slice=work[500][0]).order_by("vlan").first()
    services.link_delete(link=freed)
    link = services.link_connect(slice_obj=newcomer, vm_a=VM(pk=ids[0]), vm_b=VM(pk=ids[1]))
    assert link.vlan == freed.vlan
