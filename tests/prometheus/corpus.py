"""The PromQL corpus of the differential suite.

Each ``Q`` is one expression; test_differential.py runs it as an instant query at every time of
``INSTANT_TIMES`` and as a range query over every window of ``RANGES`` (``modes`` narrows that),
on the reference Prometheus and on the target, and compares the answers. ``R`` entries are raw
requests (parameter errors, time formats) compared once.

Placeholders: ``<END>``, ``<END-600>``, ``<END+30>`` are replaced by END (+- seconds) as a Unix
timestamp in seconds; ``<ISO:END-600>`` by the same instant in RFC 3339.

``err``: the errorType the reference must give at the case's first mode (the corpus is
self-checked: an entry meant to succeed must succeed on the reference everywhere, an entry meant
to fail must fail as stated). ``empty``: the result is expected to be empty at END (else the
reference must return something there, so the case compares data and not just two empty lists).

Values under ``sort``/``sort_desc`` must not tie (order among ties is unspecified); the
test checks that on the reference. Prometheus 2.42 functions only (no mad_over_time,
sort_by_label, ...).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Dict, List, Optional, Tuple

# Instant evaluation times, seconds relative to END (END-40m is fractional on purpose: ms;
# END-27m is inside the 5 minutes where one `up` is 0; END+10m is after the data).
INSTANT_TIMES: List[Tuple[str, float]] = [
    ("t0", 0), ("t-7m30s", -450), ("t-27m", -1620), ("t-40m", -2399.75), ("t+10m", 600),
]
# Range windows: (id, start rel. END, end rel. END, step as Grafana sends it: seconds).
RANGES: List[Tuple[str, float, float, str]] = [
    ("r15s", -3000, -300, "15"), ("r60s", -1800, 600, "60"), ("r37s", -2700, 0, "37"),
]

INSTANT_ONLY = ("instant",)
RANGE_ONLY = ("range",)


@dataclass(frozen=True)
class Q:
    expr: str
    err: Optional[str] = None          # expected errorType on the reference
    empty: bool = False                # result expected empty at END
    modes: Tuple[str, ...] = ("instant", "range")


@dataclass(frozen=True)
class R:
    name: str
    path: str                          # /api/v1/query or /api/v1/query_range
    params: Dict[str, str] = field(default_factory=dict)
    err: Optional[str] = None


_PH = re.compile(r"<(ISO:)?END([+-]\d+(?:\.\d+)?)?>")


def resolve(s: str, end_s: float) -> str:
    def sub(m):
        t = end_s + (float(m.group(2)) if m.group(2) else 0.0)
        if m.group(1):
            return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return f"{t:.3f}".rstrip("0").rstrip(".")
    return _PH.sub(sub, s)


HTTP = "http_requests_total"
RATE = "rate(http_requests_total[5m])"

QUERIES: List[Q] = [
    # ---- selectors and matchers -------------------------------------------------------------
    Q('http_requests_total'),
    Q('http_requests_total{job="api"}'),
    Q('http_requests_total{job!="api", code="500"}'),
    Q('http_requests_total{path=~"/log.*"}'),
    Q('http_requests_total{path!~"/|/api"}'),
    Q('http_requests_total{code=~"5.."}'),
    Q('{__name__=~"http_requests_total|up"}'),
    Q('{__name__=~"node_.*", instance="host-a:9100"}'),
    Q('{__name__!~".*_total|.*_bucket|lp_.*", job="api"}'),
    Q('{job="api"}'),
    Q('up{job=~"a.*|w.*"}'),
    Q('up{job=~"API"}', empty=True),
    Q('nonexistent_metric', empty=True),
    Q('up{job="nope"}', empty=True),
    Q('http_requests_total{job=""}', empty=True),
    Q('singleton_metric{foo=""}'),
    Q('singleton_metric'),
    Q('ending_series', empty=True),
    Q('gappy_gauge'),
    Q('weird_values'),
    Q('queue_depth'),
    Q('sampled_gauge'),
    Q('http_requests_total{job="api",path="/",code="200",instance="host-a:9100"}[2m]', modes=INSTANT_ONLY),
    Q('ending_series[10m]', empty=True, modes=INSTANT_ONLY),
    Q('weird_values[1m]', modes=INSTANT_ONLY),
    Q('queue_depth[1m]', modes=INSTANT_ONLY),
    Q('sampled_gauge[1m]', modes=INSTANT_ONLY),
    Q('up[5m]', err="bad_data", modes=RANGE_ONLY),
    # ---- offset and @ --------------------------------------------------------------------------
    Q('up offset 5m'),
    Q('http_requests_total{code="500"} offset 10m'),
    Q('up offset -5m'),
    Q('singleton_metric offset -2m'),
    Q('rate(http_requests_total[5m] offset 5m)'),
    Q('up @ <END-1200>'),
    Q('singleton_metric @ start()'),
    Q('singleton_metric @ end()'),
    Q('rate(http_requests_total{job="api"}[5m] @ end())'),
    Q('sum(rate(node_cpu_seconds_total[5m] @ <END-600>))'),
    Q('singleton_metric @ <END-1800> offset 5m'),
    Q('temperature_celsius[3m] @ <END-900>', modes=INSTANT_ONLY),
    Q('max_over_time(temperature_celsius[10m] @ start())'),
    # ---- counters and gauges over time -------------------------------------------------------
    Q(RATE),
    Q('rate(http_requests_total[1m])'),
    Q('irate(http_requests_total[5m])'),
    Q('increase(http_requests_total[10m])'),
    Q('rate(node_cpu_seconds_total{mode="idle"}[2m])'),
    Q('increase(queue_depth[3m])'),
    Q('rate(queue_depth[1m])'),
    Q('rate(sampled_gauge[1m])'),
    Q('irate(sampled_gauge[45s])'),
    Q('rate(ending_series[5m])', empty=True),
    Q('rate(gappy_gauge[5m])'),
    Q('delta(temperature_celsius[10m])'),
    Q('idelta(temperature_celsius[5m])'),
    Q('delta(weird_values[5m])'),
    Q('deriv(node_memory_free_bytes[10m])'),
    Q('deriv(weird_values{kind="normal"}[5m])'),
    Q('predict_linear(node_memory_free_bytes[15m], 3600)'),
    Q('predict_linear(temperature_celsius[5m], -600)'),
    Q('resets(http_requests_total[30m])'),
    Q('changes(up[30m])'),
    Q('changes(queue_depth[5m])'),
    Q('increase(request_duration_seconds_count[5m])'),
    Q('rate(disk_read_bytes_total[5m])'),
    Q('rate({__name__=~"disk_.*_bytes_total"}[5m])', err="execution"),
    Q('holt_winters(node_memory_free_bytes[10m], 0.3, 0.6)'),
    # ---- *_over_time ---------------------------------------------------------------------------
    Q('avg_over_time(temperature_celsius[10m])'),
    Q('min_over_time(temperature_celsius[10m])'),
    Q('max_over_time(queue_depth[5m])'),
    Q('sum_over_time(sampled_gauge[2m])'),
    Q('count_over_time(sampled_gauge[2m])'),
    Q('count_over_time(ending_series[10m])', empty=True),
    Q('count_over_time(gappy_gauge[6m])'),
    Q('quantile_over_time(0.9, temperature_celsius[10m])'),
    Q('quantile_over_time(0.5, queue_depth[15m])'),
    Q('quantile_over_time(1.5, singleton_metric[5m])'),
    Q('stddev_over_time(temperature_celsius[10m])'),
    Q('stdvar_over_time(node_memory_free_bytes[10m])'),
    Q('last_over_time(gappy_gauge[10m])'),
    Q('last_over_time(ending_series[25m])'),
    Q('present_over_time(ending_series[25m])'),
    Q('avg_over_time(weird_values[5m])'),
    Q('max_over_time(weird_values[5m])'),
    Q('min_over_time(weird_values[5m])'),
    Q('sum_over_time(weird_values[2m])'),
    Q('stddev_over_time(weird_values[3m])'),
    Q('absent_over_time(nonexistent_metric[5m])'),
    Q('absent_over_time(nonexistent_metric{job="x", code=~"5.."}[5m])'),
    Q('absent_over_time(ending_series{marker="yes"}[5m])'),
    Q('absent_over_time(up[5m])', empty=True),
    # ---- aggregations ----------------------------------------------------------------------
    Q('sum(http_requests_total)'),
    Q('sum by (job) (rate(http_requests_total[5m]))'),
    Q('sum without (instance, path) (rate(http_requests_total[5m]))'),
    Q('sum(rate(http_requests_total[5m])) by (job, code)'),
    Q('avg by (mode) (rate(node_cpu_seconds_total[5m]))'),
    Q('min by (region) (temperature_celsius)'),
    Q('max without (sensor) (temperature_celsius)'),
    Q('count by (job) (http_requests_total)'),
    Q('count(up == 1)'),
    Q('stddev by (instance) (rate(node_cpu_seconds_total[5m]))'),
    Q('stdvar(temperature_celsius)'),
    Q('topk(3, rate(node_cpu_seconds_total[5m]))'),
    Q('topk by (region) (1, temperature_celsius)'),
    Q('bottomk(2, temperature_celsius)'),
    Q('bottomk by (instance) (1, rate(node_cpu_seconds_total[5m]))'),
    Q('topk(0, up)', empty=True),
    Q('quantile(0.9, temperature_celsius)'),
    Q('quantile by (job) (0.5, rate(http_requests_total[5m]))'),
    Q('quantile(2, temperature_celsius)'),
    Q('count_values("value", up)'),
    Q('count_values by (job) ("v", http_requests_total{code="500"} > 100)'),
    Q('group by (job, instance) (http_requests_total)'),
    Q('group(up)'),
    Q('sum(weird_values)'),
    Q('max(weird_values)'),
    Q('min(weird_values)'),
    Q('avg(weird_values{kind!="nan"})'),
    Q('sum by (le) (rate(request_duration_seconds_bucket[5m]))'),
    Q('sum(nonexistent_metric)', empty=True),
    Q('count(nonexistent_metric)', empty=True),
    Q('sum by (__name__) ({__name__=~"disk_.*"})'),
    Q('avg without (job, instance, path, code, env) (rate(http_requests_total[5m]))'),
    # ---- arithmetic, comparison ----------------------------------------------------------------
    Q('http_requests_total + 1'),
    Q('2 * rate(http_requests_total[5m])'),
    Q('temperature_celsius - 10'),
    Q('temperature_celsius / 0'),
    Q('node_memory_free_bytes / 1024 / 1024'),
    Q('1 + 2 * 3'),
    Q('2 ^ 3 ^ 2'),
    Q('(1 + 2) * 3'),
    Q('10 % 3'),
    Q('-7 % 3'),
    Q('5.5 % 2'),
    Q('temperature_celsius % 2'),
    Q('temperature_celsius ^ 2'),
    Q('2 ^ temperature_celsius'),
    Q('temperature_celsius atan2 10'),
    Q('temperature_celsius{sensor="s1"} atan2 ignoring(sensor) temperature_celsius{sensor="s2"}'),
    Q('-temperature_celsius'),
    Q('-rate(http_requests_total[5m])'),
    Q('- - singleton_metric'),
    Q('+singleton_metric'),
    Q('temperature_celsius > 0'),
    Q('temperature_celsius > bool 0'),
    Q('up == 0', empty=True),
    Q('up == bool 0'),
    Q('up != 1', empty=True),
    Q('temperature_celsius < -1'),
    Q('temperature_celsius >= -2 <= 2'),
    Q('0 < temperature_celsius'),
    Q('1 > bool 2'),
    Q('2 >= bool 2'),
    Q('1 < 2', err="bad_data"),
    Q('1 / 0'),
    Q('-1 / 0'),
    Q('0 / 0'),
    Q('Inf - Inf'),
    Q('NaN == bool NaN'),
    Q('weird_values * 0'),
    Q('weird_values > 0'),
    Q('weird_values != weird_values', empty=True),
    Q('weird_values == bool Inf'),
    Q('sum(up) / count(up)'),
    Q('1'), Q('-1.5'), Q('0x1F'), Q('1e3'), Q('Inf'), Q('-Inf'), Q('NaN'),
    Q('"a string"', modes=INSTANT_ONLY),
    # ---- vector matching ----------------------------------------------------------------------
    Q('rate(http_requests_total{code="500"}[5m]) / ignoring(code) rate(http_requests_total{code="200"}[5m])'),
    Q('http_requests_total{code="500"} / on(job, instance, path, env) http_requests_total{code="200"}'),
    Q('http_requests_total * on(job, instance) group_left(version, region) instance_info'),
    Q('instance_info * on(job, instance) group_right(version) http_requests_total'),
    Q('sum by (job, instance) (rate(http_requests_total[5m])) * on(job, instance) group_left(version) instance_info'),
    Q('sum by (job, path) (rate(http_requests_total[5m])) / on(job) group_left sum by (job) (rate(http_requests_total[5m]))'),
    Q('http_requests_total * on(instance) instance_info', err="execution"),
    Q('http_requests_total * on(instance) group_left instance_info', err="execution"),
    Q('up * on(job, instance) instance_info'),
    Q('up + ignoring(version, region) instance_info'),
    Q('up{job="api"} + on() group_left singleton_metric'),
    Q('disk_read_bytes_total + disk_written_bytes_total'),
    Q('disk_read_bytes_total > disk_written_bytes_total'),
    Q('disk_read_bytes_total > bool disk_written_bytes_total'),
    Q('up == on(job, instance) group_left(version) instance_info'),
    Q('label_replace(up, "instance", "x", "", "")', err="execution"),
    # ---- set operators ------------------------------------------------------------------------
    Q('up and on(job) instance_info{version="2.0"}'),
    Q('http_requests_total and http_requests_total{code="500"}'),
    Q('up or instance_info'),
    Q('up unless up{job="web"}'),
    Q('temperature_celsius > 0 or temperature_celsius < -1'),
    Q('up unless on(instance) instance_info{version="1.1"}'),
    Q('vector(1) or nonexistent_metric'),
    Q('nonexistent_metric or vector(0)'),
    Q('rate(http_requests_total[5m]) > 0.5 and ignoring(code) rate(http_requests_total[5m]) < 2'),
    # ---- scalar, vector, time ------------------------------------------------------------------
    Q('scalar(singleton_metric)'),
    Q('scalar(up)'),
    Q('scalar(nonexistent_metric)'),
    Q('vector(1)'),
    Q('vector(time())'),
    Q('vector(scalar(singleton_metric))'),
    Q('time()'),
    Q('time() - <END>'),
    Q('timestamp(up)'),
    Q('timestamp(queue_depth)'),
    Q('time() - timestamp(ending_series)', empty=True),
    Q('timestamp(sampled_gauge)'),
    Q('singleton_metric * scalar(up{job="api", instance="host-a:9100"})'),
    # ---- math ---------------------------------------------------------------------------------
    Q('abs(temperature_celsius)'),
    Q('ceil(temperature_celsius)'),
    Q('floor(temperature_celsius)'),
    Q('round(temperature_celsius)'),
    Q('round(temperature_celsius, 0.5)'),
    Q('round(node_memory_free_bytes, 1e6)'),
    Q('round(vector(-2.5))'),
    Q('round(vector(2.5))'),
    Q('sqrt(node_memory_free_bytes)'),
    Q('sqrt(temperature_celsius)'),
    Q('exp(temperature_celsius)'),
    Q('ln(node_memory_free_bytes)'),
    Q('ln(temperature_celsius)'),
    Q('log2(node_memory_free_bytes)'),
    Q('log10(abs(temperature_celsius))'),
    Q('clamp(temperature_celsius, -1, 1)'),
    Q('clamp(temperature_celsius, 1, -1)', empty=True),
    Q('clamp_min(temperature_celsius, 0)'),
    Q('clamp_max(temperature_celsius, 0)'),
    Q('sgn(temperature_celsius)'),
    Q('abs(weird_values)'),
    Q('exp(vector(1000))'),
    # ---- sort ---------------------------------------------------------------------------------
    Q('sort(node_memory_free_bytes)'),
    Q('sort_desc(temperature_celsius)'),
    Q('sort(rate(node_cpu_seconds_total[5m]))'),
    Q('sort_desc(sum by (job, instance) (rate(node_cpu_seconds_total[5m]) or rate(http_requests_total[5m])))'),
    # ---- labels ---------------------------------------------------------------------------------
    Q('label_replace(up, "host", "$1", "instance", "(.*):.*")'),
    Q('label_replace(service_latency_seconds, "svc_prefix", "$1", "service", "([a-z]+)-.*")'),
    Q('label_replace(up, "job", "new-$1", "job", "a(.*)")'),
    Q('label_replace(up, "foo", "$1", "nonexistent", "(.*)")'),
    Q('label_replace(up, "instance", "", "instance", ".*")', err="execution"),
    Q('label_replace(up, "1bad", "x", "job", ".*")', err="execution"),
    Q('label_replace(up, "a", "b", "job", "(")', err="execution"),
    Q('label_join(up, "combo", "-", "job", "instance")'),
    Q('label_join(service_latency_seconds, "id", "/", "service", "instance", "nonexistent")'),
    Q('label_join(up, "job", "/", "job", "instance")'),
    Q('label_join(up, "job", "", "instance")', err="execution"),
    # ---- histograms ------------------------------------------------------------------------
    Q('histogram_quantile(0.9, rate(request_duration_seconds_bucket[5m]))'),
    Q('histogram_quantile(0.5, sum by (le) (rate(request_duration_seconds_bucket[5m])))'),
    Q('histogram_quantile(0.99, sum by (job, le) (rate(request_duration_seconds_bucket[10m])))'),
    Q('histogram_quantile(0, sum by (le) (rate(request_duration_seconds_bucket[5m])))'),
    Q('histogram_quantile(1, sum by (le) (rate(request_duration_seconds_bucket[5m])))'),
    Q('histogram_quantile(1.5, sum by (le) (rate(request_duration_seconds_bucket[5m])))'),
    Q('histogram_quantile(-1, sum by (le) (rate(request_duration_seconds_bucket[5m])))'),
    Q('histogram_quantile(0.75, request_duration_seconds_bucket)'),
    Q('histogram_quantile(0.5, rate(request_duration_seconds_bucket{le!="+Inf"}[5m]))'),
    Q('rate(request_duration_seconds_sum[5m]) / rate(request_duration_seconds_count[5m])'),
    # ---- absent -----------------------------------------------------------------------------
    Q('absent(nonexistent_metric)'),
    Q('absent(nonexistent_metric{job="x", code=~"5.."})'),
    Q('absent(up)', empty=True),
    Q('absent(sum(nonexistent_metric))'),
    # ---- date functions ----------------------------------------------------------------------
    Q('minute()'), Q('hour()'), Q('day_of_week()'), Q('day_of_month()'), Q('day_of_year()'),
    Q('days_in_month()'), Q('month()'), Q('year()'),
    Q('minute(timestamp(queue_depth))'),
    Q('hour(vector(<END>))'),
    Q('month(vector(0))'),
    Q('year(vector(951782400))'),
    Q('days_in_month(vector(951782400))'),
    Q('day_of_week(vector(0))'),
    Q('day_of_month(timestamp(singleton_metric))'),
    Q('day_of_year(vector(951782400))'),
    # ---- subqueries ---------------------------------------------------------------------------
    Q('max_over_time(rate(http_requests_total[1m])[10m:1m])'),
    Q('avg_over_time(temperature_celsius[10m:])'),
    Q('min_over_time(sum(rate(node_cpu_seconds_total[1m]))[15m:30s])'),
    Q('rate(http_requests_total{job="api", code="500"}[5m])[10m:2m]', modes=INSTANT_ONLY),
    Q('max_over_time(deriv(node_memory_free_bytes[5m])[20m:37s] offset 3m)'),
    Q('sum_over_time(up[10m:1m] @ <END-600>)'),
    Q('quantile_over_time(0.5, irate(http_requests_total{job="api"}[1m])[5m:20s])'),
    Q('max_over_time(avg_over_time(temperature_celsius[2m])[6m:1m])'),
    Q('count_over_time(ending_series[10m:1m])', empty=True),
    Q('last_over_time(gappy_gauge[8m:])'),
    # ---- line-protocol series (Sluice: written as line protocol) ------------------------------
    Q('lp_weather_temp'),
    Q('lp_weather_hum{region="eu"}'),
    Q('lp_cpu'),
    Q('avg by (host) (lp_cpu)'),
    Q('lp_disk_used{entity="e1"}'),
    Q('lp_net_rx - lp_net_tx'),
    Q('{__name__=~"lp_.*", entity="h1"}'),
    Q('lp_weather_temp * on(host) group_left lp_weather_hum'),
    Q('max_over_time(lp_weather_temp[10m])'),
    Q('count by (__name__) ({__name__=~"lp_.*"})'),
    # ---- invalid queries ---------------------------------------------------------------------
    Q('rate(http_requests_total)', err="bad_data"),
    Q('sum(', err="bad_data"),
    Q('up{', err="bad_data"),
    Q('up[5m', err="bad_data"),
    Q('foo bar', err="bad_data"),
    Q('rate(up[5m]) +', err="bad_data"),
    Q('histogram_quantile(0.9)', err="bad_data"),
    Q('unknown_func(up)', err="bad_data"),
    Q('up[5x]', err="bad_data"),
    Q('{job=""}', err="bad_data"),
    Q('sum by (job) up', err="bad_data"),
    Q('topk("a", up)', err="bad_data"),
    Q('"str" + 1', err="bad_data"),
    Q('vector(1) offset 5m', err="bad_data"),
    Q('up offset', err="bad_data"),
    Q('mad_over_time(up[5m])', err="bad_data"),
]

RAW: List[R] = [
    R("instant-bad-time", "/api/v1/query", {"query": "up", "time": "abc"}, err="bad_data"),
    R("instant-missing-query", "/api/v1/query", {"time": "<END>"}, err="bad_data"),
    R("instant-empty-query", "/api/v1/query", {"query": "", "time": "<END>"}, err="bad_data"),
    R("instant-rfc3339-time", "/api/v1/query", {"query": "up", "time": "<ISO:END-600>"}),
    R("instant-fractional-time", "/api/v1/query", {"query": "time()", "time": "<END-0.123>"}),
    R("instant-timeout", "/api/v1/query", {"query": "up", "time": "<END>", "timeout": "30s"}),
    R("instant-bad-timeout", "/api/v1/query", {"query": "up", "time": "<END>", "timeout": "abc"}, err="bad_data"),
    R("range-start-after-end", "/api/v1/query_range",
      {"query": "up", "start": "<END>", "end": "<END-600>", "step": "15"}, err="bad_data"),
    R("range-step-zero", "/api/v1/query_range",
      {"query": "up", "start": "<END-600>", "end": "<END>", "step": "0"}, err="bad_data"),
    R("range-step-negative", "/api/v1/query_range",
      {"query": "up", "start": "<END-600>", "end": "<END>", "step": "-15"}, err="bad_data"),
    R("range-step-bad", "/api/v1/query_range",
      {"query": "up", "start": "<END-600>", "end": "<END>", "step": "abc"}, err="bad_data"),
    R("range-step-missing", "/api/v1/query_range",
      {"query": "up", "start": "<END-600>", "end": "<END>"}, err="bad_data"),
    R("range-start-missing", "/api/v1/query_range",
      {"query": "up", "end": "<END>", "step": "15"}, err="bad_data"),
    R("range-too-many-points", "/api/v1/query_range",
      {"query": "up", "start": "<END-11001>", "end": "<END>", "step": "1"}, err="bad_data"),
    R("range-11000-points-ok", "/api/v1/query_range",
      {"query": "singleton_metric", "start": "<END-10999>", "end": "<END>", "step": "1"}),
    R("range-step-duration", "/api/v1/query_range",
      {"query": "up", "start": "<END-600>", "end": "<END>", "step": "1m"}),
    R("range-step-fractional", "/api/v1/query_range",
      {"query": "singleton_metric", "start": "<END-30>", "end": "<END>", "step": "0.5"}),
    R("range-rfc3339", "/api/v1/query_range",
      {"query": "rate(http_requests_total[5m])", "start": "<ISO:END-1200>", "end": "<ISO:END>", "step": "30s"}),
    R("range-missing-query", "/api/v1/query_range",
      {"start": "<END-600>", "end": "<END>", "step": "15"}, err="bad_data"),
    R("range-matrix-expr", "/api/v1/query_range",
      {"query": "up[5m]", "start": "<END-600>", "end": "<END>", "step": "15"}, err="bad_data"),
    R("range-string-expr", "/api/v1/query_range",
      {"query": '"s"', "start": "<END-600>", "end": "<END>", "step": "15"}, err="bad_data"),
    R("range-start-equals-end", "/api/v1/query_range",
      {"query": "up", "start": "<END>", "end": "<END>", "step": "15"}),
    R("range-unaligned", "/api/v1/query_range",
      {"query": "temperature_celsius", "start": "<END-1000.5>", "end": "<END-3.25>", "step": "13.7"}),
]


def instant_params(q: Q, rel: float, end_s: float) -> Dict[str, str]:
    return {"query": resolve(q.expr, end_s), "time": resolve(f"<END{rel:+g}>", end_s)}


def range_params(q: Q, rng: Tuple[str, float, float, str], end_s: float) -> Dict[str, str]:
    _, a, b, step = rng
    return {"query": resolve(q.expr, end_s), "start": resolve(f"<END{a:+g}>", end_s),
            "end": resolve(f"<END{b:+g}>", end_s), "step": step}
