"""The Hosts admin as operators run the cluster: drain state, drain / undrain actions, what runs where, usage.

Inventory's own admin knows only the host's settings (inventory sits below slices
and provisioning); this one replaces it with what needs the VMs placed on hosts.
"""

from django.contrib import admin
from django.db.models import Count, Q, Sum
from django.utils.html import format_html, format_html_join

from inventory.admin import HostAdmin
from inventory.models import Host
from slices.models import Slice

from . import maintenance, usage
from .charts import line_chart
from .host_admin import DoctorHostAdmin
from .models import UsageSample


class OperatedHostAdmin(DoctorHostAdmin):
    """Hosts with their drain state and the VMs still running on them (and the host doctor)."""

    list_display = [
        "name",
        "role",
        "management_address",
        "enabled",
        "drained",
        "health_state",
        "last_seen",
        "vms_running",
        "vcpus_used",
        "ram_used",
        "accel_detected",
    ]
    actions = [*DoctorHostAdmin.actions, "drain", "undrain"]
    readonly_fields = [*HostAdmin.readonly_fields, "running_here", "usage_charts"]
    fieldsets = [
        (None, {"fields": ["name", "role", "enabled", "drained", "running_here", "usage_charts"]}),
        *HostAdmin.fieldsets[1:],
    ]

    def get_queryset(self, request):
        # What the VMs of deployed (non-draft) slices take on each host, in the list's one query.
        live = ~Q(vms__slice__status=Slice.Status.DRAFT) & Q(vms__isnull=False)
        return (
            super()
            .get_queryset(request)
            .select_related("health")
            .annotate(
                vm_count=Count("vms", filter=live),
                vcpus_in_use=Sum("vms__flavor__vcpus", filter=live),
                ram_in_use=Sum("vms__flavor__ram_mib", filter=live),
            )
        )

    @admin.display(description="Health", ordering="health__reachable")
    def health_state(self, obj: Host) -> str:
        """As the last drift check found it (provisioning.drift): reachable or why not."""
        seen = getattr(obj, "health", None)
        if seen is None or seen.checked_at is None:
            return "not checked yet"
        return "reachable" if seen.reachable else f"UNREACHABLE: {seen.error[:80]}"

    @admin.display(description="Last seen", ordering="health__last_seen")
    def last_seen(self, obj: Host):
        seen = getattr(obj, "health", None)
        return seen.last_seen if seen and seen.last_seen else "-"

    @admin.display(description="VMs", ordering="vm_count")
    def vms_running(self, obj: Host) -> int:
        return obj.vm_count

    @admin.display(description="vCPU used / total", ordering="vcpus_in_use")
    def vcpus_used(self, obj: Host) -> str:
        return f"{obj.vcpus_in_use or 0} / {obj.vcpus}" if obj.role == Host.Role.WORKER else "-"

    @admin.display(description="RAM MiB used / total", ordering="ram_in_use")
    def ram_used(self, obj: Host) -> str:
        return f"{obj.ram_in_use or 0} / {obj.ram_mib}" if obj.role == Host.Role.WORKER else "-"

    @admin.action(description="Drain the selected hosts (no new VMs; what runs there keeps running)")
    def drain(self, request, queryset):
        self._set_drained(request, queryset, drained=True)

    @admin.action(description="Undrain the selected hosts (they take new VMs again)")
    def undrain(self, request, queryset):
        self._set_drained(request, queryset, drained=False)

    def _set_drained(self, request, queryset, *, drained: bool) -> None:
        for host in queryset:
            maintenance.set_drained(host=host, drained=drained)
            self.message_user(
                request, f"{host.name} {'drained' if drained else 'undrained'}. " + maintenance.describe(host=host)
            )

    @admin.display(description="What runs here")
    def running_here(self, obj: Host):
        if obj.pk is None:
            return "-"
        rows = maintenance.residents(host=obj)
        if not rows:
            return "Nothing runs here."
        return format_html_join(
            "",
            "<div>{}/{} ({}, {}{})</div>",
            ((r.slice, r.vm, r.owner, r.status, ", pinned" if r.pinned else "") for r in rows),
        )

    @admin.display(description="Usage")
    def usage_charts(self, obj: Host):
        """The host's CPU, load and memory over the kept window, and what each guest used at the last sample."""
        if obj.pk is None:
            return "-"
        series = usage.host_series(obj)
        if not series:
            return "No sample yet: the drift check samples usage each time it observes the host."
        total = getattr(getattr(obj, "health", None), "mem_total_mib", None)
        charts = [
            line_chart("CPU (all CPUs)", usage.with_gaps(series, "cpu_percent"), top=100, unit=" %"),
            line_chart("Load (1 min)", usage.with_gaps(series, "load1")),
            line_chart("Memory in use", usage.with_gaps(series, "mem_mib"), top=total, unit=" MiB"),
        ]
        last = (
            UsageSample.objects.filter(host=obj, vm__isnull=False, taken_at=series[-1]["taken_at"])
            .select_related("vm__slice")
            .order_by("vm__slice__name", "vm__name")
        )
        guests = format_html_join(
            "",
            "<tr><td>{}/{}</td><td>{}</td><td>{} MiB</td></tr>",
            (
                (g.vm.slice.name, g.vm.name, "-" if g.cpu_percent is None else f"{g.cpu_percent:.0f} %", g.mem_mib)
                for g in last
            ),
        )
        table = (
            format_html(
                "<table><thead><tr><th>Guest</th><th>CPU (of one)</th><th>Memory</th></tr></thead>"
                "<tbody>{}</tbody></table>",
                guests,
            )
            if last
            else "No guest ran here at the last sample."
        )
        return format_html("{}{}{}<div>At the last sample ({}):</div>{}", *charts, series[-1]["taken_at"], table)


admin.site.unregister(Host)
admin.site.register(Host, OperatedHostAdmin)
