"""Benchmark 2 — connection economy on the lab: one real deploy (and destroy) of a 6-VM slice.

A ring of 6 VMs (3 on worker1, 3 on worker2) is deployed through the portal's
API; the job runs on a real ``manage.py rqworker provisioning`` process (its own
Redis database, a scratch PostgreSQL database) with the Fabric runner over SSH
to the lab hosts. The figures are the runner's own counters, stored by the
executor on the deployment (``Deployment.stats``): per host, SSH connections
opened, round trips (scripts sent), commands sent, commands executed (not
skipped by their check) and ``ovs-vsctl`` invocations (checks included).

Beside them: what the design promises (STYLE.md: one connection per host per
job, one round trip per host per stage, one ``ovs-vsctl`` transaction per host
per phase), computed from the job's plan, and the logins each host's sshd
accepted during the job (its own log; an independent count of connections).

Run (root):  .venv/bin/python bench/connections.py
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import log, machine, make_user, ring_slice, scratch_database, table
from labkit import LabSession, RqWorker, api_action, api_client, destroy_quietly, require_root, wait_deployment

VMS = 6


def expected(deployment) -> dict[str, dict[str, int]]:
    """Per host, from the stored plan: stages it takes part in, phases, ovs-vsctl commands and checks."""
    out: dict[str, dict[str, int]] = {}
    for stage in deployment.plan.get("stages", []):
        seen = set()
        for phase in stage["phases"]:
            row = out.setdefault(phase["host"], {"stages": 0, "phases": 0, "ovs_cmds": 0, "ovs_checks": 0})
            row["phases"] += 1
            if phase["host"] not in seen:
                seen.add(phase["host"])
                row["stages"] += 1
            for cmd in phase["commands"]:
                row["ovs_cmds"] += any("ovs-vsctl" in a for a in cmd["argv"])
                row["ovs_checks"] += any("ovs-vsctl" in a for a in cmd["check"] or [])
    return out


def report(title: str, deployment, lab: LabSession, logins: dict[str, int]) -> None:
    from provisioning.models import DeploymentStep

    plan = expected(deployment)
    observe_hosts = set(
        DeploymentStep.objects.filter(deployment=deployment, phase="observe").values_list("host", flat=True)
    )
    probe_hosts = set(
        DeploymentStep.objects.filter(deployment=deployment, phase="probe").values_list("host", flat=True)
    )
    rows = []
    for host in sorted(deployment.stats):
        s = deployment.stats[host]
        p = plan.get(host, {"stages": 0, "phases": 0, "ovs_cmds": 0, "ovs_checks": 0})
        trips = p["stages"] + (host in observe_hosts) + (host in probe_hosts)
        rows.append(
            [
                host,
                s["connections"],
                logins.get(host, 0),
                s["round_trips"],
                trips,
                s["commands"],
                s["executed"],
                s["ovs_vsctl"],
                f"{p['ovs_cmds']} + {p['ovs_checks']} checks",
                f"{s['seconds']:.2f}",
            ]
        )
    print()
    print(f"## {title}: deployment {deployment.pk} {deployment.status} in {duration(deployment):.1f} s")
    print(
        table(
            [
                "host",
                "SSH connections",
                "sshd logins",
                "round trips",
                "design: stages(+observe)",
                "commands sent",
                "executed",
                "ovs-vsctl",
                "plan: ovs-vsctl cmds",
                "SSH seconds",
            ],
            rows,
        )
    )


def duration(deployment) -> float:
    if deployment.started and deployment.finished:
        return (deployment.finished - deployment.created).total_seconds()
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vms", type=int, default=VMS)
    parser.add_argument("--keep-lab", action="store_true", help="leave the lab up if this run brought it up")
    parser.add_argument("--take-over-lab", action="store_true", help="rebuild the lab even if another LAB_DIR has it")
    parser.add_argument("--keep-db", action="store_true", help="do not drop the scratch database")
    args = parser.parse_args()
    require_root()

    print(f"# Benchmark 2: connection economy, one real deploy of a {args.vms}-VM ring on the lab")
    print(f"# machine: {machine()}")
    with (
        scratch_database("lab_conn", keep=args.keep_db),
        LabSession(keep_lab=args.keep_lab, take_over=args.take_over_lab) as lab,
        tempfile.TemporaryDirectory(prefix="bench-conn-") as tmp,
        RqWorker(Path(tmp) / "rqworker.log") as worker,
    ):
        from inventory.models import Host

        for name, (accel, seconds) in lab.probe_accel().items():
            log(f"{name}: KVM probe says {accel} ({seconds:.1f} s, once per worker)")
        user = make_user("bench-lab", max_vms=args.vms)
        hosts = list(Host.objects.filter(name__in=["worker1", "worker2"]).order_by("name"))
        slice_obj = ring_slice(user, "conn", args.vms, hosts=hosts)
        client = api_client(user)
        try:
            for action in ("deploy", "destroy"):
                before = {h: lab.accepted_ssh_logins(h) for h in ("worker1", "worker2", "netnode")}
                started = time.monotonic()
                dep = wait_deployment(api_action(client, slice_obj.pk, action), worker)
                logins = {h: lab.accepted_ssh_logins(h) - n for h, n in before.items()}
                log(f"{action}: {dep.status} in {time.monotonic() - started:.1f} s")
                if dep.status != "succeeded":
                    raise RuntimeError(f"{action} failed: {dep.error}")
                report(action, dep, lab, logins)
        finally:
            destroy_quietly(client, slice_obj, worker)
        print()
        print(
            "# design (STYLE.md): 1 SSH connection per host per job; 1 round trip per host per stage "
            "(+1 for the probe, +1 for the post-deploy observation); ovs-vsctl: 1 transaction per host per phase "
            "plus its check"
        )


if __name__ == "__main__":
    main()
