package sluice

import (
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

func TestWireEncodingMatchesDocs(t *testing.T) {
	want := strings.ReplaceAll(`70 00 41 00 00 00 09 00 63 70 75 5f 75 73 61 67
65 08 00 73 65 72 76 65 72 30 31 80 f4 8f 6d 8c
01 00 00 00 00 00 00 00 e0 52 40 1a 00 7b 22 64
61 74 61 63 65 6e 74 65 72 22 3a 22 65 75 2d 77
65 73 74 2d 31 22 7d`, "\n", " ")
	got := EncodeTSPut([]DataPoint{{Metric: "cpu_usage", Entity: "server01", Value: 75.5, TimestampMs: 1702645200000, Tags: map[string]string{"datacenter": "eu-west-1"}}}, true)
	if hexs(got) != want {
		t.Fatalf("\n got %s\nwant %s", hexs(got), want)
	}
	want = strings.ReplaceAll(`73 01 38 00 00 00 02 00 00 00 03 00 63 70 75 01
00 61 e8 03 00 00 00 00 00 00 00 00 00 00 00 00
f0 3f 00 00 03 00 63 70 75 01 00 61 d0 07 00 00
00 00 00 00 00 00 00 00 00 00 04 40 00 00`, "\n", " ")
	got = EncodeTSPut([]DataPoint{{Metric: "cpu", Entity: "a", Value: 1, TimestampMs: 1000}, {Metric: "cpu", Entity: "a", Value: 2.5, TimestampMs: 2000}}, false)
	if hexs(got) != want {
		t.Fatalf("\n got %s\nwant %s", hexs(got), want)
	}
}

func hexs(b []byte) string {
	h := hex.EncodeToString(b)
	var parts []string
	for i := 0; i < len(h); i += 2 {
		parts = append(parts, h[i:i+2])
	}
	return strings.Join(parts, " ")
}

func TestWireClient(t *testing.T) {
	for _, s := range []*testServer{devServer, authServer} {
		s := s
		t.Run(s.name, func(t *testing.T) {
			ctx := ctxT(t)
			c := s.client(t)
			w := c.Wire()
			defer w.Close()
			m := uniq("wire")
			if _, err := w.PutBuffered(ctx, DataPoint{Metric: m, Entity: "e", Value: 1, TimestampMs: 1702645200000, Tags: map[string]string{"dc": "eu"}}); err != nil {
				t.Fatal(err)
			}
			if _, err := w.PutBufferedBatch(ctx, []DataPoint{{Metric: m, Entity: "e", Value: 2, TimestampMs: 1702645201000}, {Metric: m, Entity: "f", Value: 3}}); err != nil {
				t.Fatal(err)
			}
			lsn, err := w.PutBatch(ctx, []DataPoint{{Metric: m, Entity: "g", Value: 4, TimestampMs: 1702645202000}})
			if err != nil || lsn == 0 {
				t.Fatalf("TS_PUT: %d %v", lsn, err)
			}
			// pipelined: many frames, one round trip per window
			frames := make([][]byte, 600)
			for i := range frames {
				frames[i] = EncodeTSPut([]DataPoint{{Metric: m, Entity: "p", Value: float64(i), TimestampMs: 1702645300000 + int64(i)}}, true)
			}
			res, err := w.Pipeline(ctx, frames, true)
			if err != nil {
				t.Fatal(err)
			}
			for i, r := range res {
				if r.Err != nil || len(r.Payload) != 8 {
					t.Fatalf("frame %d: %+v", i, r)
				}
			}
			if st, err := w.GetBufferStats(ctx); err != nil || st.PointsBuffered+st.PointsFlushed == 0 {
				t.Fatalf("%+v %v", st, err)
			}
			if err := w.FlushBuffer(ctx); err != nil {
				t.Fatal(err)
			}
			if rs, err := w.GetReplicationStats(ctx); err != nil || rs.Role != "primary" {
				t.Fatalf("%+v %v", rs, err)
			}
			if n, _ := countPoints(t, c.TimeSeries(), m, 604); n != 604 {
				t.Fatalf("%d points", n)
			}
			// an invalid point: 0x03 mapped to a 4xx with the field named
			_, err = w.PutBuffered(ctx, DataPoint{Metric: m, Entity: "e", Value: 1, Tags: map[string]string{"": "x"}})
			var e *Error
			if !errors.As(err, &e) || e.WireStatus == 0 || e.Status < 400 || e.Status >= 500 {
				t.Fatalf("invalid point over the wire: %#v", err)
			}
			t.Logf("wire error: %v (status 0x%02x)", err, e.WireStatus)
		})
	}
}

func TestWireWrongToken(t *testing.T) {
	ctx := ctxT(t)
	w := NewWireClient(authServer.WireAddr, "wrong-token-0123456789", NoRetry())
	defer w.Close()
	_, err := w.PutBuffered(ctx, DataPoint{Metric: "m", Entity: "e", Value: 1, TimestampMs: 1})
	var e *Error
	if !errors.As(err, &e) || e.WireStatus != 0x05 || !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("%#v", err)
	}
	w2 := NewWireClient(authServer.WireAddr, "", NoRetry())
	defer w2.Close()
	if _, err := w2.PutBuffered(ctx, DataPoint{Metric: "m", Entity: "e", Value: 1, TimestampMs: 1}); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("no token: %v", err)
	}
}
