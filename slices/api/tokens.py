"""GET/POST /api/auth/tokens/, DELETE /api/auth/tokens/{id}/: the caller's named API tokens."""

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from inventory.api.fields import StrictTypesMixin
from slices import tokens
from slices.models import ApiToken


class ApiTokenSerializer(StrictTypesMixin, serializers.ModelSerializer):
    prefix = serializers.CharField(read_only=True, help_text="The key's first characters (the key is shown once).")

    class Meta:
        model = ApiToken
        fields = ["id", "name", "prefix", "created", "last_used"]
        read_only_fields = ["id", "prefix", "created", "last_used"]


class NewApiTokenSerializer(ApiTokenSerializer):
    token = serializers.CharField(source="key", read_only=True, help_text="The key: shown only now.")

    class Meta(ApiTokenSerializer.Meta):
        fields = [*ApiTokenSerializer.Meta.fields, "token"]


@extend_schema_view(
    list=extend_schema(summary="Your API tokens", tags=["auth"]),
    retrieve=extend_schema(summary="One of your API tokens", tags=["auth"]),
    create=extend_schema(summary="Create a named API token", tags=["auth"], responses={201: NewApiTokenSerializer}),
    destroy=extend_schema(summary="Revoke an API token (401 for it at once)", tags=["auth"]),
)
class ApiTokenViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Your named API tokens: when each was created and last used; revoke one you no longer use."""

    serializer_class = ApiTokenSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return ApiToken.objects.none()
        return ApiToken.objects.filter(user=self.request.user)

    def create(self, request: Request, *args, **kwargs) -> Response:
        serializer = ApiTokenSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        token = tokens.token_create(user=request.user, name=serializer.validated_data["name"])
        return Response(NewApiTokenSerializer(token).data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance: ApiToken) -> None:
        tokens.token_revoke(token=instance, user=self.request.user)
