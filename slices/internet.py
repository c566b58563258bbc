"""Fixed addresses on VLAN 400 (internet), one per internet NIC, unique across every slice.

VLAN 400 is one L2 segment shared by the internet NICs of all slices, so each NIC
gets a fixed address that its TAP's guard flows pin (docs/provisioning.md, "Port
security"). An address is:

- **taken** when a deploy or redeploy is requested (:func:`reserve_addresses`, under
  the slice's row lock): every NIC designed with internet that holds none gets the
  lowest free address of the DHCP range ``.10-.250``. The unique ``address`` column
  decides between two slices that ask at once: the loser retries with the next one.
- **released** after a job that succeeded without it (:func:`release_addresses`): a
  destroy releases every address of the slice; a redeploy those of NICs that left
  VLAN 400 or whose VM is gone. Changing the design alone releases nothing: the guest
  runs with its address until a job removes it from the hosts. A failed job releases
  nothing either (the hosts may still hold any of them).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator

from django.db import IntegrityError, transaction

from .errors import Conflict
from .ipam import DHCP_FIRST_HOST, DHCP_LAST_HOST, INTERNET_SUBNET, INTERNET_VLAN
from .models import Interface, InternetAddress


def _pool() -> Iterator[str]:
    for number in range(DHCP_FIRST_HOST, DHCP_LAST_HOST + 1):
        yield str(INTERNET_SUBNET.network_address + number)


def _wanted_macs(slice_obj) -> list[str]:
    """The MACs of the slice's NICs designed on VLAN 400 (eth0 of the VMs with internet)."""
    rows = Interface.objects.filter(vm__slice=slice_obj, vlan=INTERNET_VLAN).order_by("vm_id", "index")
    return list(rows.values_list("mac", flat=True))


def reserve_addresses(*, slice_obj, save: bool = True) -> dict[str, str]:
    """MAC -> VLAN 400 address for every internet NIC of the slice's design.

    NICs that hold an address keep it; the others get the lowest free one. ``save``
    False (a dry run, a preview) computes the same answer without taking anything.
    Raises :class:`Conflict` when the range is exhausted.
    """
    held = dict(InternetAddress.objects.filter(slice=slice_obj).values_list("mac", "address"))
    out: dict[str, str] = {}
    missing = []
    for mac in _wanted_macs(slice_obj):
        if mac in held:
            out[mac] = held[mac]
        else:
            missing.append(mac)
    if not missing:
        return out
    taken = set(InternetAddress.objects.values_list("address", flat=True))
    free = (address for address in _pool() if address not in taken)
    for mac in missing:
        while True:
            address = next(free, None)
            if address is None:
                raise Conflict(
                    f"VLAN {INTERNET_VLAN} has no free address left ({INTERNET_SUBNET}, "
                    f".{DHCP_FIRST_HOST}-.{DHCP_LAST_HOST}): destroy a slice with internet first.",
                    code="internet_full",
                )
            if not save:
                break
            try:
                with transaction.atomic():  # a savepoint: another slice may take the address meanwhile
                    InternetAddress.objects.create(slice=slice_obj, mac=mac, address=address)
                break
            except IntegrityError:
                continue
        out[mac] = address
        if save:
            Interface.objects.filter(vm__slice=slice_obj, mac=mac).update(ip_address=address)
    return out


def release_addresses(*, slice_id: int, keep: Collection[str] = ()) -> int:
    """Release the slice's addresses except those of the MACs in ``keep``; returns how many went.

    Called only after a job succeeded: the hosts hold exactly the job's spec, so an
    address that is not in it is no longer on any host.
    """
    gone = InternetAddress.objects.filter(slice_id=slice_id).exclude(mac__in=list(keep))
    macs = list(gone.values_list("mac", flat=True))
    if not macs:
        return 0
    Interface.objects.filter(vm__slice_id=slice_id, mac__in=macs, index=0).update(ip_address=None)
    count, _ = gone.delete()
    return count
