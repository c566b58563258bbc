"""The executor: runs one deployment's plan, a lane per host, and records every step live.

- Each host runs its **lane** (:mod:`provisioning.plans.lanes`): its phases in plan
  order, in as few round trips as possible, every host at once, so a worker starts
  its VMs while the network node builds the VLANs. The first failing step stops
  that host; the other hosts finish the round trip they are in and no lane starts
  another: the deployment fails with a message naming the host, the step and its
  output. Nothing is rolled back (docs/provisioning.md).
- Every step row exists from the start (pending) and is updated the moment the
  step begins and ends, with ``filter(pk=...).update(...)`` in autocommit: the
  API and UI see progress live, and a crash leaves an honest record.
- Phases on resources other slices share (the isolation chains, VLAN 400 + NAT)
  travel in round trips of their own, run under a Redis lock per network node;
  their teardown is re-checked under that lock and skipped while another slice
  still needs them. Nothing else of a job waits for another job.
- After a deploy, "observe" reads the DHCP leases on the network node (waiting at
  most ``PROVISIONING_LEASE_WAIT`` seconds for the VMs this job booted) and every
  VM's console tail. A failed observation step fails the deployment, as any
  failed step does: a deployment with a failed step never succeeds.
- A heartbeat thread stamps the deployment every few seconds so that an
  abandoned job (its worker process killed) is detected (reaper.reap_abandoned),
  and reads whether someone asked to cancel the job: the runner then stops each
  host at its next step boundary and no further stage starts.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import replace

import django_rq
from django.conf import settings
from django.db import connection
from django.utils import timezone
from redis.exceptions import LockError

from inventory.models import Host
from slices.models import VM, Interface

from . import lifecycle, plans, specs, sshpool
from .models import Deployment, DeploymentStep
from .plans import HostCommand, Phase, Plan, SliceSpec
from .runners import DryRunRunner, Event, FabricRunner, Runner, SshTarget
from .stepbook import OUTPUT_TAIL, StepBook

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 5
CANCEL_POLL_SECONDS = 1  # how soon a running job sees a cancel request


def lease_wait_seconds() -> int:
    return int(getattr(settings, "PROVISIONING_LEASE_WAIT", 60))


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# --- runners and locks ------------------------------------------------------------------------


def ssh_targets(names: Sequence[str]) -> dict[str, SshTarget]:
    return {
        h.name: SshTarget(h.name, h.management_address, h.ssh_port, h.ssh_user, h.ssh_key_path)
        for h in Host.objects.filter(name__in=list(names))
    }


def make_runner(*, dry_run: bool, hosts: Sequence[str]) -> Runner:
    """The runner for a job: dry-run when asked (or configured), Fabric over SSH otherwise."""
    if dry_run or settings.PROVISIONING_RUNNER == "dry-run":
        return DryRunRunner(step_timeout=settings.PROVISIONING_COMMAND_TIMEOUT)
    return FabricRunner(
        ssh_targets(hosts),
        known_hosts=settings.PROVISIONING_KNOWN_HOSTS,
        connect_timeout=settings.PROVISIONING_CONNECT_TIMEOUT,
        command_timeout=settings.PROVISIONING_COMMAND_TIMEOUT,
        pool=sshpool.worker_pool(),
    )


def lock_ttl() -> int:
    return int(getattr(settings, "PROVISIONING_LOCK_TTL", 30))


@contextmanager
def shared_lock(netnode: str) -> Iterator[None]:
    """A Redis lock serialising the shared network-node phases of all jobs (any worker process).

    Held with a short TTL renewed by a thread: a killed worker's lock expires in
    seconds instead of blocking every other slice for the job timeout.
    """
    ttl = lock_ttl()
    conn = django_rq.get_connection("provisioning")
    prefix = getattr(settings, "PROVISIONING_LOCK_PREFIX", "slice-portal")
    lock = conn.lock(f"{prefix}:netnode:{netnode}", timeout=ttl, blocking_timeout=600, thread_local=False)
    if not lock.acquire():
        raise StageFailed(f"{netnode}: another job kept the network node busy for 600 s; try again")
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(ttl / 3):
            try:
                lock.reacquire()
            except LockError:
                return

    thread = threading.Thread(target=renew, name=f"sp-lock-{netnode}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
        try:
            lock.release()
        except LockError:
            log.warning("lock on %s expired before release", netnode)


# --- running a stage ------------------------------------------------------------------------------


class StageFailed(Exception):
    """A stage ended with at least one failed host; the message names host, step and output."""


class JobCancelled(Exception):
    """Someone cancelled the job; it stopped at a step boundary (the message says which)."""


def _failure_message(host: str, description: str, event: Event) -> str:
    tail = "\n".join(event.output.strip().splitlines()[-15:])
    return f"{host}: step '{description}' failed with exit code {event.exit_code}" + (f": {tail}" if tail else "")


def run_commands(
    runner: Runner,
    book: StepBook,
    scripts: dict[str, list[tuple[int, HostCommand]]],
    on_ended: Callable[[str, HostCommand, Event], None] | None = None,
) -> list[str]:
    """Run one stage: ``scripts`` maps host -> [(step row id, command)]. Returns failure messages."""
    failures: list[str] = []
    try:
        for event in runner.run_stage({h: [c for _, c in items] for h, items in scripts.items()}):
            _take(book, scripts, event, failures, on_ended)
            if event.burst_end:
                book.flush()
    finally:
        book.flush()
    return failures


def _take(
    book: StepBook,
    scripts: dict[str, list[tuple[int, HostCommand]]],
    event: Event,
    failures: list[str],
    on_ended: Callable[[str, HostCommand, Event], None] | None,
) -> None:
    """Book one runner event (written with its burst) and note a failure."""
    if event.kind == "host":
        if not event.cancelled and not event.ok and event.error:
            failures.append(event.error)
            book.fail_running(event.error, host=event.host)
        return
    step_id, cmd = scripts[event.host][event.index]
    if event.kind == "began":
        book.began(step_id)
    elif event.kind == "ended":
        book.ended(step_id, event)
        if event.status == DeploymentStep.Status.FAILED:
            failures.append(_failure_message(event.host, cmd.description, event))
        if on_ended is not None:
            on_ended(event.host, cmd, event)


class Executor:
    """Runs one deployment (see the module docstring)."""

    def __init__(self, deployment: Deployment, runner: Runner, *, lock_factory=shared_lock) -> None:
        self.deployment = deployment
        self.runner = runner
        self.book = StepBook(deployment)
        self.lock_factory = lock_factory
        self.started_vms: set[int] = set()
        self.booted_vms: set[int] = set()  # QEMU started by this job (not skipped as running)
        self.relinked: set[str] = set()  # MACs of running guests' NICs whose link this job bounced
        self.last_ended: tuple[str, str] | None = None  # (host, description) of the last step that ended

    # -- plan --

    def add_plan_rows(self, plan: Plan) -> list[list[list[int]]]:
        """Step rows for the whole plan (pending) before anything runs: ids per stage, phase."""
        ids = [[self.book.add(p.host, p.name, p.commands) for p in stage.phases] for stage in plan.stages]
        self.book.planned = True
        self.book.progress()
        return ids

    def run_plan(self, plan: Plan, spec_for_guards: SliceSpec | None) -> None:
        """Run the plan's lanes (:mod:`provisioning.plans.lanes`): a thread per host sends its trips in
        order, hosts in parallel; this thread writes every event to the step rows as it arrives.

        A failure (or a cancel) lets every trip that runs end, and no lane starts another one.
        Trips of shared phases run under the network node's lock, where a shared teardown is
        re-checked (asked of this thread: only it touches the database).
        """
        ids = self.add_plan_rows(plan)
        self.check_cancelled()
        lanes = plans.lanes(plan)
        inbox: queue.Queue[tuple] = queue.Queue()
        stopped = threading.Event()  # a lane failed: no lane starts another trip
        early_left = [sum(1 for trips in lanes.values() if any(t.network for t in trips))]
        early_done = threading.Event()  # every lane's stop/network trips have ended
        count_lock = threading.Lock()
        if not early_left[0]:
            early_done.set()

        def early_finished() -> None:
            with count_lock:
                early_left[0] -= 1
                if early_left[0] <= 0:
                    early_done.set()

        def lane(host: str, trips: Sequence[plans.Trip]) -> None:
            pending_early = any(t.network for t in trips)
            try:
                for i, trip in enumerate(trips):
                    if trip.after_network:
                        if pending_early:  # this lane's own early trips are behind it
                            pending_early = False
                            early_finished()
                        early_done.wait()
                    if stopped.is_set() or self.runner.stop.is_set():
                        return
                    lock = self.lock_factory(spec_for_guards.netnode.name) if trip.shared and spec_for_guards else None
                    with lock or nullcontext():
                        reply: queue.Queue[list[tuple[int, HostCommand]]] = queue.Queue()
                        inbox.put(("script", host, trip, reply))
                        script = _answer(reply, aborted)
                        if script:

                            def emit(event: Event, script=script) -> None:
                                if (event.kind == "host" and not event.ok and not event.cancelled) or (
                                    event.kind == "ended" and event.status == DeploymentStep.Status.FAILED
                                ):
                                    stopped.set()
                                inbox.put(("event", host, script, event))

                            self.runner.run_host(host, [c for _, c in script], emit)
                    if pending_early and not any(t.network for t in trips[i + 1 :]):
                        pending_early = False
                        early_finished()
            except Exception as exc:  # a lock that never came, a crash: the lane's failure, not the job's hang
                log.exception("lane of %s failed", host)
                stopped.set()
                inbox.put(("error", host, f"{host}: {exc}"))
            finally:
                if pending_early:
                    early_finished()
                inbox.put(("done", host))

        aborted = threading.Event()  # this thread gave up (an exception): lanes waiting for it end
        failures: list[str] = []
        threads = [
            threading.Thread(target=lane, args=(host, trips), name=f"sp-lane-{host}", daemon=True)
            for host, trips in lanes.items()
        ]
        for thread in threads:
            thread.start()
        remaining = len(threads)
        try:
            while remaining:
                message = inbox.get()
                kind = message[0]
                if kind == "done":
                    remaining -= 1
                elif kind == "script":
                    _, host, trip, reply = message
                    reply.put(self._trip_script(plan, ids, trip))
                elif kind == "event":
                    _, host, script, event = message
                    _take(self.book, {host: script}, event, failures, self._on_ended)
                elif kind == "error":
                    failures.append(message[2])
                if inbox.empty():
                    self.book.flush()
        except BaseException:
            aborted.set()
            stopped.set()
            raise
        finally:
            self.book.flush()
            for thread in threads:
                thread.join(timeout=5)
        if failures:
            raise StageFailed("\n".join(failures))
        self.check_cancelled()

    def _trip_script(self, plan: Plan, ids: list[list[list[int]]], trip: plans.Trip) -> list[tuple[int, HostCommand]]:
        """The trip's (step id, command) pairs; a shared teardown still needed by another slice is
        skipped here (its lane holds the lock now)."""
        script: list[tuple[int, HostCommand]] = []
        for si, pi in trip.phases:
            phase, phase_ids = plan.stages[si].phases[pi], ids[si][pi]
            reason = self._kept_reason(phase)
            if reason:
                self.book.skip(phase_ids, f"kept: {reason}")
                continue
            script.extend(zip(phase_ids, phase.commands, strict=True))
        return script

    def check_cancelled(self) -> None:
        """Raise :class:`JobCancelled` (naming where the job stopped) when a cancel was asked."""
        if not self.runner.stop.is_set():
            return
        where = f"after step '{self.last_ended[1]}' on {self.last_ended[0]}" if self.last_ended else "before any step"
        raise JobCancelled(f"Cancelled {where}. Deploy, redeploy or destroy the slice to repair it.")

    def _kept_reason(self, phase: Phase) -> str | None:
        """A shared teardown is re-checked now, under the lock: is another slice still using it?"""
        if not phase.teardown or not phase.shared:
            return None
        slice_id = self.deployment.slice_id
        if phase.shared == plans.SHARED_INTERNET:
            user = specs.internet_users(slice_id=slice_id)
            return f"{user} still uses VLAN 400 and NAT" if user else None
        if phase.shared == plans.SHARED_ISOLATION:
            user = specs.netnode_users(slice_id=slice_id)
            return f"{user} is still on the network node" if user else None
        return None

    def _on_ended(self, host: str, cmd: HostCommand, event: Event) -> None:
        self.last_ended = (host, cmd.description)
        if cmd.argv and cmd.argv[0] == plans.QEMU and event.status in ("ok", "skipped"):
            self.started_vms.add(_vm_id_of(cmd))
        if cmd.boots_vm is not None and event.status == "ok":
            self.booted_vms.add(cmd.boots_vm)
        if cmd.relinks is not None and event.status == "ok":
            self.relinked.add(cmd.relinks)

    # -- probe and observe --

    def probe_accel(self, spec: SliceSpec) -> SliceSpec:
        """Probe KVM on workers whose accelerator is 'auto' and not yet known; store it; return the spec."""
        due = list(
            Host.objects.filter(name__in=[w.name for w in spec.workers], accel=Host.Accel.AUTO, accel_detected="")
        )
        if not due:
            return spec
        cmd = plans.kvm_probe_command()
        scripts = {h.name: list(zip(self.book.add(h.name, "probe", [cmd]), [cmd], strict=True)) for h in due}
        found: dict[str, str] = {}

        def on_ended(host: str, _cmd: HostCommand, event: Event) -> None:
            if event.status == "ok":
                found[host] = plans.parse_kvm_probe(event.output)

        failures = run_commands(self.runner, self.book, scripts, on_ended)
        if failures:
            raise StageFailed("\n".join(failures))
        if isinstance(self.runner, DryRunRunner):
            return spec  # nothing was probed: the plan shows the placeholder
        now = timezone.now()
        for name, accel in found.items():
            Host.objects.filter(name=name).update(accel_detected=accel, accel_probed_at=now)
        workers = tuple(replace(w, accel=found.get(w.name, w.accel)) for w in spec.workers)
        return replace(spec, workers=workers)

    def observe(self, spec: SliceSpec) -> None:
        """Leases from the network node (bounded wait), then console tails, both recorded as far as seen.

        A lease not (yet) seen is no failure; a failed step is (a lease other than its
        reservation, a session lost during the wait): StageFailed once both are recorded.
        Every NIC's lease is read, also those of VMs the job left running, so a redeploy
        fills in what an earlier observation lost.
        """
        failures: list[str] = []
        booted = None if isinstance(self.runner, DryRunRunner) else self.booted_vms
        wait = plans.lease_wait_command(spec, lease_wait_seconds(), booted, self.relinked)
        if wait is not None:
            node = spec.netnode.name
            scripts = {node: list(zip(self.book.add(node, "observe", [wait]), [wait], strict=True))}
            leases: dict[str, str | None] = {}

            def on_leases(_host: str, _cmd: HostCommand, event: Event) -> None:
                leases.update(plans.parse_leases(event.output))

            failures += run_commands(self.runner, self.book, scripts, on_leases)
            for mac, ip in leases.items():
                if ip is not None:  # a lease not seen (yet) never erases one seen before
                    Interface.objects.filter(vm__slice_id=spec.slice_id, mac=mac).update(lease_address=ip)
            missing = [mac for mac, ip in leases.items() if ip is None]
            if missing:
                log.info("deployment %s: leases missing for %s", self.deployment.pk, missing)
        scripts = {}
        vm_of: dict[HostCommand, int] = {}
        for vm in spec.vms:
            cmd = plans.console_tail_command(spec.worker(vm.host), vm)
            vm_of[cmd] = vm.id
            ids = self.book.add(vm.host, "observe", [cmd])
            scripts.setdefault(vm.host, []).append((ids[0], cmd))

        def on_console(_host: str, cmd: HostCommand, event: Event) -> None:
            if event.status == "ok":
                VM.objects.filter(pk=vm_of[cmd], slice_id=spec.slice_id).update(
                    console_tail=event.output[-OUTPUT_TAIL:]
                )

        failures += run_commands(self.runner, self.book, scripts, on_console)
        if failures:
            raise StageFailed("\n".join(failures))


def _answer(reply: queue.Queue, aborted: threading.Event) -> list:
    """A lane's answer from the job's thread (nothing when that thread gave up)."""
    while not aborted.is_set():
        try:
            return reply.get(timeout=1)
        except queue.Empty:
            continue
    return []


def _vm_id_of(cmd: HostCommand) -> int:
    """The VM id of a QEMU command (from its pid file path .../vm{id}/qemu.pid)."""
    pidfile = cmd.argv[cmd.argv.index("-pidfile") + 1]
    return int(pidfile.split("/")[-2][2:])


# --- the job ---------------------------------------------------------------------------------------


@contextmanager
def heartbeat(
    deployment: Deployment, *, on_cancel: Callable[[], None] = lambda: None, every: float = HEARTBEAT_SECONDS
) -> Iterator[None]:
    """From a thread (with its own DB connection): stamp the deployment every few seconds, and
    call ``on_cancel`` once as soon as someone asks to cancel it (read every second)."""
    stop = threading.Event()

    def beat() -> None:
        last = time.monotonic()
        cancelled = False
        try:
            while not stop.wait(CANCEL_POLL_SECONDS):
                if not cancelled and deployment.is_cancel_requested():
                    cancelled = True
                    on_cancel()
                if time.monotonic() - last >= every:
                    deployment.heartbeat_now()
                    last = time.monotonic()
        finally:
            connection.close()

    thread = threading.Thread(target=beat, name=f"sp-heartbeat-{deployment.pk}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=every + 5)


def job_hosts(*specs_: SliceSpec | None) -> list[str]:
    """Every host the specs name (the runner connects to those it needs)."""
    return sorted({s.netnode.name for s in specs_ if s} | {w.name for s in specs_ if s for w in s.workers})


def execute(*, deployment_id: int, runner: Runner | None = None, lock_factory=shared_lock) -> Deployment:
    """Run a queued deployment to the end (succeeded, failed or cancelled). Returns it, reloaded."""
    deployment = Deployment.objects.filter(pk=deployment_id).first()
    if deployment is None:
        log.warning("deployment %s no longer exists (its slice was deleted): nothing to run", deployment_id)
        return Deployment(pk=deployment_id, status=Deployment.Status.CANCELLED)
    if not deployment.claim(worker=worker_identity()):
        log.warning("deployment %s is %s, not queued: not running it", deployment.pk, deployment.status)
        return deployment
    lifecycle.on_started(deployment)
    target = specs.spec_of(deployment)
    footprint = specs.deployed_footprint(slice_id=deployment.slice_id, exclude_id=deployment.pk)
    runner = runner or make_runner(dry_run=deployment.dry_run, hosts=job_hosts(target, footprint))
    executor = Executor(deployment, runner, lock_factory=lock_factory)
    error = cancelled = ""
    try:
        with heartbeat(deployment, on_cancel=runner.stop.set), runner:
            if target is not None:
                target = executor.probe_accel(target)
                Deployment.objects.filter(pk=deployment.pk).update(spec=target.to_dict())
            plan, guard_spec = specs.plan_for(
                slice_id=deployment.slice_id,
                kind=deployment.kind,
                target=target,
                footprint=footprint,
                power=specs.power_of(deployment),
                renew=deployment.renew_vms or (),
            )
            Deployment.objects.filter(pk=deployment.pk).update(plan=plan.to_dict())
            try:
                executor.run_plan(plan, guard_spec)
                if target is not None and not deployment.dry_run:
                    executor.observe(target)
                executor.check_cancelled()
            finally:
                Deployment.objects.filter(pk=deployment.pk).update(
                    stats={h: s.to_dict() for h, s in runner.stats.items()}
                )
    except JobCancelled as exc:
        cancelled = str(exc)
    except StageFailed as exc:
        error = str(exc)
    except Exception as exc:
        log.exception("deployment %s crashed", deployment.pk)
        error = f"internal error: {type(exc).__name__}: {exc}"
    if not error and not cancelled:
        error = executor.book.first_failure()  # a deployment with a failed step never succeeds
    if cancelled:
        lifecycle.on_cancelled(deployment, cancelled, started_vms=executor.started_vms)
    elif error:
        executor.book.fail_running(error)
        lifecycle.on_failed(deployment, error, started_vms=executor.started_vms)
    else:
        lifecycle.on_succeeded(deployment, spec=target)
    return Deployment.objects.filter(pk=deployment.pk).first() or deployment
