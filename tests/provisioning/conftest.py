"""Fixtures of the provisioning tests: a real sshd on 127.0.0.1, hosts that point at it, specs.

The sshd is started by the test session (generated ed25519 host and client
keys, a high port, a known-hosts file written here) and stopped by its PID.
Commands sent to it in these tests only touch temporary directories.
"""

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from inventory.models import Flavor, Host, Image

SSHD = "/usr/sbin/sshd"
needs_sshd = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists(SSHD), reason="needs root and openssh-server (a real sshd)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalSshd:
    """A private sshd on 127.0.0.1 for the tests."""

    def __init__(self, root: Path):
        self.root = root
        self.port = free_port()
        self.host_key = root / "ssh_host_ed25519_key"
        self.client_key = root / "id_ed25519"
        self.known_hosts = root / "known_hosts"
        self.config = root / "sshd_config"
        self.log = root / "sshd.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "LocalSshd":
        for key in (self.host_key, self.client_key):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        (self.root / "authorized_keys").write_text(Path(f"{self.client_key}.pub").read_text())
        os.chmod(self.root / "authorized_keys", 0o600)
        self.config.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {self.host_key}",
                    f"PidFile {self.root / 'sshd.pid'}",
                    f"AuthorizedKeysFile {self.root / 'authorized_keys'}",
                    "PermitRootLogin prohibit-password",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UsePAM no",
                    "StrictModes no",
                    "UseDNS no",
                    "MaxStartups 50",
                    "MaxSessions 50",
                    "LogLevel INFO",
                    "",
                ]
            )
        )
        key_type, key_b64 = Path(f"{self.host_key}.pub").read_text().split()[:2]
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {key_type} {key_b64}\n")
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen([SSHD, "-D", "-f", str(self.config), "-E", str(self.log)])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"sshd did not start: {self.log.read_text() if self.log.exists() else ''}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # by the PID we started, never by name
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def purge_queue(redis, name: str) -> None:
    """Remove every Redis key of a test queue: its jobs (with results and executions), registries, workers."""
    for key in redis.scan_iter(match="rq:job:*"):
        origin = redis.hget(key, "origin")
        if origin is not None and origin.decode() == name:
            job_id = key.decode().split(":", 2)[2]
            for related in redis.scan_iter(match=f"rq:*{job_id}*"):
                redis.delete(related)
    for key in redis.scan_iter(match=f"*{name}*"):
        redis.delete(key)


@pytest.fixture
def rq_queue(settings):
    """A queue of its own in the real Redis for this test; removed afterwards."""
    import uuid

    from provisioning import queue

    settings.PROVISIONING_QUEUE = f"sp-test-{uuid.uuid4().hex[:10]}"
    queue = queue.provisioning_queue()
    yield queue
    purge_queue(queue.connection, queue.name)


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    if os.geteuid() != 0 or not os.path.exists(SSHD):
        pytest.skip("needs root and openssh-server (a real sshd)")
    server = LocalSshd(tmp_path_factory.mktemp("sshd")).start()
    yield server
    server.stop()


@pytest.fixture
def host_dirs(tmp_path):
    """A state dir per fake host (like the lab, where hosts share one filesystem)."""
    dirs = {name: tmp_path / name for name in ("netnode", "worker1", "worker2")}
    for d in dirs.values():
        d.mkdir()
    yield dirs
    shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.fixture
def ssh_hosts(db, sshd, host_dirs, settings):
    """netnode, worker1 and worker2 all reached through the local sshd (each its own connection)."""
    settings.PROVISIONING_KNOWN_HOSTS = str(sshd.known_hosts)
    settings.PROVISIONING_CONNECT_TIMEOUT = 5
    settings.PROVISIONING_COMMAND_TIMEOUT = 60
    settings.PROVISIONING_RUNNER = "fabric"
    settings.PROVISIONING_LEASE_WAIT = 1
    common = {
        "management_address": "127.0.0.1",
        "ssh_port": sshd.port,
        "ssh_user": "root",
        "ssh_key_path": str(sshd.client_key),
    }
    netnode = Host.objects.create(
        name="netnode", role=Host.Role.NETWORK, uplink="up0", state_dir=str(host_dirs["netnode"]), **common
    )
    workers = [
        Host.objects.create(
            name=name,
            role=Host.Role.WORKER,
            vcpus=4,
            ram_mib=4096,
            accel=Host.Accel.TCG,
            state_dir=str(host_dirs[name]),
            **common,
        )
        for name in ("worker1", "worker2")
    ]
    return {"netnode": netnode, "workers": workers}


@pytest.fixture
def inventory(db):
    """Hosts that are never contacted (plans, placement, API): a network node and two workers."""
    netnode = Host.objects.create(
        name="netnode", role=Host.Role.NETWORK, management_address="192.0.2.3", state_dir="/var/lib/sp"
    )
    workers = [
        Host.objects.create(
            name=f"worker{i}",
            role=Host.Role.WORKER,
            management_address=f"192.0.2.{10 + i}",
            vcpus=4,
            ram_mib=4096,
            accel=Host.Accel.TCG,
            state_dir="/var/lib/sp",
        )
        for i in (1, 2)
    ]
    return {"netnode": netnode, "workers": workers}


@pytest.fixture
def tiny(db):
    flavor, _ = Flavor.objects.get_or_create(name="tiny", defaults={"vcpus": 1, "ram_mib": 128, "is_default": True})
    return flavor


@pytest.fixture
def kernel_image(db):
    image, _ = Image.objects.get_or_create(
        name="test-kernel",
        defaults={
            "kind": Image.Kind.KERNEL,
            "kernel_path": "/boot/vmlinuz",
            "initrd_path": "/boot/initrd.img",
            "kernel_args": "console=ttyS0",
            "is_default": not Image.objects.filter(is_default=True).exists(),
        },
    )
    return image


# The console tests' fixtures (imported here so that any test module can use them by name).
from .consoles_support import console_layer, daphne, running_vm, vnc_vm  # noqa: E402, F401
