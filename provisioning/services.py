"""Provisioning requests: deploy, redeploy, destroy, VM power actions, retry, cancel. Views, API and admin call these.

One job per slice at a time (a database constraint; a second request is a 409).
Jobs are enqueued on the "provisioning" RQ queue in ``transaction.on_commit``
with the deployment's primary key. A dry run goes through the same checks and the
same job, with a runner that records instead of running; it changes no state of
the slice, its VMs or the workers' capacity. The state machine is in
:mod:`provisioning.lifecycle`.
"""

from __future__ import annotations

import secrets
from functools import partial

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction

from audit.log import record as audit
from audit.models import AuditEvent
from slices import guests, internet, lifetime
from slices.errors import Conflict, InvalidRequest, NotFound
from slices.models import VM, Slice

from . import lifecycle, placement, reaper, specs
from .models import ACTIVE_STATUSES, Deployment
from .plans import SliceSpec
from .queue import enqueue

# Which slice states each request may start from.
ALLOWED_FROM = {
    Deployment.Kind.DEPLOY: (Slice.Status.DRAFT, Slice.Status.ACTIVE, Slice.Status.FAILED),
    Deployment.Kind.REDEPLOY: (Slice.Status.ACTIVE, Slice.Status.FAILED),
    Deployment.Kind.DESTROY: (Slice.Status.ACTIVE, Slice.Status.FAILED),
    Deployment.Kind.POWER: (Slice.Status.ACTIVE, Slice.Status.FAILED),
    Deployment.Kind.REPAIR: (Slice.Status.ACTIVE,),  # provisioning.drift.repair_request
}


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
    if deployment.kind == Deployment.Kind.POWER:
        if deployment.vm is None:
            raise Conflict(f"Deployment {deployment.pk} acted on a VM that no longer exists.", code="vm_gone")
        new = power_request(vm=deployment.vm, action=deployment.action, user=user, dry_run=deployment.dry_run)
    elif deployment.kind == Deployment.Kind.REPAIR:  # the slice is failed now: a redeploy puts it back
        new = redeploy_request(slice_obj=deployment.slice, user=user, dry_run=deployment.dry_run)
    else:
        new = _request(slice_obj=deployment.slice, user=user, kind=deployment.kind, dry_run=deployment.dry_run)
    Deployment.objects.filter(pk=new.pk).update(retry_of=deployment)  # the chain the admin shows
    new.retry_of = deployment
    return new


def _new_job_id(deployment_id: int) -> str:
    return f"deployment-{deployment_id}-{secrets.token_hex(4)}"


def _request(*, slice_obj, user, kind: str, dry_run: bool) -> Deployment:
    reaper.reap_abandoned(slice_id=slice_obj.pk)
    with transaction.atomic():
        locked = Slice.objects.select_for_update().filter(pk=slice_obj.pk).first()
        if locked is None:  # deleted by a concurrent request
            raise NotFound("No such slice.")
        refuse_busy(locked)
        if locked.status not in ALLOWED_FROM[kind]:
            hint = "deploy it first" if locked.status == Slice.Status.DRAFT else "destroy or deploy it"
            raise Conflict(
                f"Cannot {kind} slice {locked.name!r} while it is {locked.status}: {hint}.", code="bad_state"
            )
        spec: SliceSpec | None = None
        if kind != Deployment.Kind.DESTROY:
            if not locked.vms.exists():
                raise Conflict(f"Slice {locked.name!r} has no VM to deploy.", code="empty_slice")
            where = placement.place_slice(slice_obj=locked, save=not dry_run)
            addresses = internet.reserve_addresses(slice_obj=locked, save=not dry_run)
            seeds = guests.seed_inputs(slice_obj=locked, save=not dry_run)
            spec = specs.build_spec(slice_obj=locked, hosts=where.hosts, addresses=addresses, seeds=seeds)
        deployment = create_deployment(slice_obj=locked, user=user, kind=kind, dry_run=dry_run, spec=spec)
        if not dry_run:
            if kind != Deployment.Kind.DESTROY and locked.expires_at is None:
                # Its lifetime starts now (slices.lifetime); a redeploy keeps the expiry it has.
                Slice.objects.filter(pk=locked.pk).update(expires_at=lifetime.initial_expiry(user=locked.owner))
            locked.mark_queued(allowed=ALLOWED_FROM[kind])
        transaction.on_commit(partial(enqueue, deployment.pk))
    return deployment


def power_request(*, vm: VM, action: str, user: AbstractBaseUser | None, dry_run: bool = False) -> Deployment:
    """Start, shut down, reboot, reset or force off one deployed VM: a job with step rows like a deploy.

    Only on an active or failed slice with no job running (409 otherwise), and only for a
    VM its last deploy put on the hosts. The slice's state does not change; the VM's status
    is set from the host's answer when the job ends (:func:`lifecycle.power_states_seen`).
    """
    if action not in Deployment.Action.values:
        raise InvalidRequest(f"Unknown power action {action!r}: one of {', '.join(Deployment.Action.values)}.")
    reaper.reap_abandoned(slice_id=vm.slice_id)
    with transaction.atomic():
        locked = Slice.objects.select_for_update().filter(pk=vm.slice_id).first()
        if locked is None or not VM.objects.filter(pk=vm.pk, slice=locked).exists():
            raise NotFound("No such VM.")
        refuse_busy(locked)
        if locked.status not in ALLOWED_FROM[Deployment.Kind.POWER]:
            raise Conflict(
                f"Cannot {action.replace('_', ' ')} VM {vm.name!r}: slice {locked.name!r} is {locked.status}, "
                "not deployed.",
                code="bad_state",
            )
        footprint = specs.deployed_footprint(slice_id=locked.pk)
        if footprint is None or all(v.id != vm.pk for v in footprint.vms):
            raise Conflict(
                f"VM {vm.name!r} is not on the hosts yet: redeploy slice {locked.name!r} first.", code="not_deployed"
            )
        deployment = create_deployment(
            slice_obj=locked, user=user, kind=Deployment.Kind.POWER, dry_run=dry_run, action=action, vm=vm
        )
        transaction.on_commit(partial(enqueue, deployment.pk))
    return deployment


def refuse_busy(locked: Slice) -> None:
    if locked.is_busy or Deployment.objects.filter(slice=locked, status__in=ACTIVE_STATUSES).exists():
        raise Conflict(
            f"Slice {locked.name!r} already has a job running ({locked.status}): wait for it to finish.",
            code="slice_busy",
        )


def create_deployment(
    *, slice_obj: Slice, user, kind: str, dry_run: bool, spec: SliceSpec | None = None, **extra
) -> Deployment:
    """The deployment row (the one-active-job constraint makes a racing second request a 409) and its job id."""
    try:
        with transaction.atomic():
            deployment = Deployment.objects.create(
                slice=slice_obj,
                kind=kind,
                requested_by=user if user is not None and user.is_authenticated else None,
                dry_run=dry_run,
                spec=spec.to_dict() if spec else {},
                **extra,
            )
    except IntegrityError as exc:  # the one-active-deployment constraint
        raise Conflict(f"Slice {slice_obj.name!r} already has a job running.", code="slice_busy") from exc
    Deployment.objects.filter(pk=deployment.pk).update(job_id=_new_job_id(deployment.pk))
    deployment.refresh_from_db()
    _audit_job(deployment, user)
    return deployment


def _audit_job(deployment: Deployment, user) -> None:
    """The request of a job in the audit log (a dry run too: it shows the plan, it changes nothing)."""
    vm = deployment.vm
    action = AuditEvent.Action.POWER if deployment.kind == Deployment.Kind.POWER else deployment.kind
    target = f"deployment {deployment.pk}" + (f" ({deployment.action} VM {vm.name})" if vm is not None else "")
    audit(
        action,
        slice_obj=deployment.slice,
        user=user if user is not None and user.is_authenticated else None,
        target=target,
        host=vm.host.name if vm is not None and vm.host_id else "",
        detail="dry run" if deployment.dry_run else "",
    )


def cancel_request(*, deployment: Deployment, user: AbstractBaseUser | None) -> Deployment:
    """Ask a queued or running job to stop.

    A queued job is cancelled at once (its RQ job finds it no longer queued and
    does nothing); a running one stops at its next step boundary and says where.
    Either way the slice is left failed: deploy, redeploy or destroy repair it.
    """
    if not deployment.request_cancel(user=user):
        raise Conflict(
            f"Deployment {deployment.pk} is {deployment.status}: only a queued or running job can be cancelled.",
            code="not_active",
        )
    by = f" by {user.get_username()}" if user is not None and user.is_authenticated else ""
    audit(
        AuditEvent.Action.CANCEL,
        slice_obj=deployment.slice,
        user=user if user is not None and user.is_authenticated else None,
        target=f"deployment {deployment.pk} ({deployment.kind})",
    )
    lifecycle.on_cancelled(deployment, f"Cancelled{by} before it started.", only_queued=True)
    deployment.refresh_from_db()
    return deployment
