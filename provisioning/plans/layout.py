"""Where the portal keeps its files on a host (docs/provisioning.md)."""

from __future__ import annotations

from dataclasses import dataclass

from slices.ipam import INTERNET_VLAN

from .model import HostCommand
from .shell import SH_RMDIR_IF_EMPTY, is_dir, sh
from .spec import (
    NetnodeSpec,
    VmSpec,
    WorkerSpec,
)


def _root(state_dir: str) -> str:
    return state_dir.rstrip("/") or "/"


def vms_dir(state_dir: str) -> str:
    return f"{_root(state_dir)}/vms"


def vm_dir(state_dir: str, vm_id: int) -> str:
    return f"{vms_dir(state_dir)}/vm{vm_id}"


def dhcp_root(state_dir: str) -> str:
    return f"{_root(state_dir)}/dhcp"


def dhcp_dir(state_dir: str, vlan: int) -> str:
    return f"{dhcp_root(state_dir)}/v{vlan}"


def internet_hosts_dir(state_dir: str) -> str:
    """VLAN 400's reservations, one file per slice (the shared dnsmasq serves their union)."""
    return f"{dhcp_dir(state_dir, INTERNET_VLAN)}/hosts"


def internet_hosts_file(state_dir: str, slice_id: int) -> str:
    return f"{internet_hosts_dir(state_dir)}/slice{slice_id}"


def ip_forward_saved(state_dir: str) -> str:
    return f"{_root(state_dir)}/ip_forward.saved"


@dataclass(frozen=True)
class VmFiles:
    """The files of one VM on its worker."""

    dir: str

    @property
    def pidfile(self) -> str:
        return f"{self.dir}/qemu.pid"

    @property
    def console_log(self) -> str:
        return f"{self.dir}/console.log"

    @property
    def console_sock(self) -> str:
        return f"{self.dir}/console.sock"

    @property
    def qmp_sock(self) -> str:
        return f"{self.dir}/qmp.sock"

    @property
    def vnc_sock(self) -> str:
        """QEMU's VNC server (the graphical console): a unix socket, never a TCP port."""
        return f"{self.dir}/vnc.sock"

    @property
    def disk(self) -> str:
        return f"{self.dir}/disk.qcow2"

    @property
    def seed(self) -> str:
        """The cloud-init NoCloud seed disk (vfat labelled cidata)."""
        return f"{self.dir}/seed.img"


def vm_files(worker: WorkerSpec, vm: VmSpec) -> VmFiles:
    return VmFiles(vm_dir(worker.state_dir, vm.id))


@dataclass(frozen=True)
class DhcpFiles:
    """The files of one VLAN's dnsmasq on the network node."""

    dir: str

    @property
    def pidfile(self) -> str:
        return f"{self.dir}/dnsmasq.pid"

    @property
    def leases(self) -> str:
        return f"{self.dir}/dnsmasq.leases"

    @property
    def log(self) -> str:
        return f"{self.dir}/dnsmasq.log"


def dhcp_files(node: NetnodeSpec, vlan: int) -> DhcpFiles:
    return DhcpFiles(dhcp_dir(node.state_dir, vlan))


def shared_dir_command(path: str, what: str) -> HostCommand:
    """Create a directory several slices share; its undo removes it only once it is empty."""
    return HostCommand(
        ("mkdir", "-p", path),
        what,
        check=is_dir(path),
        undo=sh(SH_RMDIR_IF_EMPTY, "sp-rmdir", path),
        undo_description=f"Remove the {what[0].lower()}{what[1:]} if empty",
    )
