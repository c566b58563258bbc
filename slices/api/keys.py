"""``/api/me/keys/``: the current user's SSH public keys (add, list, rename, remove)."""

from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from inventory.api.fields import StrictTypesMixin

from .. import sshkeys
from ..models import SshKey

_REFUSED = OpenApiResponse(description="The key is not one valid ed25519, ECDSA or RSA (>= 2048 bits) public key.")
_DUPLICATE = OpenApiResponse(description="The key or the name is already in your profile.")


class SshKeySerializer(StrictTypesMixin, serializers.ModelSerializer):
    """One SSH public key of the user: what cloud-init VMs trust, shown by its fingerprint."""

    public_key = serializers.CharField(
        max_length=sshkeys.PUBLIC_KEY_MAX_LENGTH,
        trim_whitespace=False,
        help_text="One OpenSSH public key line: ssh-ed25519, ecdsa-sha2-nistp256/384/521 or ssh-rsa (>= 2048 bits).",
    )
    name = serializers.CharField(
        max_length=sshkeys.KEY_NAME_MAX_LENGTH,
        required=False,
        allow_blank=True,
        help_text="A name for the key (default: its comment).",
    )

    class Meta:
        model = SshKey
        fields = ["id", "name", "public_key", "key_type", "comment", "fingerprint", "bits", "created"]
        read_only_fields = ["key_type", "comment", "fingerprint", "bits", "created"]


class SshKeyRenameSerializer(StrictTypesMixin, serializers.Serializer):
    """A key's new name (the key itself never changes: remove it and add another)."""

    name = serializers.CharField(max_length=sshkeys.KEY_NAME_MAX_LENGTH)


@extend_schema_view(
    create=extend_schema(responses={201: SshKeySerializer, 400: _REFUSED, 409: _DUPLICATE}),
    update=extend_schema(request=SshKeyRenameSerializer, responses={200: SshKeySerializer, 409: _DUPLICATE}),
    partial_update=extend_schema(request=SshKeyRenameSerializer, responses={200: SshKeySerializer, 409: _DUPLICATE}),
)
class SshKeyViewSet(
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Your SSH public keys. New cloud-init VMs get every key here at their first boot."""

    serializer_class = SshKeySerializer
    pagination_class = None

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return SshKey.objects.none()
        return SshKey.objects.filter(owner=self.request.user).order_by("created", "id")

    def perform_create(self, serializer):
        data = serializer.validated_data
        serializer.instance = sshkeys.key_add(
            owner=self.request.user, public_key=data["public_key"], name=data.get("name", "")
        )

    def update(self, request: Request, *args, **kwargs) -> Response:
        key = self.get_object()
        rename = SshKeyRenameSerializer(data=request.data)
        rename.is_valid(raise_exception=True)
        sshkeys.key_rename(key=key, name=rename.validated_data["name"])
        return Response(SshKeySerializer(key).data, status=status.HTTP_200_OK)

    def perform_destroy(self, instance):
        sshkeys.key_remove(key=instance)
