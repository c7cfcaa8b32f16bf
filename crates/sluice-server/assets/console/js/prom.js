// The Prometheus text exposition format (what `/metrics` serves), parsed in the browser.

/** Parses the text into samples [{name, labels: {}, value}]. Comments and bad lines are skipped. */
export function parseMetrics(text) {
  const out = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line[0] === "#") continue;
    const s = parseLine(line);
    if (s) out.push(s);
  }
  return out;
}

function parseLine(line) {
  let i = 0;
  while (i < line.length && line[i] !== "{" && line[i] !== " " && line[i] !== "\t") i += 1;
  const name = line.slice(0, i);
  if (!name) return null;
  const labels = {};
  if (line[i] === "{") {
    i += 1;
    for (;;) {
      while (line[i] === " " || line[i] === ",") i += 1;
      if (line[i] === "}") {
        i += 1;
        break;
      }
      const eq = line.indexOf("=", i);
      if (eq < 0) return null;
      const key = line.slice(i, eq).trim();
      i = eq + 1;
      if (line[i] !== '"') return null;
      i += 1;
      let val = "";
      while (i < line.length && line[i] !== '"') {
        if (line[i] === "\\" && i + 1 < line.length) {
          const n = line[i + 1];
          val += n === "n" ? "\n" : n;
          i += 2;
        } else {
          val += line[i];
          i += 1;
        }
      }
      if (i >= line.length) return null;
      i += 1;
      labels[key] = val;
    }
  }
  const rest = line.slice(i).trim().split(/\s+/);
  const value = parseValue(rest[0]);
  if (value === null) return null;
  return { name, labels, value };
}

function parseValue(s) {
  if (s === undefined) return null;
  if (s === "+Inf") return Infinity;
  if (s === "-Inf") return -Infinity;
  if (s === "NaN") return NaN;
  const v = Number(s);
  return Number.isNaN(v) ? null : v;
}

function matches(labels, want) {
  if (!want) return true;
  for (const [k, v] of Object.entries(want)) if (labels[k] !== v) return false;
  return true;
}

/** Sum of the samples named `name` whose labels include `want`; null if there is none. */
export function sum(samples, name, want) {
  let total = null;
  for (const s of samples) {
    if (s.name === name && matches(s.labels, want)) total = (total ?? 0) + s.value;
  }
  return total;
}

/** Values of label `label` over samples named `name`. */
export function labelSet(samples, name, label) {
  const set = new Set();
  for (const s of samples) if (s.name === name && s.labels[label] !== undefined) set.add(s.labels[label]);
  return [...set].sort();
}

/**
 * A histogram (`base`_bucket/_sum/_count) over the samples whose labels include `want`, buckets
 * summed across other labels: {buckets: [{le, count}] sorted by le, sum, count} or null.
 */
export function histogram(samples, base, want) {
  const byLe = new Map();
  let hsum = null;
  let hcount = null;
  for (const s of samples) {
    if (!matches(s.labels, want)) continue;
    if (s.name === `${base}_bucket`) {
      const le = parseValue(s.labels.le);
      if (le === null) continue;
      byLe.set(le, (byLe.get(le) ?? 0) + s.value);
    } else if (s.name === `${base}_sum`) hsum = (hsum ?? 0) + s.value;
    else if (s.name === `${base}_count`) hcount = (hcount ?? 0) + s.value;
  }
  if (hcount === null) return null;
  const buckets = [...byLe.entries()].map(([le, count]) => ({ le, count })).sort((a, b) => a.le - b.le);
  return { buckets, sum: hsum ?? 0, count: hcount };
}

/** `b - a` for two histograms of the same buckets (what happened between two scrapes). */
export function histogramDelta(a, b) {
  if (!a || !b || b.count < a.count) return b;
  const prev = new Map(a.buckets.map((x) => [x.le, x.count]));
  return {
    buckets: b.buckets.map((x) => ({ le: x.le, count: x.count - (prev.get(x.le) ?? 0) })),
    sum: b.sum - a.sum,
    count: b.count - a.count,
  };
}

/** Prometheus's histogram_quantile: linear interpolation within the bucket; null if empty. */
export function quantile(q, h) {
  if (!h || !h.count || !h.buckets.length) return null;
  const total = h.buckets[h.buckets.length - 1].count;
  if (!total) return null;
  const rank = q * total;
  let prevLe = 0;
  let prevCount = 0;
  for (const b of h.buckets) {
    if (b.count >= rank) {
      if (b.le === Infinity) return prevLe;
      const inBucket = b.count - prevCount;
      if (inBucket <= 0) return b.le;
      return prevLe + (b.le - prevLe) * ((rank - prevCount) / inBucket);
    }
    prevLe = b.le;
    prevCount = b.count;
  }
  return prevLe;
}
