"""Query parameters read strictly: a value that is not what the schema declares is a 400, never ignored."""

import re

from drf_spectacular.utils import OpenApiParameter
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request

# int() refuses more than 4300 digits; no query parameter of the API needs more than a few.
_DIGITS = re.compile(r"[0-9]{1,1000}")
# Database ids are PostgreSQL integers / bigints; a larger "id" matches nothing and must not reach the query.
MAX_ID = 2**63 - 1


def whole_number(request: Request, param: str, *, minimum: int = 0, help_text: str) -> int | None:
    """``?param=`` as an int >= ``minimum``; None when absent; 400 (``help_text``) when anything else (even empty)."""
    raw = request.query_params.get(param)
    if raw is None:
        return None
    if not _DIGITS.fullmatch(raw) or int(raw) < minimum:
        raise ValidationError({param: [help_text]}, code="invalid")
    return int(raw)


def id_parameter(name: str, description: str) -> OpenApiParameter:
    """Schema of an ``?name=ID`` list filter (a whole number, as :func:`filter_by_id` reads it)."""
    return OpenApiParameter(name, {"type": "integer", "minimum": 0}, description=description)


def filter_by_id(queryset, request: Request, param: str, field: str):
    """Apply ``?param=ID`` when given (an id no row has matches nothing); a non-integer is a 400."""
    value = whole_number(request, param, help_text="An id: a whole number.")
    if value is None:
        return queryset
    if value > MAX_ID:
        return queryset.none()
    return queryset.filter(**{field: value})
