"""Named API tokens: create, revoke, and the authentication that accepts them (and stamps their use).

DRF's own tokens (``rest_framework.authtoken``: one per user, made by an operator
in the admin or with ``manage.py drf_create_token``) are still accepted; a key
that is neither is refused with 401 — so a revoked token is refused at once.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Q
from django.utils import timezone
from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed

from audit.log import record as audit
from audit.models import AuditEvent

from .errors import InvalidRequest
from .models import ApiToken

LAST_USED_RESOLUTION = timedelta(minutes=1)  # one write a minute per token at most, not one per request
TOKEN_NAME_MAX = 64


def token_create(*, user: AbstractBaseUser, name: str) -> ApiToken:
    """A new token for ``user``, named (where it is used: "slicectl on laptop")."""
    name = (name or "").strip()
    if not name or len(name) > TOKEN_NAME_MAX or any(ord(c) < 32 for c in name):
        raise InvalidRequest(f"A token name is 1 to {TOKEN_NAME_MAX} printable characters.", field="name")
    token = ApiToken.objects.create(user=user, name=name, key=secrets.token_hex(20))
    audit(AuditEvent.Action.TOKEN, user=user, target=f"token {name} ({token.prefix}…)", detail="created")
    return token


def token_revoke(*, token: ApiToken, user: AbstractBaseUser | None = None) -> None:
    """Delete the token: every request with it gets 401 from now on."""
    audit(AuditEvent.Action.TOKEN, user=user, target=f"token {token.name} ({token.prefix}…)", detail="revoked")
    ApiToken.objects.filter(pk=token.pk).delete()


class ApiTokenAuthentication(TokenAuthentication):
    """``Authorization: Token <key>``: a named token (its use stamped), else DRF's token of the user."""

    def authenticate_credentials(self, key: str):
        token = ApiToken.objects.select_related("user").filter(key=key).first()
        if token is None:
            return super().authenticate_credentials(key)
        if not token.user.is_active:
            raise AuthenticationFailed("User inactive or deleted.")
        now = timezone.now()
        stale = Q(last_used__isnull=True) | Q(last_used__lt=now - LAST_USED_RESOLUTION)
        ApiToken.objects.filter(stale, pk=token.pk).update(last_used=now)
        return token.user, token
