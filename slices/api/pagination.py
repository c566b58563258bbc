"""Pagination of every list of the API: ``?limit=`` and ``?offset=``, strictly parsed, with a maximum page size."""

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request

from .params import whole_number

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
# An offset is a row number; beyond this one it is nonsense (and PostgreSQL's bigint ends not far above).
MAX_OFFSET = 2**31 - 1


class PortalPagination(LimitOffsetPagination):
    """Limit/offset pages: ``limit`` 1.. (above MAX_PAGE_SIZE it is lowered to it), ``offset`` 0..MAX_OFFSET.

    DRF's own pagination silently ignores a limit it cannot read and passes a
    huge one to the database (``bigint out of range``, a 500); here nonsense is
    a 400 that says what is accepted.
    """

    default_limit = DEFAULT_PAGE_SIZE
    max_limit = MAX_PAGE_SIZE

    def get_limit(self, request: Request) -> int:
        value = whole_number(
            request,
            self.limit_query_param,
            minimum=1,
            help_text=f"A page size: a whole number from 1 (at most {MAX_PAGE_SIZE} rows are returned).",
        )
        if value is None:
            return self.default_limit
        return min(value, self.max_limit)

    def get_offset(self, request: Request) -> int:
        value = whole_number(
            request,
            self.offset_query_param,
            minimum=0,
            help_text=f"A row offset: a whole number from 0 to {MAX_OFFSET}.",
        )
        if value is not None and value > MAX_OFFSET:
            raise ValidationError({self.offset_query_param: [f"A row offset: at most {MAX_OFFSET}."]}, code="invalid")
        return value or 0

    def paginate_queryset(self, queryset, request: Request, view=None):
        # Read the offset before counting, so a bad one is refused whatever the number of rows.
        self.get_offset(request)
        return super().paginate_queryset(queryset, request, view)

    def get_schema_operation_parameters(self, view) -> list[dict]:
        return [
            {
                "name": self.limit_query_param,
                "required": False,
                "in": "query",
                "description": f"Rows per page (default {DEFAULT_PAGE_SIZE}); above {MAX_PAGE_SIZE} it is "
                f"lowered to {MAX_PAGE_SIZE}.",
                "schema": {"type": "integer", "minimum": 1},
            },
            {
                "name": self.offset_query_param,
                "required": False,
                "in": "query",
                "description": "The index of the first row returned (default 0).",
                "schema": {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET},
            },
        ]
