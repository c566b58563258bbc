"""``manage.py hosts doctor|check|drain|undrain``: the cluster's hosts from the command line.

See docs/hosts.md (doctor), docs/drift.md (check) and docs/operations.md (drain). Each subcommand's
logic lives in its own module; this command only parses and prints.
"""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from inventory.models import Host
from provisioning import drift, maintenance
from provisioning.doctor import DoctorReport, run_doctor
from provisioning.models import SliceHealth

MARKS = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}


class Command(BaseCommand):
    help = (
        "The cluster's hosts: `doctor` checks over SSH what a host needs before the portal can use it; "
        "`check` observes them now (drift of the deployed slices, orphans, health); "
        "`drain`/`undrain` take a host out of placement for maintenance and back."
    )

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        doctor = sub.add_parser(
            "doctor",
            help="Check what hosts need (OVS and br-int, the trunk, QEMU, KVM, dnsmasq, iptables, ...), "
            "each finding with its fix; exit 1 when anything fails.",
        )
        doctor.add_argument("names", nargs="+", metavar="NAME", help="Host name(s), as in the admin.")
        doctor.add_argument("--json", dest="as_json", action="store_true", help="Print the reports as JSON.")
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

        drain = sub.add_parser("drain", help="No new VMs on this host; what runs there keeps running.")
        drain.add_argument("name")
        undrain = sub.add_parser("undrain", help="The host takes new VMs again.")
        undrain.add_argument("name")

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
                self.write_doctor_report(report)
        failed = [r.host for r in reports if r.failed]
        if failed:
            raise CommandError(f"{', '.join(failed)}: not ready (the fixes are above)")

    def write_doctor_report(self, report: DoctorReport) -> None:
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

    def do_check(self, *, names: list[str], as_json: bool = False, repair: bool = True, **_):
        if names:
            known = set(Host.objects.filter(name__in=names, enabled=True).values_list("name", flat=True))
            unknown = [n for n in names if n not in known]
            if unknown:
                raise CommandError(f"no such enabled host: {', '.join(unknown)}")
        reports = drift.check_hosts(names=names or None, repair=repair)
        if as_json:
            self.stdout.write(json.dumps([check_report_dict(r) for r in reports], indent=2))
        else:
            for r in reports:
                self.write_check_report(r)
            for health in SliceHealth.objects.select_related("slice").order_by("slice__name"):
                self.stdout.write(f"slice {health.slice.name}: {health.get_state_display()}")
        bad = [r.host for r in reports if not r.reachable or r.differences]
        if bad:
            raise CommandError(f"{', '.join(bad)}: unreachable or drifted (see above)")

    def do_drain(self, *, name: str, **_):
        self.set_drained(name, drained=True)

    def do_undrain(self, *, name: str, **_):
        self.set_drained(name, drained=False)

    def set_drained(self, name: str, *, drained: bool) -> None:
        host = _host(name)
        changed = maintenance.set_drained(host=host, drained=drained)
        state = "drained: no new VMs are placed there" if drained else "takes new VMs again"
        self.stdout.write(f"{host.name} {state}{'' if changed else ' (it already did)'}.")
        self.stdout.write(maintenance.describe(host=host))

    def write_check_report(self, r: drift.HostReport) -> None:
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


def _host(name: str) -> Host:
    host = Host.objects.filter(name=name).first()
    if host is None:
        raise CommandError(f"No host named {name!r} (hosts: {', '.join(all_host_names()) or 'none'}).")
    return host


def check_report_dict(r: drift.HostReport) -> dict:
    """One host's check as JSON: reachability, round trips, differences, what the check put back, orphans."""
    return {
        "host": r.host,
        "reachable": r.reachable,
        "error": r.error,
        "round_trips": r.round_trips,
        "differences": [d.to_dict() for d in r.differences],
        "repaired": [d.to_dict() for d in r.repaired],
        "orphans": [d.to_dict() for d in r.orphans],
    }


def all_host_names() -> list[str]:
    return list(Host.objects.order_by("name").values_list("name", flat=True))
