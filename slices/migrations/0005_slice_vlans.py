"""VLAN blocks become single held VLANs (issue 15: small slices no longer strand 16 VLANs each).

The data step keeps every VLAN a slice might still have on the hosts: a slice
that is not a draft keeps every VLAN of its blocks (they are given back by its
next destroy or redeploy, as before); a draft keeps only the VLANs of its
links (nothing of it is on the hosts), which frees the rest of its blocks at
once. Going back is refused while any VLAN is held: blocks cannot be rebuilt
from VLANs two slices may now share a block of.
"""

import django.core.validators
import django.db.models.deletion
from django.db import migrations, models

INTERNET_VLAN = 400


def blocks_to_vlans(apps, schema_editor):
    VlanBlock = apps.get_model("slices", "VlanBlock")
    SliceVlan = apps.get_model("slices", "SliceVlan")
    Link = apps.get_model("slices", "Link")
    held: dict[int, int] = {}
    for block in VlanBlock.objects.select_related("slice").order_by("index"):
        if block.slice.status == "draft":
            continue
        for vlan in range(block.first_vlan, block.last_vlan + 1):
            if vlan != INTERNET_VLAN:
                held[vlan] = block.slice_id
    for vlan, slice_id in Link.objects.values_list("vlan", "slice_id"):
        held[vlan] = slice_id  # a link's VLAN is always held by its slice
    SliceVlan.objects.bulk_create(
        [SliceVlan(vlan=vlan, slice_id=slice_id) for vlan, slice_id in sorted(held.items())], batch_size=1000
    )


def refuse_if_held(apps, schema_editor):
    if apps.get_model("slices", "SliceVlan").objects.exists():
        raise RuntimeError("slices 0005 cannot be unapplied while slices hold VLANs: delete their links first.")


class Migration(migrations.Migration):
    dependencies = [
        ("slices", "0004_mac_pattern_strict"),
    ]

    operations = [
        migrations.CreateModel(
            name="SliceVlan",
            fields=[
                (
                    "vlan",
                    models.PositiveSmallIntegerField(
                        primary_key=True,
                        serialize=False,
                        validators=[
                            django.core.validators.MinValueValidator(1),
                            django.core.validators.MaxValueValidator(4094),
                        ],
                    ),
                ),
                (
                    "slice",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="held_vlans", to="slices.slice"
                    ),
                ),
            ],
            options={
                "verbose_name": "slice VLAN",
                "ordering": ["vlan"],
                "constraints": [
                    models.CheckConstraint(condition=models.Q(("vlan", 400), _negated=True), name="slice_vlan_not_internet"),
                    models.CheckConstraint(
                        condition=models.Q(("vlan__gte", 1), ("vlan__lte", 4094)), name="slice_vlan_in_8021q_range"
                    ),
                ],
            },
        ),
        migrations.RunPython(blocks_to_vlans, refuse_if_held),
        migrations.DeleteModel(name="VlanBlock"),
    ]
