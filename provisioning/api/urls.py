"""Provisioning routes under /api/ (slice actions and deployments)."""

urlpatterns: list = []
