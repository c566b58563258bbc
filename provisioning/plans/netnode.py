"""Builders for the network node: isolation chains, link VLANs (ports, DHCP namespaces, dnsmasq), VLAN 400 + NAT."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from slices.ipam import DNS_SERVER, INTERNET_SUBNET, INTERNET_VLAN
from slices.naming import dhcp_namespace, dhcp_port_name, gateway_port_name

from .constants import (
    BRIDGE,
    DHCP_LEASE_TIME,
    FORWARD_CHAIN,
    GATEWAY_PORTS,
    INPUT_CHAIN,
    INTERNET_DHCP_MAC,
    INTERNET_GATEWAY_MAC,
    OWN_GATEWAY_MATCH,
)
from .layout import (
    dhcp_files,
    dhcp_root,
    internet_hosts_dir,
    internet_hosts_file,
    ip_forward_saved,
    shared_dir_command,
)
from .model import HostCommand, touching
from .shell import (
    SH_ADD_NETNS,
    SH_DEL_NETNS,
    SH_DNSMASQ_SYNC,
    SH_IP_FORWARD_IS_ON,
    SH_IP_FORWARD_ON,
    SH_IP_FORWARD_RESTORE,
    SH_IPT_DELETE,
    SH_IPT_DELETE_CHAIN,
    SH_KILL_PIDFILE,
    SH_OVS_PORTS_CHECK,
    SH_PIDFILE_ALIVE,
    SH_SAME_LINES,
    SH_WRITE_LINES,
    has_address,
    is_dir,
    link_state,
    sh,
)
from .spec import (
    INTERNET,
    NetnodeSpec,
    VlanSpec,
)


def _ipt(table: str, op: str, chain: str, *rule: str) -> tuple[str, ...]:
    return ("iptables", "-w", "-t", table, op, chain, *rule)


def iptables_rule(
    table: str, chain: str, rule: Sequence[str], description: str, *, insert: bool = False
) -> HostCommand:
    """Append (or insert first) a rule, checked with ``-C`` first, removed only if present."""
    op = ("-I", chain, "1") if insert else ("-A", chain)
    return HostCommand(
        argv=("iptables", "-w", "-t", table, *op, *rule),
        description=description,
        check=_ipt(table, "-C", chain, *rule),
        undo=sh(SH_IPT_DELETE, "sp-ipt-delete", table, chain, *rule),
        undo_description=f"Remove iptables rule: {description}",
    )


def iptables_chain(table: str, chain: str) -> HostCommand:
    return HostCommand(
        argv=_ipt(table, "-N", chain),
        description=f"Create iptables chain {chain}",
        check=_ipt(table, "-S", chain),
        undo=sh(SH_IPT_DELETE_CHAIN, "sp-ipt-delete-chain", table, chain),
        undo_description=f"Delete iptables chain {chain}",
    )


def isolation_commands() -> tuple[HostCommand, ...]:
    """The network node's filter rules that keep slices apart.

    FORWARD: nothing is routed into or out of a gateway port except replies and
    VLAN 400 towards the uplink (inserted by the internet phase). INPUT: a guest
    may ping its own gateway address and nothing else of the network node.
    """
    return (
        iptables_chain("filter", FORWARD_CHAIN),
        iptables_rule(
            "filter",
            FORWARD_CHAIN,
            ("-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"),
            "Forward replies of allowed connections",
        ),
        iptables_rule(
            "filter", FORWARD_CHAIN, ("-i", GATEWAY_PORTS, "-j", "DROP"), "Route nothing out of a slice VLAN"
        ),
        iptables_rule("filter", FORWARD_CHAIN, ("-o", GATEWAY_PORTS, "-j", "DROP"), "Route nothing into a slice VLAN"),
        iptables_rule(
            "filter", "FORWARD", ("-j", FORWARD_CHAIN), f"Send forwarded traffic through {FORWARD_CHAIN}", insert=True
        ),
        iptables_chain("filter", INPUT_CHAIN),
        iptables_rule(
            "filter",
            INPUT_CHAIN,
            ("-i", GATEWAY_PORTS, "-p", "icmp", *OWN_GATEWAY_MATCH, "-j", "ACCEPT"),
            "Let a guest ping its own gateway",
        ),
        iptables_rule(
            "filter", INPUT_CHAIN, ("-i", GATEWAY_PORTS, "-j", "DROP"), "Guests reach nothing else of the network node"
        ),
        iptables_rule(
            "filter", "INPUT", ("-j", INPUT_CHAIN), f"Send guest traffic to the node through {INPUT_CHAIN}", insert=True
        ),
    )


def ovs_ports_check(pairs: Iterable[tuple[str, str]]) -> tuple[str, ...]:
    args: list[str] = []
    for name, tag in pairs:
        args += [name, tag]
    return sh(SH_OVS_PORTS_CHECK, "sp-ovs-ports", *args)


def netnode_ports_command(vlans: Sequence[VlanSpec]) -> HostCommand:
    """One ``ovs-vsctl`` transaction: for every VLAN a tagged internal gateway port and DHCP port."""
    argv: list[str] = ["ovs-vsctl"]
    undo: list[str] = ["ovs-vsctl"]
    pairs = []
    for v in vlans:
        for port in (gateway_port_name(v.vlan), dhcp_port_name(v.vlan)):
            if len(argv) > 1:
                argv.append("--")
            argv += ["--may-exist", "add-port", BRIDGE, port, f"tag={v.vlan}"]
            argv += ["--", "set", "interface", port, "type=internal"]
            if v.vlan == INTERNET_VLAN:
                mac = INTERNET_GATEWAY_MAC if port == gateway_port_name(v.vlan) else INTERNET_DHCP_MAC
                argv.append(f'mac="{mac}"')
            if len(undo) > 1:
                undo.append("--")
            undo += ["--if-exists", "del-port", BRIDGE, port]
            pairs.append((port, str(v.vlan)))
    listed = ", ".join(str(v.vlan) for v in vlans)
    return HostCommand(
        argv=tuple(argv),
        description=f"Gateway and DHCP ports on {BRIDGE} for VLAN {listed}",
        check=ovs_ports_check(pairs),
        undo=tuple(undo),
        undo_description=f"Remove gateway and DHCP ports of VLAN {listed}",
    )


def netns_command(vlan: int) -> HostCommand:
    """The VLAN's DHCP namespace: skipped when usable; a stale name (no namespace behind it) is replaced.

    The undo deletes the name whenever it is listed, usable or not, so a destroy or a
    retry always leaves ``ip netns add`` free to succeed.
    """
    ns = dhcp_namespace(vlan)
    return HostCommand(
        argv=sh(SH_ADD_NETNS, "sp-add-netns", ns),
        description=f"Create DHCP namespace {ns}",
        check=("ip", "netns", "exec", ns, "true"),
        undo=sh(SH_DEL_NETNS, "sp-del-netns", ns),
        undo_description=f"Delete namespace {ns}",
    )


def dnsmasq_argv(node: NetnodeSpec, v: VlanSpec) -> tuple[str, ...]:
    """dnsmasq of one VLAN in its namespace, with the VLAN's reservations as ``--dhcp-host`` arguments."""
    files = dhcp_files(node, v.vlan)
    return (
        "ip",
        "netns",
        "exec",
        dhcp_namespace(v.vlan),
        "dnsmasq",
        "--conf-file=/dev/null",
        "--port=0",
        f"--interface={dhcp_port_name(v.vlan)}",
        "--bind-interfaces",
        "--dhcp-authoritative",
        # dnsmasq is the only allocator in the range: its ping-before-offer probe only delays new leases
        "--no-ping",
        f"--dhcp-range={v.dhcp_first},{v.dhcp_last},{v.netmask},{DHCP_LEASE_TIME}",
        f"--dhcp-option=3,{v.gateway}",
        f"--dhcp-option=6,{DNS_SERVER}",
        # Reservations as arguments, parsed while dnsmasq is still root: a --dhcp-hostsfile is read only
        # after it drops to its unprivileged user, who cannot read it under a mode 0700 state dir (or
        # umask 077), and dnsmasq then silently hands out dynamic addresses. A link VLAN whose
        # reservations change is torn down and rebuilt; VLAN 400's dnsmasq is restarted with the
        # reservations of every slice (internet_dnsmasq_command).
        *(f"--dhcp-host={mac},{ip}" for mac, ip in v.reservations),
        f"--dhcp-leasefile={files.leases}",
        f"--pid-file={files.pidfile}",
        "--log-dhcp",
        f"--log-facility={files.log}",
    )


def _vlan_port_commands(v: VlanSpec) -> tuple[HostCommand, ...]:
    """The gateway address, the DHCP port moved into its namespace and addressed."""
    gw, dport, ns = gateway_port_name(v.vlan), dhcp_port_name(v.vlan), dhcp_namespace(v.vlan)
    in_ns = ("ip", "netns", "exec", ns)
    gw_cidr, dhcp_cidr = f"{v.gateway}/{v.prefixlen}", f"{v.dhcp_server}/{v.prefixlen}"
    return (
        HostCommand(
            ("ip", "addr", "replace", gw_cidr, "dev", gw),
            f"Gateway {v.gateway} on {gw}",
            check=has_address(gw, gw_cidr),
        ),
        HostCommand(("ip", "link", "set", "dev", gw, "up"), f"Bring {gw} up", check=link_state(gw, "up")),
        HostCommand(
            ("ip", "link", "set", "dev", dport, "netns", ns),
            f"Move {dport} into {ns}",
            check=(*in_ns, "ip", "link", "show", "dev", dport),
        ),
        HostCommand(
            (*in_ns, "ip", "addr", "replace", dhcp_cidr, "dev", dport),
            f"DHCP server address {v.dhcp_server} on {dport}",
            check=(*in_ns, *has_address(dport, dhcp_cidr)),
        ),
        HostCommand(
            (*in_ns, "ip", "link", "set", "dev", dport, "up"),
            f"Bring {dport} up",
            check=(*in_ns, *link_state(dport, "up")),
        ),
    )


def _dhcp_dir_command(node: NetnodeSpec, vlan: int) -> HostCommand:
    path = dhcp_files(node, vlan).dir
    return HostCommand(
        ("mkdir", "-p", path),
        f"DHCP state directory of VLAN {vlan}",
        check=is_dir(path),
        undo=("rm", "-rf", path),
        undo_description=f"Remove DHCP state of VLAN {vlan}",
    )


def vlan_service_commands(node: NetnodeSpec, v: VlanSpec) -> tuple[HostCommand, ...]:
    """Gateway address, the DHCP port moved into its namespace, and dnsmasq for one link VLAN."""
    files = dhcp_files(node, v.vlan)
    return (
        *_vlan_port_commands(v),
        _dhcp_dir_command(node, v.vlan),
        HostCommand(
            dnsmasq_argv(node, v),
            f"Start dnsmasq for VLAN {v.vlan} ({v.dhcp_first}-{v.dhcp_last}, gateway {v.gateway}, "
            f"{len(v.reservations)} reservation(s))",
            check=sh(SH_PIDFILE_ALIVE, "sp-alive", files.pidfile),
            undo=sh(SH_KILL_PIDFILE, "sp-kill", files.pidfile),
            undo_description=f"Stop dnsmasq of VLAN {v.vlan}",
        ),
    )


def dhcp_root_command(node: NetnodeSpec) -> HostCommand:
    return shared_dir_command(dhcp_root(node.state_dir), "DHCP state directory")


def vlans_commands(node: NetnodeSpec, vlans: Sequence[VlanSpec]) -> tuple[HostCommand, ...]:
    """Namespaces first, then one ports transaction, then per VLAN its services.

    The namespaces come first so that a teardown (reverse order) deletes the
    ports, including the one inside a namespace, before the namespace.
    """
    cmds: list[HostCommand] = [dhcp_root_command(node)]
    if not vlans:
        return tuple(cmds)
    for v in vlans:
        cmds += touching([netns_command(v.vlan)], vlan=v.vlan)
    cmds += touching([netnode_ports_command(vlans)], vlan=vlans[0].vlan if len(vlans) == 1 else None)
    for v in vlans:
        cmds += touching(vlan_service_commands(node, v), vlan=v.vlan)
    return tuple(cmds)


def internet_reservations_command(
    node: NetnodeSpec, slice_id: int, reservations: Sequence[tuple[str, str]]
) -> HostCommand:
    """This slice's VLAN 400 reservations, one ``MAC,IP`` line each, in its own file of the hosts dir.

    Each slice writes only its own file, so two slices deploying one after the other never
    undo each other's reservations (a spec holds its own slice's NICs only).
    """
    path = internet_hosts_file(node.state_dir, slice_id)
    lines = [f"{mac},{ip}" for mac, ip in reservations]
    return HostCommand(
        sh(SH_WRITE_LINES, "sp-write", path, *lines),
        f"Reserve {len(lines)} VLAN {INTERNET_VLAN} address(es) of slice {slice_id} for the shared dnsmasq",
        check=sh(SH_SAME_LINES, "sp-same", path, *lines),
        undo=("rm", "-f", path),
        undo_description=f"Drop the VLAN {INTERNET_VLAN} reservations of slice {slice_id}",
    )


def internet_dnsmasq_argv(node: NetnodeSpec, mode: str) -> tuple[str, ...]:
    """The VLAN 400 dnsmasq sync (``SH_DNSMASQ_SYNC``) in ``mode`` run / check / leave."""
    files = dhcp_files(node, INTERNET_VLAN)
    hosts = internet_hosts_dir(node.state_dir)
    return sh(
        SH_DNSMASQ_SYNC, "sp-dnsmasq-sync", mode, files.pidfile, hosts, files.leases, *dnsmasq_argv(node, INTERNET)
    )


def internet_dnsmasq_command(node: NetnodeSpec) -> HostCommand:
    """VLAN 400's dnsmasq, (re)started only when the reservations of all slices changed."""
    files = dhcp_files(node, INTERNET_VLAN)
    return HostCommand(
        internet_dnsmasq_argv(node, "run"),
        f"Run dnsmasq for VLAN {INTERNET_VLAN} with the reservations of every slice",
        check=internet_dnsmasq_argv(node, "check"),
        undo=sh(SH_KILL_PIDFILE, "sp-kill", files.pidfile),
        undo_description=f"Stop dnsmasq of VLAN {INTERNET_VLAN}",
    )


def internet_leave_commands(node: NetnodeSpec, slice_id: int) -> tuple[HostCommand, ...]:
    """A slice leaves VLAN 400 that others keep: its reservations go from the shared dnsmasq."""
    path = internet_hosts_file(node.state_dir, slice_id)
    commands = (
        HostCommand(("rm", "-f", path), f"Drop the VLAN {INTERNET_VLAN} reservations of slice {slice_id}"),
        HostCommand(
            internet_dnsmasq_argv(node, "leave"),
            f"Restart dnsmasq of VLAN {INTERNET_VLAN} without them (if it runs)",
        ),
    )
    return touching(commands, vlan=INTERNET_VLAN)


def internet_commands(
    node: NetnodeSpec, slice_id: int, reservations: Sequence[tuple[str, str]]
) -> tuple[HostCommand, ...]:
    """VLAN 400: ports, the slice's reservations in the shared dnsmasq, forwarding on, NAT out of the uplink."""
    saved = ip_forward_saved(node.state_dir)
    gw = gateway_port_name(INTERNET_VLAN)
    commands = (
        netns_command(INTERNET_VLAN),
        netnode_ports_command([INTERNET]),
        *_vlan_port_commands(INTERNET),
        _dhcp_dir_command(node, INTERNET_VLAN),
        shared_dir_command(internet_hosts_dir(node.state_dir), f"VLAN {INTERNET_VLAN} reservations directory"),
        internet_reservations_command(node, slice_id, reservations),
        internet_dnsmasq_command(node),
        HostCommand(
            sh(SH_IP_FORWARD_ON, "sp-ip-forward", saved),
            "Enable IPv4 forwarding (the previous value is saved)",
            check=sh(SH_IP_FORWARD_IS_ON, "sp-ip-forward-on", saved),
            undo=sh(SH_IP_FORWARD_RESTORE, "sp-ip-forward-restore", saved),
            undo_description="Restore the previous IPv4 forwarding setting",
        ),
        iptables_rule(
            "nat",
            "POSTROUTING",
            ("-s", str(INTERNET_SUBNET), "-o", node.uplink, "-j", "MASQUERADE"),
            f"NAT {INTERNET_SUBNET} out of {node.uplink}",
        ),
        iptables_rule(
            "filter",
            FORWARD_CHAIN,
            ("-i", gw, "-o", node.uplink, "-j", "ACCEPT"),
            f"Forward VLAN {INTERNET_VLAN} to {node.uplink}",
            insert=True,
        ),
    )
    return touching(commands, vlan=INTERNET_VLAN)
