"""scripts/setup.sh waits (bounded, and says so) for another apt/dpkg holding its lock.

The functions are run from the sourced script against a lock file of the test's
own (``APT_LOCK_FILES``), held the way dpkg holds its locks (``fcntl``) by a
separate process; ``apt-get`` itself is a stub that records its arguments.
Nothing is installed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SETUP = ROOT / "scripts" / "setup.sh"

HOLD_LOCK = """
import fcntl, sys, time
f = open(sys.argv[1], "a+")
fcntl.lockf(f, fcntl.LOCK_EX)  # what dpkg and apt do (fcntl, not flock)
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
"""


@pytest.fixture
def lock_file(tmp_path) -> Path:
    path = tmp_path / "lock-frontend"
    path.touch()
    return path


@pytest.fixture
def hold_lock(lock_file):
    """Start a process that holds ``lock_file`` for ``seconds``; it is killed at the end."""
    holders: list[subprocess.Popen] = []

    def hold(seconds: float) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "-c", HOLD_LOCK, str(lock_file), str(seconds)], stdout=subprocess.PIPE, text=True
        )
        holders.append(proc)
        assert proc.stdout.readline().strip() == "locked"
        return proc

    yield hold
    for proc in holders:
        proc.kill()
        proc.wait()


def run_sourced(script: str, *, lock_file: Path, timeout: int, path: str | None = None):
    """Run ``script`` in bash after sourcing scripts/setup.sh (which then runs nothing itself)."""
    env = {**os.environ, "APT_LOCK_FILES": str(lock_file), "APT_LOCK_TIMEOUT": str(timeout)}
    if path:
        env["PATH"] = f"{path}:{env['PATH']}"
    started = time.monotonic()
    result = subprocess.run(
        ["bash", "-c", f'source "{SETUP}"; {script}'], env=env, capture_output=True, text=True, timeout=60
    )
    return result, time.monotonic() - started


def test_a_free_lock_is_not_waited_for(lock_file):
    result, seconds = run_sourced("wait_for_apt_locks", lock_file=lock_file, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout == result.stderr == ""
    assert seconds < 5


def test_waits_for_a_held_lock_and_says_who_holds_it(lock_file, hold_lock):
    holder = hold_lock(2)
    result, seconds = run_sourced("wait_for_apt_locks && echo done", lock_file=lock_file, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "done\n"
    assert seconds >= 1.5  # it waited for the holder to finish
    assert f"waiting for another apt/dpkg to finish: {lock_file} is held by {holder.pid} (python" in result.stderr
    assert "at most 30s" in result.stderr


def test_gives_up_after_the_timeout_naming_the_holder(lock_file, hold_lock):
    holder = hold_lock(60)
    result, seconds = run_sourced("wait_for_apt_locks; echo not reached", lock_file=lock_file, timeout=2)
    assert result.returncode == 1
    assert "not reached" not in result.stdout  # set -e: setup.sh stops there
    assert f"{lock_file} is still held by {holder.pid} (python" in result.stderr
    assert "after 2s" in result.stderr
    assert 2 <= seconds < 10


def test_apt_get_waits_for_the_lock_and_lets_apt_wait_too(lock_file, hold_lock, tmp_path):
    """The apt_get wrapper: waits first, then apt-get with DPkg::Lock::Timeout (a stub records it)."""
    stub_dir = tmp_path / "bin"
    stub_dir.mkdir()
    record = tmp_path / "apt-get.args"
    stub = stub_dir / "apt-get"
    stub.write_text(f'#!/bin/sh\necho "$@" > {record}\n')
    stub.chmod(0o755)
    hold_lock(1)
    result, _ = run_sourced("apt_get update -qq", lock_file=lock_file, timeout=45, path=str(stub_dir))
    assert result.returncode == 0, result.stderr
    assert "waiting for another apt/dpkg" in result.stderr
    assert record.read_text().split() == ["-o", "DPkg::Lock::Timeout=45", "update", "-qq"]


def test_every_apt_get_call_goes_through_the_waiting_wrapper():
    """Only the wrapper runs apt-get itself; everything else calls apt_get."""
    calls = []
    for line in SETUP.read_text().splitlines():
        code = line.split("#", 1)[0].strip()
        if re.search(r"(^|[\s;&|(])apt-get\s", code) and not code.startswith("echo"):
            calls.append(code)
    assert calls == ['apt-get -o DPkg::Lock::Timeout="$APT_LOCK_TIMEOUT" "$@"']
    assert "apt_get update" in SETUP.read_text() and "apt_get install" in SETUP.read_text()
