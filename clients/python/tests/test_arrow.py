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


def test_vector_export_as_arrow_and_ndjson_reads_back_exactly(server):
    """GET /v1/collections/{name}/export: more rows than one record batch (about 4 MiB of pks,
    vectors and metadata: some 14,500 rows at dimension 64), indexed and buffered entities, times
    null where absent, expired entities left out."""
    name = "exp" + uniq().replace("_", "")[:20]
    dim, n = 64, 17_000
    r = httpx.post(server.url + "/v1/collections", json={"name": name, "dimension": dim, "distance": "l2"})
    assert r.status_code == 201, r.text
    want = {}
    for start in range(0, n, 5000):
        batch = []
        for i in range(start, min(n, start + 5000)):
            e = {"pk": f"p{i:05}", "vector": [float(i % 97) + j / 64 for j in range(dim)], "metadata": {"i": i}}
            if i % 3 == 0:
                e["timestamp_ms"] = T0 + i
            if i % 5 == 0:
                e["expires_at_ms"] = 4_000_000_000_000 + i
            batch.append(e)
            want[e["pk"]] = e
        r = httpx.post(server.url + f"/vectors/add/batch?collection={name}", json={"vectors": batch}, timeout=60)
        assert r.status_code == 200, r.text
    # One buffered entity, and one that has already expired (not exported).
    extra = {"pk": "zbuffered", "vector": [0.5] * dim, "metadata": {"b": True}}
    r = httpx.post(server.url + f"/vectors/add/buffered?collection={name}", json=extra)
    assert r.status_code == 200, r.text
    want["zbuffered"] = extra
    r = httpx.post(server.url + f"/vectors/add?collection={name}",
                   json={"pk": "gone", "vector": [1.0] * dim, "expires_at_ms": 1000})
    assert r.status_code == 200, r.text

    r = httpx.get(server.url + f"/v1/collections/{name}/export", headers={"accept": ARROW}, timeout=60)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == ARROW
    reader = pa.ipc.open_stream(r.content)
    assert reader.schema.names == ["pk", "vector", "metadata", "timestamp", "expires_at"]
    assert reader.schema.field("vector").type == pa.list_(pa.field("item", pa.float32(), nullable=False), dim)
    batches = list(reader)
    assert len(batches) == 2, "more rows than one record batch"
    table = pa.Table.from_batches(batches)
    assert table.num_rows == n + 1
    pks = table["pk"].to_pylist()
    assert pks == sorted(want), "every live entity once, in pk order"
    vectors = table["vector"].to_pylist()
    ts = table["timestamp"].cast(pa.int64()).to_pylist()
    exp = table["expires_at"].cast(pa.int64()).to_pylist()
    for pk, v, meta, t, x in zip(pks, vectors, table["metadata"].to_pylist(), ts, exp):
        e = want[pk]
        assert v == e["vector"], pk
        assert json.loads(meta) == e["metadata"]
        assert t == e.get("timestamp_ms") and x == e.get("expires_at_ms"), pk

    r = httpx.get(server.url + f"/v1/collections/{name}/export", timeout=60)
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert [e["pk"] for e in lines] == pks
    assert lines[3] == {"pk": "p00003", "vector": want["p00003"]["vector"], "metadata": {"i": 3}, "timestamp_ms": T0 + 3}

    r = httpx.get(server.url + "/v1/collections/nosuch/export")
    assert r.status_code == 404 and r.json()["error_id"]


def test_parquet_answers_read_back_exactly(server):
    """?format=parquet (or Accept: application/vnd.apache.parquet) on /ts/export, /ts/query and the
    vector export: Parquet files pyarrow reads with the same rows as the Arrow answers; an export
    of more than one batch has one row group per batch."""
    import io

    import pyarrow.parquet as pq

    c = server.client(timeout=60)
    m = uniq()
    n = 70_000
    points = _write(c, m, n)
    body = {"metric": m, "from_ms": 0, "to_ms": T0 + n * 1000}
    r = httpx.post(server.url + "/ts/export?format=parquet", json=body, timeout=60)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/vnd.apache.parquet"
    assert r.content[:4] == b"PAR1" and r.content[-4:] == b"PAR1"
    f = pq.ParquetFile(io.BytesIO(r.content))
    assert f.metadata.num_row_groups == 2 and f.metadata.num_rows == n
    assert f.metadata.row_group(0).column(0).compression == "ZSTD"
    table = f.read()
    assert table.schema.field("timestamp").type == pa.timestamp("ms", tz="UTC")
    got = sorted(zip(table["entity"].to_pylist(), table["timestamp"].cast(pa.int64()).to_pylist(),
                     table["value"].to_pylist(), table["tags"].to_pylist()))
    want = sorted((e, ts, v, json.dumps(tags, separators=(",", ":"), sort_keys=True)) for _, e, v, ts, tags in points)
    assert got == want
    # The same rows as the Arrow stream.
    r2 = httpx.post(server.url + "/ts/export?format=arrow", json=body, timeout=60)
    assert pa.ipc.open_stream(r2.content).read_all().equals(table)

    q = {"metric": m, "from_ms": T0, "to_ms": T0 + 19_000, "aggregation": "avg", "step_ms": 10_000}
    r = httpx.post(server.url + "/ts/query", json=q, headers={"accept": "application/vnd.apache.parquet"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/vnd.apache.parquet"
    t = pq.read_table(io.BytesIO(r.content))
    js = httpx.post(server.url + "/ts/query", json=q).json()
    assert t["value"].to_pylist() == [p[1] for s in js["series"] for p in s["points"]]
    # ?format=json wins over the Accept header; an unknown format is a 400 with an error_id.
    r = httpx.post(server.url + "/ts/query?format=json", json=q, headers={"accept": ARROW})
    assert r.headers["content-type"].startswith("application/json")
    r = httpx.post(server.url + "/ts/query?format=csv", json=q)
    assert r.status_code == 400 and r.json()["error_id"]

    name = "pq" + uniq().replace("_", "")[:20]
    r = httpx.post(server.url + "/v1/collections", json={"name": name, "dimension": 3, "distance": "l2"})
    assert r.status_code == 201, r.text
    ents = [{"pk": "a", "vector": [1.0, 2.0, 3.0], "metadata": {"k": "v"}, "timestamp_ms": T0},
            {"pk": "b", "vector": [0.5, 0.25, -1.0]}]
    r = httpx.post(server.url + f"/vectors/add/batch?collection={name}", json={"vectors": ents})
    assert r.status_code == 200, r.text
    r = httpx.get(server.url + f"/v1/collections/{name}/export?format=parquet")
    assert r.status_code == 200 and r.headers["content-type"] == "application/vnd.apache.parquet"
    t = pq.read_table(io.BytesIO(r.content))
    assert t["pk"].to_pylist() == ["a", "b"]
    assert t["vector"].to_pylist() == [[1.0, 2.0, 3.0], [0.5, 0.25, -1.0]]
    assert [json.loads(x) for x in t["metadata"].to_pylist()] == [{"k": "v"}, {}]
    assert t["timestamp"].cast(pa.int64()).to_pylist() == [T0, None]
