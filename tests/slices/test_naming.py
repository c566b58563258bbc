"""Host interface names and the name pattern (pure)."""

import pytest

from slices.naming import (
    IFNAMSIZ,
    MAX_DATA_INTERFACES,
    dhcp_namespace,
    dhcp_port_name,
    gateway_port_name,
    iface_index,
    is_valid_name,
    tap_name,
)

from .helpers import HOSTILE_NAMES


def test_tap_name_follows_the_spec_when_it_fits():
    assert tap_name(1002, 1) == "tap_1002_eth1"
    assert tap_name(1, 0) == "tap_1_eth0"
    assert tap_name(99999, 9) == "tap_99999_eth9"  # exactly 15


@pytest.mark.parametrize("vm_id", [100000, 123456, 999999, 10**7, 36**9, 36**10 - 1])
@pytest.mark.parametrize("index", [0, 1, 9, 10, MAX_DATA_INTERFACES])
def test_tap_name_fallback_stays_within_ifnamsiz(vm_id, index):
    name = tap_name(vm_id, index)
    assert len(name) <= IFNAMSIZ
    assert name.isascii() and name.replace("_", "").isalnum()


def test_tap_names_are_unique_over_a_big_sample():
    ids = [
        *range(1, 3000),
        *range(9990, 10010),
        *range(99_000, 130_000),
        *range(10**6, 10**6 + 2000),
        36**9 - 1,
        36**10 - 1,
    ]
    seen: dict[str, tuple[int, int]] = {}
    for vm_id in ids:
        for index in range(MAX_DATA_INTERFACES + 1):
            name = tap_name(vm_id, index)
            assert len(name) <= IFNAMSIZ, name
            assert name not in seen, f"{name} for {(vm_id, index)} and {seen[name]}"
            seen[name] = (vm_id, index)
    assert len(seen) == len(ids) * (MAX_DATA_INTERFACES + 1)


def test_fallback_only_past_fifteen_characters():
    assert tap_name(12345, 10) == "tap_12345_eth10"  # 15: still the spec form
    assert tap_name(100000, 1) == "tap_100000_eth1"  # 15
    assert tap_name(100000, 10) == "tx255s_10"  # tap_100000_eth10 would be 16
    assert tap_name(123456, 1) == "tap_123456_eth1"  # 15
    assert tap_name(1234567, 1) == "txqglj_1"  # tap_1234567_eth1 would be 16
    assert tap_name(1234567, 1) != tap_name(1234567, 10) != tap_name(123456, 10)


def test_tap_name_refuses_ids_it_cannot_name():
    with pytest.raises(ValueError):
        tap_name(36**10, 10)


@pytest.mark.parametrize("vlan", [1, 100, 400, 999, 1000, 3999, 4094])
def test_network_node_names_fit(vlan):
    # OVS ports become kernel interfaces (IFNAMSIZ); a namespace is a file name, not an interface.
    for name in (gateway_port_name(vlan), dhcp_port_name(vlan)):
        assert len(name) <= IFNAMSIZ
    assert dhcp_namespace(vlan) == f"ns-dhcp-vlan{vlan}"
    assert dhcp_port_name(vlan) == f"dhcp_v{vlan}"


def test_iface_index():
    assert iface_index("eth0") == 0
    assert iface_index("eth16") == 16
    for bad in ("eth", "eth01", "eth-1", "ens3", "eth1\n", "ETH1", ""):
        with pytest.raises(ValueError):
            iface_index(bad)


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_names_are_invalid(name):
    assert not is_valid_name(name)


@pytest.mark.parametrize("name", ["a", "vm1", "Web-01", "db_primary", "x" * 32])
def test_good_names_are_valid(name):
    assert is_valid_name(name)
