"""Fixtures of the slice core tests: clients per role, a designed slice, VLAN settings."""

import pytest
from rest_framework.test import APIClient

from slices import services
from slices.models import VM


@pytest.fixture
def client_for():
    """An API client authenticated as ``user`` (None: anonymous)."""

    def make(user=None):
        client = APIClient()
        if user is not None:
            client.force_authenticate(user)
        return client

    return make


@pytest.fixture
def other_api(client_for, other_user):
    return client_for(other_user)


@pytest.fixture
def staff_api(client_for, staff_user):
    return client_for(staff_user)


@pytest.fixture
def anon_api(client_for):
    return client_for(None)


@pytest.fixture
def designed(user, make_slice):
    """Alice's slice ``lab`` with vm1..vm4 (2 data interfaces each) and one link vm1.eth1 <-> vm2.eth1."""
    slice_obj = make_slice(user, name="lab", vms=4, data=2)
    vms = {vm.name: vm for vm in VM.objects.filter(slice=slice_obj)}
    link = services.link_connect(slice_obj=slice_obj, vm_a=vms["vm1"], vm_b=vms["vm2"], iface_a="eth1", iface_b="eth1")
    return {"slice": slice_obj, "vms": vms, "link": link}


@pytest.fixture
def vlan_range(settings):
    """Set the global VLAN range for one test."""

    def set_range(low: int, high: int) -> None:
        settings.SLICE_VLAN_MIN = low
        settings.SLICE_VLAN_MAX = high

    return set_range
