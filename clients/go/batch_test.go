package sluice

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

func countPoints(t *testing.T, ts *TimeSeriesClient, m string, want int) (int, float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := ts.Query(context.Background(), Query{Metric: m})
		if err != nil {
			t.Fatal(err)
		}
		n, sum := 0, 0.0
		for _, s := range res.Series {
			n += len(s.Points)
			for _, p := range s.Points {
				sum += p[1]
			}
		}
		if n == want || time.Now().After(deadline) {
			return n, sum
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestBatchWriterCloseFlushesEverything(t *testing.T) {
	for _, s := range []*testServer{devServer, authServer} {
		for _, transport := range []string{"http", "wire"} {
			s, transport := s, transport
			t.Run(s.name+"/"+transport, func(t *testing.T) {
				ctx := ctxT(t)
				ts := s.client(t).TimeSeries()
				m := uniq("bw")
				w, err := ts.NewBatchWriter(BatchWriterOptions{Transport: transport, MaxPoints: 1000, QueueSize: 2000, FlushInterval: 50 * time.Millisecond})
				if err != nil {
					t.Fatal(err)
				}
				const n = 20000
				base := time.Now().UnixMilli() - n
				want := 0.0
				for i := 0; i < n; i++ {
					v := float64(i % 97)
					want += v
					p := DataPoint{Metric: m, Entity: []string{"a", "b", "c", "d"}[i%4], Value: v, TimestampMs: base + int64(i), Tags: map[string]string{"dc": "eu"}}
					if i%1000 == 7 {
						p.TimestampMs = 0 // stamped at Put by the client
						p.Entity = "stamped"
						time.Sleep(time.Millisecond) // distinct client timestamps
					}
					if err := w.Put(ctx, p); err != nil {
						t.Fatal(err)
					}
					if i == n/2 {
						if err := w.Flush(ctx); err != nil {
							t.Fatal(err)
						}
						if w.PointsWritten() != int64(i+1) {
							t.Fatalf("after Flush %d written, want %d", w.PointsWritten(), i+1)
						}
					}
				}
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
				if err := w.Close(); err != nil {
					t.Fatal("second Close:", err)
				}
				if err := w.Put(ctx, DataPoint{Metric: m, Entity: "x", Value: 1}); !errors.Is(err, ErrClosed) {
					t.Fatalf("Put after Close: %v", err)
				}
				if w.PointsWritten() != n || len(w.Failures()) != 0 {
					t.Fatalf("written %d failures %v", w.PointsWritten(), w.Failures())
				}
				got, sum := countPoints(t, ts, m, n)
				if got != n || sum != want {
					t.Fatalf("server has %d points (sum %v), want %d (sum %v)", got, sum, n, want)
				}
			})
		}
	}
}

// Against a server that refuses with 503 every other request: every point arrives exactly
// once, in order.
func TestBatchWriterRetriesRefusalsWithoutDuplicates(t *testing.T) {
	var mu sync.Mutex
	var got []DataPoint
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls%2 == 1 {
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(503)
			_, _ = io.WriteString(w, `{"error":"full","code":"buffer_overflow","error_id":"e"}`)
			return
		}
		var body struct{ Points []DataPoint }
		_ = json.NewDecoder(r.Body).Decode(&body)
		got = append(got, body.Points...)
		_, _ = io.WriteString(w, `{"success":true,"points_written":1,"lsn":1}`)
	}))
	defer srv.Close()
	c, _ := NewClient(srv.URL)
	w, err := c.TimeSeries().NewBatchWriter(BatchWriterOptions{MaxPoints: 100, QueueSize: 50, Retry: &RetryPolicy{MaxRetries: 5, InitialBackoff: time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 1000; i++ {
		if err := w.Put(context.Background(), DataPoint{Metric: "m", Entity: "e", Value: float64(i), TimestampMs: int64(i + 1)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1000 {
		t.Fatalf("server got %d points", len(got))
	}
	for i, p := range got {
		if p.Value != float64(i) {
			t.Fatalf("point %d has value %v: reordered or duplicated", i, p.Value)
		}
	}
}

// A batch refused for good is reported (OnError, or Close's BatchWriteError); later batches
// still go out.
func TestBatchWriterReportsFailures(t *testing.T) {
	ctx := ctxT(t)
	ts := devServer.client(t).TimeSeries()
	w, err := ts.NewBatchWriter(BatchWriterOptions{MaxPoints: 2})
	if err != nil {
		t.Fatal(err)
	}
	long := make([]byte, 5000)
	for i := range long {
		long[i] = 'x'
	}
	m := uniq("fail")
	_ = w.Put(ctx, DataPoint{Metric: string(long), Entity: "e", Value: 1}) // name too long: 400
	_ = w.Put(ctx, DataPoint{Metric: m, Entity: "e", Value: 1})
	_ = w.Put(ctx, DataPoint{Metric: m, Entity: "e", Value: 2, TimestampMs: 1702645200000})
	_ = w.Put(ctx, DataPoint{Metric: m, Entity: "e", Value: 3, TimestampMs: 1702645201000})
	err = w.Close()
	var bwe *BatchWriteError
	if !errors.As(err, &bwe) || len(bwe.Failures) != 1 || len(bwe.Failures[0].Points) != 2 || !errors.Is(err, ErrBadRequest) {
		t.Fatalf("%v", err)
	}
	if w.PointsWritten() != 2 {
		t.Fatalf("written %d", w.PointsWritten())
	}
}

// Put blocks while the bounded queue is full (here: the server does not answer), until its
// context ends; Close then still delivers everything queued.
func TestBatchWriterPutBlocksWhenFull(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	got := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		var body struct{ Points []DataPoint }
		_ = json.NewDecoder(r.Body).Decode(&body)
		mu.Lock()
		got += len(body.Points)
		mu.Unlock()
		_, _ = io.WriteString(w, `{"success":true,"points_written":1,"lsn":1}`)
	}))
	defer srv.Close()
	c, _ := NewClient(srv.URL)
	w, err := c.TimeSeries().NewBatchWriter(BatchWriterOptions{MaxPoints: 2, QueueSize: 4})
	if err != nil {
		t.Fatal(err)
	}
	put := 0
	for ; put < 100; put++ {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := w.Put(ctx, DataPoint{Metric: "m", Entity: "e", Value: 1, TimestampMs: int64(put + 1)})
		cancel()
		if err != nil {
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatal(err)
			}
			break
		}
	}
	if put == 100 || put < 4 {
		t.Fatalf("Put did not block at a full queue: %d accepted", put)
	}
	close(release)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got != put || w.PointsWritten() != int64(put) {
		t.Fatalf("server got %d, writer wrote %d, put %d", got, w.PointsWritten(), put)
	}
}

// A partial batch goes out once its oldest point is FlushInterval old, without Flush or Close.
func TestBatchWriterFlushInterval(t *testing.T) {
	for _, transport := range []string{"http", "wire"} {
		transport := transport
		t.Run(transport, func(t *testing.T) {
			ctx := ctxT(t)
			w, err := devServer.client(t).TimeSeries().NewBatchWriter(BatchWriterOptions{Transport: transport, MaxPoints: 1000, FlushInterval: 100 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			m := uniq("interval")
			for round := 1; round <= 2; round++ {
				start := time.Now()
				for i := 0; i < 3; i++ {
					if err := w.Put(ctx, DataPoint{Metric: m, Entity: "e", Value: float64(i)}); err != nil {
						t.Fatal(err)
					}
				}
				for w.PointsWritten() < int64(3*round) {
					if time.Since(start) > 5*time.Second {
						t.Fatalf("round %d: %d written after 5 s", round, w.PointsWritten())
					}
					time.Sleep(10 * time.Millisecond)
				}
				if el := time.Since(start); el < 90*time.Millisecond {
					t.Fatalf("round %d: sent after %v, before the interval", round, el)
				}
			}
		})
	}
}

// The batch writer's JSON is encoding/json's, without reflection.
func TestPointsJSONMatchesEncodingJSON(t *testing.T) {
	points := []DataPoint{
		{Metric: "cpu_usage", Entity: "host1", Value: 75.5, TimestampMs: 1702645200000},
		{Metric: "m", Entity: "e", Value: 0},
		{Metric: "q\"uote\\s", Entity: "tab\there <&> é \u2028", Value: -1.25e-9, Tags: map[string]string{"b": "2", "a": "\x01", "": "x"}},
		{Metric: "big", Entity: "e", Value: 1e21, TimestampMs: -5},
		{Metric: "small", Entity: "e", Value: 123456789.125, Tags: map[string]string{"k": "v"}},
		{Metric: "tiny", Entity: "e", Value: 5e-324},
		{Metric: "invalid utf8 \xff", Entity: "e", Value: 1e-6},
	}
	for _, ps := range [][]DataPoint{nil, points[:1], points} {
		want, err := json.Marshal(map[string]any{"points": ps})
		if ps == nil {
			want = []byte(`{"points":[]}`)
		}
		if err != nil {
			t.Fatal(err)
		}
		if got := appendPointsJSON(nil, ps); string(got) != string(want) {
			t.Fatalf("\n got %s\nwant %s", got, want)
		}
	}
}
