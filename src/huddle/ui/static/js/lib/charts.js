// Plain SVG charts, drawn from numbers the page already has: no library, no canvas, text as text nodes.

const NS = "http://www.w3.org/2000/svg";
const WIDTH = 480;
const HEIGHT = 180;
const PAD = { left: 48, right: 12, top: 12, bottom: 24 };

function svg(tag, attrs = {}, text) {
  const el = document.createElementNS(NS, tag);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  if (text !== undefined) el.textContent = String(text);
  return el;
}

function frame(container, label) {
  const root = svg("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, class: "chart-svg", role: "img", "aria-label": label });
  container.replaceChildren(root);
  return root;
}

function formatNumber(value) {
  if (!Number.isFinite(value)) return "–";
  if (Math.abs(value) >= 1000) return `${(value / 1000).toFixed(1)}k`;
  if (Math.abs(value) >= 10 || Number.isInteger(value)) return value.toFixed(0);
  return value.toFixed(value === 0 ? 0 : 2);
}

/** Line chart. series: [{name, points: [[x, y], ...]}]; x in ms since the epoch. */
export function lineChart(container, series, { label = "chart", unit = "" } = {}) {
  const root = frame(container, label);
  const points = series.flatMap((s) => s.points).filter(([, y]) => Number.isFinite(y));
  if (!points.length) {
    root.append(svg("text", { x: WIDTH / 2, y: HEIGHT / 2, class: "chart-empty", "text-anchor": "middle" }, "no data yet"));
    return;
  }
  const xs = points.map(([x]) => x);
  const ys = points.map(([, y]) => y);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  const y1 = Math.max(...ys, 0) * 1.1 || 1;
  const sx = (x) => PAD.left + (x1 === x0 ? 0.5 : (x - x0) / (x1 - x0)) * (WIDTH - PAD.left - PAD.right);
  const sy = (y) => HEIGHT - PAD.bottom - (y / y1) * (HEIGHT - PAD.top - PAD.bottom);
  root.append(
    svg("line", { x1: PAD.left, y1: sy(0), x2: WIDTH - PAD.right, y2: sy(0), class: "axis" }),
    svg("line", { x1: PAD.left, y1: PAD.top, x2: PAD.left, y2: sy(0), class: "axis" }),
    svg("text", { x: PAD.left - 4, y: PAD.top + 8, "text-anchor": "end", class: "tick" }, formatNumber(y1)),
    svg("text", { x: PAD.left - 4, y: sy(0), "text-anchor": "end", class: "tick" }, `0${unit}`),
    svg("text", { x: PAD.left, y: HEIGHT - 6, class: "tick" }, new Date(x0).toLocaleTimeString([], { hour12: false })),
    svg("text", { x: WIDTH - PAD.right, y: HEIGHT - 6, "text-anchor": "end", class: "tick" },
      new Date(x1).toLocaleTimeString([], { hour12: false })),
  );
  series.forEach((s, i) => {
    const valid = s.points.filter(([, y]) => Number.isFinite(y));
    if (!valid.length) return;
    const path = valid.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(" ");
    root.append(svg("polyline", { points: path, class: `series series-${i}` }));
    const [lx, ly] = valid[valid.length - 1];
    root.append(svg("circle", { cx: sx(lx), cy: sy(ly), r: 2.5, class: `dot series-${i}` }));
    root.append(
      svg("text", { x: PAD.left + 8 + i * 110, y: PAD.top + 8, class: `legend series-${i}` },
        `${s.name} ${formatNumber(ly)}${unit}`),
    );
  });
}

/** Horizontal bar chart. items: [{label, value}] (drawn in the given order, at most `max`). */
export function barChart(container, items, { label = "chart", max = 8 } = {}) {
  const shown = items.slice(0, max);
  const root = frame(container, label);
  if (!shown.length) {
    root.append(svg("text", { x: WIDTH / 2, y: HEIGHT / 2, class: "chart-empty", "text-anchor": "middle" }, "no data yet"));
    return;
  }
  const top = Math.max(...shown.map((i) => i.value), 1);
  const band = (HEIGHT - PAD.top - 4) / shown.length;
  const left = 120;
  shown.forEach((item, i) => {
    const y = PAD.top + i * band;
    const width = (item.value / top) * (WIDTH - left - 60);
    root.append(
      svg("text", { x: left - 6, y: y + band * 0.65, "text-anchor": "end", class: "tick" },
        item.label.length > 18 ? `${item.label.slice(0, 17)}…` : item.label),
      svg("rect", { x: left, y: y + band * 0.15, width: Math.max(1, width), height: band * 0.7, class: "bar" }),
      svg("text", { x: left + width + 4, y: y + band * 0.65, class: "tick" }, formatNumber(item.value)),
    );
  });
}
