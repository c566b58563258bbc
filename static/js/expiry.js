// The slice's expiry in the designer: extend it (POST /api/slices/{id}/extend/), then show the page again.

import { ApiError, api } from "./api.js";
import { toast } from "./ui.js";

export function wireExpiry(sliceId) {
  const form = document.getElementById("extend-form");
  if (!form) return;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const hours = Number(new FormData(form).get("hours"));
    try {
      await api(`/api/slices/${sliceId}/extend/`, { method: "POST", body: { hours } });
      window.location.reload();
    } catch (error) {
      toast(error instanceof ApiError ? error.message : String(error), { kind: "error", testid: "extend-error" });
    }
  });
}
