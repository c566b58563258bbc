"""A VM's flavor, image and host now point at the ``inventory`` app (state only: same tables, same columns)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("slices", "0002_integrity_and_strict_names"), ("inventory", "0001_initial")]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.AlterField(
                    model_name="vm",
                    name="flavor",
                    field=models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT, related_name="vms", to="inventory.flavor"
                    ),
                ),
                migrations.AlterField(
                    model_name="vm",
                    name="image",
                    field=models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT, related_name="vms", to="inventory.image"
                    ),
                ),
                migrations.AlterField(
                    model_name="vm",
                    name="host",
                    field=models.ForeignKey(
                        blank=True,
                        help_text="The worker the VM is placed on (chosen at deploy when empty).",
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="vms",
                        to="inventory.host",
                    ),
                ),
            ],
        ),
    ]
