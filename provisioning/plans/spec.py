"""The spec: everything a plan needs to know about a slice, as plain data, and its validation."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import asdict, dataclass

from inventory.patterns import CMDLINE_RE, HOST_NAME_RE, IFNAME_RE, PATH_RE, SSH_USER_PATTERN
from slices.ipam import (
    DHCP_FIRST_HOST,
    DHCP_LAST_HOST,
    DHCP_SERVER_HOST,
    GATEWAY_HOST,
    INTERNET_SUBNET,
    INTERNET_VLAN,
    VLAN_ID_MAX,
    VLAN_ID_MIN,
)
from slices.naming import IFNAMSIZ, MAC_RE, NAME_RE, tap_name

from .constants import ACCELS


class PlanError(ValueError):
    """A spec that must not reach a host (an unsafe or inconsistent value)."""


# --- Spec: what the plan builders read -----------------------------------------------


@dataclass(frozen=True)
class ImageSpec:
    """A guest image: ``kind`` "disk" (qcow2 base, an overlay per VM) or "kernel" (direct boot)."""

    kind: str
    disk_path: str = ""
    kernel_path: str = ""
    initrd_path: str = ""
    kernel_args: str = ""
    cloud_init: bool = False
    default_user: str = ""


@dataclass(frozen=True)
class SeedSpec:
    """What a cloud-init VM's NoCloud seed says: its instance id, the keys it trusts, its console password hash.

    ``keys``: OpenSSH public key lines (``TYPE BASE64 [COMMENT]``), the owner's at the VM's first deploy.
    """

    instance_id: str
    keys: tuple[str, ...] = ()
    password_hash: str = ""


@dataclass(frozen=True)
class NicSpec:
    """A guest NIC: ``index`` 0 is eth0. ``vlan`` None = no VLAN (a dead interface).

    ``address``: the fixed VLAN 400 address of an internet NIC (its DHCP reservation,
    pinned by its TAP's guard flows); empty on any other NIC.
    """

    index: int
    mac: str
    vlan: int | None
    tap: str
    address: str = ""


@dataclass(frozen=True)
class VmSpec:
    """One VM and the worker it is placed on."""

    id: int
    name: str
    host: str
    vcpus: int
    ram_mib: int
    image: ImageSpec
    nics: tuple[NicSpec, ...]
    seed: SeedSpec | None = None


@dataclass(frozen=True)
class WorkerSpec:
    """A compute worker: where its files live and which accelerator QEMU uses there."""

    name: str
    state_dir: str
    accel: str = "tcg"


@dataclass(frozen=True)
class NetnodeSpec:
    """The network node: its uplink (NAT for VLAN 400) and state dir."""

    name: str
    uplink: str
    state_dir: str


@dataclass(frozen=True)
class VlanSpec:
    """A VLAN served by the network node: its /24, and DHCP reservations (MAC, IP)."""

    vlan: int
    subnet: str
    reservations: tuple[tuple[str, str], ...] = ()

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.subnet)

    def _host(self, number: int) -> str:
        return str(self.network.network_address + number)

    @property
    def gateway(self) -> str:
        return self._host(GATEWAY_HOST)

    @property
    def dhcp_server(self) -> str:
        return self._host(DHCP_SERVER_HOST)

    @property
    def dhcp_first(self) -> str:
        return self._host(DHCP_FIRST_HOST)

    @property
    def dhcp_last(self) -> str:
        return self._host(DHCP_LAST_HOST)

    @property
    def dhcp_first_address(self) -> ipaddress.IPv4Address:
        return self.network.network_address + DHCP_FIRST_HOST

    @property
    def dhcp_last_address(self) -> ipaddress.IPv4Address:
        return self.network.network_address + DHCP_LAST_HOST

    @property
    def netmask(self) -> str:
        return str(self.network.netmask)

    @property
    def prefixlen(self) -> int:
        return self.network.prefixlen


INTERNET = VlanSpec(INTERNET_VLAN, str(INTERNET_SUBNET))


@dataclass(frozen=True)
class SliceSpec:
    """Everything a plan needs to know about a slice, as plain data.

    ``keep_internet`` / ``keep_isolation``: another deployed slice still needs
    VLAN 400 + NAT / the isolation chains, so a teardown of this slice keeps them.
    ``link_guard``: link TAPs get guard flows too (no guest answers as its link's
    gateway or DHCP server; the installation's ``SLICE_LINK_GUARD``).
    """

    slice_id: int
    slice_name: str
    netnode: NetnodeSpec
    workers: tuple[WorkerSpec, ...] = ()
    vms: tuple[VmSpec, ...] = ()
    vlans: tuple[VlanSpec, ...] = ()
    internet: bool = False
    keep_internet: bool = False
    keep_isolation: bool = False
    link_guard: bool = False

    def worker(self, name: str) -> WorkerSpec:
        for worker in self.workers:
            if worker.name == name:
                return worker
        raise PlanError(f"VM placed on unknown worker {name!r}")

    def vms_on(self, host: str) -> tuple[VmSpec, ...]:
        return tuple(vm for vm in self.vms if vm.host == host)

    @property
    def internet_reservations(self) -> tuple[tuple[str, str], ...]:
        """(MAC, address) of every internet NIC: this slice's share of VLAN 400's dnsmasq."""
        return tuple(
            (nic.mac, nic.address) for vm in self.vms for nic in vm.nics if nic.vlan == INTERNET_VLAN and nic.address
        )

    def vlan(self, vlan: int) -> VlanSpec | None:
        """The link VLAN ``vlan`` as served (None for VLAN 400 or a VLAN the spec does not serve)."""
        return next((v for v in self.vlans if v.vlan == vlan), None)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> SliceSpec:
        return cls(
            slice_id=data["slice_id"],
            slice_name=data["slice_name"],
            netnode=NetnodeSpec(**data["netnode"]),
            workers=tuple(WorkerSpec(**w) for w in data.get("workers", ())),
            vms=tuple(
                VmSpec(
                    id=vm["id"],
                    name=vm["name"],
                    host=vm["host"],
                    vcpus=vm["vcpus"],
                    ram_mib=vm["ram_mib"],
                    image=ImageSpec(**vm["image"]),
                    nics=tuple(NicSpec(**nic) for nic in vm["nics"]),
                    seed=_seed_from_dict(vm.get("seed")),
                )
                for vm in data.get("vms", ())
            ),
            vlans=tuple(
                VlanSpec(v["vlan"], v["subnet"], tuple(tuple(r) for r in v.get("reservations", ())))
                for v in data.get("vlans", ())
            ),
            internet=data.get("internet", False),
            keep_internet=data.get("keep_internet", False),
            keep_isolation=data.get("keep_isolation", False),
            link_guard=data.get("link_guard", False),
        )


def _seed_from_dict(data: dict | None) -> SeedSpec | None:
    if not data:
        return None
    return SeedSpec(data["instance_id"], tuple(data.get("keys", ())), data.get("password_hash", ""))


# What may reach a seed: a user name, key lines (type, base64, a comment of printable text), a crypt hash.
SEED_USER_RE = re.compile(SSH_USER_PATTERN)
SEED_KEY_RE = re.compile(
    r"(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|ssh-rsa) [A-Za-z0-9+/]+={0,2}( [^\x00-\x1f\x7f]{1,200})?"
)
SEED_PASSWORD_HASH_RE = re.compile(r"\$6\$[./A-Za-z0-9]{1,16}\$[./A-Za-z0-9]{86}")
SEED_INSTANCE_ID_RE = re.compile(r"[a-z0-9-]{1,64}")


def _check_seed(vm: VmSpec) -> None:
    image, seed = vm.image, vm.seed
    if not image.cloud_init:
        _require(seed is None, f"VM {vm.name}: a seed but not a cloud-init image")
        return
    _require(bool(SEED_USER_RE.fullmatch(image.default_user or "")), f"VM {vm.name}: bad default user")
    _require(seed is not None, f"VM {vm.name}: a cloud-init image needs a seed")
    _require(bool(SEED_INSTANCE_ID_RE.fullmatch(seed.instance_id or "")), f"VM {vm.name}: bad instance id")
    for key in seed.keys:
        _require(isinstance(key, str) and bool(SEED_KEY_RE.fullmatch(key)), f"VM {vm.name}: bad SSH key {key!r}")
    _require(
        seed.password_hash == "" or bool(SEED_PASSWORD_HASH_RE.fullmatch(seed.password_hash)),
        f"VM {vm.name}: bad console password hash",
    )


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise PlanError(message)


def _check_path(value: str, what: str) -> None:
    _require(
        isinstance(value, str) and bool(PATH_RE.fullmatch(value)) and "/../" not in value + "/" and value != "/",
        f"{what}: unsafe path {value!r}",
    )


def _check_internet_address(vm: VmSpec, nic: NicSpec, *, deployed: bool) -> None:
    """An internet NIC has its fixed address, inside VLAN 400's DHCP range.

    ``deployed``: the spec is a footprint, which may come from a job run before
    VLAN 400 addresses were fixed (its NICs have none; only undone, never built).
    """
    if deployed and nic.address == "":
        return
    try:
        address = ipaddress.IPv4Address(nic.address)
    except ValueError as exc:
        raise PlanError(f"VM {vm.name}.eth{nic.index}: bad VLAN {INTERNET_VLAN} address {nic.address!r}") from exc
    _require(
        str(address) == nic.address and INTERNET.dhcp_first_address <= address <= INTERNET.dhcp_last_address,
        f"VM {vm.name}.eth{nic.index}: VLAN {INTERNET_VLAN} address {nic.address} outside "
        f"{INTERNET.dhcp_first}-{INTERNET.dhcp_last}",
    )


def validate_spec(spec: SliceSpec, *, deployed: bool = False) -> SliceSpec:
    """Refuse any value that could misbehave on a host (defence in depth: the models validate too).

    ``deployed``: ``spec`` is what may be on the hosts (a footprint), to be torn down or diffed.
    """
    _require(isinstance(spec.slice_id, int) and spec.slice_id > 0, "bad slice id")
    _require(bool(NAME_RE.fullmatch(spec.slice_name or "")), f"unsafe slice name {spec.slice_name!r}")
    node = spec.netnode
    _require(bool(HOST_NAME_RE.fullmatch(node.name or "")), f"unsafe host name {node.name!r}")
    _require(bool(IFNAME_RE.fullmatch(node.uplink or "")), f"unsafe uplink name {node.uplink!r}")
    _check_path(node.state_dir, f"state_dir of {node.name}")
    names = set()
    for worker in spec.workers:
        _require(bool(HOST_NAME_RE.fullmatch(worker.name or "")), f"unsafe host name {worker.name!r}")
        _check_path(worker.state_dir, f"state_dir of {worker.name}")
        _require(worker.accel in ACCELS, f"accelerator of {worker.name} must be one of {ACCELS}")
        names.add(worker.name)
    macs: dict[str, int] = {}  # MAC -> VM id (a merged footprint may hold two versions of one VM)
    addresses: dict[str, str] = {}  # VLAN 400 address -> MAC
    for vm in spec.vms:
        _require(isinstance(vm.id, int) and vm.id > 0, f"bad VM id {vm.id!r}")
        _require(bool(NAME_RE.fullmatch(vm.name or "")), f"unsafe VM name {vm.name!r}")
        _require(vm.host in names, f"VM {vm.name} is on {vm.host!r}, which is not a worker of the spec")
        _require(isinstance(vm.vcpus, int) and 1 <= vm.vcpus <= 256, f"VM {vm.name}: bad vCPU count")
        _require(isinstance(vm.ram_mib, int) and 32 <= vm.ram_mib <= 1 << 22, f"VM {vm.name}: bad RAM size")
        image = vm.image
        _require(image.kind in ("disk", "kernel"), f"VM {vm.name}: unknown image kind {image.kind!r}")
        if image.kind == "disk":
            _check_path(image.disk_path, f"disk image of {vm.name}")
        else:
            _check_path(image.kernel_path, f"kernel of {vm.name}")
            if image.initrd_path:
                _check_path(image.initrd_path, f"initrd of {vm.name}")
            _require(bool(CMDLINE_RE.fullmatch(image.kernel_args or "")), f"VM {vm.name}: unsafe kernel args")
        _check_seed(vm)
        _require(len(vm.nics) >= 1, f"VM {vm.name} has no interface")
        _require([nic.index for nic in vm.nics] == list(range(len(vm.nics))), f"VM {vm.name}: NICs must be eth0..ethN")
        for nic in vm.nics:
            _require(bool(MAC_RE.fullmatch(nic.mac or "")), f"VM {vm.name}: bad MAC {nic.mac!r}")
            _require(macs.setdefault(nic.mac, vm.id) == vm.id, f"MAC {nic.mac} used by two VMs")
            _require(
                bool(IFNAME_RE.fullmatch(nic.tap or "")) and len(nic.tap) <= IFNAMSIZ,
                f"VM {vm.name}: bad TAP name {nic.tap!r}",
            )
            _require(nic.tap == tap_name(vm.id, nic.index), f"VM {vm.name}: TAP {nic.tap} does not follow naming")
            if nic.vlan is not None:
                _require(VLAN_ID_MIN <= nic.vlan <= VLAN_ID_MAX, f"VM {vm.name}: VLAN {nic.vlan} out of range")
                _require(
                    nic.vlan != INTERNET_VLAN or (nic.index == 0 and spec.internet),
                    f"VM {vm.name}: VLAN {INTERNET_VLAN} is only for eth0 with internet",
                )
            if nic.vlan == INTERNET_VLAN:
                _check_internet_address(vm, nic, deployed=deployed)
                _require(
                    addresses.setdefault(nic.address, nic.mac) == nic.mac,
                    f"VLAN {INTERNET_VLAN} address {nic.address} given to two NICs",
                )
            else:
                _require(nic.address == "", f"VM {vm.name}.eth{nic.index}: an address only on VLAN {INTERNET_VLAN}")
    served = {v.vlan for v in spec.vlans}
    for vlan in spec.vlans:
        _require(VLAN_ID_MIN <= vlan.vlan <= VLAN_ID_MAX and vlan.vlan != INTERNET_VLAN, f"bad link VLAN {vlan.vlan}")
        try:
            net = vlan.network
        except ValueError as exc:
            raise PlanError(f"VLAN {vlan.vlan}: bad subnet {vlan.subnet!r}") from exc
        _require(net.prefixlen <= 24, f"VLAN {vlan.vlan}: subnet {vlan.subnet} is smaller than a /24")
        for mac, ip in vlan.reservations:
            _require(bool(MAC_RE.fullmatch(mac or "")), f"VLAN {vlan.vlan}: bad reservation MAC {mac!r}")
            try:
                _require(ipaddress.IPv4Address(ip) in net, f"VLAN {vlan.vlan}: {ip} is outside {vlan.subnet}")
            except ValueError as exc:
                raise PlanError(f"VLAN {vlan.vlan}: bad reservation address {ip!r}") from exc
    for vm in spec.vms:
        for nic in vm.nics:
            if nic.vlan is not None and nic.vlan != INTERNET_VLAN:
                _require(nic.vlan in served, f"VM {vm.name}.eth{nic.index} is on VLAN {nic.vlan}, which no link serves")
    return spec
