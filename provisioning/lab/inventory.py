"""The lab in the portal's inventory: Host rows for its hosts, the guest as the default Image."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db import transaction

from inventory.models import Host, Image
from provisioning.lab.guest import GuestImage
from provisioning.lab.topology import DEFAULT_UPLINK, HOSTS, NETWORK_NODE, LabPaths

LAB_IMAGE_NAME = "lab-busybox"
LAB_DISK_IMAGE_NAME = "lab-busybox-disk"
LAB_DEBIAN_IMAGE_NAME = "debian12"


def network_node_uplink() -> str:
    """The uplink named by the network node's Host record (``ens3`` when there is none yet)."""
    row = Host.objects.filter(name=NETWORK_NODE.name).values_list("uplink", flat=True).first()
    return row or DEFAULT_UPLINK


@transaction.atomic
def register_hosts(paths: LabPaths, *, uplink: str) -> list[Host]:
    """Create or update (and enable) the lab's Host rows. Idempotent."""
    rows = []
    for lab_host in HOSTS:
        defaults = {
            "role": lab_host.role,
            "management_address": str(lab_host.management_address),
            "ssh_port": 22,
            "ssh_user": "root",
            "ssh_key_path": str(paths.client_key),
            "vcpus": lab_host.vcpus,
            "ram_mib": lab_host.ram_mib,
            "state_dir": str(paths.state_dir(lab_host.name)),
            "enabled": True,
        }
        if lab_host.role == Host.Role.WORKER:
            # The KVM probe (a tiny real-mode firmware) passes on these cloud VMs while a real kernel
            # under KVM stops in its decompressor ("Invalid physical address chosen!"): the lab's
            # workers use LAB_ACCEL (default tcg). LAB_ACCEL=auto probes, as production hosts do.
            defaults |= {"accel": settings.LAB_ACCEL, "accel_detected": "", "accel_probed_at": None}
        if lab_host is NETWORK_NODE:
            defaults["uplink"] = uplink
        host, _ = Host.objects.update_or_create(name=lab_host.name, defaults=defaults)
        rows.append(host)
    return rows


def disable_hosts() -> int:
    """Mark the lab's Host rows disabled (they stay: VMs and deployments refer to them)."""
    return Host.objects.filter(name__in=[h.name for h in HOSTS]).update(enabled=False)


@transaction.atomic
def register_image(guest: GuestImage, *, make_default: bool = True) -> Image:
    """Create or update the lab guest Image (kind kernel) and make it the default."""
    if make_default:
        Image.objects.filter(is_default=True).exclude(name=LAB_IMAGE_NAME).update(is_default=False)
    image, _ = Image.objects.update_or_create(
        name=LAB_IMAGE_NAME,
        defaults={
            "kind": Image.Kind.KERNEL,
            "kernel_path": str(guest.kernel_path),
            "initrd_path": str(guest.initrd_path),
            "kernel_args": guest.kernel_args,
            "disk_path": "",
            "is_default": make_default,
        },
    )
    return image


def register_disk_image(disk_path: Path) -> Image:
    """Create or update the lab's disk-kind Image (a qcow2 base; not the default)."""
    image, _ = Image.objects.update_or_create(
        name=LAB_DISK_IMAGE_NAME,
        defaults={
            "kind": Image.Kind.DISK,
            "disk_path": str(disk_path),
            "kernel_path": "",
            "initrd_path": "",
            "kernel_args": "",
            "is_default": False,
        },
    )
    return image


def register_debian_image(disk_path: Path, *, default_user: str) -> Image:
    """Create or update the lab's Debian 12 Image: a qcow2 disk running cloud-init (not the default)."""
    image, _ = Image.objects.update_or_create(
        name=LAB_DEBIAN_IMAGE_NAME,
        defaults={
            "kind": Image.Kind.DISK,
            "disk_path": str(disk_path),
            "kernel_path": "",
            "initrd_path": "",
            "kernel_args": "",
            "cloud_init": True,
            "default_user": default_user,
            "is_default": False,
        },
    )
    return image
