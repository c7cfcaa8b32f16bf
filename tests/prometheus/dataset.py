"""The deterministic test dataset (seeded RNG), shared by the reference and the target.

All timestamps are relative to ``END`` (ms, a whole minute, one minute before "now" when the
session starts), from ``END - 55 min`` to ``END``: Prometheus accepts appends only within about
an hour of its newest sample and in time order per series, so the data is recent and is sent in
time-ordered batches (one request per 5-minute window, covering all series).

What it contains, and which queries it exists for:

* ``http_requests_total``: 24 counters (job x instance x path x code, env="prod"), two of
  them with counter resets -> rate/increase/resets, vector matching on job/instance.
* ``instance_info``: 4 series (job, instance, version, region), value 1. ``instance`` values
  repeat across jobs, so ``on(instance)`` is many-to-many (an error) while ``on(job, instance)``
  with ``group_left(version, region)`` is many-to-one.
* ``up``: 4 series, one of which drops to 0 for 5 minutes.
* ``node_cpu_seconds_total``: 12 counters; ``node_memory_free_bytes``: 2 large gauges.
* ``temperature_celsius``: 6 random-walk gauges crossing zero (negative values).
* ``request_duration_seconds_{bucket,sum,count}``: classic histograms, 2 jobs x 2 instances.
* ``queue_depth``: 3 gauges with +-2 s scrape jitter; ``sampled_gauge``: 10 s and 30 s intervals.
* ``gappy_gauge``: gap="long" (8 min without samples, longer than the 5 min lookback) and
  gap="short" (3 min).
* ``ending_series``: both stop at END-20m; marker="yes" then gets a staleness marker,
  marker="no" does not (visible for 5 more minutes through the lookback).
* ``weird_values``: ordinary NaN, +Inf, -Inf among normal values (remote write only).
* ``singleton_metric``: the only series of its metric, no labels but the name.
* ``disk_read_bytes_total`` / ``disk_written_bytes_total``: identical label sets, so dropping
  the metric name makes duplicates ("vector cannot contain metrics with the same labelset").
* ``service_latency_seconds``: service names with dashes for label_replace/label_join.
* ``lp_*``: ~20 float series that the target (Sluice) receives as InfluxDB line protocol and the
  reference as remote write, with the labels of Sluice's mapping (see ``lp_labels``).
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Tuple

import remote_write
from remote_write import STALE_NAN

MIN = 60_000
SEED = 20240611
SPAN_MS = 55 * MIN
WINDOW_MS = 5 * MIN


def choose_end_ms(now_s: Optional[float] = None) -> int:
    """floor(now / 60 s) * 60 s - 60 s, in ms."""
    now_ms = int((time.time() if now_s is None else now_s) * 1000)
    return now_ms // MIN * MIN - MIN


@dataclass
class Series:
    labels: Dict[str, str]
    samples: List[Tuple[int, float]] = field(default_factory=list)
    # For line-protocol series: (measurement, tags, field name). Sluice gets these as line protocol.
    lp: Optional[Tuple[str, Dict[str, str], str]] = None


def lp_labels(measurement: str, tags: Dict[str, str], fld: str) -> Dict[str, str]:
    """Sluice's mapping of one line-protocol field to Prometheus labels."""
    labels = {k: v for k, v in tags.items() if k != "entity"}
    labels["__name__"] = measurement if fld == "value" else f"{measurement}_{fld}"
    ent = tags.get("entity", tags.get("host"))
    if ent is not None:
        labels["entity"] = ent
    return labels


def _r3(x: float) -> float:
    # 3 decimals, never -0.0 (its text differs: "-0"), so line protocol carries it exactly.
    return round(x, 3) + 0.0


class Dataset:
    def __init__(self, end_ms: int) -> None:
        self.end_ms = end_ms
        self.start_ms = end_ms - SPAN_MS
        self.series: List[Series] = []
        rng = random.Random(SEED)
        self._build(rng)
        keys = [tuple(sorted(s.labels.items())) for s in self.series]
        assert len(keys) == len(set(keys)), "duplicate series in dataset"

    # ---- helpers -------------------------------------------------------------------------
    def _times(self, interval_ms: int = 15_000, jitter_ms: int = 0, rng=None) -> List[int]:
        out = []
        t = self.start_ms
        while t <= self.end_ms:
            j = rng.randint(-jitter_ms, jitter_ms) if jitter_ms else 0
            out.append(min(self.end_ms, max(self.start_ms, t + j)))
            t += interval_ms
        return out

    def _add(self, labels: Dict[str, str], samples, lp=None) -> Series:
        s = Series(dict(labels), list(samples), lp)
        self.series.append(s)
        return s

    def _counter(self, rng, times, lo, hi, resets=(), decimals=True):
        v, out = 0.0, []
        for t in times:
            if any(abs(t - r) < 7_500 for r in resets):
                v = 0.0
            inc = rng.uniform(lo, hi) if decimals else rng.randint(int(lo), int(hi))
            v = _r3(v + inc)
            out.append((t, v))
        return out

    def _walk(self, rng, times, start, step):
        v, out = start, []
        for t in times:
            v = _r3(v + rng.uniform(-step, step))
            out.append((t, v))
        return out

    # ---- the data ------------------------------------------------------------------------
    def _build(self, rng: random.Random) -> None:
        E = self.end_ms
        ts = self._times()
        jobs, insts = ["api", "web"], ["host-a:9100", "host-b:9100"]

        for job in jobs:
            for inst in insts:
                for path in ["/", "/login", "/api"]:
                    for code in ["200", "500"]:
                        resets = ()
                        if (job, inst, path, code) == ("web", "host-b:9100", "/", "200"):
                            resets = (E - 25 * MIN,)
                        if (job, inst, path, code) == ("api", "host-a:9100", "/login", "200"):
                            resets = (E - 45 * MIN, E - 10 * MIN)
                        hi = 40 if code == "200" else 3
                        self._add({"__name__": "http_requests_total", "job": job, "instance": inst,
                                   "path": path, "code": code, "env": "prod"},
                                  self._counter(rng, ts, 0, hi, resets, decimals=False))

        info = {("api", "host-a:9100"): ("1.0", "eu"), ("api", "host-b:9100"): ("1.1", "eu"),
                ("web", "host-a:9100"): ("2.0", "us"), ("web", "host-b:9100"): ("2.0", "us")}
        for (job, inst), (ver, reg) in info.items():
            self._add({"__name__": "instance_info", "job": job, "instance": inst, "version": ver,
                       "region": reg}, [(t, 1.0) for t in ts])

        for job in jobs:
            for inst in insts:
                down = (job, inst) == ("web", "host-b:9100")
                self._add({"__name__": "up", "job": job, "instance": inst},
                          [(t, 0.0 if down and E - 30 * MIN <= t < E - 25 * MIN else 1.0) for t in ts])

        for inst in insts:
            for cpu in ["0", "1"]:
                for mode, hi in [("idle", 15.0), ("user", 4.0), ("system", 1.5)]:
                    self._add({"__name__": "node_cpu_seconds_total", "instance": inst, "cpu": cpu,
                               "mode": mode}, self._counter(rng, ts, 0.0, hi))
            base = 2_000_000_000 + rng.randint(0, 10**8)
            mem, v = [], base
            for t in ts:
                v += rng.randint(-5, 5) * 1_000_000 + rng.randint(0, 999)
                mem.append((t, float(v)))
            self._add({"__name__": "node_memory_free_bytes", "instance": inst}, mem)

        for region in ["eu", "us", "ap"]:
            for sensor in ["s1", "s2"]:
                self._add({"__name__": "temperature_celsius", "region": region, "sensor": sensor},
                          self._walk(rng, ts, rng.uniform(-3, 3), 1.0))

        bounds = [0.05, 0.1, 0.25, 0.5, 1.0]
        for job in jobs:
            for inst in insts:
                lam = 6.0 if job == "api" else 2.5
                counts = [0] * (len(bounds) + 1)
                total, n = 0.0, 0
                rows = {le: [] for le in bounds + [math.inf]}
                sums, cnts = [], []
                for t in ts:
                    for _ in range(rng.randint(0, 30)):
                        x = rng.expovariate(lam)
                        total += x
                        n += 1
                        for i, b in enumerate(bounds + [math.inf]):
                            if x <= b:
                                counts[i] += 1
                    cum = 0
                    for i, b in enumerate(bounds + [math.inf]):
                        cum += counts[i]
                        rows[b].append((t, float(cum)))
                    sums.append((t, _r3(total)))
                    cnts.append((t, float(n)))
                for b, samples in rows.items():
                    le = "+Inf" if b == math.inf else repr(b)
                    self._add({"__name__": "request_duration_seconds_bucket", "job": job,
                               "instance": inst, "le": le}, samples)
                self._add({"__name__": "request_duration_seconds_sum", "job": job, "instance": inst}, sums)
                self._add({"__name__": "request_duration_seconds_count", "job": job, "instance": inst}, cnts)

        for q in ["q1", "q2", "q3"]:
            jt = self._times(15_000, 2_000, rng)
            self._add({"__name__": "queue_depth", "queue": q},
                      [(t, float(rng.randint(0, 50))) for t in jt])

        for iv, ms in [("10s", 10_000), ("30s", 30_000)]:
            self._add({"__name__": "sampled_gauge", "interval": iv}, self._walk(rng, self._times(ms), 10, 2))

        for gap, (g0, g1) in [("long", (E - 30 * MIN, E - 22 * MIN)), ("short", (E - 30 * MIN, E - 27 * MIN))]:
            walk = self._walk(rng, ts, 50, 3)
            self._add({"__name__": "gappy_gauge", "gap": gap}, [(t, v) for t, v in walk if not g0 < t < g1])

        for marker in ["yes", "no"]:
            walk = [(t, v) for t, v in self._walk(rng, ts, 5, 1) if t <= E - 20 * MIN]
            if marker == "yes":
                walk.append((E - 20 * MIN + 15_000, STALE_NAN))
            self._add({"__name__": "ending_series", "marker": marker}, walk)

        for kind, every, special in [("nan", 10, math.nan), ("inf", 7, math.inf),
                                     ("neginf", 9, -math.inf), ("normal", 0, None)]:
            samples = []
            for i, (t, v) in enumerate(self._walk(rng, ts, 1, 0.5)):
                samples.append((t, special if every and i % every == 3 else v))
            self._add({"__name__": "weird_values", "kind": kind}, samples)

        self._add({"__name__": "singleton_metric"}, self._walk(rng, ts, 100, 5))

        for inst in insts:
            for dev in ["sda", "sdb"]:
                for name in ["disk_read_bytes_total", "disk_written_bytes_total"]:
                    self._add({"__name__": name, "instance": inst, "device": dev},
                              self._counter(rng, ts, 0, 5000, decimals=False))

        for svc in ["api-gateway", "auth-service", "db-proxy"]:
            for inst in insts:
                self._add({"__name__": "service_latency_seconds", "service": svc, "instance": inst},
                          self._walk(rng, ts, 0.5, 0.05))

        # Line-protocol series: each line carries all fields of one (measurement, tags).
        lp_groups = []
        for host, region in [("h1", "eu"), ("h2", "eu"), ("h3", "us")]:
            lp_groups.append(("lp_weather", {"host": host, "region": region},
                              {"temp": (15, 0.5), "hum": (60, 2)}))
        for host in ["h1", "h2", "h3", "h4"]:
            for core in ["0", "1"]:
                lp_groups.append(("lp_cpu", {"host": host, "core": core}, {"value": (50, 5)}))
        for ent in ["e1", "e2"]:
            for dev in ["sda", "sdb"]:
                lp_groups.append(("lp_disk", {"entity": ent, "dev": dev}, {"used": (1000, 10)}))
        lp_groups.append(("lp_net", {"host": "h1", "entity": "router1"}, {"rx": (500, 20), "tx": (300, 20)}))
        for meas, tags, fields in lp_groups:
            for fld, (start, step) in fields.items():
                self._add(lp_labels(meas, tags, fld), self._walk(rng, ts, start, step),
                          lp=(meas, tags, fld))

    # ---- views ---------------------------------------------------------------------------
    def expected_sample_count(self) -> int:
        """Samples that count_over_time sees (all but staleness markers)."""
        return sum(1 for s in self.series for _, v in s.samples if not remote_write.is_stale(v))

    def windows(self) -> Iterator[Tuple[int, int]]:
        w = self.start_ms
        while w <= self.end_ms:
            yield w, w + WINDOW_MS
            w += WINDOW_MS

    def remote_write_bodies(self, include_lp: bool = True) -> Iterator[bytes]:
        """One snappy-compressed WriteRequest per 5-minute window, in time order."""
        for w0, w1 in self.windows():
            batch = []
            for s in self.series:
                if s.lp is not None and not include_lp:
                    continue
                samples = [(t, v) for t, v in s.samples if w0 <= t < w1]
                if samples:
                    batch.append((s.labels, samples))
            if batch:
                yield remote_write.body(batch)

    def line_protocol_bodies(self) -> Iterator[str]:
        """The lp series as InfluxDB line protocol (precision=ms), one body per window."""
        groups: Dict[Tuple[str, Tuple], Dict[str, Series]] = {}
        for s in self.series:
            if s.lp is not None:
                meas, tags, fld = s.lp
                groups.setdefault((meas, tuple(sorted(tags.items()))), {})[fld] = s
        for w0, w1 in self.windows():
            lines = []
            for (meas, tags), fields in groups.items():
                head = meas + "".join(f",{k}={v}" for k, v in tags)
                by_t: Dict[int, List[str]] = {}
                for fld, s in fields.items():
                    for t, v in s.samples:
                        if w0 <= t < w1:
                            assert math.isfinite(v)
                            by_t.setdefault(t, []).append(f"{fld}={v!r}")
                for t in sorted(by_t):
                    lines.append(f"{head} {','.join(by_t[t])} {t}")
            if lines:
                yield "\n".join(lines) + "\n"
