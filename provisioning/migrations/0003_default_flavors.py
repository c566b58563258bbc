"""Default flavors so a fresh installation can create VMs straight away."""

from django.db import migrations

FLAVORS = [
    ("tiny", 1, 128, 1, True),
    ("small", 1, 512, 5, False),
    ("medium", 2, 2048, 10, False),
    ("large", 4, 4096, 20, False),
]


def create(apps, schema_editor):
    Flavor = apps.get_model("provisioning", "Flavor")
    for name, vcpus, ram, disk, default in FLAVORS:
        Flavor.objects.get_or_create(
            name=name, defaults={"vcpus": vcpus, "ram_mib": ram, "disk_gib": disk, "is_default": default}
        )


def remove(apps, schema_editor):
    apps.get_model("provisioning", "Flavor").objects.filter(name__in=[f[0] for f in FLAVORS]).delete()


class Migration(migrations.Migration):
    dependencies = [("provisioning", "0002_initial")]
    operations = [migrations.RunPython(create, remove)]
