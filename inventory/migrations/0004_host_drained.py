"""Hosts can be drained for maintenance (no new placements; what runs there keeps running)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("inventory", "0003_image_cloud_init_default_user")]

    operations = [
        migrations.AddField(
            model_name="host",
            name="drained",
            field=models.BooleanField(
                default=False,
                help_text="Drained for maintenance: no new VM is placed here; what runs here keeps running.",
            ),
        ),
        migrations.AlterField(
            model_name="host",
            name="enabled",
            field=models.BooleanField(
                default=True, help_text="Off: the host is out of the cluster (nothing is placed or deployed there)."
            ),
        ),
    ]
