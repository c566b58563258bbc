// The deployment view: overall progress, a lane per host with its steps, the failing step's stderr,
// and, at the end, each VM's worker, addresses and serial console.

import { consoleBlock, el, formatDuration, render, statusBadge } from "./ui.js";

export const FINISHED = new Set(["succeeded", "failed", "cancelled"]);
// Step statuses of a step that ran to its end (not_run: the job stopped before it).
const ENDED = new Set(["ok", "skipped", "failed"]);
const KIND_LABEL = { deploy: "Deploy", redeploy: "Redeploy", destroy: "Destroy", power: "Power action", repair: "Repair" };
const ACTION_LABEL = { start: "Start", shutdown: "Shut down", reboot: "Reboot", reset: "Reset", force_off: "Force off" };

/** A job's name: its kind, or for a power job its action ("Shut down"). */
export function jobLabel(dep) {
  if (dep.kind === "power") return ACTION_LABEL[dep.action] || "Power action";
  return KIND_LABEL[dep.kind] || dep.kind || "Job";
}

/** How long a step took (the server's figure once it ended), or has been running so far. */
function stepDuration(step) {
  if (step.duration_ms !== null) return step.duration_ms;
  if (step.started && step.status === "running") return Date.now() - new Date(step.started);
  return null;
}

function deploymentDuration(dep) {
  if (!dep.started) return null;
  const end = dep.finished ? new Date(dep.finished) : new Date();
  return end - new Date(dep.started);
}

const shown = new Map(); // deployment id -> highest percent shown, so the bar never goes back

/**
 * Percent done: the server's figure (steps ended over the whole plan's rows, 100 only at success),
 * never shown going back while the job runs.
 */
export function progressOf(dep) {
  if (dep.status === "succeeded") return 100;
  let pct = typeof dep.progress === "number" ? Math.min(99, dep.progress) : 0;
  if (!FINISHED.has(dep.status)) {
    pct = Math.max(pct, shown.get(dep.id) || 0);
    shown.set(dep.id, pct);
  }
  return Math.max(0, Math.min(100, pct));
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

function laneStatus(steps, jobFinished) {
  if (steps.some((s) => s.status === "failed")) return "failed";
  if (steps.some((s) => s.status === "running")) return "running-step";
  if (steps.length && steps.every((s) => ["ok", "skipped"].includes(s.status))) return "ok";
  return jobFinished ? "stopped" : "pending";
}

const LANE_LABEL = { failed: "Failed", "running-step": "Running", ok: "Done", pending: "Waiting", stopped: "Stopped" };

function renderLane(host, steps, openState, jobFinished) {
  const done = steps.filter((s) => ["ok", "skipped"].includes(s.status)).length;
  const total = steps.reduce((sum, s) => sum + (stepDuration(s) || 0), 0);
  const status = laneStatus(steps, jobFinished);
  // Open while the job runs and where something failed; a finished lane folds to its summary.
  const key = `lane:${host}:${jobFinished ? "end" : "run"}`;
  const open = openState.has(key) ? openState.get(key) : !jobFinished || status === "failed";
  const details = el(
    "details",
    { class: "lane", "data-host": host, "data-testid": `lane-${host}`, open, "data-key": key },
    el(
      "summary",
      { class: "lane-head" },
      el("span", { class: "host" }, host),
      statusBadge(status, LANE_LABEL[status]),
      el("span", { class: "meta" }, `${done}/${steps.length} · ${formatDuration(total) || "0 ms"}`),
      el(
        "span",
        { class: "lane-strip", "aria-hidden": "true" },
        steps.map((s) => el("span", { class: `s-${s.status}`, title: `${s.description} — ${s.status}` })),
      ),
    ),
    el(
      "ol",
      { class: "steps" },
      steps.map((s) =>
        el(
          "li",
          { class: `step s-${s.status}`, "data-status": s.status, title: s.command },
          el("span", { class: "icon", "aria-label": s.status }),
          el("span", { class: "desc" }, s.description, s.phase ? el("span", { class: "phase" }, ` · ${s.phase}`) : null),
          el("span", { class: "dur" }, formatDuration(stepDuration(s))),
          s.status === "failed"
            ? el(
                "pre",
                { "data-testid": "failed-step-output" },
                [
                  s.exit_code !== null && s.exit_code !== undefined ? `exit ${s.exit_code}\n` : "",
                  `$ ${s.command}\n`,
                  s.output_tail || "(no output)",
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
          consoleBlock(vm.console_tail, { "data-testid": `console-${vm.name}` }),
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

/**
 * An answer (a poll's: the steps changed since our revision, no plan; or a cancel's) laid over
 * what we had: steps merged by seq, the plan and, when the answer carries no steps, the revision kept.
 */
export function mergeSteps(had, fresh) {
  const bySeq = new Map((had.steps || []).map((step) => [step.seq, step]));
  for (const step of fresh.steps || []) bySeq.set(step.seq, step);
  const steps = [...bySeq.values()].sort((a, b) => a.seq - b.seq);
  return { ...fresh, plan: had.plan, steps, steps_revision: fresh.steps_revision ?? had.steps_revision };
}

/**
 * Where a cancelled job stopped, counted like the progress line ("33 of 68 steps"): at the
 * step after those that ended; the others never ran (the server marks them not_run). Hosts
 * run in parallel, so the server's error names the last step that ended, and on which host.
 */
export function cancelledAt(dep) {
  const steps = dep.steps || [];
  const ended = steps.filter((s) => ENDED.has(s.status)).length;
  if (ended === steps.length) return steps.length ? `Cancelled after the last step (${steps.length})` : "Cancelled before the first step";
  return `Cancelled at step ${ended + 1} of ${steps.length}: ${steps.length - ended} did not run`;
}

function rememberOpen(container) {
  const state = new Map();
  for (const node of container.querySelectorAll("details[data-key]")) state.set(node.dataset.key, node.open);
  return state;
}

/**
 * Render a deployment (and the VMs of the slice) into ``container``; ``cancelling``: a cancel
 * was asked for and the job has not stopped yet.
 */
export function renderDeployment(container, dep, vms, { cancelling = false } = {}) {
  const openState = rememberOpen(container);
  const pct = progressOf(dep);
  const steps = dep.steps || [];
  const done = steps.filter((s) => ENDED.has(s.status)).length;
  const running = !FINISHED.has(dep.status);
  const lanes = stepsByHost(steps);
  const results = !running && dep.kind !== "destroy" && vms.length ? renderResults(vms, openState) : null;
  render(
    container,
    el(
      "div",
      { class: "deploy-head" },
      el("h2", {}, `${jobLabel(dep)} #${dep.id}`, dep.dry_run ? el("span", { class: "muted small" }, " · dry run") : null),
      cancelling ? statusBadge("deploying", "Cancelling…") : dep.status === "running" ? statusBadge("deploying", "Running") : statusBadge(dep.status),
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
      el(
        "span",
        {},
        el("span", { class: "progress-pct", "data-testid": "progress-pct" }, `${pct} %`),
        steps.length ? ` · ${done} of ${steps.length} steps` : "",
      ),
      el("span", {}, formatDuration(deploymentDuration(dep)) || (dep.status === "queued" ? "waiting for a worker…" : "")),
    ),
    dep.status === "cancelled"
      ? el("div", { class: "deploy-cancelled", role: "status", "data-testid": "deploy-cancelled" }, el("strong", {}, cancelledAt(dep)), dep.error ? el("div", {}, dep.error) : null)
      : dep.error
        ? el("div", { class: "deploy-error", role: "alert", "data-testid": "deploy-error" }, dep.error)
        : null,
    // After a success the VMs come first; while running or after a failure, the hosts.
    dep.status === "succeeded" ? results : null,
    el("h3", { class: "section-title" }, "Hosts"),
    lanes.size
      ? el("div", { class: "lanes" }, [...lanes].map(([host, hostSteps]) => renderLane(host, hostSteps, openState, !running)))
      : el("p", { class: "muted" }, running ? "Preparing the plan…" : "This job had no host steps."),
    dep.status !== "succeeded" ? results : null,
  );
}
