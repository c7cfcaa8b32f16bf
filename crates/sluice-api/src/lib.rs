//! Sluice wire types: the request and response bodies of the HTTP API, shared by the server,
//! the clients and the CLI.
//!
//! This crate knows nothing of engines, storage or HTTP frameworks: only shapes, their serde
//! names and their OpenAPI schemas. Field names are part of the contract: add fields
//! freely, never rename one.
//!
//! "Seed" in these docs names what comes from the original design documents Sluice was built
//! from (an auto-batching time-series and vector client/server design): the buffered routes,
//! their JSON fields, the WAL-shipping bodies and the SDK method names are theirs, kept exactly
//! because clients rely on them.

pub mod database;
pub mod error;
pub mod int;
pub mod replication;
pub mod system;
pub mod ts;
pub mod vector;

pub use error::{ErrorBody, ErrorCode};
