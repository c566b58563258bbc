"""Topology templates: N VMs joined as a linear chain, ring, star, full mesh or tree. Pure.

``build(kind, count)`` returns a :class:`Topology`: the VM names (``vm1`` ..
``vmN``), the links as pairs of VM positions, the data interfaces each VM needs
(its degree), which interface each end of each link uses, and canvas
positions laid out so the drawing reads like the topology's name.

Interface assignment is deterministic: a VM's links take ``eth1``, ``eth2``,
... in the order of :attr:`Topology.links`, so the same template always gives
the same wiring.
"""

import math
from dataclasses import dataclass, field

from .naming import MAX_DATA_INTERFACES

# Canvas geometry (pixels of the designer's canvas).
SPACING = 140.0  # distance between neighbouring nodes
MARGIN = 80.0  # empty border around the drawing
ROW_LENGTH = 8  # nodes per row of a linear chain before it turns back

MAX_VMS = 64


@dataclass(frozen=True)
class TopologyKind:
    """A template's name, what it builds and how many VMs it accepts."""

    name: str
    description: str
    min_count: int
    max_count: int


KINDS: dict[str, TopologyKind] = {
    k.name: k
    for k in (
        TopologyKind("linear", "A chain: vm1 - vm2 - ... - vmN.", 2, MAX_VMS),
        TopologyKind("ring", "A closed chain: each VM linked to the next, the last back to the first.", 3, MAX_VMS),
        TopologyKind(
            "star",
            f"vm1 is the hub, linked to every other VM (the hub has at most {MAX_DATA_INTERFACES} data interfaces).",
            2,
            MAX_DATA_INTERFACES + 1,
        ),
        TopologyKind(
            "mesh",
            f"A full mesh: every VM linked to every other (each VM has at most {MAX_DATA_INTERFACES} data interfaces).",
            2,
            MAX_DATA_INTERFACES + 1,
        ),
        TopologyKind("tree", "A binary tree: vm1 is the root, vmK's children are vm2K and vm2K+1.", 2, MAX_VMS),
    )
}


class TopologyError(ValueError):
    """An unknown topology or a VM count outside its limits."""

    def __init__(self, message: str, *, field: str):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class LinkEnds:
    """One link of a topology: VM positions and the interface index each end uses."""

    vm_a: int
    iface_a: int
    vm_b: int
    iface_b: int


@dataclass(frozen=True)
class Topology:
    """A generated topology: VM names, links, interfaces needed and canvas positions."""

    kind: str
    vm_names: list[str]
    links: list[tuple[int, int]]
    positions: list[tuple[float, float]]
    data_interfaces: list[int] = field(init=False)
    ends: list[LinkEnds] = field(init=False)

    def __post_init__(self) -> None:
        used = [0] * len(self.vm_names)
        ends = []
        for a, b in self.links:
            used[a] += 1
            used[b] += 1
            ends.append(LinkEnds(a, used[a], b, used[b]))
        object.__setattr__(self, "data_interfaces", used)
        object.__setattr__(self, "ends", ends)


def check(kind: str, count: object) -> TopologyKind:
    """The template ``kind`` after checking ``count`` against its limits; TopologyError otherwise."""
    spec = KINDS.get(kind) if isinstance(kind, str) else None
    if spec is None:
        raise TopologyError(f"Unknown topology {kind!r}: choose one of {', '.join(KINDS)}.", field="topology")
    if not isinstance(count, int) or isinstance(count, bool) or not spec.min_count <= count <= spec.max_count:
        raise TopologyError(
            f"A {kind} topology takes from {spec.min_count} to {spec.max_count} VMs, not {count!r}.", field="count"
        )
    return spec


def _shift(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Move a drawing so its top-left corner sits at (MARGIN, MARGIN); round to whole pixels."""
    min_x = min(x for x, _ in points)
    min_y = min(y for _, y in points)
    return [(round(x - min_x + MARGIN, 1), round(y - min_y + MARGIN, 1)) for x, y in points]


def _circle(count: int, *, start: int = 0) -> list[tuple[float, float]]:
    """``count`` points evenly on a circle large enough to keep SPACING between neighbours."""
    radius = max(SPACING, SPACING * count / (2 * math.pi))
    return [
        (
            radius * math.cos(2 * math.pi * (i + start) / count - math.pi / 2),
            radius * math.sin(2 * math.pi * (i + start) / count - math.pi / 2),
        )
        for i in range(count)
    ]


def _snake(count: int) -> list[tuple[float, float]]:
    """Rows of ROW_LENGTH, every other row right to left, so neighbours stay side by side."""
    points = []
    for i in range(count):
        row, col = divmod(i, ROW_LENGTH)
        if row % 2:
            col = ROW_LENGTH - 1 - col
        points.append((col * SPACING, row * SPACING))
    return points


def _tree_layout(count: int) -> list[tuple[float, float]]:
    """Levels top-down; each node centred above its subtree (leaves SPACING apart)."""
    xs: dict[int, float] = {}
    next_leaf = [0.0]

    def place(node: int) -> None:  # 1-based heap numbering
        children = [c for c in (2 * node, 2 * node + 1) if c <= count]
        for child in children:
            place(child)
        if children:
            xs[node] = sum(xs[c] for c in children) / len(children)
        else:
            xs[node] = next_leaf[0]
            next_leaf[0] += SPACING

    place(1)
    return [(xs[n], (n.bit_length() - 1) * SPACING) for n in range(1, count + 1)]


def build(kind: str, count: int) -> Topology:
    """Generate topology ``kind`` with ``count`` VMs (limits: :data:`KINDS`)."""
    check(kind, count)
    names = [f"vm{i}" for i in range(1, count + 1)]
    if kind == "linear":
        links = [(i, i + 1) for i in range(count - 1)]
        points = _snake(count)
    elif kind == "ring":
        links = [(i, (i + 1) % count) for i in range(count)]
        points = _circle(count)
    elif kind == "star":
        links = [(0, i) for i in range(1, count)]
        points = [(0.0, 0.0), *_circle(count - 1)]
    elif kind == "mesh":
        links = [(i, j) for i in range(count) for j in range(i + 1, count)]
        points = _circle(count)
    else:  # tree: heap numbering, node k (1-based) has children 2k and 2k+1
        links = [(k // 2 - 1, k - 1) for k in range(2, count + 1)]
        points = _tree_layout(count)
    return Topology(kind=kind, vm_names=names, links=links, positions=_shift(points))
