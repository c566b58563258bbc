"""The lab guest image: how it is built, and what it reports when it boots (kernel and disk kinds)."""

from __future__ import annotations

import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from provisioning.lab import console, guest, system

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def built(lab_session):
    """The guest image (kernel cached under LAB_DIR/images after the first run)."""
    return guest.ensure_guest(lab_session.paths.images_dir)


def test_initramfs_holds_busybox_modules_in_dependency_order_and_init(built):
    listing = subprocess.run(
        f"zcat {built.initrd_path} | busybox cpio -t", shell=True, capture_output=True, text=True, check=True
    ).stdout.split()
    assert {"init", "bin/busybox", "usr/share/udhcpc/default.script", "dev/console"} <= set(listing)
    order = subprocess.run(
        f"zcat {built.initrd_path} | busybox cpio -i --to-stdout lib/modules/load-order",
        shell=True,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert order[-1] == "virtio_net" and "virtio_pci" in order
    for module, dependency in (
        ("virtio_net", "net_failover"),
        ("net_failover", "failover"),
        ("virtio_pci", "virtio"),
        ("virtio", "virtio_ring"),
    ):
        if dependency in order:
            assert order.index(dependency) < order.index(module)
    assert all(f"lib/modules/{m}.ko" in listing for m in order)


def test_image_is_cached_not_rebuilt(built):
    mtime = built.initrd_path.stat().st_mtime_ns
    again = guest.ensure_guest(built.initrd_path.parent)
    assert again == built and built.initrd_path.stat().st_mtime_ns == mtime


def test_module_depends_is_read_from_modinfo():
    elf = b"\x7fELF....\x00license=GPL\x00depends=virtio,virtio_ring\x00name=virtio_net\x00"
    assert guest.module_depends(elf) == ["virtio", "virtio_ring"]
    assert guest.module_depends(b"\x00depends=\x00") == []


class Boot:
    """A QEMU guest booted by the test itself (no lab hosts), in a throwaway namespace."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.namespace = f"sp-test-{uuid.uuid4().hex[:6]}"
        self.pid_file = directory / "qemu.pid"
        self.socket = directory / "console.sock"
        self.log = directory / "console.log"

    def start(self, boot_args: list[str], nics: list[str]) -> None:
        system.run(["ip", "netns", "add", self.namespace])
        argv = [
            "qemu-system-x86_64",
            "-accel",
            "tcg",
            "-cpu",
            "max",
            "-m",
            "96",
            "-smp",
            "1",
            "-no-reboot",
            "-display",
            "none",
            "-monitor",
            "none",
            *boot_args,
            "-nic",
            "none",
            "-chardev",
            f"socket,id=s0,path={self.socket},server=on,wait=off,logfile={self.log}",
            "-serial",
            "chardev:s0",
            "-pidfile",
            str(self.pid_file),
            "-daemonize",
        ]
        for index, netdev in enumerate(nics):
            device = f"virtio-net-pci,mac=52:54:00:5e:00:{index:02x}"
            if netdev:
                argv += ["-netdev", f"{netdev},id=n{index}"]
                device += f",netdev=n{index}"
            argv += ["-device", device]
        system.run(argv, netns=self.namespace)

    def stop(self) -> None:
        pid = system.pid_from_file(self.pid_file, must_mention=str(self.directory))
        if pid:
            system.terminate([pid])
        system.run(["ip", "netns", "del", self.namespace], check=False)


@pytest.fixture
def boot(tmp_path_factory):
    # A short directory: the console socket path must fit in 108 bytes.
    directory = Path(tmp_path_factory.mktemp("g", numbered=True))
    made = Boot(directory)
    yield made
    made.stop()


def test_guest_brings_up_every_nic_reports_dhcp_and_keeps_a_shell(built, boot):
    # eth0, eth1: QEMU's user network (restrict=on: isolated, but it answers DHCP);
    # eth2: a NIC with no peer at all, whose DHCP must fail.
    args = f"{built.kernel_args} sp.name=probe sp.dhcp_tries=3 sp.dhcp_timeout=1 sp.ping=10.0.2.2"
    boot.start(
        ["-kernel", str(built.kernel_path), "-initrd", str(built.initrd_path), "-append", args],
        ["user,restrict=on", "user,restrict=on", ""],
    )
    text = _wait(boot.log, r"SP: READY", timeout=90)
    lines = console.sp_lines(text)
    assert [line.split()[1] for line in lines if line.startswith("NIC ")] == ["eth0", "eth1", "eth2"]
    # restrict=on: QEMU's DHCP announces no router (the default route is covered end to end).
    assert any(line.startswith("DHCP eth0 ok ip=10.0.2.15 mask=24 ") for line in lines)
    assert any(line.startswith("DHCP eth1 ok ip=10.0.2.15 mask=24 ") for line in lines)
    assert any(line.startswith("DHCP eth2 fail") for line in lines)
    assert "PING 10.0.2.2 ok" in lines
    result = console.run_command(boot.socket, "hostname; ip -4 -o addr show dev eth0", timeout=20)
    assert result.ok and result.output.splitlines()[0] == "probe"
    assert "10.0.2.15/24" in result.output
    assert console.run_command(boot.socket, "ls /nonexistent", timeout=20).exit_code != 0


@pytest.mark.skipif(not all(shutil.which(t) for t in guest.DISK_TOOLS), reason="needs syslinux, mtools, qemu-img")
def test_disk_image_boots_from_a_qcow2_overlay(built, boot):
    base = guest.build_disk(built.initrd_path.parent, built)
    overlay = boot.directory / "disk.qcow2"
    system.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(base), str(overlay)])
    boot.start(["-drive", f"file={overlay},if=virtio"], ["user,restrict=on"])
    text = _wait(boot.log, r"SP: READY", timeout=90)
    assert "SP: DHCP eth0 ok ip=10.0.2.15" in text


def _wait(log: Path, pattern: str, *, timeout: float) -> str:
    regex = re.compile(pattern, re.M)
    system.wait_for(
        lambda: log.exists() and regex.search(log.read_bytes().decode(errors="replace").replace("\r", "")),
        timeout=timeout,
        interval=0.2,
        what=f"{pattern} in {log}",
    )
    return log.read_bytes().decode(errors="replace").replace("\r", "")
