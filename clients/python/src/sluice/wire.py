"""The binary wire protocol (``docs/wire-protocol.md``): frame codecs and two clients,
:class:`WireClient` (blocking sockets) and :class:`AsyncWireClient` (asyncio).

Frames::

    request:  [opcode u8][flags u8][length u32][payload]
    response: [status u8][flags u8][length u32][payload]

little-endian; flag ``0x01`` = batch (``count u32`` then ``count`` items).

Retries: frames answered ``0x04`` (buffer overflow, load shed) or ``0x07`` (too many requests)
were not applied and are re-sent after the error's ``retry_after_sec`` (else an exponential
backoff) per the :class:`~sluice.RetryPolicy`. In a pipeline only a *refused suffix* is re-sent:
if a later frame of the same window was applied, re-sending an older refused write would
reorder writes, so those refusals are returned as errors instead. A connection that fails
while answers are outstanding is closed (answers are never matched to the wrong request); the
next call reconnects (and re-authenticates). A frame whose answer was lost is re-sent only when
it is idempotent (points with explicit timestamps, vector adds/updates, stats, flushes).
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading
import time
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from . import models as m
from ._core import to_ms, to_value
from .errors import (
    DecodeError,
    SluiceError,
    TransportError,
    WireError,
    error_for_wire,
)
from .retry import RetryPolicy

__all__ = [
    "WireClient",
    "AsyncWireClient",
    "Opcode",
    "Status",
    "TIMESTAMP_NOW",
    "HEADER",
    "encode_frame",
    "encode_auth",
    "encode_ts_put",
    "encode_vector_put",
    "encode_vector_remove",
    "decode_frames",
    "decode_ts_items",
    "decode_vector_items",
    "SeriesCache",
    "vector_bytes",
]

DEFAULT_PORT = 18765
TIMESTAMP_NOW = -(2**63)
"""``timestamp_ms`` meaning "the server's receive time" (``i64::MIN``)."""

HEADER = struct.Struct("<BBI")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_TV = struct.Struct("<qd")
FLAG_BATCH = 0x01
FLAG_EVENT = 0x02

# Frames written before their answers are read, at most (a larger frame goes alone).
WINDOW_FRAMES = 256
WINDOW_BYTES = 256 * 1024
MAX_ANSWER = 64 << 20


class Opcode:
    AUTH = 0x01
    TS_PUT_BUFFERED = 0x70
    TS_BUFFER_STATS = 0x71
    TS_BUFFER_FLUSH = 0x72
    TS_PUT = 0x73
    VECTOR_ADD_BUFFERED = 0x80
    VECTOR_UPDATE_BUFFERED = 0x81
    VECTOR_REMOVE_BUFFERED = 0x82
    VECTOR_BUFFER_STATS = 0x83
    VECTOR_BUFFER_FLUSH = 0x84
    WAL_APPLY_COMPRESSED = 0x90
    REPLICATION_STATS = 0x91
    REPLICATION_CONFIG = 0x92
    CHANGES_SUBSCRIBE = 0x93
    VECTOR_SEARCH = 0xA0


class Status:
    OK = 0x00
    INVALID_OPCODE = 0x01
    MALFORMED = 0x02
    PROCESSING_ERROR = 0x03
    BUFFER_OVERFLOW = 0x04
    UNAUTHORIZED = 0x05
    FORBIDDEN = 0x06
    TOO_MANY_REQUESTS = 0x07


_REFUSED = (Status.BUFFER_OVERFLOW, Status.TOO_MANY_REQUESTS)

# ---- encoding ----------------------------------------------------------------------------------


def encode_frame(opcode: int, payload: bytes = b"", flags: int = 0) -> bytes:
    """One request frame."""
    return HEADER.pack(opcode, flags, len(payload)) + payload


def _str16(s: str, what: str) -> bytes:
    b = s.encode()
    if len(b) > 0xFFFF:
        raise ValueError(f"{what} longer than 65535 bytes")
    return _U16.pack(len(b)) + b


def encode_auth(token: str) -> bytes:
    """``AUTH`` with a bearer token or JWT."""
    return encode_frame(Opcode.AUTH, _str16(token, "token"))


def _tags_bytes(tags: Optional[Mapping[str, str]]) -> bytes:
    if not tags:
        return b"\x00\x00"
    for k, v in tags.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError("tags must map strings to strings")
    t = json.dumps(tags, separators=(",", ":"), ensure_ascii=False).encode()
    if len(t) > 0xFFFF:
        raise ValueError("tags longer than 65535 bytes of JSON")
    return _U16.pack(len(t)) + t


class SeriesCache:
    """Per-series item bytes: ``prefix`` (``metric_len, metric, entity_len, entity``) and
    ``suffix`` (``tags_len, tags``), computed once per series; a point's item is
    ``prefix + pack("<qd", timestamp_ms, value) + suffix``."""

    __slots__ = ("_d", "limit")

    def __init__(self, limit: int = 100_000) -> None:
        self._d: Dict[Any, Tuple[bytes, bytes]] = {}
        self.limit = limit

    def get(self, metric: str, entity: str, tags: Optional[Mapping[str, str]]) -> Tuple[bytes, bytes]:
        key = (metric, entity, tuple(tags.items())) if tags else (metric, entity)
        s = self._d.get(key)
        if s is None:
            s = self.make(key, metric, entity, tags)
        return s

    def make(self, key: Any, metric: str, entity: str, tags: Optional[Mapping[str, str]]) -> Tuple[bytes, bytes]:
        if not isinstance(metric, str) or not isinstance(entity, str):
            raise TypeError("metric and entity must be strings")
        s = (_str16(metric, "metric") + _str16(entity, "entity"), _tags_bytes(tags))
        if len(self._d) >= self.limit:
            self._d.clear()
        self._d[key] = s
        return s


_default_cache = SeriesCache(10_000)


def _ts_item(p: Any, cache: SeriesCache) -> bytes:
    metric: Any
    entity: Any
    value: Any
    ts: Any
    tags: Any
    if isinstance(p, m.Point):
        metric, entity, value, ts, tags = p.metric, p.entity, p.value, p.timestamp_ms, p.tags
    elif isinstance(p, Mapping):
        metric, entity, value, ts, tags = p["metric"], p["entity"], p["value"], p.get("timestamp_ms"), p.get("tags")
    else:
        metric, entity, value, *rest = p
        ts = rest[0] if rest else None
        tags = rest[1] if len(rest) > 1 else None
    pre, suf = cache.get(metric, entity, tags)
    t = TIMESTAMP_NOW if ts is None else to_ms(ts)
    return pre + _TV.pack(t, to_value(value)) + suf


def encode_ts_put(points: Sequence[Any], buffered: bool = True, batch: Optional[bool] = None) -> bytes:
    """``TS_PUT_BUFFERED`` (``buffered``) or ``TS_PUT`` frame of points (:class:`Point`, dicts or
    tuples ``(metric, entity, value[, timestamp_ms[, tags]])``); a point without a timestamp
    gets :data:`TIMESTAMP_NOW`. The batch flag is set for more than one point (or ``batch``)."""
    op = Opcode.TS_PUT_BUFFERED if buffered else Opcode.TS_PUT
    items = [_ts_item(p, _default_cache) for p in points]
    if not items:
        raise ValueError("no points")
    if batch is None:
        batch = len(items) != 1
    if batch:
        return encode_frame(op, _U32.pack(len(items)) + b"".join(items), FLAG_BATCH)
    if len(items) != 1:
        raise ValueError("several points need the batch flag")
    return encode_frame(op, items[0])


_f32_structs: Dict[int, struct.Struct] = {}


def vector_bytes(vector: Any) -> Tuple[int, bytes]:
    """A vector as ``(dim, little-endian f32 bytes)``; numpy arrays are converted without a
    Python loop."""
    if type(vector).__module__.startswith("numpy"):
        import numpy as np

        a = np.ascontiguousarray(vector, dtype="<f4")
        if a.ndim != 1:
            raise ValueError("a vector must be one-dimensional")
        return a.shape[0], a.tobytes()
    n = len(vector)
    st = _f32_structs.get(n)
    if st is None:
        st = _f32_structs[n] = struct.Struct(f"<{n}f")
    try:
        return n, st.pack(*vector)
    except struct.error as e:
        raise TypeError(f"vector components must be numbers: {e}") from None


def _vector_item(pk: str, vector: Any, metadata: Optional[Mapping[str, Any]]) -> bytes:
    if not isinstance(pk, str):
        raise TypeError("pk must be a string")
    dim, data = vector_bytes(vector)
    md = b"" if metadata is None else json.dumps(dict(metadata), separators=(",", ":"), ensure_ascii=False).encode()
    return _str16(pk, "pk") + _U32.pack(dim) + data + _U32.pack(len(md)) + md


def _entity_parts(e: Any) -> Tuple[str, Any, Optional[Mapping[str, Any]]]:
    if isinstance(e, m.VectorEntity):
        return e.pk, e.vector, e.metadata
    if isinstance(e, Mapping):
        return e["pk"], e["vector"], e.get("metadata")
    pk, vector, *rest = e
    return pk, vector, rest[0] if rest else None


def encode_vector_put(entities: Sequence[Any], update: bool = False, batch: Optional[bool] = None) -> bytes:
    """``VECTOR_ADD_BUFFERED`` (or ``VECTOR_UPDATE_BUFFERED``) frame of entities
    (:class:`VectorEntity`, dicts or tuples ``(pk, vector[, metadata])``)."""
    op = Opcode.VECTOR_UPDATE_BUFFERED if update else Opcode.VECTOR_ADD_BUFFERED
    items = [_vector_item(*_entity_parts(e)) for e in entities]
    if not items:
        raise ValueError("no entities")
    if batch is None:
        batch = len(items) != 1
    if batch:
        return encode_frame(op, _U32.pack(len(items)) + b"".join(items), FLAG_BATCH)
    return encode_frame(op, items[0])


def encode_vector_remove(pks: Sequence[str], batch: Optional[bool] = None) -> bytes:
    """``VECTOR_REMOVE_BUFFERED`` frame."""
    items = [_str16(pk, "pk") for pk in pks]
    if not items:
        raise ValueError("no pks")
    if batch is None:
        batch = len(items) != 1
    if batch:
        return encode_frame(Opcode.VECTOR_REMOVE_BUFFERED, _U32.pack(len(items)) + b"".join(items), FLAG_BATCH)
    return encode_frame(Opcode.VECTOR_REMOVE_BUFFERED, items[0])


def encode_vector_search(
    vector: Any,
    k: int,
    filter: Optional[Mapping[str, Any]] = None,
    ef: Optional[int] = None,
    collection: Optional[str] = None,
) -> bytes:
    """``VECTOR_SEARCH`` (``0xA0``) frame: the body of ``POST /vectors/search`` in binary."""
    dim, data = vector_bytes(vector)
    flt = b"" if filter is None else json.dumps(dict(filter), separators=(",", ":"), ensure_ascii=False).encode()
    if not 0 <= int(k) <= 0xFFFFFFFF or not 0 <= int(ef or 0) <= 0xFFFFFFFF:
        raise ValueError("k and ef must fit in 32 bits")
    payload = (
        _str16(collection or "", "collection")
        + _U32.pack(int(k))
        + _U32.pack(int(ef or 0))
        + _U32.pack(dim)
        + data
        + _U32.pack(len(flt))
        + flt
    )
    return encode_frame(Opcode.VECTOR_SEARCH, payload)


_HIT = struct.Struct("<ffI")


def decode_search_hits(payload: bytes) -> m.SearchResults:
    """The hits of a ``VECTOR_SEARCH`` answer: ``count u32``, then per hit ``pk_len u16, pk,
    distance f32, score f32, metadata_len u32, metadata`` (JSON; empty: none)."""
    try:
        (count,) = _U32.unpack_from(payload, 0)
        i = 4
        out = m.SearchResults()
        for _ in range(count):
            (n,) = struct.unpack_from("<H", payload, i)
            i += 2
            pk = payload[i : i + n].decode()
            i += n
            distance, score, mlen = _HIT.unpack_from(payload, i)
            i += _HIT.size
            if len(payload) - i < mlen:
                raise DecodeError("truncated metadata")
            metadata = json.loads(payload[i : i + mlen]) if mlen else {}
            i += mlen
            out.append(m.SearchResult(pk=pk, score=score, distance=distance, metadata=metadata))
    except (struct.error, UnicodeDecodeError, ValueError) as e:
        raise DecodeError(f"malformed search answer: {e}") from None
    if i != len(payload):
        raise DecodeError(f"{len(payload) - i} trailing bytes in a search answer")
    return out


# ---- decoding (answers, and request frames for reports and tests) -----------------------------


def decode_frames(data: bytes) -> List[Tuple[int, int, bytes]]:
    """Splits a byte string into ``(opcode_or_status, flags, payload)`` frames."""
    out = []
    i = 0
    while i < len(data):
        if len(data) - i < HEADER.size:
            raise DecodeError("truncated frame header")
        op, flags, n = HEADER.unpack_from(data, i)
        i += HEADER.size
        if len(data) - i < n:
            raise DecodeError("truncated frame payload")
        out.append((op, flags, bytes(data[i : i + n])))
        i += n
    return out


def _items(payload: bytes, flags: int) -> Tuple[int, int]:
    if flags & FLAG_BATCH:
        return _U32.unpack_from(payload, 0)[0], 4
    return 1, 0


def decode_ts_items(payload: bytes, flags: int = FLAG_BATCH) -> List[m.Point]:
    """The points of a ``TS_PUT``/``TS_PUT_BUFFERED`` payload (timestamp None for
    :data:`TIMESTAMP_NOW`)."""
    count, i = _items(payload, flags)
    out = []
    mv = memoryview(payload)
    for _ in range(count):
        n = _U16.unpack_from(mv, i)[0]
        metric = bytes(mv[i + 2 : i + 2 + n]).decode()
        i += 2 + n
        n = _U16.unpack_from(mv, i)[0]
        entity = bytes(mv[i + 2 : i + 2 + n]).decode()
        i += 2 + n
        ts, value = _TV.unpack_from(mv, i)
        i += 16
        n = _U16.unpack_from(mv, i)[0]
        tags = json.loads(bytes(mv[i + 2 : i + 2 + n])) if n else {}
        i += 2 + n
        out.append(m.Point(metric, entity, value, None if ts == TIMESTAMP_NOW else ts, tags))
    return out


def decode_vector_items(payload: bytes, flags: int = FLAG_BATCH, remove: bool = False) -> List[m.VectorEntity]:
    """The entities of a vector add/update payload (or, with ``remove``, the pks as entities
    without vectors)."""
    count, i = _items(payload, flags)
    out = []
    mv = memoryview(payload)
    for _ in range(count):
        n = _U16.unpack_from(mv, i)[0]
        pk = bytes(mv[i + 2 : i + 2 + n]).decode()
        i += 2 + n
        if remove:
            out.append(m.VectorEntity(pk, None))
            continue
        dim = _U32.unpack_from(mv, i)[0]
        i += 4
        vec = list(struct.unpack_from(f"<{dim}f", mv, i))
        i += 4 * dim
        n = _U32.unpack_from(mv, i)[0]
        md = json.loads(bytes(mv[i + 4 : i + 4 + n])) if n else None
        i += 4 + n
        out.append(m.VectorEntity(pk, vec, md))
    return out


def _error(status: int, payload: bytes) -> WireError:
    try:
        body = json.loads(payload) if payload else {}
        if not isinstance(body, dict):
            raise ValueError
    except ValueError:
        body = {"error": payload[:512].decode("utf-8", "replace"), "code": f"wire_status_{status:02x}"}
    return error_for_wire(status, body)


def _u64(payload: bytes) -> int:
    if len(payload) != 8:
        raise DecodeError(f"expected 8 bytes, got {len(payload)}")
    return int(_U64.unpack(payload)[0])


def _json(payload: bytes) -> Any:
    try:
        return json.loads(payload)
    except ValueError as e:
        raise DecodeError(f"answer is not JSON: {e}") from None


Result = Union[bytes, SluiceError]


def _windows(frames: Sequence[bytes]) -> List[Tuple[int, int]]:
    out = []
    start = 0
    while start < len(frames):
        end = start
        size = 0
        while end < len(frames) and end - start < WINDOW_FRAMES and (end == start or size + len(frames[end]) <= WINDOW_BYTES):
            size += len(frames[end])
            end += 1
        out.append((start, end))
        start = end
    return out


def _settle(
    answers: List[Tuple[int, bytes]], base: int, results: List[Optional[Result]]
) -> Tuple[Optional[int], bool, Optional[float]]:
    """Stores a window's answers; returns (first refused index, applied after it, retry_after)."""
    first: Optional[int] = None
    applied_after = False
    retry_after: Optional[float] = None
    for k, (status, payload) in enumerate(answers):
        i = base + k
        if status == Status.OK:
            results[i] = payload
            if first is not None:
                applied_after = True
            continue
        err = _error(status, payload)
        results[i] = err
        if status in _REFUSED:
            if first is None:
                first = i
            if err.retry_after is not None:
                retry_after = max(retry_after or 0.0, err.retry_after)
        elif first is not None:
            applied_after = True  # a later frame was processed (even if it failed)
    return first, applied_after, retry_after


class _Base:
    def __init__(
        self,
        host: str,
        port: int,
        token: Optional[str],
        timeout: Optional[float],
        retry: Optional[RetryPolicy],
    ) -> None:
        self.host = host
        self.port = int(port)
        self.token = token
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.refusals = 0  # frames answered 0x04/0x07 (retried or not)


class WireClient(_Base):
    """A connection to a server's wire listener (blocking sockets, thread-safe: calls are
    serialised by a lock).

    ``WireClient(host, port, token=None)`` connects lazily on the first call (or
    :meth:`connect`) and sends ``AUTH`` when a token is given. Use it as a context manager or
    call :meth:`close`. Time-series and vector opcodes act on database ``default``.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        token: Optional[str] = None,
        *,
        timeout: Optional[float] = 30.0,
        retry: Optional[RetryPolicy] = None,
    ) -> None:
        super().__init__(host, port, token, timeout, retry)
        self._sock: Optional[socket.socket] = None
        self._rf: Any = None
        self._lock = threading.RLock()

    # -- connection
    def connect(self) -> "WireClient":
        """Opens the connection (and authenticates) if it is not open."""
        with self._lock:
            if self._sock is None:
                self._open()
        return self

    def _open(self) -> None:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError as e:
            raise TransportError(f"cannot connect to {self.host}:{self.port}: {e}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(self.timeout)
        self._sock = sock
        self._rf = sock.makefile("rb", buffering=65536)
        if self.token:
            try:
                status, payload = self._roundtrip([encode_auth(self.token)])[0]
            except BaseException:
                self._drop()
                raise
            if status != Status.OK:
                self._drop()
                raise _error(status, payload)

    def _drop(self) -> None:
        if self._rf is not None:
            try:
                self._rf.close()
            except OSError:
                pass
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        self._sock = None
        self._rf = None

    def close(self) -> None:
        """Closes the connection (the next call reconnects)."""
        with self._lock:
            self._drop()

    def __enter__(self) -> "WireClient":
        return self.connect()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def _roundtrip(self, frames: Sequence[bytes]) -> List[Tuple[int, bytes]]:
        """Writes frames, reads one answer each. Any failure drops the connection."""
        assert self._sock is not None
        try:
            self._sock.sendall(b"".join(frames) if len(frames) > 1 else frames[0])
            out = []
            rf = self._rf
            for _ in frames:
                head = rf.read(6)
                if len(head) < 6:
                    raise ConnectionError("connection closed by the server")
                status, flags, n = HEADER.unpack(head)
                if n > MAX_ANSWER:
                    raise DecodeError(f"answer of {n} bytes")
                payload = rf.read(n) if n else b""
                if len(payload) < n:
                    raise ConnectionError("connection closed by the server")
                out.append((status, payload))
            return out
        except (OSError, ConnectionError, DecodeError) as e:
            self._drop()
            if isinstance(e, DecodeError):
                raise
            raise TransportError(f"wire connection failed: {e!r}", maybe_applied=True) from None

    # -- generic calls
    def pipeline(self, frames: Sequence[bytes], idempotent: bool = True) -> List[Result]:
        """Sends encoded frames in windows without waiting for each answer; returns, in order,
        each frame's ok payload (bytes) or its error. Refused suffixes are re-sent per the retry
        policy. A lost connection raises :class:`TransportError` (after reconnecting and
        re-sending the window when ``idempotent``)."""
        with self._lock:
            results: List[Optional[Result]] = [None] * len(frames)
            for start, end in _windows(frames):
                self._window(frames, start, end, results, idempotent)
            return [r if r is not None else DecodeError("no answer") for r in results]

    def _window(self, frames: Sequence[bytes], start: int, end: int, results: List[Optional[Result]], idempotent: bool) -> None:
        attempt = 0
        waited = 0.0
        policy = self.retry
        while True:
            try:
                if self._sock is None:
                    self._open()
                answers = self._roundtrip(frames[start:end])
            except TransportError as e:
                e.attempts = attempt + 1
                if (e.maybe_applied and not idempotent) or attempt >= policy.max_retries:
                    raise
                attempt += 1
                time.sleep(policy.wait(attempt))
                continue
            first, applied_after, retry_after = _settle(answers, start, results)
            if first is not None:
                self.refusals += sum(1 for st, _ in answers if st in _REFUSED)
            if first is None or applied_after or attempt >= policy.max_retries:
                for i in range(start, end):
                    r = results[i]
                    if isinstance(r, SluiceError):
                        r.attempts = attempt + 1
                return
            attempt += 1
            wait = policy.wait(attempt, retry_after)
            if policy.max_elapsed is not None and waited + wait > policy.max_elapsed:
                return
            waited += wait
            time.sleep(wait)
            start = first

    def call(self, frame: bytes, idempotent: bool = True) -> bytes:
        """Sends one encoded frame (retried while refused); returns its ok payload or raises
        its error."""
        r = self.pipeline([frame], idempotent)[0]
        if isinstance(r, SluiceError):
            raise r
        return r

    def auth(self, token: str) -> None:
        """``AUTH``: (re-)authenticates the connection; later reconnects use this token."""
        with self._lock:
            self.token = token
            if self._sock is None:
                self._open()
                return
            status, payload = self._roundtrip([encode_auth(token)])[0]
            if status != Status.OK:
                raise _error(status, payload)

    # -- time series
    def put_buffered(
        self,
        metric: str,
        entity: str,
        value: float,
        timestamp_ms: Optional[int] = None,
        tags: Optional[Mapping[str, str]] = None,
    ) -> int:
        """``TS_PUT_BUFFERED`` of one point; returns the buffer size after the write. Without a
        timestamp the server stamps its receive time."""
        frame = encode_ts_put([(metric, entity, value, timestamp_ms, tags)], buffered=True)
        return _u64(self.call(frame, idempotent=timestamp_ms is not None))

    def put_buffered_batch(self, points: Sequence[Any]) -> int:
        """``TS_PUT_BUFFERED`` with the batch flag (all points or none); the buffer size."""
        pts = list(points)
        frame = encode_ts_put(pts, buffered=True, batch=True)
        return _u64(self.call(frame, idempotent=_timestamped(pts)))

    def put(
        self,
        metric: str,
        entity: str,
        value: float,
        timestamp_ms: Optional[int] = None,
        tags: Optional[Mapping[str, str]] = None,
    ) -> int:
        """``TS_PUT``: written directly and answered once fsync'd; returns the write's LSN."""
        frame = encode_ts_put([(metric, entity, value, timestamp_ms, tags)], buffered=False)
        return _u64(self.call(frame, idempotent=timestamp_ms is not None))

    def put_batch(self, points: Sequence[Any]) -> int:
        """``TS_PUT`` with the batch flag (all or nothing, fsync'd); returns the LSN."""
        pts = list(points)
        frame = encode_ts_put(pts, buffered=False, batch=True)
        return _u64(self.call(frame, idempotent=_timestamped(pts)))

    def get_buffer_stats(self) -> m.BufferStats:
        """``TS_BUFFER_STATS``."""
        return m.BufferStats.from_dict(_json(self.call(encode_frame(Opcode.TS_BUFFER_STATS))))

    def flush_buffer(self) -> m.FlushResult:
        """``TS_BUFFER_FLUSH`` (admin)."""
        return m.FlushResult.from_dict(_json(self.call(encode_frame(Opcode.TS_BUFFER_FLUSH))))

    # -- vectors (collection default)
    def add_buffered(self, pk: str, vector: Any, metadata: Optional[Mapping[str, Any]] = None) -> int:
        """``VECTOR_ADD_BUFFERED`` of one entity; returns the buffer size."""
        return _u64(self.call(encode_vector_put([(pk, vector, metadata)])))

    def add_buffered_batch(self, entities: Sequence[Any]) -> int:
        return _u64(self.call(encode_vector_put(list(entities), batch=True)))

    def update_buffered(self, pk: str, vector: Any, metadata: Optional[Mapping[str, Any]] = None) -> int:
        """``VECTOR_UPDATE_BUFFERED`` (the entity must exist)."""
        return _u64(self.call(encode_vector_put([(pk, vector, metadata)], update=True)))

    def update_buffered_batch(self, entities: Sequence[Any]) -> int:
        return _u64(self.call(encode_vector_put(list(entities), update=True, batch=True)))

    def remove_buffered(self, pk: str) -> int:
        """``VECTOR_REMOVE_BUFFERED`` (not re-sent after a lost answer)."""
        return _u64(self.call(encode_vector_remove([pk]), idempotent=False))

    def search(
        self,
        vector: Any,
        k: int = 10,
        filter: Optional[Mapping[str, Any]] = None,
        ef: Optional[int] = None,
        collection: Optional[str] = None,
    ) -> m.SearchResults:
        """``VECTOR_SEARCH`` (ours): the ``k`` nearest entities of ``collection`` (default
        ``default``) passing ``filter``, best first."""
        return decode_search_hits(self.call(encode_vector_search(vector, k, filter, ef, collection)))

    def remove_buffered_batch(self, pks: Sequence[str]) -> int:
        return _u64(self.call(encode_vector_remove(list(pks), batch=True), idempotent=False))

    def get_vector_buffer_stats(self) -> m.VectorBufferStats:
        return m.VectorBufferStats.from_dict(_json(self.call(encode_frame(Opcode.VECTOR_BUFFER_STATS))))

    def flush_vector_buffer(self) -> m.VectorFlushResult:
        return m.VectorFlushResult.from_dict(_json(self.call(encode_frame(Opcode.VECTOR_BUFFER_FLUSH))))

    # -- replication
    def get_replication_stats(self) -> m.ReplicationStats:
        """``REPLICATION_STATS``."""
        return m.ReplicationStats.from_dict(_json(self.call(encode_frame(Opcode.REPLICATION_STATS))))

    def configure_compression(self, compression_type: str, level: Optional[int] = None) -> m.ReplicationConfig:
        """``REPLICATION_CONFIG``: ``zstd`` or ``none``, level 1..22."""
        body: Dict[str, Any] = {"compression_type": compression_type}
        if level is not None:
            body["level"] = level
        frame = encode_frame(Opcode.REPLICATION_CONFIG, json.dumps(body).encode())
        return m.ReplicationConfig.from_dict(_json(self.call(frame)))


def _timestamped(points: Iterable[Any]) -> bool:
    for p in points:
        if isinstance(p, m.Point):
            ts = p.timestamp_ms
        elif isinstance(p, Mapping):
            ts = p.get("timestamp_ms")
        else:
            ts = p[3] if len(p) > 3 else None
        if ts is None:
            return False
    return True


class AsyncWireClient(_Base):
    """The asyncio twin of :class:`WireClient` (same methods, awaitable; calls are serialised
    by an ``asyncio.Lock``)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        token: Optional[str] = None,
        *,
        timeout: Optional[float] = 30.0,
        retry: Optional[RetryPolicy] = None,
    ) -> None:
        super().__init__(host, port, token, timeout, retry)
        self._r: Optional[asyncio.StreamReader] = None
        self._w: Optional[asyncio.StreamWriter] = None
        self._lock: Optional[asyncio.Lock] = None

    def _get_lock(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    async def connect(self) -> "AsyncWireClient":
        async with self._get_lock():
            if self._w is None:
                await self._open()
        return self

    async def _open(self) -> None:
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), self.timeout)
        except (OSError, asyncio.TimeoutError) as e:
            raise TransportError(f"cannot connect to {self.host}:{self.port}: {e!r}") from None
        sock = w.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._r, self._w = r, w
        if self.token:
            try:
                status, payload = (await self._roundtrip([encode_auth(self.token)]))[0]
            except BaseException:
                await self._drop()
                raise
            if status != Status.OK:
                await self._drop()
                raise _error(status, payload)

    async def _drop(self) -> None:
        w = self._w
        self._r = self._w = None
        if w is not None:
            try:
                w.close()
                await w.wait_closed()
            except (OSError, ConnectionError):
                pass

    async def close(self) -> None:
        async with self._get_lock():
            await self._drop()

    async def __aenter__(self) -> "AsyncWireClient":
        return await self.connect()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        return self._w is not None

    async def _roundtrip(self, frames: Sequence[bytes]) -> List[Tuple[int, bytes]]:
        assert self._r is not None and self._w is not None
        try:
            async def run() -> List[Tuple[int, bytes]]:
                assert self._r is not None and self._w is not None
                self._w.write(b"".join(frames))
                await self._w.drain()
                out = []
                for _ in frames:
                    head = await self._r.readexactly(6)
                    status, flags, n = HEADER.unpack(head)
                    if n > MAX_ANSWER:
                        raise DecodeError(f"answer of {n} bytes")
                    payload = await self._r.readexactly(n) if n else b""
                    out.append((status, payload))
                return out

            return await asyncio.wait_for(run(), self.timeout)
        except (OSError, ConnectionError, asyncio.IncompleteReadError, asyncio.TimeoutError, DecodeError, asyncio.CancelledError) as e:
            await self._drop()
            if isinstance(e, (DecodeError, asyncio.CancelledError)):
                raise
            raise TransportError(f"wire connection failed: {e!r}", maybe_applied=True) from None

    async def pipeline(self, frames: Sequence[bytes], idempotent: bool = True) -> List[Result]:
        async with self._get_lock():
            results: List[Optional[Result]] = [None] * len(frames)
            for start, end in _windows(frames):
                await self._window(frames, start, end, results, idempotent)
            return [r if r is not None else DecodeError("no answer") for r in results]

    async def _window(self, frames: Sequence[bytes], start: int, end: int, results: List[Optional[Result]], idempotent: bool) -> None:
        attempt = 0
        waited = 0.0
        policy = self.retry
        while True:
            try:
                if self._w is None:
                    await self._open()
                answers = await self._roundtrip(frames[start:end])
            except TransportError as e:
                e.attempts = attempt + 1
                if (e.maybe_applied and not idempotent) or attempt >= policy.max_retries:
                    raise
                attempt += 1
                await asyncio.sleep(policy.wait(attempt))
                continue
            first, applied_after, retry_after = _settle(answers, start, results)
            if first is not None:
                self.refusals += sum(1 for st, _ in answers if st in _REFUSED)
            if first is None or applied_after or attempt >= policy.max_retries:
                for i in range(start, end):
                    r = results[i]
                    if isinstance(r, SluiceError):
                        r.attempts = attempt + 1
                return
            attempt += 1
            wait = policy.wait(attempt, retry_after)
            if policy.max_elapsed is not None and waited + wait > policy.max_elapsed:
                return
            waited += wait
            await asyncio.sleep(wait)
            start = first

    async def call(self, frame: bytes, idempotent: bool = True) -> bytes:
        r = (await self.pipeline([frame], idempotent))[0]
        if isinstance(r, SluiceError):
            raise r
        return r

    async def auth(self, token: str) -> None:
        async with self._get_lock():
            self.token = token
            if self._w is None:
                await self._open()
                return
            status, payload = (await self._roundtrip([encode_auth(token)]))[0]
            if status != Status.OK:
                raise _error(status, payload)

    async def put_buffered(self, metric: str, entity: str, value: float, timestamp_ms: Optional[int] = None, tags: Optional[Mapping[str, str]] = None) -> int:
        frame = encode_ts_put([(metric, entity, value, timestamp_ms, tags)], buffered=True)
        return _u64(await self.call(frame, idempotent=timestamp_ms is not None))

    async def put_buffered_batch(self, points: Sequence[Any]) -> int:
        pts = list(points)
        return _u64(await self.call(encode_ts_put(pts, buffered=True, batch=True), idempotent=_timestamped(pts)))

    async def put(self, metric: str, entity: str, value: float, timestamp_ms: Optional[int] = None, tags: Optional[Mapping[str, str]] = None) -> int:
        frame = encode_ts_put([(metric, entity, value, timestamp_ms, tags)], buffered=False)
        return _u64(await self.call(frame, idempotent=timestamp_ms is not None))

    async def put_batch(self, points: Sequence[Any]) -> int:
        pts = list(points)
        return _u64(await self.call(encode_ts_put(pts, buffered=False, batch=True), idempotent=_timestamped(pts)))

    async def get_buffer_stats(self) -> m.BufferStats:
        return m.BufferStats.from_dict(_json(await self.call(encode_frame(Opcode.TS_BUFFER_STATS))))

    async def flush_buffer(self) -> m.FlushResult:
        return m.FlushResult.from_dict(_json(await self.call(encode_frame(Opcode.TS_BUFFER_FLUSH))))

    async def add_buffered(self, pk: str, vector: Any, metadata: Optional[Mapping[str, Any]] = None) -> int:
        return _u64(await self.call(encode_vector_put([(pk, vector, metadata)])))

    async def add_buffered_batch(self, entities: Sequence[Any]) -> int:
        return _u64(await self.call(encode_vector_put(list(entities), batch=True)))

    async def update_buffered(self, pk: str, vector: Any, metadata: Optional[Mapping[str, Any]] = None) -> int:
        return _u64(await self.call(encode_vector_put([(pk, vector, metadata)], update=True)))

    async def update_buffered_batch(self, entities: Sequence[Any]) -> int:
        return _u64(await self.call(encode_vector_put(list(entities), update=True, batch=True)))

    async def remove_buffered(self, pk: str) -> int:
        return _u64(await self.call(encode_vector_remove([pk]), idempotent=False))

    async def remove_buffered_batch(self, pks: Sequence[str]) -> int:
        return _u64(await self.call(encode_vector_remove(list(pks), batch=True), idempotent=False))

    async def search(
        self,
        vector: Any,
        k: int = 10,
        filter: Optional[Mapping[str, Any]] = None,
        ef: Optional[int] = None,
        collection: Optional[str] = None,
    ) -> m.SearchResults:
        return decode_search_hits(await self.call(encode_vector_search(vector, k, filter, ef, collection)))

    async def get_vector_buffer_stats(self) -> m.VectorBufferStats:
        return m.VectorBufferStats.from_dict(_json(await self.call(encode_frame(Opcode.VECTOR_BUFFER_STATS))))

    async def flush_vector_buffer(self) -> m.VectorFlushResult:
        return m.VectorFlushResult.from_dict(_json(await self.call(encode_frame(Opcode.VECTOR_BUFFER_FLUSH))))

    async def get_replication_stats(self) -> m.ReplicationStats:
        return m.ReplicationStats.from_dict(_json(await self.call(encode_frame(Opcode.REPLICATION_STATS))))

    async def configure_compression(self, compression_type: str, level: Optional[int] = None) -> m.ReplicationConfig:
        body: Dict[str, Any] = {"compression_type": compression_type}
        if level is not None:
            body["level"] = level
        frame = encode_frame(Opcode.REPLICATION_CONFIG, json.dumps(body).encode())
        return m.ReplicationConfig.from_dict(_json(await self.call(frame)))
