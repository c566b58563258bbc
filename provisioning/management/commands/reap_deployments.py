"""Fail deployments whose job can no longer finish, now (the scheduler does it every minute: provisioning.cron)."""

from django.core.management.base import BaseCommand

from provisioning import reaper


class Command(BaseCommand):
    help = "Mark abandoned deployments (worker killed, job lost) failed and their slices failed."

    def handle(self, *args, **options):
        found = reaper.reap_abandoned()
        for item in found:
            self.stdout.write(f"deployment {item.deployment_id}: {item.reason}")
        self.stdout.write(f"{len(found)} abandoned deployment(s)")
