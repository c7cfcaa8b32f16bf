"""End to end: a real Prometheus scrapes the target and remote-writes into it.

A separate Prometheus (scrape_interval 1s) scrapes the target's own ``/metrics`` as job
``sluice`` and sends everything by remote write 1.0 to the target's ``/api/v1/write``
(batch_send_deadline 1s). The target is a dedicated instance (Sluice, or a Prometheus with the
remote-write receiver in PROM_DIFF_TARGET=prometheus mode), not the session one, so the
differential data stays untouched. Checks, with bounded polls: ``up{job="sluice"}`` reaches 1
on the target, ``count({job="sluice"})`` > 10, and a scraped counter increases over time.
This exercises what the unit-level remote-write tests cannot: Prometheus's real encoder,
batching, retries and headers.
"""

from __future__ import annotations

import time
from typing import Dict, Tuple

import httpx
import pytest

from conftest import HTTP_TIMEOUT, Prometheus, Proc, response_summary, start_guarded, start_target

POLL_S = 60.0


@pytest.fixture(scope="module")
def e2e(request) -> Tuple[Proc, Prometheus]:
    target = start_target(request, "e2e-target")
    config = f"""\
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: sluice
    metrics_path: /metrics
    static_configs:
      - targets: ["{target.http_addr}"]
remote_write:
  - url: http://{target.http_addr}/api/v1/write
    queue_config:
      batch_send_deadline: 1s
      min_backoff: 100ms
      max_backoff: 1s
"""
    scraper = start_guarded(request, Prometheus("e2e-scraper", config))
    return target, scraper


def _query(http: httpx.Client, target: Proc, q: str, at: float) -> list:
    r = http.get(target.url + "/api/v1/query", params={"query": q, "time": f"{at:.3f}"})
    assert r.status_code == 200, f"{q}: {response_summary(r)}"
    return r.json()["data"]["result"]


def _poll(fn, what: str, e2e_pair, timeout: float = POLL_S):
    """Calls fn() until it returns something truthy; fails with both logs after timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.5)
    target, scraper = e2e_pair
    pytest.fail(f"{what} not seen within {timeout}s (last: {last!r})\n"
                f"target log: {target.tail(1500)}\nscraper log: {scraper.tail(1500)}", pytrace=False)


def test_scraped_data_arrives_through_remote_write(e2e):
    target, _ = e2e
    with httpx.Client(timeout=HTTP_TIMEOUT) as http:
        def up_is_one():
            res = _query(http, target, 'up{job="sluice"}', time.time())
            return [s for s in res if s["value"][1] == "1"]
        up = _poll(up_is_one, 'up{job="sluice"} == 1 on the target', e2e)
        assert up[0]["metric"]["instance"] == target.http_addr, up

        def many_series():
            res = _query(http, target, 'count({job="sluice"})', time.time())
            return res and float(res[0]["value"][1]) > 10 and res
        _poll(many_series, 'count({job="sluice"}) > 10', e2e)

        # A scraped counter increases: the scraper and these queries keep the target busy, so
        # some *_total series (e.g. HTTP request counters) grows between two readings.
        def counters(at: float) -> Dict[Tuple, float]:
            res = _query(http, target, '{job="sluice", __name__=~".+_total"}', at)
            return {tuple(sorted(s["metric"].items())): float(s["value"][1]) for s in res}
        first = _poll(lambda: counters(time.time()), "a scraped *_total counter", e2e)

        def grown():
            now = counters(time.time())
            return [k for k, v in now.items() if k in first and v > first[k]]
        _poll(grown, "a scraped counter increasing", e2e, timeout=30)
