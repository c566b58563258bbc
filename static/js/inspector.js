// The Design tab of the side panel: the outline of the slice and the card of the selection.
// Pure rendering: the designer passes what to show and what the buttons do (see panelView()).

import { api } from "./api.js";
import { ifaceTable } from "./deploy.js";
import { consoleBlock, el, render, statusBadge } from "./ui.js";
import { usageBlock } from "./usage.js";

function outlineItem(id, label, meta, view) {
  return el(
    "li",
    {},
    el(
      "button",
      {
        type: "button",
        class: "outline-item",
        "data-element": id,
        "aria-selected": String(id === view.selectedId),
        onclick: () => view.onSelect(id),
      },
      label,
      meta,
    ),
  );
}

// Power actions by the VM's status (as its worker last reported it); none for a VM not deployed.
const POWER_BUTTONS = {
  running: [
    ["shutdown", "Shut down", "ACPI power button; forced off if the guest has not stopped after a while"],
    ["reboot", "Reboot", "Restart the guest in the same QEMU process (TAPs, MACs and leases stay)"],
    ["reset", "Reset", "Hard reset: the guest is not asked"],
    ["force_off", "Force off", "Stop the VM at once (pull the plug)"],
  ],
  stopped: [["start", "Start", "Boot the VM again, with its links"]],
  // Its QEMU died (a drift check saw it): Start boots it again; Repair (the toolbar) puts back the rest.
  lost: [["start", "Start", "Boot the VM again, with its links"]],
  failed: [
    ["start", "Start", "Boot the VM if it does not run"],
    ["force_off", "Force off", "Stop the VM at once (pull the plug)"],
  ],
};

function powerButtons(vm, view) {
  if (!["active", "failed"].includes(view.slice?.status)) return [];
  return (POWER_BUTTONS[vm.status] || []).map(([action, label, title]) =>
    el(
      "button",
      {
        type: "button",
        class: action === "force_off" || action === "reset" ? "btn btn-sm btn-danger-ghost" : "btn btn-sm",
        "data-testid": `vm-power-${action}`,
        title,
        disabled: view.busy,
        onclick: (e) => view.onPower(vm, action, e.currentTarget),
      },
      label,
    ),
  );
}

/** The outline of every VM and link (a click selects it), with the keyboard hints. */
export function renderOutline(container, view) {
  const vms = [...view.vms.values()].sort((a, b) => a.name.localeCompare(b.name, undefined, { numeric: true }));
  const links = [...view.links.values()].sort((a, b) => a.vlan - b.vlan);
  render(
    container,
    el("h3", { class: "section-title" }, `VMs (${vms.length})`, el("button", { type: "button", class: "link-btn", onclick: view.onAddVm, disabled: view.busy }, "+ Add")),
    vms.length
      ? el(
          "ul",
          { class: "outline-list", "data-testid": "outline-vms" },
          vms.map((vm) =>
            outlineItem(
              `vm-${vm.id}`,
              [el("span", { class: `dot st-${view.vmState(vm)}`, "aria-hidden": "true" }), el("span", { class: "grow" }, vm.name)],
              el("span", { class: "meta" }, vm.host_name || `${vm.data_interfaces_count} if`),
              view,
            ),
          ),
        )
      : el("p", { class: "muted small" }, "None yet."),
    el("h3", { class: "section-title" }, `Links (${links.length})`),
    links.length
      ? el(
          "ul",
          { class: "outline-list", "data-testid": "outline-links" },
          links.map((link) =>
            outlineItem(
              `link-${link.id}`,
              el("span", { class: "grow" }, `${link.a.vm_name}.${link.a.interface} ⟷ ${link.b.vm_name}.${link.b.interface}`),
              [el("span", { class: "vlan-chip", "data-testid": "link-vlan" }, `VLAN ${link.vlan}`), el("span", { class: "meta" }, link.subnet)],
              view,
            ),
          ),
        )
      : el("p", { class: "muted small" }, view.vms.size > 1 ? "Switch on Draw links and drag from one VM to another." : "Add two VMs to link them."),
    el(
      "p",
      { class: "kbd-hint" },
      el("kbd", {}, "A"),
      " add VM · ",
      el("kbd", {}, "L"),
      " draw links · ",
      el("kbd", {}, "Del"),
      " delete · ",
      el("kbd", {}, "F"),
      " fit · ",
      el("kbd", {}, "Esc"),
      " cancel",
    ),
  );
}

/** The card of the selected VM or link, or of the slice when nothing is selected. */
export function renderInspector(box, view) {
  const sel = view.selection;
  if (!sel) {
    const s = view.slice;
    render(
      box,
      el(
        "div",
        { class: "inspector-card" },
        el("div", { class: "inspector-head" }, el("h2", {}, s.name), statusBadge(view.status)),
        s.description ? el("p", { class: "muted" }, s.description) : null,
        el(
          "dl",
          { class: "kv" },
          el("dt", {}, "VMs"),
          el("dd", {}, String(view.vms.size)),
          el("dt", {}, "Links"),
          el("dd", {}, String(view.links.size)),
          el("dt", {}, "VLAN pool"),
          el("dd", { class: "mono" }, (s.vlan_pool || []).join(", ") || "— (given with the first link)"),
        ),
        el("p", { class: "muted small", style: "margin:0" }, "Select a VM or a link to see its details."),
      ),
    );
    return;
  }
  if (sel.kind === "vm") {
    const vm = sel.item;
    if (shownPassword && shownPassword.vm !== vm.id) shownPassword = null;
    render(
      box,
      el(
        "div",
        { class: "inspector-card", "data-testid": "vm-inspector" },
        el("div", { class: "inspector-head" }, el("h2", {}, vm.name), statusBadge(view.vmState(vm))),
        el(
          "dl",
          { class: "kv" },
          el("dt", {}, "Worker"),
          el("dd", { "data-testid": "vm-worker" }, vm.host_name || "placed at deploy"),
          el("dt", {}, "Flavor"),
          el("dd", {}, view.flavorName(vm.flavor) || String(vm.flavor ?? "default")),
          el("dt", {}, "Image"),
          el("dd", {}, view.imageName(vm.image) || String(vm.image ?? "default")),
          el("dt", {}, "Internet"),
          el("dd", {}, vm.internet_enabled ? "yes (eth0 on VLAN 400)" : "no"),
        ),
        el("h3", { class: "section-title" }, "Interfaces"),
        ifaceTable(vm),
        vm.guest ? guestAccess(vm) : null,
        ["running", "stopped", "lost"].includes(vm.status) ? [el("h3", { class: "section-title" }, "Usage"), usageBlock(vm)] : null,
        el("h3", { class: "section-title" }, "Serial console"),
        consoleBlock(vm.console_tail, { "data-testid": "vm-console" }),
        el(
          "div",
          { class: "inspector-actions" },
          vm.status === "running"
            ? el(
                "a",
                {
                  class: "btn btn-sm btn-primary",
                  // The designer is /slices/{id}/: the console page is below it, in a tab of its own.
                  href: `${window.location.pathname.replace(/\/?$/, "/")}vms/${vm.id}/console/`,
                  target: "_blank",
                  rel: "noopener",
                  "data-testid": "vm-console-open",
                  title: "Open the VM's serial console (a terminal) in a new tab",
                },
                "Console",
              )
            : null,
          vm.status === "running"
            ? el(
                "a",
                {
                  class: "btn btn-sm",
                  href: `${window.location.pathname.replace(/\/?$/, "/")}vms/${vm.id}/vnc/`,
                  target: "_blank",
                  rel: "noopener",
                  "data-testid": "vm-vnc-open",
                  title: "Open the VM's screen (graphical console, VNC) in a new tab",
                },
                "Screen",
              )
            : null,
          ...powerButtons(vm, view),
          el("button", { type: "button", class: "btn btn-sm", onclick: () => view.onEditVm(vm), disabled: view.busy }, "Edit"),
          el("button", { type: "button", class: "btn btn-sm btn-danger-ghost", onclick: view.onDelete, disabled: view.busy }, "Delete VM"),
        ),
      ),
    );
  } else {
    const link = sel.item;
    render(
      box,
      el(
        "div",
        { class: "inspector-card", "data-testid": "link-inspector" },
        el("div", { class: "inspector-head" }, el("h2", {}, `${link.a.vm_name} ⟷ ${link.b.vm_name}`), el("span", { class: "vlan-chip" }, `VLAN ${link.vlan}`)),
        el(
          "dl",
          { class: "kv" },
          el("dt", {}, "Subnet"),
          el("dd", { class: "mono" }, link.subnet),
          el("dt", {}, "Gateway"),
          el("dd", { class: "mono" }, link.gateway || "—"),
          el("dt", {}, link.a.vm_name),
          el("dd", { class: "mono" }, `${link.a.interface} · ${link.a.ip_address || "—"}`),
          el("dt", {}, link.b.vm_name),
          el("dd", { class: "mono" }, `${link.b.interface} · ${link.b.ip_address || "—"}`),
        ),
        el(
          "div",
          { class: "inspector-actions" },
          el("button", { type: "button", class: "btn btn-sm btn-danger-ghost", onclick: view.onDelete, disabled: view.busy }, "Delete link"),
        ),
      ),
    );
  }
}

// The console password the owner asked to see: {vm, password}, kept while that VM stays selected
// (the card re-renders as the designer polls), forgotten when another VM or nothing is selected.
let shownPassword = null;

/** How to log in to a cloud-init VM: user, addresses, the ssh command (network node), keys, console password. */
function guestAccess(vm) {
  const g = vm.guest;
  const password = el("dd", { class: "mono", "data-testid": "vm-password" });
  const reveal = el(
    "button",
    {
      type: "button",
      class: "btn btn-sm",
      "data-testid": "vm-password-show",
      onclick: async () => {
        try {
          const data = await api(`vms/${vm.id}/console-password/`);
          shownPassword = { vm: vm.id, password: data.password };
          render(password, data.password);
        } catch (err) {
          render(password, el("span", { class: "muted" }, err.message));
        }
      },
    },
    "Show",
  );
  if (shownPassword && shownPassword.vm === vm.id) render(password, shownPassword.password);
  else render(password, g.has_console_password ? reveal : el("span", { class: "muted" }, "made at the first deploy"));
  return el(
    "div",
    { "data-testid": "vm-guest" },
    el("h3", { class: "section-title" }, "Log in (cloud-init)"),
    el(
      "dl",
      { class: "kv" },
      el("dt", {}, "User"),
      el("dd", { class: "mono", "data-testid": "vm-user" }, g.user),
      ...g.addresses.flatMap((a) => [
        el("dt", {}, a.interface),
        el("dd", { class: "mono" }, `${a.address || "DHCP"} (VLAN ${a.vlan})`),
      ]),
      el("dt", {}, "SSH"),
      el(
        "dd",
        {},
        g.ssh
          ? [el("code", { "data-testid": "vm-ssh" }, g.ssh), el("div", { class: "muted small" }, `run on ${g.ssh_from}`)]
          : el("span", { class: "muted" }, "no link: through a VM it links to, or the console"),
      ),
      el("dt", {}, "Keys"),
      el(
        "dd",
        { "data-testid": "vm-keys" },
        g.keys === null
          ? el("span", { class: "muted" }, "your keys at its first deploy")
          : g.keys.length
            ? el("ul", { class: "plain" }, g.keys.map((k) => el("li", {}, `${k.name} `, el("code", {}, k.fingerprint))))
            : el("span", { class: "muted" }, "none (add keys in your profile, then deploy a new VM)"),
      ),
      el("dt", {}, "Console password"),
      password,
    ),
  );
}
