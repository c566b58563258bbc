"""Per-user quotas: limits (a UserQuota row or the settings' defaults), usage, and the check writes make."""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, Sum

from .errors import QuotaExceeded
from .models import VM, UserQuota


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
    agg = VM.objects.filter(slice__owner=user).aggregate(
        vms=Count("id"), vcpus=Sum("flavor__vcpus"), ram=Sum("flavor__ram_mib")
    )
    return {"vms": agg["vms"] or 0, "vcpus": agg["vcpus"] or 0, "ram_mib": agg["ram"] or 0}


def check_quota(*, user: AbstractBaseUser, add_vms: int, add_vcpus: int, add_ram: int) -> None:
    """Refuse (403) when adding this much would take the user over a limit.

    Locks the user's row first: two requests adding VMs to two different slices
    of the same user are serialised here, so together they cannot pass a limit
    that each alone respects. Callers lock the slice before (always that order).
    """
    get_user_model().objects.select_for_update().filter(pk=user.pk).first()
    limits, used = quota_limits(user=user), quota_usage(user=user)
    for key, add, label in (("vms", add_vms, "VMs"), ("vcpus", add_vcpus, "vCPUs"), ("ram_mib", add_ram, "MiB of RAM")):
        if add > 0 and used[key] + add > limits[key]:
            raise QuotaExceeded(
                f"Quota exceeded: this needs {used[key] + add} {label}, your limit is {limits[key]} "
                f"(in use: {used[key]})."
            )
