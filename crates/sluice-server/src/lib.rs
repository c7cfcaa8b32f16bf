//! The Sluice server: configuration, databases, the HTTP front door, metrics.
//!
//! Data flows one way: transport (`http`) → handler (`http::routes`) → engine (`sluice-ts`) →
//! WAL (`sluice-wal`) → acknowledgement. Handlers see engines and the WAL through
//! [`db::Database`]; engines never see HTTP types. Errors of the layers below become HTTP
//! answers in one place, [`error::ApiError`].

pub mod admission;
pub mod auth;
pub mod catalogue;
pub mod config;
pub mod core;
pub mod db;
pub mod error;
pub mod expiry;
pub mod flusher;
pub mod http;
pub mod metrics;
pub mod monitoring;
pub mod replication;
pub mod request_id;
pub mod retention;
pub mod router;
pub mod server;
pub mod state;
pub mod timefmt;
pub mod wire;

pub use config::Config;
pub use server::{ServerError, run};
pub use sluice_wal::now_ms;

#[cfg(test)]
mod layering;
