"""Serializers of the design API. Writes go through ``slices.services``."""

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from inventory.api.fields import NamedChoiceField, StrictTypesMixin
from inventory.models import Flavor, Host, Image
from slices import guests, ipam, topologies, vlans
from slices.io import COORD_LIMIT, DESCRIPTION_MAX_LENGTH
from slices.models import VM, Interface, Link, Slice
from slices.naming import MAX_DATA_INTERFACES, tap_name, vm_console_path, vm_vnc_path

from .fields import NameField, OwnedRelatedField
from .fields import validate_name as validate_name  # re-exported for the UI and older imports


def _no_such(noun: str) -> dict[str, str]:
    """The messages of an id field: the same words as for slices and VMs (see OwnedRelatedField)."""
    return {"does_not_exist": f"No such {noun}.", "incorrect_type": f"A {noun} id: a whole number."}


class InterfaceSerializer(serializers.ModelSerializer):
    name = serializers.CharField(read_only=True)
    vm_name = serializers.CharField(source="vm.name", read_only=True)
    link = serializers.SerializerMethodField()
    tap = serializers.SerializerMethodField()
    subnet = serializers.SerializerMethodField()
    gateway = serializers.SerializerMethodField()

    class Meta:
        model = Interface
        fields = [
            "id",
            "vm",
            "vm_name",
            "name",
            "index",
            "mac",
            "vlan",
            "subnet",
            "gateway",
            "ip_address",
            "lease_address",
            "link",
            "tap",
        ]
        read_only_fields = fields

    def get_link(self, obj: Interface) -> int | None:
        for attr in ("link_as_a", "link_as_b"):
            link = getattr(obj, attr, None)
            if link is not None:
                return link.pk
        return None

    def get_tap(self, obj: Interface) -> str:
        return tap_name(obj.vm_id, obj.index)

    def _net(self, obj: Interface) -> ipam.VlanNetwork | None:
        return ipam.vlan_network(obj.vlan, settings.SLICE_LINK_SUPERNET) if obj.vlan else None

    def get_subnet(self, obj: Interface) -> str | None:
        net = self._net(obj)
        return str(net.subnet) if net else None

    def get_gateway(self, obj: Interface) -> str | None:
        net = self._net(obj)
        return str(net.gateway) if net else None


# The console WebSocket's protocol, in words (the schema has no WebSocket operations).
CONSOLE_PROTOCOL = (
    "WebSocket path of the VM's interactive serial console (same host as the API; ws:// or wss://). "
    "Authenticated by the session cookie (the Origin header must then be one of the portal's hosts) or "
    "by the API token in the handshake, Authorization: Token KEY (no Origin needed; slicectl console). "
    "Only the slice's owner and staff get in, and only while the VM is running. "
    "Server to client: binary frames are the guest's output bytes (first the recent scrollback of its "
    'console log, then a text frame {"event": "live"}, then live output); before closing, a text frame '
    '{"event": "closed", "code": N, "reason": "..."}. Client to server: binary or text frames are bytes '
    "typed into the guest (text as UTF-8; Ctrl-C is byte 0x03). Several viewers of one VM share one relay: "
    "all see the output, all can type. Close codes: 4401 not logged in, 4404 no such VM (or another "
    "user's), 4409 VM not running, 4408 idle (no keystroke for CONSOLE_IDLE_TIMEOUT s, default 1800), "
    "4410 the guest's console closed (VM stopped), 4502 worker or console socket unreachable, "
    "4504 the relay did not answer (reconnect)."
)
VNC_PROTOCOL = (
    "WebSocket path of the VM's graphical console (its screen over VNC; noVNC speaks it). Authenticated, "
    "authorised and closed like console_url (same rules, same close codes; idle means no key or pointer "
    "event for CONSOLE_IDLE_TIMEOUT s). Frames are binary both ways and carry the RFB protocol (RFC 6143) "
    "unchanged, from the handshake on: the server relays the bytes of QEMU's VNC server (a unix socket on "
    "the worker, never a TCP port). No scrollback and no live event; before closing, the server sends the "
    'text frame {"event": "closed", "code": N, "reason": "..."}. Each viewer gets a connection of its own; '
    "several viewers of one VM share the screen and can all type."
)


class GuestAddressSerializer(serializers.Serializer):
    interface = serializers.CharField()
    vlan = serializers.IntegerField()
    address = serializers.IPAddressField(protocol="IPv4", allow_null=True)


class GuestKeySerializer(serializers.Serializer):
    name = serializers.CharField()
    fingerprint = serializers.CharField()


class GuestAccessSerializer(serializers.Serializer):
    """How to reach a cloud-init VM."""

    user = serializers.CharField()
    addresses = GuestAddressSerializer(many=True)
    ssh = serializers.CharField(allow_null=True)
    ssh_from = serializers.CharField()
    keys = GuestKeySerializer(many=True, allow_null=True)
    has_console_password = serializers.BooleanField()


class VMSerializer(StrictTypesMixin, serializers.ModelSerializer):
    """A VM of one of your slices, with its interfaces (eth0 management, eth1.. data)."""

    slice = OwnedRelatedField(model=Slice, owner_path="owner", noun="slice")
    name = NameField()
    flavor = serializers.PrimaryKeyRelatedField(
        queryset=Flavor.objects.all(), required=False, error_messages=_no_such("flavor")
    )
    image = serializers.PrimaryKeyRelatedField(
        queryset=Image.objects.all(), required=False, error_messages=_no_such("image")
    )
    host = serializers.PrimaryKeyRelatedField(
        queryset=Host.objects.filter(role=Host.Role.WORKER),
        required=False,
        allow_null=True,
        error_messages=_no_such("worker"),
    )
    host_name = serializers.CharField(source="host.name", read_only=True, default=None, allow_null=True)
    pinned = serializers.BooleanField(
        read_only=True,
        help_text="The host was set by hand (a pin: it stays after a destroy); "
        "false when placement chose it at deploy (a destroy forgets it).",
    )
    data_interfaces_count = serializers.IntegerField(min_value=0, max_value=MAX_DATA_INTERFACES, default=1)
    status = NamedChoiceField(choices=VM.Status.choices, enum_name="VMStatusEnum", read_only=True)
    x = serializers.FloatField(min_value=-COORD_LIMIT, max_value=COORD_LIMIT, required=False)
    y = serializers.FloatField(min_value=-COORD_LIMIT, max_value=COORD_LIMIT, required=False)
    interfaces = InterfaceSerializer(many=True, read_only=True)
    console_url = serializers.SerializerMethodField(help_text=CONSOLE_PROTOCOL)
    vnc_url = serializers.SerializerMethodField(help_text=VNC_PROTOCOL)
    guest = serializers.SerializerMethodField(
        help_text="Cloud-init VMs (null otherwise): the default user, addresses per NIC, the ssh command to run on "
        "the network node, the keys the VM received at its first deploy (null before), whether a console "
        "password exists (GET console-password/ shows it to the owner)."
    )

    class Meta:
        model = VM
        fields = [
            "id",
            "slice",
            "name",
            "flavor",
            "image",
            "data_interfaces_count",
            "internet_enabled",
            "host",
            "host_name",
            "pinned",
            "status",
            "x",
            "y",
            "interfaces",
            "console_tail",
            "console_url",
            "vnc_url",
            "guest",
        ]
        read_only_fields = ["console_tail"]

    def get_console_url(self, vm: VM) -> str:
        return vm_console_path(vm)

    def get_vnc_url(self, vm: VM) -> str:
        return vm_vnc_path(vm)

    @extend_schema_field(GuestAccessSerializer(allow_null=True))
    def get_guest(self, vm: VM) -> dict | None:
        return guests.guest_access(vm)

    def validate_slice(self, value: Slice) -> Slice:
        if self.instance is not None and value.pk != self.instance.slice_id:
            raise serializers.ValidationError("A VM cannot move to another slice.")
        return value


class LinkEndSerializer(serializers.Serializer):
    vm = serializers.IntegerField()
    vm_name = serializers.CharField()
    interface = serializers.CharField()
    ip_address = serializers.IPAddressField(allow_null=True)


class LinkSerializer(StrictTypesMixin, serializers.ModelSerializer):
    """A link. Create with ``slice``, ``vm_a``, ``vm_b`` and optionally ``iface_a``/``iface_b``."""

    slice = OwnedRelatedField(model=Slice, owner_path="owner", noun="slice")
    vm_a = OwnedRelatedField(model=VM, owner_path="slice__owner", noun="VM", write_only=True)
    vm_b = OwnedRelatedField(model=VM, owner_path="slice__owner", noun="VM", write_only=True)
    iface_a = serializers.CharField(
        write_only=True, required=False, allow_blank=True, max_length=8, help_text="eth1.. (default: first free)"
    )
    iface_b = serializers.CharField(
        write_only=True, required=False, allow_blank=True, max_length=8, help_text="eth1.. (default: first free)"
    )
    a = serializers.SerializerMethodField()
    b = serializers.SerializerMethodField()
    gateway = serializers.SerializerMethodField()

    class Meta:
        model = Link
        fields = ["id", "slice", "vm_a", "vm_b", "iface_a", "iface_b", "a", "b", "vlan", "subnet", "gateway"]
        read_only_fields = ["vlan", "subnet"]

    def _end(self, iface: Interface) -> dict:
        return {"vm": iface.vm_id, "vm_name": iface.vm.name, "interface": iface.name, "ip_address": iface.ip_address}

    @extend_schema_field(LinkEndSerializer)
    def get_a(self, obj: Link) -> dict:
        return self._end(obj.a)

    @extend_schema_field(LinkEndSerializer)
    def get_b(self, obj: Link) -> dict:
        return self._end(obj.b)

    def get_gateway(self, obj: Link) -> str:
        return str(ipam.vlan_network(obj.vlan, settings.SLICE_LINK_SUPERNET).gateway)


class LinkPairSerializer(StrictTypesMixin, serializers.Serializer):
    """One link of a bulk request: two VMs of the slice (ids) and optionally their interfaces."""

    vm_a = serializers.IntegerField(min_value=1, max_value=2**63 - 1, help_text="A VM of this slice (id).")
    vm_b = serializers.IntegerField(min_value=1, max_value=2**63 - 1, help_text="Another VM of this slice (id).")
    iface_a = serializers.CharField(
        required=False, allow_blank=True, max_length=8, help_text="eth1.. (default: first free)"
    )
    iface_b = serializers.CharField(
        required=False, allow_blank=True, max_length=8, help_text="eth1.. (default: first free)"
    )


# More links than the widest VLAN range could ever hold is refused before any work.
BULK_LINKS_MAX = 4094


class BulkLinksSerializer(serializers.Serializer):
    """A whole set of links to create in one slice, all or nothing."""

    links = LinkPairSerializer(many=True, max_length=BULK_LINKS_MAX, allow_empty=False)


class BulkLinksResultSerializer(serializers.Serializer):
    """The links created by a bulk request, in the order asked."""

    links = LinkSerializer(many=True)


class SliceSerializer(StrictTypesMixin, serializers.ModelSerializer):
    """A slice: a design of VMs and links, and its deployment status."""

    name = NameField()
    description = serializers.CharField(required=False, allow_blank=True, max_length=DESCRIPTION_MAX_LENGTH)
    owner = serializers.CharField(source="owner.username", read_only=True)
    status = NamedChoiceField(choices=Slice.Status.choices, enum_name="SliceStatusEnum", read_only=True)
    vm_count = serializers.IntegerField(read_only=True)
    link_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Slice
        fields = [
            "id",
            "name",
            "description",
            "owner",
            "status",
            "expires_at",
            "vm_count",
            "link_count",
            "created",
            "updated",
        ]
        read_only_fields = ["created", "updated", "expires_at"]


class DifferenceSerializer(serializers.Serializer):
    """One way a host differs from the slice's plan (provisioning.drift), since ``first_seen``."""

    host = serializers.CharField()
    kind = serializers.CharField(help_text="qemu, tap, port, guard, gateway, dhcp-namespace, dnsmasq, iptables, ...")
    object = serializers.CharField(help_text="What differs, named as on the host (e.g. `vm1.eth0 (tap_7_eth0)`).")
    expected = serializers.CharField()
    found = serializers.CharField()
    vm = serializers.IntegerField(allow_null=True, help_text="The VM concerned, if one.")
    vlan = serializers.IntegerField(allow_null=True, help_text="The VLAN concerned, if one.")
    isolation = serializers.BooleanField(help_text="Breaks isolation between slices: the check repairs it itself.")
    first_seen = serializers.DateTimeField()
    last_seen = serializers.DateTimeField()
    resolved_at = serializers.DateTimeField(allow_null=True)
    resolution = serializers.CharField()


class SliceHealthSerializer(serializers.Serializer):
    """The slice as last observed on its hosts: in sync, drifted, host unreachable (or not checked yet)."""

    state = serializers.ChoiceField(choices=["unknown", "in_sync", "drifted", "unreachable"])
    checked_at = serializers.DateTimeField(allow_null=True)
    since = serializers.DateTimeField(allow_null=True, help_text="When the slice entered this state.")
    differences = DifferenceSerializer(many=True, help_text="What differs now.")
    repaired = DifferenceSerializer(many=True, help_text="What the checks put back by themselves lately.")


DRIFT_FIELDS = [f for f in DifferenceSerializer._declared_fields]
RECENT_REPAIRS = 10


def slice_health(obj: Slice) -> dict:
    """The slice's health from its reverse relations (the drift models live in provisioning)."""
    health = getattr(obj, "health", None)
    drifts = obj.drifts.all()
    open_rows = drifts.filter(resolved_at__isnull=True).order_by("host", "kind", "object")
    repaired = drifts.filter(resolution="repaired by the check").order_by("-resolved_at")[:RECENT_REPAIRS]
    return {
        "state": health.state if health else "unknown",
        "checked_at": health.checked_at if health else None,
        "since": health.since if health else None,
        "differences": [{f: getattr(r, f) for f in DRIFT_FIELDS} for r in open_rows],
        "repaired": [{f: getattr(r, f) for f in DRIFT_FIELDS} for r in repaired],
    }


class SliceDetailSerializer(SliceSerializer):
    vms = VMSerializer(many=True, read_only=True)
    links = LinkSerializer(many=True, read_only=True)
    vlan_pool = serializers.SerializerMethodField()
    health = serializers.SerializerMethodField()

    class Meta(SliceSerializer.Meta):
        fields = [*SliceSerializer.Meta.fields, "vms", "links", "vlan_pool", "health"]

    @extend_schema_field(SliceHealthSerializer)
    def get_health(self, obj: Slice) -> dict:
        """Drift: in sync, drifted or host unreachable, with what differs (docs/drift.md)."""
        return SliceHealthSerializer(slice_health(obj)).data

    def get_vlan_pool(self, obj: Slice) -> list[str]:
        """The VLANs the slice holds, as runs (``["100-102", "140"]``): its links' and any it keeps."""
        return vlans.ranges(h.vlan for h in obj.held_vlans.all())


# --- templates, import and export --------------------------------------------------------


class TopologyKindSerializer(serializers.Serializer):
    """A topology template and how many VMs it accepts."""

    name = serializers.CharField()
    description = serializers.CharField()
    min_count = serializers.IntegerField()
    max_count = serializers.IntegerField()


class FromTemplateSerializer(StrictTypesMixin, serializers.Serializer):
    """A new slice of ``count`` VMs wired as ``topology``."""

    name = NameField()
    description = serializers.CharField(required=False, allow_blank=True, max_length=DESCRIPTION_MAX_LENGTH)
    topology = NamedChoiceField(
        choices=list(topologies.KINDS),
        enum_name="TopologyEnum",
        error_messages={
            "invalid_choice": f"Unknown topology {{input!r}}: choose one of {', '.join(topologies.KINDS)}."
        },
    )
    count = serializers.IntegerField(help_text="How many VMs (see /api/templates/ for each topology's limits).")
    flavor = serializers.PrimaryKeyRelatedField(
        queryset=Flavor.objects.all(), required=False, allow_null=True, error_messages=_no_such("flavor")
    )
    image = serializers.PrimaryKeyRelatedField(
        queryset=Image.objects.all(), required=False, allow_null=True, error_messages=_no_such("image")
    )
    internet_enabled = serializers.BooleanField(default=False)


class DocumentVMSerializer(serializers.Serializer):
    """A VM of a slice document (schema only; ``slices.io`` validates)."""

    name = serializers.CharField()
    flavor = serializers.CharField(required=False, help_text="Flavor name (default: the default flavor).")
    image = serializers.CharField(required=False, help_text="Image name (default: the default image).")
    data_interfaces_count = serializers.IntegerField(required=False, min_value=0, max_value=MAX_DATA_INTERFACES)
    internet_enabled = serializers.BooleanField(required=False)
    x = serializers.FloatField(required=False)
    y = serializers.FloatField(required=False)


class SliceDocumentSerializer(serializers.Serializer):
    """A slice document, as exported and imported (schema only; ``slices.io`` validates)."""

    version = serializers.IntegerField(required=False, default=1)
    name = serializers.CharField()
    description = serializers.CharField(required=False, allow_blank=True)
    vms = DocumentVMSerializer(many=True)
    links = serializers.ListField(
        child=serializers.ListField(child=serializers.CharField(), min_length=2, max_length=2),
        required=False,
        help_text='Pairs of endpoints, e.g. [["vm1:eth1", "vm2:eth1"]].',
    )


class ImportUploadSerializer(serializers.Serializer):
    """A slice document uploaded as a file (YAML or JSON)."""

    file = serializers.FileField()
    name = serializers.CharField(required=False, help_text="Import under this name instead of the document's.")


# --- slices as code: apply, import reports, compact status -----------------------------------


class InterfaceMappingSerializer(serializers.Serializer):
    """A containerlab interface name and the guest interface it became."""

    node = serializers.CharField()
    interface = serializers.CharField(help_text="The name in the containerlab file (e1-1, Ethernet1, ...).")
    mapped = serializers.CharField(help_text="The guest's interface (ethN).")
    rule = serializers.CharField(help_text="The rule that mapped it (see docs/slices-as-code.md).")


class ImportWarningSerializer(serializers.Serializer):
    """Something of the document a slice cannot represent; ``node`` is ``*`` for the whole topology."""

    node = serializers.CharField()
    message = serializers.CharField()


class ImportReportMixin(serializers.Serializer):
    source = serializers.ChoiceField(choices=["slice", "containerlab"], help_text="The document's format.")
    interfaces = InterfaceMappingSerializer(many=True, help_text="Interface names that were changed.")
    warnings = ImportWarningSerializer(many=True, help_text="What was not represented, per node.")


class SliceImportResultSerializer(SliceDetailSerializer):
    """The imported slice, with what reading the document reported (schema only)."""

    source = serializers.CharField(read_only=True)
    interfaces = InterfaceMappingSerializer(many=True, read_only=True)
    warnings = ImportWarningSerializer(many=True, read_only=True)

    class Meta(SliceDetailSerializer.Meta):
        fields = [*SliceDetailSerializer.Meta.fields, "source", "interfaces", "warnings"]


class SliceRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    status = serializers.CharField()


class AddedVMSerializer(serializers.Serializer):
    name = serializers.CharField()
    flavor = serializers.CharField(allow_null=True)
    image = serializers.CharField(allow_null=True)
    data_interfaces_count = serializers.IntegerField()
    internet_enabled = serializers.BooleanField()


class ChangedVMSerializer(serializers.Serializer):
    name = serializers.CharField()
    changes = serializers.DictField(
        child=serializers.ListField(child=serializers.JSONField(), min_length=2, max_length=2),
        help_text="field -> [old, new]",
    )


class VMDiffSerializer(serializers.Serializer):
    added = AddedVMSerializer(many=True)
    removed = serializers.ListField(child=serializers.CharField())
    changed = ChangedVMSerializer(many=True)


class LinkDiffSerializer(serializers.Serializer):
    added = serializers.ListField(child=serializers.ListField(child=serializers.CharField()))
    removed = serializers.ListField(child=serializers.ListField(child=serializers.CharField()))


class SliceDiffSerializer(serializers.Serializer):
    vms = VMDiffSerializer()
    links = LinkDiffSerializer()
    description = serializers.ListField(child=serializers.CharField(), allow_null=True, help_text="[old, new]")


class ApplyResultSerializer(ImportReportMixin):
    """What applying a document did (or, with ``dry_run``, would do)."""

    slice = SliceRefSerializer(allow_null=True, help_text="null: a dry run for a slice that does not exist yet.")
    created = serializers.BooleanField()
    changed = serializers.BooleanField()
    dry_run = serializers.BooleanField()
    redeploy_needed = serializers.BooleanField(help_text="The slice is deployed and its design changed.")
    summary = serializers.CharField(help_text="unchanged, created: ..., or changed: ...")
    diff = SliceDiffSerializer()
    lines = serializers.ListField(child=serializers.CharField(), help_text="The diff as +/-/~ lines.")


class StatusInterfaceSerializer(serializers.Serializer):
    name = serializers.CharField()
    vlan = serializers.IntegerField()
    ip = serializers.IPAddressField(allow_null=True, help_text="The address reserved for it.")
    lease = serializers.IPAddressField(allow_null=True, help_text="What DHCP leased, once seen.")


class StatusVMSerializer(serializers.Serializer):
    name = serializers.CharField()
    host = serializers.CharField(allow_null=True)
    status = serializers.CharField()
    interfaces = StatusInterfaceSerializer(many=True, help_text="Interfaces on a VLAN only.")


class SliceStatusSerializer(serializers.Serializer):
    """A slice's compact status, cheap to poll (two queries whatever the size)."""

    id = serializers.IntegerField()
    name = serializers.CharField()
    status = serializers.CharField()
    vms = StatusVMSerializer(many=True)


class ExtendSerializer(serializers.Serializer):
    """POST /api/slices/{id}/extend/: the slice's new lifetime, from now."""

    hours = serializers.IntegerField(
        min_value=1, help_text="The slice expires this many hours from now (at most your maximum lifetime)."
    )
