"""The benchmarks' and the lab tests' waits for guests stop at once when the deployment failed.

A deployment that fails at its first SSH connection (an unknown host key, say)
never starts a guest: waiting out the lease timeout (300 s in the benchmark)
only hides its error. No lab here: the guests' console logs are files that
never get a lease line, and the deployment is a stand-in.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ERROR = "netnode: cannot connect to 192.168.77.13:22 as root: unknown host key (not in /x/known_hosts)"


@pytest.fixture
def labkit(monkeypatch):
    """bench/labkit.py, imported the way the benchmarks import it (bench/ on sys.path)."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    sys.modules.pop("labkit", None)
    import labkit

    return labkit


def silent_guests(labkit, tmp_path) -> dict:
    """Two ring VMs whose consoles print nothing (as when QEMU never started)."""
    ends = {}
    for vm_id, peer in ((1, 2), (2, 1)):
        state_dir = tmp_path / f"worker{vm_id}"
        (state_dir / "vms" / f"vm{vm_id}").mkdir(parents=True)
        (state_dir / "vms" / f"vm{vm_id}" / "console.log").write_text("SP: BOOT userspace uptime=1.90\n")
        ends[vm_id] = labkit.GuestEnd(vm_id, f"vm{vm_id}", str(state_dir), ["eth1"], "eth1", peer, "eth1")
    return ends


def test_wait_ready_stops_as_soon_as_the_deployment_failed(labkit, tmp_path):
    answers = iter([None, None, f"deployment 7 failed: {ERROR}"])
    asked = []

    def gave_up():
        asked.append(time.monotonic())
        return next(answers, f"deployment 7 failed: {ERROR}")

    started = time.monotonic()
    with pytest.raises(labkit.GaveUp) as failure:
        labkit.wait_ready(silent_guests(labkit, tmp_path), started, timeout=300, gave_up=gave_up, poll=0.1)
    assert time.monotonic() - started < 5  # not the 300 s lease timeout
    assert str(failure.value) == f"deployment 7 failed: {ERROR}"
    assert len(asked) == 3


def test_wait_ready_reports_the_failed_deployment_rather_than_the_timeout(labkit, tmp_path):
    """A deployment that failed only as the guests' wait ran out: its error is shown, not the timeout."""
    started = time.monotonic()

    def gave_up():
        return f"deployment 8 failed: {ERROR}" if time.monotonic() > started + 0.2 else None

    with pytest.raises(labkit.GaveUp, match="deployment 8 failed: netnode: cannot connect"):
        labkit.wait_ready(silent_guests(labkit, tmp_path), started, timeout=0.2, gave_up=gave_up, poll=0.05)


class FakeApi:
    """The two answers Portal.lease needs from the portal's API: the deploy request and the deployment."""

    def __init__(self, status: str) -> None:
        self.status = status
        self.gets = 0

    class Response:
        def __init__(self, code: int, data: dict) -> None:
            self.status_code, self.data = code, data

    def post(self, url, data, format):
        return self.Response(202, {"id": 9, "status": "queued"})

    def get(self, url):
        self.gets += 1
        assert url == "/api/deployments/9/"
        steps = [{"host": "netnode", "description": "Create br-int", "status": "failed"}]
        return self.Response(200, {"id": 9, "status": self.status, "error": ERROR, "steps": steps})


def test_lab_driver_lease_stops_at_the_failed_deployment(tmp_path, monkeypatch):
    from tests.lab.driver import Portal

    portal = Portal(FakeApi("failed"), lab=None, worker=None, test_name="t", timings=[])
    monkeypatch.setattr(portal, "state_dir", lambda vm: str(tmp_path))
    portal.request(3, "deploy")
    started = time.monotonic()
    with pytest.raises(AssertionError) as failure:
        portal.lease({"id": 1, "name": "vm1", "slice": 3}, "eth1", timeout=120)
    assert time.monotonic() - started < 5
    assert f"vm1: no DHCP lease on eth1: deployment 9 failed: {ERROR}" in str(failure.value)
    assert "netnode: Create br-int" in str(failure.value)
