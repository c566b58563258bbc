"""End to end: slices deployed by the portal's API and its RQ worker, over SSH, onto the lab; real guests.

Each test takes a snapshot of every lab host (OVS ports, links, addresses,
routes, iptables rules, files under the state dirs, namespaces, processes)
before its first deploy and checks that the destroy at its end gives exactly
that snapshot back.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from inventory.models import Flavor, Host
from provisioning.lab import cluster, console, guest, inventory
from provisioning.lab.topology import INTERNET_ADDRESS, INTERNET_IF, INTERNET_NAMESPACE, NETNODE_UPLINK_ADDRESS, host
from provisioning.models import DeploymentStep
from slices.models import VM, Link, Slice
from tests.lab import hoststate
from tests.lab.conftest import E2E_REDIS_DB, LEASE_TIMINGS, _redis_url
from tests.lab.driver import Portal, in_range, interface

# transaction=True: the RQ worker is another process and must see the data; serialized_rollback
# puts the migrations' rows (flavors) back for the tests that run after these.
pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

ACCEL_SEEN: dict[str, str] = {}  # worker -> what the engine's KVM probe found (kept across the DB flushes)


@pytest.fixture
def portal(e2e_worker, lab_session, settings, django_user_model, request):
    """A logged-in API user, the lab registered in the (flushed) test database, jobs on the test queue."""
    settings.REDIS_URL = _redis_url(E2E_REDIS_DB)
    settings.RQ_QUEUES = {name: {**conf, "URL": settings.REDIS_URL} for name, conf in settings.RQ_QUEUES.items()}
    lab_session.ensure_up()
    inventory.register_hosts(lab_session.paths, uplink=lab_session.uplink)
    inventory.register_image(lab_session.guest)
    for name, accel in ACCEL_SEEN.items():
        Host.objects.filter(name=name).update(accel_detected=accel)
    Flavor.objects.get_or_create(name="tiny", defaults={"vcpus": 1, "ram_mib": 128, "disk_gib": 1, "is_default": True})
    user = django_user_model.objects.create_user(username="e2e", password="e2e-password-1")
    api = APIClient()
    api.force_authenticate(user)
    driver = Portal(api, lab_session, e2e_worker, request.node.name, LEASE_TIMINGS)
    driver.slices = []
    yield driver
    for host_row in Host.objects.filter(role="worker").exclude(accel_detected=""):
        ACCEL_SEEN[host_row.name] = host_row.accel_detected
    # A failed test must not leave guests running into the next one.
    for slice_id in driver.slices:
        data = api.get(f"/api/slices/{slice_id}/").data
        if data and data.get("status") not in ("draft", None):
            try:
                driver.wait(driver.request(slice_id, "destroy"))
            except AssertionError:
                pass


def new_slice(portal: Portal, name: str) -> dict:
    data = portal.slice(name)
    portal.slices.append(data["id"])
    return data


def assert_restored(lab, before: dict) -> None:
    after = hoststate.snapshot(lab)
    problems = hoststate.diff(before, after)
    assert not problems, "destroy left the hosts different:\n" + "\n".join(problems)


def disk_image_id(lab) -> int | None:
    """The lab's qcow2 disk image (Image kind disk), when this machine can build it."""
    if not all(shutil.which(tool) for tool in guest.DISK_TOOLS):
        return None
    return inventory.register_disk_image(guest.build_disk(lab.paths.images_dir, lab.guest)).pk


def test_line_of_three_vms_across_workers(portal, lab):
    before = hoststate.snapshot(lab)
    s = new_slice(portal, "line")
    vm1 = portal.vm(s["id"], "vm1", host="worker1", data=1)
    vm2 = portal.vm(s["id"], "vm2", host="worker2", data=2)
    # vm3 boots from a qcow2 disk (its own overlay on the image) when the machine can build one.
    disk = disk_image_id(lab)
    vm3 = portal.vm(s["id"], "vm3", host="worker1", data=1, image=disk)
    l12 = portal.link(s["id"], vm1, vm2)
    l23 = portal.link(s["id"], vm2, vm3)
    assert l12["vlan"] != l23["vlan"]

    portal.run(s["id"], "deploy")
    ends = [(vm1, "eth1", l12), (vm2, "eth1", l12), (vm2, "eth2", l23), (vm3, "eth1", l23)]
    leases = {}
    for vm, nic, link in ends:
        lease = portal.lease(vm, nic)
        assert in_range(lease.ip, link["subnet"]), (vm["name"], nic, lease, link["subnet"])
        assert lease.router == link["gateway"] and lease.mask == 24
        leases[vm["name"], nic] = lease.ip

    # A default route via the link's gateway (vm2 has two: the lower interface wins).
    for vm, link in ((vm1, l12), (vm2, l12), (vm3, l23)):
        route = portal.sh(vm, "ip route show default").output
        assert route.startswith(f"default via {link['gateway']} dev eth1"), (vm["name"], route)

    if disk is not None:
        overlay = Path(portal.state_dir(vm3)) / "vms" / f"vm{vm3['id']}" / "disk.qcow2"
        info = subprocess.run(
            ["qemu-img", "info", "-U", str(overlay)], capture_output=True, text=True, check=True
        ).stdout
        assert "backing file: " in info and "disk-" in info, info

    # Neighbours ping each other across workers (worker1 <-> worker2 over the underlay).
    assert portal.pings(vm1, leases["vm2", "eth1"])
    assert portal.pings(vm3, leases["vm2", "eth2"])
    assert portal.pings(vm2, leases["vm1", "eth1"])

    # The API shows what dnsmasq leased, on each interface.
    deadline = time.monotonic() + 60
    while True:
        seen = {(vm["name"], nic): interface(portal.get_vm(vm), nic)["lease_address"] for vm, nic, _ in ends}
        if seen == leases or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert seen == leases
    for vm, nic, _ in ends:
        assert interface(portal.get_vm(vm), nic)["ip_address"] == leases[vm["name"], nic]  # the reservation held
    assert portal.get_slice(s["id"])["status"] == "active"

    portal.run(s["id"], "destroy")
    assert portal.get_slice(s["id"])["status"] == "draft"
    assert_restored(lab, before)


def test_internet_vm_is_masqueraded_out_of_the_uplink(portal, lab):
    before = hoststate.snapshot(lab)
    s, other = new_slice(portal, "web"), new_slice(portal, "other")
    web = portal.vm(s["id"], "web", host="worker2", data=0, internet=True)
    near = portal.vm(other["id"], "near", host="worker2", data=0, internet=True)  # same worker as web
    far = portal.vm(other["id"], "far", host="worker1", data=0, internet=True)
    assert interface(web, "eth0")["vlan"] == 400
    for job in [portal.request(s["id"], "deploy"), portal.request(other["id"], "deploy")]:
        done = portal.wait(job)
        assert done["status"] == "succeeded", done.get("error")
    lease = portal.lease(web, "eth0")
    assert in_range(lease.ip, "10.60.7.0/24") and lease.router == "10.60.7.1"
    ip = {vm["name"]: portal.lease(vm, "eth0").ip for vm in (near, far)}

    # VLAN 400 is shared by every slice's internet NICs, yet web reaches none of the other slice's VMs:
    # not at L2 (same worker or across the underlay), not routed back through the gateway.
    assert portal.pings(far, str(INTERNET_ADDRESS))
    for name in ("near", "far"):
        assert portal.never_pings(web, ip[name]), name
        assert not portal.sh(web, f"arping -c 2 -w 3 -I eth0 {ip[name]}", timeout=20).ok, name
        assert portal.sh(web, f"ip route add {ip[name]}/32 via 10.60.7.1").ok
        assert portal.never_pings(web, ip[name]), f"{name} through the gateway"
    assert portal.never_pings(near, lease.ip)

    capture = subprocess.Popen(
        ["ip", "netns", "exec", INTERNET_NAMESPACE, "tcpdump", "-n", "-l", "-i", INTERNET_IF, "icmp"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        time.sleep(1)
        assert portal.pings(web, str(INTERNET_ADDRESS))
        time.sleep(0.5)
    finally:
        capture.terminate()
    seen = capture.communicate(timeout=10)[0]
    # At the internet the packets come from the network node's uplink address, never the guest's.
    assert f"{NETNODE_UPLINK_ADDRESS} > {INTERNET_ADDRESS}: ICMP echo request" in seen, seen
    assert "10.60.7." not in seen, seen
    with lab.connect("netnode") as connection:
        tracked = connection.run("conntrack -L -p icmp 2>/dev/null", hide=True, warn=True).stdout
    assert any(
        f"src={lease.ip} dst={INTERNET_ADDRESS}" in line and f"dst={NETNODE_UPLINK_ADDRESS}" in line
        for line in tracked.splitlines()
    ), tracked

    portal.run(s["id"], "destroy")
    portal.run(other["id"], "destroy")
    assert_restored(lab, before)


def _capture(namespace: str, tap: str) -> subprocess.Popen:
    """tcpdump of DHCP packets on a TAP of a lab worker, with MACs."""
    return subprocess.Popen(
        ["ip", "netns", "exec", namespace, "tcpdump", "-n", "-e", "-l", "-i", tap, "udp port 67 or udp port 68"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def _captured(proc: subprocess.Popen) -> str:
    time.sleep(0.5)
    proc.terminate()
    return proc.communicate(timeout=10)[0]


def _rogue_dhcp(portal, vm: dict, nic: str, first: str, last: str, router: str) -> None:
    """Start busybox udhcpd on the guest's ``nic``: a rogue DHCP server offering ``first``-``last``."""
    conf = [f"start {first}", f"end {last}", f"interface {nic}", f"lease_file /tmp/rogue-{nic}.leases",
            f"pidfile /tmp/rogue-{nic}.pid", f"option router {router}", "option subnet 255.255.255.0"]  # fmt: skip
    quoted = " ".join(f"'{line}'" for line in conf)
    assert portal.sh(vm, f"printf '%s\\n' {quoted} > /tmp/rogue-{nic}.conf && touch /tmp/rogue-{nic}.leases").ok
    start = f"(setsid udhcpd -f /tmp/rogue-{nic}.conf > /tmp/rogue-{nic}.log 2>&1 &)"
    assert portal.sh(vm, f"{start}; sleep 1; kill -0 $(cat /tmp/rogue-{nic}.pid)").ok


def _drops(lab, worker: str, tap: str, match: str = "priority=290") -> int:
    """Packets counted by the TAP's guard flow that holds ``match`` (default: the catch-all drop)."""
    with lab.connect(worker) as connection:
        flows = connection.run(f"ovs-ofctl dump-flows br-int in_port={tap}", hide=True).stdout
    line = next(f for f in flows.splitlines() if match in f)
    return int(re.search(r"n_packets=(\d+)", line)[1])


def test_port_security_no_guest_claims_another_address_or_answers_as_a_server(portal, lab):
    """Issue 14: slice A's guest tries to take slice B's VLAN 400 address and to serve DHCP on VLAN 400
    and on its link; the guards on its TAPs stop every frame of it, and B keeps its NAT traffic."""
    before = hoststate.snapshot(lab)
    a, b = new_slice(portal, "mallory"), new_slice(portal, "bob")
    evil = portal.vm(a["id"], "evil", host="worker1", data=1, internet=True)
    peer = portal.vm(a["id"], "peer", host="worker2", data=1)
    victim = portal.vm(b["id"], "victim", host="worker2", data=0, internet=True)
    link = portal.link(a["id"], evil, peer)
    for job in [portal.request(a["id"], "deploy"), portal.request(b["id"], "deploy")]:
        done = portal.wait(job)
        assert done["status"] == "succeeded", done.get("error")
    evil, victim = portal.get_vm(evil), portal.get_vm(victim)
    evil0, victim0, evil1 = interface(evil, "eth0"), interface(victim, "eth0"), interface(evil, "eth1")
    # fixed, distinct, reserved addresses: what the API says is what the guests got
    assert evil0["ip_address"] != victim0["ip_address"]
    assert portal.lease(evil, "eth0").ip == evil0["ip_address"]
    assert portal.lease(victim, "eth0").ip == victim0["ip_address"]
    stolen, gateway = victim0["ip_address"], "10.60.7.1"
    peer_ip = portal.lease(peer, "eth1").ip
    assert portal.lease(evil, "eth1").ip

    # B pings the internet through NAT the whole time A attacks.
    # (in a subshell: "CMD &; echo" is a syntax error; setsid: the console's next Ctrl-C must not reach it)
    assert portal.sh(victim, f"(setsid ping -c 50 -i 0.4 -W 2 {INTERNET_ADDRESS} > /tmp/nat.log 2>&1 &)").ok
    dropped_before = _drops(lab, "worker1", evil0["tap"])
    assert portal.sh(evil, f"ip addr add {stolen}/24 dev eth0").ok
    portal.sh(evil, f"arping -U -c 3 -s {stolen} -I eth0 {gateway}", timeout=20)
    portal.sh(evil, f"arping -A -c 3 -s {stolen} -I eth0 {gateway}", timeout=20)
    assert not portal.sh(evil, f"ping -c 3 -W 1 -I {stolen} {gateway}", timeout=20).ok
    assert not portal.sh(evil, f"ping -c 2 -W 1 -I {stolen} {INTERNET_ADDRESS}", timeout=20).ok
    with lab.connect("netnode") as connection:
        neigh = connection.run(f"ip neigh show {stolen} dev gw_v400", hide=True).stdout
        tracked = connection.run("conntrack -L 2>/dev/null", hide=True, warn=True).stdout
    assert evil0["mac"] not in neigh.lower(), neigh
    assert not neigh.strip() or victim0["mac"] in neigh.lower(), neigh
    assert not [line for line in tracked.splitlines() if f"src={stolen} dst={gateway} " in line], tracked
    assert _drops(lab, "worker1", evil0["tap"]) > dropped_before  # the guard stopped them, not luck
    assert portal.sh(evil, f"ip addr del {stolen}/24 dev eth0").ok
    time.sleep(12)  # the rest of B's 50 pings
    nat = portal.sh(victim, "cat /tmp/nat.log").output
    sent, received = (int(n) for n in re.search(r"(\d+) packets transmitted, (\d+) packets received", nat).groups())
    assert sent == 50 and received >= 48, nat

    # Rogue DHCP servers on VLAN 400 and on the link: their offers never reach another guest.
    _rogue_dhcp(portal, evil, "eth0", "10.60.7.200", "10.60.7.210", evil0["ip_address"])
    link_net = link["subnet"].rsplit(".", 1)[0]
    _rogue_dhcp(portal, evil, "eth1", f"{link_net}.200", f"{link_net}.210", f"{link_net}.99")
    rogue = "priority=310,udp,in_port"  # the guards' "no DHCP server replies" flow
    offers_before = [_drops(lab, "worker1", nic["tap"], rogue) for nic in (evil0, evil1)]
    captures = {
        "victim": _capture("worker2", victim0["tap"]),
        "peer": _capture("worker2", interface(portal.get_vm(peer), "eth1")["tap"]),
    }
    logs = ""
    try:
        time.sleep(2)  # a TCG guest under load: let both rogue servers open their sockets
        # Until both rogue servers have answered (at least twice): each time, the real servers win.
        for _ in range(6):
            got = portal.sh(victim, "udhcpc -i eth0 -n -q -t 3 -T 2 -s /bin/true 2>&1", timeout=30).output
            assert f"lease of {stolen} obtained from 10.60.7.2" in got, got
            got = portal.sh(peer, "udhcpc -i eth1 -n -q -t 3 -T 2 -s /bin/true 2>&1", timeout=30).output
            assert f"lease of {peer_ip} obtained from {link_net}.2" in got, got
            logs = portal.sh(evil, "cat /tmp/rogue-eth0.log /tmp/rogue-eth1.log").output
            if logs.count("sending OFFER to 10.60.7.") >= 2 and logs.count(f"sending OFFER to {link_net}.") >= 2:
                break
            time.sleep(1)
    finally:
        seen = {name: _captured(proc) for name, proc in captures.items()}
    # the rogue servers really answered, and their TAPs' guards dropped every offer ...
    assert "sending OFFER to 10.60.7." in logs and f"sending OFFER to {link_net}." in logs, logs
    offers_after = [_drops(lab, "worker1", nic["tap"], rogue) for nic in (evil0, evil1)]
    assert all(after > before for before, after in zip(offers_before, offers_after, strict=True)), logs
    # ... and nothing of theirs reached the other guests, who only heard the real servers
    for name, mac, server in (("victim", evil0["mac"], "10.60.7.2"), ("peer", evil1["mac"], f"{link_net}.2")):
        offers = [line for line in seen[name].splitlines() if ".67 >" in line]
        assert offers and all(f"{server}.67 >" in line for line in offers), seen[name]
        assert mac not in seen[name].lower(), seen[name]

    # Nor can it answer as its link's gateway: the peer's neighbour entry stays the real gateway's.
    assert portal.pings(peer, link["gateway"])
    assert portal.sh(evil, f"ip addr add {link['gateway']}/24 dev eth1").ok
    portal.sh(evil, f"arping -U -c 3 -s {link['gateway']} -I eth1 {peer_ip}", timeout=20)
    portal.sh(evil, f"arping -A -c 3 -s {link['gateway']} -I eth1 {peer_ip}", timeout=20)
    neigh = portal.sh(peer, f"ip neigh show {link['gateway']}").output.lower()
    assert evil1["mac"] not in neigh and "lladdr" in neigh, neigh
    assert portal.pings(peer, link["gateway"])

    portal.run(a["id"], "destroy")
    portal.run(b["id"], "destroy")
    assert_restored(lab, before)


def test_two_slices_are_isolated_and_an_unlinked_interface_is_dead(portal, lab):
    before = hoststate.snapshot(lab)
    a, b = new_slice(portal, "alpha"), new_slice(portal, "beta")
    a1 = portal.vm(a["id"], "a1", host="worker1", data=2)  # eth2 stays unlinked
    a2 = portal.vm(a["id"], "a2", host="worker2", data=1)
    b1 = portal.vm(b["id"], "b1", host="worker1", data=1)
    b2 = portal.vm(b["id"], "b2", host="worker2", data=1)
    la = portal.link(a["id"], a1, a2)
    lb = portal.link(b["id"], b1, b2)
    jobs = [portal.request(a["id"], "deploy"), portal.request(b["id"], "deploy")]
    for job in jobs:
        done = portal.wait(job)
        assert done["status"] == "succeeded", done.get("error")
    ip = {(vm["name"]): portal.lease(vm, "eth1").ip for vm in (a1, a2, b1, b2)}

    # Each slice works inside...
    assert portal.pings(a1, ip["a2"])
    assert portal.pings(b1, ip["b2"])
    # ...and reaches nothing of the other: not through the gateways (routed)...
    assert portal.never_pings(a1, ip["b2"])
    assert portal.never_pings(b2, ip["a1"])
    assert portal.never_pings(a1, lb["gateway"])
    assert portal.never_pings(b1, la["gateway"])
    # ...and not by L2: an address in beta's subnet on alpha's link finds no beta guest.
    spoof = lb["subnet"].replace("0/24", "99/24")
    assert portal.sh(a1, f"ip addr add {spoof} dev eth1").ok
    try:
        assert portal.never_pings(a1, ip["b2"], extra="-I eth1")
        assert not portal.sh(a1, f"arping -c 2 -w 3 -I eth1 {ip['b2']}", timeout=20).ok
    finally:
        portal.sh(a1, f"ip addr del {spoof} dev eth1")

    # The unlinked interface: its TAP is not on br-int (no trunk), and the guest receives nothing on it
    # while beta floods broadcasts on its VLAN.
    tap = interface(a1, "eth2")["tap"]
    with lab.connect("worker1") as connection:
        assert not connection.run(f"ovs-vsctl port-to-br {tap}", hide=True, warn=True).ok
        ports = connection.run("ovs-vsctl --format=csv --data=bare --columns=name,tag list port", hide=True).stdout
    assert all(line.split(",")[1] for line in ports.splitlines()[1:] if line.startswith(("tap_", "tx"))), ports
    rx_before = portal.sh(a1, "cat /sys/class/net/eth2/statistics/rx_packets").output.strip()
    portal.sh(b1, f"arping -b -c 3 -I eth1 {ip['b2']}; arping -U -c 2 -I eth1 {ip['b1']}", timeout=20)
    portal.sh(b2, "udhcpc -i eth1 -n -q -t 1 -T 1 -s /bin/true >/dev/null 2>&1", timeout=20)
    rx_after = portal.sh(a1, "cat /sys/class/net/eth2/statistics/rx_packets").output.strip()
    assert rx_before == rx_after == "0", (rx_before, rx_after)

    portal.run(a["id"], "destroy")
    portal.run(b["id"], "destroy")
    assert_restored(lab, before)


def test_deploy_twice_changes_nothing_and_a_modified_slice_keeps_untouched_vms(portal, lab):
    before = hoststate.snapshot(lab)
    s = new_slice(portal, "grow")
    va = portal.vm(s["id"], "va", host="worker1", data=2)  # eth2 stays unlinked until the modification
    vb = portal.vm(s["id"], "vb", host="worker2", data=1)
    vc = portal.vm(s["id"], "vc", host="worker1", data=1)
    vd = portal.vm(s["id"], "vd", host="worker2", data=1)
    portal.link(s["id"], va, vb)
    portal.link(s["id"], vc, vd)
    portal.run(s["id"], "deploy")
    for vm in (va, vb, vc, vd):
        portal.lease(vm, "eth1")
    pids = {vm["name"]: portal.qemu_pid(vm) for vm in (va, vb, vc, vd)}
    assert all(pids.values()), pids

    # Deploying the unchanged slice again changes nothing on any host.
    deployed = hoststate.snapshot(lab)
    again = portal.run(s["id"], "deploy")
    assert not hoststate.diff(deployed, hoststate.snapshot(lab))
    assert {vm["name"]: portal.qemu_pid(vm) for vm in (va, vb, vc, vd)} == pids
    assert not [st for st in again["steps"] if st["status"] == "failed"]
    # The worker kept the first deploy's SSH connections: the second job logged in nowhere (provisioning.sshpool).
    assert {h: (c["connections"], c["reused"]) for h, c in again["stats"].items()} == {
        h: (0, 1) for h in ("netnode", "worker1", "worker2")
    }

    # Modify: vd goes (with its link), ve comes with a new link to vc and one to the running va's free eth2.
    vd_dir = portal.state_dir(vd)
    portal.delete_vm(vd)
    ve = portal.vm(s["id"], "ve", host="worker2", data=2)
    lce = portal.link(s["id"], vc, ve)
    lae = portal.link(s["id"], va, ve, "eth2", "eth2")
    portal.run(s["id"], "redeploy")
    assert portal.qemu_pid(va) == pids["va"] and portal.qemu_pid(vb) == pids["vb"]  # untouched: same QEMU
    # va keeps running, yet its newly linked eth2 gets its lease (the job bounced the NIC's link) and works.
    lease_a2 = portal.lease(va, "eth2", subnet=lae["subnet"])
    assert "SP: LINK eth2 up" in console.read_log(portal.state_dir(va), va["id"])  # the guest saw the bounce
    assert lease_a2.ip == interface(portal.get_vm(va), "eth2")["lease_address"]
    assert portal.pings(va, portal.lease(ve, "eth2", subnet=lae["subnet"]).ip)
    assert portal.qemu_pid(vd, vd_dir) is None
    lease_c = portal.lease(vc, "eth1", subnet=lce["subnet"])
    lease_e = portal.lease(ve, "eth1", subnet=lce["subnet"])
    assert lease_c.router == lease_e.router == lce["gateway"]
    assert portal.pings(vc, lease_e.ip)
    assert portal.pings(va, portal.lease(vb, "eth1").ip)  # the untouched pair still talks

    portal.run(s["id"], "destroy")
    assert_restored(lab, before)


def test_unreachable_host_fails_the_deployment_and_destroy_still_cleans(portal, lab):
    before = hoststate.snapshot(lab)
    s = new_slice(portal, "fragile")
    x1 = portal.vm(s["id"], "x1", host="worker1", data=1)
    x2 = portal.vm(s["id"], "x2", host="worker2", data=1)
    portal.link(s["id"], x1, x2)
    job = portal.request(s["id"], "deploy")

    # Mid-deploy: as soon as the first host step has been recorded, worker2 goes dark.
    deadline = time.monotonic() + 60
    while not DeploymentStep.objects.filter(deployment_id=job["id"]).exclude(status="pending").exists():
        assert time.monotonic() < deadline, "the deployment never started a step"
        time.sleep(0.02)
    stopped = cluster.stop_sshd(lab.paths, host("worker2"))
    assert stopped
    try:
        done = portal.wait(job)
    finally:
        cluster.start_sshd(lab.paths, host("worker2"))
    assert done["status"] == "failed"
    assert "worker2" in done["error"], done["error"]
    print(f"\nunreachable host: {done['error'][:300]}")
    assert portal.get_slice(s["id"])["status"] == "failed"

    portal.run(s["id"], "destroy")
    assert_restored(lab, before)


def test_containerlab_leaf_spine_applied_with_slicectl_pings_on_every_link(portal, live_server, lab):
    """Issue 13: `slicectl apply -f leaf-spine.clab.yml --wait` on the lab; every linked pair pings."""
    # 10 tiny guests: more than the lab's default guest capacity (2 vCPUs per worker), fine for TCG busybox.
    Host.objects.filter(role="worker").update(vcpus=6, ram_mib=4096)
    repo = Path(__file__).resolve().parents[2]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SLICECTL_")},
        "SLICECTL_CONFIG": str(lab.paths.root / "slicectl.json"),
        "NO_COLOR": "1",
    }

    def slicectl(*args: str, stdin: str | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "slicectl", "--url", live_server.url, *args],
            cwd=repo, env=env, input=stdin, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip

    assert slicectl("login", "-u", "e2e", "--password-stdin", stdin="e2e-password-1\n").returncode == 0
    requested = time.time()
    r = slicectl("apply", "-f", str(repo / "docs" / "examples" / "leaf-spine.clab.yml"), "--wait")
    assert r.returncode == 0, r.stderr
    assert "slice leafspine is created: 10 VMs, 12 links" in r.stderr and "deploy leafspine: succeeded" in r.stderr
    s = Slice.objects.get(name="leafspine")
    portal.slices.append(s.pk)
    portal.deployed_at[s.pk] = requested  # boot-to-lease timings count from the apply
    links = list(Link.objects.filter(slice=s).select_related("a__vm", "b__vm"))
    assert len(links) == 12 and len({link.vlan for link in links}) == 12
    vms = {vm.pk: portal.get_vm({"id": vm.pk}) for vm in VM.objects.filter(slice=s)}
    for link in links:
        a, b = vms[link.a.vm_id], vms[link.b.vm_id]
        lease_a, lease_b = portal.lease(a, link.a.name), portal.lease(b, link.b.name)
        assert (lease_a.ip, lease_b.ip) == (link.a.ip_address, link.b.ip_address)  # the reservations
        assert portal.pings(a, lease_b.ip), f"{a['name']}.{link.a.name} -> {b['name']}.{link.b.name} ({lease_b.ip})"
    r = slicectl("destroy", "leafspine", "--wait")
    assert r.returncode == 0, r.stderr
    s.refresh_from_db()
    assert s.status == "draft"
