"""Host plans: a slice spec in, ordered host commands out. Pure: no Django, no I/O.

A plan is a sequence of **stages**; a stage holds one or more **phases** per
host; the runner sends all of a host's phases of one stage as one script (one
SSH round trip), hosts in parallel, and a stage starts only when the previous
one succeeded on every host. Every plan has at most these stages, in order:

``stop``     (workers)  stop QEMU of VMs that go away or change
``network``  (netnode)  isolation chains, link VLANs (gateway port, DHCP namespace,
                        dnsmasq), internet VLAN 400 and NAT; teardown of what went away
             (workers)  TAP devices and one ``ovs-vsctl`` transaction for all ports;
                        teardown of ports that went away
``vms``      (workers)  disk overlays and QEMU

Every :class:`HostCommand` carries its ``undo`` (tolerant of "already gone") and
an optional ``check`` (exit 0 = already in place, the command is skipped), so
deploying twice changes nothing and destroy works from any partial state.
See docs/provisioning.md for the decisions (isolation, dead interfaces, diffing).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace

from slices.ipam import DHCP_FIRST_HOST, DHCP_LAST_HOST, DHCP_SERVER_HOST, DNS_SERVER, GATEWAY_HOST, INTERNET_SUBNET
from slices.naming import IFNAMSIZ, NAME_RE, dhcp_namespace, dhcp_port_name, gateway_port_name, tap_name

BRIDGE = "br-int"
INTERNET_VLAN = 400
VLAN_MIN, VLAN_MAX = 1, 4094
DHCP_LEASE_TIME = "1h"
QEMU = "qemu-system-x86_64"
ACCELS = ("kvm", "tcg")
# Chains of the network node's filter table that keep slices apart (see docs/provisioning.md).
FORWARD_CHAIN = "SP-FORWARD"
INPUT_CHAIN = "SP-INPUT"
GATEWAY_PORTS = "gw_v+"  # iptables wildcard for every gateway port
# "Addressed to the port the packet came in on": a guest's own gateway, no other VLAN's.
OWN_GATEWAY_MATCH = ("-m", "addrtype", "--dst-type", "LOCAL", "--limit-iface-in")
OUTPUT_TAIL = 4000  # bytes of a step's output kept by default
KVM_PROBE_TIMEOUT = 10  # seconds

# Stage and phase names (DeploymentStep.phase shows the phase).
STAGE_STOP, STAGE_NETWORK, STAGE_VMS = "stop", "network", "vms"
STAGE_ORDER = (STAGE_STOP, STAGE_NETWORK, STAGE_VMS)
SHARED_ISOLATION, SHARED_INTERNET = "isolation", "internet"

_HOST_RE = re.compile(r"\A[a-z][a-z0-9-]{0,31}\Z")
_PATH_RE = re.compile(r"\A(/[A-Za-z0-9._+-]+)+/?\Z")
_MAC_RE = re.compile(r"\A([0-9a-f]{2}:){5}[0-9a-f]{2}\Z")
_IFNAME_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,14}\Z")
_CMDLINE_RE = re.compile(r"\A[A-Za-z0-9._,=:/+ -]*\Z")


class PlanError(ValueError):
    """A spec that must not reach a host (an unsafe or inconsistent value)."""


# --- Spec: what the plan builders read -----------------------------------------------


@dataclass(frozen=True)
class ImageSpec:
    """A guest image: ``kind`` "disk" (qcow2 base, an overlay per VM) or "kernel" (direct boot)."""

    kind: str
    disk_path: str = ""
    kernel_path: str = ""
    initrd_path: str = ""
    kernel_args: str = ""


@dataclass(frozen=True)
class NicSpec:
    """A guest NIC: ``index`` 0 is eth0. ``vlan`` None = no VLAN (a dead interface)."""

    index: int
    mac: str
    vlan: int | None
    tap: str


@dataclass(frozen=True)
class VmSpec:
    """One VM and the worker it is placed on."""

    id: int
    name: str
    host: str
    vcpus: int
    ram_mib: int
    image: ImageSpec
    nics: tuple[NicSpec, ...]


@dataclass(frozen=True)
class WorkerSpec:
    """A compute worker: where its files live and which accelerator QEMU uses there."""

    name: str
    state_dir: str
    accel: str = "tcg"


@dataclass(frozen=True)
class NetnodeSpec:
    """The network node: its uplink (NAT for VLAN 400) and state dir."""

    name: str
    uplink: str
    state_dir: str


@dataclass(frozen=True)
class VlanSpec:
    """A VLAN served by the network node: its /24, and DHCP reservations (MAC, IP)."""

    vlan: int
    subnet: str
    reservations: tuple[tuple[str, str], ...] = ()

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.subnet)

    def _host(self, number: int) -> str:
        return str(self.network.network_address + number)

    @property
    def gateway(self) -> str:
        return self._host(GATEWAY_HOST)

    @property
    def dhcp_server(self) -> str:
        return self._host(DHCP_SERVER_HOST)

    @property
    def dhcp_first(self) -> str:
        return self._host(DHCP_FIRST_HOST)

    @property
    def dhcp_last(self) -> str:
        return self._host(DHCP_LAST_HOST)

    @property
    def netmask(self) -> str:
        return str(self.network.netmask)

    @property
    def prefixlen(self) -> int:
        return self.network.prefixlen


INTERNET = VlanSpec(INTERNET_VLAN, str(INTERNET_SUBNET))

# VLAN 400 is one segment for the internet NICs of every slice: each such TAP may talk
# to the gateway and the DHCP server only (OpenFlow rules on the worker, see
# internet_guard_command), so those two ports get fixed, known MACs.
INTERNET_GATEWAY_MAC = "02:53:50:00:04:01"
INTERNET_DHCP_MAC = "02:53:50:00:04:02"
BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"
FLOW_COOKIE_TAG = 0x5350 << 48  # "SP": the flows this portal owns on br-int


@dataclass(frozen=True)
class SliceSpec:
    """Everything a plan needs to know about a slice, as plain data.

    ``keep_internet`` / ``keep_isolation``: another deployed slice still needs
    VLAN 400 + NAT / the isolation chains, so a teardown of this slice keeps them.
    """

    slice_id: int
    slice_name: str
    netnode: NetnodeSpec
    workers: tuple[WorkerSpec, ...] = ()
    vms: tuple[VmSpec, ...] = ()
    vlans: tuple[VlanSpec, ...] = ()
    internet: bool = False
    keep_internet: bool = False
    keep_isolation: bool = False

    def worker(self, name: str) -> WorkerSpec:
        for worker in self.workers:
            if worker.name == name:
                return worker
        raise PlanError(f"VM placed on unknown worker {name!r}")

    def vms_on(self, host: str) -> tuple[VmSpec, ...]:
        return tuple(vm for vm in self.vms if vm.host == host)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> SliceSpec:
        return cls(
            slice_id=data["slice_id"],
            slice_name=data["slice_name"],
            netnode=NetnodeSpec(**data["netnode"]),
            workers=tuple(WorkerSpec(**w) for w in data.get("workers", ())),
            vms=tuple(
                VmSpec(
                    id=vm["id"],
                    name=vm["name"],
                    host=vm["host"],
                    vcpus=vm["vcpus"],
                    ram_mib=vm["ram_mib"],
                    image=ImageSpec(**vm["image"]),
                    nics=tuple(NicSpec(**nic) for nic in vm["nics"]),
                )
                for vm in data.get("vms", ())
            ),
            vlans=tuple(
                VlanSpec(v["vlan"], v["subnet"], tuple(tuple(r) for r in v.get("reservations", ())))
                for v in data.get("vlans", ())
            ),
            internet=data.get("internet", False),
            keep_internet=data.get("keep_internet", False),
            keep_isolation=data.get("keep_isolation", False),
        )


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise PlanError(message)


def _check_path(value: str, what: str) -> None:
    _require(
        isinstance(value, str) and bool(_PATH_RE.fullmatch(value)) and "/../" not in value + "/" and value != "/",
        f"{what}: unsafe path {value!r}",
    )


def validate_spec(spec: SliceSpec) -> SliceSpec:
    """Refuse any value that could misbehave on a host (defence in depth: the models validate too)."""
    _require(isinstance(spec.slice_id, int) and spec.slice_id > 0, "bad slice id")
    _require(bool(NAME_RE.fullmatch(spec.slice_name or "")), f"unsafe slice name {spec.slice_name!r}")
    node = spec.netnode
    _require(bool(_HOST_RE.fullmatch(node.name or "")), f"unsafe host name {node.name!r}")
    _require(bool(_IFNAME_RE.fullmatch(node.uplink or "")), f"unsafe uplink name {node.uplink!r}")
    _check_path(node.state_dir, f"state_dir of {node.name}")
    names = set()
    for worker in spec.workers:
        _require(bool(_HOST_RE.fullmatch(worker.name or "")), f"unsafe host name {worker.name!r}")
        _check_path(worker.state_dir, f"state_dir of {worker.name}")
        _require(worker.accel in ACCELS, f"accelerator of {worker.name} must be one of {ACCELS}")
        names.add(worker.name)
    macs: dict[str, int] = {}  # MAC -> VM id (a merged footprint may hold two versions of one VM)
    for vm in spec.vms:
        _require(isinstance(vm.id, int) and vm.id > 0, f"bad VM id {vm.id!r}")
        _require(bool(NAME_RE.fullmatch(vm.name or "")), f"unsafe VM name {vm.name!r}")
        _require(vm.host in names, f"VM {vm.name} is on {vm.host!r}, which is not a worker of the spec")
        _require(isinstance(vm.vcpus, int) and 1 <= vm.vcpus <= 256, f"VM {vm.name}: bad vCPU count")
        _require(isinstance(vm.ram_mib, int) and 32 <= vm.ram_mib <= 1 << 22, f"VM {vm.name}: bad RAM size")
        image = vm.image
        _require(image.kind in ("disk", "kernel"), f"VM {vm.name}: unknown image kind {image.kind!r}")
        if image.kind == "disk":
            _check_path(image.disk_path, f"disk image of {vm.name}")
        else:
            _check_path(image.kernel_path, f"kernel of {vm.name}")
            if image.initrd_path:
                _check_path(image.initrd_path, f"initrd of {vm.name}")
            _require(bool(_CMDLINE_RE.fullmatch(image.kernel_args or "")), f"VM {vm.name}: unsafe kernel args")
        _require(len(vm.nics) >= 1, f"VM {vm.name} has no interface")
        _require([nic.index for nic in vm.nics] == list(range(len(vm.nics))), f"VM {vm.name}: NICs must be eth0..ethN")
        for nic in vm.nics:
            _require(bool(_MAC_RE.fullmatch(nic.mac or "")), f"VM {vm.name}: bad MAC {nic.mac!r}")
            _require(macs.setdefault(nic.mac, vm.id) == vm.id, f"MAC {nic.mac} used by two VMs")
            _require(
                bool(_IFNAME_RE.fullmatch(nic.tap or "")) and len(nic.tap) <= IFNAMSIZ,
                f"VM {vm.name}: bad TAP name {nic.tap!r}",
            )
            _require(nic.tap == tap_name(vm.id, nic.index), f"VM {vm.name}: TAP {nic.tap} does not follow naming")
            if nic.vlan is not None:
                _require(VLAN_MIN <= nic.vlan <= VLAN_MAX, f"VM {vm.name}: VLAN {nic.vlan} out of range")
                _require(
                    nic.vlan != INTERNET_VLAN or (nic.index == 0 and spec.internet),
                    f"VM {vm.name}: VLAN {INTERNET_VLAN} is only for eth0 with internet",
                )
    served = {v.vlan for v in spec.vlans}
    for vlan in spec.vlans:
        _require(VLAN_MIN <= vlan.vlan <= VLAN_MAX and vlan.vlan != INTERNET_VLAN, f"bad link VLAN {vlan.vlan}")
        try:
            net = vlan.network
        except ValueError as exc:
            raise PlanError(f"VLAN {vlan.vlan}: bad subnet {vlan.subnet!r}") from exc
        _require(net.prefixlen <= 24, f"VLAN {vlan.vlan}: subnet {vlan.subnet} is smaller than a /24")
        for mac, ip in vlan.reservations:
            _require(bool(_MAC_RE.fullmatch(mac or "")), f"VLAN {vlan.vlan}: bad reservation MAC {mac!r}")
            try:
                _require(ipaddress.IPv4Address(ip) in net, f"VLAN {vlan.vlan}: {ip} is outside {vlan.subnet}")
            except ValueError as exc:
                raise PlanError(f"VLAN {vlan.vlan}: bad reservation address {ip!r}") from exc
    for vm in spec.vms:
        for nic in vm.nics:
            if nic.vlan is not None and nic.vlan != INTERNET_VLAN:
                _require(nic.vlan in served, f"VM {vm.name}.eth{nic.index} is on VLAN {nic.vlan}, which no link serves")
    return spec


# --- Commands, phases, stages, plans ------------------------------------------------------


@dataclass(frozen=True)
class HostCommand:
    """One command for a host, as data.

    ``check``: exit 0 means "already in place" and the command is skipped.
    ``undo``: removes what the command made; tolerates "already gone".
    ``capture``: how many bytes of output the runner keeps.
    """

    argv: tuple[str, ...]
    description: str
    undo: tuple[str, ...] | None = None
    check: tuple[str, ...] | None = None
    undo_description: str = ""
    capture: int = OUTPUT_TAIL
    boots_vm: int | None = None  # the VM this command boots (QEMU start), for the executor's bookkeeping
    relinks: str | None = None  # the MAC of the running guest NIC this command bounces (its VLAN changed)

    def undo_command(self) -> HostCommand | None:
        if self.undo is None:
            return None
        return HostCommand(self.undo, self.undo_description or f"Undo: {self.description}")

    def to_dict(self) -> dict:
        return {
            "argv": list(self.argv),
            "description": self.description,
            "undo": list(self.undo) if self.undo else None,
            "check": list(self.check) if self.check else None,
        }


@dataclass(frozen=True)
class Phase:
    """An ordered list of commands for one host. ``shared``: a resource other slices use too."""

    name: str
    host: str
    commands: tuple[HostCommand, ...]
    shared: str | None = None
    teardown: bool = False


@dataclass(frozen=True)
class Stage:
    """Phases run together: one script per host, hosts in parallel."""

    name: str
    phases: tuple[Phase, ...]

    def hosts(self) -> list[str]:
        return list(dict.fromkeys(p.host for p in self.phases))

    def phases_of(self, host: str) -> tuple[Phase, ...]:
        return tuple(p for p in self.phases if p.host == host)


@dataclass(frozen=True)
class Plan:
    """Stages in order. ``by_host()`` gives the per-host view."""

    kind: str
    stages: tuple[Stage, ...] = field(default_factory=tuple)

    def hosts(self) -> list[str]:
        return list(dict.fromkeys(h for s in self.stages for h in s.hosts()))

    def by_host(self) -> dict[str, list[Phase]]:
        out: dict[str, list[Phase]] = {}
        for stage in self.stages:
            for phase in stage.phases:
                out.setdefault(phase.host, []).append(phase)
        return out

    def step_count(self) -> int:
        return sum(len(p.commands) for s in self.stages for p in s.phases)

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "stages": [
                {
                    "name": s.name,
                    "phases": [
                        {
                            "name": p.name,
                            "host": p.host,
                            "shared": p.shared,
                            "teardown": p.teardown,
                            "commands": [c.to_dict() for c in p.commands],
                        }
                        for p in s.phases
                    ],
                }
                for s in self.stages
            ],
        }


# --- Small shell programs used as argv (``sh -c PROGRAM NAME ARGS...``) ----------------
# Values only ever arrive as positional parameters ("$1"), never pasted into the program.

SH_NOT = '! "$@" >/dev/null 2>&1'
SH_DEL_LINK = 'ip link show dev "$1" >/dev/null 2>&1 || exit 0; exec ip link del dev "$1"'
SH_DEL_NETNS = 'ip netns exec "$1" true >/dev/null 2>&1 || exit 0; exec ip netns del "$1"'
SH_RMDIR_IF_EMPTY = '[ -d "$1" ] || exit 0; exec rmdir --ignore-fail-on-non-empty "$1"'
SH_WRITE_LINES = 'f=$1; shift; { for l in "$@"; do printf "%s\\n" "$l"; done; } > "$f.tmp" && exec mv -f "$f.tmp" "$f"'
SH_IPT_DELETE = (
    't=$1; c=$2; shift 2; iptables -w -t "$t" -C "$c" "$@" >/dev/null 2>&1 || exit 0; '
    'exec iptables -w -t "$t" -D "$c" "$@"'
)
SH_IPT_DELETE_CHAIN = (
    'iptables -w -t "$1" -S "$2" >/dev/null 2>&1 || exit 0; '
    'iptables -w -t "$1" -F "$2" && exec iptables -w -t "$1" -X "$2"'
)
# The pid in the file is alive AND its command line names that very pid file (no pid reuse surprises).
SH_PIDFILE_ALIVE = (
    '[ -r "$1" ] || exit 1; p=$(cat "$1"); case "$p" in ""|*[!0-9]*) exit 1;; esac; '
    'tr "\\000" "\\n" < "/proc/$p/cmdline" 2>/dev/null | grep -qF -- "$1"'
)
# Stop the process of a pid file (only if it is the one that wrote it), wait for it, remove the file.
# "Still running" is "its command line still names the pid file": a zombie (empty cmdline) waiting for a
# parent that is slow to reap it counts as gone, and so does a pid that was reused meanwhile.
SH_KILL_PIDFILE = (
    'f=$1; [ -r "$f" ] || exit 0; p=$(cat "$f"); case "$p" in ""|*[!0-9]*) rm -f "$f"; exit 0;; esac; '
    'ours() { tr "\\000" "\\n" < "/proc/$p/cmdline" 2>/dev/null | grep -qF -- "$f"; }; '
    'if ours; then kill "$p" 2>/dev/null; i=0; while ours && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; '
    'ours && kill -9 "$p"; fi; rm -f "$f"'
)
# Replace the flows of one cookie: BRIDGE COOKIE FLOW...
SH_OFCTL_REPLACE_FLOWS = (
    'b=$1; c=$2; shift 2; ovs-ofctl del-flows "$b" "cookie=$c/-1" || exit 1; '
    'printf "%s\\n" "$@" | ovs-ofctl add-flows "$b" -'
)
# Remove the flows of one cookie: BRIDGE COOKIE (a bridge already gone has none).
SH_OFCTL_DEL_FLOWS = 'ovs-vsctl br-exists "$1" || exit 0; exec ovs-ofctl del-flows "$1" "cookie=$2/-1"'
# Flows check: BRIDGE COOKIE PORT COUNT MAC: COUNT flows of the cookie on the port as it is now
# (a port added again has another OpenFlow number), COUNT-1 of them naming the guest's MAC.
SH_OFCTL_FLOWS_CHECK = (
    'f=$(ovs-ofctl dump-flows "$1" "cookie=$2/-1,in_port=$3" --no-stats 2>/dev/null) || exit 1; '
    '[ "$(printf "%s\\n" "$f" | grep -c priority=)" = "$4" ] && '
    '[ "$(printf "%s\\n" "$f" | grep -c "dl_src=$5")" = "$(($4 - 1))" ]'
)
# Bounce a running guest NIC's link through QEMU's QMP socket: SOCKET NETDEV. The guest sees its
# carrier go down for a second and up again, and asks DHCP anew (its VLAN, so its subnet, changed).
SH_QMP_BOUNCE_LINK = (
    '[ -S "$1" ] || { echo "no QMP socket $1"; exit 1; }; '
    'link() { printf \'{"execute":"set_link","arguments":{"name":"%s","up":%s}}\\n\' "$2" "$1"; }; '
    'out=$( { echo \'{"execute":"qmp_capabilities"}\'; link false "$2"; sleep 1; link true "$2"; sleep 0.3; } '
    '| socat -t 0.5 - "UNIX-CONNECT:$1") || exit 1; '
    'printf "%s\\n" "$out"; [ "$(printf "%s\\n" "$out" | grep -c \'"return"\')" = 3 ]'
)
# Ports check: pairs NAME TAG ("-" = must not be on any bridge); one ovs-vsctl call.
SH_OVS_PORTS_CHECK = (
    "cur=$(ovs-vsctl -f csv --no-headings -d bare --columns=name,tag list Port) || exit 1; "
    "while [ $# -gt 1 ]; do "
    'if [ "$2" = - ]; then printf "%s\\n" "$cur" | grep -q "^$1," && exit 1; '
    'else printf "%s\\n" "$cur" | grep -qx "$1,$2" || exit 1; fi; shift 2; done; exit 0'
)
SH_IP_FORWARD_ON = (
    '[ -e "$1" ] || cat /proc/sys/net/ipv4/ip_forward > "$1" || exit 1; exec sysctl -qw net.ipv4.ip_forward=1'
)
SH_IP_FORWARD_IS_ON = '[ -e "$1" ] && [ "$(cat /proc/sys/net/ipv4/ip_forward)" = 1 ]'
SH_IP_FORWARD_RESTORE = (
    '[ -e "$1" ] || exit 0; v=$(cat "$1"); case "$v" in 0|1) sysctl -qw net.ipv4.ip_forward="$v" || exit 1;; esac; '
    'exec rm -f "$1"'
)
# KVM probe: boot a 64 KiB firmware that writes to isa-debug-exit (QEMU exits 3) with the
# accelerator and CPU model a KVM guest would get. A hang (timeout) or any error means TCG.
SH_KVM_PROBE = (
    "f=$(mktemp) || exit 1; trap 'rm -f \"$f\"' EXIT; "
    "{ head -c 65520 /dev/zero | tr '\\000' '\\364'; "
    "printf '\\260\\001\\346\\364\\364\\353\\375\\364\\364\\364\\364\\364\\364\\364\\364\\364'; } > \"$f\"; "
    'timeout "$1" ' + QEMU + " -accel kvm -cpu host -machine pc -nodefaults -no-user-config -display none "
    '-m 16 -bios "$f" -device isa-debug-exit,iobase=0xf4,iosize=0x04 >/dev/null 2>&1; rc=$?; '
    'if [ "$rc" -eq 3 ]; then echo "accel=kvm"; else echo "accel=tcg (kvm probe exit $rc)"; fi'
)
# Wait (at most $1 s) until every MAC has a lease in its lease file; print "lease MAC IP|-".
SH_WAIT_LEASES = (
    'scan() { m=0; while [ $# -gt 1 ]; do grep -qi " $2 " "$1" 2>/dev/null || m=$((m+1)); shift 2; done; '
    "echo $m; }; "
    'report() { while [ $# -gt 1 ]; do a=$(awk -v m="$2" \'tolower($2)==m {print $3}\' "$1" 2>/dev/null | tail -n 1); '
    'echo "lease $2 ${a:--}"; shift 2; done; }; '
    "t=$1; shift; end=$(( $(date +%s) + t )); "
    'while [ "$(scan "$@")" -gt 0 ] && [ "$(date +%s)" -lt "$end" ]; do sleep 1; done; report "$@"'
)
SH_CONSOLE_TAIL = '[ -r "$1" ] || { echo "(no console log yet)"; exit 0; }; exec tail -c "$2" "$1"'


def sh(program: str, name: str, *args: str) -> tuple[str, ...]:
    """An argv that runs a fixed shell program with positional arguments."""
    return ("sh", "-c", program, name, *args)


def not_(argv: Sequence[str]) -> tuple[str, ...]:
    """A check that succeeds when ``argv`` fails (e.g. "the link is gone")."""
    return sh(SH_NOT, "sp-not", *argv)


# --- Paths on hosts (docs/CONTRACTS.md) -----------------------------------------------------


def _root(state_dir: str) -> str:
    return state_dir.rstrip("/") or "/"


def vms_dir(state_dir: str) -> str:
    return f"{_root(state_dir)}/vms"


def vm_dir(state_dir: str, vm_id: int) -> str:
    return f"{vms_dir(state_dir)}/vm{vm_id}"


def dhcp_root(state_dir: str) -> str:
    return f"{_root(state_dir)}/dhcp"


def dhcp_dir(state_dir: str, vlan: int) -> str:
    return f"{dhcp_root(state_dir)}/v{vlan}"


def ip_forward_saved(state_dir: str) -> str:
    return f"{_root(state_dir)}/ip_forward.saved"


@dataclass(frozen=True)
class VmFiles:
    """The files of one VM on its worker."""

    dir: str

    @property
    def pidfile(self) -> str:
        return f"{self.dir}/qemu.pid"

    @property
    def console_log(self) -> str:
        return f"{self.dir}/console.log"

    @property
    def console_sock(self) -> str:
        return f"{self.dir}/console.sock"

    @property
    def qmp_sock(self) -> str:
        return f"{self.dir}/qmp.sock"

    @property
    def disk(self) -> str:
        return f"{self.dir}/disk.qcow2"


def vm_files(worker: WorkerSpec, vm: VmSpec) -> VmFiles:
    return VmFiles(vm_dir(worker.state_dir, vm.id))


@dataclass(frozen=True)
class DhcpFiles:
    """The files of one VLAN's dnsmasq on the network node."""

    dir: str

    @property
    def pidfile(self) -> str:
        return f"{self.dir}/dnsmasq.pid"

    @property
    def leases(self) -> str:
        return f"{self.dir}/dnsmasq.leases"

    @property
    def log(self) -> str:
        return f"{self.dir}/dnsmasq.log"

    @property
    def hosts(self) -> str:
        return f"{self.dir}/hosts"


def dhcp_files(node: NetnodeSpec, vlan: int) -> DhcpFiles:
    return DhcpFiles(dhcp_dir(node.state_dir, vlan))


# --- Builders: network node -----------------------------------------------------------------


def _ipt(table: str, op: str, chain: str, *rule: str) -> tuple[str, ...]:
    return ("iptables", "-w", "-t", table, op, chain, *rule)


def iptables_rule(
    table: str, chain: str, rule: Sequence[str], description: str, *, insert: bool = False
) -> HostCommand:
    """Append (or insert first) a rule, checked with ``-C`` first, removed only if present."""
    op = ("-I", chain, "1") if insert else ("-A", chain)
    return HostCommand(
        argv=("iptables", "-w", "-t", table, *op, *rule),
        description=description,
        check=_ipt(table, "-C", chain, *rule),
        undo=sh(SH_IPT_DELETE, "sp-ipt-delete", table, chain, *rule),
        undo_description=f"Remove iptables rule: {description}",
    )


def iptables_chain(table: str, chain: str) -> HostCommand:
    return HostCommand(
        argv=_ipt(table, "-N", chain),
        description=f"Create iptables chain {chain}",
        check=_ipt(table, "-S", chain),
        undo=sh(SH_IPT_DELETE_CHAIN, "sp-ipt-delete-chain", table, chain),
        undo_description=f"Delete iptables chain {chain}",
    )


def isolation_commands() -> tuple[HostCommand, ...]:
    """The network node's filter rules that keep slices apart.

    FORWARD: nothing is routed into or out of a gateway port except replies and
    VLAN 400 towards the uplink (inserted by the internet phase). INPUT: a guest
    may ping its own gateway address and nothing else of the network node.
    """
    return (
        iptables_chain("filter", FORWARD_CHAIN),
        iptables_rule(
            "filter",
            FORWARD_CHAIN,
            ("-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"),
            "Forward replies of allowed connections",
        ),
        iptables_rule(
            "filter", FORWARD_CHAIN, ("-i", GATEWAY_PORTS, "-j", "DROP"), "Route nothing out of a slice VLAN"
        ),
        iptables_rule("filter", FORWARD_CHAIN, ("-o", GATEWAY_PORTS, "-j", "DROP"), "Route nothing into a slice VLAN"),
        iptables_rule(
            "filter", "FORWARD", ("-j", FORWARD_CHAIN), f"Send forwarded traffic through {FORWARD_CHAIN}", insert=True
        ),
        iptables_chain("filter", INPUT_CHAIN),
        iptables_rule(
            "filter",
            INPUT_CHAIN,
            ("-i", GATEWAY_PORTS, "-p", "icmp", *OWN_GATEWAY_MATCH, "-j", "ACCEPT"),
            "Let a guest ping its own gateway",
        ),
        iptables_rule(
            "filter", INPUT_CHAIN, ("-i", GATEWAY_PORTS, "-j", "DROP"), "Guests reach nothing else of the network node"
        ),
        iptables_rule(
            "filter", "INPUT", ("-j", INPUT_CHAIN), f"Send guest traffic to the node through {INPUT_CHAIN}", insert=True
        ),
    )


def ovs_ports_check(pairs: Iterable[tuple[str, str]]) -> tuple[str, ...]:
    args: list[str] = []
    for name, tag in pairs:
        args += [name, tag]
    return sh(SH_OVS_PORTS_CHECK, "sp-ovs-ports", *args)


def netnode_ports_command(vlans: Sequence[VlanSpec]) -> HostCommand:
    """One ``ovs-vsctl`` transaction: for every VLAN a tagged internal gateway port and DHCP port."""
    argv: list[str] = ["ovs-vsctl"]
    undo: list[str] = ["ovs-vsctl"]
    pairs = []
    for v in vlans:
        for port in (gateway_port_name(v.vlan), dhcp_port_name(v.vlan)):
            if len(argv) > 1:
                argv.append("--")
            argv += ["--may-exist", "add-port", BRIDGE, port, f"tag={v.vlan}"]
            argv += ["--", "set", "interface", port, "type=internal"]
            if v.vlan == INTERNET_VLAN:
                mac = INTERNET_GATEWAY_MAC if port == gateway_port_name(v.vlan) else INTERNET_DHCP_MAC
                argv.append(f'mac="{mac}"')
            if len(undo) > 1:
                undo.append("--")
            undo += ["--if-exists", "del-port", BRIDGE, port]
            pairs.append((port, str(v.vlan)))
    listed = ", ".join(str(v.vlan) for v in vlans)
    return HostCommand(
        argv=tuple(argv),
        description=f"Gateway and DHCP ports on {BRIDGE} for VLAN {listed}",
        check=ovs_ports_check(pairs),
        undo=tuple(undo),
        undo_description=f"Remove gateway and DHCP ports of VLAN {listed}",
    )


def netns_command(vlan: int) -> HostCommand:
    ns = dhcp_namespace(vlan)
    return HostCommand(
        argv=("ip", "netns", "add", ns),
        description=f"Create DHCP namespace {ns}",
        check=("ip", "netns", "exec", ns, "true"),
        undo=sh(SH_DEL_NETNS, "sp-del-netns", ns),
        undo_description=f"Delete namespace {ns}",
    )


def vlan_service_commands(node: NetnodeSpec, v: VlanSpec) -> tuple[HostCommand, ...]:
    """Gateway address, the DHCP port moved into its namespace, and dnsmasq for one VLAN."""
    gw, dport, ns = gateway_port_name(v.vlan), dhcp_port_name(v.vlan), dhcp_namespace(v.vlan)
    files = dhcp_files(node, v.vlan)
    in_ns = ("ip", "netns", "exec", ns)
    dnsmasq = (
        *in_ns,
        "dnsmasq",
        "--conf-file=/dev/null",
        "--port=0",
        f"--interface={dport}",
        "--bind-interfaces",
        "--dhcp-authoritative",
        # dnsmasq is the only allocator in the range: its ping-before-offer probe only delays new leases
        "--no-ping",
        f"--dhcp-range={v.dhcp_first},{v.dhcp_last},{v.netmask},{DHCP_LEASE_TIME}",
        f"--dhcp-option=3,{v.gateway}",
        f"--dhcp-option=6,{DNS_SERVER}",
        f"--dhcp-hostsfile={files.hosts}",
        f"--dhcp-leasefile={files.leases}",
        f"--pid-file={files.pidfile}",
        "--log-dhcp",
        f"--log-facility={files.log}",
    )
    return (
        HostCommand(("ip", "addr", "replace", f"{v.gateway}/{v.prefixlen}", "dev", gw), f"Gateway {v.gateway} on {gw}"),
        HostCommand(("ip", "link", "set", "dev", gw, "up"), f"Bring {gw} up"),
        HostCommand(
            ("ip", "link", "set", "dev", dport, "netns", ns),
            f"Move {dport} into {ns}",
            check=(*in_ns, "ip", "link", "show", "dev", dport),
        ),
        HostCommand(
            (*in_ns, "ip", "addr", "replace", f"{v.dhcp_server}/{v.prefixlen}", "dev", dport),
            f"DHCP server address {v.dhcp_server} on {dport}",
        ),
        HostCommand((*in_ns, "ip", "link", "set", "dev", dport, "up"), f"Bring {dport} up"),
        HostCommand(
            ("mkdir", "-p", files.dir),
            f"DHCP state directory of VLAN {v.vlan}",
            undo=("rm", "-rf", files.dir),
            undo_description=f"Remove DHCP state of VLAN {v.vlan}",
        ),
        HostCommand(
            sh(SH_WRITE_LINES, "sp-write", files.hosts, *(f"{mac},{ip}" for mac, ip in v.reservations)),
            f"DHCP reservations of VLAN {v.vlan} ({len(v.reservations)})",
        ),
        HostCommand(
            dnsmasq,
            f"Start dnsmasq for VLAN {v.vlan} ({v.dhcp_first}-{v.dhcp_last}, gateway {v.gateway})",
            check=sh(SH_PIDFILE_ALIVE, "sp-alive", files.pidfile),
            undo=sh(SH_KILL_PIDFILE, "sp-kill", files.pidfile),
            undo_description=f"Stop dnsmasq of VLAN {v.vlan}",
        ),
    )


def dhcp_root_command(node: NetnodeSpec) -> HostCommand:
    root = dhcp_root(node.state_dir)
    return HostCommand(
        ("mkdir", "-p", root),
        "DHCP state directory",
        undo=sh(SH_RMDIR_IF_EMPTY, "sp-rmdir", root),
        undo_description="Remove the DHCP state directory if empty",
    )


def vlans_commands(node: NetnodeSpec, vlans: Sequence[VlanSpec]) -> tuple[HostCommand, ...]:
    """Namespaces first, then one ports transaction, then per VLAN its services.

    The namespaces come first so that a teardown (reverse order) deletes the
    ports, including the one inside a namespace, before the namespace.
    """
    cmds: list[HostCommand] = [dhcp_root_command(node)]
    if not vlans:
        return tuple(cmds)
    cmds += [netns_command(v.vlan) for v in vlans]
    cmds.append(netnode_ports_command(vlans))
    for v in vlans:
        cmds += vlan_service_commands(node, v)
    return tuple(cmds)


def internet_commands(node: NetnodeSpec) -> tuple[HostCommand, ...]:
    """VLAN 400 served like a link VLAN (no reservations), forwarding on, NAT out of the uplink."""
    saved = ip_forward_saved(node.state_dir)
    gw = gateway_port_name(INTERNET_VLAN)
    return (
        netns_command(INTERNET_VLAN),
        netnode_ports_command([INTERNET]),
        *vlan_service_commands(node, INTERNET),
        HostCommand(
            sh(SH_IP_FORWARD_ON, "sp-ip-forward", saved),
            "Enable IPv4 forwarding (the previous value is saved)",
            check=sh(SH_IP_FORWARD_IS_ON, "sp-ip-forward-on", saved),
            undo=sh(SH_IP_FORWARD_RESTORE, "sp-ip-forward-restore", saved),
            undo_description="Restore the previous IPv4 forwarding setting",
        ),
        iptables_rule(
            "nat",
            "POSTROUTING",
            ("-s", str(INTERNET_SUBNET), "-o", node.uplink, "-j", "MASQUERADE"),
            f"NAT {INTERNET_SUBNET} out of {node.uplink}",
        ),
        iptables_rule(
            "filter",
            FORWARD_CHAIN,
            ("-i", gw, "-o", node.uplink, "-j", "ACCEPT"),
            f"Forward VLAN {INTERNET_VLAN} to {node.uplink}",
            insert=True,
        ),
    )


# --- Builders: workers ------------------------------------------------------------------------


def vms_dir_command(worker: WorkerSpec) -> HostCommand:
    path = vms_dir(worker.state_dir)
    return HostCommand(
        ("mkdir", "-p", path),
        "VM state directory",
        undo=sh(SH_RMDIR_IF_EMPTY, "sp-rmdir", path),
        undo_description="Remove the VM state directory if empty",
    )


def vm_dir_command(worker: WorkerSpec, vm: VmSpec) -> HostCommand:
    path = vm_dir(worker.state_dir, vm.id)
    return HostCommand(
        ("mkdir", "-p", path),
        f"State directory of {vm.name}",
        undo=("rm", "-rf", path),
        undo_description=f"Remove the files of {vm.name} (console log, sockets, disk overlay)",
    )


def tap_commands(vm: VmSpec, nic: NicSpec) -> tuple[HostCommand, ...]:
    """Create the TAP; bring it up when it has a VLAN, keep it DOWN when it has none.

    A down TAP refuses the guest's frames (the write fails), so a dead interface
    reaches neither br-int nor the worker's own IP stack.
    """
    state = "up" if nic.vlan is not None else "down"
    return (
        HostCommand(
            ("ip", "tuntap", "add", "dev", nic.tap, "mode", "tap"),
            f"Create TAP {nic.tap} ({vm.name}.eth{nic.index})",
            check=("ip", "link", "show", "dev", nic.tap),
            undo=sh(SH_DEL_LINK, "sp-del-link", nic.tap),
            undo_description=f"Delete TAP {nic.tap}",
        ),
        HostCommand(
            ("ip", "link", "set", "dev", nic.tap, state),
            f"Set {nic.tap} {state}" + ("" if nic.vlan is not None else " (no VLAN: dead interface)"),
        ),
    )


def worker_ports_command(nics: Sequence[NicSpec]) -> HostCommand:
    """One ``ovs-vsctl`` transaction for every TAP of a worker.

    A TAP with a VLAN is an access port with that tag (``set port`` fixes the tag
    of a port that already exists); a TAP without one is taken off the bridge:
    a port without a tag would be a trunk carrying every VLAN.
    """
    argv: list[str] = ["ovs-vsctl"]
    undo: list[str] = ["ovs-vsctl"]
    pairs = []
    for nic in nics:
        if len(argv) > 1:
            argv.append("--")
            undo.append("--")
        if nic.vlan is None:
            argv += ["--if-exists", "del-port", BRIDGE, nic.tap]
            pairs.append((nic.tap, "-"))
        else:
            argv += ["--may-exist", "add-port", BRIDGE, nic.tap, f"tag={nic.vlan}"]
            argv += ["--", "set", "port", nic.tap, f"tag={nic.vlan}"]
            pairs.append((nic.tap, str(nic.vlan)))
        undo += ["--if-exists", "del-port", BRIDGE, nic.tap]
    tagged = sum(1 for n in nics if n.vlan is not None)
    return HostCommand(
        argv=tuple(argv),
        description=f"Attach {tagged} TAP(s) to {BRIDGE} with their VLAN tags, keep {len(nics) - tagged} off",
        check=ovs_ports_check(pairs),
        undo=tuple(undo),
        undo_description=f"Detach {len(nics)} TAP(s) from {BRIDGE}",
    )


def flow_cookie(vm_id: int, nic: NicSpec) -> str:
    """The OpenFlow cookie of one guest NIC's flows (unique per installation: VM ids are)."""
    return f"{FLOW_COOKIE_TAG | vm_id << 8 | nic.index:#018x}"


def internet_guard_command(vm: VmSpec, nic: NicSpec) -> HostCommand:
    """OpenFlow rules on a VLAN 400 TAP: the guest reaches the gateway and DHCP, no other guest.

    From the TAP, with the guest's own source MAC only: frames to the gateway's or
    the DHCP server's MAC; broadcasts that are an ARP request for the gateway or a
    DHCP request. Everything else from the TAP is dropped, so internet NICs of
    different slices (and of one slice) never reach each other at L2, and no guest
    can take the gateway's MAC. Routing between them is refused by SP-FORWARD.
    """
    cookie = flow_cookie(vm.id, nic)
    head = f"cookie={cookie},table=0,in_port={nic.tap}"
    allow = f"{head},priority=300,dl_src={nic.mac}"
    flows = (
        f"{allow},dl_dst={INTERNET_GATEWAY_MAC},actions=NORMAL",
        f"{allow},dl_dst={INTERNET_DHCP_MAC},actions=NORMAL",
        f"{allow},dl_dst={BROADCAST_MAC},arp,arp_tpa={INTERNET.gateway},actions=NORMAL",
        f"{allow},dl_dst={BROADCAST_MAC},udp,tp_src=68,tp_dst=67,actions=NORMAL",
        f"{head},priority=290,actions=drop",
    )
    return HostCommand(
        sh(SH_OFCTL_REPLACE_FLOWS, "sp-flows", BRIDGE, cookie, *flows),
        f"Guard {nic.tap} on VLAN {INTERNET_VLAN} ({vm.name}.eth{nic.index}): gateway and DHCP only",
        check=sh(SH_OFCTL_FLOWS_CHECK, "sp-flows-check", BRIDGE, cookie, nic.tap, str(len(flows)), nic.mac),
        undo=internet_unguard_argv(vm.id, nic),
        undo_description=f"Remove the VLAN {INTERNET_VLAN} rules of {nic.tap}",
    )


def internet_unguard_argv(vm_id: int, nic: NicSpec) -> tuple[str, ...]:
    return sh(SH_OFCTL_DEL_FLOWS, "sp-del-flows", BRIDGE, flow_cookie(vm_id, nic))


def accel_args(accel: str) -> tuple[str, ...]:
    if accel == "kvm":
        return ("-accel", "kvm", "-cpu", "host")
    return ("-accel", "tcg", "-cpu", "max")


def qemu_argv(worker: WorkerSpec, vm: VmSpec, slice_name: str) -> tuple[str, ...]:
    """The QEMU command line of one VM (daemonized, pid file, serial to a socket and a log)."""
    files = vm_files(worker, vm)
    argv: list[str] = [
        QEMU,
        "-name",
        f"{slice_name}.{vm.name}",
        "-nodefaults",
        "-no-user-config",
        *accel_args(worker.accel),
        "-smp",
        str(vm.vcpus),
        "-m",
        str(vm.ram_mib),
    ]
    if vm.image.kind == "kernel":
        argv += ["-kernel", vm.image.kernel_path]
        if vm.image.initrd_path:
            argv += ["-initrd", vm.image.initrd_path]
        argv += ["-append", vm.image.kernel_args]
    else:
        argv += ["-drive", f"file={files.disk},if=virtio,format=qcow2"]
    for nic in vm.nics:
        argv += [
            "-netdev",
            f"tap,id=n{nic.index},ifname={nic.tap},script=no,downscript=no,vnet_hdr=off",
            "-device",
            f"virtio-net-pci,netdev=n{nic.index},mac={nic.mac}",
        ]
    argv += [
        "-chardev",
        f"socket,id=s0,path={files.console_sock},server=on,wait=off,logfile={files.console_log}",
        "-serial",
        "chardev:s0",
        "-qmp",
        f"unix:{files.qmp_sock},server=on,wait=off",
        "-display",
        "none",
        "-pidfile",
        files.pidfile,
        "-daemonize",
    ]
    return tuple(argv)


def disk_command(worker: WorkerSpec, vm: VmSpec) -> HostCommand:
    files = vm_files(worker, vm)
    return HostCommand(
        ("qemu-img", "create", "-f", "qcow2", "-F", "qcow2", "-b", vm.image.disk_path, files.disk),
        f"Disk overlay of {vm.name} on {vm.image.disk_path}",
        check=("test", "-e", files.disk),
        undo=("rm", "-f", files.disk),
        undo_description=f"Remove the disk overlay of {vm.name}",
    )


def qemu_command(worker: WorkerSpec, vm: VmSpec, slice_name: str) -> HostCommand:
    files = vm_files(worker, vm)
    return HostCommand(
        qemu_argv(worker, vm, slice_name),
        f"Start QEMU for {vm.name} ({vm.vcpus} vCPU, {vm.ram_mib} MiB, {worker.accel}, {len(vm.nics)} NIC)",
        check=sh(SH_PIDFILE_ALIVE, "sp-alive", files.pidfile),
        undo=sh(SH_KILL_PIDFILE, "sp-kill", files.pidfile),
        undo_description=f"Stop QEMU of {vm.name}",
        boots_vm=vm.id,
    )


def relink_command(worker: WorkerSpec, vm: VmSpec, nic: NicSpec) -> HostCommand:
    """Bounce the link of a running VM's NIC whose VLAN changed, so that the guest asks DHCP again."""
    vlan = f"VLAN {nic.vlan}" if nic.vlan is not None else "no VLAN"
    return HostCommand(
        sh(SH_QMP_BOUNCE_LINK, "sp-relink", vm_files(worker, vm).qmp_sock, f"n{nic.index}"),
        f"Bounce the link of {vm.name}.eth{nic.index} (now on {vlan}): the guest renews DHCP",
        relinks=nic.mac,
    )


def worker_ports_commands(
    worker: WorkerSpec, vms: Sequence[VmSpec], *, nics: dict[int, Sequence[NicSpec]] | None = None, dirs: bool = True
) -> tuple[HostCommand, ...]:
    """State directories, TAPs (created, up/down) and the one ports transaction of a worker.

    ``nics`` restricts the NICs per VM id (a teardown of removed NICs only);
    ``dirs`` False leaves the directories out (a VM that is only restarted).
    """
    cmds: list[HostCommand] = []
    if dirs:
        cmds.append(vms_dir_command(worker))
        cmds += [vm_dir_command(worker, vm) for vm in vms]
    chosen: list[tuple[VmSpec, NicSpec]] = []
    seen: set[str] = set()
    for vm in vms:
        for nic in nics[vm.id] if nics is not None else vm.nics:
            if nic.tap in seen:
                continue
            seen.add(nic.tap)
            chosen.append((vm, nic))
            cmds += tap_commands(vm, nic)
    if chosen:
        cmds.append(worker_ports_command([nic for _, nic in chosen]))
    cmds += [internet_guard_command(vm, nic) for vm, nic in chosen if nic.vlan == INTERNET_VLAN]
    return tuple(cmds)


def worker_vms_commands(
    worker: WorkerSpec, vms: Sequence[VmSpec], slice_name: str, *, disks: bool = True
) -> tuple[HostCommand, ...]:
    cmds: list[HostCommand] = []
    for vm in vms:
        if vm.image.kind == "disk" and disks:
            cmds.append(disk_command(worker, vm))
        cmds.append(qemu_command(worker, vm, slice_name))
    return tuple(cmds)


# --- Probes and observation ---------------------------------------------------------------------


def kvm_probe_command(timeout: int = KVM_PROBE_TIMEOUT) -> HostCommand:
    """Does KVM really run a guest here? Prints ``accel=kvm`` or ``accel=tcg (...)``; never fails."""
    return HostCommand(sh(SH_KVM_PROBE, "sp-kvm-probe", str(timeout)), "Probe whether KVM runs guests")


def parse_kvm_probe(output: str) -> str:
    return "kvm" if "accel=kvm" in output else "tcg"


def lease_wait_command(
    spec: SliceSpec, timeout: int, vm_ids: Collection[int] | None = None, macs: Collection[str] = ()
) -> HostCommand | None:
    """Wait up to ``timeout`` s for a lease of every NIC that has a VLAN; print one line per MAC.

    ``vm_ids`` limits the wait to those VMs (the ones booted by this job) and the
    NICs of ``macs`` (running guests whose link was bounced): a VM left running
    by a redeploy asks for no new lease and must not be waited for.
    """
    args: list[str] = []
    for vm in spec.vms:
        for nic in vm.nics:
            if vm_ids is not None and vm.id not in vm_ids and nic.mac not in macs:
                continue
            if nic.vlan is not None:
                args += [dhcp_files(spec.netnode, nic.vlan).leases, nic.mac]
    if not args:
        return None
    count = len(args) // 2
    return HostCommand(
        sh(SH_WAIT_LEASES, "sp-leases", str(int(timeout)), *args),
        f"Wait up to {int(timeout)} s for DHCP leases of {count} interface(s)",
        capture=max(OUTPUT_TAIL, 64 * count),
    )


def parse_leases(output: str) -> dict[str, str | None]:
    """``lease MAC IP`` lines -> {mac: ip or None}."""
    out: dict[str, str | None] = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "lease" and _MAC_RE.fullmatch(parts[1].lower()):
            ip = parts[2]
            try:
                out[parts[1].lower()] = str(ipaddress.IPv4Address(ip))
            except ValueError:
                out[parts[1].lower()] = None
    return out


def console_tail_command(worker: WorkerSpec, vm: VmSpec, size: int = 2000) -> HostCommand:
    return HostCommand(
        sh(SH_CONSOLE_TAIL, "sp-console", vm_files(worker, vm).console_log, str(size)),
        f"Console of {vm.name}",
        capture=size + 200,
    )


# --- Plans -------------------------------------------------------------------------------------------


def _undo_phase(phase: Phase, name: str | None = None) -> Phase:
    """The phase's undo commands in reverse order, duplicates dropped."""
    cmds: list[HostCommand] = []
    seen: set[tuple[str, ...]] = set()
    for cmd in reversed(phase.commands):
        undo = cmd.undo_command()
        if undo is None or undo.argv in seen:
            continue
        seen.add(undo.argv)
        cmds.append(undo)
    return Phase(name or f"teardown-{phase.name}", phase.host, tuple(cmds), shared=phase.shared, teardown=True)


def _netnode_build(spec: SliceSpec) -> list[Phase]:
    node = spec.netnode.name
    phases = [
        Phase("isolation", node, isolation_commands(), shared=SHARED_ISOLATION),
        Phase("vlans", node, vlans_commands(spec.netnode, spec.vlans)),
    ]
    if spec.internet:
        phases.append(Phase("internet", node, internet_commands(spec.netnode), shared=SHARED_INTERNET))
    return phases


def _workers(spec: SliceSpec) -> list[WorkerSpec]:
    used = {vm.host for vm in spec.vms}
    return [w for w in spec.workers if w.name in used]


def _build_stages(spec: SliceSpec) -> dict[str, list[Phase]]:
    stages: dict[str, list[Phase]] = {STAGE_NETWORK: _netnode_build(spec), STAGE_VMS: []}
    for worker in _workers(spec):
        vms = spec.vms_on(worker.name)
        stages[STAGE_NETWORK].append(Phase("ports", worker.name, worker_ports_commands(worker, vms)))
        stages[STAGE_VMS].append(Phase("vms", worker.name, worker_vms_commands(worker, vms, spec.slice_name)))
    return stages


def _assemble(kind: str, *parts: dict[str, list[Phase]]) -> Plan:
    stages = []
    for name in STAGE_ORDER:
        phases = [p for part in parts for p in part.get(name, []) if p.commands]
        if phases:
            stages.append(Stage(name, tuple(phases)))
    return Plan(kind, tuple(stages))


def deploy_plan(spec: SliceSpec) -> Plan:
    """Everything a slice needs on its hosts, checks first (deploying twice changes nothing)."""
    validate_spec(spec)
    return _assemble("deploy", _build_stages(spec))


def _teardown_stages(spec: SliceSpec, *, isolation: bool, internet: bool) -> dict[str, list[Phase]]:
    """Undo of the spec's phases, reverse order: VMs stopped first, then network and ports."""
    build = _build_stages(spec)
    stop = [_undo_phase(p, "teardown-vms") for p in reversed(build[STAGE_VMS])]
    network: list[Phase] = []
    for phase in reversed(build[STAGE_NETWORK]):
        if phase.shared == SHARED_ISOLATION and not isolation:
            continue
        if phase.shared == SHARED_INTERNET and not internet:
            continue
        network.append(_undo_phase(phase))
    return {STAGE_STOP: stop, STAGE_NETWORK: network}


def destroy_plan(spec: SliceSpec) -> Plan:
    """Remove everything of the spec from its hosts; every step tolerates "already gone".

    VLAN 400 + NAT stay when ``keep_internet``; the isolation chains stay when
    ``keep_isolation`` (another slice is still deployed on the network node).
    """
    validate_spec(spec)
    return _assemble(
        "destroy",
        _teardown_stages(spec, isolation=not spec.keep_isolation, internet=spec.internet and not spec.keep_internet),
    )


def _vm_key(spec: SliceSpec, vm: VmSpec) -> tuple:
    """What QEMU's command line depends on. A NIC's VLAN is not part of it: a new tag is
    only a change of the TAP's port on br-int, and the guest keeps running."""
    nics = tuple(replace(n, vlan=None) for n in vm.nics)
    return (replace(vm, nics=nics), spec.worker(vm.host), spec.slice_name)


def apply_plan(old: SliceSpec | None, new: SliceSpec) -> Plan:
    """Bring hosts from ``old`` (what may be deployed; None = nothing) to ``new``.

    - A VM absent from ``new``, moved to another worker or given another image is
      torn down completely; a VM otherwise changed (flavor, NICs, name) has only
      its QEMU restarted and its removed NICs' TAPs deleted (the disk stays).
    - A VM identical in both keeps running: its checks skip every step.
    - A VLAN gone or changed (reservations) is torn down (and rebuilt if changed).
    - VLAN 400 goes when no longer wanted (and no other slice needs it).
    - Then the ``new`` deploy plan runs; its checks skip what is in place.
    """
    validate_spec(new)
    if old is None:
        return replace(deploy_plan(new), kind="apply")
    validate_spec(old)
    new_vms = {vm.id: vm for vm in new.vms}
    gone_vms: list[VmSpec] = []
    restart: list[tuple[VmSpec, tuple[NicSpec, ...]]] = []
    for vm in old.vms:
        target = new_vms.get(vm.id)
        if target is not None and _vm_key(old, vm) == _vm_key(new, target):
            continue
        same_place = (
            target is not None
            and target.host == vm.host
            and old.worker(vm.host).state_dir == new.worker(target.host).state_dir
            and target.image == vm.image
        )
        if same_place:
            kept = {n.tap for n in target.nics}
            restart.append((vm, tuple(n for n in vm.nics if n.tap not in kept)))
        else:
            gone_vms.append(vm)
    same_node = old.netnode == new.netnode
    new_vlans = set(new.vlans) if same_node else set()
    gone_vlans = tuple(v for v in old.vlans if v not in new_vlans)
    internet_gone = old.internet and not (new.internet and same_node)

    teardown: dict[str, list[Phase]] = {STAGE_STOP: [], STAGE_NETWORK: []}
    if gone_vms:
        part = replace(old, vms=tuple(gone_vms), vlans=(), internet=False)
        for worker in _workers(part):
            vms = part.vms_on(worker.name)
            teardown[STAGE_STOP].append(
                _undo_phase(Phase("vms", worker.name, worker_vms_commands(worker, vms, old.slice_name)), "teardown-vms")
            )
            teardown[STAGE_NETWORK].append(_undo_phase(Phase("ports", worker.name, worker_ports_commands(worker, vms))))
    unguard = _left_internet(old, new, gone={vm.id for vm in gone_vms})
    for host, cmds in unguard.items():
        teardown[STAGE_NETWORK].append(Phase("teardown-ports", host, tuple(cmds), teardown=True))
    for vm, removed_nics in restart:
        worker = old.worker(vm.host)
        stop = worker_vms_commands(worker, [vm], old.slice_name, disks=False)
        teardown[STAGE_STOP].append(_undo_phase(Phase("vms", worker.name, stop), "restart-vms"))
        if removed_nics:
            ports = worker_ports_commands(worker, [vm], nics={vm.id: removed_nics}, dirs=False)
            teardown[STAGE_NETWORK].append(_undo_phase(Phase("ports", worker.name, ports)))
    if gone_vlans:
        node = old.netnode
        teardown[STAGE_NETWORK].append(_undo_phase(Phase("vlans", node.name, vlans_commands(node, gone_vlans))))
    if internet_gone and not new.keep_internet:
        node = old.netnode.name
        teardown[STAGE_NETWORK].insert(
            0, _undo_phase(Phase("internet", node, internet_commands(old.netnode), shared=SHARED_INTERNET))
        )
    return _assemble("apply", teardown, _build_stages(new), _relinks(old, new, restarted=restart, gone=gone_vms))


def _vlan_changes(
    old: SliceSpec, new: SliceSpec, *, skip: Collection[int]
) -> Iterator[tuple[VmSpec, NicSpec, VmSpec | None, NicSpec | None]]:
    """(old VM, its NIC, the VM and NIC in ``new`` or None) for each NIC whose VLAN changed or that went.

    VMs in ``skip`` are left out; a VM absent from ``new`` is left out too (it is torn down whole).
    """
    new_vms = {vm.id: vm for vm in new.vms}
    for vm in old.vms:
        target = new_vms.get(vm.id)
        if vm.id in skip or target is None:
            continue
        now = {nic.index: nic for nic in target.nics}
        for nic in vm.nics:
            after = now.get(nic.index)
            if after is None or after.vlan != nic.vlan:
                yield vm, nic, target, after


def _relinks(
    old: SliceSpec, new: SliceSpec, *, restarted: Sequence[tuple[VmSpec, object]], gone: Sequence[VmSpec]
) -> dict[str, list[Phase]]:
    """A link bounce for every NIC of a VM that keeps running whose VLAN changed (after its new tag is set)."""
    stopped = {vm.id for vm, _ in restarted} | {vm.id for vm in gone}
    phases: dict[str, list[HostCommand]] = {}
    for _, _, vm, nic in _vlan_changes(old, new, skip=stopped):
        if nic is not None:
            phases.setdefault(vm.host, []).append(relink_command(new.worker(vm.host), vm, nic))
    return {STAGE_VMS: [Phase("relink", host, tuple(cmds)) for host, cmds in phases.items()]}


def _left_internet(old: SliceSpec, new: SliceSpec, gone: Collection[int]) -> dict[str, list[HostCommand]]:
    """Per worker: removal of the VLAN 400 rules of NICs that stay but leave VLAN 400 (or go)."""
    out: dict[str, list[HostCommand]] = {}
    for vm, nic, _, _ in _vlan_changes(old, new, skip=gone):
        if nic.vlan == INTERNET_VLAN:
            out.setdefault(vm.host, []).append(
                HostCommand(
                    internet_unguard_argv(vm.id, nic),
                    f"Remove the VLAN {INTERNET_VLAN} rules of {nic.tap} ({vm.name}.eth{nic.index})",
                )
            )
    return out


def merge_specs(older: SliceSpec | None, newer: SliceSpec) -> SliceSpec:
    """What may be on the hosts after ``newer`` was attempted on top of ``older`` and failed.

    A union: every distinct VM version and VLAN of both, internet if either had
    it. A teardown of the union removes whatever of either was made; a VM present
    in two versions is always seen as changed by the next apply.
    """
    if older is None:
        return newer
    # One WorkerSpec per worker: the newer one (a worker's state_dir must not change
    # while slices are deployed on it; see docs/provisioning.md).
    workers = {w.name: w for w in older.workers} | {w.name: w for w in newer.workers}
    return replace(
        newer,
        workers=tuple(workers.values()),
        vms=tuple(dict.fromkeys((*older.vms, *newer.vms))),
        vlans=tuple(dict.fromkeys((*older.vlans, *newer.vlans))),
        internet=older.internet or newer.internet,
    )
