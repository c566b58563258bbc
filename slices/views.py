"""Pages of the browser designer: a server-rendered shell per page.

The pages carry no business logic: every change is made by the page's
JavaScript through the REST API (session auth + CSRF token), so the browser,
automation and the admin all go through the same services.
"""

from django.contrib.auth.mixins import LoginRequiredMixin
from django.shortcuts import get_object_or_404
from django.urls import Resolver404, resolve, reverse
from django.views.generic import TemplateView

from slices import selectors
from slices.naming import MAX_DATA_INTERFACES

from .forms import SliceCreateForm, SliceImportForm, VMForm

# How often the designer polls a running deployment (milliseconds).
POLL_INTERVAL_MS = 700

# API routes the pages use beyond the basic CRUD ones, by feature. The page
# hides or disables what this server does not offer instead of calling it.
OPTIONAL_ROUTES = {
    "templates": "/api/templates/",
    "fromTemplate": "/api/slices/from-template/",
    "import": "/api/slices/import/",
    "export": "/api/slices/0/export/",
    "plan": "/api/slices/0/plan/",
    "placement": "/api/slices/0/placement/",
    "deploy": "/api/slices/0/deploy/",
    "redeploy": "/api/slices/0/redeploy/",
    "destroy": "/api/slices/0/destroy/",
    "deployments": "/api/deployments/0/",
}


def _routable(path: str) -> bool:
    try:
        match = resolve(path)
    except Resolver404:
        return False
    # "/api/slices/import/" would otherwise match the slice detail route with pk="import".
    return match.kwargs.get("pk") in (None, "0", 0)


def available_features() -> dict[str, bool]:
    """Which optional API routes this server has (the core and the engine grow them)."""
    return {name: _routable(path) for name, path in OPTIONAL_ROUTES.items()}


class SliceListView(LoginRequiredMixin, TemplateView):
    """ "My slices": status of each, create (empty or from a template), import, export, delete."""

    template_name = "slices/slice_list.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["create_form"] = SliceCreateForm(auto_id="create_%s")
        context["import_form"] = SliceImportForm(auto_id="import_%s")
        context["page_config"] = {
            "api": reverse("api-root"),
            "designerUrl": reverse("slice-designer", args=[0]),
            "features": available_features(),
        }
        return context


class SliceDesignerView(LoginRequiredMixin, TemplateView):
    """The designer of one slice: canvas, inspector, placement, plan, deploy with live progress."""

    template_name = "slices/designer.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        # Another user's slice is a 404, as in the API.
        slice_obj = get_object_or_404(selectors.slice_list(user=self.request.user), pk=kwargs["pk"])
        context["slice"] = slice_obj
        context["vm_form"] = VMForm(auto_id="vm_%s")
        context["page_config"] = {
            "api": reverse("api-root"),
            "sliceId": slice_obj.pk,
            "listUrl": reverse("slice-list"),
            "pollMs": POLL_INTERVAL_MS,
            "maxDataInterfaces": MAX_DATA_INTERFACES,
            "features": available_features(),
        }
        return context
