"""Cloud-init VMs end to end without hosts: seed inputs fixed at the first deploy, the VM card's API, the password."""

import pytest
import yaml
from rest_framework.test import APIClient

from inventory.models import Image
from provisioning import services, specs
from provisioning.models import Deployment
from provisioning.plans import SliceSpec
from provisioning.plans.seed import nocloud_seed
from slices import services as slice_services
from slices import sshkeys
from slices.models import VM, Slice

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMomW5BjmH3yiiOaJlVQyOnN5me5ajZnzTDyRaYl8GWG alice@laptop"
KEY2 = (
    "ecdsa-sha2-nistp384 AAAAE2VjZHNhLXNoYTItbmlzdHAzODQAAAAIbmlzdHAzODQAAABhBBuoOR6N31Og6o0IM3aLhT9/RWVgU1krpAm4"
    "qd7CySdQZxntdeh/FceZsISpSoNMYm/0+RC/2eebbCyLreW0GYenIvKNbsrycKbseGgwzZyYAtkEnkxEtYe+z0JeemwGRg== later"
)


@pytest.fixture
def debian(db):
    return Image.objects.create(
        name="debian12",
        kind=Image.Kind.DISK,
        disk_path="/images/debian12.qcow2",
        cloud_init=True,
        default_user="debian",
    )


@pytest.fixture
def cloud_slice(inventory, user, make_slice, debian):
    """vm1 (internet) and vm2 linked on eth1, both Debian, vm1 on worker1 and vm2 on worker2."""
    sshkeys.key_add(owner=user, public_key=KEY)
    s = make_slice(user, vms=2, data=1, internet=False)
    vm1, vm2 = VM.objects.filter(slice=s).order_by("name")
    slice_services.vm_update(vm=vm1, internet_enabled=True)
    VM.objects.filter(slice=s).update(image=debian)
    VM.objects.filter(pk=vm1.pk).update(host=inventory["workers"][0])
    VM.objects.filter(pk=vm2.pk).update(host=inventory["workers"][1])
    slice_services.link_connect(slice_obj=s, vm_a=vm1, vm_b=vm2)
    return s


def _seeds(dep: Deployment) -> dict[str, dict[str, str]]:
    spec = SliceSpec.from_dict(dep.spec)
    return {vm.name: nocloud_seed(vm) for vm in spec.vms}


def _finish(dep: Deployment, slice_obj: Slice, status: str = "active") -> None:
    Deployment.objects.filter(pk=dep.pk).update(status=Deployment.Status.SUCCEEDED)
    Slice.objects.filter(pk=slice_obj.pk).update(status=status)


def test_first_deploy_fixes_keys_and_password_and_a_redeploy_changes_no_seed(
    cloud_slice, user, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        first = services.deploy_request(slice_obj=cloud_slice, user=user)
    seeds = _seeds(first)
    vm1 = VM.objects.get(slice=cloud_slice, name="vm1")
    assert len(vm1.console_password) == 16 and vm1.console_password_hash.startswith("$6$")
    user_data = yaml.safe_load(seeds["vm1"]["user-data"])
    assert user_data["users"][0]["ssh_authorized_keys"] == [KEY]
    assert user_data["users"][0]["hashed_passwd"] == vm1.console_password_hash
    assert vm1.console_password not in str(first.spec)  # only its hash travels in plans and step logs
    assert yaml.safe_load(seeds["vm2"]["meta-data"]) == {
        "instance-id": specs.instance_id(VM.objects.get(slice=cloud_slice, name="vm2").pk),
        "local-hostname": "vm2",
    }
    _finish(first, cloud_slice)
    # A key added later: the running VMs' seeds stay as they were (nothing rebuilt on redeploy).
    sshkeys.key_add(owner=user, public_key=KEY2)
    with django_capture_on_commit_callbacks(execute=False):
        second = services.redeploy_request(slice_obj=cloud_slice, user=user)
    assert _seeds(second) == seeds
    # A new VM gets every key of now.
    _finish(second, cloud_slice)
    vm3 = slice_services.vm_create(slice_obj=cloud_slice, name="vm3", data_interfaces_count=0)
    VM.objects.filter(pk=vm3.pk).update(image=vm1.image, host=vm1.host)
    with django_capture_on_commit_callbacks(execute=False):
        third = services.redeploy_request(slice_obj=cloud_slice, user=user)
    new = _seeds(third)
    assert new["vm1"] == seeds["vm1"]
    assert yaml.safe_load(new["vm3"]["user-data"])["users"][0]["ssh_authorized_keys"] == [KEY, KEY2]


def test_a_destroy_forgets_what_the_guests_received(cloud_slice, user):
    VM.objects.filter(slice=cloud_slice).update(seed_keys=[], console_password="x", console_password_hash="y")
    VM.objects.filter(slice=cloud_slice).mark_designed()
    assert set(VM.objects.filter(slice=cloud_slice).values_list("seed_keys", "console_password")) == {(None, "")}


def test_vm_card_api_and_console_password_for_the_owner_only(
    cloud_slice, user, api, staff_user, django_capture_on_commit_callbacks
):
    vm1 = VM.objects.get(slice=cloud_slice, name="vm1")
    vm2 = VM.objects.get(slice=cloud_slice, name="vm2")
    guest = api.get(f"/api/vms/{vm2.pk}/").json()["guest"]
    assert guest["user"] == "debian" and guest["keys"] is None and guest["has_console_password"] is False
    assert api.get(f"/api/vms/{vm2.pk}/console-password/").status_code == 409
    with django_capture_on_commit_callbacks(execute=False):
        services.deploy_request(slice_obj=cloud_slice, user=user)
    guest = api.get(f"/api/vms/{vm1.pk}/").json()["guest"]
    eth1 = vm1.interfaces.get(index=1)
    assert guest["addresses"][0]["interface"] == "eth0" and guest["addresses"][0]["vlan"] == 400
    assert guest["addresses"][1] == {"interface": "eth1", "vlan": eth1.vlan, "address": eth1.ip_address}
    assert guest["ssh"] == f"ip netns exec ns-dhcp-vlan{eth1.vlan} ssh debian@{eth1.ip_address}"
    assert guest["keys"] == [
        {"name": "alice@laptop", "fingerprint": "SHA256:H2XIj494jfpMbN+c9AUI0MyT82cznxBA3muHJMcThck"}
    ]
    r = api.get(f"/api/vms/{vm1.pk}/console-password/")
    vm1.refresh_from_db()
    assert r.status_code == 200 and r.json() == {"user": "debian", "password": vm1.console_password}
    assert r["Cache-Control"] == "no-store"
    assert vm1.console_password not in str(api.get(f"/api/vms/{vm1.pk}/").json())
    staff = APIClient()
    staff.force_authenticate(staff_user)
    assert staff.get(f"/api/vms/{vm1.pk}/console-password/").status_code == 403


def test_a_plain_image_has_no_guest_card(inventory, user, make_slice, api):
    s = make_slice(user, vms=1)
    vm = VM.objects.get(slice=s)
    assert api.get(f"/api/vms/{vm.pk}/").json()["guest"] is None
    assert api.get(f"/api/vms/{vm.pk}/console-password/").status_code == 409


def test_images_api_shows_cloud_init(debian, api):
    rows = {row["name"]: row for row in api.get("/api/images/").json()["results"]}
    assert rows["debian12"]["cloud_init"] is True and rows["debian12"]["default_user"] == "debian"
