"""What the observation prints on a host that holds exactly what the specs say, and a runner that answers
with it (for the drift and usage tests)."""

from __future__ import annotations

from dataclasses import dataclass, field

from provisioning import drift, services
from provisioning.models import Deployment
from provisioning.plans import dhcp_files, flow_cookie, vm_files
from provisioning.plans import drift as d
from provisioning.runners import Event, Runner
from slices import services as slice_services
from slices.models import VM, Slice
from slices.naming import dhcp_namespace, dhcp_port_name, gateway_port_name


@dataclass
class Counters:
    """What the load and usage sections say: the host's clock and CPU ticks, each guest's (by VM name)."""

    uptime: float = 1000.0
    busy: int = 5000
    total: int = 20000
    vms: dict[str, tuple[int, int]] = field(default_factory=dict)  # VM name -> (CPU ticks, RSS pages)
    pids: dict[str, int] = field(default_factory=dict)  # VM name -> QEMU pid (default: numbered in order)


def healthy(specs, host: str, *, network: bool, drop=(), rcs=None, counters: Counters | None = None) -> str:
    """The sections of a healthy host; ``drop``: lines containing any of these texts are left out."""
    counters = counters or Counters()
    links, ports, flows, procs, pidfiles, usage = [], ["br-int,"], [], [], [], []
    addrs, netns, nsaddrs = [], [], []
    pid = 1000
    for s in specs:
        if any(vm.host == host for vm in s.vms):
            worker = s.worker(host)
            for vm in s.vms_on(host):
                pid += 1
                qemu = counters.pids.get(vm.name, pid)
                ticks, pages = counters.vms.get(vm.name, (100, 25600))
                usage.append(f"{qemu} {ticks - ticks // 3} {ticks // 3} {pages}")
                pidfile = vm_files(worker, vm).pidfile
                procs.append(
                    f"{qemu} qemu-system-x86_64 -name {s.slice_name}.{vm.name} -smp 1 -m 128 -pidfile {pidfile}"
                )
                pidfiles.append(f"{pidfile} {qemu}")
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
        "@@OBS load",
        "0.52 0.40 0.31 2/180 4242",
        f"cpu  {counters.busy} 0 0 {counters.total - counters.busy} 0 0 0 0 0 0",
        f"{counters.uptime:.2f}",
        "100",
        "4096",
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
        "@@OBS usage",
        *usage,
        "@@OBS pidfiles",
        *pidfiles,
    ]
    if network:
        lines += ["@@OBS addrs", *addrs, "@@OBS netns", *netns, "@@OBS nsaddrs", *nsaddrs, "@@OBS forward", "1"]
    lines += ["@@OBS checks", *(f"{i} {rcs.get(i, 0)}" for i in range(len(checks))), "@@OBS end"]
    return "\n".join(line for line in lines if not any(text in line for text in drop)) + "\n"


def outputs(spec, counters: Counters | None = None, **drops):
    """A healthy netnode, worker1 and worker2 for ``spec``; ``drops``: per host, texts whose lines are left out."""
    return {
        h: healthy([spec], h, network=h == "netnode", drop=drops.get(h, ()), counters=counters)
        for h in ("netnode", "worker1", "worker2")
    }


def deployed_pair(inventory, user, make_slice):
    """An active slice: vm1 (worker1, internet) linked to vm2 (worker2); its deploy succeeded. -> (slice, spec)"""
    s = make_slice(user, vms=2, data=1, internet=False)
    vm1, vm2 = VM.objects.filter(slice=s).order_by("name")
    slice_services.vm_update(vm=vm1, internet_enabled=True, host=inventory["workers"][0])
    slice_services.vm_update(vm=vm2, host=inventory["workers"][1])
    slice_services.link_connect(slice_obj=s, vm_a=vm1, vm_b=vm2)
    dep = services.deploy_request(slice_obj=s, user=user)
    Deployment.objects.filter(pk=dep.pk).update(status="succeeded")
    Slice.objects.filter(pk=s.pk).update(status="active")
    VM.objects.filter(slice=s).update(status="running")
    return s, drift.checked_slices()[s.pk]


class RecordedRunner(Runner):
    """Answers each host's observation with a recorded output; every other command (a repair) succeeds."""

    def __init__(self, outputs: dict[str, str | None]):
        super().__init__()
        self.outputs = outputs
        self.sent: dict[str, list] = {}

    def _run_host(self, host, commands, emit):
        stat = self.stat(host)
        stat.round_trips += 1
        stat.commands += len(commands)
        self.sent.setdefault(host, []).append(commands)
        output = self.outputs.get(host)
        if output is None:
            emit(Event("host", host, ok=False, error=f"{host}: cannot connect: timed out"))
            return
        for i, cmd in enumerate(commands):
            emit(Event("began", host, i))
            emit(Event("ended", host, i, status="ok", exit_code=0, output=output if cmd.capture > 10**5 else ""))
        emit(Event("host", host, ok=True))
