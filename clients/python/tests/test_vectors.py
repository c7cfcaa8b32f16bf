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
