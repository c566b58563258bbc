"""Fixed VLAN 400 addresses (slices.internet): unique across slices, kept while deployed, released after."""

import ipaddress
import threading

import pytest
from django.db import IntegrityError, connection, connections, transaction

from slices import internet, services
from slices.errors import Conflict
from slices.ipam import INTERNET_SUBNET
from slices.models import Interface, InternetAddress

pytestmark = pytest.mark.django_db


def eth0(slice_obj, name="vm1"):
    return Interface.objects.get(vm__slice=slice_obj, vm__name=name, index=0)


def test_fifty_internet_vms_across_slices_get_distinct_reserved_addresses_and_destroy_releases_them(
    user, other_user, make_slice
):
    slices = [make_slice(owner, vms=5, data=0, internet=True) for owner in (user, other_user) for _ in range(5)]
    got = {}
    for s in slices:
        addresses = internet.reserve_addresses(slice_obj=s)
        assert len(addresses) == 5
        got |= addresses
    assert len(got) == 50 and len(set(got.values())) == 50
    for address in got.values():
        ip = ipaddress.IPv4Address(address)
        assert ip in INTERNET_SUBNET and 10 <= int(ip) - int(INTERNET_SUBNET.network_address) <= 250
    # the API and admin show them: eth0's reserved address
    assert eth0(slices[0]).ip_address == got[eth0(slices[0]).mac]
    # asking again (a redeploy) keeps every address
    again = internet.reserve_addresses(slice_obj=slices[0])
    assert len(again) == 5 and all(got[mac] == address for mac, address in again.items())
    assert InternetAddress.objects.count() == 50
    # destroy of every slice releases its addresses
    for s in slices:
        assert internet.release_addresses(slice_id=s.pk) == 5
    assert InternetAddress.objects.count() == 0
    assert not Interface.objects.filter(index=0, ip_address__isnull=False).exists()


def test_the_database_refuses_one_address_for_two_nics(user, make_slice):
    a, b = make_slice(user, vms=1, data=0, internet=True), make_slice(user, vms=1, data=0, internet=True)
    (address,) = internet.reserve_addresses(slice_obj=a).values()
    with pytest.raises(IntegrityError), transaction.atomic():
        InternetAddress.objects.create(slice=b, mac=eth0(b).mac, address=address)


def test_released_addresses_are_reused_lowest_first_and_a_dry_run_takes_nothing(user, make_slice):
    a, b = make_slice(user, vms=2, data=0, internet=True), make_slice(user, vms=1, data=0, internet=True)
    first = internet.reserve_addresses(slice_obj=a)
    assert sorted(first.values()) == ["10.60.7.10", "10.60.7.11"]
    assert internet.reserve_addresses(slice_obj=b, save=False) == {eth0(b).mac: "10.60.7.12"}
    assert not InternetAddress.objects.filter(slice=b).exists() and eth0(b).ip_address is None
    internet.release_addresses(slice_id=a.pk, keep=[eth0(a, "vm2").mac])  # vm1 left VLAN 400
    assert internet.reserve_addresses(slice_obj=b) == {eth0(b).mac: first[eth0(a, "vm1").mac]}


def test_designing_alone_releases_nothing(user, make_slice):
    """A VM whose internet is turned off keeps its address until a job removed it from the hosts."""
    s = make_slice(user, vms=1, data=0, internet=True)
    vm = s.vms.get()
    internet.reserve_addresses(slice_obj=s)
    services.vm_update(vm=vm, internet_enabled=False)
    assert InternetAddress.objects.filter(slice=s).count() == 1
    assert internet.reserve_addresses(slice_obj=s) == {}  # no longer in the design (not in the next spec)


def test_an_exhausted_range_is_a_clear_conflict(user, make_slice):
    s = make_slice(user, vms=1, data=0, internet=True)
    other = make_slice(user, vms=0)
    InternetAddress.objects.bulk_create(
        InternetAddress(slice=other, mac=f"52:54:00:ff:00:{n:02x}", address=str(INTERNET_SUBNET.network_address + n))
        for n in range(10, 251)
    )
    with pytest.raises(Conflict) as caught:
        internet.reserve_addresses(slice_obj=s)
    assert caught.value.code == "internet_full"


@pytest.mark.slow
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrency needs PostgreSQL")
def test_slices_deploying_at_once_never_share_an_address(user, make_slice):
    slices = [make_slice(user, vms=3, data=0, internet=True) for _ in range(8)]
    barrier = threading.Barrier(len(slices))
    results: dict[int, object] = {}

    def reserve(s):
        try:
            barrier.wait(timeout=30)
            with transaction.atomic():
                results[s.pk] = internet.reserve_addresses(slice_obj=s)
        except Exception as exc:  # reported below
            results[s.pk] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=reserve, args=(s,)) for s in slices]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert all(isinstance(r, dict) for r in results.values()), results
    addresses = [a for r in results.values() for a in r.values()]
    assert len(addresses) == 24 and len(set(addresses)) == 24
