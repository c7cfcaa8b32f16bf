//! Route handlers, one module per route class. Each handler carries its `#[utoipa::path]`
//! definition, so a route cannot be served without being documented.

pub mod changes;
pub mod databases;
pub mod lineproto;
pub mod prom;
pub mod replication;
pub mod system;
pub mod ts;
pub mod vectors;

use sluice_api::ErrorBody;

/// The error answers every write route shares, documented once.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // Only the OpenAPI document uses it; handlers answer with `ApiError`.
pub enum WriteErrors {
    /// Invalid input or parameter; nothing was written
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// Body too large (or, for line protocol, it expands to too many points)
    #[response(status = 413)]
    PayloadTooLarge(ErrorBody),
    /// The write would exceed the database's series limit; nothing was written
    #[response(status = 422)]
    SeriesLimit(ErrorBody),
    /// Write queue or buffer full (seed routes: `success: false`, `"error": "Buffer overflow"`,
    /// `buffer_size`), or the server is not ready
    #[response(status = 503, headers(("Retry-After" = u64, description = "Seconds to wait")))]
    Unavailable(ErrorBody),
}
