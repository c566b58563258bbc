"""Hosts, images and flavors move here from ``provisioning`` (state only: the tables stay).

The tables keep their ``provisioning_*`` names in this step; 0002 renames them.
"""

import django.core.validators
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [("provisioning", "0005_step_revision")]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.CreateModel(
                    name='Host',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('name', models.CharField(max_length=32, unique=True, validators=[django.core.validators.RegexValidator('\\A[a-z][a-z0-9-]{0,31}\\Z', "Lower-case letters, digits and '-', a letter first, at most 32.")])),
                        ('role', models.CharField(choices=[('worker', 'Compute worker'), ('network', 'Network node')], default='worker', max_length=16)),
                        ('management_address', models.GenericIPAddressField()),
                        ('ssh_port', models.PositiveIntegerField(default=22, validators=[django.core.validators.MinValueValidator(1), django.core.validators.MaxValueValidator(65535)])),
                        ('ssh_user', models.CharField(default='root', max_length=32, validators=[django.core.validators.RegexValidator('\\A[a-z_][a-z0-9_-]{0,31}\\Z')])),
                        ('ssh_key_path', models.CharField(blank=True, help_text='Private key file on the portal machine (empty: the SSH agent / defaults).', max_length=255, validators=[django.core.validators.RegexValidator('\\A(/[A-Za-z0-9._+-]+)+/?\\Z', "An absolute path of letters, digits, '.', '_', '+', '-'.")])),
                        ('vcpus', models.PositiveIntegerField(default=8, help_text='vCPUs available to guests.')),
                        ('ram_mib', models.PositiveIntegerField(default=16384, help_text='RAM (MiB) available to guests.')),
                        ('uplink', models.CharField(default='ens3', help_text='Network node only: the interface NAT (VLAN 400) goes out of.', max_length=15, validators=[django.core.validators.RegexValidator('\\A[A-Za-z0-9][A-Za-z0-9_.-]{0,14}\\Z', 'A Linux interface name: at most 15 characters.')])),
                        ('state_dir', models.CharField(default='/var/lib/slice-portal', max_length=255, validators=[django.core.validators.RegexValidator('\\A(/[A-Za-z0-9._+-]+)+/?\\Z', "An absolute path of letters, digits, '.', '_', '+', '-'.")])),
                        ('enabled', models.BooleanField(default=True)),
                        ('accel', models.CharField(choices=[('auto', 'Detect (probe KVM)'), ('kvm', 'KVM'), ('tcg', 'TCG (emulation)')], default='auto', help_text="Workers: QEMU accelerator. 'auto' probes the host once (a tiny KVM guest) and remembers.", max_length=8)),
                        ('accel_detected', models.CharField(blank=True, help_text='What the last KVM probe found.', max_length=8)),
                        ('accel_probed_at', models.DateTimeField(blank=True, null=True)),
                    ],
                    options={
                        'db_table': 'provisioning_host',
                        'ordering': ['role', 'name'],
                    },
                ),
                migrations.CreateModel(
                    name='Flavor',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('name', models.CharField(max_length=32, unique=True, validators=[django.core.validators.RegexValidator('\\A[A-Za-z0-9][A-Za-z0-9._-]{0,31}\\Z')])),
                        ('vcpus', models.PositiveIntegerField(default=1, validators=[django.core.validators.MinValueValidator(1)])),
                        ('ram_mib', models.PositiveIntegerField(default=128, validators=[django.core.validators.MinValueValidator(32)])),
                        ('disk_gib', models.PositiveIntegerField(default=1)),
                        ('is_default', models.BooleanField(default=False)),
                    ],
                    options={
                        'db_table': 'provisioning_flavor',
                        'ordering': ['vcpus', 'ram_mib', 'name'],
                        'constraints': [models.UniqueConstraint(condition=models.Q(('is_default', True)), fields=('is_default',), name='one_default_flavor')],
                    },
                ),
                migrations.CreateModel(
                    name='Image',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('name', models.CharField(max_length=64, unique=True, validators=[django.core.validators.RegexValidator('\\A[A-Za-z0-9][A-Za-z0-9._-]{0,63}\\Z')])),
                        ('kind', models.CharField(choices=[('disk', 'qcow2 disk image'), ('kernel', 'Direct kernel boot')], default='disk', max_length=8)),
                        ('disk_path', models.CharField(blank=True, help_text='qcow2 base image on every worker (disk images).', max_length=255, validators=[django.core.validators.RegexValidator('\\A(/[A-Za-z0-9._+-]+)+/?\\Z', "An absolute path of letters, digits, '.', '_', '+', '-'.")])),
                        ('kernel_path', models.CharField(blank=True, max_length=255, validators=[django.core.validators.RegexValidator('\\A(/[A-Za-z0-9._+-]+)+/?\\Z', "An absolute path of letters, digits, '.', '_', '+', '-'.")])),
                        ('initrd_path', models.CharField(blank=True, max_length=255, validators=[django.core.validators.RegexValidator('\\A(/[A-Za-z0-9._+-]+)+/?\\Z', "An absolute path of letters, digits, '.', '_', '+', '-'.")])),
                        ('kernel_args', models.CharField(blank=True, default='console=ttyS0', max_length=255, validators=[django.core.validators.RegexValidator('\\A[A-Za-z0-9._,=:/+ -]*\\Z', 'Kernel arguments: letters, digits, spaces and . _ , = : / + -')])),
                        ('is_default', models.BooleanField(default=False)),
                    ],
                    options={
                        'db_table': 'provisioning_image',
                        'ordering': ['name'],
                        'constraints': [models.UniqueConstraint(condition=models.Q(('is_default', True)), fields=('is_default',), name='one_default_image')],
                    },
                ),
    
            ],
        ),
    ]
