"""Drift, pure parts: the one observation command, its parser (recorded outputs), the comparison with the
specs, orphans, the isolation repairs and the repair plan (a VM that lost a TAP is restarted, alone)."""

# ruff: noqa: E501 (recorded command output is kept as the host printed it)
from __future__ import annotations

from pathlib import Path

import pytest

from provisioning.plans import apply_plan, dhcp_files, flow_cookie, vm_files
from provisioning.plans import drift as d
from provisioning.plans.sense import CHECK_END, SH_OBSERVE, observe_command, parse_observation
from slices.naming import dhcp_namespace, dhcp_port_name, gateway_port_name
from tests.provisioning.factories import NODE, W1, spec, vlan, vm

# Recorded on the lab's worker1 (trimmed): one guest with a link NIC and an internet NIC.
RECORDED_WORKER = """\
@@OBS versions
ovs-vsctl (Open vSwitch) 3.1.0
QEMU emulator version 7.2.15 (Debian 1:7.2+dfsg-7+deb12u12)
Dnsmasq version 2.90  Copyright (c) 2000-2024 Simon Kelley
@@OBS cpus
2
@@OBS meminfo
MemTotal:        4025236 kB
MemAvailable:    2811320 kB
@@OBS kvm
no
@@OBS links
1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000\\    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00
2: ovs-netdev: <BROADCAST,MULTICAST,PROMISC> mtu 1500 qdisc noop state DOWN mode DEFAULT group default qlen 1000\\    link/ether 7a:1c:2b:7e:5d:11 brd ff:ff:ff:ff:ff:ff
5: mgmt0@if6: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP mode DEFAULT group default qlen 1000\\    link/ether 2e:0c:80:41:9b:3a brd ff:ff:ff:ff:ff:ff link-netnsid 0
9: tap_1_eth0: <BROADCAST,MULTICAST,PROMISC,UP,LOWER_UP> mtu 1500 qdisc fq_codel state UP mode DEFAULT group default qlen 1000\\    link/ether 8e:2f:1a:00:11:22 brd ff:ff:ff:ff:ff:ff
10: tap_1_eth1: <BROADCAST,MULTICAST,PROMISC,UP,LOWER_UP> mtu 1500 qdisc fq_codel state UP mode DEFAULT group default qlen 1000\\    link/ether 9a:11:0b:33:44:55 brd ff:ff:ff:ff:ff:ff
@@OBS ports
br-int,
trunk0,
tap_1_eth0,400
tap_1_eth1,100
@@OBS flows
 cookie=0x5350000000000100, priority=310,udp,in_port=tap_1_eth0,tp_src=67 actions=drop
 cookie=0x5350000000000100, priority=310,icmp6,in_port=tap_1_eth0,icmp_type=134 actions=drop
{flows}
@@OBS procs
4242 qemu-system-x86_64 -name lab.vm1 -nodefaults -no-user-config -accel tcg -cpu max -smp 1 -m 128 -pidfile /var/lib/sp/vms/vm1/qemu.pid -daemonize
@@OBS pidfiles
/var/lib/sp/vms/vm1/qemu.pid 4242
@@OBS checks
@@OBS end
"""


def recorded_worker(guard_flows: int = 12) -> str:
    line = " cookie=0x5350000000000100, priority=300,in_port=tap_1_eth0,dl_src=52:54:00:01:00:00 actions=NORMAL"
    return RECORDED_WORKER.format(flows="\n".join([line] * (guard_flows - 2)))


def one_vm_spec():
    return spec([vm(1, "worker1", (400, 100))], [vlan(100, 1)], internet=True, workers=(W1,))


def netnode_output(s, *, rcs=None, forward="1", skip_vlan=None, dnsmasq_alive=True) -> str:
    """What the network node prints when everything of ``s`` is in place (a few things can be left out)."""
    checks = d.netnode_checks([s])
    served = [*s.vlans, *([d.INTERNET] if s.internet else [])]
    ports, addrs, links, netns, nsaddrs, procs, pidfiles = [], [], [], [], [], [], []
    for i, v in enumerate(served):
        if v.vlan == skip_vlan:
            continue
        gw, dport, ns = gateway_port_name(v.vlan), dhcp_port_name(v.vlan), dhcp_namespace(v.vlan)
        ports += [f"{gw},{v.vlan}", f"{dport},{v.vlan}"]
        links.append(f"{20 + i}: {gw}: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 state UNKNOWN")
        addrs.append(f"{20 + i}: {gw}    inet {v.gateway}/{v.prefixlen} brd x scope global {gw}")
        netns.append(f"{ns} (id: {i})")
        nsaddrs.append(f"{ns} 5: {dport}    inet {v.dhcp_server}/{v.prefixlen} brd x scope global {dport}")
        pidfile = dhcp_files(NODE, v.vlan).pidfile
        pidfiles.append(f"{pidfile} {900 + i}")
        if dnsmasq_alive:
            procs.append(f"{900 + i} dnsmasq --conf-file=/dev/null --pid-file={pidfile} --log-dhcp")
    rcs = rcs or {}
    return "\n".join(
        [
            "@@OBS links",
            *links,
            "@@OBS ports",
            "br-int,",
            *ports,
            "@@OBS flows",
            "@@OBS procs",
            *procs,
            "@@OBS pidfiles",
            *pidfiles,
            "@@OBS addrs",
            *addrs,
            "@@OBS netns",
            *netns,
            "@@OBS nsaddrs",
            *nsaddrs,
            "@@OBS forward",
            forward,
            "@@OBS checks",
            *(f"{i} {rcs.get(i, 0)}" for i in range(len(checks))),
            "@@OBS end",
        ]
    )


def test_the_observation_is_one_read_only_command_with_the_plans_checks_as_arguments():
    s = one_vm_spec()
    checks = d.netnode_checks([s])
    cmd = observe_command("/var/lib/sp/", network=True, checks=checks)
    assert cmd.argv[:2] == ("bash", "-c") and cmd.argv[2] == SH_OBSERVE and cmd.check is None
    assert cmd.argv[4:6] == ("/var/lib/sp", "network")
    # Every check is the plan's own read-only iptables -C / -S, passed as values (never in the program).
    assert [c.check[4] for c in checks].count("-C") == len(checks) - 2  # two chains checked with -S
    args = list(cmd.argv[6:])
    assert args.count(CHECK_END) == len(checks)
    assert all(c.check[0] == "iptables" and c.check[4] in ("-C", "-S") for c in checks)
    # Nothing in the program changes a host: it lists, dumps, reads /proc and runs the checks.
    for verb in (
        " add ",
        " del ",
        "link set",
        "vsctl set",
        "add-",
        "del-",
        "-A ",
        "-I ",
        "-D ",
        "kill",
        "rm ",
        "sysctl",
    ):
        assert verb not in SH_OBSERVE, verb


def test_parser_reads_a_recorded_worker():
    obs = parse_observation(recorded_worker())
    assert obs.complete
    assert obs.versions == {"ovs": "3.1.0", "qemu": "7.2.15", "dnsmasq": "2.90"}
    assert (obs.cpus, obs.mem_total_mib, obs.mem_available_mib, obs.kvm_device) == (2, 3930, 2745, False)
    assert obs.links["tap_1_eth0"].up and "mgmt0" in obs.links and not obs.links["ovs-netdev"].up
    assert obs.ports == {"br-int": None, "trunk0": None, "tap_1_eth0": 400, "tap_1_eth1": 100}
    assert obs.flows == {int(flow_cookie(1, one_vm_spec().vms[0].nics[0]), 16): 12}
    assert obs.alive("/var/lib/sp/vms/vm1/qemu.pid").pid == 4242
    assert obs.guest_load() == (1, 128)


RECORDED = Path(__file__).parent / "drift_recorded"  # the lab's hosts with a 6-VM slice (tests/lab/test_drift.py)


def test_parser_reads_the_lab_hosts_as_recorded():
    node = parse_observation((RECORDED / "netnode.txt").read_text())
    assert node.complete and node.ip_forward == "1" and set(node.checks.values()) == {0}
    assert {"ns-dhcp-vlan100", "ns-dhcp-vlan400"} <= node.namespaces
    assert node.addresses["gw_v400"] == {"10.60.7.1/24"}
    assert node.ns_addresses["ns-dhcp-vlan400"]["dhcp_v400"] == {"10.60.7.2/24"}
    assert len([p for p in node.processes.values() if p.cmdline.startswith("dnsmasq")]) == 4
    assert all(node.alive(path) for path in node.pidfiles)
    worker = parse_observation((RECORDED / "worker1.txt").read_text())
    assert worker.complete and worker.versions["ovs"] == "3.1.0" and worker.cpus == 2
    assert worker.ports["tap_1_eth0"] == 400 and "tap_3_eth0" not in worker.ports  # a TAP without VLAN: off
    assert worker.links["tap_1_eth1"].up and not worker.links["tap_3_eth0"].up
    assert worker.guest_load() == (3, 3 * 128) and all(worker.alive(path) for path in worker.pidfiles)
    assert worker.flows[0x5350000000000100] == 12  # vm1's internet NIC: the plan's 12 guard flows


def test_a_healthy_worker_and_netnode_show_no_difference():
    s = one_vm_spec()
    assert d.slice_differences(s, "worker1", parse_observation(recorded_worker())) == []
    checks = d.netnode_checks([s])
    assert d.slice_differences(s, "netnode", parse_observation(netnode_output(s)), checks) == []


def test_a_dead_qemu_is_named_unless_the_vm_was_shut_down_on_purpose():
    text = recorded_worker().replace("4242 qemu-system", "4243 qemu-system")
    found = d.slice_differences(one_vm_spec(), "worker1", parse_observation(text))
    assert [(x.kind, x.object, x.vm) for x in found] == [("qemu", "vm1", 1)]
    assert "stopped unexpectedly" in found[0].found
    assert d.slice_differences(one_vm_spec(), "worker1", parse_observation(text), stopped={1}) == []


def test_a_deleted_tap_is_named_and_its_vm_restarted_by_the_repair():
    text = recorded_worker().replace("tap_1_eth1: <BROADCAST", "tap_9_eth1: <BROADCAST")
    found = d.slice_differences(one_vm_spec(), "worker1", parse_observation(text))
    assert [(x.kind, x.object, x.found) for x in found] == [("tap", "vm1.eth1 (tap_1_eth1)", "missing")]
    assert d.vms_to_restart(found) == [1]


def test_lost_guard_flows_break_isolation_and_the_check_puts_the_plans_guard_back():
    s = one_vm_spec()
    found = d.slice_differences(s, "worker1", parse_observation(recorded_worker(guard_flows=2)))
    assert [(x.kind, x.expected, x.found, x.isolation) for x in found] == [("guard", "12 guard flows", "2", True)]
    repairs = d.isolation_repairs(s, found)
    assert list(repairs) == ["worker1"]
    [cmd] = repairs["worker1"]
    assert cmd == d.guard_command(s, s.vms[0], s.vms[0].nics[0])  # the plan's own, idempotent command


def test_a_wrong_tag_breaks_isolation_a_missing_port_does_not():
    text = recorded_worker().replace("tap_1_eth1,100", "tap_1_eth1,")
    [found] = d.slice_differences(one_vm_spec(), "worker1", parse_observation(text))
    assert (found.kind, found.found, found.isolation) == ("port", "tag None", True)
    text = recorded_worker().replace("tap_1_eth1,100\n", "")
    [found] = d.slice_differences(one_vm_spec(), "worker1", parse_observation(text))
    assert (found.kind, found.found, found.isolation) == ("port", "not on br-int", False)


def test_netnode_differences_name_dnsmasq_namespace_forwarding_and_rules():
    s = one_vm_spec()
    checks = d.netnode_checks([s])
    nat = next(i for i, c in enumerate(checks) if "MASQUERADE" in c.check)
    drop = next(i for i, c in enumerate(checks) if "DROP" in c.check and "SP-FORWARD" in c.check)
    text = netnode_output(s, rcs={nat: 1, drop: 1}, forward="0", dnsmasq_alive=False)
    found = d.slice_differences(s, "netnode", parse_observation(text), checks)
    kinds = sorted((x.kind, x.object, x.isolation) for x in found)
    assert kinds == sorted(
        [
            ("dnsmasq", "dnsmasq of VLAN 100", False),
            ("dnsmasq", "dnsmasq of VLAN 400", False),
            ("ip-forward", "net.ipv4.ip_forward", False),
            ("iptables", checks[nat].description, False),
            ("iptables", checks[drop].description, True),
        ]
    )
    repairs = d.isolation_repairs(s, found, checks)
    # The isolation rules go back as the plan makes them (each checked first), the NAT rule waits for Repair.
    assert [c.description for c in repairs["netnode"]] == [c.description for c in d.isolation_commands()]
    gone = d.slice_differences(s, "netnode", parse_observation(netnode_output(s, skip_vlan=100)), checks)
    assert {(x.kind, x.object) for x in gone} >= {
        ("gateway", "gw_v100"),
        ("dhcp-namespace", "ns-dhcp-vlan100"),
        ("dnsmasq", "dnsmasq of VLAN 100"),
    }


def test_orphans_are_things_named_like_ours_that_no_slice_owns():
    s = one_vm_spec()
    text = (
        recorded_worker()
        .replace(
            "@@OBS ports",
            "11: tap_77_eth1: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 state UP\n@@OBS ports",
        )
        .replace(
            "@@OBS pidfiles",
            "5000 qemu-system-x86_64 -name x.vm77 -pidfile /var/lib/sp/vms/vm77/qemu.pid -daemonize\n@@OBS pidfiles",
        )
    )
    found = d.orphans([s], "worker1", W1.state_dir, parse_observation(text), network=False)
    assert sorted((o.kind, o.object) for o in found) == [("orphan-qemu", "QEMU of vm77"), ("orphan-tap", "tap_77_eth1")]
    assert d.orphans([s], "worker1", W1.state_dir, parse_observation(recorded_worker()), network=False) == []
    # Nobody owns anything once the slice is gone: all of it is reported (never removed).
    assert {o.kind for o in d.orphans([], "worker1", W1.state_dir, parse_observation(text), network=False)} == {
        "orphan-tap",
        "orphan-qemu",
        "orphan-flows",
    }
    node = netnode_output(s).replace(
        "@@OBS pidfiles", "77 dnsmasq --pid-file=/var/lib/sp/dhcp/v3999/dnsmasq.pid\n@@OBS pidfiles"
    )
    found = d.orphans([s], "netnode", NODE.state_dir, parse_observation(node), network=True)
    assert [(o.kind, o.object) for o in found] == [("orphan-dnsmasq", "dnsmasq of VLAN 3999")]


@pytest.mark.parametrize("renew", [(), (1,)])
def test_repair_plan_restarts_only_the_vms_that_lost_a_tap(renew):
    s = spec([vm(1, "worker1"), vm(2, "worker2")], [vlan(100, 1, 2)])
    plan = apply_plan(s, s, renew=renew)
    by_phase = {(p.host, p.name): [c.description for c in p.commands] for st in plan.stages for p in st.phases}
    stops = [x for x in by_phase.get(("worker1", "restart-vms"), [])]
    deleted = [x for ph, cmds in by_phase.items() if ph[0] == "worker1" for x in cmds if x.startswith("Delete TAP")]
    if renew:
        assert stops == ["Stop QEMU of vm1"] and sorted(deleted) == ["Delete TAP tap_1_eth0", "Delete TAP tap_1_eth1"]
    else:
        assert stops == [] and deleted == []
    assert ("worker2", "restart-vms") not in by_phase
    assert vm_files(W1, s.vms[0]).pidfile in " ".join(
        a for st in plan.stages for p in st.phases for c in p.commands for a in c.argv
    )
