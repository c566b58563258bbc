"""Names that reach a host: validation patterns and host interface names.

Everything here is pure (no Django models, no I/O) so the provisioning plan
builders can use it too.
"""

import re

# Linux limits interface names to IFNAMSIZ - 1 = 15 visible characters.
IFNAMSIZ = 15

# Slice and VM names reach hosts (QEMU -name, file names, logs). Strict on purpose:
# an ASCII letter first, then letters, digits, '-' or '_'; 1..32 characters.
NAME_MAX_LENGTH = 32
# NAME_PATTERN keeps ^...$ so the UI can reuse it as an HTML ``pattern``; always
# match it with fullmatch() (as is_valid_name does). NAME_STRICT_PATTERN is for
# validators that use search() (Django's RegexValidator): there `$` also matches
# before a trailing newline, so "vm1\n" would pass a ``^...$`` pattern.
NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]{0,31}$"
NAME_STRICT_PATTERN = r"\A[A-Za-z][A-Za-z0-9_-]{0,31}\Z"
NAME_RE = re.compile(NAME_STRICT_PATTERN)
NAME_HELP = (
    "1-32 ASCII characters: a letter first, then letters, digits, '-' or '_' (no spaces, dots or shell characters)."
)

# Guest interface names: eth0 (management) .. eth{MAX_DATA_INTERFACES}.
MAX_DATA_INTERFACES = 16
IFACE_RE = re.compile(r"^eth(0|[1-9][0-9]?)$")
MAC_PATTERN = r"\A([0-9a-f]{2}:){5}[0-9a-f]{2}\Z"  # lower case, as the portal writes them
MAC_RE = re.compile(MAC_PATTERN)


def is_valid_name(value: object) -> bool:
    """True when ``value`` is a safe slice or VM name (see NAME_PATTERN)."""
    return isinstance(value, str) and value.isascii() and bool(NAME_RE.fullmatch(value))


def iface_name(index: int) -> str:
    """The guest interface name for an index: 0 -> ``eth0``."""
    return f"eth{index}"


def iface_index(name: str) -> int:
    """The index of a guest interface name: ``eth3`` -> 3; ValueError otherwise."""
    if not IFACE_RE.fullmatch(name or ""):
        raise ValueError(f"not an interface name: {name!r}")
    return int(name[3:])


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
        if number == 0:
            return out


def tap_name(vm_id: int, index: int) -> str:
    """The TAP device of a VM interface on its worker.

    The spec's form ``tap_{vm_id}_{ifname}`` (VM 1002, eth1 -> ``tap_1002_eth1``)
    is used whenever it fits in IFNAMSIZ (15). Otherwise the deterministic
    fallback ``tx{base36(vm_id)}_{index}`` is used (VM 123456, eth10 ->
    ``tx2n9c_10``): it never collides with the spec form (which starts with
    ``tap_``), is unique per (vm, interface) (base36 has no ``_``, so the split is
    unambiguous) and fits for any id below 36**10 (3.6e15) with up to 99 interfaces.
    """
    name = f"tap_{vm_id}_{iface_name(index)}"
    if len(name) <= IFNAMSIZ:
        return name
    name = f"tx{_base36(vm_id)}_{index}"
    if len(name) > IFNAMSIZ:
        raise ValueError(f"VM id {vm_id} too large for an interface name")
    return name


def gateway_port_name(vlan: int) -> str:
    """The network node's gateway port for a VLAN (``gw_v101``; at most 9 chars)."""
    return f"gw_v{vlan}"


def dhcp_port_name(vlan: int) -> str:
    """The network node's DHCP port for a VLAN (``dhcp_v101``; at most 11 chars)."""
    return f"dhcp_v{vlan}"


def dhcp_namespace(vlan: int) -> str:
    """The network node's DHCP namespace for a VLAN (``ns-dhcp-vlan101``)."""
    return f"ns-dhcp-vlan{vlan}"


def vm_console_path(vm) -> str:
    """The WebSocket path of a VM's serial console (served by provisioning/routing.py)."""
    return f"/ws/vms/{vm.pk}/console/"


def vm_vnc_path(vm) -> str:
    """The WebSocket path of a VM's graphical console (VNC; served by provisioning/routing.py)."""
    return f"/ws/vms/{vm.pk}/vnc/"
