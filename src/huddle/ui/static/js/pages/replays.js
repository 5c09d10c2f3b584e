// Replays page: the stored recordings, newest first.

import { banner, getJSON, uiPath } from "../lib/api.js";
import { byId, h, markNav, replace, shortTime, stateBadge } from "../lib/dom.js";
import { listOf } from "../lib/util.js";

async function main() {
  markNav("replays");
  try {
    const replays = listOf(await getJSON("/v1/replays"), "replays");
    replays.sort((a, b) => String(b.started_at ?? "").localeCompare(String(a.started_at ?? "")));
    replace(
      byId("replays-body"),
      replays.map((r) =>
        h(
          "tr",
          { dataset: { replay: r.replay_id } },
          h("td", {}, h("a", { href: uiPath("replays", r.replay_id), class: "mono" }, r.replay_id)),
          h("td", {}, h("a", { href: uiPath("sessions", r.session_id), class: "mono" }, r.session_id)),
          h("td", {}, stateBadge(r.status)),
          h("td", { class: "num" }, String(r.frames ?? "")),
          h("td", { class: "num" }, `${r.first_seq ?? ""}–${r.last_seq ?? ""}`),
          h("td", {}, shortTime(r.started_at)),
        ),
      ),
    );
    byId("replays-empty").hidden = replays.length > 0;
  } catch (error) {
    if (error.status !== 401) banner(`Could not list recordings: ${error.message}`);
  }
}

main();
