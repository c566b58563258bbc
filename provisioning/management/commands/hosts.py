"""``manage.py hosts doctor NAME...``: the cluster's hosts from the command line (see docs/hosts.md)."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from inventory.models import Host
from provisioning.doctor import DoctorReport, run_doctor

MARKS = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}


class Command(BaseCommand):
    help = "The cluster's hosts: `doctor` checks over SSH what a host needs before the portal can use it."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        doctor = sub.add_parser(
            "doctor",
            help="Check what hosts need (OVS and br-int, the trunk, QEMU, KVM, dnsmasq, iptables, ...), "
            "each finding with its fix; exit 1 when anything fails.",
        )
        doctor.add_argument("names", nargs="+", metavar="NAME", help="Host name(s), as in the admin.")
        doctor.add_argument("--json", dest="as_json", action="store_true", help="Print the reports as JSON.")

    def handle(self, *args, action: str, **options):
        return getattr(self, f"do_{action}")(**options)

    def do_doctor(self, *, names: list[str], as_json: bool = False, **_):
        hosts = {h.name: h for h in Host.objects.filter(name__in=names)}
        unknown = [n for n in names if n not in hosts]
        if unknown:
            raise CommandError(f"no such host: {', '.join(unknown)} (hosts: {', '.join(all_host_names()) or 'none'})")
        reports = [run_doctor(host=hosts[name]) for name in dict.fromkeys(names)]
        if as_json:
            self.stdout.write(json.dumps([r.to_dict() for r in reports], indent=2))
        else:
            for report in reports:
                self.write_report(report)
        failed = [r.host for r in reports if r.failed]
        if failed:
            raise CommandError(f"{', '.join(failed)}: not ready (the fixes are above)")

    def write_report(self, report: DoctorReport) -> None:
        self.stdout.write(f"{report.host} ({report.role}, {report.address}): doctor in {report.seconds:.2f} s")
        width = max(len(f.check) for f in report.findings)
        for finding in report.findings:
            mark = MARKS[finding.status]
            styled = {"warn": self.style.WARNING, "fail": self.style.ERROR}.get(finding.status, str)(mark)
            self.stdout.write(f"  {styled}  {finding.check:{width}}  {finding.summary}")
            if finding.fix:
                self.stdout.write(f"        {'':{width}}  fix: {finding.fix}")
        counts = report.counts()
        self.stdout.write(f"  {counts['ok']} ok, {counts['warn']} warn, {counts['fail']} fail\n")


def all_host_names() -> list[str]:
    return list(Host.objects.order_by("name").values_list("name", flat=True))
