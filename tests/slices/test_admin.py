"""The Django admin of the design domain: pages, services behind forms, names refused."""

import pytest
from django.contrib import admin
from django.test import Client, RequestFactory

from slices.models import VM, Interface, Link, Slice, SliceVlan, UserQuota

from .helpers import HOSTILE_NAMES


@pytest.fixture
def root(make_user):
    return make_user("root", is_staff=True, is_superuser=True)


@pytest.fixture
def admin_client(root):
    client = Client()
    client.force_login(root)
    return client


def _form_class(model, root, obj=None):
    request = RequestFactory().get("/admin/")
    request.user = root
    return admin.site._registry[model].get_form(request, obj)


@pytest.mark.parametrize("model", [Slice, VM, Interface, Link, SliceVlan, UserQuota])
def test_every_model_is_registered_with_working_pages(admin_client, designed, user, model):
    UserQuota.objects.create(user=user, max_vms=3)
    name = model._meta.model_name
    r = admin_client.get(f"/admin/slices/{name}/")
    assert r.status_code == 200
    r = admin_client.get(f"/admin/slices/{name}/?q=vm1")
    assert r.status_code == 200
    obj = model.objects.first()
    assert admin_client.get(f"/admin/slices/{name}/{obj.pk}/change/").status_code == 200


def test_slice_page_shows_vms_links_and_pool_read_only(admin_client, designed):
    r = admin_client.get(f"/admin/slices/slice/{designed['slice'].pk}/change/")
    html = r.content.decode()
    assert "vm1" in html and "10.64.100.0/24" in html
    assert '<div class="readonly">100</div>' in html  # the VLANs the slice holds
    assert 'name="links-0-vlan"' not in html  # allocated, not editable


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_admin_forms_refuse_hostile_names(root, user, designed, flavor, image, name):
    form = _form_class(Slice, root)(data={"owner": user.pk, "name": name, "description": ""})
    assert not form.is_valid()
    assert "name" in form.errors
    vm = designed["vms"]["vm1"]
    data = {
        "slice": designed["slice"].pk,
        "name": name,
        "flavor": flavor.pk,
        "image": image.pk,
        "data_interfaces_count": 1,
        "x": 0,
        "y": 0,
    }
    form = _form_class(VM, root)(data=data)
    assert not form.is_valid()
    assert "name" in form.errors
    form = _form_class(VM, root, vm)(data={**data, "data_interfaces_count": 2}, instance=vm)
    assert not form.is_valid()
    assert "name" in form.errors
    assert VM.objects.get(pk=vm.pk).name == "vm1"


def test_admin_adds_a_vm_through_the_service(admin_client, designed, flavor, image):
    r = admin_client.post(
        "/admin/slices/vm/add/",
        {
            "slice": designed["slice"].pk,
            "name": "opsvm",
            "flavor": flavor.pk,
            "image": image.pk,
            "data_interfaces_count": 2,
            "internet_enabled": "on",
            "x": 0,
            "y": 0,
            "interfaces-TOTAL_FORMS": 0,
            "interfaces-INITIAL_FORMS": 0,
        },
    )
    assert r.status_code == 302, r.content.decode()[:2000]
    vm = VM.objects.get(name="opsvm")
    assert [(i.name, i.vlan) for i in vm.interfaces.all()] == [("eth0", 400), ("eth1", None), ("eth2", None)]


def test_admin_shows_service_refusals_as_form_errors(root, designed, flavor, image):
    vm = designed["vms"]["vm1"]  # eth1 is linked
    data = {
        "slice": designed["slice"].pk,
        "name": "vm1",
        "flavor": flavor.pk,
        "image": image.pk,
        "data_interfaces_count": 0,
        "x": 0,
        "y": 0,
    }
    form = _form_class(VM, root, vm)(data=data, instance=vm)
    assert not form.is_valid()
    assert "eth1 carries a link" in str(form.errors["data_interfaces_count"])
    assert vm.interfaces.count() == 3  # the dry run left nothing behind


def test_admin_deleting_a_link_returns_its_vlan(admin_client, designed):
    link = designed["link"]
    r = admin_client.post(f"/admin/slices/link/{link.pk}/delete/", {"post": "yes"})
    assert r.status_code == 302
    assert not Link.objects.exists()
    assert not Interface.objects.exclude(vlan=None).exists()


def test_admin_cannot_delete_a_deployed_slice(admin_client, designed):
    Slice.objects.filter(pk=designed["slice"].pk).update(status=Slice.Status.ACTIVE)
    r = admin_client.post(f"/admin/slices/slice/{designed['slice'].pk}/delete/", {"post": "yes"})
    assert r.status_code == 403
    assert Slice.objects.filter(pk=designed["slice"].pk).exists()


def test_admin_edits_a_user_quota(admin_client, user, api):
    r = admin_client.post(
        "/admin/slices/userquota/add/", {"user": user.pk, "max_vms": 2, "max_vcpus": "", "max_ram_mib": ""}
    )
    assert r.status_code == 302
    assert api.get("/api/me/").json()["quota"]["vms"] == 2


def test_the_quota_list_shows_what_each_user_uses_of_the_limit(admin_client, designed):
    """Quota use per user (issue 17): the designed slice's VMs beside the user's limits."""
    owner = designed["slice"].owner
    UserQuota.objects.create(user=owner, max_vms=10)
    used = VM.objects.filter(slice__owner=owner).count()
    page = admin_client.get("/admin/slices/userquota/").content.decode()
    assert f"{used} / 10 VMs" in page and "vCPUs" in page and "MiB" in page


def test_allocations_are_read_only_in_the_admin(admin_client, designed):
    link = designed["link"]
    r = admin_client.post(f"/admin/slices/link/{link.pk}/change/", {"vlan": 3000})
    assert r.status_code == 403
    assert Link.objects.get(pk=link.pk).vlan == 100
    assert admin_client.get("/admin/slices/slicevlan/add/").status_code == 403
    assert admin_client.get("/admin/slices/interface/add/").status_code == 403
