package sluice

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

func TestErrorMapping(t *testing.T) {
	ctx := ctxT(t)
	c := authServer.client(t)
	ts := c.TimeSeries()
	var e *Error
	// 422: to_ms before from_ms
	_, err := ts.Query(ctx, Query{Metric: "m", FromMs: 10, ToMs: 5})
	if !errors.As(err, &e) || e.Status != 422 || e.Code != "invalid_value" || e.ErrorID == "" {
		t.Fatalf("422: %#v", err)
	}
	// 400: schema violation, field named
	_, err = ts.Query(ctx, Query{Metric: "m", Aggregation: "median"})
	if !errors.As(err, &e) || e.Status != 400 || e.Field == "" || !errors.Is(err, ErrBadRequest) {
		t.Fatalf("400: %#v", err)
	}
	t.Logf("400: %v", err)
	// 401: no token, and a wrong token
	for _, opt := range []Option{WithToken(""), WithToken("wrong-token-0123456789")} {
		anon, _ := NewClient(authServer.URL(), opt)
		_, err = anon.TimeSeries().GetBufferStats(ctx)
		if !errors.Is(err, ErrUnauthorized) || !errors.As(err, &e) || e.Code == "" {
			t.Fatalf("401: %#v", err)
		}
	}
	// 404: unknown collection
	_, err = c.Collections().Get(ctx, "no_such_collection")
	if !errors.Is(err, ErrNotFound) || errors.Is(err, ErrConflict) {
		t.Fatalf("404: %#v", err)
	}
	// 409 read-only replica, naming no primary yet
	rc := replicaServer.client(t)
	_, err = rc.TimeSeries().Put(ctx, DataPoint{Metric: "m", Entity: "e", Value: 1, TimestampMs: 1})
	if !errors.Is(err, ErrConflict) || !errors.As(err, &e) || e.Code != "read_only_replica" {
		t.Fatalf("409: %#v", err)
	}
	// a client-side refusal: NaN
	if err := ts.PutBuffered(ctx, DataPoint{Metric: "m", Entity: "e", Value: nan()}); err == nil {
		t.Fatal("NaN accepted")
	}
	// connection refused: a TransportError that was not applied
	dead, _ := NewClient("http://127.0.0.1:1", WithRetries(1), WithRetryPolicy(RetryPolicy{MaxRetries: 1, InitialBackoff: time.Millisecond}))
	_, err = dead.Version(ctx)
	var te *TransportError
	if !errors.As(err, &te) || te.MaybeApplied || te.Attempts != 2 {
		t.Fatalf("transport: %#v", err)
	}
}

func nan() float64 { var z float64; return z / z }

// A fake server answering a scripted sequence of statuses, to count attempts exactly.
func scripted(t *testing.T, script []func(w http.ResponseWriter)) (*Client, *int32) {
	var n int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := int(atomic.AddInt32(&n, 1)) - 1
		if i >= len(script) {
			i = len(script) - 1
		}
		script[i](w)
	}))
	t.Cleanup(srv.Close)
	c, err := NewClient(srv.URL, WithRetryPolicy(RetryPolicy{MaxRetries: 3, InitialBackoff: 10 * time.Millisecond, MaxBackoff: 5 * time.Second}), WithTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return c, &n
}

func status(code int, retryAfter string, body string) func(w http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_, _ = w.Write([]byte(body))
	}
}

var okBatch = status(200, "", `{"success":true,"points_written":1,"lsn":7}`)

func TestRetryOn503HonoursRetryAfter(t *testing.T) {
	ctx := ctxT(t)
	c, n := scripted(t, []func(http.ResponseWriter){
		status(503, "1", `{"error":"buffer full","code":"buffer_overflow","error_id":"x","buffer_size":5}`),
		okBatch,
	})
	start := time.Now()
	r, err := c.TimeSeries().PutBatch(ctx, []DataPoint{{Metric: "m", Entity: "e", Value: 1}}) // no timestamp: still retried (nothing done)
	if err != nil || r.LSN != 7 || atomic.LoadInt32(n) != 2 {
		t.Fatalf("%+v %v attempts=%d", r, err, atomic.LoadInt32(n))
	}
	if el := time.Since(start); el < 900*time.Millisecond {
		t.Fatalf("Retry-After ignored: %v", el)
	}
}

func TestRetryExhaustedAndNotRetried(t *testing.T) {
	ctx := ctxT(t)
	c, n := scripted(t, []func(http.ResponseWriter){status(429, "0", `{"error":"slow down","code":"rate_limited","error_id":"y","retry_after_sec":0}`)})
	_, err := c.TimeSeries().GetBufferStats(ctx)
	var e *Error
	if !errors.As(err, &e) || e.Status != 429 || e.Attempts != 4 || atomic.LoadInt32(n) != 4 || !errors.Is(err, ErrTooManyRequests) {
		t.Fatalf("%#v attempts=%d", err, atomic.LoadInt32(n))
	}
	c, n = scripted(t, []func(http.ResponseWriter){status(503, "", `{"error":"drift","code":"config_drift","error_id":"z"}`)})
	_, err = c.TimeSeries().GetBufferStats(ctx)
	if !errors.Is(err, ErrUnavailable) || atomic.LoadInt32(n) != 1 {
		t.Fatalf("config_drift retried: %v %d", err, atomic.LoadInt32(n))
	}
	c, n = scripted(t, []func(http.ResponseWriter){status(400, "", `{"error":"bad","code":"invalid_field","error_id":"w","field":"points[0].value"}`)})
	_, err = c.TimeSeries().PutBatch(ctx, []DataPoint{{Metric: "m", Entity: "e", Value: 1, TimestampMs: 5}})
	if !errors.As(err, &e) || e.Field != "points[0].value" || atomic.LoadInt32(n) != 1 {
		t.Fatalf("400: %#v %d", err, atomic.LoadInt32(n))
	}
	// a non-JSON error body
	c, _ = scripted(t, []func(http.ResponseWriter){status(502, "", `<html>bad gateway</html>`)})
	_, err = c.Version(ctx)
	if !errors.As(err, &e) || e.Status != 502 || e.Code != "http_error" {
		t.Fatalf("502: %#v", err)
	}
}

// A lost answer (the connection is closed after the request was read) is retried only when
// re-sending cannot duplicate the write.
func TestLostAnswerRetriedOnlyWhenIdempotent(t *testing.T) {
	ctx := context.Background()
	hang := func(w http.ResponseWriter) {
		hj, _ := w.(http.Hijacker)
		conn, _, _ := hj.Hijack()
		conn.Close()
	}
	c, n := scripted(t, []func(http.ResponseWriter){hang, okBatch})
	_, err := c.TimeSeries().PutBatch(ctx, []DataPoint{{Metric: "m", Entity: "e", Value: 1}})
	var te *TransportError
	if !errors.As(err, &te) || !te.MaybeApplied || atomic.LoadInt32(n) != 1 {
		t.Fatalf("unstamped batch re-sent: %v %d", err, atomic.LoadInt32(n))
	}
	c, n = scripted(t, []func(http.ResponseWriter){hang, okBatch})
	if _, err := c.TimeSeries().PutBatch(ctx, []DataPoint{{Metric: "m", Entity: "e", Value: 1, TimestampMs: 9}}); err != nil || atomic.LoadInt32(n) != 2 {
		t.Fatalf("stamped batch not re-sent: %v %d", err, atomic.LoadInt32(n))
	}
	c, n = scripted(t, []func(http.ResponseWriter){hang, okBatch})
	if _, err := c.Collections().Create(ctx, CreateCollection{Name: "x", Dimension: 2}); err == nil || atomic.LoadInt32(n) != 1 {
		t.Fatalf("create re-sent: %v %d", err, atomic.LoadInt32(n))
	}
	c, n = scripted(t, []func(http.ResponseWriter){hang, okBatch})
	if err := c.TimeSeries().WriteLines(ctx, "m value=1 1", WithIdempotent()); err != nil || atomic.LoadInt32(n) != 2 {
		t.Fatalf("idempotent lines not re-sent: %v %d", err, atomic.LoadInt32(n))
	}
}
