"""The audit log (audit.models.AuditEvent)."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='AuditEvent',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('when', models.DateTimeField(auto_now_add=True, db_index=True)),
                ('username', models.CharField(blank=True, help_text='As given (also for a failed login).', max_length=150)),
                ('action', models.CharField(choices=[('login', 'Logged in'), ('login_failed', 'Login failed'), ('locked_out', 'Locked out (too many failed logins)'), ('create', 'Created'), ('edit', 'Edited'), ('delete', 'Deleted'), ('deploy', 'Deploy requested'), ('redeploy', 'Redeploy requested'), ('destroy', 'Destroy requested'), ('cancel', 'Cancel requested'), ('power', 'Power action requested'), ('console_opened', 'Console opened'), ('console_refused', 'Console refused'), ('admin_change', 'Changed in the admin'), ('host_drain', 'Host drained / undrained'), ('token', 'API token created or revoked')], db_index=True, max_length=24)),
                ('slice_id', models.PositiveBigIntegerField(blank=True, db_index=True, null=True)),
                ('slice_name', models.CharField(blank=True, max_length=64)),
                ('host', models.CharField(blank=True, help_text='The host acted on, if one.', max_length=32)),
                ('target', models.CharField(blank=True, help_text='What exactly: a VM, a link, a deployment…', max_length=200)),
                ('detail', models.TextField(blank=True)),
                ('address', models.GenericIPAddressField(blank=True, help_text="The client's address.", null=True)),
                ('via', models.CharField(blank=True, help_text='api, web, admin, console, job.', max_length=16)),
                ('owner', models.ForeignKey(blank=True, help_text='The owner of the slice (who may read the row through the API).', null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('user', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'ordering': ['-when', '-id'],
                'indexes': [models.Index(fields=['owner', '-when'], name='audit_owner_when')],
            },
        ),
    ]
