"""The plan builders: exact argv of every builder, phase and stage order, undo order, diffs.

Pure: no database, no host.
"""

import dataclasses

import pytest

from provisioning import plans
from provisioning.plans import (
    INTERNET,
    HostCommand,
    NicSpec,
    PlanError,
    SliceSpec,
    apply_plan,
    deploy_plan,
    destroy_plan,
    merge_specs,
    shell,
)

from .factories import DISK, NODE, W1, W2, mac, spec, two_vm_spec, vlan, vm


def names(plan):
    return [(s.name, [(p.host, p.name) for p in s.phases]) for s in plan.stages]


def cmds(plan, host, phase):
    return [c for s in plan.stages for p in s.phases if p.host == host and p.name == phase for c in p.commands]


def argvs(plan, host, phase):
    return [c.argv for c in cmds(plan, host, phase)]


# --- worker builders -----------------------------------------------------------------------------


def test_tap_with_vlan_is_created_brought_up_and_undone_tolerantly():
    create, up = plans.tap_commands(vm(1), NicSpec(1, mac(1, 1), 100, "tap_1_eth1"))
    assert create.argv == ("ip", "tuntap", "add", "dev", "tap_1_eth1", "mode", "tap")
    assert create.check == ("ip", "link", "show", "dev", "tap_1_eth1")
    assert create.undo == ("sh", "-c", shell.SH_DEL_LINK, "sp-del-link", "tap_1_eth1")
    assert up.argv == ("ip", "link", "set", "dev", "tap_1_eth1", "up")


def test_interface_without_vlan_gets_a_tap_that_stays_down():
    _create, state = plans.tap_commands(vm(1), NicSpec(0, mac(1, 0), None, "tap_1_eth0"))
    assert state.argv == ("ip", "link", "set", "dev", "tap_1_eth0", "down")
    assert "dead interface" in state.description


def test_one_ovs_transaction_per_worker_tags_linked_taps_and_detaches_dead_ones():
    cmd = plans.worker_ports_command(vm(1, vlans=(None, 100, 101)).nics)
    assert cmd.argv == (
        "ovs-vsctl",
        "--if-exists", "del-port", "br-int", "tap_1_eth0",
        "--", "--may-exist", "add-port", "br-int", "tap_1_eth1", "tag=100",
        "--", "set", "port", "tap_1_eth1", "tag=100",
        "--", "--may-exist", "add-port", "br-int", "tap_1_eth2", "tag=101",
        "--", "set", "port", "tap_1_eth2", "tag=101",
    )  # fmt: skip
    assert cmd.check == ("sh", "-c", shell.SH_OVS_PORTS_CHECK, "sp-ovs-ports",
                         "tap_1_eth0", "-", "tap_1_eth1", "100", "tap_1_eth2", "101")  # fmt: skip
    assert cmd.undo == (
        "ovs-vsctl",
        "--if-exists", "del-port", "br-int", "tap_1_eth0",
        "--", "--if-exists", "del-port", "br-int", "tap_1_eth1",
        "--", "--if-exists", "del-port", "br-int", "tap_1_eth2",
    )  # fmt: skip


def test_no_port_is_ever_added_without_a_tag():
    plan = deploy_plan(spec([vm(1, vlans=(None, None, 100)), vm(2, vlans=(None, 100))], [vlan(100, 1, 2)]))
    for command in [c for s in plan.stages for p in s.phases for c in p.commands]:
        argv = list(command.argv)
        for i, word in enumerate(argv):
            if word == "add-port":
                assert argv[i + 3].startswith("tag="), argv


def test_worker_ports_phase_order_dirs_then_taps_then_one_transaction():
    plan = deploy_plan(two_vm_spec())
    got = argvs(plan, "worker1", "ports")
    assert got[:2] == [("mkdir", "-p", "/var/lib/sp/vms"), ("mkdir", "-p", "/var/lib/sp/vms/vm1")]
    assert got[2:6] == [
        ("ip", "tuntap", "add", "dev", "tap_1_eth0", "mode", "tap"),
        ("ip", "link", "set", "dev", "tap_1_eth0", "down"),
        ("ip", "tuntap", "add", "dev", "tap_1_eth1", "mode", "tap"),
        ("ip", "link", "set", "dev", "tap_1_eth1", "up"),
    ]
    assert got[6][0] == "ovs-vsctl" and len(got) == 7
    assert sum(1 for a in got if a[0] == "ovs-vsctl") == 1


def test_qemu_argv_kernel_boot_tcg():
    argv = plans.qemu_argv(W1, vm(1, vlans=(400, 100)), "lab")
    d = "/var/lib/sp/vms/vm1"
    assert argv == (
        "qemu-system-x86_64", "-name", "lab.vm1", "-nodefaults", "-no-user-config",
        "-accel", "tcg", "-cpu", "max", "-smp", "1", "-m", "128",
        "-kernel", "/boot/vmlinuz", "-initrd", "/boot/initrd.img", "-append", "console=ttyS0",
        "-netdev", "tap,id=n0,ifname=tap_1_eth0,script=no,downscript=no,vnet_hdr=off",
        "-device", "virtio-net-pci,netdev=n0,mac=52:54:00:01:00:00",
        "-netdev", "tap,id=n1,ifname=tap_1_eth1,script=no,downscript=no,vnet_hdr=off",
        "-device", "virtio-net-pci,netdev=n1,mac=52:54:00:01:00:01",
        "-chardev", f"socket,id=s0,path={d}/console.sock,server=on,wait=off,logfile={d}/console.log",
        "-serial", "chardev:s0",
        "-qmp", f"unix:{d}/qmp.sock,server=on,wait=off",
        "-vga", "std", "-display", "none", "-vnc", f"unix:{d}/vnc.sock,share=force-shared",
        "-pidfile", f"{d}/qemu.pid", "-daemonize",
    )  # fmt: skip


def test_qemu_argv_disk_image_kvm_and_overlay():
    the_vm = vm(3, "worker2", image=DISK, vcpus=2, ram=1024)
    argv = plans.qemu_argv(W2, the_vm, "lab")
    assert argv[5:13] == ("-accel", "kvm", "-cpu", "host", "-smp", "2", "-m", "1024")
    assert argv[13:15] == ("-drive", "file=/srv/sp/vms/vm3/disk.qcow2,if=virtio,format=qcow2")
    assert "-kernel" not in argv
    disk = plans.disk_command(W2, the_vm)
    assert disk.argv == (
        "qemu-img", "create", "-f", "qcow2", "-F", "qcow2", "-b", "/images/debian.qcow2", "/srv/sp/vms/vm3/disk.qcow2"
    )  # fmt: skip
    assert disk.check == ("test", "-e", "/srv/sp/vms/vm3/disk.qcow2")
    vms = plans.worker_vms_commands(W2, [the_vm], "lab")
    assert [c.argv[0] for c in vms] == ["qemu-img", "qemu-system-x86_64"]


def test_qemu_nics_follow_eth_order():
    argv = plans.qemu_argv(W1, vm(5, vlans=(None, 100, 101, 102)), "lab")
    devices = [a for a in argv if a.startswith("virtio-net-pci")]
    assert devices == [f"virtio-net-pci,netdev=n{i},mac={mac(5, i)}" for i in range(4)]


def test_qemu_is_checked_and_stopped_by_its_pid_file_only():
    cmd = plans.qemu_command(W1, vm(1), "lab")
    assert cmd.check == ("sh", "-c", shell.SH_PIDFILE_ALIVE, "sp-alive", "/var/lib/sp/vms/vm1/qemu.pid")
    assert cmd.undo == ("sh", "-c", shell.SH_KILL_PIDFILE, "sp-kill", "/var/lib/sp/vms/vm1/qemu.pid")
    everything = " ".join(" ".join(c.argv + (c.undo or ())) for c in plans.worker_vms_commands(W1, [vm(1)], "lab"))
    assert "pkill" not in everything and "killall" not in everything


# --- network node builders ---------------------------------------------------------------------------


def test_vlan_commands_exact():
    got = plans.vlans_commands(NODE, [vlan(100, 1, 2)])
    assert [c.argv for c in got] == [
        ("mkdir", "-p", "/var/lib/sp/dhcp"),
        ("sh", "-c", shell.SH_ADD_NETNS, "sp-add-netns", "ns-dhcp-vlan100"),
        (
            "ovs-vsctl",
            "--may-exist", "add-port", "br-int", "gw_v100", "tag=100",
            "--", "set", "interface", "gw_v100", "type=internal",
            "--", "--may-exist", "add-port", "br-int", "dhcp_v100", "tag=100",
            "--", "set", "interface", "dhcp_v100", "type=internal",
        ),
        ("ip", "addr", "replace", "10.64.100.1/24", "dev", "gw_v100"),
        ("ip", "link", "set", "dev", "gw_v100", "up"),
        ("ip", "link", "set", "dev", "dhcp_v100", "netns", "ns-dhcp-vlan100"),
        ("ip", "netns", "exec", "ns-dhcp-vlan100", "ip", "addr", "replace", "10.64.100.2/24", "dev", "dhcp_v100"),
        ("ip", "netns", "exec", "ns-dhcp-vlan100", "ip", "link", "set", "dev", "dhcp_v100", "up"),
        ("mkdir", "-p", "/var/lib/sp/dhcp/v100"),
        (
            "ip", "netns", "exec", "ns-dhcp-vlan100", "dnsmasq",
            "--conf-file=/dev/null", "--port=0", "--interface=dhcp_v100", "--bind-interfaces",
            "--dhcp-authoritative", "--no-ping",
            "--dhcp-range=10.64.100.10,10.64.100.250,255.255.255.0,1h",
            "--dhcp-option=3,10.64.100.1", "--dhcp-option=6,8.8.8.8",
            "--dhcp-host=52:54:00:01:00:01,10.64.100.10", "--dhcp-host=52:54:00:02:00:01,10.64.100.11",
            "--dhcp-leasefile=/var/lib/sp/dhcp/v100/dnsmasq.leases",
            "--pid-file=/var/lib/sp/dhcp/v100/dnsmasq.pid",
            "--log-dhcp", "--log-facility=/var/lib/sp/dhcp/v100/dnsmasq.log",
        ),
    ]  # fmt: skip
    dnsmasq = got[-1]
    assert "--log-facility=-" not in dnsmasq.argv
    # reservations are arguments, parsed while dnsmasq is root: no file it must read after dropping to its
    # own user (a hosts file under a mode 0700 state dir was silently ignored, issue 16 #17)
    assert not [a for a in dnsmasq.argv if "hostsfile" in a or a.startswith(("--user", "-u"))]
    assert dnsmasq.check == ("sh", "-c", shell.SH_PIDFILE_ALIVE, "sp-alive", "/var/lib/sp/dhcp/v100/dnsmasq.pid")
    assert dnsmasq.undo == ("sh", "-c", shell.SH_KILL_PIDFILE, "sp-kill", "/var/lib/sp/dhcp/v100/dnsmasq.pid")
    assert got[1].undo == ("sh", "-c", shell.SH_DEL_NETNS, "sp-del-netns", "ns-dhcp-vlan100")
    # a namespace is deleted whenever its name is listed, usable or not (a stale name blocks `ip netns add`)
    assert shell.SH_DEL_NETNS.startswith(shell.SH_NETNS_LISTED) and "netns exec" not in shell.SH_DEL_NETNS


def test_all_vlan_ports_of_the_network_node_go_in_one_transaction():
    got = plans.vlans_commands(NODE, [vlan(100, 1, 2), vlan(101, 3, 4), vlan(102)])
    transactions = [c for c in got if c.argv[0] == "ovs-vsctl"]
    assert len(transactions) == 1
    assert transactions[0].argv.count("add-port") == 6


RESERVED = ((mac(1, 0), "10.60.7.11"), (mac(2, 0), "10.60.7.12"))


def test_internet_commands_exact():
    got = plans.internet_commands(NODE, 7, RESERVED)
    tail = got[-3:]
    assert tail[0].argv == ("sh", "-c", shell.SH_IP_FORWARD_ON, "sp-ip-forward", "/var/lib/sp/ip_forward.saved")
    assert tail[0].undo == ("sh", "-c", shell.SH_IP_FORWARD_RESTORE, "sp-ip-forward-restore",
                            "/var/lib/sp/ip_forward.saved")  # fmt: skip
    nat = ("-s", "10.60.7.0/24", "-o", "ens3", "-j", "MASQUERADE")
    assert tail[1].argv == ("iptables", "-w", "-t", "nat", "-A", "POSTROUTING", *nat)
    assert tail[1].check == ("iptables", "-w", "-t", "nat", "-C", "POSTROUTING", *nat)
    assert tail[1].undo == ("sh", "-c", shell.SH_IPT_DELETE, "sp-ipt-delete", "nat", "POSTROUTING", *nat)
    fwd = ("-i", "gw_v400", "-o", "ens3", "-j", "ACCEPT")
    assert tail[2].argv == ("iptables", "-w", "-t", "filter", "-I", "SP-FORWARD", "1", *fwd)
    assert tail[2].check == ("iptables", "-w", "-t", "filter", "-C", "SP-FORWARD", *fwd)
    dnsmasq = [c for c in got if "dnsmasq" in c.argv]
    assert "--dhcp-range=10.60.7.10,10.60.7.250,255.255.255.0,1h" in dnsmasq[0].argv
    assert "--dhcp-option=3,10.60.7.1" in dnsmasq[0].argv
    assert ("ip", "addr", "replace", "10.60.7.1/24", "dev", "gw_v400") in [c.argv for c in got]


def test_internet_gateway_and_dhcp_ports_get_the_fixed_macs_the_guards_name():
    (ports,) = [c for c in plans.vlans_commands(NODE, [INTERNET]) if c.argv[0] == "ovs-vsctl"]
    assert ports.argv == (
        "ovs-vsctl",
        "--may-exist", "add-port", "br-int", "gw_v400", "tag=400",
        "--", "set", "interface", "gw_v400", "type=internal", 'mac="02:53:50:00:04:01"',
        "--", "--may-exist", "add-port", "br-int", "dhcp_v400", "tag=400",
        "--", "set", "interface", "dhcp_v400", "type=internal", 'mac="02:53:50:00:04:02"',
    )  # fmt: skip
    (link,) = [c for c in plans.vlans_commands(NODE, [vlan(100)]) if c.argv[0] == "ovs-vsctl"]
    assert not [a for a in link.argv if a.startswith("mac=")]


def test_guards_go_with_the_vm_or_when_its_nic_leaves_vlan_400():
    old = spec([vm(1, vlans=(400, None)), vm(2, vlans=(400, None))], internet=True)
    unguard = plans.guard_remove_argv
    destroy = argvs(destroy_plan(old), "worker1", "teardown-ports")
    assert unguard(1, old.vms[0].nics[0]) in destroy and unguard(2, old.vms[1].nics[0]) in destroy
    assert destroy.index(unguard(1, old.vms[0].nics[0])) < [a[0] for a in destroy].index("ovs-vsctl")
    # vm1 keeps running without internet, vm2 keeps it: only vm1's rules go
    new = spec([vm(1, vlans=(None, None)), vm(2, vlans=(400, None))], internet=True)
    teardown = argvs(apply_plan(old, new), "worker1", "teardown-ports")
    assert teardown == [unguard(1, old.vms[0].nics[0])]


def test_uplink_comes_from_the_network_node_spec():
    node = dataclasses.replace(NODE, uplink="lab-up0")
    assert "lab-up0" in plans.internet_commands(node, 7, RESERVED)[-2].argv


def test_isolation_rules_every_append_checked_first():
    got = plans.isolation_commands()
    assert [c.argv for c in got] == [
        ("iptables", "-w", "-t", "filter", "-N", "SP-FORWARD"),
        ("iptables", "-w", "-t", "filter", "-A", "SP-FORWARD", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED",
         "-j", "ACCEPT"),
        ("iptables", "-w", "-t", "filter", "-A", "SP-FORWARD", "-i", "gw_v+", "-j", "DROP"),
        ("iptables", "-w", "-t", "filter", "-A", "SP-FORWARD", "-o", "gw_v+", "-j", "DROP"),
        ("iptables", "-w", "-t", "filter", "-I", "FORWARD", "1", "-j", "SP-FORWARD"),
        ("iptables", "-w", "-t", "filter", "-N", "SP-INPUT"),
        ("iptables", "-w", "-t", "filter", "-A", "SP-INPUT", "-i", "gw_v+", "-p", "icmp", "-m", "addrtype",
         "--dst-type", "LOCAL", "--limit-iface-in", "-j", "ACCEPT"),
        ("iptables", "-w", "-t", "filter", "-A", "SP-INPUT", "-i", "gw_v+", "-j", "DROP"),
        ("iptables", "-w", "-t", "filter", "-I", "INPUT", "1", "-j", "SP-INPUT"),
    ]  # fmt: skip
    for cmd in got:
        assert cmd.check is not None and cmd.undo is not None
        if "-A" in cmd.argv or "-I" in cmd.argv:
            op = "-A" if "-A" in cmd.argv else "-I"
            i = cmd.argv.index(op)
            rule = cmd.argv[i + 2 :] if op == "-A" else cmd.argv[i + 3 :]
            assert cmd.check == ("iptables", "-w", "-t", "filter", "-C", cmd.argv[i + 1], *rule)


# --- whole plans ---------------------------------------------------------------------------------------


def test_deploy_stage_and_phase_order():
    plan = deploy_plan(two_vm_spec(internet=False))
    assert names(plan) == [
        ("network", [("netnode", "isolation"), ("netnode", "vlans"), ("worker1", "ports"), ("worker2", "ports")]),
        ("vms", [("worker1", "vms"), ("worker2", "vms")]),
    ]
    with_internet = deploy_plan(spec([vm(1, vlans=(400, 100)), vm(2, "worker2")], [vlan(100, 1, 2)], internet=True))
    assert names(with_internet)[0][1][:3] == [("netnode", "isolation"), ("netnode", "vlans"), ("netnode", "internet")]


def test_per_host_view():
    by_host = deploy_plan(two_vm_spec()).by_host()
    assert [p.name for p in by_host["netnode"]] == ["isolation", "vlans"]
    assert [p.name for p in by_host["worker1"]] == ["ports", "vms"]


def test_destroy_is_the_reverse_of_deploy_undo_by_undo():
    s = spec([vm(1, vlans=(400, 100)), vm(2, "worker2")], [vlan(100, 1, 2)], internet=True)
    deploy, destroy = deploy_plan(s), destroy_plan(s)
    assert names(destroy) == [
        ("stop", [("worker2", "teardown-vms"), ("worker1", "teardown-vms")]),
        (
            "network",
            [
                ("worker2", "teardown-ports"),
                ("worker1", "teardown-ports"),
                ("netnode", "leave-internet"),
                ("netnode", "teardown-internet"),
                ("netnode", "teardown-vlans"),
                ("netnode", "teardown-isolation"),
            ],
        ),
    ]
    for host in ("netnode", "worker1", "worker2"):
        built = [c for p in deploy.by_host()[host] for c in p.commands if c.undo]
        undone = [c.argv for p in destroy.by_host()[host] if p.name != "leave-internet" for c in p.commands]
        assert undone == [c.undo for c in reversed(built)], host


def test_destroy_steps_all_tolerate_already_gone():
    plan = destroy_plan(spec([vm(1, vlans=(400, 100)), vm(2, "worker2")], [vlan(100, 1, 2)], internet=True))
    for c in [c for s in plan.stages for p in s.phases for c in p.commands]:
        text = " ".join(c.argv)
        assert (
            c.argv[0] == "sh" or "--if-exists" in text or c.argv[:2] == ("rm", "-rf") or c.argv[:2] == ("rm", "-f")
        ), text


def test_destroy_keeps_shared_things_other_slices_need():
    s = spec([vm(1, vlans=(400, 100)), vm(2, "worker2")], [vlan(100, 1, 2)], internet=True)
    kept = destroy_plan(dataclasses.replace(s, keep_internet=True, keep_isolation=True))
    phases = [p.name for p in kept.by_host()["netnode"]]
    assert phases == ["leave-internet", "teardown-vlans"]  # its reservations leave the shared dnsmasq
    only_nat = destroy_plan(dataclasses.replace(s, keep_isolation=True))
    names_ = [p.name for p in only_nat.by_host()["netnode"]]
    assert names_ == ["leave-internet", "teardown-internet", "teardown-vlans"]


def test_shared_phases_are_marked():
    plan = deploy_plan(spec([vm(1, vlans=(400,))], internet=True))
    shared = {p.name: p.shared for p in plan.by_host()["netnode"]}
    assert shared == {"isolation": "isolation", "vlans": None, "internet": "internet"}


# --- redeploy: diff -------------------------------------------------------------------------------------


def test_apply_from_nothing_is_a_deploy():
    s = two_vm_spec()
    assert names(apply_plan(None, s)) == names(deploy_plan(s))


def test_apply_unchanged_only_builds_and_stops_nothing():
    s = two_vm_spec()
    plan = apply_plan(s, s)
    assert names(plan) == names(deploy_plan(s))
    assert not any(p.teardown for st in plan.stages for p in st.phases)


def test_apply_removed_vm_and_link_added_vm():
    old = spec([vm(1), vm(2, "worker2"), vm(3)], [vlan(100, 1, 2), vlan(101, 3)])
    new = spec([vm(1), vm(2, "worker2"), vm(4, "worker2", vlans=(None, 102))], [vlan(100, 1, 2), vlan(102, 4)])
    plan = apply_plan(old, new)
    stop = plan.stages[0]
    assert stop.name == "stop"
    assert [(p.host, p.name) for p in stop.phases] == [("worker1", "teardown-vms")]
    assert [c.argv for c in stop.phases[0].commands] == [plans.qemu_command(W1, vm(3), "lab").undo]
    network = plan.stages[1]
    teardown = [(p.host, p.name) for p in network.phases if p.teardown]
    assert teardown == [("worker1", "teardown-ports"), ("netnode", "teardown-vlans")]
    vlan_teardown = next(p for p in network.phases if p.name == "teardown-vlans")
    text = " ".join(" ".join(c.argv) for c in vlan_teardown.commands)
    assert "ns-dhcp-vlan101" in text and "ns-dhcp-vlan100" not in text
    ports_teardown = next(p for p in network.phases if p.name == "teardown-ports")
    assert "tap_3_eth1" in " ".join(" ".join(c.argv) for c in ports_teardown.commands)
    assert "tap_1_eth1" not in " ".join(" ".join(c.argv) for c in ports_teardown.commands)
    # then the whole new deploy plan: vm1 and vm2 are checked and skipped on the hosts, vm4 starts
    assert [c.description.split(" (")[0] for c in cmds(plan, "worker2", "vms")] == [
        "Start QEMU for vm2",
        "Start QEMU for vm4",
    ]


def test_apply_changed_flavor_restarts_qemu_keeps_disk_and_taps():
    old = spec([vm(1, vlans=(None, None), image=DISK)])
    new = spec([vm(1, vlans=(None, None), image=DISK, ram=256)])
    plan = apply_plan(old, new)
    stop = plan.stages[0]
    assert [(p.host, p.name) for p in stop.phases] == [("worker1", "restart-vms")]
    assert [c.argv for c in stop.phases[0].commands] == [plans.qemu_command(W1, old.vms[0], "lab").undo]
    assert not any(p.teardown for p in plan.stages[1].phases)


def test_apply_fewer_nics_removes_only_those_taps():
    old = spec([vm(1, vlans=(None, 100, None))], [vlan(100, 1)])
    new = spec([vm(1, vlans=(None, 100))], [vlan(100, 1)])
    plan = apply_plan(old, new)
    teardown = [p for p in plan.stages[1].phases if p.teardown]
    assert [(p.host, p.name) for p in teardown] == [("worker1", "teardown-ports")]
    text = [" ".join(c.argv) for c in teardown[0].commands]
    assert any("tap_1_eth2" in t for t in text) and not any("tap_1_eth1" in t for t in text)
    assert not any(t.startswith("rm -rf") for t in text)


def test_apply_vlan_change_of_an_interface_only_retags():
    old = spec([vm(1, vlans=(None, None)), vm(2, vlans=(None, None))])
    new = spec([vm(1), vm(2)], [vlan(100, 1, 2)])
    plan = apply_plan(old, new)
    assert plan.stages[0].name == "network"  # nothing stopped: QEMU keeps running
    transaction = next(c for c in cmds(plan, "worker1", "ports") if c.argv[0] == "ovs-vsctl")
    assert ("set", "port", "tap_1_eth1", "tag=100") == transaction.argv[transaction.argv.index("set") :][:4]


def test_apply_bounces_the_link_of_a_running_vm_whose_nic_changed_vlan():
    old = spec([vm(1, vlans=(None, None)), vm(2, vlans=(None, 100)), vm(3, vlans=(None, 100))], [vlan(100, 2, 3)])
    new = spec([vm(1, vlans=(None, 101)), vm(2, vlans=(None, 101)), vm(3, vlans=(None, None))], [vlan(101, 1, 2)])
    plan = apply_plan(old, new)
    assert [s.name for s in plan.stages] == ["network", "vms"]  # nothing stopped
    relinks = [(p.host, c) for s in plan.stages for p in s.phases if p.name == "relink" for c in p.commands]
    assert [(host, c.relinks) for host, c in relinks] == [
        ("worker1", mac(1, 1)),  # none -> 101
        ("worker1", mac(2, 1)),  # 100 -> 101
        ("worker1", mac(3, 1)),  # 100 -> none
    ]
    assert relinks[0][1].argv == ("sh", "-c", shell.SH_QMP_BOUNCE_LINK, "sp-relink",
                                  "/var/lib/sp/vms/vm1/qmp.sock", "n1")  # fmt: skip
    vms_stage = [p.name for p in plan.stages[-1].phases]
    assert vms_stage.index("relink") > vms_stage.index("vms")  # after the QEMU checks, in the last stage
    # a VM that is restarted or new boots with its NICs as they are: nothing to bounce
    moved = dataclasses.replace(new, vms=(vm(1, vlans=(None, 101), vcpus=2), vm(4, vlans=(None, 101))))
    assert not [p for s in apply_plan(old, moved).stages for p in s.phases if p.name == "relink"]
    # the lease wait of the job then covers the bounced NICs of running VMs too
    wait = plans.lease_wait_command(new, 30, vm_ids=set(), macs={mac(1, 1)})
    assert wait.argv[4:] == (
        "30",
        "/var/lib/sp/dhcp/v101/dnsmasq.leases", mac(1, 1), "10.64.101.10", "wait", "vm1.eth1",
        "/var/lib/sp/dhcp/v101/dnsmasq.leases", mac(2, 1), "10.64.101.11", "read", "vm2.eth1",
    )  # fmt: skip


def test_apply_moved_vm_is_torn_down_on_the_old_worker():
    old = spec([vm(1, "worker1", vlans=(None,))])
    new = spec([vm(1, "worker2", vlans=(None,))])
    plan = apply_plan(old, new)
    assert [(p.host, p.name) for p in plan.stages[0].phases] == [("worker1", "teardown-vms")]
    assert ("worker1", "teardown-ports") in [(p.host, p.name) for p in plan.stages[1].phases]
    assert cmds(plan, "worker2", "vms")


def test_apply_internet_dropped_tears_down_vlan_400_unless_shared():
    old = spec([vm(1, vlans=(400, None))], internet=True)
    new = spec([vm(1, vlans=(None, None))])
    plan = apply_plan(old, new)
    assert [s.name for s in plan.stages] == ["network", "vms"]  # eth0 loses its VLAN: no restart
    assert ("netnode", "teardown-internet") in [(p.host, p.name) for p in plan.stages[0].phases]
    kept = apply_plan(old, dataclasses.replace(new, keep_internet=True))
    assert ("netnode", "teardown-internet") not in [(p.host, p.name) for p in kept.stages[0].phases]


def test_merge_keeps_both_versions_so_the_next_apply_restarts_the_vm():
    v1 = spec([vm(1, ram=128)], [vlan(100, 1, 2)])
    v2 = spec([vm(1, ram=256), vm(2)], [vlan(100, 1, 2)])
    merged = merge_specs(v1, v2)
    assert [v.id for v in merged.vms] == [1, 1, 2]
    plan = apply_plan(merged, v2)
    assert [c.argv for p in plan.stages[0].phases for c in p.commands] == [
        plans.qemu_command(W1, vm(1, ram=128), "lab").undo
    ]  # only the old version is stopped (vm1 at 256 MiB and vm2 start in the vms stage)
    # a destroy of the union removes each TAP once
    destroy = destroy_plan(merged)
    dels = [c.argv for c in cmds(destroy, "worker1", "teardown-ports") if c.argv[0] == "sh"]
    assert len(dels) == len(set(dels))


def test_merge_with_nothing_is_the_newer():
    s = two_vm_spec()
    assert merge_specs(None, s) is s


# --- validation and quoting -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        lambda s: dataclasses.replace(s, slice_name="a;rm -rf /"),
        lambda s: dataclasses.replace(s, netnode=dataclasses.replace(NODE, uplink="eth0 -j ACCEPT")),
        lambda s: dataclasses.replace(s, netnode=dataclasses.replace(NODE, state_dir="/var/$(id)")),
        lambda s: dataclasses.replace(s, netnode=dataclasses.replace(NODE, state_dir="/var/../etc")),
        lambda s: dataclasses.replace(s, workers=(dataclasses.replace(W1, accel="xen"), W2)),
        lambda s: dataclasses.replace(s, vms=(dataclasses.replace(s.vms[0], name="vm 1"), s.vms[1])),
        lambda s: dataclasses.replace(
            s, vms=(dataclasses.replace(s.vms[0], nics=(NicSpec(0, "52:54:00:00:00:0G", None, "tap_1_eth0"),)),)
        ),
        lambda s: dataclasses.replace(
            s, vms=(dataclasses.replace(s.vms[0], nics=(NicSpec(0, mac(1, 0), None, "tap_x;reboot"),)),)
        ),
        lambda s: dataclasses.replace(s, vms=(dataclasses.replace(s.vms[0], host="worker9"),)),
        lambda s: dataclasses.replace(s, vlans=(vlan(400),)),
        lambda s: dataclasses.replace(s, vlans=()),  # a NIC on VLAN 100 that no link serves
        lambda s: dataclasses.replace(
            s, vms=(dataclasses.replace(s.vms[0], image=dataclasses.replace(s.vms[0].image, kernel_args="a;b")),)
        ),
    ],
)
def test_unsafe_or_inconsistent_specs_are_refused(change):
    with pytest.raises(PlanError):
        deploy_plan(change(two_vm_spec()))


def test_vlan_400_only_on_eth0_with_internet():
    with pytest.raises(PlanError):
        deploy_plan(spec([vm(1, vlans=(400, None))], internet=False))
    with pytest.raises(PlanError):
        deploy_plan(spec([vm(1, vlans=(None, 400))], internet=True))


def test_spec_round_trips_through_json():
    import json

    s = spec([vm(1, vlans=(400, 100)), vm(2, "worker2", image=DISK)], [vlan(100, 1, 2)], internet=True)
    assert SliceSpec.from_dict(json.loads(json.dumps(s.to_dict()))) == s


def test_internet_vlan_spec():
    assert (INTERNET.gateway, INTERNET.dhcp_server, INTERNET.dhcp_first, INTERNET.dhcp_last) == (
        "10.60.7.1",
        "10.60.7.2",
        "10.60.7.10",
        "10.60.7.250",
    )


def test_lease_and_probe_parsers():
    out = "lease 52:54:00:01:00:01 10.64.100.10\nlease 52:54:00:02:00:01 -\nnoise\n"
    assert plans.parse_leases(out) == {"52:54:00:01:00:01": "10.64.100.10", "52:54:00:02:00:01": None}
    assert plans.parse_kvm_probe("accel=kvm\n") == "kvm"
    assert plans.parse_kvm_probe("accel=tcg (kvm probe exit 134)") == "tcg"


def test_lease_wait_lists_every_vlan_nic_with_its_lease_file_and_reservation():
    s = spec([vm(1, vlans=(400, 100)), vm(2, "worker2")], [vlan(100, 1, 2)], internet=True)
    cmd = plans.lease_wait_command(s, 60)
    assert cmd.argv[:5] == ("sh", "-c", shell.SH_WAIT_LEASES, "sp-leases", "60")
    assert cmd.argv[5:] == (
        "/var/lib/sp/dhcp/v400/dnsmasq.leases", mac(1, 0), "10.60.7.11", "wait", "vm1.eth0",
        "/var/lib/sp/dhcp/v100/dnsmasq.leases", mac(1, 1), "10.64.100.10", "wait", "vm1.eth1",
        "/var/lib/sp/dhcp/v100/dnsmasq.leases", mac(2, 1), "10.64.100.11", "wait", "vm2.eth1",
    )  # fmt: skip
    assert cmd.description == "Wait up to 60 s for DHCP leases of 3 interface(s)"
    assert plans.lease_wait_command(spec([vm(1, vlans=(None,))]), 60) is None


def test_lease_wait_waits_for_vms_booted_by_the_job_and_reads_the_others():
    """A VM a redeploy left running asks for no new lease: waiting for it would stall the job, but
    its current lease is read (issue 16 #11: a lease lost with a failed observation is filled in)."""
    s = spec([vm(1), vm(2, "worker2")], [vlan(100, 1, 2)])
    cmd = plans.lease_wait_command(s, 60, {2})
    assert cmd.argv[5:] == (
        "/var/lib/sp/dhcp/v100/dnsmasq.leases", mac(1, 1), "10.64.100.10", "read", "vm1.eth1",
        "/var/lib/sp/dhcp/v100/dnsmasq.leases", mac(2, 1), "10.64.100.11", "wait", "vm2.eth1",
    )  # fmt: skip
    assert cmd.description == "Wait up to 60 s for DHCP leases of 1 interface(s), read 1 more"
    kept = plans.lease_wait_command(s, 60, set())
    assert [kept.argv[i] for i in (8, 13)] == ["read", "read"]
    assert kept.description == "Read the DHCP leases of 2 interface(s)"


def test_qemu_command_names_the_vm_it_boots():
    s = two_vm_spec()
    worker = s.worker(s.vms[0].host)
    assert plans.qemu_command(worker, s.vms[0], "s1").boots_vm == s.vms[0].id


def test_host_command_undo_description():
    c = HostCommand(("true",), "Do it", undo=("false",))
    assert c.undo_command() == HostCommand(("false",), "Undo: Do it")
