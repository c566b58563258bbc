"""Routes of the audit API under /api/."""

from django.urls import include, path
from rest_framework.routers import SimpleRouter

from .views import AuditEventViewSet

router = SimpleRouter()
router.register("audit", AuditEventViewSet, basename="audit")

urlpatterns = [path("", include(router.urls))]
