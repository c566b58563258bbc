"""The deployment's step rows, written as the runner's events arrive (see :class:`StepBook`).

The executor's only writer of ``DeploymentStep`` rows; kept apart so the executor
module stays about running plans.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from django.db import connection
from django.utils import timezone

from .models import Deployment, DeploymentStep
from .plans import HostCommand
from .runners import Event
from .scripts import shell_text

OUTPUT_TAIL = 4000


class StepBook:
    """The deployment's step rows: created pending up front, updated as events arrive.

    The book is the rows' only writer. Step events that arrive together (a burst:
    the runner says when no more are waiting, ``Event.burst_end``) are written in
    one autocommitted UPDATE, each row stamped with the next ``revision``; the
    statement commits them at once, so revisions still become visible in order
    and a poller that has seen revision R needs only the rows with
    ``revision > R`` (``GET /api/deployments/{id}/?steps_after=R``). A burst is
    never held back waiting for later events: rows stay live, and the job's
    statements grow with its stages and bursts, not with its steps. Every other
    write of the book flushes the pending burst first.
    """

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment  # claimed just now: it has no rows yet (a deployment runs once)
        self.next_seq = 1
        self.revision = 0
        self.total = 0
        self.done = 0
        self.shown = 0
        self.planned = False  # progress is shown once the whole plan's rows exist (not after the probe alone)
        # step id -> (status, exit code, output tail, started, finished): the burst not written yet
        self.pending: dict[int, tuple[str, int | None, str, datetime | None, datetime | None]] = {}

    def bump(self) -> int:
        self.revision += 1
        return self.revision

    def add(self, host: str, phase: str, commands: Sequence[HostCommand]) -> list[int]:
        self.flush()
        revision = self.bump()
        rows = []
        for cmd in commands:
            rows.append(
                DeploymentStep(
                    deployment=self.deployment,
                    seq=self.next_seq,
                    host=host,
                    phase=phase,
                    vm=cmd.vm,
                    vlan=cmd.vlan,
                    description=cmd.description[:255],
                    command=shell_text(cmd.argv),
                    revision=revision,
                )
            )
            self.next_seq += 1
        created = DeploymentStep.objects.bulk_create(rows)
        self.total += len(created)
        return [row.pk for row in created]

    def began(self, step_id: int) -> None:
        """The step is running (written with its burst: :meth:`flush`)."""
        self.pending[step_id] = (DeploymentStep.Status.RUNNING, None, "", timezone.now(), None)

    def ended(self, step_id: int, event: Event) -> None:
        """The step ended (written with its burst; a "began" of the same burst is superseded)."""
        now = timezone.now()
        started = now - timedelta(seconds=event.duration)
        self.pending.pop(step_id, None)  # re-inserted last: its revision follows the burst's earlier events
        self.pending[step_id] = (event.status, event.exit_code, event.output[-OUTPUT_TAIL:], started, now)
        self.done += 1

    def flush(self) -> None:
        """Write the pending burst in one statement, a new revision per row in event order."""
        if not self.pending:
            return
        rows = [(pk, *values, self.bump()) for pk, values in self.pending.items()]
        self.pending = {}
        if connection.vendor == "postgresql":
            marks = ", ".join(
                ["(%s::bigint, %s::varchar, %s::int, %s::text, %s::timestamptz, %s::timestamptz, %s::int)"] * len(rows)
            )
            with connection.cursor() as cursor:
                cursor.execute(
                    "UPDATE provisioning_deploymentstep AS s SET status = v.status, exit_code = v.exit_code, "  # noqa: S608
                    "output_tail = v.output_tail, started = v.started, finished = v.finished, revision = v.revision "
                    f"FROM (VALUES {marks}) AS v (id, status, exit_code, output_tail, started, finished, revision) "
                    "WHERE s.id = v.id",
                    [x for row in rows for x in row],
                )
        else:
            fields = ["status", "exit_code", "output_tail", "started", "finished", "revision"]
            objs = [DeploymentStep(pk=row[0], **dict(zip(fields, row[1:], strict=True))) for row in rows]
            DeploymentStep.objects.bulk_update(objs, fields, batch_size=100)
        self.progress()

    def skip(self, step_ids: Sequence[int], reason: str) -> None:
        self.flush()
        now = timezone.now()
        DeploymentStep.objects.filter(pk__in=list(step_ids)).update(
            status=DeploymentStep.Status.SKIPPED, output_tail=reason, started=now, finished=now, revision=self.bump()
        )
        self.done += len(step_ids)
        self.progress()

    def fail_running(self, reason: str, *, host: str | None = None) -> None:
        """Mark the running steps failed (only ``host``'s when given: other hosts' lanes go on)."""
        self.flush()
        rows = DeploymentStep.objects.filter(deployment=self.deployment, status=DeploymentStep.Status.RUNNING)
        if host is not None:
            rows = rows.filter(host=host)
        rows.update(
            status=DeploymentStep.Status.FAILED,
            output_tail=reason[-OUTPUT_TAIL:],
            finished=timezone.now(),
            revision=self.bump(),
        )

    def first_failure(self) -> str:
        """The first failed step of the deployment as an error message ("" when none failed)."""
        self.flush()
        step = (
            DeploymentStep.objects.filter(deployment=self.deployment, status=DeploymentStep.Status.FAILED)
            .order_by("seq")
            .first()
        )
        if step is None:
            return ""
        tail = "\n".join(step.output_tail.strip().splitlines()[-15:])
        return f"{step.host}: step '{step.description}' failed" + (f": {tail}" if tail else "")

    def progress(self) -> None:
        """Percent of steps ended (never shown going back when observation rows are added; 100 at success)."""
        if not self.planned:
            return
        percent = min(99, self.done * 100 // self.total) if self.total else 0
        if percent > self.shown:
            self.shown = percent
            self.deployment.set_progress(percent)
