"""Error mapping and retries: real servers (dev, tokens, overflowing buffers) and local fakes
for the pure retry logic (httpx MockTransport, a fake wire server)."""

import socket
import struct
import threading
import time

import httpx
import pytest

import sluice
from sluice import wire
from conftest import ADMIN_TOKEN, READER_TOKEN, WRITER_TOKEN, settle, uniq

T0 = 1_700_000_000_000
FAST = sluice.RetryPolicy(max_retries=50, initial_backoff=0.01, max_backoff=0.05)


# ---- mapping against a real server ----------------------------------------------------------


def test_400_with_field(client):
    with pytest.raises(sluice.BadRequest) as e:
        client.timeseries.put_batch([("m", "e", 1.0, T0), ("m" * 300, "e", 2.0, T0)])
    err = e.value
    assert err.status == 400 and err.code == "invalid_field" and err.field.startswith("points[1]")
    assert err.error_id and err.error_id in str(err)
    with pytest.raises(sluice.BadRequest) as e:
        client.vectors.search([1.0], k=100000)
    assert e.value.status == 400


def test_401_403_and_tokens(auth_server):
    with auth_server.client() as anon:
        with pytest.raises(sluice.Unauthorized) as e:
            anon.timeseries.get_buffer_stats()
        assert e.value.status == 401 and e.value.code == "unauthenticated"
        assert anon.health()["status"] == "ok"  # public
    with auth_server.client("wrong-token-xxxxxxxxxxxx") as bad:
        with pytest.raises(sluice.Unauthorized):
            bad.databases.list()
    with auth_server.client(READER_TOKEN) as reader:
        assert reader.timeseries.get_buffer_stats().points_buffered >= 0
        with pytest.raises(sluice.Forbidden) as e:
            reader.timeseries.flush_buffer()
        assert e.value.status == 403 and e.value.code == "forbidden"
        with pytest.raises(sluice.Forbidden):
            reader.timeseries.put("m", "e", 1.0, T0)
    with auth_server.client(WRITER_TOKEN) as writer:
        assert writer.timeseries.put(uniq(), "e", 1.0, T0).success
        with pytest.raises(sluice.Forbidden):
            writer.databases.create(uniq("db"))
    with auth_server.client(ADMIN_TOKEN) as admin:
        name = uniq("db")
        admin.databases.create(name)
        admin.databases.delete(name)
        m = uniq()
        admin.timeseries.put_buffered(m, "e", 1.0, T0, transport="wire")
        with admin.timeseries.batch_writer(transport="wire") as w:
            w.put(m, "e", 2.0, T0 + 1)
        assert admin.timeseries.query(m)[0].values == [1.0, 2.0]
        assert list(admin.changes(from_lsn=0, idle_timeout=0.3))


def test_wire_auth_errors(auth_server):
    host, port = auth_server.wire_host_port
    with wire.WireClient(host, port) as w:  # no AUTH: every frame answered 0x05
        with pytest.raises(sluice.WireUnauthorized) as e:
            w.get_buffer_stats()
        assert isinstance(e.value, sluice.Unauthorized) and e.value.status == 401 and e.value.wire_status == 5
    with pytest.raises(sluice.Unauthorized):
        wire.WireClient(host, port, "wrong-token-xxxxxxxxxxxx").connect()
    with wire.WireClient(host, port, READER_TOKEN) as w:
        assert w.get_buffer_stats().points_buffered >= 0
        with pytest.raises(sluice.WireForbidden) as e:
            w.flush_buffer()
        assert isinstance(e.value, sluice.Forbidden) and e.value.status == 403
        w.auth(ADMIN_TOKEN)  # re-authenticate the same connection
        assert w.flush_buffer().success


def test_wire_error_frames_keep_the_connection(server):
    host, port = server.wire_host_port
    with wire.WireClient(host, port) as w:
        with pytest.raises(sluice.WireInvalidOpcode):
            w.call(wire.encode_frame(0x55))
        with pytest.raises(sluice.WireMalformed) as e:
            w.call(wire.encode_frame(0x70, b"\x01"))
        assert e.value.code == "malformed_payload" and isinstance(e.value, sluice.BadRequest)
        with pytest.raises(sluice.WireBadRequest) as e:  # 0x03 invalid value, with the field
            w.put_buffered_batch([("m", "e", 1.0, T0), ("m" * 300, "e", 1.0, T0)])
        assert e.value.wire_status == 3 and e.value.field == "points[1].metric"
        with pytest.raises(sluice.WireNotFound):
            w.update_buffered(uniq(), [1.0, 2.0, 3.0])
        # a pipeline: answers in order, errors in place, the connection still usable
        res = w.pipeline([wire.encode_ts_put([("pm", "e", 1.0, T0)]), wire.encode_frame(0x55), wire.encode_frame(0x71)])
        assert isinstance(res[0], bytes) and isinstance(res[1], sluice.WireInvalidOpcode) and b"points_buffered" in res[2]
        assert w.put(uniq(), "e", 1.0, T0) > 0
        assert w.put_batch([(uniq(), "e", 1.0, T0)]) > 0
        assert w.get_replication_stats().role == "primary"


def test_too_large_wire_frame_closes_and_reconnects(server):
    host, port = server.wire_host_port
    with wire.WireClient(host, port, retry=sluice.RetryPolicy.none()) as w:
        big = wire.encode_frame(0x70, b"\x00" * 16, 0)[:2] + struct.pack("<I", 64 << 20)
        with pytest.raises((sluice.WireMalformed, sluice.TransportError)):
            w.call(big)
        w.close()
        assert w.get_buffer_stats() is not None  # the next call reconnects


# ---- 503 with Retry-After against a real overflowing buffer ---------------------------------


def _bursts(c, m, rounds=10, threads=4, size=2000):
    """Concurrent batches (the buffer flushes between sequential ones): the server refuses some."""
    import concurrent.futures as cf

    def one(b):
        c.timeseries.put_batch([(m, "e", float(i), T0 + b * size + i) for i in range(size)], ack="buffer")

    with cf.ThreadPoolExecutor(threads) as ex:
        for r in range(rounds):
            for f in [ex.submit(one, r * threads + k) for k in range(threads)]:
                f.result()
    return rounds * threads * size


def test_real_503_buffer_overflow_mapping_and_retry(full_server):
    m = uniq()
    with full_server.client(retry=sluice.RetryPolicy.none()) as c:
        with pytest.raises(sluice.BufferOverflow) as e:
            _bursts(c, m, rounds=20)
        err = e.value
        assert isinstance(err, sluice.Unavailable) and err.status == 503 and err.code == "buffer_overflow"
        assert err.retry_after == 1.0 and err.buffer_size is not None and err.body["success"] is False
    # the default policy honours Retry-After (1 s) and gets everything through
    m = uniq()
    with full_server.client() as c:
        t = time.monotonic()
        n = _bursts(c, m, rounds=3)
        assert c._http.refusals > 0
        assert time.monotonic() - t >= 0.9  # waited for Retry-After
        assert len(settle(lambda: c.timeseries.query(m)[0], lambda s: len(s) == n)) == n


def test_real_wire_0x04_is_retried(full_server):
    host, port = full_server.wire_host_port
    m = uniq()
    frames = [wire.encode_ts_put([(m, "e", float(i), T0 + b * 2000 + i) for i in range(2000)]) for b in range(6)]
    with wire.WireClient(host, port, retry=sluice.RetryPolicy.none()) as w:
        res = w.pipeline(frames)
        refused = [r for r in res if isinstance(r, sluice.WireBufferOverflow)]
        assert refused and refused[0].retry_after == 1.0 and refused[0].status == 503
    with wire.WireClient(host, port, retry=FAST) as w:
        for f in frames:
            w.call(f)
    with full_server.client() as c:
        assert len(settle(lambda: c.timeseries.query(m)[0], lambda s: len(s) == 12000)) == 12000


# ---- pure retry logic with a fake HTTP server -------------------------------------------------


def mock_client(responses, **kw):
    calls = []

    def handler(request):
        calls.append(request)
        r = responses[min(len(calls) - 1, len(responses) - 1)]
        if isinstance(r, Exception):
            raise r
        return r

    return sluice.Client("http://fake", transport=httpx.MockTransport(handler), **kw), calls


def err(status, code, headers=None, **extra):
    return httpx.Response(status, headers=headers, json={"error": code, "code": code, "error_id": "x", **extra})


def test_retry_after_is_honoured():
    c, calls = mock_client([err(503, "wal_queue_full", {"Retry-After": "1"}), httpx.Response(200, json={"success": True, "lsn": 9})])
    t = time.monotonic()
    assert c.timeseries.put("m", "e", 1.0, 5).lsn == 9
    assert 0.9 <= time.monotonic() - t < 3
    assert len(calls) == 2


def test_429_retried_with_backoff_then_exhausted():
    c, calls = mock_client([err(429, "rate_limited")], retry=sluice.RetryPolicy(max_retries=3, initial_backoff=0.001))
    with pytest.raises(sluice.TooManyRequests) as e:
        c.timeseries.get_buffer_stats()
    assert len(calls) == 4 and e.value.attempts == 4


def test_non_refusals_are_not_retried():
    for status, cls in ((400, sluice.BadRequest), (404, sluice.NotFound), (409, sluice.Conflict), (500, sluice.ServerError), (410, sluice.Gone), (422, sluice.Unprocessable), (413, sluice.PayloadTooLarge)):
        c, calls = mock_client([err(status, "x", field="f")])
        with pytest.raises(cls) as e:
            c.vectors.get("pk")
        assert len(calls) == 1 and e.value.status == status and e.value.field == "f"
    c, calls = mock_client([err(503, "config_drift")], retry=FAST)
    with pytest.raises(sluice.Unavailable):
        c.databases.create("x")
    assert len(calls) == 1  # a hand-edited catalogue does not heal by waiting
    c, calls = mock_client([httpx.Response(502, text="bad gateway")])
    with pytest.raises(sluice.ServerError) as e:
        c.health()
    assert e.value.code == "http_error"


def test_lost_answers_resent_only_when_idempotent():
    lost = httpx.ReadTimeout("lost")
    ok_put = httpx.Response(200, json={"success": True, "lsn": 1})
    # a point with a timestamp: sending it twice is the same as once
    c, calls = mock_client([lost, ok_put], retry=FAST)
    assert c.timeseries.put("m", "e", 1.0, 5).lsn == 1 and len(calls) == 2
    # without one the server stamps its receive time: a re-send would duplicate the point
    c, calls = mock_client([lost, ok_put], retry=FAST)
    with pytest.raises(sluice.TransportError) as e:
        c.timeseries.put("m", "e", 1.0)
    assert e.value.maybe_applied and len(calls) == 1
    # creates, deletes and removes are never re-sent after a lost answer
    for call in (lambda c: c.collections.create("c", 3), lambda c: c.vectors.delete("p"), lambda c: c.vectors.remove_buffered("p"), lambda c: c.databases.delete("d"), lambda c: c.replication.promote(), lambda c: c.timeseries.write_lines("m value=1"), lambda c: c.timeseries.delete("m", 0, 1)):
        c, calls = mock_client([lost, httpx.Response(200, json={"success": True})], retry=FAST)
        with pytest.raises(sluice.TransportError):
            call(c)
        assert len(calls) == 1
    # a connection never made is always retried
    c, calls = mock_client([httpx.ConnectError("refused"), httpx.Response(200, json={"success": True, "lsn": 2})], retry=FAST)
    assert c.timeseries.put("m", "e", 1.0).lsn == 2 and len(calls) == 2


def test_retry_after_capped_by_policy_and_http_date():
    from sluice._core import parse_retry_after

    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert parse_retry_after("soon") is None
    p = sluice.RetryPolicy(max_backoff=2.0)
    assert p.wait(1, 60.0) == 2.0
    assert p.wait(1, None) <= 0.0625
    assert p.wait(40, None) == 2.0


# ---- pure retry logic with a fake wire server -------------------------------------------------


class FakeWire:
    """A wire server answering from a script: ``script(frame_index, opcode) -> (status, payload)``."""

    def __init__(self, script):
        self.script = script
        self.frames = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.stop = False
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def handle(self, conn):
        f = conn.makefile("rb")
        try:
            while True:
                head = f.read(6)
                if len(head) < 6:
                    return
                op, flags, n = struct.unpack("<BBI", head)
                payload = f.read(n)
                self.frames.append((op, payload))
                r = self.script(len(self.frames) - 1, op, payload)
                if r is None:
                    conn.close()
                    return
                status, body = r
                conn.sendall(struct.pack("<BBI", status, 0, len(body)) + body)
        except OSError:
            return

    def close(self):
        self.stop = True
        self.sock.close()


OK8 = (0, struct.pack("<Q", 1))
REFUSED = (4, b'{"error":"Buffer overflow","code":"buffer_overflow","error_id":"x","retry_after_sec":0,"buffer_size":5}')


def test_wire_refused_suffix_is_resent_in_order():
    # frames 0,1 ok; 2,3 refused once; then everything ok
    def script(i, op, payload):
        return REFUSED if i in (2, 3) else OK8

    fake = FakeWire(script)
    try:
        w = wire.WireClient("127.0.0.1", fake.port, retry=FAST)
        frames = [wire.encode_ts_put([("m", "e", float(k), k)]) for k in range(4)]
        res = w.pipeline(frames)
        assert all(isinstance(r, bytes) for r in res)
        sent = [wire.decode_ts_items(p, 0)[0].value for _, p in fake.frames]
        assert sent == [0.0, 1.0, 2.0, 3.0, 2.0, 3.0]  # only the refused suffix, in order
        w.close()
    finally:
        fake.close()


def test_wire_refusal_followed_by_applied_frame_is_not_resent():
    def script(i, op, payload):
        return REFUSED if i == 1 else OK8

    fake = FakeWire(script)
    try:
        w = wire.WireClient("127.0.0.1", fake.port, retry=FAST)
        frames = [wire.encode_ts_put([("m", "e", float(k), k)]) for k in range(3)]
        res = w.pipeline(frames)
        assert isinstance(res[1], sluice.WireBufferOverflow) and isinstance(res[2], bytes)
        assert len(fake.frames) == 3  # re-sending frame 1 after frame 2 would reorder writes
        w.close()
    finally:
        fake.close()


def test_wire_lost_answer_resent_only_when_idempotent():
    state = {"dropped": 0}

    def script(i, op, payload):
        if state["dropped"] == 0:
            state["dropped"] = 1
            return None  # close without answering
        return OK8

    fake = FakeWire(script)
    try:
        w = wire.WireClient("127.0.0.1", fake.port, retry=FAST)
        assert w.put_buffered("m", "e", 1.0, 5) == 1  # has a timestamp: re-sent on a new connection
        assert len(fake.frames) == 2
        state["dropped"] = 0
        with pytest.raises(sluice.TransportError) as e:
            w.put_buffered("m", "e", 1.0)  # server time: not re-sent
        assert e.value.maybe_applied and len(fake.frames) == 3
        state["dropped"] = 0
        with pytest.raises(sluice.TransportError):
            w.remove_buffered("pk")
        assert len(fake.frames) == 4
        w.close()
    finally:
        fake.close()


def test_wire_too_many_requests_retried_then_reported():
    body = b'{"error":"rate limited","code":"rate_limited","error_id":"x","retry_after_sec":0}'
    fake = FakeWire(lambda i, op, p: (7, body))
    try:
        w = wire.WireClient("127.0.0.1", fake.port, retry=sluice.RetryPolicy(max_retries=2, initial_backoff=0.001))
        with pytest.raises(sluice.WireTooManyRequests) as e:
            w.get_buffer_stats()
        assert isinstance(e.value, sluice.TooManyRequests) and e.value.status == 429 and e.value.attempts == 3
        assert len(fake.frames) == 3
        w.close()
    finally:
        fake.close()


@pytest.fixture(scope="module")
def limited_server():
    from conftest import Server

    s = Server("ratelimited", env={"SLUICE_ADMISSION_RATE_LIMIT_PER_SEC": "20", "SLUICE_ADMISSION_RATE_LIMIT_BURST": "5"}).start()
    yield s
    s.stop()


def test_real_429_rate_limit_http_and_wire(limited_server):
    with limited_server.client(retry=sluice.RetryPolicy.none()) as c:
        with pytest.raises(sluice.TooManyRequests) as e:
            for _ in range(200):
                c.timeseries.get_buffer_stats()
        assert e.value.status == 429 and e.value.code == "rate_limited" and e.value.retry_after >= 1
    time.sleep(1.0)
    with limited_server.client() as c:  # the default policy waits Retry-After and gets through
        for _ in range(12):
            c.timeseries.get_buffer_stats()
        assert c._http.refusals > 0
    time.sleep(1.0)
    host, port = limited_server.wire_host_port
    frames = [wire.encode_frame(wire.Opcode.TS_BUFFER_STATS)] * 10
    with wire.WireClient(host, port, retry=sluice.RetryPolicy.none()) as w:
        res = w.pipeline(frames)
        refused = [r for r in res if isinstance(r, sluice.WireTooManyRequests)]
        assert refused and refused[0].retry_after == 1.0 and refused[0].code == "rate_limited"
    time.sleep(1.0)
    with wire.WireClient(host, port, retry=sluice.RetryPolicy(max_retries=20)) as w:
        res = w.pipeline(frames)  # refused suffixes re-sent after retry_after_sec
        assert all(isinstance(r, bytes) for r in res) and w.refusals > 0
