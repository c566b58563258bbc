// "My slices": list with statuses, create (empty or from a topology), import, export, delete.

import { ApiError, api, apiList, config } from "./api.js";
import { exportSlice } from "./exporting.js";
import {
  clearFormErrors,
  confirmDialog,
  el,
  formValues,
  openDialog,
  render,
  showFormErrors,
  statusBadge,
  timeAgo,
  toast,
  withBusy,
  wireDialogs,
} from "./ui.js";

const listBox = document.getElementById("slice-list");
const createDialog = document.getElementById("create-dialog");
const createForm = document.getElementById("create-form");
const importDialog = document.getElementById("import-dialog");
const importForm = document.getElementById("import-form");
// The slice statuses that mean "a job runs" (slices.models.BUSY_STATUSES, given by the page).
const BUSY = new Set(config.busyStatuses);
let topologies = [];
let refreshTimer = null;

const designerUrl = (id) => config.designerUrl.replace(/0\/$/, `${id}/`);

async function loadSlices() {
  let slices;
  try {
    slices = await apiList("slices/");
  } catch (err) {
    listBox.removeAttribute("aria-busy");
    render(listBox, el("p", { class: "empty form-error", role: "alert" }, `Could not load your slices: ${err.message}`));
    return;
  }
  listBox.removeAttribute("aria-busy");
  renderSlices(slices);
  clearTimeout(refreshTimer);
  // While a job runs somewhere, keep the statuses fresh.
  if (slices.some((s) => BUSY.has(s.status))) refreshTimer = setTimeout(loadSlices, 2500);
}

function renderSlices(slices) {
  if (!slices.length) {
    render(
      listBox,
      el(
        "div",
        { class: "empty" },
        el("h2", {}, "No slices yet"),
        el("p", { class: "muted" }, "Create one from scratch or from a topology (ring, star, mesh…), or import a file."),
        el("button", { type: "button", class: "btn btn-primary", onclick: () => openCreate() }, "New slice"),
      ),
    );
    return;
  }
  const rows = slices.map((s) =>
    el(
      "tr",
      { "data-slice": s.id, "data-testid": `slice-row-${s.name}` },
      el(
        "td",
        {},
        el("a", { class: "slice-name", href: designerUrl(s.id) }, s.name),
        s.description ? el("div", { class: "slice-desc", title: s.description }, s.description) : null,
      ),
      el("td", { "data-label": "Status" }, statusBadge(s.status)),
      el("td", { class: "num", "data-label": "VMs" }, s.vm_count ?? "—"),
      el("td", { class: "num", "data-label": "Links" }, s.link_count ?? "—"),
      el("td", { "data-label": "Updated", title: s.updated ? new Date(s.updated).toLocaleString() : "" }, timeAgo(s.updated)),
      el(
        "td",
        {},
        el(
          "div",
          { class: "row-actions" },
          el("a", { class: "btn btn-sm btn-primary", href: designerUrl(s.id) }, "Open"),
          el("button", { type: "button", class: "btn btn-sm", onclick: (e) => doExport(e.currentTarget, s, "yaml"), "aria-label": `Export ${s.name} as YAML` }, "YAML"),
          el("button", { type: "button", class: "btn btn-sm", onclick: (e) => doExport(e.currentTarget, s, "json"), "aria-label": `Export ${s.name} as JSON` }, "JSON"),
          el(
            "button",
            {
              type: "button",
              class: "btn btn-sm btn-danger-ghost",
              "aria-label": `Delete ${s.name}`,
              disabled: s.status !== "draft",
              title: s.status !== "draft" ? "Destroy the deployment first (in the designer)" : "Delete this slice",
              onclick: (e) => doDelete(e.currentTarget, s),
            },
            "Delete",
          ),
        ),
      ),
    ),
  );
  render(
    listBox,
    el(
      "table",
      { class: "slice-table" },
      el(
        "thead",
        {},
        el("tr", {}, ["Name", "Status", "VMs", "Links", "Updated"].map((h) => el("th", { class: h === "VMs" || h === "Links" ? "num" : "" }, h)), el("th", {}, el("span", { class: "visually-hidden" }, "Actions"))),
      ),
      el("tbody", {}, rows),
    ),
  );
}

async function doExport(button, slice, format) {
  try {
    await withBusy(button, () => exportSlice(slice, format));
  } catch (err) {
    toast(`Export of ${slice.name} failed: ${err.message}`, { kind: "error" });
  }
}

async function doDelete(button, slice) {
  const ok = await confirmDialog(`Delete the slice “${slice.name}” with its ${slice.vm_count ?? 0} VMs and ${slice.link_count ?? 0} links? This cannot be undone.`, {
    title: "Delete slice",
    ok: "Delete",
  });
  if (!ok) return;
  try {
    await withBusy(button, () => api(`slices/${slice.id}/`, { method: "DELETE" }));
    toast(`Slice ${slice.name} deleted.`, { kind: "ok" });
  } catch (err) {
    toast(err.message, { kind: "error" });
  }
  loadSlices();
}

// --- create -------------------------------------------------------------------------

const topologySelect = createForm.elements.topology;
const countInput = createForm.elements.count;
const countField = countInput.closest(".field");
const preview = document.getElementById("topology-preview");

function openCreate() {
  openDialog(createDialog);
  syncTopology();
}

function syncTopology() {
  const kind = topologySelect.value;
  countField.hidden = !kind;
  preview.hidden = !kind;
  const spec = topologies.find((t) => t.name === kind);
  if (spec) {
    countInput.min = spec.min_count ?? 1;
    countInput.max = spec.max_count ?? 64;
    const help = countField.querySelector(".help");
    if (help) help.textContent = spec.description || "";
  }
  if (kind) drawPreview(kind, Math.max(1, Math.min(Number(countInput.value) || 3, 24)));
}

/** A tiny SVG sketch of the chosen topology, so the choice is obvious before creating it. */
function drawPreview(kind, n) {
  const W = 440;
  const H = 110;
  const pts = [];
  const links = [];
  if (kind === "linear") {
    for (let i = 0; i < n; i++) pts.push([30 + (i * (W - 60)) / Math.max(1, n - 1), H / 2]);
    for (let i = 0; i < n - 1; i++) links.push([i, i + 1]);
  } else if (kind === "tree") {
    const depth = Math.floor(Math.log2(n)) + 1;
    for (let k = 1; k <= n; k++) {
      const level = Math.floor(Math.log2(k));
      const slots = 2 ** level;
      const pos = k - slots;
      pts.push([((pos + 0.5) * W) / slots, 18 + (level * (H - 36)) / Math.max(1, depth - 1)]);
      if (k > 1) links.push([Math.floor(k / 2) - 1, k - 1]);
    }
  } else {
    const ring = kind === "star" ? n - 1 : n;
    const offset = kind === "star" ? 1 : 0;
    if (kind === "star") pts.push([W / 2, H / 2]);
    for (let i = 0; i < ring; i++) {
      const a = (2 * Math.PI * i) / Math.max(1, ring) - Math.PI / 2;
      pts.push([W / 2 + 42 * Math.cos(a) * 1.6, H / 2 + 42 * Math.sin(a)]);
    }
    if (kind === "ring") for (let i = 0; i < n && n > 2; i++) links.push([i, (i + 1) % n]);
    if (kind === "star") for (let i = 0; i < ring; i++) links.push([0, i + offset]);
    if (kind === "mesh") for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) links.push([i, j]);
  }
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  for (const [a, b] of links) {
    const line = document.createElementNS(ns, "line");
    Object.entries({ x1: pts[a][0], y1: pts[a][1], x2: pts[b][0], y2: pts[b][1], stroke: "#a5b4fc", "stroke-width": 2 }).forEach(([k, v]) => line.setAttribute(k, v));
    svg.append(line);
  }
  for (const [x, y] of pts) {
    const c = document.createElementNS(ns, "circle");
    Object.entries({ cx: x, cy: y, r: 7, fill: "#fff", stroke: "#4f46e5", "stroke-width": 2 }).forEach(([k, v]) => c.setAttribute(k, v));
    svg.append(c);
  }
  preview.replaceChildren(svg);
}

topologySelect.addEventListener("change", syncTopology);
countInput.addEventListener("input", syncTopology);

createForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearFormErrors(createForm);
  const values = formValues(createForm);
  const submit = createForm.querySelector('[type="submit"]');
  try {
    const created = await withBusy(submit, () => {
      if (!values.topology) return api("slices/", { method: "POST", body: { name: values.name, description: values.description } });
      return api("slices/from-template/", {
        method: "POST",
        body: { name: values.name, description: values.description, topology: values.topology, count: values.count },
      });
    });
    createDialog.close();
    window.location.assign(designerUrl(created.id));
  } catch (err) {
    if (err instanceof ApiError) showFormErrors(createForm, err);
    else throw err;
  }
});

// --- import -------------------------------------------------------------------------

importForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearFormErrors(importForm);
  const { file, name } = formValues(importForm);
  if (!file) {
    showFormErrors(importForm, new ApiError(400, { detail: "Choose a file.", errors: { file: ["Choose a YAML or JSON file."] } }));
    return;
  }
  const body = new FormData();
  body.append("file", file);
  if (name) body.append("name", name);
  const submit = importForm.querySelector('[type="submit"]');
  try {
    const created = await withBusy(submit, () => api("slices/import/", { method: "POST", body }));
    importDialog.close();
    // What the import had to rename or could not represent (a containerlab file): the designer shows it.
    const renamed = (created.interfaces || []).filter((i) => i.interface !== i.mapped);
    if (renamed.length || (created.warnings || []).length) {
      sessionStorage.setItem(`import-report-${created.id}`, JSON.stringify({ renamed, warnings: created.warnings || [] }));
    }
    window.location.assign(designerUrl(created.id));
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    // Errors inside the document name their path (vms[1].name): show them under the file field.
    const fields = {};
    const inFile = [];
    for (const [key, message] of Object.entries(err.fields)) {
      if (key === "name" || key === "file") fields[key] = message;
      else inFile.push(`${key}: ${message}`);
    }
    if (inFile.length) fields.file = [fields.file, ...inFile].filter(Boolean).join("\n");
    err.fields = fields;
    showFormErrors(importForm, err);
  }
});

// --- start ----------------------------------------------------------------------------

wireDialogs();
document.querySelector('[data-open="create-dialog"]').addEventListener("click", syncTopology);
api("templates/")
  .then((data) => {
    topologies = data;
    syncTopology();
  })
  .catch((err) => toast(`Could not load the topologies: ${err.message}`, { kind: "error" }));
loadSlices().finally(() => {
  document.body.dataset.ready = "1";
});
