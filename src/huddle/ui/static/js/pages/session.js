// Session page: the live timeline, one lane per agent, virtualized (only visible rows are in the DOM), fed
// by one page of history and then the session's SSE stream.

import { ApiError, apiPath, banner, getJSON } from "../lib/api.js";
import { ago, byId, h, idFromPath, json, markNav, replace, shortTime, stateBadge } from "../lib/dom.js";
import { follow } from "../lib/sse.js";
import { agentsOf, debounce, entitiesOf, listOf, transitionOf } from "../lib/util.js";

const ROW = 32; // px; equals .tl-row height in console.css
const PAGE = 500; // events per history request
const OVERSCAN = 10;
const MAX_ENTITIES_SHOWN = 4;

const sessionId = idFromPath("sessions");
const timeline = byId("timeline");
const spacer = byId("timeline-spacer");
const wrap = timeline.closest(".timeline-wrap");

const model = {
  doc: null,
  firstSeq: 1,
  lastSeq: 0,
  events: new Map(),
  lanes: [],
  pages: new Set(),
  follow: true,
  selected: null,
  checkpoints: new Map(),
  snapshots: new Map(),
  firstRender: false,
};

function laneOf(actor) {
  if (!model.lanes.includes(actor)) {
    model.lanes.push(actor);
    renderLanes();
  }
  return model.lanes.indexOf(actor);
}

function renderLanes() {
  wrap.style.setProperty("--lanes", String(Math.max(1, model.lanes.length)));
  replace(
    byId("lanes-head"),
    h("span", { class: "tl-seq" }, "seq"),
    h("span", { class: "tl-time" }, "time"),
    model.lanes.map((agent) => h("span", { class: "tl-lane-head", dataset: { lane: agent } }, agent)),
  );
}

function total() {
  return Math.max(0, model.lastSeq - model.firstSeq + 1);
}

/** The agent a handoff names (data.to_agent or data.to), if any. */
function handoffTarget(event) {
  if (event.type !== "handoff" || !event.data) return "";
  const target = event.data.to_agent ?? event.data.toAgent ?? event.data.to;
  return typeof target === "string" ? target : "";
}

function eventCard(event) {
  const transition = transitionOf(event);
  const entities = entitiesOf(event);
  const shown = entities.slice(0, MAX_ENTITIES_SHOWN).join(", ");
  const more = entities.length > MAX_ENTITIES_SHOWN ? ` +${entities.length - MAX_ENTITIES_SHOWN}` : "";
  const classes = ["ev", `type-${/^[\w.:-]+$/.test(event.type) ? event.type.replace(/[.:]/g, "-") : "x"}`];
  if (transition) classes.push("transition", `to-${transition.to === "broken" ? "broken" : "ok"}`);
  return h(
    "button",
    { class: classes.join(" "), type: "button", dataset: { seq: String(event.seq) } },
    h("span", { class: "ev-seq" }, `#${event.seq}`),
    h("span", { class: "ev-actor" }, event.actor),
    h("span", { class: "ev-type" }, event.type),
    entities.length ? h("span", { class: "ev-entities" }, shown + more) : null,
    transition ? h("span", { class: "ev-transition" }, `${transition.from} → ${transition.to}`) : null,
    handoffTarget(event) ? h("span", { class: "ev-handoff" }, `→ ${handoffTarget(event)}`) : null,
    model.checkpoints.has(event.seq) ? h("span", { class: "mark mark-checkpoint" }, "checkpoint") : null,
    model.snapshots.has(event.seq) ? h("span", { class: "mark mark-snapshot" }, "snapshot") : null,
  );
}

function row(index) {
  const seq = model.firstSeq + index;
  const event = model.events.get(seq);
  const el = h("div", { class: "tl-row", dataset: { seq: String(seq) } });
  el.style.top = `${index * ROW}px`;
  if (seq === model.selected) el.classList.add("selected");
  if (!event) {
    el.classList.add("pending");
    el.append(h("span", { class: "tl-seq" }, String(seq)), h("span", { class: "tl-time muted" }, "…"));
    return el;
  }
  el.dataset.type = event.type;
  el.dataset.actor = event.actor;
  const lane = laneOf(event.actor);
  el.append(h("span", { class: "tl-seq" }, String(seq)), h("span", { class: "tl-time" }, shortTime(event.timestamp)));
  for (let i = 0; i < model.lanes.length; i += 1) {
    el.append(
      h("div", { class: "tl-lane", dataset: { lane: model.lanes[i] } }, i === lane ? eventCard(event) : null),
    );
  }
  return el;
}

let frame = 0;
function schedule() {
  if (!frame) frame = requestAnimationFrame(render);
}

function render() {
  frame = 0;
  spacer.style.height = `${total() * ROW}px`;
  if (model.follow) timeline.scrollTop = timeline.scrollHeight;
  const start = Math.max(0, Math.floor(timeline.scrollTop / ROW) - OVERSCAN);
  const end = Math.min(total(), Math.ceil((timeline.scrollTop + timeline.clientHeight) / ROW) + OVERSCAN);
  const rows = [];
  for (let index = start; index < end; index += 1) {
    const seq = model.firstSeq + index;
    if (!model.events.has(seq)) ensurePage(seq);
    rows.push(row(index));
  }
  replace(spacer, rows);
  byId("timeline-info").textContent =
    total() === 0 ? "no events yet" : `${total()} events (seq ${model.firstSeq}–${model.lastSeq})`;
  byId("follow").hidden = model.follow;
  if (!model.firstRender && rows.length && rows.every((r) => !r.classList.contains("pending"))) {
    model.firstRender = true;
    // Time from navigation start to the first complete render: read by the browser test and docs.
    timeline.dataset.firstRenderMs = String(Math.round(performance.now()));
  }
}

function store(event) {
  if (typeof event?.seq !== "number") return;
  model.events.set(event.seq, event);
  laneOf(event.actor);
  if (event.seq > model.lastSeq) model.lastSeq = event.seq;
}

async function ensurePage(seq) {
  const from = model.firstSeq + Math.floor((seq - model.firstSeq) / PAGE) * PAGE;
  if (model.pages.has(from)) return;
  model.pages.add(from);
  await loadRange(from, PAGE);
}

async function loadRange(fromSeq, limit) {
  // The server may cap a page below `limit`: follow next_from_seq until the range is covered.
  let from = fromSeq;
  const end = fromSeq + limit;
  try {
    while (from < end) {
      const page = await getJSON(apiPath("sessions", sessionId, "events"), { from_seq: from, limit: end - from });
      const events = listOf(page, "events");
      for (const event of events) store(event);
      schedule();
      const next = page?.next_from_seq;
      if (!events.length || typeof next !== "number" || next <= from) break;
      from = next;
    }
  } catch (error) {
    banner(`Could not load events: ${error.message}`);
  }
}

function showSummary(doc) {
  const agents = agentsOf(doc);
  const state = doc.state ?? "";
  const since = state === "broken" && doc.broken_since ? ` since ${shortTime(doc.broken_since)}` : "";
  replace(byId("session-state"), stateBadge(state, since));
  byId("session-status").textContent = doc.status ?? "";
  replace(
    byId("session-summary"),
    h("span", {}, h("b", {}, "creator "), doc.creator ?? ""),
    h("span", {}, h("b", {}, "agents "), agents.join(", ") || "none"),
    h("span", {}, h("b", {}, "created "), shortTime(doc.created_at)),
    h("span", {}, h("b", {}, "last activity "), ago(doc.updated_at)),
    doc.metadata && Object.keys(doc.metadata).length
      ? h("span", { class: "mono" }, h("b", {}, "metadata "), JSON.stringify(doc.metadata))
      : null,
  );
}

function applyLive(event) {
  store(event);
  const transition = transitionOf(event);
  if (model.doc) {
    if (transition) {
      model.doc = { ...model.doc, state: transition.to, broken_since: transition.to === "broken" ? event.timestamp : null };
    }
    model.doc = { ...model.doc, last_seq: model.lastSeq, updated_at: event.timestamp ?? model.doc.updated_at };
    showSummary(model.doc);
  }
  // Members, checkpoints and failure snapshots change with these: re-read them (debounced, bursts are common).
  if (transition || ["join", "leave", "checkpoint"].includes(event.type)) refreshSideSoon();
  schedule();
}

async function refreshDoc() {
  try {
    model.doc = await getJSON(apiPath("sessions", sessionId));
    showSummary(model.doc);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) banner(`No session ${sessionId}.`);
  }
}

function showDetail(value) {
  byId("detail").textContent = json(value);
}

async function refreshSide() {
  refreshDoc();
  const [checkpoints, snapshots] = await Promise.all([
    getJSON(apiPath("sessions", sessionId, "checkpoints")).catch(() => null),
    getJSON("/v1/failure-snapshots").catch(() => null),
  ]);
  fillList("checkpoints", listOf(checkpoints, "checkpoints"), model.checkpoints, "checkpoint_id", (cp) =>
    apiPath("sessions", sessionId, "checkpoints", cp.checkpoint_id),
  );
  // Snapshots are listed for every session (they outlive them): keep this session's, read each for its seq.
  const refs = listOf(snapshots, "snapshots").filter((ref) => ref.session_id === sessionId).slice(0, 20);
  const snapshotPath = (ref) => apiPath("failure-snapshots", sessionId, ref.snapshot_id);
  const full = await Promise.all(refs.map((ref) => getJSON(snapshotPath(ref)).catch(() => ref)));
  fillList("snapshots", full, model.snapshots, "snapshot_id", snapshotPath);
  schedule();
}

const refreshSideSoon = debounce(refreshSide, 300);

function fillList(elementId, items, bySeq, idKey, pathOf) {
  bySeq.clear();
  const entries = items.map((item) => {
    const itemId = item[idKey];
    if (typeof item.seq === "number") bySeq.set(item.seq, itemId);
    const button = h(
      "button",
      { type: "button", class: "linkish", dataset: { id: itemId ?? "" } },
      `#${item.seq ?? "?"} `,
      item.state ? stateBadge(item.state) : "",
      ` ${item.reason ?? ""} ${shortTime(item.created_at)}`,
    );
    button.addEventListener("click", async () => {
      if (typeof item.seq === "number") jumpTo(item.seq);
      try {
        showDetail(await getJSON(pathOf(item)));
      } catch (error) {
        showDetail({ error: error.message });
      }
    });
    return h("li", {}, button);
  });
  replace(byId(elementId), entries.length ? entries : h("li", { class: "muted" }, "none"));
}

function jumpTo(seq) {
  if (seq < model.firstSeq || seq > model.lastSeq) {
    banner(`seq ${seq} is outside ${model.firstSeq}–${model.lastSeq}.`, { tone: "info" });
    return;
  }
  banner("");
  model.follow = false;
  model.selected = seq;
  timeline.scrollTop = Math.max(0, (seq - model.firstSeq) * ROW - timeline.clientHeight / 2);
  const event = model.events.get(seq);
  if (event) showDetail(event);
  else ensurePage(seq).then(() => model.events.has(seq) && showDetail(model.events.get(seq)));
  schedule();
}

function wire() {
  timeline.addEventListener("scroll", () => {
    const atBottom = timeline.scrollTop + timeline.clientHeight >= timeline.scrollHeight - ROW * 1.5;
    model.follow = atBottom;
    byId("lanes-head").scrollLeft = timeline.scrollLeft;
    schedule();
  });
  timeline.addEventListener("click", (e) => {
    const card = e.target.closest(".ev");
    if (!card) return;
    const seq = Number(card.dataset.seq);
    model.selected = seq;
    showDetail(model.events.get(seq));
    schedule();
  });
  byId("follow").addEventListener("click", () => {
    model.follow = true;
    schedule();
  });
  byId("jump").addEventListener("submit", (e) => {
    e.preventDefault();
    const seq = Number(byId("jump-seq").value);
    if (Number.isInteger(seq)) jumpTo(seq);
  });
}

async function main() {
  markNav("sessions");
  byId("session-id").textContent = sessionId;
  document.title = `${sessionId} · huddle`;
  wire();
  renderLanes();
  try {
    model.doc = await getJSON(apiPath("sessions", sessionId));
  } catch (error) {
    banner(error.status === 404 ? `No session ${sessionId}.` : `Could not load the session: ${error.message}`, {
      login: error.status === 401,
    });
    return;
  }
  showSummary(model.doc);
  for (const agent of agentsOf(model.doc)) laneOf(agent);
  model.firstSeq = Math.max(1, model.doc.first_seq ?? 1);
  model.lastSeq = model.doc.last_seq ?? 0;
  if (total() > 0) {
    // The tail first: what a follower looks at. Older pages load when scrolled into view.
    await loadRange(Math.max(model.firstSeq, model.lastSeq - PAGE + 1), PAGE);
  }
  render();
  refreshSide();
  follow(apiPath("sessions", sessionId, "events", "stream"), {
    lastEventId: model.lastSeq,
    // A closed session, or an error other than falling behind (which a reconnect resumes), ends the stream.
    terminal: (frame) => frame.event === "completed" || (frame.event === "error" && frame.data?.code !== "slow_reader"),
    onFrame(frame) {
      if (frame.event === "completed") {
        if (model.doc) showSummary((model.doc = { ...model.doc, status: "completed" }));
        refreshDoc();
      } else if (frame.event === "stream-error" || (frame.event === "error" && frame.data?.code !== "slow_reader")) {
        const detail = frame.data?.detail ?? frame.data?.title ?? JSON.stringify(frame.data);
        banner(`The live stream stopped: ${detail}. Reload to start over.`);
      } else if (frame.data && typeof frame.data.seq === "number") {
        applyLive(frame.data);
      }
    },
  });
}

main();
