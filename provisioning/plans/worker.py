"""Builders for compute workers: state directories, TAPs, the ports transaction, VLAN 400 guards, QEMU."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from slices.ipam import INTERNET_VLAN

from .constants import BRIDGE, BROADCAST_MAC, FLOW_COOKIE_TAG, INTERNET_DHCP_MAC, INTERNET_GATEWAY_MAC, QEMU
from .layout import (
    shared_dir_command,
    vm_dir,
    vm_files,
    vms_dir,
)
from .model import HostCommand, touching
from .netnode import (
    ovs_ports_check,
)
from .seed import seed_command
from .shell import (
    SH_DEL_LINK,
    SH_KILL_PIDFILE,
    SH_OFCTL_DEL_FLOWS,
    SH_OFCTL_FLOWS_CHECK,
    SH_OFCTL_REPLACE_FLOWS,
    SH_PIDFILE_ALIVE,
    SH_QMP_BOUNCE_LINK,
    is_dir,
    link_state,
    sh,
)
from .spec import (
    INTERNET,
    NicSpec,
    VlanSpec,
    VmSpec,
    WorkerSpec,
)


def vms_dir_command(worker: WorkerSpec) -> HostCommand:
    return shared_dir_command(vms_dir(worker.state_dir), "VM state directory")


def vm_dir_command(worker: WorkerSpec, vm: VmSpec) -> HostCommand:
    path = vm_dir(worker.state_dir, vm.id)
    return HostCommand(
        ("mkdir", "-p", path),
        f"State directory of {vm.name}",
        check=is_dir(path),
        undo=("rm", "-rf", path),
        undo_description=f"Remove the files of {vm.name} (console log, sockets, disk overlay)",
        vm=vm.id,
    )


def tap_commands(vm: VmSpec, nic: NicSpec) -> tuple[HostCommand, ...]:
    """Create the TAP; bring it up when it has a VLAN, keep it DOWN when it has none.

    A down TAP refuses the guest's frames (the write fails), so a dead interface
    reaches neither br-int nor the worker's own IP stack.
    """
    state = "up" if nic.vlan is not None else "down"
    return (
        HostCommand(
            ("ip", "tuntap", "add", "dev", nic.tap, "mode", "tap"),
            f"Create TAP {nic.tap} ({vm.name}.eth{nic.index})",
            check=("ip", "link", "show", "dev", nic.tap),
            undo=sh(SH_DEL_LINK, "sp-del-link", nic.tap),
            undo_description=f"Delete TAP {nic.tap}",
        ),
        HostCommand(
            ("ip", "link", "set", "dev", nic.tap, state),
            f"Set {nic.tap} {state}" + ("" if nic.vlan is not None else " (no VLAN: dead interface)"),
            check=link_state(nic.tap, state),
        ),
    )


def worker_ports_command(nics: Sequence[NicSpec]) -> HostCommand:
    """One ``ovs-vsctl`` transaction for every TAP of a worker.

    A TAP with a VLAN is an access port with that tag (``set port`` fixes the tag
    of a port that already exists); a TAP without one is taken off the bridge:
    a port without a tag would be a trunk carrying every VLAN.
    """
    argv: list[str] = ["ovs-vsctl"]
    undo: list[str] = ["ovs-vsctl"]
    pairs = []
    for nic in nics:
        if len(argv) > 1:
            argv.append("--")
            undo.append("--")
        if nic.vlan is None:
            argv += ["--if-exists", "del-port", BRIDGE, nic.tap]
            pairs.append((nic.tap, "-"))
        else:
            argv += ["--may-exist", "add-port", BRIDGE, nic.tap, f"tag={nic.vlan}"]
            argv += ["--", "set", "port", nic.tap, f"tag={nic.vlan}"]
            pairs.append((nic.tap, str(nic.vlan)))
        undo += ["--if-exists", "del-port", BRIDGE, nic.tap]
    tagged = sum(1 for n in nics if n.vlan is not None)
    return HostCommand(
        argv=tuple(argv),
        description=f"Attach {tagged} TAP(s) to {BRIDGE} with their VLAN tags, keep {len(nics) - tagged} off",
        check=ovs_ports_check(pairs),
        undo=tuple(undo),
        undo_description=f"Detach {len(nics)} TAP(s) from {BRIDGE}",
    )


def flow_cookie(vm_id: int, nic: NicSpec) -> str:
    """The OpenFlow cookie of one guest NIC's flows (unique per installation: VM ids are)."""
    return f"{FLOW_COOKIE_TAG | vm_id << 8 | nic.index:#018x}"


def _guard_command(vm: VmSpec, nic: NicSpec, flows: Sequence[str], what: str, texts: Sequence[tuple[str, int]]):
    """Replace the flows of the NIC's cookie; checked by count and by the texts they must hold."""
    cookie = flow_cookie(vm.id, nic)
    expect: list[str] = []
    for text, count in texts:
        expect += [text, str(count)]
    return HostCommand(
        sh(SH_OFCTL_REPLACE_FLOWS, "sp-flows", BRIDGE, cookie, *flows),
        f"Guard {nic.tap} on VLAN {nic.vlan} ({vm.name}.eth{nic.index}): {what}",
        check=sh(SH_OFCTL_FLOWS_CHECK, "sp-flows-check", BRIDGE, cookie, nic.tap, str(len(flows)), *expect),
        undo=guard_remove_argv(vm.id, nic),
        undo_description=f"Remove the guard flows of {nic.tap}",
    )


def _never_from_a_guest(head: str) -> tuple[str, ...]:
    """What no guest may send on a guarded TAP, whatever its addresses (above every allow)."""
    return (
        f"{head},priority=310,udp,tp_src=67,actions=drop",  # a DHCP server's replies
        f"{head},priority=310,icmp6,icmp_type=134,actions=drop",  # IPv6 router advertisements
    )


def internet_guard_command(vm: VmSpec, nic: NicSpec) -> HostCommand:
    """OpenFlow rules on a VLAN 400 TAP (port security): the guest talks to the gateway and DHCP only,
    and only as itself (its MAC and its fixed address).

    From the TAP, with the guest's own source MAC only: ARP whose sender is its own MAC and
    address (asking the gateway or the DHCP server, or answering them; an address probe from
    0.0.0.0 for its own address); IPv4 from its own address to the gateway's MAC (its way out
    through NAT); DHCP client requests (from 0.0.0.0 while it has no lease, from its address when
    it renews). Never a DHCP server reply or an IPv6 router advertisement; everything else from
    the TAP is dropped (other guests at L2, any other address, all other IPv6). So no guest can
    claim another internet NIC's address toward the gateway, nor take the gateway's MAC.
    Routing between internet NICs is refused by SP-FORWARD.
    """
    ip, gw, dhcp = nic.address, INTERNET.gateway, INTERNET.dhcp_server
    head = f"cookie={flow_cookie(vm.id, nic)},table=0,in_port={nic.tap}"
    allow = f"{head},priority=300,dl_src={nic.mac}"
    arp = f"{allow},arp,arp_sha={nic.mac},arp_spa={ip}"
    dhcp_request = "udp,tp_src=68,tp_dst=67"
    flows = (
        *_never_from_a_guest(head),
        f"{arp},dl_dst={BROADCAST_MAC},arp_tpa={gw},actions=NORMAL",
        f"{arp},dl_dst={BROADCAST_MAC},arp_tpa={dhcp},actions=NORMAL",
        f"{arp},dl_dst={INTERNET_GATEWAY_MAC},actions=NORMAL",
        f"{arp},dl_dst={INTERNET_DHCP_MAC},actions=NORMAL",
        f"{allow},arp,arp_sha={nic.mac},arp_spa=0.0.0.0,arp_tpa={ip},dl_dst={BROADCAST_MAC},actions=NORMAL",
        f"{allow},ip,nw_src={ip},dl_dst={INTERNET_GATEWAY_MAC},actions=NORMAL",
        f"{allow},{dhcp_request},nw_src=0.0.0.0,dl_dst={BROADCAST_MAC},actions=NORMAL",
        f"{allow},{dhcp_request},nw_src={ip},dl_dst={BROADCAST_MAC},actions=NORMAL",
        f"{allow},{dhcp_request},nw_src={ip},dl_dst={INTERNET_DHCP_MAC},actions=NORMAL",
        f"{head},priority=290,actions=drop",
    )
    allowed = len(flows) - 3
    return _guard_command(
        vm,
        nic,
        flows,
        f"gateway and DHCP only, as {nic.mac} {ip}",
        # every allow names the guest's MAC; all but the two DHCP discover flavours name its address
        ((f"dl_src={nic.mac},", allowed), (f"={ip},", allowed - 1)),
    )


def link_guard_command(vm: VmSpec, nic: NicSpec, vlan: VlanSpec) -> HostCommand:
    """OpenFlow rules on a link TAP (optional, ``SLICE_LINK_GUARD``): the guest cannot pose as the link's
    gateway or DHCP server, nor send from another MAC.

    Frames from the TAP that claim the gateway's or the DHCP server's address (ARP sender
    or IPv4 source), DHCP server replies and IPv6 router advertisements are dropped; the
    rest from the guest's own MAC goes on as before (a link carries whatever its two
    guests speak), from any other MAC it is dropped.
    """
    head = f"cookie={flow_cookie(vm.id, nic)},table=0,in_port={nic.tap}"
    flows = (
        *_never_from_a_guest(head),
        f"{head},priority=310,arp,arp_spa={vlan.gateway},actions=drop",
        f"{head},priority=310,arp,arp_spa={vlan.dhcp_server},actions=drop",
        f"{head},priority=310,ip,nw_src={vlan.gateway},actions=drop",
        f"{head},priority=310,ip,nw_src={vlan.dhcp_server},actions=drop",
        f"{head},priority=300,dl_src={nic.mac},actions=NORMAL",
        f"{head},priority=290,actions=drop",
    )
    return _guard_command(
        vm,
        nic,
        flows,
        f"not as its gateway {vlan.gateway} or DHCP server {vlan.dhcp_server}",
        ((f"dl_src={nic.mac},", 1), (f"={vlan.gateway},", 2), (f"={vlan.dhcp_server},", 2)),
    )


def guard_remove_argv(vm_id: int, nic: NicSpec) -> tuple[str, ...]:
    """Remove a NIC's guard flows (VLAN 400 or link) by their cookie."""
    return sh(SH_OFCTL_DEL_FLOWS, "sp-del-flows", BRIDGE, flow_cookie(vm_id, nic))


def accel_args(accel: str) -> tuple[str, ...]:
    if accel == "kvm":
        return ("-accel", "kvm", "-cpu", "host")
    return ("-accel", "tcg", "-cpu", "max")


def qemu_argv(worker: WorkerSpec, vm: VmSpec, slice_name: str) -> tuple[str, ...]:
    """The QEMU command line of one VM (daemonized, pid file, serial to a socket and a log).

    Every guest has a VGA display served by QEMU's VNC server on a unix socket in its
    state directory (the graphical console; never a TCP port reachable from the
    network). ``share=force-shared``: several viewers at once, none can push the
    others off (the portal gives each browser tab its own connection).
    """
    files = vm_files(worker, vm)
    argv: list[str] = [
        QEMU,
        "-name",
        f"{slice_name}.{vm.name}",
        "-nodefaults",
        "-no-user-config",
        *accel_args(worker.accel),
        "-smp",
        str(vm.vcpus),
        "-m",
        str(vm.ram_mib),
    ]
    if vm.image.kind == "kernel":
        argv += ["-kernel", vm.image.kernel_path]
        if vm.image.initrd_path:
            argv += ["-initrd", vm.image.initrd_path]
        argv += ["-append", vm.image.kernel_args]
    else:
        argv += ["-drive", f"file={files.disk},if=virtio,format=qcow2"]
    if vm.image.cloud_init and vm.seed is not None:
        # After the boot disk (the guest's vda): the NoCloud seed, read-only.
        argv += ["-drive", f"file={files.seed},if=virtio,format=raw,readonly=on"]
    for nic in vm.nics:
        argv += [
            "-netdev",
            f"tap,id=n{nic.index},ifname={nic.tap},script=no,downscript=no,vnet_hdr=off",
            "-device",
            f"virtio-net-pci,netdev=n{nic.index},mac={nic.mac}",
        ]
    argv += [
        "-chardev",
        f"socket,id=s0,path={files.console_sock},server=on,wait=off,logfile={files.console_log}",
        "-serial",
        "chardev:s0",
        "-qmp",
        f"unix:{files.qmp_sock},server=on,wait=off",
        "-vga",
        "std",
        "-display",
        "none",
        "-vnc",
        f"unix:{files.vnc_sock},share=force-shared",
        "-pidfile",
        files.pidfile,
        "-daemonize",
    ]
    return tuple(argv)


def disk_command(worker: WorkerSpec, vm: VmSpec) -> HostCommand:
    files = vm_files(worker, vm)
    return HostCommand(
        ("qemu-img", "create", "-f", "qcow2", "-F", "qcow2", "-b", vm.image.disk_path, files.disk),
        f"Disk overlay of {vm.name} on {vm.image.disk_path}",
        check=("test", "-e", files.disk),
        undo=("rm", "-f", files.disk),
        undo_description=f"Remove the disk overlay of {vm.name}",
        vm=vm.id,
    )


def qemu_command(worker: WorkerSpec, vm: VmSpec, slice_name: str) -> HostCommand:
    files = vm_files(worker, vm)
    return HostCommand(
        qemu_argv(worker, vm, slice_name),
        f"Start QEMU for {vm.name} ({vm.vcpus} vCPU, {vm.ram_mib} MiB, {worker.accel}, {len(vm.nics)} NIC)",
        check=sh(SH_PIDFILE_ALIVE, "sp-alive", files.pidfile),
        undo=sh(SH_KILL_PIDFILE, "sp-kill", files.pidfile),
        undo_description=f"Stop QEMU of {vm.name}",
        boots_vm=vm.id,
        vm=vm.id,
    )


def relink_command(worker: WorkerSpec, vm: VmSpec, nic: NicSpec) -> HostCommand:
    """Bounce the link of a running VM's NIC whose VLAN changed, so that the guest asks DHCP again."""
    vlan = f"VLAN {nic.vlan}" if nic.vlan is not None else "no VLAN"
    return HostCommand(
        sh(SH_QMP_BOUNCE_LINK, "sp-relink", vm_files(worker, vm).qmp_sock, f"n{nic.index}"),
        f"Bounce the link of {vm.name}.eth{nic.index} (now on {vlan}): the guest renews DHCP",
        relinks=nic.mac,
        vm=vm.id,
        vlan=nic.vlan,
    )


def worker_ports_commands(
    worker: WorkerSpec,
    vms: Sequence[VmSpec],
    *,
    nics: dict[int, Sequence[NicSpec]] | None = None,
    dirs: bool = True,
    guarded: Mapping[int, VlanSpec] | None = None,
) -> tuple[HostCommand, ...]:
    """State directories, TAPs (created, up/down), the one ports transaction of a worker, the guards.

    ``nics`` restricts the NICs per VM id (a teardown of removed NICs only);
    ``dirs`` False leaves the directories out (a VM that is only restarted);
    ``guarded``: the link VLANs whose TAPs get link guards (the spec's, when ``link_guard``).
    VLAN 400 TAPs always get theirs.
    """
    cmds: list[HostCommand] = []
    if dirs:
        cmds.append(vms_dir_command(worker))
        cmds += [vm_dir_command(worker, vm) for vm in vms]
    chosen: list[tuple[VmSpec, NicSpec]] = []
    seen: set[str] = set()
    for vm in vms:
        for nic in nics[vm.id] if nics is not None else vm.nics:
            if nic.tap in seen:
                continue
            seen.add(nic.tap)
            chosen.append((vm, nic))
            cmds += touching(tap_commands(vm, nic), vm=vm.id, vlan=nic.vlan)
    if chosen:
        cmds.append(worker_ports_command([nic for _, nic in chosen]))
    for vm, nic in chosen:
        if nic.vlan == INTERNET_VLAN:
            cmds += touching([internet_guard_command(vm, nic)], vm=vm.id, vlan=INTERNET_VLAN)
        elif nic.vlan is not None and guarded and nic.vlan in guarded:
            cmds += touching([link_guard_command(vm, nic, guarded[nic.vlan])], vm=vm.id, vlan=nic.vlan)
    return tuple(cmds)


def worker_vms_commands(
    worker: WorkerSpec, vms: Sequence[VmSpec], slice_name: str, *, disks: bool = True
) -> tuple[HostCommand, ...]:
    cmds: list[HostCommand] = []
    for vm in vms:
        if vm.image.kind == "disk" and disks:
            cmds.append(disk_command(worker, vm))
        if vm.image.cloud_init and vm.seed is not None and disks:
            cmds.append(seed_command(worker, vm))
        cmds.append(qemu_command(worker, vm, slice_name))
    return tuple(cmds)
