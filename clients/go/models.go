package sluice

import (
	"encoding/json"
)

// DataPoint is one point. TimestampMs is milliseconds since the epoch; 0 means "unset": the
// server stamps its receive time (a BatchWriter stamps the client's clock instead).
type DataPoint struct {
	Metric      string            `json:"metric"`
	Entity      string            `json:"entity"`
	Value       float64           `json:"value"`
	TimestampMs int64             `json:"timestamp_ms,omitempty"`
	Tags        map[string]string `json:"tags,omitempty"`
}

// PutResult answers Put.
type PutResult struct {
	Success bool   `json:"success"`
	LSN     uint64 `json:"lsn"`
}

// BatchPutResult answers PutBatch.
type BatchPutResult struct {
	Success       bool   `json:"success"`
	PointsWritten int64  `json:"points_written"`
	LSN           uint64 `json:"lsn"`
}

// BufferStats answers GetBufferStats (GET /ts/buffer/stats).
type BufferStats struct {
	PointsBuffered      int64   `json:"points_buffered"`
	PointsFlushed       int64   `json:"points_flushed"`
	FlushCount          int64   `json:"flush_count"`
	AutoFlushCount      int64   `json:"auto_flush_count"`
	ManualFlushCount    int64   `json:"manual_flush_count"`
	CurrentBufferSize   int64   `json:"current_buffer_size"`
	CurrentBufferMemory int64   `json:"current_buffer_memory"`
	AvgCompressionRatio float64 `json:"avg_compression_ratio"`
	LastFlushTime       *string `json:"last_flush_time"`
}

// TagMatcher is a query matcher: Op is "=", "!=", "=~" or "!~".
type TagMatcher struct {
	Tag   string `json:"tag"`
	Op    string `json:"op"`
	Value string `json:"value"`
}

// Query is the body of POST /ts/query. The range is inclusive; ToMs 0 means the end of time.
// Aggregation: min max sum avg count first last.
type Query struct {
	Metric      string
	FromMs      int64
	ToMs        int64
	Entity      string
	Tags        map[string]string
	Matchers    []TagMatcher
	Aggregation string
	StepMs      int64
	GroupBy     []string
}

const maxTs = int64(9223372036854775807)

func (q Query) body() map[string]any {
	b := map[string]any{"metric": q.Metric, "from_ms": q.FromMs, "to_ms": q.ToMs}
	if q.ToMs == 0 {
		b["to_ms"] = maxTs
	}
	if q.Entity != "" {
		b["entity"] = q.Entity
	}
	if len(q.Tags) > 0 {
		b["tags"] = q.Tags
	}
	if len(q.Matchers) > 0 {
		b["matchers"] = q.Matchers
	}
	if q.Aggregation != "" {
		b["aggregation"] = q.Aggregation
	}
	if q.StepMs != 0 {
		b["step_ms"] = q.StepMs
	}
	if len(q.GroupBy) > 0 {
		b["group_by"] = q.GroupBy
	}
	return b
}

// Series is one series of a query answer; Points are [timestamp_ms, value] pairs, oldest first.
type Series struct {
	Metric string            `json:"metric"`
	Entity string            `json:"entity"`
	Tags   map[string]string `json:"tags"`
	Points [][2]float64      `json:"points"`
}

// QueryResult answers Query.
type QueryResult struct {
	Series []Series `json:"series"`
}

// VectorEntity is a vector with its primary key, optional metadata and optional times.
// TimestampMs is the entity's time (ms since the epoch), what a search's TimeRange and Decay
// look at; ExpiresAtMs is when it expires, overriding the collection's TTLMs (an expired entity
// is gone from Search and Get at once). 0 means unset for both. The wire protocol carries
// neither: WireClient rejects entities that have them.
type VectorEntity struct {
	PK          string         `json:"pk"`
	Vector      []float32      `json:"vector"`
	Metadata    map[string]any `json:"metadata,omitempty"`
	TimestampMs int64          `json:"timestamp_ms,omitempty"`
	ExpiresAtMs int64          `json:"expires_at_ms,omitempty"`
}

// AddResult answers Add; DeleteResult answers Delete.
type AddResult struct {
	Success bool   `json:"success"`
	LSN     uint64 `json:"lsn"`
}

type DeleteResult = AddResult

// BatchAddResult answers AddBatch.
type BatchAddResult struct {
	Success        bool   `json:"success"`
	VectorsWritten int64  `json:"vectors_written"`
	LSN            uint64 `json:"lsn"`
}

// Search is the body of POST /vectors/search. Filter: {field: value}, {field: {"$in": [...]}},
// {field: {"$gt"|"$gte"|"$lt"|"$lte": n}}. Ef 0 = the collection's ef_search. TimeRange keeps
// the entities whose TimestampMs is inside it; Decay favours recent entities; WithSeries sets
// each hit's Series. All three are HTTP only (WireClient.Search rejects them); nil = none.
type Search struct {
	Vector     []float32
	K          int
	Filter     map[string]any
	Ef         int
	TimeRange  *TimeRange
	Decay      *Decay
	WithSeries *WithSeries
}

// TimeRange is a search's window of entity times, inclusive: FromMs <= timestamp_ms <= ToMs.
// A bound of 0 is open (left out).
type TimeRange struct {
	FromMs int64 `json:"from_ms,omitempty"`
	ToMs   int64 `json:"to_ms,omitempty"`
}

// Decay is a search's recency decay: hits are ranked by distance − Weight · 2^(−age/HalfLifeMs),
// age being now minus the entity's timestamp_ms (no bonus without one). HalfLifeMs >= 1;
// Weight 0 to 1000, in units of the collection's distance.
type Decay struct {
	HalfLifeMs int64   `json:"half_life_ms"`
	Weight     float64 `json:"weight"`
}

// WithSeries asks a search for, on every hit whose metadata names a series (string fields
// "metric" and "entity"), that series' Aggregation (min max sum avg count first last) over the
// WindowMs ending now (1 ms to 100 years), across every series of that metric and entity
// whatever their tags (avg: the mean of every point).
type WithSeries struct {
	Aggregation string `json:"aggregation"`
	WindowMs    int64  `json:"window_ms"`
}

// HitSeries is a hit's series aggregate (Search.WithSeries): Value over
// FromMs <= timestamp_ms <= ToMs, nil when the window holds no point.
type HitSeries struct {
	Metric string   `json:"metric"`
	Entity string   `json:"entity"`
	FromMs int64    `json:"from_ms"`
	ToMs   int64    `json:"to_ms"`
	Value  *float64 `json:"value"`
}

// SearchResult is one hit, best first. TimestampMs and ExpiresAtMs are the entity's (0 when it
// has none); Rank is set only when the search asked for Decay: what the hits are ordered by,
// Distance less the recency bonus; Series only when it asked for WithSeries and the entity's
// metadata names a series.
type SearchResult struct {
	PK          string         `json:"pk"`
	Score       float64        `json:"score"`
	Distance    float64        `json:"distance"`
	Metadata    map[string]any `json:"metadata"`
	TimestampMs int64          `json:"timestamp_ms,omitempty"`
	ExpiresAtMs int64          `json:"expires_at_ms,omitempty"`
	Rank        *float64       `json:"rank,omitempty"`
	Series      *HitSeries     `json:"series,omitempty"`
}

// VectorBufferStats answers Vectors().GetBufferStats.
type VectorBufferStats struct {
	VectorsBuffered     int64   `json:"vectors_buffered"`
	VectorsFlushed      int64   `json:"vectors_flushed"`
	FlushCount          int64   `json:"flush_count"`
	AutoFlushCount      int64   `json:"auto_flush_count"`
	ManualFlushCount    int64   `json:"manual_flush_count"`
	CurrentBufferSize   int64   `json:"current_buffer_size"`
	CurrentBufferMemory int64   `json:"current_buffer_memory"`
	CompressionType     string  `json:"compression_type"`
	LastFlushTime       *string `json:"last_flush_time"`
	SnapshotCount       int64   `json:"snapshot_count"`
	LastSnapshotLSN     uint64  `json:"last_snapshot_lsn"`
}

// HnswSpec is a collection's index parameters.
type HnswSpec struct {
	M              int `json:"m"`
	EfConstruction int `json:"ef_construction"`
	EfSearch       int `json:"ef_search"`
}

// CreateCollection is the body of POST /v1/collections. Distance: cosine, l2, ip (default
// cosine); Precision: f32, f16, i8. TTLMs (1 ms to 100 years; 0 = none): entities written
// without ExpiresAtMs expire this long after they are written.
type CreateCollection struct {
	Name      string    `json:"name"`
	Dimension int       `json:"dimension"`
	Distance  string    `json:"distance,omitempty"`
	Precision string    `json:"precision,omitempty"`
	Hnsw      *HnswSpec `json:"hnsw,omitempty"`
	TTLMs     int64     `json:"ttl_ms,omitempty"`
}

// CollectionInfo describes a collection. TTLMs is 0 when its entities do not expire by default.
type CollectionInfo struct {
	Name       string   `json:"name"`
	Dimension  int      `json:"dimension"`
	Distance   string   `json:"distance"`
	Precision  string   `json:"precision"`
	Hnsw       HnswSpec `json:"hnsw"`
	TTLMs      int64    `json:"ttl_ms,omitempty"`
	Vectors    int64    `json:"vectors"`
	Buffered   int64    `json:"buffered"`
	IndexBytes int64    `json:"index_bytes"`
}

// CreateDatabase is the body of POST /v1/databases (RetentionMs 0 = the server's default).
type CreateDatabase struct {
	Name        string `json:"name"`
	RetentionMs int64  `json:"retention_ms,omitempty"`
	Policy      string `json:"policy,omitempty"`
	// Downsampling rules, by increasing age (docs/downsampling.md).
	Downsampling []DownsampleRule `json:"downsampling,omitempty"`
}

// DownsampleRule keeps points older than AfterMs only as buckets of ResolutionMs (min, max,
// sum, count, first, last), computed in the background.
type DownsampleRule struct {
	AfterMs      int64 `json:"after_ms"`
	ResolutionMs int64 `json:"resolution_ms"`
}

// DatabaseInfo describes a database.
type DatabaseInfo struct {
	Name         string           `json:"name"`
	RetentionMs  int64            `json:"retention_ms"`
	HasPolicy    bool             `json:"has_policy"`
	Downsampling []DownsampleRule `json:"downsampling"`
}

// ReplicaInfo names a replica.
type ReplicaInfo struct {
	ReplicaID string `json:"replica_id"`
	Endpoint  string `json:"endpoint"`
}

// ReplicaStatus is one replica as its primary sees it.
type ReplicaStatus struct {
	ReplicaID        string            `json:"replica_id"`
	Endpoint         string            `json:"endpoint"`
	LastConfirmedLSN string            `json:"last_confirmed_lsn"`
	LagBytes         uint64            `json:"lag_bytes"`
	LagMs            uint64            `json:"lag_ms"`
	IsHealthy        bool              `json:"is_healthy"`
	Databases        []json.RawMessage `json:"databases"`
	LastError        *string           `json:"last_error"`
	Fenced           bool              `json:"fenced"`
	SnapshotsSent    uint64            `json:"snapshots_sent"`
}

// ShippingStats are a primary's shipping totals.
type ShippingStats struct {
	TotalEntriesShipped    uint64  `json:"total_entries_shipped"`
	TotalBytesShipped      uint64  `json:"total_bytes_shipped"`
	TotalBytesUncompressed uint64  `json:"total_bytes_uncompressed"`
	AvgCompressionRatio    float64 `json:"avg_compression_ratio"`
	TotalBatches           uint64  `json:"total_batches"`
	FailedShips            uint64  `json:"failed_ships"`
}

// ReplicationStats answers GetReplicationStats. Replica is set on a replica (what it applied).
type ReplicationStats struct {
	Replicas         []ReplicaStatus `json:"replicas"`
	Stats            ShippingStats   `json:"stats"`
	Role             string          `json:"role"`
	NodeID           string          `json:"node_id"`
	Epoch            uint64          `json:"epoch"`
	CompressionType  string          `json:"compression_type"`
	CompressionLevel int             `json:"compression_level"`
	Replica          json.RawMessage `json:"replica,omitempty"`
}

// ReplicationConfig answers ConfigureCompression.
type ReplicationConfig struct {
	Success         bool   `json:"success"`
	CompressionType string `json:"compression_type"`
	Level           int    `json:"level"`
}

// PromoteResult answers Promote.
type PromoteResult struct {
	Success bool   `json:"success"`
	Role    string `json:"role"`
	Epoch   uint64 `json:"epoch"`
}

// Version answers Client.Version.
type Version struct {
	Name       string `json:"name"`
	Version    string `json:"version"`
	APIVersion string `json:"api_version"`
}
