// Before deploy: the placement (which worker each VM lands on) and the host plan (exact commands).

import { el, render, toast } from "./ui.js";

// --- placement ------------------------------------------------------------------------

/** The engine's placement preview: {fits, error, vms: [{name, host, vcpus, ram_mib, proposed}], workers: [...]}. */
export function renderPlacement(container, data) {
  const vms = data.vms || [];
  const workers = data.workers || [];
  const groups = new Map(workers.map((w) => [w.name, { info: w, vms: [] }]));
  for (const vm of vms) {
    const key = vm.host || "(does not fit)";
    if (!groups.has(key)) groups.set(key, { info: null, vms: [] });
    groups.get(key).vms.push(vm);
  }
  render(
    container,
    el(
      "p",
      { class: "muted" },
      "Where each VM runs when the slice is deployed. VMs already placed (or pinned to a worker) stay where they are; the others go to the enabled worker with the most free capacity.",
    ),
    data.error ? el("p", { class: "form-error", role: "alert" }, data.error) : null,
    vms.length
      ? el(
          "div",
          { class: "placement-grid" },
          [...groups].map(([host, { info, vms: list }]) =>
            el(
              "section",
              { class: "host-card", "data-host": host, "data-testid": `placement-${host}` },
              el("h3", {}, host, el("span", { class: "muted small" }, `${list.length} VM${list.length === 1 ? "" : "s"}`)),
              info ? capacity(info) : null,
              list.length
                ? el(
                    "ul",
                    {},
                    list.map((vm) =>
                      el(
                        "li",
                        { "data-vm": vm.name },
                        el("strong", {}, vm.name),
                        el("span", { class: "muted" }, `${vm.vcpus} vCPU · ${vm.ram_mib} MiB${vm.proposed ? "" : " · placed"}`),
                      ),
                    ),
                  )
                : el("p", { class: "muted small", style: "margin:0" }, "No VM of this slice."),
            ),
          ),
        )
      : el("p", {}, "No VMs to place."),
  );
}

function capacity(info) {
  const meter = (used, total) => el("div", { class: "meter" }, el("span", { style: `width: ${Math.min(100, (100 * used) / Math.max(1, total))}%` }));
  return el(
    "div",
    { class: "capacity" },
    el("div", {}, `vCPUs ${info.used_vcpus} / ${info.vcpus}`, meter(info.used_vcpus, info.vcpus)),
    el("div", {}, `RAM ${info.used_ram_mib} / ${info.ram_mib} MiB`, meter(info.used_ram_mib, info.ram_mib)),
  );
}

// --- plan ---------------------------------------------------------------------------------

/** The plan's stages regrouped per host: [{host, stages: [{name, steps, script}]}], hosts in first-seen order. */
export function planByHost(data) {
  const hosts = new Map();
  for (const stage of data.stages || []) {
    for (const part of stage.hosts || []) {
      if (!hosts.has(part.host)) hosts.set(part.host, { host: part.host, stages: [] });
      hosts.get(part.host).stages.push({ name: stage.name, steps: part.steps || [], script: part.script || "" });
    }
  }
  return [...hosts.values()];
}

export function planAsText(host) {
  return host.stages.map((st) => st.script).join("\n");
}

const KIND_TEXT = {
  deploy: "A deploy of the slice as designed",
  redeploy: "A redeploy: only what changed since the last deployment",
  destroy: "A destroy: everything of the slice removed from the hosts",
};

export function renderPlan(container, data) {
  const hosts = planByHost(data);
  const stats = data.stats || {};
  render(
    container,
    el(
      "div",
      { class: "plan-toolbar" },
      el("p", { class: "muted", style: "margin:0" }, `${KIND_TEXT[data.kind] || data.kind}: the exact commands each host will run, in order, over SSH. Nothing has run yet.`),
      el("span", { class: "muted small", "data-testid": "plan-summary" }, `${hosts.length} host${hosts.length === 1 ? "" : "s"} · ${data.steps ?? 0} steps`),
    ),
    (data.notes || []).map((note) => el("p", { class: "help" }, note)),
    hosts.length > 1
      ? el(
          "nav",
          { class: "plan-jump", "aria-label": "Hosts of the plan" },
          "Jump to ",
          hosts.map((host) =>
            el(
              "button",
              {
                type: "button",
                class: "link-btn",
                onclick: () => container.querySelector(`[data-host="${CSS.escape(host.host)}"]`)?.scrollIntoView({ behavior: "smooth", block: "start" }),
              },
              host.host,
            ),
          ),
        )
      : null,
    hosts.length
      ? el(
          "div",
          { class: "plan-hosts" },
          hosts.map((host) => {
            const count = host.stages.reduce((n, st) => n + st.steps.length, 0);
            const hs = stats[host.host] || {};
            return el(
              "section",
              { class: "plan-host", "data-host": host.host, "data-testid": `plan-host-${host.host}` },
              el(
                "header",
                {},
                el("h3", {}, host.host),
                el("span", { class: "meta" }, `${count} steps${hs.round_trips ? ` · ${hs.round_trips} round trip${hs.round_trips === 1 ? "" : "s"}` : ""}`),
                el(
                  "button",
                  {
                    type: "button",
                    class: "btn btn-sm btn-ghost",
                    title: "Copy the scripts of this host",
                    onclick: () =>
                      (navigator.clipboard ? navigator.clipboard.writeText(planAsText(host)) : Promise.reject(new Error("no clipboard")))
                        .then(() => toast(`Script of ${host.host} copied.`, { kind: "ok" }))
                        .catch(() => toast("Copying is not allowed here.", { kind: "error" })),
                  },
                  "Copy",
                ),
              ),
              host.stages.map((st) => [
                el("div", { class: "plan-phase" }, st.name),
                el(
                  "ol",
                  { class: "plan-steps" },
                  st.steps.map((step) =>
                    el("li", { class: "plan-step" }, el("div", { class: "desc" }, step.description || ""), el("pre", {}, el("code", {}, step.shell))),
                  ),
                ),
                st.script
                  ? el("details", { class: "plan-script" }, el("summary", {}, "The exact script sent (one SSH round trip)"), el("pre", { class: "console" }, st.script))
                  : null,
              ]),
            );
          }),
        )
      : el("p", {}, "Nothing to do: the hosts already match the design."),
  );
}
