// The REST API client: session cookie + CSRF token, JSON in and out, errors as ApiError.

export const config = JSON.parse(document.getElementById("page-config")?.textContent || "{}");

function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  if (meta && meta.content) return meta.content;
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

/** An error answered by the API (or the network), with the field errors it named. */
export class ApiError extends Error {
  constructor(status, body) {
    const { message, fields } = ApiError.parse(status, body);
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.body = body;
    this.fields = fields;
  }

  /** The API answers {"detail": "msg", "code": "...", "errors": {"field": ["msg"]}} (errors only for refused inputs). */
  static parse(status, body) {
    const fields = {};
    let message = "";
    if (body && typeof body === "object" && !Array.isArray(body)) {
      const byField = body.errors && typeof body.errors === "object" ? body.errors : {};
      for (const [key, value] of Object.entries(byField)) {
        const text = flatten(value);
        if (text) fields[key] = text;
      }
      message = flatten(body.detail) || flatten(body.non_field_errors) || "";
      if (!message) {
        const [first] = Object.entries(fields);
        if (first) message = first[0] === "__all__" ? first[1] : `${first[0]}: ${first[1]}`;
      }
    } else if (Array.isArray(body)) {
      message = flatten(body);
    }
    if (!message) {
      if (status === 0) message = "The server cannot be reached. Check your connection and try again.";
      else if (status === 401 || status === 403) message = "You are not allowed to do this (is your session still open?).";
      else if (status === 404) message = "Not found: it may have been deleted meanwhile.";
      else if (status >= 500) message = `The server failed (HTTP ${status}). Try again; if it persists, tell an operator.`;
      else message = `The request was refused (HTTP ${status}).`;
    }
    return { message, fields };
  }
}

function flatten(value) {
  if (value == null) return "";
  if (typeof value === "string") return value;
  if (Array.isArray(value)) return value.map(flatten).filter(Boolean).join(" ");
  if (typeof value === "object") {
    return Object.entries(value)
      .map(([k, v]) => `${k}: ${flatten(v)}`)
      .join(" ");
  }
  return String(value);
}

/**
 * Call the API. ``path`` is relative to the API root ("slices/1/") or absolute ("/api/...").
 * Options: method, body (object -> JSON, FormData as is), query (object), raw (return the Response).
 */
export async function api(path, { method = "GET", body, query, raw = false, signal, accept } = {}) {
  let url = path.startsWith("/") ? path : `${config.api || "/api/"}${path}`;
  if (query) {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null) params.set(k, v);
    const qs = params.toString();
    if (qs) url += (url.includes("?") ? "&" : "?") + qs;
  }
  const headers = { Accept: accept || "application/json" };
  const init = { method, headers, credentials: "same-origin", signal };
  if (!["GET", "HEAD", "OPTIONS"].includes(method)) headers["X-CSRFToken"] = csrfToken();
  if (body instanceof FormData) {
    init.body = body;
  } else if (body !== undefined) {
    init.body = JSON.stringify(body);
    headers["Content-Type"] = "application/json";
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch (err) {
    if (err && err.name === "AbortError") throw err;
    throw new ApiError(0, null);
  }
  if (raw && response.ok) return response;
  if (response.status === 204) return null;
  const type = response.headers.get("content-type") || "";
  let data = null;
  try {
    data = type.includes("json") ? await response.json() : await response.text();
  } catch {
    data = null;
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

/** All rows of a (possibly paginated) list endpoint. */
export async function apiList(path, query) {
  const rows = [];
  let data = await api(path, { query });
  for (let guard = 0; guard < 50; guard++) {
    if (Array.isArray(data)) return rows.concat(data);
    rows.push(...(data.results || []));
    if (!data.next) return rows;
    data = await api(data.next.replace(/^https?:\/\/[^/]+/, ""));
  }
  return rows;
}
