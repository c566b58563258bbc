// The deployment view: overall progress, a lane per host with its steps, the failing step's stderr,
// and, at the end, each VM's worker, addresses and serial console.

import { el, formatDuration, render, statusBadge } from "./ui.js";

export const FINISHED = new Set(["succeeded", "failed", "cancelled", "canceled"]);
const KIND_LABEL = { deploy: "Deploy", redeploy: "Redeploy", destroy: "Destroy" };

function stepDuration(step) {
  if (typeof step.duration_ms === "number") return step.duration_ms;
  if (step.started && step.finished) return new Date(step.finished) - new Date(step.started);
  if (step.started && step.status === "running") return Date.now() - new Date(step.started);
  return null;
}

function deploymentDuration(dep) {
  if (!dep.started) return null;
  const end = dep.finished ? new Date(dep.finished) : new Date();
  return end - new Date(dep.started);
}

/** Percent done: the job's own figure, else finished steps over all steps. */
export function progressOf(dep) {
  if (dep.status === "succeeded") return 100;
  if (typeof dep.progress === "number") return Math.max(0, Math.min(100, dep.progress));
  const steps = dep.steps || [];
  if (!steps.length) return 0;
  const done = steps.filter((s) => ["ok", "skipped", "failed"].includes(s.status)).length;
  return Math.round((100 * done) / steps.length);
}

export function stepsByHost(steps) {
  const lanes = new Map();
  for (const step of [...(steps || [])].sort((a, b) => (a.seq ?? 0) - (b.seq ?? 0))) {
    const host = step.host || "portal";
    if (!lanes.has(host)) lanes.set(host, []);
    lanes.get(host).push(step);
  }
  return lanes;
}

function stepCommand(step) {
  if (Array.isArray(step.argv)) return step.argv.join(" ");
  return step.command || "";
}

function laneStatus(steps) {
  if (steps.some((s) => s.status === "failed")) return "failed";
  if (steps.some((s) => s.status === "running")) return "running-step";
  if (steps.length && steps.every((s) => ["ok", "skipped"].includes(s.status))) return "ok";
  return "pending";
}

const LANE_LABEL = { failed: "Failed", "running-step": "Running", ok: "Done", pending: "Waiting" };

function renderLane(host, steps, openState) {
  const done = steps.filter((s) => ["ok", "skipped"].includes(s.status)).length;
  const total = steps.reduce((sum, s) => sum + (stepDuration(s) || 0), 0);
  const status = laneStatus(steps);
  const key = `lane:${host}`;
  const details = el(
    "details",
    { class: "lane", "data-host": host, "data-testid": `lane-${host}`, open: openState.has(key) ? openState.get(key) : true, "data-key": key },
    el(
      "summary",
      { class: "lane-head" },
      el("span", { class: "host" }, host),
      statusBadge(status, LANE_LABEL[status]),
      el("span", { class: "meta" }, `${done}/${steps.length} · ${formatDuration(total) || "0 ms"}`),
    ),
    el(
      "div",
      { class: "lane-strip", "aria-hidden": "true" },
      steps.map((s) => el("span", { class: `s-${s.status}`, title: `${s.description} — ${s.status}` })),
    ),
    el(
      "ol",
      { class: "steps" },
      steps.map((s) =>
        el(
          "li",
          { class: `step s-${s.status}`, "data-status": s.status, title: stepCommand(s) },
          el("span", { class: "icon", "aria-label": s.status }),
          el("span", { class: "desc" }, s.description || stepCommand(s), s.phase ? el("span", { class: "phase" }, ` · ${s.phase}`) : null),
          el("span", { class: "dur" }, formatDuration(stepDuration(s))),
          s.status === "failed"
            ? el(
                "pre",
                { "data-testid": "failed-step-output" },
                [
                  s.exit_code !== null && s.exit_code !== undefined ? `exit ${s.exit_code}\n` : "",
                  `$ ${stepCommand(s)}\n`,
                  s.output_tail || s.stderr || "(no output)",
                ].join(""),
              )
            : null,
        ),
      ),
    ),
  );
  return details;
}

/** Each VM after a job: worker, interfaces with reserved and leased addresses, console output. */
export function renderResults(vms, openState) {
  return el(
    "section",
    { class: "results", "data-testid": "deploy-results" },
    el("h3", { class: "section-title" }, "VMs"),
    vms.map((vm) =>
      el(
        "article",
        { class: "result-vm", "data-vm": vm.name, "data-testid": `result-${vm.name}` },
        el("header", {}, el("strong", {}, vm.name), statusBadge(vm.status), el("span", { class: "worker" }, vm.host_name ? `on ${vm.host_name}` : "not placed")),
        ifaceTable(vm),
        el(
          "details",
          { "data-key": `console:${vm.id}`, open: openState.get(`console:${vm.id}`) || false },
          el("summary", {}, "Serial console"),
          el("pre", { class: "console", "data-testid": `console-${vm.name}` }, vm.console_tail || ""),
        ),
      ),
    ),
  );
}

export function ifaceTable(vm) {
  return el(
    "table",
    { class: "iface-table" },
    el("thead", {}, el("tr", {}, el("th", {}, "If"), el("th", {}, "VLAN"), el("th", {}, "Reserved"), el("th", {}, "Lease"))),
    el(
      "tbody",
      {},
      (vm.interfaces || []).map((i) =>
        el(
          "tr",
          { "data-iface": i.name },
          el("td", { title: i.mac }, i.name),
          el("td", {}, i.vlan ?? "—"),
          el("td", { class: "addr" }, i.ip_address || "—"),
          el("td", { class: "lease" }, i.lease_address || "—"),
        ),
      ),
    ),
  );
}

function rememberOpen(container) {
  const state = new Map();
  for (const node of container.querySelectorAll("details[data-key]")) state.set(node.dataset.key, node.open);
  return state;
}

/** Render a deployment (and the VMs of the slice) into ``container``. */
export function renderDeployment(container, dep, vms) {
  const openState = rememberOpen(container);
  const pct = progressOf(dep);
  const steps = dep.steps || [];
  const done = steps.filter((s) => ["ok", "skipped", "failed"].includes(s.status)).length;
  const running = !FINISHED.has(dep.status);
  const lanes = stepsByHost(steps);
  render(
    container,
    el(
      "div",
      { class: "deploy-head" },
      el("h2", {}, `${KIND_LABEL[dep.kind] || dep.kind || "Job"} #${dep.id}`, dep.dry_run ? el("span", { class: "muted small" }, " · dry run") : null),
      statusBadge(dep.status),
    ),
    el(
      "div",
      {
        class: `progress is-${running ? "running" : dep.status}`,
        role: "progressbar",
        "aria-valuemin": "0",
        "aria-valuemax": "100",
        "aria-valuenow": String(pct),
        "aria-label": "Deployment progress",
        "data-testid": "progress",
      },
      el("div", { class: "progress-bar", style: `width: ${pct}%` }),
    ),
    el(
      "div",
      { class: "progress-meta" },
      el("span", {}, el("span", { class: "progress-pct", "data-testid": "progress-pct" }, `${pct} %`), steps.length ? ` · ${done} of ${steps.length} steps` : ""),
      el("span", {}, formatDuration(deploymentDuration(dep)) || (dep.status === "queued" ? "waiting for a worker…" : "")),
    ),
    dep.error ? el("div", { class: "deploy-error", role: "alert", "data-testid": "deploy-error" }, dep.error) : null,
    lanes.size
      ? el("div", { class: "lanes" }, [...lanes].map(([host, hostSteps]) => renderLane(host, hostSteps, openState)))
      : el("p", { class: "muted" }, running ? "Preparing the plan…" : "This job had no host steps."),
    !running && dep.kind !== "destroy" && vms.length ? renderResults(vms, openState) : null,
  );
}
