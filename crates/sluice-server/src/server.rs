//! The server's life: check the configuration, lock the data directory, bind, recover every
//! database while already answering `/healthz` (and `/readyz` with 503), serve, and on the
//! shutdown signal drain connections and close every WAL (queued writes written and fsync'd)
//! before returning.
//!
//! `<data_dir>/server.json` tells tools and tests where the server listens
//! (`{"pid", "http_addr", "wire_addr"}`, written atomically after binding, removed on clean exit). It makes
//! `--http-addr 127.0.0.1:0` usable.

use std::fs::{File, OpenOptions};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::auth::Auth;
use crate::catalogue::Catalogue;
use crate::config::Config;
use crate::db::{DatabaseOpenError, Databases, OpenSettings};
use crate::http;
use crate::state::AppState;

pub const RUNTIME_FILE: &str = "server.json";
const LOCK_FILE: &str = "LOCK";

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(
        "refusing to bind {addr} with authentication off: anyone who can reach it could read and \
         write every database. Bind a loopback address, configure credentials, or pass \
         --unauthenticated (SLUICE_UNAUTHENTICATED=true) to accept the risk"
    )]
    UnauthenticatedExposure { addr: SocketAddr },
    #[error("data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("data directory {path} is in use by another sluice process")]
    DataDirLocked { path: PathBuf },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("authentication configuration: {0}")]
    Auth(String),
    #[error("TLS configuration: {0}")]
    Tls(String),
    #[error("database catalogue: {0}")]
    Catalogue(#[from] crate::catalogue::CatalogueError),
    #[error("recovery failed: {0}")]
    Recovery(#[from] DatabaseOpenError),
    #[error("replication state: {0}")]
    Replication(String),
    #[error("recovery task failed: {0}")]
    Task(String),
}

/// Runs a server until `shutdown` completes. Returns once everything is drained and closed.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let addr = config.http.addr;
    // A file-size limit then reads as a full disk (writes refused with 507, reads served,
    // resumed when it is raised) rather than killing the process.
    sluice_wal::faults::treat_file_size_limit_as_full_disk();
    let auth = Auth::from_config(&config.auth).map_err(ServerError::Auth)?;
    if auth.dev_mode() {
        for a in [addr, config.wire.addr] {
            if !a.ip().is_loopback() && !config.unauthenticated {
                return Err(ServerError::UnauthenticatedExposure { addr: a });
            }
        }
        tracing::warn!(
            "authentication is OFF (dev mode): every client has full access. Bind loopback only, \
             or configure credentials before exposing this server"
        );
    }
    let tls = crate::http::serve::tls_acceptor(&config.http).map_err(ServerError::Tls)?;
    let data_dir = config.data_dir.clone();
    let _lock = lock_data_dir(&data_dir)?;
    let (catalogue, listed) = Catalogue::open(Catalogue::path_for(
        config.config_file.as_deref(),
        &data_dir,
    ))?;

    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| ServerError::Bind { addr, source })?;
    let wire_addr = config.wire.addr;
    let wire_listener = TcpListener::bind(wire_addr)
        .await
        .map_err(|source| ServerError::Bind {
            addr: wire_addr,
            source,
        })?;
    let wire_local = wire_listener
        .local_addr()
        .map_err(|source| ServerError::Bind {
            addr: wire_addr,
            source,
        })?;
    write_runtime_file(&data_dir, local, wire_local).map_err(|source| ServerError::DataDir {
        path: data_dir.clone(),
        source,
    })?;
    tracing::info!(http_addr = %local, wire_addr = %wire_local, data_dir = %data_dir.display(), "listening");

    let state = AppState::new(config.clone(), auth);
    state
        .replication()
        .load(&data_dir, state.metrics())
        .map_err(ServerError::Replication)?;
    tracing::info!(role = config.role.as_str(), node_id = %state.replication().node_id(), "replication");
    let app = crate::router::app(state.clone());
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_signal = {
        let stop_tx = stop_tx.clone();
        let state = state.clone();
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutdown requested; draining");
            state.start_draining();
            let _ = stop_tx.send(true);
        })
    };
    let http_config = config.http.clone();
    let wire_server = tokio::spawn(crate::wire::serve(
        wire_listener,
        state.clone(),
        stop_rx.clone(),
    ));
    let server = tokio::spawn(async move {
        http::serve::serve(listener, app, &http_config, tls, stopped(stop_rx)).await;
    });

    let settings = OpenSettings {
        data_dir: data_dir.clone(),
        wal: config.wal.to_wal_config(),
        ts: config.ts_config(),
        vector: config.vector_config(),
        on_fatal: None,
        on_durable: Some({
            let notify = state.replication().durable.clone();
            Arc::new(move |_| notify.notify_waiters())
        }),
        retain_from: Some({
            let repl = state.replication().clone();
            Arc::new(move |db: &str| repl.initial_retain_from(db))
        }),
    };
    let recovery_state = state.clone();
    let recovered = tokio::task::spawn_blocking(move || {
        Databases::open_all(settings, catalogue, listed, recovery_state.metrics())
    })
    .await;
    let result = match recovered {
        Ok(Ok(dbs)) => {
            state.set_databases(Arc::new(dbs));
            state.replication().start(state.clone());
            crate::monitoring::spawn(state.clone());
            crate::expiry::spawn(state.clone());
            tracing::info!("ready");
            Ok(())
        }
        Ok(Err(e)) => Err(ServerError::Recovery(e)),
        Err(e) => Err(ServerError::Task(e.to_string())),
    };
    if result.is_err() {
        let _ = stop_tx.send(true);
    }
    let _ = server.await;
    let _ = wire_server.await;
    stop_signal.abort();
    state.replication().shutdown();

    if let Some(dbs) = state.databases().cloned() {
        let _ = tokio::task::spawn_blocking(move || dbs.close_all()).await;
    }
    let _ = std::fs::remove_file(data_dir.join(RUNTIME_FILE));
    if result.is_ok() {
        tracing::info!("stopped cleanly");
    }
    result
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

fn lock_data_dir(dir: &Path) -> Result<File, ServerError> {
    let io_err = |source| ServerError::DataDir {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io_err)?;
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LOCK_FILE))
        .map_err(io_err)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(ServerError::DataDirLocked {
            path: dir.to_path_buf(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(io_err(e)),
    }
}

fn write_runtime_file(
    dir: &Path,
    http_addr: SocketAddr,
    wire_addr: SocketAddr,
) -> std::io::Result<()> {
    let body = serde_json::json!({
        "pid": std::process::id(),
        "http_addr": http_addr.to_string(),
        "wire_addr": wire_addr.to_string(),
    });
    sluice_wal::durable::write_atomically(&dir.join(RUNTIME_FILE), body.to_string().as_bytes())
}
