package sluice

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Error is an error answer of the server: an HTTP status >= 400 or a wire error frame.
// Use errors.As(err, &e) to read it, or errors.Is(err, sluice.ErrNotFound) (and the other
// Err* sentinels) to test its status.
type Error struct {
	Status      int           // HTTP status (wire frames: the equivalent HTTP status)
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
	e := &Error{Status: status, Body: body, RetryAfter: retryAfter}
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
		if retryAfter == 0 && b.RetryAfterSec != nil {
			e.RetryAfter = time.Duration(*b.RetryAfterSec) * time.Second
		}
	} else {
		m := string(body)
		if len(m) > 512 {
			m = m[:512]
		}
		e.Message = m
	}
	if e.Code == "" {
		e.Code = "http_error"
	}
	if e.Message == "" {
		e.Message = fmt.Sprintf("HTTP %d", status)
	}
	return e
}

// wire status -> HTTP status (0x03 is refined by the code).
func wireHTTPStatus(st byte, code string) int {
	switch st {
	case 0x01, 0x02:
		return 400
	case 0x04:
		return 503
	case 0x05:
		return 401
	case 0x06:
		return 403
	case 0x07:
		return 429
	}
	switch {
	case code == "":
		return 400
	case len(code) > 10 && code[len(code)-10:] == "_not_found":
		return 404
	case len(code) > 7 && code[len(code)-7:] == "_exists", code == "read_only_replica", code == "already_primary":
		return 409
	case code == "lsn_gone":
		return 410
	case code == "series_limit", code == "collection_limit", code == "invalid_value":
		return 422
	case code == "internal", code == "internal_error":
		return 500
	}
	return 400
}

func newWireError(st byte, payload []byte) *Error {
	e := newError(0, payload, 0)
	e.WireStatus = st
	e.Status = wireHTTPStatus(st, e.Code)
	return e
}
