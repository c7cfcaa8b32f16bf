"""The asyncio client: :class:`AsyncClient` (the same surface as :class:`sluice.Client`,
every call awaitable)."""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import httpx

from . import _core
from . import models as m
from ._core import Ops, Req
from ._http import AsyncChangefeed, AsyncExportStream, AsyncTransport, AsyncVectorExportStream, TimeoutTypes, _FeedState
from .batch import AsyncTimeSeriesBatchWriter, AsyncVectorBatchWriter
from .retry import RetryPolicy
from .wire import AsyncWireClient

__all__ = ["AsyncClient", "AsyncDatabase", "AsyncTimeSeries", "AsyncVectors", "AsyncCollections", "AsyncDatabases", "AsyncReplication"]


def _timeout_seconds(timeout: TimeoutTypes) -> Optional[float]:
    if isinstance(timeout, httpx.Timeout):
        return timeout.read
    return timeout


class _Scoped:
    def __init__(self, client: "AsyncClient", ops: Ops, database: Optional[str]) -> None:
        self._client = client
        self._ops = ops
        self._database = database

    async def _send(self, req: Req) -> Any:
        return await self._client._http.send(req)

    def _wire_target(self) -> Tuple[str, int, Optional[str]]:
        if self._database not in (None, "default"):
            raise ValueError(
                f"the wire protocol writes to database 'default' only (this client is scoped to {self._database!r}); use transport='http'"
            )
        host, port = self._client._wire_addr
        return host, port, self._client._token


class AsyncTimeSeries(_Scoped):
    """Time-series operations (``client.timeseries``)."""

    async def put(
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
        return await self._send(self._ops.ts_put(metric, entity, value, timestamp_ms, tags, ack))  # type: ignore[no-any-return]

    async def put_batch(self, points: Iterable[Any], *, ack: Optional[str] = None) -> m.BatchPutResult:
        """``POST /ts/put/batch``: all points or none. ``points`` are :class:`Point` objects,
        dicts or tuples ``(metric, entity, value[, timestamp_ms[, tags]])``."""
        return await self._send(self._ops.ts_put_batch(points, ack))  # type: ignore[no-any-return]

    async def put_buffered(
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
            size = await self._client._wire_conn(self).put_buffered(metric, entity, value, timestamp_ms, tags)
            return m.BufferedResult(True, True, size)
        if transport != "http":
            raise ValueError("transport must be 'http' or 'wire'")
        return await self._send(self._ops.ts_put_buffered(metric, entity, value, timestamp_ms, tags, None))  # type: ignore[no-any-return]

    async def get_buffer_stats(self) -> m.BufferStats:
        """``GET /ts/buffer/stats``: the TSAutoBuffer's statistics."""
        return await self._send(self._ops.ts_buffer_stats())  # type: ignore[no-any-return]

    async def cardinality(self, metric: Optional[str] = None, limit: Optional[int] = None) -> Dict[str, Any]:
        """``GET /ts/cardinality``: the database's series totals and limits, and the metrics,
        labels and label values with the most series (``limit`` of each, default 10), among
        every series or those of ``metric``. The answer's JSON as a dict."""
        return await self._send(self._ops.ts_cardinality(metric, limit))  # type: ignore[no-any-return]

    async def flush_buffer(self) -> m.FlushResult:
        """``POST /ts/buffer/flush`` (admin): flush the TSAutoBuffer now."""
        return await self._send(self._ops.ts_flush())  # type: ignore[no-any-return]

    async def write_lines(
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
        await self._send(self._ops.write_lines(lines, precision, ack, api, idempotent))

    async def query(
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
        return await self._send(self._ops.ts_query(metric, from_ms, to_ms, entity, tags, matchers, aggregation, step_ms, group_by))  # type: ignore[no-any-return]

    async def delete(
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
        return await self._send(self._ops.ts_delete(metric, from_ms, to_ms, entity, tags, matchers))  # type: ignore[no-any-return]

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
    ) -> AsyncExportStream:
        """``POST /ts/export``: an iterator over the points (NDJSON, streamed: the answer is
        read as it arrives). Use it in a ``with`` block or exhaust it."""
        return AsyncExportStream(self._client._http, self._ops.ts_export(metric, from_ms, to_ms, entity, tags, matchers), raw)

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
    ) -> AsyncTimeSeriesBatchWriter:
        """An auto-batching writer (see :mod:`sluice.batch`): ``put()`` queues a point, a
        background thread sends batches of ``max_points`` / ``max_bytes`` or every
        ``flush_interval_ms``, over ``transport`` ``"http"`` (``/ts/put/batch?ack=…``) or
        ``"wire"`` (``TS_PUT_BUFFERED``, or ``TS_PUT`` when ``ack`` is not ``buffer``)."""
        return AsyncTimeSeriesBatchWriter(
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

    async def write_dataframe(
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
        written = 0
        if transport == "wire":
            host, port, token = self._wire_target()
            frames = dfm.wire_frames(blocks, buffered=ack == "buffer", chunk_points=chunk_points)
            async with AsyncWireClient(host, port, token, timeout=self._client._timeout_s, retry=self._client._retry) as w:
                for frame, n in frames:
                    try:
                        await w.call(frame)
                    except Exception as e:
                        e.points_written = written  # type: ignore[attr-defined]
                        raise
                    written += n
            return written
        path = self._ops.p("/write")
        for body, n in dfm.line_protocol_chunks(blocks, chunk_points=chunk_points):
            req = Req("POST", path, _core.no_content, params={"precision": "ms", "ack": ack}, body=body, content_type="text/plain; charset=utf-8")
            try:
                await self._send(req)
            except Exception as e:
                e.points_written = written  # type: ignore[attr-defined]
                raise
            written += n
        return written


class AsyncVectors(_Scoped):
    """Vector operations (``client.vectors``); ``collection`` defaults to ``default``."""

    async def add(
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
        return await self._send(self._ops.v_add(pk, vector, metadata, collection, ack, timestamp_ms, expires_at_ms))  # type: ignore[no-any-return]

    async def add_batch(self, entities: Iterable[Any], *, collection: Optional[str] = None, ack: Optional[str] = None) -> m.BatchAddResult:
        """``POST /vectors/add/batch``: all entities or none. ``entities`` are
        :class:`VectorEntity` objects, dicts or tuples
        ``(pk, vector[, metadata[, timestamp_ms[, expires_at_ms]]])``."""
        return await self._send(self._ops.v_add_batch(entities, collection, ack))  # type: ignore[no-any-return]

    async def add_buffered(
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
            return m.BufferedResult(True, True, await self._client._wire_conn(self).add_buffered(pk, vector, metadata))
        return await self._send(self._ops.v_add_buffered(pk, vector, metadata, collection, timestamp_ms, expires_at_ms))  # type: ignore[no-any-return]

    async def update_buffered(
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
            return m.BufferedResult(True, True, await self._client._wire_conn(self).update_buffered(pk, vector, metadata))
        return await self._send(self._ops.v_update_buffered(pk, vector, metadata, collection, timestamp_ms, expires_at_ms))  # type: ignore[no-any-return]

    async def remove_buffered(self, pk: str, *, collection: Optional[str] = None, transport: str = "http") -> m.BufferedResult:
        """The seed's buffered remove (``DELETE /vectors/remove/buffered``)."""
        if transport == "wire":
            self._no_collection(collection)
            return m.BufferedResult(True, True, await self._client._wire_conn(self).remove_buffered(pk))
        return await self._send(self._ops.v_remove_buffered(pk, collection))  # type: ignore[no-any-return]

    @staticmethod
    def _no_collection(collection: Optional[str]) -> None:
        if collection not in (None, "default"):
            raise ValueError("the wire protocol acts on collection 'default' only; use transport='http'")

    @staticmethod
    def _http_only(**kw: Any) -> None:
        given = [k for k, v in kw.items() if v is not None]
        if given:
            raise ValueError(f"the wire protocol does not carry {', '.join(given)}; use transport='http'")

    async def get_buffer_stats(self) -> m.VectorBufferStats:
        """``GET /vectors/buffer/stats``: the VectorAutoBuffer's statistics."""
        return await self._send(self._ops.v_buffer_stats())  # type: ignore[no-any-return]

    async def flush_buffer(self) -> m.VectorFlushResult:
        """``POST /vectors/buffer/flush`` (admin): apply the buffer to the indexes now."""
        return await self._send(self._ops.v_flush())  # type: ignore[no-any-return]

    async def search(
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
            return await self._client._wire_conn(self).search(vector, k, filter, ef, collection)  # type: ignore[no-any-return]
        if transport != "http":
            raise ValueError("transport must be 'http' or 'wire'")
        return await self._send(self._ops.v_search(vector, k, filter, ef, collection, time_range, decay, with_series))  # type: ignore[no-any-return]

    async def get(self, pk: str, *, collection: Optional[str] = None) -> m.VectorEntity:
        """``GET /vectors/{pk}``: one entity, buffered or indexed (404 if none)."""
        return await self._send(self._ops.v_get(pk, collection))  # type: ignore[no-any-return]

    async def delete(self, pk: str, *, collection: Optional[str] = None, ack: Optional[str] = None) -> m.DeleteResult:
        """``DELETE /vectors/{pk}``: remove now (not re-sent after a lost answer)."""
        return await self._send(self._ops.v_delete(pk, collection, ack))  # type: ignore[no-any-return]

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
    ) -> AsyncVectorBatchWriter:
        """An auto-batching writer of adds, updates and removes (see :mod:`sluice.batch`)."""
        return AsyncVectorBatchWriter(
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


class AsyncCollections(_Scoped):
    """Vector collections (``client.collections``)."""

    async def create(
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
        return await self._send(self._ops.c_create(name, dimension, distance, precision, hnsw, ttl_ms))  # type: ignore[no-any-return]

    async def list(self) -> List[m.CollectionInfo]:
        """``GET /v1/collections``."""
        return await self._send(self._ops.c_list())  # type: ignore[no-any-return]

    async def get(self, name: str) -> m.CollectionInfo:
        """``GET /v1/collections/{name}``."""
        return await self._send(self._ops.c_get(name))  # type: ignore[no-any-return]

    async def delete(self, name: str) -> m.DeleteResult:
        """``DELETE /v1/collections/{name}``: the collection and everything in it."""
        return await self._send(self._ops.c_delete(name))  # type: ignore[no-any-return]

    def export(self, name: str, *, raw: bool = False) -> AsyncVectorExportStream:
        """``GET /v1/collections/{name}/export``: an async iterator over the collection's
        entities (:class:`VectorEntity`, or dicts with ``raw=True``) in pk order, buffered ones
        included and expired ones not (NDJSON, streamed). Use it in an ``async with`` block or
        exhaust it; an unknown collection raises :class:`NotFound` (``collection_not_found``)."""
        return AsyncVectorExportStream(self._client._http, self._ops.c_export(name), raw)


class AsyncDatabases:
    """Databases (``client.databases``; admin on the server)."""

    def __init__(self, client: "AsyncClient") -> None:
        self._client = client

    async def create(
        self,
        name: str,
        *,
        retention_ms: Optional[int] = None,
        policy: Optional[str] = None,
        downsampling: Optional[Sequence[Mapping[str, int]]] = None,
    ) -> m.DatabaseInfo:
        """``POST /v1/databases`` (409 :class:`Conflict` if it exists). ``downsampling``: rules
        ``{"after_ms": …, "resolution_ms": …}`` by increasing age (docs/downsampling.md)."""
        return await self._client._http.send(  # type: ignore[no-any-return]
            _core.db_create(name, retention_ms, policy, downsampling)
        )

    async def list(self) -> List[m.DatabaseInfo]:
        """``GET /v1/databases``: those the caller has a role on."""
        return await self._client._http.send(_core.db_list())  # type: ignore[no-any-return]

    async def delete(self, name: str) -> bool:
        """``DELETE /v1/databases/{db}``: the database and all its data."""
        return await self._client._http.send(_core.db_delete(name))  # type: ignore[no-any-return]


class AsyncReplication:
    """Replication (``client.replication``; the seed's names; admin on the server)."""

    def __init__(self, client: "AsyncClient") -> None:
        self._client = client

    async def add_replica(self, replica_id: str, endpoint: str) -> m.ReplicaInfo:
        """``POST /api/v1/replication/replicas``: register a replica (``endpoint`` its HTTP
        base URL); 409 :class:`Conflict` if the id has another endpoint."""
        return await self._client._http.send(_core.repl_add(replica_id, endpoint))  # type: ignore[no-any-return]

    async def remove_replica(self, replica_id: str) -> bool:
        """``DELETE /api/v1/replication/replicas/{replica_id}``."""
        return await self._client._http.send(_core.repl_remove(replica_id))  # type: ignore[no-any-return]

    async def list_replicas(self) -> List[m.ReplicaInfo]:
        """``GET /api/v1/replication/replicas``."""
        return await self._client._http.send(_core.repl_list())  # type: ignore[no-any-return]

    async def get_replication_stats(self) -> m.ReplicationStats:
        """``GET /api/v1/replication/stats``."""
        return await self._client._http.send(_core.repl_stats())  # type: ignore[no-any-return]

    async def configure_compression(self, compression_type: str = "zstd", level: Optional[int] = None) -> m.ReplicationConfig:
        """``POST /api/v1/replication/config``: ``zstd`` or ``none``, zstd ``level`` 1..22;
        applies to the next batch, not persisted."""
        return await self._client._http.send(_core.repl_config(compression_type, level))  # type: ignore[no-any-return]

    async def promote(self) -> m.PromoteResult:
        """``POST /api/v1/replication/promote`` (on a replica): make it a primary."""
        return await self._client._http.send(_core.repl_promote())  # type: ignore[no-any-return]


class AsyncDatabase:
    """A view of one database (``client.database("metrics")``): the same operations under
    ``/v1/databases/{db}/…``."""

    def __init__(self, client: "AsyncClient", name: str) -> None:
        self.name = name
        self._client = client
        ops = Ops("/v1/databases/" + _core.enc(name))
        self.timeseries = AsyncTimeSeries(client, ops, name)
        self.vectors = AsyncVectors(client, ops, name)
        self.collections = AsyncCollections(client, ops, name)

    def changes(
        self,
        from_lsn: Optional[int] = None,
        *,
        last_event_id: Optional[Union[int, str]] = None,
        reconnect: bool = True,
        max_reconnects: Optional[int] = 10,
        idle_timeout: Optional[float] = None,
    ) -> AsyncChangefeed:
        """``GET /v1/databases/{db}/changes``: an iterator over the database's changes
        (:class:`ChangeEvent`, ``id`` = LSN). ``from_lsn``: the last LSN you have (0: from the
        first record retained); else ``last_event_id`` (sent as ``Last-Event-ID``); else the
        next record written. Reconnects after the last id seen. ``idle_timeout`` ends the
        iteration after that many seconds without an event."""
        path = "/v1/databases/" + _core.enc(self.name) + "/changes"
        state = _FeedState(path, from_lsn, last_event_id, reconnect, max_reconnects, idle_timeout)
        return AsyncChangefeed(self._client._http, state)

    async def delete(self) -> bool:
        """Deletes this database (``DELETE /v1/databases/{db}``)."""
        return await self._client.databases.delete(self.name)

    def __repr__(self) -> str:
        return f"Database({self.name!r})"


class AsyncClient:
    """An asyncio client of one Sluice server (``async with AsyncClient(url) as c``; every
    method of :class:`sluice.Client` is here, awaitable; batch writers use an asyncio task).

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
        transport: Optional[httpx.AsyncBaseTransport] = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self._retry = retry or RetryPolicy()
        self._timeout_s = _timeout_seconds(timeout)
        self._http = AsyncTransport(self.url, token, timeout, verify, cert, self._retry, headers, transport, http2)
        self._wire_addr = _core.wire_target(self.url, wire_address)
        self._wire: Optional[AsyncWireClient] = None
        self.database_name = database
        ops = Ops("" if database is None else "/v1/databases/" + _core.enc(database))
        self.timeseries = AsyncTimeSeries(self, ops, database)
        self.vectors = AsyncVectors(self, ops, database)
        self.collections = AsyncCollections(self, ops, database)
        self.databases = AsyncDatabases(self)
        self.replication = AsyncReplication(self)

    def database(self, name: str) -> "AsyncDatabase":
        """A view of database ``name`` (its routes under ``/v1/databases/{name}/…``)."""
        return AsyncDatabase(self, name)

    def changes(
        self,
        from_lsn: Optional[int] = None,
        *,
        last_event_id: Optional[Union[int, str]] = None,
        reconnect: bool = True,
        max_reconnects: Optional[int] = 10,
        idle_timeout: Optional[float] = None,
    ) -> AsyncChangefeed:
        """The changefeed of this client's database (``default`` when unscoped); see
        :meth:`Database.changes`."""
        return self.database(self.database_name or "default").changes(
            from_lsn, last_event_id=last_event_id, reconnect=reconnect, max_reconnects=max_reconnects, idle_timeout=idle_timeout
        )

    # -- system routes
    async def health(self) -> Dict[str, Any]:
        """``GET /healthz``."""
        return await self._http.send(_core.sys_get("/healthz", _core.raw_json))  # type: ignore[no-any-return]

    async def ready(self) -> Dict[str, Any]:
        """``GET /readyz`` (retried while the server recovers: 503)."""
        return await self._http.send(_core.sys_get("/readyz", _core.raw_json))  # type: ignore[no-any-return]

    async def version(self) -> Dict[str, Any]:
        """``GET /version``."""
        return await self._http.send(_core.sys_get("/version", _core.raw_json))  # type: ignore[no-any-return]

    async def metrics(self) -> str:
        """``GET /metrics``: Prometheus text."""
        return await self._http.send(_core.sys_get("/metrics", _core.text))  # type: ignore[no-any-return]

    async def openapi(self) -> Dict[str, Any]:
        """``GET /openapi.json``: the server's OpenAPI document."""
        return await self._http.send(_core.sys_get("/openapi.json", _core.raw_json))  # type: ignore[no-any-return]

    # -- wire
    def wire(self) -> AsyncWireClient:
        """A new :class:`AsyncWireClient` to this server's wire listener, with this client's token."""
        host, port = self._wire_addr
        return AsyncWireClient(host, port, self._token, timeout=self._timeout_s, retry=self._retry)

    def _wire_conn(self, scoped: _Scoped) -> AsyncWireClient:
        scoped._wire_target()
        if self._wire is None:
            self._wire = self.wire()
        return self._wire

    async def aclose(self) -> None:
        """Closes the connection pool (and the wire connection, if one was opened)."""
        await self._http.close()
        if self._wire is not None:
            await self._wire.close()

    close = aclose

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"Client({self.url!r}, database={self.database_name!r})"
