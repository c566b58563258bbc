"""Inventory routes under /api/: hosts, images, flavors."""

from django.urls import include, path
from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter()  # the API root (portal.urls) lists this router's resources
router.register("hosts", views.HostViewSet, basename="host")
router.register("images", views.ImageViewSet, basename="image")
router.register("flavors", views.FlavorViewSet, basename="flavor")

urlpatterns = [path("", include(router.urls))]
