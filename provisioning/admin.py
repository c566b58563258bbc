"""Admin for operators: deployments with their steps.

Deployments are read-only (their record is written by jobs); the actions
retry failed ones and cancel running ones through the same services the API uses.
The VM admin (slices') gets the power actions from here (start, shut down, ...),
so that the design domain never imports provisioning. The RQ dashboard
(/admin/rq/) is linked from the deployment list and from each deployment's job.
"""

from django.conf import settings
from django.contrib import admin, messages
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

from slices.admin import VMAdmin
from slices.errors import ServiceError

from . import admin_hosts, services  # noqa: F401 (admin_hosts registers the Hosts admin)
from .models import Deployment, DeploymentStep


class DeploymentStepInline(admin.TabularInline):
    model = DeploymentStep
    fields = ["seq", "host", "phase", "description", "status", "exit_code", "duration", "output_tail"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="ms")
    def duration(self, step: DeploymentStep):
        return step.duration_ms


@admin.register(Deployment)
class DeploymentAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "slice",
        "kind",
        "action",
        "vm",
        "status",
        "dry_run",
        "progress",
        "requested_by",
        "created",
        "finished",
    ]
    list_filter = ["status", "kind", "dry_run"]
    search_fields = ["slice__name", "slice__owner__username", "job_id", "error"]
    date_hierarchy = "created"
    list_select_related = ["slice", "requested_by"]
    inlines = [DeploymentStepInline]
    actions = ["retry_failed", "cancel_jobs"]
    readonly_fields = [
        "slice",
        "kind",
        "action",
        "vm",
        "status",
        "dry_run",
        "requested_by",
        "progress",
        "error",
        "rq_job",
        "worker",
        "heartbeat",
        "created",
        "started",
        "finished",
        "stats",
        "spec",
        "plan",
    ]
    exclude = ["job_id"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="RQ job")
    def rq_job(self, deployment: Deployment):
        if not deployment.job_id:
            return "-"
        try:
            url = reverse("django_rq:job_detail", kwargs={"queue_index": _queue_index(), "job_id": deployment.job_id})
        except NoReverseMatch:
            return deployment.job_id
        return format_html('<a href="{}">{}</a>', url, deployment.job_id)

    @admin.action(description="Retry the selected failed deployments")
    def retry_failed(self, request, queryset):
        for deployment in queryset.select_related("slice"):
            try:
                new = services.retry_deployment(deployment=deployment, user=request.user)
            except ServiceError as exc:
                self.message_user(request, f"Deployment {deployment.pk}: {exc.message}", messages.WARNING)
            else:
                self.message_user(request, f"Deployment {deployment.pk} retried as deployment {new.pk}.")

    @admin.action(description="Cancel the selected queued or running jobs")
    def cancel_jobs(self, request, queryset):
        for deployment in queryset:
            try:
                services.cancel_request(deployment=deployment, user=request.user)
            except ServiceError as exc:
                self.message_user(request, f"Deployment {deployment.pk}: {exc.message}", messages.WARNING)
            else:
                self.message_user(request, f"Deployment {deployment.pk}: cancel asked (it stops at a step boundary).")


def _power_action(action: str, label: str):
    """An admin action of the VM list: the power action on each selected VM (one job per VM's slice)."""

    @admin.action(description=f"{label} the selected VMs")
    def act(modeladmin, request, queryset) -> None:
        for vm in queryset.select_related("slice"):
            try:
                job = services.power_request(vm=vm, action=action, user=request.user)
            except ServiceError as exc:
                modeladmin.message_user(request, f"{vm}: {exc.message}", messages.WARNING)
            else:
                modeladmin.message_user(request, f"{vm}: {label.lower()} queued as deployment {job.pk}.")

    act.__name__ = f"power_{action}"
    return act


VMAdmin.actions = [
    *(VMAdmin.actions or []),
    *(_power_action(value, label) for value, label in Deployment.Action.choices),
]


def _queue_index() -> int:
    """The django-rq dashboard's index of the "provisioning" queue."""
    names = list(settings.RQ_QUEUES)
    return names.index("provisioning") if "provisioning" in names else 0
