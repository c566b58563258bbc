"""Benchmark 3 — real deploy latency on the lab, beside the floor, for rings of 2, 4 and 6 VMs.

Portal: ``POST /api/slices/{id}/deploy/`` (the real view, in this process) ->
the job on a real ``manage.py rqworker provisioning`` process (Redis, scratch
PostgreSQL) -> Fabric over SSH to the lab hosts. The clock starts just before
the request and stops when **every VM has its lease on every linked NIC and a
ping to its ring neighbour succeeded**: the leases are read from the guests'
own ``SP: DHCP ethN ok`` lines (their ``console.log``), the pings are typed on
their serial consoles (``provisioning.lab.console``).

Floor: after the portal's destroy, the very same plan (same VMs, MACs, TAPs,
VLANs, ports, dnsmasq and QEMU argv, from the deployment's stored spec) is run
directly in the lab hosts' namespaces by a bare script per host
(``ip netns exec HOST sh -c``; checks skipped; all hosts at once): no portal, no
SSH, no queue, no database. Same clock, same readiness test, same run.

Printed per size: both times, the ratio portal / floor (the portal's overhead)
and where the portal's time goes (queue, job, QEMU start, leases).

Run (root):  .venv/bin/python bench/deploy_latency.py
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from common import log, machine, make_user, ring_slice, scratch_database, table
from labkit import (
    LabSession,
    RqWorker,
    api_action,
    api_client,
    assert_fresh,
    bare_plan,
    bare_teardown,
    cpu_seconds,
    deployment_gave_up,
    destroy_quietly,
    guest_lease_uptime,
    host_pid,
    require_root,
    ring_ends,
    wait_deployment,
    wait_ready,
    wait_registered,
)

SIZES = (2, 4, 6)


def since(moment, t0_wall: float) -> float:
    return moment.timestamp() - t0_wall if moment else float("nan")


def portal_run(slice_obj, client, worker, cpu_pids: list[int]) -> dict:
    from provisioning.models import DeploymentStep

    ends = ring_ends(slice_obj)
    assert_fresh(ends)
    cpu_before = cpu_seconds(cpu_pids)
    t0_wall, t0 = time.time(), time.monotonic()
    dep_id = api_action(client, slice_obj.pk, "deploy")
    request_s = time.monotonic() - t0
    ready = wait_ready(ends, t0, gave_up=deployment_gave_up(dep_id, worker))
    guest_s = guest_lease_uptime(ends)
    dep = wait_deployment(dep_id, worker)
    if dep.status != "succeeded":
        raise RuntimeError(f"deploy failed: {dep.error}")
    time.sleep(0.5)  # the job and its SSH sessions have ended (kept connections are counted live)
    cpu = cpu_seconds(cpu_pids) - cpu_before
    qemu = DeploymentStep.objects.filter(deployment=dep, description__startswith="Start QEMU")
    first_qemu = min(s.started for s in qemu)
    last_qemu = max(s.finished for s in qemu)
    destroy = wait_deployment(api_action(client, slice_obj.pk, "destroy"), worker)
    if destroy.status != "succeeded":
        raise RuntimeError(f"destroy failed: {destroy.error}")
    return {
        "ready": ready,
        "request": request_s,
        "queued": since(dep.started, t0_wall),
        "qemu_first": since(first_qemu, t0_wall),
        "qemu_last": since(last_qemu, t0_wall),
        "leased": max(e.leased_at for e in ends.values()),
        "job_end": since(dep.finished, t0_wall),
        "pings": sum(e.ping_tries for e in ends.values()),
        "spec": dep.spec,
        "destroy": (destroy.finished - destroy.created).total_seconds(),
        "cpu": cpu,
        "guest": guest_s,
        "ssh": "{}/{}".format(*(sum(h.get(k, 0) for h in dep.stats.values()) for k in ("connections", "reused"))),
    }


def floor_run(slice_obj, lab, spec_dict: dict) -> dict:
    from provisioning import plans

    spec = plans.SliceSpec.from_dict(spec_dict)
    ends = ring_ends(slice_obj)
    assert_fresh(ends)
    t0 = time.monotonic()
    try:
        script_s = bare_plan(lab, plans.deploy_plan(spec))
        ready = wait_ready(ends, t0)
        guest_s = guest_lease_uptime(ends)
    finally:
        started = time.monotonic()
        bare_teardown(lab, plans.destroy_plan(spec))
        teardown_s = time.monotonic() - started
    return {
        "ready": ready,
        "script": script_s,
        "leased": max(e.leased_at for e in ends.values()),
        "pings": sum(e.ping_tries for e in ends.values()),
        "teardown": teardown_s,
        "guest": guest_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=SIZES, help="VMs per ring slice")
    parser.add_argument("--repeat", type=int, default=3, help="portal+floor pairs per size (median)")
    parser.add_argument("--keep-lab", action="store_true", help="leave the lab up if this run brought it up")
    parser.add_argument("--take-over-lab", action="store_true", help="rebuild the lab even if another LAB_DIR has it")
    parser.add_argument("--keep-db", action="store_true", help="do not drop the scratch database")
    args = parser.parse_args()
    require_root()

    print("# Benchmark 3: real deploy latency on the lab (request -> every VM leased and pinging) vs the floor")
    print(f"# machine: {machine()}")
    with (
        scratch_database("lab_latency", keep=args.keep_db),
        LabSession(keep_lab=args.keep_lab, take_over=args.take_over_lab) as lab,
        tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp,
        RqWorker(Path(tmp) / "rqworker.log") as worker,
    ):
        from inventory.models import Host

        log(f"RQ worker ready in {wait_registered([worker]):.1f} s (not in the figures)")
        accels = lab.probe_accel()
        for name, (accel, seconds) in accels.items():
            log(f"{name}: KVM probe says {accel} ({seconds:.1f} s, once per worker; not in the figures)")
        user = make_user("bench-lab", max_vms=max(args.sizes) * 2)
        hosts = list(Host.objects.filter(name__in=["worker1", "worker2"]).order_by("name"))
        client = api_client(user)
        # Whose CPU time the portal's deploy costs: the RQ worker (its jobs) and the hosts' sshd sessions.
        cpu_pids = [worker.process.pid, *(host_pid(lab, h) for h in ("netnode", "worker1", "worker2"))]
        rows, ratios = [], {}
        for size in args.sizes:
            slice_obj = ring_slice(user, f"lat{size}", size, hosts=hosts)
            portal, floor = [], []
            for _ in range(args.repeat):
                try:
                    p = portal_run(slice_obj, client, worker, cpu_pids)
                except Exception:
                    destroy_quietly(client, slice_obj, worker)
                    raise
                log(f"{size} VMs portal: ready in {p['ready']:.1f} s (job ended at {p['job_end']:.1f} s)")
                f = floor_run(slice_obj, lab, p["spec"])
                log(f"{size} VMs floor:  ready in {f['ready']:.1f} s (script {f['script']:.2f} s)")
                portal.append(p)
                floor.append(f)
            p_ready = statistics.median(p["ready"] for p in portal)
            f_ready = statistics.median(f["ready"] for f in floor)
            ratios[size] = p_ready / f_ready
            p, f = portal[-1], floor[-1]
            rows.append(
                [
                    size,
                    p_ready,
                    f_ready,
                    f"{ratios[size]:.2f}",
                    p_ready - f_ready,
                    p["queued"],
                    p["qemu_first"],
                    p["qemu_last"],
                    f["script"],
                    p["leased"],
                    f["leased"],
                    p["job_end"],
                    f"{p['pings']}/{f['pings']}",
                    f"{p['destroy']:.1f} / {f['teardown']:.1f}",
                    f"{p['guest']:.2f} / {f['guest']:.2f}",
                    p["cpu"],
                    p["ssh"],
                ]
            )
        accel = ", ".join(sorted({a for a, _ in accels.values()}))
        print()
        print(f"# guests: {accel.upper()} (QEMU -accel {accel}), 1 vCPU / 128 MiB each, 3 hosts in namespaces")
        print(
            table(
                [
                    "VMs",
                    "portal s",
                    "floor s",
                    "portal/floor",
                    "overhead s",
                    "job started at",
                    "1st QEMU at",
                    "last QEMU at",
                    "floor script s",
                    "portal leased at",
                    "floor leased at",
                    "job ended at",
                    "pings p/f",
                    "destroy s p/f",
                    "guest boot->lease s p/f",
                    "portal CPU s",
                    "SSH opened/reused",
                ],
                rows,
            )
        )
        print()
        print("# times in seconds from the deploy request (portal) or the script start (floor); medians when --repeat")
        print("# (the breakdown columns are from the last pair); pings: attempts until every VM had a reply;")
        print("# destroy: the portal's destroy job (request to end) / the same destroy plan run bare;")
        print("# guest boot->lease: the guests' own clock (seconds since their kernel started) at the last lease;")
        print("# portal CPU: CPU seconds of the deploy job (RQ worker) and the hosts' sshd sessions, on the same")
        print("# cores as the guests; SSH opened/reused: the deploy job's connections, opened or taken from the")
        print("# worker's pool (kept by an earlier job: provisioning.sshpool), from the last pair")
        for size, ratio in ratios.items():
            print(f"RATIO {size} VMs: portal / floor = {ratio:.2f}")


if __name__ == "__main__":
    main()
