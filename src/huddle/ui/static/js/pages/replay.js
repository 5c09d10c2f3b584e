// Replay page: play a recording frame by frame (recorded timing scaled by the speed, or instantly), scrub,
// seek by seq or time, filter by type and agent; shows the reconstructed state at the cursor and whether the
// recording's hash chain verifies.

import { apiPath, banner, getJSON, postJSON, uiPath } from "../lib/api.js";
import { byId, h, idFromPath, json, markNav, replace, shortTime, stateBadge } from "../lib/dom.js";
import { listOf } from "../lib/util.js";

const PAGE = 500;
const MAX_PAUSE_MS = 2000; // long idle gaps in a recording are shortened, not waited out
const LIST_AROUND = 40;

const replayId = idFromPath("replays");
const player = {
  info: null,
  total: 0,
  frames: [],
  loadedUpTo: 0, // frames [0, loadedUpTo) are loaded
  cursor: -1,
  playing: false,
  timer: null,
  types: null,
  agents: null,
};

function atMs(frame) {
  if (typeof frame.at_ms === "number") return frame.at_ms;
  const value = frame.at ?? frame.event?.timestamp ?? frame.event?.at_ms;
  return typeof value === "number" ? value : new Date(value).getTime();
}

function eventOf(frame) {
  return frame.event ?? {};
}

async function loadUpTo(index) {
  while (player.loadedUpTo <= index && player.loadedUpTo < player.total) {
    const page = await getJSON(apiPath("replays", replayId, "frames"), { from_index: player.loadedUpTo, limit: PAGE });
    const frames = listOf(page, "frames");
    if (!frames.length) {
      player.total = player.loadedUpTo; // the recording is shorter than its info said
      break;
    }
    for (const frame of frames) player.frames[frame.index ?? player.frames.length] = frame;
    player.loadedUpTo = player.frames.length;
  }
}

function matches(frame) {
  const event = eventOf(frame);
  if (player.types && !player.types.has(event.type)) return false;
  if (player.agents && !player.agents.has(event.actor)) return false;
  return true;
}

async function nextMatching(from) {
  for (let index = from; index < player.total; index += 1) {
    await loadUpTo(index);
    if (index >= player.loadedUpTo) return -1;
    if (matches(player.frames[index])) return index;
  }
  return -1;
}

function showState(state, frame) {
  const entries = [
    ["seq", state?.seq],
    ["status", state?.status],
    ["state", state?.state],
    ["agents", (state?.agents ?? []).join(", ")],
    ["checkpoint_id", state?.checkpoint_id ?? ""],
    ["metadata", JSON.stringify(state?.metadata ?? {})],
  ];
  replace(
    byId("state"),
    entries.map(([key, value]) => [
      h("dt", {}, key),
      h("dd", { dataset: { key } }, key === "state" && value ? stateBadge(String(value)) : String(value ?? "")),
    ]),
  );
  byId("frame-event").textContent = frame ? json(eventOf(frame)) : "before the first frame";
}

function renderList() {
  const items = [];
  const from = Math.max(0, player.cursor - LIST_AROUND);
  const to = Math.min(player.loadedUpTo, Math.max(player.cursor, 0) + LIST_AROUND);
  for (let index = from; index < to; index += 1) {
    const frame = player.frames[index];
    if (!frame || !matches(frame)) continue;
    const event = eventOf(frame);
    const item = h(
      "li",
      { class: index === player.cursor ? "current" : "", dataset: { index: String(index), seq: String(frame.seq ?? event.seq) } },
      h("span", { class: "mono" }, `#${frame.seq ?? event.seq}`),
      " ",
      h("span", { class: "ev-actor" }, event.actor ?? ""),
      " ",
      h("span", { class: "ev-type" }, event.type ?? ""),
      " ",
      h("span", { class: "muted" }, shortTime(atMs(frame))),
    );
    items.push(item);
  }
  replace(byId("frames"), items);
  byId("frames").querySelector(".current")?.scrollIntoView({ block: "nearest" });
}

function show() {
  const frame = player.cursor >= 0 ? player.frames[player.cursor] : null;
  showState(frame ? frame.state : player.info?.initial_state, frame);
  byId("scrub").value = String(Math.max(0, player.cursor));
  byId("cursor").textContent =
    player.cursor < 0 ? `start / ${player.total}` : `frame ${player.cursor + 1} / ${player.total} · ${shortTime(atMs(frame))}`;
  byId("cursor").dataset.index = String(player.cursor);
  byId("cursor").dataset.atEnd = String(player.cursor === player.total - 1);
  renderList();
}

async function goTo(index) {
  index = Math.max(-1, Math.min(index, player.total - 1));
  if (index >= 0) await loadUpTo(index);
  player.cursor = Math.min(index, player.loadedUpTo - 1);
  show();
}

function stop() {
  player.playing = false;
  clearTimeout(player.timer);
  byId("play").textContent = "Play";
}

async function step() {
  if (!player.playing) return;
  const speed = Number(byId("speed").value);
  if (speed === 0) {
    await toEnd();
    return;
  }
  const next = await nextMatching(player.cursor + 1);
  if (next < 0) {
    stop();
    return;
  }
  const current = player.cursor >= 0 ? player.frames[player.cursor] : null;
  const gap = current ? Math.max(0, atMs(player.frames[next]) - atMs(current)) : 0;
  player.timer = setTimeout(async () => {
    if (!player.playing) return;
    await goTo(next);
    step();
  }, Math.min(MAX_PAUSE_MS, gap / speed));
}

async function toEnd() {
  stop();
  let last = -1;
  for (let index = await nextMatching(player.cursor + 1); index >= 0; index = await nextMatching(index + 1)) {
    last = index;
  }
  if (last >= 0) await goTo(last);
}

async function seek(event) {
  event.preventDefault();
  stop();
  const seqText = byId("seek-seq").value.trim();
  const timeText = byId("seek-time").value.trim();
  const wanted = seqText ? Number(seqText) : new Date(timeText).getTime();
  if (!Number.isFinite(wanted)) {
    banner("Give a seq or an ISO time.", { tone: "info" });
    return;
  }
  for (let index = 0; index < player.total; index += 1) {
    await loadUpTo(index);
    const frame = player.frames[index];
    if (!frame) break;
    if ((seqText ? frame.seq ?? eventOf(frame).seq : atMs(frame)) >= wanted) {
      await goTo(index);
      return;
    }
  }
  await goTo(player.total - 1);
}

function parseSet(text) {
  const names = text.split(",").map((s) => s.trim()).filter(Boolean);
  return names.length ? new Set(names) : null;
}

async function verify() {
  const badge = byId("verify");
  try {
    const report = await postJSON(apiPath("replays", replayId, "verify"));
    badge.className = `badge ${report.ok ? "tone-healthy" : "tone-broken"}`;
    badge.textContent = report.ok
      ? `chain intact (${report.frames_checked} frames)`
      : `bad frame ${report.first_bad_frame}: ${report.reason ?? ""}`;
    badge.dataset.ok = String(report.ok);
  } catch (error) {
    badge.className = "badge tone-warning";
    badge.textContent = `not verified: ${error.message}`;
  }
}

async function main() {
  markNav("replays");
  byId("replay-id").textContent = replayId;
  try {
    player.info = await getJSON(apiPath("replays", replayId));
  } catch (error) {
    banner(error.status === 404 ? `No recording ${replayId}.` : `Could not load the recording: ${error.message}`, {
      login: error.status === 401,
    });
    return;
  }
  player.total = player.info.frames ?? 0;
  const link = byId("replay-session");
  link.textContent = `session ${player.info.session_id}`;
  link.setAttribute("href", uiPath("sessions", player.info.session_id));
  byId("scrub").max = String(Math.max(0, player.total - 1));
  byId("play").addEventListener("click", () => {
    if (player.playing) {
      stop();
      return;
    }
    player.playing = true;
    byId("play").textContent = "Pause";
    if (player.cursor >= player.total - 1) player.cursor = -1;
    step();
  });
  byId("to-end").addEventListener("click", toEnd);
  byId("scrub").addEventListener("input", () => {
    stop();
    goTo(Number(byId("scrub").value));
  });
  byId("seek").addEventListener("submit", seek);
  byId("frames").addEventListener("click", (e) => {
    const item = e.target.closest("li[data-index]");
    if (item) {
      stop();
      goTo(Number(item.dataset.index));
    }
  });
  const refilter = () => {
    player.types = parseSet(byId("filter-type").value);
    player.agents = parseSet(byId("filter-agent").value);
    renderList();
  };
  byId("filter-type").addEventListener("change", refilter);
  byId("filter-agent").addEventListener("change", refilter);
  verify();
  await loadUpTo(0);
  show();
}

main();
