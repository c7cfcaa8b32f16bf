package sluice

import (
	"errors"
	"testing"
	"time"
)

func TestReplicationAdmin(t *testing.T) {
	ctx := ctxT(t)
	r := authServer.client(t).Replication()
	id := uniq("replica")
	info, err := r.AddReplica(ctx, id, "http://127.0.0.1:9")
	if err != nil || info.ReplicaID != id {
		t.Fatalf("add: %+v %v", info, err)
	}
	if _, err := r.AddReplica(ctx, id, "http://127.0.0.1:9"); err != nil {
		t.Fatalf("same replica again: %v", err)
	}
	list, err := r.ListReplicas(ctx)
	if err != nil || len(list) == 0 {
		t.Fatalf("list: %+v %v", list, err)
	}
	st, err := r.GetReplicationStats(ctx)
	if err != nil || st.Role != "primary" || len(st.Replicas) == 0 {
		t.Fatalf("stats: %+v %v", st, err)
	}
	cfg, err := r.ConfigureCompression(ctx, "zstd", 5)
	if err != nil || cfg.CompressionType != "zstd" || cfg.Level != 5 {
		t.Fatalf("config: %+v %v", cfg, err)
	}
	if err := r.RemoveReplica(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := r.RemoveReplica(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second remove: %v", err)
	}
	// promoting a primary is refused
	if _, err := r.Promote(ctx); !errors.Is(err, ErrConflict) {
		t.Fatalf("promote a primary: %v", err)
	}
}

func TestApplyWALBatchOnReplica(t *testing.T) {
	ctx := ctxT(t)
	c := replicaServer.client(t)
	ws := c.WALShipper()
	m := uniq("shipped")
	now := time.Now().UnixMilli()
	recs := []WALRecord{
		{Kind: WALKindPoints, Payload: EncodePointsRecord([]DataPoint{{Metric: m, Entity: "e", Value: 1, TimestampMs: now, Tags: map[string]string{"b": "2", "a": "1"}}})},
		{Kind: WALKindPoints, Payload: EncodePointsRecord([]DataPoint{{Metric: m, Entity: "e", Value: 2, TimestampMs: now + 1}, {Metric: m, Entity: "f", Value: 3, TimestampMs: now + 1}})},
	}
	st, err := ws.GetReplicationStats(ctx)
	if err != nil || st.Role != "replica" {
		t.Fatalf("stats: %+v %v", st, err)
	}
	// Start where the replica is: a batch beyond its next LSN answers 409 wal_gap with
	// expected_lsn.
	b, err := NewWALBatch("go-test-primary", "default", 1, 1000000, recs)
	if err != nil {
		t.Fatal(err)
	}
	err = ws.ApplyWALBatch(ctx, b)
	var e *Error
	if !errors.As(err, &e) || e.Status != 409 || e.Code != "wal_gap" || e.ExpectedLSN == nil {
		t.Fatalf("gap: %#v", err)
	}
	b, _ = NewWALBatch("go-test-primary", "default", 1, *e.ExpectedLSN, recs)
	res, err := ws.ApplyWALBatchResult(ctx, b)
	if err != nil || res.EntriesApplied != 2 || res.LastAppliedLSN != b.LastLSN {
		t.Fatalf("apply: %+v %v", res, err)
	}
	// re-sending changes nothing
	res, err = ws.ApplyWALBatchResult(ctx, b)
	if err != nil || res.EntriesApplied != 0 || res.EntriesSkipped != 2 {
		t.Fatalf("re-apply: %+v %v", res, err)
	}
	if err := ws.ApplyWALBatch(ctx, b); err != nil {
		t.Fatal(err)
	}
	q, err := c.TimeSeries().Query(ctx, Query{Metric: m})
	if err != nil || len(q.Series) != 3 {
		t.Fatalf("query on replica: %+v %v", q, err)
	}
	// a corrupt batch: 400 corrupt_batch
	bad := b
	bad.EntriesCRC32C++
	if err := ws.ApplyWALBatch(ctx, bad); !errors.As(err, &e) || e.Status != 400 || e.Code != "corrupt_batch" {
		t.Fatalf("corrupt: %#v", err)
	}
	// a primary refuses batches
	err = devServer.client(t).WALShipper().ApplyWALBatch(ctx, b)
	if !errors.As(err, &e) || e.Status != 409 {
		t.Fatalf("primary: %#v", err)
	}
	t.Logf("primary refusal: %v", err)
}
