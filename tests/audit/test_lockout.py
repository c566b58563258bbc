"""Ten wrong passwords in a row lock that login out (designer, admin, API token) for the configured time."""

from datetime import timedelta

from axes.models import AccessAttempt
from rest_framework.test import APIClient

from audit.models import AuditEvent

ADDRESS = "198.51.100.20"


def unlock_after_cooloff(settings) -> None:
    """The cool-off time passes (the attempts are moved back in time instead of waiting)."""
    for attempt in AccessAttempt.objects.all():
        AccessAttempt.objects.filter(pk=attempt.pk).update(
            attempt_time=attempt.attempt_time - settings.AXES_COOLOFF_TIME - timedelta(seconds=1)
        )


def test_ten_wrong_passwords_lock_the_designer_login_out_for_the_cooloff(client, user, settings):
    assert settings.AXES_FAILURE_LIMIT == 10
    user.set_password("right-password")
    user.save()
    for _ in range(9):
        r = client.post("/login/", {"username": "alice", "password": "wrong"}, REMOTE_ADDR=ADDRESS)
        assert r.status_code == 200  # the form again, with its error
    r = client.post("/login/", {"username": "alice", "password": "wrong"}, REMOTE_ADDR=ADDRESS)
    assert r.status_code == 429
    r = client.post("/login/", {"username": "alice", "password": "right-password"}, REMOTE_ADDR=ADDRESS)
    assert r.status_code == 429 and "_auth_user_id" not in client.session  # the right password does not help
    # Another address is not locked out (nobody locks a user out from elsewhere).
    r = client.post("/login/", {"username": "alice", "password": "right-password"}, REMOTE_ADDR="198.51.100.21")
    assert r.status_code == 302
    client.logout()
    assert AuditEvent.objects.filter(action="locked_out", username="alice", address=ADDRESS).exists()
    assert AuditEvent.objects.filter(action="login_failed", address=ADDRESS).count() >= 10

    unlock_after_cooloff(settings)
    r = client.post("/login/", {"username": "alice", "password": "right-password"}, REMOTE_ADDR=ADDRESS)
    assert r.status_code == 302 and client.session.get("_auth_user_id") == str(user.pk)


def test_the_admin_login_is_locked_out_too(client, staff_user):
    staff_user.set_password("right-password")
    staff_user.save()
    for _ in range(10):
        client.post("/admin/login/", {"username": "carol", "password": "wrong"}, REMOTE_ADDR=ADDRESS)
    r = client.post("/admin/login/", {"username": "carol", "password": "right-password"}, REMOTE_ADDR=ADDRESS)
    assert r.status_code == 429


def test_the_api_token_endpoint_is_locked_out_with_the_apis_error_body(user, settings):
    user.set_password("right-password")
    user.save()
    api = APIClient(REMOTE_ADDR=ADDRESS)
    for _ in range(10):
        r = api.post("/api/auth/token/", {"username": "alice", "password": "wrong"}, format="json")
        assert r.status_code in (400, 429)
    r = api.post("/api/auth/token/", {"username": "alice", "password": "right-password"}, format="json")
    assert r.status_code == 429 and r.json()["code"] == "locked_out"
    unlock_after_cooloff(settings)
    r = api.post("/api/auth/token/", {"username": "alice", "password": "right-password"}, format="json")
    assert r.status_code == 200 and r.json()["token"]
