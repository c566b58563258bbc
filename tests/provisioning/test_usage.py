"""Usage sampled on the drift check's observation: host load and per-VM CPU and memory, a bounded window,
the VM's usage API (owner only) and the admin host page's charts."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from provisioning import drift, usage
from provisioning.models import UsageSample
from provisioning.plans.sense import observe_command, parse_observation
from slices.models import VM
from tests.provisioning.drift_outputs import Counters, RecordedRunner, deployed_pair, outputs


@pytest.fixture(autouse=True)
def no_queue(monkeypatch):
    monkeypatch.setattr("provisioning.services.enqueue", lambda *a: None)


@pytest.fixture
def deployed(inventory, user, make_slice, django_capture_on_commit_callbacks):
    return deployed_pair(inventory, user, make_slice)


def check(spec, counters: Counters):
    return drift.check_hosts(runner=RecordedRunner(outputs(spec, counters)))


def test_two_checks_give_the_host_and_each_guest_a_cpu_share_and_memory(api, deployed, settings):
    settings.USAGE_MIN_INTERVAL = 0
    s, spec = deployed
    vm1, vm2 = VM.objects.filter(slice=s).order_by("name")
    check(spec, Counters(uptime=1000.0, busy=5000, total=20000, vms={"vm1": (300, 25600), "vm2": (600, 51200)}))
    # 10 s later: the host was busy 500 of 2,000 ticks; vm1 used 5 s of CPU; vm2's QEMU was started again.
    later = Counters(
        uptime=1010.0, busy=5500, total=22000, vms={"vm1": (800, 25600), "vm2": (10, 51200)}, pids={"vm2": 7777}
    )
    reports = check(spec, later)
    assert [r.round_trips for r in reports] == [1, 1, 1]  # no SSH of its own

    worker1 = UsageSample.objects.filter(host__name="worker1", vm__isnull=True)
    assert [(h.cpu_percent, h.load1, h.mem_mib) for h in worker1] == [(None, 0.52, 1185), (25.0, 0.52, 1185)]
    body = api.get(f"/api/vms/{vm1.pk}/usage/").json()
    assert (body["vcpus"], body["ram_mib"], body["window_hours"]) == (1, 128, 24)
    assert [(p["cpu_percent"], p["mem_mib"]) for p in body["samples"]] == [(None, 100), (50.0, 100)]
    body = api.get(f"/api/vms/{vm2.pk}/usage/").json()
    assert [(p["cpu_percent"], p["mem_mib"]) for p in body["samples"]] == [(None, 200), (None, 200)]  # restarted


def test_a_dead_qemu_gives_no_sample_and_samples_come_at_most_once_per_interval(deployed, settings):
    s, spec = deployed
    vm1 = VM.objects.get(slice=s, name="vm1")
    settings.USAGE_MIN_INTERVAL = 3600
    check(spec, Counters())
    check(spec, Counters(uptime=1001.0))
    assert UsageSample.objects.filter(host__name="worker1").count() == 2  # the host and vm1, once
    settings.USAGE_MIN_INTERVAL = 0
    drift.check_hosts(runner=RecordedRunner(outputs(spec, Counters(uptime=1002.0), worker1=("qemu-system",))))
    assert UsageSample.objects.filter(vm=vm1).count() == 1
    assert UsageSample.objects.filter(host__name="worker1", vm__isnull=True).count() == 2


def test_samples_older_than_the_window_are_deleted(deployed, inventory, settings):
    s, spec = deployed
    worker1 = inventory["workers"][0]
    vm1 = VM.objects.get(slice=s, name="vm1")
    settings.USAGE_WINDOW_HOURS = 1
    old = timezone.now() - timedelta(hours=2)
    UsageSample.objects.create(host=worker1, taken_at=old, uptime=1.0, cpu_ticks=1, total_ticks=2, mem_mib=1)
    UsageSample.objects.create(host=worker1, vm=vm1, taken_at=old, uptime=1.0, pid=1, cpu_ticks=1, mem_mib=1)
    check(spec, Counters())
    assert not UsageSample.objects.filter(taken_at=old).exists()
    assert [p["mem_mib"] for p in usage.vm_series(vm1)] == [100]


def test_another_users_vm_usage_is_a_404_and_anonymous_is_refused(deployed, other_user):
    s, _ = deployed
    vm1 = VM.objects.get(slice=s, name="vm1")
    other = APIClient()
    other.force_authenticate(other_user)
    assert other.get(f"/api/vms/{vm1.pk}/usage/").status_code == 404
    assert APIClient().get(f"/api/vms/{vm1.pk}/usage/").status_code in (401, 403)


def test_the_admin_host_page_charts_the_hosts_usage_and_lists_its_guests(admin_client, deployed, settings):
    settings.USAGE_MIN_INTERVAL = 0
    s, spec = deployed
    check(spec, Counters(vms={"vm1": (300, 25600)}))
    check(spec, Counters(uptime=1010.0, busy=5500, total=22000, vms={"vm1": (800, 25600)}))
    host = VM.objects.get(slice=s, name="vm1").host
    page = admin_client.get(f"/admin/inventory/host/{host.pk}/change/").content.decode()
    assert "<b>CPU (all CPUs)</b>: 25 % now" in page and "<b>Load (1 min)</b>: 0.52 now" in page
    # Load and memory have two points each (a line); the CPU share, one (the first sample has none): a dot.
    assert page.count("<polyline") == 2 and page.count('r="1.5"') == 1
    assert f"<td>{s.name}/vm1</td><td>50 %</td><td>100 MiB</td>" in page


def test_the_observation_script_reads_a_real_process(tmp_path):
    """The shell side, run here: a process naming a VM's pid file is found with its CPU time and memory."""
    vm_dir = tmp_path / "vms" / "vm7"
    vm_dir.mkdir(parents=True)
    pidfile = vm_dir / "qemu.pid"
    busy = "x = [0] * 5_000_000\nwhile True: sum(range(1000))"  # ~40 MiB resident, some CPU time
    proc = subprocess.Popen([sys.executable, "-c", busy, str(pidfile)])
    try:
        pidfile.write_text(f"{proc.pid}\n")
        time.sleep(0.5)
        argv = observe_command(str(tmp_path), network=False).argv
        obs = parse_observation(subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60).stdout)
    finally:
        proc.kill()
        proc.wait()
    guest = obs.vm_usage()[7]
    assert guest.pid == proc.pid and guest.rss_mib >= 30 and guest.cpu_ticks > 0
    assert obs.clk_tck == os.sysconf("SC_CLK_TCK") and obs.page_size == os.sysconf("SC_PAGE_SIZE")
    assert obs.uptime and obs.load is not None and obs.cpu_ticks[1] > obs.cpu_ticks[0] > 0


def test_a_long_gap_between_samples_breaks_the_line(settings):
    settings.USAGE_MIN_INTERVAL, settings.PROVISIONING_CHECK_INTERVAL = 30, 60
    t = timezone.now()
    series = [{"taken_at": t + timedelta(seconds=s), "mem_mib": m} for s, m in ((0, 1), (60, 2), (300, 3), (360, 4))]
    # 240 s is more than three check intervals: the VM was down or its host unchecked in between.
    assert usage.with_gaps(series, "mem_mib") == [1, 2, None, 3, 4]
