"""Drift: what a host should hold for each slice (from its spec) against what an observation found.

Pure: specs and :class:`~.sense.HostObservation` in, :class:`Difference` out. The
network node's iptables rules are judged by the plan's own ``iptables -C`` checks,
run read-only inside the observation (:func:`netnode_checks` gives them, in order).
Differences that let traffic cross between slices (missing guard flows, missing
isolation rules) are flagged ``isolation``: :func:`isolation_repairs` gives the plan's
own idempotent commands that put them back.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import asdict, dataclass

from slices.ipam import INTERNET_VLAN
from slices.naming import dhcp_namespace, dhcp_port_name, gateway_port_name

from .constants import FLOW_COOKIE_TAG
from .layout import dhcp_files, dhcp_root, vm_files, vms_dir
from .model import HostCommand
from .netnode import internet_commands, isolation_commands
from .sense import COOKIE_MASK, HostObservation
from .spec import INTERNET, NicSpec, SliceSpec, VlanSpec, VmSpec
from .worker import internet_guard_command, link_guard_command

# Kinds of difference (Difference.kind); "orphan-*" are things nobody owns.
QEMU_DOWN = "qemu"
TAP = "tap"
PORT = "port"
GUARD = "guard"
GATEWAY = "gateway"
DHCP_NAMESPACE = "dhcp-namespace"
DNSMASQ = "dnsmasq"
IPTABLES = "iptables"
IP_FORWARD = "ip-forward"
UNREACHABLE = "host-unreachable"
ORPHAN_TAP, ORPHAN_PORT, ORPHAN_QEMU = "orphan-tap", "orphan-port", "orphan-qemu"
ORPHAN_NAMESPACE, ORPHAN_DNSMASQ, ORPHAN_FLOWS = "orphan-namespace", "orphan-dnsmasq", "orphan-flows"

TAP_RE = re.compile(r"^(tap_\d+_eth\d+|tx[0-9a-z]+_\d+)$")
NETNODE_PORT_RE = re.compile(r"^(gw|dhcp)_v(\d+)$")
NAMESPACE_RE = re.compile(r"^ns-dhcp-vlan(\d+)$")
GUARD_ARGS = 6  # sh -c PROGRAM NAME BRIDGE COOKIE, then the flows (worker._guard_command)


@dataclass(frozen=True)
class Difference:
    """One thing on a host that is not as the plan says (or that nobody owns: ``slice_id`` None)."""

    kind: str
    host: str
    object: str
    expected: str
    found: str
    slice_id: int | None = None
    vm: int | None = None
    vlan: int | None = None
    isolation: bool = False  # its absence lets traffic cross between slices: the check puts it back itself

    def to_dict(self) -> dict:
        return asdict(self)


def _guarded(spec: SliceSpec, nic: NicSpec) -> bool:
    return nic.vlan == INTERNET_VLAN or (spec.link_guard and nic.vlan is not None and spec.vlan(nic.vlan) is not None)


def guard_command(spec: SliceSpec, vm: VmSpec, nic: NicSpec) -> HostCommand:
    """The plan's guard command of a guarded NIC (VLAN 400, or a link when ``link_guard``)."""
    if nic.vlan == INTERNET_VLAN:
        return internet_guard_command(vm, nic)
    vlan = spec.vlan(nic.vlan) if nic.vlan is not None else None
    if vlan is None:
        raise ValueError(f"{nic.tap} is not guarded")
    return link_guard_command(vm, nic, vlan)


def _cookie(vm_id: int, nic: NicSpec) -> int:
    return FLOW_COOKIE_TAG | vm_id << 8 | nic.index


def worker_differences(
    spec: SliceSpec, host: str, obs: HostObservation, stopped: Collection[int] = ()
) -> list[Difference]:
    """QEMU of every VM of the slice on ``host``, its TAPs (present, up/down, port and tag), its guard flows.

    ``stopped``: VMs shut down on purpose (a power action): their QEMU is meant to be down."""
    out: list[Difference] = []

    def diff(kind, obj, expected, found, vm, vlan=None, isolation=False) -> None:
        out.append(Difference(kind, host, obj, expected, found, spec.slice_id, vm, vlan, isolation))

    worker = spec.worker(host)
    for vm in spec.vms_on(host):
        pidfile = vm_files(worker, vm).pidfile
        if vm.id not in stopped and obs.alive(pidfile) is None:
            pid = obs.pidfiles.get(pidfile)
            found = "no pid file" if pidfile not in obs.pidfiles else f"pid {pid} not running"
            diff(QEMU_DOWN, vm.name, "QEMU running", f"stopped unexpectedly ({found})", vm.id)
        for nic in vm.nics:
            label = f"{vm.name}.eth{nic.index} ({nic.tap})"
            link = obs.links.get(nic.tap)
            want_up = nic.vlan is not None
            if link is None:
                diff(TAP, label, "TAP present", "missing", vm.id, nic.vlan)
            elif link.up != want_up:
                diff(TAP, label, "up" if want_up else "down", "up" if link.up else "down", vm.id, nic.vlan)
            tag = obs.ports.get(nic.tap, "absent")
            if nic.vlan is None:
                if tag != "absent":
                    diff(PORT, label, "not on br-int", f"on br-int (tag {tag})", vm.id)
            elif tag != nic.vlan:
                found = "not on br-int" if tag == "absent" else f"tag {tag}"
                diff(PORT, label, f"on br-int, tag {nic.vlan}", found, vm.id, nic.vlan, isolation=tag != "absent")
            if _guarded(spec, nic):
                want = len(guard_command(spec, vm, nic).argv) - GUARD_ARGS
                have = obs.flows.get(_cookie(vm.id, nic), 0)
                if have != want:
                    diff(GUARD, label, f"{want} guard flows", f"{have}", vm.id, nic.vlan, isolation=True)
    return out


def _served(spec: SliceSpec) -> list[VlanSpec]:
    return [*spec.vlans, *([INTERNET] if spec.internet else [])]


def netnode_checks(specs: Iterable[SliceSpec]) -> tuple[HostCommand, ...]:
    """The plan's iptables commands of the network node (isolation, then VLAN 400's), once each, in order."""
    specs = list(specs)
    out: dict[tuple[str, ...], HostCommand] = {}
    if specs:
        for cmd in isolation_commands():
            out.setdefault(cmd.check or (), cmd)
    for spec in specs:
        if spec.internet:
            for cmd in internet_commands(spec.netnode, spec.slice_id, spec.internet_reservations):
                if cmd.check and cmd.check[0] == "iptables":
                    out.setdefault(cmd.check, cmd)
    return tuple(out.values())


def netnode_differences(spec: SliceSpec, obs: HostObservation, checks: Sequence[HostCommand] = ()) -> list[Difference]:
    """Per VLAN the slice uses: gateway port, tag, address; DHCP port, namespace, address, dnsmasq;
    the iptables rules (by ``checks``, as run in the observation) and ``ip_forward`` for VLAN 400."""
    host = spec.netnode.name
    out: list[Difference] = []

    def diff(kind, obj, expected, found, vlan=None, isolation=False) -> None:
        out.append(Difference(kind, host, obj, expected, found, spec.slice_id, None, vlan, isolation))

    for v in _served(spec):
        gw, dport, ns = gateway_port_name(v.vlan), dhcp_port_name(v.vlan), dhcp_namespace(v.vlan)
        for port in (gw, dport):
            tag = obs.ports.get(port, "absent")
            if tag != v.vlan:
                found = "not on br-int" if tag == "absent" else f"tag {tag}"
                diff(GATEWAY if port == gw else DHCP_NAMESPACE, port, f"on br-int, tag {v.vlan}", found, v.vlan)
        address = f"{v.gateway}/{v.prefixlen}"
        if address not in obs.addresses.get(gw, set()):
            diff(GATEWAY, gw, address, ", ".join(sorted(obs.addresses.get(gw, ()))) or "no address", v.vlan)
        elif gw in obs.links and not obs.links[gw].up:
            diff(GATEWAY, gw, "up", "down", v.vlan)
        server = f"{v.dhcp_server}/{v.prefixlen}"
        if ns not in obs.namespaces:
            diff(DHCP_NAMESPACE, ns, "namespace present", "missing", v.vlan)
        elif server not in obs.ns_addresses.get(ns, {}).get(dport, set()):
            diff(DHCP_NAMESPACE, f"{ns}/{dport}", server, "no address", v.vlan)
        if obs.alive(dhcp_files(spec.netnode, v.vlan).pidfile) is None:
            diff(DNSMASQ, f"dnsmasq of VLAN {v.vlan}", "running", "not running", v.vlan)
    isolation = {c.check for c in isolation_commands()}
    wanted = {c.check for c in netnode_checks([spec])}
    for i, cmd in enumerate(checks):
        if cmd.check not in wanted:
            continue
        rc = obs.checks.get(i)
        if rc != 0:
            found = "missing" if rc is not None else "not checked"
            diff(IPTABLES, cmd.description, "present", found, isolation=cmd.check in isolation)
    if spec.internet and obs.ip_forward != "1":
        diff(IP_FORWARD, "net.ipv4.ip_forward", "1", obs.ip_forward or "unknown", INTERNET_VLAN)
    return out


def slice_differences(
    spec: SliceSpec,
    host: str,
    obs: HostObservation,
    checks: Sequence[HostCommand] = (),
    stopped: Collection[int] = (),
) -> list[Difference]:
    """Everything of the slice on one host that is not as its spec says."""
    out: list[Difference] = []
    if host == spec.netnode.name:
        out += netnode_differences(spec, obs, checks)
    if any(vm.host == host for vm in spec.vms):
        out += worker_differences(spec, host, obs, stopped)
    return out


def orphans(
    owners: Iterable[SliceSpec], host: str, state_dir: str, obs: HostObservation, *, network: bool
) -> list[Difference]:
    """Things named by the portal's conventions on ``host`` that no slice in ``owners`` accounts for.

    Reported only: nothing is removed on the strength of a name.
    """
    owners = list(owners)
    taps = {nic.tap for s in owners for vm in s.vms if vm.host == host for nic in vm.nics}
    vm_ids = {vm.id for s in owners for vm in s.vms if vm.host == host}
    cookies = {_cookie(vm.id, nic) for s in owners for vm in s.vms if vm.host == host for nic in vm.nics}
    vlans = {v.vlan for s in owners if s.netnode.name == host for v in _served(s)}
    out: list[Difference] = []

    def orphan(kind, obj, found) -> None:
        out.append(Difference(kind, host, obj, "nothing (no active slice owns it)", found))

    for name, link in sorted(obs.links.items()):
        if TAP_RE.match(name) and name not in taps:
            on = f", on br-int (tag {obs.ports[name]})" if name in obs.ports else ""
            orphan(ORPHAN_TAP, name, ("up" if link.up else "down") + on)
    for name, tag in sorted(obs.ports.items()):
        if TAP_RE.match(name) and name not in taps and name not in obs.links:
            orphan(ORPHAN_PORT, name, f"on br-int (tag {tag}), no device")
        found = NETNODE_PORT_RE.match(name)
        if network and found and int(found.group(2)) not in vlans:
            orphan(ORPHAN_PORT, name, f"on br-int (tag {tag})")
    qemu_re = re.compile(re.escape(vms_dir(state_dir)) + r"/vm(\d+)/qemu\.pid")
    dnsmasq_re = re.compile(re.escape(dhcp_root(state_dir)) + r"/v(\d+)/dnsmasq\.pid")
    for pid, proc in sorted(obs.processes.items()):
        found = qemu_re.search(proc.cmdline)
        if found and int(found.group(1)) not in vm_ids and "-pidfile" in proc.cmdline:
            orphan(ORPHAN_QEMU, f"QEMU of vm{found.group(1)}", f"pid {pid}")
        found = dnsmasq_re.search(proc.cmdline)
        if network and found and int(found.group(1)) not in vlans and proc.cmdline.startswith("dnsmasq"):
            orphan(ORPHAN_DNSMASQ, f"dnsmasq of VLAN {found.group(1)}", f"pid {pid}")
    for cookie, count in sorted(obs.flows.items()):
        if cookie & COOKIE_MASK == FLOW_COOKIE_TAG and cookie not in cookies:
            orphan(ORPHAN_FLOWS, f"cookie {cookie:#018x}", f"{count} flow(s)")
    if network:
        for ns in sorted(obs.namespaces):
            found = NAMESPACE_RE.match(ns)
            if found and int(found.group(1)) not in vlans:
                orphan(ORPHAN_NAMESPACE, ns, "present")
    return out


def isolation_repairs(
    spec: SliceSpec, differences: Iterable[Difference], checks: Sequence[HostCommand] = ()
) -> dict[str, list[HostCommand]]:
    """Per host, the plan's commands that restore the isolation ``differences`` of ``spec`` name:
    the guard flows of those NICs, a TAP's tag, the isolation rules (each checked first: idempotent)."""
    out: dict[str, list[HostCommand]] = {}
    wanted = [d for d in differences if d.isolation and d.slice_id == spec.slice_id]
    vms = {vm.id: vm for vm in spec.vms}
    for d in wanted:
        if d.kind in (GUARD, PORT) and d.vm in vms:
            vm = vms[d.vm]
            for nic in vm.nics:
                if f"({nic.tap})" not in d.object:
                    continue
                if d.kind == GUARD:
                    cmd = guard_command(spec, vm, nic)
                else:
                    cmd = HostCommand(("ovs-vsctl", "set", "port", nic.tap, f"tag={nic.vlan}"), f"Tag {nic.tap}")
                if cmd not in out.get(d.host, []):
                    out.setdefault(d.host, []).append(cmd)
        elif d.kind == IPTABLES:
            for cmd in (*isolation_commands(), *checks):
                if cmd.description == d.object and cmd not in out.get(d.host, []):
                    out.setdefault(d.host, []).append(cmd)
    # The isolation rules go back as the plan makes them: every one, checked first (a chain before its rules).
    for host, cmds in out.items():
        if any(c.check and c.check[0] == "iptables" for c in cmds):
            out[host] = [c for c in cmds if not (c.check and c.check[0] == "iptables")] + list(isolation_commands())
    return out


def vms_to_restart(differences: Iterable[Difference]) -> list[int]:
    """VMs that lost a TAP: a TAP made anew is not the one a running QEMU holds, and a port whose device
    went (a host reboot) may not take a new device of the same name: QEMU, TAPs and ports are made anew."""
    return sorted({d.vm for d in differences if d.kind == TAP and d.found == "missing" and d.vm is not None})
