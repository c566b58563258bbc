"""Slice lifetime: expiry set on deploy, extended within the user's maximum, warned about, expired by the job."""

from datetime import timedelta

from django.utils import timezone

from audit.models import AuditEvent
from provisioning import executor, expiry, services
from provisioning.runners import DryRunRunner
from slices.models import VM, Slice, UserQuota

from .test_api import linked


def run(deployment) -> None:
    assert executor.execute(deployment_id=deployment.pk, runner=DryRunRunner()).status == "succeeded"


def test_a_deploy_sets_the_expiry_and_a_destroy_clears_it(inventory, user, make_slice, settings):
    settings.SLICE_LIFETIME_HOURS, settings.SLICE_LIFETIME_MAX_HOURS = 48, 100
    s = linked(make_slice, user)
    before = timezone.now()
    run(services.deploy_request(slice_obj=s, user=user))
    s.refresh_from_db()
    assert timedelta(hours=47.9) < s.expires_at - before < timedelta(hours=48.1)
    first = s.expires_at
    run(services.redeploy_request(slice_obj=s, user=user))
    s.refresh_from_db()
    assert s.expires_at == first  # a redeploy keeps it
    run(services.destroy_request(slice_obj=s, user=user))
    s.refresh_from_db()
    assert s.expires_at is None
    # A per-user maximum below the default caps the expiry.
    UserQuota.objects.create(user=user, max_lifetime_hours=2)
    run(services.deploy_request(slice_obj=s, user=user))
    s.refresh_from_db()
    assert s.expires_at - timezone.now() < timedelta(hours=2)


def test_extend_within_the_limit_through_the_api(api, inventory, user, make_slice, settings):
    settings.SLICE_LIFETIME_MAX_HOURS = 72
    s = linked(make_slice, user)
    assert api.post(f"/api/slices/{s.pk}/extend/", {"hours": 5}, format="json").status_code == 409  # a draft
    run(services.deploy_request(slice_obj=s, user=user))
    r = api.post(f"/api/slices/{s.pk}/extend/", {"hours": 72}, format="json")
    assert r.status_code == 200 and r.json()["expires_at"]
    s.refresh_from_db()
    assert timedelta(hours=71.9) < s.expires_at - timezone.now() <= timedelta(hours=72)
    r = api.post(f"/api/slices/{s.pk}/extend/", {"hours": 73}, format="json")
    assert r.status_code == 400 and "1 to 72 hours" in r.json()["detail"]
    assert AuditEvent.objects.filter(slice_id=s.pk, action="edit", detail__startswith="expiry set to").count() == 1


def test_the_designer_warns_before_the_expiry(client, inventory, user, make_slice, settings):
    settings.SLICE_EXPIRY_WARNING_HOURS = 24
    s = linked(make_slice, user)
    run(services.deploy_request(slice_obj=s, user=user))
    client.force_login(user)
    page = client.get(f"/slices/{s.pk}/").content.decode()
    assert 'data-testid="slice-expiry"' in page and "expires soon" not in page
    Slice.objects.filter(pk=s.pk).update(expires_at=timezone.now() + timedelta(hours=3))
    page = client.get(f"/slices/{s.pk}/").content.decode()
    assert "This slice expires soon:" in page and 'data-testid="extend-form"' in page


def test_the_scheduled_job_destroys_expired_slices_and_keeps_their_design(inventory, user, make_slice):
    expired, alive = linked(make_slice, user), linked(make_slice, user)
    run(services.deploy_request(slice_obj=expired, user=user))
    run(services.deploy_request(slice_obj=alive, user=user))
    Slice.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    found = expiry.expire_slices()
    assert [e.slice_id for e in found] == [expired.pk] and found[0].deployment_id
    run(expired.deployments.get(pk=found[0].deployment_id))
    expired.refresh_from_db()
    alive.refresh_from_db()
    assert (expired.status, expired.expires_at) == ("draft", None) and alive.status == "active"
    assert VM.objects.filter(slice=expired).count() == 2 and expired.links.count() == 1  # the design is kept
    row = AuditEvent.objects.get(slice_id=expired.pk, action="destroy")
    assert row.user is None and row.via == "job"  # the system did it
    assert expiry.expire_slices() == []  # nothing left to expire
