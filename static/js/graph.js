// The drawing: Cytoscape.js style, elements built from API objects, and link drawing by drag.

const SANS = 'system-ui, "Segoe UI", Roboto, "Helvetica Neue", "DejaVu Sans", sans-serif';

// Node colours by state: border, fill.
const VM_COLOURS = {
  designed: ["#94a3b8", "#ffffff"],
  deploying: ["#f59e0b", "#fffbeb"],
  running: ["#22c55e", "#f0fdf4"],
  failed: ["#ef4444", "#fef2f2"],
  stopped: ["#94a3b8", "#f1f5f9"],
  lost: ["#be123c", "#fff1f2"], // its QEMU died: "stopped unexpectedly" (a drift check saw it)
};
const LINK_COLOURS = { designed: "#94a3b8", deploying: "#f59e0b", up: "#22c55e", failed: "#ef4444" };

const GLOBE = `data:image/svg+xml;utf8,${encodeURIComponent(
  '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><circle cx="8" cy="8" r="7" fill="#eef0ff" stroke="#4f46e5" stroke-width="1.3"/><path d="M1 8h14M8 1c2.2 2 2.2 12 0 14M8 1c-2.2 2-2.2 12 0 14" fill="none" stroke="#4f46e5" stroke-width="1.1"/></svg>',
)}`;

export const NODE_W = 112;
export const NODE_H = 46;
// How far from its VM an interface label sits along its link, and how far it moves to make room.
const END_LABEL_OFFSET = 26;
const END_LABEL_STEP = 14;

export function styles() {
  const s = [
    {
      selector: "node.vm",
      style: {
        shape: "round-rectangle",
        width: NODE_W,
        height: NODE_H,
        "background-color": "#ffffff",
        "border-width": 2,
        "border-color": "#94a3b8",
        label: "data(label)",
        "text-valign": "center",
        "text-halign": "center",
        "text-wrap": "wrap",
        "text-max-width": NODE_W - 12,
        "font-family": SANS,
        "font-size": 13,
        "font-weight": 600,
        color: "#1c2233",
        "line-height": 1.35,
        "underlay-color": "#4f46e5",
        "underlay-opacity": 0,
        "underlay-padding": 7,
        "underlay-shape": "round-rectangle",
        "overlay-opacity": 0,
        "transition-property": "border-color, background-color, underlay-opacity",
        "transition-duration": 200,
      },
    },
    {
      selector: "node.vm[?internet]",
      style: {
        "background-image": GLOBE,
        "background-width": 15,
        "background-height": 15,
        "background-position-x": NODE_W - 18,
        "background-position-y": 4,
        "background-clip": "none",
        "background-image-containment": "over",
      },
    },
  ];
  for (const [state, [border, fill]] of Object.entries(VM_COLOURS)) {
    s.push({ selector: `node.vm[state = "${state}"]`, style: { "border-color": border, "background-color": fill } });
  }
  s.push(
    { selector: 'node.vm[state = "deploying"]', style: { "border-style": "dashed" } },
    // Drift: the hosts differ from the plan for this VM or link (a check saw it; Repair puts it back).
    { selector: "node.vm[?drift]", style: { "border-style": "dotted", "border-width": 3, "border-color": "#ea580c" } },
    { selector: "node.vm:selected", style: { "border-color": "#4f46e5", "border-width": 3, "underlay-opacity": 0.14 } },
    { selector: "node.vm.link-source", style: { "border-color": "#4f46e5", "underlay-opacity": 0.22 } },
    { selector: "node.vm.link-target", style: { "border-color": "#4f46e5", "border-width": 3, "underlay-opacity": 0.3 } },
    { selector: "node.vm.flash-error", style: { "underlay-color": "#ef4444", "underlay-opacity": 0.35 } },
    {
      selector: "edge.link",
      style: {
        "curve-style": "bezier",
        "control-point-step-size": 46,
        width: 3,
        "line-color": LINK_COLOURS.designed,
        "line-cap": "round",
        label: "data(label)",
        "text-wrap": "wrap",
        "font-family": SANS,
        "font-size": 11,
        "font-weight": 600,
        color: "#334155",
        "text-background-color": "#fbfcfe",
        "text-background-opacity": 0.92,
        "text-background-padding": 2,
        "text-background-shape": "roundrectangle",
        "source-label": "data(ifaceA)",
        "target-label": "data(ifaceB)",
        "source-text-offset": "data(offsetA)",
        "target-text-offset": "data(offsetB)",
        "overlay-opacity": 0,
        "underlay-color": "#4f46e5",
        "underlay-opacity": 0,
        "underlay-padding": 5,
        "transition-property": "line-color, underlay-opacity",
        "transition-duration": 200,
      },
    },
  );
  for (const [state, colour] of Object.entries(LINK_COLOURS)) {
    s.push({ selector: `edge.link[state = "${state}"]`, style: { "line-color": colour } });
  }
  s.push(
    { selector: 'edge.link[state = "deploying"]', style: { "line-style": "dashed", "line-dash-pattern": [8, 5] } },
    { selector: "edge.link[?drift]", style: { "line-style": "dotted", "line-color": "#ea580c" } },
    { selector: "edge.link:selected", style: { "line-color": "#4f46e5", width: 4, "underlay-opacity": 0.16 } },
    { selector: "edge.link.flash-error", style: { "underlay-color": "#ef4444", "underlay-opacity": 0.35 } },
    { selector: "node.ghost", style: { width: 1, height: 1, opacity: 0, events: "no", label: "" } },
    {
      selector: "edge.ghost-edge",
      style: {
        "curve-style": "straight",
        width: 2.5,
        "line-color": "#4f46e5",
        "line-style": "dashed",
        "line-dash-pattern": [6, 4],
        "target-arrow-shape": "triangle",
        "target-arrow-color": "#4f46e5",
        events: "no",
        label: "",
      },
    },
  );
  return s;
}

/** The label of a VM node: its name and, once placed, its worker. */
export function vmLabel(vm) {
  return vm.host_name ? `${vm.name}\n⌂ ${vm.host_name}` : vm.name;
}

export function linkLabel(link) {
  return `VLAN ${link.vlan}\n${link.subnet}`;
}

export function vmElement(vm, state) {
  return {
    group: "nodes",
    data: { id: `vm-${vm.id}`, vmId: vm.id, label: vmLabel(vm), state, internet: Boolean(vm.internet_enabled) },
    position: { x: Number(vm.x) || 0, y: Number(vm.y) || 0 },
    classes: "vm",
  };
}

export function linkElement(link, state) {
  return {
    group: "edges",
    data: {
      id: `link-${link.id}`,
      linkId: link.id,
      source: `vm-${link.a.vm}`,
      target: `vm-${link.b.vm}`,
      label: linkLabel(link),
      ifaceA: link.a.interface,
      ifaceB: link.b.interface,
      vlan: link.vlan,
      offsetA: END_LABEL_OFFSET,
      offsetB: END_LABEL_OFFSET,
      state,
    },
    classes: "link",
  };
}

function endLabelBox(end) {
  return end.edge.boundingBox({
    includeNodes: false,
    includeEdges: false,
    includeMainLabels: false,
    includeOverlays: false,
    includeUnderlays: false,
    includeSourceLabels: end.key === "offsetA",
    includeTargetLabels: end.key === "offsetB",
  });
}

function boxesMeet(a, b, gap = 2) {
  return a.x1 < b.x2 + gap && b.x1 < a.x2 + gap && a.y1 < b.y2 + gap && b.y1 < a.y2 + gap;
}

/**
 * Keep the interface labels of the links meeting at one VM apart: links leaving a VM in
 * nearly the same direction would print "eth1" over "eth2". At each VM the shortest link
 * keeps its label next to the VM; a label that meets one already placed moves out along its
 * link, step by step, but never past the first third of the line (where the VLAN label is).
 */
export function separateEndLabels(cy) {
  cy.batch(() => cy.edges(".link").data({ offsetA: END_LABEL_OFFSET, offsetB: END_LABEL_OFFSET }));
  cy.nodes(".vm").forEach((node) => {
    const ends = node
      .connectedEdges(".link")
      .map((edge) => {
        const a = edge.sourceEndpoint();
        const b = edge.targetEndpoint();
        return { edge, key: edge.source().same(node) ? "offsetA" : "offsetB", free: Math.hypot(a.x - b.x, a.y - b.y) };
      })
      .sort((p, q) => p.free - q.free);
    const placed = [];
    for (const end of ends) {
      const limit = Math.max(END_LABEL_OFFSET, end.free / 3);
      let box = endLabelBox(end);
      while (placed.some((other) => boxesMeet(box, other)) && end.edge.data(end.key) + END_LABEL_STEP <= limit) {
        end.edge.data(end.key, end.edge.data(end.key) + END_LABEL_STEP);
        box = endLabelBox(end);
      }
      placed.push(box);
    }
  });
}

/**
 * Drawing links by dragging from one VM to another, with Cytoscape's own events:
 * a ghost node follows the pointer and a dashed edge joins it to the source.
 * ``onDrop(sourceNode, targetNode, originalEvent)`` is called on a valid drop.
 */
export function enableLinkDrawing(cy, { isActive, onDrop }) {
  let source = null;
  let ghost = null;
  let hovered = null;
  let panning = true;

  const cleanup = () => {
    if (ghost) cy.remove(ghost.union(ghost.connectedEdges()));
    source?.removeClass("link-source");
    hovered?.removeClass("link-target");
    source = ghost = hovered = null;
    cy.userPanningEnabled(panning);
  };

  cy.on("tapstart", "node.vm", (event) => {
    if (!isActive()) return;
    source = event.target;
    panning = cy.userPanningEnabled();
    cy.userPanningEnabled(false);
    source.addClass("link-source");
    ghost = cy.add({ group: "nodes", data: { id: "__ghost" }, position: { ...event.position }, classes: "ghost" });
    cy.add({ group: "edges", data: { id: "__ghost_edge", source: source.id(), target: "__ghost" }, classes: "ghost-edge" });
  });

  cy.on("tapdrag", (event) => {
    if (!ghost) return;
    ghost.position({ ...event.position });
    const over = nodeAt(cy, event.position);
    if (over !== hovered) {
      hovered?.removeClass("link-target");
      hovered = over && over !== source ? over : null;
      hovered?.addClass("link-target");
    }
  });

  cy.on("tapend", (event) => {
    if (!ghost) return;
    const from = source;
    const to = nodeAt(cy, event.position);
    cleanup();
    if (to && from && to.id() !== from.id()) onDrop(from, to, event.originalEvent);
  });

  return { cancel: cleanup, get drawing() { return Boolean(ghost); } };
}

/** The VM node under a model position (ignoring the ghost), or null. */
function nodeAt(cy, pos) {
  const hits = cy.nodes(".vm").filter((node) => {
    const box = node.boundingBox({ includeLabels: false, includeOverlays: false });
    return pos.x >= box.x1 && pos.x <= box.x2 && pos.y >= box.y1 && pos.y <= box.y2;
  });
  return hits.length ? hits[hits.length - 1] : null;
}
