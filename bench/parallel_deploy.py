"""Benchmark 8 — slices deployed at once on the lab by several RQ workers, beside the floor.

Portal: ``POST /api/slices/{id}/deploy/`` for every slice, one right after the
other (the real view, in this process), taken by as many ``manage.py rqworker
provisioning`` processes as there are slices -> Fabric over SSH to the lab
hosts. The clock starts just before the first request and stops when **every VM
of every slice has its lease on every linked NIC and pinged its ring
neighbour** (the guests' own console lines, as in benchmark 3).

Floor: after the portal's destroys, the very same guests (each slice's plan
from its deployment's stored spec: same VMs, MACs, TAPs, VLANs, dnsmasq and
QEMU argv) are started **at once** by one bare script per host holding every
slice's commands (a command two slices share, e.g. an isolation chain, once),
in the lab hosts' namespaces: no portal, no SSH, no queue, no lock. Same clock,
same readiness test. The guests share the machine's two cores in both runs, so
this is the yardstick, not the sum or the max of separate runs.

Printed: both times and the ratio (``RATIO`` line), and a per-job **timeline**
from the step rows: when each job's phases ran on each host. The shared phases
(``isolation``, ``internet``: the network node's iptables chains, VLAN 400 and
NAT) never overlap between jobs — they run under a lock per network node — while
everything else of the jobs (VLANs, TAPs, ports, QEMU) runs at the same time.

Run (root):  .venv/bin/python bench/parallel_deploy.py [--slices 2] [--vms 2]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

from common import log, machine, make_user, ring_slice, table
from common import scratch_database as scratch
from labkit import (
    LabSession,
    RqWorker,
    api_action,
    api_client,
    assert_fresh,
    bare_run,
    bare_teardown,
    deployment_gave_up,
    destroy_quietly,
    require_root,
    ring_ends,
    wait_deployment,
    wait_ready,
    wait_registered,
)

SHARED_PHASES = ("isolation", "internet", "leave-internet", "teardown-internet", "teardown-isolation")


def ready_all(ends_by_slice: dict, t0: float, gave_up=None) -> float:
    """Seconds from ``t0`` until every slice's guests are leased and pinging (slices watched at once)."""
    results: dict[int, float] = {}
    errors: list[str] = []

    def one(key: int) -> None:
        try:
            results[key] = wait_ready(ends_by_slice[key], t0, gave_up=gave_up(key) if gave_up else None)
        except Exception as exc:
            errors.append(f"slice {key}: {exc}")

    threads = [threading.Thread(target=one, args=(k,)) for k in ends_by_slice]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError("; ".join(errors))
    return max(results.values())


def timeline(deps: list, t0_wall: float) -> list[list]:
    """Rows (start, end, job, host, phase, steps, note) from the jobs' step rows, by start time."""
    from provisioning.models import DeploymentStep

    rows = []
    for label, dep in deps:
        rows.append([dep.started.timestamp() - t0_wall, None, label, "", "job started", "", dep.worker])
        rows.append([dep.finished.timestamp() - t0_wall, None, label, "", "job ended", "", dep.status])
        spans: dict[tuple[str, str], list] = {}
        for st in DeploymentStep.objects.filter(deployment=dep, started__isnull=False).order_by("seq"):
            key = (st.host, st.phase)
            span = spans.setdefault(key, [st.started, st.finished or st.started, 0, 0])
            span[0], span[1] = min(span[0], st.started), max(span[1], st.finished or st.started)
            span[2] += 1
            span[3] += st.status == "ok"
        for (host, phase), (start, end, count, ran) in spans.items():
            note = "shared: under the network node's lock" if phase in SHARED_PHASES else ""
            if phase == "vms":
                firsts = DeploymentStep.objects.filter(
                    deployment=dep, host=host, description__startswith="Start QEMU"
                ).values_list("started", flat=True)
                starts = [s.timestamp() - t0_wall for s in firsts if s]
                note = f"QEMU started at +{min(starts):.2f} .. +{max(starts):.2f}" if starts else ""
            rows.append(
                [start.timestamp() - t0_wall, end.timestamp() - t0_wall, label, host, phase, f"{ran}/{count}", note]
            )
    rows.sort(key=lambda r: r[0])
    return [[f"+{r[0]:.2f}", f"+{r[1]:.2f}" if r[1] is not None else "", *r[2:]] for r in rows]


def overlaps(rows: list[list]) -> list[str]:
    """Pairs of shared-phase spans of different jobs that overlap in time (must be none)."""
    spans = [(float(r[0]), float(r[1]), r[2], r[4]) for r in rows if r[4] in SHARED_PHASES and r[1]]
    found = []
    for i, (s1, e1, j1, p1) in enumerate(spans):
        for s2, e2, j2, p2 in spans[i + 1 :]:
            if j1 != j2 and s1 < e2 and s2 < e1:
                found.append(f"{j1} {p1} [{s1:.2f}, {e1:.2f}] and {j2} {p2} [{s2:.2f}, {e2:.2f}]")
    return found


def portal_run(slices: list, client, worker) -> dict:
    ends = {s.pk: ring_ends(s) for s in slices}
    for e in ends.values():
        assert_fresh(e)
    t0_wall, t0 = time.time(), time.monotonic()
    dep_ids = {s.pk: api_action(client, s.pk, "deploy") for s in slices}
    ready = ready_all(ends, t0, gave_up=lambda key: deployment_gave_up(dep_ids[key], worker))
    deps = {key: wait_deployment(dep_id, worker) for key, dep_id in dep_ids.items()}
    for dep in deps.values():
        if dep.status != "succeeded":
            raise RuntimeError(f"deploy failed: {dep.error}")
    labels = [(chr(ord("A") + i), deps[s.pk]) for i, s in enumerate(slices)]
    rows = timeline(labels, t0_wall)
    destroy_ids = [api_action(client, s.pk, "destroy") for s in slices]  # at once, too
    for dep_id in destroy_ids:
        gone = wait_deployment(dep_id, worker)
        if gone.status != "succeeded":
            raise RuntimeError(f"destroy failed: {gone.error}")
    return {"ready": ready, "rows": rows, "specs": [deps[s.pk].spec for s in slices], "labels": labels}


def bare_all(lab, plans_) -> float:
    """Every slice's plan at once: one bare script per host, commands two slices share only once."""
    by_host: dict[str, dict[tuple, None]] = {}
    for plan in plans_:
        for stage in plan.stages:
            for phase in stage.phases:
                cmds = by_host.setdefault(phase.host, {})
                for cmd in phase.commands:
                    cmds.setdefault(tuple(cmd.argv), None)
    started = time.monotonic()
    errors: list[str] = []

    def one(host: str) -> None:
        try:
            bare_run(lab, host, list(by_host[host]))
        except Exception as exc:
            errors.append(str(exc))

    threads = [threading.Thread(target=one, args=(h,)) for h in by_host]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError("; ".join(errors))
    return time.monotonic() - started


def floor_run(slices: list, lab, spec_dicts: list[dict]) -> dict:
    from provisioning import plans

    specs_ = [plans.SliceSpec.from_dict(d) for d in spec_dicts]
    ends = {s.pk: ring_ends(s) for s in slices}
    for e in ends.values():
        assert_fresh(e)
    t0 = time.monotonic()
    try:
        script_s = bare_all(lab, [plans.deploy_plan(spec) for spec in specs_])
        ready = ready_all(ends, t0)
    finally:
        for i, spec in enumerate(specs_):  # the last one removes the shared things
            last = i == len(specs_) - 1
            bare_teardown(lab, plans.destroy_plan(replace(spec, keep_isolation=not last, keep_internet=not last)))
    return {"ready": ready, "script": script_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slices", type=int, default=2, help="slices deployed at once (one RQ worker each)")
    parser.add_argument("--vms", type=int, default=2, help="VMs per ring slice")
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="portal+floor pairs (median; the workers keep their SSH connections from one to the next)",
    )
    parser.add_argument("--keep-lab", action="store_true", help="leave the lab up if this run brought it up")
    parser.add_argument("--take-over-lab", action="store_true", help="rebuild the lab even if another LAB_DIR has it")
    parser.add_argument("--keep-db", action="store_true", help="do not drop the scratch database")
    args = parser.parse_args()
    require_root()

    print(f"# Benchmark 8: {args.slices} slices x {args.vms} VMs deployed at once by {args.slices} RQ workers")
    print(f"# machine: {machine()}")
    with (
        scratch("lab_parallel", keep=args.keep_db),
        LabSession(keep_lab=args.keep_lab, take_over=args.take_over_lab) as lab,
        tempfile.TemporaryDirectory(prefix="bench-parallel-") as tmp,
        contextlib.ExitStack() as workers,
    ):
        from inventory.models import Host

        started = [workers.enter_context(RqWorker(Path(tmp) / f"rqworker{i}.log")) for i in range(args.slices)]
        worker = started[-1]
        log(f"{len(started)} RQ workers ready in {wait_registered(started):.1f} s (not in the figures)")
        accels = lab.probe_accel()
        for name, (accel, seconds) in accels.items():
            log(f"{name}: KVM probe says {accel} ({seconds:.1f} s, once per worker; not in the figures)")
        user = make_user("bench-parallel", max_vms=args.slices * args.vms * 2)
        hosts = list(Host.objects.filter(name__in=["worker1", "worker2"]).order_by("name"))
        client = api_client(user)
        slices = [ring_slice(user, f"par{i + 1}", args.vms, hosts=hosts) for i in range(args.slices)]
        portal, floor = [], []
        for _ in range(args.repeat):
            try:
                p = portal_run(slices, client, worker)
            except Exception:
                for s in slices:
                    destroy_quietly(client, s, worker)
                raise
            log(f"portal: every guest of {args.slices} slices ready in {p['ready']:.1f} s")
            f = floor_run(slices, lab, p["specs"])
            log(f"floor:  every guest ready in {f['ready']:.1f} s (scripts {f['script']:.2f} s)")
            portal.append(p)
            floor.append(f)
        p_ready = statistics.median(p["ready"] for p in portal)
        f_ready = statistics.median(f["ready"] for f in floor)
        ratio = p_ready / f_ready
        last = portal[-1]
        print()
        print(f"# guests: {', '.join(sorted({a for a, _ in accels.values()})).upper()}, 1 vCPU / 128 MiB each")
        print(
            table(
                ["slices", "VMs each", "RQ workers", "portal s", "floor s", "portal/floor"],
                [[args.slices, args.vms, args.slices, p_ready, f_ready, f"{ratio:.2f}"]],
            )
        )
        print()
        jobs = ", ".join(f"{label} = slice {dep.slice_id} (deployment {dep.pk})" for label, dep in last["labels"])
        print(f"# per-job timeline of the last portal run (s from the first request; {jobs}); steps: ran/all")
        print(table(["start", "end", "job", "host", "phase", "steps", "note"], last["rows"]))
        clash = overlaps(last["rows"])
        print()
        print(f"# shared phases of different jobs overlapping in time: {len(clash)} (must be 0)")
        for line in clash:
            print(f"#   {line}")
        print(f"RATIO parallel {args.slices} slices x {args.vms} VMs: portal / floor = {ratio:.2f}")


if __name__ == "__main__":
    main()
