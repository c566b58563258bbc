"""The lab's guest image, built locally from Debian packages: a cloud kernel and a busybox initramfs.

- Kernel: the package the ``linux-image-cloud-amd64`` metapackage points at
  (``linux-image-6.1.0-NN-cloud-amd64``), fetched with ``apt-get download`` and
  unpacked with ``dpkg-deb -x`` into ``LAB_DIR/images/kernel/<version>/``. No
  install; once unpacked it is reused (no second download).
- Initramfs: the static busybox (package ``busybox-static``), the virtio-net
  modules of that kernel (dependencies resolved from the modules' own
  ``depends=`` info, ``.ko.xz``/``.ko.zst`` unpacked), and ``guest_init.sh`` as
  ``/init``, written as a gzip'd newc cpio archive by this module — no ``cpio``
  binary needed. Rebuilt only when one of its inputs changes.

Nothing here touches the database; :func:`ensure_guest` returns the paths that
``provisioning.lab.inventory`` registers as the default Image.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import lzma
import os
import re
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from provisioning.lab.system import LabCommandError, run

KERNEL_METAPACKAGE = "linux-image-cloud-amd64"
KERNEL_PACKAGE_RE = re.compile(r"^linux-image-(\d+\.\d+\.\d+-\d+-cloud-amd64)(-unsigned)?$")
BUSYBOX = Path("/bin/busybox")
# What the guest needs from the kernel's modules: the virtio PCI transport and
# virtio-net (the cloud kernel builds both as modules). Their dependencies
# (virtio, virtio_ring, failover, ...) are added automatically.
GUEST_MODULES = ("virtio_pci", "virtio_net")
# The kernel logs to the VGA console too (the graphical console shows the boot); the last
# console= is /dev/console, where init keeps its shell: the serial port.
KERNEL_ARGS = "console=tty0 console=ttyS0 quiet panic=-1"
HERE = Path(__file__).resolve().parent
INIT_SCRIPT = HERE / "guest_init.sh"
UDHCPC_SCRIPT = HERE / "guest_udhcpc.sh"
BUILDER_VERSION = "1"  # bump to force a rebuild of every cached initramfs


@dataclass(frozen=True)
class GuestImage:
    """Paths of a built guest: what a kernel-kind Image row points at."""

    kernel_version: str
    kernel_path: Path
    initrd_path: Path
    kernel_args: str = KERNEL_ARGS


# --- kernel ------------------------------------------------------------------------------


def kernel_package_name() -> str:
    """The current cloud kernel package, from the metapackage's dependency (apt-cache)."""
    override = os.environ.get("LAB_KERNEL_PACKAGE")
    if override:
        return override
    for attempt in range(2):
        result = run(["apt-cache", "depends", KERNEL_METAPACKAGE], check=False)
        for line in result.stdout.splitlines():
            name = line.strip().removeprefix("Depends:").strip()
            if KERNEL_PACKAGE_RE.match(name):
                return name
        if attempt == 0:
            # A fresh machine may have no package lists yet.
            run(["apt-get", "update", "-qq"], check=False, timeout=600)
    raise LabCommandError(
        f"apt-cache found no kernel behind {KERNEL_METAPACKAGE} (run `apt-get update` first?): {result.stderr.strip()}"
    )


def cached_kernels(images_dir: Path) -> list[str]:
    """Kernel versions already unpacked under ``images_dir`` (newest last)."""
    root = images_dir / "kernel"
    if not root.is_dir():
        return []
    found = [p.name for p in root.iterdir() if (p / "boot" / f"vmlinuz-{p.name}").is_file()]
    return sorted(found, key=lambda v: [int(x) if x.isdigit() else x for x in re.split(r"[.-]", v)])


def ensure_kernel(images_dir: Path, *, refresh: bool = False) -> str:
    """Unpack the cloud kernel under ``images_dir`` unless one is there; return its version.

    Without ``refresh`` any cached kernel is used as is (works offline). With
    it, the metapackage's current kernel is fetched if it is not cached yet.
    """
    cached = cached_kernels(images_dir)
    if cached and not refresh:
        return cached[-1]
    package = kernel_package_name()
    match = KERNEL_PACKAGE_RE.match(package)
    if not match:
        raise LabCommandError(f"not a cloud kernel package name: {package}")
    version = match.group(1)
    target = images_dir / "kernel" / version
    if (target / "boot" / f"vmlinuz-{version}").is_file():
        return version
    images_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=images_dir, prefix="download-") as tmp:
        # apt warns that it downloads unsandboxed (as root, not _apt) here: harmless.
        run(["apt-get", "download", "-q", package], env={"LC_ALL": "C"}, timeout=600, cwd=tmp)
        debs = list(Path(tmp).glob("*.deb"))
        if len(debs) != 1:
            raise LabCommandError(f"apt-get download {package} left {len(debs)} .deb files")
        unpack = Path(tmp) / "root"
        run(["dpkg-deb", "-x", str(debs[0]), str(unpack)], timeout=300)
        if not (unpack / "boot" / f"vmlinuz-{version}").is_file():
            raise LabCommandError(f"{debs[0].name} holds no boot/vmlinuz-{version}")
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            shutil.rmtree(target)
        unpack.rename(target)
    return version


# --- kernel modules ------------------------------------------------------------------------


def _module_index(modules_root: Path) -> dict[str, Path]:
    """Module name (dashes as underscores) -> its file, for ``.ko``, ``.ko.xz`` and ``.ko.zst``."""
    index: dict[str, Path] = {}
    for path in modules_root.rglob("*.ko*"):
        name = path.name.split(".ko")[0].replace("-", "_")
        index[name] = path
    return index


def _builtin_modules(modules_root: Path) -> set[str]:
    builtin = modules_root / "modules.builtin"
    if not builtin.exists():
        return set()
    return {Path(line.strip()).name.split(".ko")[0].replace("-", "_") for line in builtin.read_text().splitlines()}


def module_bytes(path: Path) -> bytes:
    """A module's ELF bytes, decompressed when the package ships it compressed."""
    data = path.read_bytes()
    if path.name.endswith(".ko.xz"):
        return lzma.decompress(data)
    if path.name.endswith(".ko.zst"):
        if not shutil.which("zstd"):
            raise LabCommandError(f"{path.name} is zstd-compressed and no zstd binary is installed")
        return subprocess.run(["zstd", "-dc"], input=data, capture_output=True, check=True).stdout
    if path.name.endswith(".ko.gz"):
        return gzip.decompress(data)
    return data


def module_depends(elf: bytes) -> list[str]:
    """The ``depends=`` of a module's ``.modinfo`` section."""
    match = re.search(rb"\x00depends=([A-Za-z0-9_,-]*)\x00", elf)
    if not match or not match.group(1):
        return []
    return [d.replace("-", "_") for d in match.group(1).decode().split(",") if d]


def resolve_modules(modules_root: Path, wanted: tuple[str, ...] = GUEST_MODULES) -> list[tuple[str, bytes]]:
    """The modules to load for ``wanted``, dependencies first, as (name, uncompressed ELF)."""
    index = _module_index(modules_root)
    builtin = _builtin_modules(modules_root)
    ordered: list[tuple[str, bytes]] = []
    done: set[str] = set()

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in done or name in builtin:
            return
        if name in chain:
            raise LabCommandError(f"module dependency cycle: {' -> '.join((*chain, name))}")
        if name not in index:
            raise LabCommandError(f"kernel module {name} not found under {modules_root}")
        elf = module_bytes(index[name])
        for dep in module_depends(elf):
            visit(dep, (*chain, name))
        done.add(name)
        ordered.append((name, elf))

    for name in wanted:
        visit(name, ())
    return ordered


# --- cpio (newc) ------------------------------------------------------------------------------


class NewcArchive:
    """A minimal writer of the ``newc`` cpio format the kernel unpacks as initramfs."""

    def __init__(self) -> None:
        self._out = io.BytesIO()
        self._ino = 1

    def _entry(self, name: str, mode: int, data: bytes = b"", *, rdev: tuple[int, int] = (0, 0)) -> None:
        name_bytes = name.encode() + b"\0"
        fields = [
            self._ino,
            mode,
            0,
            0,
            1,
            0,
            len(data),
            0,
            0,
            rdev[0],
            rdev[1],
            len(name_bytes),
            0,
        ]
        self._ino += 1
        header = b"070701" + b"".join(f"{value:08x}".encode() for value in fields)
        self._out.write(header + name_bytes)
        self._pad()
        self._out.write(data)
        self._pad()

    def _pad(self) -> None:
        self._out.write(b"\0" * (-self._out.tell() % 4))

    def directory(self, name: str) -> None:
        self._entry(name, stat.S_IFDIR | 0o755)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | mode, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def char_device(self, name: str, major: int, minor: int, mode: int = 0o600) -> None:
        self._entry(name, stat.S_IFCHR | mode, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return self._out.getvalue()


def build_initramfs(modules: list[tuple[str, bytes]]) -> bytes:
    """The gzip'd initramfs: busybox, the modules (in load order) and the init scripts."""
    archive = NewcArchive()
    for directory in (
        "bin",
        "sbin",
        "usr",
        "usr/bin",
        "usr/sbin",
        "usr/share",
        "usr/share/udhcpc",
        "lib",
        "lib/modules",
        "etc",
        "proc",
        "sys",
        "dev",
        "run",
        "tmp",
        "root",
    ):
        archive.directory(directory)
    archive.char_device("dev/console", 5, 1)
    archive.char_device("dev/null", 1, 3, 0o666)
    archive.file("bin/busybox", BUSYBOX.read_bytes(), 0o755)
    archive.symlink("bin/sh", "busybox")
    archive.file("init", INIT_SCRIPT.read_bytes(), 0o755)
    archive.file("usr/share/udhcpc/default.script", UDHCPC_SCRIPT.read_bytes(), 0o755)
    archive.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
    archive.file("etc/group", b"root:x:0:\n")
    archive.file("etc/profile", b"export PS1='# '\n")
    for name, elf in modules:
        archive.file(f"lib/modules/{name}.ko", elf)
    archive.file("lib/modules/load-order", "".join(f"{name}\n" for name, _ in modules).encode())
    return gzip.compress(archive.finish(), compresslevel=6, mtime=0)


def _inputs_digest(kernel_version: str) -> str:
    digest = hashlib.sha256()
    for part in (BUILDER_VERSION, kernel_version, ",".join(GUEST_MODULES)):
        digest.update(part.encode() + b"\0")
    for path in (INIT_SCRIPT, UDHCPC_SCRIPT, BUSYBOX):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def ensure_guest(images_dir: Path, *, refresh: bool = False, rebuild: bool = False) -> GuestImage:
    """The lab guest (kernel + initramfs) under ``images_dir``, fetched and built only when missing."""
    if not BUSYBOX.is_file():
        raise LabCommandError(f"{BUSYBOX} is missing: apt-get install busybox-static")
    version = ensure_kernel(images_dir, refresh=refresh)
    kernel_root = images_dir / "kernel" / version
    initrd = images_dir / f"initramfs-{version}.gz"
    stamp = initrd.with_name(initrd.name + ".inputs")
    digest = _inputs_digest(version)
    if rebuild or not initrd.is_file() or not stamp.is_file() or stamp.read_text().strip() != digest:
        modules = resolve_modules(kernel_root / "lib" / "modules" / version)
        data = build_initramfs(modules)
        tmp = initrd.with_name(initrd.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(initrd)  # atomic: a guest booting right now keeps the old file
        stamp.write_text(digest + "\n")
    return GuestImage(
        kernel_version=version,
        kernel_path=kernel_root / "boot" / f"vmlinuz-{version}",
        initrd_path=initrd,
    )


# --- disk image -------------------------------------------------------------------------------

DISK_TOOLS = {"syslinux": "syslinux", "mcopy": "mtools", "qemu-img": "qemu-utils"}
SYSLINUX_CONFIG = """\
DEFAULT linux
PROMPT 0
TIMEOUT 0
SERIAL 0 115200
LABEL linux
  KERNEL vmlinuz
  INITRD initrd.gz
  APPEND {kernel_args}
"""
DISK_MIB = 40


def build_disk(images_dir: Path, image: GuestImage, *, rebuild: bool = False) -> Path:
    """A small bootable qcow2 holding the same guest, for Image kind ``disk``.

    A FAT file system (busybox ``mkdosfs``) with the kernel, the initramfs and a
    SYSLINUX boot sector (``syslinux --install``, which writes through mtools:
    no mount needed), converted to a compressed qcow2. The engine boots it from
    a per-VM qcow2 overlay like any real disk image: BIOS -> SYSLINUX -> the
    same /init and ``SP:`` report as the kernel-kind guest.
    """
    missing = [f"{tool} (package {package})" for tool, package in DISK_TOOLS.items() if not shutil.which(tool)]
    if missing:
        raise LabCommandError(f"building the disk image needs {', '.join(missing)}")
    target = images_dir / f"disk-{image.kernel_version}.qcow2"
    stamp = target.with_name(target.name + ".inputs")
    digest = hashlib.sha256(image.initrd_path.read_bytes() + image.kernel_args.encode()).hexdigest()[:16]
    if not rebuild and target.is_file() and stamp.is_file() and stamp.read_text().strip() == digest:
        return target
    with tempfile.TemporaryDirectory(dir=images_dir, prefix="disk-") as tmp:
        raw = Path(tmp) / "disk.img"
        with open(raw, "wb") as handle:
            handle.truncate(DISK_MIB * 1024 * 1024)
        run([str(BUSYBOX), "mkdosfs", "-n", "SPLAB", str(raw)])
        config = Path(tmp) / "syslinux.cfg"
        config.write_text(SYSLINUX_CONFIG.format(kernel_args=image.kernel_args))
        env = {"MTOOLS_SKIP_CHECK": "1"}
        for source, name in (
            (image.kernel_path, "vmlinuz"),
            (image.initrd_path, "initrd.gz"),
            (config, "syslinux.cfg"),
        ):
            run(["mcopy", "-i", str(raw), str(source), f"::{name}"], env=env)
        run(["syslinux", "--install", str(raw)], env=env)
        converted = Path(tmp) / "disk.qcow2"
        run(["qemu-img", "convert", "-c", "-O", "qcow2", str(raw), str(converted)], timeout=120)
        converted.replace(target)
    stamp.write_text(digest + "\n")
    return target
