"""The inventory's tables get their own app's names (provisioning_host -> inventory_host, ...)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("inventory", "0001_initial"), ("provisioning", "0006_inventory_moved")]

    operations = [
        migrations.AlterModelTable(name="host", table=None),
        migrations.AlterModelTable(name="image", table=None),
        migrations.AlterModelTable(name="flavor", table=None),
    ]
