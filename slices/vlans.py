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
from collections.abc import Iterable, Sequence

from django.conf import settings
from django.db import connection

from . import ipam
from .errors import Conflict
from .models import INTERNET_VLAN, Link, Slice, SliceVlan

# First key of the advisory locks on candidate VLANs ("VLAN" in ASCII); the second key is the VLAN.
CLAIM_LOCK_KEY = 0x564C414E
# Free VLANs looked at per claim query beyond those asked for (others may hold some candidates' locks).
CLAIM_WINDOW = 64

# Claim and link in one statement (PostgreSQL): the VLANs the slice holds and no link uses come first
# (``spare``), the rest are claimed from the range (``picked``: try-locked candidates, only when the
# spare ones are too few); the links are written with both ends only when every one of them got a
# VLAN. Otherwise nothing is linked and the VLANs claimed stay held by the slice (spare for the next
# attempt, rolled back with the caller's transaction on a 409). The subnet of VLAN v is the v-th /24
# of the supernet and its ends get host .10 and .11 (the arithmetic of ``ipam.link_subnet``); the
# last row always comes, with the count of VLANs granted.
_CONNECT_SQL = f"""
WITH spare AS MATERIALIZED (
    SELECT h.vlan AS v FROM slices_slicevlan h
    WHERE h.slice_id = %(slice)s AND NOT EXISTS (SELECT 1 FROM slices_link l WHERE l.vlan = h.vlan)
    ORDER BY h.vlan LIMIT %(count)s
), free AS MATERIALIZED (
    SELECT v FROM generate_series(%(low)s::int, %(high)s::int) AS v
    WHERE v <> {INTERNET_VLAN} AND NOT EXISTS (SELECT 1 FROM slices_slicevlan h WHERE h.vlan = v)
    ORDER BY v
    LIMIT %(window)s
), picked AS (
    SELECT v FROM free
    WHERE (SELECT count(*) FROM spare) < %(count)s AND pg_try_advisory_xact_lock({CLAIM_LOCK_KEY}, v)
    LIMIT %(count)s - (SELECT count(*) FROM spare)
), claimed AS (
    INSERT INTO slices_slicevlan (vlan, slice_id) SELECT v, %(slice)s FROM picked
    ON CONFLICT (vlan) DO NOTHING RETURNING vlan AS v
), got AS (
    SELECT v, row_number() OVER (ORDER BY v) AS n FROM (SELECT v FROM spare UNION ALL SELECT v FROM claimed) AS x
), new AS (
    INSERT INTO slices_link (slice_id, a_id, b_id, vlan, subnet, created)
    SELECT %(slice)s, e.a, e.b, g.v, network(set_masklen(%(supernet)s::inet + g.v::bigint * 256, 24))::text, now()
    FROM got AS g JOIN unnest(%(a)s::bigint[], %(b)s::bigint[]) WITH ORDINALITY AS e (a, b, n) ON e.n = g.n
    WHERE (SELECT count(*) FROM got) = %(count)s
    RETURNING id, a_id, b_id, vlan, subnet, created
), ends AS (
    UPDATE slices_interface AS i
    SET vlan = x.v, ip_address = host(%(supernet)s::inet + (x.v::bigint * 256 + x.host))::inet, lease_address = NULL
    FROM (
        SELECT a_id AS id, vlan AS v, {ipam.DHCP_FIRST_HOST} AS host FROM new
        UNION ALL SELECT b_id, vlan, {ipam.DHCP_FIRST_HOST + 1} FROM new
    ) AS x
    WHERE i.id = x.id
)
SELECT n.id, n.a_id, n.vlan, n.subnet, n.created, c.granted
FROM (SELECT count(*) AS granted FROM got) AS c LEFT JOIN new AS n ON true
"""  # noqa: S608 - constants from code; every value is a parameter
# The materialised CTE ``free`` yields candidates in order and the LIMIT of ``picked`` stops
# pulling rows once it has enough: only the VLANs returned are try-locked, never the whole
# window. The claim does nothing for a VLAN another claimer committed after our snapshot.


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


def claim_and_link(slice_obj: Slice, ends: Sequence[tuple[int, int]]) -> list[tuple]:
    """PostgreSQL: VLANs for ``len(ends)`` new links of the slice and the links themselves, in one statement.

    ``ends``: (interface a, interface b) per link. The links get the lowest VLANs the
    slice holds unused, then the lowest free ones of the range, in order. Returns
    ``(link id, a id, vlan, subnet, created)`` per link; raises :class:`VlansExhausted`
    when the range has too few (the caller's transaction rolls back what was claimed).
    The caller holds the slice's row lock inside a transaction.
    """
    low, high = vlan_range()
    count = len(ends)
    params = {
        "slice": slice_obj.pk,
        "count": count,
        "low": low,
        "high": high,
        "window": count + CLAIM_WINDOW,
        "supernet": settings.SLICE_LINK_SUPERNET,
        "a": [a for a, _ in ends],
        "b": [b for _, b in ends],
    }
    with connection.cursor() as cursor:
        while True:
            cursor.execute(_CONNECT_SQL, params)
            rows = cursor.fetchall()
            if rows[0][0] is not None:
                return [row[:5] for row in rows]
            # Too few VLANs this round: others hold the candidates' locks or committed some of them
            # after our snapshot (what we claimed stays ours: spare next round, on a fresh snapshot).
            if not _any_free(cursor, low, high):
                raise VlansExhausted(rows[0][5])
            time.sleep(0.001)  # every free VLAN is some claimer's candidate: it commits or rolls back soon


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

    Any database but PostgreSQL (there :func:`claim_and_link` does this and the links in one statement).

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
        try:
            spare += _claim_other(slice_obj, missing)
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
