"""The record of deployments and their steps."""

from django.conf import settings
from django.db import models
from django.utils import timezone


class Deployment(models.Model):
    """One provisioning job on a slice (deploy, destroy, redeploy, or a power action on a VM) and its outcome.

    Progress fields are written with ``filter(pk=...).update(...)`` the moment
    they change, outside any long transaction, so the API shows them live.
    """

    class Kind(models.TextChoices):
        DEPLOY = "deploy", "Deploy"
        REDEPLOY = "redeploy", "Redeploy"
        DESTROY = "destroy", "Destroy"
        POWER = "power", "Power action"
        REPAIR = "repair", "Repair"

    class Action(models.TextChoices):
        """The power actions (provisioning.plans.power; docs/provisioning.md "Power actions")."""

        START = "start", "Start"
        SHUTDOWN = "shutdown", "Shut down"
        REBOOT = "reboot", "Reboot"
        RESET = "reset", "Reset"
        FORCE_OFF = "force_off", "Force off"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    slice = models.ForeignKey("slices.Slice", on_delete=models.CASCADE, related_name="deployments")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    action = models.CharField(max_length=16, choices=Action.choices, blank=True, help_text="A power job's action.")
    vm = models.ForeignKey(
        "slices.VM",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="power_jobs",
        help_text="The VM a power job acts on.",
    )
    dry_run = models.BooleanField(default=False)
    plan = models.JSONField(default=dict, blank=True)
    spec = models.JSONField(
        default=dict, blank=True, help_text="The slice as this job was asked to make it (empty for a destroy)."
    )
    stats = models.JSONField(default=dict, blank=True, help_text="Runner counters per host.")
    renew_vms = models.JSONField(
        default=list, blank=True, help_text="A repair's VMs restarted with their TAPs made anew (they lost one)."
    )
    worker = models.CharField(max_length=128, blank=True, help_text="host:pid of the process running the job.")
    heartbeat = models.DateTimeField(null=True, blank=True)
    progress = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True)
    job_id = models.CharField(max_length=64, blank=True)
    cancel_requested = models.BooleanField(
        default=False, help_text="Someone asked to stop the job: it stops at the next step boundary."
    )
    cancelled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    retry_of = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="retries",
        help_text="The failed deployment this one retried.",
    )
    created = models.DateTimeField(auto_now_add=True)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created", "-id"]
        constraints = [
            # One job per slice at a time, enforced by the database.
            models.UniqueConstraint(
                fields=["slice"],
                condition=models.Q(status__in=["queued", "running"]),
                name="one_active_deployment_per_slice",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} of {self.slice.name} #{self.pk}"

    @property
    def is_active(self) -> bool:
        return self.status in (self.Status.QUEUED, self.Status.RUNNING)

    def heartbeat_now(self) -> None:
        """Tell the abandoned-job check that the process running this job is alive."""
        Deployment.objects.filter(pk=self.pk, status=self.Status.RUNNING).update(heartbeat=timezone.now())

    def claim(self, *, worker: str) -> bool:
        """Transition queued -> running, only if still queued (a job runs a deployment once)."""
        now = timezone.now()
        claimed = Deployment.objects.filter(pk=self.pk, status=self.Status.QUEUED).update(
            status=self.Status.RUNNING, started=now, heartbeat=now, worker=worker
        )
        if claimed:
            self.status, self.started, self.heartbeat, self.worker = self.Status.RUNNING, now, now, worker
        return bool(claimed)

    def mark_succeeded(self) -> bool:
        """Transition running -> succeeded (progress 100 %); False if it is no longer running."""
        now = timezone.now()
        done = Deployment.objects.filter(pk=self.pk, status=self.Status.RUNNING).update(
            status=self.Status.SUCCEEDED, finished=now, progress=100
        )
        if done:
            self.status, self.finished, self.progress = self.Status.SUCCEEDED, now, 100
        return bool(done)

    def mark_failed(self, error: str) -> bool:
        """Transition queued/running -> failed with a message naming host, step and stderr.

        False when the deployment had already ended (e.g. declared abandoned meanwhile).
        """
        return self._end(self.Status.FAILED, error, allowed=ACTIVE_STATUSES)

    def _end(self, status: str, message: str, *, allowed: tuple[str, ...]) -> bool:
        """Compare-and-set to a final ``status`` with its message, only from ``allowed``."""
        now = timezone.now()
        done = Deployment.objects.filter(pk=self.pk, status__in=allowed).update(
            status=status, finished=now, error=message[:20000]
        )
        if done:
            self.status, self.finished, self.error = status, now, message
        return bool(done)

    def request_cancel(self, *, user=None) -> bool:
        """Ask the job to stop (queued or running only); False if it had already ended."""
        done = Deployment.objects.filter(pk=self.pk, status__in=ACTIVE_STATUSES).update(
            cancel_requested=True, cancelled_by=user if user is not None and user.is_authenticated else None
        )
        if done:
            self.cancel_requested = True
        return bool(done)

    def is_cancel_requested(self) -> bool:
        """Read from the database now (the job's own copy does not see the request)."""
        return Deployment.objects.filter(pk=self.pk, cancel_requested=True).exists()

    def mark_cancelled(self, reason: str, *, only_queued: bool = False) -> bool:
        """Transition queued/running (or queued only) -> cancelled, saying where it stopped.

        False if it was not in such a state (it had ended, or a job had claimed it meanwhile).
        """
        allowed = (self.Status.QUEUED,) if only_queued else ACTIVE_STATUSES
        return self._end(self.Status.CANCELLED, reason, allowed=allowed)

    def latest_step_revision(self) -> int:
        """The highest revision written on this deployment's step rows (0 before any)."""
        return self.steps.aggregate(r=models.Max("revision"))["r"] or 0

    def set_progress(self, percent: int) -> None:
        percent = max(0, min(100, int(percent)))
        Deployment.objects.filter(pk=self.pk).update(progress=percent)
        self.progress = percent


ACTIVE_STATUSES = (Deployment.Status.QUEUED, Deployment.Status.RUNNING)


class DeploymentStep(models.Model):
    """One host command of a deployment, written when it starts and when it ends."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        OK = "ok", "OK"
        SKIPPED = "skipped", "Skipped (already in place)"
        NOT_RUN = "not_run", "Not run (the job stopped before it)"
        FAILED = "failed", "Failed"

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="steps")
    seq = models.PositiveIntegerField()
    host = models.CharField(max_length=32)
    phase = models.CharField(max_length=32)
    vm = models.PositiveIntegerField(null=True, blank=True, help_text="The id of the VM this step touches, if one.")
    vlan = models.PositiveSmallIntegerField(null=True, blank=True, help_text="The VLAN this step touches, if one.")
    description = models.CharField(max_length=255)
    command = models.TextField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    exit_code = models.IntegerField(null=True, blank=True)
    output_tail = models.TextField(blank=True)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)
    revision = models.PositiveIntegerField(
        default=0,
        help_text="Bumped on every write of the row: pollers ask only for the steps changed since their last read.",
    )

    class Meta:
        ordering = ["deployment", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["deployment", "seq"], name="unique_step_seq"),
        ]
        # A poll reads the job's highest revision and the rows above the one it has seen:
        # both are index range scans, not a pass over every step of the job.
        indexes = [models.Index(fields=["deployment", "revision"], name="step_deployment_revision")]

    def __str__(self) -> str:
        return f"{self.host}: {self.description}"

    @property
    def duration_ms(self) -> int | None:
        if self.started and self.finished:
            return int((self.finished - self.started).total_seconds() * 1000)
        return None


class HostHealth(models.Model):
    """What the last observation of a host found (provisioning.drift): reachable, versions, capacity, orphans."""

    host = models.OneToOneField("inventory.Host", on_delete=models.CASCADE, related_name="health")
    reachable = models.BooleanField(default=False)
    checked_at = models.DateTimeField(null=True, blank=True, help_text="When the last observation ended.")
    last_seen = models.DateTimeField(null=True, blank=True, help_text="When the host last answered.")
    error = models.TextField(blank=True, help_text="Why the last observation failed, if it did.")
    ovs_version = models.CharField(max_length=32, blank=True)
    qemu_version = models.CharField(max_length=32, blank=True)
    dnsmasq_version = models.CharField(max_length=32, blank=True)
    kvm_device = models.BooleanField(default=False, help_text="/dev/kvm is there and usable by the SSH user.")
    cpus = models.PositiveIntegerField(null=True, blank=True, help_text="CPUs the host has (nproc).")
    free_vcpus = models.IntegerField(null=True, blank=True, help_text="CPUs minus the vCPUs of running guests.")
    mem_total_mib = models.PositiveIntegerField(null=True, blank=True)
    free_ram_mib = models.PositiveIntegerField(null=True, blank=True, help_text="MemAvailable as measured.")
    orphans = models.JSONField(
        default=list, blank=True, help_text="Things named like the portal's that no slice owns (never removed)."
    )
    round_trips = models.PositiveIntegerField(default=0, help_text="SSH round trips of the last observation.")

    class Meta:
        verbose_name_plural = "host health"

    def __str__(self) -> str:
        return f"{self.host}: {'reachable' if self.reachable else 'unreachable'}"


class SliceHealth(models.Model):
    """A deployed slice as last observed on its hosts: in sync, drifted, or a host unreachable."""

    class State(models.TextChoices):
        UNKNOWN = "unknown", "Not checked yet"
        IN_SYNC = "in_sync", "In sync"
        DRIFTED = "drifted", "Drifted"
        UNREACHABLE = "unreachable", "Host unreachable"

    slice = models.OneToOneField("slices.Slice", on_delete=models.CASCADE, related_name="health")
    state = models.CharField(max_length=16, choices=State.choices, default=State.UNKNOWN)
    checked_at = models.DateTimeField(null=True, blank=True)
    since = models.DateTimeField(null=True, blank=True, help_text="When the slice entered this state.")

    class Meta:
        verbose_name_plural = "slice health"

    def __str__(self) -> str:
        return f"{self.slice_id}: {self.state}"


class Drift(models.Model):
    """One difference between a slice's plan and one of its hosts, from first seen until resolved."""

    slice = models.ForeignKey("slices.Slice", on_delete=models.CASCADE, related_name="drifts")
    host = models.CharField(max_length=32)
    kind = models.CharField(max_length=32)
    object = models.CharField(max_length=255)
    expected = models.CharField(max_length=255, blank=True)
    found = models.CharField(max_length=255, blank=True)
    vm = models.PositiveIntegerField(null=True, blank=True, help_text="The id of the VM concerned, if one.")
    vlan = models.PositiveSmallIntegerField(null=True, blank=True, help_text="The VLAN concerned, if one.")
    isolation = models.BooleanField(default=False, help_text="Breaks isolation between slices: repaired by the check.")
    first_seen = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolution = models.CharField(max_length=255, blank=True, help_text="How it went: gone, repaired by the check.")

    class Meta:
        ordering = ["slice", "host", "kind", "object"]
        indexes = [models.Index(fields=["slice", "resolved_at"], name="drift_open_idx")]
        constraints = [
            models.UniqueConstraint(
                fields=["slice", "host", "kind", "object"],
                condition=models.Q(resolved_at__isnull=True),
                name="one_open_drift_per_object",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.host}: {self.kind} {self.object}"


class UsageSample(models.Model):
    """What a host (``vm`` empty) or one of its guests used when a drift check observed it (provisioning.usage).

    The counters are kept as read (CPU clock ticks since boot or since the QEMU started, and the
    host's uptime) so that the next sample can turn them into a share of CPU time.
    """

    host = models.ForeignKey("inventory.Host", on_delete=models.CASCADE, related_name="usage_samples")
    vm = models.ForeignKey("slices.VM", null=True, blank=True, on_delete=models.CASCADE, related_name="usage_samples")
    taken_at = models.DateTimeField(default=timezone.now)
    uptime = models.FloatField(help_text="The host's seconds since boot when the counters were read.")
    pid = models.PositiveIntegerField(null=True, blank=True, help_text="The guest's QEMU process.")
    cpu_ticks = models.BigIntegerField(help_text="CPU time used so far: busy ticks of the host, or of the QEMU.")
    total_ticks = models.BigIntegerField(null=True, blank=True, help_text="The host's ticks, busy or not.")
    cpu_percent = models.FloatField(
        null=True, blank=True, help_text="Since the sample before: host: % of all its CPUs; VM: % of one CPU."
    )
    mem_mib = models.PositiveIntegerField(help_text="Host: memory in use (total - available); VM: QEMU's RSS.")
    load1 = models.FloatField(null=True, blank=True, help_text="The host's 1-minute load average.")

    class Meta:
        ordering = ["taken_at", "id"]
        indexes = [
            models.Index(fields=["vm", "taken_at"], name="usage_vm_idx"),
            models.Index(fields=["host", "taken_at"], name="usage_host_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.host_id}/{self.vm_id or 'host'} at {self.taken_at:%Y-%m-%d %H:%M:%S}"
