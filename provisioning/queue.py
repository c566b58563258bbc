"""The RQ queue provisioning jobs go to, and putting a deployment on it."""

from __future__ import annotations

import logging

import django_rq
from django.conf import settings
from rq import Queue

from . import lifecycle
from .models import Deployment

log = logging.getLogger(__name__)

# By dotted path: the queue needs no import of the job code (which imports the executor).
RUN_DEPLOYMENT = "provisioning.jobs.run_deployment"
RESULT_TTL = 7 * 86400
FAILURE_TTL = 30 * 86400


def queue_name() -> str:
    return getattr(settings, "PROVISIONING_QUEUE", "provisioning")


def provisioning_queue() -> Queue:
    """The RQ queue jobs go to (``PROVISIONING_QUEUE``, default "provisioning")."""
    name = queue_name()
    if name in settings.RQ_QUEUES:
        return django_rq.get_queue(name)
    return Queue(name, connection=django_rq.get_connection("provisioning"))


def enqueue(deployment_id: int) -> None:
    """Put the deployment's job on the queue (called after commit). A failure to enqueue fails it."""
    deployment = Deployment.objects.filter(pk=deployment_id).first()
    if deployment is None:  # the slice was deleted before the request committed its job
        return
    try:
        provisioning_queue().enqueue(
            RUN_DEPLOYMENT,
            deployment_id,
            job_id=deployment.job_id,
            job_timeout=settings.PROVISIONING_JOB_TIMEOUT,
            result_ttl=RESULT_TTL,
            failure_ttl=FAILURE_TTL,
            description=f"{deployment.kind} of slice {deployment.slice_id} (deployment {deployment_id})",
        )
    except Exception as exc:
        log.exception("cannot enqueue deployment %s", deployment_id)
        lifecycle.on_failed(deployment, f"could not queue the job: {type(exc).__name__}: {exc}")
