package sluice

import (
	"errors"
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

func TestDatabases(t *testing.T) {
	ctx := ctxT(t)
	c := authServer.client(t)
	name := uniq("db")
	info, err := c.Databases().Create(ctx, CreateDatabase{Name: name, RetentionMs: 7 * 86400000})
	if err != nil || info.Name != name || info.RetentionMs != 7*86400000 {
		t.Fatalf("create: %+v %v", info, err)
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
