"""Probes and observation: the KVM probe, the lease wait, console tails (read-only commands)."""

from __future__ import annotations

import ipaddress
from collections.abc import Collection

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
    """Wait up to ``timeout`` s for a lease of every NIC that has a VLAN; print one line per MAC.

    ``vm_ids`` limits the wait to those VMs (the ones booted by this job) and the
    NICs of ``macs`` (running guests whose link was bounced): a VM left running
    by a redeploy asks for no new lease and must not be waited for.
    """
    args: list[str] = []
    for vm in spec.vms:
        for nic in vm.nics:
            if vm_ids is not None and vm.id not in vm_ids and nic.mac not in macs:
                continue
            if nic.vlan is not None:
                args += [dhcp_files(spec.netnode, nic.vlan).leases, nic.mac]
    if not args:
        return None
    count = len(args) // 2
    return HostCommand(
        sh(SH_WAIT_LEASES, "sp-leases", str(int(timeout)), *args),
        f"Wait up to {int(timeout)} s for DHCP leases of {count} interface(s)",
        capture=max(OUTPUT_TAIL, 64 * count),
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
