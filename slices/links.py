"""Creating links, one or a whole set at once: the rules of ``link_connect`` checked in memory.

:func:`connect` is the one implementation behind ``services.link_connect``
(one link), ``services.links_connect`` (the bulk API), templates and imports.
It reads the VMs, their interfaces and their links once, checks every request
in order against that picture (so a request also sees the links created by the
ones before it), takes every VLAN in one claim and writes every link and
interface in two statements: the cost is a constant number of queries,
whatever the number of links. All or nothing: a refusal raises before
anything is written (and the caller's transaction rolls back any claim).
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, connection
from django.db.models import Q

from . import ipam, vlans
from .errors import Conflict, InvalidRequest, ServiceError
from .models import VM, Interface, Link, Slice
from .naming import iface_index, iface_name

# ServiceError of request i -> the error to raise (e.g. located at ``links[i]``).
Locate = Callable[[int, ServiceError], ServiceError]


@dataclass(frozen=True)
class LinkRequest:
    """One link to create: two VM ids and, optionally, their interface names (first free when None)."""

    vm_a: int
    vm_b: int
    iface_a: str | None = None
    iface_b: str | None = None


@dataclass
class _Iface:
    pk: int
    vm_id: int
    index: int


class _Picture:
    """What the rules need of the slice, read once: VMs, their interfaces, which ones carry links."""

    def __init__(self, locked: Slice, vm_ids: set[int]):
        self.vms = {vm.pk: vm for vm in VM.objects.filter(pk__in=vm_ids).only("pk", "name", "slice_id")}
        mine = [pk for pk, vm in self.vms.items() if vm.slice_id == locked.pk]
        self.ifaces: dict[int, list[_Iface]] = {pk: [] for pk in mine}
        for pk, vm_id, index in (
            Interface.objects.filter(vm_id__in=mine).order_by("vm_id", "index").values_list("pk", "vm_id", "index")
        ):
            self.ifaces[vm_id].append(_Iface(pk, vm_id, index))
        self.by_pk = {i.pk: i for rows in self.ifaces.values() for i in rows}
        self.linked: set[int] = set()
        self.pairs: dict[frozenset[int], tuple[int, int, int | None]] = {}
        rows = (
            Link.objects.filter(slice=locked)
            .filter(Q(a__vm_id__in=mine) | Q(b__vm_id__in=mine))
            .values_list("a_id", "b_id", "a__vm_id", "b__vm_id", "vlan")
        )
        for a_id, b_id, a_vm, b_vm, vlan in rows:
            self.linked.update((a_id, b_id))
            self.pairs[frozenset((a_vm, b_vm))] = (a_id, b_id, vlan)

    def end_name(self, iface_pk: int) -> str:
        iface = self.by_pk.get(iface_pk)
        if iface is None:  # the far end of a link to a VM outside the request: name it plainly
            return f"interface {iface_pk}"
        return f"{self.vms[iface.vm_id].name}.{iface_name(iface.index)}"

    def first_free(self, vm: VM, exclude: set[int]) -> _Iface:
        for iface in self.ifaces[vm.pk]:
            if iface.index >= 1 and iface.pk not in self.linked and iface.pk not in exclude:
                return iface
        count = max((i.index for i in self.ifaces[vm.pk]), default=0)
        raise InvalidRequest(
            f"VM {vm.name!r} has no free data interface (all of eth1..eth{count} are linked): "
            "raise its data_interfaces_count.",
            code="no_free_interface",
        )

    def named(self, vm: VM, name: object, field: str) -> _Iface:
        try:
            index = iface_index(name) if isinstance(name, str) else -1
        except ValueError:
            index = -1
        if index < 0:
            raise InvalidRequest(f"{name!r} is not an interface name (eth1, eth2, ...).", field=field, code="invalid")
        iface = next((i for i in self.ifaces[vm.pk] if i.index == index), None)
        if iface is None:
            count = max((i.index for i in self.ifaces[vm.pk]), default=0)
            raise InvalidRequest(
                f"VM {vm.name!r} has no {name} (it has eth0..eth{count}).", field=field, code="no_such_interface"
            )
        if iface.index == 0:
            raise InvalidRequest(
                f"{vm.name}.eth0 is the management interface and is never linked; use eth1 or above.",
                field=field,
                code="management_interface",
            )
        if iface.pk in self.linked:
            raise InvalidRequest(
                f"{vm.name}.{name} already carries a link; an interface carries at most one.",
                field=field,
                code="interface_linked",
            )
        return iface


def _check(picture: _Picture, locked: Slice, req: LinkRequest, *, name_foreign: bool) -> tuple[_Iface, _Iface]:
    """The two ends of one request (a before b by id), or the ServiceError that refuses it."""
    vms = []
    for vm_id, field in ((req.vm_a, "vm_a"), (req.vm_b, "vm_b")):
        vm = picture.vms.get(vm_id)
        if vm is None:
            raise Conflict("A VM of this link no longer exists.", field=field, code="gone")
        if vm.slice_id != locked.pk:
            who = f"VM {vm.name!r}" if name_foreign else f"VM {vm_id}"
            raise InvalidRequest(
                f"{who} is not in slice {locked.name!r}: both VMs of a link belong to the same slice.",
                field=field,
                code="cross_slice",
            )
        vms.append(vm)
    vm_a, vm_b = vms
    if vm_a.pk == vm_b.pk:
        raise InvalidRequest(f"A link joins two distinct VMs, not {vm_a.name!r} to itself.", code="same_vm")
    existing = picture.pairs.get(frozenset((vm_a.pk, vm_b.pk)))
    if existing is not None:
        a_id, b_id, vlan = existing
        on = f", VLAN {vlan}" if vlan is not None else ""
        raise InvalidRequest(
            f"{vm_a.name} and {vm_b.name} are already linked "
            f"({picture.end_name(a_id)} <-> {picture.end_name(b_id)}{on}): a duplicate link.",
            code="duplicate_link",
        )
    ends: list[_Iface] = []
    for vm, name, field in ((vm_a, req.iface_a, "iface_a"), (vm_b, req.iface_b, "iface_b")):
        if name is None or name == "":
            ends.append(picture.first_free(vm, {e.pk for e in ends}))
        else:
            ends.append(picture.named(vm, name, field))
    a, b = sorted(ends, key=lambda i: i.pk)
    return a, b


def connect(
    locked: Slice, requests: Sequence[LinkRequest], *, locate: Locate | None = None, name_foreign: bool = True
) -> list[Link]:
    """Create the links asked for, in order, in the slice whose row lock the caller holds.

    ``locate`` turns the error of request ``i`` into the one raised (the bulk
    API and imports name ``links[i]``); ``name_foreign`` says whether a VM of
    another slice may be named in a refusal (not when the VM ids come from a
    user who may not own them).
    """
    picture = _Picture(locked, {vm_id for r in requests for vm_id in (r.vm_a, r.vm_b)})
    ends: list[tuple[_Iface, _Iface]] = []
    for i, req in enumerate(requests):
        try:
            a, b = _check(picture, locked, req, name_foreign=name_foreign)
        except ServiceError as exc:
            raise (locate(i, exc) if locate else exc) from exc
        ends.append((a, b))
        picture.linked.update((a.pk, b.pk))
        picture.pairs[frozenset((req.vm_a, req.vm_b))] = (a.pk, b.pk, None)
    if not ends:
        return []
    try:
        taken = vlans.allocate_vlans(locked, len(ends))
    except vlans.VlansExhausted as exc:  # blamed on the first request left without a VLAN
        plain = Conflict(exc.message, code=exc.code)
        raise (locate(exc.granted, plain) if locate else plain) from None
    links, addresses = [], []
    for (a, b), vlan in zip(ends, taken, strict=True):
        net = ipam.vlan_network(vlan, settings.SLICE_LINK_SUPERNET)
        links.append(Link(slice=locked, a_id=a.pk, b_id=b.pk, vlan=vlan, subnet=str(net.subnet)))
        addresses += [(a.pk, vlan, str(net.endpoint_address(0))), (b.pk, vlan, str(net.endpoint_address(1)))]
    try:
        created = Link.objects.bulk_create(links)
    except IntegrityError as exc:  # unreachable while every writer holds the slice lock; never a 500
        raise Conflict("That link or VLAN was taken at the same moment; try again.") from exc
    _set_ends(addresses)
    return created


def _set_ends(rows: list[tuple[int, int, str]]) -> None:
    """Give every linked interface its VLAN and reserved address (and forget an old lease), at once."""
    if connection.vendor == "postgresql":
        for start in range(0, len(rows), 2000):
            chunk = rows[start : start + 2000]
            values = ", ".join(["(%s::int, %s::int, %s::inet)"] * len(chunk))
            with connection.cursor() as cursor:
                cursor.execute(
                    "UPDATE slices_interface AS i SET vlan = v.vlan, ip_address = v.ip, lease_address = NULL "  # noqa: S608
                    f"FROM (VALUES {values}) AS v (id, vlan, ip) WHERE i.id = v.id",
                    [x for row in chunk for x in row],
                )
        return
    objs = [Interface(pk=pk, vlan=vlan, ip_address=ip, lease_address=None) for pk, vlan, ip in rows]
    Interface.objects.bulk_update(objs, ["vlan", "ip_address", "lease_address"], batch_size=500)
