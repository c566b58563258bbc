"""A Debian 12 cloud image for the lab, built from Debian packages on this machine (``manage.py lab image debian``).

- Root file system: ``mmdebstrap`` (bookworm, ``--variant=apt``, no recommends, no docs, man
  pages or locales) with the cloud kernel, systemd, cloud-init, openssh-server, iproute2 and
  iputils-ping. cloud-init reads the NoCloud seed only (``datasource_list: [NoCloud, None]``:
  nothing probes a metadata address) and renders the network with systemd-networkd (its v2
  ``dhcp4-overrides`` keep data links from adding default routes).
- Disk: an MBR with two partitions, assembled without mounting anything: a FAT boot partition
  holding the kernel, its initramfs and SYSLINUX (as the lab's busybox disk image, see
  :func:`provisioning.lab.guest.build_disk`), and an ext4 root made by ``mkfs.ext4 -d``.
  SYSLINUX's MBR boots the active partition; the kernel mounts the root by its UUID.
- Cached under ``LAB_DIR/images/debian12.qcow2``, rebuilt only when the recipe changes (stamp).
"""

from __future__ import annotations

import hashlib
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

from provisioning.lab.system import LabCommandError, run

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
PACKAGES = (
    "linux-image-cloud-amd64",
    "systemd-sysv",
    "udev",
    "cloud-init",
    "openssh-server",
    "iproute2",
    "iputils-ping",
    "sudo",
    "initramfs-tools",
    "netbase",
)
DEFAULT_USER = "debian"
ROOT_UUID = "5b1e0f4c-57a1-4e0d-9c5e-1a2b3c4d5e6f"  # fixed: the boot loader's root= names it
BOOT_MIB = 96
ROOT_MIB = 2048
# quiet: every kernel line on the serial port costs boot time under TCG.
KERNEL_ARGS = f"root=UUID={ROOT_UUID} ro console=ttyS0 net.ifnames=0 quiet panic=-1"
# The initramfs only needs to find the root disk (ext4 is built into the cloud kernel): a small one
# unpacks and settles in seconds under TCG, where MODULES=most took minutes.
INITRAMFS_MODULES = ("virtio_pci", "virtio_blk")
SYSLINUX_MBR = Path("/usr/lib/syslinux/mbr/mbr.bin")
TOOLS = {
    "mmdebstrap": "mmdebstrap",
    "mkfs.vfat": "dosfstools",
    "mcopy": "mtools",
    "syslinux": "syslinux",
    "mkfs.ext4": "e2fsprogs",
    "qemu-img": "qemu-utils",
}
CLOUD_CFG = """\
# Slice Portal lab image: the NoCloud seed (a disk labelled cidata) is the only datasource.
datasource_list: [NoCloud, None]
system_info:
  network:
    renderers: [networkd]
    activators: [networkd]
"""
SYSLINUX_CONFIG = """\
DEFAULT debian
PROMPT 0
TIMEOUT 0
SERIAL 0 115200
LABEL debian
  KERNEL vmlinuz
  INITRD initrd.img
  APPEND {kernel_args}
"""
# Run inside the new root by mmdebstrap (``$1`` is the root): configuration, services, fstab.
CUSTOMIZE = (
    'mkdir -p "$1/etc/cloud/cloud.cfg.d" && cat > "$1/etc/cloud/cloud.cfg.d/90-slice-portal.cfg" <<"EOF"\n'
    + CLOUD_CFG
    + "EOF\n"
    + f'echo "UUID={ROOT_UUID} / ext4 defaults,noatime 0 1" > "$1/etc/fstab"\n'
    + 'chroot "$1" systemctl enable systemd-networkd.service\n'
    # Nothing to wait for at boot but the seed's links; timers that would run apt are off.
    + 'chroot "$1" systemctl mask apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer'
    + " systemd-networkd-wait-online.service\n"
    + 'rm -f "$1/etc/hostname" "$1/etc/machine-id" && touch "$1/etc/machine-id"\n'
    # Devices (ttyS0 for the serial getty) may take over 90 s to appear under TCG on busy cores.
    + 'mkdir -p "$1/etc/systemd/system.conf.d" && printf "[Manager]\\nDefaultTimeoutStartSec=600\\n"'
    + ' > "$1/etc/systemd/system.conf.d/slice-portal.conf"\n'
    + 'echo "MODULES=list" > "$1/etc/initramfs-tools/conf.d/slice-portal.conf"\n'
    + 'mkdir -p "$1/usr/share/initramfs-tools/modules.d"\n'
    + f'printf "%s\\n" {" ".join(INITRAMFS_MODULES)} > "$1/usr/share/initramfs-tools/modules.d/slice-portal"\n'
    + 'chroot "$1" update-initramfs -u -k all\n'
)
BUILDER_VERSION = "3"


@dataclass(frozen=True)
class DebianImage:
    """The built image: its qcow2 and the user cloud-init creates."""

    path: Path
    default_user: str = DEFAULT_USER


def recipe_digest() -> str:
    digest = hashlib.sha256()
    for part in (BUILDER_VERSION, SUITE, MIRROR, ",".join(PACKAGES), KERNEL_ARGS, CUSTOMIZE, SYSLINUX_CONFIG):
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()[:16]


def _missing_tools() -> list[str]:
    missing = [f"{tool} (package {package})" for tool, package in TOOLS.items() if not shutil.which(tool)]
    if not SYSLINUX_MBR.is_file():
        missing.append(f"{SYSLINUX_MBR} (package syslinux-common)")
    return missing


def bootstrap(root: Path) -> None:
    """The root file system, in directory ``root`` (mmdebstrap as root, from the mirror)."""
    run(
        [
            "mmdebstrap",
            "--mode=root",
            "--variant=apt",
            "--format=directory",
            f"--include={','.join(PACKAGES)}",
            "--aptopt=APT::Install-Recommends false",
            "--dpkgopt=path-exclude=/usr/share/man/*",
            "--dpkgopt=path-exclude=/usr/share/doc/*",
            "--dpkgopt=path-include=/usr/share/doc/*/copyright",
            "--dpkgopt=path-exclude=/usr/share/locale/*",
            "--dpkgopt=path-exclude=/usr/share/info/*",
            f"--customize-hook={CUSTOMIZE}",
            SUITE,
            str(root),
            MIRROR,
        ],
        timeout=3600,
    )


def _kernel_files(root: Path) -> tuple[Path, Path]:
    kernels = sorted((root / "boot").glob("vmlinuz-*"))
    if not kernels:
        raise LabCommandError(f"no kernel under {root}/boot")
    version = kernels[-1].name.removeprefix("vmlinuz-")
    initrd = root / "boot" / f"initrd.img-{version}"
    if not initrd.is_file():
        raise LabCommandError(f"no initramfs for {version} under {root}/boot")
    return kernels[-1], initrd


SECTOR = 512


def mbr(boot_code: bytes, partitions: list[tuple[int, int, int, bool]]) -> bytes:
    """A 512-byte MBR: ``boot_code`` (at most 440 bytes) and up to 4 partitions (start MiB, size MiB, type, active).

    Addresses are LBA only (CHS fields saturated, as for any disk over 8 GiB): SYSLINUX's MBR reads by LBA.
    """
    if len(boot_code) > 440 or len(partitions) > 4:
        raise ValueError("boot code over 440 bytes or more than 4 partitions")
    table = b""
    for start_mib, size_mib, kind, active in partitions:
        first = start_mib * 1024 * 1024 // SECTOR
        count = size_mib * 1024 * 1024 // SECTOR
        chs = b"\xfe\xff\xff"
        table += struct.pack("<B3sB3sII", 0x80 if active else 0, chs, kind, chs, first, count)
    table = table.ljust(64, b"\0")
    return boot_code.ljust(440, b"\0") + b"\0" * 6 + table + b"\x55\xaa"


def write_mbr(raw: Path, partitions: list[tuple[int, int, int, bool]]) -> None:
    with open(raw, "r+b") as handle:
        handle.write(mbr(SYSLINUX_MBR.read_bytes()[:440], partitions))


def assemble_disk(root: Path, work: Path, target: Path) -> None:
    """MBR + FAT boot partition (SYSLINUX, kernel, initramfs) + ext4 root, converted to qcow2."""
    kernel, initrd = _kernel_files(root)
    env = {"MTOOLS_SKIP_CHECK": "1"}
    boot = work / "boot.img"
    run(["mkfs.vfat", "-C", "-n", "BOOT", str(boot), str(BOOT_MIB * 1024)])
    config = work / "syslinux.cfg"
    config.write_text(SYSLINUX_CONFIG.format(kernel_args=KERNEL_ARGS))
    for source, name in ((kernel, "vmlinuz"), (initrd, "initrd.img"), (config, "syslinux.cfg")):
        run(["mcopy", "-i", str(boot), str(source), f"::{name}"], env=env)
    run(["syslinux", "--install", str(boot)], env=env)
    rootfs = work / "root.img"
    run(
        ["mkfs.ext4", "-q", "-F", "-L", "root", "-U", ROOT_UUID, "-d", str(root), str(rootfs), f"{ROOT_MIB}M"],
        timeout=900,
    )
    raw = work / "disk.img"
    start = 1  # MiB: the partitions are 1 MiB aligned
    with open(raw, "wb") as handle:
        handle.truncate((start + BOOT_MIB + ROOT_MIB) * 1024 * 1024)
    write_mbr(raw, [(start, BOOT_MIB, 0x0C, True), (start + BOOT_MIB, ROOT_MIB, 0x83, False)])
    for image, offset in ((boot, start), (rootfs, start + BOOT_MIB)):
        run(["dd", f"if={image}", f"of={raw}", "bs=1M", f"seek={offset}", "conv=notrunc,sparse"], timeout=600)
    converted = work / "disk.qcow2"
    run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(converted)], timeout=900)
    converted.replace(target)


def ensure_debian(images_dir: Path, *, rebuild: bool = False) -> DebianImage:
    """The Debian 12 image under ``images_dir``, built (~10 min on 2 cores) only when missing or stale."""
    missing = _missing_tools()
    if missing:
        raise LabCommandError(f"building the Debian image needs {', '.join(missing)} (scripts/setup.sh installs them)")
    target = images_dir / "debian12.qcow2"
    stamp = target.with_name(target.name + ".inputs")
    digest = recipe_digest()
    if not rebuild and target.is_file() and stamp.is_file() and stamp.read_text().strip() == digest:
        return DebianImage(target)
    images_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=images_dir, prefix="debian-") as tmp:
        work = Path(tmp)
        root = work / "root"
        bootstrap(root)
        assemble_disk(root, work, target)
    stamp.write_text(digest + "\n")
    return DebianImage(target)
