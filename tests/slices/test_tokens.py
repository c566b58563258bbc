"""Named API tokens: created at login, listed with their last use, revoked by their owner (401 at once)."""

from rest_framework.test import APIClient

from audit.models import AuditEvent
from slices.models import ApiToken


def login(username: str, password: str, name: str | None = None) -> dict:
    body = {"username": username, "password": password, **({"name": name} if name else {})}
    r = APIClient().post("/api/auth/token/", body, format="json")
    assert r.status_code == 200, r.content
    return r.json()


def with_token(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def test_tokens_are_named_listed_with_last_use_and_revoked_at_once(user, other_user):
    user.set_password("pw-alice-1")
    user.save()
    other_user.set_password("pw-bob-1")
    other_user.save()
    laptop = login("alice", "pw-alice-1", "slicectl on laptop")
    ci = login("alice", "pw-alice-1")
    assert laptop["token"] != ci["token"] and ci["name"] == "API token"

    client = with_token(laptop["token"])
    listed = client.get("/api/auth/tokens/").json()["results"]
    assert [t["name"] for t in listed] == ["API token", "slicectl on laptop"]
    assert "token" not in listed[0] and listed[1]["prefix"] == laptop["token"][:6]
    used = {t["name"]: t["last_used"] for t in listed}
    assert used["slicectl on laptop"] is not None and used["API token"] is None  # the list call used laptop's

    bob = with_token(login("bob", "pw-bob-1")["token"])
    assert bob.delete(f"/api/auth/tokens/{ci['id']}/").status_code == 404  # not bob's
    assert [t["name"] for t in bob.get("/api/auth/tokens/").json()["results"]] == ["API token"]

    ci_client = with_token(ci["token"])
    assert ci_client.get("/api/slices/").status_code == 200
    assert client.delete(f"/api/auth/tokens/{ci['id']}/").status_code == 204
    assert ci_client.get("/api/slices/").status_code == 401  # revoked: refused at once
    assert client.get("/api/slices/").status_code == 200  # the other token still works
    assert list(
        AuditEvent.objects.filter(action="token", user=user).order_by("id").values_list("detail", flat=True)
    ) == ["created", "created", "revoked"]


def test_a_token_is_created_through_the_api_and_its_key_shown_once(api, user):
    r = api.post("/api/auth/tokens/", {"name": "ci runner"}, format="json")
    assert r.status_code == 201 and len(r.json()["token"]) == 40
    assert "token" not in api.get(f"/api/auth/tokens/{r.json()['id']}/").json()
    assert api.post("/api/auth/tokens/", {"name": ""}, format="json").status_code == 400
    assert ApiToken.objects.filter(user=user).count() == 1
