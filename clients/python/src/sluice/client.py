"""The blocking client: :class:`Client`."""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import httpx

from . import _core
from . import models as m
from ._core import Ops, Req
from ._http import Changefeed, ExportStream, SyncTransport, TimeoutTypes, VectorExportStream, _FeedState
from .batch import TimeSeriesBatchWriter, VectorBatchWriter, WriteFailure
from .retry import RetryPolicy
from .wire import WireClient

__all__ = ["Client", "Database", "TimeSeries", "Vectors", "Collections", "Databases", "Replication"]


def _timeout_seconds(timeout: TimeoutTypes) -> Optional[float]:
    if isinstance(timeout, httpx.Timeout):
        return timeout.read
    return timeout


class _Scoped:
    def __init__(self, client: "Client", ops: Ops, database: Optional[str]) -> None:
        self._client = client
        self._ops = ops
        self._database = database

    def _send(self, req: Req) -> Any:
        return self._client._http.send(req)

    def _wire_target(self) -> Tuple[str, int, Optional[str]]:
        if self._database not in (None, "default"):
            raise ValueError(
                f"the wire protocol writes to database 'default' only (this client is scoped to {self._database!r}); use transport='http'"
            )
        host, port = self._client._wire_addr
        return host, port, self._client._token


class TimeSeries(_Scoped):
    """Time-series operations (``client.timeseries``)."""

    def put(
        self,
        metric: str,
        entity: str,
        value: float,
        timestamp_ms: Optional[Any] = None,
        tags: Optional[Mapping[str, str]] = None,
        *,
        ack: Optional[str] = None,
    ) -> m.PutResult:
        """``POST /ts/put``: one point, written directly and acknowledged at ``ack``
        (``buffer``, ``wal`` or ``fsync``; the server's default is ``fsync``). Without
        ``timestamp_ms`` the server stamps its receive time."""
        return self._send(self._ops.ts_put(metric, entity, value, timestamp_ms, tags, ack))  # type: ignore[no-any-return]

    def put_batch(self, points: Iterable[Any], *, ack: Optional[str] = None) -> m.BatchPutResult:
        """``POST /ts/put/batch``: all points or none. ``points`` are :class:`Point` objects,
        dicts or tuples ``(metric, entity, value[, timestamp_ms[, tags]])``."""
        return self._send(self._ops.ts_put_batch(points, ack))  # type: ignore[no-any-return]

    def put_buffered(
        self,
        metric: str,
        entity: str,
        value: float,
        timestamp_ms: Optional[Any] = None,
        tags: Optional[Mapping[str, str]] = None,
        *,
        transport: str = "http",
    ) -> m.BufferedResult:
        """The seed's buffered write (``POST /ts/put/buffered``, or ``TS_PUT_BUFFERED`` with
        ``transport="wire"``): answered at once, visible to queries at once."""
        if transport == "wire":
            size = self._client._wire_conn(self).put_buffered(metric, entity, value, timestamp_ms, tags)
            return m.BufferedResult(True, True, size)
        if transport != "http":
            raise ValueError("transport must be 'http' or 'wire'")
        return self._send(self._ops.ts_put_buffered(metric, entity, value, timestamp_ms, tags, None))  # type: ignore[no-any-return]

    def get_buffer_stats(self) -> m.BufferStats:
        """``GET /ts/buffer/stats``: the TSAutoBuffer's statistics."""
        return self._send(self._ops.ts_buffer_stats())  # type: ignore[no-any-return]

    def cardinality(self, metric: Optional[str] = None, limit: Optional[int] = None) -> Dict[str, Any]:
        """``GET /ts/cardinality``: the database's series totals and limits, and the metrics,
        labels and label values with the most series (``limit`` of each, default 10), among
        every series or those of ``metric``. The answer's JSON as a dict."""
        return self._send(self._ops.ts_cardinality(metric, limit))  # type: ignore[no-any-return]

    def flush_buffer(self) -> m.FlushResult:
        """``POST /ts/buffer/flush`` (admin): flush the TSAutoBuffer now."""
        return self._send(self._ops.ts_flush())  # type: ignore[no-any-return]

    def write_lines(
        self,
        lines: Union[str, bytes, Iterable[str]],
        precision: str = "ns",
        *,
        ack: Optional[str] = None,
        api: str = "v1",
        idempotent: bool = False,
    ) -> None:
        """InfluxDB line protocol: ``POST /write`` (``api="v1"``) or ``POST /api/v2/write``
        (``api="v2"``). ``precision`` is ``ns``, ``us``, ``ms`` or ``s``. Each field becomes a
        point of metric ``<measurement>_<field>`` (``<measurement>`` for a field named
        ``value``); tag ``entity`` (else ``host``) is the entity. After a lost answer the
        request is re-sent only with ``idempotent=True`` (say so when every line has a
        timestamp)."""
        self._send(self._ops.write_lines(lines, precision, ack, api, idempotent))

    def query(
        self,
        metric: str,
        from_ms: Optional[Any] = None,
        to_ms: Optional[Any] = None,
        *,
        entity: Optional[str] = None,
        tags: Optional[Mapping[str, str]] = None,
        matchers: Optional[Sequence[Any]] = None,
        aggregation: Optional[str] = None,
        step_ms: Optional[int] = None,
        group_by: Optional[Sequence[str]] = None,
    ) -> m.QueryResult:
        """``POST /ts/query``: raw points, or aggregated (``min``, ``max``, ``sum``, ``avg``,
        ``count``, ``first``, ``last``) per ``step_ms`` and ``group_by``. The range is inclusive;
        ``from_ms`` defaults to 0 and ``to_ms`` to the end of time. ``matchers`` are
        :class:`Matcher` objects, dicts or ``(tag, op, value)`` tuples."""
        return self._send(self._ops.ts_query(metric, from_ms, to_ms, entity, tags, matchers, aggregation, step_ms, group_by))  # type: ignore[no-any-return]

    def delete(
        self,
        metric: str,
        from_ms: Any,
        to_ms: Any,
        *,
        entity: Optional[str] = None,
        tags: Optional[Mapping[str, str]] = None,
        matchers: Optional[Sequence[Any]] = None,
    ) -> m.TsDeleteResult:
        """``POST /ts/delete`` (admin): delete the points of the selected series in
        ``[from_ms, to_ms]`` (inclusive; both required). Durable, replicated and visible to
        queries when this returns; points written later are untouched. Never re-sent after a
        lost answer (it would delete what was written meanwhile)."""
        return self._send(self._ops.ts_delete(metric, from_ms, to_ms, entity, tags, matchers))  # type: ignore[no-any-return]

    def export(
        self,
        metric: str,
        from_ms: Optional[Any] = None,
        to_ms: Optional[Any] = None,
        *,
        entity: Optional[str] = None,
        tags: Optional[Mapping[str, str]] = None,
        matchers: Optional[Sequence[Any]] = None,
        raw: bool = False,
    ) -> ExportStream:
        """``POST /ts/export``: an iterator over the points (NDJSON, streamed: the answer is
        read as it arrives). Use it in a ``with`` block or exhaust it."""
        return ExportStream(self._client._http, self._ops.ts_export(metric, from_ms, to_ms, entity, tags, matchers), raw)

    def batch_writer(
        self,
        *,
        max_points: int = 5000,
        max_bytes: int = 1 << 20,
        flush_interval_ms: float = 1000,
        transport: str = "http",
        on_full: str = "block",
        on_error: Optional[Any] = None,
        max_queue_points: Optional[int] = None,
        block_timeout: Optional[float] = None,
        ack: str = "buffer",
        retry: Optional[RetryPolicy] = None,
        timestamps: str = "client",
    ) -> TimeSeriesBatchWriter:
        """An auto-batching writer (see :mod:`sluice.batch`): ``put()`` queues a point, a
        background thread sends batches of ``max_points`` / ``max_bytes`` or every
        ``flush_interval_ms``, over ``transport`` ``"http"`` (``/ts/put/batch?ack=…``) or
        ``"wire"`` (``TS_PUT_BUFFERED``, or ``TS_PUT`` when ``ack`` is not ``buffer``)."""
        return TimeSeriesBatchWriter(
            self,
            max_points=max_points,
            max_bytes=max_bytes,
            flush_interval_ms=flush_interval_ms,
            transport=transport,
            on_full=on_full,
            on_error=on_error,
            max_queue_points=max_queue_points,
            block_timeout=block_timeout,
            ack=ack,
            retry=retry,
            timestamps=timestamps,
        )

    def write_dataframe(
        self,
        df: Any,
        metric: Optional[str] = None,
        *,
        metric_column: Optional[str] = None,
        entity: Optional[str] = None,
        entity_column: Optional[str] = None,
        timestamp_column: Optional[str] = None,
        timestamp_unit: str = "ms",
        tag_columns: Optional[Sequence[str]] = None,
        value_column: str = "value",
        transport: str = "wire",
        ack: str = "buffer",
        chunk_points: int = 50_000,
        nan: str = "skip",
    ) -> int:
        """Writes a pandas DataFrame, one point per row; returns the points written.

        The series of a row is ``metric`` (or ``metric_column``), ``entity`` (or
        ``entity_column``) and ``tag_columns``; its time is ``timestamp_column`` (datetimes, or
        numbers in ``timestamp_unit``) or the index; its value ``value_column``. Rows with a NaN
        value are skipped (``nan="raise"`` refuses them). Encoded column-wise with numpy, sent
        in chunks of ``chunk_points`` in order, over ``"wire"`` (default) or ``"http"`` (line
        protocol). A failure raises after the earlier chunks were written (the exception's
        ``points_written`` says how many)."""
        from . import dataframe as dfm

        if transport not in ("wire", "http"):
            raise ValueError("transport must be 'wire' or 'http'")
        _core.check_ack(ack)
        blocks = dfm.series_blocks(
            df,
            metric=metric,
            metric_column=metric_column,
            entity=entity,
            entity_column=entity_column,
            timestamp_column=timestamp_column,
            timestamp_unit=timestamp_unit,
            tag_columns=tag_columns,
            value_column=value_column,
            nan=nan,
        )
        if transport == "wire":
            host, port, token = self._wire_target()
            frames = dfm.wire_frames(blocks, buffered=ack == "buffer", chunk_points=chunk_points)
            with WireClient(host, port, token, timeout=self._client._timeout_s, retry=self._client._retry) as w:
                return dfm.pipelined(frames, w.call)
        path = self._ops.p("/write")
        chunks = dfm.line_protocol_chunks(blocks, chunk_points=chunk_points)

        def send(body: bytes) -> None:
            req = Req("POST", path, _core.no_content, params={"precision": "ms", "ack": ack}, body=body, content_type="text/plain; charset=utf-8")
            self._send(req)

        return dfm.pipelined(chunks, send)


class Vectors(_Scoped):
    """Vector operations (``client.vectors``); ``collection`` defaults to ``default``."""

    def add(
        self,
        pk: str,
        vector: Any,
        metadata: Optional[Mapping[str, Any]] = None,
        *,
        collection: Optional[str] = None,
        ack: Optional[str] = None,
        timestamp_ms: Optional[Any] = None,
        expires_at_ms: Optional[Any] = None,
    ) -> m.AddResult:
        """``POST /vectors/add``: add (or replace) an entity, searchable on return. ``vector``
        may be any sequence of floats or a numpy array. ``timestamp_ms`` is the entity's time
        (what ``time_range`` and ``decay`` of :meth:`search` look at); ``expires_at_ms`` when it
        expires, overriding the collection's ``ttl_ms``. Both are ms since the epoch (int or
        ``datetime``)."""
        return self._send(self._ops.v_add(pk, vector, metadata, collection, ack, timestamp_ms, expires_at_ms))  # type: ignore[no-any-return]

    def add_batch(self, entities: Iterable[Any], *, collection: Optional[str] = None, ack: Optional[str] = None) -> m.BatchAddResult:
        """``POST /vectors/add/batch``: all entities or none. ``entities`` are
        :class:`VectorEntity` objects, dicts or tuples
        ``(pk, vector[, metadata[, timestamp_ms[, expires_at_ms]]])``."""
        return self._send(self._ops.v_add_batch(entities, collection, ack))  # type: ignore[no-any-return]

    def add_buffered(
        self,
        pk: str,
        vector: Any,
        metadata: Optional[Mapping[str, Any]] = None,
        *,
        collection: Optional[str] = None,
        transport: str = "http",
        timestamp_ms: Optional[Any] = None,
        expires_at_ms: Optional[Any] = None,
    ) -> m.BufferedResult:
        """The seed's buffered add (``POST /vectors/add/buffered`` or ``VECTOR_ADD_BUFFERED``
        with ``transport="wire"``, collection ``default`` only): searchable at once.
        ``timestamp_ms`` and ``expires_at_ms`` as in :meth:`add` (HTTP only)."""
        if transport == "wire":
            self._no_collection(collection)
            self._http_only(timestamp_ms=timestamp_ms, expires_at_ms=expires_at_ms)
            return m.BufferedResult(True, True, self._client._wire_conn(self).add_buffered(pk, vector, metadata))
        return self._send(self._ops.v_add_buffered(pk, vector, metadata, collection, timestamp_ms, expires_at_ms))  # type: ignore[no-any-return]

    def update_buffered(
        self,
        pk: str,
        vector: Any,
        metadata: Optional[Mapping[str, Any]] = None,
        *,
        collection: Optional[str] = None,
        transport: str = "http",
        timestamp_ms: Optional[Any] = None,
        expires_at_ms: Optional[Any] = None,
    ) -> m.BufferedResult:
        """The seed's buffered update of an existing entity (404 :class:`NotFound` if none).
        ``timestamp_ms`` and ``expires_at_ms`` as in :meth:`add` (HTTP only)."""
        if transport == "wire":
            self._no_collection(collection)
            self._http_only(timestamp_ms=timestamp_ms, expires_at_ms=expires_at_ms)
            return m.BufferedResult(True, True, self._client._wire_conn(self).update_buffered(pk, vector, metadata))
        return self._send(self._ops.v_update_buffered(pk, vector, metadata, collection, timestamp_ms, expires_at_ms))  # type: ignore[no-any-return]

    def remove_buffered(self, pk: str, *, collection: Optional[str] = None, transport: str = "http") -> m.BufferedResult:
        """The seed's buffered remove (``DELETE /vectors/remove/buffered``)."""
        if transport == "wire":
            self._no_collection(collection)
            return m.BufferedResult(True, True, self._client._wire_conn(self).remove_buffered(pk))
        return self._send(self._ops.v_remove_buffered(pk, collection))  # type: ignore[no-any-return]

    @staticmethod
    def _no_collection(collection: Optional[str]) -> None:
        if collection not in (None, "default"):
            raise ValueError("the wire protocol acts on collection 'default' only; use transport='http'")

    @staticmethod
    def _http_only(**kw: Any) -> None:
        given = [k for k, v in kw.items() if v is not None]
        if given:
            raise ValueError(f"the wire protocol does not carry {', '.join(given)}; use transport='http'")

    def get_buffer_stats(self) -> m.VectorBufferStats:
        """``GET /vectors/buffer/stats``: the VectorAutoBuffer's statistics."""
        return self._send(self._ops.v_buffer_stats())  # type: ignore[no-any-return]

    def flush_buffer(self) -> m.VectorFlushResult:
        """``POST /vectors/buffer/flush`` (admin): apply the buffer to the indexes now."""
        return self._send(self._ops.v_flush())  # type: ignore[no-any-return]

    def search(
        self,
        vector: Any,
        k: int = 10,
        *,
        filter: Optional[Mapping[str, Any]] = None,
        ef: Optional[int] = None,
        collection: Optional[str] = None,
        transport: str = "http",
        time_range: Optional[Any] = None,
        decay: Optional[Any] = None,
        with_series: Optional[Any] = None,
    ) -> m.SearchResults:
        """``POST /vectors/search`` (or the ``VECTOR_SEARCH`` opcode with ``transport="wire"``,
        database ``default``): the ``k`` nearest entities passing ``filter``, best first.
        Filters: ``{field: value}`` (equality; an array field matches if any element does),
        ``{field: {"$in": [...]}}``, ``{field: {"$gt"|"$gte"|"$lt"|"$lte": n, ...}}``; ``ef``
        widens the HNSW search. ``time_range`` (a :class:`TimeRange`, a dict
        ``{"from_ms", "to_ms"}`` or a pair ``(from_ms, to_ms)``, inclusive, None an open bound)
        keeps entities whose ``timestamp_ms`` is inside it; ``decay`` (a :class:`Decay` or a dict
        ``{"half_life_ms", "weight"}``) ranks by ``distance - weight * 2 ** (-age / half_life_ms)``
        and sets each result's ``rank``. ``with_series`` (a :class:`WithSeries` or a dict
        ``{"aggregation", "window_ms"}``) sets the ``series`` of each result whose metadata names
        a series (string fields ``metric`` and ``entity``): its aggregate over the window ending
        now. All three are HTTP only."""
        if transport == "wire":
            self._http_only(time_range=time_range, decay=decay, with_series=with_series)
            return self._client._wire_conn(self).search(vector, k, filter, ef, collection)  # type: ignore[no-any-return]
        if transport != "http":
            raise ValueError("transport must be 'http' or 'wire'")
        return self._send(self._ops.v_search(vector, k, filter, ef, collection, time_range, decay, with_series))  # type: ignore[no-any-return]

    def get(self, pk: str, *, collection: Optional[str] = None) -> m.VectorEntity:
        """``GET /vectors/{pk}``: one entity, buffered or indexed (404 if none)."""
        return self._send(self._ops.v_get(pk, collection))  # type: ignore[no-any-return]

    def delete(self, pk: str, *, collection: Optional[str] = None, ack: Optional[str] = None) -> m.DeleteResult:
        """``DELETE /vectors/{pk}``: remove now (not re-sent after a lost answer)."""
        return self._send(self._ops.v_delete(pk, collection, ack))  # type: ignore[no-any-return]

    def batch_writer(
        self,
        *,
        max_ops: int = 1000,
        max_bytes: int = 4 << 20,
        flush_interval_ms: float = 1000,
        transport: str = "http",
        collection: Optional[str] = None,
        on_full: str = "block",
        on_error: Optional[Any] = None,
        max_queue_ops: Optional[int] = None,
        block_timeout: Optional[float] = None,
        retry: Optional[RetryPolicy] = None,
    ) -> VectorBatchWriter:
        """An auto-batching writer of adds, updates and removes (see :mod:`sluice.batch`)."""
        return VectorBatchWriter(
            self,
            max_ops=max_ops,
            max_bytes=max_bytes,
            flush_interval_ms=flush_interval_ms,
            transport=transport,
            collection=collection,
            on_full=on_full,
            on_error=on_error,
            max_queue_ops=max_queue_ops,
            block_timeout=block_timeout,
            retry=retry,
        )


class Collections(_Scoped):
    """Vector collections (``client.collections``)."""

    def create(
        self,
        name: str,
        dimension: int,
        *,
        distance: Optional[str] = None,
        precision: Optional[str] = None,
        hnsw: Optional[Any] = None,
        ttl_ms: Optional[int] = None,
    ) -> m.CollectionInfo:
        """``POST /v1/collections``: ``distance`` ``cosine``/``l2``/``ip``, ``precision``
        ``f32``/``f16``/``i8``, ``hnsw`` an :class:`HnswSpec` or dict (409 :class:`Conflict` if
        it exists). With ``ttl_ms`` (1 ms to 100 years), entities written without
        ``expires_at_ms`` expire this long after they are written."""
        return self._send(self._ops.c_create(name, dimension, distance, precision, hnsw, ttl_ms))  # type: ignore[no-any-return]

    def list(self) -> List[m.CollectionInfo]:
        """``GET /v1/collections``."""
        return self._send(self._ops.c_list())  # type: ignore[no-any-return]

    def get(self, name: str) -> m.CollectionInfo:
        """``GET /v1/collections/{name}``."""
        return self._send(self._ops.c_get(name))  # type: ignore[no-any-return]

    def delete(self, name: str) -> m.DeleteResult:
        """``DELETE /v1/collections/{name}``: the collection and everything in it."""
        return self._send(self._ops.c_delete(name))  # type: ignore[no-any-return]

    def export(self, name: str, *, raw: bool = False) -> VectorExportStream:
        """``GET /v1/collections/{name}/export``: an iterator over the collection's entities
        (:class:`VectorEntity`, or dicts with ``raw=True``) in pk order, buffered ones included
        and expired ones not (NDJSON, streamed). Use it in a ``with`` block or exhaust it; an
        unknown collection raises :class:`NotFound` (``collection_not_found``)."""
        return VectorExportStream(self._client._http, self._ops.c_export(name), raw)


class Databases:
    """Databases (``client.databases``; admin on the server)."""

    def __init__(self, client: "Client") -> None:
        self._client = client

    def create(
        self,
        name: str,
        *,
        retention_ms: Optional[int] = None,
        policy: Optional[str] = None,
        downsampling: Optional[Sequence[Mapping[str, int]]] = None,
    ) -> m.DatabaseInfo:
        """``POST /v1/databases`` (409 :class:`Conflict` if it exists). ``downsampling``: rules
        ``{"after_ms": …, "resolution_ms": …}`` by increasing age (docs/downsampling.md)."""
        return self._client._http.send(  # type: ignore[no-any-return]
            _core.db_create(name, retention_ms, policy, downsampling)
        )

    def list(self) -> List[m.DatabaseInfo]:
        """``GET /v1/databases``: those the caller has a role on."""
        return self._client._http.send(_core.db_list())  # type: ignore[no-any-return]

    def delete(self, name: str) -> bool:
        """``DELETE /v1/databases/{db}``: the database and all its data."""
        return self._client._http.send(_core.db_delete(name))  # type: ignore[no-any-return]


class Replication:
    """Replication (``client.replication``; the seed's names; admin on the server)."""

    def __init__(self, client: "Client") -> None:
        self._client = client

    def add_replica(self, replica_id: str, endpoint: str) -> m.ReplicaInfo:
        """``POST /api/v1/replication/replicas``: register a replica (``endpoint`` its HTTP
        base URL); 409 :class:`Conflict` if the id has another endpoint."""
        return self._client._http.send(_core.repl_add(replica_id, endpoint))  # type: ignore[no-any-return]

    def remove_replica(self, replica_id: str) -> bool:
        """``DELETE /api/v1/replication/replicas/{replica_id}``."""
        return self._client._http.send(_core.repl_remove(replica_id))  # type: ignore[no-any-return]

    def list_replicas(self) -> List[m.ReplicaInfo]:
        """``GET /api/v1/replication/replicas``."""
        return self._client._http.send(_core.repl_list())  # type: ignore[no-any-return]

    def get_replication_stats(self) -> m.ReplicationStats:
        """``GET /api/v1/replication/stats``."""
        return self._client._http.send(_core.repl_stats())  # type: ignore[no-any-return]

    def configure_compression(self, compression_type: str = "zstd", level: Optional[int] = None) -> m.ReplicationConfig:
        """``POST /api/v1/replication/config``: ``zstd`` or ``none``, zstd ``level`` 1..22;
        applies to the next batch, not persisted."""
        return self._client._http.send(_core.repl_config(compression_type, level))  # type: ignore[no-any-return]

    def promote(self) -> m.PromoteResult:
        """``POST /api/v1/replication/promote`` (on a replica): make it a primary."""
        return self._client._http.send(_core.repl_promote())  # type: ignore[no-any-return]


class Database:
    """A view of one database (``client.database("metrics")``): the same operations under
    ``/v1/databases/{db}/…``."""

    def __init__(self, client: "Client", name: str) -> None:
        self.name = name
        self._client = client
        ops = Ops("/v1/databases/" + _core.enc(name))
        self.timeseries = TimeSeries(client, ops, name)
        self.vectors = Vectors(client, ops, name)
        self.collections = Collections(client, ops, name)

    def changes(
        self,
        from_lsn: Optional[int] = None,
        *,
        last_event_id: Optional[Union[int, str]] = None,
        reconnect: bool = True,
        max_reconnects: Optional[int] = 10,
        idle_timeout: Optional[float] = None,
    ) -> Changefeed:
        """``GET /v1/databases/{db}/changes``: an iterator over the database's changes
        (:class:`ChangeEvent`, ``id`` = LSN). ``from_lsn``: the last LSN you have (0: from the
        first record retained); else ``last_event_id`` (sent as ``Last-Event-ID``); else the
        next record written. Reconnects after the last id seen. ``idle_timeout`` ends the
        iteration after that many seconds without an event."""
        path = "/v1/databases/" + _core.enc(self.name) + "/changes"
        state = _FeedState(path, from_lsn, last_event_id, reconnect, max_reconnects, idle_timeout)
        return Changefeed(self._client._http, state)

    def delete(self) -> bool:
        """Deletes this database (``DELETE /v1/databases/{db}``)."""
        return self._client.databases.delete(self.name)

    def __repr__(self) -> str:
        return f"Database({self.name!r})"


class Client:
    """A blocking client of one Sluice server.

    Args:
        url: the HTTP base URL (``http://127.0.0.1:8080``; ``https://`` for TLS).
        token: bearer token or JWT sent with every request (and ``AUTH`` on the wire).
        timeout: seconds (or an ``httpx.Timeout``) per request.
        database: scope every data route to ``/v1/databases/{database}/…`` (None: the flat
            routes of database ``default``).
        verify: TLS verification (True, False, a CA bundle path or an ``ssl.SSLContext``).
        cert: client certificate (path, or ``(cert, key)``).
        retry: the :class:`RetryPolicy` for refusals (429/503, wire 0x04/0x07).
        wire_address: ``host:port`` of the wire listener (default: the URL's host, port 18765).
        headers: extra HTTP headers.
        http2: use HTTP/2 (needs ``httpx[http2]``).
        transport: an ``httpx`` transport (tests).
    """

    def __init__(
        self,
        url: str = "http://127.0.0.1:8080",
        token: Optional[str] = None,
        *,
        timeout: TimeoutTypes = 30.0,
        database: Optional[str] = None,
        verify: Any = True,
        cert: Any = None,
        retry: Optional[RetryPolicy] = None,
        wire_address: Optional[str] = None,
        headers: Optional[Dict[str, str]] = None,
        http2: bool = False,
        transport: Optional[httpx.BaseTransport] = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self._retry = retry or RetryPolicy()
        self._timeout_s = _timeout_seconds(timeout)
        self._http = SyncTransport(self.url, token, timeout, verify, cert, self._retry, headers, transport, http2)
        self._wire_addr = _core.wire_target(self.url, wire_address)
        self._wire: Optional[WireClient] = None
        self.database_name = database
        ops = Ops("" if database is None else "/v1/databases/" + _core.enc(database))
        self.timeseries = TimeSeries(self, ops, database)
        self.vectors = Vectors(self, ops, database)
        self.collections = Collections(self, ops, database)
        self.databases = Databases(self)
        self.replication = Replication(self)

    def database(self, name: str) -> Database:
        """A view of database ``name`` (its routes under ``/v1/databases/{name}/…``)."""
        return Database(self, name)

    def changes(
        self,
        from_lsn: Optional[int] = None,
        *,
        last_event_id: Optional[Union[int, str]] = None,
        reconnect: bool = True,
        max_reconnects: Optional[int] = 10,
        idle_timeout: Optional[float] = None,
    ) -> Changefeed:
        """The changefeed of this client's database (``default`` when unscoped); see
        :meth:`Database.changes`."""
        return self.database(self.database_name or "default").changes(
            from_lsn, last_event_id=last_event_id, reconnect=reconnect, max_reconnects=max_reconnects, idle_timeout=idle_timeout
        )

    # -- system routes
    def health(self) -> Dict[str, Any]:
        """``GET /healthz``."""
        return self._http.send(_core.sys_get("/healthz", _core.raw_json))  # type: ignore[no-any-return]

    def ready(self) -> Dict[str, Any]:
        """``GET /readyz`` (retried while the server recovers: 503)."""
        return self._http.send(_core.sys_get("/readyz", _core.raw_json))  # type: ignore[no-any-return]

    def version(self) -> Dict[str, Any]:
        """``GET /version``."""
        return self._http.send(_core.sys_get("/version", _core.raw_json))  # type: ignore[no-any-return]

    def metrics(self) -> str:
        """``GET /metrics``: Prometheus text."""
        return self._http.send(_core.sys_get("/metrics", _core.text))  # type: ignore[no-any-return]

    def openapi(self) -> Dict[str, Any]:
        """``GET /openapi.json``: the server's OpenAPI document."""
        return self._http.send(_core.sys_get("/openapi.json", _core.raw_json))  # type: ignore[no-any-return]

    # -- wire
    def wire(self) -> WireClient:
        """A new :class:`WireClient` to this server's wire listener, with this client's token."""
        host, port = self._wire_addr
        return WireClient(host, port, self._token, timeout=self._timeout_s, retry=self._retry)

    def _wire_conn(self, scoped: _Scoped) -> WireClient:
        scoped._wire_target()
        if self._wire is None:
            self._wire = self.wire()
        return self._wire

    def close(self) -> None:
        """Closes the connection pool (and the wire connection, if one was opened)."""
        self._http.close()
        if self._wire is not None:
            self._wire.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.url!r}, database={self.database_name!r})"
