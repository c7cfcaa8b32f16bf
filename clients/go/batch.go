package sluice

import (
	"context"
	"fmt"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// BatchWriterOptions configures a BatchWriter; zero values take the defaults.
type BatchWriterOptions struct {
	MaxPoints     int           // send when a batch holds this many points (5000)
	FlushInterval time.Duration // ...or when its oldest point is this old (1 s)
	QueueSize     int           // points queued and not yet taken by the sender; Put blocks when full (20000, at least MaxPoints)
	Transport     string        // "http" (POST /ts/put/batch, default) or "wire" (pipelined TS_PUT_BUFFERED)
	Ack           string        // "buffer" (default), "wal" or "fsync" (over the wire: TS_PUT)
	// PipelineDepth is how many ready batches the wire transport sends in one pipelined
	// window (4).
	PipelineDepth int
	// OnError is called (on the writer's goroutine) with each batch that failed for good.
	// Without it, Close returns a *BatchWriteError listing them.
	OnError func(WriteFailure)
	// Retry for refused batches; default 30 retries, at most 120 s of waiting.
	Retry *RetryPolicy
	// ServerTimestamps leaves points without a timestamp for the server to stamp; such
	// batches are then not re-sent after a lost answer. Default: stamped at Put with the
	// client's clock, so that every batch is safe to re-send.
	ServerTimestamps bool
}

// WriteFailure is a batch refused for good (a bad point, retries exhausted).
type WriteFailure struct {
	Err    error
	Points []DataPoint
}

// BatchWriteError is Close's error when batches failed and no OnError was set.
type BatchWriteError struct{ Failures []WriteFailure }

func (e *BatchWriteError) Error() string {
	n := 0
	for _, f := range e.Failures {
		n += len(f.Points)
	}
	return fmt.Sprintf("sluice: %d batches (%d points) failed; first: %v", len(e.Failures), n, e.Failures[0].Err)
}

func (e *BatchWriteError) Unwrap() error { return e.Failures[0].Err }

// bwEntry is a batch to send, or a Flush marker (answered once everything before it was sent).
type bwEntry struct {
	points []DataPoint
	flush  chan struct{}
}

// BatchWriter batches points: Put appends a point to the batch being filled (blocking while
// the bounded queue is full), a goroutine sends batches in order, one window in flight,
// refusals are retried and nothing is re-sent unless re-sending changes nothing. Close
// flushes.
type BatchWriter struct {
	ts   *TimeSeriesClient
	opts BatchWriterOptions
	wire *WireClient
	q    url.Values

	mu       sync.Mutex
	cur      []DataPoint   // the batch being filled
	curStart time.Time     // when cur got its first point
	queue    []bwEntry     // cut batches and flush markers, in order
	queued   int           // points in cur and queue
	space    chan struct{} // closed (and replaced) when points leave the queue or on Close
	free     [][]DataPoint // slices of sent batches, reused
	closed   bool
	wake     chan struct{} // (capacity 1) there is something for the sender to look at
	done     chan struct{}

	frames   [][]byte // the sender's frame buffers, reused (wire)
	written  atomic.Int64
	batches  atomic.Int64
	failMu   sync.Mutex
	failures []WriteFailure
}

// NewBatchWriter starts a writer. Close it to send what is queued.
func (t *TimeSeriesClient) NewBatchWriter(opts BatchWriterOptions) (*BatchWriter, error) {
	if opts.MaxPoints <= 0 {
		opts.MaxPoints = 5000
	}
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = time.Second
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = 20000
	}
	if opts.QueueSize < opts.MaxPoints {
		opts.QueueSize = opts.MaxPoints
	}
	if opts.PipelineDepth <= 0 {
		opts.PipelineDepth = 4
	}
	if opts.Ack == "" {
		opts.Ack = "buffer"
	}
	if opts.Retry == nil {
		opts.Retry = &RetryPolicy{MaxRetries: 30, InitialBackoff: 50 * time.Millisecond, MaxBackoff: 10 * time.Second, MaxElapsed: 120 * time.Second}
	}
	o, err := optsOf([]CallOption{WithAck(opts.Ack)})
	if err != nil {
		return nil, err
	}
	w := &BatchWriter{ts: t, opts: opts, q: o.query(), space: make(chan struct{}),
		wake: make(chan struct{}, 1), done: make(chan struct{})}
	switch opts.Transport {
	case "", "http":
	case "wire":
		if t.c.database != "" && t.c.database != "default" {
			return nil, fmt.Errorf("sluice: the wire protocol writes to database default only")
		}
		w.wire = NewWireClient(t.c.wireAddr, t.c.token, *opts.Retry)
	default:
		return nil, fmt.Errorf("sluice: transport must be http or wire, not %q", opts.Transport)
	}
	go w.run()
	return w, nil
}

// Put queues a point; it blocks while the queue is full (until ctx is done). A point without
// a timestamp is stamped now unless ServerTimestamps.
func (w *BatchWriter) Put(ctx context.Context, p DataPoint) error {
	if err := checkPoint(p); err != nil {
		return err
	}
	if p.TimestampMs == 0 && !w.opts.ServerTimestamps {
		p.TimestampMs = time.Now().UnixMilli()
	}
	w.mu.Lock()
	for w.queued >= w.opts.QueueSize && !w.closed {
		space := w.space
		w.mu.Unlock()
		select {
		case <-space:
		case <-ctx.Done():
			return ctx.Err()
		}
		w.mu.Lock()
	}
	if w.closed {
		w.mu.Unlock()
		return ErrClosed
	}
	if len(w.cur) == 0 {
		if w.cur == nil {
			w.cur = w.newBatchLocked()
		}
		w.curStart = time.Now()
		w.signal() // the sender times the batch's FlushInterval
	}
	w.cur = append(w.cur, p)
	w.queued++
	if len(w.cur) >= w.opts.MaxPoints {
		w.cutLocked()
		w.signal()
	}
	w.mu.Unlock()
	return nil
}

func (w *BatchWriter) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *BatchWriter) newBatchLocked() []DataPoint {
	if n := len(w.free); n > 0 {
		b := w.free[n-1]
		w.free = w.free[:n-1]
		return b
	}
	c := w.opts.MaxPoints
	if c > 1<<16 {
		c = 1 << 16
	}
	return make([]DataPoint, 0, c)
}

// cutLocked queues the batch being filled.
func (w *BatchWriter) cutLocked() {
	if len(w.cur) > 0 {
		w.queue = append(w.queue, bwEntry{points: w.cur})
		w.cur = nil
	}
}

// Flush waits until every point queued before it was sent (written or failed).
func (w *BatchWriter) Flush(ctx context.Context) error {
	done := make(chan struct{})
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return ErrClosed
	}
	w.cutLocked()
	w.queue = append(w.queue, bwEntry{flush: done})
	w.signal()
	w.mu.Unlock()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close sends everything queued, waits for it and stops the writer. It returns a
// *BatchWriteError when batches failed and OnError is nil. Safe to call twice; a Put waiting
// for room returns ErrClosed.
func (w *BatchWriter) Close() error {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.space)
		w.space = make(chan struct{})
		w.signal()
	}
	w.mu.Unlock()
	<-w.done
	if w.wire != nil {
		_ = w.wire.Close()
	}
	w.failMu.Lock()
	defer w.failMu.Unlock()
	if len(w.failures) > 0 && w.opts.OnError == nil {
		return &BatchWriteError{Failures: append([]WriteFailure(nil), w.failures...)}
	}
	return nil
}

// PointsWritten is the number of points the server acknowledged.
func (w *BatchWriter) PointsWritten() int64 { return w.written.Load() }

// Batches is the number of batches acknowledged.
func (w *BatchWriter) Batches() int64 { return w.batches.Load() }

// Failures lists the batches that failed for good.
func (w *BatchWriter) Failures() []WriteFailure {
	w.failMu.Lock()
	defer w.failMu.Unlock()
	return append([]WriteFailure(nil), w.failures...)
}

// run is the sender: it takes up to PipelineDepth batches from the front of the queue, sends
// them, answers the flush markers behind them, and cuts the batch being filled once its
// oldest point is FlushInterval old (or on Close).
func (w *BatchWriter) run() {
	defer close(w.done)
	var timer *time.Timer
	for {
		w.mu.Lock()
		if len(w.cur) > 0 && (w.closed || time.Since(w.curStart) >= w.opts.FlushInterval) {
			w.cutLocked()
		}
		var work [][]DataPoint
		var flushed []chan struct{}
		taken := 0
		for len(w.queue) > 0 {
			e := w.queue[0]
			if e.flush != nil {
				if len(work) > 0 {
					break // answered once the work is sent
				}
				flushed = append(flushed, e.flush)
			} else {
				if len(work) == w.opts.PipelineDepth {
					break
				}
				work = append(work, e.points)
				taken += len(e.points)
			}
			w.queue[0] = bwEntry{}
			w.queue = w.queue[1:]
		}
		if taken > 0 {
			w.queued -= taken
			close(w.space)
			w.space = make(chan struct{})
		}
		exit := w.closed && len(w.queue) == 0 && len(w.cur) == 0 && len(work) == 0
		wait := time.Duration(-1)
		if len(w.cur) > 0 {
			wait = time.Until(w.curStart.Add(w.opts.FlushInterval))
		}
		w.mu.Unlock()
		for _, f := range flushed {
			close(f)
		}
		if len(work) > 0 {
			w.send(work)
			continue
		}
		if exit {
			return
		}
		if len(flushed) > 0 {
			continue
		}
		// Idle until a Put, Flush or Close, or until the batch being filled is due.
		var due <-chan time.Time
		if wait >= 0 {
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			due = timer.C
		}
		select {
		case <-w.wake:
		case <-due:
		}
		if timer != nil && !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

func (w *BatchWriter) fail(err error, points []DataPoint) {
	f := WriteFailure{Err: err, Points: points}
	w.failMu.Lock()
	w.failures = append(w.failures, f)
	w.failMu.Unlock()
	if w.opts.OnError != nil {
		w.opts.OnError(f)
	}
}

// ok counts a written batch and keeps its slice for reuse.
func (w *BatchWriter) ok(points []DataPoint) {
	w.written.Add(int64(len(points)))
	w.batches.Add(1)
	for i := range points {
		points[i] = DataPoint{} // drop references to the points' strings and tags
	}
	w.mu.Lock()
	if len(w.free) < w.opts.PipelineDepth+w.opts.QueueSize/w.opts.MaxPoints+1 {
		w.free = append(w.free, points[:0])
	}
	w.mu.Unlock()
}

func (w *BatchWriter) send(batches [][]DataPoint) {
	ctx := context.Background()
	if w.wire == nil {
		for _, b := range batches {
			r := request{method: "POST", path: "/ts/put/batch", scoped: true, query: w.q, retry: w.opts.Retry,
				body: appendPointsJSON(nil, b), contentType: "application/json", idempotent: allStamped(b)}
			if err := w.ts.c.call(ctx, r, nil); err != nil {
				w.fail(err, b)
			} else {
				w.ok(b)
			}
		}
		return
	}
	for len(w.frames) < len(batches) {
		w.frames = append(w.frames, nil)
	}
	frames := w.frames[:len(batches)]
	idem := true
	for i, b := range batches {
		frames[i] = AppendTSPut(frames[i][:0], b, w.opts.Ack == "buffer")
		idem = idem && allStamped(b)
	}
	res, err := w.wire.Pipeline(ctx, frames, idem)
	for i, b := range batches {
		switch {
		case i >= len(res) || (res[i].Payload == nil && res[i].Err == nil):
			w.fail(err, b)
		case res[i].Err != nil:
			w.fail(res[i].Err, b)
		default:
			w.ok(b)
		}
	}
}
