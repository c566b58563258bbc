"""Parallel jobs: slices deployed (and destroyed) at once by two RQ workers on the lab; real guests.

Only the network node's shared phases (the isolation chains, VLAN 400 + NAT) are serialised between
jobs (a lock per network node around those trips); everything else of the two jobs runs at once.
What a user would notice is checked: both jobs ran at the same time on different workers, every guest
got its lease and pings its neighbour and the internet, no slice reaches the other, the shared
rules exist once (not twice, not torn down by the other job), and destroying both at once leaves the
hosts exactly as they were.
"""

from __future__ import annotations

import pytest

from provisioning.lab.topology import INTERNET_ADDRESS
from provisioning.models import Deployment
from tests.lab import hoststate
from tests.lab.conftest import RqWorker
from tests.lab.driver import in_range
from tests.lab.test_e2e import assert_restored, new_slice, portal  # noqa: F401 (portal: the fixture)

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


@pytest.fixture
def second_worker(e2e_worker, tmp_path):
    """A second RQ worker on the same queue (started and stopped by its PID)."""
    worker = RqWorker(e2e_worker.env, tmp_path / "second-rqworker.log")
    worker.start()
    yield worker
    worker.stop()


def _count(lab, host: str, command: str, needle: str) -> int:
    with lab.connect(host) as connection:
        return connection.run(command, hide=True, warn=True).stdout.count(needle)


def test_two_slices_deployed_at_once_by_two_workers_work_and_stay_apart(portal, lab, second_worker):  # noqa: F811
    before = hoststate.snapshot(lab)
    slices = []
    for name in ("pa", "pb"):
        s = new_slice(portal, name)
        # each slice: an internet VM on worker1 linked to a VM on worker2 (both shared phases in play)
        v1 = portal.vm(s["id"], f"{name}1", host="worker1", data=1, internet=True)
        v2 = portal.vm(s["id"], f"{name}2", host="worker2", data=1)
        slices.append((s, v1, v2, portal.link(s["id"], v1, v2)))

    jobs = [portal.request(s["id"], "deploy") for s, *_ in slices]
    for job in jobs:
        done = portal.wait(job)
        assert done["status"] == "succeeded", done.get("error")
    a, b = (Deployment.objects.get(pk=job["id"]) for job in jobs)
    # two workers ran them at the same time
    assert a.worker and b.worker and a.worker != b.worker, (a.worker, b.worker)
    assert a.started < b.finished and b.started < a.finished, (a.started, a.finished, b.started, b.finished)

    ips = {}
    for _, v1, v2, link in slices:
        for vm in (v1, v2):
            lease = portal.lease(vm, "eth1")
            assert in_range(lease.ip, link["subnet"]) and lease.router == link["gateway"], (vm["name"], lease)
            ips[vm["name"]] = lease.ip
        web = portal.lease(v1, "eth0")
        assert in_range(web.ip, "10.60.7.0/24") and web.router == "10.60.7.1", (v1["name"], web)
        ips[v1["name"] + ".eth0"] = web.ip
    for s, v1, v2, _ in slices:
        assert portal.pings(v1, ips[v2["name"]]), s["name"]
        assert portal.pings(v2, ips[v1["name"]]), s["name"]
        assert portal.pings(v1, str(INTERNET_ADDRESS)), s["name"]
    # isolation: nothing of the other slice is reachable, neither its guests nor its gateway
    (_, a1, a2, la), (_, b1, b2, lb) = slices
    assert portal.never_pings(a1, ips["pb2"])
    assert portal.never_pings(b2, ips["pa1"])
    assert portal.never_pings(a2, lb["gateway"])
    assert portal.never_pings(b1, la["gateway"])
    assert portal.never_pings(a1, ips["pb1.eth0"])  # VLAN 400 is shared, yet a guest sees no other's NIC
    # the shared rules exist once: two jobs at once neither doubled nor lost them
    assert _count(lab, "netnode", "iptables -w -S FORWARD", "-j SP-FORWARD") == 1
    assert _count(lab, "netnode", "iptables -w -S INPUT", "-j SP-INPUT") == 1
    assert _count(lab, "netnode", "iptables -w -t nat -S POSTROUTING", "MASQUERADE") == 1

    # destroyed at once too: the last one out removes the shared things, whichever it is
    gone = [portal.request(s["id"], "destroy") for s, *_ in slices]
    for job in gone:
        done = portal.wait(job)
        assert done["status"] == "succeeded", done.get("error")
    assert_restored(lab, before)
