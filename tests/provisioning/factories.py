"""Small spec factories for the pure plan tests (no database)."""

from provisioning.plans import ImageSpec, NetnodeSpec, NicSpec, SliceSpec, VlanSpec, VmSpec, WorkerSpec
from slices.naming import tap_name

NODE = NetnodeSpec("netnode", "ens3", "/var/lib/sp")
W1 = WorkerSpec("worker1", "/var/lib/sp", "tcg")
W2 = WorkerSpec("worker2", "/srv/sp", "kvm")
KERNEL = ImageSpec("kernel", kernel_path="/boot/vmlinuz", initrd_path="/boot/initrd.img", kernel_args="console=ttyS0")
DISK = ImageSpec("disk", disk_path="/images/debian.qcow2")


def mac(vm_id: int, index: int) -> str:
    return f"52:54:00:{vm_id:02x}:00:{index:02x}"


def internet_ip(vm_id: int) -> str:
    """The fixed VLAN 400 address the factories give VM ``vm_id``'s eth0."""
    return f"10.60.7.{10 + vm_id}"


def vm(vm_id: int, host: str = "worker1", vlans=(None, 100), *, name=None, image=KERNEL, vcpus=1, ram=128) -> VmSpec:
    """A VM whose NIC i is on vlans[i] (None: no VLAN); on VLAN 400 with address ``internet_ip``."""
    nics = tuple(
        NicSpec(i, mac(vm_id, i), v, tap_name(vm_id, i), internet_ip(vm_id) if v == 400 else "")
        for i, v in enumerate(vlans)
    )
    return VmSpec(vm_id, name or f"vm{vm_id}", host, vcpus, ram, image, nics)


def vlan(v: int, *ends: int) -> VlanSpec:
    """Link VLAN v with reservations for the eth1 of each VM id in ends (.10, .11)."""
    subnet = f"10.64.{v}.0/24"
    return VlanSpec(v, subnet, tuple((mac(vm_id, 1), f"10.64.{v}.{10 + i}") for i, vm_id in enumerate(ends)))


def spec(vms=(), vlans=(), *, internet=False, workers=(W1, W2), **extra) -> SliceSpec:
    return SliceSpec(7, "lab", NODE, tuple(workers), tuple(vms), tuple(vlans), internet=internet, **extra)


def two_vm_spec(**extra) -> SliceSpec:
    """vm1 (worker1) <-> vm2 (worker2) on VLAN 100; eth0s without VLAN."""
    return spec([vm(1, "worker1"), vm(2, "worker2")], [vlan(100, 1, 2)], **extra)
