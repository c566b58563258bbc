"""Map service errors to HTTP responses with a message that names the problem."""

from django.db.models import ProtectedError
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from slices.errors import ServiceError


def exception_handler(exc, context):
    """DRF's handler, plus ServiceError -> its status and ProtectedError -> 409.

    A ServiceError body has ``detail`` (the message), ``code``, and when it
    concerns one input ``field`` plus ``{field: [message]}`` (the shape DRF's
    own validation errors have); ``errors`` lists every problem by field path
    when there were several (an import document).
    """
    if isinstance(exc, ServiceError):
        body = {"detail": exc.message, "code": exc.code}
        if exc.field:
            body["field"] = exc.field
            body.setdefault(exc.field, [exc.message])
        if exc.errors:
            body["errors"] = exc.errors
        return Response(body, status=exc.status_code)
    if isinstance(exc, ProtectedError):
        used_by = sorted({str(obj) for obj in exc.protected_objects})[:5]
        return Response(
            {"detail": f"Still in use by: {', '.join(used_by)}.", "code": "protected"},
            status=409,
        )
    return drf_exception_handler(exc, context)
