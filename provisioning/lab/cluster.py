"""Bring the lab's hosts up and down, and report their health. No Django here.

``up`` builds, in about a second:

- per host (``worker1``, ``worker2``, ``netnode``) a network namespace with a
  management veth (``lab-mgmt``) into the root namespace's management bridge,
  an underlay veth (``lab-trunk``) into the underlay bridge, its own
  ``ovsdb-server`` + ``ovs-vswitchd`` (userspace datapath) with ``br-int`` and
  the underlay veth as an untagged (trunk) port, and its own key-only ``sshd``
  whose sessions see that host's OVS through ``OVS_RUNDIR``;
- the ``internet`` namespace behind the network node's uplink;
- the host keys in the lab's own known-hosts file, ``LAB_DIR/ssh/known_hosts``:
  the lab is machine-wide, so its host keys are too — every checkout on the
  machine finds them there (``settings.PROVISIONING_KNOWN_HOSTS`` lists that
  file by default), whichever checkout brought the lab up.

``down`` removes every namespace, process, link and file the lab made —
including what deploys left on the lab hosts (QEMU guests, DHCP namespaces) —
and ``up`` starts with the same clean-up, so a crashed lab never gets in the
way of the next one.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from provisioning.lab import system
from provisioning.lab.hostkeys import remove_known_hosts, write_known_hosts
from provisioning.lab.system import LabCommandError, run
from provisioning.lab.topology import (
    BRIDGE,
    DEFAULT_UPLINK,
    HOST_MGMT_IF,
    HOST_TRUNK_IF,
    HOSTS,
    INTERNET_ADDRESS,
    INTERNET_IF,
    INTERNET_NAMESPACE,
    INTERNET_NETWORK,
    KNOWN_HOSTS_MARKER,
    MGMT_BRIDGE,
    MGMT_GATEWAY,
    MGMT_NETWORK,
    NETNODE_UPLINK_ADDRESS,
    NETWORK_NODE,
    OVS_SCHEMA,
    SSHD_RUN_DIR,
    UNDERLAY_BRIDGE,
    UNDERLAY_MTU,
    LabHost,
    LabPaths,
    is_deploy_namespace,
    lab_namespaces,
)

logger = logging.getLogger(__name__)

SSH_PORT = 22
RESERVED_IFNAMES = {HOST_MGMT_IF, HOST_TRUNK_IF, "lo", BRIDGE}
# Unix socket paths are limited to 108 bytes; the longest the lab and the
# engine make is {state_dir}/vms/vm{id}/console.sock.
MAX_LAB_DIR_LENGTH = 60


# --- helpers ----------------------------------------------------------------------------


def ovs_env(paths: LabPaths, name: str) -> dict[str, str]:
    """Environment that points OVS tools and daemons at host ``name``'s own instance."""
    directory = str(paths.ovs_dir(name))
    return {"OVS_RUNDIR": directory, "OVS_DBDIR": directory, "OVS_LOGDIR": directory}


def vsctl(paths: LabPaths, name: str, *args: str, check: bool = True, timeout: int = 10):
    """Run ``ovs-vsctl`` against host ``name``'s OVS."""
    db = f"unix:{paths.ovs_db_socket(name)}"
    return run(
        ["ovs-vsctl", f"--db={db}", f"--timeout={timeout}", *args],
        env=ovs_env(paths, name),
        check=check,
        timeout=timeout + 5,
    )


def _lab_pid_files(paths: LabPaths) -> list[Path]:
    """Every pid file under the lab's host directories (daemons, guests, dnsmasq)."""
    if not paths.hosts_dir.is_dir():
        return []
    return sorted(p for p in paths.hosts_dir.rglob("*.pid") if p.is_file())


def read_record(paths: LabPaths) -> dict:
    try:
        return json.loads(paths.record.read_text())
    except (OSError, ValueError):
        return {}


def is_up(paths: LabPaths) -> bool:
    """Cheap check: every lab namespace exists and every host's daemons of this LAB_DIR are alive."""
    if not all(system.namespace_exists(ns) for ns in lab_namespaces()):
        return False
    root = str(paths.root)
    for host in HOSTS:
        for pid_file in (
            paths.ovs_dir(host.name) / "ovsdb-server.pid",
            paths.ovs_dir(host.name) / "ovs-vswitchd.pid",
            paths.sshd_dir(host.name) / "sshd.pid",
        ):
            if not system.pid_from_file(pid_file, must_mention=root):
                return False
    return True


# --- down -----------------------------------------------------------------------------


def _stale_namespaces() -> list[str]:
    mine = set(lab_namespaces())
    return [ns for ns in system.namespaces() if ns in mine or is_deploy_namespace(ns)]


_LAB_PATH_RE = re.compile(r"(/[^\s=]+?)/hosts/(?:" + "|".join(h.name for h in HOSTS) + r")/(?:ovs|sshd|state)/")


def running_lab_roots() -> set[Path]:
    """The LAB_DIRs of the labs whose processes run in the lab namespaces right now."""
    roots: set[Path] = set()
    for ns in lab_namespaces():
        if not system.namespace_exists(ns):
            continue
        for pid in system.namespace_pids(ns):
            if match := _LAB_PATH_RE.search(system.cmdline(pid)):
                roots.add(Path(match.group(1)))
    return roots


def check_not_foreign(paths: LabPaths) -> None:
    """Refuse to touch a lab that another LAB_DIR runs: the namespace names are global to the machine."""
    others = sorted(str(root) for root in running_lab_roots() if root != paths.root)
    if others:
        raise LabCommandError(
            f"a lab under LAB_DIR={others[0]} is running on this machine (namespaces are global); "
            f"take it down with `LAB_DIR={others[0]} manage.py lab down`, or pass --force to take it over"
        )


def clean(paths: LabPaths, *, keep_files: bool = False) -> list[str]:
    """Remove everything a lab (this one, or a crashed earlier one) left behind.

    Order matters: guests and dnsmasq first (by their pid files, then whatever
    still runs in a lab namespace), then the hosts' sshd and OVS, then the
    namespaces, root-side links and files. Returns what was removed, for the
    command's output.
    """
    removed: list[str] = []
    lab_root = str(paths.root)

    # 1. Processes recorded in the lab's pid files: guests and dnsmasq before the
    #    hosts' own daemons, which go last so the OVS ports vanish with them.
    pid_files = _lab_pid_files(paths)
    daemons = [p for p in pid_files if p.parent.name in ("ovs", "sshd")]
    workload = [p for p in pid_files if p not in daemons]
    for group in (workload, daemons):
        pids = [pid for p in group if (pid := system.pid_from_file(p, must_mention=lab_root))]
        if pids:
            system.terminate(pids)
            removed.append(f"{len(pids)} process(es) from pid files")

    # 2. Anything else still running inside a lab namespace (started by hand or by
    #    a deploy whose pid file was lost) — found by namespace, never by name.
    namespaces = _stale_namespaces()
    stragglers = [pid for ns in namespaces for pid in system.namespace_pids(ns)]
    if stragglers:
        system.terminate(stragglers)
        removed.append(f"{len(stragglers)} process(es) inside lab namespaces")

    # 3. Namespaces (their veths, TAPs, OVS ports, iptables rules and sysctls go with them).
    for ns in namespaces:
        run(["ip", "netns", "del", ns], check=False)
        removed.append(f"namespace {ns}")

    # 4. Root-namespace links and bridges.
    for host in HOSTS:
        for link in (host.mgmt_veth, host.underlay_veth):
            if system.link_exists(link):
                system.delete_link(link)
                removed.append(f"link {link}")
    for bridge in (MGMT_BRIDGE, UNDERLAY_BRIDGE):
        if system.link_exists(bridge):
            system.delete_link(bridge)
            removed.append(f"bridge {bridge}")

    # 5. Files (the lab's known-hosts file is in LAB_DIR/ssh). A lab brought up by an
    #    earlier version wrote its host keys into a checkout's file, named in its record.
    if legacy := read_record(paths).get("known_hosts"):
        remove_known_hosts(Path(legacy))
    # /run/sshd stays even if `lab up` created it: any other sshd on the machine (the
    # system's, a test's) needs it for every new connection.
    if not keep_files:
        for path in (paths.hosts_dir, paths.ssh_dir):
            if path.exists():
                shutil.rmtree(path)
                removed.append(f"files {path}")
        paths.record.unlink(missing_ok=True)
    return removed


def down(paths: LabPaths, *, force: bool = False) -> list[str]:
    """Tear the lab down completely (the image cache in ``images/`` stays)."""
    if not force:
        check_not_foreign(paths)
    return clean(paths)


# --- up -------------------------------------------------------------------------------


def _ensure_client_key(paths: LabPaths) -> None:
    paths.ssh_dir.mkdir(parents=True, exist_ok=True)
    paths.ssh_dir.chmod(0o700)
    if not paths.client_key.exists():
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", KNOWN_HOSTS_MARKER, "-f", str(paths.client_key)])


def _root_bridges() -> None:
    run(["ip", "link", "add", MGMT_BRIDGE, "type", "bridge"])
    system.disable_ipv6(MGMT_BRIDGE)
    run(["ip", "addr", "add", f"{MGMT_GATEWAY}/{MGMT_NETWORK.prefixlen}", "dev", MGMT_BRIDGE])
    run(["ip", "link", "set", MGMT_BRIDGE, "up"])
    # VLAN filtering stays off (the default; some kernels cannot even set it):
    # tagged frames are forwarded untouched, like a plain switch.
    run(["ip", "link", "add", UNDERLAY_BRIDGE, "mtu", str(UNDERLAY_MTU), "type", "bridge"])
    system.disable_ipv6(UNDERLAY_BRIDGE)
    run(["ip", "link", "set", UNDERLAY_BRIDGE, "up"])


def _namespace(name: str) -> None:
    run(["ip", "netns", "add", name])
    # IPv6 off in lab namespaces: no router solicitations or MLD noise on the
    # underlay; the plans use IPv4 only.
    run(["sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"], netns=name)
    run(["ip", "link", "set", "lo", "up"], netns=name)


def _host_links(host: LabHost) -> None:
    ns = host.namespace
    run(["ip", "link", "add", host.mgmt_veth, "type", "veth", "peer", "name", HOST_MGMT_IF, "netns", ns])
    system.disable_ipv6(host.mgmt_veth)
    run(["ip", "link", "set", host.mgmt_veth, "master", MGMT_BRIDGE, "up"])
    run(["ip", "addr", "add", f"{host.management_address}/{MGMT_NETWORK.prefixlen}", "dev", HOST_MGMT_IF], netns=ns)
    run(["ip", "link", "set", HOST_MGMT_IF, "up"], netns=ns)

    mtu = str(UNDERLAY_MTU)
    run(
        [
            "ip",
            "link",
            "add",
            host.underlay_veth,
            "mtu",
            mtu,
            "type",
            "veth",
            "peer",
            "name",
            HOST_TRUNK_IF,
            "mtu",
            mtu,
            "netns",
            ns,
        ]
    )
    system.disable_ipv6(host.underlay_veth)
    # Checksum trap (LAB-NOTES): no partial checksums on anything feeding OVS's userspace datapath.
    run(["ethtool", "-K", host.underlay_veth, "tx", "off"])
    run(["ethtool", "-K", HOST_TRUNK_IF, "tx", "off"], netns=ns)
    run(["ip", "link", "set", host.underlay_veth, "master", UNDERLAY_BRIDGE, "up"])
    run(["ip", "link", "set", HOST_TRUNK_IF, "up"], netns=ns)


def _ovs_daemon(paths: LabPaths, host: LabHost, program: str, *args: str) -> None:
    """An OVS daemon of this host: in its namespace, pid and log files in its OVS dir, detached."""
    directory = paths.ovs_dir(host.name)
    pid, logfile = directory / f"{program}.pid", directory / f"{program}.log"
    argv = [program, *args, f"--pidfile={pid}", f"--log-file={logfile}", "--detach", "-vconsole:off"]
    run(argv, netns=host.namespace, env=ovs_env(paths, host.name))


def start_ovs_daemons(paths: LabPaths, host: LabHost) -> None:
    """Start the host's ``ovsdb-server`` (on its existing ``conf.db``) and ``ovs-vswitchd``.

    What a host's boot does: the database keeps bridges and ports, ``ovs-vswitchd``
    makes the datapath, the bridges' internal ports and opens the NICs again.
    Absolute ``unix:`` paths (relative ones would resolve against OVS_RUNDIR); no
    ``ovs-ctl`` (it loads the kernel module) and no ``--mlockall``.
    """
    directory = paths.ovs_dir(host.name)
    socket_path = paths.ovs_db_socket(host.name)
    _ovs_daemon(
        paths,
        host,
        "ovsdb-server",
        str(directory / "conf.db"),
        f"--remote=punix:{socket_path}",
        "--remote=db:Open_vSwitch,Open_vSwitch,manager_options",
    )
    # `init` is idempotent (a distribution's OVS start script runs it at every boot too).
    vsctl(
        paths,
        host.name,
        "--no-wait",
        "init",
        "--",
        "set",
        "Open_vSwitch",
        ".",
        f"external-ids:system-id={host.name}",
        f"external-ids:hostname={host.name}",
    )
    _ovs_daemon(paths, host, "ovs-vswitchd", f"unix:{socket_path}")


def _start_ovs(paths: LabPaths, host: LabHost) -> None:
    directory = paths.ovs_dir(host.name)
    directory.mkdir(parents=True, exist_ok=True)
    db = directory / "conf.db"
    db.unlink(missing_ok=True)
    run(["ovsdb-tool", "create", str(db), str(OVS_SCHEMA)], env=ovs_env(paths, host.name))
    start_ovs_daemons(paths, host)
    prepare_bridge(paths, host)


def prepare_bridge(paths: LabPaths, host: LabHost) -> None:
    """Host preparation, not the deploy plan: br-int on the userspace datapath (the one lab
    difference from production) and the underlay NIC as a trunk (no tag: it carries every
    VLAN, like the physical NIC of a real host). Idempotent."""
    vsctl(
        paths,
        host.name,
        "--may-exist",
        "add-br",
        BRIDGE,
        "--",
        "set",
        "bridge",
        BRIDGE,
        "datapath_type=netdev",
        "fail_mode=standalone",
        "--",
        "--may-exist",
        "add-port",
        BRIDGE,
        HOST_TRUNK_IF,
    )


SSHD_CONFIG = """\
# Written by `manage.py lab up` for lab host {name}; removed by `lab down`.
Port {port}
ListenAddress {address}
HostKey {host_key}
PidFile {pid_file}
AuthorizedKeysFile {authorized_keys}
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
PrintMotd no
MaxStartups 64:30:128
MaxSessions 64
# A plain `ovs-vsctl` / `ovs-appctl` in a session reaches THIS host's OVS.
SetEnv OVS_RUNDIR={ovs_dir} OVS_DBDIR={ovs_dir} OVS_LOGDIR={ovs_dir} SLICE_PORTAL_LAB_HOST={name}
"""


def _start_sshd(paths: LabPaths, host: LabHost) -> str:
    """Start the host's sshd; return its public host key line ("type base64")."""
    directory = paths.sshd_dir(host.name)
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    host_key = directory / "ssh_host_ed25519_key"
    if not host_key.exists():
        run(
            [
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                f"{host.name}@{KNOWN_HOSTS_MARKER}",
                "-f",
                str(host_key),
            ]
        )
    authorized = directory / "authorized_keys"
    shutil.copyfile(paths.client_key.with_suffix(".pub"), authorized)
    authorized.chmod(0o600)
    config = directory / "sshd_config"
    config.write_text(
        SSHD_CONFIG.format(
            name=host.name,
            port=SSH_PORT,
            address=host.management_address,
            host_key=host_key,
            pid_file=directory / "sshd.pid",
            authorized_keys=authorized,
            ovs_dir=paths.ovs_dir(host.name),
        )
    )
    run(["/usr/sbin/sshd", "-f", str(config), "-E", str(directory / "sshd.log")], netns=host.namespace)
    key_type, key = host_key.with_suffix(".pub").read_text().split()[:2]
    return f"{key_type} {key}"


def stop_sshd(paths: LabPaths, host: LabHost) -> list[int]:
    """Make a host unreachable: stop its sshd and the SSH sessions running inside it (by PID)."""
    pids = []
    listener = system.pid_from_file(paths.sshd_dir(host.name) / "sshd.pid", must_mention=str(paths.root))
    if listener:
        pids.append(listener)
    for pid in system.namespace_pids(host.namespace):
        if system.cmdline(pid).startswith("sshd:"):
            pids.append(pid)
    system.terminate(pids)
    return pids


def start_sshd(paths: LabPaths, host: LabHost) -> None:
    """(Re)start a host's sshd with its existing host key; wait until it answers."""
    _start_sshd(paths, host)
    system.wait_for(lambda: _ssh_port_open(str(host.management_address)), timeout=10, what=f"sshd on {host.name}")


def _internet(uplink: str) -> None:
    """The ``internet`` namespace behind the network node's uplink, default route via it."""
    netnode = NETWORK_NODE.namespace
    _namespace(INTERNET_NAMESPACE)
    run(
        ["ip", "link", "add", uplink, "type", "veth", "peer", "name", INTERNET_IF, "netns", INTERNET_NAMESPACE],
        netns=netnode,
    )
    prefix = INTERNET_NETWORK.prefixlen
    run(["ip", "addr", "add", f"{NETNODE_UPLINK_ADDRESS}/{prefix}", "dev", uplink], netns=netnode)
    run(["ip", "link", "set", uplink, "up"], netns=netnode)
    run(["ip", "addr", "add", f"{INTERNET_ADDRESS}/{prefix}", "dev", INTERNET_IF], netns=INTERNET_NAMESPACE)
    run(["ip", "link", "set", INTERNET_IF, "up"], netns=INTERNET_NAMESPACE)
    # NAT'd replies cross the network node into OVS (gw_v400): full checksums from the start.
    run(["ethtool", "-K", INTERNET_IF, "tx", "off"], netns=INTERNET_NAMESPACE)
    run(["ethtool", "-K", uplink, "tx", "off"], netns=netnode)
    run(["ip", "route", "add", "default", "via", str(INTERNET_ADDRESS)], netns=netnode)


def _build_host(paths: LabPaths, host: LabHost) -> str:
    _namespace(host.namespace)
    _host_links(host)
    paths.state_dir(host.name).mkdir(parents=True, exist_ok=True)
    _start_ovs(paths, host)
    return _start_sshd(paths, host)


def _ssh_port_open(address: str) -> bool:
    try:
        with socket.create_connection((address, SSH_PORT), timeout=0.5) as sock:
            sock.settimeout(1)
            return sock.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def check_uplink(uplink: str) -> None:
    if uplink in RESERVED_IFNAMES or len(uplink) > 15 or not uplink:
        raise LabCommandError(f"the network node's uplink cannot be named {uplink!r} in the lab")


def check_lab_dir(paths: LabPaths) -> None:
    if len(str(paths.root)) > MAX_LAB_DIR_LENGTH:
        raise LabCommandError(
            f"LAB_DIR {paths.root} is longer than {MAX_LAB_DIR_LENGTH} characters: guest console "
            "sockets under it would exceed the 108-byte unix socket limit"
        )


def up(paths: LabPaths, *, uplink: str = DEFAULT_UPLINK, force: bool = False) -> dict[str, float]:
    """Clean up leftovers, then build the lab. Returns timings (seconds) by phase.

    Refuses (unless ``force``) when a lab under another LAB_DIR is running.
    """
    check_uplink(uplink)
    check_lab_dir(paths)
    if not force:
        check_not_foreign(paths)
    timings: dict[str, float] = {}
    start = time.monotonic()
    clean(paths, keep_files=True)
    # Files of a previous lab go, except the client key (users may have copied
    # it) and the image cache.
    if paths.hosts_dir.exists():
        shutil.rmtree(paths.hosts_dir)
    timings["clean"] = time.monotonic() - start

    SSHD_RUN_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
    paths.root.mkdir(parents=True, exist_ok=True)
    paths.record.write_text(json.dumps({"uplink": uplink}))
    _ensure_client_key(paths)
    _root_bridges()
    with ThreadPoolExecutor(max_workers=len(HOSTS)) as pool:
        host_keys = dict(zip(HOSTS, pool.map(lambda h: _build_host(paths, h), HOSTS), strict=True))
    _internet(uplink)
    timings["build"] = time.monotonic() - start - timings["clean"]

    write_known_hosts(paths.known_hosts, {str(h.management_address): key for h, key in host_keys.items()})
    for host in HOSTS:
        system.wait_for(
            lambda h=host: _ssh_port_open(str(h.management_address)), timeout=10, what=f"sshd on {host.name}"
        )
    timings["total"] = time.monotonic() - start
    return timings
