"""The provisioning API: deploy/redeploy/destroy, plan and deployment views, permissions, schema."""

import subprocess
import sys

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from inventory.models import Host
from provisioning import queue, reaper
from provisioning.models import Deployment, DeploymentStep
from slices import services as slice_services
from slices.models import VM, Slice


@pytest.fixture(autouse=True)
def no_queue(monkeypatch):
    """These tests look at requests and records; the job itself is tested elsewhere."""
    calls = []
    monkeypatch.setattr("provisioning.services.enqueue", calls.append)
    return calls


def linked(make_slice, user, **kw):
    s = make_slice(user, vms=2, **kw)
    vm1, vm2 = VM.objects.filter(slice=s).order_by("name")
    slice_services.link_connect(slice_obj=s, vm_a=vm1, vm_b=vm2)
    return s


def test_deploy_returns_202_with_the_deployment(api, inventory, user, make_slice, django_capture_on_commit_callbacks):
    s = linked(make_slice, user)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        r = api.post(f"/api/slices/{s.pk}/deploy/", {}, format="json")
    assert r.status_code == 202, r.data
    assert r.data["kind"] == "deploy" and r.data["status"] == "queued" and r.data["dry_run"] is False
    assert r.data["slice"] == s.pk and r.data["steps"] == [] and r.data["requested_by"] == user.username
    assert len(callbacks) == 1
    s.refresh_from_db()
    assert s.status == "queued"


def test_second_request_is_409(api, inventory, user, make_slice):
    s = linked(make_slice, user)
    assert api.post(f"/api/slices/{s.pk}/deploy/").status_code == 202
    r = api.post(f"/api/slices/{s.pk}/deploy/")
    assert r.status_code == 409 and r.data["code"] == "slice_busy"
    assert api.post(f"/api/slices/{s.pk}/destroy/").status_code == 409


def test_wrong_state_is_409(api, inventory, user, make_slice):
    s = linked(make_slice, user)
    r = api.post(f"/api/slices/{s.pk}/redeploy/")
    assert r.status_code == 409 and "draft" in r.data["detail"]
    assert api.post(f"/api/slices/{s.pk}/destroy/").status_code == 409


def test_dry_run(api, inventory, user, make_slice):
    s = linked(make_slice, user)
    r = api.post(f"/api/slices/{s.pk}/deploy/", {"dry_run": True}, format="json")
    assert r.status_code == 202 and r.data["dry_run"] is True
    s.refresh_from_db()
    assert s.status == "draft"


def test_another_users_slice_is_404_and_staff_may_act(api, inventory, other_user, staff_user, make_slice):
    theirs = linked(make_slice, other_user)
    for action in ("deploy", "redeploy", "destroy"):
        assert api.post(f"/api/slices/{theirs.pk}/{action}/").status_code == 404
    assert api.get(f"/api/slices/{theirs.pk}/plan/").status_code == 404
    staff = APIClient()
    staff.force_authenticate(staff_user)
    assert staff.post(f"/api/slices/{theirs.pk}/deploy/").status_code == 202


def test_anonymous_is_refused(inventory, user, make_slice):
    s = linked(make_slice, user)
    assert APIClient().post(f"/api/slices/{s.pk}/deploy/").status_code in (401, 403)


def test_session_requests_need_csrf(inventory, user, make_slice):
    s = linked(make_slice, user)
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    r = client.post(f"/api/slices/{s.pk}/deploy/", {}, content_type="application/json")
    assert r.status_code == 403 and "CSRF" in r.json()["detail"]
    secret = "a" * 32  # a well-formed CSRF secret, in the cookie and the header as a browser would send them
    client.cookies["csrftoken"] = secret
    r = client.post(f"/api/slices/{s.pk}/deploy/", {}, content_type="application/json", HTTP_X_CSRFTOKEN=secret)
    assert r.status_code == 202


def test_refusals_name_the_problem(api, inventory, user, make_slice):
    empty = make_slice(user, vms=0)
    r = api.post(f"/api/slices/{empty.pk}/deploy/")
    assert r.status_code == 409 and r.data["code"] == "empty_slice"
    Host.objects.filter(role="network").delete()
    s = make_slice(user, vms=1)
    r = api.post(f"/api/slices/{s.pk}/deploy/")
    assert r.status_code == 409 and r.data["code"] == "no_netnode"


def test_plan_shows_exact_commands_per_stage_and_host(api, inventory, user, make_slice):
    s = linked(make_slice, user, internet=True)
    r = api.get(f"/api/slices/{s.pk}/plan/")
    assert r.status_code == 200, r.data
    body = r.json()
    assert body["kind"] == "deploy"
    assert [st["name"] for st in body["stages"]] == ["network", "vms"]
    network = {h["host"]: h for h in body["stages"][0]["hosts"]}
    assert network["netnode"]["phases"] == ["isolation", "vlans", "internet"]
    steps = network["netnode"]["steps"]
    nat = next(st for st in steps if "MASQUERADE" in st["argv"])
    assert nat["shell"] == "iptables -w -t nat -A POSTROUTING -s 10.60.7.0/24 -o ens3 -j MASQUERADE"
    assert nat["check_shell"] == "iptables -w -t nat -C POSTROUTING -s 10.60.7.0/24 -o ens3 -j MASQUERADE"
    assert "@@SP DRYRUN B 0" in network["netnode"]["script"]
    worker = body["stages"][1]["hosts"][0]
    assert worker["steps"][0]["argv"][0] == "qemu-system-x86_64"
    # the job's round trips: isolation, link VLANs, VLAN 400 (shared phases apart); a worker's lane in one
    assert body["stats"]["netnode"]["round_trips"] == 3 and body["stats"]["netnode"]["connections"] == 1
    assert body["stats"]["worker1"]["round_trips"] == 1
    assert {h for h in body["stats"]} == {"netnode", "worker1", "worker2"}
    assert body["steps"] == sum(len(h["steps"]) for st in body["stages"] for h in st["hosts"])
    assert VM.objects.filter(slice=s, host__isnull=True).count() == 2  # placement only previewed


def test_plan_notes_a_pending_kvm_probe(api, inventory, user, make_slice):
    Host.objects.filter(role="worker").update(accel="auto")
    s = linked(make_slice, user)
    body = api.get(f"/api/slices/{s.pk}/plan/").json()
    assert body["accel_probe_pending"] and "probed" in body["notes"][0]


def test_plan_kinds(api, inventory, user, make_slice):
    s = linked(make_slice, user)
    assert api.get(f"/api/slices/{s.pk}/plan/?kind=destroy").json()["stages"] == []
    assert api.get(f"/api/slices/{s.pk}/plan/?kind=bogus").status_code == 400


def test_deployments_list_is_per_user_and_detail_has_steps(api, inventory, user, other_user, make_slice):
    mine = linked(make_slice, user)
    theirs = linked(make_slice, other_user)
    dep = Deployment.objects.create(slice=mine, kind="deploy", status="succeeded")
    DeploymentStep.objects.create(
        deployment=dep, seq=1, host="worker1", phase="ports", description="Create TAP", command="ip tuntap add",
        status="ok", exit_code=0, output_tail="",
    )  # fmt: skip
    Deployment.objects.create(slice=theirs, kind="deploy", status="failed")
    r = api.get("/api/deployments/")
    assert r.status_code == 200
    assert [d["id"] for d in r.json()["results"]] == [dep.pk]
    detail = api.get(f"/api/deployments/{dep.pk}/").json()
    assert detail["steps"][0]["description"] == "Create TAP" and detail["steps"][0]["status"] == "ok"
    assert api.get(f"/api/deployments/{dep.pk + 1}/").status_code == 404
    assert api.get(f"/api/deployments/?slice={theirs.pk}").json()["results"] == []


def test_reading_never_reaps_the_scheduled_reaper_does(api, inventory, user, make_slice, monkeypatch):
    monkeypatch.setattr("provisioning.reaper._rq_status", lambda job_id: "failed")
    s = linked(make_slice, user)
    dep = Deployment.objects.create(slice=s, kind="deploy", status="running", job_id="deployment-x")
    Slice.objects.filter(pk=s.pk).update(status="deploying")
    assert api.get(f"/api/deployments/{dep.pk}/").json()["status"] == "running"  # a GET never writes
    assert api.get("/api/deployments/").json()["results"][0]["status"] == "running"
    assert len(reaper.reap_abandoned()) == 1  # what the cron job (jobs.reap_abandoned) runs
    body = api.get(f"/api/deployments/{dep.pk}/").json()
    assert body["status"] == "failed" and body["error"].startswith("abandoned:")
    s.refresh_from_db()
    assert s.status == "failed"


def test_the_reaper_is_scheduled_on_rqs_own_cron(settings):
    from rq.cron import CronScheduler

    scheduler = CronScheduler(connection=queue.provisioning_queue().connection)
    scheduler.load_config_from_file("provisioning.cron")
    jobs = {job.func_name: job for job in scheduler.get_jobs()}
    job = jobs["provisioning.jobs.reap_abandoned"]
    assert job.interval == settings.PROVISIONING_REAP_INTERVAL and job.queue_name == queue.queue_name()
    prune = jobs["provisioning.jobs.prune_history"]  # history retention (provisioning.retention)
    assert prune.interval == settings.PROVISIONING_PRUNE_INTERVAL and prune.queue_name == queue.queue_name()
    expire = jobs["provisioning.jobs.expire_slices"]  # slice lifetime (provisioning.expiry)
    assert expire.interval == settings.SLICE_EXPIRY_INTERVAL and expire.queue_name == queue.queue_name()


def test_schema_is_valid():
    out = subprocess.run(
        [sys.executable, "manage.py", "spectacular", "--validate", "--fail-on-warn", "--file", "/dev/null"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr


def test_admin_pages_and_retry_action(client, inventory, user, staff_user, make_slice):
    staff_user.is_superuser = True
    staff_user.save()
    client.force_login(staff_user)
    s = linked(make_slice, user)
    dep = Deployment.objects.create(slice=s, kind="deploy", status="failed", job_id="deployment-1-abc")
    Slice.objects.filter(pk=s.pk).update(status="failed")
    listing = client.get("/admin/provisioning/deployment/")
    assert listing.status_code == 200 and b"/admin/rq/" in listing.content
    page = client.get(f"/admin/provisioning/deployment/{dep.pk}/change/")
    assert page.status_code == 200 and b"deployment-1-abc" in page.content
    for model in ("host", "image", "flavor"):
        assert client.get(f"/admin/inventory/{model}/").status_code == 200
    r = client.post(
        "/admin/provisioning/deployment/", {"action": "retry_failed", "_selected_action": [dep.pk]}, follow=True
    )
    assert r.status_code == 200
    assert Deployment.objects.filter(slice=s).count() == 2
    retried = Deployment.objects.exclude(pk=dep.pk).get(slice=s)
    assert retried.status == "queued"
    # the admin cancels a queued job at once (a running one at its next step boundary)
    r = client.post(
        "/admin/provisioning/deployment/", {"action": "cancel_jobs", "_selected_action": [retried.pk]}, follow=True
    )
    assert r.status_code == 200 and b"cancel asked" in r.content
    retried.refresh_from_db()
    assert retried.status == "cancelled" and "before it started" in retried.error


def test_a_poll_gets_only_the_steps_changed_since_its_last_read(api, inventory, user, make_slice):
    """What the designer polls while a job runs: no plan, and only the rows written since the last answer."""
    s = linked(make_slice, user)
    dep = Deployment.objects.create(slice=s, kind="deploy", status="running", plan={"stages": ["big"]})
    for seq in (1, 2, 3):
        DeploymentStep.objects.create(
            deployment=dep, seq=seq, host="worker1", phase="ports", description=f"step {seq}", command="true",
            revision=1,
        )  # fmt: skip
    first = api.get(f"/api/deployments/{dep.pk}/").json()
    assert first["plan"] == {"stages": ["big"]} and len(first["steps"]) == 3 and first["steps_revision"] == 1

    DeploymentStep.objects.filter(deployment=dep, seq=2).update(status="running", revision=2)
    DeploymentStep.objects.filter(deployment=dep, seq=2).update(status="ok", exit_code=0, revision=3)
    poll = api.get(f"/api/deployments/{dep.pk}/?steps_after=1&plan=false").json()
    assert poll["plan"] is None and poll["status"] == "running"
    assert [(st["seq"], st["status"], st["revision"]) for st in poll["steps"]] == [(2, "ok", 3)]
    assert poll["steps_revision"] == 3

    idle = api.get(f"/api/deployments/{dep.pk}/?steps_after=3&plan=false").json()
    assert idle["steps"] == [] and idle["steps_revision"] == 3


def test_a_step_reads_as_drfs_own_walk_would_give_it(inventory, user, make_slice):
    """The step serializer's direct read (cheap polls) answers exactly what DRF's field-by-field walk gives."""
    from django.utils import timezone
    from rest_framework import serializers

    from provisioning.api.serializers import DeploymentStepSerializer

    dep = Deployment.objects.create(slice=linked(make_slice, user), kind="deploy", status="running")
    now = timezone.now()
    done = DeploymentStep.objects.create(
        deployment=dep, seq=1, host="worker1", phase="ports", vm=3, vlan=100, description="ok step",
        command="ip link set dev tap_3_eth1 up", status="ok", exit_code=0, output_tail="out\n", started=now,
        finished=now + timezone.timedelta(milliseconds=1234), revision=7,
    )  # fmt: skip
    pending = DeploymentStep.objects.create(deployment=dep, seq=2, host="netnode", phase="vlans", description="p")
    for step in (done, pending):
        ser = DeploymentStepSerializer()
        assert ser.to_representation(step) == serializers.ModelSerializer.to_representation(ser, step)
    assert DeploymentStepSerializer(done).data["duration_ms"] == 1234


def test_poll_parameters_are_checked(api, inventory, user, make_slice):
    dep = Deployment.objects.create(slice=linked(make_slice, user), kind="deploy", status="succeeded")
    for bad in ("steps_after=-1", "steps_after=x", "steps_after=99999999999", "steps_after=%C2%B2", "plan=maybe"):
        r = api.get(f"/api/deployments/{dep.pk}/?{bad}")
        assert r.status_code == 400, bad
        assert bad.split("=")[0] in r.json()["errors"]


def test_deployment_detail_runs_a_constant_number_of_queries(api, inventory, user, make_slice):
    def queries(rows: int) -> int:
        dep = Deployment.objects.create(slice=linked(make_slice, user), kind="deploy", status="succeeded")
        DeploymentStep.objects.bulk_create(
            DeploymentStep(deployment=dep, seq=i, host="w1", phase="vms", description="d", command="c", revision=i)
            for i in range(1, rows + 1)
        )
        with CaptureQueriesContext(connection) as ctx:
            body = api.get(f"/api/deployments/{dep.pk}/").json()
        assert len(body["steps"]) == rows and body["steps_revision"] == rows
        return len(ctx)

    assert queries(1) == queries(50)
