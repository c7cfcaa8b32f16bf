"""Plain data classes for what the server answers.

Every class has ``from_dict`` (unknown fields are kept in ``extra``, so a newer server never
breaks an older client) and ``to_dict``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Type, TypeVar

__all__ = [
    "Point",
    "Series",
    "QueryResult",
    "PutResult",
    "BatchPutResult",
    "BufferedResult",
    "FlushResult",
    "TsDeleteResult",
    "BufferStats",
    "VectorBufferStats",
    "VectorFlushResult",
    "VectorEntity",
    "AddResult",
    "BatchAddResult",
    "DeleteResult",
    "SearchResult",
    "SearchResults",
    "TimeRange",
    "Decay",
    "WithSeries",
    "HitSeries",
    "HnswSpec",
    "CollectionInfo",
    "DatabaseInfo",
    "ReplicaInfo",
    "ReplicationStats",
    "ReplicationConfig",
    "PromoteResult",
    "ChangeEvent",
    "Matcher",
]

T = TypeVar("T", bound="_Model")


class _Model:
    """Mixin: ``from_dict`` keeping unknown keys in ``extra``."""

    @classmethod
    def from_dict(cls: Type[T], data: Dict[str, Any]) -> T:
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        known = {k: v for k, v in data.items() if k in names and k != "extra"}
        obj = cls(**known)
        if "extra" in names:
            extra = {k: v for k, v in data.items() if k not in names}
            object.__setattr__(obj, "extra", extra)
        return obj

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)  # type: ignore[call-overload]
        extra = d.pop("extra", None) or {}
        d.update(extra)
        return d


@dataclass
class Point(_Model):
    """One time-series point. ``timestamp_ms`` None on a write means "the server's receive
    time"; answers always carry it."""

    metric: str
    entity: str
    value: float
    timestamp_ms: Optional[int] = None
    tags: Dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        d: Dict[str, Any] = {"metric": self.metric, "entity": self.entity, "value": self.value}
        if self.timestamp_ms is not None:
            d["timestamp_ms"] = self.timestamp_ms
        if self.tags:
            d["tags"] = self.tags
        return d


@dataclass
class Series(_Model):
    """One series of a query answer (with ``group_by``: one group; ``entity``/``tags`` hold
    its key). ``points`` are ``(timestamp_ms, value)`` pairs, oldest first."""

    metric: str
    entity: str
    tags: Dict[str, str] = field(default_factory=dict)
    points: List[Tuple[int, float]] = field(default_factory=list)
    extra: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "Series":
        s = super().from_dict(data)
        s.points = [(int(p[0]), p[1]) for p in data.get("points", [])]
        return s

    @property
    def timestamps(self) -> List[int]:
        return [p[0] for p in self.points]

    @property
    def values(self) -> List[float]:
        return [p[1] for p in self.points]

    def __len__(self) -> int:
        return len(self.points)

    def to_pandas(self) -> Any:
        """A DataFrame indexed by time (UTC) with a ``value`` column."""
        import pandas as pd

        idx = pd.to_datetime(self.timestamps, unit="ms", utc=True)
        return pd.DataFrame({"value": self.values}, index=pd.Index(idx, name="time"))


@dataclass
class QueryResult(_Model):
    """A query's answer: the matching series, ordered by entity and tags."""

    series: List[Series] = field(default_factory=list)
    extra: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "QueryResult":
        return cls(series=[Series.from_dict(s) for s in data.get("series", [])])

    def __iter__(self) -> Iterator[Series]:
        return iter(self.series)

    def __len__(self) -> int:
        return len(self.series)

    def __getitem__(self, i: int) -> Series:
        return self.series[i]

    def points(self) -> Iterator[Point]:
        """Every point as a :class:`Point`."""
        for s in self.series:
            for ts, v in s.points:
                yield Point(s.metric, s.entity, v, ts, dict(s.tags))

    def to_pandas(self) -> Any:
        """A long DataFrame: ``time`` (UTC), ``metric``, ``entity``, one column per tag,
        ``value``; one row per point."""
        import pandas as pd

        frames = []
        tag_names: List[str] = sorted({k for s in self.series for k in s.tags})
        for s in self.series:
            n = len(s.points)
            cols: Dict[str, Any] = {
                "time": pd.to_datetime(s.timestamps, unit="ms", utc=True),
                "metric": [s.metric] * n,
                "entity": [s.entity] * n,
            }
            for t in tag_names:
                cols[t] = [s.tags.get(t)] * n
            cols["value"] = s.values
            frames.append(pd.DataFrame(cols))
        if not frames:
            return pd.DataFrame(columns=["time", "metric", "entity", *tag_names, "value"])
        return pd.concat(frames, ignore_index=True)


@dataclass
class PutResult(_Model):
    success: bool
    lsn: int
    extra: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass
class BatchPutResult(_Model):
    success: bool
    points_written: int
    lsn: int
    extra: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass
class BufferedResult(_Model):
    """Answer of the buffered routes (the seed's shape): ``buffer_size`` is the size of the
    buffer after the write; ``buffered`` is False when the auto-buffer is disabled."""

    success: bool
    buffered: bool
    buffer_size: int
    extra: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass
class FlushResult(_Model):
    success: bool
    points_flushed: int
    extra: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass
class TsDeleteResult(_Model):
    """What ``POST /ts/delete`` removed; the deletion is durable and visible to queries."""

    success: bool
    lsn: int
    series: int
    points_deleted: int
    chunks_rewritten: int = 0
    chunks_removed: int = 0
    extra: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass
class BufferStats(_Model):
    """TSAutoBuffer statistics (the seed's fields)."""

    points_buffered: int = 0
    points_flushed: int = 0
    flush_count: int = 0
    auto_flush_count: int = 0
    manual_flush_count: int = 0
    current_buffer_size: int = 0
    current_buffer_memory: int = 0
    avg_compression_ratio: float = 0.0
    last_flush_time: Optional[str] = None
    extra: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass
class VectorBufferStats(_Model):
    """VectorAutoBuffer statistics (the seed's fields)."""

    vectors_buffered: int = 0
    vectors_flushed: int = 0
    flush_count: int = 0
    auto_flush_count: int = 0
    manual_flush_count: int = 0
    current_buffer_size: int = 0
    current_buffer_memory: int = 0
    compression_type: str = "none"
    last_flush_time: Optional[str] = None
    snapshot_count: int = 0
    last_snapshot_lsn: int = 0
    extra: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass
class VectorFlushResult(_Model):
    success: bool
    vectors_flushed: int
    extra: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass
class VectorEntity(_Model):
    """One entity of a collection. ``vector`` is a list of floats (any sequence or numpy
    array is accepted on writes). ``timestamp_ms`` (ms since the epoch) is the entity's time,
    what a search's ``time_range`` and ``decay`` look at; ``expires_at_ms`` is when it expires
    (it overrides the collection's ``ttl_ms``; an expired entity is gone from search and get at
    once). Both are optional."""

    pk: str
    vector: Any
    metadata: Optional[Dict[str, Any]] = None
    timestamp_ms: Optional[int] = None
    expires_at_ms: Optional[int] = None

    def to_dict(self) -> Dict[str, Any]:
        d: Dict[str, Any] = {"pk": self.pk, "vector": self.vector}
        if self.metadata is not None:
            d["metadata"] = self.metadata
        if self.timestamp_ms is not None:
            d["timestamp_ms"] = self.timestamp_ms
        if self.expires_at_ms is not None:
            d["expires_at_ms"] = self.expires_at_ms
        return d


@dataclass
class AddResult(_Model):
    success: bool
    lsn: int
    extra: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass
class BatchAddResult(_Model):
    success: bool
    vectors_written: int
    lsn: int
    extra: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass
class DeleteResult(_Model):
    success: bool
    lsn: int = 0
    extra: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass
class SearchResult(_Model):
    """One search result. ``score``: cosine similarity / inner product (higher is better) or
    Euclidean distance for ``l2``; ``distance``: lower is closer. ``timestamp_ms`` and
    ``expires_at_ms`` are set when the entity has them; ``rank`` only when the search asked for
    ``decay``: what the results are ordered by, ``distance`` less the recency bonus.
    ``series`` only when the search asked for ``with_series`` and the entity's metadata names a
    series (string fields ``metric`` and ``entity``)."""

    pk: str
    score: float
    distance: float
    metadata: Dict[str, Any] = field(default_factory=dict)
    timestamp_ms: Optional[int] = None
    expires_at_ms: Optional[int] = None
    rank: Optional[float] = None
    series: Optional["HitSeries"] = None
    extra: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "SearchResult":
        r = super().from_dict(data)
        if isinstance(r.series, dict):
            r.series = HitSeries.from_dict(r.series)
        return r


class SearchResults(List[SearchResult]):
    """A list of :class:`SearchResult`, best first, with :meth:`to_pandas`."""

    def to_pandas(self) -> Any:
        """One row per result: ``pk``, ``score``, ``distance``, ``metadata``, then
        ``timestamp_ms``, ``expires_at_ms``, ``rank`` and ``series_value`` (the value of
        ``series``) when some result has them."""
        import pandas as pd

        cols: Dict[str, Any] = {
            "pk": [r.pk for r in self],
            "score": [r.score for r in self],
            "distance": [r.distance for r in self],
            "metadata": [r.metadata for r in self],
        }
        for name in ("timestamp_ms", "expires_at_ms", "rank"):
            values = [getattr(r, name) for r in self]
            if any(v is not None for v in values):
                cols[name] = values
        if any(r.series is not None for r in self):
            cols["series_value"] = [r.series.value if r.series is not None else None for r in self]
        return pd.DataFrame(cols)


@dataclass
class TimeRange(_Model):
    """A search's window of entity times (``timestamp_ms``), inclusive:
    ``from_ms <= timestamp_ms <= to_ms``. A bound left None is open."""

    from_ms: Optional[int] = None
    to_ms: Optional[int] = None

    def to_dict(self) -> Dict[str, Any]:
        d: Dict[str, Any] = {}
        if self.from_ms is not None:
            d["from_ms"] = self.from_ms
        if self.to_ms is not None:
            d["to_ms"] = self.to_ms
        return d


@dataclass
class Decay(_Model):
    """Recency decay of a search: results are ranked by
    ``distance - weight * 2 ** (-age / half_life_ms)``, ``age`` being now minus the entity's
    ``timestamp_ms`` (no bonus without one). ``half_life_ms`` >= 1; ``weight`` 0 to 1000, in
    units of the collection's distance."""

    half_life_ms: int
    weight: float

    def to_dict(self) -> Dict[str, Any]:
        return {"half_life_ms": self.half_life_ms, "weight": self.weight}


@dataclass
class WithSeries(_Model):
    """A search's ``with_series``: for every result whose metadata names a series (string
    fields ``metric`` and ``entity``), that series' ``aggregation`` (``min``, ``max``, ``sum``,
    ``avg``, ``count``, ``first``, ``last``) over the ``window_ms`` ending now (1 ms to 100
    years), across every series of that metric and entity whatever their tags (``avg``: the
    mean of every point)."""

    aggregation: str
    window_ms: int

    def to_dict(self) -> Dict[str, Any]:
        return {"aggregation": self.aggregation, "window_ms": self.window_ms}


@dataclass
class HitSeries(_Model):
    """A search result's series aggregate (``with_series``): ``value`` over
    ``from_ms <= timestamp_ms <= to_ms`` for ``metric`` and ``entity``; None when the window
    holds no point."""

    metric: str
    entity: str
    from_ms: int
    to_ms: int
    value: Optional[float] = None
    extra: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass
class HnswSpec(_Model):
    m: int = 16
    ef_construction: int = 128
    ef_search: int = 64


@dataclass
class CollectionInfo(_Model):
    """A collection's definition and size. ``ttl_ms``: the time to live of entities written
    without ``expires_at_ms`` (None: they do not expire)."""

    name: str
    dimension: int
    distance: str
    precision: str
    hnsw: HnswSpec
    vectors: int = 0
    buffered: int = 0
    index_bytes: int = 0
    ttl_ms: Optional[int] = None
    extra: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "CollectionInfo":
        c = super().from_dict(data)
        if isinstance(c.hnsw, dict):
            c.hnsw = HnswSpec.from_dict(c.hnsw)
        return c


@dataclass
class DatabaseInfo(_Model):
    name: str
    retention_ms: int = 0
    has_policy: bool = False
    #: Downsampling rules: ``{"after_ms": …, "resolution_ms": …}`` by increasing age.
    downsampling: List[Dict[str, int]] = field(default_factory=list)
    extra: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass
class ReplicaInfo(_Model):
    replica_id: str
    endpoint: str
    extra: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass
class ReplicationStats(_Model):
    """Replication statistics: ``replicas`` (per replica: ``replica_id``, ``endpoint``,
    ``last_confirmed_lsn``, ``lag_bytes``, ``lag_ms``, ``is_healthy``, ...), the shipping totals
    in ``stats``, this node's ``role``, ``node_id``, ``epoch`` and compression; on a replica,
    ``replica`` says what it applied."""

    replicas: List[Dict[str, Any]] = field(default_factory=list)
    stats: Dict[str, Any] = field(default_factory=dict)
    role: str = "primary"
    node_id: str = ""
    epoch: int = 0
    compression_type: str = "zstd"
    compression_level: int = 3
    replica: Optional[Dict[str, Any]] = None
    extra: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass
class ReplicationConfig(_Model):
    success: bool
    compression_type: str
    level: int
    extra: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass
class PromoteResult(_Model):
    success: bool
    role: str
    epoch: int
    extra: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass
class ChangeEvent:
    """One changefeed event: ``id`` is the record's LSN (resume after it), ``event`` is
    ``points``, ``vectors``, ``collection`` (or ``error``), ``data`` the record as JSON."""

    id: int
    event: str
    data: Dict[str, Any]

    @property
    def lsn(self) -> int:
        return self.id


@dataclass(frozen=True)
class Matcher:
    """A tag matcher of a query: ``op`` is ``=``, ``!=``, ``=~`` (anchored regex) or ``!~``;
    ``tag`` ``entity`` matches the entity."""

    tag: str
    op: str
    value: str

    def to_dict(self) -> Dict[str, str]:
        return {"tag": self.tag, "op": self.op, "value": self.value}


def matchers_to_json(matchers: Optional[Sequence[Any]]) -> Optional[List[Dict[str, str]]]:
    if not matchers:
        return None
    out = []
    for m in matchers:
        if isinstance(m, Matcher):
            out.append(m.to_dict())
        elif isinstance(m, dict):
            out.append({"tag": m["tag"], "op": m["op"], "value": m["value"]})
        else:
            tag, op, value = m
            out.append({"tag": tag, "op": op, "value": value})
    return out
