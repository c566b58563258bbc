"""Plans: deploy, destroy and apply (the diff between what is deployed and the design)."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import replace

from slices.ipam import INTERNET_VLAN

from .constants import SHARED_INTERNET, SHARED_ISOLATION, STAGE_NETWORK, STAGE_ORDER, STAGE_STOP, STAGE_VMS
from .model import HostCommand, Phase, Plan, Stage
from .netnode import (
    internet_commands,
    internet_leave_commands,
    isolation_commands,
    vlans_commands,
)
from .spec import (
    NicSpec,
    SliceSpec,
    VmSpec,
    WorkerSpec,
    validate_spec,
)
from .worker import (
    guard_remove_argv,
    relink_command,
    worker_ports_commands,
    worker_vms_commands,
)


def _undo_phase(phase: Phase, name: str | None = None) -> Phase:
    """The phase's undo commands in reverse order, duplicates dropped."""
    cmds: list[HostCommand] = []
    seen: set[tuple[str, ...]] = set()
    for cmd in reversed(phase.commands):
        undo = cmd.undo_command()
        if undo is None or undo.argv in seen:
            continue
        seen.add(undo.argv)
        cmds.append(undo)
    return Phase(name or f"teardown-{phase.name}", phase.host, tuple(cmds), shared=phase.shared, teardown=True)


def _netnode_build(spec: SliceSpec) -> list[Phase]:
    node = spec.netnode.name
    phases = [
        Phase("isolation", node, isolation_commands(), shared=SHARED_ISOLATION),
        Phase("vlans", node, vlans_commands(spec.netnode, spec.vlans)),
    ]
    if spec.internet:
        commands = internet_commands(spec.netnode, spec.slice_id, spec.internet_reservations)
        phases.append(Phase("internet", node, commands, shared=SHARED_INTERNET))
    return phases


def _leave_internet(spec: SliceSpec) -> Phase:
    """The slice's reservations leave VLAN 400's shared dnsmasq (whether or not other slices keep it).

    Not a teardown phase: it runs even when the executor keeps VLAN 400 for another slice.
    """
    node = spec.netnode
    return Phase("leave-internet", node.name, internet_leave_commands(node, spec.slice_id), shared=SHARED_INTERNET)


def _link_guards(spec: SliceSpec):
    """The link VLANs whose TAPs get guard flows (all of the spec's when ``link_guard``)."""
    return {v.vlan: v for v in spec.vlans} if spec.link_guard else None


def _workers(spec: SliceSpec) -> list[WorkerSpec]:
    used = {vm.host for vm in spec.vms}
    return [w for w in spec.workers if w.name in used]


def _build_stages(spec: SliceSpec) -> dict[str, list[Phase]]:
    stages: dict[str, list[Phase]] = {STAGE_NETWORK: _netnode_build(spec), STAGE_VMS: []}
    for worker in _workers(spec):
        vms = spec.vms_on(worker.name)
        ports = worker_ports_commands(worker, vms, guarded=_link_guards(spec))
        stages[STAGE_NETWORK].append(Phase("ports", worker.name, ports))
        stages[STAGE_VMS].append(Phase("vms", worker.name, worker_vms_commands(worker, vms, spec.slice_name)))
    return stages


def _assemble(kind: str, *parts: dict[str, list[Phase]]) -> Plan:
    stages = []
    for name in STAGE_ORDER:
        phases = [p for part in parts for p in part.get(name, []) if p.commands]
        if phases:
            stages.append(Stage(name, tuple(phases)))
    return Plan(kind, tuple(stages))


def deploy_plan(spec: SliceSpec) -> Plan:
    """Everything a slice needs on its hosts, checks first (deploying twice changes nothing)."""
    validate_spec(spec)
    return _assemble("deploy", _build_stages(spec))


def _teardown_stages(spec: SliceSpec, *, isolation: bool, internet: bool) -> dict[str, list[Phase]]:
    """Undo of the spec's phases, reverse order: VMs stopped first, then network and ports."""
    build = _build_stages(spec)
    stop = [_undo_phase(p, "teardown-vms") for p in reversed(build[STAGE_VMS])]
    network: list[Phase] = []
    for phase in reversed(build[STAGE_NETWORK]):
        if phase.shared == SHARED_ISOLATION and not isolation:
            continue
        if phase.shared == SHARED_INTERNET:
            network.append(_leave_internet(spec))
            if not internet:
                continue
        network.append(_undo_phase(phase))
    return {STAGE_STOP: stop, STAGE_NETWORK: network}


def destroy_plan(spec: SliceSpec) -> Plan:
    """Remove everything of the spec from its hosts; every step tolerates "already gone".

    VLAN 400 + NAT stay when ``keep_internet``; the isolation chains stay when
    ``keep_isolation`` (another slice is still deployed on the network node).
    """
    validate_spec(spec, deployed=True)
    return _assemble(
        "destroy",
        _teardown_stages(spec, isolation=not spec.keep_isolation, internet=spec.internet and not spec.keep_internet),
    )


def _vm_key(spec: SliceSpec, vm: VmSpec) -> tuple:
    """What QEMU's command line depends on. A NIC's VLAN (and VLAN 400 address) is not part
    of it: a new tag is only a change of the TAP's port on br-int, and the guest keeps running."""
    nics = tuple(replace(n, vlan=None, address="") for n in vm.nics)
    return (replace(vm, nics=nics), spec.worker(vm.host), spec.slice_name)


def apply_plan(old: SliceSpec | None, new: SliceSpec, *, renew: Collection[int] = ()) -> Plan:
    """Bring hosts from ``old`` (what may be deployed; None = nothing) to ``new``.

    ``renew``: VMs restarted even if unchanged, their TAPs and ports made anew (a repair:
    a TAP deleted under a running QEMU cannot be given back to it).

    - A VM absent from ``new``, moved to another worker or given another image is
      torn down completely; a VM otherwise changed (flavor, NICs, name) has only
      its QEMU restarted and its removed NICs' TAPs deleted (the disk stays).
    - A VM identical in both keeps running: its checks skip every step.
    - A VLAN gone or changed (reservations) is torn down (and rebuilt if changed).
    - VLAN 400 goes when no longer wanted (and no other slice needs it).
    - Then the ``new`` deploy plan runs; its checks skip what is in place.
    """
    validate_spec(new)
    if old is None:
        return replace(deploy_plan(new), kind="apply")
    validate_spec(old, deployed=True)
    new_vms = {vm.id: vm for vm in new.vms}
    gone_vms: list[VmSpec] = []
    restart: list[tuple[VmSpec, tuple[NicSpec, ...]]] = []
    for vm in old.vms:
        target = new_vms.get(vm.id)
        if target is not None and _vm_key(old, vm) == _vm_key(new, target) and vm.id not in renew:
            continue
        same_place = (
            target is not None
            and target.host == vm.host
            and old.worker(vm.host).state_dir == new.worker(target.host).state_dir
            and target.image == vm.image
        )
        if same_place:
            kept = {n.tap for n in target.nics} if vm.id not in renew else set()
            restart.append((vm, tuple(n for n in vm.nics if n.tap not in kept)))
        else:
            gone_vms.append(vm)
    same_node = old.netnode == new.netnode
    new_vlans = set(new.vlans) if same_node else set()
    gone_vlans = tuple(v for v in old.vlans if v not in new_vlans)
    internet_gone = old.internet and not (new.internet and same_node)

    teardown: dict[str, list[Phase]] = {STAGE_STOP: [], STAGE_NETWORK: []}
    if gone_vms:
        part = replace(old, vms=tuple(gone_vms), vlans=(), internet=False)
        for worker in _workers(part):
            vms = part.vms_on(worker.name)
            teardown[STAGE_STOP].append(
                _undo_phase(Phase("vms", worker.name, worker_vms_commands(worker, vms, old.slice_name)), "teardown-vms")
            )
            ports = worker_ports_commands(worker, vms, guarded=_link_guards(old))
            teardown[STAGE_NETWORK].append(_undo_phase(Phase("ports", worker.name, ports)))
    unguard = _left_guards(old, new, gone={vm.id for vm in gone_vms})
    for host, cmds in unguard.items():
        teardown[STAGE_NETWORK].append(Phase("teardown-ports", host, tuple(cmds), teardown=True))
    for vm, removed_nics in restart:
        worker = old.worker(vm.host)
        stop = worker_vms_commands(worker, [vm], old.slice_name, disks=False)
        teardown[STAGE_STOP].append(_undo_phase(Phase("vms", worker.name, stop), "restart-vms"))
        if removed_nics:
            ports = worker_ports_commands(
                worker, [vm], nics={vm.id: removed_nics}, dirs=False, guarded=_link_guards(old)
            )
            teardown[STAGE_NETWORK].append(_undo_phase(Phase("ports", worker.name, ports)))
    if gone_vlans:
        node = old.netnode
        teardown[STAGE_NETWORK].append(_undo_phase(Phase("vlans", node.name, vlans_commands(node, gone_vlans))))
    if internet_gone:
        leaving = [_leave_internet(old)]
        if not new.keep_internet:
            commands = internet_commands(old.netnode, old.slice_id, old.internet_reservations)
            leaving.append(_undo_phase(Phase("internet", old.netnode.name, commands, shared=SHARED_INTERNET)))
        teardown[STAGE_NETWORK][:0] = leaving
    return _assemble("apply", teardown, _build_stages(new), _relinks(old, new, restarted=restart, gone=gone_vms))


def _vlan_changes(
    old: SliceSpec, new: SliceSpec, *, skip: Collection[int]
) -> Iterator[tuple[VmSpec, NicSpec, VmSpec | None, NicSpec | None]]:
    """(old VM, its NIC, the VM and NIC in ``new`` or None) for each NIC whose VLAN (or VLAN 400 address)
    changed or that went.

    VMs in ``skip`` are left out; a VM absent from ``new`` is left out too (it is torn down whole).
    """
    new_vms = {vm.id: vm for vm in new.vms}
    for vm in old.vms:
        target = new_vms.get(vm.id)
        if vm.id in skip or target is None:
            continue
        now = {nic.index: nic for nic in target.nics}
        for nic in vm.nics:
            after = now.get(nic.index)
            if after is None or after.vlan != nic.vlan or after.address != nic.address:
                yield vm, nic, target, after


def _relinks(
    old: SliceSpec, new: SliceSpec, *, restarted: Sequence[tuple[VmSpec, object]], gone: Sequence[VmSpec]
) -> dict[str, list[Phase]]:
    """A link bounce for every NIC of a VM that keeps running whose VLAN (after its new tag is set) or
    VLAN 400 address changed: the guest asks DHCP anew and gets what its guard now pins."""
    stopped = {vm.id for vm, _ in restarted} | {vm.id for vm in gone}
    phases: dict[str, list[HostCommand]] = {}
    for _, _, vm, nic in _vlan_changes(old, new, skip=stopped):
        if nic is not None:
            phases.setdefault(vm.host, []).append(relink_command(new.worker(vm.host), vm, nic))
    return {STAGE_VMS: [Phase("relink", host, tuple(cmds), after_network=True) for host, cmds in phases.items()]}


def _left_guards(old: SliceSpec, new: SliceSpec, gone: Collection[int]) -> dict[str, list[HostCommand]]:
    """Per worker: removal of the guard flows of NICs that stay (or whose VM is restarted) but
    leave VLAN 400 or a guarded link, and of every link guard when the installation stopped
    guarding links. A NIC that joins a guarded VLAN gets its new flows from the deploy."""
    out: dict[str, list[HostCommand]] = {}
    seen: set[str] = set()

    def remove(vm: VmSpec, nic: NicSpec) -> None:
        if nic.tap in seen:
            return
        seen.add(nic.tap)
        out.setdefault(vm.host, []).append(
            HostCommand(
                guard_remove_argv(vm.id, nic),
                f"Remove the guard flows of {nic.tap} ({vm.name}.eth{nic.index}, was on VLAN {nic.vlan})",
                vm=vm.id,
                vlan=nic.vlan,
            )
        )

    for vm, nic, _, _ in _vlan_changes(old, new, skip=gone):
        if nic.vlan == INTERNET_VLAN or (old.link_guard and nic.vlan is not None):
            remove(vm, nic)
    if old.link_guard and not new.link_guard:
        for vm in old.vms:
            if vm.id in gone:
                continue
            for nic in vm.nics:
                if nic.vlan is not None and nic.vlan != INTERNET_VLAN:
                    remove(vm, nic)
    return out


def merge_specs(older: SliceSpec | None, newer: SliceSpec) -> SliceSpec:
    """What may be on the hosts after ``newer`` was attempted on top of ``older`` and failed.

    A union: every distinct VM version and VLAN of both, internet if either had
    it. A teardown of the union removes whatever of either was made; a VM present
    in two versions is always seen as changed by the next apply.
    """
    if older is None:
        return newer
    # One WorkerSpec per worker: the newer one (a worker's state_dir must not change
    # while slices are deployed on it; see docs/provisioning.md).
    workers = {w.name: w for w in older.workers} | {w.name: w for w in newer.workers}
    return replace(
        newer,
        workers=tuple(workers.values()),
        vms=tuple(dict.fromkeys((*older.vms, *newer.vms))),
        vlans=tuple(dict.fromkeys((*older.vlans, *newer.vlans))),
        internet=older.internet or newer.internet,
        link_guard=older.link_guard or newer.link_guard,
    )
