"""Who opens a WebSocket: the session cookie (browsers) or an API token (slicectl, scripts).

A browser sends its session cookie and an ``Origin`` header; the Origin must name
one of ``ALLOWED_HOSTS``, so another site's page cannot use the cookie. A client
such as ``slicectl console`` sends ``Authorization: Token <key>`` (DRF's token,
the one the REST API takes) and no Origin: a connection without an Origin is let
through only with that header, and then the token alone decides who the user is
(the cookie is ignored), so a missing Origin never opens a cookie session.
Whether that user may open the console (owner or staff) is the consumer's
decision, made before any SSH connection (provisioning/consumers.py).
"""

from __future__ import annotations

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from channels.security.websocket import AllowedHostsOriginValidator
from django.contrib.auth.models import AnonymousUser
from rest_framework.exceptions import AuthenticationFailed

from slices.tokens import ApiTokenAuthentication

TOKEN_KEYWORD = b"token"
INVALID_TOKEN = "Invalid token."


def token_credentials(scope: dict) -> bytes | None:
    """The value of an ``Authorization: Token ...`` handshake header (the whole value), else None."""
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            parts = value.split()
            if parts and parts[0].lower() == TOKEN_KEYWORD:
                return value
    return None


def has_origin(scope: dict) -> bool:
    return any(name == b"origin" for name, _value in scope.get("headers", []))


def user_for_token(credentials: bytes) -> tuple[object, str | None]:
    """(the token's user, None), or (AnonymousUser, why not): DRF's own checks (unknown key, inactive user)."""
    parts = credentials.split()
    if len(parts) != 2:
        return AnonymousUser(), INVALID_TOKEN
    try:
        key = parts[1].decode()
        user, _token = ApiTokenAuthentication().authenticate_credentials(key)
    except (UnicodeDecodeError, AuthenticationFailed) as exc:
        return AnonymousUser(), str(getattr(exc, "detail", INVALID_TOKEN))
    return user, None


class TokenAuthMiddleware(BaseMiddleware):
    """``Authorization: Token <key>`` decides ``scope["user"]`` when it is sent (over any cookie).

    A refused token leaves an anonymous user and ``scope["auth_error"]`` (the
    reason the consumer closes with, code 4401); ``scope["auth"]`` says which way
    the user was found: ``"token"`` or ``"session"``.
    """

    async def __call__(self, scope, receive, send):
        scope = dict(scope)
        credentials = token_credentials(scope)
        if credentials is None:
            scope["auth"] = "session"
        else:
            scope["auth"] = "token"
            scope["user"], error = await database_sync_to_async(user_for_token)(credentials)
            if error:
                scope["auth_error"] = error
        return await super().__call__(scope, receive, send)


class OriginOrTokenValidator:
    """The Origin check of browsers; a connection with no Origin at all passes only with a token header."""

    def __init__(self, application):
        self.application = application
        self.checked = AllowedHostsOriginValidator(application)

    async def __call__(self, scope, receive, send):
        if not has_origin(scope) and token_credentials(scope) is not None:
            return await self.application(scope, receive, send)
        return await self.checked(scope, receive, send)


def websocket_stack(inner):
    """The WebSocket side of portal/asgi.py: the Origin rule, the session, then the token over it."""
    return OriginOrTokenValidator(AuthMiddlewareStack(TokenAuthMiddleware(inner)))
