"""System checks of the slice settings (run by ``manage.py check`` and at start-up).

A wrong VLAN range or link supernet would otherwise show up only as odd
allocations or overlapping subnets on the hosts, long after the fact.
"""

from django.conf import settings
from django.core.checks import Error, register

from . import ipam
from .models import VLAN_ID_MAX, VLAN_ID_MIN


@register()
def check_slice_settings(app_configs, **kwargs) -> list[Error]:
    """The VLAN range lies in 1..4094 and the supernet fits."""
    errors = []
    low, high = settings.SLICE_VLAN_MIN, settings.SLICE_VLAN_MAX
    if not VLAN_ID_MIN <= low <= high <= VLAN_ID_MAX:
        errors.append(
            Error(
                f"SLICE_VLAN_MIN..SLICE_VLAN_MAX ({low}..{high}) must lie within {VLAN_ID_MIN}..{VLAN_ID_MAX}.",
                id="slices.E001",
            )
        )
    try:
        ipam.check_supernet(settings.SLICE_LINK_SUPERNET, high)
    except ValueError as exc:
        errors.append(Error(str(exc), id="slices.E003"))
    return errors
