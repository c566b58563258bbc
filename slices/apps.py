from django.apps import AppConfig


class SlicesConfig(AppConfig):
    """The slice design domain: slices, VMs, interfaces, links, VLAN pools, IPAM."""

    name = "slices"
    verbose_name = "Slice design"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
