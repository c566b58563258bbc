"""Abandoned jobs: deployments whose job can no longer finish are failed, so their slice is usable again.

Run on RQ's own scheduler (``manage.py rqcron provisioning.cron``, every
``PROVISIONING_REAP_INTERVAL`` seconds), before every provisioning request and
when a worker starts a job. Reading a deployment never reaps (a GET never writes).
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from rq.exceptions import NoSuchJobError
from rq.job import Job

from . import lifecycle
from .models import ACTIVE_STATUSES, Deployment, DeploymentStep
from .queue import provisioning_queue

log = logging.getLogger(__name__)

ENQUEUE_GRACE = timedelta(seconds=60)  # a queued deployment with no RQ job after this is abandoned


def heartbeat_timeout() -> timedelta:
    return timedelta(seconds=int(getattr(settings, "PROVISIONING_HEARTBEAT_TIMEOUT", 60)))


@dataclass(frozen=True)
class Abandoned:
    deployment_id: int
    reason: str


def _rq_status(job_id: str) -> str | None:
    """The RQ job's status, "missing" when Redis has no such job, None when Redis cannot be asked."""
    try:
        conn = provisioning_queue().connection
        return Job.fetch(job_id, connection=conn).get_status(refresh=True).value
    except NoSuchJobError:
        return "missing"
    except Exception:
        log.warning("cannot read RQ job %s", job_id, exc_info=True)
        return None


def _local_process_gone(worker: str) -> bool:
    """True when ``worker`` (host:pid) is a process on this machine that no longer exists."""
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _abandon_reason(dep: Deployment, now) -> str | None:
    if dep.status == Deployment.Status.RUNNING:
        if dep.worker and _local_process_gone(dep.worker):
            return f"the worker process running it ({dep.worker}) is gone"
        if dep.heartbeat and now - dep.heartbeat > heartbeat_timeout():
            return f"no sign of life from its worker ({dep.worker or 'unknown'}) since {dep.heartbeat:%H:%M:%S} UTC"
    status = _rq_status(dep.job_id) if dep.job_id else "missing"
    if status in ("failed", "stopped", "canceled"):
        return f"its RQ job {dep.job_id} is {status} (the worker was killed or timed out)"
    if status == "missing" and now - dep.created > ENQUEUE_GRACE:
        if dep.status == Deployment.Status.QUEUED or now - (dep.heartbeat or dep.created) > heartbeat_timeout():
            return f"its RQ job {dep.job_id or '(none)'} is gone from the queue"
    return None


def reap_abandoned(*, slice_id: int | None = None, now=None) -> list[Abandoned]:
    """Fail queued/running deployments whose job can no longer finish; their slice becomes failed.

    Signs: the worker process (this machine) is gone; its heartbeat is older than
    ``PROVISIONING_HEARTBEAT_TIMEOUT``; its RQ job failed/stopped; its RQ job
    vanished.
    """
    now = now or timezone.now()
    rows = Deployment.objects.filter(status__in=ACTIVE_STATUSES)
    if slice_id is not None:
        rows = rows.filter(slice_id=slice_id)
    found = []
    for dep in rows:
        reason = _abandon_reason(dep, now)
        if reason is None:
            continue
        running = DeploymentStep.objects.filter(deployment=dep, status=DeploymentStep.Status.RUNNING).first()
        where = f" during step '{running.description}' on {running.host}" if running else ""
        message = f"abandoned: {reason}{where}. Deploy again or destroy the slice."
        DeploymentStep.objects.filter(deployment=dep, status=DeploymentStep.Status.RUNNING).update(
            status=DeploymentStep.Status.FAILED,
            output_tail="abandoned",
            finished=now,
            revision=dep.latest_step_revision() + 1,
        )
        lifecycle.on_failed(dep, message)
        found.append(Abandoned(dep.pk, message))
        log.warning("deployment %s %s", dep.pk, message)
    return found
