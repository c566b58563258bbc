"""Provisioning requests and the slice state machine. Views, the API, the admin and jobs call these.

Slice states (docs/provisioning.md)::

    draft  --deploy-->  queued --job starts--> deploying --ok--> active
                                                         \\--error--> failed
    active --deploy/redeploy--> queued --> deploying --> active | failed
    active/failed --destroy--> queued --job starts--> destroying --ok--> draft
                                                                  \\--error--> failed
    failed --deploy (retry)/redeploy/destroy--> queued ...

One job per slice at a time (a database constraint; a second request is a 409).
Jobs are enqueued on the "provisioning" RQ queue in ``transaction.on_commit``
with the deployment's primary key. A dry run goes through the same checks and the
same job, with a runner that records instead of running; it changes no state.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from slices.errors import Conflict

from . import placement, specs
from .models import ACTIVE_STATUSES, Deployment, DeploymentStep
from .plans import SliceSpec

log = logging.getLogger(__name__)

# Which slice states each request may start from.
ALLOWED_FROM = {
    Deployment.Kind.DEPLOY: ("draft", "active", "failed"),
    Deployment.Kind.REDEPLOY: ("active", "failed"),
    Deployment.Kind.DESTROY: ("active", "failed"),
}
BUSY = ("queued", "deploying", "destroying")
ENQUEUE_GRACE = timedelta(seconds=60)  # a queued deployment with no RQ job after this is abandoned


def heartbeat_timeout() -> timedelta:
    return timedelta(seconds=int(getattr(settings, "PROVISIONING_HEARTBEAT_TIMEOUT", 60)))


def provisioning_queue():
    """The RQ queue jobs go to (``PROVISIONING_QUEUE``, default "provisioning")."""
    import django_rq
    from rq import Queue

    name = getattr(settings, "PROVISIONING_QUEUE", "provisioning")
    if name in settings.RQ_QUEUES:
        return django_rq.get_queue(name)
    return Queue(name, connection=django_rq.get_connection("provisioning"))


# --- slice transitions --------------------------------------------------------------------------


def _slice_transition(slice_id: int, *, to: str, allowed: tuple[str, ...]) -> bool:
    """Compare-and-set the slice's status; False when it was not in ``allowed``."""
    from slices.models import Slice

    return bool(Slice.objects.filter(pk=slice_id, status__in=allowed).update(status=to))


def on_started(deployment: Deployment) -> None:
    """The job began: queued -> deploying / destroying; the VMs of a deploy are deploying."""
    from slices.models import VM

    if deployment.dry_run:
        return
    busy = "destroying" if deployment.kind == Deployment.Kind.DESTROY else "deploying"
    _slice_transition(deployment.slice_id, to=busy, allowed=("queued",))
    if deployment.kind != Deployment.Kind.DESTROY:
        VM.objects.filter(slice_id=deployment.slice_id).exclude(status=VM.Status.RUNNING).update(
            status=VM.Status.DEPLOYING
        )


def on_succeeded(deployment: Deployment, *, spec: SliceSpec | None) -> None:
    """deploying -> active (VMs running) / destroying -> draft (VMs designed, leases forgotten)."""
    from slices import vlans
    from slices.models import VM, Interface, Slice

    if not deployment.mark_succeeded() or deployment.dry_run:
        return
    if deployment.kind == Deployment.Kind.DESTROY:
        with transaction.atomic():
            if _slice_transition(deployment.slice_id, to="draft", allowed=("destroying",)):
                VM.objects.filter(slice_id=deployment.slice_id).update(status=VM.Status.DESIGNED)
                Interface.objects.filter(vm__slice_id=deployment.slice_id).update(lease_address=None)
                locked = Slice.objects.select_for_update().get(pk=deployment.slice_id)
                vlans.release_empty_blocks(locked)
        return
    _slice_transition(deployment.slice_id, to="active", allowed=("deploying",))
    ids = [vm.id for vm in spec.vms] if spec else []
    VM.objects.filter(pk__in=ids).update(status=VM.Status.RUNNING)


def on_failed(deployment: Deployment, error: str, *, started_vms: set[int] | frozenset[int] = frozenset()) -> None:
    """Any state of the job -> failed, with the error; VMs whose QEMU runs stay running."""
    from slices.models import VM

    if not deployment.mark_failed(error) or deployment.dry_run:
        return
    _slice_transition(deployment.slice_id, to="failed", allowed=BUSY)
    if deployment.kind != Deployment.Kind.DESTROY:
        VM.objects.filter(slice_id=deployment.slice_id, pk__in=list(started_vms)).update(status=VM.Status.RUNNING)
        VM.objects.filter(slice_id=deployment.slice_id, status=VM.Status.DEPLOYING).update(status=VM.Status.FAILED)


# --- requests -------------------------------------------------------------------------------------


def deploy_request(*, slice_obj, user: AbstractBaseUser | None, dry_run: bool = False) -> Deployment:
    """Deploy the slice as designed (from draft, active or failed): places VMs, queues the job."""
    return _request(slice_obj=slice_obj, user=user, kind=Deployment.Kind.DEPLOY, dry_run=dry_run)


def redeploy_request(*, slice_obj, user: AbstractBaseUser | None, dry_run: bool = False) -> Deployment:
    """Apply a changed design to a deployed slice (active or failed); untouched VMs keep running."""
    return _request(slice_obj=slice_obj, user=user, kind=Deployment.Kind.REDEPLOY, dry_run=dry_run)


def destroy_request(*, slice_obj, user: AbstractBaseUser | None, dry_run: bool = False) -> Deployment:
    """Remove everything of the slice from the hosts (active or failed) and return it to draft."""
    return _request(slice_obj=slice_obj, user=user, kind=Deployment.Kind.DESTROY, dry_run=dry_run)


def retry_deployment(*, deployment: Deployment, user: AbstractBaseUser | None) -> Deployment:
    """A new job of the same kind for a failed deployment's slice (with the slice's current design)."""
    if deployment.status != Deployment.Status.FAILED:
        raise Conflict(f"Deployment {deployment.pk} is {deployment.status}: only a failed one can be retried.")
    return _request(slice_obj=deployment.slice, user=user, kind=deployment.kind, dry_run=deployment.dry_run)


def _new_job_id(deployment_id: int) -> str:
    return f"deployment-{deployment_id}-{secrets.token_hex(4)}"


def _request(*, slice_obj, user, kind: str, dry_run: bool) -> Deployment:
    from slices.models import Slice

    reap_abandoned(slice_id=slice_obj.pk)
    with transaction.atomic():
        locked = Slice.objects.select_for_update().get(pk=slice_obj.pk)
        if locked.status in BUSY or Deployment.objects.filter(slice=locked, status__in=ACTIVE_STATUSES).exists():
            raise Conflict(
                f"Slice {locked.name!r} already has a job running ({locked.status}): wait for it to finish.",
                code="slice_busy",
            )
        if locked.status not in ALLOWED_FROM[kind]:
            hint = "deploy it first" if locked.status == "draft" else "destroy or deploy it"
            raise Conflict(
                f"Cannot {kind} slice {locked.name!r} while it is {locked.status}: {hint}.", code="bad_state"
            )
        spec: SliceSpec | None = None
        if kind != Deployment.Kind.DESTROY:
            if not locked.vms.exists():
                raise Conflict(f"Slice {locked.name!r} has no VM to deploy.", code="empty_slice")
            where = placement.place_slice(slice_obj=locked, save=not dry_run)
            spec = specs.build_spec(slice_obj=locked, hosts=where.hosts)
        try:
            with transaction.atomic():
                deployment = Deployment.objects.create(
                    slice=locked,
                    kind=kind,
                    requested_by=user if user is not None and user.is_authenticated else None,
                    dry_run=dry_run,
                    spec=spec.to_dict() if spec else {},
                )
        except IntegrityError as exc:  # the one-active-deployment constraint
            raise Conflict(f"Slice {locked.name!r} already has a job running.", code="slice_busy") from exc
        Deployment.objects.filter(pk=deployment.pk).update(job_id=_new_job_id(deployment.pk))
        deployment.refresh_from_db()
        if not dry_run:
            Slice.objects.filter(pk=locked.pk).update(status="queued")
        transaction.on_commit(partial(enqueue, deployment.pk))
    return deployment


def enqueue(deployment_id: int) -> None:
    """Put the deployment's job on the queue (after commit). A failure to enqueue fails it."""
    from . import jobs

    deployment = Deployment.objects.get(pk=deployment_id)
    try:
        provisioning_queue().enqueue(
            jobs.run_deployment,
            deployment_id,
            job_id=deployment.job_id,
            job_timeout=settings.PROVISIONING_JOB_TIMEOUT,
            result_ttl=7 * 86400,
            failure_ttl=30 * 86400,
            description=f"{deployment.kind} of slice {deployment.slice_id} (deployment {deployment_id})",
        )
    except Exception as exc:
        log.exception("cannot enqueue deployment %s", deployment_id)
        on_failed(deployment, f"could not queue the job: {type(exc).__name__}: {exc}")


# --- abandoned jobs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Abandoned:
    deployment_id: int
    reason: str


def _rq_status(job_id: str) -> str | None:
    """The RQ job's status, "missing" when Redis has no such job, None when Redis cannot be asked."""
    from rq.exceptions import NoSuchJobError
    from rq.job import Job

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
    vanished. Called before every request, when deployments are read, and by
    ``manage.py reap_deployments`` (periodic).
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
        on_failed(dep, message)
        found.append(Abandoned(dep.pk, message))
        log.warning("deployment %s %s", dep.pk, message)
    return found
