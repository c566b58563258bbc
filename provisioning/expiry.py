"""Expired slices are destroyed (their design kept): the scheduled job of slices.lifetime.

Run on RQ's cron (provisioning.cron, every ``SLICE_EXPIRY_INTERVAL`` seconds).
A slice whose ``expires_at`` has passed and that is deployed (active or failed)
gets a destroy job like one its owner would request, with no user (the audit
log says the system did it); a slice with a job running is tried again at the
next round.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from slices.errors import ServiceError
from slices.models import Slice

from . import services

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Expired:
    slice_id: int
    deployment_id: int | None
    reason: str


def expire_slices(*, now: datetime | None = None) -> list[Expired]:
    """Request a destroy of every deployed slice whose expiry has passed."""
    now = now or timezone.now()
    due = Slice.objects.filter(expires_at__lte=now, status__in=[Slice.Status.ACTIVE, Slice.Status.FAILED]).order_by(
        "expires_at", "id"
    )
    out = []
    for slice_obj in due:
        try:
            job = services.destroy_request(slice_obj=slice_obj, user=None)
        except ServiceError as exc:  # a job running on it now: the next round tries again
            out.append(Expired(slice_obj.pk, None, exc.message))
            continue
        log.info(
            "slice %s (%s) expired at %s: destroy job %s", slice_obj.pk, slice_obj.name, slice_obj.expires_at, job.pk
        )
        out.append(Expired(slice_obj.pk, job.pk, f"expired at {slice_obj.expires_at:%Y-%m-%d %H:%M} UTC"))
    return out
