//! Sluice's integration tests: one test binary (one link, one process per test under nextest),
//! a module per area. Every test starts the real `sluice` binary through [`support`] on a
//! loopback port with a temporary data directory, because what they pin is what a client sees
//! over a real socket: status codes, bodies, durability across `kill -9`, exit codes.

mod support;

mod cardinality;
mod cli;
mod client;
mod delete;
mod downsampling;
mod durability;
mod http;
mod import;
mod monitoring;
mod openapi;
mod prom;
mod replication;
mod security;
mod ts;
mod vector_time;
mod vectors;
mod wire;
