"""A snapshot of everything a deploy can leave on the lab's hosts, to compare before and after.

Per host (read over SSH, as an operator would): OVS ports with their tags and
types, br-int's OpenFlow rules, links, IPv4 addresses and routes, iptables rules (filter and nat), the
forwarding sysctl, and every file under the host's state_dir. Globally: the
named namespaces and the processes running inside the lab's namespaces (the
SSH sessions of the snapshot itself excluded).
"""

from __future__ import annotations

import re

from provisioning.lab import system
from provisioning.lab.topology import HOSTS, is_deploy_namespace, lab_namespaces

SECTION = "=====SP-SECTION "
HOST_SCRIPT = f"""
echo '{SECTION}ports'; ovs-vsctl --format=csv --data=bare --no-headings --columns=name,tag,trunks list port | sort
echo '{SECTION}interfaces'; ovs-vsctl --format=csv --data=bare --no-headings --columns=name,type list interface | sort
echo '{SECTION}flows'; ovs-ofctl dump-flows br-int --no-stats | grep -v '^NXST' | sort
echo '{SECTION}links'; ip -o link show | sed -E 's/^[0-9]+: ([^:@]+).*/\\1/' | sort
echo '{SECTION}addresses'; ip -o -4 addr show | awk '{{print $2, $4}}' | sort
echo '{SECTION}routes'; ip -4 route show | sort
echo '{SECTION}filter'; iptables -S
echo '{SECTION}nat'; iptables -t nat -S
echo '{SECTION}forwarding'; cat /proc/sys/net/ipv4/ip_forward
echo '{SECTION}files'; find "$STATE_DIR" -mindepth 1 2>/dev/null | sort
"""


def _sections(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith(SECTION):
            current = line[len(SECTION) :].strip()
            out[current] = []
        elif current and line.strip():
            out[current].append(line.rstrip())
    return out


def host_state(lab, name: str) -> dict[str, list[str]]:
    """One host's state, read over SSH."""
    state_dir = lab.paths.state_dir(name)
    with lab.connect(name) as connection:
        result = connection.run(f"STATE_DIR={state_dir}; {HOST_SCRIPT}", hide=True, warn=True)
    return _sections(result.stdout)


def processes() -> dict[str, list[str]]:
    """Command lines of the processes in every lab (and deploy-made) namespace, SSH sessions excluded."""
    out: dict[str, list[str]] = {}
    for namespace in system.namespaces():
        if namespace not in lab_namespaces() and not is_deploy_namespace(namespace):
            continue
        lines = []
        for pid in system.namespace_pids(namespace):
            cmdline = system.cmdline(pid).strip()
            if not cmdline or cmdline.startswith("sshd:") or re.match(r"^sshd-session", cmdline):
                continue  # our own SSH session (or one just closing)
            lines.append(cmdline)
        out[namespace] = sorted(lines)
    return out


def snapshot(lab) -> dict:
    """Everything comparable: per-host state, the namespaces, the processes in them."""
    return {
        "hosts": {h.name: host_state(lab, h.name) for h in HOSTS},
        "namespaces": system.namespaces(),
        "processes": processes(),
    }


def diff(before: dict, after: dict) -> list[str]:
    """Human-readable differences between two snapshots ([] when equal)."""
    problems: list[str] = []

    def compare(path: str, a, b) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b)):
                compare(f"{path}/{key}", a.get(key), b.get(key))
        elif isinstance(a, list) and isinstance(b, list):
            added = [x for x in b if x not in a]
            gone = [x for x in a if x not in b]
            if added:
                problems.append(f"{path}: left behind {added}")
            if gone:
                problems.append(f"{path}: missing now {gone}")
        elif a != b:
            problems.append(f"{path}: {a!r} -> {b!r}")

    compare("", before, after)
    return problems
