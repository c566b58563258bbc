"""Map service errors to HTTP responses with a message that names the problem."""

from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from slices.errors import ServiceError


def exception_handler(exc, context):
    """DRF's handler, plus ServiceError -> its status with ``detail``, ``code`` and ``field``."""
    if isinstance(exc, ServiceError):
        body = {"detail": exc.message, "code": exc.code}
        if exc.field:
            body["field"] = exc.field
            body[exc.field] = [exc.message]
        return Response(body, status=exc.status_code)
    return drf_exception_handler(exc, context)
