"""API tokens for scripts and ``slicectl login``: username and password in, the user's token out."""

from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import JSONParser
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from slices import tokens
from slices.errors import InvalidRequest

from .exceptions import error_body

LOCKED_OUT_MESSAGE = "Too many failed logins: this login is locked out for a while. Try again later."


class TokenRequestSerializer(serializers.Serializer):
    username = serializers.CharField()
    password = serializers.CharField(style={"input_type": "password"})
    name = serializers.CharField(
        required=False, max_length=64, help_text='Where the token is used ("slicectl on laptop"); default "API token".'
    )


class ObtainTokenView(ObtainAuthToken):
    """A new named API token of the user; send it as ``Authorization: Token ...``.

    JSON bodies only, like the rest of the API. Wrong credentials are a 400 with
    the API's error body; too many of them a 429 (audit.lockout). Every call makes
    a new token: list them and revoke those no longer used at /api/auth/tokens/.
    """

    parser_classes = [JSONParser]
    renderer_classes = [JSONRenderer]

    @extend_schema(
        summary="Get an API token",
        request=TokenRequestSerializer,
        responses={
            200: inline_serializer(
                "Token",
                {
                    "token": serializers.CharField(),
                    "username": serializers.CharField(),
                    "name": serializers.CharField(),
                    "id": serializers.IntegerField(),
                },
            ),
            400: OpenApiResponse(description="Wrong username or password."),
            429: OpenApiResponse(description="Too many failed logins: locked out for a while."),
        },
        auth=[],
        tags=["auth"],
    )
    def post(self, request: Request, *args, **kwargs) -> Response:
        serializer = self.get_serializer(data=request.data)
        try:
            serializer.is_valid(raise_exception=True)
        except ValidationError:
            # django-axes (audit.lockout) flags the request when this username and address are locked out.
            if getattr(request, "axes_locked_out", False) or getattr(request._request, "axes_locked_out", False):
                return Response(error_body(LOCKED_OUT_MESSAGE, "locked_out"), status=status.HTTP_429_TOO_MANY_REQUESTS)
            raise
        name = request.data.get("name", "API token")
        if not isinstance(name, str):
            raise InvalidRequest("A token name is a string.", field="name")
        token = tokens.token_create(user=serializer.validated_data["user"], name=name)
        user = token.user
        return Response({"token": token.key, "username": user.get_username(), "name": token.name, "id": token.pk})
