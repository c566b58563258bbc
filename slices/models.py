"""The slice design domain: slices, the VLANs they hold, VMs, interfaces and links.

Integrity rules that matter under concurrency live in the database: a VLAN
belongs to at most one link and is held by at most one slice, an interface
carries at most one link, MACs are unique.
"""

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

from .ipam import INTERNET_VLAN, VLAN_ID_MAX, VLAN_ID_MIN
from .naming import MAC_PATTERN, MAX_DATA_INTERFACES, NAME_HELP, NAME_MAX_LENGTH, NAME_STRICT_PATTERN, iface_name

name_validator = RegexValidator(NAME_STRICT_PATTERN, NAME_HELP, code="invalid_name")


class Slice(models.Model):
    """A user's design: VMs and the L2 links between their interfaces.

    Status machine (see docs/provisioning.md): draft -> queued -> deploying ->
    active | failed; active/failed -> queued -> destroying -> draft.
    """

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        QUEUED = "queued", "Queued"
        DEPLOYING = "deploying", "Deploying"
        ACTIVE = "active", "Active"
        FAILED = "failed", "Failed"
        DESTROYING = "destroying", "Destroying"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="slices")
    name = models.CharField(max_length=NAME_MAX_LENGTH, validators=[name_validator], help_text=NAME_HELP)
    description = models.TextField(blank=True, max_length=2000)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    expires_at = models.DateTimeField(
        null=True,
        blank=True,
        db_index=True,
        help_text="Set at deploy (slices.lifetime): then the slice is destroyed, its design kept.",
    )
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "name"], name="unique_slice_name_per_owner"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_busy(self) -> bool:
        """A job is queued or running: the design is frozen until it ends."""
        return self.status in BUSY_STATUSES

    # -- named transitions --------------------------------------------------------------------
    # Each is a compare-and-set in the database (``filter(status__in=...).update``): it happens
    # only from the states named, whatever another process did meanwhile, and says if it did.

    def _transition(self, *, to: str, allowed: tuple[str, ...]) -> bool:
        done = bool(Slice.objects.filter(pk=self.pk, status__in=allowed).update(status=to))
        if done:
            self.status = to
        return done

    def mark_queued(self, *, allowed: tuple[str, ...]) -> bool:
        """A deploy, redeploy or destroy was accepted (from one of the states its kind allows)."""
        return self._transition(to=self.Status.QUEUED, allowed=allowed)

    def mark_deploying(self) -> bool:
        """queued -> deploying: the job began building."""
        return self._transition(to=self.Status.DEPLOYING, allowed=(self.Status.QUEUED,))

    def mark_destroying(self) -> bool:
        """queued -> destroying: the job began tearing down."""
        return self._transition(to=self.Status.DESTROYING, allowed=(self.Status.QUEUED,))

    def mark_active(self) -> bool:
        """deploying -> active: every host holds the design."""
        return self._transition(to=self.Status.ACTIVE, allowed=(self.Status.DEPLOYING,))

    def mark_draft(self) -> bool:
        """destroying -> draft: nothing of the slice is left on the hosts."""
        return self._transition(to=self.Status.DRAFT, allowed=(self.Status.DESTROYING,))

    def mark_failed(self) -> bool:
        """queued/deploying/destroying -> failed: the job failed, was cancelled or abandoned.

        The hosts may hold part of the design: deploy, redeploy or destroy repair it.
        """
        return self._transition(to=self.Status.FAILED, allowed=BUSY_STATUSES)


# A job is queued or running on the slice (the designer and the admin freeze the design).
BUSY_STATUSES = (Slice.Status.QUEUED, Slice.Status.DEPLOYING, Slice.Status.DESTROYING)


class SliceVlan(models.Model):
    """One VLAN of the global range held by one slice: the slice's VLAN pool, a VLAN at a time.

    The VLAN is the primary key, so two slices can never hold the same one,
    whatever the concurrency. Every link's VLAN is held by the link's slice; a
    deployed slice also keeps the VLANs of links deleted since its deploy (they
    may still be configured on the hosts) until a destroy or redeploy.
    """

    vlan = models.PositiveSmallIntegerField(
        primary_key=True, validators=[MinValueValidator(VLAN_ID_MIN), MaxValueValidator(VLAN_ID_MAX)]
    )
    slice = models.ForeignKey(Slice, on_delete=models.CASCADE, related_name="held_vlans")

    class Meta:
        ordering = ["vlan"]
        verbose_name = "slice VLAN"
        constraints = [
            models.CheckConstraint(condition=~models.Q(vlan=INTERNET_VLAN), name="slice_vlan_not_internet"),
            models.CheckConstraint(
                condition=models.Q(vlan__gte=VLAN_ID_MIN, vlan__lte=VLAN_ID_MAX), name="slice_vlan_in_8021q_range"
            ),
        ]

    def __str__(self) -> str:
        return str(self.vlan)


class VMQuerySet(models.QuerySet):
    """Named status transitions for the VMs of a slice (bulk, like the jobs make them)."""

    def mark_deploying(self) -> int:
        """VMs not running yet are being deployed."""
        return self.exclude(status=VM.Status.RUNNING).update(status=VM.Status.DEPLOYING)

    def mark_running(self) -> int:
        return self.update(status=VM.Status.RUNNING)

    def mark_stopped(self) -> int:
        """Deployed, but its QEMU does not run (a power action, as the host reported it)."""
        return self.update(status=VM.Status.STOPPED)

    def mark_failed(self) -> int:
        """Its QEMU runs, but the guest crashed (QMP says guest-panicked or internal-error)."""
        return self.update(status=VM.Status.FAILED)

    def mark_lost(self) -> int:
        """Running, as far as the portal knew, but a check found its QEMU gone (provisioning.drift)."""
        return self.filter(status=VM.Status.RUNNING).update(status=VM.Status.LOST)

    def mark_designed(self) -> int:
        """Destroyed: back to the design, leases and automatic placements forgotten (pins stay), and what
        the guests received at first boot (the next deploy boots fresh disks: they get the owner's keys of
        that moment and new passwords)."""
        Interface.objects.filter(vm__in=self).update(lease_address=None)
        self.filter(pinned=False).update(host=None)
        return self.update(status=VM.Status.DESIGNED, seed_keys=None, console_password="", console_password_hash="")

    def mark_failed_if_deploying(self) -> int:
        """The job ended before these VMs started."""
        return self.filter(status=VM.Status.DEPLOYING).update(status=VM.Status.FAILED)


class VM(models.Model):
    """A virtual machine of a slice: flavor, image, interfaces, placement and state."""

    class Status(models.TextChoices):
        DESIGNED = "designed", "Designed"
        DEPLOYING = "deploying", "Deploying"
        RUNNING = "running", "Running"
        FAILED = "failed", "Failed"
        STOPPED = "stopped", "Stopped"
        LOST = "lost", "Stopped unexpectedly"

    slice = models.ForeignKey(Slice, on_delete=models.CASCADE, related_name="vms")
    name = models.CharField(max_length=NAME_MAX_LENGTH, validators=[name_validator], help_text=NAME_HELP)
    flavor = models.ForeignKey("inventory.Flavor", on_delete=models.PROTECT, related_name="vms")
    image = models.ForeignKey("inventory.Image", on_delete=models.PROTECT, related_name="vms")
    data_interfaces_count = models.PositiveSmallIntegerField(
        default=1, validators=[MaxValueValidator(MAX_DATA_INTERFACES)]
    )
    internet_enabled = models.BooleanField(default=False)
    host = models.ForeignKey(
        "inventory.Host",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="vms",
        help_text="The worker the VM is placed on (chosen at deploy when empty).",
    )
    pinned = models.BooleanField(
        default=False,
        help_text="The host was chosen by a user or an operator and stays; "
        "otherwise placement chose it and a destroy forgets it.",
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DESIGNED)
    x = models.FloatField(default=0)
    y = models.FloatField(default=0)
    console_tail = models.TextField(blank=True, help_text="Last lines of the serial console.")
    # Cloud-init images: what the VM's NoCloud seed holds, fixed at its first deploy (see docs/guests.md).
    console_password = models.CharField(
        max_length=64, blank=True, help_text="The default user's console password (shown to the owner only)."
    )
    console_password_hash = models.CharField(max_length=128, blank=True, help_text="Its SHA-512 crypt hash (seed).")
    seed_keys = models.JSONField(
        null=True,
        blank=True,
        help_text="The owner's keys as at the VM's first deploy: [{name, fingerprint, public_key}] (null: none yet).",
    )

    objects = VMQuerySet.as_manager()

    class Meta:
        # By id, not by the slice's own ordering: no join just to sort a VM list.
        ordering = ["slice_id", "name"]
        constraints = [
            models.UniqueConstraint(fields=["slice", "name"], name="unique_vm_name_per_slice"),
        ]

    def __str__(self) -> str:
        return f"{self.slice.name}/{self.name}" if self.slice_id else self.name


class Interface(models.Model):
    """A guest NIC: ``eth0`` (management) or ``eth1``+ (data), with a stable MAC.

    ``vlan`` is set on a data interface when a link connects it, and on eth0
    when the VM has internet (VLAN 400). ``ip_address`` is the address the
    portal reserves for it (a DHCP reservation); ``lease_address`` is what the
    network node's dnsmasq actually leased, once seen.
    """

    vm = models.ForeignKey(VM, on_delete=models.CASCADE, related_name="interfaces")
    index = models.PositiveSmallIntegerField(validators=[MaxValueValidator(MAX_DATA_INTERFACES)])
    mac = models.CharField(
        max_length=17,
        unique=True,
        validators=[RegexValidator(MAC_PATTERN, "A lower-case MAC address.")],
    )
    vlan = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MinValueValidator(VLAN_ID_MIN), MaxValueValidator(VLAN_ID_MAX)]
    )
    ip_address = models.GenericIPAddressField(protocol="IPv4", null=True, blank=True)
    lease_address = models.GenericIPAddressField(protocol="IPv4", null=True, blank=True)

    class Meta:
        ordering = ["vm_id", "index"]
        constraints = [
            models.UniqueConstraint(fields=["vm", "index"], name="unique_interface_per_vm"),
            # The internet VLAN only ever reaches a guest on its management interface.
            models.CheckConstraint(
                condition=models.Q(index=0) | ~models.Q(vlan=INTERNET_VLAN), name="internet_vlan_only_on_eth0"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.vm.name}.{self.name}"

    @property
    def name(self) -> str:
        return iface_name(self.index)

    @property
    def is_management(self) -> bool:
        return self.index == 0


class Link(models.Model):
    """An L2 link between two data interfaces of two VMs of one slice, on its own VLAN.

    ``a`` is always the interface with the lower id (a check constraint), the
    one-to-one fields stop an interface from being the same end of two links,
    and the unique ``vlan`` guarantees no two links (hence no two slices) ever
    share a VLAN. That an interface is not ``a`` of one link and ``b`` of another,
    and that two VMs are joined at most once, is checked by ``link_connect``
    under the slice's row lock, which every write to a slice's links takes.
    """

    slice = models.ForeignKey(Slice, on_delete=models.CASCADE, related_name="links")
    a = models.OneToOneField(Interface, on_delete=models.CASCADE, related_name="link_as_a")
    b = models.OneToOneField(Interface, on_delete=models.CASCADE, related_name="link_as_b")
    vlan = models.PositiveSmallIntegerField(
        unique=True, validators=[MinValueValidator(VLAN_ID_MIN), MaxValueValidator(VLAN_ID_MAX)]
    )
    subnet = models.CharField(max_length=18)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slice_id", "vlan"]
        constraints = [
            models.CheckConstraint(condition=~models.Q(vlan=INTERNET_VLAN), name="link_vlan_not_internet"),
            models.CheckConstraint(condition=models.Q(a__lt=models.F("b")), name="link_a_before_b"),
            models.CheckConstraint(
                condition=models.Q(vlan__gte=VLAN_ID_MIN, vlan__lte=VLAN_ID_MAX), name="link_vlan_in_8021q_range"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.a} <-> {self.b} (VLAN {self.vlan})"


class InternetAddress(models.Model):
    """A fixed address on VLAN 400 held by one internet NIC (by MAC) of a slice.

    VLAN 400 is one segment for every slice, so the unique ``address`` is what keeps
    two guests of any slices from ever holding the same one. A row is taken when a
    deploy/redeploy is requested and lives as long as the hosts may hold it: it goes
    only after a job that succeeded without it (a destroy, or a redeploy after the
    VM or its internet went), never when the design alone changes (the guest still
    runs with it until then). See :mod:`slices.internet`.
    """

    slice = models.ForeignKey(Slice, on_delete=models.CASCADE, related_name="internet_addresses")
    mac = models.CharField(max_length=17, validators=[RegexValidator(MAC_PATTERN, "A lower-case MAC address.")])
    address = models.GenericIPAddressField(protocol="IPv4", unique=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["address"]
        constraints = [
            models.UniqueConstraint(fields=["slice", "mac"], name="one_internet_address_per_nic"),
        ]

    def __str__(self) -> str:
        return f"{self.address} ({self.mac})"


class SshKey(models.Model):
    """One of a user's SSH public keys (validated by ``slices.sshkeys``): cloud-init VMs trust them."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="ssh_keys")
    name = models.CharField(max_length=64)
    key_type = models.CharField(max_length=32)
    public_key = models.TextField(help_text="TYPE BASE64, as validated (the comment is kept apart).")
    comment = models.CharField(max_length=200, blank=True)
    fingerprint = models.CharField(max_length=64, help_text="SHA256:... as ssh-keygen -l prints it.")
    bits = models.PositiveIntegerField(default=0)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["owner_id", "created", "id"]
        verbose_name = "SSH key"
        constraints = [
            models.UniqueConstraint(fields=["owner", "name"], name="unique_ssh_key_name_per_owner"),
            models.UniqueConstraint(fields=["owner", "fingerprint"], name="unique_ssh_key_per_owner"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.fingerprint})"


class UserQuota(models.Model):
    """Per-user limits; a missing field (or no row) falls back to the settings' defaults."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="quota")
    max_vms = models.PositiveIntegerField(
        null=True, blank=True, help_text="VMs over all the user's slices (empty: SLICE_QUOTA_VMS)."
    )
    max_vcpus = models.PositiveIntegerField(
        null=True, blank=True, help_text="vCPUs in total (empty: SLICE_QUOTA_VCPUS)."
    )
    max_ram_mib = models.PositiveIntegerField(
        null=True, blank=True, help_text="RAM in MiB in total (empty: SLICE_QUOTA_RAM_MIB)."
    )
    max_lifetime_hours = models.PositiveIntegerField(
        null=True, blank=True, help_text="Longest a deployed slice may live from now (empty: SLICE_LIFETIME_MAX_HOURS)."
    )

    class Meta:
        verbose_name = "user quota"

    def __str__(self) -> str:
        return f"quota of {self.user}"


class ApiToken(models.Model):
    """A named API token of a user (``Authorization: Token <key>``): listed and revoked by its owner.

    ``slicectl login`` and ``POST /api/auth/token/`` create one per login, named
    after where it is used; ``last_used`` is stamped (at most once a minute) when
    it authenticates a request. Deleting the row revokes it at once.
    """

    key = models.CharField(max_length=40, unique=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=64)
    created = models.DateTimeField(auto_now_add=True)
    last_used = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created", "-id"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.name} ({self.user})"

    @property
    def prefix(self) -> str:
        """The first characters of the key: enough to tell tokens apart, never enough to use one."""
        return self.key[:6]
