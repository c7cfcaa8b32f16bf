//! Route handlers, one module per route class. Each handler carries its `#[utoipa::path]`
//! definition, so a route cannot be served without being documented.

pub mod lineproto;
pub mod system;
pub mod ts;
