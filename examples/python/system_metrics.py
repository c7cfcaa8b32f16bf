#!/usr/bin/env python3
"""A system-metrics collector: reads /proc every interval and writes the readings to Sluice
through the auto-batching writer.

    python examples/python/system_metrics.py --url http://127.0.0.1:8080 --duration 30

Metrics (entity = this host's name): ``system_cpu_percent`` (tag ``cpu``: ``all``, ``cpu0``,
…), ``system_load1``/``system_load5``/``system_load15``, ``system_mem_used_bytes``,
``system_mem_available_bytes``, ``system_net_rx_bytes``/``system_net_tx_bytes`` (tag
``iface``, counters), ``system_processes_running``. It stops after ``--duration`` seconds (or on
Ctrl-C), closes the writer (sending what is queued) and prints a summary.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from typing import Dict, Iterator, Tuple

import sluice


def read_cpu() -> Dict[str, Tuple[int, int]]:
    """Per CPU line of /proc/stat: (busy jiffies, total jiffies)."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if not line.startswith("cpu"):
                continue
            parts = line.split()
            name = "all" if parts[0] == "cpu" else parts[0]
            vals = [int(x) for x in parts[1:]]
            idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
            total = sum(vals[:8])
            out[name] = (total - idle, total)
    return out


def read_meminfo() -> Dict[str, int]:
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, _, rest = line.partition(":")
            out[key] = int(rest.split()[0]) * 1024
    return out


def read_net() -> Iterator[Tuple[str, int, int]]:
    with open("/proc/net/dev") as f:
        for line in f.readlines()[2:]:
            iface, _, rest = line.partition(":")
            cols = rest.split()
            yield iface.strip(), int(cols[0]), int(cols[8])


def read_load() -> Tuple[float, float, float, int]:
    with open("/proc/loadavg") as f:
        p = f.read().split()
    return float(p[0]), float(p[1]), float(p[2]), int(p[3].split("/")[0])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default=os.environ.get("SLUICE_URL", "http://127.0.0.1:8080"))
    ap.add_argument("--token", default=os.environ.get("SLUICE_TOKEN"))
    ap.add_argument("--wire-address", default=None, help="host:port of the wire listener (default: the URL's host, port 18765)")
    ap.add_argument("--transport", choices=["http", "wire"], default="http")
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between readings")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds to run (bounded)")
    ap.add_argument("--entity", default=socket.gethostname())
    args = ap.parse_args(argv)

    failures = []
    client = sluice.Client(args.url, args.token, wire_address=args.wire_address)
    host = args.entity
    deadline = time.monotonic() + args.duration
    readings = 0
    prev_cpu = read_cpu()
    with client.timeseries.batch_writer(transport=args.transport, flush_interval_ms=500, on_error=failures.append) as w:
        try:
            while time.monotonic() < deadline:
                time.sleep(max(0.0, min(args.interval, deadline - time.monotonic())))
                now = int(time.time() * 1000)
                cpu = read_cpu()
                for name, (busy, total) in cpu.items():
                    pb, pt = prev_cpu.get(name, (busy, total))
                    if total > pt:
                        w.put("system_cpu_percent", host, 100.0 * (busy - pb) / (total - pt), now, {"cpu": name})
                prev_cpu = cpu
                l1, l5, l15, running = read_load()
                w.put("system_load1", host, l1, now)
                w.put("system_load5", host, l5, now)
                w.put("system_load15", host, l15, now)
                w.put("system_processes_running", host, running, now)
                mem = read_meminfo()
                w.put("system_mem_used_bytes", host, mem["MemTotal"] - mem.get("MemAvailable", mem["MemFree"]), now)
                w.put("system_mem_available_bytes", host, mem.get("MemAvailable", mem["MemFree"]), now)
                for iface, rx, tx in read_net():
                    w.put("system_net_rx_bytes", host, rx, now, {"iface": iface})
                    w.put("system_net_tx_bytes", host, tx, now, {"iface": iface})
                readings += 1
        except KeyboardInterrupt:
            pass
    load = client.timeseries.query("system_load1", entity=host, from_ms=int(time.time() * 1000) - int(args.duration * 1000) - 60_000)
    n = sum(len(s) for s in load)
    print(f"{readings} readings, {w.points_written} points written, {len(failures)} failures; system_load1 has {n} points for {host}")
    client.close()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
