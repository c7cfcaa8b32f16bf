package sluice

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// ChangesOptions configures Changes.
type ChangesOptions struct {
	// Database whose changes to read ("" = the client's database, else "default").
	Database string
	// FromLSN is the last LSN the subscriber has: events start right after it. With 0 (and
	// FromStart false) the feed starts at the next record written.
	FromLSN uint64
	// FromStart starts at the first record still retained (from_lsn=0) when FromLSN is 0.
	FromStart bool
	// MaxReconnects bounds the consecutive attempts to (re)connect after the stream ends or
	// drops, or a connection fails, with nothing read in between (default 10; negative: never
	// reconnect). Waits follow the client's retry policy's backoff, Retry-After first.
	MaxReconnects int
	// IdleTimeout ends the feed (Next false, Err nil) after this long without an event
	// (0 = wait for ever). The server's keep-alive comments do not count as events.
	IdleTimeout time.Duration
}

// ChangeEvent is one change of a database: one WAL record, in LSN order.
type ChangeEvent struct {
	// LSN is the record's LSN (the SSE id): resume with ChangesOptions{FromLSN: LSN}.
	LSN uint64
	// Event is "points", "vectors" or "collection".
	Event string
	// Data is the record as JSON: {"lsn", "points": [...]}, {"lsn", "collection", "ops":
	// [...]} or {"lsn", "change": {"create": {...}} | {"delete": name}}. Read it with Decode
	// or the typed views Points, Vectors and Collection.
	Data json.RawMessage
}

// Decode unmarshals the event's data into v.
func (e ChangeEvent) Decode(v any) error { return json.Unmarshal(e.Data, v) }

// PointsChange is the data of a "points" event.
type PointsChange struct {
	LSN    uint64      `json:"lsn"`
	Points []DataPoint `json:"points"`
}

// VectorOp is one operation of a "vectors" event: Op is "add", "update" or "remove".
type VectorOp struct {
	Op       string         `json:"op"`
	PK       string         `json:"pk"`
	Vector   []float32      `json:"vector,omitempty"`
	Metadata map[string]any `json:"metadata,omitempty"`
}

// VectorsChange is the data of a "vectors" event.
type VectorsChange struct {
	LSN        uint64     `json:"lsn"`
	Collection string     `json:"collection"`
	Ops        []VectorOp `json:"ops"`
}

// CollectionChange is the data of a "collection" event: a collection created (Create) or
// dropped (Delete, its name).
type CollectionChange struct {
	LSN    uint64 `json:"lsn"`
	Change struct {
		Create *CreateCollection `json:"create,omitempty"`
		Delete string            `json:"delete,omitempty"`
	} `json:"change"`
}

func decodeAs[T any](e ChangeEvent, event string) (*T, error) {
	if e.Event != event {
		return nil, fmt.Errorf("sluice: a %q event, not %q", e.Event, event)
	}
	var out T
	if err := e.Decode(&out); err != nil {
		return nil, fmt.Errorf("sluice: decoding a %s event: %w", event, err)
	}
	return &out, nil
}

// Points decodes a "points" event.
func (e ChangeEvent) Points() (*PointsChange, error) { return decodeAs[PointsChange](e, "points") }

// Vectors decodes a "vectors" event.
func (e ChangeEvent) Vectors() (*VectorsChange, error) { return decodeAs[VectorsChange](e, "vectors") }

// Collection decodes a "collection" event.
func (e ChangeEvent) Collection() (*CollectionChange, error) {
	return decodeAs[CollectionChange](e, "collection")
}

// ChangeIterator reads a changefeed as it streams:
//
//	for it.Next() { ev := it.Event() }; err := it.Err(); it.Close()
//
// It remembers the last event's LSN and, when the stream ends or drops (a server restart,
// the server's stall timeout), reconnects with from_lsn = that LSN: nothing is missed or
// repeated. Close (from any goroutine) or the context stops it.
type ChangeIterator struct {
	c        *Client
	path     string
	opts     ChangesOptions
	userCtx  context.Context
	ctx      context.Context // userCtx, also cancelled by Close and the idle timeout
	cancel   context.CancelFunc
	idle     *time.Timer
	idledOut atomic.Bool
	closed   atomic.Bool

	mu       sync.Mutex // held by Next
	body     io.ReadCloser
	r        *bufio.Reader
	long     []byte // a line longer than r's buffer
	last     uint64
	hasLast  bool
	failures int // consecutive failed (re)connections and drops with nothing read between
	cur      ChangeEvent
	err      error
	done     bool
}

// Changes subscribes to a database's changefeed (GET /v1/databases/{db}/changes, Server-Sent
// Events) and returns once the stream is open: a database that does not exist, a position no
// longer retained (410 lsn_gone), a refused token are returned as *Error. Close the iterator
// when done.
func (c *Client) Changes(ctx context.Context, opts ChangesOptions) (*ChangeIterator, error) {
	db := opts.Database
	if db == "" {
		db = c.database
	}
	if db == "" {
		db = "default"
	}
	if opts.MaxReconnects == 0 {
		opts.MaxReconnects = 10
	}
	it := &ChangeIterator{c: c, path: "/v1/databases/" + url.PathEscape(db) + "/changes", opts: opts,
		userCtx: ctx, last: opts.FromLSN, hasLast: opts.FromLSN > 0 || opts.FromStart}
	it.ctx, it.cancel = context.WithCancel(ctx)
	if opts.IdleTimeout > 0 {
		it.idle = time.AfterFunc(opts.IdleTimeout, func() {
			it.idledOut.Store(true)
			it.cancel()
		})
	}
	it.mu.Lock()
	defer it.mu.Unlock()
	if err := it.connectLocked(); err != nil {
		it.finishLocked(err)
		if it.err != nil {
			return nil, it.err
		}
		return it, nil // idled out or closed while connecting: an empty feed
	}
	return it, nil
}

// ChangesFunc runs a changefeed into fn until fn returns an error (returned), the context
// ends (its error) or the feed ends (nil after IdleTimeout, else why it ended).
func (c *Client) ChangesFunc(ctx context.Context, opts ChangesOptions, fn func(ChangeEvent) error) error {
	it, err := c.Changes(ctx, opts)
	if err != nil {
		return err
	}
	defer it.Close()
	for it.Next() {
		if err := fn(it.Event()); err != nil {
			return err
		}
	}
	return it.Err()
}

// Next waits for the next event; false once the feed ended (see Err).
func (it *ChangeIterator) Next() bool {
	it.mu.Lock()
	defer it.mu.Unlock()
	if it.done {
		return false
	}
	p := sseParser{}
	for {
		if it.body == nil {
			if err := it.connectLocked(); err != nil {
				it.finishLocked(err)
				return false
			}
			p = sseParser{}
		}
		line, err := it.readLine()
		if err == nil {
			it.failures = 0 // the stream works (keep-alive comments included)
		} else {
			it.dropLocked()
			if it.ctx.Err() != nil {
				it.finishLocked(it.ctx.Err())
				return false
			}
			if !it.mayReconnect() {
				if it.opts.MaxReconnects < 0 && errors.Is(err, io.EOF) {
					err = nil // the server ended the stream and reconnecting is off
				} else {
					err = &TransportError{MaybeApplied: true, Err: err}
				}
				it.finishLocked(err)
				return false
			}
			continue
		}
		ev, ok := p.feed(line)
		if !ok {
			continue
		}
		if ev.event == "error" {
			it.finishLocked(newCodedError(ev.data, 400))
			return false
		}
		lsn, err := strconv.ParseUint(ev.id, 10, 64)
		if err != nil {
			var d struct {
				LSN uint64 `json:"lsn"`
			}
			if json.Unmarshal(ev.data, &d) != nil || d.LSN == 0 {
				it.finishLocked(fmt.Errorf("sluice: changefeed event without an LSN (id %q)", ev.id))
				return false
			}
			lsn = d.LSN
		}
		it.cur = ChangeEvent{LSN: lsn, Event: ev.event, Data: json.RawMessage(ev.data)}
		it.last, it.hasLast = lsn, true
		if it.idle != nil {
			it.idle.Reset(it.opts.IdleTimeout)
		}
		return true
	}
}

// Event is the current event.
func (it *ChangeIterator) Event() ChangeEvent {
	it.mu.Lock()
	defer it.mu.Unlock()
	return it.cur
}

// LastLSN is the LSN of the last event delivered (or FromLSN before the first): resume with
// ChangesOptions{FromLSN: LastLSN}. ok is false when there is no position yet.
func (it *ChangeIterator) LastLSN() (lsn uint64, ok bool) {
	it.mu.Lock()
	defer it.mu.Unlock()
	return it.last, it.hasLast
}

// Err is why the feed ended: nil after Close or IdleTimeout, the context's error, an *Error
// (an error event such as lsn_gone or database_replaced, or an error answer when
// reconnecting), or the last failure once MaxReconnects ran out.
func (it *ChangeIterator) Err() error {
	it.mu.Lock()
	defer it.mu.Unlock()
	return it.err
}

// Close stops the feed and releases its connection; safe to call twice and from another
// goroutine than Next's (a Next waiting for an event returns false).
func (it *ChangeIterator) Close() error {
	it.closed.Store(true)
	it.cancel()
	it.mu.Lock()
	defer it.mu.Unlock()
	it.finishLocked(nil)
	return nil
}

// finishLocked ends the feed with err, unless it ended because of Close or the idle timeout.
func (it *ChangeIterator) finishLocked(err error) {
	if it.done {
		return
	}
	it.done = true
	if it.closed.Load() || it.idledOut.Load() {
		err = nil
	} else if err != nil && it.ctx.Err() != nil && it.userCtx.Err() != nil {
		err = it.userCtx.Err()
	}
	it.err = err
	it.dropLocked()
	if it.idle != nil {
		it.idle.Stop()
	}
	it.cancel()
}

func (it *ChangeIterator) dropLocked() {
	if it.body != nil {
		_ = it.body.Close()
		it.body, it.r = nil, nil
	}
}

// mayReconnect counts one more failure; false once MaxReconnects is spent.
func (it *ChangeIterator) mayReconnect() bool {
	if it.opts.MaxReconnects < 0 || it.failures >= it.opts.MaxReconnects {
		return false
	}
	it.failures++
	return true
}

// connectLocked opens the stream from the last LSN, retrying refusals (429/503, after
// Retry-After) and connection failures up to MaxReconnects consecutive failures.
func (it *ChangeIterator) connectLocked() error {
	pol := it.c.retry
	if pol.InitialBackoff <= 0 {
		pol = DefaultRetryPolicy()
	}
	var retryAfter time.Duration
	for {
		if it.failures > 0 {
			if err := sleepCtx(it.ctx, pol.Wait(it.failures, retryAfter)); err != nil {
				return err
			}
		}
		resp, err := it.c.send(it.ctx, it.request())
		if err == nil {
			it.body = resp.Body
			it.r = bufio.NewReaderSize(resp.Body, 64<<10)
			return nil
		}
		if it.ctx.Err() != nil {
			return it.ctx.Err()
		}
		retryAfter = 0
		var e *Error
		if errors.As(err, &e) {
			if !e.Refused() {
				return err // 400, 401, 403, 404, 410: reconnecting cannot help
			}
			retryAfter = e.RetryAfter
		}
		if !it.mayReconnect() {
			return err
		}
	}
}

var noRetry = NoRetry()

func (it *ChangeIterator) request() request {
	r := request{method: "GET", path: it.path, idempotent: true, stream: true, retry: &noRetry,
		header: http.Header{"Accept": {"text/event-stream"}, "Accept-Encoding": {"identity"}}}
	if it.hasLast {
		r.query = url.Values{"from_lsn": {strconv.FormatUint(it.last, 10)}}
	}
	return r
}

// readLine reads one line without its end of line (LF or CRLF); the slice is valid until the
// next call.
func (it *ChangeIterator) readLine() ([]byte, error) {
	line, err := it.r.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		it.long = append(it.long[:0], line...)
		for err == bufio.ErrBufferFull {
			line, err = it.r.ReadSlice('\n')
			it.long = append(it.long, line...)
		}
		line = it.long
	}
	if err != nil {
		if err == io.EOF && len(line) > 0 {
			err = io.ErrUnexpectedEOF // a partial line: the stream was cut
		}
		return nil, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

// sseParser assembles Server-Sent Events from lines (the WHATWG rules for the fields the
// changefeed uses: id, event, data; comments and other fields are skipped).
type sseParser struct {
	id, event string
	data      []byte
	hasData   bool
}

type sseEvent struct {
	id, event string
	data      []byte
}

func (p *sseParser) feed(line []byte) (sseEvent, bool) {
	if len(line) == 0 {
		if !p.hasData && p.event == "" {
			return sseEvent{}, false
		}
		ev := sseEvent{id: p.id, event: p.event, data: p.data}
		if ev.event == "" {
			ev.event = "message"
		}
		*p = sseParser{} // an event without an id takes its LSN from its data
		return ev, true
	}
	if line[0] == ':' {
		return sseEvent{}, false
	}
	name, value := line, []byte(nil)
	if i := bytes.IndexByte(line, ':'); i >= 0 {
		name, value = line[:i], line[i+1:]
		if len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
	}
	switch string(name) {
	case "data":
		if p.hasData {
			p.data = append(p.data, '\n')
		}
		p.data = append(p.data, value...)
		p.hasData = true
	case "event":
		p.event = string(value)
	case "id":
		if bytes.IndexByte(value, 0) < 0 {
			p.id = string(value)
		}
	}
	return sseEvent{}, false
}
