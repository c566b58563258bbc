"""containerlab topologies (``.clab.yml``) read as slice documents.

A containerlab file is recognised by its ``topology`` mapping. What is kept:

- every node becomes a VM of the same name; its image is this installation's
  image that ``SLICE_CLAB_IMAGE_MAP`` gives for the node's ``image`` (exact
  string), else for its ``kind``, else for ``"*"``; an empty map (the default)
  sends every kind to the default image. A kind the map does not cover is an
  error naming the node. ``kind``/``image`` may come from ``topology.kinds`` or
  ``topology.defaults`` as containerlab allows;
- every ``veth`` link (``endpoints: ["a:eth1", "b:eth1"]``, or the mapping form
  ``{node: a, interface: eth1}``) becomes a link; the VMs get the data
  interfaces their links need.

Interface names are mapped to the guest's ``ethN`` (:func:`map_interface`):
``ethN`` stays; ``eN-M``/``ethernet-N/M`` (SR Linux, module 1 only),
``EthernetN``/``EthN``/``EtN`` (cEOS) and ``swpN`` (Cumulus) become ``ethN``;
any other name (another module, ``GigabitEthernet0/0/0/1``, ``eth0``), a number
beyond the guest's last NIC (``e1-49``) or one already taken on the node takes
the next free ``ethN`` of its node, in the order the links name them. Every
name that changes is reported.

What a slice cannot hold is reported per node (``warnings``), never dropped
silently: node settings other than ``kind``/``image`` (``binds``,
``startup-config``, ``exec``, ``mgmt-ipv4``, ...), links that are not
node-to-node veths (``host``, ``mgmt-net``, ``macvlan`` ends, bridges), a second
link between the same two nodes (a slice links two VMs once), link settings
(``mtu``, ``vars``).

Pure: no database; the caller passes the map and the image names that exist.
"""

import re
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidRequest
from .naming import MAX_DATA_INTERFACES, NAME_HELP, is_valid_name

# Endpoint "nodes" of containerlab that are not nodes of the topology.
SPECIAL_ENDPOINTS = ("host", "mgmt-net", "macvlan")
# Node kinds that are bridges on the container host, not machines: a slice has no such thing.
BRIDGE_KINDS = ("bridge", "ovs-bridge")
NODE_KEPT = ("kind", "image")
TOP_KEPT = ("name", "topology")
TOPOLOGY_KEPT = ("nodes", "links", "kinds", "defaults")
LINK_KEPT = ("endpoints", "type")

# (pattern, rule name): the first group is the data interface number N of ethN.
INTERFACE_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\Aeth([1-9][0-9]*)\Z"), "ethN"),
    (re.compile(r"\Ae1-([1-9][0-9]*)\Z"), "SR Linux e1-N"),
    (re.compile(r"\Aethernet-1/([1-9][0-9]*)\Z"), "SR Linux ethernet-1/N"),
    (re.compile(r"\A(?:ethernet|eth|et)([1-9][0-9]*)\Z", re.IGNORECASE), "cEOS EthernetN"),
    (re.compile(r"\Aswp([1-9][0-9]*)\Z"), "Cumulus swpN"),
)


@dataclass
class ClabResult:
    """A containerlab topology read as a slice document, with what was mapped or left out."""

    document: dict[str, Any]
    warnings: list[dict[str, str]] = field(default_factory=list)
    interfaces: list[dict[str, str]] = field(default_factory=list)


def is_clab(data: Any) -> bool:
    """True when a loaded document is a containerlab topology (it has a ``topology`` mapping)."""
    return isinstance(data, dict) and isinstance(data.get("topology"), dict)


def map_interface(name: str) -> tuple[int, str] | None:
    """The data interface number a containerlab interface name maps to by rule, and the rule; None: no rule."""
    for pattern, rule in INTERFACE_RULES:
        match = pattern.fullmatch(name)
        if match:
            return int(match.group(1)), rule
    return None


class _Problems:
    def __init__(self) -> None:
        self.errors: dict[str, list[str]] = {}

    def add(self, path: str, message: str) -> None:
        self.errors.setdefault(path, []).append(message)

    def raise_if_any(self) -> None:
        if self.errors:
            path, messages = next(iter(self.errors.items()))
            more = sum(len(m) for m in self.errors.values()) - 1
            suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
            raise InvalidRequest(
                f"{path}: {messages[0]}{suffix}", field=path, code="invalid_document", errors=dict(self.errors)
            )


def _image_for(node: str, kind: str | None, image: str | None, image_map: dict[str, str | None]) -> str | None:
    """This installation's image name for a node (None: the default image); KeyError when unmapped."""
    if not image_map:
        return None
    for key in (image, kind, "*"):
        if key is not None and key in image_map:
            return image_map[key] or None
    raise KeyError(node)


def _endpoint(raw: Any) -> tuple[str, str] | None:
    if isinstance(raw, str) and raw.count(":") == 1:
        node, iface = raw.split(":")
        return (node, iface) if node and iface else None
    if isinstance(raw, dict) and isinstance(raw.get("node"), str) and isinstance(raw.get("interface"), str):
        return raw["node"], raw["interface"]
    return None


def convert(data: dict[str, Any], *, image_map: dict[str, str | None], known_images: set[str]) -> ClabResult:
    """Read a containerlab topology as a slice document (``slices.io`` format) with its report.

    Raises ``InvalidRequest`` (errors by path, e.g. ``topology.nodes.leaf1.kind``)
    for what cannot be read at all: a bad node name, a kind or image the map
    does not cover, a mapped image that does not exist here, too many interfaces.
    """
    problems = _Problems()
    result = ClabResult(document={})
    warn = result.warnings
    topology = data["topology"]
    for key in data:
        if key not in TOP_KEPT:
            warn.append({"node": "*", "message": f"'{key}' is not represented in a slice (ignored)."})
    for key in topology:
        if key not in TOPOLOGY_KEPT:
            warn.append({"node": "*", "message": f"'topology.{key}' is not represented in a slice (ignored)."})
    kinds = topology.get("kinds") if isinstance(topology.get("kinds"), dict) else {}
    defaults = topology.get("defaults") if isinstance(topology.get("defaults"), dict) else {}
    nodes = topology.get("nodes") or {}
    if not isinstance(nodes, dict):
        problems.add("topology.nodes", "A mapping of node name to node.")
        nodes = {}
    vms: dict[str, dict[str, Any]] = {}
    bridges: set[str] = set()
    for name, node in nodes.items():
        path = f"topology.nodes.{name}"
        node = node if isinstance(node, dict) else {}
        kind = node.get("kind") or defaults.get("kind")
        kind_defaults = kinds.get(kind) if isinstance(kinds.get(kind), dict) else {}
        image = node.get("image") or kind_defaults.get("image") or defaults.get("image")
        if kind in BRIDGE_KINDS:
            bridges.add(str(name))
            warn.append({"node": str(name), "message": f"A {kind} node is not represented: a slice has no bridges."})
            continue
        if not is_valid_name(name):
            problems.add(path, f"Node name {name!r} cannot be a VM name here: {NAME_HELP}")
            continue
        try:
            mapped = _image_for(name, kind, image, image_map)
        except KeyError:
            what = f"kind {kind!r}" + (f" (image {image!r})" if image else "")
            problems.add(
                f"{path}.kind",
                f"Node {name!r}: {what} has no image on this portal; SLICE_CLAB_IMAGE_MAP maps "
                f"{', '.join(sorted(image_map))}.",
            )
            continue
        if mapped is not None and mapped not in known_images:
            problems.add(f"{path}.image", f"Node {name!r}: SLICE_CLAB_IMAGE_MAP gives image {mapped!r}, not here.")
            continue
        dropped = sorted(k for k in node if k not in NODE_KEPT)
        if dropped:
            warn.append({"node": name, "message": f"Not represented in a slice (ignored): {', '.join(dropped)}."})
        vms[name] = {"name": name, **({"image": mapped} if mapped else {})}
    refused = {str(name) for name in nodes} - set(vms) - bridges
    links = _links(topology.get("links"), vms, bridges, refused, result, problems)
    problems.raise_if_any()
    result.document = {
        "version": 1,
        "name": data.get("name"),
        "description": f"containerlab topology {data.get('name')}"[:200],
        "vms": list(vms.values()),
        "links": links,
    }
    return result


def _links(
    raw: Any, vms: dict[str, dict], bridges: set[str], refused: set[str], result: ClabResult, problems: _Problems
) -> list[list[str]]:
    """The node-to-node links with their interfaces mapped to ethN; everything else reported."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        problems.add("topology.links", "A list of links, each with endpoints.")
        return []
    pairs: list[tuple[int, tuple[str, str], tuple[str, str]]] = []
    for i, link in enumerate(raw):
        path = f"topology.links[{i}]"
        if not isinstance(link, dict):
            problems.add(path, "A link is a mapping with endpoints.")
            continue
        ends_raw = link.get("endpoints")
        ends = [_endpoint(e) for e in ends_raw] if isinstance(ends_raw, list) else []
        if len(ends) != 2 or None in ends:
            problems.add(f"{path}.endpoints", 'Two endpoints, "node:interface" or {node:, interface:}.')
            continue
        (node_a, if_a), (node_b, if_b) = ends
        link_type = link.get("type", "veth")
        other = [n for n in (node_a, node_b) if n in SPECIAL_ENDPOINTS or n in bridges]
        if link_type != "veth" or other:
            why = f"its type is {link_type!r}" if link_type != "veth" else f"it ends on {other[0]!r}"
            for node in (node_a, node_b):
                if node in vms:
                    result.warnings.append(
                        {"node": node, "message": f"Link {node_a}:{if_a} - {node_b}:{if_b} is not represented: {why}."}
                    )
            continue
        missing = [n for n in (node_a, node_b) if n not in vms]
        if missing:
            if not any(str(n) in refused for n in missing):  # a refused node already has its error
                problems.add(f"{path}.endpoints", f"No node named {missing[0]!r} in topology.nodes.")
            continue
        dropped = sorted(k for k in link if k not in LINK_KEPT)
        if dropped:
            result.warnings.append(
                {"node": node_a, "message": f"Link {node_a}:{if_a} - {node_b}:{if_b}: {', '.join(dropped)} ignored."}
            )
        pairs.append((i, (node_a, if_a), (node_b, if_b)))
    mapping = _map_interfaces(pairs, result, problems)
    links: list[list[str]] = []
    seen: dict[frozenset[str], str] = {}
    for _i, (node_a, if_a), (node_b, if_b) in pairs:
        key = frozenset((node_a, node_b))
        text = f"{node_a}:{if_a} - {node_b}:{if_b}"
        if node_a == node_b:
            result.warnings.append({"node": node_a, "message": f"Link {text} loops back to its node: not represented."})
            continue
        if key in seen:
            result.warnings.append(
                {
                    "node": node_a,
                    "message": f"Link {text} is not represented: {seen[key]} already links these nodes "
                    "(a slice links two VMs once).",
                }
            )
            continue
        seen[key] = text
        links.append([f"{node_a}:eth{mapping[node_a, if_a]}", f"{node_b}:eth{mapping[node_b, if_b]}"])
    return links


def _map_interfaces(
    pairs: list[tuple[int, tuple[str, str], tuple[str, str]]], result: ClabResult, problems: _Problems
) -> dict[tuple[str, str], int]:
    """(node, interface name) -> N of ethN: the rules first, then the next free number in order of use."""
    mapping: dict[tuple[str, str], int] = {}
    taken: dict[str, set[int]] = {}
    unruled: list[tuple[str, str]] = []
    ends = [end for _i, a, b in pairs for end in (a, b)]
    for node, iface in ends:
        if (node, iface) in mapping or (node, iface) in unruled:
            continue
        ruled = map_interface(iface)
        # No rule, beyond the guest's last NIC (SR Linux uplinks are e1-49..), or taken: renumbered below.
        if ruled is None or ruled[0] > MAX_DATA_INTERFACES or ruled[0] in taken.get(node, set()):
            unruled.append((node, iface))
            continue
        number, rule = ruled
        mapping[node, iface] = number
        taken.setdefault(node, set()).add(number)
        if iface != f"eth{number}":
            result.interfaces.append({"node": node, "interface": iface, "mapped": f"eth{number}", "rule": rule})
    for node, iface in unruled:
        used = taken.setdefault(node, set())
        number = next(n for n in range(1, len(used) + 2) if n not in used)
        mapping[node, iface] = number
        used.add(number)
        result.interfaces.append({"node": node, "interface": iface, "mapped": f"eth{number}", "rule": "next free"})
    for node, used in taken.items():
        if max(used) > MAX_DATA_INTERFACES:
            problems.add(
                f"topology.nodes.{node}",
                f"Node {node!r} has {len(used)} linked interfaces; a VM here has at most {MAX_DATA_INTERFACES}.",
            )
    return mapping
