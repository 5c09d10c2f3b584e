// Sessions page: active sessions with their state, agents, event count and last activity; kept current by
// the lifecycle stream (start/join/leave/complete/checkpoint) and a slow refresh for state changes.

import { apiPath, banner, getJSON, uiPath } from "../lib/api.js";
import { ago, byId, h, markNav, replace, shortTime, stateBadge } from "../lib/dom.js";
import { follow } from "../lib/sse.js";
import { agentsOf, debounce, listOf } from "../lib/util.js";

const LIMIT = 50;
const REFRESH_MS = 5000;
const KNOWN_STATES = ["working", "broken"];

const rows = new Map(); // session id -> summary
let cursor = null;
const filters = { agent: "", state: "" };

function readFilters() {
  const params = new URLSearchParams(location.search);
  filters.agent = params.get("agent") ?? "";
  filters.state = params.get("state") ?? "";
  byId("f-agent").value = filters.agent;
  byId("f-state").value = filters.state;
}

function matches(summary) {
  if (filters.agent && !agentsOf(summary).includes(filters.agent)) return false;
  if (filters.state && summary.state !== filters.state) return false;
  return summary.status !== "completed";
}

function eventCount(summary) {
  if (typeof summary.event_count === "number") return summary.event_count;
  if (typeof summary.events === "number") return summary.events;
  if (typeof summary.last_seq === "number") {
    return summary.last_seq - Math.max(1, summary.first_seq ?? 1) + 1;
  }
  return "";
}

function rowFor(summary) {
  const id = summary.session_id;
  const broken = summary.state === "broken" && summary.broken_since;
  const last = summary.updated_at ?? summary.last_activity;
  return h(
    "tr",
    { dataset: { session: id, state: summary.state ?? "" } },
    h("td", {}, h("a", { href: uiPath("sessions", id), class: "mono" }, id)),
    h("td", {}, stateBadge(summary.state, broken ? ` since ${shortTime(summary.broken_since)}` : "")),
    h("td", { class: "agents" }, agentsOf(summary).join(", ")),
    h("td", { class: "num" }, String(eventCount(summary))),
    h("td", { title: last ?? "" }, ago(last)),
  );
}

function render() {
  const visible = [...rows.values()].filter(matches);
  visible.sort((a, b) => String(b.updated_at ?? "").localeCompare(String(a.updated_at ?? "")));
  replace(byId("sessions-body"), visible.map(rowFor));
  byId("sessions-empty").hidden = visible.length > 0;
  byId("more").hidden = !cursor;
  const states = new Set([...KNOWN_STATES, ...[...rows.values()].map((s) => s.state).filter(Boolean)]);
  const select = byId("f-state");
  const current = select.value;
  replace(select, h("option", { value: "" }, "any state"), [...states].sort().map((s) => h("option", { value: s }, s)));
  select.value = current;
}

async function load({ append = false } = {}) {
  try {
    const page = await getJSON("/v1/sessions", {
      agent: filters.agent,
      state: filters.state,
      limit: LIMIT,
      cursor: append ? cursor : "",
    });
    if (!append) rows.clear();
    for (const summary of listOf(page, "sessions")) rows.set(summary.session_id, summary);
    cursor = page?.next_cursor ?? page?.cursor ?? null;
    banner("");
    render();
  } catch (error) {
    if (error.status !== 401 && error.status !== 403) banner(`Could not list sessions: ${error.message}`);
  }
}

async function refreshOne(sessionId) {
  try {
    rows.set(sessionId, await getJSON(apiPath("sessions", sessionId)));
  } catch (error) {
    if (error.status === 404 || error.status === 410) rows.delete(sessionId);
  }
  render();
}

const reload = debounce(() => load(), 250);

function main() {
  markNav("sessions");
  readFilters();
  byId("filters").addEventListener("submit", (e) => {
    e.preventDefault();
    filters.agent = byId("f-agent").value.trim();
    filters.state = byId("f-state").value;
    const params = new URLSearchParams();
    if (filters.agent) params.set("agent", filters.agent);
    if (filters.state) params.set("state", filters.state);
    history.replaceState(null, "", params.toString() ? `?${params}` : location.pathname);
    load();
  });
  byId("find").addEventListener("submit", (e) => {
    e.preventDefault();
    const id = byId("f-id").value.trim();
    if (id) location.assign(uiPath("sessions", id));
  });
  byId("more").addEventListener("click", () => load({ append: true }));
  load();
  follow("/v1/lifecycle/stream", {
    onFrame(frame) {
      const notice = frame.data;
      if (frame.event === "stream-error") return;
      if (notice && typeof notice.session_id === "string") {
        if (frame.event === "complete" || notice.type === "complete") {
          rows.delete(notice.session_id);
          render();
        } else {
          refreshOne(notice.session_id);
        }
      }
    },
  });
  // State changes (broke/fixed) are not lifecycle notices: refresh the list now and then.
  setInterval(() => {
    if (!document.hidden) reload();
  }, REFRESH_MS);
  setInterval(render, 15_000); // "x s ago" stays truthful
}

main();
