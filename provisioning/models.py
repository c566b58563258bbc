"""Inventory (hosts, images, flavors) and the record of deployments and their steps."""

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.utils import timezone

HOST_NAME_VALIDATOR = RegexValidator(
    r"^[a-z][a-z0-9-]{0,31}$", "Lower-case letters, digits and '-', a letter first, at most 32."
)
IFNAME_VALIDATOR = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$", "A Linux interface name: at most 15 characters."
)
PATH_VALIDATOR = RegexValidator(r"^(/[A-Za-z0-9._+-]+)+/?$", "An absolute path of letters, digits, '.', '_', '+', '-'.")
CMDLINE_VALIDATOR = RegexValidator(
    r"^[A-Za-z0-9._,=:/+ -]*$", "Kernel arguments: letters, digits, spaces and . _ , = : / + -"
)


class Host(models.Model):
    """A machine of the cluster: a compute worker or the network node.

    Kept by operators. ``state_dir`` is where the portal keeps its files on the
    host (pid files, logs, leases, disk overlays); in the local lab every host
    has its own because the lab's hosts share one filesystem.
    """

    class Role(models.TextChoices):
        WORKER = "worker", "Compute worker"
        NETWORK = "network", "Network node"

    class Accel(models.TextChoices):
        AUTO = "auto", "Detect (probe KVM)"
        KVM = "kvm", "KVM"
        TCG = "tcg", "TCG (emulation)"

    name = models.CharField(max_length=32, unique=True, validators=[HOST_NAME_VALIDATOR])
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.WORKER)
    management_address = models.GenericIPAddressField(protocol="both")
    ssh_port = models.PositiveIntegerField(default=22, validators=[MinValueValidator(1), MaxValueValidator(65535)])
    ssh_user = models.CharField(max_length=32, default="root", validators=[RegexValidator(r"^[a-z_][a-z0-9_-]{0,31}$")])
    ssh_key_path = models.CharField(
        max_length=255,
        blank=True,
        validators=[PATH_VALIDATOR],
        help_text="Private key file on the portal machine (empty: the SSH agent / defaults).",
    )
    vcpus = models.PositiveIntegerField(default=8, help_text="vCPUs available to guests.")
    ram_mib = models.PositiveIntegerField(default=16384, help_text="RAM (MiB) available to guests.")
    uplink = models.CharField(
        max_length=15,
        default="ens3",
        validators=[IFNAME_VALIDATOR],
        help_text="Network node only: the interface NAT (VLAN 400) goes out of.",
    )
    state_dir = models.CharField(max_length=255, default="/var/lib/slice-portal", validators=[PATH_VALIDATOR])
    enabled = models.BooleanField(default=True)
    accel = models.CharField(
        max_length=8,
        choices=Accel.choices,
        default=Accel.AUTO,
        help_text="Workers: QEMU accelerator. 'auto' probes the host once (a tiny KVM guest) and remembers.",
    )
    accel_detected = models.CharField(max_length=8, blank=True, help_text="What the last KVM probe found.")
    accel_probed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["role", "name"]

    def __str__(self) -> str:
        return self.name

    @property
    def effective_accel(self) -> str | None:
        """'kvm' or 'tcg' when known (forced or probed); None when a probe is still due."""
        if self.accel != self.Accel.AUTO:
            return self.accel
        return self.accel_detected or None


class Image(models.Model):
    """A guest image: a qcow2 base disk on the hosts, or a direct kernel boot."""

    class Kind(models.TextChoices):
        DISK = "disk", "qcow2 disk image"
        KERNEL = "kernel", "Direct kernel boot"

    name = models.CharField(
        max_length=64,
        unique=True,
        validators=[RegexValidator(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")],
    )
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.DISK)
    disk_path = models.CharField(
        max_length=255,
        blank=True,
        validators=[PATH_VALIDATOR],
        help_text="qcow2 base image on every worker (disk images).",
    )
    kernel_path = models.CharField(max_length=255, blank=True, validators=[PATH_VALIDATOR])
    initrd_path = models.CharField(max_length=255, blank=True, validators=[PATH_VALIDATOR])
    kernel_args = models.CharField(max_length=255, blank=True, default="console=ttyS0", validators=[CMDLINE_VALIDATOR])
    is_default = models.BooleanField(default=False)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"], condition=models.Q(is_default=True), name="one_default_image"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Flavor(models.Model):
    """A VM size: vCPUs, RAM and disk."""

    name = models.CharField(
        max_length=32, unique=True, validators=[RegexValidator(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")]
    )
    vcpus = models.PositiveIntegerField(default=1, validators=[MinValueValidator(1)])
    ram_mib = models.PositiveIntegerField(default=128, validators=[MinValueValidator(32)])
    disk_gib = models.PositiveIntegerField(default=1)
    is_default = models.BooleanField(default=False)

    class Meta:
        ordering = ["vcpus", "ram_mib", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"], condition=models.Q(is_default=True), name="one_default_flavor"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.vcpus} vCPU, {self.ram_mib} MiB)"


class Deployment(models.Model):
    """One provisioning job on a slice (deploy, destroy or redeploy) and its outcome.

    Progress fields are written with ``filter(pk=...).update(...)`` the moment
    they change, outside any long transaction, so the API shows them live.
    """

    class Kind(models.TextChoices):
        DEPLOY = "deploy", "Deploy"
        REDEPLOY = "redeploy", "Redeploy"
        DESTROY = "destroy", "Destroy"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    slice = models.ForeignKey("slices.Slice", on_delete=models.CASCADE, related_name="deployments")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    dry_run = models.BooleanField(default=False)
    plan = models.JSONField(default=dict, blank=True)
    spec = models.JSONField(
        default=dict, blank=True, help_text="The slice as this job was asked to make it (empty for a destroy)."
    )
    stats = models.JSONField(default=dict, blank=True, help_text="Runner counters per host.")
    worker = models.CharField(max_length=128, blank=True, help_text="host:pid of the process running the job.")
    heartbeat = models.DateTimeField(null=True, blank=True)
    progress = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True)
    job_id = models.CharField(max_length=64, blank=True)
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
        return f"{self.kind} of {self.slice_id} #{self.pk}"

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
        now = timezone.now()
        done = Deployment.objects.filter(pk=self.pk, status__in=ACTIVE_STATUSES).update(
            status=self.Status.FAILED, finished=now, error=error[:20000]
        )
        if done:
            self.status, self.finished, self.error = self.Status.FAILED, now, error
        return bool(done)

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
        FAILED = "failed", "Failed"

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="steps")
    seq = models.PositiveIntegerField()
    host = models.CharField(max_length=32)
    phase = models.CharField(max_length=32)
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

    def __str__(self) -> str:
        return f"{self.host}: {self.description}"

    @property
    def duration_ms(self) -> int | None:
        if self.started and self.finished:
            return int((self.finished - self.started).total_seconds() * 1000)
        return None
