"""The client's errors: one hierarchy under :class:`SluiceError`.

Every error answer of the server has the shape
``{"error", "code", "error_id", "field"?, "retry_after_sec"?, "success"?, "buffer_size"?}``;
the exception carries those fields as attributes. HTTP statuses map to subclasses
(:class:`BadRequest` for 400, :class:`Unauthorized` for 401, ...); wire protocol error frames
map to :class:`WireError` subclasses that are *also* the matching HTTP class, so
``except sluice.Unauthorized`` catches a 401 and a wire ``0x05`` alike.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Type

__all__ = [
    "SluiceError",
    "APIError",
    "BadRequest",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "Conflict",
    "Gone",
    "RequestTimeout",
    "PayloadTooLarge",
    "UnsupportedMediaType",
    "Unprocessable",
    "InsufficientStorage",
    "TooManyRequests",
    "ServerError",
    "Unavailable",
    "Overloaded",
    "BufferOverflow",
    "WireError",
    "WireInvalidOpcode",
    "WireMalformed",
    "WireProcessingError",
    "WireBadRequest",
    "WireNotFound",
    "WireConflict",
    "WireGone",
    "WireUnprocessable",
    "WireBufferOverflow",
    "WireUnauthorized",
    "WireForbidden",
    "WireTooManyRequests",
    "TransportError",
    "DecodeError",
    "QueueFull",
    "BatchWriteError",
    "ChangefeedError",
    "error_from_body",
    "error_for_status",
    "error_for_wire",
]


class SluiceError(Exception):
    """Base of every error raised by the client.

    Attributes:
        message: the server's ``error`` text (or the client's own description).
        status: the HTTP status (for wire error frames, the HTTP status of the same refusal:
            ``0x04`` → 503, ``0x05`` → 401, ``0x06`` → 403, ``0x07`` → 429, ``0x01``/``0x02`` → 400,
            ``0x03`` → the status its ``code`` has over HTTP, else 400); ``None`` when the server
            did not answer.
        code: the server's stable ``code`` (``"invalid_field"``, ``"buffer_overflow"``, ...).
        error_id: the request id (``X-Request-Id``), to quote when reporting a problem.
        field: for validation errors, the offending field (``"points[3].value"``).
        retry_after: seconds the server asked to wait (``Retry-After`` / ``retry_after_sec``).
        buffer_size: on buffer overflow answers, the buffer's size.
        body: the whole decoded error body.
        attempts: how many times the request was sent (> 1 when it was retried).
    """

    def __init__(
        self,
        message: str,
        *,
        status: Optional[int] = None,
        code: Optional[str] = None,
        error_id: Optional[str] = None,
        field: Optional[str] = None,
        retry_after: Optional[float] = None,
        buffer_size: Optional[int] = None,
        body: Optional[Dict[str, Any]] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.error_id = error_id
        self.field = field
        self.retry_after = retry_after
        self.buffer_size = buffer_size
        self.body: Dict[str, Any] = body or {}
        self.attempts = 1

    @property
    def retryable(self) -> bool:
        """True for refusals that mean "nothing was done, retry later" (429, 503, wire 0x04/0x07)."""
        return self.status in (429, 503)

    def __str__(self) -> str:
        parts = [self.message]
        extra = []
        if self.status is not None:
            extra.append(f"status={self.status}")
        if self.code:
            extra.append(f"code={self.code}")
        if self.field:
            extra.append(f"field={self.field}")
        if self.error_id:
            extra.append(f"error_id={self.error_id}")
        if self.attempts > 1:
            extra.append(f"attempts={self.attempts}")
        if extra:
            parts.append("(" + ", ".join(extra) + ")")
        return " ".join(parts)


class APIError(SluiceError):
    """The server answered with an error status."""


class BadRequest(APIError):
    """400: invalid input or parameter; nothing was written."""


class Unauthorized(APIError):
    """401: missing or wrong credentials."""


class Forbidden(APIError):
    """403: the actor's role or a policy refuses the operation."""


class NotFound(APIError):
    """404: no such database, collection, entity or replica."""


class Conflict(APIError):
    """409: it exists already, or the node is a read-only replica, ..."""


class Gone(APIError):
    """410: a changefeed position no longer retained (``lsn_gone``)."""


class RequestTimeout(APIError):
    """408: the request body was sent too slowly."""


class PayloadTooLarge(APIError):
    """413: body (or expanded line protocol) too large."""


class UnsupportedMediaType(APIError):
    """415: unsupported ``Content-Encoding``."""


class Unprocessable(BadRequest):
    """422: the request fits the API's schema but breaks a rule the schema cannot state
    (``invalid_value``: a vector against its collection's dimension, a filter, a query's
    fields against each other, a policy's syntax), or a limit was reached (series limit,
    collections per database). A :class:`BadRequest`: nothing was written."""


class TooManyRequests(APIError):
    """429: over the actor's rate limit or in-flight budget; retry after ``retry_after``."""


class ServerError(APIError):
    """5xx other than 503."""


class Unavailable(ServerError):
    """503: write queue or buffer full, server overloaded or not ready; retry later."""


class InsufficientStorage(Unavailable):
    """507: the server's disk is full; writes resume by themselves once space returns (reads
    are served meanwhile). Retried like a 503."""


class Overloaded(Unavailable):
    """503 ``server_overloaded``: the server sheds load."""


class BufferOverflow(Unavailable):
    """503 ``buffer_overflow`` (the seed's "Buffer overflow"): the auto-buffer is full."""


class WireError(SluiceError):
    """An error frame of the binary wire protocol; ``wire_status`` is its status byte."""

    wire_status: int = 0


class WireInvalidOpcode(WireError, BadRequest):
    """Wire status ``0x01``: unknown opcode."""

    wire_status = 0x01


class WireMalformed(WireError, BadRequest):
    """Wire status ``0x02``: malformed payload (or a frame too large: the connection is closed)."""

    wire_status = 0x02


class WireProcessingError(WireError, APIError):
    """Wire status ``0x03``: invalid value or server fault."""

    wire_status = 0x03


class WireBadRequest(WireProcessingError, BadRequest):
    """Wire status 0x03 with an invalid-input code (e.g. ``invalid_field``)."""


class WireNotFound(WireProcessingError, NotFound):
    """Wire status 0x03 with a ``*_not_found`` code."""


class WireConflict(WireProcessingError, Conflict):
    """Wire status 0x03 with a ``*_exists`` code or ``read_only_replica``."""


class WireGone(WireProcessingError, Gone):
    """Wire status 0x03 with ``lsn_gone``."""


class WireUnprocessable(WireProcessingError, Unprocessable):
    """Wire status 0x03 with a 422 code (``invalid_value``, ``series_limit``)."""


class WireBufferOverflow(WireError, BufferOverflow):
    """Wire status ``0x04``: buffer (or WAL queue) full, or load shed: nothing done, retry later."""

    wire_status = 0x04


class WireUnauthorized(WireError, Unauthorized):
    """Wire status ``0x05``: not authenticated."""

    wire_status = 0x05


class WireForbidden(WireError, Forbidden):
    """Wire status ``0x06``: refused by role or policy."""

    wire_status = 0x06


class WireTooManyRequests(WireError, TooManyRequests):
    """Wire status ``0x07``: over the actor's rate limit or in-flight budget: retry later."""

    wire_status = 0x07


class TransportError(SluiceError):
    """The connection failed or the answer was lost.

    ``maybe_applied`` is True when the request may have reached the server (a timeout or a
    reset after sending): such requests are re-sent only when repeating them has the same
    outcome (reads, writes of points with explicit timestamps, vector adds, flushes).
    """

    def __init__(self, message: str, *, maybe_applied: bool = False) -> None:
        super().__init__(message)
        self.maybe_applied = maybe_applied


class DecodeError(SluiceError):
    """The answer did not have the expected shape."""


class QueueFull(SluiceError):
    """A batch writer's bounded queue is full (``on_full="raise"``, or ``block`` timed out)."""


class BatchWriteError(SluiceError):
    """Raised by a batch writer's ``close()`` when some batches could not be written.

    ``failures`` lists :class:`sluice.batch.WriteFailure` objects (the error and the refused
    points or operations).
    """

    def __init__(self, message: str, failures: List[Any]) -> None:
        super().__init__(message)
        self.failures = failures


class ChangefeedError(SluiceError):
    """A changefeed ended with an ``error`` event (e.g. ``database_replaced``)."""


_STATUS_CLASSES: Dict[int, Type[APIError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    408: RequestTimeout,
    409: Conflict,
    410: Gone,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: Unprocessable,
    429: TooManyRequests,
    503: Unavailable,
    507: InsufficientStorage,
}

_WIRE_CLASSES: Dict[int, Type[WireError]] = {
    0x01: WireInvalidOpcode,
    0x02: WireMalformed,
    0x03: WireProcessingError,
    0x04: WireBufferOverflow,
    0x05: WireUnauthorized,
    0x06: WireForbidden,
    0x07: WireTooManyRequests,
}

_WIRE_HTTP_STATUS = {0x01: 400, 0x02: 400, 0x03: 400, 0x04: 503, 0x05: 401, 0x06: 403, 0x07: 429}


def _fields(body: Dict[str, Any], fallback: str) -> Dict[str, Any]:
    ra = body.get("retry_after_sec")
    return dict(
        code=body.get("code"),
        error_id=body.get("error_id"),
        field=body.get("field"),
        retry_after=float(ra) if isinstance(ra, (int, float)) else None,
        buffer_size=body.get("buffer_size"),
        body=body,
    )


def error_for_status(
    status: int, body: Dict[str, Any], retry_after: Optional[float] = None
) -> APIError:
    """The exception for an HTTP error answer (``body`` is the decoded error body)."""
    code = body.get("code")
    cls: Type[APIError]
    if status == 503 and code == "buffer_overflow":
        cls = BufferOverflow
    elif status == 503 and code == "server_overloaded":
        cls = Overloaded
    elif status in _STATUS_CLASSES:
        cls = _STATUS_CLASSES[status]
    elif status >= 500:
        cls = ServerError
    else:
        cls = APIError
    message = str(body.get("error") or f"HTTP {status}")
    kw = _fields(body, message)
    if retry_after is not None:
        kw["retry_after"] = retry_after
    return cls(message, status=status, **kw)


def _code_status(code: Optional[str]) -> int:
    if not code:
        return 400
    if code.endswith("_not_found"):
        return 404
    if code.endswith("_exists") or code in ("read_only_replica", "already_primary"):
        return 409
    if code == "lsn_gone":
        return 410
    if code in ("series_limit", "collection_limit", "invalid_value"):
        return 422
    if code in ("internal", "internal_error"):
        return 500
    return 400


def error_for_wire(wire_status: int, body: Dict[str, Any]) -> WireError:
    """The exception for a wire error frame (``body`` is its decoded JSON)."""
    cls: Type[WireError] = _WIRE_CLASSES.get(wire_status, WireError)
    status = _WIRE_HTTP_STATUS.get(wire_status)
    code = body.get("code")
    if wire_status == 0x03:
        status = _code_status(code)
        cls = {
            400: WireBadRequest,
            404: WireNotFound,
            409: WireConflict,
            410: WireGone,
            422: WireUnprocessable,
        }.get(status, WireProcessingError)
    message = str(body.get("error") or f"wire status 0x{wire_status:02x}")
    err = cls(message, status=status, **_fields(body, message))
    err.wire_status = wire_status
    return err


def error_from_body(status: int, text: str, retry_after: Optional[float] = None) -> APIError:
    """Decodes an HTTP error body (JSON, or any text) into the matching exception."""
    import json

    body: Dict[str, Any]
    try:
        parsed = json.loads(text) if text else {}
        body = parsed if isinstance(parsed, dict) else {"error": text[:512]}
    except ValueError:
        body = {"error": text[:512], "code": "http_error"}
    if "code" not in body:
        body["code"] = "http_error"
    return error_for_status(status, body, retry_after)
