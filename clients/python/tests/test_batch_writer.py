"""The auto-batching writers: flushing by count, bytes and time, close(), bounded queues,
failures, and writing through a full server buffer (nothing lost, nothing duplicated, the
order per series kept)."""

import concurrent.futures as cf
import threading
import time

import httpx
import pytest

import sluice
from sluice import wire
from conftest import settle, uniq

T0 = 1_700_000_000_000
FAST = sluice.RetryPolicy(max_retries=200, initial_backoff=0.01, max_backoff=0.1, max_elapsed=60)


def wait_until(pred, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


@pytest.mark.parametrize("transport", ["http", "wire"])
def test_close_flushes_everything(client, transport):
    m = uniq()
    with client.timeseries.batch_writer(transport=transport, max_points=700) as w:
        for i in range(5000):
            w.put(m, f"e{i % 4}", float(i), T0 + i, {"t": str(i % 4)})
    assert w.points_written == 5000 and w.errors() == [] and w.pending == 0
    res = settle(lambda: client.timeseries.query(m), lambda r: sorted(len(s) for s in r) == [1250] * 4)
    assert sorted(len(s) for s in res) == [1250] * 4
    assert sum(p.value for p in res.points()) == sum(range(5000))


@pytest.mark.parametrize("transport", ["http", "wire"])
def test_flush_by_time_count_and_bytes(client, transport):
    m = uniq()
    w = client.timeseries.batch_writer(transport=transport, flush_interval_ms=150, max_points=100)
    try:
        for i in range(3):
            w.put(m, "e", float(i), T0 + i)
        assert wait_until(lambda: len(client.timeseries.query(m).series) == 1, 5)  # by time
        m2 = uniq()
        for i in range(250):
            w.put(m2, "e", float(i), T0 + i)
        assert w.batches_written >= 1
        assert wait_until(lambda: sum(len(s) for s in client.timeseries.query(m2)) >= 200, 5)
        w.flush()
        assert sum(len(s) for s in client.timeseries.query(m2)) == 250
    finally:
        w.close()
    m3 = uniq()
    with client.timeseries.batch_writer(transport=transport, max_bytes=4096, max_points=10**6, flush_interval_ms=60_000) as w:
        for i in range(500):
            w.put(m3, "e", float(i), T0 + i)
        assert wait_until(lambda: w.batches_written >= 3, 5)  # by bytes, long before the interval


def test_seed_style_keywords_and_put_forms(client):
    m = uniq()
    with client.timeseries.batch_writer() as w:
        w.put(metric=m, entity="server01", value=75.5, timestamp_ms=T0)
        w.put(metric=m, entity="server01", value=76.5)  # stamped at put() with the client's clock
        w.put_point(sluice.Point(m, "server02", 1.0, T0))
        w.put_many([{"metric": m, "entity": "server03", "value": 2, "timestamp_ms": T0}, (m, "server04", 3.0, T0)])
    assert sum(len(s) for s in client.timeseries.query(m)) == 5


def test_invalid_points_raise_at_put(client):
    with client.timeseries.batch_writer(transport="wire") as w:
        with pytest.raises(TypeError):
            w.put("m", "e", "high")
        with pytest.raises(ValueError):
            w.put("m", "e", float("inf"))
        with pytest.raises(TypeError):
            w.put("m", "e", 1.0, tags={"k": 1})
        assert w.pending == 0
    with client.timeseries.batch_writer(transport="http") as w:
        with pytest.raises(ValueError):
            w.put("m", "e", float("nan"))
        with pytest.raises(TypeError):
            w.put(1, "e", 1.0)
    with pytest.raises(ValueError):
        client.timeseries.batch_writer(on_full="drop")


@pytest.mark.parametrize("transport", ["http", "wire"])
def test_refused_points_reported_via_callback_and_errors(client, transport):
    got = []
    m = uniq()
    bad = "x" * 300  # over the server's 256-byte name limit: refused by the server
    w = client.timeseries.batch_writer(transport=transport, on_error=got.append, max_points=3)
    w.put(m, "e", 1.0, T0)
    w.put(m, "e", 2.0, T0 + 1)
    w.put(bad, "e", 3.0, T0 + 2)
    w.put(m, "e", 4.0, T0 + 3)
    w.close()  # does not raise: on_error was given
    assert len(got) == 1 and w.errors() == got
    f = got[0]
    assert isinstance(f.error, sluice.BadRequest) and f.count == 3
    assert [p.value for p in f.points] == [1.0, 2.0, 3.0] and f.points[2].metric == bad
    assert client.timeseries.query(m)[0].values == [4.0]
    # without a callback close() raises
    w = client.timeseries.batch_writer(transport=transport)
    w.put(bad, "e", 1.0, T0)
    with pytest.raises(sluice.BatchWriteError) as e:
        w.close()
    assert e.value.failures[0].points[0].metric == bad


def _blocking_client():
    gate = threading.Event()
    calls = []

    def handler(request):
        calls.append(request)
        gate.wait(10)
        return httpx.Response(200, json={"success": True, "points_written": 1, "lsn": 1})

    return sluice.Client("http://fake", transport=httpx.MockTransport(handler)), gate, calls


def test_bounded_queue_raise_and_block():
    c, gate, calls = _blocking_client()
    w = c.timeseries.batch_writer(max_points=10, max_queue_points=20, on_full="raise")
    for i in range(20):
        w.put("m", "e", 1.0, i)
    with pytest.raises(sluice.QueueFull):
        w.put("m", "e", 1.0, 99)
    gate.set()
    w.close()
    assert w.points_written == 20

    c, gate, calls = _blocking_client()
    w = c.timeseries.batch_writer(max_points=10, max_queue_points=20, on_full="block", block_timeout=0.3)
    for i in range(20):
        w.put("m", "e", 1.0, i)
    t = time.monotonic()
    with pytest.raises(sluice.QueueFull):
        w.put("m", "e", 1.0, 99)
    assert 0.25 <= time.monotonic() - t < 3
    threading.Timer(0.3, gate.set).start()
    w.block_timeout = None
    t = time.monotonic()
    w.put("m", "e", 1.0, 100)  # blocks until the sender frees room
    assert time.monotonic() - t >= 0.2
    w.close()
    assert w.points_written == 21


def test_server_timestamps_mode(client):
    m = uniq()
    before = int(time.time() * 1000)
    with client.timeseries.batch_writer(transport="wire", timestamps="server") as w:
        w.put(m, "e", 1.0)
    ((ts, v),) = client.timeseries.query(m)[0].points
    assert abs(ts - before) < 60_000


def _pressure(server, stop, kind="ts"):
    """Other writers filling the server's buffer (bounded in count and time)."""
    host, port = server.wire_host_port
    deadline = time.monotonic() + 60
    n = 0
    with wire.WireClient(host, port, retry=sluice.RetryPolicy.none()) as w:
        while not stop.is_set() and time.monotonic() < deadline and n < 5000:
            n += 1
            if kind == "ts":
                frames = [wire.encode_ts_put([("pressure", "p", float(i), T0 + i) for i in range(2000)]) for _ in range(3)]
            else:
                frames = [wire.encode_vector_put([(f"pp{i}", [0.1, 0.2, 0.3], {"p": 1}) for i in range(300)]) for _ in range(3)]
            w.pipeline(frames)


@pytest.mark.parametrize("transport", ["http", "wire"])
def test_full_server_buffer_nothing_lost_duplicated_or_reordered(full_server, transport):
    c = full_server.client()
    m = uniq()
    stop = threading.Event()
    pressers = [threading.Thread(target=_pressure, args=(full_server, stop)) for _ in range(2)]
    for p in pressers:
        p.start()
    n_series, n_ts = 4, 3000
    try:
        time.sleep(0.2)
        with c.timeseries.batch_writer(transport=transport, max_points=1500, retry=FAST, on_full="block") as w:
            for i in range(n_ts):
                for s in range(n_series):
                    w.put(m, f"e{s}", -1.0, T0 + i, {"s": str(s)})  # overwritten below...
                if i >= 50:
                    for s in range(n_series):  # ...by the later write of the same timestamp
                        w.put(m, f"e{s}", float(i - 50), T0 + i - 50, {"s": str(s)})
            for i in range(n_ts - 50, n_ts):
                for s in range(n_series):
                    w.put(m, f"e{s}", float(i), T0 + i, {"s": str(s)})
    finally:
        stop.set()
        for p in pressers:
            p.join(70)
    assert w.errors() == []
    assert w.refusals > 0, "the server never refused: the test did not exercise a full buffer"
    want = [T0 + i for i in range(n_ts)]
    res = settle(lambda: c.timeseries.query(m), lambda r: len(r) == n_series and all(s.timestamps == want for s in r))
    assert len(res) == n_series
    for s in res:
        assert s.timestamps == want  # nothing lost, nothing duplicated
        assert s.values == [float(i) for i in range(n_ts)]  # the last write of each timestamp won
    c.close()


@pytest.mark.parametrize("transport", ["http", "wire"])
def test_vector_batch_writer_order_and_close(client, transport):
    coll = None
    if transport == "http":
        coll = uniq("c")
        client.collections.create(coll, 3)
    pre = uniq("v")
    np = pytest.importorskip("numpy")
    with client.vectors.batch_writer(transport=transport, collection=coll, max_ops=64) as w:
        for i in range(200):
            w.add(f"{pre}{i}", np.array([1.0, float(i), 0.5], dtype=np.float32), {"i": i})
        for i in range(0, 200, 2):
            w.update(f"{pre}{i}", [0.5, float(i), 1.0], {"i": i, "updated": True})
        for i in range(0, 200, 5):
            w.remove(f"{pre}{i}")
        w.add_buffered(f"{pre}0", [1.0, 1.0, 1.0], {"back": True})  # the seed's names work too
    assert w.errors() == [] and w.ops_written == 200 + 100 + 40 + 1
    assert client.vectors.get(f"{pre}0", collection=coll).metadata == {"back": True}
    assert client.vectors.get(f"{pre}2", collection=coll).metadata == {"i": 2, "updated": True}
    assert client.vectors.get(f"{pre}3", collection=coll).metadata == {"i": 3}
    with pytest.raises(sluice.NotFound):
        client.vectors.get(f"{pre}5", collection=coll)
    if transport == "wire":
        with pytest.raises(ValueError):
            client.vectors.batch_writer(transport="wire", collection="other")


def test_vector_writer_failures_reported(client):
    got = []
    pre = uniq("v")
    with client.vectors.batch_writer(transport="wire", on_error=got.append) as w:
        w.update(f"{pre}missing", [1.0, 2.0, 3.0])
        w.add(f"{pre}ok", [1.0, 2.0, 3.0])
    assert len(got) == 1 and got[0].kind == "update" and isinstance(got[0].error, sluice.NotFound)
    assert got[0].ops[0].pk == f"{pre}missing" and got[0].ops[0].vector == [1.0, 2.0, 3.0]
    assert client.vectors.get(f"{pre}ok").vector == [1.0, 2.0, 3.0]


def test_vector_writer_through_full_buffer(full_server):
    c = full_server.client()
    stop = threading.Event()
    p = threading.Thread(target=_pressure, args=(full_server, stop, "vec"))
    p.start()
    pre = uniq("v")
    try:
        time.sleep(0.2)
        with c.vectors.batch_writer(transport="wire", max_ops=300, retry=FAST) as w:
            for i in range(800):
                w.add(f"{pre}{i}", [0.1, 0.2, float(i)], {"v": 1})
            for i in range(800):
                w.add(f"{pre}{i}", [0.1, 0.2, float(i)], {"v": 2})
    finally:
        stop.set()
        p.join(70)
    assert w.errors() == []
    assert w.refusals > 0, "the server never refused"
    for i in (0, 400, 799):
        assert c.vectors.get(f"{pre}{i}").metadata == {"v": 2}
    c.close()
