"""Routes of the design API under /api/ (the API root, listing every app's resources, is in portal.urls)."""

from django.urls import include, path
from rest_framework.routers import SimpleRouter

from . import keys, views
from .auth import ObtainTokenView
from .tokens import ApiTokenViewSet

router = SimpleRouter()
router.register("slices", views.SliceViewSet, basename="slice")
router.register("vms", views.VMViewSet, basename="vm")
router.register("links", views.LinkViewSet, basename="link")
router.register("interfaces", views.InterfaceViewSet, basename="interface")
router.register("me/keys", keys.SshKeyViewSet, basename="ssh-key")

tokens_router = SimpleRouter()
tokens_router.register("auth/tokens", ApiTokenViewSet, basename="api-token")

urlpatterns = [
    path("me/", views.me, name="me"),
    path("auth/token/", ObtainTokenView.as_view(), name="auth-token"),
    path("", include(tokens_router.urls)),
    path("templates/", views.TemplateListView.as_view(), name="templates"),
    path("", include(router.urls)),
]
