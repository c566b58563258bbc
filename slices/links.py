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
    """What the rules need of the slice, read once: VMs, their interfaces, which ones carry links.

    One plain SQL statement (this runs for every link anyone draws: the ORM's query
    building, and a second round trip, would cost more than the database's work):
    rows ``v`` are the VMs asked for with (in this slice) their interfaces, rows ``l``
    the slice's links that touch them.
    """

    def __init__(self, locked: Slice, vm_ids: set[int]):
        ids = sorted(vm_ids)
        marks = ", ".join(["%s"] * len(ids))
        self.vms: dict[int, VM] = {}
        self.ifaces: dict[int, list[_Iface]] = {}
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT 'v', v.id, v.name, v.slice_id, i.id, i.\"index\", NULL FROM slices_vm v "  # noqa: S608
                f"LEFT JOIN slices_interface i ON i.vm_id = v.id AND v.slice_id = %s WHERE v.id IN ({marks}) "
                "UNION ALL "
                "SELECT 'l', l.a_id, NULL, a.vm_id, l.b_id, b.vm_id, l.vlan FROM slices_link l "
                "JOIN slices_interface a ON a.id = l.a_id JOIN slices_interface b ON b.id = l.b_id "
                f"WHERE l.slice_id = %s AND (a.vm_id IN ({marks}) OR b.vm_id IN ({marks})) "
                "ORDER BY 1 DESC, 2, 6",
                [locked.pk, *ids, locked.pk, *ids, *ids],
            )
            rows = cursor.fetchall()
        links = []
        for kind, vm_id, name, slice_id, iface_id, index, vlan in rows:
            if kind == "l":  # (a id, b id, a's VM, b's VM, vlan)
                links.append((vm_id, iface_id, slice_id, index, vlan))
                continue
            if vm_id not in self.vms:
                self.vms[vm_id] = VM(pk=vm_id, name=name, slice_id=slice_id)
                if slice_id == locked.pk:
                    self.ifaces[vm_id] = []
            if iface_id is not None:
                self.ifaces[vm_id].append(_Iface(iface_id, vm_id, index))
        self.by_pk = {i.pk: i for rows_ in self.ifaces.values() for i in rows_}
        self.linked: set[int] = set()
        self.pairs: dict[frozenset[int], tuple[int, int, int | None]] = {}
        for a_id, b_id, a_vm, b_vm, vlan in links:
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
    if not requests:  # nothing to link (an imported slice without links); no query with an empty IN ()
        return []
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
        if connection.vendor == "postgresql":
            return _claim_and_link(locked, ends)
        taken = vlans.allocate_vlans(locked, len(ends))
    except vlans.VlansExhausted as exc:  # blamed on the first request left without a VLAN
        plain = Conflict(exc.message, code=exc.code)
        raise (locate(exc.granted, plain) if locate else plain) from None
    except IntegrityError as exc:  # unreachable while every writer holds the slice lock; never a 500
        raise Conflict("That link or VLAN was taken at the same moment; try again.") from exc
    links, addresses = [], []
    for (a, b), vlan in zip(ends, taken, strict=True):
        net = ipam.vlan_network(vlan, settings.SLICE_LINK_SUPERNET)
        links.append(Link(slice=locked, a_id=a.pk, b_id=b.pk, vlan=vlan, subnet=str(net.subnet)))
        addresses += [(a.pk, vlan, str(net.endpoint_address(0))), (b.pk, vlan, str(net.endpoint_address(1)))]
    try:
        created = Link.objects.bulk_create(links)
    except IntegrityError as exc:  # unreachable while every writer holds the slice lock; never a 500
        raise Conflict("That link or VLAN was taken at the same moment; try again.") from exc
    objs = [Interface(pk=pk, vlan=vlan, ip_address=ip, lease_address=None) for pk, vlan, ip in addresses]
    Interface.objects.bulk_update(objs, ["vlan", "ip_address", "lease_address"], batch_size=500)
    return created


def _claim_and_link(locked: Slice, ends: list[tuple[_Iface, _Iface]]) -> list[Link]:
    """PostgreSQL: the VLANs, the links and both ends of each in one statement (:func:`vlans.claim_and_link`)."""
    rows = vlans.claim_and_link(locked, [(a.pk, b.pk) for a, b in ends])
    by_a = {a_id: (pk, vlan, subnet, created) for pk, a_id, vlan, subnet, created in rows}
    links = []
    for a, b in ends:
        pk, vlan, subnet, created = by_a[a.pk]
        links.append(Link(pk=pk, slice=locked, a_id=a.pk, b_id=b.pk, vlan=vlan, subnet=subnet, created=created))
    return links
