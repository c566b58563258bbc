"""The Host admin with the host doctor: a button on each host's page and an action on the list.

The doctor runs as an RQ job (never SSH inside a request): the button queues it and the
doctor page shows the run live, then its findings with their fixes. The inventory app
(below provisioning) registers the Host admin; provisioning.admin_hosts registers it extended
with this and the maintenance view.
"""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from inventory.admin import HostAdmin

from .doctor import doctor_result, enqueue_doctor

REFRESH_SECONDS = 1  # the doctor page reloads itself while the run is queued or running


class DoctorHostAdmin(HostAdmin):
    """Hosts, plus "Run the host doctor" (change page button and list action)."""

    change_form_template = "admin/inventory/host/change_form_doctor.html"
    actions = [*HostAdmin.actions, "run_doctor"]

    def get_urls(self):
        doctor = path(
            "<path:object_id>/doctor/",
            self.admin_site.admin_view(self.doctor_view),
            name="inventory_host_doctor",
        )
        return [doctor, *super().get_urls()]

    def doctor_view(self, request, object_id):
        """GET: the run given by ?job= (or a button to start one); POST: start a run."""
        host = self.get_object(request, object_id)
        if host is None:
            raise Http404("no such host")
        if not self.has_change_permission(request, host):
            raise PermissionDenied
        url = reverse("admin:inventory_host_doctor", args=[host.pk])
        if request.method == "POST":
            return HttpResponseRedirect(f"{url}?job={enqueue_doctor(host.pk)}")
        job_id = request.GET.get("job", "")
        run = doctor_result(job_id, host_id=host.pk) if job_id else None
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Host doctor: {host.name}",
            "host": host,
            "run": run,
            "report": run.report if run else None,
            "refresh": REFRESH_SECONDS if run and run.state in ("queued", "running") else None,
        }
        return TemplateResponse(request, "admin/inventory/host/doctor.html", context)

    @admin.action(description="Run the host doctor on the selected hosts")
    def run_doctor(self, request, queryset):
        for host in queryset:
            url = reverse("admin:inventory_host_doctor", args=[host.pk])
            job_id = enqueue_doctor(host.pk)
            self.message_user(
                request, format_html('{}: doctor queued, <a href="{}?job={}">its findings</a>.', host, url, job_id)
            )
        if not queryset:
            self.message_user(request, "No host selected.", messages.WARNING)
