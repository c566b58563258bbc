"""Drift on the lab (issue 12): real hosts broken by hand are noticed by the next check, with the right
difference named, and one Repair brings the slice back (pings and leases work, untouched VMs keep their
QEMU processes, the hosts equal their snapshot after the deploy). Guard flows lost with a restarted
ovs-vswitchd come back by the check itself. Orphans are reported and left alone. One deployed slice of
six VMs serves every case (keeps CI short).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from provisioning import drift, executor
from provisioning.lab import cluster, reboot, system
from provisioning.lab.topology import host as lab_host
from provisioning.models import Drift, HostHealth, UsageSample
from tests.lab import hoststate
from tests.lab.driver import Portal, interface
from tests.lab.test_e2e import assert_restored, new_slice, portal  # noqa: F401 (the fixture)

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def check(names=None):
    """One check of the hosts, with the runner's counters: (reports by host, stats by host)."""
    hosts = names or ["netnode", "worker1", "worker2"]
    runner = executor.make_runner(dry_run=False, hosts=hosts)
    reports = drift.check_hosts(names=names, runner=runner)
    return {r.host: r for r in reports}, runner.stats


def differences(reports) -> list[tuple[str, str, str]]:
    return sorted((d.host, d.kind, d.object) for r in reports.values() for d in r.differences)


def health(driver: Portal, slice_id: int) -> dict:
    return driver.get_slice(slice_id)["health"]


def repair(driver: Portal, slice_id: int) -> dict:
    r = driver.api.post(f"/api/slices/{slice_id}/repair/", {}, format="json")
    assert r.status_code == 202, r.data
    done = driver.wait(r.data)
    failed = [s for s in done["steps"] if s["status"] == "failed"]
    assert done["status"] == "succeeded", f"repair: {done['error']}\nfailed steps: {failed}"
    # The next check finds nothing to say (the job checks too when it ends; this one does not wait for it).
    reports, _ = check()
    assert differences(reports) == [], differences(reports)
    assert health(driver, slice_id)["state"] == "in_sync", health(driver, slice_id)
    return done


def restart_vswitchd(lab, name: str) -> None:
    """What a crash and restart of the host's ovs-vswitchd does: the database keeps ports, flows are gone."""
    directory = lab.paths.ovs_dir(name)
    pid = system.pid_from_file(directory / "ovs-vswitchd.pid", must_mention=str(directory))
    assert pid
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.1)
    argv = [
        "ovs-vswitchd",
        f"unix:{lab.paths.ovs_db_socket(name)}",
        f"--pidfile={directory / 'ovs-vswitchd.pid'}",
        f"--log-file={directory / 'ovs-vswitchd.log'}",
        "--detach",
        "-vconsole:off",
    ]
    system.run(argv, netns=lab_host(name).namespace, env=cluster.ovs_env(lab.paths, name))
    time.sleep(1)


def same_as(deployed: dict, lab) -> bool:
    """The hosts equal their snapshot after the deploy (the consoles' lock files, made by the test's own
    console sessions, aside); a difference is printed."""
    # A port made anew (a TAP deleted, a rebooted worker) gets another OpenFlow number: flows by port name.
    problems = hoststate.diff(_by_port_name(deployed), _by_port_name(hoststate.snapshot(lab)))
    problems = [p for p in problems if not (_listed(p) and all(x.endswith(".sock.lock") for x in _listed(p)))]
    print("\n".join(problems))
    return not problems


def _by_port_name(snapshot: dict) -> dict:
    for state in snapshot["hosts"].values():
        state["flows"] = sorted(re.sub(r"in_port=\d+", "in_port=N", line) for line in state.get("flows", []))
    return snapshot


def _listed(problem: str) -> list[str]:
    inside = problem.partition("[")[2].rpartition("]")[0]
    return [x.strip().strip("'") for x in inside.split(",") if x.strip()]


def netnode(lab, command: str) -> subprocess.CompletedProcess:
    return system.run(["sh", "-c", command], netns=lab_host("netnode").namespace)


def test_drift_is_seen_named_and_repaired(portal, lab, settings):  # noqa: F811 (the fixture)
    settings.PROVISIONING_KNOWN_HOSTS = str(lab.known_hosts)
    settings.PROVISIONING_RUNNER = "fabric"
    settings.USAGE_MIN_INTERVAL = 0  # every check samples usage (they follow each other within seconds here)
    before = hoststate.snapshot(lab)
    s = new_slice(portal, "drift")
    sid = s["id"]
    vms = {}
    for i, worker in enumerate(["worker1", "worker2", "worker1", "worker2", "worker1", "worker2"], start=1):
        vms[i] = portal.vm(sid, f"d{i}", host=worker, data=1, internet=i in (1, 2))
    for a, b in ((1, 2), (3, 4), (5, 6)):
        portal.link(sid, vms[a], vms[b])
    portal.run(sid, "deploy")
    vms = {i: portal.get_vm(vm) for i, vm in vms.items()}
    ip = {i: portal.lease(vm, "eth1").ip for i, vm in vms.items()}
    deployed = hoststate.snapshot(lab)
    pids = {i: portal.qemu_pid(vm) for i, vm in vms.items()}

    # A check of the 6-VM slice: one SSH round trip and one (read-only) command per host; nothing changes.
    reports, stats = check()
    if record := os.environ.get("DRIFT_RECORD_DIR"):  # outputs for the unit tests' recordings
        for name, report in reports.items():
            with open(os.path.join(record, f"{name}.txt"), "w") as out:
                out.write(report.output)
    assert differences(reports) == [], differences(reports)
    assert [d for r in reports.values() for d in r.repaired] == []
    assert {h: (st.round_trips, st.commands) for h, st in stats.items()} == {
        h: (1, 1) for h in ("netnode", "worker1", "worker2")
    }
    assert all(not r.repaired and not r.orphans for r in reports.values())
    assert health(portal, sid)["state"] == "in_sync"
    assert same_as(deployed, lab)
    w1 = HostHealth.objects.get(host__name="worker1")
    assert w1.reachable and w1.ovs_version and w1.qemu_version and w1.free_vcpus is not None and w1.free_ram_mib
    # The same round trip sampled each host's load and each guest's QEMU (its pid, its resident memory).
    hosts_sampled = UsageSample.objects.filter(vm__isnull=True)
    assert sorted(hosts_sampled.values_list("host__name", flat=True)) == ["netnode", "worker1", "worker2"]
    assert all(h.load1 is not None and h.mem_mib > 0 for h in hosts_sampled)
    guests = {g.vm_id: g for g in UsageSample.objects.filter(vm__isnull=False)}
    assert {g.pid for g in guests.values()} == set(pids.values())
    assert all(g.mem_mib > 0 and g.cpu_percent is None for g in guests.values())  # no share before a 2nd sample

    # 1. A guest's QEMU dies: "stopped unexpectedly", named; one Repair restarts it alone.
    os.kill(pids[3], signal.SIGKILL)
    time.sleep(0.5)
    reports, _ = check()
    assert ("worker1", "qemu", "d3") in differences(reports), differences(reports)
    # The second sample gives the running guests a CPU share; the dead one has none (no QEMU to read).
    usage = portal.api.get(f"/api/vms/{vms[1]['id']}/usage/").data
    assert len(usage["samples"]) == 2 and usage["samples"][-1]["cpu_percent"] >= 0, usage
    assert UsageSample.objects.filter(vm_id=vms[3]["id"]).count() == 1
    assert health(portal, sid)["state"] == "drifted"
    assert portal.get_vm(vms[3])["status"] == "lost"
    repair(portal, sid)
    assert health(portal, sid)["state"] == "in_sync", health(portal, sid)
    assert portal.get_vm(vms[3])["status"] == "running"
    now = {i: portal.qemu_pid(vm) for i, vm in vms.items()}
    assert now[3] not in (None, pids[3]) and {i: p for i, p in now.items() if i != 3} == {
        i: p for i, p in pids.items() if i != 3
    }
    pids = now
    assert portal.lease(vms[3], "eth1").ip == ip[3]
    assert portal.pings(vms[3], ip[4])
    assert same_as(deployed, lab)

    # 2. A link's dnsmasq dies: named; Repair starts it again, every guest keeps running.
    vlan = interface(vms[5], "eth1")["vlan"]
    pidfile = lab.paths.state_dir("netnode") / "dhcp" / f"v{vlan}" / "dnsmasq.pid"
    dnsmasq = system.pid_from_file(pidfile, must_mention=str(pidfile))
    os.kill(dnsmasq, signal.SIGKILL)
    reports, _ = check()
    assert ("netnode", "dnsmasq", f"dnsmasq of VLAN {vlan}") in differences(reports), differences(reports)
    repair(portal, sid)
    assert {i: portal.qemu_pid(vm) for i, vm in vms.items()} == pids
    assert system.pid_from_file(pidfile, must_mention=str(pidfile)) not in (None, dnsmasq)
    assert portal.sh(vms[5], "udhcpc -i eth1 -n -q -t 5 -T 2 -s /bin/true", timeout=30).ok  # it answers
    assert same_as(deployed, lab)

    # 3. A TAP is deleted under its running guest: named; Repair restarts that guest with a new TAP.
    tap = interface(vms[5], "eth1")["tap"]
    system.run(["ip", "link", "del", "dev", tap], netns=lab_host("worker1").namespace)
    reports, _ = check()
    assert ("worker1", "tap", f"d5.eth1 ({tap})") in differences(reports), differences(reports)
    repair(portal, sid)
    now = {i: portal.qemu_pid(vm) for i, vm in vms.items()}
    assert now[5] != pids[5] and {i: p for i, p in now.items() if i != 5} == {i: p for i, p in pids.items() if i != 5}
    pids = now
    assert portal.lease(vms[5], "eth1").ip == ip[5]
    assert portal.pings(vms[5], ip[6])
    assert same_as(deployed, lab)

    # 4. worker2's ovs-vswitchd restarts: its guard flows are gone; the next check puts them back by itself.
    restart_vswitchd(lab, "worker2")
    reports, stats = check(["worker2"])
    repaired = sorted((d.kind, d.object) for d in reports["worker2"].repaired)
    # Every guarded TAP of worker2: d2's internet NIC, and the link TAPs (SLICE_LINK_GUARD is on).
    guarded = [(2, "eth0"), (2, "eth1"), (4, "eth1"), (6, "eth1")]
    expected = sorted(("guard", f"d{i}.{nic} ({interface(vms[i], nic)['tap']})") for i, nic in guarded)
    assert repaired == expected and differences(reports) == [], (repaired, differences(reports))
    assert Drift.objects.filter(slice_id=sid, kind="guard", resolution=drift.REPAIRED_BY_CHECK).exists()
    assert health(portal, sid)["repaired"], health(portal, sid)
    assert stats["worker2"].round_trips == 2  # the observation, then the repair
    assert {i: portal.qemu_pid(vm) for i, vm in vms.items()} == pids
    assert portal.pings(vms[2], ip[1]) and portal.pings(vms[4], ip[3])
    # The guards are working again: d2's internet NIC reaches no other guest of VLAN 400 at L2.
    internet_d1 = portal.lease(vms[1], "eth0").ip
    assert not portal.sh(vms[2], f"arping -c 2 -w 3 -I eth0 {internet_d1}", timeout=20).ok
    assert same_as(deployed, lab)
    reports, _ = check()
    assert differences(reports) == [] and health(portal, sid)["state"] == "in_sync"

    # 5. The NAT rule goes from the network node: named; Repair puts it back.
    state = hoststate.host_state(lab, "netnode")
    masquerade = next(line for line in state["nat"] if "MASQUERADE" in line)
    netnode(lab, "iptables -w -t nat " + masquerade.replace("-A ", "-D ", 1))
    reports, _ = check()
    kinds = [(h, k) for h, k, _ in differences(reports)]
    assert kinds == [("netnode", "iptables")], differences(reports)
    repair(portal, sid)
    assert {i: portal.qemu_pid(vm) for i, vm in vms.items()} == pids
    assert same_as(deployed, lab)

    # 6. Orphans: a TAP and a dnsmasq named like the portal's, owned by no slice: reported, left alone.
    system.run(["ip", "tuntap", "add", "dev", "tap_99999_eth1", "mode", "tap"], netns=lab_host("worker1").namespace)
    orphan_dir = f"{lab.paths.state_dir('netnode')}/dhcp/v3999"
    os.makedirs(orphan_dir, exist_ok=True)
    netnode(lab, f"dnsmasq --conf-file=/dev/null --port=0 --pid-file={orphan_dir}/dnsmasq.pid --interface=lo")
    orphan_pid = system.pid_from_file(Path(orphan_dir) / "dnsmasq.pid", must_mention=orphan_dir)
    try:
        reports, _ = check()
        found = sorted((o.host, o.kind, o.object) for r in reports.values() for o in r.orphans)
        assert found == [
            ("netnode", "orphan-dnsmasq", "dnsmasq of VLAN 3999"),
            ("worker1", "orphan-tap", "tap_99999_eth1"),
        ]
        assert differences(reports) == []
        assert HostHealth.objects.get(host__name="worker1").orphans
        assert os.path.exists(f"/proc/{orphan_pid}")
        assert "tap_99999_eth1" in hoststate.host_state(lab, "worker1")["links"]
    finally:
        system.run(["ip", "link", "del", "dev", "tap_99999_eth1"], netns=lab_host("worker1").namespace, check=False)
        if orphan_pid:
            os.kill(orphan_pid, signal.SIGTERM)
        time.sleep(0.3)
        subprocess.run(["rm", "-rf", orphan_dir], check=False)

    # 7. worker1 reboots (`manage.py lab reboot`): its guests, TAPs and flows are
    # gone; the check names them, one Repair brings its three VMs back, worker2's keep running.
    reboot.reboot(lab.paths, "worker1")
    reports, _ = check()
    kinds = {(h, k) for h, k, _ in differences(reports)}
    assert {("worker1", "qemu"), ("worker1", "tap")} <= kinds, differences(reports)
    assert {portal.get_vm(vms[i])["status"] for i in (1, 3, 5)} == {"lost"}
    repair(portal, sid)
    assert health(portal, sid)["state"] == "in_sync", health(portal, sid)
    now = {i: portal.qemu_pid(vm) for i, vm in vms.items()}
    assert {i: now[i] for i in (2, 4, 6)} == {i: pids[i] for i in (2, 4, 6)}
    for a, b in ((1, 2), (3, 4), (5, 6)):
        assert portal.lease(vms[a], "eth1").ip == ip[a]
        assert portal.pings(vms[a], ip[b])
    assert same_as(deployed, lab)

    portal.run(sid, "destroy")
    assert_restored(lab, before)
