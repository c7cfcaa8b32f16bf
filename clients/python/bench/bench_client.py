#!/usr/bin/env python3
"""Throughput of the Python client against one local Sluice server (started here).

Measures, in one run:
  1. the batch writer's per-point ``put()`` over HTTP and over the wire protocol;
  2. ``write_dataframe`` of a DataFrame (default 1M rows) over the wire and over HTTP;
  3. the same DataFrame written by ``influxdb-client`` (InfluxDB's Python client, its
     ``write_api`` DataFrame support) to Sluice's ``/api/v2/write``, as the reference.

Every run writes its own metric and is checked by querying the point count back.

    pip install './clients/python[bench]'
    python clients/python/bench/bench_client.py                  # $SLUICE_BIN or target/release/sluice
    python clients/python/bench/bench_client.py --points 200000 --rows 200000   # quicker

Targets (one Python process): put() >= 250k points/s, write_dataframe over the wire >= 1M
points/s, write_dataframe >= 3x influxdb-client.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sluice

REPO = Path(__file__).resolve().parents[3]
T0 = 1_700_000_000_000


def server_binary() -> str:
    env = os.environ.get("SLUICE_BIN")
    if env:
        return env
    p = REPO / "target" / "release" / "sluice"
    if p.exists():
        return str(p)
    sys.exit("no release binary: set SLUICE_BIN or cargo build --release -p sluice")


class Server:
    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="sluice-pybench-")
        data = os.path.join(self.dir, "data")
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
        env["SLUICE_LOG_LEVEL"] = "warn"
        self.log = open(os.path.join(self.dir, "log"), "wb")
        self.proc = subprocess.Popen(
            [server_binary(), "serve", "--data-dir", data, "--http-addr", "127.0.0.1:0", "--wire-addr", "127.0.0.1:0"],
            env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with open(os.path.join(data, "server.json")) as f:
                    d = json.load(f)
                if d["pid"] == self.proc.pid:
                    self.http, self.wire = d["http_addr"], d["wire_addr"]
                    break
            except (OSError, ValueError, KeyError):
                pass
            if self.proc.poll() is not None:
                sys.exit("server exited")
            time.sleep(0.05)
        else:
            self.stop()
            sys.exit("server did not start")
        c = sluice.Client("http://" + self.http)
        c.ready()
        c.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def count(client: sluice.Client, metric: str) -> int:
    res = client.timeseries.query(metric, aggregation="count", step_ms=10**13)
    return int(sum(sum(s.values) for s in res))


SHORT_READS = []


def settled_count(client: sluice.Client, metric: str, expected: int) -> int:
    """The point count, re-read for up to 10 s while it is short: the server sometimes misses
    points in a query made right after an acknowledged write (a server bug, reported); such
    first reads are listed in the output."""
    n = count(client, metric)
    if n != expected:
        SHORT_READS.append((metric, expected, n))
        deadline = time.monotonic() + 10
        while n != expected and time.monotonic() < deadline:
            time.sleep(0.2)
            n = count(client, metric)
    return n


def bench_put(client: sluice.Client, transport: str, n: int, series: int, time_limit: float) -> dict:
    metric = f"bench_put_{transport}"
    entities = [f"host{i:03d}" for i in range(series)]
    tags = [{"dc": f"dc{i % 4}", "rack": f"r{i % 16}"} for i in range(series)]
    deadline = time.perf_counter() + time_limit
    done = 0
    t0 = time.perf_counter()
    with client.timeseries.batch_writer(transport=transport, max_points=10_000, max_queue_points=200_000) as w:
        put = w.put
        step = 10_000
        while done < n and time.perf_counter() < deadline:
            for i in range(done, min(done + step, n)):
                s = i % series
                put(metric, entities[s], float(i), T0 + i // series, tags[s])
            done = min(done + step, n)
        t_put = time.perf_counter() - t0
    t_all = time.perf_counter() - t0
    got = settled_count(client, metric, done)
    assert got == done, f"{metric}: wrote {done}, server has {got}"
    return {"points": done, "put_per_s": done / t_put, "end_to_end_per_s": done / t_all}


def make_frame(rows: int, series: int):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(42)
    idx = np.arange(rows)
    return pd.DataFrame(
        {
            "time": pd.to_datetime(T0 + (idx // series) * 1000, unit="ms"),
            "host": np.array([f"host{i:03d}" for i in range(series)])[idx % series],
            "dc": np.array(["eu-west-1", "us-east-1", "ap-south-1", "sa-east-1"])[idx % 4],
            "value": rng.normal(50.0, 15.0, rows).round(2),
        }
    )


def bench_df(client: sluice.Client, df, transport: str, ack: str = "buffer") -> dict:
    metric = f"bench_df_{transport}_{ack}"
    t0 = time.perf_counter()
    n = client.timeseries.write_dataframe(df, metric, entity_column="host", timestamp_column="time", tag_columns=["dc"], transport=transport, ack=ack)
    dt = time.perf_counter() - t0
    got = settled_count(client, metric, len(df))
    assert got == len(df) == n, f"{metric}: wrote {n}, server has {got}"
    return {"rows": n, "per_s": n / dt, "seconds": dt}


def bench_influx(url: str, df, chunk: int) -> dict:
    from influxdb_client import InfluxDBClient, WritePrecision
    from influxdb_client.client.write_api import SYNCHRONOUS

    metric = "bench_df_influx"
    with InfluxDBClient(url=url, token="unused", org="unused", timeout=120_000) as ic:
        api = ic.write_api(write_options=SYNCHRONOUS)
        t0 = time.perf_counter()
        # The same 50k-row requests as write_dataframe (the server takes at most 100k points per
        # request); influxdb-client serializes each slice with its DataFrame serializer.
        for start in range(0, len(df), chunk):
            api.write(
                bucket="default",
                record=df.iloc[start : start + chunk],
                data_frame_measurement_name=metric,
                data_frame_tag_columns=["host", "dc"],
                data_frame_timestamp_column="time",
                write_precision=WritePrecision.MS,
            )
        dt = time.perf_counter() - t0
    return {"rows": len(df), "per_s": len(df) / dt, "seconds": dt, "metric": metric}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=1_000_000, help="points per put() run")
    ap.add_argument("--rows", type=int, default=1_000_000, help="DataFrame rows")
    ap.add_argument("--series", type=int, default=100)
    ap.add_argument("--time-limit", type=float, default=60.0, help="bound of each put() run, seconds")
    ap.add_argument("--skip-influx", action="store_true")
    ap.add_argument("--profile", choices=["put-http", "put-wire", "df-wire", "df-http"], help="cProfile one part instead")
    args = ap.parse_args()

    server = Server()
    results: dict = {}
    try:
        client = sluice.Client("http://" + server.http, wire_address=server.wire, timeout=120)
        if args.profile:
            import cProfile
            import pstats

            kind, transport = args.profile.split("-")
            df = make_frame(args.rows, args.series) if kind == "df" else None
            fn = (lambda: bench_put(client, transport, args.points, args.series, args.time_limit)) if kind == "put" else (lambda: bench_df(client, df, transport))
            prof = cProfile.Profile()
            prof.runcall(fn)
            pstats.Stats(prof).sort_stats("tottime").print_stats(15)
            return 0
        for transport in ("http", "wire"):
            r = bench_put(client, transport, args.points, args.series, args.time_limit)
            results[f"put_{transport}"] = r
            print(f"batch writer put() over {transport:4s}: {r['put_per_s']:>12,.0f} points/s  (end to end, with close(): {r['end_to_end_per_s']:,.0f}/s, {r['points']:,} points)", flush=True)
        df = make_frame(args.rows, args.series)
        for ack in ("buffer", "fsync"):
            for transport in ("wire", "http"):
                r = bench_df(client, df, transport, ack)
                results[f"df_{transport}" + ("" if ack == "buffer" else "_fsync")] = r
                print(f"write_dataframe over {transport:4s}, ack={ack:6s}: {r['per_s']:>12,.0f} rows/s    ({r['rows']:,} rows in {r['seconds']:.2f} s)", flush=True)
        if not args.skip_influx:
            r = bench_influx("http://" + server.http, df, 50_000)
            got = settled_count(client, r["metric"], len(df))
            assert got == len(df), f"influxdb-client: server has {got} of {len(df)} points"
            results["df_influxdb_client"] = r
            print(f"influxdb-client (ack=fsync, the route's default): {r['per_s']:>9,.0f} rows/s    ({r['rows']:,} rows in {r['seconds']:.2f} s)")
            for transport in ("wire", "http"):
                ratio = results[f"df_{transport}"]["per_s"] / r["per_s"]
                ratio_f = results[f"df_{transport}_fsync"]["per_s"] / r["per_s"]
                results[f"ratio_{transport}"] = ratio
                results[f"ratio_{transport}_fsync"] = ratio_f
                print(f"write_dataframe over {transport} / influxdb-client: {ratio:.1f}x (ack=buffer), {ratio_f:.1f}x (both ack=fsync)")
        print("targets: put() >= 250k/s: " + ", ".join(f"{t} {'met' if results[f'put_{t}']['put_per_s'] >= 250_000 else 'NOT met'}" for t in ("http", "wire"))
              + f"; df wire >= 1M/s: {'met' if results['df_wire']['per_s'] >= 1_000_000 else 'NOT met'}"
              + ("" if args.skip_influx else f"; df >= 3x influxdb-client (same ack=fsync): wire {'met' if results['ratio_wire_fsync'] >= 3 else 'NOT met'}, http {'met' if results['ratio_http_fsync'] >= 3 else 'NOT met'}"))
        if SHORT_READS:
            print(f"note: {len(SHORT_READS)} first read(s) right after a write missed points (server read-your-writes bug): {SHORT_READS}")
        print(json.dumps({k: {kk: round(vv, 1) if isinstance(vv, float) else vv for kk, vv in v.items()} if isinstance(v, dict) else round(v, 2) for k, v in results.items()}))
        client.close()
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
