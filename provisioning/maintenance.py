"""Host maintenance: drain a worker (no new placements, what runs there keeps running) and undrain it.

``manage.py hosts drain|undrain NAME`` and the Hosts admin call these; both show
what still runs on the host (:func:`residents`), so an operator knows when it is
empty and can be taken down.
"""

from __future__ import annotations

from dataclasses import dataclass

from audit.log import record as audit
from audit.models import AuditEvent
from inventory.models import Host
from slices.models import VM, Slice


@dataclass(frozen=True)
class Resident:
    """A VM of a deployed (or deploying) slice on a host."""

    vm: str
    slice: str
    owner: str
    status: str
    pinned: bool


def residents(*, host: Host) -> list[Resident]:
    """The VMs of non-draft slices on ``host``: what a drain leaves running there."""
    vms = (
        VM.objects.filter(host=host)
        .exclude(slice__status=Slice.Status.DRAFT)
        .select_related("slice__owner")
        .order_by("slice__name", "name")
    )
    return [
        Resident(
            vm=vm.name,
            slice=vm.slice.name,
            owner=vm.slice.owner.get_username(),
            status=vm.status,
            pinned=vm.pinned,
        )
        for vm in vms
    ]


def set_drained(*, host: Host, drained: bool) -> bool:
    """Drain (or undrain) ``host``; says whether its state changed. Idempotent."""
    changed = Host.objects.filter(pk=host.pk).exclude(drained=drained).update(drained=drained)
    host.drained = drained
    if changed:
        audit(AuditEvent.Action.HOST_DRAIN, host=host.name, detail="drained" if drained else "undrained")
    return bool(changed)


def describe(*, host: Host) -> str:
    """One line per VM still on ``host`` (or that nothing runs there)."""
    rows = residents(host=host)
    if not rows:
        return f"Nothing runs on {host.name}."
    lines = [f"{len(rows)} VM(s) still run on {host.name}:"]
    lines += [f"  {r.slice}/{r.vm} ({r.owner}, {r.status}{', pinned' if r.pinned else ''})" for r in rows]
    return "\n".join(lines)
