"""Auto-batching writers: ``client.timeseries.batch_writer(...)`` and
``client.vectors.batch_writer(...)``.

A writer gathers writes into batches in memory and sends them from a background thread (an
asyncio task for :class:`~sluice.AsyncClient`), over HTTP or the binary wire protocol:

* a batch is sent when it holds ``max_points`` points (``max_ops`` operations), ``max_bytes``
  encoded bytes, or when its oldest write is ``flush_interval_ms`` old;
* the queue is bounded (``max_queue_points``): when it is full, ``put()`` blocks until the
  background sender frees room (``on_full="block"``, at most ``block_timeout`` seconds) or
  raises :class:`~sluice.QueueFull` (``on_full="raise"``);
* exactly one batch is in flight per writer, so batches reach the server in the order of the
  writes: per series, the last write of a timestamp wins as if the writes had been sent one by
  one;
* refusals that mean "nothing done" (HTTP 429/503, wire ``0x04``/``0x07``) are retried after
  ``Retry-After`` (else an exponential backoff) per ``retry``; a batch whose answer was lost
  is re-sent only if it is idempotent (every point has a timestamp: the default stamps points
  with the client's clock at ``put()`` time), so nothing is duplicated;
* a batch that still fails is reported: ``on_error(failure)`` is called from the sender with a
  :class:`WriteFailure` (its ``error`` and its ``points``/``ops``), and :meth:`errors` lists
  every failure. ``close()`` (or leaving the ``with`` block) sends everything still queued,
  waits for it, and raises :class:`~sluice.BatchWriteError` if a batch failed and no
  ``on_error`` was given.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import struct
import threading
import time
from time import monotonic, time_ns
from typing import Any, Callable, Deque, Dict, List, Mapping, Optional, Tuple

from ._core import Req, check_ack, to_ms, to_value
from .errors import BatchWriteError, QueueFull, SluiceError, TransportError
from .retry import RetryPolicy
from .wire import (
    FLAG_BATCH,
    TIMESTAMP_NOW,
    AsyncWireClient,
    Opcode,
    SeriesCache,
    WireClient,
    decode_ts_items,
    decode_vector_items,
    encode_frame,
    vector_bytes,
)

__all__ = [
    "TimeSeriesBatchWriter",
    "VectorBatchWriter",
    "AsyncTimeSeriesBatchWriter",
    "AsyncVectorBatchWriter",
    "WriteFailure",
    "DEFAULT_WRITER_RETRY",
]

log = logging.getLogger("sluice.batch")

DEFAULT_WRITER_RETRY = RetryPolicy(max_retries=30, initial_backoff=0.05, max_backoff=5.0, max_elapsed=120.0)
"""Writers retry refusals longer than single calls: up to 30 times / 120 s of waiting."""

_TV = struct.Struct("<qd")
_pack = _TV.pack
_U32 = struct.Struct("<I")
_MAXF = 1.7976931348623157e308


class WriteFailure:
    """A batch (or a run of vector operations) that could not be written.

    Attributes:
        error: the :class:`~sluice.SluiceError` of the last attempt.
        count: how many points / operations it held.
        kind: ``"points"``, or the vector operation: ``"add"``, ``"update"``, ``"remove"``.
    """

    def __init__(self, error: SluiceError, count: int, kind: str, payload: Any, transport: str) -> None:
        self.error = error
        self.count = count
        self.kind = kind
        self._payload = payload
        self._transport = transport

    @property
    def points(self) -> List[Any]:
        """The refused points as :class:`~sluice.Point` objects (time series)."""
        if self.kind != "points":
            return []
        if self._transport == "wire":
            return decode_ts_items(self._payload, FLAG_BATCH)
        from .models import Point

        out = []
        for d in json.loads(self._payload)["points"]:
            out.append(Point(d["metric"], d["entity"], d["value"], d.get("timestamp_ms"), d.get("tags") or {}))
        return out

    @property
    def ops(self) -> List[Any]:
        """The refused vector operations as :class:`~sluice.VectorEntity` objects (for
        removes, entities without vectors)."""
        if self.kind == "points":
            return []
        from .models import VectorEntity

        if self._transport == "wire":
            return decode_vector_items(self._payload, FLAG_BATCH, remove=self.kind == "remove")
        return [VectorEntity(d["pk"], d.get("vector"), d.get("metadata")) for d in self._payload]

    def __repr__(self) -> str:
        return f"WriteFailure(kind={self.kind!r}, count={self.count}, error={self.error!s})"


class _Batch:
    __slots__ = ("payload", "count", "idempotent", "seq")

    def __init__(self, payload: Any, count: int, idempotent: bool, seq: int) -> None:
        self.payload = payload
        self.count = count
        self.idempotent = idempotent
        self.seq = seq


def _check(max_points: int, max_bytes: int, flush_interval_ms: float, on_full: str, transport: str) -> None:
    if max_points < 1 or max_bytes < 1024:
        raise ValueError("max_points must be >= 1 and max_bytes >= 1024")
    if flush_interval_ms <= 0:
        raise ValueError("flush_interval_ms must be > 0")
    if on_full not in ("block", "raise"):
        raise ValueError("on_full must be 'block' or 'raise'")
    if transport not in ("http", "wire"):
        raise ValueError("transport must be 'http' or 'wire'")


class _Reporting:
    """Failure bookkeeping shared by every writer."""

    _failures: List[WriteFailure]
    on_error: Optional[Callable[[WriteFailure], Any]]

    def _report(self, f: WriteFailure) -> None:
        self._failures.append(f)
        log.warning("batch writer: %d %s not written: %s", f.count, "points" if f.kind == "points" else "operations", f.error)
        if self.on_error is not None:
            try:
                self.on_error(f)
            except Exception:  # a callback's bug must not kill the sender
                log.exception("batch writer: on_error callback failed")

    def errors(self) -> List[WriteFailure]:
        """Every failure so far (batches not written after their retries)."""
        return list(self._failures)


def _series_json(metric: str, entity: str, tags: Optional[Mapping[str, str]]) -> Tuple[str, str]:
    if not isinstance(metric, str) or not isinstance(entity, str):
        raise TypeError("metric and entity must be strings")
    head = '{"metric":' + json.dumps(metric) + ',"entity":' + json.dumps(entity)
    if tags:
        for k, v in tags.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise TypeError("tags must map strings to strings")
        head += ',"tags":' + json.dumps(dict(tags), separators=(",", ":"))
    return head + ',"timestamp_ms":', head + ","


class _TsCore(_Reporting):
    """Encoding and queue accounting shared by the sync and async time-series writers. Points
    are encoded at ``put()`` into the current batch (wire items or JSON text)."""

    def _setup(
        self,
        transport: str,
        ack: str,
        max_points: int,
        max_bytes: int,
        flush_interval_ms: float,
        max_queue_points: Optional[int],
        on_full: str,
        on_error: Optional[Callable[[WriteFailure], Any]],
        timestamps: str,
    ) -> None:
        _check(max_points, max_bytes, flush_interval_ms, on_full, transport)
        check_ack(ack)
        if timestamps not in ("client", "server"):
            raise ValueError("timestamps must be 'client' or 'server'")
        self.transport = transport
        self.ack = ack
        self.max_points = max_points
        self.max_bytes = max_bytes
        self.flush_interval = flush_interval_ms / 1000.0
        self.max_queue_points = max_queue_points or max(4 * max_points, 10_000)
        if self.max_queue_points < max_points:
            raise ValueError("max_queue_points must be >= max_points")
        self.on_full = on_full
        self.on_error = on_error
        self._server_ts = timestamps == "server"
        self._failures: List[WriteFailure] = []
        self._series = SeriesCache(1_000_000)
        self._json_series: Dict[Any, Tuple[str, str]] = {}
        self._sealed: Deque[_Batch] = collections.deque()
        self._n = 0  # points in the current batch
        self._nb = 0  # its bytes (http)
        self._t0 = 0.0  # monotonic time of its first point
        self._now_in_batch = False
        self._queued = 0  # points in the current, sealed and in-flight batches
        self._seq = 0  # last sealed batch
        self._done_seq = 0  # last batch finished (written or reported)
        self._closed = False
        self.points_written = 0
        self.batches_written = 0
        self.refusals = 0  # refused attempts (HTTP 429/503, wire 0x04/0x07), later retried or reported
        if transport == "wire":
            self._buf = bytearray()
            self._encode = self._enc_wire
        else:
            self._parts: List[str] = []
            self._encode = self._enc_http

    # -- encoding (called with the lock held in the sync writer)
    def _enc_wire(self, metric: str, entity: str, value: Any, ts: Any, tags: Any) -> int:
        key = (metric, entity, tuple(tags.items())) if tags else (metric, entity)
        s = self._series._d.get(key)
        if s is None:
            s = self._series.make(key, metric, entity, tags)
        if ts is None:
            if self._server_ts:
                ts = TIMESTAMP_NOW
                self._now_in_batch = True
            else:
                ts = time_ns() // 1_000_000
        elif ts.__class__ is not int:
            ts = to_ms(ts)
        if value.__class__ is not float:
            value = to_value(value)
        elif not -_MAXF <= value <= _MAXF:
            raise ValueError(f"value must be finite, not {value!r}")
        try:
            item = _pack(ts, value)
        except struct.error as e:
            raise ValueError(f"timestamp out of range: {e}") from None
        buf = self._buf
        buf += s[0]
        buf += item
        buf += s[1]
        return len(buf)

    def _enc_http(self, metric: str, entity: str, value: Any, ts: Any, tags: Any) -> int:
        key = (metric, entity, tuple(tags.items())) if tags else (metric, entity)
        s = self._json_series.get(key)
        if s is None:
            s = _series_json(metric, entity, tags)
            if len(self._json_series) > 1_000_000:
                self._json_series.clear()
            self._json_series[key] = s
        if value.__class__ is not float:
            value = to_value(value)
        elif not -_MAXF <= value <= _MAXF:
            raise ValueError(f"value must be finite, not {value!r}")
        if ts is None:
            if self._server_ts:
                self._now_in_batch = True
                text = f'{s[1]}"value":{value!r}}}'
            else:
                text = f'{s[0]}{time_ns() // 1_000_000},"value":{value!r}}}'
        else:
            if ts.__class__ is not int:
                ts = to_ms(ts)
            text = f'{s[0]}{ts},"value":{value!r}}}'
        self._parts.append(text)
        self._nb += len(text) + 1
        return self._nb

    def _seal(self) -> Optional[_Batch]:
        """Moves the current batch to the sealed queue."""
        if self._n == 0:
            return None
        if self.transport == "wire":
            payload: Any = self._buf
            self._buf = bytearray()
        else:
            payload = self._parts
            self._parts = []
            self._nb = 0
        self._seq += 1
        b = _Batch(payload, self._n, not self._now_in_batch, self._seq)
        self._n = 0
        self._now_in_batch = False
        self._sealed.append(b)
        return b

    # -- sending helpers
    def _frame(self, b: _Batch) -> bytes:
        op = Opcode.TS_PUT_BUFFERED if self.ack == "buffer" else Opcode.TS_PUT
        return encode_frame(op, _U32.pack(b.count) + bytes(b.payload), FLAG_BATCH)

    def _body(self, b: _Batch) -> bytes:
        return ('{"points":[' + ",".join(b.payload) + "]}").encode()

    def _req(self, path: str, b: _Batch) -> Req:
        return Req(
            "POST",
            path,
            lambda r: None,
            params={"ack": self.ack},
            body=self._body(b),
            content_type="application/json",
            idempotent=b.idempotent,
        )

    def _failure(self, err: SluiceError, b: _Batch) -> WriteFailure:
        payload = _U32.pack(b.count) + bytes(b.payload) if self.transport == "wire" else self._body(b)
        return WriteFailure(err, b.count, "points", payload, self.transport)

    def _close_error(self) -> None:
        if self._failures and self.on_error is None:
            n = sum(f.count for f in self._failures)
            raise BatchWriteError(
                f"{len(self._failures)} batches ({n} points) could not be written; first: {self._failures[0].error}",
                list(self._failures),
            )


class TimeSeriesBatchWriter(_TsCore):
    """Buffers points and writes them in batches from a background thread (see the module
    documentation). Made by ``client.timeseries.batch_writer(...)``; use it as a context
    manager::

        with client.timeseries.batch_writer(transport="wire") as w:
            w.put("cpu", "server01", 75.5)
    """

    def __init__(
        self,
        owner: Any,
        *,
        max_points: int = 5000,
        max_bytes: int = 1 << 20,
        flush_interval_ms: float = 1000,
        transport: str = "http",
        on_full: str = "block",
        on_error: Optional[Callable[[WriteFailure], Any]] = None,
        max_queue_points: Optional[int] = None,
        block_timeout: Optional[float] = None,
        ack: str = "buffer",
        retry: Optional[RetryPolicy] = None,
        timestamps: str = "client",
    ) -> None:
        self._setup(transport, ack, max_points, max_bytes, flush_interval_ms, max_queue_points, on_full, on_error, timestamps)
        self.block_timeout = block_timeout
        self.retry = retry or DEFAULT_WRITER_RETRY
        self._owner = owner
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._space = threading.Condition(self._lock)
        self._done = threading.Condition(self._lock)
        self._idle = False
        self._wire: Optional[WireClient] = None
        self._http_path = ""
        if transport == "wire":
            host, port, token = owner._wire_target()
            self._wire = WireClient(host, port, token, timeout=owner._client._timeout_s, retry=self.retry)
            self._wire.connect()
        else:
            self._http_path = owner._ops.p("/ts/put/batch")
        self._thread = threading.Thread(target=self._run, name="sluice-ts-batch-writer", daemon=True)
        self._thread.start()

    def put(
        self,
        metric: str,
        entity: str,
        value: float,
        timestamp_ms: Optional[int] = None,
        tags: Optional[Mapping[str, str]] = None,
    ) -> None:
        """Queues one point. Without ``timestamp_ms`` the point is stamped now (the client's
        clock; ``timestamps="server"``: the server's receive time). Blocks only while the
        queue is full (``on_full="block"``); raises :class:`QueueFull` with ``on_full="raise"``.
        Invalid points raise ``TypeError``/``ValueError`` here and are not queued."""
        with self._lock:
            if self._queued >= self.max_queue_points:
                self._wait_space()
            nb = self._encode(metric, entity, value, timestamp_ms, tags)
            self._queued += 1
            self._n = n = self._n + 1
            if n == 1:
                self._t0 = monotonic()
                if self._idle:
                    self._work.notify()
            if n >= self.max_points or nb >= self.max_bytes:
                self._seal()
                self._work.notify()

    def _wait_space(self) -> None:
        if self._closed:
            raise SluiceError("the batch writer is closed")
        if self.on_full == "raise":
            raise QueueFull(f"batch writer queue full ({self._queued} points)")
        deadline = None if self.block_timeout is None else monotonic() + self.block_timeout
        while self._queued >= self.max_queue_points:
            if self._closed:
                raise SluiceError("the batch writer is closed")
            if not self._thread.is_alive():
                raise SluiceError("the batch writer's sender stopped")
            remaining = None if deadline is None else deadline - monotonic()
            if remaining is not None and remaining <= 0:
                raise QueueFull(f"batch writer queue still full after {self.block_timeout} s")
            self._space.wait(remaining if remaining is not None else 1.0)

    def put_point(self, point: Any) -> None:
        """Queues a :class:`~sluice.Point` (or a dict with its fields)."""
        if isinstance(point, Mapping):
            self.put(point["metric"], point["entity"], point["value"], point.get("timestamp_ms"), point.get("tags"))
        else:
            self.put(point.metric, point.entity, point.value, point.timestamp_ms, point.tags)

    def put_many(self, points: Any) -> None:
        """Queues many points (:class:`~sluice.Point`, dicts or tuples)."""
        for p in points:
            if isinstance(p, tuple):
                self.put(*p)
            else:
                self.put_point(p)

    def flush(self, timeout: Optional[float] = None) -> None:
        """Sends everything queued so far and waits until it is written (or reported)."""
        with self._lock:
            self._seal()
            target = self._seq
            self._work.notify()
            deadline = None if timeout is None else monotonic() + timeout
            while self._done_seq < target:
                if not self._thread.is_alive():
                    raise SluiceError("the batch writer's sender stopped")
                remaining = None if deadline is None else deadline - monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError("flush timed out")
                self._done.wait(remaining if remaining is not None else 1.0)

    def close(self, timeout: Optional[float] = None) -> None:
        """Sends everything still queued, waits for it, stops the sender, and raises
        :class:`BatchWriteError` if some batch failed and no ``on_error`` was given."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._seal()
            self._work.notify()
            self._space.notify_all()
        self._thread.join(timeout)
        if self._wire is not None:
            self._wire.close()
        self._close_error()

    def __enter__(self) -> "TimeSeriesBatchWriter":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            try:
                self.close()
            except BatchWriteError:
                pass  # do not hide the exception in flight

    @property
    def pending(self) -> int:
        """Points queued and not yet written."""
        return self._queued

    # -- sender thread
    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._sealed:
                    if self._n and (self._closed or monotonic() - self._t0 >= self.flush_interval):
                        self._seal()
                        continue
                    if self._closed:
                        return
                    self._idle = True
                    timeout = None if not self._n else max(0.0, self.flush_interval - (monotonic() - self._t0))
                    self._work.wait(timeout)
                    self._idle = False
                b = self._sealed.popleft()
            try:
                self._send(b)
            except Exception as e:  # never let the sender die silently
                err = e if isinstance(e, SluiceError) else SluiceError(f"unexpected error: {e!r}")
                self._report(self._failure(err, b))
            with self._lock:
                self._queued -= b.count
                self._done_seq = b.seq
                self._space.notify_all()
                self._done.notify_all()

    def _send(self, b: _Batch) -> None:
        try:
            if self._wire is not None:
                before = self._wire.refusals
                r = self._wire.pipeline([self._frame(b)], idempotent=b.idempotent)[0]
                self.refusals += self._wire.refusals - before
                if isinstance(r, SluiceError):
                    raise r
            else:
                self._owner._client._http.send(self._req(self._http_path, b), self.retry, self)
        except SluiceError as e:
            self._report(self._failure(e, b))
            return
        self.points_written += b.count
        self.batches_written += 1


class AsyncTimeSeriesBatchWriter(_TsCore):
    """The asyncio twin of :class:`TimeSeriesBatchWriter`: a task sends the batches.
    ``await w.put(...)`` waits only while the queue is full; ``w.put_nowait(...)`` never waits
    (raises :class:`QueueFull`). Use ``async with``."""

    def __init__(
        self,
        owner: Any,
        *,
        max_points: int = 5000,
        max_bytes: int = 1 << 20,
        flush_interval_ms: float = 1000,
        transport: str = "http",
        on_full: str = "block",
        on_error: Optional[Callable[[WriteFailure], Any]] = None,
        max_queue_points: Optional[int] = None,
        block_timeout: Optional[float] = None,
        ack: str = "buffer",
        retry: Optional[RetryPolicy] = None,
        timestamps: str = "client",
    ) -> None:
        self._setup(transport, ack, max_points, max_bytes, flush_interval_ms, max_queue_points, on_full, on_error, timestamps)
        self.block_timeout = block_timeout
        self.retry = retry or DEFAULT_WRITER_RETRY
        self._owner = owner
        self._wake = asyncio.Event()
        self._space_ev = asyncio.Event()
        self._done_ev = asyncio.Event()
        self._wire: Optional[AsyncWireClient] = None
        self._http_path = ""
        if transport == "wire":
            host, port, token = owner._wire_target()
            self._wire = AsyncWireClient(host, port, token, timeout=owner._client._timeout_s, retry=self.retry)
        else:
            self._http_path = owner._ops.p("/ts/put/batch")
        self._task: Optional[asyncio.Task[None]] = None

    async def start(self) -> "AsyncTimeSeriesBatchWriter":
        if self._task is None:
            if self._wire is not None:
                await self._wire.connect()
            self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def put_nowait(
        self,
        metric: str,
        entity: str,
        value: float,
        timestamp_ms: Optional[int] = None,
        tags: Optional[Mapping[str, str]] = None,
    ) -> None:
        """Queues one point; raises :class:`QueueFull` if the queue is full."""
        if self._closed:
            raise SluiceError("the batch writer is closed")
        if self._queued >= self.max_queue_points:
            raise QueueFull(f"batch writer queue full ({self._queued} points)")
        self._add(metric, entity, value, timestamp_ms, tags)

    async def put(
        self,
        metric: str,
        entity: str,
        value: float,
        timestamp_ms: Optional[int] = None,
        tags: Optional[Mapping[str, str]] = None,
    ) -> None:
        """Queues one point, waiting while the queue is full (``on_full="block"``)."""
        if self._queued >= self.max_queue_points or self._closed:
            await self._wait_space()
        self._add(metric, entity, value, timestamp_ms, tags)

    def _add(self, metric: str, entity: str, value: Any, ts: Any, tags: Any) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        nb = self._encode(metric, entity, value, ts, tags)
        self._queued += 1
        self._n = n = self._n + 1
        if n == 1:
            self._t0 = monotonic()
            self._wake.set()
        if n >= self.max_points or nb >= self.max_bytes:
            self._seal()
            self._wake.set()

    async def _wait_space(self) -> None:
        if self._closed:
            raise SluiceError("the batch writer is closed")
        if self.on_full == "raise":
            raise QueueFull(f"batch writer queue full ({self._queued} points)")
        deadline = None if self.block_timeout is None else monotonic() + self.block_timeout
        while self._queued >= self.max_queue_points:
            if self._task is not None and self._task.done():
                raise SluiceError("the batch writer's sender stopped")
            self._space_ev.clear()
            remaining = None if deadline is None else deadline - monotonic()
            if remaining is not None and remaining <= 0:
                raise QueueFull(f"batch writer queue still full after {self.block_timeout} s")
            try:
                await asyncio.wait_for(self._space_ev.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    async def put_point(self, point: Any) -> None:
        if isinstance(point, Mapping):
            await self.put(point["metric"], point["entity"], point["value"], point.get("timestamp_ms"), point.get("tags"))
        else:
            await self.put(point.metric, point.entity, point.value, point.timestamp_ms, point.tags)

    async def put_many(self, points: Any) -> None:
        for p in points:
            if isinstance(p, tuple):
                await self.put(*p)
            else:
                await self.put_point(p)

    async def flush(self, timeout: Optional[float] = None) -> None:
        """Sends everything queued so far and waits until it is written (or reported)."""
        await self.start()
        self._seal()
        target = self._seq
        self._wake.set()

        async def wait() -> None:
            while self._done_seq < target:
                assert self._task is not None
                if self._task.done():
                    raise SluiceError("the batch writer's sender stopped")
                self._done_ev.clear()
                await self._done_ev.wait()

        await asyncio.wait_for(wait(), timeout)

    async def close(self) -> None:
        """Sends everything still queued, waits, stops the task; raises
        :class:`BatchWriteError` if some batch failed and no ``on_error`` was given."""
        if self._closed:
            return
        await self.start()
        self._closed = True
        self._seal()
        self._wake.set()
        assert self._task is not None
        await self._task
        if self._wire is not None:
            await self._wire.close()
        self._close_error()

    async def __aenter__(self) -> "AsyncTimeSeriesBatchWriter":
        return await self.start()

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            await self.close()
        else:
            try:
                await self.close()
            except BatchWriteError:
                pass

    @property
    def pending(self) -> int:
        return self._queued

    async def _run(self) -> None:
        while True:
            while not self._sealed:
                if self._n and (self._closed or monotonic() - self._t0 >= self.flush_interval):
                    self._seal()
                    continue
                if self._closed:
                    return
                self._wake.clear()
                timeout = None if not self._n else max(0.0, self.flush_interval - (monotonic() - self._t0))
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout)
                except asyncio.TimeoutError:
                    pass
            b = self._sealed.popleft()
            try:
                await self._send(b)
            except Exception as e:
                err = e if isinstance(e, SluiceError) else SluiceError(f"unexpected error: {e!r}")
                self._report(self._failure(err, b))
            self._queued -= b.count
            self._done_seq = b.seq
            self._space_ev.set()
            self._done_ev.set()

    async def _send(self, b: _Batch) -> None:
        try:
            if self._wire is not None:
                before = self._wire.refusals
                r = (await self._wire.pipeline([self._frame(b)], idempotent=b.idempotent))[0]
                self.refusals += self._wire.refusals - before
                if isinstance(r, SluiceError):
                    raise r
            else:
                await self._owner._client._http.send(self._req(self._http_path, b), self.retry, self)
        except SluiceError as e:
            self._report(self._failure(e, b))
            return
        self.points_written += b.count
        self.batches_written += 1


# ---- vectors -----------------------------------------------------------------------------------

_KINDS = ("add", "update", "remove")


class _VecCore(_Reporting):
    """Shared state of the vector writers: the current batch is a list of runs
    ``[kind, items, bytes]`` (consecutive operations of one kind)."""

    def _setup(
        self,
        transport: str,
        collection: Optional[str],
        max_ops: int,
        max_bytes: int,
        flush_interval_ms: float,
        max_queue_ops: Optional[int],
        on_full: str,
        on_error: Optional[Callable[[WriteFailure], Any]],
    ) -> None:
        _check(max_ops, max_bytes, flush_interval_ms, on_full, transport)
        if transport == "wire" and collection not in (None, "default"):
            raise ValueError("the wire protocol writes to collection 'default' only; use transport='http'")
        self.transport = transport
        self.collection = collection
        self.max_ops = max_ops
        self.max_bytes = max_bytes
        self.flush_interval = flush_interval_ms / 1000.0
        self.max_queue_ops = max_queue_ops or max(4 * max_ops, 4000)
        if self.max_queue_ops < max_ops:
            raise ValueError("max_queue_ops must be >= max_ops")
        self.on_full = on_full
        self.on_error = on_error
        self._failures: List[WriteFailure] = []
        self._runs: List[List[Any]] = []
        self._sealed: Deque[_Batch] = collections.deque()
        self._n = 0
        self._nb = 0
        self._t0 = 0.0
        self._queued = 0
        self._seq = 0
        self._done_seq = 0
        self._closed = False
        self.ops_written = 0
        self.refusals = 0

    def _item(self, kind: str, pk: str, vector: Any, metadata: Any) -> Tuple[Any, int]:
        if not isinstance(pk, str):
            raise TypeError("pk must be a string")
        if self.transport == "wire":
            pkb = pk.encode()
            if len(pkb) > 0xFFFF:
                raise ValueError("pk longer than 65535 bytes")
            if kind == "remove":
                item = struct.pack("<H", len(pkb)) + pkb
            else:
                dim, data = vector_bytes(vector)
                md = b"" if metadata is None else json.dumps(dict(metadata), separators=(",", ":")).encode()
                item = struct.pack("<H", len(pkb)) + pkb + _U32.pack(dim) + data + _U32.pack(len(md)) + md
            return item, len(item)
        from ._core import entity_json

        d = {"pk": pk} if kind == "remove" else entity_json(pk, vector, metadata)
        return d, 16 + len(pk) + (0 if kind == "remove" else 12 * len(d["vector"]))

    def _append(self, kind: str, item: Any, size: int) -> None:
        runs = self._runs
        if runs and runs[-1][0] == kind:
            runs[-1][1].append(item)
        else:
            runs.append([kind, [item]])
        self._n += 1
        self._nb += size
        self._queued += 1

    def _seal(self) -> Optional[_Batch]:
        if self._n == 0:
            return None
        self._seq += 1
        b = _Batch(self._runs, self._n, True, self._seq)
        self._runs = []
        self._n = 0
        self._nb = 0
        self._sealed.append(b)
        return b

    def _frame(self, kind: str, items: List[bytes]) -> bytes:
        op = {"add": Opcode.VECTOR_ADD_BUFFERED, "update": Opcode.VECTOR_UPDATE_BUFFERED, "remove": Opcode.VECTOR_REMOVE_BUFFERED}[kind]
        return encode_frame(op, _U32.pack(len(items)) + b"".join(items), FLAG_BATCH)

    def _http_reqs(self, ops: Any, kind: str, items: List[Dict[str, Any]]) -> List[Req]:
        if kind == "add":
            req = ops.v_add_batch(items, self.collection, "buffer")
            req.idempotent = True
            return [req]
        if kind == "update":
            return [ops.v_update_buffered(d["pk"], d["vector"], d.get("metadata"), self.collection) for d in items]
        return [ops.v_remove_buffered(d["pk"], self.collection) for d in items]

    def _failure(self, err: SluiceError, kind: str, items: List[Any]) -> WriteFailure:
        payload: Any = _U32.pack(len(items)) + b"".join(items) if self.transport == "wire" else items
        return WriteFailure(err, len(items), kind, payload, self.transport)

    def _close_error(self) -> None:
        if self._failures and self.on_error is None:
            n = sum(f.count for f in self._failures)
            raise BatchWriteError(
                f"{len(self._failures)} batches ({n} operations) could not be written; first: {self._failures[0].error}",
                list(self._failures),
            )


class VectorBatchWriter(_VecCore):
    """Buffers vector adds, updates and removes and writes them in batches from a background
    thread, in order. Made by ``client.vectors.batch_writer(...)``::

        with client.vectors.batch_writer(transport="wire") as w:
            w.add("doc1", embedding, {"category": "tech"})
            w.remove("doc0")

    Over the wire each run of consecutive operations of one kind is one batch frame (collection
    ``default`` only); over HTTP adds go to ``/vectors/add/batch`` and updates/removes to the
    buffered routes one by one.
    """

    def __init__(
        self,
        owner: Any,
        *,
        max_ops: int = 1000,
        max_bytes: int = 4 << 20,
        flush_interval_ms: float = 1000,
        transport: str = "http",
        collection: Optional[str] = None,
        on_full: str = "block",
        on_error: Optional[Callable[[WriteFailure], Any]] = None,
        max_queue_ops: Optional[int] = None,
        block_timeout: Optional[float] = None,
        retry: Optional[RetryPolicy] = None,
    ) -> None:
        self._setup(transport, collection, max_ops, max_bytes, flush_interval_ms, max_queue_ops, on_full, on_error)
        self.block_timeout = block_timeout
        self.retry = retry or DEFAULT_WRITER_RETRY
        self._owner = owner
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._space = threading.Condition(self._lock)
        self._done = threading.Condition(self._lock)
        self._wire: Optional[WireClient] = None
        if transport == "wire":
            host, port, token = owner._wire_target()
            self._wire = WireClient(host, port, token, timeout=owner._client._timeout_s, retry=self.retry)
            self._wire.connect()
        self._thread = threading.Thread(target=self._run, name="sluice-vector-batch-writer", daemon=True)
        self._thread.start()

    def _put(self, kind: str, pk: str, vector: Any, metadata: Any) -> None:
        item, size = self._item(kind, pk, vector, metadata)
        with self._lock:
            if self._queued >= self.max_queue_ops:
                TimeSeriesBatchWriter._wait_space(self)  # type: ignore[arg-type]
            self._append(kind, item, size)
            if self._n == 1:
                self._t0 = monotonic()
                self._work.notify()
            if self._n >= self.max_ops or self._nb >= self.max_bytes:
                self._seal()
                self._work.notify()

    @property
    def max_queue_points(self) -> int:  # used by the shared wait
        return self.max_queue_ops

    def add(self, pk: str, vector: Any, metadata: Optional[Mapping[str, Any]] = None) -> None:
        """Queues an add (or replace) of an entity; ``vector`` may be a numpy array."""
        self._put("add", pk, vector, metadata)

    def update(self, pk: str, vector: Any, metadata: Optional[Mapping[str, Any]] = None) -> None:
        """Queues an update of an existing entity."""
        self._put("update", pk, vector, metadata)

    def remove(self, pk: str) -> None:
        """Queues a remove."""
        self._put("remove", pk, None, None)

    # the seed's names
    add_buffered = add
    update_buffered = update
    remove_buffered = remove

    flush = TimeSeriesBatchWriter.flush
    __enter__ = TimeSeriesBatchWriter.__enter__
    __exit__ = TimeSeriesBatchWriter.__exit__

    def close(self, timeout: Optional[float] = None) -> None:
        """Sends everything still queued, waits for it and stops the sender; raises
        :class:`BatchWriteError` if something failed and no ``on_error`` was given."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._seal()
            self._work.notify()
            self._space.notify_all()
        self._thread.join(timeout)
        if self._wire is not None:
            self._wire.close()
        self._close_error()

    @property
    def pending(self) -> int:
        return self._queued

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._sealed:
                    if self._n and (self._closed or monotonic() - self._t0 >= self.flush_interval):
                        self._seal()
                        continue
                    if self._closed:
                        return
                    timeout = None if not self._n else max(0.0, self.flush_interval - (monotonic() - self._t0))
                    self._work.wait(timeout)
                b = self._sealed.popleft()
            for kind, items in b.payload:
                try:
                    self._send_run(kind, items)
                except Exception as e:
                    err = e if isinstance(e, SluiceError) else SluiceError(f"unexpected error: {e!r}")
                    self._report(self._failure(err, kind, items))
            with self._lock:
                self._queued -= b.count
                self._done_seq = b.seq
                self._space.notify_all()
                self._done.notify_all()

    def _send_run(self, kind: str, items: List[Any]) -> None:
        if self._wire is not None:
            before = self._wire.refusals
            r = self._wire.pipeline([self._frame(kind, items)], idempotent=kind != "remove")[0]
            self.refusals += self._wire.refusals - before
            if isinstance(r, SluiceError):
                self._report(self._failure(r, kind, items))
            else:
                self.ops_written += len(items)
            return
        http = self._owner._client._http
        reqs = self._http_reqs(self._owner._ops, kind, items)
        if kind == "add":
            try:
                http.send(reqs[0], self.retry, self)
                self.ops_written += len(items)
            except SluiceError as e:
                self._report(self._failure(e, kind, items))
            return
        for d, req in zip(items, reqs):
            try:
                http.send(req, self.retry, self)
                self.ops_written += 1
            except SluiceError as e:
                self._report(self._failure(e, kind, [d]))


class AsyncVectorBatchWriter(_VecCore):
    """The asyncio twin of :class:`VectorBatchWriter` (``await w.add(...)``, ``async with``)."""

    def __init__(
        self,
        owner: Any,
        *,
        max_ops: int = 1000,
        max_bytes: int = 4 << 20,
        flush_interval_ms: float = 1000,
        transport: str = "http",
        collection: Optional[str] = None,
        on_full: str = "block",
        on_error: Optional[Callable[[WriteFailure], Any]] = None,
        max_queue_ops: Optional[int] = None,
        block_timeout: Optional[float] = None,
        retry: Optional[RetryPolicy] = None,
    ) -> None:
        self._setup(transport, collection, max_ops, max_bytes, flush_interval_ms, max_queue_ops, on_full, on_error)
        self.block_timeout = block_timeout
        self.retry = retry or DEFAULT_WRITER_RETRY
        self._owner = owner
        self._wake = asyncio.Event()
        self._space_ev = asyncio.Event()
        self._done_ev = asyncio.Event()
        self._wire: Optional[AsyncWireClient] = None
        if transport == "wire":
            host, port, token = owner._wire_target()
            self._wire = AsyncWireClient(host, port, token, timeout=owner._client._timeout_s, retry=self.retry)
        self._task: Optional[asyncio.Task[None]] = None

    @property
    def max_queue_points(self) -> int:
        return self.max_queue_ops

    start = AsyncTimeSeriesBatchWriter.start
    _wait_space = AsyncTimeSeriesBatchWriter._wait_space
    flush = AsyncTimeSeriesBatchWriter.flush
    __aenter__ = AsyncTimeSeriesBatchWriter.__aenter__
    __aexit__ = AsyncTimeSeriesBatchWriter.__aexit__
    pending = AsyncTimeSeriesBatchWriter.pending

    async def _put(self, kind: str, pk: str, vector: Any, metadata: Any) -> None:
        item, size = self._item(kind, pk, vector, metadata)
        if self._queued >= self.max_queue_ops or self._closed:
            await self._wait_space()  # type: ignore[misc]
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        self._append(kind, item, size)
        if self._n == 1:
            self._t0 = monotonic()
            self._wake.set()
        if self._n >= self.max_ops or self._nb >= self.max_bytes:
            self._seal()
            self._wake.set()

    async def add(self, pk: str, vector: Any, metadata: Optional[Mapping[str, Any]] = None) -> None:
        await self._put("add", pk, vector, metadata)

    async def update(self, pk: str, vector: Any, metadata: Optional[Mapping[str, Any]] = None) -> None:
        await self._put("update", pk, vector, metadata)

    async def remove(self, pk: str) -> None:
        await self._put("remove", pk, None, None)

    add_buffered = add
    update_buffered = update
    remove_buffered = remove

    async def close(self) -> None:
        if self._closed:
            return
        await self.start()  # type: ignore[misc]
        self._closed = True
        self._seal()
        self._wake.set()
        assert self._task is not None
        await self._task
        if self._wire is not None:
            await self._wire.close()
        self._close_error()

    async def _run(self) -> None:
        while True:
            while not self._sealed:
                if self._n and (self._closed or monotonic() - self._t0 >= self.flush_interval):
                    self._seal()
                    continue
                if self._closed:
                    return
                self._wake.clear()
                timeout = None if not self._n else max(0.0, self.flush_interval - (monotonic() - self._t0))
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout)
                except asyncio.TimeoutError:
                    pass
            b = self._sealed.popleft()
            for kind, items in b.payload:
                try:
                    await self._send_run(kind, items)
                except Exception as e:
                    err = e if isinstance(e, SluiceError) else SluiceError(f"unexpected error: {e!r}")
                    self._report(self._failure(err, kind, items))
            self._queued -= b.count
            self._done_seq = b.seq
            self._space_ev.set()
            self._done_ev.set()

    async def _send_run(self, kind: str, items: List[Any]) -> None:
        if self._wire is not None:
            before = self._wire.refusals
            r = (await self._wire.pipeline([self._frame(kind, items)], idempotent=kind != "remove"))[0]
            self.refusals += self._wire.refusals - before
            if isinstance(r, SluiceError):
                self._report(self._failure(r, kind, items))
            else:
                self.ops_written += len(items)
            return
        http = self._owner._client._http
        reqs = self._http_reqs(self._owner._ops, kind, items)
        if kind == "add":
            try:
                await http.send(reqs[0], self.retry, self)
                self.ops_written += len(items)
            except SluiceError as e:
                self._report(self._failure(e, kind, items))
            return
        for d, req in zip(items, reqs):
            try:
                await http.send(req, self.retry, self)
                self.ops_written += 1
            except SluiceError as e:
                self._report(self._failure(e, kind, [d]))
