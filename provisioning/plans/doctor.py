"""The host doctor: what a host needs before the portal can use it, read in one round trip. Pure.

:func:`doctor_command` is one read-only :class:`HostCommand` (a fixed shell program, the
host's values as positional parameters) that prints facts, one per line
(``cmd socat /usr/bin/socat``, ``br-int yes netdev``, ``avail 81234567``...).
:func:`parse_facts` reads them back and :func:`diagnose` turns them into findings, each
``ok``, ``warn`` or ``fail`` with the exact command or package that fixes it. The SSH
side (and the ``ssh`` finding itself) is :mod:`provisioning.doctor`.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from .constants import BRIDGE, QEMU
from .model import HostCommand
from .shell import sh

OK, WARN, FAIL = "ok", "warn", "fail"
WORKER, NETWORK = "worker", "network"  # inventory.models.Host.Role values
DOCTOR_CAPTURE = 65536  # bytes of output kept: a worker with hundreds of TAPs lists only its untagged ports

# Free space in the state dir: a worker keeps guests' qcow2 overlays and console logs there,
# the network node only leases and logs. (warn below, fail below), in MiB.
DISK_LIMITS_MIB = {WORKER: (4096, 1024), NETWORK: (512, 100)}

# Ports and links the portal itself makes (slices.naming): never taken for the underlay trunk.
PORTAL_IFNAME_RE = re.compile(r"^(tap_\d+_eth\d+|tx[0-9a-z]+_\d+|gw_v\d+|dhcp_v\d+)$")

# Commands every host needs for the portal's scripts (render_script, the SH_* programs) and
# the Debian package of each.
BASE_TOOLS = {
    "bash": "bash",
    "timeout": "coreutils",
    "mktemp": "coreutils",
    "tail": "coreutils",
    "tr": "coreutils",
    "awk": "mawk",
    "sed": "sed",
    "cmp": "diffutils",
    "sysctl": "procps",
}
COMMANDS = (*BASE_TOOLS, "ip", "ovs-vsctl", "ovs-ofctl", QEMU, "qemu-img", "socat", "flock", "dnsmasq", "iptables")

# The program. "$1" role, "$2" state dir, "$3" uplink (network node). Read-only: it only lists,
# reads /proc and /dev, and asks OVS and iptables; every line it prints is "KEY VALUE...".
SH_DOCTOR = (
    "role=$1; state=$2; uplink=$3; "
    "p() { printf '%s\\n' \"$*\"; }; "
    'have() { command -v "$1" >/dev/null 2>&1; }; '
    "first() { \"$@\" 2>&1 | head -n 1 | tr -d '\\r'; }; "
    'p "uid $(id -u)"; '
    f'for c in {" ".join(COMMANDS)}; do p "cmd $c $(command -v "$c" 2>/dev/null || echo -)"; done; '
    'have ovs-vsctl && p "version ovs $(first ovs-vsctl --version)"; '
    f'have {QEMU} && p "version qemu $(first {QEMU} --version)"; '
    'have dnsmasq && p "version dnsmasq $(first dnsmasq --version)"; '
    'have iptables && p "version iptables $(first iptables --version)"; '
    "if have ovs-vsctl; then "
    "  if o=$(ovs-vsctl --timeout=5 show 2>&1); then p 'ovs up'; "
    f"    if ovs-vsctl --timeout=5 br-exists {BRIDGE} 2>/dev/null; then "
    f'      p "br-int yes $(ovs-vsctl --timeout=5 get Bridge {BRIDGE} datapath_type 2>/dev/null)"; '
    "      u=$(ovs-vsctl --timeout=5 --format=csv --data=bare --no-headings --columns=name find Port 'tag=[]'); "
    f"      for n in $(ovs-vsctl --timeout=5 list-ports {BRIDGE} 2>/dev/null); do "
    '        printf "%s\\n" "$u" | grep -qxF -- "$n" || continue; '
    "        i=$(ovs-vsctl --timeout=5 --format=csv --data=bare --no-headings --columns=type,link_state "
    'find Interface "name=$n" 2>/dev/null | head -n 1); '
    "        t=$(ovs-vsctl --timeout=5 --format=csv --data=bare --no-headings --columns=trunks "
    'find Port "name=$n" 2>/dev/null | head -n 1); '
    '        p "untagged $n,$i,$t"; '
    "      done; "
    "    else p 'br-int no'; fi; "
    '  else p "ovs down $(printf "%s\\n" "$o" | head -n 1)"; fi; '
    "fi; "
    'if [ -e /dev/kvm ]; then if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then p "kvm rw"; else p "kvm noaccess"; fi; '
    'else p "kvm none"; fi; '
    "p \"cpuflags $(grep -Eow -m 1 'vmx|svm' /proc/cpuinfo 2>/dev/null | head -n 1)\"; "
    'if [ -c /dev/net/tun ]; then p "tun yes"; else p "tun no"; fi; '
    "f=/proc/sys/net/ipv4/ip_forward; "
    'if [ -w "$f" ]; then w=rw; else w=ro; fi; p "ip_forward $(cat "$f" 2>/dev/null || echo -) $w"; '
    "ip -o link show 2>/dev/null | sed -E 's/^[0-9]+: ([^:@]+)[^:]*: <([^>]*)>.* state ([A-Z]+).*/link \\1 \\2 \\3/' "
    "| grep -Ev '^link (tap_[0-9]+_eth[0-9]+|tx[0-9a-z]+_[0-9]+|gw_v[0-9]+|dhcp_v[0-9]+) '; "
    "ip -o -4 addr show 2>/dev/null | awk '{print \"addr\", $2, $4}' "
    "| grep -Ev '^addr (gw_v[0-9]+|dhcp_v[0-9]+) '; "
    "ip -4 route show default 2>/dev/null | sed 's/^/route /'; "
    'if [ "$role" = network ] && have iptables; then '
    '  if o=$(iptables -w 5 -t nat -S 2>&1); then p "iptables-nat ok"; '
    '  else p "iptables-nat fail $(printf "%s\\n" "$o" | head -n 1)"; fi; '
    "fi; "
    'd=$state; while [ ! -d "$d" ]; do d=$(dirname -- "$d"); done; '
    'if [ -d "$state" ]; then s=exists; else s=missing; fi; '
    'if [ -w "$d" ]; then w=rw; else w=ro; fi; '
    'p "state_dir $s $w $d"; '
    'p "avail $(df -Pk -- "$d" 2>/dev/null | awk \'NR == 2 {print $4}\')"; '
    'p "end"'
)


def doctor_command(*, role: str, state_dir: str, uplink: str = "") -> HostCommand:
    """The doctor's one read-only command for a host (its output goes to :func:`parse_facts`)."""
    return HostCommand(
        sh(SH_DOCTOR, "sp-doctor", role, state_dir, uplink if role == NETWORK else ""),
        "Host doctor: read what the host has",
        capture=DOCTOR_CAPTURE,
    )


@dataclass(frozen=True)
class Finding:
    """One thing the doctor checked: its status (ok / warn / fail), what it saw, and the fix."""

    check: str
    status: str
    summary: str
    fix: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TrunkPort:
    """An untagged port of br-int (a trunk: it carries every VLAN)."""

    name: str
    type: str = ""  # "" = a system interface (a NIC)
    link_state: str = ""
    trunks: str = ""  # a VLAN list restricts what the trunk carries


@dataclass
class Facts:
    """What the doctor's script printed, parsed."""

    uid: int | None = None
    commands: dict[str, str | None] = field(default_factory=dict)  # name -> path (None: missing)
    versions: dict[str, str] = field(default_factory=dict)
    ovs_up: bool | None = None  # None: not asked (no ovs-vsctl)
    ovs_error: str = ""
    bridge: bool | None = None
    datapath: str = ""
    untagged: list[TrunkPort] = field(default_factory=list)
    kvm: str = ""  # rw, noaccess, none
    cpu_flag: str = ""  # vmx, svm or ""
    tun: bool = False
    ip_forward: str = ""
    ip_forward_writable: bool = False
    links: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (flags, state)
    addresses: dict[str, list[str]] = field(default_factory=dict)
    default_routes: list[str] = field(default_factory=list)
    iptables_nat: str | None = None  # "ok", the error, or None (not asked)
    state_dir_exists: bool = False
    state_dir_writable: bool = False
    state_dir_nearest: str = ""
    avail_kib: int | None = None
    complete: bool = False  # the last line arrived

    def has(self, command: str) -> bool:
        return bool(self.commands.get(command))


def _unquote(value: str) -> str:
    value = value.strip()
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value


def parse_facts(output: str) -> Facts:
    """The facts of the doctor's output (lines it does not know are ignored)."""
    facts = Facts()
    for raw in output.splitlines():
        key, _, rest = raw.strip().partition(" ")
        rest = rest.strip()
        parts = rest.split()
        if key == "uid" and rest.isdigit():
            facts.uid = int(rest)
        elif key == "cmd" and parts:
            facts.commands[parts[0]] = parts[1] if len(parts) > 1 and parts[1] != "-" else None
        elif key == "version" and parts:
            facts.versions[parts[0]] = rest[len(parts[0]) :].strip()
        elif key == "ovs" and parts:
            facts.ovs_up = parts[0] == "up"
            facts.ovs_error = rest[len(parts[0]) :].strip()
        elif key == "br-int" and parts:
            facts.bridge = parts[0] == "yes"
            facts.datapath = _unquote(rest[len(parts[0]) :])
        elif key == "untagged" and rest:
            name, port_type, link_state, trunks = ([*rest.split(",", 3), "", "", ""])[:4]
            facts.untagged.append(TrunkPort(name, port_type.strip(), link_state.strip(), trunks.strip()))
        elif key == "kvm" and parts:
            facts.kvm = parts[0]
        elif key == "cpuflags":
            facts.cpu_flag = parts[0] if parts else ""
        elif key == "tun" and parts:
            facts.tun = parts[0] == "yes"
        elif key == "ip_forward" and len(parts) == 2:
            facts.ip_forward, facts.ip_forward_writable = parts[0], parts[1] == "rw"
        elif key == "link" and len(parts) == 3:
            facts.links[parts[0]] = (parts[1], parts[2])
        elif key == "addr" and len(parts) == 2:
            facts.addresses.setdefault(parts[0], []).append(parts[1])
        elif key == "route" and rest:
            facts.default_routes.append(rest)
        elif key == "iptables-nat" and parts:
            facts.iptables_nat = "ok" if parts[0] == "ok" else (rest[len(parts[0]) :].strip() or "failed")
        elif key == "state_dir" and len(parts) >= 3:
            facts.state_dir_exists = parts[0] == "exists"
            facts.state_dir_writable = parts[1] == "rw"
            facts.state_dir_nearest = " ".join(parts[2:])
        elif key == "avail" and rest.isdigit():
            facts.avail_kib = int(rest)
        elif key == "end":
            facts.complete = True
    return facts


def apt(*packages: str) -> str:
    return f"apt-get install -y {' '.join(dict.fromkeys(packages))}"


def _tool(facts: Facts, command: str, package: str, why: str, *, status: str = FAIL, version: str = "") -> Finding:
    if facts.has(command):
        detail = facts.versions.get(version, "") if version else ""
        return Finding(command, OK, f"{facts.commands[command]}" + (f" ({detail})" if detail else ""))
    return Finding(command, status, f"{command} is not installed: {why}", apt(package))


def _interfaces_hint(facts: Facts, *, exclude: set[str]) -> str:
    names = [n for n in facts.links if n not in exclude and n not in ("lo", BRIDGE, "ovs-system", "ovs-netdev")]
    return f" (interfaces here: {', '.join(names)})" if names else ""


def _openvswitch(facts: Facts, role: str) -> list[Finding]:
    out: list[Finding] = []
    missing = [c for c in ("ovs-vsctl", "ovs-ofctl") if not facts.has(c)]
    if missing:
        out.append(Finding("openvswitch", FAIL, f"{' and '.join(missing)} not installed", apt("openvswitch-switch")))
    elif not facts.ovs_up:
        out.append(
            Finding(
                "openvswitch",
                FAIL,
                f"ovs-vsctl cannot reach OVS: {facts.ovs_error or 'no answer'}",
                "systemctl enable --now openvswitch-switch",
            )
        )
    else:
        out.append(Finding("openvswitch", OK, facts.versions.get("ovs", "ovs-vsctl answers")))
    usable = not missing and facts.ovs_up
    if not usable:
        out.append(Finding(BRIDGE, FAIL, "not checked: OVS is not usable (above)", "fix Open vSwitch first"))
        out.append(Finding("trunk", FAIL, "not checked: OVS is not usable (above)", "fix Open vSwitch first"))
        return out
    if not facts.bridge:
        out.append(Finding(BRIDGE, FAIL, f"no bridge {BRIDGE}", f"ovs-vsctl --may-exist add-br {BRIDGE}"))
        hint = _interfaces_hint(facts, exclude=set())
        out.append(
            Finding(
                "trunk",
                FAIL,
                f"no underlay trunk: {BRIDGE} is missing",
                f"after creating {BRIDGE}: ovs-vsctl --may-exist add-port {BRIDGE} UNDERLAY_NIC{hint}",
            )
        )
        return out
    datapath = facts.datapath or "system"
    out.append(Finding(BRIDGE, OK, f"bridge {BRIDGE} (datapath {datapath})"))
    out.append(_trunk(facts))
    return out


def _trunk(facts: Facts) -> Finding:
    """br-int's untagged ports that the portal did not make: the NIC (or patch/tunnel) to the other hosts."""
    trunks = [p for p in facts.untagged if not PORTAL_IFNAME_RE.match(p.name)]
    if not trunks:
        hint = _interfaces_hint(facts, exclude={p.name for p in facts.untagged})
        return Finding(
            "trunk",
            FAIL,
            f"no untagged port on {BRIDGE}: tagged frames cannot reach the other hosts",
            f"ovs-vsctl --may-exist add-port {BRIDGE} UNDERLAY_NIC  (the NIC facing the other hosts, no tag){hint}",
        )
    names = ", ".join(p.name for p in trunks)
    down = [p for p in trunks if p.link_state and p.link_state != "up"]
    limited = [p for p in trunks if p.trunks]
    if down and len(down) == len(trunks):
        return Finding("trunk", FAIL, f"underlay trunk {names}: link down", f"ip link set {down[0].name} up")
    if limited:
        port = limited[0]
        return Finding(
            "trunk",
            WARN,
            f"underlay trunk {port.name} carries only VLANs {port.trunks}: links on other VLANs stay on this host",
            f"ovs-vsctl clear port {port.name} trunks",
        )
    if down:
        return Finding(
            "trunk", WARN, f"underlay trunks {names}: {down[0].name} is down", f"ip link set {down[0].name} up"
        )
    return Finding("trunk", OK, f"underlay trunk {names} (untagged on {BRIDGE})")


def _accel(facts: Facts, accel: str) -> Finding:
    kvm = facts.kvm == "rw"
    fix_kvm = (
        "enable VT-x/AMD-V (or nested virtualisation) for this machine, then "
        "modprobe kvm_intel (or kvm_amd); or set the Host's accel to tcg"
    )
    if accel == "tcg":
        return Finding("accel", OK, "TCG (the Host's accel is tcg)" + ("; /dev/kvm is there too" if kvm else ""))
    if kvm:
        how = "forced by the Host's accel" if accel == "kvm" else "the first deploy probes it"
        return Finding("accel", OK, f"KVM: /dev/kvm usable ({how})")
    seen = "/dev/kvm is not accessible" if facts.kvm == "noaccess" else "no /dev/kvm"
    if facts.cpu_flag:
        seen += f" (the CPU has {facts.cpu_flag}: the kvm module is not loaded?)"
    if accel == "kvm":
        return Finding("accel", FAIL, f"the Host's accel is kvm but {seen}", fix_kvm)
    return Finding("accel", WARN, f"{seen}: guests run under TCG (emulation, several times slower)", fix_kvm)


def _uplink(facts: Facts, uplink: str) -> list[Finding]:
    if not uplink:
        return [Finding("uplink", FAIL, "the Host has no uplink", "set the Host's uplink (admin: Hosts)")]
    if uplink not in facts.links:
        hint = _interfaces_hint(facts, exclude={p.name for p in facts.untagged})
        return [
            Finding(
                "uplink",
                FAIL,
                f"no interface {uplink} (the Host's uplink, NAT for VLAN 400 goes out of it)",
                f"set the Host's uplink to the interface facing the internet (admin: Hosts){hint}",
            )
        ]
    flags, state = facts.links[uplink]
    if "UP" not in flags.split(","):
        return [Finding("uplink", FAIL, f"uplink {uplink} is down", f"ip link set {uplink} up")]
    if state == "DOWN":
        return [
            Finding(
                "uplink", FAIL, f"uplink {uplink} is up but has no carrier", f"check {uplink}'s cable or switch port"
            )
        ]
    addresses = facts.addresses.get(uplink, [])
    if not addresses:
        return [
            Finding(
                "uplink",
                WARN,
                f"uplink {uplink} has no IPv4 address: NAT needs one",
                f"ip addr add ADDRESS/PREFIX dev {uplink}",
            )
        ]
    routes = [r for r in facts.default_routes if f" dev {uplink} " in f" {r} "]
    if not routes:
        via = facts.default_routes[0] if facts.default_routes else "no default route"
        return [
            Finding(
                "uplink",
                WARN,
                f"uplink {uplink} ({', '.join(addresses)}) is not the default route ({via}): "
                "NAT'd traffic of VLAN 400 would leave elsewhere",
                f"ip route replace default via GATEWAY dev {uplink}  "
                "(or set the Host's uplink to the default route's interface)",
            )
        ]
    return [Finding("uplink", OK, f"uplink {uplink} up, {', '.join(addresses)}, {routes[0]}")]


def _ip_forward(facts: Facts) -> Finding:
    if not facts.ip_forward_writable:
        return Finding(
            "ip_forward",
            FAIL,
            f"net.ipv4.ip_forward is {facts.ip_forward or '?'} and cannot be changed here (read-only /proc/sys)",
            "run the network node on a host (or a privileged container) where root may set net.ipv4.ip_forward",
        )
    if facts.ip_forward == "1":
        return Finding("ip_forward", OK, "net.ipv4.ip_forward=1")
    return Finding(
        "ip_forward",
        OK,
        "net.ipv4.ip_forward=0 now: a deploy with internet VMs turns it on (and back when the last one goes)",
    )


def _iptables(facts: Facts) -> Finding:
    if not facts.has("iptables"):
        return Finding("iptables", FAIL, "iptables is not installed: isolation and NAT need it", apt("iptables"))
    if facts.iptables_nat != "ok":
        return Finding(
            "iptables",
            FAIL,
            f"iptables cannot read the nat table: {facts.iptables_nat or 'no answer'}",
            "modprobe iptable_nat (or install the kernel's netfilter modules)",
        )
    return Finding("iptables", OK, facts.versions.get("iptables", facts.commands["iptables"] or "iptables"))


def _disk(facts: Facts, role: str, state_dir: str) -> Finding:
    warn_mib, fail_mib = DISK_LIMITS_MIB[role]
    where = (
        state_dir
        if facts.state_dir_exists
        else f"{facts.state_dir_nearest} ({state_dir} is created at the first deploy)"
    )
    if not facts.state_dir_writable:
        return Finding(
            "disk", FAIL, f"{where} is not writable", f"make {facts.state_dir_nearest} writable for root (mount it rw)"
        )
    if facts.avail_kib is None:
        return Finding("disk", WARN, f"free space in {where} unknown (df gave nothing)", "check df -h " + state_dir)
    mib = facts.avail_kib // 1024
    free = f"{mib / 1024:.1f} GiB free in {where}"
    if mib < fail_mib:
        return Finding(
            "disk",
            FAIL,
            f"only {free} (at least {fail_mib} MiB needed)",
            f"free space on the file system of {state_dir}",
        )
    if mib < warn_mib:
        return Finding(
            "disk", WARN, f"only {free} (below {warn_mib} MiB)", f"free space on the file system of {state_dir}"
        )
    return Finding("disk", OK, free)


def diagnose(facts: Facts, *, role: str, state_dir: str, uplink: str = "", accel: str = "auto") -> list[Finding]:
    """The findings for a host of ``role`` from its facts, in the order an operator fixes them."""
    out: list[Finding] = []
    if not facts.complete:
        out.append(
            Finding(
                "doctor",
                FAIL,
                "the doctor's output stopped early (a command hung or the session broke)",
                "run it again; if it persists, run the checks by hand (docs/hosts.md)",
            )
        )
    if facts.uid != 0:
        out.append(
            Finding(
                "root",
                FAIL,
                f"commands run as uid {facts.uid}, not root",
                "set the Host's SSH user to root (the portal's host commands need root)",
            )
        )
    else:
        out.append(Finding("root", OK, "commands run as root"))
    missing = [c for c in BASE_TOOLS if not facts.has(c)]
    if missing:
        out.append(Finding("tools", FAIL, f"missing {', '.join(missing)}", apt(*(BASE_TOOLS[c] for c in missing))))
    else:
        out.append(Finding("tools", OK, ", ".join(BASE_TOOLS)))
    out.append(_tool(facts, "ip", "iproute2", "TAPs, namespaces and addresses are made with it"))
    out.extend(_openvswitch(facts, role))
    if role == WORKER:
        out.append(_tool(facts, QEMU, "qemu-system-x86", "it runs the guests", version="qemu"))
        out.append(_accel(facts, accel))
        if facts.tun:
            out.append(Finding("/dev/net/tun", OK, "TAP devices can be made"))
        else:
            out.append(Finding("/dev/net/tun", FAIL, "no /dev/net/tun: no TAP devices for guests", "modprobe tun"))
        out.append(
            _tool(facts, "qemu-img", "qemu-utils", "VMs of disk images (qcow2 overlays) cannot start", status=WARN)
        )
        out.append(_tool(facts, "socat", "socat", "consoles and power actions (QMP) talk to QEMU through it"))
        out.append(_tool(facts, "flock", "util-linux", "a console takes its guest's serial port under a lock"))
    else:
        out.append(_tool(facts, "dnsmasq", "dnsmasq-base", "it serves DHCP on every link VLAN", version="dnsmasq"))
        out.append(_iptables(facts))
        out.append(_ip_forward(facts))
        out.extend(_uplink(facts, uplink))
    out.append(_disk(facts, role, state_dir))
    return out


def worst(findings: list[Finding]) -> str:
    """fail if any failed, else warn if any warned, else ok."""
    statuses = {f.status for f in findings}
    return FAIL if FAIL in statuses else WARN if WARN in statuses else OK
