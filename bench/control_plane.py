"""Benchmark 1 — control-plane cost: plan building and a dry-run deploy job, against PostgreSQL.

For ring slices of 2, 8, 32 and 128 VMs placed over 2, 4, 8 and 16 registered
workers (plus a network node), measures:

- ``plan``: the pure plan builder alone (``plans.apply_plan`` on the slice's spec);
- ``request``: ``services.deploy_request(dry_run=True)`` — placement, spec, the
  Deployment row, the enqueue on commit (what the API's deploy action runs);
- ``job``: ``provisioning.jobs.run_deployment`` — the real RQ job function,
  called in this process, with the engine's dry-run runner (every step row is
  written and updated as a real job does; no host is contacted).

SQL statements are counted with ``connection.execute_wrapper`` on this thread's
connection (the job's heartbeat thread, one UPDATE every 5 s on its own
connection, is not counted). Times are medians of ``--repeat`` runs. Then the
growth against the VM count is fitted (y ~ x^k) and called linear,
sub-linear or super-linear.

Run:  .venv/bin/python bench/control_plane.py   (PostgreSQL and Redis on localhost)
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter
from contextlib import contextmanager

from common import (
    growth_label,
    linear_fit,
    log,
    machine,
    make_hosts,
    make_image,
    make_user,
    power_exponent,
    ring_slice,
    scratch_database,
    table,
)

SIZES = (2, 8, 32, 128)
HOST_COUNTS = (2, 4, 8, 16)
QUEUE = "bench-control-plane"


class QueryCounter:
    """Counts the SQL statements (and their time) run on one connection."""

    def __init__(self) -> None:
        self.count = 0
        self.seconds = 0.0
        self.kinds: Counter[str] = Counter()

    def __call__(self, execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.seconds += time.perf_counter() - started
            self.count += 1
            self.kinds[sql.lstrip().split(" ", 1)[0].upper()] += 1


@contextmanager
def counting():
    from django.db import connection

    counter = QueryCounter()
    with connection.execute_wrapper(counter):
        yield counter


def enable_workers(workers, count: int) -> None:
    from inventory.models import Host

    Host.objects.filter(pk__in=[w.pk for w in workers[:count]]).update(enabled=True)
    Host.objects.filter(pk__in=[w.pk for w in workers[count:]]).update(enabled=False)


def measure(slice_obj, user, repeat: int) -> dict:
    """Plan, request and job of ``repeat`` dry-run deploys of one slice; medians and last counts."""
    from provisioning import jobs, placement, plans, specs
    from provisioning.models import Deployment, DeploymentStep

    plan_s, request_s, job_s = [], [], []
    result: dict = {}
    for _ in range(repeat):
        where = placement.place_slice(slice_obj=slice_obj, save=False)
        spec = specs.build_spec(slice_obj=slice_obj, hosts=where.hosts)
        started = time.perf_counter()
        plan = plans.apply_plan(None, spec)
        plan_s.append(time.perf_counter() - started)

        with counting() as req_q:
            started = time.perf_counter()
            from provisioning import services

            deployment = services.deploy_request(slice_obj=slice_obj, user=user, dry_run=True)
            request_s.append(time.perf_counter() - started)
        with counting() as job_q:
            started = time.perf_counter()
            status = jobs.run_deployment(deployment.pk)
            job_s.append(time.perf_counter() - started)
        if status != Deployment.Status.SUCCEEDED:
            error = Deployment.objects.get(pk=deployment.pk).error
            raise RuntimeError(f"dry-run deployment {deployment.pk} ended {status}: {error}")
        steps = DeploymentStep.objects.filter(deployment=deployment).count()
        stats = Deployment.objects.get(pk=deployment.pk).stats
        result = {
            "steps": steps,
            "plan_steps": plan.step_count(),
            "hosts_used": len(plan.hosts()),
            "req_queries": req_q.count,
            "job_queries": job_q.count,
            "job_sql_s": job_q.seconds,
            "job_kinds": dict(job_q.kinds),
            "round_trips": sum(s["round_trips"] for s in stats.values()),
        }
    result.update(
        plan_s=statistics.median(plan_s), request_s=statistics.median(request_s), job_s=statistics.median(job_s)
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=SIZES, help="VMs per ring slice")
    parser.add_argument("--hosts", type=int, nargs="+", default=HOST_COUNTS, help="registered workers")
    parser.add_argument("--repeat", type=int, default=5, help="deploys per cell (median time)")
    parser.add_argument("--keep-db", action="store_true", help="do not drop the scratch database")
    args = parser.parse_args()

    print("# Benchmark 1: control-plane cost (plan + dry-run deploy job, PostgreSQL)")
    print(f"# machine: {machine()}")
    with scratch_database("control", keep=args.keep_db):
        from django.conf import settings

        settings.PROVISIONING_QUEUE = QUEUE
        from provisioning import queue as prov_queue

        make_image()
        workers = make_hosts(max(args.hosts))[:-1]
        user = make_user("bench", max_vms=max(args.sizes) * 2)
        slices = {}
        for size in args.sizes:
            started = time.perf_counter()
            slices[size] = ring_slice(user, f"ring{size}", size)
            log(f"ring of {size} VMs designed through the services in {time.perf_counter() - started:.1f} s")

        rows, results = [], {}
        try:
            for hosts in args.hosts:
                enable_workers(workers, hosts)
                for size in args.sizes:
                    r = measure(slices[size], user, args.repeat)
                    results[hosts, size] = r
                    rows.append(
                        [
                            size,
                            hosts,
                            r["hosts_used"],
                            r["steps"],
                            r["plan_s"] * 1000,
                            r["request_s"] * 1000,
                            r["req_queries"],
                            r["job_s"] * 1000,
                            r["job_queries"],
                            r["job_queries"] / r["steps"],
                            r["job_sql_s"] / r["job_s"] * 100 if r["job_s"] else 0.0,
                            (r["request_s"] + r["job_s"]) * 1000,
                        ]
                    )
                    log(f"{size} VMs / {hosts} workers: job {r['job_s'] * 1000:.0f} ms, {r['job_queries']} queries")
        finally:
            prov_queue.provisioning_queue().empty()  # the enqueued (never consumed) RQ jobs

        print()
        print(
            table(
                [
                    "VMs",
                    "workers",
                    "hosts in plan",
                    "steps",
                    "plan ms",
                    "request ms",
                    "request SQL",
                    "job ms",
                    "job SQL",
                    "SQL/step",
                    "SQL time %",
                    "deploy ms",
                ],
                rows,
            )
        )
        biggest = results[max(args.hosts), max(args.sizes)]
        print()
        print(f"# statements of the biggest job by kind: {biggest['job_kinds']}")
        print()
        print("# Growth against the VM count (per worker count): y ~ VMs^k over all sizes, and between the two largest")
        fit_rows = []
        tops: dict[str, list[float]] = {}
        sizes = sorted(args.sizes)
        for hosts in args.hosts:
            for label, key in (("deploy time", None), ("job SQL", "job_queries"), ("request SQL", "req_queries")):

                def value(size, key=key, hosts=hosts):
                    r = results[hosts, size]
                    return r["request_s"] + r["job_s"] if key is None else r[key]

                ys = [value(s) for s in sizes]
                k_all = power_exponent(sizes, ys)
                k_top = power_exponent(sizes[-2:], ys[-2:]) if len(sizes) >= 2 else float("nan")
                tops.setdefault(label, []).append(k_top)
                _intercept, slope = linear_fit(sizes, ys)
                # Marginal cost per added VM between the two largest sizes (fixed costs cancel out).
                marginal = (ys[-1] - ys[-2]) / (sizes[-1] - sizes[-2])
                unit = "ms/VM" if key is None else "stmts/VM"
                scale = 1000 if key is None else 1
                fit_rows.append(
                    [
                        hosts,
                        label,
                        k_all,
                        k_top,
                        f"{slope * scale:.1f} {unit}",
                        f"{marginal * scale:.1f} {unit}",
                        growth_label(k_top),
                    ]
                )
        print(
            table(
                [
                    "workers",
                    "figure",
                    "k (all sizes)",
                    "k (largest two)",
                    "fitted slope",
                    "marginal (largest two)",
                    "growth",
                ],
                fit_rows,
            )
        )
        print()
        print("# k: exponent of y ~ VMs^k; 'growth' reads k between the two largest sizes (fixed costs fade there):")
        print("# k < 0.15 constant, < 0.85 sub-linear, <= 1.15 linear, above: super-linear")
        for label, ks in tops.items():
            k = statistics.median(ks)
            print(f"VERDICT {label} vs VM count: {growth_label(k)} (k = {k:.2f}, median over {len(ks)} worker counts)")


if __name__ == "__main__":
    main()
