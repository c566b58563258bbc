"""The audit log in the admin: filterable, read-only (no add, change or delete)."""

from django.contrib import admin

from .models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ["when", "username", "action", "slice_name", "host", "target", "address", "via"]
    list_filter = ["action", "via", "when"]
    search_fields = ["username", "slice_name", "host", "target", "detail", "address"]
    date_hierarchy = "when"
    readonly_fields = [f.name for f in AuditEvent._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
