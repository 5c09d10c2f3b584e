// Health page: component levels and active alerts (/health/detailed), throughput and latency of the sliding
// windows (/health/metrics, sampled here into a short history), and analytics from get_stats() (/v1/stats).

import { banner, getJSON, getReport } from "../lib/api.js";
import { byId, h, markNav, replace, shortTime, stateBadge } from "../lib/dom.js";
import { barChart, lineChart } from "../lib/charts.js";

const POLL_MS = 5000;
const HISTORY = 120; // samples kept: 10 minutes at one per 5 s

const history = [];

function windowOf(metrics, name) {
  return metrics?.performance?.windows?.[name] ?? {};
}

function drawMetrics(metrics) {
  const now = new Date(metrics?.time ?? Date.now()).getTime();
  const w1 = windowOf(metrics, "1m");
  const w5 = windowOf(metrics, "5m");
  history.push({ t: now, w1, w5 });
  while (history.length > HISTORY) history.shift();
  const line = (pick) => history.map((s) => [s.t, pick(s) ?? NaN]);
  lineChart(
    byId("chart-throughput"),
    [
      { name: "1m", points: line((s) => s.w1.throughputPerSecond) },
      { name: "5m", points: line((s) => s.w5.throughputPerSecond) },
    ],
    { label: "throughput per second over the 1 and 5 minute windows" },
  );
  lineChart(
    byId("chart-latency"),
    [
      { name: "p50", points: line((s) => s.w1.p50Ms) },
      { name: "p95", points: line((s) => s.w1.p95Ms) },
      { name: "p99", points: line((s) => s.w1.p99Ms) },
    ],
    { label: "latency percentiles over the 1 minute window", unit: "ms" },
  );
}

function drawHealth(report) {
  replace(byId("overall"), stateBadge(report.overall ?? report.status));
  byId("health-updated").textContent = `checked ${shortTime(report.time)}`;
  const components = report.components ?? {};
  replace(
    byId("components"),
    Object.entries(components).map(([name, component]) => {
      const level = typeof component === "string" ? component : component.level;
      const output = typeof component === "object" ? component.output : null;
      return h(
        "div",
        { class: "card component", dataset: { component: name, level: level ?? "" } },
        h("h3", {}, name),
        stateBadge(level),
        output ? h("p", { class: "muted small" }, output) : null,
      );
    }),
  );
  const alerts = (report.alerts ?? []).filter((a) => a.level !== "healthy");
  replace(
    byId("alerts"),
    alerts.length
      ? alerts.map((a) => h("li", {}, stateBadge(a.level), ` ${a.check}: ${a.message} (${shortTime(a.time)})`))
      : h("li", { class: "muted" }, "no active alerts"),
  );
}

function duration(value) {
  if (typeof value !== "number") return "–";
  if (value < 1) return `${Math.round(value * 1000)} ms`;
  if (value < 120) return `${value.toFixed(1)} s`;
  return `${(value / 60).toFixed(1)} min`;
}

function seconds(dist) {
  if (!dist || !dist.count) return "–";
  return `p50 ${duration(dist.p50)} · p95 ${duration(dist.p95)} (${dist.count})`;
}

function drawStats(stats) {
  barChart(
    byId("chart-workload"),
    (stats.agent_workload ?? []).map((w) => ({ label: w.agent_id, value: w.events })),
    { label: "events written per agent" },
  );
  barChart(
    byId("chart-states"),
    Object.entries(stats.sessions_by_state ?? {}).map(([label, value]) => ({ label, value })),
    { label: "live sessions by state" },
  );
  const pairs = (stats.collaboration_pairs ?? []).slice(0, 10);
  replace(
    byId("pairs"),
    pairs.length
      ? pairs.map((p) =>
          h("tr", {}, h("td", {}, p.agents.join(" + ")), h("td", { class: "num" }, String(p.shared_sessions))),
        )
      : h("tr", {}, h("td", { class: "muted", colspan: "2" }, "no two agents share a session")),
  );
  const rows = [
    ["active sessions", stats.active_sessions],
    ["broken sessions", stats.broken_sessions],
    ["events (retained)", stats.total_events],
    ["distinct agents", stats.distinct_agents],
    ["handoffs", stats.handoff_count],
    ["broke → fixed", seconds(stats.time_to_fix_seconds)],
    ["failure snapshots", stats.failure_snapshots],
    ["created last hour", stats.sessions_created_last_hour],
  ];
  replace(byId("analytics"), rows.map(([k, v]) => [h("dt", {}, k), h("dd", { dataset: { key: k } }, String(v ?? "–"))]));
}

async function poll() {
  const results = await Promise.allSettled([
    getReport("/health/detailed"),
    getJSON("/health/metrics"),
    getJSON("/v1/stats"),
  ]);
  const [health, metrics, stats] = results;
  if (health.status === "fulfilled") drawHealth(health.value);
  if (metrics.status === "fulfilled") drawMetrics(metrics.value);
  if (stats.status === "fulfilled" && stats.value) drawStats(stats.value.stats ?? stats.value);
  const failed = results.filter((r) => r.status === "rejected" && r.reason.status !== 401);
  if (failed.length) banner(`Some health data is unavailable: ${failed.map((r) => r.reason.message).join("; ")}`);
  else if (!results.some((r) => r.status === "rejected")) banner("");
}

markNav("health");
poll();
setInterval(() => {
  if (!document.hidden) poll();
}, POLL_MS);
