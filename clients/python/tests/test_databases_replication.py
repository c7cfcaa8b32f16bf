"""Databases, database scoping, changefeeds, replication, system routes."""

import threading
import time

import pytest

import sluice
from conftest import Server, uniq

T0 = 1_700_000_000_000


def test_system_routes(client):
    assert client.health() == {"status": "ok"}
    assert client.ready()["status"] == "ready"
    assert client.version()["name"] == "sluice"
    assert "wal_" in client.metrics()
    assert "/ts/put" in client.openapi()["paths"]


def test_databases_crud_and_scoping(client, server):
    name = uniq("db")
    rules = [{"after_ms": 7 * 86400000, "resolution_ms": 60000}, {"after_ms": 30 * 86400000, "resolution_ms": 3600000}]
    info = client.databases.create(name, retention_ms=0, downsampling=rules)
    assert isinstance(info, sluice.DatabaseInfo) and info.name == name and not info.has_policy
    assert info.downsampling == rules
    with pytest.raises(sluice.BadRequest) as bad:
        client.databases.create(uniq("db"), downsampling=[{"after_ms": 0, "resolution_ms": 1000}])
    assert bad.value.field == "downsampling[0].after_ms"
    assert name in [d.name for d in client.databases.list()]
    with pytest.raises(sluice.Conflict) as e:
        client.databases.create(name)
    assert e.value.code == "database_exists"
    db = client.database(name)
    m = uniq()
    db.timeseries.put(m, "e", 1.0, T0)
    db.timeseries.put_batch([(m, "e", 2.0, T0 + 1)])
    db.timeseries.put_buffered(m, "e", 3.0, T0 + 2)
    db.timeseries.write_lines(f"{m},entity=e value=4 {T0 + 3}", precision="ms")
    db.timeseries.write_lines(f"{m},entity=e value=5 {T0 + 4}", precision="ms", api="v2")
    assert db.timeseries.query(m)[0].values == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert len(list(db.timeseries.export(m))) == 5
    assert client.timeseries.query(m).series == []  # not in default
    assert db.timeseries.get_buffer_stats().points_buffered >= 1
    assert db.timeseries.flush_buffer().success
    scoped = server.client(database=name)
    assert scoped.timeseries.query(m)[0].values == [1.0, 2.0, 3.0, 4.0, 5.0]
    c = uniq("c")
    db.collections.create(c, 2)
    assert [x.name for x in db.collections.list()] == [c]
    db.vectors.add("a", [1.0, 0.0], collection=c)
    db.vectors.add_batch([("b", [0.0, 1.0])], collection=c)
    db.vectors.add_buffered("c", [0.5, 0.5], collection=c)
    db.vectors.update_buffered("c", [0.6, 0.4], collection=c)
    assert db.vectors.search([1.0, 0.1], 1, collection=c)[0].pk == "a"
    assert db.vectors.get("b", collection=c).vector == [0.0, 1.0]
    db.vectors.remove_buffered("c", collection=c)
    db.vectors.delete("b", collection=c)
    assert db.vectors.get_buffer_stats().vectors_buffered >= 1
    assert db.vectors.flush_buffer().success
    assert db.collections.get(c).name == c
    db.collections.delete(c)
    with pytest.raises(ValueError):  # the wire protocol serves database default only
        db.timeseries.put_buffered(m, "e", 1.0, transport="wire")
    with pytest.raises(ValueError):
        db.timeseries.batch_writer(transport="wire")
    assert db.delete() is True
    with pytest.raises(sluice.NotFound) as e:
        client.databases.delete(name)
    assert e.value.code == "database_not_found"
    with pytest.raises(sluice.NotFound):
        client.database(name).timeseries.query(m)
    with pytest.raises(sluice.Conflict):
        client.databases.delete("default")
    with pytest.raises(sluice.BadRequest) as e:
        client.databases.create("Bad Name")
    assert e.value.field == "name"


def test_changefeed_from_lsn_resume_and_last_event_id(client):
    name = uniq("feed")
    client.databases.create(name)
    db = client.database(name)
    try:
        for i in range(5):
            db.timeseries.put("m", "e", float(i), T0 + i)
        feed = db.changes(from_lsn=0, idle_timeout=1.0)
        events = []
        for ev in feed:
            events.append(ev)
            if len(events) == 3:
                break
        assert [e.id for e in events] == [1, 2, 3] and feed.last_lsn == 3
        assert events[0].event == "points" and events[0].data["points"][0]["value"] == 0.0
        feed.close()
        # resume after the last LSN seen: nothing missed, nothing repeated
        rest = list(db.changes(from_lsn=feed.last_lsn, idle_timeout=0.5))
        assert [e.id for e in rest] == [4, 5]
        # Last-Event-ID semantics
        again = list(db.changes(last_event_id=4, idle_timeout=0.5))
        assert [e.id for e in again] == [5]
        # live: a feed without a position starts at the next record written
        got = []

        def consume():
            for ev in db.changes(idle_timeout=3.0):
                got.append(ev)
                break

        t = threading.Thread(target=consume)
        t.start()
        time.sleep(0.5)
        db.vectors  # noqa: B018
        db.collections.create("cc", 2)
        t.join(10)
        assert got and got[0].event == "collection" and got[0].id == 6
        with pytest.raises(sluice.BadRequest):
            list(db.changes(last_event_id="abc", idle_timeout=0.5))
    finally:
        client.databases.delete(name)


def test_default_database_changefeed(client):
    m = uniq()
    r = client.timeseries.put(m, "e", 1.0, T0)
    evs = list(client.changes(from_lsn=r.lsn - 1, idle_timeout=0.5))
    assert evs[0].id == r.lsn and evs[0].data["points"][0]["metric"] == m


def test_replication_stats_config_and_replicas(client):
    st = client.replication.get_replication_stats()
    assert isinstance(st, sluice.ReplicationStats) and st.role == "primary" and st.epoch >= 1
    cfg = client.replication.configure_compression("zstd", 5)
    assert isinstance(cfg, sluice.ReplicationConfig) and cfg.level == 5
    assert client.replication.configure_compression("none").compression_type == "none"
    client.replication.configure_compression("zstd", 3)
    with pytest.raises(sluice.BadRequest) as e:
        client.replication.configure_compression("lz4", 1)
    assert e.value.field == "compression_type"
    with pytest.raises(sluice.Conflict) as e:
        client.replication.promote()
    assert e.value.code == "already_primary"
    with pytest.raises(sluice.NotFound):
        client.replication.remove_replica(uniq("r"))


def test_replica_shipping_and_promotion(server):
    """A real replica: register it, see a write arrive, promote it."""
    replica = Server("replica", args=["--role", "replica"]).start()
    primary = server.client()
    rc = replica.client()
    rid = uniq("r")
    try:
        info = primary.replication.add_replica(rid, replica.url)
        assert isinstance(info, sluice.ReplicaInfo) and info.replica_id == rid
        assert primary.replication.add_replica(rid, replica.url).endpoint == replica.url  # idempotent
        with pytest.raises(sluice.Conflict):
            primary.replication.add_replica(rid, "http://127.0.0.1:9")
        assert rid in [r.replica_id for r in primary.replication.list_replicas()]
        m = uniq()
        primary.timeseries.put(m, "e", 42.0, T0)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            s = rc.timeseries.query(m)
            if s.series:
                break
            time.sleep(0.2)
        assert rc.timeseries.query(m)[0].values == [42.0]
        with pytest.raises(sluice.Conflict) as e:
            rc.timeseries.put(m, "e", 1.0, T0)
        assert e.value.code == "read_only_replica"
        assert rc.replication.get_replication_stats().role == "replica"
        pr = rc.replication.promote()
        assert isinstance(pr, sluice.PromoteResult) and pr.role == "primary" and pr.epoch >= 2
        rc.timeseries.put(m, "e", 43.0, T0 + 1)
        assert primary.replication.remove_replica(rid) is True
    finally:
        primary.close()
        rc.close()
        replica.stop()
