"""Serializers of the design API. Writes go through ``slices.services``."""

from django.conf import settings
from rest_framework import serializers

from provisioning.models import Flavor, Host, Image
from slices import ipam
from slices.models import VM, Interface, Link, Slice
from slices.naming import MAX_DATA_INTERFACES, NAME_HELP, is_valid_name, tap_name


def validate_name(value: str) -> str:
    if not is_valid_name(value):
        raise serializers.ValidationError(f"Invalid name {value!r}: {NAME_HELP}")
    return value


class FlavorSerializer(serializers.ModelSerializer):
    class Meta:
        model = Flavor
        fields = ["id", "name", "vcpus", "ram_mib", "disk_gib", "is_default"]


class ImageSerializer(serializers.ModelSerializer):
    class Meta:
        model = Image
        fields = ["id", "name", "kind", "disk_path", "kernel_path", "initrd_path", "kernel_args", "is_default"]


class HostSerializer(serializers.ModelSerializer):
    class Meta:
        model = Host
        fields = [
            "id",
            "name",
            "role",
            "management_address",
            "ssh_port",
            "ssh_user",
            "ssh_key_path",
            "vcpus",
            "ram_mib",
            "uplink",
            "state_dir",
            "enabled",
        ]


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

    def _net(self, obj: Interface):
        return ipam.vlan_network(obj.vlan, settings.SLICE_LINK_SUPERNET) if obj.vlan else None

    def get_subnet(self, obj: Interface) -> str | None:
        net = self._net(obj)
        return str(net.subnet) if net else None

    def get_gateway(self, obj: Interface) -> str | None:
        net = self._net(obj)
        return str(net.gateway) if net else None


class VMSerializer(serializers.ModelSerializer):
    slice = serializers.PrimaryKeyRelatedField(queryset=Slice.objects.all())
    name = serializers.CharField(max_length=64, validators=[validate_name])
    flavor = serializers.PrimaryKeyRelatedField(queryset=Flavor.objects.all(), required=False)
    image = serializers.PrimaryKeyRelatedField(queryset=Image.objects.all(), required=False)
    host = serializers.PrimaryKeyRelatedField(
        queryset=Host.objects.filter(role=Host.Role.WORKER), required=False, allow_null=True
    )
    host_name = serializers.CharField(source="host.name", read_only=True, default=None)
    data_interfaces_count = serializers.IntegerField(min_value=0, max_value=MAX_DATA_INTERFACES, default=1)
    interfaces = InterfaceSerializer(many=True, read_only=True)

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
            "status",
            "x",
            "y",
            "interfaces",
            "console_tail",
        ]
        read_only_fields = ["status", "console_tail"]

    def validate_slice(self, value: Slice) -> Slice:
        user = self.context["request"].user
        if not user.is_staff and value.owner_id != user.pk:
            raise serializers.ValidationError("No such slice.")
        if self.instance is not None and value.pk != self.instance.slice_id:
            raise serializers.ValidationError("A VM cannot move to another slice.")
        return value


class LinkEndSerializer(serializers.Serializer):
    vm = serializers.IntegerField()
    vm_name = serializers.CharField()
    interface = serializers.CharField()
    ip_address = serializers.IPAddressField(allow_null=True)


class LinkSerializer(serializers.ModelSerializer):
    """A link. Create with ``slice``, ``vm_a``, ``vm_b`` and optionally ``iface_a``/``iface_b``."""

    slice = serializers.PrimaryKeyRelatedField(queryset=Slice.objects.all())
    vm_a = serializers.PrimaryKeyRelatedField(queryset=VM.objects.all(), write_only=True)
    vm_b = serializers.PrimaryKeyRelatedField(queryset=VM.objects.all(), write_only=True)
    iface_a = serializers.CharField(write_only=True, required=False, allow_blank=True, max_length=8)
    iface_b = serializers.CharField(write_only=True, required=False, allow_blank=True, max_length=8)
    a = serializers.SerializerMethodField()
    b = serializers.SerializerMethodField()
    gateway = serializers.SerializerMethodField()

    class Meta:
        model = Link
        fields = ["id", "slice", "vm_a", "vm_b", "iface_a", "iface_b", "a", "b", "vlan", "subnet", "gateway"]
        read_only_fields = ["vlan", "subnet"]

    def _end(self, iface: Interface) -> dict:
        return {"vm": iface.vm_id, "vm_name": iface.vm.name, "interface": iface.name, "ip_address": iface.ip_address}

    def get_a(self, obj: Link) -> dict:
        return self._end(obj.a)

    def get_b(self, obj: Link) -> dict:
        return self._end(obj.b)

    def get_gateway(self, obj: Link) -> str:
        return str(ipam.vlan_network(obj.vlan, settings.SLICE_LINK_SUPERNET).gateway)

    def validate(self, attrs: dict) -> dict:
        user = self.context["request"].user
        slice_obj = attrs["slice"]
        if not user.is_staff and slice_obj.owner_id != user.pk:
            raise serializers.ValidationError({"slice": "No such slice."})
        for key in ("vm_a", "vm_b"):
            if attrs[key].slice_id != slice_obj.pk:
                raise serializers.ValidationError({key: "Both VMs of a link must belong to this slice."})
        return attrs


class SliceSerializer(serializers.ModelSerializer):
    name = serializers.CharField(max_length=64, validators=[validate_name])
    owner = serializers.CharField(source="owner.username", read_only=True)
    vm_count = serializers.IntegerField(read_only=True)
    link_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Slice
        fields = ["id", "name", "description", "owner", "status", "vm_count", "link_count", "created", "updated"]
        read_only_fields = ["status", "created", "updated"]


class SliceDetailSerializer(SliceSerializer):
    vms = VMSerializer(many=True, read_only=True)
    links = LinkSerializer(many=True, read_only=True)
    vlan_pool = serializers.SerializerMethodField()

    class Meta(SliceSerializer.Meta):
        fields = [*SliceSerializer.Meta.fields, "vms", "links", "vlan_pool"]

    def get_vlan_pool(self, obj: Slice) -> list[str]:
        return [str(block) for block in obj.vlan_blocks.all()]
