// Small DOM helpers, formatting, and the error region.

/**
 * h("button", {class: "x", onclick: f, "data-a": 1}, "text", child) -> element.
 * Attributes: `class`, `text`, `html` is not supported (no innerHTML anywhere), `on*`
 * handlers, booleans (true sets, false/null/undefined omits), everything else as attributes.
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === false || v === null || v === undefined) continue;
      if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
      else if (k === "class") el.className = v;
      else if (k === "text") el.textContent = v;
      else if (k === "value") el.value = v;
      else if (k === "checked" || k === "selected" || k === "disabled") el[k] = !!v;
      else el.setAttribute(k, v === true ? "" : String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** A labelled form control: <div class="field"><label for=id>text</label>control</div>. */
export function field(label, control, hint) {
  if (!control.id) control.id = uid("f");
  return h(
    "div",
    { class: "field" },
    h("label", { for: control.id }, label),
    control,
    hint ? h("span", { class: "hint", id: `${control.id}-hint` }, hint) : null,
  );
}

let uidCounter = 0;
export function uid(prefix = "id") {
  uidCounter += 1;
  return `${prefix}-${uidCounter}`;
}

/** <select> with options [{value, label}] or strings. */
export function select(options, value, attrs = {}) {
  const s = h("select", attrs);
  setOptions(s, options, value);
  return s;
}

export function setOptions(sel, options, value) {
  sel.replaceChildren(
    ...options.map((o) => {
      const opt = typeof o === "object" ? o : { value: o, label: o };
      return h("option", { value: opt.value }, opt.label ?? opt.value);
    }),
  );
  if (value !== undefined && value !== null && options.some((o) => (typeof o === "object" ? o.value : o) === value)) {
    sel.value = value;
  }
}

/** A table: columns [{label, cls?}] and rows of cells (strings or nodes). */
export function table(columns, rows, { caption, cls = "" } = {}) {
  return h(
    "table",
    { class: `data ${cls}` },
    caption ? h("caption", null, caption) : null,
    h("thead", null, h("tr", null, columns.map((c) => h("th", { scope: "col", class: c.cls }, c.label)))),
    h(
      "tbody",
      null,
      rows.map((r) => h("tr", null, r.map((cell, i) => h("td", { class: columns[i] && columns[i].cls }, cell)))),
    ),
  );
}

export function section(title, ...children) {
  const id = uid("sec");
  return h("section", { class: "card", "aria-labelledby": id }, h("h2", { id }, title), ...children);
}

/** Definition list from [[term, value], ...]. */
export function dl(pairs, attrs = {}) {
  return h(
    "dl",
    { class: "kv", ...attrs },
    pairs.flatMap(([k, v, a]) => [h("dt", null, k), h("dd", a || null, v)]),
  );
}

// ---------------------------------------------------------------- errors

const alertsEl = () => document.getElementById("alerts");

/**
 * Shows an error in the alert region: message, code, error_id (quote it when reporting), and
 * where it came from. Returns the alert element.
 */
export function showError(err, context) {
  if (err && err.name === "AbortError") return null;
  const region = alertsEl();
  const msg = (err && err.message) || String(err);
  const code = err && err.code;
  const errorId = err && err.errorId;
  if (err && err.status === 401) context = "Sign-in required"; // one alert, however many calls
  const key = err && err.status === 401 ? "401" : `${context}|${msg}|${code}`;
  for (const old of region.querySelectorAll(".alert")) {
    if (old.dataset.key === key) old.remove();
  }
  const dismiss = h("button", { type: "button", class: "dismiss", "aria-label": "Dismiss error" }, "×");
  const box = h(
    "div",
    { class: "alert", role: "alert", "data-key": key, "data-code": code || "", "data-error-id": errorId || "" },
    h(
      "div",
      { class: "alert-body" },
      h("strong", null, context ? `${context}: ` : "Error: "),
      h("span", { class: "alert-msg" }, msg),
      h(
        "div",
        { class: "alert-meta" },
        err && err.status ? h("span", null, "HTTP ", h("code", null, String(err.status))) : null,
        code ? h("span", null, "code ", h("code", { class: "err-code" }, code)) : null,
        err && err.field ? h("span", null, "field ", h("code", null, err.field)) : null,
        errorId ? h("span", null, "error_id ", h("code", { class: "err-id" }, errorId)) : null,
      ),
    ),
    dismiss,
  );
  dismiss.addEventListener("click", () => {
    box.remove();
    const main = document.getElementById("main");
    if (main) main.focus();
  });
  region.append(box);
  return box;
}

/** An error shown inside a given container (e.g. a dialog), same content as showError. */
export function errorBox(err) {
  return h(
    "div",
    { class: "alert inline", "data-code": err.code || "", "data-error-id": err.errorId || "" },
    h("span", { class: "alert-msg" }, err.message),
    h(
      "div",
      { class: "alert-meta" },
      err.status ? h("span", null, "HTTP ", h("code", null, String(err.status))) : null,
      err.code ? h("span", null, "code ", h("code", { class: "err-code" }, err.code)) : null,
      err.errorId ? h("span", null, "error_id ", h("code", { class: "err-id" }, err.errorId)) : null,
    ),
  );
}

export function clearErrors() {
  alertsEl().replaceChildren();
}

// ---------------------------------------------------------------- formatting

const nf = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });
const nf0 = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });

export function fmtNum(v, digits) {
  if (v === null || v === undefined || Number.isNaN(v)) return "—";
  if (digits !== undefined) return new Intl.NumberFormat(undefined, { maximumFractionDigits: digits }).format(v);
  if (Math.abs(v) >= 1000) return nf0.format(v);
  return nf.format(v);
}

export function fmtBytes(b) {
  if (b === null || b === undefined || Number.isNaN(b)) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = b;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

export function fmtMs(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "—";
  if (ms === 0) return "0";
  if (ms < 1) return `${(ms * 1000).toFixed(0)} µs`;
  if (ms < 1000) return `${ms.toFixed(ms < 10 ? 2 : 0)} ms`;
  const s = ms / 1000;
  if (s < 120) return `${s.toFixed(1)} s`;
  const m = s / 60;
  if (m < 120) return `${m.toFixed(0)} min`;
  const hr = m / 60;
  if (hr < 48) return `${hr.toFixed(0)} h`;
  return `${(hr / 24).toFixed(0)} d`;
}

export function fmtTime(ms) {
  const d = new Date(ms);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(
    d.getMinutes(),
  )}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** "label{k=v,…}" text of a query series. */
export function seriesLabel(s) {
  const tags = Object.entries(s.tags || {})
    .map(([k, v]) => `${k}=${v}`)
    .join(", ");
  const parts = [];
  if (s.entity) parts.push(s.entity);
  if (tags) parts.push(`{${tags}}`);
  return parts.join(" ") || s.metric || "(all)";
}

export function json(v, indent = 2) {
  return JSON.stringify(v, null, indent);
}
