package sluice

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// feedDB makes a database of its own for a changefeed test (its feed holds only the test's
// records) and drops it at the end.
func feedDB(t *testing.T, c *Client) (string, *TimeSeriesClient) {
	t.Helper()
	ctx := ctxT(t)
	name := uniq("feed")
	if _, err := c.Databases().Create(ctx, CreateDatabase{Name: name}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Databases().Delete(context.Background(), name) })
	return name, c.Database(name).TimeSeries()
}

// putValues writes one record per value (metric m, entity e, one millisecond apart).
func putValues(t *testing.T, ts *TimeSeriesClient, m string, values ...float64) {
	t.Helper()
	for _, v := range values {
		if _, err := ts.Put(ctxT(t), DataPoint{Metric: m, Entity: "e", Value: v, TimestampMs: 1700000000000 + int64(v)}); err != nil {
			t.Fatal(err)
		}
	}
}

// nextPoints reads n events, checks each is a points event with a greater LSN than the one
// before, and returns their values.
func nextPoints(t *testing.T, it *ChangeIterator, after uint64, n int) (values []float64, last uint64) {
	t.Helper()
	last = after
	for len(values) < n {
		if !it.Next() {
			t.Fatalf("the feed ended after %v: %v", values, it.Err())
		}
		ev := it.Event()
		if ev.LSN <= last {
			t.Fatalf("LSN %d after %d: a duplicate or out of order", ev.LSN, last)
		}
		last = ev.LSN
		pc, err := ev.Points()
		if err != nil || pc.LSN != ev.LSN || len(pc.Points) != 1 {
			t.Fatalf("event %+v: %+v %v", ev, pc, err)
		}
		values = append(values, pc.Points[0].Value)
	}
	return values, last
}

func sameValues(t *testing.T, got []float64, want ...float64) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("values %v, want %v (a gap or a duplicate)", got, want)
	}
}

func TestChangesReadStopResume(t *testing.T) {
	ctx := ctxT(t)
	c := authServer.client(t)
	db, ts := feedDB(t, c)
	m := uniq("m")
	putValues(t, ts, m, 1, 2, 3)
	col := uniq("col")
	if _, err := c.Database(db).Collections().Create(ctx, CreateCollection{Name: col, Dimension: 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Database(db).Vectors().Add(ctx, VectorEntity{PK: "p", Vector: []float32{1, 0}, Metadata: map[string]any{"k": "v"}}, WithCollection(col)); err != nil {
		t.Fatal(err)
	}
	putValues(t, ts, m, 4)

	// From the start: three points, the collection, the vector, a point.
	it, err := c.Changes(ctx, ChangesOptions{Database: db, FromStart: true})
	if err != nil {
		t.Fatal(err)
	}
	got, last := nextPoints(t, it, 0, 3)
	sameValues(t, got, 1, 2, 3)
	if !it.Next() {
		t.Fatal(it.Err())
	}
	cc, err := it.Event().Collection()
	if err != nil || cc.Change.Create == nil || cc.Change.Create.Name != col || cc.Change.Create.Dimension != 2 || cc.LSN <= last {
		t.Fatalf("collection event: %+v %v", cc, err)
	}
	if _, err := it.Event().Points(); err == nil {
		t.Fatal("a collection event read as points")
	}
	if !it.Next() {
		t.Fatal(it.Err())
	}
	vc, err := it.Event().Vectors()
	if err != nil || vc.Collection != col || len(vc.Ops) != 1 || vc.Ops[0].Op != "add" || vc.Ops[0].PK != "p" || len(vc.Ops[0].Vector) != 2 || vc.Ops[0].Metadata["k"] != "v" {
		t.Fatalf("vectors event: %+v %v", vc, err)
	}
	got, last = nextPoints(t, it, it.Event().LSN, 1)
	sameValues(t, got, 4)
	if l, ok := it.LastLSN(); !ok || l != last {
		t.Fatalf("LastLSN %d %v, want %d", l, ok, last)
	}
	// Stop, write more, resume from the last LSN: exactly the new records.
	if err := it.Close(); err != nil || it.Next() || it.Err() != nil {
		t.Fatalf("after Close: %v", it.Err())
	}
	putValues(t, ts, m, 5, 6, 7)
	it, err = c.Changes(ctx, ChangesOptions{Database: db, FromLSN: last})
	if err != nil {
		t.Fatal(err)
	}
	got, last2 := nextPoints(t, it, last, 3)
	sameValues(t, got, 5, 6, 7)
	it.Close()

	// The callback form, ended by the idle timeout (Err nil).
	var seen []float64
	err = c.ChangesFunc(ctx, ChangesOptions{Database: db, FromLSN: last, IdleTimeout: 700 * time.Millisecond}, func(ev ChangeEvent) error {
		pc, err := ev.Points()
		if err != nil {
			return err
		}
		seen = append(seen, pc.Points[0].Value)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sameValues(t, seen, 5, 6, 7)
	// The callback's error stops the feed and is returned.
	stop := errors.New("stop")
	if err := c.ChangesFunc(ctx, ChangesOptions{Database: db, FromStart: true}, func(ChangeEvent) error { return stop }); err != stop {
		t.Fatalf("callback error: %v", err)
	}

	// Without a position the feed starts at the next record written.
	it, err = c.Database(db).Changes(ctx, ChangesOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	putValues(t, ts, m, 8)
	got, _ = nextPoints(t, it, last2, 1)
	sameValues(t, got, 8)
}

func TestChangesErrors(t *testing.T) {
	ctx := ctxT(t)
	c := authServer.client(t)
	_, err := c.Changes(ctx, ChangesOptions{Database: "no-such-db"})
	var e *Error
	if !errors.Is(err, ErrNotFound) || !errors.As(err, &e) || e.Code != "database_not_found" || e.Attempts != 1 {
		t.Fatalf("unknown database: %#v", err)
	}
	anon, _ := NewClient(authServer.URL())
	if _, err := anon.Changes(ctx, ChangesOptions{}); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("no token: %v", err)
	}
	// Cancelling the context ends the feed with the context's error.
	cctx, cancel := context.WithCancel(ctx)
	it, err := c.Changes(cctx, ChangesOptions{})
	if err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(200*time.Millisecond, cancel)
	if it.Next() || !errors.Is(it.Err(), context.Canceled) {
		t.Fatalf("after cancel: %v", it.Err())
	}
	// Close from another goroutine unblocks Next.
	it, err = c.Changes(ctx, ChangesOptions{})
	if err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(200*time.Millisecond, func() { it.Close() })
	if it.Next() || it.Err() != nil {
		t.Fatalf("after Close: %v", it.Err())
	}
}

// A server restarted in the middle of a feed: the iterator reconnects from the last LSN it
// delivered and goes on with nothing missed or repeated.
func TestChangesServerRestart(t *testing.T) {
	s, err := startServer("feed-restart", "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	c := s.client(t)
	ts := c.TimeSeries()
	m := uniq("m")
	it, err := c.Changes(ctx, ChangesOptions{FromStart: true, MaxReconnects: 20})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	type result struct {
		values []float64
		last   uint64
	}
	read := func(after uint64, n int) chan result {
		ch := make(chan result, 1)
		go func() {
			var r result
			r.last = after
			for len(r.values) < n && it.Next() {
				ev := it.Event()
				if ev.LSN <= r.last {
					t.Errorf("LSN %d after %d", ev.LSN, r.last)
				}
				r.last = ev.LSN
				if pc, err := ev.Points(); err == nil && len(pc.Points) == 1 && pc.Points[0].Metric == m {
					r.values = append(r.values, pc.Points[0].Value)
				}
			}
			ch <- r
		}()
		return ch
	}
	ch := read(0, 3)
	putValues(t, ts, m, 1, 2, 3)
	r := <-ch
	sameValues(t, r.values, 1, 2, 3)

	// Next is waiting on the stream while the server stops and starts again.
	ch = read(r.last, 3)
	time.Sleep(100 * time.Millisecond)
	restartAt := time.Now()
	if err := s.restart(); err != nil {
		t.Fatal(err)
	}
	t.Logf("server restarted in %v", time.Since(restartAt))
	putValues(t, ts, m, 4, 5, 6)
	select {
	case r2 := <-ch:
		if it.Err() != nil {
			t.Fatalf("the feed ended: %v", it.Err())
		}
		sameValues(t, r2.values, 4, 5, 6)
	case <-ctx.Done():
		t.Fatal("no events after the restart")
	}
}

// ---- against a scripted server: drops, refusals, error events, timeouts ----

// sseServer answers the n-th request (from 0) with handler, one request at a time (the
// handlers' bookkeeping needs no lock; a handler that blocks must not be followed by another).
func sseServer(t *testing.T, handler func(n int, w http.ResponseWriter, r *http.Request)) *Client {
	t.Helper()
	var mu sync.Mutex
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		handler(calls-1, w, r)
	}))
	t.Cleanup(srv.Close)
	c, err := NewClient(srv.URL, WithRetryPolicy(RetryPolicy{MaxRetries: 3, InitialBackoff: 10 * time.Millisecond, MaxBackoff: 5 * time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func stream(w http.ResponseWriter, chunks ...string) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(200)
	for _, c := range chunks {
		_, _ = w.Write([]byte(c))
		w.(http.Flusher).Flush()
	}
}

func pointsEvent(lsn int) string {
	return fmt.Sprintf("id: %d\nevent: points\ndata: {\"lsn\":%d,\"points\":[]}\n\n", lsn, lsn)
}

func TestChangesReconnectsFromLastLSN(t *testing.T) {
	var froms []string
	c := sseServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		froms = append(froms, r.URL.Query().Get("from_lsn")+"|"+r.Header.Get("Accept"))
		switch n {
		case 0: // two events, the second cut in the middle, then the connection ends
			stream(w, pointsEvent(6), "id: 7\nevent: points\ndata: {\"lsn\"")
		case 1: // CRLF lines, a comment, data on two lines, an event without id, then an error
			stream(w, ": keepalive\r\n\r\n", "id:7\r\nevent:points\r\ndata: {\"lsn\":7,\r\ndata: \"points\":[]}\r\n\r\n",
				"event: vectors\ndata: {\"lsn\":8}\n\n",
				"event: error\ndata: {\"code\":\"lsn_gone\",\"requested_lsn\":8,\"oldest_lsn\":20}\n\n")
		default:
			t.Errorf("request %d after the error event", n)
		}
	})
	it, err := c.Changes(ctxT(t), ChangesOptions{FromLSN: 5})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var got []string
	for it.Next() {
		got = append(got, fmt.Sprintf("%d:%s", it.Event().LSN, it.Event().Event))
	}
	if strings.Join(got, " ") != "6:points 7:points 8:vectors" {
		t.Fatalf("events %v", got)
	}
	if strings.Join(froms, " ") != "5|text/event-stream 6|text/event-stream" {
		t.Fatalf("requests %v", froms)
	}
	var e *Error
	if !errors.As(it.Err(), &e) || e.Code != "lsn_gone" || e.Status != 410 || !errors.Is(it.Err(), ErrGone) {
		t.Fatalf("error event: %#v", it.Err())
	}
	t.Logf("error event: %v", it.Err())
}

func TestChangesHonoursRetryAfter(t *testing.T) {
	var at []time.Time
	c := sseServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		at = append(at, time.Now())
		switch n {
		case 0:
			stream(w, pointsEvent(1))
		case 1:
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(503)
			_, _ = w.Write([]byte(`{"error":"busy","code":"overloaded","error_id":"x"}`))
		default:
			if r.URL.Query().Get("from_lsn") != "1" {
				t.Errorf("from_lsn %q", r.URL.Query().Get("from_lsn"))
			}
			stream(w, pointsEvent(2))
			<-r.Context().Done()
		}
	})
	it, err := c.Changes(ctxT(t), ChangesOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	for want := uint64(1); want <= 2; want++ {
		if !it.Next() || it.Event().LSN != want {
			t.Fatalf("event %d: %v", want, it.Err())
		}
	}
	if len(at) != 3 || at[2].Sub(at[1]) < 900*time.Millisecond {
		t.Fatalf("Retry-After not honoured: %v", at)
	}
}

func TestChangesBoundedReconnects(t *testing.T) {
	var n503 int32
	c := sseServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("from_lsn") == "404" {
			w.WriteHeader(404)
			_, _ = w.Write([]byte(`{"error":"no","code":"database_not_found","error_id":"y"}`))
			return
		}
		atomic.AddInt32(&n503, 1)
		w.WriteHeader(503)
		_, _ = w.Write([]byte(`{"error":"busy","code":"unavailable","error_id":"x","retry_after_sec":0}`))
	})
	_, err := c.Changes(ctxT(t), ChangesOptions{MaxReconnects: 2})
	if !errors.Is(err, ErrUnavailable) || atomic.LoadInt32(&n503) != 3 {
		t.Fatalf("%v after %d attempts", err, atomic.LoadInt32(&n503))
	}
	// what reconnecting cannot fix is returned at once
	if _, err := c.Changes(ctxT(t), ChangesOptions{FromLSN: 404}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("404: %v", err)
	}

	// a stream that ends: reconnected up to MaxReconnects times in a row, then its last error
	var conns int32
	c = sseServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		atomic.AddInt32(&conns, 1)
		if n == 0 {
			stream(w, pointsEvent(1))
			return
		}
		stream(w) // answered, then ended at once
	})
	it, err := c.Changes(ctxT(t), ChangesOptions{MaxReconnects: 3})
	if err != nil {
		t.Fatal(err)
	}
	if !it.Next() || it.Next() {
		t.Fatalf("events: %v", it.Err())
	}
	var te *TransportError
	if !errors.As(it.Err(), &te) || atomic.LoadInt32(&conns) != 4 {
		t.Fatalf("%#v after %d connections", it.Err(), atomic.LoadInt32(&conns))
	}
	// MaxReconnects < 0: the end of the stream ends the feed, without an error
	c = sseServer(t, func(n int, w http.ResponseWriter, r *http.Request) { stream(w, pointsEvent(1)) })
	it, err = c.Changes(ctxT(t), ChangesOptions{MaxReconnects: -1})
	if err != nil {
		t.Fatal(err)
	}
	if !it.Next() || it.Next() || it.Err() != nil {
		t.Fatalf("no reconnect: %v", it.Err())
	}
}

func TestChangesIdleTimeout(t *testing.T) {
	c := sseServer(t, func(n int, w http.ResponseWriter, r *http.Request) {
		stream(w, pointsEvent(1))
		for {
			select {
			case <-r.Context().Done():
				return
			case <-time.After(50 * time.Millisecond):
				_, _ = w.Write([]byte(": keepalive\n\n")) // comments are not events
				w.(http.Flusher).Flush()
			}
		}
	})
	it, err := c.Changes(ctxT(t), ChangesOptions{IdleTimeout: 400 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	start := time.Now()
	if !it.Next() {
		t.Fatal(it.Err())
	}
	if it.Next() || it.Err() != nil {
		t.Fatalf("after the idle timeout: %v", it.Err())
	}
	if el := time.Since(start); el < 350*time.Millisecond || el > 5*time.Second {
		t.Fatalf("idle timeout after %v", el)
	}
}
