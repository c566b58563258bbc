"""Defects found by hostile use of the REST API (issue 16): each answer is a 4xx with the one error body."""

import pytest
import yaml
from drf_spectacular.generators import SchemaGenerator

from slices.api.pagination import MAX_OFFSET, MAX_PAGE_SIZE
from slices.models import Slice

pytestmark = pytest.mark.django_db

ERROR_KEYS = {"detail", "code"}


def assert_error(response, status: int, *, fields: set[str] | None = None) -> dict:
    """The response is ``status`` with the API's error body (``errors`` only when fields were refused)."""
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert set(body) == (ERROR_KEYS | {"errors"} if fields else ERROR_KEYS), body
    assert isinstance(body["detail"], str) and body["detail"] and isinstance(body["code"], str)
    if fields:
        assert set(body["errors"]) == fields, body
    return body


# --- 1. export errors are JSON, whatever format was asked --------------------------------------------


@pytest.mark.parametrize("how", ["query", "accept"])
def test_export_errors_are_answered_not_a_500(how, api, anon_api, other_api, designed):
    def get(client, pk):
        if how == "query":
            return client.get(f"/api/slices/{pk}/export/?format=yaml")
        return client.get(f"/api/slices/{pk}/export/", HTTP_ACCEPT="application/yaml")

    pk = designed["slice"].pk
    assert_error(get(anon_api, pk), 401)
    mine_for_them = get(other_api, pk)
    missing = get(other_api, 999999)
    assert_error(mine_for_them, 404)
    assert_error(missing, 404)
    assert mine_for_them.json() == missing.json()
    ok = get(api, pk)
    assert ok.status_code == 200 and yaml.safe_load(ok.content)["name"] == "lab"


@pytest.mark.parametrize("fmt", ["", "xml"])
def test_export_format_must_be_yaml_or_json(api, designed, fmt):
    r = api.get(f"/api/slices/{designed['slice'].pk}/export/?format={fmt}")
    assert assert_error(r, 400, fields={"format"})["detail"] == f"Unknown export format {fmt!r}: use yaml or json."


# --- 2. pagination: nonsense is a 400, a huge limit is lowered to the maximum ---------------------------


@pytest.mark.parametrize(
    "query",
    [
        "limit=abc",
        "limit=-1",
        "limit=0",
        "limit=1.5",
        "limit=",
        "offset=x",
        "offset=-5",
        f"offset={MAX_OFFSET + 1}",
        "offset=9223372036854775808",
    ],
)
@pytest.mark.parametrize("path", ["slices", "vms", "links", "interfaces", "deployments", "flavors", "hosts"])
def test_nonsense_paging_is_a_400(api, path, query):
    param = query.split("=")[0]
    assert_error(api.get(f"/api/{path}/?{query}"), 400, fields={param})


def test_a_huge_limit_is_lowered_to_the_maximum(api, user, make_slice, settings):
    for i in range(3):
        make_slice(user, name=f"s{i}")
    r = api.get("/api/slices/?limit=9223372036854775808")
    assert r.status_code == 200 and r.json()["count"] == 3
    r = api.get(f"/api/slices/?limit=2&offset={MAX_OFFSET}")
    assert r.status_code == 200 and r.json()["results"] == []
    assert "limit=1000" in api.get("/api/slices/?limit=99999&offset=1").json()["previous"]
    assert MAX_PAGE_SIZE == 1000


# --- 4. another user's id and a missing id get the same answer --------------------------------------


def test_other_users_ids_and_missing_ids_are_answered_alike(api, other_user, make_slice, designed):
    theirs = make_slice(other_user, name="theirs", vms=2)
    their_vms = list(theirs.vms.order_by("name"))
    mine = designed["slice"]
    vm1 = designed["vms"]["vm1"]

    def vm_post(slice_id):
        return api.post("/api/vms/", {"slice": slice_id, "name": "vmx"}, format="json")

    def link_post(slice_id, vm_a, vm_b):
        return api.post("/api/links/", {"slice": slice_id, "vm_a": vm_a, "vm_b": vm_b}, format="json")

    pairs = [
        (vm_post(theirs.pk), vm_post(999999)),
        (link_post(theirs.pk, vm1.pk, vm1.pk), link_post(999999, vm1.pk, vm1.pk)),
        (link_post(mine.pk, vm1.pk, their_vms[0].pk), link_post(mine.pk, vm1.pk, 999999)),
        (link_post(mine.pk, their_vms[0].pk, vm1.pk), link_post(mine.pk, 999999, vm1.pk)),
        (api.get(f"/api/slices/{theirs.pk}/"), api.get("/api/slices/999999/")),
        (api.get(f"/api/vms/{their_vms[0].pk}/"), api.get("/api/vms/999999/")),
        (api.get(f"/api/slices/{theirs.pk}/plan/"), api.get("/api/slices/999999/plan/")),
        (api.post(f"/api/slices/{theirs.pk}/deploy/"), api.post("/api/slices/999999/deploy/")),
    ]
    for theirs_answer, missing_answer in pairs:
        assert theirs_answer.status_code in (400, 404), theirs_answer.content
        assert (theirs_answer.status_code, theirs_answer.json()) == (missing_answer.status_code, missing_answer.json())
    body = vm_post(999999).json()
    assert body["errors"] == {"slice": ["No such slice."]} and "Invalid pk" not in str(body)


# --- 5. bodies are JSON objects of the declared types --------------------------------------------


def test_a_form_body_is_refused_and_never_deploys(api, designed):
    from provisioning.models import Deployment

    url = f"/api/slices/{designed['slice'].pk}/deploy/"
    assert_error(api.post(url, {"dry_run": ""}, format="multipart"), 415)
    assert_error(api.post(url, "dry_run=", content_type="application/x-www-form-urlencoded"), 415)
    assert_error(api.post(url, [], format="json"), 400, fields=None)
    assert_error(api.post(url, {"dry_run": ""}, format="json"), 400, fields={"dry_run"})
    assert_error(api.post(url, {"dry_run": 0}, format="json"), 400, fields={"dry_run"})
    assert not Deployment.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": 5}, "name"),
        ({"name": "ok", "description": ["x"]}, "description"),
    ],
)
def test_wrong_json_types_are_refused(api, body, field):
    assert_error(api.post("/api/slices/", body, format="json"), 400, fields={field})
    assert not Slice.objects.exists()


def test_vm_body_types(api, designed):
    pk = designed["slice"].pk
    for body, field in [
        ({"slice": str(pk), "name": "vmx"}, "slice"),
        ({"slice": pk, "name": "vmx", "data_interfaces_count": "2"}, "data_interfaces_count"),
        ({"slice": pk, "name": "vmx", "internet_enabled": "yes"}, "internet_enabled"),
        ({"slice": True, "name": "vmx"}, "slice"),
    ]:
        assert_error(api.post("/api/vms/", body, format="json"), 400, fields={field})
    assert_error(api.post("/api/slices/", [{"name": "x"}], format="json"), 400)


def test_the_schema_declares_bodies_errors_and_nullable_fields():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    vm = schema["components"]["schemas"]["VM"]["properties"]
    assert vm["host_name"].get("nullable") is True
    assert "Error" in schema["components"]["schemas"]
    vms_filter = next(p for p in schema["paths"]["/api/vms/"]["get"]["parameters"] if p["name"] == "slice")
    assert vms_filter["schema"] == {"type": "integer", "minimum": 0}
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert "401" in responses, (method, path)
            if "{id}" in path or "{pk}" in path:
                assert "404" in responses, (method, path)
            for code, answer in responses.items():
                if code >= "400":
                    ref = answer["content"]["application/json"]["schema"]["$ref"]
                    assert ref.endswith("/Error"), (method, path, code)
            body = operation.get("requestBody")
            if body and path not in ("/api/slices/import/", "/api/slices/apply/"):  # documents: YAML too
                assert list(body["content"]) == ["application/json"], (method, path)
                assert "400" in responses and "415" in responses, (method, path)


# --- 6. one error shape ---------------------------------------------------------------------------


def test_each_message_is_given_once(api, designed):
    body = assert_error(api.post("/api/slices/", {"name": "bad name!"}, format="json"), 400, fields={"name"})
    assert body["detail"].startswith("name: Invalid name 'bad name!'")
    assert body["code"] == "invalid_name"
    body = assert_error(api.post("/api/slices/", {}, format="json"), 400, fields={"name"})
    assert body == {"detail": "name: This field is required.", "code": "required", "errors": body["errors"]}
    # a service error that concerns one field
    body = assert_error(api.post("/api/slices/", {"name": "lab"}, format="json"), 400, fields={"name"})
    assert body["errors"]["name"] == [body["detail"]] and body["code"] == "duplicate"
    # several problems: the first, and how many more
    vm = designed["vms"]["vm1"]
    r = api.patch(f"/api/vms/{vm.pk}/", {"name": "$x", "data_interfaces_count": 99}, format="json")
    body = assert_error(r, 400, fields={"name", "data_interfaces_count"})
    assert body["detail"].endswith("(and 1 more: see errors)") and body["code"] == "invalid"
    # no field: no errors
    assert assert_error(api.get("/api/slices/999999/"), 404)["code"] == "not_found"
    assert_error(api.delete("/api/templates/"), 405)
    assert_error(api.get("/api/no-such-thing/"), 404)


# --- 7. ?name= filters ----------------------------------------------------------------------------


def test_slices_filter_by_exact_name(api, user, other_user, make_slice):
    make_slice(user, name="ring3")
    make_slice(user, name="ring30")
    make_slice(other_user, name="ring3")
    names = [s["name"] for s in api.get("/api/slices/?name=ring3").json()["results"]]
    assert names == ["ring3"]
    assert api.get("/api/slices/?name=Ring3").json()["count"] == 0
    assert api.get("/api/slices/").json()["count"] == 2


@pytest.mark.parametrize(("path", "param"), [("vms", "slice"), ("links", "slice"), ("interfaces", "vm")])
def test_id_filters_refuse_non_integers(api, designed, path, param):
    assert_error(api.get(f"/api/{path}/?{param}=abc"), 400, fields={param})
    assert api.get(f"/api/{path}/?{param}=99999999999999999999999").json()["count"] == 0


# --- 8. the API root ------------------------------------------------------------------------------


def test_api_root_lists_every_top_level_resource(api, designed):
    root = api.get("/api/")
    assert root.status_code == 200
    links = root.json()
    expected = {
        "slices",
        "vms",
        "links",
        "interfaces",
        "templates",
        "me",
        "deployments",
        "hosts",
        "images",
        "flavors",
        "schema",
        "docs",
        "audit",
        "me/keys",
    }
    assert set(links) == expected
    for name, url in links.items():
        assert url.startswith("http://testserver/api/"), (name, url)
        if name in ("schema", "docs"):
            continue
        r = api.get(url)
        assert r.status_code == 200 and r["Content-Type"].startswith("application/json"), (name, url)
    assert links["slices"] == "http://testserver/api/slices/"
