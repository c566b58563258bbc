"""Benchmark 4 — VLAN allocation: links created per second by 1, 4 and 16 concurrent clients.

Each client is a separate process (its own Django set-up and PostgreSQL
connection) that calls ``slices.services.link_connect`` — the service the API's
``POST /api/links/`` calls — in a loop over VMs prepared beforehand (a chain per
client: vm0-vm1, vm1-vm2, ...). Two modes:

- ``own``: every client links inside a slice of its own (different users): the
  slices' row locks never meet; every link claims a VLAN from the global range
  (try-locked candidates: claimers skip each other's, nobody waits);
- ``shared``: every client links inside one slice: the slice row lock
  serialises them (the designed behaviour for edits of one slice).

The clocks start when every client is connected and waiting at a barrier. After
each run the database is checked: a VLAN on two links, a VLAN on interfaces of
two slices, or a link whose VLAN its slice does not hold is a duplicate
(must be 0).

Then one bulk request per ``--bulk`` size (``POST /api/slices/{id}/links/bulk/``
through the API in this process, a chain of that many links): links/s.

Run:  .venv/bin/python bench/vlan_alloc.py   (PostgreSQL on localhost)
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing as mp
import time
import traceback

from common import database_url, log, machine, make_image, make_user, percentile, scratch_database, setup_django, table

CLIENTS = (1, 4, 16)
MODES = ("own", "shared")
TOTAL_LINKS = 480  # links per run, shared among the clients (so every run does the same work)


def client(url: str, slice_id: int, vm_ids: list[int], barrier, results) -> None:
    """One client process: link vm_ids[i] to vm_ids[i+1] for every i, timing each call."""
    try:
        setup_django(url)
        from django.db import connection

        from slices import services
        from slices.errors import ServiceError
        from slices.models import VM, Slice

        slice_obj = Slice.objects.get(pk=slice_id)
        vms = {vm.pk: vm for vm in VM.objects.filter(pk__in=vm_ids)}
        connection.ensure_connection()  # connected before the clock starts
    except Exception:
        barrier.abort()
        results.put({"error": traceback.format_exc()})
        return
    latencies, errors = [], []
    barrier.wait()
    started = time.monotonic()
    for a, b in itertools.pairwise(vm_ids):
        t0 = time.monotonic()
        try:
            services.link_connect(slice_obj=slice_obj, vm_a=vms[a], vm_b=vms[b])
        except ServiceError as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            continue
        except Exception as exc:  # a 500 in the API: count it, keep going
            errors.append(f"{type(exc).__name__}: {exc}")
            connection.close()
            continue
        latencies.append(time.monotonic() - t0)
    results.put({"started": started, "ended": time.monotonic(), "latencies": latencies, "errors": errors})


def prepare(mode: str, clients: int, links_per_client: int, run: int) -> list[tuple[int, list[int]]]:
    """Slices and VMs for one run: [(slice id, [vm ids of the client's chain])] per client."""
    from slices import services

    assignments = []
    shared = None
    if mode == "shared":
        owner = make_user(f"r{run}-shared", max_vms=clients * (links_per_client + 1) + 1)
        shared = services.slice_create(owner=owner, name=f"run{run}")
    for c in range(clients):
        if shared is None:
            owner = make_user(f"r{run}-c{c}", max_vms=links_per_client + 1)
            slice_obj = services.slice_create(owner=owner, name=f"run{run}")
        else:
            slice_obj = shared
        vm_ids = [
            services.vm_create(slice_obj=slice_obj, name=f"c{c}vm{i}", data_interfaces_count=2).pk
            for i in range(links_per_client + 1)
        ]
        assignments.append((slice_obj.pk, vm_ids))
    return assignments


def duplicates(slice_ids: list[int]) -> dict[str, int]:
    """Integrity after a run, over every link in the database (0 everywhere = correct)."""
    from django.db import connection

    queries = {
        "vlan on 2+ links": "SELECT count(*) FROM (SELECT vlan FROM slices_link GROUP BY vlan HAVING count(*) > 1) d",
        "vlan in 2+ slices": (
            "SELECT count(*) FROM (SELECT i.vlan FROM slices_interface i JOIN slices_vm v ON v.id = i.vm_id "
            "WHERE i.vlan IS NOT NULL AND i.vlan <> 400 GROUP BY i.vlan HAVING count(DISTINCT v.slice_id) > 1) d"
        ),
        "link outside pool": (
            "SELECT count(*) FROM slices_link l WHERE NOT EXISTS (SELECT 1 FROM slices_slicevlan h "
            "WHERE h.slice_id = l.slice_id AND h.vlan = l.vlan)"
        ),
        "end without the link's vlan": (
            "SELECT count(*) FROM slices_link l JOIN slices_interface a ON a.id = l.a_id "
            "JOIN slices_interface b ON b.id = l.b_id WHERE a.vlan IS DISTINCT FROM l.vlan "
            "OR b.vlan IS DISTINCT FROM l.vlan"
        ),
    }
    with connection.cursor() as cursor:
        out = {}
        for name, sql in queries.items():
            cursor.execute(sql)
            out[name] = cursor.fetchone()[0]
    return out


def run_once(url: str, mode: str, clients: int, run: int) -> dict:
    from slices.models import Link, Slice

    per_client = max(1, TOTAL_LINKS // clients)
    started = time.perf_counter()
    assignments = prepare(mode, clients, per_client, run)
    log(f"{mode}/{clients}: {clients * (per_client + 1)} VMs prepared in {time.perf_counter() - started:.1f} s")
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(clients + 1, timeout=120)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=client, args=(url, slice_id, vm_ids, barrier, results), name=f"vlan-client-{i}")
        for i, (slice_id, vm_ids) in enumerate(assignments)
    ]
    for proc in procs:
        proc.start()
    try:
        barrier.wait()
        t0 = time.monotonic()
        outcomes = [results.get(timeout=600) for _ in procs]
    finally:
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()  # our own child, by its handle
    broken = [o["error"] for o in outcomes if "error" in o]
    if broken:
        raise RuntimeError("a client failed to start:\n" + broken[0])
    wall = max(o["ended"] for o in outcomes) - t0
    latencies = [x for o in outcomes for x in o["latencies"]]
    # Does a link cost more as the slice fills up? p50 of each client's last tenth over its first tenth.
    tenth = [max(1, len(o["latencies"]) // 10) for o in outcomes]
    early = [x for o, n in zip(outcomes, tenth, strict=True) for x in o["latencies"][:n]]
    late = [x for o, n in zip(outcomes, tenth, strict=True) for x in o["latencies"][-n:]]
    errors = [e for o in outcomes for e in o["errors"]]
    slice_ids = sorted({s for s, _ in assignments})
    created = Link.objects.filter(slice_id__in=slice_ids).count()
    dup = duplicates(slice_ids)
    Slice.objects.filter(pk__in=slice_ids).delete()  # VMs, links and held VLANs go with them
    return {
        "mode": mode,
        "clients": clients,
        "links": created,
        "expected": clients * per_client,
        "errors": len(errors),
        "first_error": errors[0] if errors else "",
        "wall": wall,
        "rate": created / wall if wall else float("nan"),
        "p50": percentile(latencies, 50) * 1000,
        "p95": percentile(latencies, 95) * 1000,
        "late_early": percentile(late, 50) / percentile(early, 50) if early and late else float("nan"),
        "duplicates": dup,
    }


def bulk_once(links: int, run: int) -> dict:
    """One ``POST /api/slices/{id}/links/bulk/`` of ``links`` links (a chain), through the API in-process."""
    from rest_framework.test import APIClient

    from slices import services
    from slices.models import VM, Interface, Link, Slice

    owner = make_user(f"r{run}-bulk", max_vms=links + 1)
    slice_obj = services.slice_create(owner=owner, name=f"bulk{run}")
    flavor, image = services.default_flavor(), services.default_image()
    vms = VM.objects.bulk_create(
        VM(slice=slice_obj, name=f"vm{i}", flavor=flavor, image=image, data_interfaces_count=2)
        for i in range(links + 1)
    )
    Interface.objects.bulk_create(
        Interface(vm=vm, index=i, mac=f"52:55:{vm.pk >> 16 & 255:02x}:{vm.pk >> 8 & 255:02x}:{vm.pk & 255:02x}:0{i}")
        for vm in vms
        for i in range(3)
    )
    body = {"links": [{"vm_a": a.pk, "vm_b": b.pk} for a, b in itertools.pairwise(vms)]}
    client = APIClient(SERVER_NAME="localhost")
    client.force_authenticate(owner)
    t0 = time.perf_counter()
    response = client.post(f"/api/slices/{slice_obj.pk}/links/bulk/", body, format="json")
    wall = time.perf_counter() - t0
    created = Link.objects.filter(slice=slice_obj).count()
    dup = duplicates([slice_obj.pk])
    Slice.objects.filter(pk=slice_obj.pk).delete()
    return {"status": response.status_code, "links": created, "wall": wall, "duplicates": dup}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=CLIENTS)
    parser.add_argument("--modes", nargs="+", default=MODES, choices=MODES)
    parser.add_argument("--bulk", type=int, nargs="*", default=[500, 2000], help="links per bulk request")
    parser.add_argument("--keep-db", action="store_true", help="do not drop the scratch database")
    args = parser.parse_args()

    print("# Benchmark 4: VLAN allocation (link_connect) by concurrent client processes, PostgreSQL")
    print(f"# machine: {machine()}")
    with scratch_database("vlan", keep=args.keep_db) as name:
        url = database_url(name)
        setup_django(url)
        make_image()
        rows, total_dups = [], 0
        run = 0
        for mode in args.modes:
            for clients in args.clients:
                run += 1
                r = run_once(url, mode, clients, run)
                dups = sum(r["duplicates"].values())
                total_dups += dups
                rows.append(
                    [
                        r["mode"],
                        r["clients"],
                        f"{r['links']}/{r['expected']}",
                        r["errors"],
                        r["wall"],
                        r["rate"],
                        r["p50"],
                        r["p95"],
                        r["late_early"],
                        dups,
                    ]
                )
                detail = ", ".join(f"{k} {v}" for k, v in r["duplicates"].items())
                log(f"{mode}/{clients}: {r['rate']:.0f} links/s; integrity: {detail}")
                if r["first_error"]:
                    log(f"first error: {r['first_error']}")
        print()
        print(
            table(
                [
                    "slices",
                    "clients",
                    "links",
                    "errors",
                    "wall s",
                    "links/s",
                    "p50 ms",
                    "p95 ms",
                    "last/first",
                    "duplicates",
                ],
                rows,
            )
        )
        print("# last/first: p50 latency of each client's last tenth of links over its first tenth")
        print()
        bulk_rows = []
        for links in args.bulk:
            run += 1
            r = bulk_once(links, run)
            dups = sum(r["duplicates"].values())
            total_dups += dups
            bulk_rows.append([links, r["status"], r["links"], r["wall"], r["links"] / r["wall"], dups])
            log(f"bulk/{links}: {r['links'] / r['wall']:.0f} links/s, HTTP {r['status']}")
        if bulk_rows:
            print("One `POST /api/slices/{id}/links/bulk/` (API in-process: parsing, checks, VLANs, writes, response):")
            print()
            print(table(["links asked", "HTTP", "links made", "wall s", "links/s", "duplicates"], bulk_rows))
            print()
        print(f"VERDICT duplicates over all runs: {total_dups} (must be 0)")


if __name__ == "__main__":
    main()
