"""Provisioning routes under /api/ (included before the slices router, so these win)."""

from django.urls import include, path
from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter()  # the API root (portal.urls) lists this router's resources
router.register("deployments", views.DeploymentViewSet, basename="deployment")

urlpatterns = [
    path("slices/<int:pk>/deploy/", views.SliceDeployView.as_view(), name="slice-deploy"),
    path("slices/<int:pk>/redeploy/", views.SliceRedeployView.as_view(), name="slice-redeploy"),
    path("slices/<int:pk>/destroy/", views.SliceDestroyView.as_view(), name="slice-destroy"),
    path("slices/<int:pk>/check/", views.SliceCheckView.as_view(), name="slice-check"),
    path("slices/<int:pk>/repair/", views.SliceRepairView.as_view(), name="slice-repair"),
    path("slices/<int:pk>/plan/", views.SlicePlanView.as_view(), name="slice-plan"),
    path("slices/<int:pk>/placement/", views.SlicePlacementView.as_view(), name="slice-placement"),
    path("vms/<int:pk>/power/", views.VmPowerView.as_view(), name="vm-power"),
    path("vms/<int:pk>/usage/", views.VmUsageView.as_view(), name="vm-usage"),
    path("", include(router.urls)),
]
