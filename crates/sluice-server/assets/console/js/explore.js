// Explorer: pick a metric, entity and tag filters from the series index (the Prometheus-style
// label routes), a time range, an aggregation and step; one line per series, drag to zoom,
// double-click (or "Reset zoom") to reset, and a table of the points.
import { api, dbPath, labelValues, labelNames } from "./api.js";
import { h, field, select, setOptions, showError, fmtNum, fmtTime, seriesLabel, uid } from "./ui.js";
import { timeChart, alignSeries } from "./chart.js";

export const title = "Explorer";

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
const RANGES = [
  { value: "5m", ms: 5 * MIN, label: "Last 5 minutes" },
  { value: "15m", ms: 15 * MIN, label: "Last 15 minutes" },
  { value: "1h", ms: HOUR, label: "Last 1 hour" },
  { value: "6h", ms: 6 * HOUR, label: "Last 6 hours" },
  { value: "24h", ms: DAY, label: "Last 24 hours" },
  { value: "7d", ms: 7 * DAY, label: "Last 7 days" },
  { value: "30d", ms: 30 * DAY, label: "Last 30 days" },
  { value: "custom", ms: null, label: "Custom range…" },
];
const AGGS = ["avg", "min", "max", "sum", "count", "first", "last"];
const STEPS = [
  1000, 2000, 5000, 10000, 15000, 30000, MIN, 2 * MIN, 5 * MIN, 10 * MIN, 15 * MIN, 30 * MIN, HOUR, 2 * HOUR,
  3 * HOUR, 6 * HOUR, 12 * HOUR, DAY, 7 * DAY,
];
const STEP_CHOICES = [1000, 5000, 10000, 30000, MIN, 5 * MIN, 15 * MIN, HOUR, 6 * HOUR, DAY];
const TABLE_ROWS = 2000;

function stepLabel(ms) {
  if (ms % DAY === 0) return `${ms / DAY} d`;
  if (ms % HOUR === 0) return `${ms / HOUR} h`;
  if (ms % MIN === 0) return `${ms / MIN} min`;
  return `${ms / 1000} s`;
}

/** A step that gives at most ~240 buckets over `rangeMs`. */
function autoStep(rangeMs) {
  return STEPS.find((s) => rangeMs / s <= 240) ?? STEPS[STEPS.length - 1];
}

function toLocalInput(ms) {
  const d = new Date(ms);
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

export async function render(root, ctx) {
  const { db, params, signal } = ctx;
  const opts = { signal };

  // ---------------------------------------------------------------- controls
  const metricSel = select([], null, { name: "metric" });
  metricSel.id = "metric";
  const entitySel = select([{ value: "", label: "(all entities)" }], "", { name: "entity" });
  entitySel.id = "entity";
  const filtersList = h("ul", { class: "filters", id: "filters", "aria-label": "Tag filters" });
  const addFilterBtn = h("button", { type: "button", id: "add-filter" }, "Add tag filter");
  const rangeSel = select(RANGES, params.get("range") || "1h", { name: "range" });
  rangeSel.id = "range";
  const fromInput = h("input", { type: "datetime-local", step: "1", name: "from" });
  const toInput = h("input", { type: "datetime-local", step: "1", name: "to" });
  const custom = h("div", { class: "custom-range", hidden: true }, field("From", fromInput), field("To", toInput));
  const aggSel = select([{ value: "", label: "none (raw points)" }, ...AGGS], params.get("agg") || "", { name: "aggregation" });
  aggSel.id = "agg";
  const stepSel = select([], null, { name: "step" });
  stepSel.id = "step";
  const groupBox = h("div", { class: "checks", id: "group-by", role: "group", "aria-label": "Group by" });
  const runBtn = h("button", { type: "submit", class: "primary", id: "run" }, "Run query");

  const form = h(
    "form",
    { class: "controls card", id: "explore-form", "aria-label": "Query" },
    h(
      "fieldset",
      null,
      h("legend", null, "Series"),
      field("Metric", metricSel),
      field("Entity", entitySel),
      h("div", { class: "field" }, h("span", { class: "label" }, "Tag filters"), filtersList, addFilterBtn),
    ),
    h("fieldset", null, h("legend", null, "Time"), field("Range", rangeSel), custom),
    h(
      "fieldset",
      null,
      h("legend", null, "Aggregation"),
      field("Aggregation", aggSel),
      field("Step", stepSel),
      h("div", { class: "field" }, h("span", { class: "label" }, "Group by"), groupBox),
    ),
    h("div", { class: "form-actions" }, runBtn),
  );

  const summary = h("p", { id: "summary", role: "status", class: "summary" });
  const chartEl = h("div", { id: "chart", class: "chart", "data-series": "0", "data-points": "0" });
  const zoomIn = h("button", { type: "button", id: "zoom-in" }, "Zoom in");
  const zoomOut = h("button", { type: "button", id: "zoom-out" }, "Zoom out");
  const zoomReset = h("button", { type: "button", id: "zoom-reset" }, "Reset zoom");
  const zoomQuery = h("button", { type: "button", id: "zoom-query", disabled: true }, "Query the zoomed range");
  const tableBtn = h("button", { type: "button", id: "table-toggle", "aria-pressed": "false", "aria-controls": "ts-table" }, "Show table");
  const tableWrap = h("div", { id: "ts-table", class: "scroll table-wrap", hidden: true });
  const result = h(
    "section",
    { class: "card result", "aria-label": "Result" },
    h("div", { class: "toolbar" }, summary, h("span", { class: "spacer" }), tableBtn),
    h(
      "div",
      { class: "toolbar" },
      zoomIn,
      zoomOut,
      zoomReset,
      zoomQuery,
      h("span", { class: "hint" }, "Drag across the chart to zoom in; double-click it to reset."),
    ),
    chartEl,
    tableWrap,
  );

  root.append(h("div", { class: "view-head" }, h("h1", null, "Explorer"), h("p", { class: "muted" }, "Database ", h("strong", null, db))));
  root.append(h("div", { class: "explore" }, form, result));

  // ---------------------------------------------------------------- state
  let tagKeys = [];
  let chart = null;
  let lastSeries = [];
  let runController = null;
  ctx.onCleanup(() => {
    if (chart) chart.destroy();
    if (runController) runController.abort();
  });

  function updateSteps() {
    const r = currentRange();
    const auto = autoStep(r.to - r.from);
    const prevVal = stepSel.value || params.get("step") || "auto";
    setOptions(
      stepSel,
      [{ value: "auto", label: `auto (${stepLabel(auto)})` }, ...STEP_CHOICES.map((s) => ({ value: String(s), label: stepLabel(s) }))],
      prevVal,
    );
    stepSel.disabled = !aggSel.value;
    for (const cb of groupBox.querySelectorAll("input")) cb.disabled = !aggSel.value;
  }

  function currentRange() {
    if (rangeSel.value === "custom") {
      const from = fromInput.value ? new Date(fromInput.value).getTime() : Date.now() - HOUR;
      const to = toInput.value ? new Date(toInput.value).getTime() : Date.now();
      return { from, to, label: `${fmtTime(from)} – ${fmtTime(to)}` };
    }
    const r = RANGES.find((x) => x.value === rangeSel.value) || RANGES[2];
    const to = Date.now();
    return { from: to - r.ms, to, label: r.label.toLowerCase() };
  }

  function showCustom() {
    const isCustom = rangeSel.value === "custom";
    custom.hidden = !isCustom;
    if (isCustom && !fromInput.value) {
      const to = Date.now();
      fromInput.value = toLocalInput(to - HOUR);
      toInput.value = toLocalInput(to);
    }
  }

  function filterRow(f = { key: "", op: "=", value: "" }) {
    const keySel = select([{ value: "", label: "(tag)" }, ...tagKeys], f.key, { class: "f-key", "aria-label": "Tag" });
    const opSel = select(
      [
        { value: "=", label: "=" },
        { value: "!=", label: "≠" },
        { value: "=~", label: "=~ regex" },
        { value: "!~", label: "!~ regex" },
      ],
      f.op,
      { class: "f-op", "aria-label": "Operator" },
    );
    const listId = uid("vals");
    const valInput = h("input", { type: "text", class: "f-value", "aria-label": "Value", list: listId, value: f.value, autocomplete: "off", spellcheck: "false" });
    const dataList = h("datalist", { id: listId });
    const remove = h("button", { type: "button", class: "f-remove", "aria-label": "Remove this filter" }, "Remove");
    const li = h("li", { class: "filter" }, keySel, opSel, valInput, dataList, remove);
    const loadValues = async () => {
      dataList.replaceChildren();
      if (!keySel.value) return;
      try {
        const vals = await labelValues(db, keySel.value, metricSel.value, opts);
        dataList.replaceChildren(...vals.slice(0, 1000).map((v) => h("option", { value: v })));
        li.dataset.values = String(vals.length);
      } catch (e) {
        if (e.name !== "AbortError") showError(e, `Values of ${keySel.value}`);
      }
    };
    keySel.addEventListener("change", () => {
      loadValues();
      if (valInput.value) run();
    });
    opSel.addEventListener("change", () => valInput.value && run());
    valInput.addEventListener("change", () => run());
    remove.addEventListener("click", () => {
      li.remove();
      addFilterBtn.focus();
      run();
    });
    loadValues();
    return li;
  }

  function readFilters() {
    return [...filtersList.querySelectorAll("li.filter")]
      .map((li) => ({
        key: li.querySelector(".f-key").value,
        op: li.querySelector(".f-op").value,
        value: li.querySelector(".f-value").value,
      }))
      .filter((f) => f.key);
  }

  async function loadMetricMeta(metric, keep) {
    const [ents, names] = await Promise.all([
      labelValues(db, "entity", metric, opts).catch((e) => (showError(e, "Entities"), [])),
      labelNames(db, metric, opts).catch((e) => (showError(e, "Tags"), [])),
    ]);
    if (signal.aborted) return;
    tagKeys = names.filter((n) => n !== "__name__" && n !== "entity");
    setOptions(entitySel, [{ value: "", label: `(all ${ents.length} entities)` }, ...ents], keep ? params.get("entity") || "" : "");
    const groups = keep ? (params.get("group") || "").split(",").filter(Boolean) : [];
    groupBox.replaceChildren(
      ...["entity", ...tagKeys].map((k) => {
        const id = uid("g");
        const cb = h("input", { type: "checkbox", id, value: k, checked: groups.includes(k) });
        cb.addEventListener("change", () => run());
        return h("span", { class: "check" }, cb, h("label", { for: id }, k));
      }),
    );
    let filters = [];
    if (keep) {
      try {
        filters = JSON.parse(params.get("filters") || "[]").map(([key, op, value]) => ({ key, op, value }));
      } catch {
        filters = [];
      }
    }
    filtersList.replaceChildren(...filters.filter((f) => tagKeys.includes(f.key)).map((f) => filterRow(f)));
    updateSteps();
  }

  // ---------------------------------------------------------------- query
  async function run() {
    const metric = metricSel.value;
    if (!metric) return;
    const r = currentRange();
    if (!(r.to > r.from)) {
      showError({ message: "The range's end must be after its start.", code: "invalid_range" }, "Explorer");
      return;
    }
    const body = { metric, from_ms: Math.floor(r.from), to_ms: Math.ceil(r.to) };
    if (entitySel.value) body.entity = entitySel.value;
    const filters = readFilters();
    if (filters.length) body.matchers = filters.map((f) => ({ tag: f.key, op: f.op, value: f.value }));
    const agg = aggSel.value;
    const group = [...groupBox.querySelectorAll("input:checked")].map((c) => c.value);
    let step = null;
    if (agg) {
      step = stepSel.value === "auto" || !stepSel.value ? autoStep(r.to - r.from) : Number(stepSel.value);
      body.aggregation = agg;
      body.step_ms = step;
      if (group.length) body.group_by = group;
    }
    ctx.setParams({
      metric,
      entity: entitySel.value,
      range: rangeSel.value,
      from: rangeSel.value === "custom" ? body.from_ms : "",
      to: rangeSel.value === "custom" ? body.to_ms : "",
      agg,
      step: agg && stepSel.value !== "auto" ? stepSel.value : "",
      group: agg ? group.join(",") : "",
      filters: filters.length ? JSON.stringify(filters.map((f) => [f.key, f.op, f.value])) : "",
    });
    if (runController) runController.abort();
    runController = new AbortController();
    const mine = runController;
    const onAbort = () => mine.abort();
    signal.addEventListener("abort", onAbort, { once: true });
    summary.textContent = `Querying ${metric}…`;
    chartEl.setAttribute("aria-busy", "true");
    const t0 = performance.now();
    let answer;
    try {
      answer = await api(dbPath(db, "/ts/query"), { method: "POST", body, signal: mine.signal });
    } catch (e) {
      if (e.name === "AbortError") return;
      chartEl.removeAttribute("aria-busy");
      summary.textContent = "The query failed (see the error above).";
      showError(e, "Query");
      return;
    } finally {
      signal.removeEventListener("abort", onAbort);
    }
    if (mine.signal.aborted) return;
    const ms = performance.now() - t0;
    const series = answer.series || [];
    lastSeries = series;
    const points = series.reduce((a, s) => a + s.points.length, 0);
    chartEl.dataset.series = String(series.length);
    chartEl.dataset.points = String(points);
    chartEl.dataset.query = JSON.stringify(body);
    chartEl.removeAttribute("aria-busy");
    const how = agg ? `${agg} per ${stepLabel(step)}${group.length ? ` by ${group.join(", ")}` : ""}` : "raw";
    summary.replaceChildren(
      h("strong", null, metric),
      ` · ${r.label} · ${how} · `,
      h("span", { id: "series-count" }, `${fmtNum(series.length)} series`),
      " · ",
      h("span", { id: "points-count" }, `${fmtNum(points)} points`),
      ` · ${ms.toFixed(0)} ms`,
    );
    if (chart) {
      chart.destroy();
      chart = null;
    }
    zoomQuery.disabled = true;
    if (!series.length) {
      chartEl.replaceChildren(
        h(
          "p",
          { class: "empty" },
          `No points of ${metric} in ${r.label}${filters.length || body.entity ? " that match the filters" : ""}. Try a longer range.`,
        ),
      );
    } else {
      const data = alignSeries(series);
      const xs = data[0];
      chart = timeChart(chartEl, {
        labels: series.map(seriesLabel),
        data,
        onZoom: (min, max) => {
          // Enabled while the chart shows less than all of its data.
          zoomQuery.disabled = !(min > xs[0] + 1e-6 || max < xs[xs.length - 1] - 1e-6);
        },
      });
    }
    if (!tableWrap.hidden) renderTable();
  }

  function renderTable() {
    const series = lastSeries;
    const total = series.reduce((a, s) => a + s.points.length, 0);
    const rows = [];
    outer: for (const s of series) {
      const label = seriesLabel(s);
      for (const [t, v] of s.points) {
        if (rows.length >= TABLE_ROWS) break outer;
        rows.push(h("tr", null, h("td", null, label), h("td", null, fmtTime(t)), h("td", { class: "num" }, String(v))));
      }
    }
    const caption = `${fmtNum(total)} points in ${fmtNum(series.length)} series${total > TABLE_ROWS ? ` (the first ${TABLE_ROWS} shown)` : ""}`;
    tableWrap.dataset.points = String(total);
    tableWrap.replaceChildren(
      h(
        "table",
        { class: "data points" },
        h("caption", null, caption),
        h("thead", null, h("tr", null, h("th", { scope: "col" }, "Series"), h("th", { scope: "col" }, "Time"), h("th", { scope: "col", class: "num" }, "Value"))),
        h("tbody", null, rows),
      ),
    );
  }

  // ---------------------------------------------------------------- events
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    run();
  });
  metricSel.addEventListener("change", async () => {
    await loadMetricMeta(metricSel.value, false);
    run();
  });
  entitySel.addEventListener("change", () => run());
  rangeSel.addEventListener("change", () => {
    showCustom();
    updateSteps();
    run();
  });
  fromInput.addEventListener("change", () => {
    updateSteps();
    run();
  });
  toInput.addEventListener("change", () => {
    updateSteps();
    run();
  });
  aggSel.addEventListener("change", () => {
    updateSteps();
    run();
  });
  stepSel.addEventListener("change", () => run());
  addFilterBtn.addEventListener("click", () => {
    const li = filterRow();
    filtersList.append(li);
    li.querySelector(".f-key").focus();
  });
  zoomIn.addEventListener("click", () => chart && chart.zoom(0.5));
  zoomOut.addEventListener("click", () => chart && chart.zoom(2));
  zoomReset.addEventListener("click", () => {
    if (chart) chart.resetZoom();
    zoomQuery.disabled = true;
  });
  zoomQuery.addEventListener("click", () => {
    if (!chart) return;
    const [min, max] = chart.range();
    rangeSel.value = "custom";
    fromInput.value = toLocalInput(Math.floor(min * 1000));
    toInput.value = toLocalInput(Math.ceil(max * 1000) + 1000);
    showCustom();
    updateSteps();
    run();
  });
  tableBtn.addEventListener("click", () => {
    const show = tableWrap.hidden;
    tableWrap.hidden = !show;
    tableBtn.setAttribute("aria-pressed", String(show));
    tableBtn.textContent = show ? "Hide table" : "Show table";
    if (show) renderTable();
  });

  // ---------------------------------------------------------------- start
  if (params.get("from") && rangeSel.value === "custom") {
    fromInput.value = toLocalInput(Number(params.get("from")));
    toInput.value = toLocalInput(Number(params.get("to")) || Date.now());
  }
  showCustom();
  updateSteps();
  let metrics = [];
  try {
    metrics = await labelValues(db, "__name__", null, opts);
  } catch (e) {
    if (e.name === "AbortError") return;
    showError(e, "Metrics");
  }
  if (signal.aborted) return;
  form.dataset.metrics = String(metrics.length);
  if (!metrics.length) {
    setOptions(metricSel, [{ value: "", label: "(no metrics)" }], "");
    summary.textContent = `No metrics in database ${db} yet.`;
    chartEl.replaceChildren(
      h(
        "p",
        { class: "empty" },
        "Write a point, e.g. ",
        h("code", null, `POST /v1/databases/${db}/ts/put {"metric":"cpu","entity":"host1","value":1.5}`),
        ", then reload.",
      ),
    );
    return;
  }
  const want = params.get("metric");
  setOptions(metricSel, metrics, metrics.includes(want) ? want : metrics[0]);
  await loadMetricMeta(metricSel.value, metricSel.value === want);
  await run();
}
