"""Hosts, images and flavors now belong to the ``inventory`` app (state only: no table changes here)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("provisioning", "0005_step_revision"), ("slices", "0003_inventory_moved")]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.DeleteModel(name="Host"),
                migrations.DeleteModel(name="Image"),
                migrations.DeleteModel(name="Flavor"),
            ],
        ),
    ]
