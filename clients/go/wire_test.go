package sluice

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// docHexBlocks reads the ```hex NAME blocks of docs/wire-protocol.md (the test vectors the
// Rust codec checks too) and the ```text block that follows each, if any (an answer).
func docHexBlocks(t *testing.T) (requests map[string][]byte, answers map[string][]byte) {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "wire-protocol.md"))
	if err != nil {
		t.Fatal(err)
	}
	requests, answers = map[string][]byte{}, map[string][]byte{}
	lines := strings.Split(string(doc), "\n")
	last := ""
	for i := 0; i < len(lines); i++ {
		head := strings.TrimSpace(lines[i])
		isHex := strings.HasPrefix(head, "```hex ")
		name := strings.TrimPrefix(head, "```hex ")
		if !isHex && head != "```text" {
			continue
		}
		var b []byte
		for i++; i < len(lines) && !strings.HasPrefix(lines[i], "```"); i++ {
			for _, tok := range strings.Fields(lines[i]) {
				v, err := strconv.ParseUint(tok, 16, 8)
				if err != nil {
					if isHex {
						t.Fatalf("block %s: %q is not a hex byte", name, tok)
					}
					b = nil // a text block that is not hex bytes
					break
				}
				b = append(b, byte(v))
			}
		}
		if isHex {
			last = strings.TrimSpace(name)
			requests[last] = b
		} else if b != nil && last != "" {
			answers[last] = b
		}
	}
	return requests, answers
}

func hexs(b []byte) string {
	h := hex.EncodeToString(b)
	var parts []string
	for i := 0; i < len(h); i += 2 {
		parts = append(parts, h[i:i+2])
	}
	return strings.Join(parts, " ")
}

// Every request example of docs/wire-protocol.md is what this client encodes, byte for byte;
// a new example without an encoder here fails.
func TestWireEncodingMatchesDocs(t *testing.T) {
	requests, answers := docHexBlocks(t)
	must := func(b []byte, err error) []byte {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	seed := DataPoint{Metric: "cpu_usage", Entity: "server01", Value: 75.5, TimestampMs: 1702645200000, Tags: map[string]string{"datacenter": "eu-west-1"}}
	two := []DataPoint{{Metric: "cpu", Entity: "a", Value: 1, TimestampMs: 1000}, {Metric: "cpu", Entity: "a", Value: 2.5, TimestampMs: 2000}}
	encoded := map[string][]byte{
		"ts_put_buffered":              EncodeTSPut([]DataPoint{seed}, true),
		"ts_put_buffered_batch":        EncodeTSPut(two, true),
		"ts_put":                       EncodeTSPut(two, false),
		"ts_buffer_stats":              EncodeFrame(OpTSBufferStats, 0, nil),
		"ts_buffer_flush":              EncodeFrame(OpTSBufferFlush, 0, nil),
		"vector_add_buffered":          must(EncodeVectorPut([]VectorEntity{{PK: "doc1", Vector: []float32{0.5, -1, 2}, Metadata: map[string]any{"category": "tech"}}}, false)),
		"vector_update_buffered":       must(EncodeVectorPut([]VectorEntity{{PK: "doc1", Vector: []float32{1, 0}}}, true)),
		"vector_remove_buffered_batch": must(EncodeVectorRemove([]string{"a", "bc"})),
		"vector_buffer_stats":          EncodeFrame(OpVectorBufferStats, 0, nil),
		"vector_buffer_flush":          EncodeFrame(OpVectorBufferFlush, 0, nil),
		"auth":                         EncodeAuth("s3cret"),
		"vector_search":                must(EncodeVectorSearch("", Search{Vector: []float32{1, 0}, K: 2, Filter: map[string]any{"a": 1}})),
		"changes_subscribe":            EncodeFrame(OpChangesSubscribe, 0, []byte(`{"from_lsn":41}`)),
	}
	if len(requests) < len(encoded) {
		t.Fatalf("found %d hex blocks in the doc, expected at least %d", len(requests), len(encoded))
	}
	for name, want := range requests {
		got, ok := encoded[name]
		if !ok {
			t.Errorf("docs/wire-protocol.md example %q: no encoder in this test", name)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s:\n got %s\nwant %s", name, hexs(got), hexs(want))
		}
	}
	t.Logf("%d request examples checked", len(requests))
	// The documented VECTOR_SEARCH answer: one hit p1, distance 0, score 1, no metadata.
	ans := answers["vector_search"]
	if len(ans) < frameHeader || ans[0] != 0 || int(binary.LittleEndian.Uint32(ans[2:])) != len(ans)-frameHeader {
		t.Fatalf("the VECTOR_SEARCH answer of the doc: % x", ans)
	}
	hits, err := DecodeSearchHits(ans[frameHeader:])
	if err != nil || len(hits) != 1 || hits[0].PK != "p1" || hits[0].Distance != 0 || hits[0].Score != 1 || hits[0].Metadata != nil {
		t.Fatalf("%+v %v", hits, err)
	}
	// Malformed answers are errors, not panics.
	for _, bad := range [][]byte{nil, {1, 0, 0, 0}, {1, 0, 0, 0, 2, 0, 'p'}, append(append([]byte(nil), ans[frameHeader:]...), 0), {0xff, 0xff, 0xff, 0xff}} {
		if _, err := DecodeSearchHits(bad); err == nil {
			t.Errorf("% x decoded", bad)
		}
	}
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

func TestWireVectors(t *testing.T) {
	for _, s := range []*testServer{devServer, authServer} {
		s := s
		t.Run(s.name, func(t *testing.T) {
			ctx := ctxT(t)
			c := s.client(t)
			w := c.Wire()
			defer w.Close()
			run := uniq("run") // the metadata that singles out this run's entities in collection default
			md := func(tag string) map[string]any { return map[string]any{"run": run, "tag": tag} }
			a, b, cc := run+"_a", run+"_b", run+"_c"
			if _, err := w.AddBuffered(ctx, VectorEntity{PK: a, Vector: []float32{1, 0, 0}, Metadata: md("x")}); err != nil {
				t.Fatal(err)
			}
			size, err := w.AddBufferedBatch(ctx, []VectorEntity{
				{PK: b, Vector: []float32{0, 1, 0}, Metadata: md("x")},
				{PK: cc, Vector: []float32{0, 0, 1}, Metadata: md("y")},
			})
			if err != nil || size == 0 {
				t.Fatalf("batch: %d %v", size, err)
			}
			if _, err := w.UpdateBuffered(ctx, VectorEntity{PK: cc, Vector: []float32{0.9, 0.1, 0}, Metadata: md("x")}); err != nil {
				t.Fatal(err)
			}
			if _, err := w.UpdateBufferedBatch(ctx, []VectorEntity{{PK: b, Vector: []float32{0, 1, 0}, Metadata: md("x")}}); err != nil {
				t.Fatal(err)
			}
			// searched at once (buffered writes included), as over HTTP
			q := Search{Vector: []float32{1, 0, 0}, K: 5, Filter: map[string]any{"run": run}}
			hits, err := w.Search(ctx, q)
			if err != nil || len(hits) != 3 || hits[0].PK != a || hits[1].PK != cc || hits[2].PK != b {
				t.Fatalf("wire search: %+v %v", hits, err)
			}
			if hits[0].Distance > 1e-6 || hits[0].Score < hits[1].Score || hits[0].Metadata["run"] != run || hits[1].Metadata["tag"] != "x" {
				t.Fatalf("hit: %+v", hits)
			}
			viaHTTP, err := c.Vectors().Search(ctx, q)
			if err != nil || len(viaHTTP) != len(hits) {
				t.Fatalf("http search: %+v %v", viaHTTP, err)
			}
			for i := range hits {
				if viaHTTP[i].PK != hits[i].PK || math.Abs(viaHTTP[i].Score-hits[i].Score) > 1e-5 || math.Abs(viaHTTP[i].Distance-hits[i].Distance) > 1e-5 {
					t.Fatalf("wire %+v != http %+v", hits[i], viaHTTP[i])
				}
			}
			if hits, err := w.Search(ctx, Search{Vector: []float32{1, 0, 0}, K: 5, Ef: 64, Filter: map[string]any{"run": run, "tag": "y"}}); err != nil || len(hits) != 0 {
				t.Fatalf("filtered: %+v %v", hits, err)
			}
			if _, err := w.RemoveBuffered(ctx, a); err != nil {
				t.Fatal(err)
			}
			if _, err := w.RemoveBufferedBatch(ctx, []string{b, cc}); err != nil {
				t.Fatal(err)
			}
			if hits, err := w.Search(ctx, q); err != nil || len(hits) != 0 {
				t.Fatalf("after removes: %+v %v", hits, err)
			}
			st, err := w.GetVectorBufferStats(ctx)
			if err != nil || st.CompressionType == "" || st.VectorsBuffered+st.VectorsFlushed == 0 {
				t.Fatalf("stats: %+v %v", st, err)
			}
			if err := w.FlushVectorBuffer(ctx); err != nil {
				t.Fatal(err)
			}
			// a named collection
			name := uniq("wirecol")
			if _, err := c.Collections().Create(ctx, CreateCollection{Name: name, Dimension: 2, Distance: "l2"}); err != nil {
				t.Fatal(err)
			}
			defer c.Collections().Delete(ctx, name) //nolint:errcheck
			if _, err := c.Vectors().AddBatch(ctx, []VectorEntity{{PK: "p1", Vector: []float32{1, 0}}, {PK: "p2", Vector: []float32{0, 1}}}, WithCollection(name)); err != nil {
				t.Fatal(err)
			}
			hits, err = w.Search(ctx, Search{Vector: []float32{1, 0}, K: 1}, WithCollection(name))
			if err != nil || len(hits) != 1 || hits[0].PK != "p1" || hits[0].Metadata != nil {
				t.Fatalf("named collection: %+v %v", hits, err)
			}

			// Error frames are *Error like HTTP answers: status, code, error_id, field.
			var e *Error
			_, err = w.Search(ctx, Search{Vector: []float32{1, 0}, K: 1}, WithCollection("no_such_"+name))
			if !errors.As(err, &e) || e.WireStatus != 0x03 || e.Status != 404 || e.Code != "collection_not_found" || e.ErrorID == "" || !errors.Is(err, ErrNotFound) {
				t.Fatalf("unknown collection: %#v", err)
			}
			t.Logf("unknown collection: %v", err)
			_, err = w.Search(ctx, Search{Vector: []float32{1, 0, 0}, K: 1}, WithCollection(name))
			if !errors.As(err, &e) || e.Status != 422 || e.Code != "invalid_value" || e.Field == "" || e.ErrorID == "" || !errors.Is(err, ErrBadRequest) {
				t.Fatalf("wrong dimension (search): %#v", err)
			}
			t.Logf("wrong dimension: %v", err)
			_, err = w.AddBuffered(ctx, VectorEntity{PK: run + "_bad", Vector: []float32{1, 2}})
			if !errors.As(err, &e) || e.Status != 422 || e.Code != "invalid_value" || e.Field == "" || e.ErrorID == "" {
				t.Fatalf("wrong dimension (add): %#v", err)
			}
			_, err = w.UpdateBuffered(ctx, VectorEntity{PK: run + "_missing", Vector: []float32{1, 0, 0}})
			if !errors.Is(err, ErrNotFound) || !errors.As(err, &e) || e.WireStatus == 0 {
				t.Fatalf("update of a missing pk: %#v", err)
			}
			_, err = w.Search(ctx, Search{Vector: []float32{1, 0}, K: 0}, WithCollection(name))
			if !errors.As(err, &e) || e.Status/100 != 4 || e.Field == "" {
				t.Fatalf("k = 0: %#v", err)
			}
			// the connection is still usable after error frames
			if hits, err := w.Search(ctx, Search{Vector: []float32{0, 1}, K: 1}, WithCollection(name)); err != nil || len(hits) != 1 || hits[0].PK != "p2" {
				t.Fatalf("after errors: %+v %v", hits, err)
			}
		})
	}
}

// Errors raised by the encoders, before anything is sent.
func TestWireVectorEncodingErrors(t *testing.T) {
	if _, err := EncodeVectorPut(nil, false); err == nil {
		t.Error("no entities accepted")
	}
	if _, err := EncodeVectorRemove(nil); err == nil {
		t.Error("no pks accepted")
	}
	if _, err := EncodeVectorPut([]VectorEntity{{PK: strings.Repeat("x", 70000), Vector: []float32{1}}}, false); err == nil {
		t.Error("a 70000-byte pk accepted")
	}
	if _, err := EncodeVectorPut([]VectorEntity{{PK: "a", Vector: []float32{1}, Metadata: map[string]any{"f": func() {}}}}, false); err == nil {
		t.Error("unencodable metadata accepted")
	}
	if _, err := EncodeVectorSearch("", Search{Vector: []float32{1}, K: -1}); err == nil {
		t.Error("k = -1 accepted")
	}
}
