//! The Rust client for Sluice.
//!
//! Two transports, one set of typed models (`sluice-api` for JSON bodies, `sluice-wire` for
//! frames):
//! - [`Client`]: HTTP, every route — writes at any ack level, batches, queries, vectors,
//!   collections, databases — with the seed's method names for the buffered routes
//!   (`put_buffered`, `get_buffer_stats`, `flush_buffer`, `add_buffered`, `update_buffered`,
//!   `remove_buffered`, …). [`Client::database`] scopes a client to `/v1/databases/{db}`.
//! - [`WireClient`]: the binary protocol on TCP for the hot paths (buffered time-series and
//!   vector writes, stats, flushes), one connection, pipelining with
//!   [`WireClient::pipeline`].
//!
//! **Retries** ([`RetryPolicy`]): answers that say "nothing was done, come back later" — HTTP
//! 429 and 503 (honouring `Retry-After`), wire status `0x04` (buffer overflow) and `0x07`
//! (honouring the error frame's `retry_after_sec`) — are retried with exponential backoff and
//! jitter, up to `max_retries`. A connection that could not be opened is retried for every
//! request; a timeout or reset after sending (the request may have been applied) only for
//! requests whose repetition has the same outcome — point and entity writes (full state), reads,
//! flushes — never for creates, deletes and removes. Pipelined wire frames are retried only as a
//! refused suffix, so writes are never reordered (see [`WireClient`]). Other errors are
//! returned at once as [`Error::Api`] with the server's error body.

mod error;
mod http;
mod retry;
mod wire;

pub use error::Error;
pub use http::{BatchCompression, Client, ClientBuilder, ExportStream, wal_batch};
pub use reqwest::Method;
pub use retry::RetryPolicy;
pub use sluice_api as api;
pub use wire::WireClient;

pub type Result<T> = std::result::Result<T, Error>;
