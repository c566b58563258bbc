"""Link subnets: one /24 per VLAN from the supernet, never overlapping (pure)."""

import ipaddress
import itertools

import pytest
from django.conf import settings

from slices import ipam
from slices.models import VLAN_ID_MAX, VLAN_ID_MIN


def test_no_two_vlans_subnets_overlap_over_the_whole_range():
    nets = {vlan: ipam.vlan_network(vlan, settings.SLICE_LINK_SUPERNET).subnet for vlan in range(1, 4095)}
    assert len(nets) == 4094
    # /24s overlap only if they are equal; sorted adjacent networks must not overlap either.
    assert len(set(nets.values())) == 4094
    ordered = sorted(nets.values())
    for left, right in itertools.pairwise(ordered):
        assert not left.overlaps(right), (left, right)
    assert all(net.prefixlen == 24 for net in nets.values())


def test_internet_vlan_is_fixed_and_outside_the_link_supernet():
    net = ipam.vlan_network(400, settings.SLICE_LINK_SUPERNET)
    assert str(net.subnet) == "10.60.7.0/24"
    assert str(net.gateway) == "10.60.7.1"
    assert not ipaddress.IPv4Network(settings.SLICE_LINK_SUPERNET).overlaps(net.subnet)


def test_link_vlan_addressing():
    net = ipam.vlan_network(101, "10.64.0.0/12")
    assert str(net.subnet) == "10.64.101.0/24"
    assert str(net.gateway) == "10.64.101.1"
    assert str(net.dhcp_server) == "10.64.101.2"
    assert (str(net.dhcp_first), str(net.dhcp_last)) == ("10.64.101.10", "10.64.101.250")
    assert not (net.dhcp_first <= net.dhcp_server <= net.dhcp_last)
    assert not (net.dhcp_first <= net.gateway <= net.dhcp_last)
    assert [str(net.endpoint_address(e)) for e in (0, 1)] == ["10.64.101.10", "10.64.101.11"]
    assert str(ipam.vlan_network(3999, "10.64.0.0/12").subnet) == "10.79.159.0/24"


def test_never_vlan_modulo_256():
    # VLAN 100 and 356 would share 10.x.100.0/24 under a `vlan % 256` scheme.
    a = ipam.vlan_network(100, settings.SLICE_LINK_SUPERNET).subnet
    b = ipam.vlan_network(356, settings.SLICE_LINK_SUPERNET).subnet
    assert not a.overlaps(b)


@pytest.mark.parametrize(
    ("supernet", "ok"),
    [("10.64.0.0/12", True), ("10.64.0.0/13", False), ("10.48.0.0/12", False), ("10.0.0.0/8", False)],
)
def test_check_supernet(supernet, ok):
    # /13 holds 2048 /24s (< VLAN 4094); 10.48.0.0/12 and 10.0.0.0/8 contain 10.60.7.0/24.
    if ok:
        ipam.check_supernet(supernet, VLAN_ID_MAX)
    else:
        with pytest.raises(ValueError):
            ipam.check_supernet(supernet, VLAN_ID_MAX)


def test_settings_check_reports_a_bad_range(settings):
    from slices.checks import check_slice_settings

    assert check_slice_settings(None) == []
    settings.SLICE_VLAN_MIN, settings.SLICE_VLAN_MAX = VLAN_ID_MIN - 1, 5000
    settings.SLICE_LINK_SUPERNET = "10.60.0.0/16"
    ids = {e.id for e in check_slice_settings(None)}
    assert ids == {"slices.E001", "slices.E003"}
