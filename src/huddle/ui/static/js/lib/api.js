// The console's only way to reach the server: JSON over fetch. The token lives in an HttpOnly cookie set by
// /ui/login, so these calls never see it; same-origin fetches send it along.

import { byId, h, replace } from "./dom.js";

function meta(name) {
  const el = document.querySelector(`meta[name="${name}"]`);
  return el ? el.getAttribute("content") : "";
}

export const UI = meta("huddle-ui");
export const API = meta("huddle-api");

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.code = problem?.code ?? null;
    this.problem = problem;
  }
}

/** Show a message above the page (text only); with login=true, a link to the sign-in page. */
export function banner(message, { login = false, tone = "error" } = {}) {
  const el = byId("banner");
  if (!el) return;
  if (!message) {
    el.hidden = true;
    el.replaceChildren();
    return;
  }
  const next = encodeURIComponent(location.pathname + location.search);
  replace(el, message, login ? " " : "", login ? h("a", { href: `${UI}/login?next=${next}` }, "Sign in") : "");
  el.className = `banner tone-${tone}`;
  el.hidden = false;
}

function url(path, params) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params || {})) {
    if (value !== undefined && value !== null && value !== "") query.set(key, String(value));
  }
  const text = query.toString();
  return API + path + (text ? `?${text}` : "");
}

async function call(method, path, params, body, { anyStatus = false } = {}) {
  const init = { method, credentials: "same-origin", headers: { accept: "application/json" } };
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(url(path, params), init);
  const type = response.headers.get("content-type") || "";
  const payload = type.includes("json") ? await response.json().catch(() => null) : null;
  if (response.status === 401 || response.status === 403) {
    banner(response.status === 401 ? "This console needs a token." : "Your token may not view this.", {
      login: true,
    });
  }
  // Health endpoints answer 503 with a full report when something is down: that report is the point.
  if (!response.ok && !(anyStatus && payload && response.status !== 401 && response.status !== 403)) {
    throw new ApiError(response.status, payload);
  }
  return payload;
}

export const getJSON = (path, params) => call("GET", path, params);
export const getReport = (path, params) => call("GET", path, params, undefined, { anyStatus: true });
export const postJSON = (path, body, params) => call("POST", path, params, body);

/** Path of an API resource with encoded segments: apiPath("sessions", id, "events"). */
export function apiPath(...segments) {
  return "/v1/" + segments.map((s) => encodeURIComponent(String(s))).join("/");
}

/** Show the live-stream indicator state (live, reconnecting, offline, done). */
export function setConn(state) {
  const el = byId("conn");
  if (!el) return;
  el.textContent = state;
  el.dataset.state = state;
  el.hidden = false;
}

/** Where a console page lives: uiPath("sessions", id). */
export function uiPath(...segments) {
  return UI + "/" + segments.map((s) => encodeURIComponent(String(s))).join("/");
}
