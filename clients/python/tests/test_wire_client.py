"""The blocking WireClient against a real server, and the changefeed's resume logic."""

import time

import httpx
import pytest

import sluice
from sluice import wire
from conftest import uniq

T0 = 1_700_000_000_000


def test_wire_client_every_method(client):
    m = uniq()
    with client.wire() as w:
        assert w.connected
        assert w.put_buffered(m, "e", 1.0, T0, {"k": "v"}) >= 1
        assert w.put_buffered_batch([(m, "e", 2.0, T0 + 1), sluice.Point(m, "e", 3.0, T0 + 2)]) >= 2
        lsn = w.put(m, "e", 4.0, T0 + 3)
        assert w.put_batch([{"metric": m, "entity": "e", "value": 5.0, "timestamp_ms": T0 + 4}]) > lsn
        before = int(time.time() * 1000)
        w.put_buffered(m, "now", 6.0)  # timestamp i64::MIN: the server's receive time
        st = w.get_buffer_stats()
        assert isinstance(st, sluice.BufferStats) and st.points_buffered >= 5
        assert w.flush_buffer().success
        pk = uniq("v")
        assert w.add_buffered(pk, [1.0, 2.0, 3.0], {"a": 1}) >= 1
        w.add_buffered_batch([(pk + "b", [1.0, 2.0, 3.0]), (pk + "c", [3.0, 2.0, 1.0], {"c": True})])
        w.update_buffered(pk, [1.0, 2.0, 4.0], {"a": 2})
        w.update_buffered_batch([(pk + "b", [1.0, 2.0, 4.0])])
        assert client.vectors.get(pk).metadata == {"a": 2}
        w.remove_buffered(pk)
        w.remove_buffered_batch([pk + "b", pk + "c"])
        with pytest.raises(sluice.NotFound):
            client.vectors.get(pk + "c")
        assert w.get_vector_buffer_stats().vectors_buffered >= 3
        assert w.flush_vector_buffer().success
        assert w.get_replication_stats().role == "primary"
        assert w.configure_compression("zstd", 4).level == 4
        client.replication.configure_compression("zstd", 3)
        w.auth("anything")  # dev mode: accepted and ignored
    assert not w.connected
    res = client.timeseries.query(m, entity="e")
    assert sorted(p.value for p in res.points()) == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert {str(s.tags) for s in res} == {"{}", "{'k': 'v'}"}
    ((ts, v),) = client.timeseries.query(m, entity="now")[0].points
    assert v == 6.0 and abs(ts - before) < 60_000


def test_connect_failure_is_a_transport_error():
    w = wire.WireClient("127.0.0.1", 1, retry=sluice.RetryPolicy(max_retries=1, initial_backoff=0.001))
    with pytest.raises(sluice.TransportError) as e:
        w.get_buffer_stats()
    assert not e.value.maybe_applied


def sse_client(streams):
    requests = []

    def handler(request):
        requests.append(request)
        body = streams[min(len(requests) - 1, len(streams) - 1)]
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body.encode())

    return sluice.Client("http://fake", transport=httpx.MockTransport(handler)), requests


def ev(i, name="points"):
    return f': comment\nid: {i}\nevent: {name}\ndata: {{"lsn": {i},\ndata:  "points": []}}\n\n'


def test_changefeed_reconnects_after_last_id():
    c, reqs = sse_client([ev(1) + ev(2), ev(3), ""])
    feed = c.database("db").changes(from_lsn=0, max_reconnects=2)
    ids = [e.id for e in feed]
    assert ids == [1, 2, 3]
    assert [r.url.params.get("from_lsn") for r in reqs] == ["0", "2", "3"]
    assert feed.last_lsn == 3


def test_changefeed_last_event_id_header_and_error_event():
    c, reqs = sse_client([ev(5) + 'id: 6\nevent: error\ndata: {"error":"gone","code":"database_replaced","error_id":"x"}\n\n'])
    feed = c.database("db").changes(last_event_id=4, reconnect=False)
    assert next(feed).id == 5
    with pytest.raises(sluice.ChangefeedError) as e:
        next(feed)
    assert e.value.code == "database_replaced"
    assert reqs[0].headers["last-event-id"] == "4" and "from_lsn" not in reqs[0].url.params


def test_sse_parser_rules():
    from sluice._http import SSEParser

    p = SSEParser()
    assert p.feed(":x") is None and p.feed("data:a") is None and p.feed("data: b") is None
    assert p.feed("") == (None, "message", "a\nb")
    assert p.feed("") is None
