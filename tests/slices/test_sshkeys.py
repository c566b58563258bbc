"""Users' SSH keys: parsing and validation, fingerprints, and the ``/api/me/keys/`` API."""

import pytest

from slices import sshkeys
from slices.errors import InvalidRequest

ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMomW5BjmH3yiiOaJlVQyOnN5me5ajZnzTDyRaYl8GWG alice@laptop"
ED25519_FP = "SHA256:H2XIj494jfpMbN+c9AUI0MyT82cznxBA3muHJMcThck"  # ssh-keygen -lf
ECDSA384 = (
    "ecdsa-sha2-nistp384 AAAAE2VjZHNhLXNoYTItbmlzdHAzODQAAAAIbmlzdHAzODQAAABhBBuoOR6N31Og6o0IM3aLhT9/RWVgU1krpAm4"
    "qd7CySdQZxntdeh/FceZsISpSoNMYm/0+RC/2eebbCyLreW0GYenIvKNbsrycKbseGgwzZyYAtkEnkxEtYe+z0JeemwGRg=="
)
ECDSA384_FP = "SHA256:E+b5iau4egQdpzv15DboqANcYwwI3numMbgNNTwt2tU"
RSA2048 = (
    "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQCikw7SL+kJSFTWxWi5dAskhPfIOLycvvBIqXd0tq8cZ2OsZ/eNGPWPCtZ+cYmB0Nigp/mnC2ND"
    "VjZIJEIRske/5wLwaGwc0JntltOZLGmkXMpkoOrH2kGP5IWhsUxOQ+dIZAT8EIocTHXuDI5jIG0/SOileJocjfy82zSI6pLgsdBUbJU3+ojdPA"
    "ZgPCuJkTFDao9ftVTLKnqhL+hD5IQwZwsUOdGeWqrvyLdFknjpCBMIvTnjneUlsL18eoIaCevBNBIJPnNfiJFG+U4c0rFxH+F2Jx+QqaZWEKHQ"
    "cJhWYUaUbzGdjzYat9I72xyrHlH64NVCzD2CsikbuYwFzaaL r"
)
RSA2048_FP = "SHA256:4BlkMcOiInlHjNCa22xfjwwsVzDAJ2kOd8X6/RHa7Dw"
RSA1024 = (
    "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQC1RztoTSssXkw3jHbQSEE0OYLbUfpled8EnyabPyOFu5VIbfqJwC1w8528zfIrNtolLP/4gXT"
    "pLiWGSRZXrJd2G84931HYROH8+nl9U8y6KORVKHrSiya3VXLK2sOxefA+0ep+qG1Sasft4b0FTCxnxxAqf8FiGhxccKHymONrfw== small"
)


@pytest.mark.parametrize(
    ("line", "key_type", "fp", "bits"),
    [
        (ED25519, "ssh-ed25519", ED25519_FP, 256),
        (ECDSA384, "ecdsa-sha2-nistp384", ECDSA384_FP, 384),
        (RSA2048, "ssh-rsa", RSA2048_FP, 2048),
    ],
)
def test_accepted_keys_have_ssh_keygen_fingerprints(line, key_type, fp, bits):
    parsed = sshkeys.parse_public_key(line + "\n")
    assert (parsed.key_type, parsed.fingerprint, parsed.bits) == (key_type, fp, bits)
    assert parsed.line == " ".join(line.split()[:2])


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (RSA1024, "1024 bits; at least 2048"),
        (ED25519 + "\n" + RSA2048, "One key per entry"),
        ('command="rm -rf /" ' + ED25519, "options before the type"),
        ("ssh-dss AAAAB3NzaC1kc3MAAACBAP", "DSA keys are refused"),
        ("-----BEGIN OPENSSH PRIVATE KEY-----", "PEM block"),
        ("ssh-ed25519", "missing or malformed"),
        ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5A", "does not decode"),
        (ED25519.replace("AAAAC3NzaC1lZDI1NTE5", "AAAAB3NzaC1yc2EAAAAD", 1), "not a ssh-ed25519 key"),
        ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMomW5Bj== x", "not a valid ssh-ed25519 key"),
        (ED25519 + "\x1b[31m", "printable text"),
        ("", "Paste one"),
    ],
)
def test_refused_keys_say_why(text, reason):
    with pytest.raises(InvalidRequest, match=reason.replace("(", r"\(")) as info:
        sshkeys.parse_public_key(text)
    assert info.value.field == "public_key"


def test_api_add_list_rename_remove(api, other_user, client_for):
    r = api.post("/api/me/keys/", {"public_key": ED25519}, format="json")
    assert r.status_code == 201, r.json()
    key = r.json()
    assert key["name"] == "alice@laptop" and key["fingerprint"] == ED25519_FP and key["key_type"] == "ssh-ed25519"
    assert api.post("/api/me/keys/", {"public_key": RSA2048, "name": "work"}, format="json").status_code == 201
    assert [k["name"] for k in api.get("/api/me/keys/").json()] == ["alice@laptop", "work"]
    r = api.patch(f"/api/me/keys/{key['id']}/", {"name": "laptop"}, format="json")
    assert r.status_code == 200 and r.json()["name"] == "laptop"
    # Another user neither sees nor removes it.
    other = client_for(other_user)
    assert other.get("/api/me/keys/").json() == []
    assert other.delete(f"/api/me/keys/{key['id']}/").status_code == 404
    assert api.delete(f"/api/me/keys/{key['id']}/").status_code == 204
    assert [k["name"] for k in api.get("/api/me/keys/").json()] == ["work"]


def test_api_refuses_a_weak_key_with_a_clear_400(api):
    r = api.post("/api/me/keys/", {"public_key": RSA1024, "name": "old"}, format="json")
    assert r.status_code == 400
    body = r.json()
    assert "at least 2048" in body["detail"] and "public_key" in body["errors"]
    assert api.get("/api/me/keys/").json() == []


def test_api_refuses_the_same_key_twice(api):
    assert api.post("/api/me/keys/", {"public_key": ED25519}, format="json").status_code == 201
    r = api.post("/api/me/keys/", {"public_key": ED25519 + " again", "name": "x"}, format="json")
    assert r.status_code == 409 and ED25519_FP in r.json()["detail"]


def test_anonymous_has_no_keys(anon_api):
    assert anon_api.get("/api/me/keys/").status_code in (401, 403)


def test_profile_page_is_for_logged_in_users(client, user):
    assert client.get("/profile/").status_code == 302
    client.force_login(user)
    page = client.get("/profile/")
    assert page.status_code == 200 and b"js/profile.js" in page.content and b"SSH keys" in page.content
