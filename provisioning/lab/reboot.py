"""``lab reboot HOST``: do to one lab host what a reboot does to a real one. No Django.

A reboot ends every process and forgets everything that lived only in the kernel; the
disk and the machine's hardware and network configuration stay. On a lab host that is:

- **gone**: every process in the host's namespace (its QEMU guests, SSH sessions, sshd,
  ``ovsdb-server``, ``ovs-vswitchd``) and, on the network node, in the namespaces it holds
  (``ns-dhcp-vlan*`` with their dnsmasq) — those namespaces too; every network device the
  host made at run time (TAPs, veths; the userspace datapath's internal ports go with
  ``ovs-vswitchd``); its iptables rules and chains, conntrack entries, ``ip_forward`` back
  to 0; the OpenFlow flows (they live in ``ovs-vswitchd``);
- **kept**: its "hardware" (``lo``, the management and underlay veths, the network node's
  uplink) with their addresses and routes; its files (state dir: pid files, leases and
  logs stay, stale, as on a real disk); the OVS database, so bridges and ports persist as
  in real OVS — a TAP port stays in ``br-int`` while its device no longer exists;
- **back**: ``ovsdb-server`` on the same database and ``ovs-vswitchd`` (internal ports are
  made again, without their addresses), then sshd with the same host key.

Processes are stopped by PID, found by namespace (``ip netns pids``) or by the host's state
dir on their command line, never by name.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from . import system
from .cluster import DEFAULT_UPLINK, check_not_foreign, read_record, start_ovs_daemons, start_sshd
from .system import LabCommandError, run
from .topology import (
    HOST_MGMT_IF,
    HOST_TRUNK_IF,
    HOSTS,
    NETWORK_NODE,
    LabHost,
    LabPaths,
    host,
    is_deploy_namespace,
)

NETFILTER_TABLES = ("filter", "nat", "mangle", "raw")
FILTER_CHAINS = ("INPUT", "FORWARD", "OUTPUT")


@dataclass
class RebootReport:
    """What a reboot of one lab host took away, and how long it took."""

    host: str
    processes: Counter = field(default_factory=Counter)  # program name -> count
    namespaces: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        programs = ", ".join(f"{name} x{count}" for name, count in sorted(self.processes.items())) or "none"
        return (
            f"{self.host} rebooted in {self.seconds:.2f}s: {sum(self.processes.values())} process(es) ended "
            f"({programs}); {len(self.namespaces)} namespace(s) gone ({', '.join(self.namespaces) or '-'}); "
            f"{len(self.links)} device(s) gone ({', '.join(self.links) or '-'}); OVS (database kept) and sshd are back"
        )


def hardware(lab_host: LabHost, paths: LabPaths) -> set[str]:
    """The host's devices that survive a reboot: loopback, its NICs (management, underlay, uplink)."""
    keep = {"lo", HOST_MGMT_IF, HOST_TRUNK_IF}
    if lab_host is NETWORK_NODE:
        keep.add(read_record(paths).get("uplink", DEFAULT_UPLINK))
    return keep


def _links(namespace: str) -> list[str]:
    out = run(["ip", "-o", "link", "show"], netns=namespace, check=False).stdout
    return [line.split(":", 2)[1].strip().split("@", 1)[0] for line in out.splitlines() if line.count(":") >= 2]


def _program(pid: int) -> str:
    argv0 = system.cmdline(pid).split(" ", 1)[0]
    return argv0.rsplit("/", 1)[-1].rstrip(":") or f"pid {pid}"


def _processes(paths: LabPaths, lab_host: LabHost) -> list[int]:
    """The host's processes: those in its namespace, and those running from its state dir.

    The second set is dnsmasq in the DHCP namespaces the network node holds: they are made in
    an SSH session, whose mount namespace keeps their ``/run/netns`` mounts, so ``ip netns
    pids`` cannot see into them from here; their command line names their pid file.
    """
    pids = set(system.namespace_pids(lab_host.namespace))
    state = f"{paths.state_dir(lab_host.name)}/"
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and state in system.cmdline(int(entry.name)):
            pids.add(int(entry.name))
    return sorted(pids)


def _reset_kernel_state(namespace: str) -> None:
    """iptables, conntrack and ip_forward as a freshly booted host has them (no rules, forwarding off)."""
    for table in NETFILTER_TABLES:
        run(["iptables", "-w", "-t", table, "-F"], netns=namespace, check=False)
        run(["iptables", "-w", "-t", table, "-X"], netns=namespace, check=False)
    for chain in FILTER_CHAINS:
        run(["iptables", "-w", "-P", chain, "ACCEPT"], netns=namespace, check=False)
    if shutil.which("conntrack"):
        run(["conntrack", "-F"], netns=namespace, check=False)
    run(["sysctl", "-q", "-w", "net.ipv4.ip_forward=0"], netns=namespace)


def reboot(paths: LabPaths, name: str) -> RebootReport:
    """Reboot lab host ``name`` (see the module's docstring); returns what went."""
    try:
        lab_host = host(name)
    except KeyError:
        raise LabCommandError(f"no lab host {name!r} (the lab's hosts: {', '.join(h.name for h in HOSTS)})") from None
    if not system.namespace_exists(lab_host.namespace) or not (paths.ovs_dir(name) / "conf.db").exists():
        raise LabCommandError(f"{name} is not up: `manage.py lab up` builds the lab")
    check_not_foreign(paths)  # the namespaces are global: never reboot another LAB_DIR's host
    started = time.monotonic()
    report = RebootReport(name)

    # Power off: every process of the host, including those in the namespaces it holds.
    held = sorted(ns for ns in system.namespaces() if is_deploy_namespace(ns)) if lab_host is NETWORK_NODE else []
    pids = _processes(paths, lab_host)
    report.processes.update(_program(pid) for pid in pids)
    system.terminate(pids)

    # What lived only in the kernel: the held namespaces, run-time devices, netfilter, sysctls.
    for ns in held:
        run(["ip", "netns", "del", ns], check=False)
    report.namespaces = held
    keep = hardware(lab_host, paths)
    report.links = [link for link in _links(lab_host.namespace) if link not in keep]
    for link in report.links:
        run(["ip", "link", "del", "dev", link], netns=lab_host.namespace, check=False)
    _reset_kernel_state(lab_host.namespace)

    # Boot: OVS from its database, then sshd (same host key: the portal's known_hosts still holds).
    start_ovs_daemons(paths, lab_host)
    start_sshd(paths, lab_host)
    report.seconds = time.monotonic() - started
    return report
