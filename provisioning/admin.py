"""Admin for operators: deployments with their steps.

Deployments are read-only (their record is written by jobs); the actions
retry failed ones and cancel running ones through the same services the API uses.
The VM admin (slices') gets the power actions from here (start, shut down, ...),
so that the design domain never imports provisioning. The RQ dashboard
(/admin/rq/) is linked from the deployment list and from each deployment's job.
"""

import json

from django.contrib import admin, messages
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html
from django_rq.settings import get_queues_map

from slices.admin import VMAdmin
from slices.errors import ServiceError

from . import admin_hosts, services  # noqa: F401 (admin_hosts registers the Hosts admin, doctor included)
from .models import ACTIVE_STATUSES, Deployment, DeploymentStep
from .queue import queue_name


class DeploymentStepInline(admin.TabularInline):
    model = DeploymentStep
    fields = ["seq", "host", "phase", "description", "step_status", "exit_code", "duration", "output_tail"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("deployment")

    @admin.display(description="ms")
    def duration(self, step: DeploymentStep):
        return step.duration_ms

    @admin.display(description="status")
    def step_status(self, step: DeploymentStep):
        """A step still "pending" on a job that has ended never ran: say so (older rows, abandoned jobs)."""
        if step.status == DeploymentStep.Status.PENDING and step.deployment.status not in ACTIVE_STATUSES:
            return DeploymentStep.Status.NOT_RUN.label
        return step.get_status_display()


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
        "error_short",
        "retry_of_link",
    ]
    list_filter = ["status", "kind", "dry_run"]
    search_fields = ["slice__name", "slice__owner__username", "job_id", "error"]
    date_hierarchy = "created"
    list_select_related = ["slice", "requested_by", "vm", "retry_of"]
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
        "retry_of_link",
        "retried_as",
        "rq_job",
        "worker",
        "heartbeat",
        "created",
        "started",
        "finished",
        "stats_pretty",
        "spec_pretty",
        "plan_pretty",
    ]
    fieldsets = [
        (None, {"fields": ["slice", "kind", "action", "vm", "status", "dry_run", "requested_by", "progress"]}),
        ("Outcome", {"fields": ["error", "retry_of_link", "retried_as"]}),
        ("Job", {"fields": ["rq_job", "worker", "heartbeat", "created", "started", "finished"]}),
        # Long JSON: indented, and the sections start collapsed.
        ("Runner counters", {"classes": ["collapse"], "fields": ["stats_pretty"]}),
        ("Spec (the slice as the job was asked to make it)", {"classes": ["collapse"], "fields": ["spec_pretty"]}),
        ("Plan (the host commands)", {"classes": ["collapse"], "fields": ["plan_pretty"]}),
    ]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="error")
    def error_short(self, deployment: Deployment) -> str:
        first = deployment.error.strip().splitlines()[0] if deployment.error.strip() else ""
        return first if len(first) <= 120 else first[:119] + "…"

    @admin.display(description="retry of")
    def retry_of_link(self, deployment: Deployment):
        return _deployment_link(deployment.retry_of)

    @admin.display(description="retried as")
    def retried_as(self, deployment: Deployment):
        retries = list(deployment.retries.order_by("id"))
        if not retries:
            return "-"
        return format_html(", ".join(["{}"] * len(retries)), *(_deployment_link(r) for r in retries))

    @admin.display(description="runner counters")
    def stats_pretty(self, deployment: Deployment):
        return _pretty_json(deployment.stats)

    @admin.display(description="spec")
    def spec_pretty(self, deployment: Deployment):
        return _pretty_json(deployment.spec)

    @admin.display(description="plan")
    def plan_pretty(self, deployment: Deployment):
        return _pretty_json(deployment.plan)

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
    """The django-rq dashboard's index of the provisioning queue (django-rq sorts the queues by name)."""
    return get_queues_map().get(queue_name(), 0)


def _deployment_link(deployment: Deployment | None):
    if deployment is None:
        return "-"
    url = reverse("admin:provisioning_deployment_change", args=[deployment.pk])
    return format_html('<a href="{}">#{} ({})</a>', url, deployment.pk, deployment.get_status_display())


def _pretty_json(value) -> str:
    if not value:
        return "-"
    return format_html('<pre class="json">{}</pre>', json.dumps(value, indent=2, sort_keys=True))


from . import admin_drift  # noqa: E402, F401 (registers the drift admin: host and slice health)
