// The slice designer: canvas, inspector, placement, plan and deploy with live progress.
// Every change goes through the REST API; the page only mirrors what the API answers.

import { ApiError, api, config } from "./api.js";
import { FINISHED, jobLabel, mergeSteps, renderDeployment } from "./deploy.js";
import { exportSlice } from "./exporting.js";
import { wireExpiry } from "./expiry.js";
import { enableLinkDrawing, linkElement, linkLabel, separateEndLabels, styles, vmElement, vmLabel } from "./graph.js";
import { renderInspector as renderInspectorPanel, renderOutline as renderOutlinePanel } from "./inspector.js";
import { arrangeInCircle, freeSpot, isInView, spreadCramped, stacked } from "./layout.js";
import { renderPlacement, renderPlan } from "./panels.js";
import {
  clearFormErrors,
  confirmDialog,
  download,
  el,
  formValues,
  openDialog,
  render,
  showFormErrors,
  toast as pageToast,
  withBusy,
  wireDialogs,
} from "./ui.js";

const sliceId = config.sliceId;
// The slice statuses that mean "a job runs" (slices.models.BUSY_STATUSES, given by the page).
const BUSY = new Set(config.busyStatuses);
const $ = (id) => document.getElementById(id);

const state = {
  slice: null,
  vms: new Map(), // id -> VM (API shape)
  links: new Map(), // id -> Link (API shape)
  deployment: null, // the latest job of the slice, when known
  linkMode: false,
  pollTimer: null,
  pollErrors: 0,
  // Every read of the slice and of the deployment is numbered when it is sent; an answer is
  // shown only if nothing sent after it has been shown already (answers can cross on the wire).
  sent: { slice: 0, deployment: 0 },
  shown: { slice: 0, deployment: 0 },
};

/** Number a request of ``kind`` ("slice" or "deployment") as it is sent. */
function numbered(kind) {
  state.sent[kind] += 1;
  return state.sent[kind];
}

/** Whether the answer to request ``seq`` of ``kind`` is still news (nothing newer shown); marks it shown. */
function isNews(kind, seq) {
  if (seq < state.shown[kind]) return false;
  state.shown[kind] = seq;
  return true;
}

const flavorNames = new Map([...$("vm_flavor").options].map((o) => [Number(o.value), o.textContent]));
const imageNames = new Map([...$("vm_image").options].map((o) => [Number(o.value), o.textContent]));

// --- the canvas ---------------------------------------------------------------------------

const canvasWrap = document.querySelector(".canvas-wrap");
const cy = window.cytoscape({
  container: $("cy"),
  style: styles(),
  elements: [],
  minZoom: 0.25,
  maxZoom: 2.5,
  selectionType: "single",
  boxSelectionEnabled: false,
  layout: { name: "preset" },
});
// A handle for tests and for curious users in the console.
window.designer = { cy, state };

const linkDrawing = enableLinkDrawing(cy, {
  isActive: () => state.linkMode && !isBusy(),
  onDrop: (from, to, originalEvent) => {
    const a = state.vms.get(from.data("vmId"));
    const b = state.vms.get(to.data("vmId"));
    if (!a || !b) return;
    if ($("opt-choose-ifaces").checked || originalEvent?.shiftKey) openLinkChooser(a, b);
    else createLink(a, b);
  },
});

/**
 * Every message of the designer shows at the top of the canvas, never over the side panel,
 * whose tables (addresses, steps) are what the user reads when a job ends.
 */
function toast(message, options = {}) {
  return pageToast(message, { ...options, where: $("canvas-toasts") });
}

function canvasError(message, elements) {
  toast(message, { kind: "error", testid: "canvas-error" });
  if (elements) {
    elements.addClass("flash-error");
    setTimeout(() => elements.removeClass("flash-error"), 1600);
  }
}

function jobRunning() {
  return Boolean(state.deployment) && !FINISHED.has(state.deployment.status);
}

function isBusy() {
  return BUSY.has(state.slice?.status) || jobRunning();
}

/**
 * The slice's status as shown: while a job runs the slice is not re-read (only the deployment
 * is polled), so the job says what the slice is doing; the slice is read again when it ends.
 */
function sliceStatus() {
  const dep = state.deployment;
  if (!jobRunning()) return state.slice.status;
  if (dep.kind === "power") return state.slice.status; // a power action leaves the slice as it is
  if (dep.status === "queued") return "queued";
  return dep.kind === "destroy" ? "destroying" : "deploying";
}

// --- states shown on the canvas -------------------------------------------------------------

/** What the slice's open drift differences concern (a check's findings): VM ids and VLANs. */
function drifted() {
  const vms = new Set();
  const vlans = new Set();
  for (const diff of state.slice?.health?.differences || []) {
    if (diff.vm !== null && diff.vm !== undefined) vms.add(diff.vm);
    if (diff.vlan !== null && diff.vlan !== undefined) vlans.add(diff.vlan);
  }
  return { vms, vlans };
}

/** What the failed steps of the latest job touched: each step row names its VM id and VLAN. */
function failedTargets() {
  const vms = new Set();
  const vlans = new Set();
  for (const step of state.deployment?.steps || []) {
    if (step.status !== "failed") continue;
    if (step.vm !== null && step.vm !== undefined) vms.add(step.vm);
    if (step.vlan !== null && step.vlan !== undefined) vlans.add(step.vlan);
  }
  return { vms, vlans };
}

function vmState(vm) {
  if (failedTargets().vms.has(vm.id)) return "failed";
  if (jobRunning() && vm.status === "designed" && state.deployment.kind !== "destroy") return "deploying";
  if (["designed", "deploying", "running", "failed", "stopped", "lost"].includes(vm.status)) return vm.status;
  return "designed";
}

function linkState(link) {
  if (failedTargets().vlans.has(link.vlan)) return "failed";
  if (jobRunning()) return "deploying";
  const ends = [state.vms.get(link.a.vm), state.vms.get(link.b.vm)];
  if (ends.every((vm) => vm?.status === "running")) return "up";
  if (ends.some((vm) => vm?.status === "failed")) return "failed";
  return "designed";
}

// --- loading and drawing -------------------------------------------------------------------

/** Read the slice and show it, unless a newer answer (or a newer local change) is shown already. */
async function loadSlice() {
  const seq = numbered("slice");
  const slice = await api(`slices/${sliceId}/`);
  if (isNews("slice", seq)) applySlice(slice);
  return state.slice;
}

/** A change the page made itself (an API write's answer) is newer than any read still on the way. */
function changedLocally() {
  isNews("slice", numbered("slice"));
}

/** Mirror a slice detail (from the API) on the canvas and in the panels. */
function applySlice(slice) {
  state.slice = slice;
  state.vms = new Map((slice.vms || []).map((vm) => [vm.id, vm]));
  state.links = new Map((slice.links || []).map((link) => [link.id, link]));
  cy.batch(() => {
    const seen = new Set();
    for (const vm of state.vms.values()) {
      const id = `vm-${vm.id}`;
      seen.add(id);
      const node = cy.getElementById(id);
      if (node.empty()) cy.add(vmElement(vm, vmState(vm))).data("drift", drifted().vms.has(vm.id));
      else {
        node.data({ label: vmLabel(vm), state: vmState(vm), internet: Boolean(vm.internet_enabled), drift: drifted().vms.has(vm.id) });
        if (!node.grabbed()) node.position({ x: Number(vm.x) || 0, y: Number(vm.y) || 0 });
      }
    }
    for (const link of state.links.values()) {
      const id = `link-${link.id}`;
      seen.add(id);
      const edge = cy.getElementById(id);
      if (edge.empty()) cy.add(linkElement(link, linkState(link)));
      else edge.data({ label: linkLabel(link), state: linkState(link) });
      cy.getElementById(id).data("drift", drifted().vlans.has(link.vlan));
    }
    cy.elements(".vm, .link").forEach((ele) => {
      if (!seen.has(ele.id())) cy.remove(ele);
    });
  });
  separateEndLabels(cy);
  renderHeader();
  renderOutline();
  renderInspector();
  updateActions();
}

function refreshStates() {
  cy.batch(() => {
    for (const vm of state.vms.values()) cy.getElementById(`vm-${vm.id}`).data("state", vmState(vm));
    for (const link of state.links.values()) cy.getElementById(`link-${link.id}`).data("state", linkState(link));
  });
}

/** Lay out VMs that sit on top of each other (e.g. all at 0,0 after an API-built slice) and save. */
async function untangle() {
  if (stacked(cy)) await arrange();
}

/** Spread a draft drawing whose links are too short to read (e.g. a dense template), and save it. */
async function spreadIfCramped() {
  if (state.slice.status !== "draft" || !spreadCramped(cy)) return;
  separateEndLabels(cy);
  await Promise.all(cy.nodes(".vm").map((node) => savePosition(node)));
}

/** The Arrange button: the VMs on a circle, in view, saved. */
async function arrange() {
  if (!arrangeInCircle(cy)) return;
  separateEndLabels(cy);
  cy.fit(undefined, 60);
  await Promise.all(cy.nodes(".vm").map((node) => savePosition(node)));
}

async function savePosition(node) {
  const vm = state.vms.get(node.data("vmId"));
  if (!vm) return;
  const { x, y } = node.position();
  const rx = Math.round(x * 10) / 10;
  const ry = Math.round(y * 10) / 10;
  if (rx === vm.x && ry === vm.y) return;
  try {
    const updated = await api(`vms/${vm.id}/`, { method: "PATCH", body: { x: rx, y: ry } });
    vm.x = updated.x;
    vm.y = updated.y;
  } catch (err) {
    canvasError(`Could not save the position of ${vm.name}: ${err.message}`, node);
    node.position({ x: vm.x, y: vm.y });
  }
}

cy.on("dragfree", "node.vm", (event) => {
  separateEndLabels(cy);
  savePosition(event.target);
});

// --- header, actions ---------------------------------------------------------------------------

function renderHeader() {
  const badge = $("slice-status");
  const status = sliceStatus();
  badge.className = `badge status-${status}`;
  badge.textContent = status[0].toUpperCase() + status.slice(1);
  $("slice-name").textContent = state.slice.name;
  document.title = `${state.slice.name} · Slice Portal`;
  $("canvas-empty").hidden = state.vms.size > 0;
}

// What each toolbar button says about itself when enabled (its title in the template).
for (const button of document.querySelectorAll(".toolbar button")) button.dataset.hint = button.title;

/** Enable or disable a toolbar button; its tooltip says why when it is off, what it does when on. */
function setAvailable(button, on, reasonOff) {
  button.disabled = !on;
  button.title = on ? button.dataset.hint : reasonOff;
}

function updateActions() {
  const status = sliceStatus();
  const busy = isBusy();
  const editOff = busy ? "A job is running on this slice: wait for it to finish." : "";
  const hasVMs = state.vms.size > 0;
  setAvailable($("btn-add-vm"), !busy, editOff);
  setAvailable($("btn-link-mode"), !busy && state.vms.size > 1, editOff || "Add at least two VMs first.");
  setAvailable($("btn-delete"), !busy && cy.$(":selected").length > 0, editOff || "Select a VM or a link first.");
  setAvailable($("btn-layout"), !busy && hasVMs, editOff);
  setAvailable($("btn-placement"), hasVMs, "Add VMs first.");
  setAvailable($("btn-plan"), hasVMs, "Add VMs first.");
  setAvailable($("btn-deploy"), !busy && status === "draft" && hasVMs, busy ? editOff : status !== "draft" ? "Already deployed: use Redeploy to apply changes." : "Add VMs first.");
  setAvailable($("btn-redeploy"), !busy && ["active", "failed"].includes(status), busy ? editOff : "Deploy the slice first.");
  setAvailable($("btn-destroy"), !busy && ["active", "failed"].includes(status), busy ? editOff : "Nothing is deployed.");
  setAvailable($("btn-check"), !busy && status === "active", busy ? editOff : "Only a deployed (active) slice is checked.");
  const drift = state.slice.health?.state;
  setAvailable($("btn-repair"), !busy && status === "active" && ["drifted", "unreachable"].includes(drift), busy ? editOff : status !== "active" ? "Only a deployed (active) slice is repaired." : "Nothing differs on the hosts (Check first).");
  // While a job runs, Cancel takes the place of Destroy (which waits for the job anyway).
  const cancel = $("btn-cancel");
  cancel.hidden = !jobRunning();
  $("btn-destroy").hidden = jobRunning();
  cancel.disabled = isCancelling();
  cancel.textContent = isCancelling() ? "Cancelling…" : "Cancel job";
  if (busy && state.linkMode) setLinkMode(false);
  cy.autoungrabify(state.linkMode);
}

// --- outline and inspector ----------------------------------------------------------------------

function selected() {
  const ele = cy.$(":selected");
  if (!ele.length) return null;
  if (ele.isNode()) return { kind: "vm", item: state.vms.get(ele.data("vmId")), ele };
  return { kind: "link", item: state.links.get(ele.data("linkId")), ele };
}

function selectElement(id, { center = true } = {}) {
  const ele = cy.getElementById(id);
  if (ele.empty()) return;
  cy.$(":selected").unselect();
  ele.select();
  if (center) cy.animate({ center: { eles: ele }, duration: 200 });
}

/** What the Design tab shows, and what its buttons do. */
function panelView() {
  const sel = selected();
  return {
    slice: state.slice,
    status: sliceStatus(),
    vms: state.vms,
    links: state.links,
    selection: sel?.item ? sel : null,
    selectedId: cy.$(":selected").id(),
    busy: isBusy(),
    vmState,
    flavorName: (id) => flavorNames.get(id),
    imageName: (id) => imageNames.get(id),
    onSelect: (id) => selectElement(id),
    onAddVm: () => openVmDialog(),
    onEditVm: (vm) => openVmDialog(vm),
    onDelete: () => deleteSelection(),
    onPower: (vm, action, button) => powerVm(vm, action, button),
  };
}

function renderOutline() {
  renderOutlinePanel($("outline"), panelView());
}

function renderInspector() {
  renderInspectorPanel($("inspector"), panelView());
}

cy.on("select unselect", () => {
  renderInspector();
  renderOutline();
  updateActions();
  if (cy.$(":selected").length && !jobRunning()) showTab("inspector");
});

// --- VMs ---------------------------------------------------------------------------------------

const vmDialog = $("vm-dialog");
const vmForm = $("vm-form");
let vmDialogTarget = null; // the VM being edited, or null to add one
let pendingPosition = null; // where a new VM goes (double-click position)

function nextVmName() {
  const names = new Set([...state.vms.values()].map((vm) => vm.name));
  for (let i = 1; ; i++) if (!names.has(`vm${i}`)) return `vm${i}`;
}

function openVmDialog(vm = null, position = null) {
  if (isBusy()) return;
  vmDialogTarget = vm;
  pendingPosition = position;
  const f = vmForm.elements;
  $("vm-dialog-title").textContent = vm ? `Edit ${vm.name}` : "Add a VM";
  $("vm-submit").textContent = vm ? "Save" : "Add VM";
  if (vm) {
    f.name.value = vm.name;
    f.flavor.value = vm.flavor ?? f.flavor.value;
    f.image.value = vm.image ?? f.image.value;
    f.data_interfaces_count.value = vm.data_interfaces_count;
    f.internet_enabled.checked = Boolean(vm.internet_enabled);
  } else {
    f.name.value = nextVmName();
    f.data_interfaces_count.value = f.data_interfaces_count.defaultValue || 2;
    f.internet_enabled.checked = false;
  }
  openDialog(vmDialog);
  f.name.select();
}

vmForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearFormErrors(vmForm);
  const values = formValues(vmForm);
  const submit = $("vm-submit");
  try {
    if (vmDialogTarget) {
      const updated = await withBusy(submit, () => api(`vms/${vmDialogTarget.id}/`, { method: "PATCH", body: values }));
      vmDialog.close();
      toast(`${updated.name} saved.`, { kind: "ok" });
    } else {
      const pos = pendingPosition || freeSpot(cy);
      const created = await withBusy(submit, () =>
        api("vms/", { method: "POST", body: { ...values, slice: sliceId, x: Math.round(pos.x), y: Math.round(pos.y) } }),
      );
      vmDialog.close();
      changedLocally();
      state.vms.set(created.id, created);
      cy.add(vmElement(created, vmState(created)));
      const node = cy.getElementById(`vm-${created.id}`);
      selectElement(node.id(), { center: !isInView(cy, node) });
    }
    await loadSlice();
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    showFormErrors(vmForm, err);
  }
});

cy.on("dbltap", (event) => {
  if (state.linkMode) return;
  if (event.target === cy) openVmDialog(null, event.position);
  else if (event.target.isNode?.() && event.target.hasClass("vm")) openVmDialog(state.vms.get(event.target.data("vmId")));
});

// --- links ----------------------------------------------------------------------------------------

function linkedIfaces(vm) {
  return new Set((vm.interfaces || []).filter((i) => i.link).map((i) => i.name));
}

function freeIfaces(vm) {
  const linked = linkedIfaces(vm);
  return (vm.interfaces || []).filter((i) => i.index > 0 && !linked.has(i.name));
}

async function createLink(a, b, ifaceA = "", ifaceB = "") {
  const body = { slice: sliceId, vm_a: a.id, vm_b: b.id };
  if (ifaceA) body.iface_a = ifaceA;
  if (ifaceB) body.iface_b = ifaceB;
  try {
    const link = await api("links/", { method: "POST", body });
    changedLocally();
    state.links.set(link.id, link);
    cy.add(linkElement(link, linkState(link)));
    toast(`Linked ${link.a.vm_name}.${link.a.interface} ⟷ ${link.b.vm_name}.${link.b.interface} on VLAN ${link.vlan} (${link.subnet}).`, {
      kind: "ok",
      testid: "canvas-ok",
      timeout: 2500,
    });
    await loadSlice();
    return link;
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    canvasError(err.message, cy.getElementById(`vm-${a.id}`).union(cy.getElementById(`vm-${b.id}`)));
    return null;
  }
}

const linkDialog = $("link-dialog");
const linkForm = $("link-form");
let linkDialogEnds = null;

function fillIfaceSelect(select, vm) {
  const linked = linkedIfaces(vm);
  const options = (vm.interfaces || [])
    .filter((i) => i.index > 0)
    .map((i) => el("option", { value: i.name, disabled: linked.has(i.name) }, linked.has(i.name) ? `${i.name} (linked, VLAN ${i.vlan})` : i.name));
  render(select, options.length ? options : el("option", { value: "", disabled: true }, "no data interface"));
  const first = freeIfaces(vm)[0];
  if (first) select.value = first.name;
}

function openLinkChooser(a, b) {
  linkDialogEnds = [a, b];
  $("link-label-a").textContent = a.name;
  $("link-label-b").textContent = b.name;
  fillIfaceSelect($("link-iface-a"), a);
  fillIfaceSelect($("link-iface-b"), b);
  openDialog(linkDialog);
}

linkForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const [a, b] = linkDialogEnds;
  const submit = linkForm.querySelector('[type="submit"]');
  try {
    await withBusy(submit, () =>
      api("links/", { method: "POST", body: { slice: sliceId, vm_a: a.id, vm_b: b.id, iface_a: $("link-iface-a").value, iface_b: $("link-iface-b").value } }),
    );
    linkDialog.close();
    await loadSlice();
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    showFormErrors(linkForm, err, { vm_a: "iface_a", vm_b: "iface_b" });
  }
});

function setLinkMode(on) {
  state.linkMode = Boolean(on) && !isBusy();
  if (!state.linkMode) linkDrawing.cancel();
  $("btn-link-mode").setAttribute("aria-pressed", String(state.linkMode));
  canvasWrap.classList.toggle("link-mode", state.linkMode);
  $("canvas-hint").textContent = state.linkMode
    ? "Link mode: drag from one VM to another · Shift+drop picks the interfaces · Esc leaves"
    : "Drag VMs to move them · double-click the background to add a VM";
  cy.autoungrabify(state.linkMode);
}

// --- deleting ------------------------------------------------------------------------------------

async function deleteSelection() {
  const sel = selected();
  if (!sel || !sel.item || isBusy()) return;
  const { kind, item, ele } = sel;
  try {
    if (kind === "vm") {
      await api(`vms/${item.id}/`, { method: "DELETE" });
      toast(`${item.name} deleted${ele.connectedEdges().length ? " with its links" : ""}.`, { kind: "ok" });
    } else {
      await api(`links/${item.id}/`, { method: "DELETE" });
      toast(`Link on VLAN ${item.vlan} deleted.`, { kind: "ok" });
    }
    changedLocally();
    cy.remove(kind === "vm" ? ele.union(ele.connectedEdges()) : ele);
    await loadSlice();
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    canvasError(err.message, ele);
  }
}

// --- placement and plan ----------------------------------------------------------------------------

async function openPlacement() {
  const dialog = $("placement-dialog");
  render($("placement-view"), el("p", { class: "muted" }, "Computing the placement…"));
  openDialog(dialog);
  try {
    const data = await api(`slices/${sliceId}/placement/`);
    renderPlacement($("placement-view"), data);
  } catch (err) {
    render($("placement-view"), el("p", { class: "form-error", role: "alert" }, err.message));
  }
}

async function openPlan() {
  const dialog = $("plan-dialog");
  render($("plan-view"), el("p", { class: "muted" }, "Building the plan…"));
  openDialog(dialog);
  try {
    // The engine picks the kind: deploy for a draft, else redeploy (what changed).
    const data = await api(`slices/${sliceId}/plan/`);
    renderPlan($("plan-view"), data);
  } catch (err) {
    render($("plan-view"), el("p", { class: "form-error", role: "alert" }, err.message));
  }
}

// --- jobs: deploy, redeploy, destroy -------------------------------------------------------------------

function showTab(name) {
  for (const tab of document.querySelectorAll('.tabs [role="tab"]')) {
    const on = tab.id === `tab-${name}`;
    tab.setAttribute("aria-selected", String(on));
    tab.tabIndex = on ? 0 : -1;
    $(tab.getAttribute("aria-controls")).hidden = !on;
  }
}

const JOB_NAME = { deploy: "Deploy", redeploy: "Redeploy", destroy: "Destroy", repair: "Repair" };

async function startJob(kind, button) {
  if (kind === "destroy") {
    const ok = await confirmDialog(`Destroy “${state.slice.name}” on the cluster? Its VMs are stopped and every host resource is removed. The design stays.`, {
      title: "Destroy the deployment",
      ok: "Destroy",
    });
    if (!ok) return;
  }
  await requestJob(button, `slices/${sliceId}/${kind}/`, {}, JOB_NAME[kind]);
}

/** Ask for a job (a POST answered with its deployment), then follow it: its tab, the canvas, polling. */
async function requestJob(button, path, body, label) {
  try {
    const seq = numbered("deployment");
    const dep = await withBusy(button, () => api(path, { method: "POST", body }));
    if (!isNews("deployment", seq)) return;
    state.deployment = dep;
    state.pollErrors = 0;
    showTab("deploy");
    renderJob();
    poll();
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    toast(`${label} refused: ${err.message}`, { kind: "error", testid: "canvas-error" });
  }
}

// Power actions that lose the guest's unsaved state: asked first.
const POWER_CONFIRM = {
  force_off: "Force off pulls the plug: the guest is stopped at once, without shutting down.",
  reset: "Reset restarts the guest at once (the reset button), without shutting down.",
};

/** A power action on one VM (start, shutdown, reboot, reset, force_off): a job followed like a deploy. */
async function powerVm(vm, action, button) {
  if (POWER_CONFIRM[action]) {
    const ok = await confirmDialog(`${POWER_CONFIRM[action]} Go on with “${vm.name}”?`, {
      title: `${jobLabel({ kind: "power", action })} ${vm.name}?`,
      ok: jobLabel({ kind: "power", action }),
    });
    if (!ok) return;
  }
  await requestJob(button, `vms/${vm.id}/power/`, { action }, jobLabel({ kind: "power", action }));
}

/** Show the job: its view, the canvas colours, and what follows from it (status, buttons). */
function renderJob() {
  const dep = state.deployment;
  if (!dep) return;
  renderDeployment($("deploy-view"), dep, [...state.vms.values()].sort((a, b) => a.name.localeCompare(b.name, undefined, { numeric: true })), {
    cancelling: isCancelling(),
  });
  $("deploy-tab-dot").hidden = FINISHED.has(dep.status);
  refreshStates();
  renderHeader();
  updateActions();
  // The overview card shows the slice's status: redraw it when that changes.
  renderHealth();
  if (state.shownStatus !== sliceStatus() && !cy.$(":selected").length) renderInspector();
  state.shownStatus = sliceStatus();
}

const HEALTH_LABEL = { in_sync: "In sync", drifted: "Drifted", unreachable: "Host unreachable", unknown: "Not checked" };

/** The slice's drift health next to its status: what differs, where, since when (in its tooltip). */
function renderHealth() {
  const badge = $("slice-health");
  const health = state.slice.health;
  badge.hidden = !health || state.slice.status !== "active";
  if (badge.hidden) return;
  const count = health.differences.length;
  badge.className = `badge health-${health.state}`;
  badge.textContent = HEALTH_LABEL[health.state] + (count ? ` (${count})` : "");
  const lines = health.differences.map(
    (d) => `${d.host}: ${d.kind} ${d.object}: expected ${d.expected}, found ${d.found} (since ${new Date(d.first_seen).toLocaleTimeString()})`,
  );
  const checked = health.checked_at ? `Checked ${new Date(health.checked_at).toLocaleTimeString()}` : "Not checked yet";
  badge.title = [checked, ...lines].join("\n");
}

/** The Check button: the slice's hosts are observed by jobs; the slice is read again until their answer is in. */
async function checkSlice(button) {
  const before = state.slice.health?.checked_at;
  try {
    await withBusy(button, () => api(`slices/${sliceId}/check/`, { method: "POST", body: {} }));
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    toast(`Check refused: ${err.message}`, { kind: "error", testid: "canvas-error" });
    return;
  }
  toast("Checking the hosts…", { kind: "info" });
  for (let i = 0; i < 20; i += 1) {
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const slice = await loadSlice();
    if (slice.health?.checked_at && slice.health.checked_at !== before) {
      toast(`Check: ${HEALTH_LABEL[slice.health.state].toLowerCase()}.`, { kind: slice.health.state === "in_sync" ? "ok" : "error", testid: "check-done" });
      return;
    }
  }
}

/**
 * Follow the running job: only the deployment is read (the steps changed since the last answer,
 * no plan); the slice is read once, when the job has ended.
 */
async function poll() {
  clearTimeout(state.pollTimer);
  const dep = state.deployment;
  if (!dep || FINISHED.has(dep.status)) return;
  const seq = numbered("deployment");
  try {
    const fresh = await api(`deployments/${dep.id}/`, { query: { plan: "false", steps_after: dep.steps_revision } });
    state.pollErrors = 0;
    if (state.deployment?.id !== dep.id) return; // another job was started meanwhile: its own poll follows it
    if (isNews("deployment", seq)) showDeployment(fresh);
  } catch (err) {
    state.pollErrors += 1;
    if (state.pollErrors === 3) toast(`Lost contact with the server (${err.message}); still trying…`, { kind: "error" });
  }
  if (state.deployment?.id !== dep.id || FINISHED.has(state.deployment.status)) return;
  state.pollTimer = setTimeout(poll, state.pollErrors ? Math.min(8000, config.pollMs * 2 ** state.pollErrors) : config.pollMs);
}

/** Lay an answer about the current job over what the page has, and act on its end (once). */
function showDeployment(fresh) {
  const had = state.deployment;
  state.deployment = mergeSteps(had, fresh);
  renderJob();
  if (!FINISHED.has(had.status) && FINISHED.has(fresh.status)) jobEnded(state.deployment);
}

/** The job has ended: read the slice again (statuses, workers, addresses) and say how it went. */
async function jobEnded(dep) {
  clearTimeout(state.pollTimer);
  try {
    await loadSlice();
  } catch (err) {
    canvasError(`Could not reload the slice: ${err.message}`);
  }
  renderJob();
  const what = jobLabel(dep);
  if (dep.status === "succeeded") toast(`${what} finished.`, { kind: "ok", testid: "job-done" });
  else if (dep.status === "cancelled") toast(`${what} cancelled.`, { kind: "info", testid: "job-cancelled" });
  else toast(`${what} failed: ${dep.error || "see the failing step"}`, { kind: "error", testid: "job-failed" });
}

function isCancelling() {
  const dep = state.deployment;
  return jobRunning() && Boolean(dep.cancel_requested || state.cancelRequested === dep.id);
}

/** Ask the server to stop the running job at its next step boundary (after a confirmation). */
async function cancelJob(button) {
  const dep = state.deployment;
  if (!jobRunning() || isCancelling()) return;
  const ok = await confirmDialog(
    `Stop the ${jobLabel(dep).toLowerCase()} of “${state.slice.name}” after the step that is running? What has run stays on the hosts; the slice is marked failed until Deploy, Redeploy or Destroy repairs it.`,
    { title: "Cancel the job?", ok: "Stop the job", dismiss: "Keep it running" },
  );
  if (!ok || state.deployment?.id !== dep.id || !jobRunning()) return;
  const seq = numbered("deployment");
  try {
    const answer = await withBusy(button, () => api(`deployments/${dep.id}/cancel/`, { method: "POST", body: {} }));
    state.cancelRequested = dep.id;
    if (state.deployment?.id === dep.id && isNews("deployment", seq)) showDeployment(answer);
    else renderJob();
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    // 409: it ended meanwhile; the poll brings the end.
    toast(err.status === 409 ? `Nothing to cancel: ${err.message}` : `Cancel refused: ${err.message}`, { kind: "error", testid: "canvas-error" });
  }
}

/** The slice's latest job (the deployments list is newest first), or null if it never had one. */
async function findLatestDeployment() {
  const seq = numbered("deployment");
  const page = await api("deployments/", { query: { slice: sliceId, limit: 1 } });
  const latest = page.results.length ? await api(`deployments/${page.results[0].id}/`) : null;
  return isNews("deployment", seq) ? latest : state.deployment;
}

// --- export ---------------------------------------------------------------------------------------------

async function doExport(format) {
  $("export-menu").open = false;
  if (format === "png") {
    if (!cy.elements().length) {
      toast("Nothing to draw yet.", { kind: "info" });
      return;
    }
    const blob = cy.png({ output: "blob", full: true, scale: 2, bg: "#ffffff" });
    download(blob, `${state.slice.name}.png`);
    return;
  }
  try {
    await exportSlice(state.slice, format);
  } catch (err) {
    toast(`Export failed: ${err.message}`, { kind: "error" });
  }
}

// --- keyboard and buttons --------------------------------------------------------------------------------

function typingInField(event) {
  const t = event.target;
  return t instanceof HTMLElement && (t.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(t.tagName));
}

document.addEventListener("keydown", (event) => {
  if (document.querySelector("dialog[open]") || typingInField(event) || event.ctrlKey || event.metaKey || event.altKey) return;
  const key = event.key;
  if (key === "Delete" || key === "Backspace") {
    if (cy.$(":selected").length) {
      event.preventDefault();
      deleteSelection();
    }
  } else if (key === "Escape") {
    if ($("export-menu").open) $("export-menu").open = false;
    else if (state.linkMode) setLinkMode(false);
    else cy.$(":selected").unselect();
  } else if (key === "a" || key === "A") {
    event.preventDefault();
    openVmDialog();
  } else if (key === "l" || key === "L") {
    if (!$("btn-link-mode").disabled) setLinkMode(!state.linkMode);
  } else if (key === "f" || key === "F") {
    cy.animate({ fit: { eles: cy.elements(), padding: 60 }, duration: 200 });
  }
});

$("btn-add-vm").addEventListener("click", () => openVmDialog());
document.querySelector('[data-action="add-vm"]').addEventListener("click", () => openVmDialog());
$("btn-link-mode").addEventListener("click", () => setLinkMode(!state.linkMode));
$("btn-delete").addEventListener("click", () => deleteSelection());
$("btn-fit").addEventListener("click", () => cy.animate({ fit: { eles: cy.elements(), padding: 60 }, duration: 200 }));
$("btn-layout").addEventListener("click", () => arrange());
$("btn-placement").addEventListener("click", openPlacement);
$("btn-plan").addEventListener("click", openPlan);
$("btn-deploy").addEventListener("click", (e) => startJob("deploy", e.currentTarget));
$("btn-redeploy").addEventListener("click", (e) => startJob("redeploy", e.currentTarget));
$("btn-check").addEventListener("click", (e) => checkSlice(e.currentTarget));
$("btn-repair").addEventListener("click", (e) => startJob("repair", e.currentTarget));
$("btn-destroy").addEventListener("click", (e) => startJob("destroy", e.currentTarget));
$("btn-cancel").addEventListener("click", (e) => cancelJob(e.currentTarget));
for (const item of document.querySelectorAll("[data-export]")) item.addEventListener("click", () => doExport(item.dataset.export));
document.addEventListener("click", (event) => {
  const menu = $("export-menu");
  if (menu.open && !menu.contains(event.target)) menu.open = false;
});
for (const tab of document.querySelectorAll('.tabs [role="tab"]')) {
  tab.addEventListener("click", () => showTab(tab.id.replace("tab-", "")));
  tab.addEventListener("keydown", (event) => {
    if (event.key !== "ArrowLeft" && event.key !== "ArrowRight") return;
    const tabs = [...document.querySelectorAll('.tabs [role="tab"]')];
    const next = tabs[(tabs.indexOf(tab) + (event.key === "ArrowRight" ? 1 : tabs.length - 1)) % tabs.length];
    showTab(next.id.replace("tab-", ""));
    next.focus();
  });
}
const chooseIfaces = $("opt-choose-ifaces");
chooseIfaces.checked = localStorage.getItem("slice-portal:choose-ifaces") === "1";
chooseIfaces.addEventListener("change", () => localStorage.setItem("slice-portal:choose-ifaces", chooseIfaces.checked ? "1" : "0"));
// When the window (or the layout) changes size, keep the whole drawing in view.
let resizeTimer = null;
new ResizeObserver(() => {
  cy.resize();
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => {
    const box = cy.elements(".vm, .link").boundingBox();
    const ext = cy.extent();
    if (cy.nodes(".vm").length && (box.x1 < ext.x1 || box.x2 > ext.x2 || box.y1 < ext.y1 || box.y2 > ext.y2)) {
      cy.fit(cy.elements(".vm, .link"), 40);
      if (cy.zoom() > 1) cy.zoom({ level: 1, renderedPosition: { x: cy.width() / 2, y: cy.height() / 2 } });
    }
  }, 150);
}).observe($("cy"));

/** The import's report (interfaces renamed, what a containerlab file had that a slice cannot hold), once. */
function showImportReport() {
  const key = `import-report-${sliceId}`;
  const raw = sessionStorage.getItem(key);
  if (!raw) return;
  sessionStorage.removeItem(key);
  const { renamed, warnings } = JSON.parse(raw);
  const lines = [
    ...renamed.map((i) => `${i.node}: ${i.interface} is ${i.mapped} (${i.rule})`),
    ...warnings.map((w) => `${w.node}: ${w.message}`),
  ];
  toast(`Imported with ${renamed.length} interface(s) renamed and ${warnings.length} note(s):\n${lines.join("\n")}`, {
    kind: "info",
    timeout: 30000,
    testid: "import-report",
  });
}

// --- start ------------------------------------------------------------------------------------------------

wireDialogs();
wireExpiry(sliceId);
(async () => {
  try {
    await loadSlice();
  } catch (err) {
    canvasError(`Could not load the slice: ${err.message}`);
    return;
  }
  showImportReport();
  await untangle();
  await spreadIfCramped();
  if (state.vms.size) cy.fit(undefined, 70);
  if (cy.zoom() > 1) {
    cy.zoom(1);
    cy.center();
  }
  try {
    state.deployment = await findLatestDeployment();
  } catch (err) {
    canvasError(`Could not load the latest deployment: ${err.message}`);
  }
  if (state.deployment) {
    renderJob();
    if (!FINISHED.has(state.deployment.status)) {
      showTab("deploy");
      poll();
    }
  }
  updateActions();
})().finally(() => {
  document.body.dataset.ready = "1";
});
