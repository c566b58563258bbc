"""SSH connections a worker keeps between jobs (provisioning.sshpool), against the test session's real sshd."""

import os
import signal
import subprocess
import threading
import time

import pytest

from provisioning import sshpool
from provisioning.plans import HostCommand
from provisioning.runners import FabricRunner, SshTarget

from .conftest import needs_sshd
from .consoles_support import logins

pytestmark = needs_sshd

TRUE = [HostCommand(("true",), "t")]


def worker1(sshd, pool, *, user="root", connect_timeout=5) -> FabricRunner:
    """A job's runner for "worker1", the test sshd."""
    target = {"worker1": SshTarget("worker1", "127.0.0.1", sshd.port, user, str(sshd.client_key))}
    return FabricRunner(target, known_hosts=str(sshd.known_hosts), connect_timeout=connect_timeout, pool=pool)


def job(sshd, pool, *, user="root", connect_timeout=5, command=TRUE):
    """One job's runner: a stage on worker1, then close (the connection goes back to the pool)."""
    with worker1(sshd, pool, user=user, connect_timeout=connect_timeout) as runner:
        events = list(runner.run_stage({"worker1": command}))
    (host,) = [e for e in events if e.kind == "host"]
    return runner.stats["worker1"], host


def descendants(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [p for child in map(int, out) for p in (child, *descendants(child))]


def test_a_second_job_to_the_same_host_reuses_the_first_jobs_connection(sshd):
    pool = sshpool.ConnectionPool(keep=60)
    try:
        before = logins(sshd)
        first, ok1 = job(sshd, pool)
        second, ok2 = job(sshd, pool)
        assert ok1.ok and ok2.ok
        assert (first.connections, first.reused) == (1, 0)
        assert (second.connections, second.reused) == (0, 1)
        assert logins(sshd) - before == 1  # one SSH login for both jobs
        assert len(pool) == 1
    finally:
        pool.clear()
    assert len(pool) == 0


def test_another_target_never_gets_a_kept_connection(sshd):
    pool = sshpool.ConnectionPool(keep=60)
    try:
        job(sshd, pool)
        other, ok = job(sshd, pool, user="nobody")  # not allowed in: a new connection, refused
        assert not ok.ok and "cannot connect" in ok.error
        assert (other.connections, other.reused) == (1, 0)
    finally:
        pool.clear()


def test_a_connection_idle_longer_than_keep_is_closed_not_reused(sshd):
    pool = sshpool.ConnectionPool(keep=0.5)
    try:
        job(sshd, pool)
        time.sleep(0.7)
        later, ok = job(sshd, pool)
        assert ok.ok and (later.connections, later.reused) == (1, 0)
        assert pool.stats["expired"] == 1
    finally:
        pool.clear()


def test_keep_zero_closes_at_the_end_of_the_job(sshd):
    pool = sshpool.ConnectionPool(keep=0)
    job(sshd, pool)
    assert len(pool) == 0


def test_a_kept_connection_whose_server_died_is_replaced(sshd):
    """The server side of the kept connection is killed: the next job connects afresh and succeeds."""
    pool = sshpool.ConnectionPool(keep=60)
    try:
        job(sshd, pool)
        for pid in descendants(sshd.proc.pid):
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.3)
        later, ok = job(sshd, pool)
        assert ok.ok and (later.connections, later.reused) == (1, 0)
    finally:
        pool.clear()


def test_a_kept_connection_that_hangs_is_replaced_after_the_connect_timeout(sshd, tmp_path):
    """The kept connection's server is frozen (its transport still looks alive): opening a channel on it
    times out, and the job goes on over a fresh connection instead of failing."""
    pool = sshpool.ConnectionPool(keep=60)
    frozen: list[int] = []
    try:
        job(sshd, pool)
        frozen = descendants(sshd.proc.pid)
        assert frozen
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        marker = tmp_path / "ran"
        later, ok = job(sshd, pool, connect_timeout=2, command=[HostCommand(("touch", str(marker)), "touch")])
        assert ok.ok, ok.error
        assert marker.exists()
        assert (later.connections, later.reused) == (1, 1)  # taken, found hung, replaced
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGKILL)
        pool.clear()


def test_only_a_worker_process_has_a_pool(settings):
    settings.PROVISIONING_SSH_KEEP = 30
    assert sshpool.worker_pool() is None  # the web process, tests: every job closes its own
    sshpool.enable()
    try:
        assert sshpool.worker_pool() is not None and sshpool.worker_pool().keep == 30
    finally:
        sshpool.disable()
    assert sshpool.worker_pool() is None


@pytest.mark.parametrize("keep", [0])
def test_keep_zero_means_no_pool_even_in_a_worker(settings, keep):
    settings.PROVISIONING_SSH_KEEP = keep
    sshpool.enable()
    try:
        assert sshpool.worker_pool() is None
    finally:
        sshpool.disable()


def test_a_job_aborted_mid_trip_closes_that_connection_instead_of_keeping_it(sshd, tmp_path):
    """The job's timeout struck while a host's script ran: close() ends that script (its connection
    closes, as a forked job's death closed it) and keeps nothing a later job could inherit busy."""
    pool = sshpool.ConnectionPool(keep=60)
    marker = tmp_path / "never"
    runner = worker1(sshd, pool)
    commands = [HostCommand(("sleep", "30"), "long"), HostCommand(("touch", str(marker)), "after")]
    events: list = []
    lane = threading.Thread(target=lambda: events.extend(runner.run_stage({"worker1": commands})))
    lane.start()
    try:
        deadline = time.monotonic() + 10
        while not [e for e in events if e.kind == "began"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [e for e in events if e.kind == "began"], "the script never started"
        runner.close()  # what the executor's `with runner:` does when the job's timeout strikes
        lane.join(timeout=15)
        assert not lane.is_alive()
        assert len(pool) == 0
        (host,) = [e for e in events if e.kind == "host"]
        assert not host.ok
        assert not marker.exists()
    finally:
        pool.clear()


def test_an_idle_worker_closes_expired_connections_by_itself(sshd):
    """No job comes: the sweeper still closes the kept connection once it has been idle ``keep`` seconds."""
    pool = sshpool.ConnectionPool(keep=0.5)
    pool.start_sweeper()
    try:
        job(sshd, pool)
        ((kept, _),) = pool._idle.values()
        assert kept.transport.is_active()
        deadline = time.monotonic() + 5
        while len(pool) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(pool) == 0 and pool.stats["expired"] == 1
        assert not kept.transport.is_active()  # closed: its sshd session on the host ends with it
    finally:
        pool.clear()
