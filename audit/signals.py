"""Logins, failed logins and admin changes go to the audit log (Django's own signals)."""

from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.db.models.signals import post_save
from django.dispatch import receiver

from .log import record
from .models import AuditEvent


@receiver(user_logged_in, dispatch_uid="audit_login")
def _logged_in(sender, request, user, **kwargs):
    record(AuditEvent.Action.LOGIN, user=user, request=request)


@receiver(user_login_failed, dispatch_uid="audit_login_failed")
def _login_failed(sender, credentials, request=None, **kwargs):
    record(
        AuditEvent.Action.LOGIN_FAILED,
        username=str(credentials.get("username", ""))[:150],
        request=request,
        detail="wrong username or password",
    )


@receiver(post_save, sender=LogEntry, dispatch_uid="audit_admin_change")
def _admin_change(sender, instance: LogEntry, created: bool, **kwargs):
    if not created:
        return
    verb = {ADDITION: "added", CHANGE: "changed", DELETION: "deleted"}.get(instance.action_flag, "changed")
    model = instance.content_type.model if instance.content_type_id else "object"
    record(
        AuditEvent.Action.ADMIN_CHANGE,
        user=instance.user,
        target=f"{model} {instance.object_repr}"[:200],
        detail=f"{verb}: {instance.get_change_message()}"[:4000],
        via="admin",
    )
