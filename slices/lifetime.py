"""Slice lifetime: every deployed slice has an expiry; its owner extends it within their maximum.

A deploy sets ``Slice.expires_at`` to ``SLICE_LIFETIME_HOURS`` from then, capped
by the owner's maximum (``UserQuota.max_lifetime_hours``, else
``SLICE_LIFETIME_MAX_HOURS``); a destroy clears it. The owner (API, designer,
``slicectl extend``) sets it to any time up to that maximum from now. When it
passes, the scheduled job (provisioning.expiry) destroys the slice and keeps its
design. The designer warns ``SLICE_EXPIRY_WARNING_HOURS`` before.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.log import record as audit
from audit.models import AuditEvent

from .errors import Conflict, InvalidRequest
from .models import Slice, UserQuota


def max_hours(*, user) -> int:
    """The longest lifetime (hours from now) the user may give a slice."""
    row = UserQuota.objects.filter(user=user).first()
    if row is not None and row.max_lifetime_hours is not None:
        return row.max_lifetime_hours
    return settings.SLICE_LIFETIME_MAX_HOURS


def initial_expiry(*, user, now: datetime | None = None) -> datetime:
    """The expiry a deploy sets: the installation's default lifetime, at most the user's maximum."""
    now = now or timezone.now()
    return now + timedelta(hours=min(settings.SLICE_LIFETIME_HOURS, max_hours(user=user)))


def warning_due(slice_obj: Slice, *, now: datetime | None = None) -> bool:
    """Whether the designer warns: the slice expires within SLICE_EXPIRY_WARNING_HOURS."""
    if slice_obj.expires_at is None:
        return False
    now = now or timezone.now()
    return slice_obj.expires_at - now <= timedelta(hours=settings.SLICE_EXPIRY_WARNING_HOURS)


@transaction.atomic
def slice_extend(*, slice_obj: Slice, hours: int) -> Slice:
    """Set the slice to expire ``hours`` from now (1 up to the owner's maximum); only a deployed slice."""
    locked = Slice.objects.select_for_update().get(pk=slice_obj.pk)
    if locked.status == Slice.Status.DRAFT or locked.expires_at is None:
        raise Conflict(f"Slice {locked.name!r} is not deployed: it has no expiry to extend.", code="not_deployed")
    limit = max_hours(user=locked.owner)
    if not isinstance(hours, int) or isinstance(hours, bool) or hours < 1 or hours > limit:
        raise InvalidRequest(
            f"A slice's lifetime is 1 to {limit} hours from now (your maximum).", field="hours", code="too_long"
        )
    locked.expires_at = timezone.now() + timedelta(hours=hours)
    Slice.objects.filter(pk=locked.pk).update(expires_at=locked.expires_at)
    audit(
        AuditEvent.Action.EDIT,
        slice_obj=locked,
        target=f"slice {locked.name}",
        detail=f"expiry set to {locked.expires_at:%Y-%m-%d %H:%M} UTC ({hours} h from now)",
    )
    return locked
