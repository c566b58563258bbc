"""Writes of the slice design domain. Views, the API, the admin and jobs call these.

Every function takes keyword-only arguments, validates what reaches a host
(names) and raises a ``ServiceError`` subclass with a message that names the
problem; the API turns those into 400 / 403 / 409 responses.
"""

import secrets
from collections.abc import Iterable

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import Sum

from provisioning.models import Flavor, Host, Image

from . import ipam, vlans
from .errors import Conflict, InvalidRequest, QuotaExceeded
from .models import INTERNET_VLAN, VM, Interface, Link, Slice, UserQuota
from .naming import MAX_DATA_INTERFACES, NAME_HELP, is_valid_name

# QEMU's locally administered prefix; the last three bytes are random and unique.
MAC_PREFIX = "52:54:00"
BUSY_STATUSES = (Slice.Status.QUEUED, Slice.Status.DEPLOYING, Slice.Status.DESTROYING)


def _check_name(value: str, *, field: str, what: str) -> str:
    if not isinstance(value, str) or not is_valid_name(value):
        raise InvalidRequest(f"Invalid {what} name {value!r}: {NAME_HELP}", field=field, code="invalid_name")
    return value


def _lock_slice(slice_id: int) -> Slice:
    """Lock the slice row for the rest of the transaction (serialises its edits)."""
    return Slice.objects.select_for_update().get(pk=slice_id)


def _check_editable(slice_obj: Slice) -> None:
    if slice_obj.status in BUSY_STATUSES:
        raise Conflict(
            f"Slice {slice_obj.name!r} is {slice_obj.status}: wait for its job to finish.", code="slice_busy"
        )


def _random_mac() -> str:
    return MAC_PREFIX + "".join(f":{b:02x}" for b in secrets.token_bytes(3))


def default_flavor() -> Flavor | None:
    return Flavor.objects.filter(is_default=True).first() or Flavor.objects.order_by("vcpus", "ram_mib").first()


def default_image() -> Image | None:
    return Image.objects.filter(is_default=True).first() or Image.objects.order_by("name").first()


# --- quotas ----------------------------------------------------------------------


def quota_limits(*, user: AbstractBaseUser) -> dict[str, int]:
    """The user's limits: their UserQuota row where set, else the settings' defaults."""
    row = UserQuota.objects.filter(user=user).first()
    return {
        "vms": row.max_vms if row and row.max_vms is not None else settings.SLICE_QUOTA_VMS,
        "vcpus": row.max_vcpus if row and row.max_vcpus is not None else settings.SLICE_QUOTA_VCPUS,
        "ram_mib": row.max_ram_mib if row and row.max_ram_mib is not None else settings.SLICE_QUOTA_RAM_MIB,
    }


def quota_usage(*, user: AbstractBaseUser) -> dict[str, int]:
    """What the user's VMs (in all their slices) take: count, vCPUs, RAM."""
    agg = VM.objects.filter(slice__owner=user).aggregate(vcpus=Sum("flavor__vcpus"), ram=Sum("flavor__ram_mib"))
    return {
        "vms": VM.objects.filter(slice__owner=user).count(),
        "vcpus": agg["vcpus"] or 0,
        "ram_mib": agg["ram"] or 0,
    }


def _check_quota(*, user: AbstractBaseUser, add_vms: int, add_vcpus: int, add_ram: int) -> None:
    limits, used = quota_limits(user=user), quota_usage(user=user)
    for key, add, label in (("vms", add_vms, "VMs"), ("vcpus", add_vcpus, "vCPUs"), ("ram_mib", add_ram, "MiB of RAM")):
        if add > 0 and used[key] + add > limits[key]:
            raise QuotaExceeded(
                f"Quota exceeded: this needs {used[key] + add} {label}, your limit is {limits[key]} "
                f"(in use: {used[key]})."
            )


# --- slices ------------------------------------------------------------------------


@transaction.atomic
def slice_create(*, owner: AbstractBaseUser, name: str, description: str = "") -> Slice:
    """Create an empty slice (draft) owned by ``owner``."""
    _check_name(name, field="name", what="slice")
    if Slice.objects.filter(owner=owner, name=name).exists():
        raise InvalidRequest(f"You already have a slice named {name!r}.", field="name", code="duplicate")
    try:
        with transaction.atomic():
            return Slice.objects.create(owner=owner, name=name, description=description or "")
    except IntegrityError as exc:
        raise InvalidRequest(f"You already have a slice named {name!r}.", field="name", code="duplicate") from exc


@transaction.atomic
def slice_update(*, slice_obj: Slice, name: str | None = None, description: str | None = None) -> Slice:
    """Rename a slice or change its description."""
    locked = _lock_slice(slice_obj.pk)
    if name is not None and name != locked.name:
        _check_name(name, field="name", what="slice")
        if locked.status != Slice.Status.DRAFT:
            raise Conflict("A deployed slice cannot be renamed: destroy it first.", field="name")
        if Slice.objects.filter(owner=locked.owner, name=name).exclude(pk=locked.pk).exists():
            raise InvalidRequest(f"You already have a slice named {name!r}.", field="name", code="duplicate")
        locked.name = name
    if description is not None:
        locked.description = description
    locked.save()
    return locked


@transaction.atomic
def slice_delete(*, slice_obj: Slice) -> None:
    """Delete a slice that has nothing on the hosts (draft); otherwise 409."""
    locked = _lock_slice(slice_obj.pk)
    if locked.status != Slice.Status.DRAFT:
        raise Conflict(
            f"Slice {locked.name!r} is {locked.status}: destroy it before deleting it.", code="slice_deployed"
        )
    locked.delete()


# --- VMs ---------------------------------------------------------------------------


def _create_interfaces(vm: VM, indexes: Iterable[int]) -> None:
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
            continue  # a random MAC collided: draw again
    raise Conflict("Could not allocate unique MAC addresses; try again.")


def _check_count(count: int) -> int:
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
    """Add a VM with ``eth0`` and ``data_interfaces_count`` data interfaces (quota checked)."""
    locked = _lock_slice(slice_obj.pk)
    _check_editable(locked)
    _check_name(name, field="name", what="VM")
    _check_count(data_interfaces_count)
    flavor = flavor or default_flavor()
    image = image or default_image()
    if flavor is None:
        raise InvalidRequest("No flavor given and no default flavor exists.", field="flavor")
    if image is None:
        raise InvalidRequest("No image given and no default image exists.", field="image")
    if host is not None and (host.role != Host.Role.WORKER or not host.enabled):
        raise InvalidRequest(f"Host {host.name!r} is not an enabled worker.", field="host")
    if locked.vms.filter(name=name).exists():
        raise InvalidRequest(f"Slice {locked.name!r} already has a VM named {name!r}.", field="name", code="duplicate")
    _check_quota(user=locked.owner, add_vms=1, add_vcpus=flavor.vcpus, add_ram=flavor.ram_mib)
    vm = VM.objects.create(
        slice=locked,
        name=name,
        flavor=flavor,
        image=image,
        data_interfaces_count=data_interfaces_count,
        internet_enabled=bool(internet_enabled),
        host=host,
        x=float(x),
        y=float(y),
    )
    _create_interfaces(vm, range(data_interfaces_count + 1))
    return vm


@transaction.atomic
def vm_update(*, vm: VM, **changes) -> VM:
    """Change a VM: name, flavor, image, data_interfaces_count, internet_enabled, host, x, y.

    Lowering ``data_interfaces_count`` below a linked interface is refused.
    Moving a node (x, y) is allowed in any slice state.
    """
    allowed = {"name", "flavor", "image", "data_interfaces_count", "internet_enabled", "host", "x", "y"}
    unknown = set(changes) - allowed
    if unknown:
        raise InvalidRequest(f"Unknown VM fields: {', '.join(sorted(unknown))}.")
    locked_slice = _lock_slice(vm.slice_id)
    vm = VM.objects.select_related("flavor").get(pk=vm.pk)
    design = set(changes) - {"x", "y"}
    if design:
        _check_editable(locked_slice)
    if "name" in changes and changes["name"] != vm.name:
        _check_name(changes["name"], field="name", what="VM")
        if vm.status != VM.Status.DESIGNED:
            raise Conflict("A deployed VM cannot be renamed.", field="name")
        if locked_slice.vms.filter(name=changes["name"]).exclude(pk=vm.pk).exists():
            raise InvalidRequest(f"Slice already has a VM named {changes['name']!r}.", field="name", code="duplicate")
        vm.name = changes["name"]
    if "flavor" in changes and changes["flavor"] and changes["flavor"].pk != vm.flavor_id:
        new = changes["flavor"]
        _check_quota(
            user=locked_slice.owner,
            add_vms=0,
            add_vcpus=new.vcpus - vm.flavor.vcpus,
            add_ram=new.ram_mib - vm.flavor.ram_mib,
        )
        vm.flavor = new
    if changes.get("image"):
        vm.image = changes["image"]
    if "host" in changes:
        host = changes["host"]
        if host is not None and (host.role != Host.Role.WORKER or not host.enabled):
            raise InvalidRequest(f"Host {host.name!r} is not an enabled worker.", field="host")
        vm.host = host
    if "internet_enabled" in changes:
        vm.internet_enabled = bool(changes["internet_enabled"])
        vm.interfaces.filter(index=0).update(vlan=INTERNET_VLAN if vm.internet_enabled else None)
    if "data_interfaces_count" in changes:
        count = _check_count(changes["data_interfaces_count"])
        if count < vm.data_interfaces_count:
            linked = [i for i in _linked_interfaces(vm) if i.index > count]
            if linked:
                names = ", ".join(i.name for i in linked)
                raise InvalidRequest(
                    f"Cannot lower data_interfaces_count to {count}: {names} carries a link; delete it first.",
                    field="data_interfaces_count",
                    code="interface_linked",
                )
            vm.interfaces.filter(index__gt=count).delete()
        elif count > vm.data_interfaces_count:
            _create_interfaces(vm, range(vm.data_interfaces_count + 1, count + 1))
        vm.data_interfaces_count = count
    for coord in ("x", "y"):
        if coord in changes:
            setattr(vm, coord, float(changes[coord]))
    vm.save()
    return vm


def _linked_interfaces(vm: VM) -> list[Interface]:
    return list(Interface.objects.filter(vm=vm).filter(link_as_a__isnull=False)) + list(
        Interface.objects.filter(vm=vm).filter(link_as_b__isnull=False)
    )


@transaction.atomic
def vm_delete(*, vm: VM) -> None:
    """Delete a VM and its links (their VLANs return to the slice's pool)."""
    locked = _lock_slice(vm.slice_id)
    _check_editable(locked)
    Link.objects.filter(slice=locked, a__vm=vm).delete()
    Link.objects.filter(slice=locked, b__vm=vm).delete()
    vm.delete()
    if locked.status == Slice.Status.DRAFT:
        vlans.release_empty_blocks(locked)


# --- links -------------------------------------------------------------------------


def _first_free_data_interface(vm: VM, exclude: set[int]) -> Interface:
    for iface in vm.interfaces.filter(index__gte=1).order_by("index"):
        if iface.pk in exclude:
            continue
        if not Link.objects.filter(a=iface).exists() and not Link.objects.filter(b=iface).exists():
            return iface
    raise InvalidRequest(
        f"VM {vm.name!r} has no free data interface: raise its data_interfaces_count.",
        code="no_free_interface",
    )


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

    Takes the next free VLAN of the slice's pool, records it on the link and on
    both interfaces, reserves the two ends' addresses (.10 and .11).
    """
    locked = _lock_slice(slice_obj.pk)
    _check_editable(locked)
    if vm_a.slice_id != locked.pk or vm_b.slice_id != locked.pk:
        raise InvalidRequest("Both VMs of a link must belong to this slice.", code="cross_slice")
    if vm_a.pk == vm_b.pk:
        raise InvalidRequest("A link joins two distinct VMs.", code="same_vm")
    ends = []
    for vm, name, field in ((vm_a, iface_a, "iface_a"), (vm_b, iface_b, "iface_b")):
        if name is None or name == "":
            ends.append(_first_free_data_interface(vm, {e.pk for e in ends}))
            continue
        iface = _find_interface(vm, name, field)
        if iface.index == 0:
            raise InvalidRequest(
                f"{vm.name}.eth0 is the management interface and is never linked; use eth1 or above.",
                field=field,
                code="management_interface",
            )
        if Link.objects.filter(a=iface).exists() or Link.objects.filter(b=iface).exists():
            raise InvalidRequest(
                f"{vm.name}.{iface.name} already carries a link.", field=field, code="interface_linked"
            )
        ends.append(iface)
    a, b = sorted(ends, key=lambda i: i.pk)
    vlan = vlans.allocate_vlan(locked)
    net = ipam.vlan_network(vlan, settings.SLICE_LINK_SUPERNET)
    try:
        with transaction.atomic():
            link = Link.objects.create(slice=locked, a=a, b=b, vlan=vlan, subnet=str(net.subnet))
    except IntegrityError as exc:
        raise Conflict("That link or VLAN was taken at the same moment; try again.") from exc
    Interface.objects.filter(pk=a.pk).update(vlan=vlan, ip_address=str(net.endpoint_address(0)), lease_address=None)
    Interface.objects.filter(pk=b.pk).update(vlan=vlan, ip_address=str(net.endpoint_address(1)), lease_address=None)
    return link


def _find_interface(vm: VM, name: str, field: str) -> Interface:
    from .naming import iface_index

    try:
        index = iface_index(name)
    except ValueError as exc:
        raise InvalidRequest(f"{name!r} is not an interface name (eth0, eth1, ...).", field=field) from exc
    iface = vm.interfaces.filter(index=index).first()
    if iface is None:
        raise InvalidRequest(
            f"VM {vm.name!r} has no {name} (it has eth0..eth{vm.data_interfaces_count}).",
            field=field,
            code="no_such_interface",
        )
    return iface


@transaction.atomic
def link_delete(*, link: Link) -> None:
    """Delete a link; its VLAN returns to the slice's pool and both ends lose it."""
    locked = _lock_slice(link.slice_id)
    _check_editable(locked)
    Interface.objects.filter(pk__in=[link.a_id, link.b_id]).update(vlan=None, ip_address=None, lease_address=None)
    link.delete()
    if locked.status == Slice.Status.DRAFT:
        vlans.release_empty_blocks(locked)
