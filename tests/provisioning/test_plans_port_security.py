"""Port security (issue 14): the exact guard flows of VLAN 400 and link TAPs, VLAN 400's fixed
addresses in the spec, and its reservations in the shared dnsmasq. Pure: no database, no host."""

import dataclasses

import pytest

from provisioning import plans
from provisioning.plans import INTERNET, NicSpec, PlanError, apply_plan, deploy_plan, destroy_plan, shell

from .factories import NODE, mac, spec, two_vm_spec, vlan, vm
from .test_plans import RESERVED, argvs, cmds


def test_vlan_400_reservations_one_file_per_slice_served_by_one_shared_dnsmasq():
    got = plans.internet_commands(NODE, 7, RESERVED)
    hosts = "/var/lib/sp/dhcp/v400/hosts"
    mkdir, write, dnsmasq = got[-6:-3]
    assert mkdir.argv == ("mkdir", "-p", hosts)
    assert mkdir.undo == ("sh", "-c", shell.SH_RMDIR_IF_EMPTY, "sp-rmdir", hosts)  # other slices' files stay
    lines = (f"{mac(1, 0)},10.60.7.11", f"{mac(2, 0)},10.60.7.12")
    assert write.argv == ("sh", "-c", shell.SH_WRITE_LINES, "sp-write", f"{hosts}/slice7", *lines)
    assert write.check == ("sh", "-c", shell.SH_SAME_LINES, "sp-same", f"{hosts}/slice7", *lines)
    assert write.undo == ("rm", "-f", f"{hosts}/slice7")
    # one dnsmasq for every slice: restarted only when the union of the files changed (check mode)
    base = plans.dnsmasq_argv(NODE, INTERNET)
    files = ("/var/lib/sp/dhcp/v400/dnsmasq.pid", hosts, "/var/lib/sp/dhcp/v400/dnsmasq.leases")
    assert dnsmasq.argv == ("sh", "-c", shell.SH_DNSMASQ_SYNC, "sp-dnsmasq-sync", "run", *files, *base)
    assert dnsmasq.check == ("sh", "-c", shell.SH_DNSMASQ_SYNC, "sp-dnsmasq-sync", "check", *files, *base)
    assert dnsmasq.undo == ("sh", "-c", shell.SH_KILL_PIDFILE, "sp-kill", files[0])
    assert base[:5] == ("ip", "netns", "exec", "ns-dhcp-vlan400", "dnsmasq")
    assert not [a for a in base if a.startswith("--dhcp-host")]  # they come from the files, at run time
    # in the plan: before the VMs boot, in the shared (locked) internet phase
    plan = deploy_plan(spec([vm(1, vlans=(400, None)), vm(2, vlans=(400, None))], internet=True))
    assert write.argv in argvs(plan, "netnode", "internet")


def test_a_slice_leaving_vlan_400_drops_its_reservations_even_when_others_keep_it():
    s = spec([vm(1, vlans=(400, None))], internet=True)
    leave = [c.argv for c in plans.internet_leave_commands(NODE, 7)]
    files = ("/var/lib/sp/dhcp/v400/dnsmasq.pid", "/var/lib/sp/dhcp/v400/hosts", "/var/lib/sp/dhcp/v400/dnsmasq.leases")
    assert leave == [
        ("rm", "-f", "/var/lib/sp/dhcp/v400/hosts/slice7"),
        ("sh", "-c", shell.SH_DNSMASQ_SYNC, "sp-dnsmasq-sync", "leave", *files, *plans.dnsmasq_argv(NODE, INTERNET)),
    ]
    for plan in (
        destroy_plan(dataclasses.replace(s, keep_internet=True)),
        destroy_plan(s),
        apply_plan(s, spec([vm(1, vlans=(None, None))])),
        apply_plan(s, spec([vm(1, vlans=(None, None))], keep_internet=True)),
    ):
        phases = [p for p in plan.by_host()["netnode"]]
        (left,) = [p for p in phases if p.name == "leave-internet"]
        assert left.shared == "internet" and not left.teardown  # runs even when VLAN 400 is kept
        assert [c.argv for c in left.commands] == leave
        names_ = [p.name for p in phases]
        if "teardown-internet" in names_:
            assert names_.index("leave-internet") < names_.index("teardown-internet")
    # a slice that keeps internet rewrites its file instead: no leave
    assert "leave-internet" not in [p.name for p in apply_plan(s, s).by_host()["netnode"]]


def test_an_internet_tap_speaks_only_as_itself_to_the_gateway_and_dhcp():
    guest = vm(1, vlans=(400, 100))
    assert guest.nics[0].address == "10.60.7.11"
    guard = plans.internet_guard_command(guest, guest.nics[0])
    cookie = "0x5350000000000100"
    head = f"cookie={cookie},table=0,in_port=tap_1_eth0"
    own = f"{head},priority=300,dl_src={mac(1, 0)}"
    arp = f"{own},arp,arp_sha={mac(1, 0)},arp_spa=10.60.7.11"
    bcast, gw_mac, dhcp_mac = "ff:ff:ff:ff:ff:ff", "02:53:50:00:04:01", "02:53:50:00:04:02"
    assert guard.argv == (
        "sh", "-c", shell.SH_OFCTL_REPLACE_FLOWS, "sp-flows", "br-int", cookie,
        f"{head},priority=310,udp,tp_src=67,actions=drop",
        f"{head},priority=310,icmp6,icmp_type=134,actions=drop",
        f"{arp},dl_dst={bcast},arp_tpa=10.60.7.1,actions=NORMAL",
        f"{arp},dl_dst={bcast},arp_tpa=10.60.7.2,actions=NORMAL",
        f"{arp},dl_dst={gw_mac},actions=NORMAL",
        f"{arp},dl_dst={dhcp_mac},actions=NORMAL",
        f"{own},arp,arp_sha={mac(1, 0)},arp_spa=0.0.0.0,arp_tpa=10.60.7.11,dl_dst={bcast},actions=NORMAL",
        f"{own},ip,nw_src=10.60.7.11,dl_dst={gw_mac},actions=NORMAL",
        f"{own},udp,tp_src=68,tp_dst=67,nw_src=0.0.0.0,dl_dst={bcast},actions=NORMAL",
        f"{own},udp,tp_src=68,tp_dst=67,nw_src=10.60.7.11,dl_dst={bcast},actions=NORMAL",
        f"{own},udp,tp_src=68,tp_dst=67,nw_src=10.60.7.11,dl_dst={dhcp_mac},actions=NORMAL",
        f"{head},priority=290,actions=drop",
    )  # fmt: skip
    # the drift check: 12 flows on the port as it is now, 9 naming the MAC, 8 the address
    assert guard.check == ("sh", "-c", shell.SH_OFCTL_FLOWS_CHECK, "sp-flows-check", "br-int", cookie, "tap_1_eth0",
                           "12", f"dl_src={mac(1, 0)},", "9", "=10.60.7.11,", "8")  # fmt: skip
    assert guard.undo == ("sh", "-c", shell.SH_OFCTL_DEL_FLOWS, "sp-del-flows", "br-int", cookie)
    # in the plan: right after the worker's ports transaction, only for VLAN 400 NICs (links unguarded here)
    got = argvs(deploy_plan(spec([guest, vm(2, "worker2")], [vlan(100, 1, 2)], internet=True)), "worker1", "ports")
    assert got[-2][0] == "ovs-vsctl" and got[-1] == guard.argv
    assert not [a for a in argvs(deploy_plan(two_vm_spec()), "worker1", "ports") if "sp-flows" in a]
    # cookies stay apart for big ids and many NICs
    assert plans.flow_cookie(123456, NicSpec(10, mac(1, 10), 400, "x")) == "0x5350000001e2400a"


def test_a_link_tap_cannot_pose_as_its_gateway_or_dhcp_server_when_links_are_guarded():
    guest = vm(1, vlans=(None, 100))
    guard = plans.link_guard_command(guest, guest.nics[1], vlan(100, 1, 2))
    cookie = "0x5350000000000101"
    head = f"cookie={cookie},table=0,in_port=tap_1_eth1"
    assert guard.argv == (
        "sh", "-c", shell.SH_OFCTL_REPLACE_FLOWS, "sp-flows", "br-int", cookie,
        f"{head},priority=310,udp,tp_src=67,actions=drop",
        f"{head},priority=310,icmp6,icmp_type=134,actions=drop",
        f"{head},priority=310,arp,arp_spa=10.64.100.1,actions=drop",
        f"{head},priority=310,arp,arp_spa=10.64.100.2,actions=drop",
        f"{head},priority=310,ip,nw_src=10.64.100.1,actions=drop",
        f"{head},priority=310,ip,nw_src=10.64.100.2,actions=drop",
        f"{head},priority=300,dl_src={mac(1, 1)},actions=NORMAL",
        f"{head},priority=290,actions=drop",
    )  # fmt: skip
    assert guard.check == ("sh", "-c", shell.SH_OFCTL_FLOWS_CHECK, "sp-flows-check", "br-int", cookie, "tap_1_eth1",
                           "8", f"dl_src={mac(1, 1)},", "1", "=10.64.100.1,", "2", "=10.64.100.2,", "2")  # fmt: skip
    guarded = two_vm_spec(link_guard=True)
    assert guard.argv in argvs(deploy_plan(guarded), "worker1", "ports")
    assert guard.undo in argvs(destroy_plan(guarded), "worker1", "teardown-ports")
    # the setting turned off: the next apply removes the link guards of VMs that keep running
    off = argvs(apply_plan(guarded, two_vm_spec()), "worker1", "teardown-ports")
    assert off == [guard.undo]
    assert not [a for a in argvs(apply_plan(guarded, two_vm_spec()), "worker1", "ports") if "sp-flows" in a]


def test_internet_nics_need_their_own_distinct_address_in_the_range():
    def with_address(address, vm_id=1):
        guest = vm(vm_id, vlans=(400, None))
        return dataclasses.replace(guest, nics=(dataclasses.replace(guest.nics[0], address=address), guest.nics[1]))

    for bad in ("", "10.60.7.2", "10.60.7.251", "10.64.0.10", "10.60.7.010", "x"):
        with pytest.raises(PlanError):
            deploy_plan(spec([with_address(bad)], internet=True))
    with pytest.raises(PlanError, match="given to two NICs"):
        deploy_plan(spec([with_address("10.60.7.20"), with_address("10.60.7.20", 2)], internet=True))
    no_vlan = vm(1, vlans=(None, None))
    with pytest.raises(PlanError, match="only on VLAN 400"):
        deploy_plan(spec([dataclasses.replace(no_vlan, nics=(dataclasses.replace(no_vlan.nics[0], address="10.60.7.20"),
                                                               no_vlan.nics[1]))]))  # fmt: skip
    assert deploy_plan(spec([with_address("10.60.7.250")], internet=True))


def test_a_footprint_from_before_fixed_addresses_is_diffed_and_its_guest_renews():
    """A slice deployed before VLAN 400 addresses were fixed: its footprint's internet NIC has none. The
    redeploy keeps the guest running, replaces its guard with the pinned one and bounces its link, so it
    asks DHCP anew (from 0.0.0.0, allowed) and gets its reservation; a destroy of it works too."""
    new = spec([vm(1, vlans=(400, None))], internet=True)
    legacy_vm = dataclasses.replace(new.vms[0], nics=(dataclasses.replace(new.vms[0].nics[0], address=""),
                                                      new.vms[0].nics[1]))  # fmt: skip
    old = dataclasses.replace(new, vms=(legacy_vm,))
    with pytest.raises(PlanError):
        deploy_plan(old)  # never built without an address
    plan = apply_plan(old, new)
    assert not cmds(plan, "worker1", "restart-vms") and not cmds(plan, "worker1", "teardown-vms")
    assert argvs(plan, "worker1", "teardown-ports") == [plans.guard_remove_argv(1, new.vms[0].nics[0])]
    assert plans.internet_guard_command(new.vms[0], new.vms[0].nics[0]).argv in argvs(plan, "worker1", "ports")
    assert [c.relinks for c in cmds(plan, "worker1", "relink")] == [mac(1, 0)]
    assert destroy_plan(old)
