"""One error body for the whole API: ``{"detail", "code", "errors"?}``.

- ``detail``: one sentence a person can read (the first problem, prefixed by
  its field when it concerns one, and how many more there are);
- ``code``: a machine-readable reason (``not_found``, ``invalid``,
  ``slice_busy``, ``no_capacity``, ``quota_exceeded``, ...);
- ``errors``: only when inputs were refused, every problem by field path
  (``{"name": ["..."], "vms[2].flavor": ["..."]}``).

Every 4xx of the API has this shape (DRF's own validation errors, service
errors, 401/403/404/405/415, ...); the OpenAPI schema calls it ``Error``.
"""

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db.models import ProtectedError
from django.http import Http404
from rest_framework import exceptions, serializers
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from slices.errors import ServiceError

NON_FIELD_KEYS = ("non_field_errors", "__all__")


class ErrorSerializer(serializers.Serializer):
    """The body of every refused request (schema only)."""

    detail = serializers.CharField(help_text="What went wrong, in one sentence.")
    code = serializers.CharField(help_text="Why, for programs: not_found, invalid, required, slice_busy, ...")
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Only when inputs were refused: every message by field path (vms[2].name).",
    )


def _flatten(detail, path: str, out: dict[str, list[tuple[str, str]]]) -> None:
    """Walk DRF's nested error detail into ``{field path: [(message, code)]}`` (lists get ``[i]``)."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            key = str(key)
            sub = "" if key in NON_FIELD_KEYS and not path else (f"{path}.{key}" if path else key)
            _flatten(value, sub, out)
    elif isinstance(detail, list):
        if all(not isinstance(item, (dict, list)) for item in detail):
            for item in detail:
                _flatten(item, path, out)
        else:
            for index, item in enumerate(detail):
                if item:  # DRF puts an empty {} for each valid item of a list
                    _flatten(item, f"{path}[{index}]", out)
    else:
        out.setdefault(path, []).append((str(detail), getattr(detail, "code", None) or "invalid"))


def error_body(detail: str, code: str, errors: dict[str, list[str]] | None = None) -> dict:
    """The API's error body; ``errors`` is left out when there is none."""
    body: dict = {"detail": detail, "code": code}
    if errors:
        body["errors"] = errors
    return body


def validation_error_body(detail) -> dict:
    """A DRF ValidationError's detail as the API's error body."""
    problems: dict[str, list[tuple[str, str]]] = {}
    _flatten(detail, "", problems)
    messages = [(field, message, code) for field, items in problems.items() for message, code in items]
    if not messages:
        return error_body("Invalid input.", "invalid")
    field, message, code = messages[0]
    summary = f"{field}: {message}" if field else message
    if len(messages) > 1:
        summary += f" (and {len(messages) - 1} more: see errors)"
        code = "invalid"
    errors = {field: [m for m, _ in items] for field, items in problems.items() if field}
    return error_body(summary, code, errors)


def exception_handler(exc, context):
    """DRF's handler (404, 401, 403, 405, 415, ...), ServiceError -> its status, ProtectedError -> 409, one shape."""
    if isinstance(exc, ServiceError):
        errors = {key: list(value) for key, value in exc.errors.items()}
        if exc.field and exc.field not in errors:
            errors[exc.field] = [exc.message]
        return Response(error_body(exc.message, exc.code, errors), status=exc.status_code)
    if isinstance(exc, ProtectedError):
        used_by = sorted({str(obj) for obj in exc.protected_objects})[:5]
        return Response(error_body(f"Still in use by: {', '.join(used_by)}.", "protected"), status=409)
    if isinstance(exc, Http404):  # as DRF does, but here so that the body below sees the API exception
        exc = exceptions.NotFound(*exc.args)
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(*exc.args)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        response.data = validation_error_body(exc.detail)
    elif isinstance(exc, exceptions.APIException):
        detail = exc.detail
        code = getattr(detail, "code", None) or exc.default_code
        response.data = error_body(str(detail), str(code))
    return response
