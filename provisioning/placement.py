"""Placement: choose a worker for every VM that has none.

Rules (pure, in :func:`place`):

- only enabled workers that are not drained for maintenance; a VM goes where
  its vCPUs and RAM fit in what is free;
- biggest VMs first (RAM, then vCPUs, then name), each onto the worker that is
  left with the most free capacity (the sum of its free vCPU and RAM shares),
  ties broken by worker name: load spreads and the result is deterministic;
- a VM that fits nowhere stops the placement with an error naming the VM, its
  size, every worker's free capacity *before this slice* (not after the slice's
  own VMs placed so far, which would read "0 free" on a worker that had room)
  and what the whole slice needs.

"Used" capacity counts the VMs already on a worker: those of slices that are not
drafts (deployed or on their way) and the pinned or placed VMs of the slice at
hand. :func:`place_slice` is the ORM side; with ``save`` it stores the choice on
``VM.host`` (done by the deploy request, under row locks); the placement API
calls it without saving, to show the choice before a deploy.

A VM keeps its host when it is pinned (``VM.pinned``: a user or an operator chose
it) or when it is deployed there (a redeploy never moves a running VM, also off
a drained worker). A placed host on a VM back in design is stale (a destroy
forgets it) and is chosen again. A pin on a disabled worker, or a designed VM
pinned to a drained one, is refused with an error naming the pin.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from django.db.models import Sum

from inventory.models import Host
from slices.errors import Conflict
from slices.models import VM, Slice


@dataclass(frozen=True)
class Capacity:
    """A worker's capacity and what is already used of it."""

    name: str
    vcpus: int
    ram_mib: int
    used_vcpus: int = 0
    used_ram_mib: int = 0
    drained: bool = False

    @property
    def free_vcpus(self) -> int:
        return self.vcpus - self.used_vcpus

    @property
    def free_ram_mib(self) -> int:
        return self.ram_mib - self.used_ram_mib

    def fits(self, vcpus: int, ram_mib: int) -> bool:
        return vcpus <= self.free_vcpus and ram_mib <= self.free_ram_mib

    def plus(self, vcpus: int, ram_mib: int) -> Capacity:
        return Capacity(
            self.name, self.vcpus, self.ram_mib, self.used_vcpus + vcpus, self.used_ram_mib + ram_mib, self.drained
        )

    def free_score(self) -> float:
        """Free share of vCPUs plus free share of RAM (higher = emptier)."""
        cpu = self.free_vcpus / self.vcpus if self.vcpus else 0.0
        ram = self.free_ram_mib / self.ram_mib if self.ram_mib else 0.0
        return cpu + ram


@dataclass(frozen=True)
class Demand:
    """A VM to place."""

    id: int
    name: str
    vcpus: int
    ram_mib: int


class PlacementError(Conflict):
    """Some VM fits on no enabled worker (409)."""

    code = "no_capacity"


def _describe(workers: Sequence[Capacity]) -> str:
    if not workers:
        return "there is no enabled worker"
    return "; ".join(
        f"{w.name} is drained for maintenance"
        if w.drained
        else f"{w.name} has {w.free_vcpus} vCPU and {w.free_ram_mib} MiB free"
        for w in workers
    )


def place(
    demands: Sequence[Demand],
    workers: Sequence[Capacity],
    *,
    before: Sequence[Capacity] | None = None,
    needs: tuple[int, int] | None = None,
) -> tuple[dict[int, str], list[Capacity]]:
    """Choose a worker for each demand; returns ({vm id: worker name}, capacities after placement).

    The error reports ``before`` (default ``workers``: what was free before this
    slice) and ``needs`` (default: the demands' sum; vCPUs, MiB of the whole slice).
    """
    state = {w.name: w for w in sorted(workers, key=lambda w: w.name)}
    chosen: dict[int, str] = {}
    for vm in sorted(demands, key=lambda d: (-d.ram_mib, -d.vcpus, d.name, d.id)):
        candidates = [w for w in state.values() if not w.drained and w.fits(vm.vcpus, vm.ram_mib)]
        if not candidates:
            vcpus, ram_mib = needs or (sum(d.vcpus for d in demands), sum(d.ram_mib for d in demands))
            free = sorted(workers if before is None else before, key=lambda w: w.name)
            raise PlacementError(
                f"VM {vm.name!r} ({vm.vcpus} vCPU, {vm.ram_mib} MiB) fits on no enabled worker. "
                f"Free before this slice: {_describe(free)}. "
                f"This slice needs {vcpus} vCPU and {ram_mib} MiB in all."
            )
        best = min(candidates, key=lambda w: (-w.plus(vm.vcpus, vm.ram_mib).free_score(), w.name))
        state[best.name] = best.plus(vm.vcpus, vm.ram_mib)
        chosen[vm.id] = best.name
    return chosen, list(state.values())


# --- ORM side -------------------------------------------------------------------------------


def worker_capacities(*, exclude_slice_id: int | None = None) -> list[Capacity]:
    """Enabled workers (drained ones flagged) with what the VMs of non-draft slices (but the one excluded) use."""
    workers = list(Host.objects.filter(role=Host.Role.WORKER, enabled=True).order_by("name"))
    used_q = VM.objects.filter(host__in=workers).exclude(slice__status=Slice.Status.DRAFT)
    if exclude_slice_id is not None:
        used_q = used_q.exclude(slice_id=exclude_slice_id)
    used = {
        row["host"]: row
        for row in used_q.values("host").annotate(vcpus=Sum("flavor__vcpus"), ram=Sum("flavor__ram_mib"))
    }
    return [
        Capacity(
            w.name,
            w.vcpus,
            w.ram_mib,
            (used.get(w.pk) or {}).get("vcpus") or 0,
            (used.get(w.pk) or {}).get("ram") or 0,
            w.drained,
        )
        for w in workers
    ]


def _keeps_host(vm: VM) -> bool:
    """Whether ``vm`` stays on its host (pinned, or deployed there); raises if that host cannot take it."""
    if vm.host_id is None or not (vm.pinned or vm.status != VM.Status.DESIGNED):
        return False
    host = vm.host
    if vm.pinned:
        if not host.enabled or host.role != Host.Role.WORKER:
            raise PlacementError(
                f"VM {vm.name!r} is pinned to {host.name!r} (its host was chosen by hand), which is not an "
                "enabled worker: choose another host for it or clear its host to let placement choose.",
                code="host_disabled",
            )
        if host.drained and vm.status == VM.Status.DESIGNED:
            raise PlacementError(
                f"VM {vm.name!r} is pinned to {host.name!r} (its host was chosen by hand), which is drained "
                "for maintenance: choose another host for it or clear its host to let placement choose.",
                code="host_drained",
            )
    elif not host.enabled:
        raise PlacementError(
            f"VM {vm.name!r} is deployed on {host.name!r}, which is disabled: destroy the slice "
            "(its VMs are placed again at the next deploy) or enable the host.",
            code="host_disabled",
        )
    return True


@dataclass(frozen=True)
class SlicePlacement:
    """Where each VM of a slice goes. ``new``: VM ids placed now (not yet stored)."""

    hosts: Mapping[int, Host]
    new: frozenset[int]
    workers: list[Capacity]


def place_slice(*, slice_obj, save: bool) -> SlicePlacement:
    """Place the slice's unplaced VMs; with ``save``, store the choice on the VMs.

    With ``save`` the caller holds a transaction: enabled workers are locked
    (``select_for_update``) so two slices placed at the same time see each
    other's VMs.
    """
    if save:
        list(Host.objects.select_for_update().filter(role=Host.Role.WORKER, enabled=True).order_by("pk"))
    vms = list(VM.objects.filter(slice=slice_obj).select_related("flavor", "host").order_by("name", "id"))
    workers = worker_capacities(exclude_slice_id=slice_obj.pk)
    by_name = {w.name: w for w in workers}
    hosts: dict[int, Host] = {}
    demands = []
    for vm in vms:
        if _keeps_host(vm):
            hosts[vm.pk] = vm.host
            cap = by_name[vm.host.name]
            by_name[vm.host.name] = cap.plus(vm.flavor.vcpus, vm.flavor.ram_mib)
        else:
            demands.append(Demand(vm.pk, vm.name, vm.flavor.vcpus, vm.flavor.ram_mib))
    needs = (sum(vm.flavor.vcpus for vm in vms), sum(vm.flavor.ram_mib for vm in vms))
    chosen, after = place(demands, list(by_name.values()), before=workers, needs=needs)
    if chosen:
        host_rows = {h.name: h for h in Host.objects.filter(name__in=set(chosen.values()))}
        for vm_id, name in chosen.items():
            hosts[vm_id] = host_rows[name]
        if save:
            for vm_id, name in chosen.items():
                VM.objects.filter(pk=vm_id, pinned=False).update(host=host_rows[name])
    return SlicePlacement(hosts=hosts, new=frozenset(chosen), workers=after)
