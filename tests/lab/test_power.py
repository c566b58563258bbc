"""Power actions on the lab (issue 10): real QEMU guests, through the portal's API and RQ worker.

Reboot keeps the QEMU process, its TAPs and MACs, and the guest leases the same address again;
shut down then start brings a VM back with its link; force off is reported as stopped; an
unchanged redeploy brings a stopped VM back. After each of reboot, shut down + start and force
off + start (and after that redeploy), an unchanged redeploy runs no mutating command: every step
of its plan is skipped by its check (only the read-only observation runs), the hosts are as they
were and the guests keep their QEMU processes.

The lab guest (busybox) does not act on the ACPI power button, so shut down ends with the forced
off fallback after PROVISIONING_SHUTDOWN_TIMEOUT (short for the lab's RQ worker, tests/lab/conftest.py).
"""

from __future__ import annotations

import re
import time

import pytest

from provisioning.lab import console
from tests.lab import hoststate
from tests.lab.driver import LEASE_RE, LEASE_TIMEOUT, Portal, interface
from tests.lab.test_e2e import assert_restored, new_slice, portal  # noqa: F401 (the fixture)

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def power(driver: Portal, vm: dict, action: str) -> dict:
    """POST /api/vms/{id}/power/ and wait for the job; it must succeed. Returns it with its steps."""
    r = driver.api.post(f"/api/vms/{vm['id']}/power/", {"action": action}, format="json")
    assert r.status_code == 202, r.data
    done = driver.wait(r.data)
    failed = [s for s in done["steps"] if s["status"] == "failed"]
    assert done["status"] == "succeeded", f"{action}: {done['error']}\nfailed steps: {failed}"
    return done


def leases_of(driver: Portal, vm: dict, nic: str) -> list[str]:
    """Every address the guest reported leasing on ``nic``, in order (this QEMU process's console log)."""
    text = console.read_log(driver.state_dir(vm), vm["id"])
    return [m["ip"] for m in re.finditer(LEASE_RE.format(nic=nic), text, re.MULTILINE)]


def wait_leases(driver: Portal, vm: dict, nic: str, count: int) -> list[str]:
    deadline = time.monotonic() + LEASE_TIMEOUT
    while len(found := leases_of(driver, vm, nic)) < count:
        assert time.monotonic() < deadline, f"{vm['name']}: {len(found)} leases on {nic}, wanted {count}: {found}"
        time.sleep(0.5)
    return found


def status(driver: Portal, vm: dict) -> str:
    return driver.get_vm(vm)["status"]


READ_ONLY_PHASES = ("probe", "observe")  # the executor's KVM probe, lease read and console tails


def assert_redeploy_changes_nothing(driver: Portal, slice_id: int, lab, vms: list[dict], after: str) -> None:
    """An unchanged redeploy: every step of its plan skipped (no mutating command ran), hosts and QEMU as before."""
    deployed = hoststate.snapshot(lab)
    pids = [driver.qemu_pid(vm) for vm in vms]
    assert None not in pids, f"after {after}: a VM is not running: {pids}"
    again = driver.run(slice_id, "redeploy")
    plan_steps = [st for st in again["steps"] if st["phase"] not in READ_ONLY_PHASES]
    commands = [c for stage in again["plan"]["stages"] for ph in stage["phases"] for c in ph["commands"]]
    assert len(plan_steps) == len(commands) > 0
    ran = [(st["host"], st["description"], st["status"]) for st in plan_steps if st["status"] != "skipped"]
    assert not ran, f"after {after}, an unchanged redeploy ran {len(ran)} command(s): {ran}"
    assert not hoststate.diff(deployed, hoststate.snapshot(lab)), after
    assert [driver.qemu_pid(vm) for vm in vms] == pids, after


def test_power_actions_keep_links_and_report_the_hosts_state(portal, lab):  # noqa: F811 (the fixture)
    before = hoststate.snapshot(lab)
    s = new_slice(portal, "power")
    v1 = portal.vm(s["id"], "p1", host="worker1", data=1)
    v2 = portal.vm(s["id"], "p2", host="worker2", data=1)
    portal.link(s["id"], v1, v2)
    portal.run(s["id"], "deploy")
    lease1, lease2 = portal.lease(v1, "eth1"), portal.lease(v2, "eth1")
    pid = portal.qemu_pid(v1)
    mac = interface(portal.get_vm(v1), "eth1")["mac"]
    assert pid and portal.sh(v1, "cat /sys/class/net/eth1/address").output.strip() == mac

    # Reboot: a reset in the same QEMU process; the guest boots again and leases the same address.
    done = power(portal, v1, "reboot")
    assert [st["phase"] for st in done["steps"]] == ["reboot", "status"]
    assert portal.qemu_pid(v1) == pid and status(portal, v1) == "running"
    assert wait_leases(portal, v1, "eth1", 2)[-2:] == [lease1.ip, lease1.ip]
    assert portal.sh(v1, "cat /sys/class/net/eth1/address").output.strip() == mac
    assert portal.pings(v1, lease2.ip)
    assert_redeploy_changes_nothing(portal, s["id"], lab, [v1, v2], "reboot")

    # Shut down (busybox ignores the power button: forced off after the timeout), then start.
    done = power(portal, v1, "shutdown")
    by_phase = {st["description"].split(" (")[0]: st["status"] for st in done["steps"]}
    assert by_phase["Shut down p1"] == "ok" and by_phase["Force off p1"] in ("ok", "skipped")
    assert portal.qemu_pid(v1) is None and status(portal, v1) == "stopped"
    assert portal.get_slice(s["id"])["status"] == "active"
    done = power(portal, v1, "start")
    started = next(st for st in done["steps"] if st["description"].startswith("Start QEMU for p1"))
    assert started["status"] == "ok"
    assert all(st["status"] == "skipped" for st in done["steps"] if st["description"].startswith("Create TAP"))
    assert portal.qemu_pid(v1) not in (None, pid) and status(portal, v1) == "running"
    # A new QEMU process truncates its console log: the lease seen is the new boot's.
    assert wait_leases(portal, v1, "eth1", 1) == [lease1.ip]
    assert portal.pings(v1, lease2.ip)
    assert_redeploy_changes_nothing(portal, s["id"], lab, [v1, v2], "shut down + start")

    # Force off: stopped, as the host says; start brings it back as it was.
    power(portal, v1, "force_off")
    assert portal.qemu_pid(v1) is None and status(portal, v1) == "stopped"
    power(portal, v1, "start")
    assert status(portal, v1) == "running"
    assert wait_leases(portal, v1, "eth1", 1) == [lease1.ip]
    assert portal.pings(v1, lease2.ip)
    assert_redeploy_changes_nothing(portal, s["id"], lab, [v1, v2], "force off + start")

    # Force off again: an unchanged redeploy brings it back ...
    power(portal, v1, "force_off")
    assert portal.qemu_pid(v1) is None and status(portal, v1) == "stopped"

    # An unchanged redeploy brings it back (its QEMU check fails: no live process of the pid file) ...
    again = portal.run(s["id"], "redeploy")
    qemu = {st["description"].split(" (")[0]: st["status"] for st in again["steps"] if "QEMU" in st["description"]}
    assert qemu == {"Start QEMU for p1": "ok", "Start QEMU for p2": "skipped"}
    assert wait_leases(portal, v1, "eth1", 1)[-1] == lease1.ip and status(portal, v1) == "running"
    assert portal.pings(v1, lease2.ip)

    # ... and one more runs no mutating command.
    assert_redeploy_changes_nothing(portal, s["id"], lab, [v1, v2], "a redeploy that restarted p1")

    portal.run(s["id"], "destroy")
    assert_restored(lab, before)
