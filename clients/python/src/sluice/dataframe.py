"""``write_dataframe``: pandas DataFrames to wire frames or line protocol, column-wise.

Rows are grouped by series (metric, entity and tag columns; stable, so the order of a series'
rows is kept), then each series is encoded without a Python loop per point:

* wire: a numpy structured array whose records are exactly the ``TS_PUT`` items
  (``prefix | timestamp i64 | value f64 | suffix``), filled column by column and turned into
  bytes with ``tobytes()``;
* HTTP: InfluxDB line protocol (``/write?precision=ms``, field ``value``, tag ``entity``),
  where each series' prefix is formatted once.

Needs numpy and pandas (``pip install sluice-client[pandas]``).
"""

from __future__ import annotations

import struct
import threading
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from .wire import FLAG_BATCH, Opcode, SeriesCache, encode_frame

__all__ = ["series_blocks", "wire_frames", "line_protocol_chunks", "escape_measurement", "escape_tag"]

_UNITS = {"s": 1000.0, "ms": 1.0, "us": 1e-3, "ns": 1e-6}


def _np() -> Any:
    try:
        import numpy as np
    except ImportError:  # pragma: no cover
        raise ImportError("write_dataframe needs numpy and pandas: pip install 'sluice-client[pandas]'") from None
    return np


def _timestamps_ms(col: Any, unit: str) -> Any:
    np = _np()
    import pandas as pd

    if isinstance(col, (pd.Series, pd.Index)):
        dtype = col.dtype
        if isinstance(dtype, pd.DatetimeTZDtype) or np.issubdtype(getattr(dtype, "type", np.object_), np.datetime64):
            if col.isna().any():
                raise ValueError("timestamps contain NaT")
            if isinstance(col, pd.Series):
                col = pd.DatetimeIndex(col)
            if getattr(col, "tz", None) is not None:
                col = col.tz_convert("UTC").tz_localize(None)
            arr = np.asarray(col, dtype="datetime64[ns]")
            return arr.astype("datetime64[ms]").astype(np.int64)
        arr = col.to_numpy()
    else:
        arr = np.asarray(col)
    if np.issubdtype(arr.dtype, np.datetime64):
        return arr.astype("datetime64[ms]").astype(np.int64)
    if unit not in _UNITS:
        raise ValueError("timestamp_unit must be s, ms, us or ns")
    if np.issubdtype(arr.dtype, np.integer):
        arr = arr.astype(np.int64, copy=False)
        if unit == "ms":
            return arr
        if unit == "s":
            return arr * 1000
        return arr // (1000 if unit == "us" else 1_000_000)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ValueError("timestamps contain NaN or infinity")
        return (arr * _UNITS[unit]).astype(np.int64)
    raise TypeError(f"timestamps must be datetimes or numbers, not {arr.dtype}")


def series_blocks(
    df: Any,
    *,
    metric: Optional[str] = None,
    metric_column: Optional[str] = None,
    entity: Optional[str] = None,
    entity_column: Optional[str] = None,
    timestamp_column: Optional[str] = None,
    timestamp_unit: str = "ms",
    tag_columns: Optional[Sequence[str]] = None,
    value_column: str = "value",
    nan: str = "skip",
) -> Iterator[Tuple[str, str, Dict[str, str], Any, Any]]:
    """Yields ``(metric, entity, tags, timestamps_ms int64 array, values float64 array)`` per
    series, rows of a series in DataFrame order."""
    np = _np()
    if (metric is None) == (metric_column is None):
        raise ValueError("give exactly one of metric= and metric_column=")
    if entity is not None and entity_column is not None:
        raise ValueError("give at most one of entity= and entity_column=")
    if nan not in ("skip", "raise"):
        raise ValueError("nan must be 'skip' or 'raise'")
    tag_columns = list(tag_columns or [])
    if timestamp_column is not None:
        ts = _timestamps_ms(df[timestamp_column], timestamp_unit)
    else:
        ts = _timestamps_ms(df.index, timestamp_unit)
    values = df[value_column].to_numpy(dtype=np.float64, na_value=np.nan)
    finite = np.isfinite(values)
    keep: Optional[Any] = None
    if not finite.all():
        if nan == "raise" or np.isinf(values).any():
            raise ValueError(f"column {value_column!r} holds NaN or infinite values")
        keep = finite
    keys = [c for c in (metric_column, entity_column) if c is not None] + tag_columns
    if not keys:
        t, v = (ts, values) if keep is None else (ts[keep], values[keep])
        yield metric or "", entity or "", {}, t, v
        return
    groups = df.groupby(keys, sort=False, dropna=False, observed=True).indices
    for key, idx in groups.items():
        if not isinstance(key, tuple):
            key = (key,)
        kv = dict(zip(keys, key))
        met = str(kv[metric_column]) if metric_column is not None else metric
        ent = str(kv[entity_column]) if entity_column is not None else (entity or "")
        tags = {}
        for c in tag_columns:
            x = kv[c]
            if x is None or (isinstance(x, float) and x != x):
                continue
            tags[str(c)] = str(x)
        if keep is not None:
            idx = idx[keep[idx]]
            if len(idx) == 0:
                continue
        yield met or "", ent, tags, ts[idx], values[idx]


def _wire_block(prefix: bytes, suffix: bytes, ts: Any, vals: Any) -> bytes:
    np = _np()
    dt = np.dtype([("p", f"V{len(prefix)}"), ("t", "<i8"), ("v", "<f8"), ("s", f"V{len(suffix)}")])
    arr = np.empty(len(ts), dtype=dt)
    arr["p"] = np.frombuffer(prefix, dtype=f"V{len(prefix)}")[0]
    arr["t"] = ts
    arr["v"] = vals
    arr["s"] = np.frombuffer(suffix, dtype=f"V{len(suffix)}")[0]
    return arr.tobytes()  # type: ignore[no-any-return]


def wire_frames(
    blocks: Iterator[Tuple[str, str, Dict[str, str], Any, Any]],
    *,
    buffered: bool = True,
    chunk_points: int = 50_000,
    chunk_bytes: int = 8 << 20,
) -> Iterator[Tuple[bytes, int]]:
    """``(TS_PUT(_BUFFERED) batch frame, points)`` pairs of at most ``chunk_points`` points and
    about ``chunk_bytes`` bytes each."""
    op = Opcode.TS_PUT_BUFFERED if buffered else Opcode.TS_PUT
    cache = SeriesCache()
    parts: List[bytes] = []
    count = 0
    size = 0

    def frame() -> Tuple[bytes, int]:
        payload = struct.pack("<I", count) + b"".join(parts)
        return encode_frame(op, payload, FLAG_BATCH), count

    for met, ent, tags, ts, vals in blocks:
        prefix, suffix = cache.make(None, met, ent, tags)
        item = len(prefix) + 16 + len(suffix)
        data = _wire_block(prefix, suffix, ts, vals)
        n = len(ts)
        off = 0
        while off < n:
            room = min(chunk_points - count, max(1, (chunk_bytes - size) // item))
            take = min(room, n - off)
            parts.append(data[off * item : (off + take) * item])
            count += take
            size += take * item
            off += take
            if count >= chunk_points or size + item > chunk_bytes:
                yield frame()
                parts, count, size = [], 0, 0
    if count:
        yield frame()


def escape_measurement(s: str) -> str:
    return s.replace("\\", "\\\\").replace(",", "\\,").replace(" ", "\\ ")


def escape_tag(s: str) -> str:
    return s.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def _lp_prefix(metric: str, entity: str, tags: Dict[str, str]) -> str:
    if not metric:
        raise ValueError("line protocol needs a non-empty metric")
    if "entity" in tags or (not entity and "host" in tags):
        raise ValueError(
            "a tag named 'entity' (or 'host' with an empty entity) cannot be written as line protocol; use transport='wire'"
        )
    out = [escape_measurement(metric)]
    if entity:
        out.append("entity=" + escape_tag(entity))
    for k in sorted(tags):
        v = tags[k]
        if not k or not v:
            raise ValueError("line protocol cannot carry empty tag keys or values; use transport='wire'")
        out.append(escape_tag(k) + "=" + escape_tag(v))
    return ",".join(out) + " value="


def line_protocol_chunks(
    blocks: Iterator[Tuple[str, str, Dict[str, str], Any, Any]],
    *,
    chunk_points: int = 50_000,
) -> Iterator[Tuple[bytes, int]]:
    """``(line protocol body at ms precision, points)`` chunks."""
    lines: List[str] = []
    count = 0
    for met, ent, tags, ts, vals in blocks:
        prefix = _lp_prefix(met, ent, tags)
        vl = vals.tolist()
        tl = ts.tolist()
        n = len(vl)
        off = 0
        while off < n:
            take = min(chunk_points - count, n - off)
            lines.extend([f"{prefix}{v!r} {t}\n" for v, t in zip(vl[off : off + take], tl[off : off + take])])
            count += take
            off += take
            if count >= chunk_points:
                yield "".join(lines).encode(), count
                lines, count = [], 0
    if count:
        yield "".join(lines).encode(), count


class _Pipe:
    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.slot: List[Tuple[bytes, int]] = []
        self.sent = 0
        self.err: Optional[BaseException] = None
        self.end = False


def pipelined(chunks: Iterator[Tuple[bytes, int]], send: Callable[[bytes], Any]) -> int:
    """Sends chunks in order from a helper thread while the next chunk is encoded; returns the
    points sent. The first failure stops the writing and is raised (with ``points_written``)."""
    st = _Pipe()

    def sender() -> None:
        while True:
            with st.cond:
                while not st.slot and not st.end:
                    st.cond.wait()
                if not st.slot:
                    return
                body, n = st.slot[0]
            try:
                send(body)
            except BaseException as e:  # noqa: BLE001 - handed to the caller
                with st.cond:
                    st.err = e
                    st.slot.clear()
                    st.cond.notify_all()
                return
            with st.cond:
                st.slot.pop(0)
                st.sent += n
                st.cond.notify_all()

    t = threading.Thread(target=sender, name="sluice-dataframe-sender", daemon=True)
    t.start()
    try:
        for chunk in chunks:
            with st.cond:
                while st.slot and st.err is None:
                    st.cond.wait()
                if st.err is not None:
                    break
                st.slot.append(chunk)
                st.cond.notify_all()
    finally:
        with st.cond:
            st.end = True
            st.cond.notify_all()
        t.join()
    if st.err is not None:
        try:
            st.err.points_written = st.sent  # type: ignore[attr-defined]
        except AttributeError:
            pass
        raise st.err
    return st.sent
