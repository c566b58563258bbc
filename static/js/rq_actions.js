// django-rq's job lists lack the counter that Django's admin actions.js updates (it reads its
// data-actions-icnt and fails without it): add one before actions.js starts (this listener is first).
document.addEventListener("DOMContentLoaded", () => {
  const bar = document.querySelector("#changelist-form .actions");
  if (!bar || bar.querySelector(".action-counter")) return;
  const counter = document.createElement("span");
  counter.className = "action-counter";
  counter.dataset.actionsIcnt = String(document.querySelectorAll("tr input.action-select").length);
  bar.appendChild(counter);
});
