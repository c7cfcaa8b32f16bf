//! The Sluice time-series engine.
//!
//! Today this crate owns the validated [`Point`] and its WAL record encoding ([`record`]): every
//! time-series write is logged in this form before it is acknowledged, and the engine's
//! in-memory buffer, Gorilla chunks and queries are rebuilt from it. The engine knows nothing
//! of HTTP: the server converts its wire types into [`Point`]s and maps [`InvalidPoint`] at the
//! edge.

pub mod point;
pub mod record;

pub use point::{InvalidPoint, Point, PointLimits};
