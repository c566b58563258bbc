"""Serializers of the inventory API."""

from rest_framework import serializers

from ..models import Flavor, Host, Image
from .fields import NamedChoiceField, StrictTypesMixin

# Staff-only host fields: where the portal's SSH key lives is nobody else's business.
HOST_PRIVATE_FIELDS = ("ssh_port", "ssh_user", "ssh_key_path", "state_dir")


class FlavorSerializer(StrictTypesMixin, serializers.ModelSerializer):
    """A flavor: the vCPUs, RAM and disk a VM gets."""

    class Meta:
        model = Flavor
        fields = ["id", "name", "vcpus", "ram_mib", "disk_gib", "is_default"]


class ImageSerializer(StrictTypesMixin, serializers.ModelSerializer):
    """A guest image VMs boot (a kernel and initrd, or a disk); ``cloud_init``: VMs get a NoCloud seed."""

    kind = NamedChoiceField(choices=Image.Kind.choices, enum_name="ImageKindEnum", required=False)

    class Meta:
        model = Image
        fields = [
            "id",
            "name",
            "kind",
            "disk_path",
            "kernel_path",
            "initrd_path",
            "kernel_args",
            "cloud_init",
            "default_user",
            "is_default",
        ]

    def validate(self, attrs):
        cloud_init = attrs.get("cloud_init", getattr(self.instance, "cloud_init", False))
        user = attrs.get("default_user", getattr(self.instance, "default_user", ""))
        if cloud_init and not user:
            raise serializers.ValidationError(
                {"default_user": ["A cloud-init image needs its default user (e.g. debian)."]}
            )
        return attrs


class HostSerializer(StrictTypesMixin, serializers.ModelSerializer):
    """A cluster host; SSH details and the state folder are shown to staff only."""

    role = NamedChoiceField(choices=Host.Role.choices, enum_name="HostRoleEnum", required=False)

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
            "accel",
            "accel_detected",
            "accel_probed_at",
        ]
        read_only_fields = ["accel_detected", "accel_probed_at"]

    def to_representation(self, instance: Host) -> dict:
        data = super().to_representation(instance)
        request = self.context.get("request")
        if not (request and request.user.is_staff):
            for key in HOST_PRIVATE_FIELDS:
                data.pop(key, None)
        return data
