"""VLAN pools: a slice holds single VLANs of the global range; its links take VLANs from them.

A slice's pool is its ``SliceVlan`` rows. A link takes a VLAN its slice holds
and no link of it uses (the lowest), else the slice claims the lowest VLAN of
the global range nobody holds. Nothing is reserved ahead, so every VLAN of the
range can be on a link at once, however many slices hold them.

Correctness under concurrency rests on the database: ``SliceVlan.vlan`` is the
primary key and ``Link.vlan`` is unique, so a race can only end in an insert
that does nothing (``ON CONFLICT DO NOTHING``, then the claimer tries again
with another VLAN), never in a shared VLAN. Callers hold the slice's row lock
(``select_for_update``), which serialises allocations inside one slice.

Speed under concurrency (PostgreSQL): claimers never wait on each other. A
candidate VLAN is taken only with ``pg_try_advisory_xact_lock(KEY, vlan)``,
which a concurrent claimer of the same VLAN holds until its transaction ends,
so sixteen clients claiming at once each get a different VLAN at the first
attempt instead of queueing on the lowest one's uncommitted row. The lock is
an optimisation, not the guarantee: one released by a commit after our
snapshot lets two claimers pick the same VLAN, and the primary key then makes
the second insert a no-op. On SQLite, writes are serialised by the database
lock anyway.
"""

import time
from collections.abc import Iterable

from django.conf import settings
from django.db import connection

from .errors import Conflict
from .models import INTERNET_VLAN, Link, Slice, SliceVlan

# First key of the advisory locks on candidate VLANs ("VLAN" in ASCII); the second key is the VLAN.
CLAIM_LOCK_KEY = 0x564C414E
# Free VLANs looked at per claim query beyond those asked for (others may hold some candidates' locks).
CLAIM_WINDOW = 64

_CLAIM_SQL = f"""
WITH free AS MATERIALIZED (
    SELECT v FROM generate_series(%(low)s::int, %(high)s::int) AS v
    WHERE v <> {INTERNET_VLAN} AND NOT EXISTS (SELECT 1 FROM slices_slicevlan h WHERE h.vlan = v)
    ORDER BY v
    LIMIT %(window)s
), picked AS (
    SELECT v FROM free WHERE pg_try_advisory_xact_lock({CLAIM_LOCK_KEY}, v) LIMIT %(count)s
)
INSERT INTO slices_slicevlan (vlan, slice_id) SELECT v, %(slice)s FROM picked
ON CONFLICT (vlan) DO NOTHING RETURNING vlan
"""  # noqa: S608 - constants from code; every value is a parameter
# The materialised CTE yields candidates in order and the LIMIT of ``picked`` stops pulling
# rows once it has enough: only the VLANs returned are try-locked, never the whole window.
# The insert does nothing for a VLAN another claimer committed after our snapshot.

_SPARE_SQL = (
    "SELECT h.vlan FROM slices_slicevlan h WHERE h.slice_id = %s AND NOT EXISTS "
    "(SELECT 1 FROM slices_link l WHERE l.vlan = h.vlan) ORDER BY h.vlan LIMIT %s"
)


def vlan_range() -> tuple[int, int]:
    """The global link VLAN range (inclusive), from settings."""
    return settings.SLICE_VLAN_MIN, settings.SLICE_VLAN_MAX


def usable_count() -> int:
    """How many VLANs of the global range can be given to links (VLAN 400 never is)."""
    low, high = vlan_range()
    return high - low + 1 - (1 if low <= INTERNET_VLAN <= high else 0)


class VlansExhausted(Conflict):
    """No VLAN left for the next link (409); ``granted`` says how many of those asked for were available."""

    def __init__(self, granted: int):
        low, high = vlan_range()
        super().__init__(f"No free VLAN left: the global range {low}-{high} is exhausted.", code="vlan_pool_exhausted")
        self.granted = granted


def _claim_postgresql(slice_obj: Slice, count: int) -> list[int]:
    low, high = vlan_range()
    got: list[int] = []
    with connection.cursor() as cursor:
        while len(got) < count:
            want = count - len(got)
            params = {"low": low, "high": high, "window": want + CLAIM_WINDOW, "count": want, "slice": slice_obj.pk}
            cursor.execute(_CLAIM_SQL, params)
            claimed = [row[0] for row in cursor.fetchall()]
            if not claimed:
                if not _any_free(cursor, low, high):
                    raise VlansExhausted(len(got))
                time.sleep(0.001)  # every free VLAN is some claimer's candidate: it commits or rolls back soon
            got += claimed
            # Fewer than asked: others hold the candidates' locks or committed some of them
            # after our snapshot; the next round reads a fresh snapshot and new candidates.
    return got


def _any_free(cursor, low: int, high: int) -> bool:
    cursor.execute(
        f"SELECT EXISTS (SELECT 1 FROM generate_series(%s::int, %s::int) AS v WHERE v <> {INTERNET_VLAN} "  # noqa: S608
        "AND NOT EXISTS (SELECT 1 FROM slices_slicevlan h WHERE h.vlan = v))",
        [low, high],
    )
    return cursor.fetchone()[0]


def _claim_other(slice_obj: Slice, count: int) -> list[int]:
    """Any other database (SQLite): writes are serialised, the first free VLANs are ours."""
    low, high = vlan_range()
    taken = set(SliceVlan.objects.filter(vlan__gte=low, vlan__lte=high).values_list("vlan", flat=True))
    free = (v for v in range(low, high + 1) if v != INTERNET_VLAN and v not in taken)
    got = [v for _, v in zip(range(count), free, strict=False)]
    if len(got) < count:
        raise VlansExhausted(len(got))
    SliceVlan.objects.bulk_create([SliceVlan(vlan=v, slice=slice_obj) for v in got])
    return got


def allocate_vlans(slice_obj: Slice, count: int) -> list[int]:
    """``count`` distinct VLANs for new links of the slice, lowest first (409 when the range is full).

    VLANs the slice holds and no link of it uses come first; the rest are
    claimed from the global range. All or nothing: on a 409 the caller's
    transaction rolls back whatever was claimed. The caller must hold the
    slice's row lock inside a transaction.
    """
    if count <= 0:
        return []
    with connection.cursor() as cursor:
        cursor.execute(_SPARE_SQL, [slice_obj.pk, count])
        spare = [row[0] for row in cursor.fetchall()]
    missing = count - len(spare)
    if missing:
        claim = _claim_postgresql if connection.vendor == "postgresql" else _claim_other
        try:
            spare += claim(slice_obj, missing)
        except VlansExhausted as exc:
            raise VlansExhausted(len(spare) + exc.granted) from None
    return sorted(spare)


def allocate_vlan(slice_obj: Slice) -> int:
    """The next VLAN for a new link of the slice (see :func:`allocate_vlans`)."""
    return allocate_vlans(slice_obj, 1)[0]


def release_unused(slice_obj: Slice) -> int:
    """Give back the VLANs the slice holds that no link of it uses; returns how many.

    Only for a slice with nothing on the hosts (draft): a deployed slice keeps
    them so a VLAN still configured on the hosts is never handed to another
    slice before a redeploy or destroy has removed it.
    """
    deleted, _ = (
        SliceVlan.objects.filter(slice=slice_obj)
        .exclude(vlan__in=Link.objects.filter(slice=slice_obj).values("vlan"))
        .delete()
    )
    return deleted


def ranges(vlans: Iterable[int]) -> list[str]:
    """VLANs as sorted runs, the way people read a pool: ``[100, 101, 102, 105]`` -> ``["100-102", "105"]``."""
    out: list[str] = []
    run: list[int] = []
    for v in sorted(vlans):
        if run and v == run[-1] + 1:
            run.append(v)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [v]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return out
