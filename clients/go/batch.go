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
	QueueSize     int           // bounded queue of points; Put blocks when full (20000)
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

type bwItem struct {
	p     DataPoint
	flush chan struct{}
}

// BatchWriter batches points in a goroutine: Put queues a point (blocking while the bounded
// queue is full), batches go out in order, one window in flight, refusals are retried and
// nothing is re-sent unless re-sending changes nothing. Close flushes.
type BatchWriter struct {
	ts   *TimeSeriesClient
	opts BatchWriterOptions
	wire *WireClient
	q    url.Values

	ch       chan bwItem
	mu       sync.RWMutex
	closed   bool
	done     chan struct{}
	written  atomic.Int64
	batches  atomic.Int64
	failMu   sync.Mutex
	failures []WriteFailure
	closeErr error
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
	w := &BatchWriter{ts: t, opts: opts, q: o.query(), ch: make(chan bwItem, opts.QueueSize), done: make(chan struct{})}
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
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		return ErrClosed
	}
	select {
	case w.ch <- bwItem{p: p}:
		return nil
	default:
	}
	select {
	case w.ch <- bwItem{p: p}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Flush waits until every point queued before it was sent (written or failed).
func (w *BatchWriter) Flush(ctx context.Context) error {
	done := make(chan struct{})
	w.mu.RLock()
	if w.closed {
		w.mu.RUnlock()
		return ErrClosed
	}
	select {
	case w.ch <- bwItem{flush: done}:
	case <-ctx.Done():
		w.mu.RUnlock()
		return ctx.Err()
	}
	w.mu.RUnlock()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close sends everything queued, waits for it and stops the writer. It returns a
// *BatchWriteError when batches failed and OnError is nil. Safe to call twice.
func (w *BatchWriter) Close() error {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.ch)
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

func (w *BatchWriter) run() {
	defer close(w.done)
	var batch []DataPoint
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var ready [][]DataPoint
	flushReady := func() {
		if len(batch) > 0 {
			ready = append(ready, batch)
			batch = nil
		}
		if len(ready) > 0 {
			w.send(ready)
			ready = nil
		}
		timer.Stop()
	}
	for {
		select {
		case it, ok := <-w.ch:
			if !ok {
				flushReady()
				return
			}
			if it.flush != nil {
				flushReady()
				close(it.flush)
				continue
			}
			if len(batch) == 0 {
				timer.Reset(w.opts.FlushInterval)
			}
			batch = append(batch, it.p)
			if len(batch) < w.opts.MaxPoints {
				continue
			}
			ready = append(ready, batch)
			batch = nil
			// Over the wire, take what is already queued too (up to PipelineDepth batches)
			// and pipeline it.
		drain:
			for w.wire != nil && len(ready) < w.opts.PipelineDepth {
				select {
				case it2, ok := <-w.ch:
					if !ok {
						flushReady()
						return
					}
					if it2.flush != nil {
						flushReady()
						close(it2.flush)
						break drain
					}
					batch = append(batch, it2.p)
					if len(batch) >= w.opts.MaxPoints {
						ready = append(ready, batch)
						batch = nil
					}
				default:
					break drain
				}
			}
			flushReady()
		case <-timer.C:
			flushReady()
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

func (w *BatchWriter) ok(points []DataPoint) {
	w.written.Add(int64(len(points)))
	w.batches.Add(1)
}

func (w *BatchWriter) send(batches [][]DataPoint) {
	ctx := context.Background()
	if w.wire == nil {
		for _, b := range batches {
			idem := allStamped(b)
			r, err := jsonReq("POST", "/ts/put/batch", true, map[string]any{"points": b}, idem)
			if err == nil {
				r.query, r.retry = w.q, w.opts.Retry
				err = w.ts.c.call(ctx, r, nil)
			}
			if err != nil {
				w.fail(err, b)
			} else {
				w.ok(b)
			}
		}
		return
	}
	frames := make([][]byte, len(batches))
	idem := true
	for i, b := range batches {
		frames[i] = EncodeTSPut(b, w.opts.Ack == "buffer")
		idem = idem && allStamped(b)
	}
	res, err := w.wire.Pipeline(ctx, frames, idem)
	for i, b := range batches {
		switch {
		case err != nil && res[i].Payload == nil && res[i].Err == nil:
			w.fail(err, b)
		case res[i].Err != nil:
			w.fail(res[i].Err, b)
		default:
			w.ok(b)
		}
	}
}
