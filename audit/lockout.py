"""Failed-login lockout, by django-axes: too many wrong passwords for one username from one address lock it out.

Every login goes through Django's ``authenticate`` (the designer's login page, the
admin's, ``POST /api/auth/token/``), where :class:`LockoutBackend` (first of
``AUTHENTICATION_BACKENDS``) refuses a locked-out username and address; axes
counts the failures from Django's ``user_login_failed`` signal and its middleware
answers a locked-out request with 429. Settings: ``AXES_FAILURE_LIMIT`` (10),
``AXES_COOLOFF_TIME`` (``LOGIN_LOCKOUT_MINUTES``, 15), locked per username *and*
address together, so nobody can lock another user out from elsewhere.
"""

from axes.backends import AxesStandaloneBackend
from axes.signals import user_locked_out
from django.dispatch import receiver

from .log import record
from .models import AuditEvent


class LockoutBackend(AxesStandaloneBackend):
    """Axes' check, for logins that come with a request (the network-facing ones).

    ``authenticate`` without a request (a management command, a test client's
    ``login``) is not a login over the network: it passes through unchecked
    instead of failing as axes' own backend does.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


@receiver(user_locked_out, dispatch_uid="audit_locked_out")
def _locked_out(sender, request, username, ip_address, **kwargs):
    record(
        AuditEvent.Action.LOCKED_OUT,
        username=str(username or "")[:150],
        address=ip_address,
        request=getattr(request, "_request", request),
        detail="too many failed logins: locked out for a while",
    )
