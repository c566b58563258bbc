"""Drift checks with recorded host outputs (no SSH): health recorded, shown in the API and the admin,
isolation put back by the check, repair requests, the periodic job on RQ's cron."""

from __future__ import annotations

import io
import json

import pytest

from provisioning import drift, queue
from provisioning.models import Deployment, Drift, HostHealth, SliceHealth
from provisioning.plans import SliceSpec
from provisioning.plans import drift as plan_drift
from slices.models import VM
from tests.provisioning.drift_outputs import RecordedRunner, deployed_pair, healthy, outputs


@pytest.fixture(autouse=True)
def no_queue(monkeypatch):
    calls = []
    monkeypatch.setattr("provisioning.services.enqueue", calls.append)
    monkeypatch.setattr("provisioning.drift.enqueue", calls.append)
    return calls


@pytest.fixture
def deployed(inventory, user, make_slice, django_capture_on_commit_callbacks):
    """An active slice: vm1 (worker1, internet) linked to vm2 (worker2); its deploy succeeded."""
    return deployed_pair(inventory, user, make_slice)


def test_an_in_sync_slice_costs_one_round_trip_and_one_command_per_host(api, deployed):
    s, spec = deployed
    runner = RecordedRunner(outputs(spec))
    reports = drift.check_hosts(runner=runner)
    assert [(r.host, r.differences, r.orphans, r.repaired) for r in reports] == [
        (h, [], [], []) for h in ("netnode", "worker1", "worker2")
    ]
    assert {h: (st.round_trips, st.commands) for h, st in runner.stats.items()} == {
        h: (1, 1) for h in ("netnode", "worker1", "worker2")
    }
    body = api.get(f"/api/slices/{s.pk}/").json()
    assert body["health"]["state"] == "in_sync" and body["health"]["differences"] == []
    w1 = HostHealth.objects.get(host__name="worker1")
    assert (w1.reachable, w1.ovs_version, w1.qemu_version, w1.dnsmasq_version) == (True, "3.1.0", "7.2.15", "2.90")
    assert (w1.cpus, w1.free_vcpus, w1.free_ram_mib) == (2, 1, 2745)


def test_a_dead_qemu_shows_stopped_unexpectedly_until_it_runs_again(api, deployed):
    s, spec = deployed
    vm1 = VM.objects.get(slice=s, name="vm1")
    drift.check_hosts(runner=RecordedRunner(outputs(spec, worker1=("qemu-system",))))
    body = api.get(f"/api/slices/{s.pk}/").json()
    assert body["health"]["state"] == "drifted"
    [diff] = body["health"]["differences"]
    assert (diff["host"], diff["kind"], diff["object"], diff["vm"]) == ("worker1", "qemu", "vm1", vm1.pk)
    assert diff["first_seen"] and "stopped unexpectedly" in diff["found"]
    vms = {v["name"]: v["status"] for v in body["vms"]}
    assert vms == {"vm1": "lost", "vm2": "running"}
    first = Drift.objects.get(slice=s, resolved_at__isnull=True).first_seen
    drift.check_hosts(runner=RecordedRunner(outputs(spec, worker1=("qemu-system",))))
    assert Drift.objects.get(slice=s, resolved_at__isnull=True).first_seen == first  # "since when" stays
    drift.check_hosts(runner=RecordedRunner(outputs(spec)))
    body = api.get(f"/api/slices/{s.pk}/").json()
    assert body["health"]["state"] == "in_sync" and {v["status"] for v in body["vms"]} == {"running"}
    assert Drift.objects.get(slice=s).resolution == "gone"


def test_lost_guard_flows_are_put_back_by_the_check_and_recorded(api, deployed):
    s, spec = deployed
    runner = RecordedRunner(outputs(spec, worker1=("cookie=",)))
    [report] = drift.check_hosts(names=["worker1"], runner=runner)
    vm1 = spec.vms[0]
    guarded = [n for n in vm1.nics if n.vlan == 400 or (spec.link_guard and n.vlan)]
    assert guarded[0].vlan == 400
    assert [(d.kind, d.isolation) for d in report.repaired] == [("guard", True)] * len(guarded)
    assert report.differences == []
    [_, repair] = runner.sent["worker1"]
    assert repair == [plan_drift.guard_command(spec, vm1, nic) for nic in guarded]  # the plan's own commands
    health = api.get(f"/api/slices/{s.pk}/").json()["health"]
    assert health["state"] == "in_sync" and health["repaired"][0]["resolution"] == "repaired by the check"


def test_a_missing_isolation_rule_is_put_back_a_missing_nat_rule_waits_for_repair(deployed):
    s, spec = deployed
    checks = plan_drift.netnode_checks([spec])
    nat = next(i for i, c in enumerate(checks) if "MASQUERADE" in c.check)
    drop = next(i for i, c in enumerate(checks) if "DROP" in c.check)
    out = outputs(spec)
    out["netnode"] = healthy([spec], "netnode", network=True, rcs={nat: 1, drop: 1})
    runner = RecordedRunner(out)
    [report] = drift.check_hosts(names=["netnode"], runner=runner)
    assert [d.kind for d in report.repaired] == ["iptables"] and [d.kind for d in report.differences] == ["iptables"]
    assert "MASQUERADE" not in str(runner.sent["netnode"][1]) and "DROP" in str(runner.sent["netnode"][1])
    assert SliceHealth.objects.get(slice=s).state == "drifted"


def test_an_unreachable_host_says_so_and_keeps_what_was_known(api, deployed):
    s, spec = deployed
    drift.check_hosts(runner=RecordedRunner({**outputs(spec), "worker2": None}))
    health = api.get(f"/api/slices/{s.pk}/").json()["health"]
    assert health["state"] == "unreachable"
    assert [(d["kind"], d["object"]) for d in health["differences"]] == [("host-unreachable", "worker2")]
    assert not HostHealth.objects.get(host__name="worker2").reachable
    drift.check_hosts(runner=RecordedRunner(outputs(spec)))
    assert api.get(f"/api/slices/{s.pk}/").json()["health"]["state"] == "in_sync"


def test_orphans_are_reported_per_host(deployed):
    s, spec = deployed
    out = outputs(spec)
    out["worker2"] += ""
    out["worker2"] = out["worker2"].replace("@@OBS ports", "77: tap_999_eth1: <BROADCAST> mtu 1500\n@@OBS ports")
    reports = {r.host: r for r in drift.check_hosts(runner=RecordedRunner(out))}
    assert [(o.kind, o.object) for o in reports["worker2"].orphans] == [("orphan-tap", "tap_999_eth1")]
    assert HostHealth.objects.get(host__name="worker2").orphans[0]["object"] == "tap_999_eth1"
    assert SliceHealth.objects.get(slice=s).state == "in_sync"


def test_check_and_repair_requests(api, deployed, other_user, no_queue, monkeypatch):
    s, spec = deployed
    queued = []
    monkeypatch.setattr("provisioning.drift.enqueue_checks", lambda names: queued.extend(names) or list(names))
    r = api.post(f"/api/slices/{s.pk}/check/")
    assert r.status_code == 202 and sorted(queued) == ["netnode", "worker1", "worker2"]
    assert r.data["health"]["state"] == "unknown"
    tap = spec.vms[1].nics[1].tap
    drift.check_hosts(runner=RecordedRunner(outputs(spec, worker2=(f"{tap}:",))))
    assert list(Drift.objects.filter(slice=s).values_list("kind", "found")) == [("tap", "missing")]
    r = api.post(f"/api/slices/{s.pk}/repair/")
    assert r.status_code == 202, r.data
    assert r.data["kind"] == "repair" and r.data["status"] == "queued"
    dep = Deployment.objects.get(pk=r.data["id"])
    assert dep.renew_vms == [spec.vms[1].id] and SliceSpec.from_dict(dep.spec) == spec
    assert api.post(f"/api/slices/{s.pk}/repair/").status_code == 409  # a job is queued
    from rest_framework.test import APIClient

    other = APIClient()
    other.force_authenticate(other_user)
    assert other.post(f"/api/slices/{s.pk}/check/").status_code == 404
    assert other.post(f"/api/slices/{s.pk}/repair/").status_code == 404


def test_a_draft_slice_is_neither_checked_nor_repaired(api, inventory, user, make_slice):
    s = make_slice(user, vms=1)
    assert api.post(f"/api/slices/{s.pk}/check/").status_code == 409
    assert api.post(f"/api/slices/{s.pk}/repair/").status_code == 409
    assert api.get(f"/api/slices/{s.pk}/").json()["health"]["state"] == "unknown"


def test_the_drift_check_is_scheduled_on_rqs_own_cron(settings):
    from rq.cron import CronScheduler

    scheduler = CronScheduler(connection=queue.provisioning_queue().connection)
    scheduler.load_config_from_file("provisioning.cron")
    jobs = {job.func_name: job for job in scheduler.get_jobs()}
    job = jobs["provisioning.jobs.check_all_hosts"]
    assert job.interval == settings.PROVISIONING_CHECK_INTERVAL == 60 and job.queue_name == queue.queue_name()


def test_admin_shows_host_and_slice_health(client, staff_user, deployed):
    s, spec = deployed
    staff_user.is_superuser = True
    staff_user.save()
    client.force_login(staff_user)
    drift.check_hosts(runner=RecordedRunner(outputs(spec, worker1=("qemu-system",))))
    page = client.get("/admin/provisioning/hosthealth/")
    assert page.status_code == 200 and b"3.1.0" in page.content
    page = client.get(f"/admin/slices/slice/{s.pk}/change/")
    assert page.status_code == 200 and b"stopped unexpectedly" in page.content
    assert client.get("/admin/provisioning/slicehealth/").status_code == 200
    assert client.get("/admin/provisioning/drift/").status_code == 200


def test_manage_hosts_check_prints_drift_and_orphans_and_fails_on_drift(deployed, monkeypatch):
    from django.core.management import CommandError, call_command

    s, spec = deployed
    out = outputs(spec, worker1=("qemu-system",))
    out["worker2"] = out["worker2"].replace("@@OBS ports", "77: tap_999_eth1: <BROADCAST> mtu 1500\n@@OBS ports")
    monkeypatch.setattr("provisioning.executor.make_runner", lambda **_: RecordedRunner(out))
    buffer = io.StringIO()
    with pytest.raises(CommandError, match="worker1: unreachable or drifted"):
        call_command("hosts", "check", stdout=buffer)
    text = buffer.getvalue()
    assert "worker1: reachable (1 round trip(s))" in text and "qemu vm1" in text
    assert "orphan orphan-tap tap_999_eth1" in text and f"slice {s.name}: Drifted" in text
    monkeypatch.setattr("provisioning.executor.make_runner", lambda **_: RecordedRunner(outputs(spec)))
    buffer = io.StringIO()
    call_command("hosts", "check", "worker1", "--json", stdout=buffer)
    assert json.loads(buffer.getvalue())[0]["differences"] == []
