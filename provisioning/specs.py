"""From the database to plain specs (the only bridge between the ORM and the plan builders).

- :func:`build_spec`: the slice as designed now, with its VMs' workers.
- :func:`deployed_footprint`: what may be on the hosts for a slice, from the specs
  its past jobs stored (a failed job leaves an unknown part of its target behind,
  so its target is merged in: a teardown of the union removes whatever exists).
- :func:`internet_users` / :func:`netnode_users`: other slices that still need
  VLAN 400 + NAT / the network node's isolation chains, so a teardown keeps them.
- :func:`plan_for`: the one place a job's plan is built (the job and the preview call it).
- :func:`power_of`: a power job's action and VM ids (its plan acts on the deployed footprint).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import replace

from django.conf import settings
from django.db.models import Q

from inventory.models import Host
from slices import guests
from slices import internet as internet_addresses
from slices.errors import Conflict
from slices.ipam import INTERNET_VLAN
from slices.models import VM, Link, Slice
from slices.naming import tap_name

from .models import Deployment
from .plans import (
    ImageSpec,
    NetnodeSpec,
    NicSpec,
    Plan,
    PlanError,
    SeedSpec,
    SliceSpec,
    VlanSpec,
    VmSpec,
    WorkerSpec,
    apply_plan,
    destroy_plan,
    merge_specs,
    validate_spec,
)
from .plans.power import power_plan

# The placeholder accelerator shown for a worker whose KVM probe is still due.
UNPROBED_ACCEL = "tcg"


def network_node() -> Host:
    """The enabled network node (the first by name when, unusually, there are several)."""
    node = Host.objects.filter(role=Host.Role.NETWORK, enabled=True).order_by("name").first()
    if node is None:
        raise Conflict("There is no enabled network node: an operator must add one (admin: Hosts).", code="no_netnode")
    return node


def worker_spec(host: Host) -> WorkerSpec:
    return WorkerSpec(host.name, host.state_dir, host.effective_accel or UNPROBED_ACCEL)


def image_spec(image) -> ImageSpec:
    return ImageSpec(
        kind=image.kind,
        disk_path=image.disk_path if image.kind == "disk" else "",
        kernel_path=image.kernel_path if image.kind == "kernel" else "",
        initrd_path=image.initrd_path if image.kind == "kernel" else "",
        kernel_args=image.kernel_args if image.kind == "kernel" else "",
        cloud_init=image.cloud_init,
        default_user=image.default_user if image.cloud_init else "",
    )


def instance_id(vm_id: int) -> str:
    """The cloud-init instance id of a VM: stable for the VM's life (its row), unique in the installation."""
    return f"slice-portal-vm{vm_id}"


def seed_spec(vm, seeds: Mapping[int, guests.SeedInputs]) -> SeedSpec | None:
    if not vm.image.cloud_init:
        return None
    inputs = seeds.get(vm.pk)
    if inputs is None:
        raise Conflict(f"VM {vm.name!r} has no cloud-init seed inputs yet.", code="no_seed")
    return SeedSpec(instance_id(vm.pk), inputs.keys, inputs.password_hash)


def build_spec(
    *,
    slice_obj,
    hosts: Mapping[int, Host] | None = None,
    addresses: Mapping[str, str] | None = None,
    seeds: Mapping[int, guests.SeedInputs] | None = None,
) -> SliceSpec:
    """The slice as designed now. ``hosts`` maps VM id -> worker for VMs placed but not saved yet.

    ``addresses``: MAC -> VLAN 400 address of the internet NICs, as a deploy request reserved
    them (:func:`slices.internet.reserve_addresses`); None computes them without reserving
    anything (a preview). ``seeds``: VM id -> cloud-init seed inputs (:func:`slices.guests.seed_inputs`),
    None likewise.
    """
    hosts = hosts or {}
    if addresses is None:
        addresses = internet_addresses.reserve_addresses(slice_obj=slice_obj, save=False)
    if seeds is None:
        seeds = guests.seed_inputs(slice_obj=slice_obj, save=False)
    node = network_node()
    vms = list(
        VM.objects.filter(slice=slice_obj)
        .select_related("flavor", "image", "host")
        .prefetch_related("interfaces")
        .order_by("id")
    )
    workers: dict[str, WorkerSpec] = {}
    vm_specs = []
    internet = False
    for vm in vms:
        host = hosts.get(vm.pk) or vm.host
        if host is None:
            raise Conflict(f"VM {vm.name!r} has no worker yet.", code="unplaced")
        workers.setdefault(host.name, worker_spec(host))
        nics = tuple(
            NicSpec(
                index=i.index,
                mac=i.mac,
                vlan=i.vlan,
                tap=tap_name(vm.pk, i.index),
                address=addresses.get(i.mac, "") if i.vlan == INTERNET_VLAN else "",
            )
            for i in sorted(vm.interfaces.all(), key=lambda i: i.index)
        )
        internet = internet or any(n.index == 0 and n.vlan == INTERNET_VLAN for n in nics)
        vm_specs.append(
            VmSpec(
                id=vm.pk,
                name=vm.name,
                host=host.name,
                vcpus=vm.flavor.vcpus,
                ram_mib=vm.flavor.ram_mib,
                image=image_spec(vm.image),
                nics=nics,
                seed=seed_spec(vm, seeds),
            )
        )
    vlans = []
    for link in Link.objects.filter(slice=slice_obj).select_related("a", "b").order_by("vlan"):
        net = ipaddress.IPv4Network(link.subnet)
        reservations = tuple((end.mac, end.ip_address) for end in (link.a, link.b) if end.ip_address)
        vlans.append(VlanSpec(link.vlan, str(net), reservations))
    spec = SliceSpec(
        slice_id=slice_obj.pk,
        slice_name=slice_obj.name,
        netnode=NetnodeSpec(node.name, node.uplink, node.state_dir),
        workers=tuple(sorted(workers.values(), key=lambda w: w.name)),
        vms=tuple(vm_specs),
        vlans=tuple(vlans),
        internet=internet,
        keep_internet=internet_users(slice_id=slice_obj.pk) is not None,
        keep_isolation=netnode_users(slice_id=slice_obj.pk) is not None,
        link_guard=settings.SLICE_LINK_GUARD,
    )
    try:
        return validate_spec(spec)
    except PlanError as exc:
        raise Conflict(f"The slice cannot be provisioned: {exc}", code="invalid_spec") from exc


def spec_of(deployment: Deployment) -> SliceSpec | None:
    return SliceSpec.from_dict(deployment.spec) if deployment.spec else None


def deployed_footprint(*, slice_id: int, exclude_id: int | None = None) -> SliceSpec | None:
    """What may be on the hosts for the slice, from its past (real) jobs, oldest first.

    A succeeded deploy/redeploy leaves exactly its spec; a failed or abandoned one
    leaves up to the union of the previous footprint and its target; a succeeded
    destroy leaves nothing; a failed destroy leaves (at most) what was there.
    """
    rows = (
        Deployment.objects.filter(slice_id=slice_id, dry_run=False)
        .exclude(status=Deployment.Status.QUEUED)
        .order_by("created", "id")
    )
    if exclude_id is not None:
        rows = rows.exclude(pk=exclude_id)
    footprint: SliceSpec | None = None
    for dep in rows:
        if dep.kind == Deployment.Kind.POWER:  # starts and stops what is there: the footprint stays
            continue
        if dep.kind == Deployment.Kind.DESTROY:
            if dep.status == Deployment.Status.SUCCEEDED:
                footprint = None
            continue
        target = spec_of(dep)
        if target is None:
            continue
        footprint = target if dep.status == Deployment.Status.SUCCEEDED else merge_specs(footprint, target)
    return footprint


def _other_live_slices(slice_id: int):
    """Other slices that need the shared things: not drafts, and not slices being destroyed.

    A slice being destroyed removes its own VLANs and stops its guests: it does not keep the shared
    things for itself. Counting it would make two slices destroyed at once keep them for each other,
    and neither would remove them (should its destroy fail, it is ``failed`` and counts again).
    """
    return Slice.objects.exclude(pk=slice_id).exclude(status__in=[Slice.Status.DRAFT, Slice.Status.DESTROYING])


def netnode_users(*, slice_id: int) -> str | None:
    """Another slice that is deployed (or on its way): the network node's isolation chains stay."""
    other = _other_live_slices(slice_id).order_by("pk").first()
    return f"slice {other.pk} ({other.status})" if other else None


def internet_users(*, slice_id: int) -> str | None:
    """Another live slice that uses VLAN 400 (designed with it, or deployed with it): NAT stays."""
    live = _other_live_slices(slice_id)
    vm = VM.objects.filter(slice__in=live, internet_enabled=True).order_by("slice_id").first()
    if vm is not None:
        return f"slice {vm.slice_id}"
    dep = (
        Deployment.objects.filter(slice__in=live, dry_run=False)
        .filter(Q(spec__internet=True))
        .order_by("slice_id")
        .first()
    )
    return f"slice {dep.slice_id}" if dep else None


def power_of(deployment: Deployment) -> tuple[str, Sequence[int]] | None:
    """A power job's (action, VM ids); None for the other kinds."""
    if deployment.kind != Deployment.Kind.POWER:
        return None
    return deployment.action, [deployment.vm_id] if deployment.vm_id is not None else []


def plan_for(
    *,
    slice_id: int,
    kind: str,
    target: SliceSpec | None,
    footprint: SliceSpec | None,
    power: tuple[str, Sequence[int]] | None = None,
    renew: Sequence[int] = (),
) -> tuple[Plan, SliceSpec | None]:
    """The plan of a deploy/redeploy (``target``: the design) or a destroy, from the deployed ``footprint``;
    or of a power action (``power``: action and VM ids) on the VMs as deployed.

    ``renew``: VMs a repair restarts with their TAPs made anew (they lost one).
    Returns (plan, the spec whose network node the shared-phase lock guards; None when
    nothing runs, or nothing shared does). A destroy keeps VLAN 400 + NAT and the
    isolation chains while other slices need them.
    """
    if kind == Deployment.Kind.POWER:
        if footprint is None or power is None:
            raise PlanError("nothing of the slice is deployed: deploy it before a power action")
        action, vm_ids = power
        return power_plan(footprint, action, vm_ids, shutdown_timeout=settings.PROVISIONING_SHUTDOWN_TIMEOUT), None
    if kind == Deployment.Kind.DESTROY:
        if footprint is None:
            return Plan("destroy"), None
        fresh = replace(
            footprint,
            keep_internet=internet_users(slice_id=slice_id) is not None,
            keep_isolation=netnode_users(slice_id=slice_id) is not None,
        )
        return destroy_plan(fresh), fresh
    if target is None:
        raise ValueError(f"a {kind} needs a target spec")
    return apply_plan(footprint, target, renew=renew), target
