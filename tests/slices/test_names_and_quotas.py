"""Hostile names refused everywhere a name enters; quotas checked and reported."""

import pytest

from slices import services
from slices.errors import InvalidRequest, QuotaExceeded
from slices.models import VM, Slice, UserQuota

from .helpers import HOSTILE_NAMES


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_names_refused_with_400_everywhere(api, designed, flavor, image, name):
    s, vm = designed["slice"], designed["vms"]["vm1"]
    attempts = {
        "slice create": api.post("/api/slices/", {"name": name}, format="json"),
        "slice rename": api.patch(f"/api/slices/{s.pk}/", {"name": name}, format="json"),
        "vm create": api.post("/api/vms/", {"slice": s.pk, "name": name}, format="json"),
        "vm rename": api.patch(f"/api/vms/{vm.pk}/", {"name": name}, format="json"),
        "template": api.post(
            "/api/slices/from-template/", {"name": name, "topology": "ring", "count": 3}, format="json"
        ),
        "import": api.post("/api/slices/import/", {"name": name, "vms": []}, format="json"),
        "import vm": api.post("/api/slices/import/", {"name": "ok", "vms": [{"name": name}]}, format="json"),
    }
    for what, r in attempts.items():
        assert r.status_code == 400, (what, r.json())
    assert set(Slice.objects.values_list("name", flat=True)) == {"lab"}
    assert set(VM.objects.values_list("name", flat=True)) == {"vm1", "vm2", "vm3", "vm4"}


@pytest.mark.parametrize("name", ["a;rm -rf /", "vm1\n", "x" * 33])
def test_services_refuse_hostile_names_too(user, designed, name):
    with pytest.raises(InvalidRequest, match="Invalid slice name"):
        services.slice_create(owner=user, name=name)
    with pytest.raises(InvalidRequest, match="Invalid VM name"):
        services.vm_create(slice_obj=designed["slice"], name=name)
    with pytest.raises(InvalidRequest, match="Invalid VM name"):
        services.vm_update(vm=designed["vms"]["vm1"], name=name)


def test_name_error_explains_the_rule(api):
    r = api.post("/api/slices/", {"name": "$(id)"}, format="json")
    assert "a letter first, then letters, digits, '-' or '_'" in str(r.json()["errors"]["name"])


def test_bad_coordinates_and_counts(api, designed):
    vm = designed["vms"]["vm3"]
    for payload in (
        {"x": "NaN"},
        {"x": "Infinity"},
        {"y": 1e12},
        {"data_interfaces_count": 17},
        {"data_interfaces_count": -1},
    ):
        r = api.patch(f"/api/vms/{vm.pk}/", payload, format="json")
        assert r.status_code == 400, payload


# --- quotas ------------------------------------------------------------------------------


def test_me_reports_quota_and_usage(api, user, designed, settings):
    body = api.get("/api/me/").json()
    assert body["username"] == "alice" and body["is_staff"] is False
    assert body["quota"] == {
        "vms": settings.SLICE_QUOTA_VMS,
        "vcpus": settings.SLICE_QUOTA_VCPUS,
        "ram_mib": settings.SLICE_QUOTA_RAM_MIB,
    }
    assert body["usage"] == {"vms": 4, "vcpus": 4, "ram_mib": 4 * 128}
    UserQuota.objects.create(user=user, max_vms=5, max_ram_mib=None)
    body = api.get("/api/me/").json()
    assert body["quota"]["vms"] == 5
    assert body["quota"]["ram_mib"] == settings.SLICE_QUOTA_RAM_MIB  # empty field: the default


def test_quota_defaults_come_from_settings(api, settings, flavor, image):
    settings.SLICE_QUOTA_VMS = 1
    s = api.post("/api/slices/", {"name": "q"}, format="json").json()
    assert api.post("/api/vms/", {"slice": s["id"], "name": "a"}, format="json").status_code == 201
    r = api.post("/api/vms/", {"slice": s["id"], "name": "b"}, format="json")
    assert r.status_code == 403
    assert r.json()["code"] == "quota_exceeded"
    assert r.json()["detail"] == "Quota exceeded: this needs 2 VMs, your limit is 1 (in use: 1)."


def test_vcpu_and_ram_quotas(api, user, designed):
    from inventory.models import Flavor

    UserQuota.objects.create(user=user, max_vcpus=6, max_ram_mib=1024)
    s = designed["slice"]
    medium = Flavor.objects.get(name="medium")  # 2 vCPU, 2048 MiB
    r = api.post("/api/vms/", {"slice": s.pk, "name": "m", "flavor": medium.pk}, format="json")
    assert r.status_code == 403
    assert "MiB of RAM" in r.json()["detail"]
    small = Flavor.objects.get(name="small")  # 1 vCPU, 512 MiB: 4*128 + 512 = 1024 fits
    r = api.post("/api/vms/", {"slice": s.pk, "name": "s", "flavor": small.pk}, format="json")
    assert r.status_code == 201
    vm = designed["vms"]["vm1"]  # growing a VM counts too
    r = api.patch(f"/api/vms/{vm.pk}/", {"flavor": small.pk}, format="json")
    assert r.status_code == 403 and "MiB of RAM" in r.json()["detail"]
    UserQuota.objects.filter(user=user).update(max_ram_mib=None, max_vcpus=5)
    r = api.patch(f"/api/vms/{vm.pk}/", {"flavor": medium.pk}, format="json")
    assert r.status_code == 403 and "vCPUs" in r.json()["detail"]


def test_template_quota_checked_before_anything_is_made(api, user, flavor, image):
    UserQuota.objects.create(user=user, max_vms=4)
    r = api.post("/api/slices/from-template/", {"name": "big", "topology": "ring", "count": 5}, format="json")
    assert r.status_code == 403
    assert "this needs 5 VMs, your limit is 4" in r.json()["detail"]
    assert not Slice.objects.exists()


def test_quota_is_per_owner(user, other_user, make_slice):
    UserQuota.objects.create(user=user, max_vms=1)
    make_slice(other_user, vms=3)
    s = make_slice(user, vms=1)
    with pytest.raises(QuotaExceeded):
        services.vm_create(slice_obj=s, name="vm2")
