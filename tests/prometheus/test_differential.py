"""Differential PromQL tests: every corpus query, on the reference Prometheus and the target.

For each expression of corpus.QUERIES: an instant query at each of corpus.INSTANT_TIMES and a
range query over each of corpus.RANGES (unless the entry narrows its modes); corpus.RAW are
literal requests (parameter errors, time formats). Half the requests are GET with URL
parameters, half POST with a form body; both servers get the same request.

Compared (conftest.diff_responses): HTTP status, ``status``, ``errorType`` (not the message),
``resultType``, series by full label set (unordered for instant vectors unless the query is
``sort``/``sort_desc``; in order for matrices), timestamps exactly, values with relative
tolerance 1e-9 (NaN == NaN, same-signed infinities).

The corpus is also checked against the reference itself (an entry meant to succeed must succeed,
errors must have the stated type, ``empty`` must hold, no ties under sort), so that passing
Prometheus-vs-Prometheus means the corpus exercises what it claims.
"""

from __future__ import annotations

import re
from typing import Dict, List, Tuple

import httpx
import pytest

import corpus
from conftest import diff_responses, response_summary


def _short(expr: str, n: int = 70) -> str:
    s = re.sub(r"\s+", " ", expr)
    return s if len(s) <= n else s[: n - 3] + "..."


def _cases() -> List[Tuple[str, str, corpus.Q, str, object]]:
    """(id, method, entry, kind, mode) for every test; modes: instant time or range window."""
    out = []
    n = 0
    for i, q in enumerate(corpus.QUERIES):
        modes = []
        if "instant" in q.modes:
            modes += [("instant", t) for t in corpus.INSTANT_TIMES]
        if "range" in q.modes:
            modes += [("range", r) for r in corpus.RANGES]
        for kind, mode in modes:
            method = "GET" if n % 2 == 0 else "POST"
            n += 1
            out.append((f"q{i:03d}-{mode[0]}-{method}:{_short(q.expr)}", method, q, kind, mode))
    return out


CASES = _cases()


def _send(http: httpx.Client, base: str, method: str, path: str, params: Dict[str, str]) -> httpx.Response:
    if method == "GET":
        return http.get(base + path, params=params)
    return http.post(base + path, data=params)


def _is_sorted_query(expr: str) -> bool:
    return bool(re.match(r"\s*sort(_desc)?\s*\(", expr))


def _check_against_reference(q: corpus.Q, first_mode: bool, is_t0: bool, ref: httpx.Response) -> None:
    """Validates the corpus entry itself on the reference's answer."""
    body = ref.json()
    if q.err is None:
        assert body["status"] == "success", f"corpus: reference failed on a query meant to succeed: {response_summary(ref)}"
    elif first_mode:
        assert body.get("errorType") == q.err, f"corpus: reference should fail with {q.err}: {response_summary(ref)}"
    if q.err is None and is_t0 and body["data"]["resultType"] in ("vector", "matrix"):
        n = len(body["data"]["result"])
        assert (n == 0) == q.empty, f"corpus: reference returned {n} series at END, empty={q.empty}"
    if q.err is None and _is_sorted_query(q.expr) and body["data"]["resultType"] == "vector":
        vals = [s["value"][1] for s in body["data"]["result"]]
        assert len(vals) == len(set(vals)), f"corpus: ties under sort make the order unspecified: {vals}"


def _fail(what: str, method: str, path: str, params: Dict[str, str], diff: str,
          ref: httpx.Response, tgt: httpx.Response) -> None:
    pytest.fail(
        f"{what} differs from Prometheus\n"
        f"  request: {method} {path} {params}\n"
        f"  {diff}\n"
        f"  reference: {response_summary(ref, 300)}\n"
        f"  target:    {response_summary(tgt, 300)}",
        pytrace=False,
    )


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_query(case, pair, http, end_ms):
    _, method, q, kind, mode = case
    reference, target = pair
    end_s = end_ms / 1000
    if kind == "instant":
        path, params = "/api/v1/query", corpus.instant_params(q, mode[1], end_s)
    else:
        path, params = "/api/v1/query_range", corpus.range_params(q, mode, end_s)
    ref = _send(http, reference.url, method, path, params)
    first_mode = (mode == (corpus.INSTANT_TIMES[0] if "instant" in q.modes else corpus.RANGES[0]))
    _check_against_reference(q, first_mode, mode == corpus.INSTANT_TIMES[0], ref)
    tgt = _send(http, target.url, method, path, params)
    diff = diff_responses(ref, tgt, ordered=(kind == "instant" and _is_sorted_query(q.expr)))
    if diff:
        _fail(f"query {q.expr!r} ({kind} {mode[0]})", method, path, params, diff, ref, tgt)


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("raw", corpus.RAW, ids=[r.name for r in corpus.RAW])
def test_raw_request(raw: corpus.R, method, pair, http, end_ms):
    reference, target = pair
    params = {k: corpus.resolve(v, end_ms / 1000) for k, v in raw.params.items()}
    ref = _send(http, reference.url, method, raw.path, params)
    body = ref.json()
    if raw.err is None:
        assert body["status"] == "success", f"corpus: {response_summary(ref)}"
    else:
        assert body.get("errorType") == raw.err, f"corpus: {response_summary(ref)}"
    tgt = _send(http, target.url, method, raw.path, params)
    diff = diff_responses(ref, tgt)
    if diff:
        _fail(f"request {raw.name}", method, raw.path, params, diff, ref, tgt)


# Every function and operator the suite promises to cover: a substring check over the corpus.
REQUIRED = [
    '="', '!="', '=~', '!~', '{__name__=~', ' offset ', 'offset -', '@ <END', '@ start()', '@ end()',
    'rate(', 'irate(', 'increase(', 'delta(', 'idelta(', 'deriv(', 'predict_linear(', 'resets(',
    'changes(', 'avg_over_time(', 'min_over_time(', 'max_over_time(', 'sum_over_time(',
    'count_over_time(', 'quantile_over_time(', 'stddev_over_time(', 'stdvar_over_time(',
    'last_over_time(', 'present_over_time(', 'absent_over_time(',
    'sum(', 'avg(', 'min(', 'max(', 'count(', 'stddev ', 'stdvar(', 'topk(', 'bottomk(',
    'quantile(', 'count_values(', 'group(', ' by (', ' without (',
    ' + ', ' - ', ' * ', ' / ', ' % ', ' ^ ', 'atan2', ' == ', ' != ', ' > ', ' < ', ' >= ',
    ' <= ', ' bool ', ' on(', 'ignoring(', 'group_left', 'group_right', ' and ', ' or ',
    ' unless ', 'scalar(', 'vector(', 'time()', 'timestamp(', 'abs(', 'ceil(', 'floor(',
    'round(', ', 0.5)', 'sqrt(', 'exp(', 'ln(', 'log2(', 'log10(', 'clamp(', 'clamp_min(',
    'clamp_max(', 'sgn(', 'sort(', 'sort_desc(', 'label_replace(', 'label_join(',
    'histogram_quantile(', 'absent(', 'minute(', 'hour(', 'day_of_week(', 'day_of_month(',
    'day_of_year(', 'days_in_month(', 'month(', 'year(', '[10m:1m]', '[10m:]', '-temperature',
    'NaN', 'Inf', 'weird_values', 'ending_series', 'gappy_gauge', 'lp_',
]


def test_corpus_coverage():
    exprs = [q.expr for q in corpus.QUERIES]
    assert len(exprs) + len(corpus.RAW) >= 150, len(exprs)
    assert len(set(exprs)) == len(exprs), "duplicate corpus entries"
    blob = "\n".join(exprs)
    missing = [s for s in REQUIRED if s not in blob]
    assert not missing, f"corpus lacks: {missing}"
    assert any(q.err == "bad_data" for q in corpus.QUERIES)
    assert any(q.err == "execution" for q in corpus.QUERIES)
    raw = {r.name for r in corpus.RAW}
    for name in ("instant-bad-time", "range-start-after-end", "range-step-zero",
                 "range-too-many-points", "instant-missing-query"):
        assert name in raw


def _resp(body: dict, status: int = 200) -> httpx.Response:
    return httpx.Response(status, json=body)


def _vec(*series, kind="vector"):
    key = "value" if kind == "vector" else "values"
    return {"status": "success", "data": {"resultType": kind, "result": [
        {"metric": m, key: v} for m, v in series]}}


def test_comparator_self_check():
    """The comparator accepts what must be equal and reports what must differ."""
    a, b = {"__name__": "x", "i": "1"}, {"__name__": "x", "i": "2"}
    same = [
        (_vec((a, [1.5, "1"]), (b, [1.5, "2"])), _vec((b, [1.5, "2"]), (a, [1.5, "1"]))),
        (_vec((a, [1, "NaN"])), _vec((a, [1, "NaN"]))),
        (_vec((a, [1, "+Inf"])), _vec((a, [1, "+Inf"]))),
        (_vec((a, [1, "1000000000"])), _vec((a, [1.0, "1000000000.0000001"]))),
        (_vec((a, [1, "0"])), _vec((a, [1, "1e-13"]))),
        ({"status": "error", "errorType": "bad_data", "error": "x"},
         {"status": "error", "errorType": "bad_data", "error": "other text"}),
    ]
    for ref, tgt in same:
        st = 400 if ref["status"] == "error" else 200
        assert diff_responses(_resp(ref, st), _resp(tgt, st)) is None, (ref, tgt)
    different = [
        (_vec((a, [1, "1"])), _vec((a, [1, "1.0001"]))),
        (_vec((a, [1, "NaN"])), _vec((a, [1, "0"]))),
        (_vec((a, [1, "+Inf"])), _vec((a, [1, "-Inf"]))),
        (_vec((a, [1, "1"])), _vec((a, [1.001, "1"]))),
        (_vec((a, [1, "1"]), (b, [1, "1"])), _vec((a, [1, "1"]))),
        (_vec((a, [1, "1"])), _vec((a, [1, "1"]), (b, [1, "1"]))),
        (_vec((a, [1, "1"])), _vec((a, [1, "1"]), (a, [1, "1"]))),
        (_vec((a, [[1, "1"]]), (b, [[1, "1"]]), kind="matrix"),
         _vec((b, [[1, "1"]]), (a, [[1, "1"]]), kind="matrix")),
        (_vec((a, [[1, "1"], [2, "2"]]), kind="matrix"), _vec((a, [[1, "1"]]), kind="matrix")),
        (_vec((a, [1, "1"])), _vec((a, [[1, "1"]]), kind="matrix")),
        ({"status": "success", "data": {"resultType": "scalar", "result": [1, "2"]}},
         {"status": "success", "data": {"resultType": "scalar", "result": [1, "3"]}}),
    ]
    for ref, tgt in different:
        assert diff_responses(_resp(ref), _resp(tgt)), (ref, tgt)
    # Sort order matters only when asked.
    ref, tgt = _vec((a, [1, "1"]), (b, [1, "2"])), _vec((b, [1, "2"]), (a, [1, "1"]))
    assert diff_responses(_resp(ref), _resp(tgt), ordered=True)
    # Status code and errorType.
    err = {"status": "error", "errorType": "execution", "error": "x"}
    assert diff_responses(_resp(err, 422), _resp({**err, "errorType": "bad_data"}, 422))
    assert diff_responses(_resp(err, 422), _resp(err, 400))
    assert diff_responses(_resp(_vec()), _resp(err, 422))
