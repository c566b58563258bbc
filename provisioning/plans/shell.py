"""Small shell programs used as argv (``sh -c PROGRAM NAME ARGS...``).

Values only ever arrive as positional parameters ("$1"), never pasted into the program.
"""

from __future__ import annotations

from collections.abc import Sequence

from .constants import (
    QEMU,
)

SH_NOT = '! "$@" >/dev/null 2>&1'
SH_DEL_LINK = 'ip link show dev "$1" >/dev/null 2>&1 || exit 0; exec ip link del dev "$1"'
# Network namespaces go by the presence of their NAME (`ip netns list`), never by `ip netns exec NS true`:
# a name whose mount is gone (left by a session in another mount namespace, e.g. before sshd restarted)
# fails `exec` but still blocks `ip netns add` ("File exists"). Adding repairs such a stale name; deleting
# removes it (`ip netns del` unmounts if mounted, then unlinks the name).
SH_NETNS_LISTED = 'ip netns list | cut -d" " -f1 | grep -qxF -- "$1"'
SH_ADD_NETNS = (
    f"if {SH_NETNS_LISTED}; then "
    'ip netns exec "$1" true >/dev/null 2>&1 && exit 0; '
    'echo "removing the stale namespace name $1"; ip netns del "$1" || exit 1; fi; '
    'exec ip netns add "$1"'
)
SH_DEL_NETNS = f'{SH_NETNS_LISTED} || exit 0; exec ip netns del "$1"'
# Checks of commands that change state in place (an unchanged redeploy runs none of them):
# a directory exists: PATH;
SH_IS_DIR = '[ -d "$1" ]'
# a link's administrative state (the UP flag, not LOWER_UP): DEV up|down;
SH_LINK_STATE = (
    'f=$(ip -o link show dev "$1" 2>/dev/null) || exit 1; f=${f#*<}; f=${f%%>*}; '
    'case ",$f," in *,UP,*) [ "$2" = up ];; *) [ "$2" = down ];; esac'
)
# an IPv4 address with its prefix length is on the device: DEV ADDRESS/PREFIXLEN.
SH_HAS_ADDRESS = 'ip -o -4 addr show dev "$1" 2>/dev/null | grep -qF -- " inet $2 "'
SH_RMDIR_IF_EMPTY = '[ -d "$1" ] || exit 0; exec rmdir --ignore-fail-on-non-empty "$1"'
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
# Flows check: BRIDGE COOKIE PORT COUNT [TEXT N]...: COUNT flows of the cookie on the port as it is now
# (a port added again has another OpenFlow number), and each TEXT (e.g. "dl_src=MAC,", "=10.60.7.10,") in
# exactly N of them. Every field of a dumped flow is made to end with "," so that an address is never
# found inside a longer one (10.60.7.10 in 10.60.7.100).
SH_OFCTL_FLOWS_CHECK = (
    'f=$(ovs-ofctl dump-flows "$1" "cookie=$2/-1,in_port=$3" --no-stats 2>/dev/null) || exit 1; '
    'f=$(printf "%s\\n" "$f" | grep priority= | sed "s/ actions=/,actions=/"); '
    '[ "$(printf "%s\\n" "$f" | grep -c priority=)" = "$4" ] || exit 1; shift 4; '
    'while [ $# -gt 1 ]; do [ "$(printf "%s\\n" "$f" | grep -cF -- "$1")" = "$2" ] || exit 1; shift 2; done'
)
# A file holding exactly the given lines, written whole (temporary file, then rename) with mode 0644:
# FILE LINE... / the check: FILE LINE... (same content).
SH_WRITE_LINES = 'f=$1; shift; printf "%s\\n" "$@" > "$f.tmp" && chmod 0644 "$f.tmp" && exec mv -f "$f.tmp" "$f"'
SH_SAME_LINES = 'f=$1; shift; [ -f "$f" ] && printf "%s\\n" "$@" | cmp -s - "$f"'
# VLAN 400's dnsmasq, shared by every slice, serves the union of the reservation files of a directory
# (one file per slice, lines MAC,IP), given as --dhcp-host arguments (parsed while dnsmasq is still root:
# no file of ours needs to be readable by its unprivileged user). MODE PIDFILE HOSTSDIR LEASES DNSMASQ-ARGV...
# - check: exit 0 when dnsmasq (of this pid file) runs with exactly those reservations;
# - run: if not, stop it, drop from the leases file every lease that is not a reservation (a released
#   address, or one leased before, must not block the reservation now made for another MAC), start it;
# - leave: the same as run, but only when dnsmasq runs (a slice left: its reservations go, nothing starts).
# The leases file survives the restart, so the other slices' guests keep their leases.
SH_DNSMASQ_SYNC = (
    "m=$1; f=$2; d=$3; l=$4; shift 4; "
    'want=$(cat "$d"/* 2>/dev/null | sed -n "s/^\\(..*\\)$/--dhcp-host=\\1/p" | sort); '
    'p=$(cat "$f" 2>/dev/null); case "$p" in ""|*[!0-9]*) p=0;; esac; '
    'ours() { tr "\\000" "\\n" < "/proc/$p/cmdline" 2>/dev/null | grep -qF -- "$f"; }; '
    'if ours && [ "$(tr "\\000" "\\n" < "/proc/$p/cmdline" | grep "^--dhcp-host=" | sort)" = "$want" ]; '
    "then exit 0; fi; "
    '[ "$m" = check ] && exit 1; '
    'if ours; then kill "$p" 2>/dev/null; i=0; while ours && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; '
    'ours && kill -9 "$p"; elif [ "$m" = leave ]; then exit 0; fi; rm -f "$f"; '
    'if [ -f "$l" ]; then printf "%s\\n" "$want" | sed "s/^--dhcp-host=//" | '
    'awk \'NR==FNR {k[tolower($0)]=1; next} (tolower($2) "," $3) in k\' - "$l" > "$l.tmp" && '
    'mv -f "$l.tmp" "$l" || exit 1; fi; '
    'for h in $want; do set -- "$@" "$h"; done; exec "$@"'
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
# Leases: TIMEOUT, then per NIC five arguments LEASEFILE MAC RESERVED(or -) wait|read NAME. Wait (TIMEOUT s,
# at most one more) until every "wait" NIC has a lease, then print "lease MAC IP|-" for every NIC ("read" NICs,
# of guests left running, are only read). A lease other than the NIC's reservation fails, naming the NIC.
SH_WAIT_LEASES = (
    'leased() { awk -v m="$2" \'tolower($2)==m {a=$3} END {print a}\' "$1" 2>/dev/null; }; '
    'due() { n=0; while [ $# -ge 5 ]; do if [ "$4" = wait ] && [ -z "$(leased "$1" "$2")" ]; then n=$((n+1)); fi; '
    "shift 5; done; echo $n; }; "
    # Whole seconds: "+ 1" makes a wait of t last at least t s (at most t + 1), wherever in a second it starts.
    "t=$1; shift; end=$(( $(date +%s) + t + 1 )); "
    'while [ "$(due "$@")" -gt 0 ] && [ "$(date +%s)" -lt "$end" ]; do sleep 1; done; '
    'bad=0; while [ $# -ge 5 ]; do a=$(leased "$1" "$2"); echo "lease $2 ${a:--}"; '
    'if [ -n "$a" ] && [ "$3" != - ] && [ "$a" != "$3" ]; then '
    'echo "$5 ($2) got $a, not its reservation $3"; bad=1; fi; shift 5; done; exit $bad'
)
SH_CONSOLE_TAIL = '[ -r "$1" ] || { echo "(no console log yet)"; exit 0; }; exec tail -c "$2" "$1"'


def sh(program: str, name: str, *args: str) -> tuple[str, ...]:
    """An argv that runs a fixed shell program with positional arguments."""
    return ("sh", "-c", program, name, *args)


def not_(argv: Sequence[str]) -> tuple[str, ...]:
    """A check that succeeds when ``argv`` fails (e.g. "the link is gone")."""
    return sh(SH_NOT, "sp-not", *argv)


def is_dir(path: str) -> tuple[str, ...]:
    """A check: the directory exists."""
    return sh(SH_IS_DIR, "sp-is-dir", path)


def link_state(dev: str, state: str) -> tuple[str, ...]:
    """A check: the link is administratively ``state`` ("up" or "down")."""
    return sh(SH_LINK_STATE, "sp-link-state", dev, state)


def has_address(dev: str, cidr: str) -> tuple[str, ...]:
    """A check: the device holds the IPv4 address ``cidr`` (address/prefix length)."""
    return sh(SH_HAS_ADDRESS, "sp-has-address", dev, cidr)
