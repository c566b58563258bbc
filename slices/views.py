"""Pages of the browser designer: a server-rendered shell per page.

The pages carry no business logic: every change is made by the page's
JavaScript through the REST API (session auth + CSRF token), so the browser,
automation and the admin all go through the same services.
"""

from django.conf import settings
from django.contrib.auth.mixins import LoginRequiredMixin
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.views.generic import TemplateView

from slices import lifetime, selectors
from slices.models import BUSY_STATUSES
from slices.naming import MAX_DATA_INTERFACES, vm_console_path, vm_vnc_path

from .forms import SliceCreateForm, SliceImportForm, VMForm

# How often the designer polls a running deployment (milliseconds).
POLL_INTERVAL_MS = 700


def _common_config() -> dict:
    """What every page's script needs: the API root and the slice statuses that mean "a job runs"."""
    return {"api": reverse("api-root"), "busyStatuses": [str(status) for status in BUSY_STATUSES]}


class SliceListView(LoginRequiredMixin, TemplateView):
    """ "My slices": status of each, create (empty or from a template), import, export, delete."""

    template_name = "slices/slice_list.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["create_form"] = SliceCreateForm(auto_id="create_%s")
        context["import_form"] = SliceImportForm(auto_id="import_%s")
        context["page_config"] = {**_common_config(), "designerUrl": reverse("slice-designer", args=[0])}
        return context


class SliceDesignerView(LoginRequiredMixin, TemplateView):
    """The designer of one slice: canvas, inspector, placement, plan, deploy with live progress."""

    template_name = "slices/designer.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        # Another user's slice is a 404, as in the API.
        slice_obj = get_object_or_404(selectors.slice_list(user=self.request.user), pk=kwargs["pk"])
        context["slice"] = slice_obj
        context["expiry_warning"] = lifetime.warning_due(slice_obj)
        context["lifetime_max_hours"] = lifetime.max_hours(user=slice_obj.owner)
        context["lifetime_default_hours"] = min(settings.SLICE_LIFETIME_HOURS, context["lifetime_max_hours"])
        context["vm_form"] = VMForm(auto_id="vm_%s")
        context["page_config"] = {
            **_common_config(),
            "sliceId": slice_obj.pk,
            "listUrl": reverse("slice-list"),
            "pollMs": POLL_INTERVAL_MS,
            "maxDataInterfaces": MAX_DATA_INTERFACES,
        }
        return context


class VmConsoleView(LoginRequiredMixin, TemplateView):
    """A VM's interactive serial console (xterm.js over the console WebSocket, docs/consoles.md).

    The page only draws the terminal: whether the user may open the console is decided
    again by the WebSocket when it connects.
    """

    template_name = "slices/console.html"

    def console_path(self, vm) -> str:
        return vm_console_path(vm)

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        # Another user's VM is a 404, as in the API.
        vm = get_object_or_404(
            selectors.vm_list(user=self.request.user).select_related("slice"), pk=kwargs["vm"], slice_id=kwargs["pk"]
        )
        context["vm"] = vm
        context["page_config"] = {
            **_common_config(),
            "vmId": vm.pk,
            "vmName": vm.name,
            "consolePath": self.console_path(vm),
            "designerUrl": reverse("slice-designer", args=[vm.slice_id]),
        }
        return context


class VmVncView(VmConsoleView):
    """A VM's graphical console (noVNC over the VNC WebSocket, docs/consoles.md); access as for the serial one."""

    template_name = "slices/vnc.html"

    def console_path(self, vm) -> str:
        return vm_vnc_path(vm)


class ProfileView(LoginRequiredMixin, TemplateView):
    """The user's profile: their SSH keys (the page's script calls /api/me/keys/)."""

    template_name = "slices/profile.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["page_config"] = _common_config()
        return context
