"""VLAN 400 addresses through the job lifecycle: taken by a deploy request, in the spec, released after
a job that succeeded without them (never by a dry run, a failure or a design change alone)."""

import pytest

from provisioning import lifecycle, services, specs
from slices import services as slice_services
from slices.models import VM, Interface, InternetAddress

pytestmark = pytest.mark.django_db


def run_ok(deployment):
    assert deployment.claim(worker="here:1")
    lifecycle.on_started(deployment)
    lifecycle.on_succeeded(deployment, spec=specs.spec_of(deployment))


def held(slice_obj):
    return dict(InternetAddress.objects.filter(slice=slice_obj).values_list("mac", "address"))


def test_deploy_reserves_redeploy_keeps_or_releases_destroy_releases(inventory, user, make_slice, rq_queue):
    s = make_slice(user, vms=2, data=0, internet=True)
    dry = services.deploy_request(slice_obj=s, user=user, dry_run=True)
    assert held(s) == {} and len(specs.spec_of(dry).internet_reservations) == 2  # shown, not taken
    run_ok(dry)
    dep = services.deploy_request(slice_obj=s, user=user)
    addresses = held(s)
    assert sorted(addresses.values()) == ["10.60.7.10", "10.60.7.11"]
    spec = specs.spec_of(dep)
    assert dict(spec.internet_reservations) == addresses
    assert {n.mac: n.address for vm in spec.vms for n in vm.nics if n.vlan == 400} == addresses
    run_ok(dep)
    assert held(s) == addresses

    vm2 = VM.objects.get(slice=s, name="vm2")
    vm2_mac = Interface.objects.get(vm=vm2, index=0).mac
    slice_services.vm_update(vm=vm2, internet_enabled=False)
    redeploy = services.redeploy_request(slice_obj=s, user=user)
    assert held(s) == addresses  # still on the hosts until the job removed it
    assert vm2_mac not in dict(specs.spec_of(redeploy).internet_reservations)
    run_ok(redeploy)
    assert held(s) == {mac: a for mac, a in addresses.items() if mac != vm2_mac}

    destroy = services.destroy_request(slice_obj=s, user=user)
    run_ok(destroy)
    assert held(s) == {} and not Interface.objects.filter(vm__slice=s, ip_address__isnull=False).exists()


def test_a_failed_job_releases_nothing(inventory, user, make_slice, rq_queue):
    s = make_slice(user, vms=1, data=0, internet=True)
    run_ok(services.deploy_request(slice_obj=s, user=user))
    addresses = held(s)
    destroy = services.destroy_request(slice_obj=s, user=user)
    destroy.claim(worker="here:1")
    lifecycle.on_started(destroy)
    lifecycle.on_failed(destroy, "netnode: step 'Stop dnsmasq of VLAN 400' failed")
    assert held(s) == addresses  # the hosts may still hold them
