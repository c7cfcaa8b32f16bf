"""Transport-independent pieces: request descriptions for every route, value coercion.

Both :class:`sluice.Client` and :class:`sluice.AsyncClient` describe each call as a
:class:`Req` built here, then send it with their own transport; so the two share every path,
parameter, body and answer parser.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union
from urllib.parse import quote

from . import models as m
from .errors import DecodeError

ACKS = ("buffer", "wal", "fsync")
MAX_TS = 9_223_372_036_854_775_807

JSONType = Any
Vector = Any  # a sequence of floats or a numpy array


@dataclass
class Req:
    """One HTTP request: method, path (with the database prefix), query, body, whether sending it
    twice has the same outcome as once, and how to read the answer."""

    method: str
    path: str
    parse: Callable[[Any], Any]
    params: Optional[Dict[str, Any]] = None
    body: Optional[bytes] = None
    content_type: Optional[str] = None
    idempotent: bool = True
    stream: bool = False


def enc(s: str) -> str:
    """Percent-encodes a path segment."""
    return quote(str(s), safe="")


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()


def json_req(method: str, path: str, body: Any, parse: Callable[[Any], Any], **kw: Any) -> Req:
    return Req(method, path, parse, body=dumps(body), content_type="application/json", **kw)


def check_ack(ack: Optional[str]) -> Optional[str]:
    if ack is None:
        return None
    if ack not in ACKS:
        raise ValueError(f"ack must be one of {ACKS}, not {ack!r}")
    return ack


def params_of(**kw: Any) -> Optional[Dict[str, Any]]:
    p = {k: v for k, v in kw.items() if v is not None}
    return p or None


def to_ms(t: Any) -> int:
    """Milliseconds since the epoch from an int, a float (ms), a ``datetime`` (naive = UTC), a
    ``date``, a numpy ``datetime64`` or a pandas ``Timestamp``."""
    if t.__class__ is int:
        return t  # type: ignore[no-any-return]
    if isinstance(t, bool):
        raise TypeError("timestamp_ms must be an integer, not bool")
    if isinstance(t, int):
        return int(t)
    if isinstance(t, float):
        if not math.isfinite(t):
            raise ValueError("timestamp_ms must be finite")
        return int(t)
    if isinstance(t, _dt.datetime):
        if t.tzinfo is None:
            t = t.replace(tzinfo=_dt.timezone.utc)
        return int(t.timestamp() * 1000) if t.microsecond % 1000 else int(round(t.timestamp() * 1000))
    if isinstance(t, _dt.date):
        return to_ms(_dt.datetime(t.year, t.month, t.day, tzinfo=_dt.timezone.utc))
    mod = type(t).__module__
    if mod.startswith("numpy"):
        import numpy as np

        if isinstance(t, np.datetime64):
            return int(t.astype("datetime64[ms]").astype("int64"))
        if isinstance(t, np.integer):
            return int(t)
        if isinstance(t, np.floating):
            return to_ms(float(t))
    if mod.startswith("pandas"):
        return int(t.value // 1_000_000)  # Timestamp.value is in ns
    raise TypeError(f"cannot use {type(t).__name__} as a timestamp (int ms or datetime)")


def to_value(v: Any) -> float:
    """A point's value as a finite float (ints, bools, numpy scalars accepted; strings not)."""
    if v.__class__ is float:
        f = v
    elif isinstance(v, (int, float)) or type(v).__module__.startswith("numpy"):
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise TypeError(f"value must be a number, not {type(v).__name__}") from None
    else:
        raise TypeError(f"value must be a number, not {type(v).__name__}")
    if f - f != 0.0:
        raise ValueError(f"value must be finite, not {f!r}")
    return f  # type: ignore[no-any-return]


def tags_of(tags: Optional[Mapping[str, Any]]) -> Optional[Dict[str, str]]:
    if not tags:
        return None
    out = {}
    for k, v in tags.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError("tags must map strings to strings")
        out[k] = v
    return out


def point_json(
    metric: str,
    entity: str,
    value: Any,
    timestamp_ms: Any = None,
    tags: Optional[Mapping[str, Any]] = None,
) -> Dict[str, Any]:
    if not isinstance(metric, str) or not isinstance(entity, str):
        raise TypeError("metric and entity must be strings")
    d: Dict[str, Any] = {"metric": metric, "entity": entity, "value": to_value(value)}
    if timestamp_ms is not None:
        d["timestamp_ms"] = to_ms(timestamp_ms)
    t = tags_of(tags)
    if t:
        d["tags"] = t
    return d


PointLike = Union[m.Point, Mapping[str, Any], Tuple[Any, ...]]


def point_from(p: Any) -> Dict[str, Any]:
    """A point as JSON from a :class:`Point`, a dict, or a tuple
    ``(metric, entity, value[, timestamp_ms[, tags]])``."""
    if isinstance(p, m.Point):
        return point_json(p.metric, p.entity, p.value, p.timestamp_ms, p.tags)
    if isinstance(p, Mapping):
        return point_json(
            p["metric"], p["entity"], p["value"], p.get("timestamp_ms"), p.get("tags")
        )
    return point_json(*p)


def vector_list(v: Vector) -> List[float]:
    """A vector as a list of floats (numpy arrays and any sequence accepted)."""
    tolist = getattr(v, "tolist", None)
    if tolist is not None:
        out = tolist()
        if out and isinstance(out[0], list):
            raise ValueError("a vector must be one-dimensional")
        return [float(x) for x in out] if out and not isinstance(out[0], float) else out  # type: ignore[no-any-return]
    return [float(x) for x in v]


def entity_json(
    pk: str,
    vector: Vector,
    metadata: Optional[Mapping[str, Any]] = None,
    timestamp_ms: Any = None,
    expires_at_ms: Any = None,
) -> Dict[str, Any]:
    if not isinstance(pk, str):
        raise TypeError("pk must be a string")
    d: Dict[str, Any] = {"pk": pk, "vector": vector_list(vector)}
    if metadata is not None:
        d["metadata"] = dict(metadata)
    if timestamp_ms is not None:
        d["timestamp_ms"] = to_ms(timestamp_ms)
    if expires_at_ms is not None:
        d["expires_at_ms"] = to_ms(expires_at_ms)
    return d


def entity_from(e: Any) -> Dict[str, Any]:
    """An entity as JSON from a :class:`VectorEntity`, a dict or a tuple
    ``(pk, vector[, metadata[, timestamp_ms[, expires_at_ms]]])``."""
    if isinstance(e, m.VectorEntity):
        return entity_json(e.pk, e.vector, e.metadata, e.timestamp_ms, e.expires_at_ms)
    if isinstance(e, Mapping):
        return entity_json(e["pk"], e["vector"], e.get("metadata"), e.get("timestamp_ms"), e.get("expires_at_ms"))
    return entity_json(*e)


def time_range_json(tr: Any) -> Dict[str, Any]:
    """A search's ``time_range`` from a :class:`TimeRange`, a dict ``{from_ms?, to_ms?}`` or a
    pair ``(from_ms, to_ms)`` (None: an open bound); bounds may be datetimes."""
    if isinstance(tr, m.TimeRange):
        lo, hi = tr.from_ms, tr.to_ms
    elif isinstance(tr, Mapping):
        unknown = set(tr) - {"from_ms", "to_ms"}
        if unknown:
            raise ValueError(f"time_range takes from_ms and to_ms, not {sorted(unknown)}")
        lo, hi = tr.get("from_ms"), tr.get("to_ms")
    else:
        lo, hi = tr
    d: Dict[str, Any] = {}
    if lo is not None:
        d["from_ms"] = to_ms(lo)
    if hi is not None:
        d["to_ms"] = to_ms(hi)
    return d


def decay_json(decay: Any) -> Dict[str, Any]:
    """A search's ``decay`` from a :class:`Decay` or a dict ``{half_life_ms, weight}``."""
    if isinstance(decay, m.Decay):
        half_life, weight = decay.half_life_ms, decay.weight
    else:
        half_life, weight = decay["half_life_ms"], decay["weight"]
    return {"half_life_ms": int(half_life), "weight": float(weight)}


def with_series_json(ws: Any) -> Dict[str, Any]:
    """A search's ``with_series`` from a :class:`WithSeries` or a dict ``{aggregation, window_ms}``."""
    if isinstance(ws, m.WithSeries):
        aggregation, window = ws.aggregation, ws.window_ms
    else:
        aggregation, window = ws["aggregation"], ws["window_ms"]
    return {"aggregation": str(aggregation), "window_ms": int(window)}


def all_timestamped(points: Sequence[Dict[str, Any]]) -> bool:
    return all("timestamp_ms" in p for p in points)


# ---- answers -----------------------------------------------------------------------------


def as_json(resp: Any) -> Any:
    try:
        return resp.json()
    except ValueError as e:
        raise DecodeError(f"answer is not JSON: {e}: {resp.text[:200]!r}") from None


def model(cls: Any) -> Callable[[Any], Any]:
    def parse(resp: Any) -> Any:
        data = as_json(resp)
        if not isinstance(data, dict):
            raise DecodeError(f"expected a JSON object, got {data!r:.200}")
        return cls.from_dict(data)

    return parse


def listed(key: str, cls: Any) -> Callable[[Any], Any]:
    def parse(resp: Any) -> Any:
        data = as_json(resp)
        return [cls.from_dict(x) for x in data.get(key, [])]

    return parse


def success(resp: Any) -> bool:
    return bool(as_json(resp).get("success", True))


def no_content(resp: Any) -> None:
    return None


def search_results(resp: Any) -> m.SearchResults:
    data = as_json(resp)
    return m.SearchResults(m.SearchResult.from_dict(r) for r in data.get("results", []))


def text(resp: Any) -> str:
    return resp.text  # type: ignore[no-any-return]


def raw_json(resp: Any) -> Any:
    return as_json(resp)


# ---- request builders ----------------------------------------------------------------------


class Ops:
    """Builds the :class:`Req` of every route for one database prefix (``""`` for the flat
    routes of database ``default``, ``/v1/databases/<db>`` otherwise)."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix

    def p(self, path: str) -> str:
        return self.prefix + path

    # -- time series
    def ts_put(self, metric: str, entity: str, value: Any, timestamp_ms: Any, tags: Any, ack: Optional[str]) -> Req:
        body = point_json(metric, entity, value, timestamp_ms, tags)
        return json_req(
            "POST", self.p("/ts/put"), body, model(m.PutResult),
            params=params_of(ack=check_ack(ack)), idempotent="timestamp_ms" in body,
        )

    def ts_put_batch(self, points: Iterable[Any], ack: Optional[str]) -> Req:
        pts = [point_from(p) for p in points]
        return json_req(
            "POST", self.p("/ts/put/batch"), {"points": pts}, model(m.BatchPutResult),
            params=params_of(ack=check_ack(ack)), idempotent=all_timestamped(pts),
        )

    def ts_put_buffered(self, metric: str, entity: str, value: Any, timestamp_ms: Any, tags: Any, ack: Optional[str]) -> Req:
        body = point_json(metric, entity, value, timestamp_ms, tags)
        return json_req(
            "POST", self.p("/ts/put/buffered"), body, model(m.BufferedResult),
            params=params_of(ack=check_ack(ack)), idempotent="timestamp_ms" in body,
        )

    def ts_buffer_stats(self) -> Req:
        return Req("GET", self.p("/ts/buffer/stats"), model(m.BufferStats))

    def ts_cardinality(self, metric: Optional[str], limit: Optional[int]) -> Req:
        return Req("GET", self.p("/ts/cardinality"), as_json, params=params_of(metric=metric, limit=limit), idempotent=True)

    def ts_flush(self) -> Req:
        return Req("POST", self.p("/ts/buffer/flush"), model(m.FlushResult))

    def ts_query(
        self,
        metric: str,
        from_ms: Any,
        to_ms: Any,
        entity: Optional[str],
        tags: Any,
        matchers: Any,
        aggregation: Optional[str],
        step_ms: Optional[int],
        group_by: Optional[Sequence[str]],
    ) -> Req:
        body: Dict[str, Any] = {"metric": metric, "from_ms": to_ms_or(from_ms, 0), "to_ms": to_ms_or(to_ms, MAX_TS)}
        if entity is not None:
            body["entity"] = entity
        if tags:
            body["tags"] = tags_of(tags)
        mj = m.matchers_to_json(matchers)
        if mj:
            body["matchers"] = mj
        if aggregation is not None:
            body["aggregation"] = aggregation
        if step_ms is not None:
            body["step_ms"] = int(step_ms)
        if group_by:
            body["group_by"] = list(group_by)
        return json_req("POST", self.p("/ts/query"), body, model(m.QueryResult))

    @staticmethod
    def _selection(metric: str, from_ms: Any, to_ms: Any, entity: Optional[str], tags: Any, matchers: Any) -> Dict[str, Any]:
        body: Dict[str, Any] = {"metric": metric, "from_ms": to_ms_or(from_ms, 0), "to_ms": to_ms_or(to_ms, MAX_TS)}
        if entity is not None:
            body["entity"] = entity
        if tags:
            body["tags"] = tags_of(tags)
        mj = m.matchers_to_json(matchers)
        if mj:
            body["matchers"] = mj
        return body

    def ts_export(self, metric: str, from_ms: Any, to_ms: Any, entity: Optional[str], tags: Any, matchers: Any) -> Req:
        body = self._selection(metric, from_ms, to_ms, entity, tags, matchers)
        return json_req("POST", self.p("/ts/export"), body, no_content, stream=True)

    def ts_delete(self, metric: str, from_ms: Any, to_ms: Any, entity: Optional[str], tags: Any, matchers: Any) -> Req:
        if from_ms is None or to_ms is None:
            raise ValueError("delete needs from_ms and to_ms (0 and 2**63 - 1 for all time)")
        body = self._selection(metric, from_ms, to_ms, entity, tags, matchers)
        # Not re-sent after a lost answer: points written meanwhile would be deleted too.
        return json_req("POST", self.p("/ts/delete"), body, model(m.TsDeleteResult), idempotent=False)

    def write_lines(self, lines: Union[str, bytes, Iterable[str]], precision: str, ack: Optional[str], api: str, idempotent: bool) -> Req:
        if isinstance(lines, bytes):
            body = lines
        elif isinstance(lines, str):
            body = lines.encode()
        else:
            body = "\n".join(lines).encode()
        if precision not in ("ns", "us", "ms", "s", "n", "u"):
            raise ValueError("precision must be ns, us, ms or s")
        path = {"v1": "/write", "v2": "/api/v2/write"}.get(api)
        if path is None:
            raise ValueError("api must be 'v1' (/write) or 'v2' (/api/v2/write)")
        return Req(
            "POST", self.p(path), no_content, body=body, content_type="text/plain; charset=utf-8",
            params=params_of(precision=precision, ack=check_ack(ack)), idempotent=idempotent,
        )

    # -- vectors
    @staticmethod
    def _cq(collection: Optional[str], ack: Optional[str] = None) -> Optional[Dict[str, Any]]:
        return params_of(collection=collection, ack=check_ack(ack))

    def v_add(
        self, pk: str, vector: Vector, metadata: Any, collection: Optional[str], ack: Optional[str],
        timestamp_ms: Any = None, expires_at_ms: Any = None,
    ) -> Req:
        body = entity_json(pk, vector, metadata, timestamp_ms, expires_at_ms)
        return json_req("POST", self.p("/vectors/add"), body, model(m.AddResult), params=self._cq(collection, ack))

    def v_add_batch(self, entities: Iterable[Any], collection: Optional[str], ack: Optional[str]) -> Req:
        body = {"vectors": [entity_from(e) for e in entities]}
        return json_req("POST", self.p("/vectors/add/batch"), body, model(m.BatchAddResult), params=self._cq(collection, ack))

    def v_add_buffered(
        self, pk: str, vector: Vector, metadata: Any, collection: Optional[str],
        timestamp_ms: Any = None, expires_at_ms: Any = None,
    ) -> Req:
        body = entity_json(pk, vector, metadata, timestamp_ms, expires_at_ms)
        return json_req("POST", self.p("/vectors/add/buffered"), body, model(m.BufferedResult), params=self._cq(collection))

    def v_update_buffered(
        self, pk: str, vector: Vector, metadata: Any, collection: Optional[str],
        timestamp_ms: Any = None, expires_at_ms: Any = None,
    ) -> Req:
        body = entity_json(pk, vector, metadata, timestamp_ms, expires_at_ms)
        return json_req("POST", self.p("/vectors/update/buffered"), body, model(m.BufferedResult), params=self._cq(collection))

    def v_remove_buffered(self, pk: str, collection: Optional[str]) -> Req:
        return json_req("DELETE", self.p("/vectors/remove/buffered"), {"pk": pk}, model(m.BufferedResult), params=self._cq(collection), idempotent=False)

    def v_buffer_stats(self) -> Req:
        return Req("GET", self.p("/vectors/buffer/stats"), model(m.VectorBufferStats))

    def v_flush(self) -> Req:
        return Req("POST", self.p("/vectors/buffer/flush"), model(m.VectorFlushResult))

    def v_search(
        self, vector: Vector, k: int, filter: Any, ef: Optional[int], collection: Optional[str],
        time_range: Any = None, decay: Any = None, with_series: Any = None,
    ) -> Req:
        body: Dict[str, Any] = {"vector": vector_list(vector), "k": int(k)}
        if filter is not None:
            body["filter"] = filter
        if ef is not None:
            body["ef"] = int(ef)
        if time_range is not None:
            body["time_range"] = time_range_json(time_range)
        if decay is not None:
            body["decay"] = decay_json(decay)
        if with_series is not None:
            body["with_series"] = with_series_json(with_series)
        return json_req("POST", self.p("/vectors/search"), body, search_results, params=self._cq(collection))

    def v_get(self, pk: str, collection: Optional[str]) -> Req:
        return Req("GET", self.p("/vectors/" + enc(pk)), model(m.VectorEntity), params=self._cq(collection))

    def v_delete(self, pk: str, collection: Optional[str], ack: Optional[str]) -> Req:
        return Req("DELETE", self.p("/vectors/" + enc(pk)), model(m.DeleteResult), params=self._cq(collection, ack), idempotent=False)

    # -- collections
    def c_create(
        self, name: str, dimension: int, distance: Optional[str], precision: Optional[str], hnsw: Any,
        ttl_ms: Optional[int] = None,
    ) -> Req:
        body: Dict[str, Any] = {"name": name, "dimension": int(dimension)}
        if distance is not None:
            body["distance"] = distance
        if precision is not None:
            body["precision"] = precision
        if hnsw is not None:
            body["hnsw"] = hnsw.to_dict() if isinstance(hnsw, m.HnswSpec) else dict(hnsw)
        if ttl_ms is not None:
            body["ttl_ms"] = int(ttl_ms)
        return json_req("POST", self.p("/v1/collections"), body, model(m.CollectionInfo), idempotent=False)

    def c_list(self) -> Req:
        return Req("GET", self.p("/v1/collections"), listed("collections", m.CollectionInfo))

    def c_get(self, name: str) -> Req:
        return Req("GET", self.p("/v1/collections/" + enc(name)), model(m.CollectionInfo))

    def c_delete(self, name: str) -> Req:
        return Req("DELETE", self.p("/v1/collections/" + enc(name)), model(m.DeleteResult), idempotent=False)

    def c_export(self, name: str) -> Req:
        return Req("GET", self.p("/v1/collections/" + enc(name) + "/export"), no_content, stream=True)


def to_ms_or(t: Any, default: int) -> int:
    return default if t is None else to_ms(t)


# ---- server-scoped routes (no database prefix) -------------------------------------------------


def db_create(
    name: str,
    retention_ms: Optional[int],
    policy: Optional[str],
    downsampling: Optional[Sequence[Mapping[str, int]]] = None,
) -> Req:
    body: Dict[str, Any] = {"name": name}
    if retention_ms is not None:
        body["retention_ms"] = int(retention_ms)
    if downsampling is not None:
        body["downsampling"] = [
            {"after_ms": int(r["after_ms"]), "resolution_ms": int(r["resolution_ms"])} for r in downsampling
        ]
    if policy is not None:
        body["policy"] = policy
    return json_req("POST", "/v1/databases", body, model(m.DatabaseInfo), idempotent=False)


def db_list() -> Req:
    return Req("GET", "/v1/databases", listed("databases", m.DatabaseInfo))


def db_delete(name: str) -> Req:
    return Req("DELETE", "/v1/databases/" + enc(name), success, idempotent=False)


def repl_add(replica_id: str, endpoint: str) -> Req:
    # Registering the same id and endpoint again answers 200: safe to repeat.
    return json_req("POST", "/api/v1/replication/replicas", {"replica_id": replica_id, "endpoint": endpoint}, model(m.ReplicaInfo))


def repl_remove(replica_id: str) -> Req:
    return Req("DELETE", "/api/v1/replication/replicas/" + enc(replica_id), success, idempotent=False)


def repl_list() -> Req:
    return Req("GET", "/api/v1/replication/replicas", listed("replicas", m.ReplicaInfo))


def repl_stats() -> Req:
    return Req("GET", "/api/v1/replication/stats", model(m.ReplicationStats))


def repl_config(compression_type: str, level: Optional[int]) -> Req:
    body: Dict[str, Any] = {"compression_type": compression_type}
    if level is not None:
        body["level"] = int(level)
    return json_req("POST", "/api/v1/replication/config", body, model(m.ReplicationConfig))


def repl_promote() -> Req:
    return Req("POST", "/api/v1/replication/promote", model(m.PromoteResult), idempotent=False)


def sys_get(path: str, parse: Callable[[Any], Any]) -> Req:
    return Req("GET", path, parse)


def parse_retry_after(value: Optional[str]) -> Optional[float]:
    """``Retry-After`` as seconds: an integer, or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        from email.utils import parsedate_to_datetime

        when = parsedate_to_datetime(value)
        if when.tzinfo is None:
            when = when.replace(tzinfo=_dt.timezone.utc)
        return max(0.0, (when - _dt.datetime.now(_dt.timezone.utc)).total_seconds())
    except (TypeError, ValueError):
        return None


def wire_target(url: str, wire_address: Optional[str]) -> Tuple[str, int]:
    """The wire listener's host and port: ``wire_address`` (``host:port``) or the HTTP host
    with the default port 18765."""
    if wire_address:
        host, _, port = wire_address.rpartition(":")
        return host.strip("[]") or "127.0.0.1", int(port)
    import httpx

    return httpx.URL(url).host or "127.0.0.1", 18765
