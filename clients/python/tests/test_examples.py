"""The runnable examples in examples/python, run as a user would (short durations)."""

import os
import subprocess
import sys

from conftest import REPO, uniq

EXAMPLES = REPO / "examples" / "python"


def run(args, timeout=60):
    env = dict(os.environ)
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, env=env)


def test_system_metrics_collector(server):
    entity = uniq("host")
    for transport in ("http", "wire"):
        p = run([str(EXAMPLES / "system_metrics.py"), "--url", server.url, "--wire-address", server.wire_addr, "--duration", "1.5", "--interval", "0.3", "--entity", entity, "--transport", transport])
        assert p.returncode == 0, p.stderr
        assert "0 failures" in p.stdout
    c = server.client()
    assert sum(len(s) for s in c.timeseries.query("system_load1", entity=entity)) >= 4
    assert c.timeseries.query("system_cpu_percent", entity=entity, tags={"cpu": "all"}).series
    c.close()


def test_semantic_search_demo(server):
    coll = uniq("demo")
    p = run([str(EXAMPLES / "semantic_search.py"), "--url", server.url, "--collection", coll, "approximate nearest neighbours of a vector"])
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].startswith("query:")
    assert "hnsw" in lines[1]  # the best match comes first
    c = server.client()
    assert coll not in [x.name for x in c.collections.list()]
    c.close()
