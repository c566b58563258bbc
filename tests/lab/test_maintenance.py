"""Operating the lab (issue 17): real QEMU guests placed by the portal, through its API and RQ worker.

Drain worker2: a new slice lands on worker1 only; a slice destroyed while its VMs were
auto-placed on worker2 deploys again onto worker1 (a destroy forgets automatic placements);
undrain: worker2 takes VMs again. The VMs have no VLAN (no link, no internet), so no deploy
waits for a lease: the test stays short.

An expired slice (linked across the workers, with internet) is destroyed by the scheduled job
run on the RQ worker: the hosts are as before it was deployed, its design is kept.
"""

from __future__ import annotations

import io
import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from audit.models import AuditEvent
from inventory.models import Host
from provisioning import jobs
from provisioning.queue import provisioning_queue
from slices.models import Slice
from tests.lab import hoststate
from tests.lab.driver import Portal
from tests.lab.test_e2e import assert_restored, new_slice, portal  # noqa: F401 (the fixture)

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def auto_vm(driver: Portal, slice_id: int, name: str) -> dict:
    """A VM with no host given (placement chooses at deploy), no data interface, no internet."""
    payload = {"slice": slice_id, "name": name, "data_interfaces_count": 0}
    r = driver.api.post("/api/vms/", payload, format="json")
    assert r.status_code == 201, r.data
    assert r.data["pinned"] is False
    return r.data


def placed(driver: Portal, *vms: dict) -> dict[str, str | None]:
    """Each VM's host as the API reports it, after checking its QEMU runs in that host's state dir."""
    out = {}
    for vm in vms:
        data = driver.get_vm(vm)
        out[vm["name"]] = data["host_name"]
        if data["status"] == "running":
            assert driver.qemu_pid(vm), f"{vm['name']}: no QEMU on {data['host_name']}"
    return out


def hosts_command(*args: str) -> str:
    out = io.StringIO()
    call_command("hosts", *args, stdout=out)
    return out.getvalue()


def test_drain_moves_new_and_destroyed_slices_off_the_worker(portal, lab):  # noqa: F811 (the fixture)
    # The lab registers 2 vCPUs per worker; the drained cluster's one worker must take both slices' three
    # tiny guests (placement counts capacity, the guests are small).
    Host.objects.filter(role=Host.Role.WORKER).update(vcpus=4)
    before = hoststate.snapshot(lab)
    old = new_slice(portal, "olddrain")
    o1, o2 = auto_vm(portal, old["id"], "o1"), auto_vm(portal, old["id"], "o2")
    portal.run(old["id"], "deploy")
    assert placed(portal, o1, o2) == {"o1": "worker1", "o2": "worker2"}  # spread, ties by name
    portal.run(old["id"], "destroy")
    assert placed(portal, o1, o2) == {"o1": None, "o2": None}  # automatic placements forgotten

    out = hosts_command("drain", "worker2")
    assert "worker2 drained" in out and "Nothing runs on worker2." in out

    new = new_slice(portal, "newdrain")
    n1, n2 = auto_vm(portal, new["id"], "n1"), auto_vm(portal, new["id"], "n2")
    portal.run(new["id"], "deploy")
    assert placed(portal, n1, n2) == {"n1": "worker1", "n2": "worker1"}
    portal.run(old["id"], "deploy")  # was on worker2 before its destroy
    assert placed(portal, o1, o2) == {"o1": "worker1", "o2": "worker1"}

    out = hosts_command("undrain", "worker2")
    assert "worker2 takes new VMs again" in out
    back = new_slice(portal, "backdrain")
    b1 = auto_vm(portal, back["id"], "b1")
    portal.run(back["id"], "deploy")
    assert placed(portal, b1) == {"b1": "worker2"}  # the emptier worker again
    assert "backdrain/b1 (e2e, running)" in hosts_command("drain", "worker2")  # what still runs there
    hosts_command("undrain", "worker2")

    for s in (old, new, back):
        portal.run(s["id"], "destroy")
    assert_restored(lab, before)


def test_an_expired_slice_is_destroyed_by_the_scheduled_job_leaving_nothing(portal, lab):  # noqa: F811
    before = hoststate.snapshot(lab)
    s = new_slice(portal, "expiring")
    x1 = portal.vm(s["id"], "x1", host="worker1", data=1, internet=True)
    x2 = portal.vm(s["id"], "x2", host="worker2", data=1)
    portal.link(s["id"], x1, x2)
    portal.run(s["id"], "deploy")
    assert portal.get_slice(s["id"])["expires_at"]
    Slice.objects.filter(pk=s["id"]).update(expires_at=timezone.now() + timedelta(seconds=1))  # a short lifetime
    time.sleep(1.5)
    job = provisioning_queue().enqueue(jobs.expire_slices)  # what RQ's cron enqueues every interval
    deadline = time.monotonic() + 120
    while portal.get_slice(s["id"])["status"] != "draft":
        assert job.get_status(refresh=True) != "failed", job.latest_result()
        assert time.monotonic() < deadline, portal.get_slice(s["id"])
        time.sleep(0.5)
    assert job.get_status(refresh=True) == "finished" and "1 expired slice(s)" in job.return_value()
    body = portal.get_slice(s["id"])
    assert body["expires_at"] is None and len(body["vms"]) == 2 and len(body["links"]) == 1  # the design kept
    destroy = AuditEvent.objects.get(slice_id=s["id"], action="destroy")
    assert destroy.user is None  # the system did it
    assert_restored(lab, before)  # 0 leftovers on the hosts
