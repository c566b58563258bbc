"""Operate the cluster's hosts: ``manage.py hosts SUBCOMMAND``.

Each subcommand's logic lives in its own module (here: maintenance, in
provisioning.maintenance); this command only parses and prints.
"""

from django.core.management.base import BaseCommand, CommandError

from inventory.models import Host
from provisioning import maintenance


def _host(name: str) -> Host:
    host = Host.objects.filter(name=name).first()
    if host is None:
        known = ", ".join(Host.objects.order_by("name").values_list("name", flat=True)) or "none"
        raise CommandError(f"No host named {name!r} (hosts: {known}).")
    return host


class Command(BaseCommand):
    help = "Operate the cluster's hosts (drain / undrain for maintenance)."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="subcommand", required=True)
        drain = sub.add_parser("drain", help="No new VMs on this host; what runs there keeps running.")
        drain.add_argument("name")
        undrain = sub.add_parser("undrain", help="The host takes new VMs again.")
        undrain.add_argument("name")

    def handle(self, *args, subcommand: str, **options):
        if subcommand in ("drain", "undrain"):
            self._drain(options["name"], drained=subcommand == "drain")

    def _drain(self, name: str, *, drained: bool) -> None:
        host = _host(name)
        changed = maintenance.set_drained(host=host, drained=drained)
        state = "drained: no new VMs are placed there" if drained else "takes new VMs again"
        self.stdout.write(f"{host.name} {state}{'' if changed else ' (it already did)'}.")
        self.stdout.write(maintenance.describe(host=host))
