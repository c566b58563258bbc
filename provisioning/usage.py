"""Usage: each host's load and each guest's CPU and memory, sampled on the drift check's observation.

The drift check's one read-only round trip per host (:mod:`.plans.sense`) also reads the
host's load average and CPU counters and, for every QEMU it lists, the process's CPU time
and resident memory: no SSH session of its own, none per VM. :func:`record` keeps one
sample per host and per running guest, at most one every ``USAGE_MIN_INTERVAL`` seconds
per host, and turns the counters into a share of CPU time against the previous sample
(the host's busy ticks over all its ticks; a guest's ticks over the host's clock, so a
guest with 2 busy vCPUs shows 200 %). A sample after a host reboot or a QEMU restart has
no CPU share (its counters started again). Samples older than ``USAGE_WINDOW_HOURS`` are
deleted as new ones come: a series holds at most window / interval samples.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Max
from django.utils import timezone

from inventory.models import Host
from slices.models import VM

from .models import UsageSample
from .plans.sense import HostObservation

SERIES_FIELDS = ("taken_at", "cpu_percent", "mem_mib", "load1")


def window() -> timedelta:
    return timedelta(hours=settings.USAGE_WINDOW_HOURS)


def record(host: Host, obs: HostObservation, *, now: datetime | None = None) -> int:
    """Store what ``obs`` says ``host`` and its guests use; returns the number of samples written."""
    if obs.uptime is None or obs.cpu_ticks is None:
        return 0  # an older observation script, or a cut-short one: nothing to count against
    now = now or timezone.now()
    before = UsageSample.objects.filter(host=host, vm__isnull=True).order_by("-taken_at", "-id").first()
    if before is not None and (now - before.taken_at).total_seconds() < settings.USAGE_MIN_INTERVAL:
        return 0
    busy, total = obs.cpu_ticks
    host_share = None
    counted = before is not None and before.total_ticks is not None
    if counted and total > before.total_ticks and busy >= before.cpu_ticks:
        host_share = round(100 * (busy - before.cpu_ticks) / (total - before.total_ticks), 1)
    used = obs.mem_total_mib - obs.mem_available_mib if obs.mem_total_mib and obs.mem_available_mib else 0
    rows = [
        UsageSample(
            host=host,
            taken_at=now,
            uptime=obs.uptime,
            cpu_ticks=busy,
            total_ticks=total,
            cpu_percent=host_share,
            mem_mib=max(used, 0),
            load1=obs.load[0] if obs.load else None,
        )
    ]
    guests = obs.vm_usage()
    known = set(VM.objects.filter(pk__in=guests).values_list("pk", flat=True))
    last_ids = (
        UsageSample.objects.filter(vm_id__in=known, taken_at__gte=now - window())
        .values("vm_id")
        .annotate(last=Max("id"))
        .values_list("last", flat=True)
    )
    previous = {s.vm_id: s for s in UsageSample.objects.filter(pk__in=list(last_ids))}
    for vm_id in sorted(known):
        guest = guests[vm_id]
        prev = previous.get(vm_id)
        share = None
        same_process = prev is not None and prev.pid == guest.pid and guest.cpu_ticks >= prev.cpu_ticks
        if same_process and obs.uptime > prev.uptime:
            seconds = (guest.cpu_ticks - prev.cpu_ticks) / obs.clk_tck
            share = round(100 * seconds / (obs.uptime - prev.uptime), 1)
        rows.append(
            UsageSample(
                host=host,
                vm_id=vm_id,
                taken_at=now,
                uptime=obs.uptime,
                pid=guest.pid,
                cpu_ticks=guest.cpu_ticks,
                cpu_percent=share,
                mem_mib=guest.rss_mib,
            )
        )
    UsageSample.objects.bulk_create(rows)
    UsageSample.objects.filter(host=host, taken_at__lt=now - window()).delete()
    return len(rows)


def interval_seconds() -> int:
    """How often a series gets a sample while its host is checked (the check's period, at least the minimum)."""
    return max(settings.USAGE_MIN_INTERVAL, settings.PROVISIONING_CHECK_INTERVAL)


def with_gaps(series: list[dict], field: str) -> list[float | None]:
    """The ``field`` of each sample, with a None before a sample that came more than three intervals after
    the one before (the VM was down, or its host not checked): a chart breaks its line there."""
    out: list[float | None] = []
    limit = 3 * interval_seconds()
    for before, point in zip([None, *series], series, strict=False):
        if before is not None and (point["taken_at"] - before["taken_at"]).total_seconds() > limit:
            out.append(None)
        out.append(point[field])
    return out


def vm_series(vm: VM) -> list[dict]:
    """The VM's samples in the window, oldest first: taken_at, cpu_percent (% of one CPU), mem_mib."""
    since = timezone.now() - window()
    return list(UsageSample.objects.filter(vm=vm, taken_at__gte=since).values(*SERIES_FIELDS[:3]))


def host_series(host: Host) -> list[dict]:
    """The host's own samples in the window, oldest first: taken_at, cpu_percent (all CPUs), mem_mib, load1."""
    since = timezone.now() - window()
    return list(UsageSample.objects.filter(host=host, vm__isnull=True, taken_at__gte=since).values(*SERIES_FIELDS))
