//! Bodies of the operational routes: health, readiness, version.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `GET /healthz`: the process is up and serving HTTP.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: String,
}

/// `GET /readyz`: every database has finished recovery and accepts requests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `recovering`.
    #[schema(example = "ready")]
    pub status: String,
    /// Databases open and serving.
    pub databases: Vec<String>,
}

/// `GET /version`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Version {
    #[schema(example = "sluice")]
    pub name: String,
    #[schema(example = "0.1.0")]
    pub version: String,
    /// Version of the HTTP API contract (`/openapi.json`).
    #[schema(example = "v1")]
    pub api_version: String,
}
