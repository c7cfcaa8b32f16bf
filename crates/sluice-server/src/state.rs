//! Shared server state handed to every handler.

use sluice_api::ErrorCode;
use std::sync::{Arc, LazyLock, OnceLock};

use crate::admission::Admission;
use crate::auth::Auth;
use crate::auth::authz::RouteTable;
use crate::config::Config;
use crate::db::{Database, Databases};
use crate::error::ApiError;
use crate::metrics::Metrics;

/// Cheap to clone: one `Arc`.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    config: Config,
    metrics: Metrics,
    auth: Auth,
    admission: Admission,
    replication: Arc<crate::replication::Replication>,
    /// WebSocket sessions in progress (at most `wire.max_connections`).
    ws_slots: Arc<tokio::sync::Semaphore>,
    /// Set once recovery of every database has finished; until then data routes answer 503.
    databases: OnceLock<Arc<Databases>>,
    /// The OpenAPI document, serialized once.
    openapi_json: OnceLock<Arc<str>>,
    /// Every route's authorization (set when the router is built).
    route_table: OnceLock<&'static RouteTable>,
    /// `true` from the moment shutdown starts: long-lived streams (changefeeds) end then, so
    /// they do not hold the graceful drain for its whole grace period.
    draining: tokio::sync::watch::Sender<bool>,
}

impl AppState {
    pub fn new(config: Config, auth: Auth) -> AppState {
        AppState(Arc::new(Inner {
            admission: Admission::new(config.admission.clone()),
            replication: Arc::new(crate::replication::Replication::new(&config)),
            ws_slots: Arc::new(tokio::sync::Semaphore::new(config.wire.max_connections)),
            config,
            auth,
            metrics: Metrics::default(),
            databases: OnceLock::new(),
            openapi_json: OnceLock::new(),
            route_table: OnceLock::new(),
            draining: tokio::sync::watch::Sender::new(false),
        }))
    }

    /// Starts the drain: every changefeed subscriber's stream ends (it resumes elsewhere or
    /// after the restart from the last event id it got).
    pub fn start_draining(&self) {
        self.0.draining.send_replace(true);
    }

    /// Becomes `true` when shutdown starts.
    pub fn draining(&self) -> tokio::sync::watch::Receiver<bool> {
        self.0.draining.subscribe()
    }

    pub fn config(&self) -> &Config {
        &self.0.config
    }

    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    pub fn auth(&self) -> &Auth {
        &self.0.auth
    }

    pub fn admission(&self) -> &Admission {
        &self.0.admission
    }

    pub fn replication(&self) -> &Arc<crate::replication::Replication> {
        &self.0.replication
    }

    pub fn ws_slots(&self) -> &Arc<tokio::sync::Semaphore> {
        &self.0.ws_slots
    }

    /// The databases, once recovery has finished.
    pub fn databases(&self) -> Option<&Arc<Databases>> {
        self.0.databases.get()
    }

    pub fn set_databases(&self, dbs: Arc<Databases>) {
        let _ = self.0.databases.set(dbs);
    }

    /// The named database, or the error to answer with.
    pub fn database(&self, name: &str) -> Result<Arc<Database>, ApiError> {
        let dbs = self.databases().ok_or_else(ApiError::not_ready)?;
        dbs.get(name).ok_or_else(|| {
            ApiError::new(
                ErrorCode::DatabaseNotFound,
                format!("database {name:?} does not exist"),
            )
        })
    }

    /// Every route's authorization; empty (every route fails closed) until the router is built.
    pub fn route_table(&self) -> &RouteTable {
        static EMPTY: LazyLock<RouteTable> = LazyLock::new(RouteTable::default);
        self.0.route_table.get().copied().unwrap_or(&EMPTY)
    }

    pub fn set_route_table(&self, table: &'static RouteTable) {
        let _ = self.0.route_table.set(table);
    }

    pub fn openapi_json(&self) -> Arc<str> {
        self.0
            .openapi_json
            .get()
            .cloned()
            .unwrap_or_else(|| Arc::from("{}"))
    }

    pub fn set_openapi_json(&self, json: String) {
        let _ = self.0.openapi_json.set(Arc::from(json));
    }
}
