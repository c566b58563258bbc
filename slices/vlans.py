"""VLAN pools: each slice holds blocks of the global range; links take VLANs from them.

Correctness under concurrency rests on the database: ``VlanBlock.index`` and
``Link.vlan`` are unique, so a race can only end in an IntegrityError, which
the allocator turns into a retry (another block) — never in a shared VLAN.
Callers hold the slice's row lock (``select_for_update``), which serialises
allocations inside one slice.

Claiming a block additionally takes a transaction-scoped PostgreSQL advisory
lock, held until the claiming transaction ends. After it, the set of taken
blocks read is exact (every earlier claimer has committed or rolled back), so
claimers never wait on each other's uncommitted block rows: without it, two
transactions that each claim several blocks (a template or an import creating
many links at once) could each hold a block the other then tries, a deadlock
PostgreSQL breaks by failing one of them. The lowest-first scan makes that
rare, the lock makes it impossible. Block claims are rare (one per
``SLICE_VLAN_BLOCK_SIZE`` links), so serialising them costs little. On SQLite,
writes are serialised by the database lock anyway.
"""

from django.conf import settings
from django.db import IntegrityError, connection, transaction

from .errors import Conflict
from .models import INTERNET_VLAN, Link, Slice, VlanBlock


def vlan_range() -> tuple[int, int]:
    """The global link VLAN range (inclusive), from settings."""
    return settings.SLICE_VLAN_MIN, settings.SLICE_VLAN_MAX


# Key of the advisory lock that serialises block claims ("VLAN" in ASCII).
BLOCK_CLAIM_LOCK_KEY = 0x564C414E


def block_count() -> int:
    """How many blocks the global range holds (the last one may be shorter)."""
    low, high = vlan_range()
    return (high - low) // settings.SLICE_VLAN_BLOCK_SIZE + 1


def block_bounds(index: int) -> tuple[int, int]:
    """First and last VLAN of block ``index`` (the last block may be shorter)."""
    low, high = vlan_range()
    first = low + index * settings.SLICE_VLAN_BLOCK_SIZE
    return first, min(first + settings.SLICE_VLAN_BLOCK_SIZE - 1, high)


def _usable(first: int, last: int) -> list[int]:
    return [v for v in range(first, last + 1) if v != INTERNET_VLAN]


def _lock_block_claims() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [BLOCK_CLAIM_LOCK_KEY])


def _claim_block(slice_obj: Slice) -> VlanBlock:
    """Reserve the lowest free block of the global range for the slice (409 when none)."""
    _lock_block_claims()
    taken = set(VlanBlock.objects.values_list("index", flat=True))
    for index in range(block_count()):
        if index in taken:
            continue
        first, last = block_bounds(index)
        if not _usable(first, last):
            continue
        try:
            with transaction.atomic():
                return VlanBlock.objects.create(slice=slice_obj, index=index, first_vlan=first, last_vlan=last)
        except IntegrityError:
            continue  # another slice claimed it a moment ago: try the next one
    low, high = vlan_range()
    raise Conflict(f"No free VLAN left: the global range {low}-{high} is exhausted.", code="vlan_pool_exhausted")


def allocate_vlan(slice_obj: Slice) -> int:
    """The next free VLAN of the slice's pool, claiming another block when it is full.

    The caller must hold the slice's row lock inside a transaction.
    """
    used = set(Link.objects.filter(slice=slice_obj).values_list("vlan", flat=True))
    for block in slice_obj.vlan_blocks.order_by("index"):
        for vlan in _usable(block.first_vlan, block.last_vlan):
            if vlan not in used:
                return vlan
    block = _claim_block(slice_obj)
    return _usable(block.first_vlan, block.last_vlan)[0]


def release_empty_blocks(slice_obj: Slice) -> int:
    """Give back the slice's blocks that hold no link; returns how many.

    Only for a slice with nothing on the hosts (draft): a deployed slice keeps
    its blocks so a VLAN still configured on the hosts is never handed to
    another slice before a redeploy or destroy has removed it.
    """
    used = set(Link.objects.filter(slice=slice_obj).values_list("vlan", flat=True))
    empty = [
        block.pk
        for block in slice_obj.vlan_blocks.all()
        if not any(block.first_vlan <= v <= block.last_vlan for v in used)
    ]
    VlanBlock.objects.filter(pk__in=empty).delete()
    return len(empty)
