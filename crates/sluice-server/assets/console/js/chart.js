// Line charts with the vendored uPlot (vendor/uPlot.iife.min.js, a global `uPlot`).
import { h, fmtNum } from "./ui.js";

export const PALETTE = [
  "#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed",
  "#0891b2", "#db2777", "#65a30d", "#9333ea", "#ea580c",
  "#0f766e", "#b91c1c", "#4338ca", "#a16207", "#be185d",
];

export const color = (i) => PALETTE[i % PALETTE.length];

function cssVar(name, fallback) {
  const v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return v || fallback;
}

function axisStyle() {
  const fg = cssVar("--muted", "#555");
  const grid = cssVar("--grid", "#e5e7eb");
  return { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } };
}

/**
 * Aligns query series (each `points: [[ms, value], …]`) on the union of their timestamps:
 * [xs in seconds, ys1, ys2, …] with null where a series has no point.
 */
export function alignSeries(seriesList) {
  const ts = new Set();
  for (const s of seriesList) for (const p of s.points) ts.add(p[0]);
  const xs = [...ts].sort((a, b) => a - b);
  const index = new Map(xs.map((t, i) => [t, i]));
  const ys = seriesList.map((s) => {
    const col = new Array(xs.length).fill(null);
    for (const [t, v] of s.points) col[index.get(t)] = v;
    return col;
  });
  return [xs.map((t) => t / 1000), ...ys];
}

function watchWidth(container, u, height) {
  const ro = new ResizeObserver(() => {
    const w = Math.max(120, Math.floor(container.clientWidth));
    if (Math.abs(w - u.width) > 1) u.setSize({ width: w, height });
  });
  ro.observe(container);
  return ro;
}

/**
 * A time chart with several series, drag-to-zoom on x, double-click to reset, and a legend of
 * checkboxes (keyboard: Tab to a series, Space to show/hide it) that shows the values under the
 * cursor. Returns {u, destroy(), resetZoom(), zoom(factor), range()}.
 */
export function timeChart(container, { labels, data, height = 340, onZoom, yLabel }) {
  if (!window.uPlot) throw new Error("uPlot did not load");
  const plot = h("div", { class: "plot" });
  const legend = h("ul", { class: "legend", "aria-label": "Series (show or hide)" });
  container.replaceChildren(plot, legend);
  const width = Math.max(320, container.clientWidth || 800);
  const valueEls = [];
  labels.forEach((label, i) => {
    const id = `lg-${Math.random().toString(36).slice(2, 9)}-${i}`;
    const cb = h("input", { type: "checkbox", id, checked: true });
    const val = h("span", { class: "lg-val" });
    valueEls.push(val);
    cb.addEventListener("change", () => u.setSeries(i + 1, { show: cb.checked }));
    legend.append(
      h(
        "li",
        null,
        cb,
        h("label", { for: id }, h("span", { class: "swatch", style: `background:${color(i)}` }), label),
        val,
      ),
    );
  });
  const ax = axisStyle();
  let zoomedByUser = false;
  const opts = {
    width,
    height,
    scales: { x: { time: true } },
    series: [
      { label: "time" },
      ...labels.map((label, i) => ({
        label,
        stroke: color(i),
        width: 1.5,
        spanGaps: true,
        value: (u, v) => (v === null || v === undefined ? "—" : fmtNum(v, 4)),
      })),
    ],
    axes: [ax, { ...ax, size: 64, label: yLabel, values: (u, vals) => vals.map((v) => fmtNum(v, 3)) }],
    legend: { show: false },
    cursor: { drag: { x: true, y: false, setScale: true }, focus: { prox: 24 } },
    focus: { alpha: 0.35 },
    hooks: {
      setCursor: [
        (u) => {
          const idx = u.cursor.idx;
          labels.forEach((_, i) => {
            const v = idx === null || idx === undefined ? null : u.data[i + 1][idx];
            valueEls[i].textContent = v === null || v === undefined ? "" : fmtNum(v, 4);
          });
        },
      ],
      setScale: [
        (u, key) => {
          if (key === "x" && onZoom) onZoom(u.scales.x.min, u.scales.x.max, zoomedByUser);
        },
      ],
    },
  };
  const u = new window.uPlot(opts, data, plot);
  const ro = watchWidth(container, u, height);
  const xs = data[0];
  const full = () => (xs.length ? [xs[0], xs[xs.length - 1]] : [0, 1]);
  return {
    u,
    destroy() {
      ro.disconnect();
      u.destroy();
    },
    resetZoom() {
      const [min, max] = full();
      u.setScale("x", { min, max });
    },
    zoom(factor) {
      const { min, max } = u.scales.x;
      const mid = (min + max) / 2;
      const half = ((max - min) / 2) * factor;
      const [fmin, fmax] = full();
      u.setScale("x", { min: Math.max(fmin, mid - half), max: Math.min(fmax, mid + half) });
      zoomedByUser = true;
    },
    range() {
      return [u.scales.x.min, u.scales.x.max];
    },
  };
}

/** A small chart of one or two recent series (the live view); returns {push(t, ...vals), destroy()}. */
export function sparkline(container, { labels, colors, height = 56, keep = 150 }) {
  if (!window.uPlot) throw new Error("uPlot did not load");
  const data = [[], ...labels.map(() => [])];
  const ax = axisStyle();
  const u = new window.uPlot(
    {
      width: Math.max(120, container.clientWidth || 240),
      height,
      padding: [6, 4, 2, 4],
      legend: { show: false },
      cursor: { show: false },
      scales: { x: { time: true }, y: { range: (u, min, max) => [Math.min(0, min), max > 0 ? max * 1.15 : 1] } },
      axes: [{ show: false }, { show: false, grid: ax.grid }],
      series: [{}, ...labels.map((label, i) => ({ label, stroke: colors[i], width: 1.5, fill: `${colors[i]}22`, points: { show: false } }))],
    },
    data,
    container,
  );
  const ro = watchWidth(container, u, height);
  return {
    push(t, ...vals) {
      data[0].push(t);
      vals.forEach((v, i) => data[i + 1].push(v ?? null));
      if (data[0].length > keep) for (const col of data) col.shift();
      u.setData(data);
    },
    destroy() {
      ro.disconnect();
      u.destroy();
    },
  };
}
