// Where VMs go on the canvas: the grid new VMs fill, spreading a cramped drawing, the circle layout.
// Functions of the Cytoscape instance only: the designer saves the positions they set.

import { NODE_H, NODE_W } from "./graph.js";

// A link needs this much visible line between its two VMs for its labels (ends, VLAN, subnet).
export const MIN_FREE_LINK = 210;
// The grid new VMs are placed on: a link between two neighbours keeps room for its labels.
const GRID_COL = NODE_W + MIN_FREE_LINK;
const GRID_ROW = NODE_H + 174;
// A grid cell is taken when a VM's centre is this close to it (any VM, also one moved off the grid).
const CELL_FREE_X = NODE_W + 40;
const CELL_FREE_Y = NODE_H + 40;

/** Whether ``node``'s centre is in the visible part of the canvas. */
export function isInView(cy, node) {
  const ext = cy.extent();
  const p = node.position();
  return p.x > ext.x1 && p.x < ext.x2 && p.y > ext.y1 && p.y < ext.y2;
}

/**
 * Where a new VM goes, like text being typed: right of the newest VM, and when the row
 * leaves the view, at the first grid column of the next row; the first free cell wins.
 * The grid starts at the newest VM when it is in view, else at the centre of the view
 * (where the first VM of a slice lands).
 */
export function freeSpot(cy) {
  const ext = cy.extent();
  const taken = cy.nodes(".vm").map((n) => n.position());
  const newest = cy.nodes(".vm").max((n) => n.data("vmId")).ele;
  const fromNewest = Boolean(newest) && isInView(cy, newest);
  const anchor = fromNewest ? newest.position() : { x: (ext.x1 + ext.x2) / 2, y: (ext.y1 + ext.y2) / 2 };
  // The grid columns whose VM would be wholly in view (the anchor's own column always counts).
  const marginX = NODE_W / 2 + 8;
  const firstCol = Math.min(0, Math.ceil((ext.x1 + marginX - anchor.x) / GRID_COL));
  const lastCol = Math.max(0, Math.floor((ext.x2 - marginX - anchor.x) / GRID_COL));
  const free = (p) => taken.every((q) => Math.abs(q.x - p.x) >= CELL_FREE_X || Math.abs(q.y - p.y) >= CELL_FREE_Y);
  for (let row = 0; row < 1000; row++) {
    for (let col = row === 0 ? (fromNewest ? 1 : 0) : firstCol; col <= lastCol; col++) {
      const spot = { x: anchor.x + col * GRID_COL, y: anchor.y + row * GRID_ROW };
      if (free(spot)) return spot;
    }
  }
  return anchor; // a thousand full rows: stack on the anchor rather than loop forever
}

/** Whether two or more VMs sit on top of each other (e.g. all at 0,0 after an API-built slice). */
export function stacked(cy) {
  const nodes = cy.nodes(".vm");
  const cells = new Set(nodes.map((n) => `${Math.round(n.position("x") / 20)}:${Math.round(n.position("y") / 20)}`));
  return nodes.length > 1 && cells.size < nodes.length;
}

/**
 * Spread the drawing from its centre when a link is too short for its labels (templates are
 * laid out tight), at most threefold. Returns whether anything moved.
 */
export function spreadCramped(cy) {
  let factor = 1;
  cy.edges(".link").forEach((edge) => {
    const a = edge.source().position();
    const b = edge.target().position();
    const d = Math.hypot(a.x - b.x, a.y - b.y);
    if (d < 1) return;
    // The part of the line hidden under the two nodes, by the link's direction.
    const hidden = (Math.abs(a.x - b.x) / d) * NODE_W + (Math.abs(a.y - b.y) / d) * NODE_H;
    if (d - hidden < MIN_FREE_LINK * 0.75) factor = Math.max(factor, (MIN_FREE_LINK + hidden) / d);
  });
  factor = Math.min(factor, 3);
  if (factor === 1) return false;
  const nodes = cy.nodes(".vm");
  const c = { x: 0, y: 0 };
  nodes.forEach((n) => {
    c.x += n.position("x") / nodes.length;
    c.y += n.position("y") / nodes.length;
  });
  nodes.forEach((n) => {
    n.position({ x: c.x + (n.position("x") - c.x) * factor, y: c.y + (n.position("y") - c.y) * factor });
  });
  return true;
}

/** The VMs on a circle big enough for their links' labels. Returns whether there was any VM. */
export function arrangeInCircle(cy) {
  const nodes = cy.nodes(".vm");
  if (!nodes.length) return false;
  nodes.layout({ name: "circle", radius: Math.max(150, nodes.length * 34), animate: false, fit: false, avoidOverlap: true }).run();
  return true;
}
