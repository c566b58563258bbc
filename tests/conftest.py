"""Shared fixtures: users, API clients and small factories."""

import itertools

import pytest
from rest_framework.test import APIClient

from inventory.models import Flavor, Host, Image
from slices import services

_counter = itertools.count(1)


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings):
    """Users are made with passwords; the real PBKDF2 costs ~0.3 s each, a test needs no such strength."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def flavor(db):
    # Created by the default-flavors migration; a transactional test's flush may have removed it.
    flavor, _ = Flavor.objects.get_or_create(
        name="tiny", defaults={"vcpus": 1, "ram_mib": 128, "disk_gib": 1, "is_default": True}
    )
    return flavor


@pytest.fixture
def image(db):
    return Image.objects.create(
        name="busybox",
        kind=Image.Kind.KERNEL,
        kernel_path="/boot/vmlinuz",
        initrd_path="/boot/initrd.img",
        is_default=True,
    )


@pytest.fixture
def make_user(db, django_user_model):
    def make(username=None, **extra):
        username = username or f"user{next(_counter)}"
        return django_user_model.objects.create_user(username=username, password="pw-" + username, **extra)

    return make


@pytest.fixture
def user(make_user):
    return make_user("alice")


@pytest.fixture
def other_user(make_user):
    return make_user("bob")


@pytest.fixture
def staff_user(make_user):
    return make_user("carol", is_staff=True)


@pytest.fixture
def api(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def make_slice(flavor, image):
    """A slice with ``vms`` VMs (vm1..vmN), each with ``data`` data interfaces."""

    def make(owner, name=None, vms=0, data=2, internet=False):
        slice_obj = services.slice_create(owner=owner, name=name or f"s{next(_counter)}")
        for i in range(1, vms + 1):
            services.vm_create(
                slice_obj=slice_obj, name=f"vm{i}", data_interfaces_count=data, internet_enabled=internet
            )
        return slice_obj

    return make


@pytest.fixture
def workers(db):
    return [
        Host.objects.create(
            name=f"worker{i}", role=Host.Role.WORKER, management_address=f"192.0.2.{10 + i}", vcpus=4, ram_mib=4096
        )
        for i in (1, 2)
    ]
