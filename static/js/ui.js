// Small DOM helpers shared by the pages: elements, toasts, dialogs, form errors.

/** Create an element: el("div", {class: "x", onclick: fn, dataset: {...}}, child, "text", ...). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else if (value === true) node.setAttribute(key, "");
    else node.setAttribute(key, value);
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(node, child);
    else node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace the children of ``node``. */
export function render(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

/** A toast message; ``where`` is a container (default: the page's corner). Returns a function that closes it. */
export function toast(message, { kind = "info", where = null, timeout = null, testid = null } = {}) {
  const box = where || document.getElementById("toasts");
  const close = () => item.remove();
  const item = el(
    "div",
    { class: `toast toast-${kind}`, role: kind === "error" ? "alert" : "status", "data-testid": testid || `toast-${kind}` },
    el("div", { class: "toast-msg" }, message),
    el("button", { type: "button", class: "icon-btn", "aria-label": "Dismiss", onclick: close }, "×"),
  );
  box.append(item);
  while (box.children.length > (where ? 2 : 4)) box.firstElementChild.remove();
  const ms = timeout ?? (kind === "error" ? 9000 : 3500);
  if (ms > 0) setTimeout(close, ms);
  return close;
}

/** Show an ApiError on a form: messages under the named fields, anything else at the top. */
export function showFormErrors(form, error, aliases = {}) {
  clearFormErrors(form);
  const leftovers = [];
  let firstInvalid = null;
  for (const [raw, message] of Object.entries(error.fields || {})) {
    const name = aliases[raw] || raw;
    const slot = name !== "__all__" && form.querySelector(`[data-error-for="${CSS.escape(name)}"]`);
    if (!slot) {
      leftovers.push(raw === "__all__" ? message : `${raw}: ${message}`);
      continue;
    }
    slot.textContent = message;
    slot.hidden = false;
    const wrapper = slot.closest(".field");
    wrapper?.classList.add("has-error");
    const input = wrapper?.querySelector("input, select, textarea");
    if (input) {
      input.setAttribute("aria-invalid", "true");
      if (slot.id) input.setAttribute("aria-errormessage", slot.id);
      firstInvalid = firstInvalid || input;
    }
  }
  let topText = leftovers.join(" ");
  if (!firstInvalid && !topText) topText = error.message;
  const top = form.querySelector('[data-error-for="__all__"]');
  if (top) {
    top.textContent = topText;
    top.hidden = !topText;
  }
  (firstInvalid || form.querySelector("input:not([type=hidden]), select"))?.focus();
}

export function clearFormErrors(form) {
  for (const slot of form.querySelectorAll("[data-error-for]")) {
    slot.textContent = "";
    slot.hidden = true;
  }
  for (const wrapper of form.querySelectorAll(".has-error")) wrapper.classList.remove("has-error");
  for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
}

/** Wire [data-open=ID] buttons and [data-close] buttons inside dialogs. Escape closes natively. */
export function wireDialogs(root = document) {
  for (const button of root.querySelectorAll("[data-open]")) {
    button.addEventListener("click", () => openDialog(document.getElementById(button.dataset.open)));
  }
  for (const dialog of root.querySelectorAll("dialog")) {
    for (const button of dialog.querySelectorAll("[data-close]")) {
      button.addEventListener("click", () => dialog.close("cancel"));
    }
    // A click on the backdrop (outside the body) closes the dialog.
    dialog.addEventListener("mousedown", (event) => {
      if (event.target === dialog) dialog.close("cancel");
    });
  }
}

export function openDialog(dialog) {
  if (!dialog.open) dialog.showModal();
  const form = dialog.querySelector("form");
  if (form) clearFormErrors(form);
  const first = dialog.querySelector("[autofocus], input:not([type=hidden]):not([disabled]), select, textarea, button[type=submit]");
  first?.focus();
  return dialog;
}

/** Ask a yes/no question in the page's confirm dialog (``dismiss`` labels the "no"). Resolves to true on OK. */
export function confirmDialog(text, { title = "Are you sure?", ok = "OK", dismiss = "Cancel", danger = true } = {}) {
  const dialog = document.getElementById("confirm-dialog");
  dialog.querySelector("h2").textContent = title;
  dialog.querySelector("#confirm-text").textContent = text;
  dialog.querySelector('[value="cancel"]').textContent = dismiss;
  const okButton = dialog.querySelector('[value="ok"]');
  okButton.textContent = ok;
  okButton.className = `btn ${danger ? "btn-danger" : "btn-primary"}`;
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.showModal();
    okButton.focus();
  });
}

/** Run ``work`` while ``button`` shows a spinner and is disabled. */
export async function withBusy(button, work) {
  if (!button) return work();
  const wasDisabled = button.disabled;
  button.disabled = true;
  button.classList.add("is-busy");
  button.setAttribute("aria-busy", "true");
  try {
    return await work();
  } finally {
    button.classList.remove("is-busy");
    button.removeAttribute("aria-busy");
    button.disabled = wasDisabled;
  }
}

/** Save a Blob under ``filename``. */
export function download(blob, filename) {
  const url = URL.createObjectURL(blob);
  const link = el("a", { href: url, download: filename });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 2000);
}

export function formatDuration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(ms < 10000 ? 1 : 0)} s`;
  const minutes = Math.floor(ms / 60000);
  return `${minutes} min ${Math.round((ms % 60000) / 1000)} s`;
}

export function timeAgo(iso) {
  if (!iso) return "";
  const seconds = (Date.now() - new Date(iso).getTime()) / 1000;
  if (seconds < 45) return "just now";
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  return new Date(iso).toLocaleDateString();
}

export function statusBadge(status, label) {
  const text = label || (status === "lost" ? "Stopped unexpectedly" : status ? status[0].toUpperCase() + status.slice(1) : "—");
  return el("span", { class: `badge status-${status || "draft"}`, "data-status": status || "" }, text);
}

/** Form values as an object; numbers for type=number, booleans for checkboxes. */
export function formValues(form) {
  const values = {};
  for (const input of form.elements) {
    if (!input.name || input.disabled || input.type === "submit" || input.type === "button") continue;
    if (input.type === "checkbox") values[input.name] = input.checked;
    else if (input.type === "number") values[input.name] = input.value === "" ? null : Number(input.value);
    else if (input.type === "file") values[input.name] = input.files[0] || null;
    else if (input.tagName === "SELECT" && /^\d+$/.test(input.value)) values[input.name] = Number(input.value);
    else values[input.name] = input.value.trim();
  }
  return values;
}

// Terminal control sequences (colours, cursor queries like ESC[6n) and other control characters.
const ANSI = /\u001b(?:\[[0-9;?]*[ -/]*[@-~]|\][^\u0007]*\u0007|[@-Z\\-_])/g;
const CONTROL = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/g;

/** Serial console text made readable: no terminal escapes, no stray control characters, CRLF as LF. */
export function cleanConsole(text) {
  return (text || "").replace(ANSI, "").replace(/\r\n?/g, "\n").replace(CONTROL, "");
}

/** A <pre> showing the end of a serial console, scrolled to its last line. */
export function consoleBlock(text, attrs = {}) {
  const pre = el("pre", { class: "console", ...attrs }, cleanConsole(text));
  requestAnimationFrame(() => {
    pre.scrollTop = pre.scrollHeight;
  });
  return pre;
}
