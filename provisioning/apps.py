from django.apps import AppConfig


class ProvisioningConfig(AppConfig):
    """Turning slices into host state: inventory, placement, plans, runners, jobs."""

    name = "provisioning"
    verbose_name = "Provisioning"
