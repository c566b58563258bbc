// The profile page: the user's SSH keys (list with fingerprints, add, rename, remove) through /api/me/keys/.

import { api } from "./api.js";
import { clearFormErrors, confirmDialog, el, formValues, render, showFormErrors, toast, withBusy } from "./ui.js";

const list = document.getElementById("key-list");
const form = document.getElementById("key-form");

async function load() {
  const keys = await api("me/keys/");
  list.removeAttribute("aria-busy");
  if (!keys.length) {
    render(list, el("p", { class: "muted", "data-testid": "no-keys" }, "No keys yet: cloud-init VMs will have no way in but the console."));
    return;
  }
  render(
    list,
    el(
      "table",
      { class: "table", "data-testid": "key-table" },
      el("thead", {}, el("tr", {}, el("th", {}, "Name"), el("th", {}, "Type"), el("th", {}, "Fingerprint"), el("th", {}, ""))),
      el(
        "tbody",
        {},
        keys.map((key) =>
          el(
            "tr",
            { dataset: { key: key.id } },
            el("td", {}, key.name),
            el("td", {}, `${key.key_type} (${key.bits} bits)`),
            el("td", {}, el("code", {}, key.fingerprint)),
            el(
              "td",
              {},
              el("button", { type: "button", class: "btn btn-sm", onclick: () => rename(key) }, "Rename"),
              " ",
              el("button", { type: "button", class: "btn btn-sm btn-danger", onclick: () => remove(key) }, "Remove"),
            ),
          ),
        ),
      ),
    ),
  );
}

async function rename(key) {
  const name = window.prompt("New name of the key", key.name);
  if (name === null || name === key.name) return;
  try {
    await api(`me/keys/${key.id}/`, { method: "PATCH", body: { name } });
    await load();
  } catch (err) {
    toast(err.message, { kind: "error" });
  }
}

async function remove(key) {
  const text = `Remove ${key.name} (${key.fingerprint})? VMs deployed from now on will not trust it; running VMs keep it.`;
  if (!(await confirmDialog(text, { title: "Remove key", ok: "Remove" }))) return;
  try {
    await api(`me/keys/${key.id}/`, { method: "DELETE" });
    await load();
  } catch (err) {
    toast(err.message, { kind: "error" });
  }
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  withBusy(form.querySelector("[type=submit]"), async () => {
    clearFormErrors(form);
    try {
      const key = await api("me/keys/", { method: "POST", body: formValues(form) });
      form.reset();
      toast(`Added ${key.name} (${key.fingerprint})`, { kind: "success" });
      await load();
    } catch (err) {
      showFormErrors(form, err);
    }
  });
});

load().catch((err) => toast(err.message, { kind: "error" }));
