"""What a job's start and end mean for the slice and its VMs: the slice state machine's glue.

Slice states (docs/provisioning.md)::

    draft  --deploy-->  queued --job starts--> deploying --ok--> active
                                                         \\--error / cancel--> failed
    active --deploy/redeploy--> queued --> deploying --> active | failed
    active/failed --destroy--> queued --job starts--> destroying --ok--> draft
                                                                  \\--error / cancel--> failed
    failed --deploy (retry)/redeploy/destroy--> queued ...
    active/failed --power action on a VM--> (unchanged; the job's row makes the slice busy)

Every change goes through the named transitions of :class:`slices.models.Slice`,
:class:`slices.models.VMQuerySet` and :class:`provisioning.models.Deployment`. A dry
run changes no state of the slice or its VMs: only its deployment record ends.
"""

from __future__ import annotations

from collections.abc import Collection

from django.db import transaction
from django.utils import timezone

from slices import internet, vlans
from slices.models import VM, Slice

from .models import Deployment, DeploymentStep, Drift, SliceHealth
from .plans import SliceSpec
from .plans.power import PHASE_STATUS, STOPPED, parse_power_status

# QMP run states that mean the guest is dead although its QEMU runs; every other live state is "running".
CRASHED_STATES = ("guest-panicked", "internal-error")


def _slice(deployment: Deployment) -> Slice:
    return Slice.objects.get(pk=deployment.slice_id)


def on_started(deployment: Deployment) -> None:
    """The job began: queued -> deploying / destroying; the VMs of a deploy are deploying."""
    if deployment.dry_run or deployment.kind == Deployment.Kind.POWER:
        return
    slice_obj = _slice(deployment)
    if deployment.kind == Deployment.Kind.DESTROY:
        slice_obj.mark_destroying()
        return
    slice_obj.mark_deploying()
    VM.objects.filter(slice_id=deployment.slice_id).mark_deploying()


def on_succeeded(deployment: Deployment, *, spec: SliceSpec | None) -> None:
    """deploying -> active (VMs running) / destroying -> draft (VMs designed, leases forgotten)."""
    if not deployment.mark_succeeded() or deployment.dry_run:
        return
    if deployment.kind == Deployment.Kind.POWER:
        power_states_seen(deployment)
        return
    if deployment.kind == Deployment.Kind.DESTROY:
        with transaction.atomic():
            locked = Slice.objects.select_for_update().get(pk=deployment.slice_id)
            if locked.mark_draft():
                Slice.objects.filter(pk=locked.pk).update(expires_at=None)  # a lifetime starts at each deploy
                VM.objects.filter(slice_id=locked.pk).mark_designed()
                _forget_drift(locked.pk)
                vlans.release_unused(locked)
                internet.release_addresses(slice_id=locked.pk)
        return
    _slice(deployment).mark_active()
    if spec is not None:
        # The hosts hold exactly the spec now: VLAN 400 addresses no longer in it are free again.
        internet.release_addresses(slice_id=deployment.slice_id, keep=[mac for mac, _ in spec.internet_reservations])
    VM.objects.filter(pk__in=[vm.id for vm in spec.vms] if spec else []).mark_running()


def _forget_drift(slice_id: int) -> None:
    """The slice left its hosts: its open differences are closed, its health unknown (provisioning.drift)."""
    now = timezone.now()
    Drift.objects.filter(slice_id=slice_id, resolved_at__isnull=True).update(resolved_at=now, resolution="destroyed")
    SliceHealth.objects.filter(slice_id=slice_id).update(state=SliceHealth.State.UNKNOWN, since=now)


def _stopped(deployment: Deployment, started_vms: Collection[int]) -> None:
    """After a failed or cancelled job: the slice is failed; VMs whose QEMU runs stay running."""
    DeploymentStep.objects.filter(deployment=deployment, status=DeploymentStep.Status.PENDING).update(
        status=DeploymentStep.Status.NOT_RUN, revision=deployment.latest_step_revision() + 1
    )
    slice_obj = Slice.objects.filter(pk=deployment.slice_id).first()
    if deployment.dry_run or slice_obj is None:
        return
    if deployment.kind == Deployment.Kind.POWER:  # the slice's network is as it was: it stays as it is
        power_states_seen(deployment)
        return
    slice_obj.mark_failed()
    if deployment.kind != Deployment.Kind.DESTROY:
        VM.objects.filter(slice_id=deployment.slice_id, pk__in=list(started_vms)).mark_running()
        VM.objects.filter(slice_id=deployment.slice_id).mark_failed_if_deploying()


def on_failed(deployment: Deployment, error: str, *, started_vms: Collection[int] = ()) -> None:
    """Any state of the job -> failed, with the error naming host, step and output."""
    if deployment.mark_failed(error):
        _stopped(deployment, started_vms)


def on_cancelled(
    deployment: Deployment, reason: str, *, started_vms: Collection[int] = (), only_queued: bool = False
) -> bool:
    """The job stopped because someone asked: the deployment says where; the slice is failed (repairable).

    ``only_queued``: cancel only if no job has claimed the deployment yet (a running
    job stops by itself at its next step boundary). Returns whether it was cancelled.
    """
    if not deployment.mark_cancelled(reason, only_queued=only_queued):
        return False
    _stopped(deployment, started_vms)
    return True


def power_states_seen(deployment: Deployment) -> dict[int, str]:
    """Set the status of the VMs a power job's status probe reported (running / stopped / failed).

    Read from the probe's step rows: what the host said, not what the job asked for. A VM
    whose probe did not run (an earlier step failed) keeps its status. Returns {vm id: state}.
    """
    states: dict[int, str] = {}
    rows = DeploymentStep.objects.filter(
        deployment=deployment, phase=PHASE_STATUS, status=DeploymentStep.Status.OK
    ).values_list("output_tail", flat=True)
    for output in rows:
        states.update(parse_power_status(output))
    vms = VM.objects.filter(slice_id=deployment.slice_id)
    for vm_id, state in states.items():
        one = vms.filter(pk=vm_id)
        if state == STOPPED:
            one.mark_stopped()
        elif state in CRASHED_STATES:
            one.mark_failed()
        else:
            one.mark_running()
    return states
