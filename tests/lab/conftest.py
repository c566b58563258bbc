"""Fixtures for the lab tests: root, real namespaces, OVS, sshd and QEMU on this machine.

The lab tests take over the machine's lab (the namespaces ``worker1``,
``worker2``, ``netnode`` and ``internet`` are global): a lab already running
under the same ``LAB_DIR`` is rebuilt, and the session leaves the lab down.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import pytest
from django.conf import settings

from provisioning.lab import cluster, guest, health, inventory, system
from provisioning.lab.topology import DEFAULT_UPLINK, LabPaths

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
    """The running lab as the tests see it: paths, its host keys, and a way to (re)build it."""

    def __init__(self, paths: LabPaths) -> None:
        self.paths = paths
        self.known_hosts = paths.known_hosts  # written by `lab up`, what the portal trusts
        self.uplink = DEFAULT_UPLINK
        self.guest: guest.GuestImage | None = None
        self.up_seconds: float | None = None

    def is_up(self) -> bool:
        return cluster.is_up(self.paths)

    def ensure_up(self) -> None:
        if not self.is_up():
            timings = cluster.up(self.paths, uplink=self.uplink)
            self.up_seconds = timings["total"]
        if self.guest is None:
            self.guest = guest.ensure_guest(self.paths.images_dir)

    def down(self) -> None:
        cluster.down(self.paths)

    def connect(self, name: str):
        """A Fabric connection to lab host ``name`` (host key checked, key only)."""
        from provisioning.lab.topology import host

        return health.ssh_connection(self.paths, host(name), known_hosts=self.known_hosts)

    def vsctl(self, name: str, *args: str):
        return cluster.vsctl(self.paths, name, *args)


@pytest.fixture(scope="session")
def lab_session():
    """The lab for the whole session; torn down at the end (leaves the machine clean)."""
    root = Path(settings.LAB_DIR).resolve()
    if len(str(root)) > cluster.MAX_LAB_DIR_LENGTH:
        # A deep checkout (CI): console sockets under it would not fit a unix socket path.
        root = Path(tempfile.gettempdir()) / f"slice-portal-lab-{os.getuid()}"
    paths = LabPaths(root)
    others = sorted(str(root) for root in cluster.running_lab_roots() if root != paths.root)
    if others:
        pytest.skip(f"a lab under LAB_DIR={others[0]} is running on this machine: the lab tests would take it over")
    lab = Lab(paths)
    yield lab
    keep_logs(paths)
    try:
        lab.down()
    except system.LabCommandError as exc:  # someone else's lab took the namespaces meanwhile
        warnings.warn(f"lab not taken down: {exc}", stacklevel=1)


def keep_logs(paths: LabPaths) -> None:
    """Copy the hosts' daemon logs, dnsmasq logs and guest consoles to artifacts/ (if it exists) for CI."""
    artifacts = Path(settings.BASE_DIR) / "artifacts"
    if not artifacts.is_dir() or not paths.hosts_dir.is_dir():
        return
    target = artifacts / "lab-logs"
    shutil.rmtree(target, ignore_errors=True)
    for log in paths.hosts_dir.rglob("*.log"):
        destination = target / log.relative_to(paths.hosts_dir)
        destination.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            shutil.copyfile(log, destination)


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


# --- end-to-end: the portal's API, a real RQ worker, PostgreSQL, Redis ----------------------------

E2E_REDIS_DB = 15  # a Redis database of their own: no other worker steals the tests' jobs


def _redis_url(db_number: int) -> str:
    parts = urlsplit(settings.REDIS_URL)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db_number}", parts.query, parts.fragment))


def _database_url() -> str:
    db = settings.DATABASES["default"]
    user = quote(db.get("USER") or "", safe="")
    password = quote(db.get("PASSWORD") or "", safe="")
    credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    return f"postgres://{credentials}{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


class RqWorker:
    """A real `manage.py rqworker provisioning` process, started and stopped by PID."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(self.log_path, "ab")
        self._log = log
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "rqworker", "provisioning"],
            cwd=settings.BASE_DIR,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: the job's work horse goes with it
        )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process is None:
            return
        system.stop_process_group(self.process, timeout=15)
        self._log.close()
        self.process = None


def stop_stale_workers(connection) -> list[int]:
    """End the RQ workers an interrupted run of these tests left on their Redis database (by PID, on this
    machine, only a `manage.py rqworker` process): one would take this run's jobs with its stale code."""
    from rq import Worker

    stopped = []
    for worker in Worker.all(connection=connection):
        if worker.hostname != socket.gethostname() or not worker.pid:
            continue
        try:
            cmdline = Path(f"/proc/{worker.pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"rqworker" in cmdline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGTERM)
                stopped.append(worker.pid)
    return stopped


@pytest.fixture(scope="session")
def e2e_worker(django_db_setup, lab_session, tmp_path_factory):
    """The lab, and an RQ worker process reading the test database and a test-only Redis database."""
    engine = settings.DATABASES["default"]["ENGINE"]
    if "postgresql" not in engine:
        pytest.skip("end-to-end tests need PostgreSQL (DATABASE_URL=postgres://...): another process reads the DB")
    try:
        import redis

        connection = redis.Redis.from_url(_redis_url(E2E_REDIS_DB), socket_connect_timeout=2)
        connection.ping()
    except Exception as exc:
        pytest.skip(f"end-to-end tests need Redis at {settings.REDIS_URL}: {exc}")
    # Jobs of an earlier, interrupted run must not run against this database, nor its worker take ours.
    stop_stale_workers(connection)
    connection.flushdb()
    lab_session.ensure_up()
    artifacts = Path(settings.BASE_DIR) / "artifacts"
    log_dir = artifacts if artifacts.is_dir() else tmp_path_factory.mktemp("rq")
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "REDIS_URL": _redis_url(E2E_REDIS_DB),
        "LAB_DIR": str(lab_session.paths.root),
        "PROVISIONING_KNOWN_HOSTS": str(lab_session.known_hosts),
        "PROVISIONING_RUNNER": "fabric",
        # The lab guest ignores the ACPI power button: a shut down is forced off after this (tests/lab/test_power.py).
        "PROVISIONING_SHUTDOWN_TIMEOUT": os.environ.get("PROVISIONING_SHUTDOWN_TIMEOUT", "8"),
        "PYTHONUNBUFFERED": "1",
    }
    worker = RqWorker(env, log_dir / "lab-e2e-rqworker.log")
    worker.start()
    yield worker
    worker.stop()
    connection.flushdb()


LEASE_TIMINGS: list[tuple[str, str, str, float, float]] = []  # (test, vm, nic, guest uptime, since deploy)


def pytest_terminal_summary(terminalreporter):
    if not LEASE_TIMINGS:
        return
    terminalreporter.section("lab guests: boot-to-lease")
    terminalreporter.write_line(f"{'test':52} {'vm':10} {'nic':5} {'uptime at lease':>16} {'since deploy':>13}")
    for test, vm, nic, uptime, since in LEASE_TIMINGS:
        terminalreporter.write_line(f"{test[:52]:52} {vm:10} {nic:5} {uptime:15.2f}s {since:12.2f}s")
    uptimes = [row[3] for row in LEASE_TIMINGS]
    terminalreporter.write_line(
        f"{len(uptimes)} leases: boot-to-lease min {min(uptimes):.2f}s, "
        f"median {sorted(uptimes)[len(uptimes) // 2]:.2f}s, max {max(uptimes):.2f}s"
    )
