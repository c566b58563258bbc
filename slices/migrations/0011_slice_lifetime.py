"""Slice lifetime: Slice.expires_at, UserQuota.max_lifetime_hours (slices.lifetime)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('slices', '0010_api_tokens'),
    ]

    operations = [
        migrations.AddField(
            model_name='slice',
            name='expires_at',
            field=models.DateTimeField(blank=True, db_index=True, help_text='Set at deploy (slices.lifetime): then the slice is destroyed, its design kept.', null=True),
        ),
        migrations.AddField(
            model_name='userquota',
            name='max_lifetime_hours',
            field=models.PositiveIntegerField(blank=True, help_text='Longest a deployed slice may live from now (empty: SLICE_LIFETIME_MAX_HOURS).', null=True),
        ),
    ]
