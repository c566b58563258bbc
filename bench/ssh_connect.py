"""Benchmark 9 — what one SSH connection of the runner costs on the lab (part of a deploy's fixed overhead).

The runner's own connection (``FabricRunner.connection``: Paramiko, the lab's key, the
known-hosts check) to each lab host, opened and used for one ``true``: the wall time
alone (one host after the other) and three at once (a job opens one per host in
parallel), and the CPU time this process spent on it (the rest is the hosts' sshd:
accepting, key exchange, login — on the same cores as everything else here).

Run (root):  .venv/bin/python bench/ssh_connect.py
"""

from __future__ import annotations

import argparse
import resource
import statistics
import threading
import time

from common import machine, scratch_database, table
from labkit import LabSession, require_root

HOSTS = ("netnode", "worker1", "worker2")


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def connect_once(name: str) -> float:
    """Seconds to open the runner's connection to ``name`` and run ``true`` on it."""
    from provisioning import executor

    runner = executor.make_runner(dry_run=False, hosts=[name])
    started = time.monotonic()
    conn = runner.connection(name)
    conn.run("true", hide=True)
    seconds = time.monotonic() - started
    conn.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="connections per host, and rounds of three at once")
    parser.add_argument("--keep-lab", action="store_true", help="leave the lab up if this run brought it up")
    parser.add_argument("--take-over-lab", action="store_true", help="rebuild the lab even if another LAB_DIR has it")
    args = parser.parse_args()
    require_root()

    print("# Benchmark 9: one SSH connection of the runner (open + `true`) to the lab hosts")
    print(f"# machine: {machine()}")
    with scratch_database("lab_ssh"), LabSession(keep_lab=args.keep_lab, take_over=args.take_over_lab):
        from django.conf import settings

        settings.PROVISIONING_RUNNER = "fabric"
        connect_once(HOSTS[0])  # warm: imports, known hosts
        alone: list[float] = []
        cpu_before = _cpu()
        for _ in range(args.rounds):
            alone += [connect_once(name) for name in HOSTS]
        cpu_each = (_cpu() - cpu_before) / len(alone)
        together: list[float] = []
        for _ in range(args.rounds):
            threads = [threading.Thread(target=connect_once, args=(name,)) for name in HOSTS]
            started = time.monotonic()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            together.append(time.monotonic() - started)
    print()
    ms = [
        [
            "one host at a time",
            len(alone),
            statistics.median(alone) * 1000,
            max(alone) * 1000,
            cpu_each * 1000,
        ],
        [f"{len(HOSTS)} hosts at once (until the last)", len(together), statistics.median(together) * 1000,
         max(together) * 1000, "-"],
    ]  # fmt: skip
    print(table(["connections", "n", "median ms", "max ms", "this process's CPU ms each"], ms))


if __name__ == "__main__":
    main()
