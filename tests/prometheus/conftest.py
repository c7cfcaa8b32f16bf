"""Fixtures and the comparator of the Prometheus differential suite.

The suite sends the same requests to a *reference* (a real Prometheus, ``prometheus`` from
PATH or ``$PROMETHEUS_BIN``) and to a *target* and compares the answers:

* target = Sluice (``$SLUICE_BIN serve``) by default; ``$SLUICE_BIN`` is then required.
* ``PROM_DIFF_TARGET=prometheus``: the target is a second Prometheus loaded through remote write
  only. The suite must pass in this mode: it shows that the corpus is deterministic and that the
  comparator and the loaders are right, so that any failure against Sluice is Sluice's.

Session fixtures start one reference and one target, load the whole dataset (dataset.py) once
and wait until both report every sample. Every process is stopped (SIGTERM, then SIGKILL) and
its temporary directory removed by fixture finalizers, also on failure.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Any, Dict, Iterator, List, Optional, Tuple

import httpx
import pytest

import remote_write
from dataset import Dataset, choose_end_ms

TARGET_KIND = os.environ.get("PROM_DIFF_TARGET", "sluice").strip().lower() or "sluice"
HTTP_TIMEOUT = 30.0


# ---------------------------------------------------------------------------------------------
# Binaries
# ---------------------------------------------------------------------------------------------

def prometheus_bin() -> str:
    p = os.environ.get("PROMETHEUS_BIN") or shutil.which("prometheus")
    if not p or not os.access(p, os.X_OK):
        raise pytest.UsageError(
            "prometheus not found: install it (apt-get install -y prometheus) or set PROMETHEUS_BIN")
    return p


def sluice_bin() -> str:
    p = os.environ.get("SLUICE_BIN")
    if not p:
        raise pytest.UsageError(
            "SLUICE_BIN is not set: set it to the sluice binary to test Sluice against Prometheus, "
            "or set PROM_DIFF_TARGET=prometheus to check the harness against a second Prometheus")
    if not os.access(p, os.X_OK):
        raise pytest.UsageError(f"SLUICE_BIN={p} is not an executable file")
    return p


def pytest_configure(config) -> None:
    if TARGET_KIND not in ("sluice", "prometheus"):
        raise pytest.UsageError(f"PROM_DIFF_TARGET must be 'sluice' or 'prometheus', not {TARGET_KIND!r}")
    prometheus_bin()
    if TARGET_KIND == "sluice":
        sluice_bin()


def pytest_report_header(config) -> str:
    return f"prometheus differential suite: target={TARGET_KIND}"


# ---------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    """A child process with a temporary directory, a log file and a careful stop()."""

    kind = "?"

    def __init__(self, name: str) -> None:
        self.name = name
        self.dir = tempfile.mkdtemp(prefix=f"promdiff-{name}-")
        self.log_path = os.path.join(self.dir, "process.log")
        self.proc: Optional[subprocess.Popen] = None
        self.log = None
        self.http_addr = ""

    @property
    def url(self) -> str:
        return "http://" + self.http_addr

    def _spawn(self, cmd: List[str], env: Optional[Dict[str, str]] = None) -> None:
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True, cwd=self.dir)

    def _wait_ready(self, path: str, deadline: float) -> bool:
        """Polls url+path until 200; False if the process exited."""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                if httpx.get(self.url + path, timeout=2).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} not ready in time: {self.tail()}")

    def tail(self, n: int = 3000) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""

    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None

    def stop(self) -> None:
        self._kill()
        if self.log is not None:
            self.log.close()
            self.log = None
        shutil.rmtree(self.dir, ignore_errors=True)


class Prometheus(Proc):
    kind = "prometheus"

    def __init__(self, name: str, config: str) -> None:
        super().__init__(name)
        self.config_path = os.path.join(self.dir, "prometheus.yml")
        with open(self.config_path, "w") as f:
            f.write(config)

    def start(self, timeout: float = 60.0) -> "Prometheus":
        deadline = time.monotonic() + timeout
        for attempt in range(2):  # the free port may be taken between probe and bind: retry once
            port = free_port()
            self.http_addr = f"127.0.0.1:{port}"
            self._spawn([
                prometheus_bin(), f"--config.file={self.config_path}",
                f"--storage.tsdb.path={os.path.join(self.dir, 'data')}",
                f"--web.listen-address={self.http_addr}",
                "--web.enable-remote-write-receiver", "--log.level=warn",
            ])
            if self._wait_ready("/-/ready", deadline):
                return self
            self._kill()
        raise RuntimeError(f"prometheus {self.name} exited at start: {self.tail()}")


class Sluice(Proc):
    kind = "sluice"

    def start(self, timeout: float = 60.0) -> "Sluice":
        data = os.path.join(self.dir, "data")
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
        env["SLUICE_LOG_LEVEL"] = "warn"
        self._spawn([sluice_bin(), "serve", "--data-dir", data, "--http-addr", "127.0.0.1:0",
                     "--wire-addr", "127.0.0.1:0"], env)
        info = os.path.join(data, "server.json")
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sluice serve exited with {self.proc.returncode}: {self.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"sluice serve did not write {info}: {self.tail()}")
            try:
                with open(info) as f:
                    d = json.load(f)
                if d.get("pid") == self.proc.pid:
                    self.http_addr = d["http_addr"]
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        if not self._wait_ready("/readyz", deadline):
            raise RuntimeError(f"sluice serve exited: {self.tail()}")
        return self


REFERENCE_CONFIG = """\
# Reference Prometheus of the differential suite: no scrape jobs, data comes by remote write.
global:
  scrape_interval: 15s
  evaluation_interval: 1m   # also the default subquery step ([10m:])
"""


def start_guarded(request, proc: Proc) -> Proc:
    """Registers the stop before starting, so a failed start is cleaned up too."""
    request.addfinalizer(proc.stop)
    return proc.start()


def start_target(request, name: str) -> Proc:
    if TARGET_KIND == "prometheus":
        return start_guarded(request, Prometheus(name, REFERENCE_CONFIG))
    return start_guarded(request, Sluice(name))


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------

def remote_write_post(client: httpx.Client, url: str, body: bytes) -> None:
    r = client.post(url + "/api/v1/write", content=body, headers=remote_write.HEADERS)
    assert r.status_code in (200, 204), f"remote write to {url}: {r.status_code} {r.text[:500]}"


def load(proc: Proc, ds: Dataset, via_line_protocol: bool) -> None:
    """Writes the dataset; with via_line_protocol the lp_* series go as line protocol.

    Sluice's buffer is flushed after the first half of the remote-write bodies, so queries read
    series partly from stored chunks and partly from the buffer (both read paths).
    """
    with httpx.Client(timeout=HTTP_TIMEOUT) as c:
        bodies = list(ds.remote_write_bodies(include_lp=not via_line_protocol))
        for i, body in enumerate(bodies):
            remote_write_post(c, proc.url, body)
            if proc.kind == "sluice" and i == len(bodies) // 2:
                r = c.post(proc.url + "/ts/buffer/flush")
                assert r.status_code == 200, f"flush: {r.status_code} {r.text[:300]}"
        if via_line_protocol:
            for text in ds.line_protocol_bodies():
                r = c.post(proc.url + "/write", params={"precision": "ms"}, content=text.encode(),
                           headers={"Content-Type": "text/plain; charset=utf-8"})
                assert r.status_code == 204, f"line protocol write: {r.status_code} {r.text[:500]}"


def wait_loaded(proc: Proc, ds: Dataset, timeout: float = 30.0) -> None:
    """Polls until the server returns every sample (Sluice's reads may lag its acks briefly).

    Reads the raw matrix ``{__name__=~".+"}[1h]`` at END and counts in Python:
    ``count_over_time`` would drop the names and collide (disk_read/disk_written_bytes_total).
    """
    want = ds.expected_sample_count()
    q = '{__name__=~".+"}[1h]'
    deadline = time.monotonic() + timeout
    got = None
    while time.monotonic() < deadline:
        r = httpx.get(proc.url + "/api/v1/query", params={"query": q, "time": ds.end_ms / 1000},
                      timeout=HTTP_TIMEOUT)
        if r.status_code == 200:
            got = sum(len(s.get("values", [])) for s in r.json()["data"]["result"])
            if got == want:
                return
        else:
            got = f"HTTP {r.status_code}: {r.text[:300]}"
        time.sleep(0.2)
    raise AssertionError(f"{proc.name}: {q} has {got} samples, want {want} after {timeout}s")


# ---------------------------------------------------------------------------------------------
# Session fixtures
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def end_ms() -> int:
    """END of the dataset (ms): queries are evaluated at times relative to it."""
    return choose_end_ms()


@pytest.fixture(scope="session")
def dataset(end_ms: int) -> Dataset:
    return Dataset(end_ms)


@pytest.fixture(scope="session")
def reference(request, dataset: Dataset) -> Prometheus:
    p = start_guarded(request, Prometheus("reference", REFERENCE_CONFIG))
    load(p, dataset, via_line_protocol=False)
    wait_loaded(p, dataset)
    return p


@pytest.fixture(scope="session")
def target(request, dataset: Dataset) -> Proc:
    t = start_target(request, "target")
    load(t, dataset, via_line_protocol=(t.kind == "sluice"))
    wait_loaded(t, dataset)
    return t


@pytest.fixture(scope="session")
def pair(reference: Prometheus, target: Proc) -> Tuple[Prometheus, Proc]:
    return reference, target


@pytest.fixture(scope="session")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=HTTP_TIMEOUT) as c:
        yield c


# ---------------------------------------------------------------------------------------------
# Comparator
# ---------------------------------------------------------------------------------------------

REL_TOL = 1e-9
ABS_TOL = 1e-12


def parse_value(s: Any) -> float:
    return float(s)  # "NaN", "+Inf", "-Inf" parse too


def values_equal(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= max(REL_TOL * max(abs(a), abs(b)), ABS_TOL)


def labels_str(m: Dict[str, str]) -> str:
    name = m.get("__name__", "")
    rest = ",".join(f'{k}="{v}"' for k, v in sorted(m.items()) if k != "__name__")
    return f"{name}{{{rest}}}"


def _key(m: Dict[str, str]) -> Tuple:
    return tuple(sorted(m.items()))


def _sample_diff(where: str, ref: List, tgt: List) -> Optional[str]:
    """[ts, "v"] pairs: timestamps exact, values with tolerance."""
    if float(ref[0]) != float(tgt[0]):
        return f"{where}: timestamp {tgt[0]!r} != reference {ref[0]!r}"
    a, b = parse_value(ref[1]), parse_value(tgt[1])
    if not values_equal(a, b):
        return f"{where} @ {ref[0]}: value {tgt[1]!r} != reference {ref[1]!r}"
    return None


def _series_list_diff(kind: str, ref: List[Dict], tgt: List[Dict], ordered: bool) -> Optional[str]:
    field = "value" if kind == "vector" else "values"
    rk, tk = [_key(s["metric"]) for s in ref], [_key(s["metric"]) for s in tgt]
    if len(set(tk)) != len(tk):
        dup = next(k for k in tk if tk.count(k) > 1)
        return f"target returned the series {labels_str(dict(dup))} twice"
    missing = [k for k in rk if k not in set(tk)]
    extra = [k for k in tk if k not in set(rk)]
    if missing or extra:
        msg = [f"series differ: reference has {len(rk)}, target has {len(tk)}"]
        for k in missing[:3]:
            msg.append(f"  missing in target: {labels_str(dict(k))}")
        for k in extra[:3]:
            msg.append(f"  extra in target:   {labels_str(dict(k))}")
        if len(missing) > 3 or len(extra) > 3:
            msg.append(f"  ({len(missing)} missing, {len(extra)} extra in all)")
        return "\n".join(msg)
    if ordered and rk != tk:
        i = next(i for i, (a, b) in enumerate(zip(rk, tk)) if a != b)
        return (f"series order differs at position {i}: target {labels_str(dict(tk[i]))}, "
                f"reference {labels_str(dict(rk[i]))}")
    tmap = {k: s for k, s in zip(tk, tgt)}
    for k, rs in zip(rk, ref):
        ts = tmap[k]
        name = labels_str(dict(k))
        if kind == "vector":
            d = _sample_diff(name, rs["value"], ts["value"])
            if d:
                return d
        else:
            rv, tv = rs.get("values", []), ts.get("values", [])
            for i, (a, b) in enumerate(zip(rv, tv)):
                d = _sample_diff(f"{name} sample #{i}", a, b)
                if d:
                    return d
            if len(rv) != len(tv):
                i = min(len(rv), len(tv))
                nxt = rv[i] if len(rv) > i else tv[i]
                return (f"{name}: target has {len(tv)} samples, reference {len(rv)} "
                        f"(first unmatched: {'reference' if len(rv) > i else 'target'} {nxt})")
            if ("histograms" in rs) != ("histograms" in ts):
                return f"{name}: 'histograms' present on one side only"
    return None


def diff_responses(ref: httpx.Response, tgt: httpx.Response, ordered: bool = False) -> Optional[str]:
    """None if the answers agree, else a compact description of the first difference."""
    try:
        rj = ref.json()
    except ValueError:
        return f"reference answered non-JSON ({ref.status_code}): {ref.text[:300]}"
    try:
        tj = tgt.json()
    except ValueError:
        return f"target answered non-JSON ({tgt.status_code}): {tgt.text[:300]}"
    if ref.status_code != tgt.status_code or rj.get("status") != tj.get("status") \
            or rj.get("errorType") != tj.get("errorType"):
        return (f"status: target {tgt.status_code} {tj.get('status')} {tj.get('errorType')!r} "
                f"({tj.get('error')!r}), reference {ref.status_code} {rj.get('status')} "
                f"{rj.get('errorType')!r} ({rj.get('error')!r})")
    if rj.get("status") != "success":
        return None
    rd, td = rj.get("data"), tj.get("data")
    if not isinstance(td, dict) or "resultType" not in td:
        return f"target data is not a query result: {json.dumps(td)[:300]}"
    if rd["resultType"] != td["resultType"]:
        return f"resultType: target {td['resultType']!r}, reference {rd['resultType']!r}"
    kind = rd["resultType"]
    if kind in ("scalar", "string"):
        if kind == "string":
            if rd["result"] != td["result"]:
                return f"string: target {td['result']!r}, reference {rd['result']!r}"
            return None
        return _sample_diff("scalar", rd["result"], td["result"])
    return _series_list_diff(kind, rd["result"], td["result"], ordered or kind == "matrix")


def response_summary(r: httpx.Response, limit: int = 600) -> str:
    return f"{r.status_code} {r.text[:limit]}"
