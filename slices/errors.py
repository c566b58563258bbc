"""Errors raised by the slice services; the API maps each to an HTTP status."""


class ServiceError(Exception):
    """Base class: a refused request with a message that names the problem.

    ``field`` names the offending input (``name``, ``vms[2].flavor``, ...);
    ``errors`` optionally carries every problem found, by field path, so a bad
    import file is reported whole rather than one error per attempt.
    """

    status_code = 400
    code = "invalid"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        code: str | None = None,
        errors: dict[str, list[str]] | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.field = field
        self.errors = errors or {}
        if code:
            self.code = code


class InvalidRequest(ServiceError):
    """The request breaks a design rule (400)."""


class Conflict(ServiceError):
    """The request conflicts with the current state, e.g. a busy slice or no free VLAN (409)."""

    status_code = 409
    code = "conflict"


class QuotaExceeded(ServiceError):
    """The user's quota does not allow it (403)."""

    status_code = 403
    code = "quota_exceeded"


class PayloadTooLarge(ServiceError):
    """An uploaded document is larger than the configured limit (413)."""

    status_code = 413
    code = "too_large"


class NotFound(ServiceError):
    """No such object for this user (404): another user's object is answered the same way."""

    status_code = 404
    code = "not_found"
