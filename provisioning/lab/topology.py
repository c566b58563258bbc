"""The shape of the local lab: hosts, names, addresses and where its files live. Pure data.

Everything the lab creates is named here, so that ``lab down`` (and the stale
clean-up at the start of ``lab up``) removes exactly what ``lab up`` made and
nothing else.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

# Root-namespace bridges. The management bridge holds the portal's side
# (MGMT_GATEWAY); the underlay bridge forwards 802.1Q frames untouched
# (vlan_filtering 0) like the physical network between real hosts.
MGMT_BRIDGE = "sp-lab-mgmt"
UNDERLAY_BRIDGE = "sp-lab-under"
MGMT_NETWORK = ipaddress.IPv4Network("192.168.77.0/24")
MGMT_GATEWAY = MGMT_NETWORK.network_address + 1
UNDERLAY_MTU = 1600  # room for the 802.1Q tag (and more) above the guests' 1500

# Interface names inside a host namespace. Deliberately not eth0/eth1/ens3 so
# they never collide with a network node uplink name an operator chooses.
HOST_MGMT_IF = "lab-mgmt"
HOST_TRUNK_IF = "lab-trunk"

# The fake internet: a namespace behind the network node's uplink (TEST-NET-3).
INTERNET_NAMESPACE = "internet"
INTERNET_IF = "inet0"
INTERNET_NETWORK = ipaddress.IPv4Network("203.0.113.0/24")
INTERNET_ADDRESS = INTERNET_NETWORK.network_address + 1  # "a host on the internet"
NETNODE_UPLINK_ADDRESS = INTERNET_NETWORK.network_address + 2
DEFAULT_UPLINK = "ens3"

# Namespaces the provisioning engine makes on the network node. /run/netns is
# shared by every lab host, so these names are global and the lab cleans them up.
DHCP_NAMESPACE_PREFIX = "ns-dhcp-vlan"

BRIDGE = "br-int"
OVS_SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")
SSHD_RUN_DIR = Path("/run/sshd")  # sshd's privilege-separation directory; must exist
KNOWN_HOSTS_MARKER = "slice-portal-lab"  # comment on the lines `lab up` writes


@dataclass(frozen=True)
class LabHost:
    """One host of the lab: a network namespace with its own OVS and sshd."""

    name: str
    role: str  # provisioning.models.Host.Role value
    number: int  # last octet of its management address
    vcpus: int
    ram_mib: int

    @property
    def namespace(self) -> str:
        return self.name

    @property
    def management_address(self) -> ipaddress.IPv4Address:
        return MGMT_NETWORK.network_address + self.number

    @property
    def mgmt_veth(self) -> str:
        """Root-namespace end of the management veth (``spm-worker1``)."""
        return f"spm-{self.name}"[:15]

    @property
    def underlay_veth(self) -> str:
        """Root-namespace end of the underlay veth (``spu-worker1``)."""
        return f"spu-{self.name}"[:15]


HOSTS: tuple[LabHost, ...] = (
    LabHost("worker1", "worker", 11, vcpus=2, ram_mib=2048),
    LabHost("worker2", "worker", 12, vcpus=2, ram_mib=2048),
    LabHost("netnode", "network", 13, vcpus=1, ram_mib=512),
)
NETWORK_NODE = next(h for h in HOSTS if h.role == "network")


def host(name: str) -> LabHost:
    """The lab host called ``name``; KeyError if there is none."""
    for item in HOSTS:
        if item.name == name:
            return item
    raise KeyError(name)


def lab_namespaces() -> tuple[str, ...]:
    """The namespaces `lab up` itself creates."""
    return (*(h.namespace for h in HOSTS), INTERNET_NAMESPACE)


def is_deploy_namespace(name: str) -> bool:
    """True for a namespace the provisioning engine creates on the network node."""
    return name.startswith(DHCP_NAMESPACE_PREFIX) and name[len(DHCP_NAMESPACE_PREFIX) :].isdigit()


@dataclass(frozen=True)
class LabPaths:
    """Where the lab keeps its files, all under ``LAB_DIR``.

    ``images/`` (the guest kernel and initramfs) is a cache that survives
    ``lab down``; everything else is removed by it.
    """

    root: Path

    @property
    def record(self) -> Path:
        """What `lab up` made that is not named by a constant (e.g. the uplink name)."""
        return self.root / "lab.json"

    @property
    def ssh_dir(self) -> Path:
        return self.root / "ssh"

    @property
    def client_key(self) -> Path:
        """The portal's private key for the lab hosts (``Host.ssh_key_path``)."""
        return self.ssh_dir / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        """The lab hosts' SSH host keys, written by ``lab up`` (settings.PROVISIONING_KNOWN_HOSTS lists it)."""
        return self.ssh_dir / "known_hosts"

    @property
    def hosts_dir(self) -> Path:
        return self.root / "hosts"

    @property
    def images_dir(self) -> Path:
        return self.root / "images"

    def host_dir(self, name: str) -> Path:
        return self.hosts_dir / name

    def ovs_dir(self, name: str) -> Path:
        """The host's OVS run, db and log directory (its ``OVS_RUNDIR``)."""
        return self.host_dir(name) / "ovs"

    def sshd_dir(self, name: str) -> Path:
        return self.host_dir(name) / "sshd"

    def state_dir(self, name: str) -> Path:
        """The host's ``Host.state_dir``: what the portal leaves on it (VMs, DHCP)."""
        return self.host_dir(name) / "state"

    def ovs_db_socket(self, name: str) -> Path:
        return self.ovs_dir(name) / "db.sock"
