"""Admin for drift (provisioning.drift): host health as last observed, slice health with its differences.

Read-only records written by the checks; the actions check hosts or repair slices through the same
functions the API and ``manage.py hosts check`` use (jobs on the queue, nothing over SSH in a request).
"""

from django.contrib import admin, messages
from django.utils.html import format_html_join

from slices.admin import SliceAdmin
from slices.errors import ServiceError

from . import drift
from .models import Drift, HostHealth, SliceHealth


class ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(HostHealth)
class HostHealthAdmin(ReadOnly):
    list_display = [
        "host",
        "reachable",
        "last_seen",
        "checked_at",
        "ovs_version",
        "qemu_version",
        "dnsmasq_version",
        "accelerator",
        "free_vcpus",
        "free_ram_mib",
        "orphan_count",
    ]
    list_filter = ["reachable"]
    list_select_related = ["host"]
    readonly_fields = [f.name for f in HostHealth._meta.fields] + ["accelerator", "orphan_list"]
    actions = ["check_now"]

    @admin.display(description="accelerator")
    def accelerator(self, obj: HostHealth) -> str:
        probed = obj.host.accel_detected or "not probed"
        return f"{obj.host.get_accel_display()} (probe: {probed}; /dev/kvm {'usable' if obj.kvm_device else 'no'})"

    @admin.display(description="orphans")
    def orphan_count(self, obj: HostHealth) -> int:
        return len(obj.orphans or [])

    @admin.display(description="orphans (named like ours, owned by no slice; never removed)")
    def orphan_list(self, obj: HostHealth):
        return format_html_join(
            "", "<div>{}: {} ({})</div>", ((o["kind"], o["object"], o["found"]) for o in obj.orphans or [])
        )

    @admin.action(description="Check the selected hosts now (one job per host)")
    def check_now(self, request, queryset):
        jobs = drift.enqueue_checks(h.host.name for h in queryset.select_related("host"))
        self.message_user(request, f"{len(jobs)} check job(s) queued.", messages.SUCCESS)


class DriftInline(admin.TabularInline):
    """The slice's open differences (what, where, since when)."""

    model = Drift
    verbose_name_plural = "drift: what differs on the hosts now"
    fk_name = "slice"
    fields = ["host", "kind", "object", "expected", "found", "isolation", "first_seen", "last_seen", "resolution"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def get_queryset(self, request):
        return super().get_queryset(request).filter(resolved_at__isnull=True)

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


# The slice's page shows its open differences (the design domain never imports provisioning).
SliceAdmin.inlines = [*SliceAdmin.inlines, DriftInline]


@admin.register(SliceHealth)
class SliceHealthAdmin(ReadOnly):
    list_display = ["slice", "state", "since", "checked_at"]
    list_filter = ["state"]
    list_select_related = ["slice"]
    readonly_fields = ["slice", "state", "since", "checked_at"]
    actions = ["check_now", "repair"]

    @admin.action(description="Check the selected slices' hosts now")
    def check_now(self, request, queryset):
        for health in queryset.select_related("slice"):
            try:
                drift.check_request(slice_obj=health.slice)
            except ServiceError as exc:
                self.message_user(request, f"{health.slice.name}: {exc}", messages.ERROR)
        self.message_user(request, "Checks queued.", messages.SUCCESS)

    @admin.action(description="Repair the selected slices (apply what is deployed again)")
    def repair(self, request, queryset):
        for health in queryset.select_related("slice"):
            try:
                drift.repair_request(slice_obj=health.slice, user=request.user)
            except ServiceError as exc:
                self.message_user(request, f"{health.slice.name}: {exc}", messages.ERROR)
            else:
                self.message_user(request, f"{health.slice.name}: repair queued.", messages.SUCCESS)


@admin.register(Drift)
class DriftAdmin(ReadOnly):
    list_display = ["slice", "host", "kind", "object", "expected", "found", "first_seen", "resolved_at", "resolution"]
    list_filter = ["kind", "host", "isolation", "resolution"]
    search_fields = ["slice__name", "object"]
    list_select_related = ["slice"]
    readonly_fields = [f.name for f in Drift._meta.fields]
