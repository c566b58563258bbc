"""Write audit rows: :func:`record`, called by the services, the console consumer and the signals."""

from __future__ import annotations

import ipaddress
import logging

from django.http import HttpRequest

from .context import channel, client_address, current_request
from .models import AuditEvent

log = logging.getLogger(__name__)


def _ip(value: str | None) -> str | None:
    """An IP address, or None (a unix socket, a test client's made-up name)."""
    try:
        return str(ipaddress.ip_address(value)) if value else None
    except ValueError:
        return None


def _user_of(request: HttpRequest | None):
    user = getattr(request, "user", None) if request is not None else None
    return user if user is not None and user.is_authenticated else None


def record(
    action: str,
    *,
    slice_obj=None,
    host: str = "",
    target: str = "",
    detail: str = "",
    user=None,
    username: str = "",
    address: str | None = None,
    via: str = "",
    request: HttpRequest | None = None,
) -> AuditEvent:
    """Append one row. Who and from where default to the request being served (audit.context)."""
    request = request if request is not None else current_request()
    user = user if user is not None else _user_of(request)
    return AuditEvent.objects.create(
        action=action,
        user=user,
        username=username or (user.get_username() if user is not None else ""),
        slice_id=getattr(slice_obj, "pk", None),
        slice_name=getattr(slice_obj, "name", "")[:64] if slice_obj is not None else "",
        owner_id=getattr(slice_obj, "owner_id", None) if slice_obj is not None else (user.pk if user else None),
        host=host[:32],
        target=target[:200],
        detail=detail[:4000],
        address=_ip(address if address is not None else client_address(request)),
        via=via or channel(request),
    )
