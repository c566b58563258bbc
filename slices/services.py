"""Writes of the slice design domain. Views, the API, the admin and jobs call these.

Every function takes keyword-only arguments, validates what reaches a host
(names) and raises a ``ServiceError`` subclass with a message that names the
problem; the API turns those into 400 / 403 / 409 responses.
"""

import math
import secrets
from collections.abc import Iterable
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import Q

from audit.log import record as audit
from audit.models import AuditEvent
from inventory.models import Flavor, Host, Image

from . import links, topologies, vlans
from .errors import Conflict, InvalidRequest, ServiceError
from .io import SliceDocument, grid_position
from .models import INTERNET_VLAN, VM, Interface, Link, Slice
from .naming import MAX_DATA_INTERFACES, NAME_HELP, iface_name, is_valid_name
from .quotas import check_quota

# QEMU's locally administered prefix; the last three bytes are random and unique.
MAC_PREFIX = "52:54:00"
DESCRIPTION_MAX_LENGTH = 2000
# Canvas coordinates are kept within a sane box (the designer's canvas is far smaller).
COORD_LIMIT = 1_000_000.0


class _Unset:
    """Marker for "not given" in partial updates (None is a meaningful value for ``host``)."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


def _check_name(value: object, *, field: str, what: str) -> str:
    if not is_valid_name(value):
        raise InvalidRequest(f"Invalid {what} name {value!r}: {NAME_HELP}", field=field, code="invalid_name")
    return value


def _check_description(value: object) -> str:
    if not isinstance(value, str) or len(value) > DESCRIPTION_MAX_LENGTH:
        raise InvalidRequest(
            f"The description is text of at most {DESCRIPTION_MAX_LENGTH} characters.", field="description"
        )
    return value


def _check_coord(value: object, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidRequest(f"{field} must be a number.", field=field)
    if abs(value) > COORD_LIMIT:
        raise InvalidRequest(f"{field} must be between -{COORD_LIMIT:.0f} and {COORD_LIMIT:.0f}.", field=field)
    return float(value)


def _lock_slice(slice_id: int) -> Slice:
    """Lock the slice row for the rest of the transaction (serialises its edits)."""
    try:
        return Slice.objects.select_for_update().get(pk=slice_id)
    except Slice.DoesNotExist as exc:
        raise Conflict("The slice no longer exists.", code="gone") from exc


def _check_editable(slice_obj: Slice) -> None:
    if slice_obj.is_busy:
        raise Conflict(
            f"Slice {slice_obj.name!r} is {slice_obj.status}: wait for its job to finish.", code="slice_busy"
        )


def _random_mac() -> str:
    return MAC_PREFIX + "".join(f":{b:02x}" for b in secrets.token_bytes(3))


def default_flavor() -> Flavor | None:
    """The flavor marked default, else the smallest one, else None."""
    return Flavor.objects.filter(is_default=True).first() or Flavor.objects.order_by("vcpus", "ram_mib").first()


def default_image() -> Image | None:
    """The image marked default, else the first by name, else None."""
    return Image.objects.filter(is_default=True).first() or Image.objects.order_by("name").first()


def _check_host(host: Host | None) -> Host | None:
    """A host to pin a VM to: an enabled worker that is not drained for maintenance."""
    if host is not None and (host.role != Host.Role.WORKER or not host.enabled):
        raise InvalidRequest(f"Host {host.name!r} is not an enabled worker.", field="host")
    if host is not None and host.drained:
        raise InvalidRequest(
            f"Host {host.name!r} is drained for maintenance: it takes no new VMs.", field="host", code="host_drained"
        )
    return host


# --- slices ------------------------------------------------------------------------


@transaction.atomic
def slice_create(*, owner: AbstractBaseUser, name: str, description: str = "") -> Slice:
    """Create an empty slice (draft) owned by ``owner``; a name is unique per owner."""
    _check_name(name, field="name", what="slice")
    _check_description(description or "")
    if Slice.objects.filter(owner=owner, name=name).exists():
        raise InvalidRequest(f"You already have a slice named {name!r}.", field="name", code="duplicate")
    try:
        with transaction.atomic():
            created = Slice.objects.create(owner=owner, name=name, description=description or "")
    except IntegrityError as exc:  # the same name created a moment ago by a concurrent request
        raise InvalidRequest(f"You already have a slice named {name!r}.", field="name", code="duplicate") from exc
    audit(AuditEvent.Action.CREATE, slice_obj=created, target=f"slice {name}")
    return created


@transaction.atomic
def slice_update(*, slice_obj: Slice, name: str | None = None, description: str | None = None) -> Slice:
    """Rename a slice (draft only: names reach the hosts) or change its description."""
    locked = _lock_slice(slice_obj.pk)
    if name is not None and name != locked.name:
        _check_name(name, field="name", what="slice")
        if locked.status != Slice.Status.DRAFT:
            raise Conflict("A deployed slice cannot be renamed: destroy it first.", field="name")
        if Slice.objects.filter(owner=locked.owner_id, name=name).exclude(pk=locked.pk).exists():
            raise InvalidRequest(f"You already have a slice named {name!r}.", field="name", code="duplicate")
        locked.name = name
    if description is not None:
        locked.description = _check_description(description)
    locked.save()
    changed = [f for f, v in (("name", name), ("description", description)) if v is not None]
    audit(AuditEvent.Action.EDIT, slice_obj=locked, target=f"slice {locked.name}", detail=", ".join(changed))
    return locked


@transaction.atomic
def slice_delete(*, slice_obj: Slice) -> None:
    """Delete a slice that has nothing on the hosts (draft); otherwise 409. The VLANs it holds return."""
    locked = _lock_slice(slice_obj.pk)
    if locked.status != Slice.Status.DRAFT:
        raise Conflict(
            f"Slice {locked.name!r} is {locked.status}: destroy it before deleting it.", code="slice_deployed"
        )
    # A draft can still have a job in flight (a dry run): its record must outlive the job.
    if locked.deployments.filter(finished__isnull=True).exists():
        raise Conflict(
            f"Slice {locked.name!r} has a job running: wait for it or cancel it, then delete.", code="slice_busy"
        )
    audit(AuditEvent.Action.DELETE, slice_obj=locked, target=f"slice {locked.name}")
    locked.delete()


# --- VMs ---------------------------------------------------------------------------


def _create_interfaces(vm: VM, indexes: Iterable[int]) -> None:
    indexes = list(indexes)
    for _attempt in range(8):
        rows = [
            Interface(
                vm=vm,
                index=i,
                mac=_random_mac(),
                vlan=INTERNET_VLAN if i == 0 and vm.internet_enabled else None,
            )
            for i in indexes
        ]
        try:
            with transaction.atomic():
                Interface.objects.bulk_create(rows)
            return
        except IntegrityError:
            continue  # a random MAC collided with an existing one: draw again
    raise Conflict("Could not allocate unique MAC addresses; try again.")


def _check_count(count: object) -> int:
    if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= MAX_DATA_INTERFACES:
        raise InvalidRequest(
            f"data_interfaces_count must be a whole number from 0 to {MAX_DATA_INTERFACES}.",
            field="data_interfaces_count",
        )
    return count


@transaction.atomic
def vm_create(
    *,
    slice_obj: Slice,
    name: str,
    flavor: Flavor | None = None,
    image: Image | None = None,
    data_interfaces_count: int = 1,
    internet_enabled: bool = False,
    host: Host | None = None,
    x: float = 0.0,
    y: float = 0.0,
) -> VM:
    """Add a VM with ``eth0`` and ``data_interfaces_count`` data interfaces (quota checked).

    ``eth0`` gets VLAN 400 when ``internet_enabled``; the data interfaces get a
    VLAN only when a link connects them. Flavor and image default to the
    installation's defaults.
    """
    locked = _lock_slice(slice_obj.pk)
    _check_editable(locked)
    _check_name(name, field="name", what="VM")
    _check_count(data_interfaces_count)
    x, y = _check_coord(x, "x"), _check_coord(y, "y")
    flavor, image = _resolve_defaults(flavor, image)
    _check_host(host)
    if locked.vms.filter(name=name).exists():
        raise InvalidRequest(f"Slice {locked.name!r} already has a VM named {name!r}.", field="name", code="duplicate")
    check_quota(user=locked.owner, add_vms=1, add_vcpus=flavor.vcpus, add_ram=flavor.ram_mib)
    vm = VM.objects.create(
        slice=locked,
        name=name,
        flavor=flavor,
        image=image,
        data_interfaces_count=data_interfaces_count,
        internet_enabled=bool(internet_enabled),
        host=host,
        pinned=host is not None,
        x=x,
        y=y,
    )
    _create_interfaces(vm, range(data_interfaces_count + 1))
    audit(AuditEvent.Action.CREATE, slice_obj=locked, target=f"VM {name}", host=host.name if host else "")
    return vm


@transaction.atomic
def vm_update(
    *,
    vm: VM,
    name: str = UNSET,
    flavor: Flavor = UNSET,
    image: Image = UNSET,
    data_interfaces_count: int = UNSET,
    internet_enabled: bool = UNSET,
    host: Host | None = UNSET,
    x: float = UNSET,
    y: float = UNSET,
) -> VM:
    """Change a VM; only the arguments given change.

    Lowering ``data_interfaces_count`` below a linked interface is refused (400);
    a deployed VM keeps its name (409). Moving a node (``x``, ``y``) is allowed in
    any slice state; other changes wait while a job runs on the slice (409).
    A ``host`` other than the VM's current one pins the VM there (it survives a
    destroy); ``None`` clears the pin and lets placement choose.
    """
    locked_slice = _lock_slice(vm.slice_id)
    vm = VM.objects.select_related("flavor").get(pk=vm.pk)
    design_change = any(v is not UNSET for v in (name, flavor, image, data_interfaces_count, internet_enabled, host))
    if design_change:
        _check_editable(locked_slice)
    if name is not UNSET and name != vm.name:
        _check_name(name, field="name", what="VM")
        if vm.status != VM.Status.DESIGNED:
            raise Conflict("A deployed VM cannot be renamed.", field="name")
        if locked_slice.vms.filter(name=name).exclude(pk=vm.pk).exists():
            raise InvalidRequest(
                f"Slice {locked_slice.name!r} already has a VM named {name!r}.", field="name", code="duplicate"
            )
        vm.name = name
    if flavor is not UNSET and flavor is not None and flavor.pk != vm.flavor_id:
        check_quota(
            user=locked_slice.owner,
            add_vms=0,
            add_vcpus=flavor.vcpus - vm.flavor.vcpus,
            add_ram=flavor.ram_mib - vm.flavor.ram_mib,
        )
        vm.flavor = flavor
    if image is not UNSET and image is not None:
        vm.image = image
    if host is not UNSET and (host.pk if host else None) != vm.host_id:
        # A host given by hand is a pin (it survives a destroy); none lets placement choose.
        vm.host, vm.pinned = _check_host(host), host is not None
    if internet_enabled is not UNSET:
        vm.internet_enabled = bool(internet_enabled)
        vm.interfaces.filter(index=0).update(vlan=INTERNET_VLAN if vm.internet_enabled else None)
    if data_interfaces_count is not UNSET:
        count = _check_count(data_interfaces_count)
        if count < vm.data_interfaces_count:
            linked = list(
                vm.interfaces.filter(index__gt=count)
                .filter(Q(link_as_a__isnull=False) | Q(link_as_b__isnull=False))
                .order_by("index")
            )
            if linked:
                names = ", ".join(i.name for i in linked)
                verb = "carries" if len(linked) == 1 else "carry"
                raise InvalidRequest(
                    f"Cannot lower data_interfaces_count of {vm.name!r} to {count}: {names} {verb} a link; "
                    "delete the link first.",
                    field="data_interfaces_count",
                    code="interface_linked",
                )
            vm.interfaces.filter(index__gt=count).delete()
        elif count > vm.data_interfaces_count:
            _create_interfaces(vm, range(vm.data_interfaces_count + 1, count + 1))
        vm.data_interfaces_count = count
    if x is not UNSET:
        vm.x = _check_coord(x, "x")
    if y is not UNSET:
        vm.y = _check_coord(y, "y")
    vm.save()
    if design_change:  # not a node moved on the canvas
        given = {"name": name, "flavor": flavor, "image": image, "data_interfaces_count": data_interfaces_count}
        given.update(internet_enabled=internet_enabled, host=host)
        fields = ", ".join(f for f, v in given.items() if v is not UNSET)
        audit(AuditEvent.Action.EDIT, slice_obj=locked_slice, target=f"VM {vm.name}", detail=fields)
    return vm


def _unlink(links: Iterable[Link]) -> None:
    """Delete links and clear the VLAN and reserved address of both their ends."""
    links = list(links)
    ends = [pk for link in links for pk in (link.a_id, link.b_id)]
    Interface.objects.filter(pk__in=ends).update(vlan=None, ip_address=None, lease_address=None)
    Link.objects.filter(pk__in=[link.pk for link in links]).delete()


@transaction.atomic
def vm_delete(*, vm: VM) -> None:
    """Delete a VM and its links: their VLANs return to the slice's pool, the peers lose them."""
    locked = _lock_slice(vm.slice_id)
    _check_editable(locked)
    _unlink(Link.objects.filter(slice=locked).filter(Q(a__vm=vm.pk) | Q(b__vm=vm.pk)))
    VM.objects.filter(pk=vm.pk).delete()
    audit(AuditEvent.Action.DELETE, slice_obj=locked, target=f"VM {vm.name}")
    if locked.status == Slice.Status.DRAFT:
        vlans.release_unused(locked)


# --- links -------------------------------------------------------------------------


@transaction.atomic
def link_connect(
    *,
    slice_obj: Slice,
    vm_a: VM,
    vm_b: VM,
    iface_a: str | None = None,
    iface_b: str | None = None,
) -> Link:
    """Link ``vm_a.iface_a`` to ``vm_b.iface_b`` (first free data interfaces when omitted).

    Rules, each refused with a 400 that names the problem: both VMs in this
    slice, two distinct VMs, not already linked to each other, data interfaces
    only (never ``eth0``), an interface carries at most one link. Takes the next
    free VLAN of the slice's pool (409 when the global range is exhausted),
    records it on the link and on both interfaces, and reserves the two ends'
    addresses (``.10`` and ``.11`` of the link's subnet).
    """
    locked = _lock_slice(slice_obj.pk)
    _check_editable(locked)
    request = links.LinkRequest(vm_a.pk, vm_b.pk, iface_a, iface_b)
    link = links.connect(locked, [request])[0]
    audit(AuditEvent.Action.EDIT, slice_obj=locked, target=f"link {vm_a.name} <-> {vm_b.name}", detail="linked")
    return link


@transaction.atomic
def links_connect(*, slice_obj: Slice, requests: list[links.LinkRequest]) -> list[Link]:
    """Create a whole set of links in one transaction: all of them, or none (the bulk API).

    The rules of :func:`link_connect`, checked in order (a request sees the
    links of the ones before it); a refusal names ``links[i]``. VM ids come
    from the caller unchecked, so a VM of another slice is named by its id only.
    """
    locked = _lock_slice(slice_obj.pk)
    _check_editable(locked)
    made = links.connect(locked, requests, locate=_at_link, name_foreign=False)
    audit(AuditEvent.Action.EDIT, slice_obj=locked, target=f"{len(made)} links", detail="linked")
    return made


def _at_link(index: int, exc: ServiceError) -> ServiceError:
    """The error of bulk request ``index``, located at ``links[index].field``."""
    where = f"links[{index}].{exc.field}" if exc.field else f"links[{index}]"
    return type(exc)(f"links[{index}]: {exc.message}", field=where, code=exc.code, errors={where: [exc.message]})


@transaction.atomic
def link_delete(*, link: Link) -> None:
    """Delete a link; its VLAN returns to the slice's pool and both ends lose it."""
    locked = _lock_slice(link.slice_id)
    _check_editable(locked)
    _unlink(Link.objects.filter(pk=link.pk))
    audit(AuditEvent.Action.EDIT, slice_obj=locked, target=f"link (VLAN {link.vlan})", detail="unlinked")
    if locked.status == Slice.Status.DRAFT:
        vlans.release_unused(locked)


# --- templates and import ------------------------------------------------------------


def _resolve_defaults(flavor: Flavor | None, image: Image | None) -> tuple[Flavor, Image]:
    flavor = flavor or default_flavor()
    image = image or default_image()
    if flavor is None:
        raise InvalidRequest("No flavor given and no default flavor exists.", field="flavor")
    if image is None:
        raise InvalidRequest("No image given and no default image exists.", field="image")
    return flavor, image


@transaction.atomic
def slice_from_template(
    *,
    owner: AbstractBaseUser,
    name: str,
    topology: str,
    count: int,
    flavor: Flavor | None = None,
    image: Image | None = None,
    internet_enabled: bool = False,
    description: str = "",
) -> Slice:
    """Create a slice of ``count`` VMs (``vm1``..``vmN``) wired as ``topology``, all at once.

    Topologies and their limits: :data:`slices.topologies.KINDS`. Every VM gets
    exactly the data interfaces its links need, a canvas position, the same
    flavor and image. The quota is checked for the whole slice first; any
    refusal rolls everything back.
    """
    try:
        topologies.check(topology, count)
    except topologies.TopologyError as exc:
        raise InvalidRequest(str(exc), field=exc.field, code="invalid_topology") from exc
    _check_name(name, field="name", what="slice")
    flavor, image = _resolve_defaults(flavor, image)
    topo = topologies.build(topology, count)
    check_quota(user=owner, add_vms=count, add_vcpus=count * flavor.vcpus, add_ram=count * flavor.ram_mib)
    slice_obj = slice_create(owner=owner, name=name, description=description)
    vms = [
        vm_create(
            slice_obj=slice_obj,
            name=vm_name,
            flavor=flavor,
            image=image,
            data_interfaces_count=topo.data_interfaces[i],
            internet_enabled=internet_enabled,
            x=topo.positions[i][0],
            y=topo.positions[i][1],
        )
        for i, vm_name in enumerate(topo.vm_names)
    ]
    requests = [
        links.LinkRequest(vms[e.vm_a].pk, vms[e.vm_b].pk, iface_name(e.iface_a), iface_name(e.iface_b))
        for e in topo.ends
    ]
    links.connect(_lock_slice(slice_obj.pk), requests)
    return slice_obj


def _at(path: str, exc: ServiceError) -> ServiceError:
    """The same error, located at ``path`` of an imported document."""
    where = f"{path}.{exc.field}" if exc.field and exc.field not in ("iface_a", "iface_b", "vm_a", "vm_b") else path
    return type(exc)(f"{where}: {exc.message}", field=where, code=exc.code, errors={where: [exc.message]})


@transaction.atomic
def slice_import(*, owner: AbstractBaseUser, document: SliceDocument, name: str | None = None) -> Slice:
    """Create a slice from a validated document (see ``slices.io``), atomically.

    ``name`` overrides the document's. Flavors and images are looked up by
    name (unknown ones are refused, naming the field, e.g. ``vms[2].flavor``);
    the quota is checked for the whole slice first; any refusal rolls
    everything back, so a failed import leaves nothing behind.
    """
    name = name or document.name
    _check_name(name, field="name", what="slice")
    flavors = {f.name: f for f in Flavor.objects.filter(name__in={v.flavor for v in document.vms if v.flavor})}
    images = {i.name: i for i in Image.objects.filter(name__in={v.image for v in document.vms if v.image})}
    errors: dict[str, list[str]] = {}
    for i, spec in enumerate(document.vms):
        if spec.flavor and spec.flavor not in flavors:
            errors[f"vms[{i}].flavor"] = [f"No flavor named {spec.flavor!r} here; see /api/flavors/."]
        if spec.image and spec.image not in images:
            errors[f"vms[{i}].image"] = [f"No image named {spec.image!r} here; see /api/images/."]
    if errors:
        path, messages = next(iter(errors.items()))
        raise InvalidRequest(f"{path}: {messages[0]}", field=path, code="invalid_document", errors=errors)
    fallback_flavor, fallback_image = (
        _resolve_defaults(None, None) if any(not v.flavor or not v.image for v in document.vms) else (None, None)
    )
    chosen = [
        (flavors[v.flavor] if v.flavor else fallback_flavor, images[v.image] if v.image else fallback_image)
        for v in document.vms
    ]
    check_quota(
        user=owner,
        add_vms=len(chosen),
        add_vcpus=sum(f.vcpus for f, _ in chosen),
        add_ram=sum(f.ram_mib for f, _ in chosen),
    )
    slice_obj = slice_create(owner=owner, name=name, description=document.description)
    vms: dict[str, VM] = {}
    for i, (spec, (flavor, image)) in enumerate(zip(document.vms, chosen, strict=True)):
        try:
            vms[spec.name] = vm_create(
                slice_obj=slice_obj,
                name=spec.name,
                flavor=flavor,
                image=image,
                data_interfaces_count=spec.data_interfaces_count,
                internet_enabled=spec.internet_enabled,
                # Left out of the document: a grid, so an imported topology is readable in the designer.
                x=spec.x if spec.x is not None else grid_position(i)[0],
                y=spec.y if spec.y is not None else grid_position(i)[1],
            )
        except ServiceError as exc:
            raise _at(f"vms[{i}]", exc) from exc
    requests = [
        links.LinkRequest(vms[link.vm_a].pk, vms[link.vm_b].pk, iface_name(link.iface_a), iface_name(link.iface_b))
        for link in document.links
    ]
    links.connect(_lock_slice(slice_obj.pk), requests, locate=lambda i, exc: _at(f"links[{i}]", exc))
    return slice_obj
