"""Where an action comes from: the request being served, kept for the services that record it.

The middleware puts the request in a context variable; :func:`audit.record` reads
the user and the client address from it at the moment it writes, so a service
deep below a view (or an admin form) records who and from where without being
handed the request. Jobs and the scheduler have none: their rows have no user.
"""

from __future__ import annotations

from contextvars import ContextVar

from django.http import HttpRequest

_request: ContextVar[HttpRequest | None] = ContextVar("audit_request", default=None)


def current_request() -> HttpRequest | None:
    return _request.get()


def client_address(request: HttpRequest | None) -> str | None:
    """The client's address as the server saw it (REMOTE_ADDR; a proxy in front must set it)."""
    if request is None:
        return None
    return request.META.get("REMOTE_ADDR") or None


def channel(request: HttpRequest | None) -> str:
    if request is None:
        return "job"
    path = request.path
    if path.startswith("/admin/"):
        return "admin"
    if path.startswith("/api/"):
        return "api"
    return "web"


class AuditContextMiddleware:
    """Keep the request being served where :func:`audit.record` finds it."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest):
        token = _request.set(request)
        try:
            return self.get_response(request)
        finally:
            _request.reset(token)
