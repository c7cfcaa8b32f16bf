package sluice

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
	"net/http"
	"net/url"
)

// ReplicationClient holds /api/v1/replication/… (admin).
type ReplicationClient struct{ c *Client }

// AddReplica registers a replica (the same id and endpoint again is fine).
func (r *ReplicationClient) AddReplica(ctx context.Context, replicaID, endpoint string) (*ReplicaInfo, error) {
	var out ReplicaInfo
	return &out, r.c.callJSON(ctx, "POST", "/api/v1/replication/replicas", false,
		ReplicaInfo{ReplicaID: replicaID, Endpoint: endpoint}, true, nil, &out)
}

// ListReplicas lists the registered replicas.
func (r *ReplicationClient) ListReplicas(ctx context.Context) ([]ReplicaInfo, error) {
	var out struct {
		Replicas []ReplicaInfo `json:"replicas"`
	}
	err := r.c.call(ctx, request{method: "GET", path: "/api/v1/replication/replicas", idempotent: true}, &out)
	return out.Replicas, err
}

// RemoveReplica unregisters a replica.
func (r *ReplicationClient) RemoveReplica(ctx context.Context, replicaID string) error {
	return r.c.call(ctx, request{method: "DELETE", path: "/api/v1/replication/replicas/" + url.PathEscape(replicaID)}, nil)
}

// GetReplicationStats reads GET /api/v1/replication/stats.
func (r *ReplicationClient) GetReplicationStats(ctx context.Context) (*ReplicationStats, error) {
	var out ReplicationStats
	return &out, r.c.call(ctx, request{method: "GET", path: "/api/v1/replication/stats", idempotent: true}, &out)
}

// ConfigureCompression sets the shipping compression ("zstd" or "none"; level 1..22, 0 =
// unchanged) for the next batches.
func (r *ReplicationClient) ConfigureCompression(ctx context.Context, compressionType string, level int) (*ReplicationConfig, error) {
	body := map[string]any{"compression_type": compressionType}
	if level != 0 {
		body["level"] = level
	}
	var out ReplicationConfig
	return &out, r.c.callJSON(ctx, "POST", "/api/v1/replication/config", false, body, true, nil, &out)
}

// Promote makes a replica a primary.
func (r *ReplicationClient) Promote(ctx context.Context) (*PromoteResult, error) {
	var out PromoteResult
	return &out, r.c.call(ctx, request{method: "POST", path: "/api/v1/replication/promote"}, &out)
}

// WALShipperClient sends WAL batches to a replica, as a primary's shipper does.
type WALShipperClient struct{ c *Client }

// CompressedWALBatch is the body of POST /api/v1/wal/apply (docs/replication.md). Build one
// with NewWALBatch.
type CompressedWALBatch struct {
	PrimaryID         string `json:"primary_id"`
	Compression       string `json:"compression"` // "none" (this client has no zstd) or "zstd"
	EntriesCompressed string `json:"entries_compressed"`
	Database          string `json:"database"`
	Epoch             uint64 `json:"epoch"`
	FirstLSN          uint64 `json:"first_lsn"`
	LastLSN           uint64 `json:"last_lsn"`
	Entries           uint64 `json:"entries"`
	UncompressedBytes uint64 `json:"uncompressed_bytes"`
	EntriesCRC32C     uint32 `json:"entries_crc32c"`
	PrimaryDurableLSN uint64 `json:"primary_durable_lsn"`
	LagBytes          uint64 `json:"lag_bytes"`
	LagMs             uint64 `json:"lag_ms"`
	PrimaryEndpoint   string `json:"primary_endpoint,omitempty"`
}

// WALApplyResult is the replica's answer (ApplyWALBatchResult returns it).
type WALApplyResult struct {
	Success             bool    `json:"success"`
	EntriesApplied      uint64  `json:"entries_applied"`
	EntriesSkipped      uint64  `json:"entries_skipped"`
	CompressionRatio    float64 `json:"compression_ratio"`
	DecompressionTimeMs float64 `json:"decompression_time_ms"`
	LastAppliedLSN      uint64  `json:"last_applied_lsn"`
}

// WAL record kinds.
const (
	WALKindPoints       byte = 1 // time-series points, point by point
	WALKindVectorOps    byte = 2
	WALKindCollection   byte = 3
	WALKindSeriesPoints byte = 4
)

// WALRecord is one record of a batch: its kind and payload, as in the primary's WAL.
type WALRecord struct {
	Kind    byte
	Payload []byte
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// EncodeWALRecord encodes one record as in a WAL segment: len u32, crc32c u32, lsn u64,
// sync_delta u32, kind u8, payload (little-endian; the CRC covers len and everything after
// the CRC).
func EncodeWALRecord(out []byte, lsn uint64, kind byte, payload []byte) []byte {
	start := len(out)
	var h [21]byte
	binary.LittleEndian.PutUint32(h[0:], uint32(13+len(payload)))
	binary.LittleEndian.PutUint64(h[8:], lsn)
	delta := lsn // synced LSN unknown: 0
	if delta > 0xFFFFFFFF {
		delta = 0xFFFFFFFF
	}
	binary.LittleEndian.PutUint32(h[16:], uint32(delta))
	h[20] = kind
	out = append(out, h[:]...)
	out = append(out, payload...)
	crc := crc32.Update(crc32.Checksum(out[start:start+4], castagnoli), castagnoli, out[start+8:])
	binary.LittleEndian.PutUint32(out[start+4:], crc)
	return out
}

// EncodePointsRecord encodes points as a WALKindPoints payload (timestamps must be set).
func EncodePointsRecord(points []DataPoint) []byte {
	out := binary.LittleEndian.AppendUint32(nil, uint32(len(points)))
	for _, p := range points {
		out = appendStr16(out, p.Metric)
		out = appendStr16(out, p.Entity)
		out = binary.LittleEndian.AppendUint64(out, uint64(p.TimestampMs))
		out = binary.LittleEndian.AppendUint64(out, math.Float64bits(p.Value))
		keys := sortedKeys(p.Tags)
		out = binary.LittleEndian.AppendUint16(out, uint16(len(keys)))
		for _, k := range keys {
			out = appendStr16(out, k)
			out = appendStr16(out, p.Tags[k])
		}
	}
	return out
}

// NewWALBatch builds a batch of records with consecutive LSNs from firstLSN, uncompressed
// (compression "none"), with its counts, size and CRC32C filled in.
func NewWALBatch(primaryID, database string, epoch, firstLSN uint64, records []WALRecord) (CompressedWALBatch, error) {
	if len(records) == 0 || firstLSN == 0 {
		return CompressedWALBatch{}, fmt.Errorf("sluice: a WAL batch needs records and a first LSN >= 1")
	}
	if database == "" {
		database = "default"
	}
	var raw []byte
	for i, r := range records {
		raw = EncodeWALRecord(raw, firstLSN+uint64(i), r.Kind, r.Payload)
	}
	last := firstLSN + uint64(len(records)) - 1
	return CompressedWALBatch{
		PrimaryID:         primaryID,
		Compression:       "none",
		EntriesCompressed: base64.StdEncoding.EncodeToString(raw),
		Database:          database,
		Epoch:             epoch,
		FirstLSN:          firstLSN,
		LastLSN:           last,
		Entries:           uint64(len(records)),
		UncompressedBytes: uint64(len(raw)),
		EntriesCRC32C:     crc32.Checksum(raw, castagnoli),
		PrimaryDurableLSN: last,
	}, nil
}

// ApplyWALBatch posts a batch to a replica (POST /api/v1/wal/apply with X-Primary-ID). Only
// a replica accepts it (a primary answers 409). Re-sending a batch changes nothing, so it is
// retried after a lost answer.
func (w *WALShipperClient) ApplyWALBatch(ctx context.Context, batch CompressedWALBatch) error {
	_, err := w.ApplyWALBatchResult(ctx, batch)
	return err
}

// ApplyWALBatchResult is ApplyWALBatch returning the replica's answer.
func (w *WALShipperClient) ApplyWALBatchResult(ctx context.Context, batch CompressedWALBatch) (*WALApplyResult, error) {
	r, err := jsonReq("POST", "/api/v1/wal/apply", false, batch, true)
	if err != nil {
		return nil, err
	}
	r.header = http.Header{"X-Primary-Id": {batch.PrimaryID}}
	var out WALApplyResult
	return &out, w.c.call(ctx, r, &out)
}

// GetReplicationStats reads GET /api/v1/replication/stats.
func (w *WALShipperClient) GetReplicationStats(ctx context.Context) (*ReplicationStats, error) {
	return (&ReplicationClient{w.c}).GetReplicationStats(ctx)
}
