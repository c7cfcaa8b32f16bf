"""HTTP transports (sync and async) with the retry rules, NDJSON export streams and SSE
changefeeds."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, AsyncIterator, Dict, Iterator, List, Optional, Tuple, Union

import httpx

from . import models as m
from ._core import Req, parse_retry_after
from .errors import (
    ChangefeedError,
    DecodeError,
    SluiceError,
    TransportError,
    error_from_body,
)
from .retry import RetryPolicy

__version__ = "0.1.0"

# Codes of 503 answers that a retry cannot fix.
_PERMANENT_503 = {"config_drift"}

TimeoutTypes = Union[None, float, httpx.Timeout]


def _headers(token: Optional[str], headers: Optional[Dict[str, str]]) -> Dict[str, str]:
    h = {"User-Agent": f"sluice-python/{__version__}"}
    if token:
        h["Authorization"] = f"Bearer {token}"
    if headers:
        h.update(headers)
    return h


def _error_of(resp: httpx.Response) -> SluiceError:
    return error_from_body(
        resp.status_code, resp.text, parse_retry_after(resp.headers.get("retry-after"))
    )


def _retryable(err: SluiceError) -> bool:
    return err.status in (429, 503, 507) and err.code not in _PERMANENT_503


def _exception(exc: Exception, idempotent: bool) -> Tuple[SluiceError, bool]:
    """The client error for an httpx exception, and whether it may be retried."""
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)):
        return TransportError(f"cannot connect: {exc!r}", maybe_applied=False), True
    if isinstance(exc, (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)):
        err = TransportError(f"the answer was lost: {exc!r}", maybe_applied=True)
        return err, idempotent
    return TransportError(f"transport error: {exc!r}", maybe_applied=True), False


def _request(http: Any, req: Req, timeout: Any = None) -> httpx.Request:
    headers = {"content-type": req.content_type} if req.content_type else None
    kw = {} if timeout is None else {"timeout": timeout}
    return http.build_request(req.method, req.path, params=req.params, content=req.body, headers=headers, **kw)


class SyncTransport:
    """An ``httpx.Client`` with the retry rules."""

    def __init__(
        self,
        url: str,
        token: Optional[str],
        timeout: TimeoutTypes,
        verify: Any,
        cert: Any,
        retry: RetryPolicy,
        headers: Optional[Dict[str, str]],
        transport: Optional[httpx.BaseTransport] = None,
        http2: bool = False,
    ) -> None:
        kw: Dict[str, Any] = {}
        if transport is not None:
            kw["transport"] = transport
        if http2:
            kw["http2"] = True
        self.url = url
        self.retry = retry
        self.refusals = 0  # 429/503 answers seen (retried or not)
        self.http = httpx.Client(
            base_url=url, timeout=timeout, verify=verify, cert=cert, headers=_headers(token, headers), **kw
        )

    def send(self, req: Req, policy: Optional[RetryPolicy] = None, stats: Any = None) -> Any:
        resp = self.response(req, policy=policy, stats=stats)
        try:
            return req.parse(resp)
        finally:
            resp.close()

    def response(
        self, req: Req, stream: bool = False, headers: Optional[Dict[str, str]] = None, timeout: Any = None,
        policy: Optional[RetryPolicy] = None,
        stats: Any = None,
    ) -> httpx.Response:
        """Sends ``req`` with retries; returns a successful response (open when streaming)."""
        attempt = 0
        waited = 0.0
        policy = policy or self.retry
        while True:
            request = _request(self.http, req, timeout)
            if headers:
                request.headers.update(headers)
            try:
                resp = self.http.send(request, stream=stream)
            except httpx.HTTPError as exc:
                err, retryable = _exception(exc, req.idempotent)
            else:
                if resp.status_code < 400:
                    return resp
                if stream:
                    resp.read()
                    resp.close()
                err = _error_of(resp)
                retryable = _retryable(err)
                if err.status in (429, 503):
                    self.refusals += 1
                    if stats is not None:
                        stats.refusals += 1
            err.attempts = attempt + 1
            if not retryable or attempt >= policy.max_retries:
                raise err
            attempt += 1
            wait = policy.wait(attempt, err.retry_after)
            if policy.max_elapsed is not None and waited + wait > policy.max_elapsed:
                raise err
            waited += wait
            time.sleep(wait)

    def close(self) -> None:
        self.http.close()


class AsyncTransport:
    """An ``httpx.AsyncClient`` with the retry rules."""

    def __init__(
        self,
        url: str,
        token: Optional[str],
        timeout: TimeoutTypes,
        verify: Any,
        cert: Any,
        retry: RetryPolicy,
        headers: Optional[Dict[str, str]],
        transport: Optional[httpx.AsyncBaseTransport] = None,
        http2: bool = False,
    ) -> None:
        kw: Dict[str, Any] = {}
        if transport is not None:
            kw["transport"] = transport
        if http2:
            kw["http2"] = True
        self.url = url
        self.retry = retry
        self.refusals = 0  # 429/503 answers seen (retried or not)
        self.http = httpx.AsyncClient(
            base_url=url, timeout=timeout, verify=verify, cert=cert, headers=_headers(token, headers), **kw
        )

    async def send(self, req: Req, policy: Optional[RetryPolicy] = None, stats: Any = None) -> Any:
        resp = await self.response(req, policy=policy, stats=stats)
        try:
            return req.parse(resp)
        finally:
            await resp.aclose()

    async def response(
        self, req: Req, stream: bool = False, headers: Optional[Dict[str, str]] = None, timeout: Any = None,
        policy: Optional[RetryPolicy] = None,
        stats: Any = None,
    ) -> httpx.Response:
        attempt = 0
        waited = 0.0
        policy = policy or self.retry
        while True:
            request = _request(self.http, req, timeout)
            if headers:
                request.headers.update(headers)
            try:
                resp = await self.http.send(request, stream=stream)
            except httpx.HTTPError as exc:
                err, retryable = _exception(exc, req.idempotent)
            else:
                if resp.status_code < 400:
                    return resp
                if stream:
                    await resp.aread()
                    await resp.aclose()
                err = _error_of(resp)
                retryable = _retryable(err)
                if err.status in (429, 503):
                    self.refusals += 1
                    if stats is not None:
                        stats.refusals += 1
            err.attempts = attempt + 1
            if not retryable or attempt >= policy.max_retries:
                raise err
            attempt += 1
            wait = policy.wait(attempt, err.retry_after)
            if policy.max_elapsed is not None and waited + wait > policy.max_elapsed:
                raise err
            waited += wait
            await asyncio.sleep(wait)

    async def close(self) -> None:
        await self.http.aclose()


# ---- NDJSON export -----------------------------------------------------------------------------

# Exports are asked for uncompressed: the NDJSON is consumed as it streams, and (server 0.1.0)
# a compressed /ts/export answer is cut short: the server's export stream panics when the
# compression layer polls it after its end ("Unfold must not be polled after it returned
# Poll::Ready(None)"), so gzip/br/zstd answers arrive truncated or empty.
_EXPORT_HEADERS = {"accept-encoding": "identity"}


def _point(line: str, raw: bool) -> Any:
    d = json.loads(line)
    if raw:
        return d
    return m.Point(d["metric"], d["entity"], d["value"], d.get("timestamp_ms"), d.get("tags") or {})


class ExportStream:
    """An iterator over an export's points (:class:`Point`, or dicts with ``raw=True``), read
    from the NDJSON answer as it arrives: the whole answer is never held in memory. Use it as
    a context manager (or exhaust it) so the connection is released."""

    def __init__(self, transport: SyncTransport, req: Req, raw: bool = False) -> None:
        self._t = transport
        self._req = req
        self._raw = raw
        self._resp: Optional[httpx.Response] = None
        self._it: Optional[Iterator[Any]] = None

    def _gen(self) -> Iterator[Any]:
        self._resp = self._t.response(self._req, stream=True, headers=_EXPORT_HEADERS)
        try:
            for line in self._resp.iter_lines():
                if line:
                    yield self._item(line)
        finally:
            self.close()

    def _item(self, line: str) -> Any:
        return _point(line, self._raw)

    def __iter__(self) -> "ExportStream":
        return self

    def __next__(self) -> Any:
        if self._it is None:
            self._it = self._gen()
        return next(self._it)

    def close(self) -> None:
        if self._resp is not None:
            self._resp.close()
            self._resp = None

    def __enter__(self) -> "ExportStream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def to_pandas(self) -> Any:
        """Reads the rest of the stream into a DataFrame (``time``, ``metric``, ``entity``,
        ``value``, ``tags``)."""
        import pandas as pd

        rows = [p if self._raw else p.to_dict() for p in self]
        df = pd.DataFrame(rows, columns=["metric", "entity", "timestamp_ms", "value", "tags"])
        df.insert(0, "time", pd.to_datetime(df["timestamp_ms"], unit="ms", utc=True))
        return df


class AsyncExportStream:
    """The async twin of :class:`ExportStream` (``async for``)."""

    def __init__(self, transport: AsyncTransport, req: Req, raw: bool = False) -> None:
        self._t = transport
        self._req = req
        self._raw = raw
        self._resp: Optional[httpx.Response] = None
        self._it: Optional[AsyncIterator[Any]] = None

    async def _gen(self) -> AsyncIterator[Any]:
        self._resp = await self._t.response(self._req, stream=True, headers=_EXPORT_HEADERS)
        try:
            async for line in self._resp.aiter_lines():
                if line:
                    yield self._item(line)
        finally:
            await self.aclose()

    def _item(self, line: str) -> Any:
        return _point(line, self._raw)

    def __aiter__(self) -> "AsyncExportStream":
        return self

    async def __anext__(self) -> Any:
        if self._it is None:
            self._it = self._gen()
        return await self._it.__anext__()

    async def aclose(self) -> None:
        if self._resp is not None:
            await self._resp.aclose()
            self._resp = None

    async def __aenter__(self) -> "AsyncExportStream":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    async def to_pandas(self) -> Any:
        import pandas as pd

        rows = [p if self._raw else p.to_dict() async for p in self]
        df = pd.DataFrame(rows, columns=["metric", "entity", "timestamp_ms", "value", "tags"])
        df.insert(0, "time", pd.to_datetime(df["timestamp_ms"], unit="ms", utc=True))
        return df


def _entity(line: str, raw: bool) -> Any:
    d = json.loads(line)
    return d if raw else m.VectorEntity.from_dict(d)


_ENTITY_COLUMNS = ["pk", "vector", "metadata", "timestamp_ms", "expires_at_ms"]


class VectorExportStream(ExportStream):
    """An iterator over a collection export's entities (:class:`VectorEntity`, or dicts with
    ``raw=True``) in pk order, read from the NDJSON answer as it arrives."""

    def _item(self, line: str) -> Any:
        return _entity(line, self._raw)

    def to_pandas(self) -> Any:
        """Reads the rest of the stream into a DataFrame (``pk``, ``vector``, ``metadata``,
        ``timestamp_ms``, ``expires_at_ms``)."""
        import pandas as pd

        return pd.DataFrame([e if self._raw else e.to_dict() for e in self], columns=_ENTITY_COLUMNS)


class AsyncVectorExportStream(AsyncExportStream):
    """The async twin of :class:`VectorExportStream` (``async for``)."""

    def _item(self, line: str) -> Any:
        return _entity(line, self._raw)

    async def to_pandas(self) -> Any:
        import pandas as pd

        return pd.DataFrame([e if self._raw else e.to_dict() async for e in self], columns=_ENTITY_COLUMNS)


# ---- Server-Sent Events changefeed -------------------------------------------------------------


class SSEParser:
    """Incremental Server-Sent Events parser (the WHATWG rules: ``field: value`` lines, blank
    line dispatches, ``:`` comments, several ``data`` lines joined by newlines)."""

    def __init__(self) -> None:
        self.event = ""
        self.data: List[str] = []
        self.id: Optional[str] = None
        self.last_id: Optional[str] = None

    def feed(self, line: str) -> Optional[Tuple[Optional[str], str, str]]:
        """One line (without its end of line); returns ``(id, event, data)`` when an event
        is complete."""
        if line == "":
            if not self.data and not self.event:
                return None
            ev = (self.id, self.event or "message", "\n".join(self.data))
            if self.id is not None:
                self.last_id = self.id
            self.event, self.data, self.id = "", [], None
            return ev
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self.data.append(value)
        elif name == "event":
            self.event = value
        elif name == "id":
            if "\0" not in value:
                self.id = value
        return None


def _change_event(ev: Tuple[Optional[str], str, str]) -> m.ChangeEvent:
    ident, name, data = ev
    try:
        payload = json.loads(data) if data else {}
    except ValueError:
        raise DecodeError(f"changefeed event data is not JSON: {data[:200]!r}") from None
    if name == "error":
        err = ChangefeedError(
            str(payload.get("error") or "changefeed error"),
            code=payload.get("code"),
            error_id=payload.get("error_id"),
            body=payload,
        )
        raise err
    lsn = int(ident) if ident is not None else int(payload.get("lsn", 0))
    return m.ChangeEvent(lsn, name, payload)


class _FeedState:
    def __init__(
        self,
        path: str,
        from_lsn: Optional[int],
        last_event_id: Optional[Union[int, str]],
        reconnect: bool,
        max_reconnects: Optional[int],
        idle_timeout: Optional[float],
    ) -> None:
        self.path = path
        self.last_lsn: Optional[int] = from_lsn
        self.last_event_id = None if last_event_id is None else str(last_event_id)
        self.reconnect = reconnect
        self.max_reconnects = max_reconnects
        self.reconnects = 0
        self.idle_timeout = idle_timeout

    def request(self) -> Tuple[Req, Dict[str, str]]:
        params = None
        headers: Dict[str, str] = {"accept": "text/event-stream"}
        if self.last_lsn is not None:
            params = {"from_lsn": self.last_lsn}
        elif self.last_event_id is not None:
            headers["last-event-id"] = self.last_event_id
        req = Req("GET", self.path, lambda r: r, params=params, stream=True)
        return req, headers

    def timeout(self, http: Any) -> httpx.Timeout:
        """The client's timeouts, with the read timeout = ``idle_timeout`` (None: wait forever
        for the next event)."""
        t = http.timeout
        return httpx.Timeout(connect=t.connect, read=self.idle_timeout, write=t.write, pool=t.pool)

    def may_reconnect(self) -> bool:
        if not self.reconnect:
            return False
        if self.max_reconnects is not None and self.reconnects >= self.max_reconnects:
            return False
        self.reconnects += 1
        return True


class Changefeed:
    """An iterator over a database's changes (:class:`ChangeEvent`), read from the SSE stream
    ``GET /v1/databases/{db}/changes``.

    It remembers the last event's id (its LSN, :attr:`last_lsn`) and, when the stream ends or the
    connection drops (e.g. the server's stall timeout), reconnects with ``from_lsn`` = that LSN
    (up to ``max_reconnects`` times): nothing is missed or repeated. With ``idle_timeout`` the
    iteration stops after that many seconds without an event. An ``error`` event raises
    :class:`ChangefeedError`; a position no longer retained raises :class:`Gone`.
    """

    def __init__(self, transport: SyncTransport, state: _FeedState) -> None:
        self._t = transport
        self._s = state
        self._resp: Optional[httpx.Response] = None
        self._lines: Optional[Iterator[str]] = None
        self._closed = False

    @property
    def last_lsn(self) -> Optional[int]:
        """The LSN of the last event delivered (resume with ``from_lsn=last_lsn``)."""
        return self._s.last_lsn

    def _connect(self) -> None:
        req, headers = self._s.request()
        self._resp = self._t.response(req, stream=True, headers=headers, timeout=self._s.timeout(self._t.http))
        self._lines = self._resp.iter_lines()

    def __iter__(self) -> "Changefeed":
        return self

    def __next__(self) -> m.ChangeEvent:
        if self._closed:
            raise StopIteration
        parser = SSEParser()
        deadline = None if self._s.idle_timeout is None else time.monotonic() + self._s.idle_timeout
        while True:
            if self._lines is None:
                self._connect()
            try:
                assert self._lines is not None
                line = next(self._lines)
            except StopIteration:
                ended = True
            except httpx.ReadTimeout:
                self.close()
                raise StopIteration from None
            except (httpx.NetworkError, httpx.RemoteProtocolError):
                ended = True
            else:
                ended = False
            if ended:
                self._drop()
                if not self._s.may_reconnect():
                    self.close()
                    raise StopIteration
                parser = SSEParser()
                continue
            ev = parser.feed(line)
            if ev is not None:
                event = _change_event(ev)
                self._s.last_lsn = event.id
                return event
            if deadline is not None and time.monotonic() > deadline:
                self.close()
                raise StopIteration

    def _drop(self) -> None:
        if self._resp is not None:
            self._resp.close()
        self._resp = None
        self._lines = None

    def close(self) -> None:
        self._drop()
        self._closed = True

    def __enter__(self) -> "Changefeed":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class AsyncChangefeed:
    """The async twin of :class:`Changefeed` (``async for``)."""

    def __init__(self, transport: AsyncTransport, state: _FeedState) -> None:
        self._t = transport
        self._s = state
        self._resp: Optional[httpx.Response] = None
        self._lines: Optional[AsyncIterator[str]] = None
        self._closed = False

    @property
    def last_lsn(self) -> Optional[int]:
        return self._s.last_lsn

    async def _connect(self) -> None:
        req, headers = self._s.request()
        self._resp = await self._t.response(req, stream=True, headers=headers, timeout=self._s.timeout(self._t.http))
        self._lines = self._resp.aiter_lines()

    def __aiter__(self) -> "AsyncChangefeed":
        return self

    async def __anext__(self) -> m.ChangeEvent:
        if self._closed:
            raise StopAsyncIteration
        parser = SSEParser()
        deadline = None if self._s.idle_timeout is None else time.monotonic() + self._s.idle_timeout
        while True:
            if self._lines is None:
                await self._connect()
            try:
                assert self._lines is not None
                line = await self._lines.__anext__()
            except StopAsyncIteration:
                ended = True
            except httpx.ReadTimeout:
                await self.aclose()
                raise StopAsyncIteration from None
            except (httpx.NetworkError, httpx.RemoteProtocolError):
                ended = True
            else:
                ended = False
            if ended:
                await self._drop()
                if not self._s.may_reconnect():
                    await self.aclose()
                    raise StopAsyncIteration
                parser = SSEParser()
                continue
            ev = parser.feed(line)
            if ev is not None:
                event = _change_event(ev)
                self._s.last_lsn = event.id
                return event
            if deadline is not None and time.monotonic() > deadline:
                await self.aclose()
                raise StopAsyncIteration

    async def _drop(self) -> None:
        if self._resp is not None:
            await self._resp.aclose()
        self._resp = None
        self._lines = None

    async def aclose(self) -> None:
        await self._drop()
        self._closed = True

    async def __aenter__(self) -> "AsyncChangefeed":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()
