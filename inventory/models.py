"""The cluster's inventory: hosts, guest images and flavors.

Below both ``slices`` (a VM has a flavor, an image and maybe a host) and
``provisioning`` (which reaches the hosts): neither imports the other's models
to know them.
"""

from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

from .patterns import (
    CMDLINE_HELP,
    CMDLINE_PATTERN,
    FLAVOR_NAME_PATTERN,
    HOST_NAME_HELP,
    HOST_NAME_PATTERN,
    IFNAME_HELP,
    IFNAME_PATTERN,
    IMAGE_NAME_PATTERN,
    PATH_HELP,
    PATH_PATTERN,
    SSH_USER_PATTERN,
)

HOST_NAME_VALIDATOR = RegexValidator(HOST_NAME_PATTERN, HOST_NAME_HELP)
IFNAME_VALIDATOR = RegexValidator(IFNAME_PATTERN, IFNAME_HELP)
PATH_VALIDATOR = RegexValidator(PATH_PATTERN, PATH_HELP)
CMDLINE_VALIDATOR = RegexValidator(CMDLINE_PATTERN, CMDLINE_HELP)


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
    ssh_user = models.CharField(max_length=32, default="root", validators=[RegexValidator(SSH_USER_PATTERN)])
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
    enabled = models.BooleanField(
        default=True, help_text="Off: the host is out of the cluster (nothing is placed or deployed there)."
    )
    drained = models.BooleanField(
        default=False,
        help_text="Drained for maintenance: no new VM is placed here; what runs here keeps running.",
    )
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
    def takes_new_vms(self) -> bool:
        """An enabled worker that is not drained: placement may put new VMs here."""
        return self.role == self.Role.WORKER and self.enabled and not self.drained

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
        validators=[RegexValidator(IMAGE_NAME_PATTERN)],
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
    cloud_init = models.BooleanField(
        default=False,
        help_text="The image runs cloud-init: each VM gets a NoCloud seed (hostname, the owner's keys, network).",
    )
    default_user = models.CharField(
        max_length=32,
        blank=True,
        validators=[RegexValidator(SSH_USER_PATTERN)],
        help_text="Cloud-init images: the user the seed creates with the owner's keys (e.g. debian).",
    )
    is_default = models.BooleanField(default=False)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"], condition=models.Q(is_default=True), name="one_default_image"
            ),
            models.CheckConstraint(
                condition=models.Q(cloud_init=False) | ~models.Q(default_user=""), name="cloud_init_image_has_user"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Flavor(models.Model):
    """A VM size: vCPUs, RAM and disk."""

    name = models.CharField(max_length=32, unique=True, validators=[RegexValidator(FLAVOR_NAME_PATTERN)])
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
