//! Bodies of database management: `GET/POST /v1/databases`, `DELETE /v1/databases/{db}`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A database.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DatabaseInfo {
    /// Lower-case letters, digits, `_` and `-`, starting with a letter or digit, ≤ 64 bytes.
    #[schema(example = "metrics")]
    pub name: String,
    /// Time-series retention of this database in ms (0 = forever).
    pub retention_ms: u64,
    /// Retention by metric name over `retention_ms` (first match wins).
    pub retention_rules: Vec<RetentionRule>,
    /// Downsampling rules, by increasing age (see docs/downsampling.md).
    pub downsampling: Vec<DownsampleRule>,
    /// Most series the database may hold.
    pub max_series: u64,
    /// Most new series the database may create in any hour (0 = no limit).
    pub max_new_series_per_hour: u64,
    /// Whether the database has its own Cedar policies.
    pub has_policy: bool,
}

/// A retention rule of a database: metrics whose name matches `metric` (a glob: `*` any run of
/// characters, `?` one; the whole name must match) keep points for `retention_ms` (0: forever)
/// instead of the database's retention. The first matching rule applies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionRule {
    #[schema(example = "debug_*")]
    pub metric: String,
    #[serde(deserialize_with = "crate::int::integer")]
    pub retention_ms: u64,
}

/// A downsampling rule: points older than `after_ms` are kept only as buckets of
/// `resolution_ms` (their min, max, sum, count, first and last), computed in the background.
/// Rules are ordered by increasing `after_ms`; each `resolution_ms` is coarser than the one
/// before and a multiple of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DownsampleRule {
    #[schema(
        example = 604_800_000,
        minimum = 1,
        maximum = 9_223_372_036_854_775_807_u64
    )]
    #[serde(deserialize_with = "crate::int::integer")]
    pub after_ms: u64,
    #[schema(example = 60_000, minimum = 1, maximum = 1_099_511_627_776_u64)]
    #[serde(deserialize_with = "crate::int::integer")]
    pub resolution_ms: u64,
}

/// `POST /v1/databases`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDatabase {
    #[schema(example = "metrics")]
    pub name: String,
    /// Overrides the server's `ts.retention_ms` for this database.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::int::optional"
    )]
    pub retention_ms: Option<u64>,
    /// Retention by metric name over the database's (first match wins; at most 64 rules).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retention_rules: Vec<RetentionRule>,
    /// Downsampling rules, by increasing age (at most 8; see docs/downsampling.md).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub downsampling: Vec<DownsampleRule>,
    /// Overrides the server's `ts.max_series` for this database (at least 1).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::int::optional"
    )]
    pub max_series: Option<u64>,
    /// Overrides the server's `ts.max_new_series_per_hour` for this database (0 = no limit).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::int::optional"
    )]
    pub max_new_series_per_hour: Option<u64>,
    /// Cedar policies for this database (see docs/security.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
}

/// `GET /v1/databases`: the databases the caller has a role on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DatabaseList {
    pub databases: Vec<DatabaseInfo>,
}

/// `DELETE /v1/databases/{db}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeleteDatabaseResponse {
    pub success: bool,
}
