from django.apps import AppConfig


class InventoryConfig(AppConfig):
    """The cluster's inventory: hosts, guest images and flavors (below both slices and provisioning)."""

    name = "inventory"
    verbose_name = "Inventory"
