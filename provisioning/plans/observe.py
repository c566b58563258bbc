"""Probes and observation: the KVM probe, the lease wait, console tails (read-only commands)."""

from __future__ import annotations

import ipaddress
from collections.abc import Collection

from slices.ipam import INTERNET_VLAN
from slices.naming import MAC_RE

from .constants import (
    KVM_PROBE_TIMEOUT,
    OUTPUT_TAIL,
)
from .layout import (
    dhcp_files,
    vm_files,
)
from .model import HostCommand
from .shell import (
    SH_CONSOLE_TAIL,
    SH_KVM_PROBE,
    SH_WAIT_LEASES,
    sh,
)
from .spec import (
    SliceSpec,
    VmSpec,
    WorkerSpec,
)


def kvm_probe_command(timeout: int = KVM_PROBE_TIMEOUT) -> HostCommand:
    """Does KVM really run a guest here? Prints ``accel=kvm`` or ``accel=tcg (...)``; never fails."""
    return HostCommand(sh(SH_KVM_PROBE, "sp-kvm-probe", str(timeout)), "Probe whether KVM runs guests")


def parse_kvm_probe(output: str) -> str:
    return "kvm" if "accel=kvm" in output else "tcg"


def lease_wait_command(
    spec: SliceSpec, timeout: int, vm_ids: Collection[int] | None = None, macs: Collection[str] = ()
) -> HostCommand | None:
    """Read the lease of every NIC that has a VLAN, waiting up to ``timeout`` s for the new ones.

    ``vm_ids`` (None = all) are the VMs booted by this job, ``macs`` the NICs of running
    guests whose link was bounced: only those are waited for. A VM a redeploy left
    running asks for no new lease, so its NICs are only read (a lease recorded
    before, or lost with a failed observation, is filled in). A lease that is not
    the NIC's reservation fails the step, naming the NIC. One line per MAC is printed
    (:func:`parse_leases`).
    """
    reserved = {(v.vlan, mac): ip for v in spec.vlans for mac, ip in v.reservations}
    reserved |= {(INTERNET_VLAN, mac): ip for mac, ip in spec.internet_reservations}
    args: list[str] = []
    waited = 0
    for vm in spec.vms:
        for nic in vm.nics:
            if nic.vlan is None:
                continue
            wait = vm_ids is None or vm.id in vm_ids or nic.mac in macs
            waited += wait
            args += [
                dhcp_files(spec.netnode, nic.vlan).leases,
                nic.mac,
                reserved.get((nic.vlan, nic.mac), "-"),
                "wait" if wait else "read",
                f"{vm.name}.eth{nic.index}",
            ]
    if not args:
        return None
    count = len(args) // 5
    if waited:
        rest = f", read {count - waited} more" if count > waited else ""
        description = f"Wait up to {int(timeout)} s for DHCP leases of {waited} interface(s){rest}"
    else:
        description = f"Read the DHCP leases of {count} interface(s)"
    return HostCommand(
        sh(SH_WAIT_LEASES, "sp-leases", str(int(timeout)), *args),
        description,
        capture=max(OUTPUT_TAIL, 160 * count),
        interruptible=True,
    )


def parse_leases(output: str) -> dict[str, str | None]:
    """``lease MAC IP`` lines -> {mac: ip or None}."""
    out: dict[str, str | None] = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "lease" and MAC_RE.fullmatch(parts[1].lower()):
            ip = parts[2]
            try:
                out[parts[1].lower()] = str(ipaddress.IPv4Address(ip))
            except ValueError:
                out[parts[1].lower()] = None
    return out


def console_tail_command(worker: WorkerSpec, vm: VmSpec, size: int = 2000) -> HostCommand:
    return HostCommand(
        sh(SH_CONSOLE_TAIL, "sp-console", vm_files(worker, vm).console_log, str(size)),
        f"Console of {vm.name}",
        capture=size + 200,
        vm=vm.id,
    )
