"""Who may do what: anonymous, another user, the owner and staff, on every endpoint."""

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from inventory.models import Flavor, Image

DOC = {"name": "imported", "vms": [{"name": "a"}, {"name": "b"}], "links": [["a:eth1", "b:eth1"]]}

# (label, method, url, payload, status for: owner, other user, staff). Anonymous: always 401.
# {slice}, {vm}, {vm3}, {vm4}, {link}, {iface}, {host}, {image}, {flavor} are filled per test.
CASES = [
    ("slices list", "get", "/api/slices/", None, 200, 200, 200),
    ("slice create", "post", "/api/slices/", {"name": "fresh"}, 201, 201, 201),
    ("slice detail", "get", "/api/slices/{slice}/", None, 200, 404, 200),
    ("slice patch", "patch", "/api/slices/{slice}/", {"description": "new"}, 200, 404, 200),
    ("slice put", "put", "/api/slices/{slice}/", {"name": "renamed"}, 200, 404, 200),
    ("slice delete", "delete", "/api/slices/{slice}/", None, 204, 404, 204),
    ("slice export", "get", "/api/slices/{slice}/export/", None, 200, 404, 200),
    ("slice import", "post", "/api/slices/import/", DOC, 201, 201, 201),
    (
        "from template",
        "post",
        "/api/slices/from-template/",
        {"name": "t", "topology": "ring", "count": 3},
        201,
        201,
        201,
    ),
    ("vms list", "get", "/api/vms/", None, 200, 200, 200),
    ("vm create", "post", "/api/vms/", {"slice": "{slice}", "name": "vm9"}, 201, 400, 201),
    ("vm detail", "get", "/api/vms/{vm}/", None, 200, 404, 200),
    ("vm patch", "patch", "/api/vms/{vm}/", {"x": 5}, 200, 404, 200),
    ("vm put", "put", "/api/vms/{vm}/", {"slice": "{slice}", "name": "vm1", "data_interfaces_count": 3}, 200, 404, 200),
    ("vm delete", "delete", "/api/vms/{vm}/", None, 204, 404, 204),
    ("links list", "get", "/api/links/", None, 200, 200, 200),
    ("link create", "post", "/api/links/", {"slice": "{slice}", "vm_a": "{vm3}", "vm_b": "{vm4}"}, 201, 400, 201),
    ("link detail", "get", "/api/links/{link}/", None, 200, 404, 200),
    ("link delete", "delete", "/api/links/{link}/", None, 204, 404, 204),
    ("interfaces list", "get", "/api/interfaces/", None, 200, 200, 200),
    ("interface detail", "get", "/api/interfaces/{iface}/", None, 200, 404, 200),
    ("templates", "get", "/api/templates/", None, 200, 200, 200),
    ("me", "get", "/api/me/", None, 200, 200, 200),
    ("hosts list", "get", "/api/hosts/", None, 200, 200, 200),
    ("host detail", "get", "/api/hosts/{host}/", None, 200, 200, 200),
    (
        "host create",
        "post",
        "/api/hosts/",
        {"name": "worker9", "role": "worker", "management_address": "192.0.2.99"},
        403,
        403,
        201,
    ),
    ("host patch", "patch", "/api/hosts/{host}/", {"vcpus": 2}, 403, 403, 200),
    ("host put", "put", "/api/hosts/{host}/", {"name": "w1", "management_address": "192.0.2.1"}, 403, 403, 200),
    ("host delete", "delete", "/api/hosts/{host}/", None, 403, 403, 204),
    ("images list", "get", "/api/images/", None, 200, 200, 200),
    ("image detail", "get", "/api/images/{image}/", None, 200, 200, 200),
    ("image create", "post", "/api/images/", {"name": "alpine", "disk_path": "/srv/alpine.qcow2"}, 403, 403, 201),
    ("image patch", "patch", "/api/images/{spare_image}/", {"kernel_args": "console=ttyS0 quiet"}, 403, 403, 200),
    ("image delete", "delete", "/api/images/{spare_image}/", None, 403, 403, 204),
    ("flavors list", "get", "/api/flavors/", None, 200, 200, 200),
    ("flavor detail", "get", "/api/flavors/{flavor}/", None, 200, 200, 200),
    ("flavor create", "post", "/api/flavors/", {"name": "huge", "vcpus": 8, "ram_mib": 8192}, 403, 403, 201),
    ("flavor patch", "patch", "/api/flavors/{spare_flavor}/", {"disk_gib": 30}, 403, 403, 200),
    ("flavor delete", "delete", "/api/flavors/{spare_flavor}/", None, 403, 403, 204),
]


@pytest.fixture
def ids(designed, workers, image):
    vms = designed["vms"]
    spare_image = Image.objects.create(name="spare", disk_path="/srv/spare.qcow2")
    return {
        "slice": designed["slice"].pk,
        "vm": vms["vm1"].pk,
        "vm3": vms["vm3"].pk,
        "vm4": vms["vm4"].pk,
        "link": designed["link"].pk,
        "iface": vms["vm1"].interfaces.get(index=1).pk,
        "host": workers[0].pk,
        "image": image.pk,
        "spare_image": spare_image.pk,
        "flavor": Flavor.objects.get(name="tiny").pk,
        "spare_flavor": Flavor.objects.get(name="large").pk,
    }


def _fill(value, ids):
    if isinstance(value, str):
        for key, pk in ids.items():
            if value == "{" + key + "}":
                return pk
            value = value.replace("{" + key + "}", str(pk))
        return value
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    return value


def _call(client, method, url, payload, ids):
    url = _fill(url, ids)
    if payload is None:
        return getattr(client, method)(url)
    return getattr(client, method)(url, _fill(payload, ids), format="json")


@pytest.mark.parametrize(
    ("label", "method", "url", "payload", "owner", "other", "staff"), CASES, ids=[c[0] for c in CASES]
)
@pytest.mark.parametrize("role", ["anonymous", "other", "owner", "staff"])
def test_access_matrix(role, label, method, url, payload, owner, other, staff, ids, user, other_user, staff_user):
    client = APIClient()
    if role != "anonymous":
        client.force_authenticate({"owner": user, "other": other_user, "staff": staff_user}[role])
    expected = {"anonymous": 401, "owner": owner, "other": other, "staff": staff}[role]
    response = _call(client, method, url, payload, ids)
    assert response.status_code == expected, (role, label, getattr(response, "data", None))
    if role == "other" and expected == 400:
        assert "No such slice" in str(response.json())


def test_other_users_lists_do_not_show_my_objects(designed, other_api, staff_api):
    for url in ("/api/slices/", "/api/vms/", "/api/links/", "/api/interfaces/"):
        assert other_api.get(url).json()["count"] == 0, url
        assert staff_api.get(url).json()["count"] > 0, url


def test_owner_lists_show_only_own_objects(api, designed, other_user, make_slice):
    make_slice(other_user, name="bobs", vms=2)
    names = {s["name"] for s in api.get("/api/slices/").json()["results"]}
    assert names == {"lab"}
    assert {vm["name"] for vm in api.get("/api/vms/").json()["results"]} == {"vm1", "vm2", "vm3", "vm4"}


def test_hosts_hide_ssh_details_from_users(api, staff_api, workers):
    workers[0].ssh_key_path = "/etc/slice-portal/id_ed25519"
    workers[0].save()
    mine = api.get(f"/api/hosts/{workers[0].pk}/").json()
    assert "ssh_key_path" not in mine and "ssh_user" not in mine
    assert staff_api.get(f"/api/hosts/{workers[0].pk}/").json()["ssh_key_path"] == "/etc/slice-portal/id_ed25519"


def test_flavor_in_use_cannot_be_deleted(staff_api, designed):
    tiny = Flavor.objects.get(name="tiny")
    r = staff_api.delete(f"/api/flavors/{tiny.pk}/")
    assert r.status_code == 409
    assert "Still in use" in r.json()["detail"]


def test_token_auth(user, designed):
    token = Token.objects.create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert client.get("/api/me/").json()["username"] == "alice"
    assert client.post("/api/slices/", {"name": "bytoken"}, format="json").status_code == 201
    client.credentials(HTTP_AUTHORIZATION="Token not-a-token")
    assert client.get("/api/me/").status_code == 401


def test_session_auth_enforces_csrf(user):
    client = APIClient(enforce_csrf_checks=True)
    assert client.login(username="alice", password="pw-alice")
    assert client.get("/api/me/").status_code == 200  # safe methods need no token
    r = client.post("/api/slices/", {"name": "nocsrf"}, format="json")
    assert r.status_code == 403
    assert "CSRF" in r.json()["detail"]
    client.get("/admin/login/")  # any page with a form sets the CSRF cookie
    token = client.cookies["csrftoken"].value
    r = client.post("/api/slices/", {"name": "withcsrf"}, format="json", HTTP_X_CSRFTOKEN=token)
    assert r.status_code == 201, r.json()


def test_anonymous_gets_401_with_a_token_challenge(anon_api):
    r = anon_api.get("/api/slices/")
    assert r.status_code == 401
    assert r["WWW-Authenticate"].startswith("Token")


def test_inactive_user_is_refused(user):
    token = Token.objects.create(user=user)
    get_user_model().objects.filter(pk=user.pk).update(is_active=False)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert client.get("/api/me/").status_code == 401


def test_staff_may_add_a_vm_to_a_users_slice_charged_to_the_owner(staff_api, designed, user):
    r = staff_api.post("/api/vms/", {"slice": designed["slice"].pk, "name": "ops"}, format="json")
    assert r.status_code == 201
    me = APIClient()
    me.force_authenticate(user)
    assert me.get("/api/me/").json()["usage"]["vms"] == 5
