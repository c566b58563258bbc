"""The lab's hosts: `manage.py lab up | status | down`, SSH into them, and the VLAN underlay."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from inventory.models import Host, Image
from provisioning.lab import cluster, health, system
from provisioning.lab.topology import (
    HOST_TRUNK_IF,
    HOSTS,
    INTERNET_ADDRESS,
    INTERNET_NAMESPACE,
    KNOWN_HOSTS_MARKER,
    NETWORK_NODE,
    LabPaths,
    host,
)

pytestmark = pytest.mark.lab
ROOT = Path(__file__).resolve().parents[2]


def machine_snapshot(lab) -> dict:
    """What the lab could leave behind: namespaces, root links, processes, files, known-hosts lines."""
    root = str(lab.paths.root)
    processes = sorted(
        f"{p.name} {system.cmdline(int(p.name))[:80]}"
        for p in Path("/proc").iterdir()
        if p.name.isdigit() and root in system.cmdline(int(p.name)) and system.pid_alive(int(p.name))
    )
    files = (
        sorted(
            str(p.relative_to(lab.paths.root))
            for p in lab.paths.root.rglob("*")
            if lab.paths.images_dir not in p.parents and p != lab.paths.images_dir
        )
        if lab.paths.root.exists()
        else []
    )
    known = lab.known_hosts.read_text().splitlines() if lab.known_hosts.exists() else []
    return {
        "namespaces": system.namespaces(),
        "links": sorted(p.name for p in Path("/sys/class/net").iterdir()),
        "processes": processes,
        "files": files,
        "known_hosts": [line for line in known if KNOWN_HOSTS_MARKER in line],
    }


@pytest.mark.django_db
def test_lab_up_status_down_leaves_nothing_behind(lab_session, capsys, settings):
    lab = lab_session
    settings.LAB_DIR = lab.paths.root  # what the command uses (the session may have chosen a shorter one)
    settings.PROVISIONING_KNOWN_HOSTS = str(lab.known_hosts)
    lab.down()  # start from a clean machine, whatever earlier tests left up
    before = machine_snapshot(lab)
    assert not before["processes"] and not before["known_hosts"]
    Host.objects.create(name="netnode", role="network", management_address="10.0.10.3", uplink="ens3")

    started = time.monotonic()
    call_command("lab", "up", "--no-image")
    up_seconds = time.monotonic() - started
    call_command("lab", "image")  # cached kernel: no download the second time
    out = capsys.readouterr().out
    assert "lab up in" in out

    # The hosts are registered (idempotently) with what the engine needs.
    call_command("lab", "up", "--no-image")
    rows = {h.name: h for h in Host.objects.all()}
    assert set(rows) == {"worker1", "worker2", "netnode"}
    assert rows["netnode"].role == "network" and rows["netnode"].uplink == "ens3"
    assert rows["netnode"].management_address == "192.168.77.13"
    for name in ("worker1", "worker2"):
        assert rows[name].role == "worker" and rows[name].vcpus >= 2 and rows[name].enabled
    for row in rows.values():
        assert row.state_dir == str(lab.paths.state_dir(row.name))
        assert Path(row.ssh_key_path).is_file()
    image = Image.objects.get(is_default=True)
    assert image.kind == "kernel" and Path(image.kernel_path).is_file() and Path(image.initrd_path).is_file()

    call_command("lab", "status")
    status_out = capsys.readouterr().out
    for name in ("worker1", "worker2", "netnode"):
        assert f"{name}" in status_out
    assert "UNHEALTHY" not in status_out
    known = lab.known_hosts.read_text()
    assert all(str(h.management_address) in known for h in HOSTS)

    # Status notices a broken host and exits non-zero.
    sshd_pid = system.read_pid_file(lab.paths.sshd_dir("worker2") / "sshd.pid")
    system.terminate([sshd_pid])
    with pytest.raises(CommandError):
        call_command("lab", "status")
    assert "worker2   UNHEALTHY" in capsys.readouterr().out

    started = time.monotonic()
    call_command("lab", "down")
    down_seconds = time.monotonic() - started
    after = machine_snapshot(lab)
    assert after == before
    assert not Host.objects.filter(enabled=True).exists()  # disabled, not deleted
    print(f"\nlab up {up_seconds:.2f}s, lab down {down_seconds:.2f}s")


def test_lab_up_replaces_a_crashed_lab(lab_session):
    """`up` over a half-dead lab (daemons killed, a stray DHCP namespace) rebuilds it cleanly."""
    lab = lab_session
    lab.ensure_up()
    system.terminate([system.read_pid_file(lab.paths.ovs_dir("worker1") / "ovs-vswitchd.pid")])
    subprocess.run(["ip", "netns", "add", "ns-dhcp-vlan3999"], check=True)
    assert not lab.is_up()
    cluster.up(lab.paths)
    assert lab.is_up()
    assert "ns-dhcp-vlan3999" not in system.namespaces()


def test_fabric_reaches_every_host_and_its_own_ovs(lab):
    for lab_host in HOSTS:
        with lab.connect(lab_host.name) as connection:

            def sh(command: str, connection=connection, lab_host=lab_host) -> str:
                result = connection.run(command, hide=True, warn=True)
                assert result.ok, f"{lab_host.name}: `{command}` exited {result.exited}: {result.stderr}"
                return result.stdout

            listing = sh("ovs-vsctl br-exists br-int && ovs-vsctl list-ports br-int && ip -o link")
            assert HOST_TRUNK_IF in listing.split()
            # The session runs inside that host's namespace: only its own links.
            assert f"{HOST_TRUNK_IF}@" in listing and "sp-lab-mgmt" not in listing
            assert sh("ovs-vsctl get Open_vSwitch . external-ids:system-id").strip().strip('"') == lab_host.name
            assert sh(f"ovs-vsctl get port {HOST_TRUNK_IF} tag").strip() == "[]"


def test_host_keys_are_checked(lab, tmp_path):
    """A connection with a known-hosts file that lacks the lab's keys is refused."""
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    connection = health.ssh_connection(lab.paths, host("worker1"), known_hosts=empty)
    with pytest.raises(Exception, match="not found in known_hosts"):
        connection.run("true", hide=True)


def test_netnode_reaches_the_internet_namespace(lab):
    with lab.connect(NETWORK_NODE.name) as connection:
        assert connection.run(f"ping -c 1 -W 2 {INTERNET_ADDRESS}", hide=True, warn=True).ok
        assert connection.run("ip route show default", hide=True).stdout.startswith(f"default via {INTERNET_ADDRESS}")
    assert system.namespace_exists(INTERNET_NAMESPACE)


class Endpoints:
    """Test endpoints: a namespace per endpoint with a veth whose host end is an access port on br-int."""

    def __init__(self, lab) -> None:
        self.lab = lab
        self.made: list[tuple[str, str, str]] = []  # (host, port, namespace)

    def add(self, host_name: str, vlan: int, address: str) -> str:
        suffix = uuid.uuid4().hex[:6]
        namespace, port = f"sp-test-{suffix}", f"tp{suffix}"
        system.run(["ip", "netns", "add", namespace])
        self.made.append((host_name, port, namespace))
        system.run(
            ["ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", namespace], netns=host_name
        )
        for command, ns in (
            (["ethtool", "-K", port, "tx", "off"], host_name),
            (["ip", "link", "set", port, "up"], host_name),
            (["ethtool", "-K", "eth0", "tx", "off"], namespace),
            (["ip", "addr", "add", address, "dev", "eth0"], namespace),
            (["ip", "link", "set", "eth0", "up"], namespace),
            (["ip", "link", "set", "lo", "up"], namespace),
        ):
            system.run(command, netns=ns)
        # The same command a deploy runs on a worker, over SSH.
        with self.lab.connect(host_name) as connection:
            connection.run(f"ovs-vsctl --may-exist add-port br-int {port} tag={vlan}", hide=True)
        return namespace

    def remove(self) -> None:
        for host_name, port, namespace in self.made:
            self.lab.vsctl(host_name, "--if-exists", "del-port", "br-int", port)
            system.run(["ip", "netns", "del", namespace], check=False)


@pytest.fixture
def endpoints(lab):
    made = Endpoints(lab)
    yield made
    made.remove()


def test_tagged_frames_cross_the_underlay_between_workers(lab, endpoints):
    a = endpoints.add("worker1", 101, "10.99.0.1/24")
    b = endpoints.add("worker2", 101, "10.99.0.2/24")
    other = endpoints.add("worker2", 102, "10.99.0.3/24")  # same subnet, another VLAN

    capture = subprocess.Popen(
        ["timeout", "20", "tcpdump", "-l", "-n", "-e", "-i", host("worker2").underlay_veth, "vlan 101 and icmp"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    snoop = subprocess.Popen(
        ["ip", "netns", "exec", other, "timeout", "20", "tcpdump", "-l", "-n", "-e", "-i", "eth0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    time.sleep(1)
    ping = system.run(["ping", "-c", "3", "-i", "0.2", "-W", "2", "10.99.0.2"], netns=a, check=False)
    assert ping.returncode == 0, ping.stdout
    # TCP too (the checksum trap of the userspace datapath shows up with TCP only).
    server = subprocess.Popen(
        ["ip", "netns", "exec", b, "timeout", "10", "busybox", "nc", "-l", "-p", "5001"],
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(0.3)
    system.run(["sh", "-c", "echo over-tcp | timeout 5 busybox nc 10.99.0.2 5001"], netns=a, check=False)
    assert server.communicate(timeout=12)[0].strip() == "over-tcp"

    # The VLAN 102 endpoint can reach no one on VLAN 101 and sees none of its frames.
    isolated = system.run(["ping", "-c", "2", "-i", "0.3", "-W", "1", "10.99.0.1"], netns=other, check=False)
    assert isolated.returncode != 0
    time.sleep(0.5)  # let the captures print the last frames, then stop them (our own children)
    capture.terminate()
    snoop.terminate()
    tagged = capture.communicate(timeout=10)[0]
    seen_by_other = snoop.communicate(timeout=10)[0]
    assert "vlan 101" in tagged, "no 802.1Q-tagged frame of VLAN 101 crossed the underlay"
    assert "10.99.0.1" not in seen_by_other.replace("10.99.0.1 tell 10.99.0.3", "")
    assert "10.99.0.2" not in seen_by_other


def test_a_lab_under_another_lab_dir_is_not_taken_over(lab):
    """Namespace names are global: a second LAB_DIR must not tear down a running lab."""
    other = LabPaths(Path("/tmp/sp-other-lab"))  # never created: both calls refuse first
    with pytest.raises(system.LabCommandError, match=f"LAB_DIR={lab.paths.root}"):
        cluster.up(other)
    assert not other.root.exists()
    with pytest.raises(system.LabCommandError, match="is running on this machine"):
        cluster.down(other)
    assert lab.is_up()
    assert cluster.running_lab_roots() == {lab.paths.root}


SECOND_CHECKOUT = """
import django
django.setup()
from django.conf import settings
from provisioning.lab.topology import HOSTS, LabPaths
from provisioning.plans import HostCommand
from provisioning.runners import FabricRunner, SshTarget

paths = LabPaths(settings.LAB_DIR)
targets = {h.name: SshTarget(h.name, str(h.management_address), 22, "root", str(paths.client_key)) for h in HOSTS}
stage = {h.name: [HostCommand(("ovs-vsctl", "br-exists", "br-int"), "br-int")] for h in HOSTS}
with FabricRunner(targets, known_hosts=settings.PROVISIONING_KNOWN_HOSTS, connect_timeout=5) as runner:
    for event in runner.run_stage(stage):
        if event.kind == "host":
            print(event.host, "ok" if event.ok else f"FAILED {event.error}")
"""


def test_another_checkout_deploys_to_the_lab_with_its_own_settings(lab, tmp_path):
    """The lab is machine-wide, and so are its host keys: a checkout that did not bring it up trusts it.

    The "other checkout" is a process with its own var/ (SLICE_PORTAL_VAR, no known_hosts
    there) and the default PROVISIONING_KNOWN_HOSTS; it connects to every lab host the way a
    deploy does (the engine's FabricRunner, host keys checked). With a PROVISIONING_KNOWN_HOSTS
    that leaves the lab's file out, the connection is refused naming the files, and
    `lab status` says exactly what to set.
    """
    base = {k: v for k, v in os.environ.items() if k != "PROVISIONING_KNOWN_HOSTS"}
    other = {**base, "SLICE_PORTAL_VAR": str(tmp_path / "var"), "LAB_DIR": str(lab.paths.root)}

    def run(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)

    result = run("-c", SECOND_CHECKOUT, env=other)
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.split("\n")[:-1]) == ["netnode ok", "worker1 ok", "worker2 ok"], result.stdout

    own = tmp_path / "own_known_hosts"
    own.write_text("")
    narrowed = {**other, "PROVISIONING_KNOWN_HOSTS": str(own)}
    result = run("-c", SECOND_CHECKOUT, env=narrowed)
    assert f"worker1 FAILED worker1: cannot connect to 192.168.77.11:22 as root: unknown host key (not in {own})" in (
        result.stdout
    )
    status = run("manage.py", "lab", "status", env=narrowed)
    assert status.returncode == 0, status.stdout + status.stderr  # the lab itself is healthy
    assert f"does not list the lab's host keys, {lab.paths.known_hosts}" in status.stderr
    assert f"PROVISIONING_KNOWN_HOSTS={lab.paths.known_hosts}{os.pathsep}{own}" in status.stderr
