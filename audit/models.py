"""The audit log: who did what to which slice or host, when, from where.

Below every other app: it keeps the ids and names it is given (a slice deleted
later leaves its rows readable), so nothing here imports slices or provisioning.
Append-only from the application's side: a row is written once and never
updated nor deleted through the ORM (``save`` of an existing row, ``delete`` and
the queryset's ``update``/``delete`` raise); only the database's owner can.
"""

from django.conf import settings
from django.db import models


class AppendOnly(Exception):
    """An attempt to change or delete an audit row from the application."""


class AuditQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AppendOnly("Audit rows are never updated.")

    def delete(self):
        raise AppendOnly("Audit rows are never deleted.")

    def visible_to(self, user) -> "AuditQuerySet":
        """Staff see everything; a user the rows about their own slices and their own account."""
        if user.is_staff:
            return self
        return self.filter(models.Q(owner=user) | models.Q(slice_id__isnull=True, user=user))


class AuditEvent(models.Model):
    """One thing someone (or the system, ``user`` empty) did, with where it came from."""

    class Action(models.TextChoices):
        LOGIN = "login", "Logged in"
        LOGIN_FAILED = "login_failed", "Login failed"
        LOCKED_OUT = "locked_out", "Locked out (too many failed logins)"
        CREATE = "create", "Created"
        EDIT = "edit", "Edited"
        DELETE = "delete", "Deleted"
        DEPLOY = "deploy", "Deploy requested"
        REDEPLOY = "redeploy", "Redeploy requested"
        DESTROY = "destroy", "Destroy requested"
        CANCEL = "cancel", "Cancel requested"
        POWER = "power", "Power action requested"
        CONSOLE_OPENED = "console_opened", "Console opened"
        CONSOLE_REFUSED = "console_refused", "Console refused"
        ADMIN_CHANGE = "admin_change", "Changed in the admin"
        HOST_DRAIN = "host_drain", "Host drained / undrained"
        TOKEN = "token", "API token created or revoked"

    when = models.DateTimeField(auto_now_add=True, db_index=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    username = models.CharField(max_length=150, blank=True, help_text="As given (also for a failed login).")
    action = models.CharField(max_length=24, choices=Action.choices, db_index=True)
    slice_id = models.PositiveBigIntegerField(null=True, blank=True, db_index=True)
    slice_name = models.CharField(max_length=64, blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The owner of the slice (who may read the row through the API).",
    )
    host = models.CharField(max_length=32, blank=True, help_text="The host acted on, if one.")
    target = models.CharField(max_length=200, blank=True, help_text="What exactly: a VM, a link, a deployment…")
    detail = models.TextField(blank=True)
    address = models.GenericIPAddressField(null=True, blank=True, help_text="The client's address.")
    via = models.CharField(max_length=16, blank=True, help_text="api, web, admin, console, job.")

    objects = AuditQuerySet.as_manager()

    class Meta:
        ordering = ["-when", "-id"]
        indexes = [models.Index(fields=["owner", "-when"], name="audit_owner_when")]

    def __str__(self) -> str:
        who = self.username or "system"
        return f"{self.when:%Y-%m-%d %H:%M:%S} {who} {self.action} {self.slice_name or self.host or self.target}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AppendOnly("Audit rows are never updated.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnly("Audit rows are never deleted.")
