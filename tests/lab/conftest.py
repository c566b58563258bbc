"""Fixtures for the lab tests: root, real namespaces, OVS, sshd and QEMU on this machine.

The lab tests take over the machine's lab (the namespaces ``worker1``,
``worker2``, ``netnode`` and ``internet`` are global): a lab already running
under the same ``LAB_DIR`` is rebuilt, and the session leaves the lab down.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from django.conf import settings

from provisioning.lab import cluster, guest, inventory, system
from provisioning.lab.topology import DEFAULT_UPLINK, HOSTS, LabPaths, lab_namespaces

REQUIRED_TOOLS = (
    "ip",
    "ovsdb-tool",
    "ovsdb-server",
    "ovs-vswitchd",
    "ovs-vsctl",
    "qemu-system-x86_64",
    "ssh-keygen",
    "ethtool",
    "dnsmasq",
    "tcpdump",
    "iptables",
)


def lab_unavailable_reason() -> str | None:
    """Why the lab tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "lab tests need root (network namespaces, OVS, sshd, QEMU)"
    if not Path("/dev/net/tun").exists():
        return "lab tests need /dev/net/tun (TAP devices)"
    missing = [tool for tool in REQUIRED_TOOLS if not shutil.which(tool, path="/usr/sbin:/usr/bin:/sbin:/bin")]
    if not Path("/usr/sbin/sshd").exists():
        missing.append("/usr/sbin/sshd")
    if not guest.BUSYBOX.exists():
        missing.append(str(guest.BUSYBOX))
    if missing:
        return f"lab tests need {', '.join(missing)} (see docs/lab.md for the Debian packages)"
    return None


def pytest_collection_modifyitems(config, items):
    reason = lab_unavailable_reason()
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.lab)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


class Lab:
    """The running lab as the tests see it: paths, known hosts, and a way to (re)build it."""

    def __init__(self, paths: LabPaths, known_hosts: Path) -> None:
        self.paths = paths
        self.known_hosts = known_hosts
        self.uplink = DEFAULT_UPLINK
        self.guest: guest.GuestImage | None = None
        self.up_seconds: float | None = None

    def is_up(self) -> bool:
        """Cheap check: every namespace exists and every host's daemons are alive."""
        if not all(system.namespace_exists(ns) for ns in lab_namespaces()):
            return False
        root = str(self.paths.root)
        for host in HOSTS:
            for pid_file in (
                self.paths.ovs_dir(host.name) / "ovsdb-server.pid",
                self.paths.ovs_dir(host.name) / "ovs-vswitchd.pid",
                self.paths.sshd_dir(host.name) / "sshd.pid",
            ):
                if not system.pid_from_file(pid_file, must_mention=root):
                    return False
        return True

    def ensure_up(self) -> None:
        if not self.is_up():
            timings = cluster.up(self.paths, known_hosts=self.known_hosts, uplink=self.uplink)
            self.up_seconds = timings["total"]
        if self.guest is None:
            self.guest = guest.ensure_guest(self.paths.images_dir)

    def down(self) -> None:
        cluster.down(self.paths, known_hosts=self.known_hosts)

    def connect(self, name: str):
        """A Fabric connection to lab host ``name`` (host key checked, key only)."""
        from provisioning.lab.topology import host

        return cluster.ssh_connection(self.paths, host(name), known_hosts=self.known_hosts)

    def vsctl(self, name: str, *args: str):
        return cluster.vsctl(self.paths, name, *args)


@pytest.fixture(scope="session")
def lab_session():
    """The lab for the whole session; torn down at the end (leaves the machine clean)."""
    paths = LabPaths(Path(settings.LAB_DIR).resolve())
    lab = Lab(paths, Path(settings.PROVISIONING_KNOWN_HOSTS))
    yield lab
    lab.down()


@pytest.fixture
def lab(lab_session):
    """The lab, up (rebuilt if a test took it down)."""
    lab_session.ensure_up()
    return lab_session


@pytest.fixture
def lab_inventory(lab, db):
    """The lab's hosts and guest image registered in the (test) database."""
    hosts = inventory.register_hosts(lab.paths, uplink=lab.uplink)
    image = inventory.register_image(lab.guest)
    return hosts, image
