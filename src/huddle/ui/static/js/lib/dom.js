// DOM helpers. Everything from the API goes in through text nodes only: agent-written strings can never
// become markup, whatever they contain.

const FORBIDDEN_ATTRIBUTE = /^(on|style$|srcdoc$)/i;

/** Create an element; props: class, dataset, attributes; children: nodes or strings (as text). */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "text") el.textContent = String(value);
    else if (FORBIDDEN_ATTRIBUTE.test(key)) throw new Error(`refusing attribute ${key}`);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

/** Append nodes or strings (as text nodes) to el. */
export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Replace el's children. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

export function byId(id) {
  return document.getElementById(id);
}

/** A short, local, human time for an ISO timestamp (or epoch ms). */
export function shortTime(value) {
  if (value === undefined || value === null || value === "") return "";
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  return date.toLocaleTimeString([], { hour12: false }) + "." + String(date.getMilliseconds()).padStart(3, "0");
}

/** "3 s ago", "5 min ago" ... for an ISO timestamp. */
export function ago(value) {
  if (!value) return "";
  const seconds = Math.max(0, (Date.now() - new Date(value).getTime()) / 1000);
  if (seconds < 60) return `${Math.round(seconds)} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${(seconds / 3600).toFixed(1)} h ago`;
  return `${(seconds / 86400).toFixed(1)} d ago`;
}

/** A badge element whose colour follows the state name (working, broken, completed ...). */
export function stateBadge(state, extra = "") {
  const known = ["working", "broken", "completed", "active", "healthy", "warning", "critical", "down"];
  const tone = known.includes(state) ? state : "other";
  return h("span", { class: `badge tone-${tone}`, dataset: { state: state ?? "" } }, state ?? "?", extra);
}

/** Pretty JSON as text (never parsed as markup). */
export function json(value) {
  return JSON.stringify(value, null, 2);
}

/** The path segment after `prefix` in the current URL, decoded (a session or replay id). */
export function idFromPath(marker) {
  const parts = location.pathname.split("/");
  const at = parts.lastIndexOf(marker);
  return at >= 0 && at + 1 < parts.length ? decodeURIComponent(parts[at + 1]) : "";
}

/** Mark the current page's navigation link. */
export function markNav(name) {
  for (const link of document.querySelectorAll("[data-nav]")) {
    link.classList.toggle("current", link.dataset.nav === name);
  }
}
