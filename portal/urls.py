"""Root URLs: the designer UI, the admin, the REST API (its root, schema and docs), the RQ dashboard."""

from django.contrib import admin
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.templatetags.static import static
from django.urls import include, path, reverse
from django.views.defaults import page_not_found
from django.views.generic import RedirectView
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response

from audit.api.urls import router as audit_router
from inventory.api.urls import router as inventory_router
from provisioning.api.urls import router as provisioning_router
from slices.api.exceptions import error_body
from slices.api.urls import router as slices_router

API_ROUTERS = (slices_router, provisioning_router, inventory_router, audit_router)


@extend_schema(
    summary="The API root",
    responses={200: {"type": "object", "additionalProperties": {"type": "string", "format": "uri"}}},
    tags=["api"],
)
@api_view(["GET"])
def api_root(request: Request) -> Response:
    """Every top-level resource of the API by name: its collections, ``templates``, ``me``, the schema and docs."""
    root = reverse("api-root")
    links = {prefix: f"{root}{prefix}/" for router in API_ROUTERS for prefix, _viewset, _basename in router.registry}
    links.update(templates=reverse("templates"), me=reverse("me"), schema=reverse("schema"), docs=reverse("api-docs"))
    return Response({name: request.build_absolute_uri(url) for name, url in sorted(links.items())})


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """A path no route matches: under /api/ the API's JSON error body, elsewhere Django's page."""
    if request.path.startswith("/api/"):
        return JsonResponse(error_body("Not found.", "not_found"), status=404)
    return page_not_found(request, exception)


handler404 = not_found

urlpatterns = [
    # Pages without our <link rel="icon"> (the admin, the API docs): browsers still ask for /favicon.ico.
    path("favicon.ico", RedirectView.as_view(url=static("img/logo.svg"), permanent=True)),
    path("admin/rq/", include("django_rq.urls")),
    path("admin/", admin.site.urls),
    path("api/", api_root, name="api-root"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/", include("provisioning.api.urls")),
    path("api/", include("inventory.api.urls")),
    path("api/", include("audit.api.urls")),
    path("api/", include("slices.api.urls")),
    path("", include("slices.urls")),
]
