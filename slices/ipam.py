"""IP address management for link VLANs and the internet VLAN. Pure functions.

Scheme: the subnet of link VLAN ``v`` is the ``v``-th /24 of the configured
supernet (default ``10.64.0.0/12``, which holds 4096 /24s, one per VLAN id), so
two VLANs never share or overlap a subnet. In each /24:

- ``.1``        gateway (the network node's ``gw_v{vlan}`` port), DHCP option 3
- ``.2``        the DHCP server (``dhcp_v{vlan}`` in ``ns-dhcp-vlan{vlan}``)
- ``.10-.250``  the DHCP range; the link's two ends get reservations ``.10``
                and ``.11`` (by MAC), so addresses are known before deploy.

VLAN 400 (internet) is fixed: ``10.60.7.0/24``, gateway ``10.60.7.1``.
"""

import ipaddress
from dataclasses import dataclass

# The VLAN that carries internet access (NAT on the network node); never a link's.
INTERNET_VLAN = 400
VLAN_ID_MIN, VLAN_ID_MAX = 1, 4094  # 802.1Q usable ids
INTERNET_SUBNET = ipaddress.IPv4Network("10.60.7.0/24")
DNS_SERVER = "8.8.8.8"
GATEWAY_HOST = 1
DHCP_SERVER_HOST = 2
DHCP_FIRST_HOST, DHCP_LAST_HOST = 10, 250


@dataclass(frozen=True)
class VlanNetwork:
    """The addressing of one VLAN: subnet, gateway, DHCP server and range."""

    vlan: int
    subnet: ipaddress.IPv4Network

    def host(self, number: int) -> ipaddress.IPv4Address:
        return self.subnet.network_address + number

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        return self.host(GATEWAY_HOST)

    @property
    def dhcp_server(self) -> ipaddress.IPv4Address:
        return self.host(DHCP_SERVER_HOST)

    @property
    def dhcp_first(self) -> ipaddress.IPv4Address:
        return self.host(DHCP_FIRST_HOST)

    @property
    def dhcp_last(self) -> ipaddress.IPv4Address:
        return self.host(DHCP_LAST_HOST)

    @property
    def netmask(self) -> str:
        return str(self.subnet.netmask)

    @property
    def prefixlen(self) -> int:
        return self.subnet.prefixlen

    def endpoint_address(self, end: int) -> ipaddress.IPv4Address:
        """The reserved address of a link's end 0 (``a``) or 1 (``b``)."""
        return self.host(DHCP_FIRST_HOST + end)


def link_subnet(vlan: int, supernet: str) -> ipaddress.IPv4Network:
    """The /24 of a link VLAN: the ``vlan``-th /24 inside ``supernet``."""
    net = ipaddress.IPv4Network(supernet)
    if net.prefixlen > 24:
        raise ValueError(f"supernet {supernet} is smaller than a /24")
    count = 2 ** (24 - net.prefixlen)
    if not 0 <= vlan < count:
        raise ValueError(f"VLAN {vlan} has no /24 in {supernet} (it holds {count})")
    return ipaddress.IPv4Network((int(net.network_address) + (vlan << 8), 24))


def vlan_network(vlan: int, supernet: str) -> VlanNetwork:
    """The addressing of any VLAN: the internet VLAN's fixed one or a link's."""
    if vlan == INTERNET_VLAN:
        return VlanNetwork(vlan, INTERNET_SUBNET)
    return VlanNetwork(vlan, link_subnet(vlan, supernet))


def check_supernet(supernet: str, vlan_max: int) -> None:
    """Refuse a supernet that cannot hold every VLAN or that overlaps VLAN 400's subnet."""
    net = ipaddress.IPv4Network(supernet)
    if 2 ** (24 - net.prefixlen) <= vlan_max:
        raise ValueError(f"SLICE_LINK_SUPERNET {supernet} holds fewer /24s than VLAN {vlan_max} needs")
    if net.overlaps(INTERNET_SUBNET):
        raise ValueError(f"SLICE_LINK_SUPERNET {supernet} overlaps the internet subnet {INTERNET_SUBNET}")
