//! Sluice's PromQL evaluator: Prometheus 2.x query semantics over any sample storage.
//!
//! Queries are parsed by the maintained `promql-parser` crate (which also type-checks them);
//! this crate evaluates the syntax tree over a [`Storage`] that hands out series and their raw
//! samples. It knows nothing of HTTP or of Sluice's engines: the server implements [`Storage`]
//! over its time-series engine and renders [`Value`]s as Prometheus's JSON.
//!
//! # How a query is evaluated
//! Like Prometheus's own engine, every expression is evaluated once over all the steps of the
//! query (an instant query is a range query of one step): an instant-vector expression yields
//! series whose points sit at the step timestamps, a scalar one value per step. Selectors read
//! the storage once for the whole range they need (steps, range, offset, `@`, lookback), and
//! functions of range vectors slide a window over each series' samples with two cursors, so a
//! query over `n` steps and `s` samples costs `O(n + s)` per series, not `O(n · s)`.
//!
//! # Semantics (Prometheus 2.42, what the differential tests check)
//! - An instant selector finds, at reference time `r` (the step, or the `@` time, minus the
//!   offset), the newest sample in `[r - lookback, r]` (lookback 5 minutes); a staleness
//!   marker found there means no value.
//! - A range selector `[d]` takes the samples in `[r - d, r]`, staleness markers excluded.
//! - Functions of range vectors, arithmetic, and most functions drop `__name__`; comparisons
//!   without `bool`, set operators, `sort`, `label_replace` and `label_join` keep it.
//! - A step whose result holds two series with one label set fails the query ("vector cannot
//!   contain metrics with the same labelset"), as in Prometheus.
//! - Subqueries evaluate their inner expression at steps aligned to multiples of their
//!   resolution (the default resolution is one minute).
//!
//! # Limits
//! A query fails with [`Error::Execution`] once it has read more than `max_samples` samples
//! from the storage, and with [`Error::Timeout`] at its deadline (checked per series and per
//! step). Range queries are bounded in steps by the caller (Prometheus's API allows 11,000).

mod eval;
mod functions;
pub mod value;

pub use eval::{
    Error, Options, Storage, instant_query, parse, parse_duration, range_query,
    selector_matchers_of,
};
pub use promql_parser::label::{MatchOp, Matcher};
pub use value::{Labels, Sample, Series, Value};
