package sluice

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"sort"
	"sync"
	"time"
)

// Wire opcodes (docs/wire-protocol.md).
const (
	OpAuth                 byte = 0x01
	OpTSPutBuffered        byte = 0x70
	OpTSBufferStats        byte = 0x71
	OpTSBufferFlush        byte = 0x72
	OpTSPut                byte = 0x73
	OpVectorAddBuffered    byte = 0x80
	OpVectorUpdateBuffered byte = 0x81
	OpVectorRemoveBuffered byte = 0x82
	OpVectorBufferStats    byte = 0x83
	OpVectorBufferFlush    byte = 0x84
	OpReplicationStats     byte = 0x91
	flagBatch              byte = 0x01
	timestampNow                = math.MinInt64
)

// EncodeFrame makes a request frame: opcode, flags, length, payload.
func EncodeFrame(op, flags byte, payload []byte) []byte {
	f := make([]byte, 6, 6+len(payload))
	f[0], f[1] = op, flags
	binary.LittleEndian.PutUint32(f[2:], uint32(len(payload)))
	return append(f, payload...)
}

func appendStr16(b []byte, s string) []byte {
	b = binary.LittleEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// tagsJSON encodes tags as the wire's JSON object (keys sorted; nil when empty).
func tagsJSON(tags map[string]string) []byte {
	if len(tags) == 0 {
		return nil
	}
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	b := []byte{'{'}
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		kj, _ := json.Marshal(k)
		vj, _ := json.Marshal(tags[k])
		b = append(append(append(b, kj...), ':'), vj...)
	}
	return append(b, '}')
}

func appendPoint(b []byte, p DataPoint) []byte {
	b = appendStr16(b, p.Metric)
	b = appendStr16(b, p.Entity)
	ts := p.TimestampMs
	if ts == 0 {
		ts = timestampNow
	}
	b = binary.LittleEndian.AppendUint64(b, uint64(ts))
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(p.Value))
	t := tagsJSON(p.Tags)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(t)))
	return append(b, t...)
}

// EncodeTSPut encodes points as one TS_PUT_BUFFERED frame (buffered) or TS_PUT (direct), with
// the batch flag when there is more than one point. A point with TimestampMs 0 is sent as
// i64::MIN: the server's receive time.
func EncodeTSPut(points []DataPoint, buffered bool) []byte {
	op := OpTSPut
	if buffered {
		op = OpTSPutBuffered
	}
	var payload []byte
	var flags byte
	if len(points) != 1 {
		flags = flagBatch
		payload = binary.LittleEndian.AppendUint32(make([]byte, 0, 4+len(points)*48), uint32(len(points)))
	}
	for _, p := range points {
		payload = appendPoint(payload, p)
	}
	return EncodeFrame(op, flags, payload)
}

// EncodeAuth encodes an AUTH frame.
func EncodeAuth(token string) []byte { return EncodeFrame(OpAuth, 0, appendStr16(nil, token)) }

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

// roundtripLocked writes frames and reads their answers in order. A failure closes the
// connection (answers are never matched to the wrong request).
func (w *WireClient) roundtripLocked(ctx context.Context, frames [][]byte) ([]WireResult, error) {
	dl := time.Now().Add(w.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	_ = w.conn.SetDeadline(dl)
	if done := ctx.Done(); done != nil {
		conn, stopc := w.conn, make(chan struct{})
		defer close(stopc)
		go func() {
			select {
			case <-done:
				_ = conn.SetDeadline(time.Now())
			case <-stopc:
			}
		}()
	}
	fail := func(err error, sent bool) ([]WireResult, error) {
		_ = w.dropLocked()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &TransportError{MaybeApplied: sent, Err: err}
	}
	for _, f := range frames {
		if _, err := w.w.Write(f); err != nil {
			return fail(err, true)
		}
	}
	if err := w.w.Flush(); err != nil {
		return fail(err, true)
	}
	out := make([]WireResult, len(frames))
	var h [6]byte
	for i := range frames {
		if _, err := io.ReadFull(w.r, h[:]); err != nil {
			return fail(err, true)
		}
		n := binary.LittleEndian.Uint32(h[2:])
		payload := make([]byte, n)
		if _, err := io.ReadFull(w.r, payload); err != nil {
			return fail(err, true)
		}
		if h[0] == 0 {
			out[i].Payload = payload
		} else {
			out[i].Err = newWireError(h[0], payload)
		}
	}
	return out, nil
}

func refusedWire(err error) (*Error, bool) {
	var e *Error
	if errors.As(err, &e) && (e.WireStatus == 0x04 || e.WireStatus == 0x07) {
		return e, true
	}
	return nil, false
}

// Pipeline sends frames in windows (256 frames / 256 KiB) without waiting for each answer and
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
		for end < len(frames) && end-start < 256 && (end == start || size+len(frames[end]) <= 256<<10) {
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

// GetBufferStats is TS_BUFFER_STATS.
func (w *WireClient) GetBufferStats(ctx context.Context) (*BufferStats, error) {
	b, err := w.Call(ctx, EncodeFrame(OpTSBufferStats, 0, nil), true)
	if err != nil {
		return nil, err
	}
	var out BufferStats
	return &out, json.Unmarshal(b, &out)
}

// FlushBuffer is TS_BUFFER_FLUSH (admin).
func (w *WireClient) FlushBuffer(ctx context.Context) error {
	_, err := w.Call(ctx, EncodeFrame(OpTSBufferFlush, 0, nil), true)
	return err
}

// GetReplicationStats is REPLICATION_STATS.
func (w *WireClient) GetReplicationStats(ctx context.Context) (*ReplicationStats, error) {
	b, err := w.Call(ctx, EncodeFrame(OpReplicationStats, 0, nil), true)
	if err != nil {
		return nil, err
	}
	var out ReplicationStats
	return &out, json.Unmarshal(b, &out)
}
