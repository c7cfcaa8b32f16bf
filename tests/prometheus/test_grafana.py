"""The requests Grafana's Prometheus data source sends, answered as Prometheus answers them.

Covers the metadata endpoints a dashboard and the query editor use: build info, label names,
label values (incl. ``__name__`` for metric autocompletion), series, metric metadata, and the
form-encoded POST queries Grafana sends (``step`` as a number of seconds, ``timeout=30s``).

Compared: ``status``/``errorType`` and HTTP status; ``data`` exactly for label names/values
(both sides sort them), as a set of label sets for series; build info only by its keys.

Time ranges are chosen where every matching series has samples: inside its head block,
Prometheus 2.42 answers label names/values from the index without looking at sample times
(e.g. label/marker/values over [END-10m, END] lists "yes" and "no" although ending_series has
no samples there, while /api/v1/series over the same range correctly returns nothing), so a
range where a series has no samples would compare an implementation artifact.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple, Union

import httpx
import pytest

from conftest import diff_responses, response_summary

Params = Union[Dict[str, str], List[Tuple[str, str]]]

# (id, method, path, params with <END+-s> times resolved by _resolve)
REQUESTS: List[Tuple[str, str, str, list]] = [
    ("labels", "GET", "/api/v1/labels", []),
    ("labels-range", "GET", "/api/v1/labels", [("start", "-1800"), ("end", "0")]),
    ("labels-match", "GET", "/api/v1/labels", [("match[]", "up"), ("start", "-3300"), ("end", "0")]),
    ("labels-match-2", "GET", "/api/v1/labels",
     [("match[]", "instance_info"), ("match[]", '{__name__=~"lp_.*"}')]),
    ("labels-post", "POST", "/api/v1/labels", [("match[]", "http_requests_total"), ("start", "-1800"), ("end", "0")]),
    ("labels-future", "GET", "/api/v1/labels", [("start", "+3600"), ("end", "+7200")]),
    ("names", "GET", "/api/v1/label/__name__/values", []),
    ("names-range", "GET", "/api/v1/label/__name__/values", [("start", "-1800"), ("end", "0")]),
    ("names-match", "GET", "/api/v1/label/__name__/values", [("match[]", '{job="api"}')]),
    ("job-values", "GET", "/api/v1/label/job/values", [("match[]", "up"), ("start", "-1800"), ("end", "0")]),
    ("job-values-all", "GET", "/api/v1/label/job/values", []),
    ("le-values", "GET", "/api/v1/label/le/values",
     [("match[]", 'request_duration_seconds_bucket{job="api"}'), ("start", "-600"), ("end", "0")]),
    ("entity-values", "GET", "/api/v1/label/entity/values", []),
    ("missing-label-values", "GET", "/api/v1/label/no_such_label/values", []),
    ("series", "GET", "/api/v1/series", [("match[]", "up"), ("start", "-1800"), ("end", "0")]),
    ("series-several", "GET", "/api/v1/series",
     [("match[]", "up"), ("match[]", 'http_requests_total{code="500"}'), ("match[]", '{__name__=~"lp_cpu|lp_net_.*"}'),
      ("start", "-1800"), ("end", "0")]),
    ("series-regex", "GET", "/api/v1/series", [("match[]", '{__name__=~"request_duration_seconds_.*", job="web"}'),
                                              ("start", "-3300"), ("end", "0")]),
    ("series-post", "POST", "/api/v1/series", [("match[]", "temperature_celsius"), ("match[]", "queue_depth"),
                                              ("start", "-1800"), ("end", "0")]),
    ("series-nomatch", "GET", "/api/v1/series", [("match[]", "nonexistent_metric"), ("start", "-1800"), ("end", "0")]),
    ("series-no-match-param", "GET", "/api/v1/series", [("start", "-1800"), ("end", "0")]),
    ("series-bad-matcher", "GET", "/api/v1/series", [("match[]", "up{"), ("start", "-1800"), ("end", "0")]),
    ("metadata", "GET", "/api/v1/metadata", []),
    ("metadata-metric", "GET", "/api/v1/metadata", [("metric", "up")]),
    ("query-range-post", "POST", "/api/v1/query_range",
     [("query", 'sum by (job) (rate(http_requests_total[$__rate_interval]))'.replace("$__rate_interval", "1m")),
      ("start", "-1800"), ("end", "0"), ("step", "15"), ("timeout", "30s")]),
    ("query-range-post-60", "POST", "/api/v1/query_range",
     [("query", "histogram_quantile(0.8, sum by (le) (rate(request_duration_seconds_bucket[2m])))"),
      ("start", "-3000"), ("end", "0"), ("step", "60"), ("timeout", "30s")]),
    ("query-post", "POST", "/api/v1/query", [("query", "up"), ("time", "0")]),
    ("query-health", "POST", "/api/v1/query", [("query", "1+1"), ("time", "0")]),
    ("query-topk", "POST", "/api/v1/query",
     [("query", "topk(5, rate(node_cpu_seconds_total[5m]))"), ("time", "-300")]),
]

TIME_KEYS = ("start", "end", "time")


def _resolve(params: list, end_s: float) -> List[Tuple[str, str]]:
    out = []
    for k, v in params:
        if k in TIME_KEYS:
            v = f"{end_s + float(v):.3f}"
        out.append((k, v))
    return out


def _send(http: httpx.Client, base: str, method: str, path: str, params) -> httpx.Response:
    if method == "GET":
        return http.get(base + path, params=params)
    form: Dict[str, List[str]] = {}
    for k, v in params:  # repeated keys (match[]) become a list: form-encoded as k=a&k=b
        form.setdefault(k, []).append(v)
    return http.post(base + path, data=form)


def _data_diff(path: str, ref: httpx.Response, tgt: httpx.Response) -> Optional[str]:
    rj, tj = ref.json(), tgt.json()
    if ref.status_code != tgt.status_code or rj.get("status") != tj.get("status") \
            or rj.get("errorType") != tj.get("errorType"):
        return (f"status: target {tgt.status_code} {tj.get('status')} {tj.get('errorType')!r}, "
                f"reference {ref.status_code} {rj.get('status')} {rj.get('errorType')!r}")
    if rj["status"] != "success":
        return None
    rd, td = rj.get("data"), tj.get("data")
    if path == "/api/v1/series":
        rs = {tuple(sorted(m.items())) for m in rd}
        ts = {tuple(sorted(m.items())) for m in td}
        if len(td) != len(ts):
            return "target lists a series twice"
        if rs != ts:
            return (f"series differ: missing in target {sorted(rs - ts)[:3]}, "
                    f"extra in target {sorted(ts - rs)[:3]}")
        return None
    if rd != td:
        if isinstance(rd, list) and isinstance(td, list):
            return (f"data differs: missing in target {[x for x in rd if x not in td][:5]}, "
                    f"extra in target {[x for x in td if x not in rd][:5]}, target order {td[:10]}")
        return f"data differs: target {str(td)[:300]}, reference {str(rd)[:300]}"
    return None


@pytest.mark.parametrize("req", REQUESTS, ids=[r[0] for r in REQUESTS])
def test_grafana_request(req, pair, http, end_ms):
    name, method, path, params = req
    reference, target = pair
    params = _resolve(params, end_ms / 1000)
    ref = _send(http, reference.url, method, path, params)
    tgt = _send(http, target.url, method, path, params)
    if path.startswith("/api/v1/query"):
        diff = diff_responses(ref, tgt)
    else:
        diff = _data_diff(path, ref, tgt)
    if diff:
        pytest.fail(f"Grafana request {name} differs from Prometheus\n  request: {method} {path} {params}\n"
                    f"  {diff}\n  reference: {response_summary(ref, 400)}\n  target:    {response_summary(tgt, 400)}",
                    pytrace=False)


def test_grafana_requests_are_meaningful(reference, http, end_ms):
    """Corpus self-check: the label/series requests return data on the reference."""
    for name, method, path, params in REQUESTS:
        if path.startswith("/api/v1/query") or "no" in name or "bad" in name or "future" in name \
                or "missing" in name or path == "/api/v1/metadata":
            continue
        r = _send(http, reference.url, method, path, _resolve(params, end_ms / 1000))
        assert r.status_code == 200 and r.json()["data"], f"{name}: {response_summary(r)}"


def test_buildinfo(pair, http):
    keys = {"version", "revision", "branch", "buildUser", "buildDate", "goVersion"}
    for server in pair:
        r = http.get(server.url + "/api/v1/status/buildinfo")
        assert r.status_code == 200, f"{server.name}: {response_summary(r)}"
        body = r.json()
        assert body.get("status") == "success", f"{server.name}: {body}"
        assert keys <= set(body.get("data", {})), f"{server.name}: buildinfo lacks {keys - set(body['data'])}"
