"""Names and numbers the plan builders share: the bridge, chains, stages, MACs, limits."""

from __future__ import annotations

BRIDGE = "br-int"
DHCP_LEASE_TIME = "1h"
QEMU = "qemu-system-x86_64"
ACCELS = ("kvm", "tcg")
# Chains of the network node's filter table that keep slices apart (see docs/provisioning.md).
FORWARD_CHAIN = "SP-FORWARD"
INPUT_CHAIN = "SP-INPUT"
GATEWAY_PORTS = "gw_v+"  # iptables wildcard for every gateway port
# "Addressed to the port the packet came in on": a guest's own gateway, no other VLAN's.
OWN_GATEWAY_MATCH = ("-m", "addrtype", "--dst-type", "LOCAL", "--limit-iface-in")
OUTPUT_TAIL = 4000  # bytes of a step's output kept by default
KVM_PROBE_TIMEOUT = 10  # seconds

# Stage and phase names (DeploymentStep.phase shows the phase).
STAGE_STOP, STAGE_NETWORK, STAGE_VMS = "stop", "network", "vms"
STAGE_ORDER = (STAGE_STOP, STAGE_NETWORK, STAGE_VMS)
SHARED_ISOLATION, SHARED_INTERNET = "isolation", "internet"

# VLAN 400 is one segment for the internet NICs of every slice: each such TAP may talk
# to the gateway and the DHCP server only (OpenFlow rules on the worker, see
# internet_guard_command), so those two ports get fixed, known MACs.
INTERNET_GATEWAY_MAC = "02:53:50:00:04:01"
INTERNET_DHCP_MAC = "02:53:50:00:04:02"
BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"
FLOW_COOKIE_TAG = 0x5350 << 48  # "SP": the flows this portal owns on br-int
