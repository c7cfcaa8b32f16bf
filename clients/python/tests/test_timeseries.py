"""Time-series methods against a real server."""

import time

import httpx
import pytest

import sluice
from conftest import uniq

T0 = 1_700_000_000_000


def test_put_with_and_without_timestamp(client):
    m = uniq()
    r = client.timeseries.put(m, "server01", 75.5, T0, {"dc": "eu"})
    assert isinstance(r, sluice.PutResult) and r.success and r.lsn > 0
    before = int(time.time() * 1000)
    r2 = client.timeseries.put(m, "server01", 76.0, ack="wal")
    assert r2.lsn > r.lsn
    res = client.timeseries.query(m)
    pts = sorted(p.timestamp_ms for p in res.points())
    assert pts[0] == T0
    assert abs(pts[1] - before) < 60_000  # stamped with the server's receive time
    with pytest.raises(ValueError):
        client.timeseries.put(m, "e", 1.0, ack="sometimes")


def test_put_batch_forms(client):
    m = uniq()
    r = client.timeseries.put_batch(
        [
            sluice.Point(m, "a", 1.0, T0, {"k": "v"}),
            {"metric": m, "entity": "b", "value": 2, "timestamp_ms": T0},
            (m, "c", 3.0, T0 + 1),
            (m, "d", 4.0),
        ],
        ack="buffer",
    )
    assert r.success and r.points_written == 4
    assert {s.entity for s in client.timeseries.query(m)} == {"a", "b", "c", "d"}


def test_put_buffered_seed_keywords_http_and_wire(client):
    m = uniq()
    r = client.timeseries.put_buffered(metric=m, entity="server01", value=75.5)
    assert isinstance(r, sluice.BufferedResult) and r.success and r.buffered and r.buffer_size >= 1
    r = client.timeseries.put_buffered(m, "server01", 76.5, T0, {"dc": "eu"}, transport="wire")
    assert r.success and r.buffer_size >= 1
    r = client.timeseries.put_buffered(metric=m, entity="server02", value=1.0, transport="wire")
    vals = sorted(p.value for p in client.timeseries.query(m).points())
    assert vals == [1.0, 75.5, 76.5]  # read-your-writes through the buffer


def test_buffer_stats_and_flush(client):
    client.timeseries.put_buffered(uniq(), "e", 1.0, T0)
    st = client.timeseries.get_buffer_stats()
    assert isinstance(st, sluice.BufferStats) and st.points_buffered >= 1
    f = client.timeseries.flush_buffer()
    assert isinstance(f, sluice.FlushResult) and f.success
    assert client.timeseries.get_buffer_stats().current_buffer_size == 0


def test_write_lines_v1_v2_and_precision(client):
    m = uniq("weather")
    client.timeseries.write_lines(f"{m},host=station1 temp=21.5,hum=40i 1700000000", precision="s")
    client.timeseries.write_lines([f"{m},host=station1 temp=22.5 1700000001000"], precision="ms", api="v2", ack="wal")
    client.timeseries.write_lines(f"{m},entity=e2 value=3 1700000002000000000".encode(), idempotent=True)
    temp = client.timeseries.query(f"{m}_temp")
    assert temp[0].entity == "station1" and temp[0].points == [(1700000000000, 21.5), (1700000001000, 22.5)]
    assert client.timeseries.query(f"{m}_hum")[0].values == [40.0]
    assert client.timeseries.query(m)[0].points == [(1700000002000, 3.0)]
    with pytest.raises(ValueError):
        client.timeseries.write_lines("x value=1", precision="h")
    with pytest.raises(sluice.BadRequest):
        client.timeseries.write_lines("not line protocol at all =")


def test_query_raw_aggregated_grouped_and_matchers(client):
    m = uniq()
    pts = []
    for i in range(10):
        for host, dc in (("h1", "eu"), ("h2", "eu"), ("h3", "us")):
            pts.append((m, host, float(i), T0 + i * 1000, {"dc": dc}))
    client.timeseries.put_batch(pts)
    raw = client.timeseries.query(m, T0, T0 + 4000)
    assert len(raw) == 3 and all(len(s) == 5 for s in raw)
    assert raw.series[0].timestamps[0] == T0
    one = client.timeseries.query(m, entity="h1")
    assert [s.entity for s in one] == ["h1"]
    tagged = client.timeseries.query(m, tags={"dc": "us"})
    assert [s.entity for s in tagged] == ["h3"]
    matched = client.timeseries.query(m, matchers=[("entity", "=~", "h[12]"), sluice.Matcher("dc", "!=", "us")])
    assert sorted(s.entity for s in matched) == ["h1", "h2"]
    avg = client.timeseries.query(m, T0, T0 + 9999, aggregation="avg", step_ms=5000, group_by=["dc"])
    by_dc = {s.tags["dc"]: s.points for s in avg}
    assert by_dc["us"] == [(T0, 2.0), (T0 + 5000, 7.0)]
    cnt = client.timeseries.query(m, aggregation="count", matchers=[{"tag": "dc", "op": "=", "value": "eu"}])
    assert sum(v for s in cnt for v in s.values) == 20
    import datetime

    dt = client.timeseries.query(m, datetime.datetime.fromtimestamp(T0 / 1000, datetime.timezone.utc), T0 + 1000)
    assert all(len(s) == 2 for s in dt)


def test_query_to_pandas(client):
    pd = pytest.importorskip("pandas")
    m = uniq()
    client.timeseries.put_batch([(m, "a", 1.0, T0, {"dc": "x"}), (m, "b", 2.0, T0 + 1)])
    res = client.timeseries.query(m)
    df = res.to_pandas()
    assert list(df.columns) == ["time", "metric", "entity", "dc", "value"]
    assert len(df) == 2 and df["value"].tolist() == [1.0, 2.0]
    assert df["time"].iloc[0] == pd.Timestamp(T0, unit="ms", tz="UTC")
    s = res[0].to_pandas()
    assert s["value"].tolist() == [1.0]
    assert len(client.timeseries.query(uniq()).to_pandas()) == 0


def test_export_streams_points(client):
    m = uniq()
    client.timeseries.put_batch([(m, f"e{i % 3}", float(i), T0 + i, {"k": "v"} if i % 2 else None) for i in range(300)])
    with client.timeseries.export(m, T0, T0 + 1000) as stream:
        pts = list(stream)
    assert len(pts) == 300 and all(isinstance(p, sluice.Point) for p in pts)
    assert sum(p.value for p in pts) == sum(range(300))
    raw = list(client.timeseries.export(m, entity="e0", raw=True))
    assert len(raw) == 100 and raw[0]["metric"] == m
    df = client.timeseries.export(m, tags={"k": "v"}).to_pandas()
    assert len(df) == 150
    with pytest.raises(sluice.BadRequest):
        list(client.timeseries.export("", 0, 1))


def test_export_reads_incrementally():
    """The iterator yields the first point before the answer's end has arrived."""
    pulled = []

    def body():
        for i in range(1000):
            pulled.append(i)
            yield (f'{{"metric":"m","entity":"e","timestamp_ms":{i},"value":{i}.0}}\n').encode()

    def handler(request):
        return httpx.Response(200, headers={"content-type": "application/x-ndjson"}, content=body())

    c = sluice.Client("http://fake", transport=httpx.MockTransport(handler))
    it = iter(c.timeseries.export("m"))
    first = next(it)
    assert first.timestamp_ms == 0
    assert len(pulled) < 1000
    it.close()


def test_export_compressed_answer_server_bug(server):
    """Server bug (reported): a compressed /ts/export answer is cut short (the server panics
    polling its export stream after its end), which is why the client asks for identity."""
    c = server.client()
    m = uniq()
    c.timeseries.put(m, "e", 1.0, T0)
    r = None
    try:
        r = httpx.post(server.url + "/ts/export", json={"metric": m, "from_ms": 0, "to_ms": T0 + 1}, headers={"accept-encoding": "gzip"})
        ok = r.status_code == 200 and r.text.strip() != ""
    except httpx.HTTPError:
        ok = False
    if not ok:
        pytest.xfail("server bug: gzip-compressed /ts/export answers are truncated")


def test_read_your_writes_server_bug(server):
    """Server bug (reported): right after a write acknowledged at fsync, a query can miss points
    while the auto-buffer flushes. Bounded: 25 writes of 40,000 points."""
    c = server.client(timeout=60)
    m = uniq()
    total = 0
    misses = []
    for b in range(25):
        c.timeseries.put_batch([(m, f"h{i % 50}", float(i), T0 + b * 40_000 + i) for i in range(40_000)])
        total += 40_000
        n = sum(len(s) for s in c.timeseries.query(m))
        if n != total:
            misses.append((b, total, n))
    c.close()
    if misses:
        pytest.xfail(f"server bug: queries right after acknowledged writes missed points: {misses[:3]}")


def test_delete_points_by_selection(client):
    m = uniq()
    client.timeseries.put_batch([(m, e, float(i), T0 + i, {"dc": dc}) for e, dc in (("a", "eu"), ("b", "us")) for i in range(10)])
    client.timeseries.flush_buffer()
    client.timeseries.put_batch([(m, "a", 99.0, T0 + 20, {"dc": "eu"})])
    r = client.timeseries.delete(m, T0 + 5, T0 + 20, entity="a")
    assert isinstance(r, sluice.TsDeleteResult) and r.success and r.lsn > 0
    assert (r.series, r.points_deleted) == (1, 6)
    left = sorted((p.entity, p.timestamp_ms) for p in client.timeseries.query(m).points())
    assert left == [("a", T0 + i) for i in range(5)] + [("b", T0 + i) for i in range(10)]
    r = client.timeseries.delete(m, 0, 2**63 - 1, matchers=[("dc", "=~", "u.")])
    assert (r.series, r.points_deleted) == (1, 10)
    assert {p.entity for p in client.timeseries.query(m).points()} == {"a"}
    with pytest.raises(ValueError):
        client.timeseries.delete(m, None, T0)
    with pytest.raises(sluice.SluiceError) as e:
        client.timeseries.delete(m, T0, T0 - 1)
    assert e.value.status == 422 and e.value.error_id


def test_cardinality_counts_series(client):
    m = uniq()
    client.timeseries.put_batch([(m, f"h{i}", 1.0, T0, {"dc": "eu" if i < 3 else "us"}) for i in range(5)])
    c = client.timeseries.cardinality(metric=m, limit=5)
    assert c["series"] == 5 and c["total_series"] >= 5
    assert c["series_count_by_metric"] == [{"metric": m, "series": 5}]
    assert {"label": "dc", "value": "eu", "series": 3} in c["series_count_by_label_value"]
