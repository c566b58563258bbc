// The VM card's usage charts: CPU and memory as the drift checks sampled them (GET /api/vms/{id}/usage/).
// The card is drawn again on every poll of the designer: answers are kept per VM and asked again at most
// every REFRESH_MS, so an open card costs one small request per check interval, not one per poll.

import { api } from "./api.js";
import { el, render, timeAgo } from "./ui.js";

const REFRESH_MS = 20000;
const W = 240;
const H = 36;
const SVG = "http://www.w3.org/2000/svg";
const cache = new Map(); // vm id -> {at: ms, data, error}

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  return node;
}

/** A line chart of ``values`` (null breaks the line) scaled to ``top``. */
function chart(values, top, label) {
  const box = svg("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, class: "usage-chart", role: "img", "aria-label": label });
  box.append(svg("rect", { x: 0, y: 0, width: W, height: H, class: "usage-bg" }));
  const step = (W - 4) / Math.max(values.length - 1, 1);
  let run = [];
  const flush = () => {
    if (run.length > 1) box.append(svg("polyline", { points: run.join(" "), class: "usage-line" }));
    else if (run.length === 1) {
      const [x, y] = run[0].split(",");
      box.append(svg("circle", { cx: x, cy: y, r: 1.5, class: "usage-dot" }));
    }
    run = [];
  };
  values.forEach((v, i) => {
    if (v === null || v === undefined) return flush();
    run.push(`${(2 + i * step).toFixed(1)},${(H - 2 - ((H - 4) * Math.min(v, top)) / top).toFixed(1)}`);
  });
  flush();
  return box;
}

// A sample more than three intervals after the one before (the VM was down, its host not checked)
// breaks the line instead of joining across the gap (provisioning.usage.with_gaps does the same).
function withGaps(samples, field, every) {
  const out = [];
  samples.forEach((s, i) => {
    if (i > 0 && Date.parse(s.taken_at) - Date.parse(samples[i - 1].taken_at) > 3 * every * 1000) out.push(null);
    out.push(s[field]);
  });
  return out;
}

function draw(box, vm, entry) {
  if (entry.error) return render(box, el("p", { class: "muted small" }, entry.error));
  const { samples, vcpus, ram_mib: ram, interval_seconds: every, window_hours: hours } = entry.data;
  if (!samples.length) {
    return render(box, el("p", { class: "muted small" }, `No sample yet: the drift check samples running VMs every ${every} s.`));
  }
  const cpu = withGaps(samples, "cpu_percent", every);
  const mem = withGaps(samples, "mem_mib", every);
  const last = samples[samples.length - 1];
  const cpuNow = last.cpu_percent === null ? "—" : `${Math.round(last.cpu_percent)} %`;
  render(
    box,
    el(
      "dl",
      { class: "kv" },
      el("dt", {}, "CPU"),
      el("dd", {}, el("div", { "data-testid": "vm-usage-cpu" }, `${cpuNow} of ${vcpus * 100} % (${vcpus} vCPU)`), chart(cpu, vcpus * 100, "CPU use")),
      el("dt", {}, "Memory"),
      el("dd", {}, el("div", { "data-testid": "vm-usage-mem" }, `${last.mem_mib} MiB of ${ram} MiB`), chart(mem, Math.max(ram, ...samples.map((s) => s.mem_mib)), "Memory use")),
    ),
    el("p", { class: "muted small" }, `${samples.length} samples over the last ${hours} h; last ${timeAgo(last.taken_at)}.`),
  );
}

/** The usage section of a deployed VM's card (filled from the kept answer, refreshed in the background). */
export function usageBlock(vm) {
  const box = el("div", { "data-testid": "vm-usage" });
  const entry = cache.get(vm.id);
  if (entry && (entry.data || entry.error)) draw(box, vm, entry);
  else render(box, el("p", { class: "muted small" }, "Loading…"));
  if (!entry || Date.now() - entry.at > REFRESH_MS) {
    cache.set(vm.id, { ...(entry || {}), at: Date.now() }); // one request at a time per VM
    api(`vms/${vm.id}/usage/`)
      .then((data) => cache.set(vm.id, { at: Date.now(), data }))
      .catch((err) => cache.set(vm.id, { at: Date.now(), error: err.message }))
      .then(() => {
        // The card may have been drawn again meanwhile: fill whichever usage box is on the page now.
        const shown = document.querySelector(`[data-testid="vm-usage"][data-vm="${vm.id}"]`);
        if (shown) draw(shown, vm, cache.get(vm.id));
      });
  }
  box.dataset.vm = String(vm.id);
  return box;
}
