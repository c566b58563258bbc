"""Reads of the slice design domain, with the prefetches that keep query counts flat."""

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, IntegerField, OuterRef, Prefetch, QuerySet, Subquery
from django.db.models.functions import Coalesce

from .models import VM, Interface, Link, Slice


def _visible(qs: QuerySet, user: AbstractBaseUser, owner_path: str) -> QuerySet:
    if user.is_staff:
        return qs
    return qs.filter(**{owner_path: user})


def _count(model, fk: str) -> Coalesce:
    """A correlated COUNT(*) subquery: no join fan-out between the two counts."""
    rows = model.objects.filter(**{fk: OuterRef("pk")}).order_by().values(fk).annotate(n=Count("pk")).values("n")
    return Coalesce(Subquery(rows, output_field=IntegerField()), 0)


def slice_list(*, user: AbstractBaseUser) -> QuerySet[Slice]:
    """Slices the user may see (all for staff), with VM and link counts."""
    qs = Slice.objects.select_related("owner").annotate(vm_count=_count(VM, "slice"), link_count=_count(Link, "slice"))
    return _visible(qs, user, "owner")


def interface_queryset() -> QuerySet[Interface]:
    """Interfaces with their link (either end) joined in."""
    return Interface.objects.select_related("link_as_a", "link_as_b")


def vm_list(*, user: AbstractBaseUser) -> QuerySet[VM]:
    """VMs of the user's slices, with flavor, image, host and interfaces prefetched."""
    qs = VM.objects.select_related("slice", "flavor", "image", "host").prefetch_related(
        Prefetch("interfaces", queryset=interface_queryset())
    )
    return _visible(qs, user, "slice__owner")


def link_list(*, user: AbstractBaseUser) -> QuerySet[Link]:
    """Links of the user's slices, with both ends and their VMs."""
    qs = Link.objects.select_related("slice", "a__vm", "b__vm")
    return _visible(qs, user, "slice__owner")


def interface_list(*, user: AbstractBaseUser) -> QuerySet[Interface]:
    """Interfaces of the user's VMs, with their VM, slice and link."""
    qs = interface_queryset().select_related("vm", "vm__slice")
    return _visible(qs, user, "vm__slice__owner")


def slice_detail_queryset(*, user: AbstractBaseUser) -> QuerySet[Slice]:
    """Slices with everything the designer draws, in a constant number of queries."""
    return slice_list(user=user).prefetch_related(
        Prefetch(
            "vms",
            queryset=VM.objects.select_related("flavor", "image", "host").prefetch_related(
                Prefetch("interfaces", queryset=interface_queryset())
            ),
        ),
        Prefetch("links", queryset=Link.objects.select_related("a__vm", "b__vm")),
        "held_vlans",
    )


def slice_status(*, slice_obj: Slice) -> dict:
    """The compact status of a slice: per VM its host, status and addressed interfaces (two queries).

    Small enough to poll every second for a slice of hundreds of VMs (see docs/slices-as-code.md).
    """
    interfaces: dict[int, list[dict]] = {}
    rows = (
        Interface.objects.filter(vm__slice=slice_obj, vlan__isnull=False)
        .order_by("vm_id", "index")
        .values_list("vm_id", "index", "vlan", "ip_address", "lease_address")
    )
    for vm_id, index, vlan, ip, lease in rows:
        interfaces.setdefault(vm_id, []).append({"name": f"eth{index}", "vlan": vlan, "ip": ip, "lease": lease})
    vms = VM.objects.filter(slice=slice_obj).order_by("name").values_list("pk", "name", "host__name", "status")
    return {
        "id": slice_obj.pk,
        "name": slice_obj.name,
        "status": slice_obj.status,
        "vms": [
            {"name": name, "host": host, "status": status, "interfaces": interfaces.get(pk, [])}
            for pk, name, host, status in vms
        ],
    }
