// Before deploy: the placement (which worker each VM lands on) and the host plan (exact commands).

import { el, render, toast } from "./ui.js";

const SAFE_ARG = /^[A-Za-z0-9_@%+=:,./-]+$/;

/** Quote one argument the way a POSIX shell would read it back. */
export function shellQuote(arg) {
  const text = String(arg);
  if (text && SAFE_ARG.test(text)) return text;
  return `'${text.replaceAll("'", "'\"'\"'")}'`;
}

function commandText(step) {
  if (Array.isArray(step.argv)) return step.argv.map(shellQuote).join(" ");
  if (Array.isArray(step.command)) return step.command.map(shellQuote).join(" ");
  return step.command || step.shell || "";
}

// --- placement ------------------------------------------------------------------------

/** Accept the shapes an engine may answer: a list of rows, {vms|placement: [...]}, or {vm: host}. */
export function normalizePlacement(data, vms) {
  let rows = data;
  if (rows && !Array.isArray(rows)) rows = rows.vms || rows.placement || rows.assignments || rows.results || rows;
  const byId = new Map(vms.map((vm) => [vm.id, vm]));
  const byName = new Map(vms.map((vm) => [vm.name, vm]));
  const out = [];
  if (Array.isArray(rows)) {
    for (const row of rows) {
      const vmRef = row.vm ?? row.vm_id ?? row.id;
      const vm = (typeof vmRef === "number" ? byId.get(vmRef) : byName.get(row.vm_name || row.name || vmRef)) || {};
      out.push({
        vm: row.vm_name || vm.name || (typeof row.vm === "object" ? row.vm?.name : row.name) || String(vmRef),
        host: row.host_name || row.worker || (typeof row.host === "string" ? row.host : row.host?.name) || null,
        vcpus: row.vcpus,
        ram: row.ram_mib,
        pinned: row.pinned ?? row.fixed,
      });
    }
  } else if (rows && typeof rows === "object") {
    for (const [vm, host] of Object.entries(rows)) {
      if (typeof host === "string" || host === null) out.push({ vm, host });
    }
  }
  const hosts = data && !Array.isArray(data) && Array.isArray(data.hosts) ? data.hosts : [];
  return { rows: out, hosts, error: data && !Array.isArray(data) ? data.error || null : null };
}

export function renderPlacement(container, data, vms) {
  const { rows, hosts, error } = normalizePlacement(data, vms);
  const groups = new Map();
  for (const h of hosts) groups.set(h.name || h.host, { info: h, vms: [] });
  for (const row of rows) {
    const key = row.host || "(not placed)";
    if (!groups.has(key)) groups.set(key, { info: null, vms: [] });
    groups.get(key).vms.push(row);
  }
  render(
    container,
    el("p", { class: "muted" }, "Where each VM runs when the slice is deployed. VMs already placed stay where they are; the others go to the enabled worker with the most free capacity."),
    error ? el("p", { class: "form-error", role: "alert" }, error) : null,
    rows.length
      ? el(
          "div",
          { class: "placement-grid" },
          [...groups].map(([host, { info, vms: list }]) =>
            el(
              "section",
              { class: "host-card", "data-host": host },
              el("h3", {}, host, el("span", { class: "muted small" }, `${list.length} VM${list.length === 1 ? "" : "s"}`)),
              info ? capacity(info) : null,
              el(
                "ul",
                {},
                list.map((row) =>
                  el("li", { "data-vm": row.vm }, el("strong", {}, row.vm), el("span", { class: "muted" }, [row.vcpus ? `${row.vcpus} vCPU` : "", row.ram ? `${row.ram} MiB` : ""].filter(Boolean).join(" · "))),
                ),
              ),
            ),
          ),
        )
      : el("p", {}, "No VMs to place."),
  );
}

function capacity(info) {
  const parts = [];
  const meter = (used, total) => el("div", { class: "meter" }, el("span", { style: `width: ${Math.min(100, (100 * used) / Math.max(1, total))}%` }));
  if (info.vcpus) parts.push(el("div", {}, `vCPUs ${info.used_vcpus ?? "?"} / ${info.vcpus}`, meter(info.used_vcpus || 0, info.vcpus)));
  if (info.ram_mib) parts.push(el("div", {}, `RAM ${info.used_ram_mib ?? "?"} / ${info.ram_mib} MiB`, meter(info.used_ram_mib || 0, info.ram_mib)));
  return parts.length ? el("div", { class: "capacity" }, parts) : null;
}

// --- plan ---------------------------------------------------------------------------------

/** Accept {hosts: [{host, steps}]}, {hosts: {name: [...]}} or a flat list of steps with a host each. */
export function normalizePlan(data) {
  const hosts = new Map();
  const add = (host, step) => {
    const key = host || step.host || "portal";
    if (!hosts.has(key)) hosts.set(key, { name: key, role: null, steps: [] });
    hosts.get(key).steps.push(step);
  };
  let source = data;
  if (source && !Array.isArray(source)) source = source.hosts ?? source.steps ?? source.commands ?? source.plan ?? source;
  if (Array.isArray(source)) {
    for (const item of source) {
      if (item && Array.isArray(item.steps || item.commands)) {
        const name = item.host || item.name || item.host_name;
        if (!hosts.has(name)) hosts.set(name, { name, role: item.role || null, address: item.address || item.management_address, steps: [] });
        for (const step of item.steps || item.commands) hosts.get(name).steps.push(step);
      } else if (item) {
        add(item.host, item);
      }
    }
  } else if (source && typeof source === "object") {
    for (const [host, steps] of Object.entries(source)) {
      if (Array.isArray(steps)) for (const step of steps) add(host, step);
      else if (steps && Array.isArray(steps.steps)) for (const step of steps.steps) add(host, step);
    }
  }
  return [...hosts.values()];
}

export function planAsText(host) {
  return host.steps.map((s) => `# ${s.description || ""}\n${commandText(s)}`).join("\n");
}

export function renderPlan(container, data, { title = "" } = {}) {
  const hosts = normalizePlan(data);
  const total = hosts.reduce((n, h) => n + h.steps.length, 0);
  render(
    container,
    el(
      "div",
      { class: "plan-toolbar" },
      el("p", { class: "muted", style: "margin:0" }, title || "The exact commands each host will run, in order, over SSH. Nothing has run yet."),
      el("span", { class: "muted small" }, `${hosts.length} host${hosts.length === 1 ? "" : "s"} · ${total} steps`),
    ),
    hosts.length
      ? el(
          "div",
          { class: "plan-hosts" },
          hosts.map((host) => {
            let phase = null;
            const items = [];
            for (const step of host.steps) {
              if (step.phase && step.phase !== phase) {
                phase = step.phase;
                items.push(el("li", { class: "plan-phase" }, phase));
              }
              items.push(
                el("li", { class: "plan-step" }, el("div", { class: "desc" }, step.description || ""), el("pre", {}, el("code", {}, commandText(step)))),
              );
            }
            return el(
              "section",
              { class: "plan-host", "data-host": host.name, "data-testid": `plan-host-${host.name}` },
              el(
                "header",
                {},
                el("h3", {}, host.name),
                host.role ? el("span", { class: "badge" }, host.role) : null,
                el("span", { class: "meta" }, `${host.steps.length} steps`),
                el(
                  "button",
                  {
                    type: "button",
                    class: "btn btn-sm btn-ghost",
                    onclick: () =>
                      navigator.clipboard
                        ?.writeText(planAsText(host))
                        .then(() => toast(`Commands of ${host.name} copied.`, { kind: "ok" }))
                        .catch(() => toast("Copying is not allowed here.", { kind: "error" })),
                  },
                  "Copy",
                ),
              ),
              el("ol", { class: "plan-steps" }, items),
            );
          }),
        )
      : el("p", {}, "Nothing to do: the slice has no VMs."),
  );
}
