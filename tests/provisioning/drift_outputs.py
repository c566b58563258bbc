"""What the observation prints on a host that holds exactly what the specs say (for the drift tests)."""

from __future__ import annotations

from provisioning.plans import dhcp_files, flow_cookie, vm_files
from provisioning.plans import drift as d
from slices.naming import dhcp_namespace, dhcp_port_name, gateway_port_name


def healthy(specs, host: str, *, network: bool, drop=(), rcs=None) -> str:
    """The sections of a healthy host; ``drop``: lines containing any of these texts are left out."""
    links, ports, flows, procs, pidfiles = [], ["br-int,"], [], [], []
    addrs, netns, nsaddrs = [], [], []
    pid = 1000
    for s in specs:
        if any(vm.host == host for vm in s.vms):
            worker = s.worker(host)
            for vm in s.vms_on(host):
                pid += 1
                pidfile = vm_files(worker, vm).pidfile
                procs.append(
                    f"{pid} qemu-system-x86_64 -name {s.slice_name}.{vm.name} -smp 1 -m 128 -pidfile {pidfile}"
                )
                pidfiles.append(f"{pidfile} {pid}")
                for nic in vm.nics:
                    flags = "BROADCAST,MULTICAST,UP,LOWER_UP" if nic.vlan is not None else "BROADCAST,MULTICAST"
                    links.append(f"{pid}: {nic.tap}: <{flags}> mtu 1500 state UP")
                    if nic.vlan is not None:
                        ports.append(f"{nic.tap},{nic.vlan}")
                    if nic.vlan == 400 or (s.link_guard and nic.vlan is not None):
                        count = len(d.guard_command(s, vm, nic).argv) - d.GUARD_ARGS
                        line = f" cookie={flow_cookie(vm.id, nic)}, priority=300,in_port={nic.tap} actions=NORMAL"
                        flows += [line] * count
        if network and s.netnode.name == host:
            for v in [*s.vlans, *([d.INTERNET] if s.internet else [])]:
                gw, dport, ns = gateway_port_name(v.vlan), dhcp_port_name(v.vlan), dhcp_namespace(v.vlan)
                pid += 1
                ports += [f"{gw},{v.vlan}", f"{dport},{v.vlan}"]
                links.append(f"{pid}: {gw}: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 state UNKNOWN")
                addrs.append(f"{pid}: {gw}    inet {v.gateway}/{v.prefixlen} brd x scope global {gw}")
                netns.append(f"{ns} (id: {pid})")
                nsaddrs.append(f"{ns} 5: {dport}    inet {v.dhcp_server}/{v.prefixlen} brd x scope global {dport}")
                pidfile = dhcp_files(s.netnode, v.vlan).pidfile
                pidfiles.append(f"{pidfile} {pid}")
                procs.append(f"{pid} dnsmasq --conf-file=/dev/null --pid-file={pidfile}")
    checks = d.netnode_checks([s for s in specs if s.netnode.name == host]) if network else ()
    rcs = rcs or {}
    lines = [
        "@@OBS versions",
        "ovs-vsctl (Open vSwitch) 3.1.0",
        "QEMU emulator version 7.2.15",
        "Dnsmasq version 2.90  Copyright",
        "@@OBS cpus",
        "2",
        "@@OBS meminfo",
        "MemTotal:        4025236 kB",
        "MemAvailable:    2811320 kB",
        "@@OBS kvm",
        "no",
        "@@OBS links",
        *links,
        "@@OBS ports",
        *ports,
        "@@OBS flows",
        *flows,
        "@@OBS procs",
        *procs,
        "@@OBS pidfiles",
        *pidfiles,
    ]
    if network:
        lines += ["@@OBS addrs", *addrs, "@@OBS netns", *netns, "@@OBS nsaddrs", *nsaddrs, "@@OBS forward", "1"]
    lines += ["@@OBS checks", *(f"{i} {rcs.get(i, 0)}" for i in range(len(checks))), "@@OBS end"]
    return "\n".join(line for line in lines if not any(text in line for text in drop)) + "\n"
