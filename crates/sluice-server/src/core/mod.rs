//! The database operations, transport-neutral: what HTTP, the wire protocol (TCP and
//! WebSocket) and the SDKs all reach. Each operation validates its input and checks its limits
//! here, once, so every transport behaves the same (the same caps, the same error codes and
//! field paths); the adapters parse, authorize, call these functions and encode the answer.
//! Errors are [`crate::error::ApiError`]: a typed code and details, no transport status.

pub mod ts;
pub mod vectors;
