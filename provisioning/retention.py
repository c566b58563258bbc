"""History retention: old deployments and their step rows are pruned, the history a slice needs is kept.

Every deploy/destroy cycle leaves two deployments and dozens of step rows. The
scheduled job (provisioning.cron, every ``PROVISIONING_PRUNE_INTERVAL`` seconds)
deletes a deployment, with its steps, only when all of these hold:

- it has ended (never a queued or running job);
- it is older than ``PROVISIONING_HISTORY_DAYS``;
- it is not among the last ``PROVISIONING_HISTORY_KEEP`` (at least 1) of its slice,
  so a slice's latest deployment is never pruned;
- the slice's footprint on the hosts does not need it. What a slice may hold on the
  hosts is computed from its history (:func:`provisioning.specs.deployed_footprint`):
  everything before its last succeeded destroy, or before its last succeeded deploy
  or redeploy with a spec, no longer counts; the rows from that one on are kept
  whatever their age. A slice with no such row keeps every real job (only its dry
  runs go).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Min, Q
from django.utils import timezone

from .models import ACTIVE_STATUSES, Deployment, DeploymentStep

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pruned:
    """What one pruning round deleted."""

    deployments: int
    steps: int


def history_days() -> int:
    return int(getattr(settings, "PROVISIONING_HISTORY_DAYS", 30))


def history_keep() -> int:
    return max(1, int(getattr(settings, "PROVISIONING_HISTORY_KEEP", 10)))


def _anchor(slice_id: int) -> Deployment | None:
    """The newest job that resets the slice's footprint (rows before it no longer count)."""
    resets = Q(kind=Deployment.Kind.DESTROY) | (
        Q(kind__in=[Deployment.Kind.DEPLOY, Deployment.Kind.REDEPLOY]) & ~Q(spec={})
    )
    return (
        Deployment.objects.filter(slice_id=slice_id, dry_run=False, status=Deployment.Status.SUCCEEDED)
        .filter(resets)
        .order_by("-created", "-id")
        .only("id", "created")
        .first()
    )


def prunable(*, slice_id: int, cutoff: datetime, keep: int) -> list[int]:
    """The ids of the slice's deployments that may go (see the module's rules)."""
    rows = list(
        Deployment.objects.filter(slice_id=slice_id)
        .order_by("-created", "-id")
        .values_list("id", "created", "status", "dry_run")
    )
    anchor = _anchor(slice_id)
    out = []
    for pk, created, status, dry_run in rows[keep:]:
        if status in ACTIVE_STATUSES or created >= cutoff:
            continue
        before_anchor = anchor is not None and (created, pk) < (anchor.created, anchor.pk)
        if dry_run or before_anchor:
            out.append(pk)
    return out


def prune_history(*, now: datetime | None = None, days: int | None = None, keep: int | None = None) -> Pruned:
    """Delete the deployments (and their steps) that the retention rules let go; one slice at a time."""
    now = now or timezone.now()
    keep = max(1, keep if keep is not None else history_keep())
    cutoff = now - timedelta(days=days if days is not None else history_days())
    # Slices with more rows than they keep, some of them old enough.
    crowded = (
        Deployment.objects.order_by()
        .values("slice_id")
        .annotate(n=Count("id"), oldest=Min("created"))
        .filter(n__gt=keep, oldest__lt=cutoff)
        .values_list("slice_id", flat=True)
    )
    deployments = steps = 0
    for slice_id in crowded:
        ids = prunable(slice_id=slice_id, cutoff=cutoff, keep=keep)
        if not ids:
            continue
        with transaction.atomic():
            steps += DeploymentStep.objects.filter(deployment_id__in=ids).delete()[0]
            deployments += Deployment.objects.filter(pk__in=ids).exclude(status__in=ACTIVE_STATUSES).delete()[0]
    if deployments:
        log.info("pruned %d deployment(s) and %d step row(s)", deployments, steps)
    return Pruned(deployments=deployments, steps=steps)
