package sluice

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Error is an error answer of the server: an HTTP status >= 400, a wire error frame or a
// changefeed's error event.
// Use errors.As(err, &e) to read it, or errors.Is(err, sluice.ErrNotFound) (and the other
// Err* sentinels) to test its status.
type Error struct {
	Status      int           // HTTP status (wire frames, changefeed events: the code's HTTP status)
	Code        string        // the server's error code (invalid_field, buffer_overflow, ...)
	Message     string        // the body's "error"
	ErrorID     string        // the request id, also in the server's logs
	Field       string        // validation errors: the offending field (points[3].value)
	RetryAfter  time.Duration // Retry-After / retry_after_sec; 0 when not given
	BufferSize  *int64        // on buffer overflow answers
	ExpectedLSN *uint64       // 409 wal_gap: the LSN the replica expects next
	Primary     string        // 409 read_only_replica: where writes go
	WireStatus  byte          // wire error frames: the status byte (0 over HTTP)
	Attempts    int           // how many times the request was sent
	Body        []byte        // the whole error body
}

func (e *Error) Error() string {
	s := fmt.Sprintf("sluice: %d %s: %s", e.Status, e.Code, e.Message)
	if e.Field != "" {
		s += " (field " + e.Field + ")"
	}
	if e.ErrorID != "" {
		s += " [error_id " + e.ErrorID + "]"
	}
	return s
}

// Is matches the sentinels ErrBadRequest, ErrNotFound, ... by status.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	if !ok || t.Code != "" || t.Message != "sentinel" {
		return false
	}
	if t.Status == 400 {
		return e.Status == 400 || e.Status == 422
	}
	return t.Status == e.Status
}

// Refused reports whether the answer means "nothing done, retry later" (429, 503, wire
// 0x04/0x07).
func (e *Error) Refused() bool { return e.Status == 429 || e.Status == 503 }

func sentinel(status int) *Error { return &Error{Status: status, Message: "sentinel"} }

// Sentinels for errors.Is. ErrBadRequest also matches 422 (Unprocessable).
var (
	ErrBadRequest          = sentinel(400)
	ErrUnauthorized        = sentinel(401)
	ErrForbidden           = sentinel(403)
	ErrNotFound            = sentinel(404)
	ErrRequestTimeout      = sentinel(408)
	ErrConflict            = sentinel(409)
	ErrGone                = sentinel(410)
	ErrPayloadTooLarge     = sentinel(413)
	ErrUnsupportedMedia    = sentinel(415)
	ErrUnprocessable       = sentinel(422)
	ErrTooManyRequests     = sentinel(429)
	ErrUnavailable         = sentinel(503)
	ErrInsufficientStorage = sentinel(507)
)

// TransportError is a failure below HTTP or the wire protocol: the connection could not be
// opened (MaybeApplied false) or the answer was lost (MaybeApplied true: the request may
// have been applied).
type TransportError struct {
	MaybeApplied bool
	Attempts     int
	Err          error
}

func (e *TransportError) Error() string {
	if e.MaybeApplied {
		return "sluice: answer lost (the request may have been applied): " + e.Err.Error()
	}
	return "sluice: cannot connect: " + e.Err.Error()
}

func (e *TransportError) Unwrap() error { return e.Err }

// ErrClosed is returned by a BatchWriter or WireClient used after Close.
var ErrClosed = errors.New("sluice: closed")

// errorBody is the server's error shape (ErrorBody, SeedErrorBody, PromErrorBody).
type errorBody struct {
	Error         string  `json:"error"`
	Code          string  `json:"code"`
	ErrorID       string  `json:"error_id"`
	Field         *string `json:"field"`
	BufferSize    *int64  `json:"buffer_size"`
	RetryAfterSec *int64  `json:"retry_after_sec"`
	ExpectedLSN   *uint64 `json:"expected_lsn"`
	Primary       *string `json:"primary"`
	ErrorType     string  `json:"errorType"` // Prometheus API
}

// newError decodes an error body; retryAfter is the Retry-After header (0 = none).
func newError(status int, body []byte, retryAfter time.Duration) *Error {
	e := parseErrorBody(body)
	e.Status = status
	if retryAfter > 0 {
		e.RetryAfter = retryAfter
	}
	e.fillDefaults()
	return e
}

// parseErrorBody reads the server's error shape (or keeps a non-JSON body as the message);
// Status is left 0.
func parseErrorBody(body []byte) *Error {
	e := &Error{Body: body}
	var b errorBody
	if json.Unmarshal(body, &b) == nil {
		e.Message, e.Code, e.ErrorID = b.Error, b.Code, b.ErrorID
		if e.Code == "" {
			e.Code = b.ErrorType
		}
		if b.Field != nil {
			e.Field = *b.Field
		}
		if b.Primary != nil {
			e.Primary = *b.Primary
		}
		e.BufferSize, e.ExpectedLSN = b.BufferSize, b.ExpectedLSN
		if b.RetryAfterSec != nil {
			e.RetryAfter = time.Duration(*b.RetryAfterSec) * time.Second
		}
	} else {
		m := string(body)
		if len(m) > 512 {
			m = m[:512]
		}
		e.Message = m
	}
	return e
}

func (e *Error) fillDefaults() {
	if e.Code == "" {
		e.Code = "http_error"
	}
	if e.Message == "" {
		e.Message = fmt.Sprintf("HTTP %d", e.Status)
		if len(e.Body) > 0 && len(e.Body) <= 512 {
			e.Message += ": " + string(e.Body)
		}
	}
}

// codeStatus is the HTTP status the server answers each error code with (its http_status),
// so that a wire error frame or a changefeed error event carries the status the same error
// has over HTTP. Codes newer than this client fall back to the frame's status byte.
var codeStatus = func() map[string]int {
	m := map[string]int{}
	for status, codes := range map[int]string{
		400: "bad_request body_read_failed invalid_database invalid_encoding invalid_field invalid_json " +
			"invalid_line_protocol invalid_parameter json_too_deep query_too_large client_error " +
			"invalid_opcode malformed_payload subscription_transport text_message truncated_frame " +
			"corrupt_batch corrupt_snapshot unknown",
		401: "unauthenticated",
		403: "forbidden cross_origin",
		404: "not_found collection_not_found database_not_found entity_not_found replica_not_found",
		405: "method_not_allowed",
		408: "body_timeout request_timeout snapshot_stalled",
		409: "collection_exists database_exists database_protected already_primary conflicting_primary " +
			"not_a_replica read_only_replica replica_exists stale_epoch wal_gap",
		410: "lsn_gone database_replaced",
		413: "payload_too_large too_large_expanded too_many_points frame_too_large",
		415: "unsupported_media_type",
		422: "unprocessable invalid_value collection_limit series_limit record_refused",
		426: "websocket_required",
		429: "rate_limited too_many_bytes_in_flight too_many_in_flight too_many_requests",
		500: "internal",
		503: "buffer_overflow flush_unavailable not_ready overloaded shutting_down unavailable " +
			"server_overloaded too_many_sessions config_drift epoch_not_saved replication_busy",
		507: "insufficient_storage",
	} {
		for _, c := range strings.Fields(codes) {
			m[c] = status
		}
	}
	return m
}()

// wireStatusHTTP is the HTTP status of a wire status byte whose code this client does not know.
func wireStatusHTTP(st byte) int {
	switch st {
	case 0x04:
		return 503
	case 0x05:
		return 401
	case 0x06:
		return 403
	case 0x07:
		return 429
	}
	return 400 // 0x01, 0x02, 0x03
}

// newCodedError is an error body that came without an HTTP status: its status is the one
// the server gives its code over HTTP, else fallback.
func newCodedError(payload []byte, fallback int) *Error {
	e := parseErrorBody(payload)
	e.Status = fallback
	if s, ok := codeStatus[e.Code]; ok {
		e.Status = s
	}
	e.fillDefaults()
	return e
}

// newWireError is a wire error frame as an *Error (status byte st).
func newWireError(st byte, payload []byte) *Error {
	e := newCodedError(payload, wireStatusHTTP(st))
	e.WireStatus = st
	return e
}
