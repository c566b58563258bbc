"""Drift checks: observe hosts (one read-only SSH round trip each), record host and slice health, repair.

- :func:`check_hosts` observes the hosts in parallel (:func:`plans.sense.observe_command`),
  stores each host's health (:class:`HostHealth`), compares every active slice's deployed
  footprint with what its hosts hold (:mod:`plans.drift`) and records the differences
  (:class:`Drift`, from first seen until resolved) and the slice's health (:class:`SliceHealth`).
  A VM whose QEMU is gone is "stopped unexpectedly" (``VM.Status.LOST``).
- Differences that break isolation between slices (missing guard flows, missing isolation
  rules, a TAP with a wrong tag) are put back by the check itself with the plan's own
  idempotent commands (a second round trip, only then), and recorded as repaired.
- :func:`repair_request` queues a repair: the deployed footprint applied again through
  the idempotent plan (checks skip what is in place), VMs that lost a TAP restarted.
- Slices with a job running are left alone (their hosts are changing).
- The same observation carries the host's load and each guest's CPU and memory: :mod:`.usage`
  keeps them as samples for the VM card's and the host page's charts.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from inventory.models import Host
from slices.errors import Conflict, NotFound
from slices.models import VM, Slice

from . import executor, reaper, specs, usage
from .models import ACTIVE_STATUSES, Deployment, Drift, HostHealth, SliceHealth
from .plans import HostCommand, SliceSpec
from .plans import drift as plan_drift
from .plans.sense import HostObservation, observe_command, parse_observation
from .queue import enqueue, provisioning_queue
from .runners import Runner
from .services import create_deployment, refuse_busy

log = logging.getLogger(__name__)

CHECK_JOB = "provisioning.jobs.check_host"
REPAIRED_BY_CHECK = "repaired by the check"


@dataclass
class HostReport:
    """What one check of one host found and did."""

    host: str
    reachable: bool = False
    error: str = ""
    differences: list[plan_drift.Difference] = field(default_factory=list)
    orphans: list[plan_drift.Difference] = field(default_factory=list)
    repaired: list[plan_drift.Difference] = field(default_factory=list)
    round_trips: int = 0
    commands: int = 0
    output: str = ""  # what the observation printed (for the record and the tests)


# --- what should be there ---------------------------------------------------------------------


def _footprints(slices: Iterable[Slice]) -> dict[int, SliceSpec]:
    out = {}
    for s in slices:
        spec = specs.deployed_footprint(slice_id=s.pk)
        if spec is not None:
            out[s.pk] = spec
    return out


def checked_slices() -> dict[int, SliceSpec]:
    """Active slices with no job running, by id: their deployed footprint is what their hosts must hold."""
    busy = Deployment.objects.filter(status__in=ACTIVE_STATUSES).values("slice_id")
    return _footprints(Slice.objects.filter(status=Slice.Status.ACTIVE).exclude(pk__in=busy))


def owner_specs() -> list[SliceSpec]:
    """Everything any slice not in draft may have on the hosts (orphans are what none of them accounts for)."""
    live = Slice.objects.exclude(status=Slice.Status.DRAFT)
    out = list(_footprints(live).values())
    for dep in Deployment.objects.filter(status__in=ACTIVE_STATUSES, dry_run=False).exclude(spec={}):
        out.append(SliceSpec.from_dict(dep.spec))
    return out


def _stopped_vms() -> set[int]:
    """VMs shut down on purpose (a power action): their QEMU is meant to be down."""
    return set(VM.objects.filter(status=VM.Status.STOPPED).values_list("pk", flat=True))


# --- observe and compare ----------------------------------------------------------------------


def _observe(runner: Runner, commands: dict[str, HostCommand]) -> dict[str, tuple[HostObservation | None, str]]:
    """One round trip per host, in parallel: host -> (observation or None, error)."""
    out: dict[str, tuple[HostObservation | None, str]] = {h: (None, "no answer") for h in commands}
    for event in runner.run_stage({h: [c] for h, c in commands.items()}):
        if event.kind == "ended":
            if event.status == "ok":
                obs = parse_observation(event.output)
                obs.output = event.output
                out[event.host] = (obs, "" if obs.complete else "the observation was cut short")
            else:
                out[event.host] = (None, f"the observation failed (exit {event.exit_code}): {event.output[-300:]}")
        elif event.kind == "host" and not event.ok:
            out[event.host] = (None, event.error or "no answer")
    return out


def check_hosts(*, names: Sequence[str] | None = None, runner: Runner | None = None, repair: bool = True):
    """Observe the hosts (all enabled ones by default), record what was found; returns [HostReport]."""
    hosts = list(Host.objects.filter(enabled=True).order_by("name"))
    if names is not None:
        hosts = [h for h in hosts if h.name in names]
    if not hosts:
        return []
    if runner is None and settings.PROVISIONING_RUNNER == "dry-run":
        log.info("PROVISIONING_RUNNER is dry-run: hosts are not observed")
        return []  # a dry-run runner answers nothing: every host would look unreachable
    checked = checked_slices()
    owners = owner_specs()
    checks = {h.name: plan_drift.netnode_checks(s for s in checked.values() if s.netnode.name == h.name) for h in hosts}
    commands = {
        h.name: observe_command(h.state_dir, network=h.role == Host.Role.NETWORK, checks=checks[h.name]) for h in hosts
    }
    runner = runner or executor.make_runner(dry_run=False, hosts=[h.name for h in hosts])
    reports: list[HostReport] = []
    with runner:
        seen = _observe(runner, commands)
        stopped = _stopped_vms()
        for host in hosts:
            obs, error = seen[host.name]
            report = HostReport(host.name, reachable=obs is not None, error=error, output=obs.output if obs else "")
            stat = runner.stat(host.name)
            report.round_trips, report.commands = stat.round_trips, stat.commands
            if obs is not None:
                network = host.role == Host.Role.NETWORK
                report.orphans = plan_drift.orphans(owners, host.name, host.state_dir, obs, network=network)
                for spec in checked.values():
                    if host.name in _hosts_of(spec):
                        report.differences += plan_drift.slice_differences(
                            spec, host.name, obs, checks[host.name], stopped
                        )
                if repair:
                    report.repaired = _repair_isolation(runner, host, checked, report.differences, checks[host.name])
            _record_host(host, report, obs)
            if obs is not None and obs.complete:
                _record_usage(host, obs)
            _record_slices(host, report, checked)
            reports.append(report)
    return reports


def _hosts_of(spec: SliceSpec) -> set[str]:
    return {spec.netnode.name} | {vm.host for vm in spec.vms}


def _repair_isolation(
    runner: Runner,
    host: Host,
    checked: dict[int, SliceSpec],
    differences: list[plan_drift.Difference],
    checks: Sequence[HostCommand],
) -> list[plan_drift.Difference]:
    """Put back what keeps slices apart (a second round trip, only when something is missing)."""
    wanted = [d for d in differences if d.isolation]
    if not wanted:
        return []
    commands: list[HostCommand] = []
    fixed: list[plan_drift.Difference] = []
    for slice_id in dict.fromkeys(d.slice_id for d in wanted):
        spec = checked[slice_id]
        for cmd in plan_drift.isolation_repairs(spec, wanted, checks).get(host.name, []):
            if cmd not in commands:
                commands.append(cmd)
    if not commands:
        return []
    lock = executor.shared_lock(host.name) if host.role == Host.Role.NETWORK else _nothing()
    ok = True
    with lock:
        for event in runner.run_stage({host.name: commands}):
            if (event.kind == "ended" and event.status == "failed") or (event.kind == "host" and not event.ok):
                ok = False
                log.warning("repairing isolation on %s: %s %s", host.name, event.error, event.output[-300:])
    if ok:
        fixed = wanted
        for d in fixed:
            differences.remove(d)
    return fixed


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# --- record -----------------------------------------------------------------------------------


def _record_host(host: Host, report: HostReport, obs: HostObservation | None) -> None:
    now = timezone.now()
    values: dict = {"reachable": report.reachable, "checked_at": now, "error": report.error}
    values["round_trips"] = report.round_trips
    if obs is not None:
        vcpus, _ram = obs.guest_load()
        values |= {
            "last_seen": now,
            "ovs_version": obs.versions.get("ovs", ""),
            "qemu_version": obs.versions.get("qemu", ""),
            "dnsmasq_version": obs.versions.get("dnsmasq", ""),
            "kvm_device": obs.kvm_device,
            "cpus": obs.cpus,
            "free_vcpus": obs.cpus - vcpus if obs.cpus is not None else None,
            "mem_total_mib": obs.mem_total_mib,
            "free_ram_mib": obs.mem_available_mib,
            "orphans": [o.to_dict() for o in report.orphans],
        }
    HostHealth.objects.update_or_create(host=host, defaults=values)


def _record_usage(host: Host, obs: HostObservation) -> None:
    """Load and per-VM CPU/memory, read by the same round trip; a sample lost to a race (a VM deleted
    meanwhile) never fails the check."""
    try:
        with transaction.atomic():
            usage.record(host, obs)
    except IntegrityError as exc:
        log.warning("usage of %s not recorded this round: %s", host.name, exc)


def _record_slices(host: Host, report: HostReport, checked: dict[int, SliceSpec]) -> None:
    """Per slice on the host: open, refresh and resolve its Drift rows; set its health and its VMs' state."""
    now = timezone.now()
    by_slice: dict[int, list[plan_drift.Difference]] = {}
    for d in report.differences:
        by_slice.setdefault(d.slice_id, []).append(d)
    for slice_id, spec in checked.items():
        if host.name not in _hosts_of(spec):
            continue
        with transaction.atomic():
            locked = Slice.objects.select_for_update().filter(pk=slice_id, status=Slice.Status.ACTIVE).first()
            if locked is None or Deployment.objects.filter(slice_id=slice_id, status__in=ACTIVE_STATUSES).exists():
                continue  # a job started meanwhile: what was seen may already be out of date
            rows = Drift.objects.filter(slice_id=slice_id, host=host.name, resolved_at__isnull=True)
            if not report.reachable:
                found = [
                    plan_drift.Difference(
                        plan_drift.UNREACHABLE, host.name, host.name, "reachable", report.error[:250], slice_id
                    )
                ]
                rows = rows.filter(kind=plan_drift.UNREACHABLE)
            else:
                found = by_slice.get(slice_id, [])
            _sync_rows(slice_id, rows, found, now)
            for d in report.repaired:
                if d.slice_id == slice_id:
                    Drift.objects.create(
                        slice_id=slice_id,
                        **_fields(d),
                        first_seen=now,
                        last_seen=now,
                        resolved_at=now,
                        resolution=REPAIRED_BY_CHECK,
                    )
            if report.reachable:
                lost = {d.vm for d in found if d.kind == plan_drift.QEMU_DOWN}
                VM.objects.filter(slice_id=slice_id, pk__in=lost).mark_lost()
                here = [vm.id for vm in spec.vms if vm.host == host.name and vm.id not in lost]
                VM.objects.filter(slice_id=slice_id, pk__in=here, status=VM.Status.LOST).mark_running()
            _set_health(slice_id, now)


def _fields(d: plan_drift.Difference) -> dict:
    return {
        "host": d.host,
        "kind": d.kind,
        "object": d.object[:255],
        "expected": d.expected[:255],
        "found": d.found[:255],
        "vm": d.vm,
        "vlan": d.vlan,
        "isolation": d.isolation,
    }


def _sync_rows(slice_id: int, rows, found: list[plan_drift.Difference], now) -> None:
    open_rows = {(r.kind, r.object): r for r in rows}
    for d in found:
        row = open_rows.pop((d.kind, d.object[:255]), None)
        if row is None:
            Drift.objects.create(slice_id=slice_id, **_fields(d), first_seen=now, last_seen=now)
        else:
            Drift.objects.filter(pk=row.pk).update(last_seen=now, found=d.found[:255], expected=d.expected[:255])
    Drift.objects.filter(pk__in=[r.pk for r in open_rows.values()]).update(resolved_at=now, resolution="gone")


def _set_health(slice_id: int, now) -> None:
    open_rows = Drift.objects.filter(slice_id=slice_id, resolved_at__isnull=True)
    if open_rows.filter(kind=plan_drift.UNREACHABLE).exists():
        state = SliceHealth.State.UNREACHABLE
    elif open_rows.exists():
        state = SliceHealth.State.DRIFTED
    else:
        state = SliceHealth.State.IN_SYNC
    health, _ = SliceHealth.objects.get_or_create(slice_id=slice_id)
    since = health.since if health.state == state and health.since else now
    SliceHealth.objects.filter(pk=health.pk).update(state=state, checked_at=now, since=since)


# --- requests ---------------------------------------------------------------------------------


def slice_hosts(*, slice_obj: Slice) -> list[str]:
    spec = specs.deployed_footprint(slice_id=slice_obj.pk)
    return sorted(_hosts_of(spec)) if spec is not None else []


def enqueue_checks(names: Iterable[str]) -> list[str]:
    """One check job per host on the provisioning queue (a job id per host: a check already queued is kept)."""
    queue = provisioning_queue()
    queued = []
    for name in names:
        job_id = f"drift-check-{name}"
        existing = queue.fetch_job(job_id)
        if existing is not None and existing.get_status(refresh=True) in ("queued", "started", "deferred"):
            queued.append(job_id)
            continue
        queue.enqueue(
            CHECK_JOB,
            name,
            job_id=job_id,
            job_timeout=settings.PROVISIONING_CHECK_TIMEOUT,
            result_ttl=3600,
            failure_ttl=86400,
            description=f"drift check of host {name}",
        )
        queued.append(job_id)
    return queued


def check_request(*, slice_obj: Slice) -> list[str]:
    """Check a deployed slice's hosts now (jobs on the queue); the health is updated when they end."""
    if slice_obj.status != Slice.Status.ACTIVE:
        raise Conflict(
            f"Slice {slice_obj.name!r} is {slice_obj.status}: only an active slice is checked.", code="bad_state"
        )
    hosts = slice_hosts(slice_obj=slice_obj)
    return enqueue_checks(hosts)


def repair_request(*, slice_obj: Slice, user: AbstractBaseUser | None) -> Deployment:
    """Apply the deployed footprint again (a "repair" job): only what differs is made; VMs that lost a TAP
    are restarted with it, the others keep running (their checks skip every step)."""
    reaper.reap_abandoned(slice_id=slice_obj.pk)
    with transaction.atomic():
        locked = Slice.objects.select_for_update().filter(pk=slice_obj.pk).first()
        if locked is None:
            raise NotFound("No such slice.")
        refuse_busy(locked)
        if locked.status != Slice.Status.ACTIVE:
            raise Conflict(
                f"Cannot repair slice {locked.name!r} while it is {locked.status}: deploy or destroy it.",
                code="bad_state",
            )
        footprint = specs.deployed_footprint(slice_id=locked.pk)
        if footprint is None:
            raise Conflict(f"Slice {locked.name!r} has nothing deployed to repair.", code="not_deployed")
        open_rows = Drift.objects.filter(slice=locked, resolved_at__isnull=True)
        renew = plan_drift.vms_to_restart(
            plan_drift.Difference(r.kind, r.host, r.object, r.expected, r.found, locked.pk, r.vm) for r in open_rows
        )
        deployment = create_deployment(
            slice_obj=locked, user=user, kind=Deployment.Kind.REPAIR, dry_run=False, spec=footprint, renew_vms=renew
        )
        locked.mark_queued(allowed=(Slice.Status.ACTIVE,))
        transaction.on_commit(partial(enqueue, deployment.pk))
    deployment.refresh_from_db()
    return deployment
