//! The one configuration loader: embedded defaults, then a TOML file, then `SLUICE_*`
//! environment variables, then command-line flags (each layer overrides the one before).
//!
//! Every key has a default (see [`Config::default`] and `docs/configuration.md`). Every key also
//! has an environment variable named `SLUICE_` + its path in upper case with `.` → `_`
//! (`wal.segment_size_bytes` → `SLUICE_WAL_SEGMENT_SIZE_BYTES`); a few keys also answer to the
//! names the seeds use ([`ENV_ALIASES`]). Env values are parsed as the key's type. Unknown keys
//! in the file are errors, so a typo never silently leaves a default in force.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The effective configuration of a server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Directory holding every database's WAL and data.
    pub data_dir: PathBuf,
    /// Allow binding a non-loopback address while authentication is off.
    pub unauthenticated: bool,
    /// `primary` takes writes and ships its WAL to its replicas; `replica` applies a
    /// primary's WAL and serves reads only.
    pub role: Role,
    pub replication: ReplicationSection,
    pub http: HttpConfig,
    pub wire: WireConfig,
    pub wal: WalSection,
    pub limits: LimitsConfig,
    pub ts: TsSection,
    pub vector: VectorSection,
    pub features: FeaturesConfig,
    pub log: LogConfig,
    pub auth: AuthConfig,
    pub admission: AdmissionConfig,
    pub monitoring: MonitoringConfig,
    /// `[databases.<name>]`: the catalogue of databases (see `catalogue.rs`); rewritten by
    /// runtime create/delete.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub databases: std::collections::BTreeMap<String, crate::catalogue::DatabaseSettings>,
    /// The file this configuration was loaded from (not a setting).
    #[serde(skip)]
    pub config_file: Option<PathBuf>,
}

/// `[monitoring]`: the server's own metrics kept as data (see `monitoring.rs`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MonitoringConfig {
    /// Every this many ms the server writes its own metrics (what `/metrics` shows) into the
    /// database `_monitoring`, so dashboards need no other data source; 0 (the default) turns
    /// it off. At least 1000 when on.
    pub self_scrape_interval_ms: u64,
    /// The retention of `_monitoring` when the server creates it (default 7 days).
    pub retention_ms: u64,
    /// Ship `_monitoring` to replicas like any other database. Off by default: each node
    /// keeps its own. A replica with this on does not scrape itself (its `_monitoring` is
    /// the primary's); set it the same on every node.
    pub replicate: bool,
}

impl Default for MonitoringConfig {
    fn default() -> Self {
        MonitoringConfig {
            self_scrape_interval_ms: 0,
            retention_ms: 7 * 24 * 3600 * 1000,
            replicate: false,
        }
    }
}

impl MonitoringConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.self_scrape_interval_ms != 0 && self.self_scrape_interval_ms < 1000 {
            return Err(invalid(
                "monitoring.self_scrape_interval_ms must be 0 (off) or at least 1000",
            ));
        }
        if self.retention_ms == 0 {
            return Err(invalid(
                "monitoring.retention_ms must be greater than 0 (the server's own metrics are not kept forever)",
            ));
        }
        Ok(())
    }
}

/// What a node does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    #[default]
    Primary,
    Replica,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
        }
    }
}

/// `[replication]`: compressed WAL shipping (see `replication/mod.rs`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplicationSection {
    /// This node's id, sent as `X-Primary-ID` (empty: one is generated and kept in
    /// `<data_dir>/replication.json`).
    pub node_id: String,
    /// This node's HTTP base URL as others reach it; a replica names it when refusing writes.
    pub advertise_url: String,
    /// `zstd` or `none`. Env also `SLUICE_WAL_COMPRESSION`.
    pub compression: String,
    /// zstd level, 1 to 22. Env also `SLUICE_WAL_COMPRESSION_LEVEL`.
    pub compression_level: i32,
    /// Bearer token the primary presents to its replicas (an admin token there).
    pub token: String,
    /// Most WAL record bytes in one shipped batch.
    pub max_batch_bytes: usize,
    /// WAL kept for one replica beyond the checkpoint, in bytes; a replica further behind is
    /// caught up by a snapshot instead.
    pub max_retained_wal_bytes: u64,
    /// Timeout of one shipping request.
    pub ship_timeout_ms: u64,
    /// Longest wait between retries to an unreachable replica.
    pub retry_max_ms: u64,
    /// A changefeed subscriber that accepts nothing for this long is disconnected (it resumes
    /// from its last event id).
    pub changefeed_stall_timeout_ms: u64,
    /// Replicas to ship to, besides those registered at runtime.
    pub replicas: Vec<ReplicaEntry>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaEntry {
    pub replica_id: String,
    pub endpoint: String,
}

impl Default for ReplicationSection {
    fn default() -> Self {
        ReplicationSection {
            node_id: String::new(),
            advertise_url: String::new(),
            compression: "zstd".into(),
            compression_level: 3,
            token: String::new(),
            max_batch_bytes: 1024 * 1024,
            max_retained_wal_bytes: 1024 * 1024 * 1024,
            ship_timeout_ms: 10_000,
            retry_max_ms: 5_000,
            changefeed_stall_timeout_ms: 10_000,
            replicas: Vec::new(),
        }
    }
}

/// `[auth]`: credentials and policies. No tokens and no JWT key = dev mode (open).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// JSON file of bearer tokens: `{"actor": "token"}` or
    /// `{"actor": {"token": "…", "roles": {"*": "reader", "db1": "writer"}}}`; a token may be
    /// written as `sha256:<hex>` (`sluice token hash`). Env: `SLUICE_BEARER_TOKENS_FILE`.
    pub bearer_tokens_file: String,
    /// The same JSON, inline. Env: `SLUICE_BEARER_TOKENS_JSON`.
    pub bearer_tokens_json: String,
    /// One token for actor `default`, admin everywhere. Env: `SLUICE_BEARER_TOKEN`.
    pub bearer_token: String,
    /// Serve `/metrics` without credentials.
    pub public_metrics: bool,
    /// Server-level Cedar policies (file).
    pub cedar_policy_file: String,
    pub jwt: JwtConfig,
}

/// `[auth.jwt]`: JWT bearer tokens.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JwtConfig {
    /// HS256 shared secret (at least 32 bytes).
    pub hs256_secret: String,
    /// RS256 public key (PEM file).
    pub rs256_public_key_file: String,
    /// ES256 (P-256) public key (PEM file).
    pub es256_public_key_file: String,
    /// JWKS file; every key must name its `alg` (HS256, RS256 or ES256).
    pub jwks_file: String,
    /// Required `iss` (empty = not checked).
    pub issuer: String,
    /// Required `aud` (empty = not checked).
    pub audience: String,
    /// Claim naming the actor.
    pub actor_claim: String,
    /// Claim holding the roles: `"reader"` or `{"*": "reader", "db1": "writer"}`.
    pub roles_claim: String,
    /// Clock skew allowed when checking `exp` and `nbf`.
    pub leeway_sec: u64,
}

/// `[admission]`: per-actor admission control and load shedding.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdmissionConfig {
    pub enabled: bool,
    /// Requests one actor may have in flight; more → 429.
    pub max_in_flight_per_actor: usize,
    /// Request body bytes (as read, after decompression) one actor may hold in flight; more → 429.
    pub max_in_flight_bytes_per_actor: usize,
    /// Token-bucket refill rate per actor, requests per second (0 = no rate limit).
    pub rate_limit_per_sec: u64,
    /// Token-bucket size per actor (burst).
    pub rate_limit_burst: u64,
    /// Requests in flight on the whole server; more → 503 (load shedding).
    pub max_in_flight_total: usize,
    /// An actor idle this long with nothing in flight is forgotten.
    pub idle_actor_evict_ms: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            bearer_tokens_file: String::new(),
            bearer_tokens_json: String::new(),
            bearer_token: String::new(),
            public_metrics: true,
            cedar_policy_file: String::new(),
            jwt: JwtConfig::default(),
        }
    }
}

impl Default for JwtConfig {
    fn default() -> Self {
        JwtConfig {
            hs256_secret: String::new(),
            rs256_public_key_file: String::new(),
            es256_public_key_file: String::new(),
            jwks_file: String::new(),
            issuer: String::new(),
            audience: String::new(),
            actor_claim: "sub".into(),
            roles_claim: "roles".into(),
            leeway_sec: 30,
        }
    }
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        AdmissionConfig {
            enabled: true,
            max_in_flight_per_actor: 512,
            max_in_flight_bytes_per_actor: 256 * 1024 * 1024,
            rate_limit_per_sec: 100_000,
            rate_limit_burst: 200_000,
            max_in_flight_total: 8192,
            idle_actor_evict_ms: 60_000,
        }
    }
}

/// `[ts]`: the time-series engine of every database.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TsSection {
    /// Points older than this are dropped from queries and storage; 0 keeps everything.
    pub retention_ms: u64,
    /// How often chunks past retention are deleted (a sweep in steps, off the flusher).
    pub retention_sweep_interval_ms: u64,
    /// Most points one query may collect before aggregation.
    pub max_query_points: usize,
    /// A series' chunk is closed at this many points.
    pub chunk_target_points: usize,
    /// Most series one database may hold; writes that would add more get 422.
    pub max_series: usize,
    /// Most new series one database may create in any hour (0: no limit); writes that would
    /// create more get 429 with Retry-After.
    pub max_new_series_per_hour: usize,
    /// Samples one PromQL query may read (Prometheus's `--query.max-samples`).
    pub promql_max_samples: usize,
    /// Longest a PromQL query may run; a request's `timeout` may only shorten it.
    pub promql_timeout_ms: u64,
    /// How far back a PromQL instant selector looks for a sample.
    pub promql_lookback_delta_ms: u64,
}

/// `[vector]`: the vector engine of every database.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VectorSection {
    /// Dimension of collection `default`; 0 takes it from its first insert.
    pub default_dimension: usize,
    /// Distance of collection `default`: `cosine`, `l2` or `ip`.
    pub default_distance: sluice_vector::Distance,
    /// Storage precision of collection `default`: `f32`, `f16` or `i8`.
    pub default_precision: sluice_vector::Precision,
    /// HNSW parameters of collection `default`, and of new collections that do not say.
    pub hnsw_m: usize,
    pub hnsw_ef_construction: usize,
    pub hnsw_ef_search: usize,
    /// Largest dimension a collection may have.
    pub max_dimension: usize,
    /// Largest `k` a search may ask for.
    pub max_k: usize,
    /// Most collections per database.
    pub max_collections: usize,
    /// Longest pk, in characters (formerly `max_pk_bytes`, still read).
    #[serde(alias = "max_pk_bytes")]
    pub max_pk_chars: usize,
    /// Largest metadata object, in bytes of JSON.
    pub max_metadata_bytes: usize,
    /// Most vectors in one batch request.
    pub max_vectors_per_batch: usize,
    /// Snapshot the indexes after this many operations since the last snapshot...
    pub snapshot_after_ops: u64,
    /// ...or when anything changed and the last snapshot is this old.
    pub snapshot_interval_ms: u64,
    /// Threads applying a flush or a batch to an index; 0 = one per core.
    pub apply_threads: usize,
    /// How often expired entities are removed from the indexes (they are hidden from reads
    /// the moment they expire).
    pub ttl_sweep_interval_ms: u64,
}

/// `[features]`: the seed's feature blocks.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeaturesConfig {
    pub ts_auto_buffer: TsAutoBufferConfig,
    pub vector_auto_buffer: VectorAutoBufferConfig,
}

/// `[features.vector_auto_buffer]` (seed keys).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VectorAutoBufferConfig {
    /// When false, the buffered vector routes act like the direct ones.
    pub enabled: bool,
    /// Flush when the buffer holds this many operations.
    pub max_vectors_per_buffer: usize,
    /// Flush when the oldest buffered operation is this old.
    pub flush_interval_ms: u64,
    /// Flush when the buffer's estimated memory reaches this.
    pub max_buffer_bytes: usize,
    /// Refuse buffered writes (503 "Buffer overflow") while buffered plus flushing memory is
    /// at or above this.
    pub overflow_buffer_bytes: usize,
}

/// `[features.ts_auto_buffer]` (seed keys).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TsAutoBufferConfig {
    /// When false, `/ts/put/buffered` acts like `/ts/put` (acknowledged at fsync).
    pub enabled: bool,
    /// Flush when the buffer holds this many points.
    pub max_points_per_buffer: usize,
    /// Flush when the oldest buffered point is this old.
    pub flush_interval_ms: u64,
    /// Flush when the buffer's estimated memory reaches this.
    pub max_buffer_bytes: usize,
    /// Refuse writes (503 "Buffer overflow") while buffered plus flushing memory is at or
    /// above this.
    pub overflow_buffer_bytes: usize,
    /// Count-triggered flushes start at most this often (0: at once).
    pub min_flush_gap_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address of the HTTP API.
    pub addr: SocketAddr,
    /// Runtime worker threads serving HTTP and running handlers; 0 = one per core.
    pub network_threads: usize,
    /// Time a client has to send a complete request head. The same timer bounds how long an
    /// idle keep-alive connection is kept (like the seed's `keepalive_timeout_sec = 30`), so
    /// client pools should drop idle connections sooner. Slowloris defence together with
    /// `max_connections`.
    pub header_read_timeout_ms: u64,
    /// Time a client has to send a complete request body once the head is read.
    pub body_read_timeout_ms: u64,
    /// Connections served at once; further clients wait in the accept backlog.
    pub max_connections: usize,
    /// Body limit of ordinary routes.
    pub max_body_bytes: usize,
    /// Body limit of batch and import routes.
    pub max_batch_body_bytes: usize,
    /// Deepest nesting of arrays and objects accepted in a JSON body.
    pub max_json_depth: usize,
    /// On shutdown, time given to open connections to finish before they are cut.
    pub shutdown_grace_ms: u64,
    /// TLS certificate chain (PEM). With `tls_key_file`, HTTP is served over TLS 1.3 only,
    /// with ALPN `h2` and `http/1.1`.
    pub tls_cert_file: String,
    /// TLS private key (PEM).
    pub tls_key_file: String,
    /// Compress responses (gzip, br, zstd) when the client accepts it.
    pub compression: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WireConfig {
    /// Address of the binary wire protocol listener.
    pub addr: SocketAddr,
    /// Largest frame payload; a longer frame gets an error frame and the connection closes.
    pub max_frame_bytes: usize,
    /// Connections served at once; more wait in the accept backlog.
    pub max_connections: usize,
    /// A connection with no request for this long is closed.
    pub idle_timeout_ms: u64,
}

/// `[wal]`: the write-ahead log of every database.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WalSection {
    pub segment_size_bytes: u64,
    /// Records waiting for the writer before writes are refused with 503.
    pub queue_capacity: usize,
    /// Payload bytes waiting for the writer before writes are refused with 503.
    pub queue_capacity_bytes: usize,
    pub max_batch_records: usize,
    pub max_batch_bytes: usize,
    /// Longest time a write acknowledged at `buffer` or `wal` stays unsynced.
    pub flush_interval_ms: u64,
}

/// `[limits]`: bounds on what one request may carry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Points in one batch request.
    pub max_points_per_batch: usize,
    /// Characters of a metric or entity name (formerly `max_name_bytes`, still read).
    #[serde(alias = "max_name_bytes")]
    pub max_name_chars: usize,
    /// Tags on one point.
    pub max_tags_per_point: usize,
    /// Characters of a tag key or value (formerly `max_tag_bytes`, still read).
    #[serde(alias = "max_tag_bytes")]
    pub max_tag_chars: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter directive, e.g. `info` or `sluice_server=debug,info`.
    pub level: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./sluice-data"),
            unauthenticated: false,
            role: Role::Primary,
            replication: ReplicationSection::default(),
            http: HttpConfig::default(),
            wire: WireConfig::default(),
            wal: WalSection::default(),
            limits: LimitsConfig::default(),
            ts: TsSection::default(),
            vector: VectorSection::default(),
            features: FeaturesConfig::default(),
            log: LogConfig::default(),
            auth: AuthConfig::default(),
            admission: AdmissionConfig::default(),
            monitoring: MonitoringConfig::default(),
            databases: Default::default(),
            config_file: None,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            network_threads: 0,
            header_read_timeout_ms: 30_000,
            body_read_timeout_ms: 30_000,
            max_connections: 10_000,
            max_body_bytes: 1024 * 1024,
            max_batch_body_bytes: 32 * 1024 * 1024,
            max_json_depth: 32,
            shutdown_grace_ms: 10_000,
            tls_cert_file: String::new(),
            tls_key_file: String::new(),
            compression: true,
        }
    }
}

impl Default for WireConfig {
    fn default() -> Self {
        WireConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 18765)),
            max_frame_bytes: 32 * 1024 * 1024,
            max_connections: 10_000,
            idle_timeout_ms: 300_000,
        }
    }
}

impl Default for WalSection {
    fn default() -> Self {
        let d = sluice_wal::WalConfig::default();
        WalSection {
            segment_size_bytes: d.segment_size_bytes,
            queue_capacity: d.queue_capacity,
            queue_capacity_bytes: d.queue_capacity_bytes,
            max_batch_records: d.max_batch_records,
            max_batch_bytes: d.max_batch_bytes,
            flush_interval_ms: d.flush_interval_ms,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let d = sluice_ts::PointLimits::default();
        LimitsConfig {
            max_points_per_batch: 100_000,
            max_name_chars: d.max_name_chars,
            max_tags_per_point: d.max_tags,
            max_tag_chars: d.max_tag_chars,
        }
    }
}

impl Default for TsSection {
    fn default() -> Self {
        let d = sluice_ts::TsConfig::default();
        TsSection {
            retention_ms: d.retention_ms,
            retention_sweep_interval_ms: d.retention_sweep_interval_ms,
            max_query_points: d.max_query_points,
            chunk_target_points: d.chunk_target_points,
            max_series: d.max_series,
            max_new_series_per_hour: d.max_new_series_per_hour,
            promql_max_samples: 50_000_000,
            promql_timeout_ms: 120_000,
            promql_lookback_delta_ms: 300_000,
        }
    }
}

impl Default for VectorSection {
    fn default() -> Self {
        let d = sluice_vector::VectorConfig::default();
        VectorSection {
            default_dimension: d.default_dimension,
            default_distance: d.default_distance,
            default_precision: d.default_precision,
            hnsw_m: d.default_hnsw.m,
            hnsw_ef_construction: d.default_hnsw.ef_construction,
            hnsw_ef_search: d.default_hnsw.ef_search,
            max_dimension: d.max_dimension,
            max_k: d.max_k,
            max_collections: d.max_collections,
            max_pk_chars: d.max_pk_chars,
            max_metadata_bytes: d.max_metadata_bytes,
            max_vectors_per_batch: 10_000,
            snapshot_after_ops: d.snapshot_after_ops,
            snapshot_interval_ms: d.snapshot_interval_ms,
            apply_threads: 0,
            ttl_sweep_interval_ms: 60_000,
        }
    }
}

impl Default for VectorAutoBufferConfig {
    fn default() -> Self {
        let d = sluice_vector::engine::AutoBufferConfig::default();
        VectorAutoBufferConfig {
            enabled: d.enabled,
            max_vectors_per_buffer: d.max_vectors_per_buffer,
            flush_interval_ms: d.flush_interval_ms,
            max_buffer_bytes: d.max_buffer_bytes,
            overflow_buffer_bytes: d.overflow_buffer_bytes,
        }
    }
}

impl Default for TsAutoBufferConfig {
    fn default() -> Self {
        let d = sluice_ts::AutoBufferConfig::default();
        TsAutoBufferConfig {
            enabled: d.enabled,
            max_points_per_buffer: d.max_points_per_buffer,
            flush_interval_ms: d.flush_interval_ms,
            max_buffer_bytes: d.max_buffer_bytes,
            overflow_buffer_bytes: d.overflow_buffer_bytes,
            min_flush_gap_ms: d.min_flush_gap_ms,
        }
    }
}

impl Config {
    /// The time-series engine's settings.
    pub fn ts_config(&self) -> sluice_ts::TsConfig {
        let ab = &self.features.ts_auto_buffer;
        sluice_ts::TsConfig {
            auto_buffer: sluice_ts::AutoBufferConfig {
                enabled: ab.enabled,
                max_points_per_buffer: ab.max_points_per_buffer,
                flush_interval_ms: ab.flush_interval_ms,
                max_buffer_bytes: ab.max_buffer_bytes,
                overflow_buffer_bytes: ab.overflow_buffer_bytes,
                min_flush_gap_ms: ab.min_flush_gap_ms,
            },
            retention_ms: self.ts.retention_ms,
            retention_rules: Vec::new(),
            retention_sweep_interval_ms: self.ts.retention_sweep_interval_ms,
            max_query_points: self.ts.max_query_points,
            chunk_target_points: self.ts.chunk_target_points,
            max_series: self.ts.max_series,
            max_new_series_per_hour: self.ts.max_new_series_per_hour,
            point_limits: self.limits.point_limits(),
            downsampling: Vec::new(),
        }
    }
}

impl Config {
    /// The vector engine's settings.
    pub fn vector_config(&self) -> sluice_vector::VectorConfig {
        let ab = &self.features.vector_auto_buffer;
        let v = &self.vector;
        let d = sluice_vector::VectorConfig::default();
        sluice_vector::VectorConfig {
            auto_buffer: sluice_vector::engine::AutoBufferConfig {
                enabled: ab.enabled,
                max_vectors_per_buffer: ab.max_vectors_per_buffer,
                flush_interval_ms: ab.flush_interval_ms,
                max_buffer_bytes: ab.max_buffer_bytes,
                overflow_buffer_bytes: ab.overflow_buffer_bytes,
            },
            default_dimension: v.default_dimension,
            default_distance: v.default_distance,
            default_precision: v.default_precision,
            default_hnsw: sluice_vector::HnswParams {
                m: v.hnsw_m,
                ef_construction: v.hnsw_ef_construction,
                ef_search: v.hnsw_ef_search,
            },
            max_dimension: v.max_dimension,
            max_k: v.max_k,
            max_collections: v.max_collections,
            max_pk_chars: v.max_pk_chars,
            max_metadata_bytes: v.max_metadata_bytes,
            snapshot_after_ops: v.snapshot_after_ops,
            snapshot_interval_ms: v.snapshot_interval_ms,
            apply_threads: if v.apply_threads == 0 {
                d.apply_threads
            } else {
                v.apply_threads
            },
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".to_string(),
        }
    }
}

impl WalSection {
    pub fn to_wal_config(&self) -> sluice_wal::WalConfig {
        sluice_wal::WalConfig {
            segment_size_bytes: self.segment_size_bytes,
            queue_capacity: self.queue_capacity,
            queue_capacity_bytes: self.queue_capacity_bytes,
            max_batch_records: self.max_batch_records,
            max_batch_bytes: self.max_batch_bytes,
            flush_interval_ms: self.flush_interval_ms,
        }
    }
}

impl LimitsConfig {
    pub fn point_limits(&self) -> sluice_ts::PointLimits {
        sluice_ts::PointLimits {
            max_name_chars: self.max_name_chars,
            max_tags: self.max_tags_per_point,
            max_tag_chars: self.max_tag_chars,
        }
    }
}

/// Environment names the seeds use, mapped to our keys (besides the derived `SLUICE_<PATH>`).
/// Largest character limit on a string (name, tag, pk): four UTF-8 bytes a character must
/// fit the wire protocol's u16 byte lengths.
pub const MAX_CHARS_LIMIT: usize = u16::MAX as usize / 4;

pub const ENV_ALIASES: &[(&str, &str)] = &[
    // The limits count characters since they are stated in the OpenAPI document; their old
    // byte-named variables still work.
    ("SLUICE_LIMITS_MAX_NAME_BYTES", "limits.max_name_chars"),
    ("SLUICE_LIMITS_MAX_TAG_BYTES", "limits.max_tag_chars"),
    ("SLUICE_VECTOR_MAX_PK_BYTES", "vector.max_pk_chars"),
    ("SLUICE_BEARER_TOKENS_FILE", "auth.bearer_tokens_file"),
    ("SLUICE_BEARER_TOKENS_JSON", "auth.bearer_tokens_json"),
    ("SLUICE_BEARER_TOKEN", "auth.bearer_token"),
    ("SLUICE_WAL_COMPRESSION", "replication.compression"),
    (
        "SLUICE_WAL_COMPRESSION_LEVEL",
        "replication.compression_level",
    ),
    (
        "SLUICE_TS_AUTO_BUFFER_ENABLED",
        "features.ts_auto_buffer.enabled",
    ),
    (
        "SLUICE_TS_AUTO_BUFFER_MAX_POINTS",
        "features.ts_auto_buffer.max_points_per_buffer",
    ),
    (
        "SLUICE_TS_AUTO_BUFFER_FLUSH_INTERVAL_MS",
        "features.ts_auto_buffer.flush_interval_ms",
    ),
    (
        "SLUICE_TS_AUTO_BUFFER_MAX_BUFFER_BYTES",
        "features.ts_auto_buffer.max_buffer_bytes",
    ),
    (
        "SLUICE_VECTOR_AUTO_BUFFER_ENABLED",
        "features.vector_auto_buffer.enabled",
    ),
    (
        "SLUICE_VECTOR_AUTO_BUFFER_MAX_VECTORS",
        "features.vector_auto_buffer.max_vectors_per_buffer",
    ),
    (
        "SLUICE_VECTOR_AUTO_BUFFER_FLUSH_INTERVAL_MS",
        "features.vector_auto_buffer.flush_interval_ms",
    ),
    (
        "SLUICE_VECTOR_AUTO_BUFFER_MAX_BUFFER_BYTES",
        "features.vector_auto_buffer.max_buffer_bytes",
    ),
];

/// `SLUICE_*` variables that are not configuration keys (read by other parts of the program:
/// `SLUICE_URL` (or the older `SLUICE_SERVER`) is the server the client commands talk to,
/// `SLUICE_TOKEN` their token, `SLUICE_CA_CERT` the certificates they trust for https).
pub const ENV_NOT_CONFIG: &[&str] = &[
    "SLUICE_SERVER",
    "SLUICE_URL",
    "SLUICE_TOKEN",
    "SLUICE_CA_CERT",
];

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("environment variable {var}={value:?}: {message}")]
    Env {
        var: String,
        value: String,
        message: String,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Values given on the command line; `None` leaves the lower layers in force.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub http_addr: Option<SocketAddr>,
    pub wire_addr: Option<SocketAddr>,
    pub unauthenticated: bool,
    pub role: Option<Role>,
}

impl Config {
    /// Loads defaults ← `file` ← `env` ← `overrides`, then checks the result.
    pub fn load(
        file: Option<&std::path::Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        let defaults = toml::Value::try_from(Config::default())
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let mut merged = defaults.clone();

        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            let file_value: toml::Value = toml::from_str(&text).map_err(|e| ConfigError::File {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
            merge(&mut merged, file_value);
            // Check the file alone for unknown keys and wrong types, so the message names it.
            toml::Value::try_into::<Config>(merged.clone()).map_err(|e| ConfigError::File {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        }

        let keys = leaf_keys(&defaults);
        for (var, value) in env {
            let Some(key) = env_key(&var, &keys) else {
                if var.starts_with("SLUICE_") && !ENV_NOT_CONFIG.contains(&var.as_str()) {
                    return Err(ConfigError::Env {
                        var,
                        value,
                        message: "no such setting (see docs/configuration.md)".into(),
                    });
                }
                continue;
            };
            let env_err = |message: String| ConfigError::Env {
                var: var.clone(),
                value: value.clone(),
                message,
            };
            let default_leaf =
                lookup(&defaults, &key).ok_or_else(|| env_err("unknown key".into()))?;
            let parsed = parse_like(default_leaf, &value).map_err(env_err)?;
            set(&mut merged, &key, parsed);
        }

        let mut config: Config = merged
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid(e.to_string()))?;
        if let Some(d) = &overrides.data_dir {
            config.data_dir = d.clone();
        }
        if let Some(a) = overrides.http_addr {
            config.http.addr = a;
        }
        if let Some(a) = overrides.wire_addr {
            config.wire.addr = a;
        }
        config.unauthenticated |= overrides.unauthenticated;
        if let Some(role) = overrides.role {
            config.role = role;
        }
        config.config_file = file.map(std::path::Path::to_path_buf);
        config.validate()?;
        Ok(config)
    }

    /// Checks relations between keys that types alone cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.http.validate()?;
        self.wire.validate()?;
        self.wal.validate()?;
        self.limits.validate()?;
        self.replication.validate()?;
        self.features.validate()?;
        self.vector.validate()?;
        self.ts.validate()?;
        self.admission.validate()?;
        self.monitoring.validate()?;
        for name in self.databases.keys() {
            if !crate::catalogue::known_name(name) {
                return Err(invalid(format!(
                    "[databases.{name}]: invalid database name (lower-case letters, digits, _ and -, at most 64 bytes)"
                )));
            }
        }
        Ok(())
    }

    /// The effective configuration as TOML (`sluice config print`).
    /// Secrets (tokens, the JWT secret) are shown as `<redacted>`.
    pub fn to_toml(&self) -> String {
        let mut shown = self.clone();
        for secret in [
            &mut shown.auth.bearer_token,
            &mut shown.auth.bearer_tokens_json,
            &mut shown.auth.jwt.hs256_secret,
            &mut shown.replication.token,
        ] {
            if !secret.is_empty() {
                *secret = "<redacted>".into();
            }
        }
        // Serializing a struct of plain fields cannot fail; an empty string would be a bug
        // caught by the config tests.
        toml::to_string_pretty(&shown).unwrap_or_default()
    }

    /// The environment variable that sets each key, in key order (for docs and tests).
    pub fn env_vars() -> Vec<(String, String)> {
        let defaults =
            toml::Value::try_from(Config::default()).unwrap_or(toml::Value::Boolean(false));
        leaf_keys(&defaults)
            .into_iter()
            .map(|k| (env_name(&k), k))
            .collect()
    }
}

fn env_name(key: &str) -> String {
    format!("SLUICE_{}", key.replace('.', "_").to_uppercase())
}

fn env_key(var: &str, keys: &[String]) -> Option<String> {
    if let Some((_, key)) = ENV_ALIASES.iter().find(|(alias, _)| *alias == var) {
        return Some((*key).to_string());
    }
    if !var.starts_with("SLUICE_") {
        return None;
    }
    keys.iter().find(|k| env_name(k) == var).cloned()
}

fn leaf_keys(v: &toml::Value) -> Vec<String> {
    fn walk(v: &toml::Value, prefix: &str, out: &mut Vec<String>) {
        match v {
            toml::Value::Table(t) => {
                for (k, child) in t {
                    let path = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(child, &path, out);
                }
            }
            _ => out.push(prefix.to_string()),
        }
    }
    let mut out = Vec::new();
    walk(v, "", &mut out);
    out
}

fn lookup<'a>(v: &'a toml::Value, key: &str) -> Option<&'a toml::Value> {
    key.split('.').try_fold(v, |v, part| v.get(part))
}

fn set(v: &mut toml::Value, key: &str, value: toml::Value) {
    let mut cur = v;
    let parts: Vec<&str> = key.split('.').collect();
    for part in &parts[..parts.len() - 1] {
        let toml::Value::Table(t) = cur else { return };
        cur = t
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(Default::default()));
    }
    if let toml::Value::Table(t) = cur {
        t.insert(parts[parts.len() - 1].to_string(), value);
    }
}

fn merge(base: &mut toml::Value, over: toml::Value) {
    match (base, over) {
        (toml::Value::Table(b), toml::Value::Table(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

fn parse_like(like: &toml::Value, raw: &str) -> Result<toml::Value, String> {
    match like {
        toml::Value::String(_) => Ok(toml::Value::String(raw.to_string())),
        toml::Value::Integer(_) => raw
            .trim()
            .parse::<i64>()
            .map(toml::Value::Integer)
            .map_err(|_| "expected an integer".to_string()),
        toml::Value::Float(_) => raw
            .trim()
            .parse::<f64>()
            .map(toml::Value::Float)
            .map_err(|_| "expected a number".to_string()),
        toml::Value::Boolean(_) => match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(toml::Value::Boolean(true)),
            "false" | "0" | "no" | "off" => Ok(toml::Value::Boolean(false)),
            _ => Err("expected true or false".to_string()),
        },
        _ => Err("this key cannot be set from the environment".to_string()),
    }
}

fn invalid(message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(message.into())
}

/// Refuses the first key whose value is 0.
fn positive(keys: &[(&str, u64)]) -> Result<(), ConfigError> {
    match keys.iter().find(|(_, v)| *v == 0) {
        Some((key, _)) => Err(invalid(format!("{key} must be greater than 0"))),
        None => Ok(()),
    }
}

// Each section validates itself; `Config::validate` calls them in turn.

impl HttpConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        positive(&[
            ("http.max_connections", self.max_connections as u64),
            ("http.max_body_bytes", self.max_body_bytes as u64),
            (
                "http.max_batch_body_bytes",
                self.max_batch_body_bytes as u64,
            ),
            ("http.max_json_depth", self.max_json_depth as u64),
            ("http.header_read_timeout_ms", self.header_read_timeout_ms),
            ("http.body_read_timeout_ms", self.body_read_timeout_ms),
        ])?;
        if self.tls_cert_file.is_empty() != self.tls_key_file.is_empty() {
            return Err(invalid(
                "http.tls_cert_file and http.tls_key_file must be set together",
            ));
        }
        Ok(())
    }
}

impl WireConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        positive(&[
            ("wire.max_frame_bytes", self.max_frame_bytes as u64),
            ("wire.max_connections", self.max_connections as u64),
            ("wire.idle_timeout_ms", self.idle_timeout_ms),
        ])
    }
}

impl WalSection {
    fn validate(&self) -> Result<(), ConfigError> {
        positive(&[
            ("wal.segment_size_bytes", self.segment_size_bytes),
            ("wal.queue_capacity", self.queue_capacity as u64),
            ("wal.max_batch_records", self.max_batch_records as u64),
            ("wal.max_batch_bytes", self.max_batch_bytes as u64),
            ("wal.flush_interval_ms", self.flush_interval_ms),
        ])?;
        const MIN_SEGMENT_BYTES: u64 = 1024 * 1024;
        if self.segment_size_bytes < MIN_SEGMENT_BYTES {
            return Err(invalid(format!(
                "wal.segment_size_bytes must be at least {MIN_SEGMENT_BYTES}"
            )));
        }
        Ok(())
    }
}

impl LimitsConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        positive(&[
            (
                "limits.max_points_per_batch",
                self.max_points_per_batch as u64,
            ),
            ("limits.max_name_chars", self.max_name_chars as u64),
            ("limits.max_tag_chars", self.max_tag_chars as u64),
        ])?;
        // In characters: up to four bytes each, and the wire protocol carries u16 byte lengths.
        if self.max_name_chars > MAX_CHARS_LIMIT || self.max_tag_chars > MAX_CHARS_LIMIT {
            return Err(invalid(
                "limits.max_name_chars and limits.max_tag_chars must be at most 16383",
            ));
        }
        if self.max_tags_per_point > u16::MAX as usize {
            return Err(invalid("limits.max_tags_per_point must be at most 65535"));
        }
        Ok(())
    }
}

impl ReplicationSection {
    fn validate(&self) -> Result<(), ConfigError> {
        crate::replication::check_compression(&self.compression, self.compression_level)
            .map_err(|e| invalid(format!("replication: {e}")))?;
        positive(&[
            ("replication.max_batch_bytes", self.max_batch_bytes as u64),
            ("replication.ship_timeout_ms", self.ship_timeout_ms),
            ("replication.retry_max_ms", self.retry_max_ms),
            (
                "replication.changefeed_stall_timeout_ms",
                self.changefeed_stall_timeout_ms,
            ),
        ])?;
        for e in &self.replicas {
            crate::replication::check_replica(&e.replica_id, &e.endpoint)
                .map_err(|m| invalid(format!("replication.replicas: {m}")))?;
        }
        Ok(())
    }
}

impl FeaturesConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let ab = &self.ts_auto_buffer;
        if ab.max_points_per_buffer == 0 || ab.flush_interval_ms == 0 || ab.max_buffer_bytes == 0 {
            return Err(invalid(
                "features.ts_auto_buffer thresholds must be greater than 0",
            ));
        }
        if ab.overflow_buffer_bytes <= ab.max_buffer_bytes {
            return Err(invalid(
                "features.ts_auto_buffer.overflow_buffer_bytes must exceed max_buffer_bytes",
            ));
        }
        let vb = &self.vector_auto_buffer;
        if vb.max_vectors_per_buffer == 0 || vb.flush_interval_ms == 0 || vb.max_buffer_bytes == 0 {
            return Err(invalid(
                "features.vector_auto_buffer thresholds must be greater than 0",
            ));
        }
        if vb.overflow_buffer_bytes <= vb.max_buffer_bytes {
            return Err(invalid(
                "features.vector_auto_buffer.overflow_buffer_bytes must exceed max_buffer_bytes",
            ));
        }
        Ok(())
    }
}

impl VectorSection {
    fn validate(&self) -> Result<(), ConfigError> {
        positive(&[
            ("vector.max_dimension", self.max_dimension as u64),
            ("vector.max_k", self.max_k as u64),
            ("vector.max_collections", self.max_collections as u64),
            ("vector.max_pk_chars", self.max_pk_chars as u64),
            ("vector.max_metadata_bytes", self.max_metadata_bytes as u64),
            (
                "vector.max_vectors_per_batch",
                self.max_vectors_per_batch as u64,
            ),
            ("vector.snapshot_after_ops", self.snapshot_after_ops),
            ("vector.snapshot_interval_ms", self.snapshot_interval_ms),
            ("vector.ttl_sweep_interval_ms", self.ttl_sweep_interval_ms),
        ])?;
        if self.max_pk_chars > MAX_CHARS_LIMIT || self.max_dimension > 65_536 {
            return Err(invalid(
                "vector.max_pk_chars must be at most 16383 and vector.max_dimension at most 65536",
            ));
        }
        if self.default_dimension > self.max_dimension {
            return Err(invalid(
                "vector.default_dimension must not exceed vector.max_dimension",
            ));
        }
        let default = sluice_vector::CollectionConfig {
            name: "default".into(),
            dimension: self.default_dimension.max(1),
            distance: self.default_distance,
            precision: self.default_precision,
            hnsw: sluice_vector::HnswParams {
                m: self.hnsw_m,
                ef_construction: self.hnsw_ef_construction,
                ef_search: self.hnsw_ef_search,
            },
            ttl_ms: None,
        };
        default.validate(self.max_dimension).map_err(|e| {
            invalid(format!(
                "vector.{}: {}",
                e.field.replace("hnsw.", "hnsw_"),
                e.reason
            ))
        })
    }
}

impl TsSection {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.retention_sweep_interval_ms == 0 {
            return Err(invalid(
                "ts.retention_sweep_interval_ms must be greater than 0",
            ));
        }
        if self.max_query_points == 0 || self.chunk_target_points == 0 || self.max_series == 0 {
            return Err(invalid(
                "ts.max_query_points, ts.chunk_target_points and ts.max_series must be greater than 0",
            ));
        }
        const WEEK_MS: u64 = 7 * 24 * 3_600_000;
        if self.promql_max_samples == 0
            || !(1..=WEEK_MS).contains(&self.promql_timeout_ms)
            || !(1..=WEEK_MS).contains(&self.promql_lookback_delta_ms)
        {
            return Err(invalid(
                "ts.promql_max_samples must be greater than 0, ts.promql_timeout_ms and ts.promql_lookback_delta_ms from 1 to 604800000 (a week)",
            ));
        }
        Ok(())
    }
}

impl AdmissionConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.enabled
            && (self.max_in_flight_per_actor == 0
                || self.max_in_flight_bytes_per_actor == 0
                || self.max_in_flight_total == 0
                || (self.rate_limit_per_sec > 0 && self.rate_limit_burst == 0))
        {
            return Err(invalid(
                "admission limits must be greater than 0 (rate_limit_per_sec = 0 turns rate limiting off)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn defaults_round_trip_through_toml() {
        let text = Config::default().to_toml();
        assert!(text.contains("data_dir"));
        let back: Config = toml::from_str(&text).unwrap();
        assert_eq!(back, Config::default());
    }

    #[test]
    fn layers_override_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sluice.toml");
        std::fs::write(
            &file,
            "data_dir = \"/from-file\"\n[http]\naddr = \"127.0.0.1:9000\"\n[wal]\nqueue_capacity = 7\n",
        )
        .unwrap();
        let c = Config::load(
            Some(&file),
            env(&[
                ("SLUICE_WAL_QUEUE_CAPACITY", "9"),
                ("SLUICE_HTTP_ADDR", "127.0.0.1:9001"),
            ]),
            &Overrides {
                http_addr: Some("127.0.0.1:9002".parse().unwrap()),
                ..Overrides::default()
            },
        )
        .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/from-file"));
        assert_eq!(c.wal.queue_capacity, 9);
        assert_eq!(c.http.addr, "127.0.0.1:9002".parse().unwrap());
        assert_eq!(
            c.wal.segment_size_bytes,
            WalSection::default().segment_size_bytes
        );
    }

    #[test]
    fn unknown_file_keys_and_bad_env_values_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sluice.toml");
        std::fs::write(&file, "[wal]\nqueue_capacit = 7\n").unwrap();
        let e = Config::load(Some(&file), env(&[]), &Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("queue_capacit"), "{e}");
        let e = Config::load(
            None,
            env(&[("SLUICE_WAL_QUEUE_CAPACITY", "many")]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("SLUICE_WAL_QUEUE_CAPACITY"), "{e}");
        let e = Config::load(
            None,
            env(&[("SLUICE_WAL_QUEUE_CAPACITY", "0")]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("wal.queue_capacity"), "{e}");
    }

    #[test]
    fn every_key_has_an_env_var() {
        let vars = Config::env_vars();
        assert!(vars.contains(&("SLUICE_DATA_DIR".into(), "data_dir".into())));
        assert!(vars.contains(&("SLUICE_HTTP_ADDR".into(), "http.addr".into())));
        assert!(vars.contains(&("SLUICE_WIRE_ADDR".into(), "wire.addr".into())));
        assert!(vars.contains(&("SLUICE_LOG_FORMAT".into(), "log.format".into())));
        let c = Config::load(
            None,
            env(&[
                ("SLUICE_LOG_FORMAT", "json"),
                ("SLUICE_UNAUTHENTICATED", "true"),
            ]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.log.format, LogFormat::Json);
        assert!(c.unauthenticated);
        let c = Config::load(
            None,
            env(&[("SLUICE_TS_AUTO_BUFFER_MAX_POINTS", "50")]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.features.ts_auto_buffer.max_points_per_buffer, 50);
        let e = Config::load(
            None,
            env(&[("SLUICE_WAL_QUEUE_CAPACTY", "5")]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("no such setting"), "{e}");
    }
}

#[cfg(test)]
mod docs_tests {
    use super::*;

    #[test]
    fn docs_configuration_md_names_every_key_and_env_var() {
        let doc = include_str!("../../../docs/configuration.md");
        for (env, key) in Config::env_vars() {
            assert!(
                doc.contains(&format!("| `{key}` | `{env}` |")),
                "docs/configuration.md lacks {key} / {env}"
            );
        }
    }
}
