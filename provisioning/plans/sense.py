"""Observing a host in one read-only round trip: the script (one command) and its parser.

:func:`observe_command` renders ONE command per host that prints, in sections, what
the portal may have left there (TAPs and other links, br-int's ports and the portal's
OpenFlow rules, the processes whose command line names the host's state dir, the pid
files, and on the network node the namespaces, addresses, forwarding sysctl), the
host's versions and capacity, and runs the plan's own read-only iptables checks
(``iptables -C``/``-S``). Nothing in it changes the host. :func:`parse_observation`
turns the output into a :class:`HostObservation`; :mod:`.drift` compares it with
what the specs say should be there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .constants import BRIDGE, FLOW_COOKIE_TAG, QEMU
from .model import HostCommand

SECTION = "@@OBS"
CHECK_END = "@@END"
COOKIE_MASK = 0xFFFF << 48
OBSERVE_CAPTURE = 1_000_000  # bytes: every QEMU command line of a full worker fits

# STATE_DIR ROLE [CHECK-ARGV... @@END]...: bash (arrays hold the checks' argvs; values stay positional).
SH_OBSERVE = (
    's=$1; role=$2; shift 2; sec() { echo "' + SECTION + ' $1"; }; '
    "sec versions; ovs-vsctl --version 2>/dev/null | head -1; " + QEMU + " --version 2>/dev/null | head -1; "
    "dnsmasq --version 2>/dev/null | head -1; "
    "sec cpus; nproc; "
    "sec meminfo; grep -E '^(MemTotal|MemAvailable):' /proc/meminfo; "
    "sec load; cat /proc/loadavg; head -1 /proc/stat; cut -d' ' -f1 /proc/uptime; getconf CLK_TCK; getconf PAGESIZE; "
    "sec kvm; if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then echo yes; else echo no; fi; "
    "sec links; ip -o link show 2>/dev/null; "
    "sec ports; ovs-vsctl -f csv --no-headings -d bare --columns=name,tag list Port; "
    f'sec flows; ovs-ofctl dump-flows {BRIDGE} "cookie={FLOW_COOKIE_TAG:#x}/{COOKIE_MASK:#x}" --no-stats; '
    "sec procs; u=; for p in /proc/[0-9]*; do "
    'c=$(tr "\\000\\n" "  " 2>/dev/null < "$p/cmdline") || continue; '
    'case "$c" in *"$s/"*) echo "${p#/proc/} $c"; u="$u ${p#/proc/}";; esac; done; '
    # utime stime (clock ticks) rss (pages): fields 14, 15, 24 of /proc/PID/stat, counted after "(comm) ".
    'sec usage; for q in $u; do echo "$q $(sed "s/.*) //" "/proc/$q/stat" 2>/dev/null | cut -d" " -f12,13,22)"; done; '
    'sec pidfiles; for f in "$s"/vms/vm*/qemu.pid "$s"/dhcp/v*/dnsmasq.pid; do '
    '[ -r "$f" ] && echo "$f $(cat "$f" 2>/dev/null)"; done; '
    'if [ "$role" = network ]; then '
    "sec addrs; ip -o -4 addr show; "
    "sec netns; ip netns list; "
    'sec nsaddrs; for ns in $(ip netns list | cut -d" " -f1 | grep "^ns-dhcp-vlan"); do '
    'ip netns exec "$ns" ip -o -4 addr show 2>/dev/null | sed "s/^/$ns /"; done; '
    "sec forward; cat /proc/sys/net/ipv4/ip_forward; fi; "
    'sec checks; i=0; c=(); for a in "$@"; do if [ "$a" = \'' + CHECK_END + "' ]; then "
    '"${c[@]}" </dev/null >/dev/null 2>&1; echo "$i $?"; i=$((i+1)); c=(); else c+=("$a"); fi; done; '
    "sec end"
)


def observe_command(state_dir: str, *, network: bool, checks: tuple[HostCommand, ...] = ()) -> HostCommand:
    """The one read-only command that observes a host (``checks``: read-only checks whose exit codes it reports)."""
    args: list[str] = []
    for check in checks:
        if check.check is None:
            raise ValueError(f"{check.description}: no check to run")
        args += [*check.check, CHECK_END]
    role = "network" if network else "worker"
    return HostCommand(
        ("bash", "-c", SH_OBSERVE, "sp-observe", state_dir.rstrip("/") or "/", role, *args),
        f"Observe the host ({role}, {len(checks)} check(s))",
        capture=OBSERVE_CAPTURE,
        interruptible=True,
    )


@dataclass(frozen=True)
class Link:
    """A network device: admin up (``UP`` flag) or not."""

    name: str
    up: bool


@dataclass(frozen=True)
class Process:
    pid: int
    cmdline: str


@dataclass(frozen=True)
class VmUsage:
    """A guest's QEMU process: CPU time used since it started (clock ticks) and resident memory."""

    pid: int
    cpu_ticks: int
    rss_mib: int


@dataclass
class HostObservation:
    """What one observation of a host found (parsed; no judgement yet)."""

    versions: dict[str, str] = field(default_factory=dict)  # ovs, qemu, dnsmasq
    cpus: int | None = None
    mem_total_mib: int | None = None
    mem_available_mib: int | None = None
    kvm_device: bool = False
    load: tuple[float, float, float] | None = None  # /proc/loadavg: 1, 5, 15 minutes
    cpu_ticks: tuple[int, int] | None = None  # /proc/stat: (busy, total) clock ticks since boot, all CPUs
    uptime: float | None = None  # seconds since boot: the clock the tick counters are read against
    clk_tck: int = 100
    page_size: int = 4096
    usage: dict[int, tuple[int, int]] = field(default_factory=dict)  # pid -> (CPU ticks, RSS KiB)
    links: dict[str, Link] = field(default_factory=dict)
    ports: dict[str, int | None] = field(default_factory=dict)  # br-int port -> tag (None: trunk / untagged)
    flows: dict[int, int] = field(default_factory=dict)  # portal cookie -> number of flows
    processes: dict[int, Process] = field(default_factory=dict)  # naming the state dir
    pidfiles: dict[str, int | None] = field(default_factory=dict)  # path -> pid in it
    addresses: dict[str, set[str]] = field(default_factory=dict)  # device -> {"10.0.0.1/24"}
    namespaces: set[str] = field(default_factory=set)
    ns_addresses: dict[str, dict[str, set[str]]] = field(default_factory=dict)  # ns -> device -> addresses
    ip_forward: str | None = None
    checks: dict[int, int] = field(default_factory=dict)  # check index -> exit code
    complete: bool = False  # the script reached its end
    output: str = ""  # the raw text, when kept

    def alive(self, pidfile: str) -> Process | None:
        """The process of a pid file, if it runs and its command line names that pid file."""
        pid = self.pidfiles.get(pidfile)
        proc = self.processes.get(pid) if pid is not None else None
        return proc if proc is not None and pidfile in proc.cmdline else None

    def vm_usage(self) -> dict[int, VmUsage]:
        """VM id -> what its running QEMU process has used (from its pid file; a QEMU that is gone is absent)."""
        out = {}
        for path in self.pidfiles:
            found = _QEMU_PIDFILE.search(path)
            proc = self.alive(path) if found else None
            if proc is not None and proc.pid in self.usage:
                ticks, rss_kib = self.usage[proc.pid]
                out[int(found.group(1))] = VmUsage(proc.pid, ticks, rss_kib // 1024)
        return out

    def guest_load(self) -> tuple[int, int]:
        """(vCPUs, MiB) the QEMU processes running here were given."""
        vcpus = ram = 0
        for proc in self.processes.values():
            argv = proc.cmdline.split()
            if not argv or not argv[0].endswith(QEMU):
                continue
            vcpus += _int_after(argv, "-smp") or 1
            ram += _int_after(argv, "-m") or 0
        return vcpus, ram


def _int_after(argv: list[str], flag: str) -> int | None:
    try:
        value = argv[argv.index(flag) + 1]
    except (ValueError, IndexError):
        return None
    match = re.match(r"\d+", value)
    return int(match.group()) if match else None


_QEMU_PIDFILE = re.compile(r"/vms/vm(\d+)/qemu\.pid$")
_VERSION = re.compile(r"(\d+\.\d+(?:\.\d+)?)")
_LINK = re.compile(r"^\d+:\s+([^:@\s]+)(?:@\S+)?:\s+<([^>]*)>")
_COOKIE = re.compile(r"cookie=(0x[0-9a-f]+)")


def _sections(output: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in output.splitlines():
        if line.startswith(SECTION + " "):
            current = out.setdefault(line[len(SECTION) + 1 :].strip(), [])
        elif current is not None and line.strip():
            current.append(line.rstrip())
    return out


def _versions(lines: list[str]) -> dict[str, str]:
    out = {}
    for line in lines:
        found = _VERSION.search(line)
        if not found:
            continue
        low = line.lower()
        key = "ovs" if "open vswitch" in low else "qemu" if "qemu" in low else "dnsmasq" if "dnsmasq" in low else None
        if key:
            out[key] = found.group(1)
    return out


def _addr_lines(lines: list[str]) -> dict[str, set[str]]:
    """``ip -o -4 addr show`` lines (``2: gw_v101    inet 10.0.0.1/24 ...``) -> device -> addresses."""
    out: dict[str, set[str]] = {}
    for line in lines:
        parts = line.split()
        if len(parts) >= 4 and parts[2] == "inet":
            out.setdefault(parts[1].split("@")[0], set()).add(parts[3])
    return out


def _parse_load(obs: HostObservation, lines: list[str]) -> None:
    """``/proc/loadavg``, the ``cpu`` line of ``/proc/stat``, ``/proc/uptime``, CLK_TCK and PAGESIZE."""
    numbers = []
    for line in lines:
        parts = line.split()
        if parts[:1] == ["cpu"] and len(parts) >= 5 and all(p.isdigit() for p in parts[1:]):
            ticks = [int(p) for p in parts[1:9]]  # user nice system idle iowait irq softirq steal
            idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
            obs.cpu_ticks = (sum(ticks) - idle, sum(ticks))
        elif len(parts) == 5 and "/" in parts[3]:
            try:
                obs.load = (float(parts[0]), float(parts[1]), float(parts[2]))
            except ValueError:
                pass
        elif len(parts) == 1 and re.fullmatch(r"\d+\.\d+", parts[0]):
            obs.uptime = float(parts[0])
        elif len(parts) == 1 and parts[0].isdigit():
            numbers.append(int(parts[0]))
    if len(numbers) == 2 and all(numbers):
        obs.clk_tck, obs.page_size = numbers


def parse_observation(output: str) -> HostObservation:
    """The sections of :data:`SH_OBSERVE`'s output -> a :class:`HostObservation`."""
    sec = _sections(output)
    obs = HostObservation(complete="end" in sec)
    obs.versions = _versions(sec.get("versions", []))
    cpus = sec.get("cpus", [])
    obs.cpus = int(cpus[0]) if cpus and cpus[0].strip().isdigit() else None
    for line in sec.get("meminfo", []):
        parts = line.split()
        if len(parts) >= 2 and parts[1].isdigit():
            kib = int(parts[1])
            if parts[0] == "MemTotal:":
                obs.mem_total_mib = kib // 1024
            elif parts[0] == "MemAvailable:":
                obs.mem_available_mib = kib // 1024
    _parse_load(obs, sec.get("load", []))
    for line in sec.get("usage", []):
        parts = line.split()
        if len(parts) == 4 and all(p.isdigit() for p in parts):
            pid, utime, stime, rss_pages = map(int, parts)
            obs.usage[pid] = (utime + stime, rss_pages * obs.page_size // 1024)
    obs.kvm_device = sec.get("kvm", ["no"])[:1] == ["yes"]
    for line in sec.get("links", []):
        found = _LINK.match(line)
        if found:
            obs.links[found.group(1)] = Link(found.group(1), "UP" in found.group(2).split(","))
    for line in sec.get("ports", []):
        name, _, tag = line.partition(",")
        tag = tag.strip().strip('"')
        obs.ports[name.strip().strip('"')] = int(tag) if tag.isdigit() else None
    for line in sec.get("flows", []):
        found = _COOKIE.search(line)
        if found and "priority=" in line:
            cookie = int(found.group(1), 16)
            obs.flows[cookie] = obs.flows.get(cookie, 0) + 1
    for line in sec.get("procs", []):
        pid, _, cmdline = line.partition(" ")
        if pid.isdigit():
            obs.processes[int(pid)] = Process(int(pid), cmdline.strip())
    for line in sec.get("pidfiles", []):
        path, _, pid = line.partition(" ")
        obs.pidfiles[path] = int(pid) if pid.strip().isdigit() else None
    obs.addresses = _addr_lines(sec.get("addrs", []))
    obs.namespaces = {line.split()[0] for line in sec.get("netns", []) if line.split()}
    for line in sec.get("nsaddrs", []):
        ns, _, rest = line.partition(" ")
        for dev, addrs in _addr_lines([rest]).items():
            obs.ns_addresses.setdefault(ns, {}).setdefault(dev, set()).update(addrs)
    forward = sec.get("forward", [])
    obs.ip_forward = forward[0].strip() if forward else None
    for line in sec.get("checks", []):
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
            obs.checks[int(parts[0])] = int(parts[1])
    return obs
