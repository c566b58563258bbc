"""``lab status``: the health of each lab host, and SSH connections to lab hosts the way the portal makes them."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from . import system
from .cluster import SSH_PORT, read_record, vsctl
from .topology import (
    BRIDGE,
    DEFAULT_UPLINK,
    HOST_TRUNK_IF,
    HOSTS,
    INTERNET_NAMESPACE,
    MGMT_BRIDGE,
    NETWORK_NODE,
    UNDERLAY_BRIDGE,
    LabHost,
    LabPaths,
)


@dataclass
class HostHealth:
    """What `lab status` found on one host."""

    name: str
    checks: dict[str, bool] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return bool(self.checks) and all(self.checks.values())


def ssh_connection(paths: LabPaths, host: LabHost, *, known_hosts: Path | None = None, timeout: int = 5):
    """A Fabric connection to a lab host, the way the portal connects: key only, host key checked.

    ``known_hosts`` defaults to the lab's own file.
    """
    from fabric import Config, Connection
    from paramiko import RejectPolicy

    # No ~/.ssh/config, and never read our stdin (tests and CI have none).
    config = Config(overrides={"load_ssh_configs": False, "run": {"in_stream": False}})
    connection = Connection(
        str(host.management_address),
        user="root",
        port=SSH_PORT,
        config=config,
        connect_timeout=timeout,
        connect_kwargs={"key_filename": str(paths.client_key), "look_for_keys": False, "allow_agent": False},
    )
    connection.client.set_missing_host_key_policy(RejectPolicy())
    connection.client.load_host_keys(str(known_hosts or paths.known_hosts))
    return connection


def _host_health(paths: LabPaths, host: LabHost) -> HostHealth:
    health = HostHealth(host.name)
    checks = health.checks
    checks["namespace"] = system.namespace_exists(host.namespace)
    directory = paths.ovs_dir(host.name)
    lab_root = str(paths.root)
    db_pid = system.pid_from_file(directory / "ovsdb-server.pid", must_mention=lab_root)
    vswitchd_pid = system.pid_from_file(directory / "ovs-vswitchd.pid", must_mention=lab_root)
    checks["ovs"] = bool(db_pid and vswitchd_pid) and (
        vsctl(paths, host.name, "--timeout=2", "show", check=False, timeout=3).returncode == 0
    )
    checks["br-int"] = checks["ovs"] and vsctl(paths, host.name, "br-exists", BRIDGE, check=False).returncode == 0
    trunk = False
    if checks["br-int"]:
        result = vsctl(paths, host.name, "--if-exists", "get", "port", HOST_TRUNK_IF, "tag", check=False)
        trunk = result.returncode == 0 and result.stdout.strip() == "[]"
    checks["trunk"] = trunk
    checks["sshd"] = False
    try:
        with ssh_connection(paths, host) as connection:
            result = connection.run(f"true && ovs-vsctl br-exists {BRIDGE}", hide=True, warn=True, timeout=10)
            checks["sshd"] = result.ok
            if not result.ok:
                health.notes.append(f"ovs-vsctl over SSH exited {result.exited}: {result.stderr.strip()}")
    except Exception as exc:  # any SSH failure is a health finding, not a crash
        health.notes.append(f"ssh: {type(exc).__name__}: {exc}")
    if host is NETWORK_NODE:
        uplink = read_record(paths).get("uplink", DEFAULT_UPLINK)
        checks["uplink"] = system.link_exists(uplink, netns=host.namespace) if checks["namespace"] else False
    return health


def host_status(paths: LabPaths, name: str) -> HostHealth:
    """The health of one lab host (what `lab status` says about it)."""
    return _host_health(paths, next(h for h in HOSTS if h.name == name))


def status(paths: LabPaths) -> list[HostHealth]:
    """The health of every lab host (checked in parallel) and of the shared parts."""
    with ThreadPoolExecutor(max_workers=len(HOSTS)) as pool:
        report = list(pool.map(lambda h: _host_health(paths, h), HOSTS))
    shared = HostHealth("(shared)")
    shared.checks["mgmt bridge"] = system.link_exists(MGMT_BRIDGE)
    shared.checks["underlay bridge"] = system.link_exists(UNDERLAY_BRIDGE)
    shared.checks["internet"] = system.namespace_exists(INTERNET_NAMESPACE)
    report.append(shared)
    return report
