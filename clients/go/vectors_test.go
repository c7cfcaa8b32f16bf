package sluice

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestVectorsAndCollections(t *testing.T) {
	for _, s := range []*testServer{devServer, authServer} {
		s := s
		t.Run(s.name, func(t *testing.T) {
			ctx := ctxT(t)
			c := s.client(t)
			cs, vs := c.Collections(), c.Vectors()
			name := uniq("art")
			info, err := cs.Create(ctx, CreateCollection{Name: name, Dimension: 3, Distance: "cosine", Hnsw: &HnswSpec{M: 16, EfConstruction: 64, EfSearch: 32}})
			if err != nil || info.Name != name || info.Dimension != 3 {
				t.Fatalf("create: %+v %v", info, err)
			}
			_, err = cs.Create(ctx, CreateCollection{Name: name, Dimension: 3})
			if !errors.Is(err, ErrConflict) {
				t.Fatalf("second create: %v", err)
			}
			list, err := cs.List(ctx)
			found := false
			for _, ci := range list {
				found = found || ci.Name == name
			}
			if err != nil || !found {
				t.Fatalf("list: %+v %v", list, err)
			}
			col := WithCollection(name)
			if r, err := vs.Add(ctx, VectorEntity{PK: "doc1", Vector: []float32{0.1, 0.9, 0.2}, Metadata: map[string]any{"category": "tech", "year": 2024}}, col, WithAck("wal")); err != nil || !r.Success {
				t.Fatalf("add: %+v %v", r, err)
			}
			br, err := vs.AddBatch(ctx, []VectorEntity{
				{PK: "doc2", Vector: []float32{0.8, 0.1, 0.1}, Metadata: map[string]any{"category": "art", "year": 2019}},
				{PK: "doc3", Vector: []float32{0.1, 0.8, 0.3}, Metadata: map[string]any{"category": "tech", "year": 2021}},
			}, col)
			if err != nil || br.VectorsWritten != 2 {
				t.Fatalf("batch: %+v %v", br, err)
			}
			if err := vs.AddBuffered(ctx, VectorEntity{PK: "doc4", Vector: []float32{0.5, 0.5, 0.5}, Metadata: map[string]any{"category": "art"}}, col); err != nil {
				t.Fatal(err)
			}
			if err := vs.UpdateBuffered(ctx, VectorEntity{PK: "doc4", Vector: []float32{0.4, 0.5, 0.6}, Metadata: map[string]any{"category": "misc"}}, col); err != nil {
				t.Fatal(err)
			}
			err = vs.UpdateBuffered(ctx, VectorEntity{PK: "nope", Vector: []float32{0.4, 0.5, 0.6}}, col)
			if !errors.Is(err, ErrNotFound) {
				t.Fatalf("update of a missing pk: %v", err)
			}
			hits, err := vs.Search(ctx, Search{Vector: []float32{0.1, 0.8, 0.3}, K: 5}, col)
			if err != nil || len(hits) != 4 || hits[0].PK != "doc3" {
				t.Fatalf("search: %+v %v", hits, err)
			}
			hits, err = vs.Search(ctx, Search{Vector: []float32{0.1, 0.8, 0.3}, K: 5, Ef: 64,
				Filter: map[string]any{"year": map[string]any{"$gte": 2020}, "category": map[string]any{"$in": []string{"tech", "art"}}}}, col)
			if err != nil || len(hits) != 2 {
				t.Fatalf("filtered search: %+v %v", hits, err)
			}
			e, err := vs.Get(ctx, "doc1", col)
			if err != nil || e.PK != "doc1" || len(e.Vector) != 3 || e.Metadata["category"] != "tech" {
				t.Fatalf("get: %+v %v", e, err)
			}
			if err := vs.RemoveBuffered(ctx, "doc4", col); err != nil {
				t.Fatal(err)
			}
			if _, err := vs.Delete(ctx, "doc2", col); err != nil {
				t.Fatal(err)
			}
			if _, err := vs.Get(ctx, "doc2", col); !errors.Is(err, ErrNotFound) {
				t.Fatalf("get after delete: %v", err)
			}
			// a wrong dimension is 422 invalid_value
			_, err = vs.Add(ctx, VectorEntity{PK: "bad", Vector: []float32{1, 2}}, col)
			var se *Error
			if !errors.As(err, &se) || se.Status != 422 || se.Code != "invalid_value" || se.Field == "" || se.ErrorID == "" {
				t.Fatalf("dimension error: %#v", err)
			}
			if !errors.Is(err, ErrBadRequest) || !errors.Is(err, ErrUnprocessable) {
				t.Fatal("422 should match ErrBadRequest and ErrUnprocessable")
			}
			st, err := vs.GetBufferStats(ctx)
			if err != nil || st.CompressionType == "" {
				t.Fatalf("stats: %+v %v", st, err)
			}
			if err := vs.FlushBuffer(ctx); err != nil {
				t.Fatal(err)
			}
			got, err := cs.Get(ctx, name)
			if err != nil || got.Vectors != 2 {
				t.Fatalf("get collection: %+v %v", got, err)
			}
			if _, err := cs.Delete(ctx, name); err != nil {
				t.Fatal(err)
			}
			if _, err := cs.Get(ctx, name); !errors.Is(err, ErrNotFound) {
				t.Fatalf("get deleted collection: %v", err)
			}
		})
	}
}

func TestVectorTimesTTLRangeAndDecay(t *testing.T) {
	const day = int64(86400000)
	ctx := ctxT(t)
	c := devServer.client(t)
	cs, vs := c.Collections(), c.Vectors()
	now := time.Now().UnixMilli()
	name := uniq("vt")
	info, err := cs.Create(ctx, CreateCollection{Name: name, Dimension: 2, Distance: "l2", TTLMs: 3600000})
	if err != nil || info.TTLMs != 3600000 {
		t.Fatalf("create: %+v %v", info, err)
	}
	if got, err := cs.Get(ctx, name); err != nil || got.TTLMs != 3600000 {
		t.Fatalf("get collection: %+v %v", got, err)
	}
	list, err := cs.List(ctx)
	found := false
	for _, ci := range list {
		found = found || (ci.Name == name && ci.TTLMs == 3600000)
	}
	if err != nil || !found {
		t.Fatalf("list: %+v %v", list, err)
	}
	col := WithCollection(name)
	if _, err := vs.Add(ctx, VectorEntity{PK: "old", Vector: []float32{0, 0}, TimestampMs: now - 30*day}, col); err != nil {
		t.Fatal(err)
	}
	if _, err := vs.AddBatch(ctx, []VectorEntity{
		{PK: "new", Vector: []float32{0.5, 0}, TimestampMs: now},
		{PK: "mid", Vector: []float32{0, 2}, TimestampMs: now - 2*day, ExpiresAtMs: now + day},
		{PK: "gone", Vector: []float32{0.1, 0}, TimestampMs: now, ExpiresAtMs: now - 1000}, // already expired
	}, col); err != nil {
		t.Fatal(err)
	}
	if err := vs.AddBuffered(ctx, VectorEntity{PK: "untimed", Vector: []float32{3, 0}}, col); err != nil {
		t.Fatal(err)
	}
	if err := vs.AddBuffered(ctx, VectorEntity{PK: "buf", Vector: []float32{0, 3}, TimestampMs: now - 3*day}, col); err != nil {
		t.Fatal(err)
	}
	if err := vs.UpdateBuffered(ctx, VectorEntity{PK: "buf", Vector: []float32{0, 3.5}, TimestampMs: now - 4*day, ExpiresAtMs: now + 2*day}, col); err != nil {
		t.Fatal(err)
	}

	// the expired entity is gone from get and search at once
	if _, err := vs.Get(ctx, "gone", col); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get of an expired entity: %v", err)
	}
	pks := func(s Search) []string {
		t.Helper()
		hits, err := vs.Search(ctx, s, col)
		if err != nil {
			t.Fatalf("search %+v: %v", s, err)
		}
		out := []string{}
		for _, h := range hits {
			out = append(out, h.PK)
		}
		return out
	}
	same := func(got []string, want ...string) bool {
		if len(got) != len(want) {
			return false
		}
		for i := range got {
			if got[i] != want[i] {
				return false
			}
		}
		return true
	}
	q := []float32{0, 0}
	all, err := vs.Search(ctx, Search{Vector: q, K: 10}, col)
	if err != nil || len(all) != 5 {
		t.Fatalf("search: %+v %v", all, err)
	}
	if got := pks(Search{Vector: q, K: 10}); !same(got, "old", "new", "mid", "untimed", "buf") {
		t.Fatalf("search: %v", got)
	}
	if all[1].TimestampMs != now || all[1].Rank != nil || all[2].ExpiresAtMs != now+day || all[3].TimestampMs != 0 {
		t.Fatalf("search result times: %+v", all)
	}
	if e, err := vs.Get(ctx, "mid", col); err != nil || e.TimestampMs != now-2*day || e.ExpiresAtMs != now+day {
		t.Fatalf("get mid: %+v %v", e, err)
	}
	if e, err := vs.Get(ctx, "old", col); err != nil || e.TimestampMs != now-30*day || e.ExpiresAtMs < now+3500000 || e.ExpiresAtMs > now+3700000 {
		t.Fatalf("get old (expiry from the collection's ttl): %+v %v", e, err)
	}
	if e, err := vs.Get(ctx, "buf", col); err != nil || e.TimestampMs != now-4*day || e.ExpiresAtMs != now+2*day {
		t.Fatalf("get buf: %+v %v", e, err)
	}

	// time_range: inclusive, either bound open
	if got := pks(Search{Vector: q, K: 10, TimeRange: &TimeRange{FromMs: now - 5*day, ToMs: now - day}}); !same(got, "mid", "buf") {
		t.Fatalf("time range: %v", got)
	}
	if got := pks(Search{Vector: q, K: 10, TimeRange: &TimeRange{FromMs: now - 2*day}}); !same(got, "new", "mid") {
		t.Fatalf("time range from: %v", got)
	}
	if got := pks(Search{Vector: q, K: 10, TimeRange: &TimeRange{ToMs: now - 30*day}}); !same(got, "old") {
		t.Fatalf("time range to: %v", got)
	}
	if got := pks(Search{Vector: q, K: 10, TimeRange: &TimeRange{FromMs: now, ToMs: now}}); !same(got, "new") {
		t.Fatalf("time range of one instant: %v", got)
	}

	// decay: the far but recent entity outranks the near but old one
	decay := &Decay{HalfLifeMs: day, Weight: 0.3}
	d, err := vs.Search(ctx, Search{Vector: q, K: 2, Decay: decay}, col)
	if err != nil || len(d) != 2 || d[0].PK != "new" || d[1].PK != "old" {
		t.Fatalf("decay: %+v %v", d, err)
	}
	if d[0].Rank == nil || d[1].Rank == nil || *d[0].Rank < 0.25-0.3-1e-3 || *d[0].Rank > 0.25-0.3+1e-3 || *d[1].Rank < -1e-3 || *d[1].Rank > 1e-3 {
		t.Fatalf("decay ranks: %+v", d)
	}
	if d[0].Distance < 0.25-1e-6 || d[0].Distance > 0.25+1e-6 {
		t.Fatalf("decay distance: %+v", d[0])
	}
	if got := pks(Search{Vector: q, K: 10, TimeRange: &TimeRange{FromMs: now - 40*day}, Decay: decay}); !same(got, "new", "old", "mid", "buf") {
		t.Fatalf("time range and decay: %v", got)
	}
	_, err = vs.Search(ctx, Search{Vector: q, K: 2, Decay: &Decay{HalfLifeMs: 0, Weight: 0.3}}, col)
	var se *Error
	if !errors.As(err, &se) || !errors.Is(err, ErrBadRequest) || !strings.HasPrefix(se.Field, "decay") {
		t.Fatalf("decay with half_life_ms 0: %#v", err)
	}

	// the wire protocol carries none of them
	w := c.Wire()
	defer w.Close()
	if _, err := w.Search(ctx, Search{Vector: q, K: 2, Decay: decay}, col); err == nil {
		t.Fatal("wire search with decay should fail")
	}
	if _, err := w.AddBuffered(ctx, VectorEntity{PK: "w", Vector: []float32{0, 0}, TimestampMs: now}); err == nil {
		t.Fatal("wire add with timestamp_ms should fail")
	}
	if _, err := cs.Delete(ctx, name); err != nil {
		t.Fatal(err)
	}
}

func TestVectorSearchWithSeries(t *testing.T) {
	ctx := ctxT(t)
	c := devServer.client(t)
	cs, vs := c.Collections(), c.Vectors()
	now := time.Now().UnixMilli()
	points := []DataPoint{
		{Metric: "cpu", Entity: "h1", Value: 1, TimestampMs: now - 3000},
		{Metric: "cpu", Entity: "h1", Value: 2, TimestampMs: now - 2000},
		{Metric: "cpu", Entity: "h1", Value: 3, TimestampMs: now - 1000},
	}
	if r, err := c.TimeSeries().PutBatch(ctx, points); err != nil || r.PointsWritten != 3 {
		t.Fatalf("put batch: %+v %v", r, err)
	}
	name := uniq("vs")
	if _, err := cs.Create(ctx, CreateCollection{Name: name, Dimension: 2, Distance: "l2"}); err != nil {
		t.Fatal(err)
	}
	col := WithCollection(name)
	if _, err := vs.Add(ctx, VectorEntity{PK: "host", Vector: []float32{0, 0}, Metadata: map[string]any{"metric": "cpu", "entity": "h1"}}, col); err != nil {
		t.Fatal(err)
	}
	if _, err := vs.Add(ctx, VectorEntity{PK: "plain", Vector: []float32{1, 0}}, col); err != nil {
		t.Fatal(err)
	}
	q := []float32{0, 0}
	hits, err := vs.Search(ctx, Search{Vector: q, K: 10, WithSeries: &WithSeries{Aggregation: "avg", WindowMs: 600000}}, col)
	if err != nil || len(hits) != 2 || hits[0].PK != "host" || hits[1].PK != "plain" {
		t.Fatalf("search with series: %+v %v", hits, err)
	}
	s := hits[0].Series
	if s == nil || s.Metric != "cpu" || s.Entity != "h1" || s.Value == nil || *s.Value < 2-1e-9 || *s.Value > 2+1e-9 {
		t.Fatalf("series of the first hit: %+v", s)
	}
	if s.ToMs-s.FromMs != 600000 || s.ToMs < now-60000 || s.ToMs > now+60000 {
		t.Fatalf("series window: %+v (now %d)", s, now)
	}
	if hits[1].Series != nil {
		t.Fatalf("a hit without a series in its metadata has one: %+v", hits[1].Series)
	}
	// a window holding no point: a nil Value, not a missing Series
	empty, err := vs.Search(ctx, Search{Vector: q, K: 1, WithSeries: &WithSeries{Aggregation: "count", WindowMs: 1}}, col)
	if err != nil || len(empty) != 1 || empty[0].Series == nil || empty[0].Series.Value != nil {
		t.Fatalf("empty window: %+v %v", empty, err)
	}
	// without WithSeries, no Series
	plain, err := vs.Search(ctx, Search{Vector: q, K: 10}, col)
	if err != nil || len(plain) != 2 || plain[0].Series != nil || plain[1].Series != nil {
		t.Fatalf("search without series: %+v %v", plain, err)
	}
	_, err = vs.Search(ctx, Search{Vector: q, K: 1, WithSeries: &WithSeries{Aggregation: "avg", WindowMs: 0}}, col)
	var se *Error
	if !errors.As(err, &se) || !errors.Is(err, ErrBadRequest) || se.Field != "with_series.window_ms" {
		t.Fatalf("with_series window_ms 0: %#v", err)
	}
	// the wire protocol does not carry it
	w := c.Wire()
	defer w.Close()
	if _, err := w.Search(ctx, Search{Vector: q, K: 1, WithSeries: &WithSeries{Aggregation: "avg", WindowMs: 600000}}); err == nil {
		t.Fatal("wire search with with_series should fail")
	}
	if _, err := cs.Delete(ctx, name); err != nil {
		t.Fatal(err)
	}
}

func TestDatabases(t *testing.T) {
	ctx := ctxT(t)
	c := authServer.client(t)
	name := uniq("db")
	rules := []DownsampleRule{{AfterMs: 7 * 86400000, ResolutionMs: 60000}, {AfterMs: 30 * 86400000, ResolutionMs: 3600000}}
	info, err := c.Databases().Create(ctx, CreateDatabase{Name: name, RetentionMs: 90 * 86400000, Downsampling: rules})
	if err != nil || info.Name != name || info.RetentionMs != 90*86400000 || len(info.Downsampling) != 2 || info.Downsampling[1] != rules[1] {
		t.Fatalf("create: %+v %v", info, err)
	}
	bad := []DownsampleRule{{AfterMs: 100, ResolutionMs: 60000}, {AfterMs: 200, ResolutionMs: 90000}}
	if _, err := c.Databases().Create(ctx, CreateDatabase{Name: uniq("db"), Downsampling: bad}); err == nil || !strings.Contains(err.Error(), "downsampling[1].resolution_ms") {
		t.Fatalf("bad rules: %v", err)
	}
	dbs, err := c.Databases().List(ctx)
	found := false
	for _, d := range dbs {
		found = found || d.Name == name
	}
	if err != nil || !found {
		t.Fatalf("list: %+v %v", dbs, err)
	}
	db := c.Database(name)
	m := uniq("m")
	if _, err := db.TimeSeries().Put(ctx, DataPoint{Metric: m, Entity: "e", Value: 1, TimestampMs: time.Now().UnixMilli()}); err != nil {
		t.Fatal(err)
	}
	if res, err := db.TimeSeries().Query(ctx, Query{Metric: m}); err != nil || len(res.Series) != 1 {
		t.Fatalf("query in db: %+v %v", res, err)
	}
	if res, err := c.TimeSeries().Query(ctx, Query{Metric: m}); err != nil || len(res.Series) != 0 {
		t.Fatalf("default db sees the other db's point: %+v %v", res, err)
	}
	if _, err := db.Collections().Create(ctx, CreateCollection{Name: "docs", Dimension: 2}); err != nil {
		t.Fatal(err)
	}
	if l, err := db.Collections().List(ctx); err != nil || len(l) == 0 {
		t.Fatalf("%+v %v", l, err)
	}
	if err := c.Databases().Delete(ctx, name); err != nil {
		t.Fatal(err)
	}
	if _, err := db.TimeSeries().Query(ctx, Query{Metric: m}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("query in deleted db: %v", err)
	}
	if err := c.Databases().Delete(ctx, name); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
}

func TestSystemRoutes(t *testing.T) {
	ctx := ctxT(t)
	c := authServer.client(t)
	if h, err := c.Health(ctx); err != nil || h["status"] != "ok" {
		t.Fatalf("%v %v", h, err)
	}
	if r, err := c.Ready(ctx); err != nil || r["status"] != "ready" {
		t.Fatalf("%v %v", r, err)
	}
	if v, err := c.Version(ctx); err != nil || v.Version == "" {
		t.Fatalf("%+v %v", v, err)
	}
	if m, err := c.Metrics(ctx); err != nil || len(m) == 0 {
		t.Fatalf("%v", err)
	}
	if o, err := c.OpenAPI(ctx); err != nil || len(o) < 1000 {
		t.Fatalf("%v", err)
	}
}

func TestCollectionExport(t *testing.T) {
	ctx := ctxT(t)
	c := devServer.client(t)
	cs, vs := c.Collections(), c.Vectors()
	name := uniq("ex")
	if _, err := cs.Create(ctx, CreateCollection{Name: name, Dimension: 2}); err != nil {
		t.Fatal(err)
	}
	defer cs.Delete(ctx, name)
	if _, err := vs.AddBatch(ctx, []VectorEntity{
		{PK: "c", Vector: []float32{0, 1}, Metadata: map[string]any{"n": 3}},
		{PK: "a", Vector: []float32{1, 0}, Metadata: map[string]any{"n": 1, "tag": "x"}, TimestampMs: 1700000000000},
		{PK: "b", Vector: []float32{0.5, 0.5}},
	}, WithCollection(name)); err != nil {
		t.Fatal(err)
	}
	var got []VectorEntity
	if err := cs.ExportFunc(ctx, name, func(e VectorEntity) error { got = append(got, e); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].PK != "a" || got[1].PK != "b" || got[2].PK != "c" {
		t.Fatalf("export order: %+v", got)
	}
	a := got[0]
	if len(a.Vector) != 2 || a.Vector[0] != 1 || a.Vector[1] != 0 || a.TimestampMs != 1700000000000 || a.Metadata["tag"] != "x" || a.Metadata["n"] != float64(1) {
		t.Fatalf("entity a: %+v", a)
	}
	_, err := cs.Export(ctx, uniq("missing"))
	var se *Error
	if !errors.Is(err, ErrNotFound) || !errors.As(err, &se) || se.Code != "collection_not_found" || se.ErrorID == "" {
		t.Fatalf("unknown collection: %v", err)
	}
}
