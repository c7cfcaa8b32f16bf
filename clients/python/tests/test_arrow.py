"""Arrow IPC answers of /ts/export and /ts/query, read back by pyarrow with the exact values
(raw HTTP: the SDK does not wrap them yet)."""

import json

import httpx
import pyarrow as pa
import pyarrow.ipc

from conftest import uniq

T0 = 1_700_000_000_000
ARROW = "application/vnd.apache.arrow.stream"


def _write(client, m, n):
    points = []
    for i in range(n):
        points.append((m, "a" if i % 2 else "b", i * 0.25 - 7.5, T0 + i * 1000, {"dc": "eu", "host": f"h{i % 2}"}))
    for start in range(0, n, 10_000):
        client.timeseries.put_batch(points[start : start + 10_000])
    return points


def test_export_as_arrow_stream_reads_back_exactly(server):
    c = server.client(timeout=60)
    m = uniq()
    n = 70_000  # more than one 65,536-row record batch
    points = _write(c, m, n)
    c.timeseries.flush_buffer()
    r = httpx.post(server.url + "/ts/export", json={"metric": m, "from_ms": 0, "to_ms": T0 + n * 1000},
                   headers={"accept": ARROW}, timeout=60)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == ARROW
    reader = pa.ipc.open_stream(r.content)
    assert reader.schema.names == ["metric", "entity", "tags", "timestamp", "value"]
    assert reader.schema.field("timestamp").type == pa.timestamp("ms", tz="UTC")
    table = reader.read_all()
    assert table.num_rows == n
    got = sorted(zip(table["entity"].to_pylist(), table["timestamp"].cast(pa.int64()).to_pylist(),
                     table["value"].to_pylist(), table["tags"].to_pylist()))
    want = sorted((e, ts, v, json.dumps(tags, separators=(",", ":"), sort_keys=True)) for _, e, v, ts, tags in points)
    assert got == want
    assert set(table["metric"].to_pylist()) == {m}


def test_query_as_arrow_stream_raw_and_aggregated(server):
    c = server.client()
    m = uniq()
    _write(c, m, 20)
    body = {"metric": m, "from_ms": T0, "to_ms": T0 + 19_000, "aggregation": "sum", "step_ms": 10_000, "group_by": ["dc"]}
    r = httpx.post(server.url + "/ts/query", json=body, headers={"accept": ARROW})
    assert r.status_code == 200, r.text
    t = pa.ipc.open_stream(r.content).read_all()
    js = httpx.post(server.url + "/ts/query", json=body).json()
    want = [(s["tags"].get("dc"), p[0], p[1]) for s in js["series"] for p in s["points"]]
    got = [(json.loads(tags).get("dc"), ts, v) for tags, ts, v in
           zip(t["tags"].to_pylist(), t["timestamp"].cast(pa.int64()).to_pylist(), t["value"].to_pylist())]
    assert got == want and len(got) == 2
    assert got[0][2] == sum(i * 0.25 - 7.5 for i in range(10))
    # An empty answer is a valid stream with the schema and no rows.
    r = httpx.post(server.url + "/ts/query", json={"metric": uniq(), "from_ms": 0, "to_ms": 1}, headers={"accept": ARROW})
    assert r.status_code == 200
    assert pa.ipc.open_stream(r.content).read_all().num_rows == 0
    # Errors stay JSON with an error_id.
    r = httpx.post(server.url + "/ts/query", json={"metric": m, "from_ms": 5, "to_ms": 1}, headers={"accept": ARROW})
    assert r.status_code == 422 and r.json()["error_id"]
