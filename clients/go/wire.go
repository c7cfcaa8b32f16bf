package sluice

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// WireResult is one frame's answer: its ok payload or its error (*Error).
type WireResult struct {
	Payload []byte
	Err     error
}

// WireClient speaks the binary protocol over one TCP connection, pipelined. Safe for
// concurrent use (calls are serialised). The connection is opened (and authenticated) on
// first use and again after a failure.
type WireClient struct {
	addr    string
	token   string
	retry   RetryPolicy
	timeout time.Duration

	mu   sync.Mutex
	conn net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
	done bool
}

// NewWireClient makes a client of the wire listener at addr ("host:port"). token "" = none.
func NewWireClient(addr, token string, retry RetryPolicy) *WireClient {
	return &WireClient{addr: addr, token: token, retry: retry, timeout: 30 * time.Second}
}

// Wire returns a wire client for c's wire address, token and retry policy (database default:
// the wire protocol acts on database default).
func (c *Client) Wire() *WireClient { return NewWireClient(c.wireAddr, c.token, c.retry) }

// Close closes the connection.
func (w *WireClient) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.done = true
	return w.dropLocked()
}

func (w *WireClient) dropLocked() error {
	if w.conn == nil {
		return nil
	}
	err := w.conn.Close()
	w.conn, w.r, w.w = nil, nil, nil
	return err
}

func (w *WireClient) openLocked(ctx context.Context) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", w.addr)
	if err != nil {
		return &TransportError{Err: err}
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	w.conn, w.r, w.w = conn, bufio.NewReaderSize(conn, 64<<10), bufio.NewWriterSize(conn, 256<<10)
	if w.token != "" {
		ans, err := w.roundtripLocked(ctx, [][]byte{EncodeAuth(w.token)})
		if err != nil {
			return err
		}
		if ans[0].Err != nil {
			_ = w.dropLocked()
			return ans[0].Err
		}
	}
	return nil
}

// roundtripLocked writes frames and reads their answers in order. Several frames are written
// by a goroutine while the answers are read, so that large answers (searches) can never
// fill both directions' buffers and stall. A failure closes the connection (answers are
// never matched to the wrong request).
func (w *WireClient) roundtripLocked(ctx context.Context, frames [][]byte) ([]WireResult, error) {
	conn := w.conn
	dl := time.Now().Add(w.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	_ = conn.SetDeadline(dl)
	if done := ctx.Done(); done != nil {
		stopc := make(chan struct{})
		defer close(stopc)
		go func() {
			select {
			case <-done:
				_ = conn.SetDeadline(time.Now())
			case <-stopc:
			}
		}()
	}
	fail := func(err error) ([]WireResult, error) {
		_ = w.dropLocked()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &TransportError{MaybeApplied: true, Err: err}
	}
	bw := w.w
	write := func() error {
		for _, f := range frames {
			if _, err := bw.Write(f); err != nil {
				return err
			}
		}
		return bw.Flush()
	}
	var werr chan error
	if len(frames) == 1 {
		if err := write(); err != nil {
			return fail(err)
		}
	} else {
		werr = make(chan error, 1)
		go func() { werr <- write() }()
	}
	out := make([]WireResult, len(frames))
	rerr := w.readAnswers(out)
	if werr != nil {
		if rerr != nil {
			_ = conn.SetDeadline(time.Now()) // unblock the writer
		}
		if err := <-werr; rerr == nil {
			rerr = err
		}
	}
	if rerr != nil {
		return fail(rerr)
	}
	return out, nil
}

func (w *WireClient) readAnswers(out []WireResult) error {
	var h [frameHeader]byte
	for i := range out {
		if _, err := io.ReadFull(w.r, h[:]); err != nil {
			return err
		}
		payload := make([]byte, binary.LittleEndian.Uint32(h[2:]))
		if _, err := io.ReadFull(w.r, payload); err != nil {
			return err
		}
		if h[0] == 0 {
			out[i].Payload = payload
		} else {
			out[i].Err = newWireError(h[0], payload)
		}
	}
	return nil
}

func refusedWire(err error) (*Error, bool) {
	var e *Error
	if errors.As(err, &e) && (e.WireStatus == 0x04 || e.WireStatus == 0x07) {
		return e, true
	}
	return nil, false
}

// A pipelined window: frames written before their answers are read.
const (
	maxWindowFrames = 256
	maxWindowBytes  = 16 << 20
)

// Pipeline sends frames in windows (256 frames / 16 MiB) without waiting for each answer and
// returns each frame's answer, in order. A refused suffix (0x04/0x07) is re-sent after
// retry_after_sec per the retry policy; a refusal followed by an applied frame is returned as
// its error (re-sending it would reorder writes). A lost connection is retried when
// idempotent (the next window reconnects).
func (w *WireClient) Pipeline(ctx context.Context, frames [][]byte, idempotent bool) ([]WireResult, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return nil, ErrClosed
	}
	results := make([]WireResult, len(frames))
	for start := 0; start < len(frames); {
		end, size := start, 0
		for end < len(frames) && end-start < maxWindowFrames && (end == start || size+len(frames[end]) <= maxWindowBytes) {
			size += len(frames[end])
			end++
		}
		if err := w.windowLocked(ctx, frames, start, end, results, idempotent); err != nil {
			return results, err
		}
		start = end
	}
	return results, nil
}

func (w *WireClient) windowLocked(ctx context.Context, frames [][]byte, start, end int, results []WireResult, idempotent bool) error {
	pol := w.retry
	var waited time.Duration
	for attempt := 1; ; attempt++ {
		var ans []WireResult
		var err error
		if w.conn == nil {
			err = w.openLocked(ctx)
		}
		if err == nil {
			ans, err = w.roundtripLocked(ctx, frames[start:end])
		}
		if err != nil {
			var te *TransportError
			if !errors.As(err, &te) || (te.MaybeApplied && !idempotent) || attempt > pol.MaxRetries {
				if te != nil {
					te.Attempts = attempt
				}
				return err
			}
			if err := sleepCtx(ctx, pol.Wait(attempt, 0)); err != nil {
				return err
			}
			continue
		}
		// The first refused frame after which nothing was applied starts the suffix to resend.
		first := -1
		var ra time.Duration
		for i, a := range ans {
			results[start+i] = a
			if e, ok := refusedWire(a.Err); ok {
				if first < 0 {
					first = i
					ra = e.RetryAfter
				}
			} else if first >= 0 {
				first = -2 // something after a refusal was applied (or failed otherwise)
			}
		}
		for _, a := range ans {
			var e *Error
			if errors.As(a.Err, &e) {
				e.Attempts = attempt
			}
		}
		if first < 0 || attempt > pol.MaxRetries {
			return nil
		}
		wait := pol.Wait(attempt, ra)
		if pol.MaxElapsed > 0 && waited+wait > pol.MaxElapsed {
			return nil
		}
		waited += wait
		if err := sleepCtx(ctx, wait); err != nil {
			return err
		}
		start += first
	}
}

// Call sends one frame; it returns its ok payload or its error.
func (w *WireClient) Call(ctx context.Context, frame []byte, idempotent bool) ([]byte, error) {
	res, err := w.Pipeline(ctx, [][]byte{frame}, idempotent)
	if err != nil {
		return nil, err
	}
	return res[0].Payload, res[0].Err
}

func u64(b []byte, err error) (uint64, error) {
	if err != nil {
		return 0, err
	}
	if len(b) < 8 {
		return 0, fmt.Errorf("sluice: wire answer of %d bytes, expected 8", len(b))
	}
	return binary.LittleEndian.Uint64(b), nil
}

func allStamped(points []DataPoint) bool {
	for _, p := range points {
		if p.TimestampMs == 0 {
			return false
		}
	}
	return true
}

// PutBuffered is TS_PUT_BUFFERED of one point; it returns the buffer size.
func (w *WireClient) PutBuffered(ctx context.Context, p DataPoint) (uint64, error) {
	return u64(w.Call(ctx, EncodeTSPut([]DataPoint{p}, true), p.TimestampMs != 0))
}

// PutBufferedBatch is TS_PUT_BUFFERED with the batch flag (all points or none).
func (w *WireClient) PutBufferedBatch(ctx context.Context, points []DataPoint) (uint64, error) {
	return u64(w.Call(ctx, EncodeTSPut(points, true), allStamped(points)))
}

// PutBatch is TS_PUT: written directly, answered once fsync'd with the LSN.
func (w *WireClient) PutBatch(ctx context.Context, points []DataPoint) (uint64, error) {
	return u64(w.Call(ctx, EncodeTSPut(points, false), allStamped(points)))
}

// callJSON sends a frame without payload (stats, flush) and decodes its JSON answer into out
// (nil: discarded).
func (w *WireClient) callJSON(ctx context.Context, op byte, out any) error {
	b, err := w.Call(ctx, EncodeFrame(op, 0, nil), true)
	if err != nil || out == nil {
		return err
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("sluice: decoding the answer of opcode 0x%02x: %w", op, err)
	}
	return nil
}

// GetBufferStats is TS_BUFFER_STATS.
func (w *WireClient) GetBufferStats(ctx context.Context) (*BufferStats, error) {
	var out BufferStats
	return &out, w.callJSON(ctx, OpTSBufferStats, &out)
}

// FlushBuffer is TS_BUFFER_FLUSH (admin).
func (w *WireClient) FlushBuffer(ctx context.Context) error {
	return w.callJSON(ctx, OpTSBufferFlush, nil)
}

// GetReplicationStats is REPLICATION_STATS.
func (w *WireClient) GetReplicationStats(ctx context.Context) (*ReplicationStats, error) {
	var out ReplicationStats
	return &out, w.callJSON(ctx, OpReplicationStats, &out)
}

// ---- vectors: the write opcodes act on collection default (of database default) ----

func (w *WireClient) vectorPut(ctx context.Context, entities []VectorEntity, update bool) (uint64, error) {
	f, err := EncodeVectorPut(entities, update)
	if err != nil {
		return 0, err
	}
	return u64(w.Call(ctx, f, true))
}

// AddBuffered is VECTOR_ADD_BUFFERED of one entity (collection default); it returns the
// vector buffer's size. The entity is searchable at once.
func (w *WireClient) AddBuffered(ctx context.Context, e VectorEntity) (uint64, error) {
	return w.vectorPut(ctx, []VectorEntity{e}, false)
}

// AddBufferedBatch is VECTOR_ADD_BUFFERED with the batch flag (all entities or none).
func (w *WireClient) AddBufferedBatch(ctx context.Context, entities []VectorEntity) (uint64, error) {
	return w.vectorPut(ctx, entities, false)
}

// UpdateBuffered is VECTOR_UPDATE_BUFFERED of one entity, which must exist (else a 404
// *Error, collection default).
func (w *WireClient) UpdateBuffered(ctx context.Context, e VectorEntity) (uint64, error) {
	return w.vectorPut(ctx, []VectorEntity{e}, true)
}

// UpdateBufferedBatch is VECTOR_UPDATE_BUFFERED with the batch flag.
func (w *WireClient) UpdateBufferedBatch(ctx context.Context, entities []VectorEntity) (uint64, error) {
	return w.vectorPut(ctx, entities, true)
}

// RemoveBuffered is VECTOR_REMOVE_BUFFERED of one pk (collection default); not re-sent after
// a lost answer.
func (w *WireClient) RemoveBuffered(ctx context.Context, pk string) (uint64, error) {
	return w.RemoveBufferedBatch(ctx, []string{pk})
}

// RemoveBufferedBatch is VECTOR_REMOVE_BUFFERED with the batch flag.
func (w *WireClient) RemoveBufferedBatch(ctx context.Context, pks []string) (uint64, error) {
	f, err := EncodeVectorRemove(pks)
	if err != nil {
		return 0, err
	}
	return u64(w.Call(ctx, f, false))
}

// GetVectorBufferStats is VECTOR_BUFFER_STATS.
func (w *WireClient) GetVectorBufferStats(ctx context.Context) (*VectorBufferStats, error) {
	var out VectorBufferStats
	return &out, w.callJSON(ctx, OpVectorBufferStats, &out)
}

// FlushVectorBuffer is VECTOR_BUFFER_FLUSH (admin).
func (w *WireClient) FlushVectorBuffer(ctx context.Context) error {
	return w.callJSON(ctx, OpVectorBufferFlush, nil)
}

// Search is VECTOR_SEARCH: the search of POST /vectors/search (buffered writes included)
// without JSON for the vector and the hits. Option: WithCollection (default "default").
// Scores and distances come as f32.
func (w *WireClient) Search(ctx context.Context, s Search, opts ...CallOption) ([]SearchResult, error) {
	o, err := optsOf(opts)
	if err != nil {
		return nil, err
	}
	f, err := EncodeVectorSearch(o.collection, s)
	if err != nil {
		return nil, err
	}
	b, err := w.Call(ctx, f, true)
	if err != nil {
		return nil, err
	}
	return DecodeSearchHits(b)
}
