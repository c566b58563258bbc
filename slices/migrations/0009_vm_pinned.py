"""A VM's host is either pinned (chosen by a user or an operator) or placed (chosen at deploy).

Until now both were one field, and an automatic placement stayed on the VM after a destroy.
Existing rows: a host on a VM of a slice that was never deployed can only have been chosen
by someone, so it is a pin; any other host is taken as placed (a destroy forgets it, and a
VM back in design has it chosen again at its next deploy).
"""

from django.db import migrations, models


def mark_pins(apps, schema_editor):
    VM = apps.get_model("slices", "VM")
    Deployment = apps.get_model("provisioning", "Deployment")
    deployed = Deployment.objects.filter(kind__in=["deploy", "redeploy"], dry_run=False).values("slice_id")
    VM.objects.filter(host__isnull=False).exclude(slice_id__in=deployed).update(pinned=True)


class Migration(migrations.Migration):
    dependencies = [
        ("slices", "0008_vm_lost"),
        ("provisioning", "0008_power_actions"),
    ]

    operations = [
        migrations.AddField(
            model_name="vm",
            name="pinned",
            field=models.BooleanField(
                default=False,
                help_text="The host was chosen by a user or an operator and stays; "
                "otherwise placement chose it and a destroy forgets it.",
            ),
        ),
        migrations.RunPython(mark_pins, migrations.RunPython.noop),
    ]
