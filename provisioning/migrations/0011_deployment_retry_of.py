"""A retried deployment names the one it retried (Deployment.retry_of)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('provisioning', '0010_drift_and_host_health'),
    ]

    operations = [
        migrations.AddField(
            model_name='deployment',
            name='retry_of',
            field=models.ForeignKey(blank=True, help_text='The failed deployment this one retried.', null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='retries', to='provisioning.deployment'),
        ),
    ]
