"""The audit log: a row for each action, from where, append-only, and each user reads only their own."""

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from audit.models import AppendOnly, AuditEvent
from provisioning import executor, services
from provisioning.consumers import console_access
from provisioning.runners import DryRunRunner
from slices.models import VM


def actions(**filters) -> list[str]:
    return list(AuditEvent.objects.filter(**filters).order_by("when", "id").values_list("action", flat=True))


def login_client(user, password="pw"):
    client = APIClient()
    user.set_password(password)
    user.save()
    assert client.login(username=user.username, password=password)
    return client


def test_every_action_on_a_slice_leaves_a_row_with_who_and_where(inventory, user, make_slice):
    api = login_client(user)  # a session, as the designer's calls: the login is a row too
    s = api.post("/api/slices/", {"name": "audited"}, format="json").json()
    vm1 = api.post("/api/vms/", {"slice": s["id"], "name": "vm1"}, format="json").json()
    vm2 = api.post("/api/vms/", {"slice": s["id"], "name": "vm2"}, format="json").json()
    assert (
        api.post("/api/links/", {"slice": s["id"], "vm_a": vm1["id"], "vm_b": vm2["id"]}, format="json").status_code
        == 201
    )
    api.patch(f"/api/vms/{vm1['id']}/", {"x": 10}, format="json")  # a node moved: not a design change
    api.patch(f"/api/vms/{vm1['id']}/", {"data_interfaces_count": 2}, format="json")
    dep = api.post(f"/api/slices/{s['id']}/deploy/", {}, format="json").json()
    assert api.post(f"/api/deployments/{dep['id']}/cancel/").status_code == 202
    dep = api.post(f"/api/slices/{s['id']}/deploy/", {}, format="json").json()
    assert executor.execute(deployment_id=dep["id"], runner=DryRunRunner()).status == "succeeded"
    assert api.post(f"/api/vms/{vm1['id']}/power/", {"action": "reboot"}, format="json").status_code == 202
    executor.execute(deployment_id=VM.objects.get(pk=vm1["id"]).power_jobs.get().pk, runner=DryRunRunner())
    assert api.post(f"/api/slices/{s['id']}/destroy/", {}, format="json").status_code == 202

    assert actions(slice_id=s["id"]) == [
        "create", "create", "create", "edit", "edit", "deploy", "cancel", "deploy", "power", "destroy",
    ]  # fmt: skip
    rows = AuditEvent.objects.filter(slice_id=s["id"])
    assert {(r.username, r.address, r.via, r.slice_name) for r in rows} == {("alice", "127.0.0.1", "api", "audited")}
    power = rows.get(action="power")
    assert "reboot VM vm1" in power.target and power.host == VM.objects.get(pk=vm1["id"]).host.name
    assert rows.filter(action="edit", target="VM vm1").get().detail == "data_interfaces_count"
    assert actions(user=user, slice_id__isnull=True) == ["login"]


def test_logins_and_failed_logins_are_recorded_with_the_address(client, user):
    user.set_password("right-password")
    user.save()
    client.post("/login/", {"username": "alice", "password": "wrong"}, REMOTE_ADDR="198.51.100.7")
    client.post("/login/", {"username": "alice", "password": "right-password"}, REMOTE_ADDR="198.51.100.7")
    failed, ok = AuditEvent.objects.order_by("id")
    assert (failed.action, failed.username, failed.user, failed.address) == (
        "login_failed",
        "alice",
        None,
        "198.51.100.7",
    )
    assert (ok.action, ok.user, ok.address, ok.via) == ("login", user, "198.51.100.7", "web")


def test_console_opened_and_refused_are_recorded(inventory, user, other_user, make_slice):
    s = make_slice(user, vms=1)
    vm = VM.objects.get(slice=s)
    VM.objects.filter(pk=vm.pk).update(host=inventory["workers"][0], status=VM.Status.RUNNING)
    target, refusal = console_access(user=user, vm_id=vm.pk, address="203.0.113.5")
    assert target is not None and refusal is None
    target, refusal = console_access(user=other_user, vm_id=vm.pk, address="203.0.113.9")
    assert target is None and refusal[1] == "No such VM."
    opened, refused = AuditEvent.objects.filter(via="console").order_by("id")
    assert (opened.action, opened.user, opened.host, opened.address) == (
        "console_opened",
        user,
        "worker1",
        "203.0.113.5",
    )
    assert (refused.action, refused.user, refused.detail) == ("console_refused", other_user, "No such VM.")
    assert refused.slice_id == s.pk  # the owner sees who tried


def test_admin_changes_are_recorded_and_the_log_is_read_only_there(client, db):
    get_user_model().objects.create_superuser("op", "op@example.org", "pw")
    client.login(username="op", password="pw")
    form = {"name": "huge", "vcpus": 8, "ram_mib": 8192, "disk_gib": 10}
    r = client.post("/admin/inventory/flavor/add/", form, REMOTE_ADDR="192.0.2.50")
    assert r.status_code == 302, r.content.decode()[:2000]
    row = AuditEvent.objects.get(action="admin_change")
    assert (row.username, row.via, row.address) == ("op", "admin", "192.0.2.50")
    assert row.target.startswith("flavor huge") and row.detail.startswith("added")
    assert client.get("/admin/audit/auditevent/?action__exact=admin_change").status_code == 200
    assert client.get(f"/admin/audit/auditevent/{row.pk}/change/").status_code == 200  # view only
    assert client.post(f"/admin/audit/auditevent/{row.pk}/delete/", {"post": "yes"}).status_code == 403
    assert AuditEvent.objects.filter(pk=row.pk).exists()


def test_audit_rows_are_append_only(user):
    row = AuditEvent.objects.create(action="login", user=user, username="alice")
    row.detail = "rewritten"
    with pytest.raises(AppendOnly):
        row.save()
    with pytest.raises(AppendOnly):
        row.delete()
    with pytest.raises(AppendOnly):
        AuditEvent.objects.filter(pk=row.pk).update(detail="x")
    with pytest.raises(AppendOnly):
        AuditEvent.objects.all().delete()


def test_a_user_reads_only_the_rows_of_their_own_slices(inventory, user, other_user, make_slice):
    mine = make_slice(user, vms=1)
    theirs = make_slice(other_user, vms=1)
    services.deploy_request(slice_obj=theirs, user=other_user, dry_run=True)
    alice, bob = APIClient(), APIClient()
    alice.force_authenticate(user)
    bob.force_authenticate(other_user)
    seen = alice.get("/api/audit/").json()["results"]
    assert seen and {row["slice_id"] for row in seen} == {mine.pk}
    assert alice.get(f"/api/audit/?slice={theirs.pk}").json()["results"] == []
    their_row = AuditEvent.objects.filter(slice_id=theirs.pk).first()
    assert alice.get(f"/api/audit/{their_row.pk}/").status_code == 404
    assert {r["action"] for r in bob.get(f"/api/audit/?slice={theirs.pk}").json()["results"]} == {"create", "deploy"}
    assert alice.post("/api/audit/", {}, format="json").status_code == 405
    assert APIClient().get("/api/audit/").status_code in (401, 403)
