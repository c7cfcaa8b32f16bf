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
//! A query has one budget of `max_samples` for the samples it reads from the storage and the
//! points it holds (selector outputs, range-function outputs, the steps of the query and of
//! every subquery); past it, [`Error::Execution`] (Prometheus's "too many samples"), before
//! the memory is allocated. It fails with [`Error::Timeout`] at its deadline (checked per
//! series and every few thousand steps). Times and durations are clamped to ±2^60 ms, so no
//! time arithmetic overflows. Queries are at most [`MAX_QUERY_BYTES`] long, and a parser panic
//! (the parser crate panics on some out-of-range durations) is a `bad_data` error. Deeply
//! nested queries recurse: callers evaluate on a thread with a large stack (the server uses
//! 256 MiB, enough for the deepest query [`MAX_QUERY_BYTES`] allows).

pub mod calendar;
mod eval;
mod functions;
pub mod value;

pub use eval::{
    EachSeries, Error, MAX_QUERY_BYTES, MAX_TIME_MS, Options, Storage, TOO_MANY_SAMPLES,
    instant_query, parse, parse_duration, range_query, selector_matchers_of,
};
pub use promql_parser::label::{MatchOp, Matcher};
pub use value::{Labels, Sample, Series, Value};
