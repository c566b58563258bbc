"""Admin for operators: the hosts of the cluster, guest images and flavors."""

from django.contrib import admin

from .models import Flavor, Host, Image


@admin.register(Host)
class HostAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "role",
        "management_address",
        "ssh_port",
        "vcpus",
        "ram_mib",
        "accel",
        "accel_detected",
        "enabled",
        "drained",
    ]
    list_filter = ["role", "enabled", "drained", "accel"]
    search_fields = ["name", "management_address"]
    readonly_fields = ["accel_detected", "accel_probed_at"]
    actions = ["forget_kvm_probe"]
    fieldsets = [
        (None, {"fields": ["name", "role", "enabled", "drained"]}),
        ("SSH", {"fields": ["management_address", "ssh_port", "ssh_user", "ssh_key_path"]}),
        ("Capacity for guests", {"fields": ["vcpus", "ram_mib"]}),
        ("Host side", {"fields": ["state_dir", "uplink", "accel", "accel_detected", "accel_probed_at"]}),
    ]

    @admin.action(description="Probe KVM again at the next deploy")
    def forget_kvm_probe(self, request, queryset):
        count = queryset.update(accel_detected="", accel_probed_at=None)
        self.message_user(request, f"{count} host(s) will be probed at their next deploy.")


@admin.register(Image)
class ImageAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "disk_path", "kernel_path", "cloud_init", "default_user", "is_default"]
    list_filter = ["kind", "cloud_init", "is_default"]
    search_fields = ["name", "disk_path", "kernel_path"]


@admin.register(Flavor)
class FlavorAdmin(admin.ModelAdmin):
    list_display = ["name", "vcpus", "ram_mib", "disk_gib", "is_default"]
    list_filter = ["is_default"]
    search_fields = ["name"]
