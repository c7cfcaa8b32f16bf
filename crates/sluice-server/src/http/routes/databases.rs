//! Database management: list, create, delete. Create and delete rewrite the
//! catalogue file (see `catalogue.rs`) and open or remove the database; both are admin-only on
//! the server. Listing shows the databases the caller has a role on.

use sluice_api::ErrorCode;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use sluice_api::ErrorBody;
use sluice_api::database::{CreateDatabase, DatabaseInfo, DatabaseList, DeleteDatabaseResponse};

use crate::auth::Actor;
use crate::catalogue::{CatalogueError, DatabaseSettings};
use crate::db::{Database, Databases, ManageError};
use crate::error::ApiError;
use crate::http::extract::ApiJson;
use crate::metrics::Metrics;
use crate::state::AppState;

/// Most retention rules a database may have.
const MAX_RETENTION_RULES: usize = 64;

fn info(db: &Database) -> DatabaseInfo {
    DatabaseInfo {
        name: db.name.clone(),
        retention_ms: db.ts.config().retention_ms,
        retention_rules: db
            .ts
            .config()
            .retention_rules
            .iter()
            .map(|r| sluice_api::database::RetentionRule {
                metric: r.metric.clone(),
                retention_ms: r.retention_ms,
            })
            .collect(),
        downsampling: db
            .ts
            .config()
            .downsampling
            .iter()
            .map(|r| sluice_api::database::DownsampleRule {
                after_ms: r.after_ms,
                resolution_ms: r.resolution_ms,
            })
            .collect(),
        max_series: db.ts.config().max_series as u64,
        max_new_series_per_hour: db.ts.config().max_new_series_per_hour as u64,
        has_policy: db.policy.is_some(),
    }
}

/// The `{db}` path parameter.
#[derive(serde::Deserialize)]
pub struct DbPath {
    db: String,
}

/// List the databases the caller has a role on.
#[utoipa::path(get, path = "/v1/databases", tag = "databases", extensions(("x-sluice-authz" = json!({"action": "read", "scope": "any_database"}))),
    responses(
        (status = 200, description = "Databases", body = DatabaseList),
        (status = 503, description = "Not ready", body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    actor: Option<axum::Extension<Arc<Actor>>>,
) -> Result<Json<DatabaseList>, ApiError> {
    let dbs = state.databases().ok_or_else(ApiError::not_ready)?;
    let databases = dbs
        .all()
        .iter()
        .filter(|db| {
            actor
                .as_ref()
                .is_none_or(|a| a.roles.on(&db.name).is_some())
        })
        .map(|db| info(db))
        .collect();
    Ok(Json(DatabaseList { databases }))
}

/// Create a database (admin). Listed in the configuration file atomically; survives restarts.
#[utoipa::path(post, path = "/v1/databases", tag = "databases", extensions(("x-sluice-authz" = json!({"action": "admin", "scope": "server", "mutates": true}))),
    request_body = CreateDatabase,
    responses(
        (status = 201, description = "Created", body = DatabaseInfo),
        (status = 400, description = "Invalid name or retention", body = ErrorBody),
        (status = 422, description = "`invalid_value`: the policy is not valid Cedar, or the downsampling rules are out of order (ages and resolutions must increase, each resolution a multiple of the one before)", body = ErrorBody),
        (status = 409, description = "A database of that name exists", body = ErrorBody),
        (status = 503, description = "The configuration file was edited by hand since the server read it (nothing written), or not ready", body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<CreateDatabase>,
) -> Result<(StatusCode, Json<DatabaseInfo>), ApiError> {
    // `_monitoring` is the server's own (`monitoring.rs`).
    if !crate::catalogue::valid_name(&req.name) {
        return Err(manage_error(ManageError::InvalidName(req.name)));
    }
    if req.retention_rules.len() > MAX_RETENTION_RULES {
        return Err(ApiError::invalid_field(
            "retention_rules",
            format!("at most {MAX_RETENTION_RULES} rules"),
        ));
    }
    for (i, r) in req.retention_rules.iter().enumerate() {
        if r.metric.is_empty() {
            return Err(ApiError::invalid_field(
                format!("retention_rules[{i}].metric"),
                "must not be empty",
            ));
        }
        let rule = sluice_ts::RetentionRule {
            metric: r.metric.clone(),
            retention_ms: r.retention_ms,
        };
        if let Err(e) = rule.regex() {
            return Err(ApiError::invalid_value(
                format!("retention_rules[{i}].metric"),
                e,
            ));
        }
    }
    let downsampling: Vec<sluice_ts::DownsampleRule> = req
        .downsampling
        .iter()
        .map(|r| sluice_ts::DownsampleRule {
            after_ms: r.after_ms,
            resolution_ms: r.resolution_ms,
        })
        .collect();
    let at = |i: usize, field: &str| {
        if field == "downsampling" {
            field.to_string()
        } else {
            format!("downsampling[{i}].{field}")
        }
    };
    // Out of range: 400 (the schema says so); in range but out of order: 422.
    if let Err((i, field, e)) = sluice_ts::rollup::check_ranges(&downsampling) {
        return Err(ApiError::invalid_field(at(i, field), e));
    }
    if let Err((i, field, e)) = sluice_ts::rollup::validate(&downsampling) {
        return Err(ApiError::invalid_value(at(i, field), e));
    }
    if req.max_series == Some(0) {
        return Err(ApiError::invalid_field("max_series", "must be at least 1"));
    }
    let settings = DatabaseSettings {
        retention_ms: req.retention_ms,
        retention_rules: req
            .retention_rules
            .iter()
            .map(|r| crate::catalogue::RetentionRuleSetting {
                metric: r.metric.clone(),
                retention_ms: r.retention_ms,
            })
            .collect(),
        downsampling: downsampling
            .iter()
            .map(|r| crate::catalogue::DownsampleSetting {
                after_ms: r.after_ms,
                resolution_ms: r.resolution_ms,
            })
            .collect(),
        max_series: req.max_series,
        max_new_series_per_hour: req.max_new_series_per_hour,
        policy: req.policy,
    };
    let db = manage(&state, move |dbs, metrics| {
        dbs.create(&req.name, &settings, metrics)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(info(&db))))
}

/// Delete a database and all its data (admin). `default` cannot be deleted.
#[utoipa::path(delete, operation_id = "delete_database", path = "/v1/databases/{db}", tag = "databases", extensions(("x-sluice-authz" = json!({"action": "admin", "scope": "server", "mutates": true}))),
    params(("db" = String, Path, description = "Database name")),
    responses(
        (status = 200, description = "Deleted", body = DeleteDatabaseResponse),
        (status = 404, description = "No such database", body = ErrorBody),
        (status = 409, description = "`default` cannot be deleted", body = ErrorBody),
        (status = 503, description = "The configuration file was edited by hand since the server read it (nothing written), or not ready", body = ErrorBody),
    ))]
pub async fn delete(
    State(state): State<AppState>,
    Path(DbPath { db }): Path<DbPath>,
) -> Result<Json<DeleteDatabaseResponse>, ApiError> {
    manage(&state, move |dbs, metrics| dbs.delete(&db, metrics)).await?;
    Ok(Json(DeleteDatabaseResponse { success: true }))
}

/// Runs a create or delete off the async workers (file I/O and fsync) and maps its errors.
async fn manage<T: Send + 'static>(
    state: &AppState,
    op: impl FnOnce(&Databases, &Metrics) -> Result<T, ManageError> + Send + 'static,
) -> Result<T, ApiError> {
    let dbs = state.databases().ok_or_else(ApiError::not_ready)?.clone();
    let state = state.clone();
    tokio::task::spawn_blocking(move || op(&dbs, state.metrics()))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(manage_error)
}

fn manage_error(e: ManageError) -> ApiError {
    let message = e.to_string();
    match e {
        ManageError::InvalidName(_) => ApiError::invalid_field("name", message),
        ManageError::Protected => ApiError::new(ErrorCode::DatabaseProtected, message),
        ManageError::Catalogue(CatalogueError::Exists(_)) => {
            ApiError::new(ErrorCode::DatabaseExists, message)
        }
        ManageError::Catalogue(CatalogueError::NotFound(_)) => {
            ApiError::new(ErrorCode::DatabaseNotFound, message)
        }
        ManageError::Catalogue(CatalogueError::Drift { .. }) => {
            ApiError::new(ErrorCode::ConfigDrift, message).retry_after(30)
        }
        ManageError::Open(ref o) if o.message.starts_with("policy:") => {
            ApiError::invalid_value("policy", o.message.clone())
        }
        // The catalogue or a new database's files met a full disk: nothing changed.
        ManageError::Catalogue(CatalogueError::Io { ref source, .. })
            if sluice_wal::faults::is_storage_full(source) =>
        {
            ApiError::new(
                ErrorCode::InsufficientStorage,
                format!("the disk is full: {message}"),
            )
            .retry_after(5)
        }
        ManageError::Catalogue(_) | ManageError::Open(_) | ManageError::Io { .. } => {
            tracing::error!(error = %message, "database management failed");
            ApiError::internal(message)
        }
    }
}
