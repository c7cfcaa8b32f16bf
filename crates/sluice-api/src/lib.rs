//! Sluice wire types: the request and response bodies of the HTTP API, shared by the server,
//! the clients and the CLI.
//!
//! This crate knows nothing of engines, storage or HTTP frameworks: only shapes, their serde
//! names and their OpenAPI schemas. Field names are part of the contract (SPEC §6): add fields
//! freely, never rename one.

pub mod database;
pub mod error;
pub mod replication;
pub mod system;
pub mod ts;
pub mod vector;

pub use error::{ErrorBody, ErrorCode};
