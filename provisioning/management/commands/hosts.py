"""``manage.py hosts check [NAME...]``: the cluster's hosts from the command line (docs/drift.md)."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from inventory.models import Host
from provisioning import drift
from provisioning.models import SliceHealth


class Command(BaseCommand):
    help = "The cluster's hosts: `check` observes them now (drift of the deployed slices, orphans, health)."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        check = sub.add_parser(
            "check",
            help="Observe hosts now (one read-only SSH round trip each), record their and their slices' health, "
            "print what differs from the plans and what nobody owns; exit 1 when anything drifted.",
        )
        check.add_argument("names", nargs="*", metavar="NAME", help="Host name(s) (default: every enabled host).")
        check.add_argument("--json", dest="as_json", action="store_true", help="Print the reports as JSON.")
        check.add_argument(
            "--no-repair", dest="repair", action="store_false", help="Do not put back missing isolation (report only)."
        )

    def handle(self, *args, action: str, **options):
        return getattr(self, f"do_{action}")(**options)

    def do_check(self, *, names: list[str], as_json: bool = False, repair: bool = True, **_):
        if names:
            known = set(Host.objects.filter(name__in=names, enabled=True).values_list("name", flat=True))
            unknown = [n for n in names if n not in known]
            if unknown:
                raise CommandError(f"no such enabled host: {', '.join(unknown)}")
        reports = drift.check_hosts(names=names or None, repair=repair)
        if as_json:
            self.stdout.write(
                json.dumps(
                    [
                        {
                            "host": r.host,
                            "reachable": r.reachable,
                            "error": r.error,
                            "round_trips": r.round_trips,
                            "differences": [d.to_dict() for d in r.differences],
                            "repaired": [d.to_dict() for d in r.repaired],
                            "orphans": [d.to_dict() for d in r.orphans],
                        }
                        for r in reports
                    ],
                    indent=2,
                )
            )
        else:
            for r in reports:
                self.write_report(r)
            for health in SliceHealth.objects.select_related("slice").order_by("slice__name"):
                self.stdout.write(f"slice {health.slice.name}: {health.get_state_display()}")
        bad = [r.host for r in reports if not r.reachable or r.differences]
        if bad:
            raise CommandError(f"{', '.join(bad)}: unreachable or drifted (see above)")

    def write_report(self, r: drift.HostReport) -> None:
        if not r.reachable:
            self.stdout.write(self.style.ERROR(f"{r.host}: UNREACHABLE: {r.error}"))
            return
        self.stdout.write(f"{r.host}: reachable ({r.round_trips} round trip(s))")
        for d in r.differences:
            self.stdout.write(
                self.style.WARNING(f"  DRIFT  slice {d.slice_id}: {d.kind} {d.object}: {d.expected} / {d.found}")
            )
        for d in r.repaired:
            self.stdout.write(f"  fixed  slice {d.slice_id}: {d.kind} {d.object} (isolation, put back by the check)")
        for d in r.orphans:
            self.stdout.write(f"  orphan {d.kind} {d.object}: {d.found} (left alone)")
