"""Vector, collection methods (numpy arrays included) against a real server."""

import pytest

import sluice
from conftest import uniq

np = pytest.importorskip("numpy")


@pytest.fixture
def coll(client):
    name = uniq("c")
    info = client.collections.create(name, 4, distance="cosine", precision="f32", hnsw={"m": 16, "ef_construction": 64, "ef_search": 32})
    yield name
    try:
        client.collections.delete(name)
    except sluice.NotFound:
        pass


def test_collections_crud(client):
    name = uniq("c")
    info = client.collections.create(name, 8, distance="l2", precision="f16", hnsw=sluice.HnswSpec(m=8, ef_construction=32, ef_search=16))
    assert isinstance(info, sluice.CollectionInfo)
    assert (info.name, info.dimension, info.distance, info.precision) == (name, 8, "l2", "f16")
    assert info.hnsw.m == 8
    assert name in [c.name for c in client.collections.list()]
    assert client.collections.get(name).dimension == 8
    with pytest.raises(sluice.Conflict) as e:
        client.collections.create(name, 8)
    assert e.value.status == 409 and e.value.code == "collection_exists"
    d = client.collections.delete(name)
    assert d.success
    with pytest.raises(sluice.NotFound) as e:
        client.collections.get(name)
    assert e.value.code == "collection_not_found"
    with pytest.raises(sluice.BadRequest) as e:
        client.collections.create("bad name!", 4)
    assert e.value.field == "name"


def test_add_get_search_delete_with_lists_and_numpy(client, coll):
    r = client.vectors.add("doc1", [0.1, 0.9, 0.2, 0.0], {"category": "tech", "year": 2024}, collection=coll)
    assert isinstance(r, sluice.AddResult) and r.success
    client.vectors.add("doc2", np.array([0.8, 0.1, 0.1, 0.0], dtype=np.float32), {"category": "art", "year": 2019}, collection=coll, ack="wal")
    client.vectors.add("doc3", np.array([0.7, 0.2, 0.1, 0.1]), {"category": "art", "year": 2021, "tags": ["a", "b"]}, collection=coll)
    e = client.vectors.get("doc2", collection=coll)
    assert isinstance(e, sluice.VectorEntity) and e.metadata["category"] == "art"
    assert np.allclose(e.vector, [0.8, 0.1, 0.1, 0.0], atol=1e-6)
    q = np.array([0.1, 0.8, 0.3, 0.0])
    res = client.vectors.search(q, k=3, collection=coll)
    assert isinstance(res, sluice.SearchResults) and res[0].pk == "doc1"
    assert [r.pk for r in client.vectors.search(q, 5, filter={"year": {"$gte": 2020}}, collection=coll)] == ["doc1", "doc3"]
    assert [r.pk for r in client.vectors.search(q, 5, filter={"category": {"$in": ["art"]}}, ef=128, collection=coll)] == ["doc3", "doc2"]
    assert [r.pk for r in client.vectors.search(q, 5, filter={"category": "art", "year": {"$lt": 2020}}, collection=coll)] == ["doc2"]
    assert [r.pk for r in client.vectors.search(q, 5, filter={"tags": "b"}, collection=coll)] == ["doc3"]
    df = res.to_pandas()
    assert list(df.columns) == ["pk", "score", "distance", "metadata"] and len(df) == 3
    d = client.vectors.delete("doc1", collection=coll)
    assert isinstance(d, sluice.DeleteResult) and d.success
    with pytest.raises(sluice.NotFound):
        client.vectors.get("doc1", collection=coll)
    with pytest.raises(sluice.NotFound):
        client.vectors.delete("doc1", collection=coll)


def test_search_over_the_wire_answers_as_http(client, coll):
    vecs = np.random.default_rng(7).random((40, 4), dtype=np.float32)
    client.vectors.add_batch([(f"p{i}", vecs[i], {"i": i, "even": i % 2 == 0}) for i in range(40)], collection=coll)
    client.vectors.add_buffered("late", [0.5, 0.5, 0.5, 0.5], collection=coll)
    q = np.array([0.4, 0.6, 0.5, 0.5])
    for kwargs in ({}, {"filter": {"even": True}, "ef": 64}, {"filter": {"i": {"$gte": 30}}}):
        http = client.vectors.search(q, 5, collection=coll, **kwargs)
        wire = client.vectors.search(q, 5, collection=coll, transport="wire", **kwargs)
        assert isinstance(wire, sluice.SearchResults) and len(wire) == 5
        assert [r.pk for r in wire] == [r.pk for r in http]
        assert [r.metadata for r in wire] == [r.metadata for r in http]
        assert np.allclose([r.score for r in wire], [r.score for r in http], atol=1e-6)
        assert np.allclose([r.distance for r in wire], [r.distance for r in http], atol=1e-6)
    assert client.vectors.search([0.5, 0.5, 0.5, 0.5], 1, collection=coll, transport="wire")[0].pk == "late"
    with pytest.raises(sluice.NotFound) as e:
        client.vectors.search(q, 5, collection=uniq("none"), transport="wire")
    assert e.value.code == "collection_not_found"
    with pytest.raises(sluice.BadRequest) as e:
        client.vectors.search([1.0, 2.0], 5, collection=coll, transport="wire")
    assert e.value.field == "vector"
    with pytest.raises(sluice.BadRequest) as e:
        client.vectors.search(q, 5, filter={"i": {"$near": 1}}, collection=coll, transport="wire")
    assert e.value.field.startswith("filter.i")
    with pytest.raises(ValueError):
        client.vectors.search(q, 5, collection=coll, transport="carrier-pigeon")


def test_add_batch_numpy_rows_and_tuples(client, coll):
    vecs = np.random.default_rng(1).random((50, 4), dtype=np.float32)
    r = client.vectors.add_batch([(f"p{i}", vecs[i], {"i": i}) for i in range(50)], collection=coll)
    assert isinstance(r, sluice.BatchAddResult) and r.vectors_written == 50
    r = client.vectors.add_batch([sluice.VectorEntity("x", vecs[0]), {"pk": "y", "vector": vecs[1].tolist()}], collection=coll, ack="fsync")
    assert r.vectors_written == 2
    assert client.vectors.search(vecs[7], 1, collection=coll)[0].pk in ("p7",)
    assert client.collections.get(coll).vectors + client.collections.get(coll).buffered >= 52
    with pytest.raises(sluice.BadRequest):
        client.vectors.add_batch([("bad", [1.0, 2.0])], collection=coll)  # wrong dimension


def test_buffered_seed_routes_http(client, coll):
    r = client.vectors.add_buffered("b1", [1, 0, 0, 0], {"k": 1}, collection=coll)
    assert isinstance(r, sluice.BufferedResult) and r.buffered and r.buffer_size >= 1
    assert client.vectors.get("b1", collection=coll).metadata == {"k": 1}
    client.vectors.update_buffered("b1", np.array([0, 1, 0, 0]), {"k": 2}, collection=coll)
    assert client.vectors.get("b1", collection=coll).metadata == {"k": 2}
    with pytest.raises(sluice.NotFound):
        client.vectors.update_buffered("nope", [1, 0, 0, 0], collection=coll)
    client.vectors.remove_buffered("b1", collection=coll)
    with pytest.raises(sluice.NotFound):
        client.vectors.get("b1", collection=coll)
    with pytest.raises(sluice.NotFound):
        client.vectors.remove_buffered("b1", collection=coll)


def test_buffered_seed_routes_wire_and_stats(client):
    # the wire protocol acts on collection "default" (dimension from its first insert: use 3)
    pk = uniq("w")
    client.vectors.add_buffered(pk, np.array([0.3, 0.2, 0.1]), {"via": "wire"}, transport="wire")
    assert client.vectors.get(pk).metadata == {"via": "wire"}
    client.vectors.update_buffered(pk, [0.1, 0.2, 0.3], {"via": "wire2"}, transport="wire")
    assert client.vectors.get(pk).metadata == {"via": "wire2"}
    st = client.vectors.get_buffer_stats()
    assert isinstance(st, sluice.VectorBufferStats) and st.vectors_buffered >= 2 and st.compression_type == "none"
    f = client.vectors.flush_buffer()
    assert isinstance(f, sluice.VectorFlushResult) and f.success
    client.vectors.remove_buffered(pk, transport="wire")
    with pytest.raises(sluice.NotFound):
        client.vectors.get(pk)
    with pytest.raises(sluice.NotFound):  # 0x03 entity_not_found is also NotFound
        client.vectors.remove_buffered(pk, transport="wire")
    with pytest.raises(ValueError):
        client.vectors.add_buffered("x", [1, 2, 3], collection="other", transport="wire")


def test_numpy_vectors_everywhere(client, coll):
    v = np.arange(4, dtype=np.float64) / 10
    client.vectors.add("n1", v, collection=coll)
    client.vectors.add_buffered("n2", v.astype(np.float32), collection=coll)
    client.vectors.add_batch([("n3", v[::-1].copy())], collection=coll)
    assert client.vectors.search(v, 2, collection=coll)[0].pk in ("n1", "n2")
    with pytest.raises(ValueError):
        client.vectors.add("bad", np.zeros((2, 2)), collection=coll)


DAY_MS = 86_400_000


def test_time_ttl_range_and_decay(client):
    import time as _time

    now = int(_time.time() * 1000)
    name = uniq("t")
    info = client.collections.create(name, 2, distance="l2", ttl_ms=3_600_000)
    assert info.ttl_ms == 3_600_000
    assert client.collections.get(name).ttl_ms == 3_600_000
    assert [c.ttl_ms for c in client.collections.list() if c.name == name] == [3_600_000]
    try:
        vs = client.vectors
        vs.add("old", [0.0, 0.0], {"k": "old"}, collection=name, timestamp_ms=now - 30 * DAY_MS)
        vs.add_batch(
            [
                sluice.VectorEntity("new", [0.5, 0.0], timestamp_ms=now),
                {"pk": "mid", "vector": [0.0, 2.0], "timestamp_ms": now - 2 * DAY_MS, "expires_at_ms": now + DAY_MS},
                ("gone", [0.1, 0.0], None, now, now - 1000),  # already expired
            ],
            collection=name,
        )
        vs.add_buffered("untimed", [3.0, 0.0], collection=name)
        vs.add_buffered("buf", [0.0, 3.0], collection=name, timestamp_ms=now - 3 * DAY_MS)
        vs.update_buffered("buf", [0.0, 3.5], collection=name, timestamp_ms=now - 4 * DAY_MS, expires_at_ms=now + 2 * DAY_MS)

        # the expired entity is gone from get and search at once
        with pytest.raises(sluice.NotFound):
            vs.get("gone", collection=name)
        assert "gone" not in [r.pk for r in vs.search([0.1, 0.0], 10, collection=name)]

        e = vs.get("mid", collection=name)
        assert (e.timestamp_ms, e.expires_at_ms) == (now - 2 * DAY_MS, now + DAY_MS)
        e = vs.get("old", collection=name)
        assert e.timestamp_ms == now - 30 * DAY_MS
        assert e.expires_at_ms is not None and now + 3_500_000 <= e.expires_at_ms <= now + 3_700_000  # the collection's ttl
        b = vs.get("buf", collection=name)
        assert (b.timestamp_ms, b.expires_at_ms) == (now - 4 * DAY_MS, now + 2 * DAY_MS)

        res = vs.search([0.0, 0.0], 10, collection=name)
        assert [r.pk for r in res] == ["old", "new", "mid", "untimed", "buf"]
        assert res[1].timestamp_ms == now and res[1].rank is None
        assert res[2].expires_at_ms == now + DAY_MS
        assert res[3].timestamp_ms is None

        # time_range, inclusive, either bound open; three spellings
        in_window = vs.search([0.0, 0.0], 10, collection=name, time_range=sluice.TimeRange(now - 5 * DAY_MS, now - DAY_MS))
        assert [r.pk for r in in_window] == ["mid", "buf"]
        assert [r.pk for r in vs.search([0.0, 0.0], 10, collection=name, time_range={"from_ms": now - 2 * DAY_MS})] == ["new", "mid"]
        assert [r.pk for r in vs.search([0.0, 0.0], 10, collection=name, time_range=(None, now - 30 * DAY_MS))] == ["old"]
        assert [r.pk for r in vs.search([0.0, 0.0], 10, collection=name, time_range=(now, now))] == ["new"]
        with pytest.raises(ValueError):
            vs.search([0.0, 0.0], 10, collection=name, time_range={"since": now})

        # decay: the far but recent entity outranks the near but old one
        d = vs.search([0.0, 0.0], 2, collection=name, decay=sluice.Decay(half_life_ms=DAY_MS, weight=0.3))
        assert [r.pk for r in d] == ["new", "old"]
        assert d[0].rank is not None and d[0].rank == pytest.approx(0.25 - 0.3, abs=1e-3)
        assert d[1].rank == pytest.approx(0.0, abs=1e-3)
        assert d[0].distance == pytest.approx(0.25, abs=1e-6)
        both = vs.search([0.0, 0.0], 10, collection=name, time_range=(now - 40 * DAY_MS, None), decay={"half_life_ms": DAY_MS, "weight": 0.3})
        assert [r.pk for r in both] == ["new", "old", "mid", "buf"]
        assert list(both.to_pandas().columns) == ["pk", "score", "distance", "metadata", "timestamp_ms", "expires_at_ms", "rank"]

        with pytest.raises(sluice.BadRequest) as ei:
            vs.search([0.0, 0.0], 2, collection=name, decay={"half_life_ms": 0, "weight": 0.3})
        assert ei.value.field is not None and ei.value.field.startswith("decay")
        with pytest.raises(ValueError):  # the wire protocol carries neither
            vs.search([0.0, 0.0], 2, collection=name, transport="wire", decay=sluice.Decay(DAY_MS, 0.3))
        with pytest.raises(ValueError):
            vs.add_buffered("w", [0.0, 0.0], transport="wire", timestamp_ms=now)
    finally:
        client.collections.delete(name)


async def test_time_ttl_range_and_decay_async(server):
    import time as _time

    now = int(_time.time() * 1000)
    name = uniq("ta")
    async with server.async_client() as c:
        assert (await c.collections.create(name, 2, distance="l2", ttl_ms=60_000)).ttl_ms == 60_000
        await c.vectors.add("old", [0.0, 0.0], collection=name, timestamp_ms=now - 30 * DAY_MS)
        await c.vectors.add("new", [0.5, 0.0], collection=name, timestamp_ms=now)
        await c.vectors.add_buffered("gone", [0.1, 0.0], collection=name, timestamp_ms=now, expires_at_ms=now - 1000)
        await c.vectors.update_buffered("new", [0.5, 0.0], collection=name, timestamp_ms=now, expires_at_ms=now + DAY_MS)
        with pytest.raises(sluice.NotFound):
            await c.vectors.get("gone", collection=name)
        assert (await c.vectors.get("new", collection=name)).expires_at_ms == now + DAY_MS
        res = await c.vectors.search([0.0, 0.0], 5, collection=name, time_range=sluice.TimeRange(to_ms=now - DAY_MS))
        assert [r.pk for r in res] == ["old"]
        res = await c.vectors.search([0.0, 0.0], 5, collection=name, decay=sluice.Decay(DAY_MS, 0.3))
        assert [r.pk for r in res] == ["new", "old"] and res[0].rank == pytest.approx(-0.05, abs=1e-3)
        assert (await c.collections.get(name)).ttl_ms == 60_000
        await c.collections.delete(name)


def test_with_series(client):
    import time as _time

    now = int(_time.time() * 1000)
    client.timeseries.put_batch([("cpu", "h1", v, now - 3000 + 1000 * i) for i, v in enumerate((1.0, 2.0, 3.0))])
    name = uniq("ws")
    client.collections.create(name, 2, distance="l2")
    try:
        vs = client.vectors
        vs.add("host", [0.0, 0.0], {"metric": "cpu", "entity": "h1"}, collection=name)
        vs.add("plain", [1.0, 0.0], collection=name)

        res = vs.search([0.0, 0.0], 10, collection=name, with_series=sluice.WithSeries("avg", 600_000))
        assert [r.pk for r in res] == ["host", "plain"]
        s = res[0].series
        assert isinstance(s, sluice.HitSeries)
        assert (s.metric, s.entity) == ("cpu", "h1")
        assert s.value == pytest.approx(2.0)
        assert s.to_ms - s.from_ms == 600_000 and now - 60_000 <= s.to_ms <= now + 60_000
        assert res[1].series is None
        assert list(res.to_pandas()["series_value"].iloc[:1]) == [pytest.approx(2.0)]

        # the dict form; a window holding no point is a null value, not a missing series
        res = vs.search([0.0, 0.0], 1, collection=name, with_series={"aggregation": "count", "window_ms": 1})
        assert res[0].series is not None and res[0].series.metric == "cpu" and res[0].series.value is None
        # without with_series no result has a series, and to_pandas has no series_value column
        plain = vs.search([0.0, 0.0], 10, collection=name)
        assert all(r.series is None for r in plain)
        assert "series_value" not in plain.to_pandas().columns

        with pytest.raises(sluice.BadRequest) as ei:
            vs.search([0.0, 0.0], 2, collection=name, with_series={"aggregation": "avg", "window_ms": 0})
        assert ei.value.field == "with_series.window_ms"
        with pytest.raises(ValueError):  # the wire protocol does not carry it
            vs.search([0.0, 0.0], 2, transport="wire", with_series=sluice.WithSeries("avg", 600_000))
    finally:
        client.collections.delete(name)


async def test_with_series_async(server):
    import time as _time

    now = int(_time.time() * 1000)
    name = uniq("wsa")
    async with server.async_client() as c:
        await c.timeseries.put_batch([("cpu", "h1", v, now - 3000 + 1000 * i) for i, v in enumerate((1.0, 2.0, 3.0))])
        await c.collections.create(name, 2, distance="l2")
        await c.vectors.add("host", [0.0, 0.0], {"metric": "cpu", "entity": "h1"}, collection=name)
        await c.vectors.add("plain", [1.0, 0.0], collection=name)
        res = await c.vectors.search([0.0, 0.0], 10, collection=name, with_series=sluice.WithSeries(aggregation="avg", window_ms=600_000))
        assert res[0].pk == "host" and res[0].series is not None
        assert (res[0].series.metric, res[0].series.entity) == ("cpu", "h1")
        assert res[0].series.value == pytest.approx(2.0)
        assert res[1].series is None
        await c.collections.delete(name)


def test_collections_export(client):
    name = uniq("ex")
    client.collections.create(name, 2)
    client.vectors.add_batch(
        [("c", [0.0, 1.0], {"n": 3}), ("a", [1.0, 0.0], {"n": 1, "tag": "x"}, 1_700_000_000_000), ("b", [0.5, 0.5])],
        collection=name,
    )
    with client.collections.export(name) as stream:
        got = list(stream)
    assert [e.pk for e in got] == ["a", "b", "c"]
    assert isinstance(got[0], sluice.VectorEntity)
    assert (got[0].vector, got[0].metadata, got[0].timestamp_ms) == ([1.0, 0.0], {"n": 1, "tag": "x"}, 1_700_000_000_000)
    raw = list(client.collections.export(name, raw=True))
    assert raw[0]["pk"] == "a" and raw[0]["timestamp_ms"] == 1_700_000_000_000
    with pytest.raises(sluice.NotFound) as e:
        list(client.collections.export(uniq("missing")))
    assert e.value.code == "collection_not_found" and e.value.error_id
    client.collections.delete(name)


async def test_collections_export_async(server):
    name = uniq("exa")
    async with server.async_client() as c:
        await c.collections.create(name, 2)
        await c.vectors.add_batch(
            [("c", [0.0, 1.0], {"n": 3}), ("a", [1.0, 0.0], {"n": 1, "tag": "x"}, 1_700_000_000_000), ("b", [0.5, 0.5])],
            collection=name,
        )
        async with c.collections.export(name) as stream:
            got = [e async for e in stream]
        assert [e.pk for e in got] == ["a", "b", "c"]
        assert (got[0].vector, got[0].metadata, got[0].timestamp_ms) == ([1.0, 0.0], {"n": 1, "tag": "x"}, 1_700_000_000_000)
        with pytest.raises(sluice.NotFound) as e:
            [x async for x in c.collections.export(uniq("missing"))]
        assert e.value.code == "collection_not_found" and e.value.error_id
        await c.collections.delete(name)
