"""Root URLs: the designer UI, the admin, the REST API and its schema, the RQ dashboard."""

from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

urlpatterns = [
    # Pages without our <link rel="icon"> (the admin, the API docs): browsers still ask for /favicon.ico.
    path("favicon.ico", RedirectView.as_view(url=static("img/logo.svg"), permanent=True)),
    path("admin/rq/", include("django_rq.urls")),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/", include("provisioning.api.urls")),
    path("api/", include("inventory.api.urls")),
    path("api/", include("slices.api.urls")),
    path("", include("slices.urls")),
]
