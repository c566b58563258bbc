"""Host plans: a slice spec in, ordered host commands out. Pure: no Django, no I/O.

A plan is a sequence of **stages**; a stage holds one or more **phases** per
host. Stages order the work **on each host**; the executor runs one lane per
host (:mod:`.lanes`): the host's phases in plan order, in as few SSH round trips
as possible, hosts in parallel, so a worker starts its VMs as soon as its own
ports are in place while the network node builds the VLANs. Every plan has at
most these stages, in order:

``stop``     (workers)  stop QEMU of VMs that go away or change
``network``  (netnode)  isolation chains, link VLANs (gateway port, DHCP namespace,
                        dnsmasq), internet VLAN 400 and NAT; teardown of what went away
             (workers)  TAP devices and one ``ovs-vsctl`` transaction for all ports;
                        teardown of ports that went away
``vms``      (workers)  disk overlays and QEMU

Every :class:`HostCommand` carries its ``undo`` (tolerant of "already gone") and
an optional ``check`` (exit 0 = already in place, the command is skipped), so
deploying twice changes nothing and destroy works from any partial state.
See docs/provisioning.md for the decisions (isolation, dead interfaces, diffing).
"""
# The package's modules, each readable in one sitting (lowest first):
#   constants  names and numbers
#   spec       the slice spec and its validation
#   model      HostCommand, Phase, Stage, Plan
#   shell      small shell programs used as argv
#   layout     files on the hosts
#   netnode    network-node builders
#   worker     worker builders
#   observe    probes and read-only observation
#   build      deploy / destroy / apply plans
#   lanes      how a plan travels: each host's round trips (trips), hosts in parallel
# Everything but the shell programs (``plans.shell.SH_*``) is re-exported here: ``plans.deploy_plan``.

from slices.ipam import INTERNET_VLAN, VLAN_ID_MAX, VLAN_ID_MIN

from .build import apply_plan, deploy_plan, destroy_plan, merge_specs
from .constants import (
    ACCELS,
    BRIDGE,
    BROADCAST_MAC,
    DHCP_LEASE_TIME,
    FLOW_COOKIE_TAG,
    FORWARD_CHAIN,
    GATEWAY_PORTS,
    INPUT_CHAIN,
    INTERNET_DHCP_MAC,
    INTERNET_GATEWAY_MAC,
    KVM_PROBE_TIMEOUT,
    OUTPUT_TAIL,
    OWN_GATEWAY_MATCH,
    QEMU,
    SHARED_INTERNET,
    SHARED_ISOLATION,
    STAGE_NETWORK,
    STAGE_ORDER,
    STAGE_STOP,
    STAGE_VMS,
)
from .lanes import Trip, lanes, round_trips
from .layout import DhcpFiles, VmFiles, dhcp_dir, dhcp_files, dhcp_root, ip_forward_saved, vm_dir, vm_files, vms_dir
from .model import HostCommand, Phase, Plan, Stage, touching
from .netnode import (
    dhcp_root_command,
    dnsmasq_argv,
    internet_commands,
    internet_dnsmasq_command,
    internet_leave_commands,
    internet_reservations_command,
    iptables_chain,
    iptables_rule,
    isolation_commands,
    netnode_ports_command,
    netns_command,
    ovs_ports_check,
    vlan_service_commands,
    vlans_commands,
)
from .observe import console_tail_command, kvm_probe_command, lease_wait_command, parse_kvm_probe, parse_leases
from .shell import not_, sh
from .spec import (
    INTERNET,
    ImageSpec,
    NetnodeSpec,
    NicSpec,
    PlanError,
    SeedSpec,
    SliceSpec,
    VlanSpec,
    VmSpec,
    WorkerSpec,
    validate_spec,
)
from .worker import (
    accel_args,
    disk_command,
    flow_cookie,
    guard_remove_argv,
    internet_guard_command,
    link_guard_command,
    qemu_argv,
    qemu_command,
    relink_command,
    tap_commands,
    vm_dir_command,
    vms_dir_command,
    worker_ports_command,
    worker_ports_commands,
    worker_vms_commands,
)

__all__ = [
    "ACCELS",
    "BRIDGE",
    "BROADCAST_MAC",
    "DHCP_LEASE_TIME",
    "FLOW_COOKIE_TAG",
    "FORWARD_CHAIN",
    "GATEWAY_PORTS",
    "INPUT_CHAIN",
    "INTERNET",
    "INTERNET_DHCP_MAC",
    "INTERNET_GATEWAY_MAC",
    "INTERNET_VLAN",
    "KVM_PROBE_TIMEOUT",
    "OUTPUT_TAIL",
    "OWN_GATEWAY_MATCH",
    "QEMU",
    "SHARED_INTERNET",
    "SHARED_ISOLATION",
    "STAGE_NETWORK",
    "STAGE_ORDER",
    "STAGE_STOP",
    "STAGE_VMS",
    "VLAN_ID_MAX",
    "VLAN_ID_MIN",
    "DhcpFiles",
    "HostCommand",
    "ImageSpec",
    "NetnodeSpec",
    "NicSpec",
    "Phase",
    "Plan",
    "PlanError",
    "SeedSpec",
    "SliceSpec",
    "Stage",
    "Trip",
    "VlanSpec",
    "VmFiles",
    "VmSpec",
    "WorkerSpec",
    "accel_args",
    "apply_plan",
    "console_tail_command",
    "deploy_plan",
    "destroy_plan",
    "dhcp_dir",
    "dhcp_files",
    "dhcp_root",
    "dhcp_root_command",
    "disk_command",
    "dnsmasq_argv",
    "flow_cookie",
    "guard_remove_argv",
    "internet_commands",
    "internet_dnsmasq_command",
    "internet_guard_command",
    "internet_leave_commands",
    "internet_reservations_command",
    "ip_forward_saved",
    "iptables_chain",
    "iptables_rule",
    "isolation_commands",
    "kvm_probe_command",
    "lanes",
    "lease_wait_command",
    "link_guard_command",
    "merge_specs",
    "netnode_ports_command",
    "netns_command",
    "not_",
    "ovs_ports_check",
    "parse_kvm_probe",
    "parse_leases",
    "qemu_argv",
    "qemu_command",
    "relink_command",
    "round_trips",
    "sh",
    "tap_commands",
    "touching",
    "validate_spec",
    "vlan_service_commands",
    "vlans_commands",
    "vm_dir",
    "vm_dir_command",
    "vm_files",
    "vms_dir",
    "vms_dir_command",
    "worker_ports_command",
    "worker_ports_commands",
    "worker_vms_commands",
]
