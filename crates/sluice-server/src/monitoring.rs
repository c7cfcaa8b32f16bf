//! Self-monitoring: the server's own metrics kept as data, so dashboards can use Sluice as
//! their only data source.
//!
//! With `monitoring.self_scrape_interval_ms` set (off by default; on in the container image),
//! a task renders what `/metrics` shows every interval and writes each sample as a point into
//! the database `_monitoring`, through the same named-series path as Prometheus remote write:
//! the metric is the sample's name (`http_requests_total`, `ts_auto_buffer_current_size`, …),
//! its labels are tags, its time the scrape's. PromQL over
//! `/v1/databases/_monitoring/api/v1/…` then answers the same expressions as a Prometheus
//! that scrapes this server.
//!
//! Invariants and limits:
//! - `_monitoring` is created by the server (retention `monitoring.retention_ms`, default 7
//!   days) and cannot be created by a client (its name is reserved). Writers' roles are read
//!   roles there: only admins and the server write into it.
//! - It is not shipped to replicas unless `monitoring.replicate` (each node monitors itself);
//!   a replica with `replicate` on does not scrape itself (its `_monitoring` is the primary's).
//! - Written at `ack=buffer`: a crash loses at most the last buffer's worth of the server's
//!   own samples, never a client's data; a full buffer skips a scrape (logged, counted).
//! - Cost: one render of the registry (~1,000 samples, ~100 KiB of text on a server with a
//!   few databases), a parse, and one buffered write whose series are found by their raw text
//!   in the engine's name cache after the first scrape. About a millisecond of one core per
//!   scrape: < 0.1 % of a core at 10 s (`bench/RESULTS.md`, `monitoring_self_scrape_seconds`).
//! - Ends when the server starts draining.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_ts::{KnownSeries, NamedBatch, NamedSeries, PointLimits, Sample};
use sluice_wal::AckLevel;

use crate::catalogue::{CatalogueError, DatabaseSettings, MONITORING_DB};
use crate::config::Role;
use crate::db::{Database, ManageError};
use crate::error::ApiError;
use crate::state::AppState;

/// Starts the self-scrape task if the configuration asks for it.
pub fn spawn(state: AppState) {
    let cfg = &state.config().monitoring;
    if cfg.self_scrape_interval_ms == 0 {
        return;
    }
    if state.config().role == Role::Replica && cfg.replicate {
        tracing::info!(
            "self-monitoring off on this replica: monitoring.replicate ships the primary's _monitoring here"
        );
        return;
    }
    let every = Duration::from_millis(cfg.self_scrape_interval_ms);
    tracing::info!(
        interval_ms = cfg.self_scrape_interval_ms,
        "self-monitoring into database _monitoring"
    );
    tokio::spawn(run(state, every));
}

async fn run(state: AppState, every: Duration) {
    let mut draining = state.draining();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failures = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = draining.wait_for(|d| *d) => return,
        }
        match scrape_once(&state).await {
            Ok(_) => failures = 0,
            Err(e) => {
                failures += 1;
                state.metrics().self_scrape_failures.inc();
                if failures == 1 || failures.is_power_of_two() {
                    tracing::warn!(failures, error = %e.message, "self-monitoring scrape failed");
                }
            }
        }
    }
}

/// One scrape: renders the metrics and writes them into `_monitoring` (created if missing).
/// Returns the samples written.
pub async fn scrape_once(state: &AppState) -> Result<usize, ApiError> {
    let started = Instant::now();
    let db = monitoring_db(state).await?;
    let text = state.metrics().encode();
    let limits = db.ts.config().point_limits;
    let batch = exposition_batch(&text, crate::now_ms(), &limits, |names| {
        db.ts.known_series(names)
    });
    let samples = batch.samples.len();
    if samples > 0 {
        crate::core::ts::write_named(&db, batch, AckLevel::Buffer).await?;
    }
    let m = state.metrics();
    m.self_scrapes.inc();
    m.self_scrape_seconds
        .inc_by(started.elapsed().as_secs_f64());
    m.self_scrape_samples.set(samples as i64);
    Ok(samples)
}

/// `_monitoring`, created with `monitoring.retention_ms` when it does not exist.
async fn monitoring_db(state: &AppState) -> Result<Arc<Database>, ApiError> {
    if let Ok(db) = state.database(MONITORING_DB) {
        return Ok(db);
    }
    let dbs = state.databases().ok_or_else(ApiError::not_ready)?.clone();
    let settings = DatabaseSettings {
        retention_ms: Some(state.config().monitoring.retention_ms),
        ..DatabaseSettings::default()
    };
    let metrics_state = state.clone();
    tokio::task::spawn_blocking(move || {
        match dbs.create(MONITORING_DB, &settings, metrics_state.metrics()) {
            Ok(db) => Ok(db),
            // Created meanwhile (another scrape, or replicated).
            Err(ManageError::Catalogue(CatalogueError::Exists(_))) => dbs
                .get(MONITORING_DB)
                .ok_or_else(|| ApiError::internal("_monitoring was listed but is not open")),
            Err(e) => Err(ApiError::internal(format!("creating _monitoring: {e}"))),
        }
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
}

/// The samples of a Prometheus/OpenMetrics text as one batch at `now_ms`. Series the engine
/// knows by their raw text (`known`) are not parsed again; lines that are not samples, values
/// that are not finite and series the limits refuse are skipped.
pub fn exposition_batch(
    text: &str,
    now_ms: i64,
    limits: &PointLimits,
    known: impl FnOnce(&mut dyn Iterator<Item = Option<&[u8]>>) -> Vec<Option<KnownSeries>>,
) -> NamedBatch {
    let samples: Vec<(&str, f64)> = text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(split_sample)
        .filter(|(_, v)| v.is_finite())
        .collect();
    let known = known(&mut samples.iter().map(|(s, _)| Some(s.as_bytes())));
    let mut batch = NamedBatch {
        series: Vec::with_capacity(samples.len()),
        samples: Vec::with_capacity(samples.len()),
    };
    for ((series, value), known) in samples.iter().zip(known) {
        let named = match known {
            Some(k) => NamedSeries::Known(k),
            None => {
                let Some(labels) = parse_series(series) else {
                    continue;
                };
                let borrowed: Vec<(&str, &str)> = labels
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                match crate::core::prom::series_key(borrowed, limits) {
                    Ok(key) => NamedSeries::New(key, Some(series.as_bytes().into())),
                    Err(_) => continue,
                }
            }
        };
        let index = batch.series.len() as u32;
        batch.series.push(named);
        batch.samples.push(Sample {
            series: index,
            timestamp_ms: now_ms,
            value: *value,
        });
    }
    batch
}

/// `name{labels} value [timestamp]` → (`name{labels}`, value).
fn split_sample(line: &str) -> Option<(&str, f64)> {
    let end = match line.find(['{', ' ']) {
        Some(i) if line.as_bytes()[i] == b'{' => i + labels_len(&line[i..])?,
        Some(i) => i,
        None => return None,
    };
    let series = &line[..end];
    let value = line[end..].split_whitespace().next()?;
    let value = match value {
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some((series, value))
}

/// The length of `{…}` at the start of `s` (quotes and escapes respected).
fn labels_len(s: &str) -> Option<usize> {
    let (mut quoted, mut escaped) = (false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '}' if !quoted => return Some(i + 1),
            _ => {}
        }
    }
    None
}

/// `name{k="v",…}` → `[("__name__", name), (k, v), …]`, values unescaped.
fn parse_series(series: &str) -> Option<Vec<(String, String)>> {
    let (name, rest) = match series.find('{') {
        Some(i) => (&series[..i], &series[i + 1..series.len() - 1]),
        None => (series, ""),
    };
    let mut out = vec![("__name__".to_string(), name.to_string())];
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || *c == ' ') {
            chars.next();
        }
        if chars.peek().is_none() {
            return Some(out);
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if chars.next() != Some('"') {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '"' => break,
                '\\' => match chars.next()? {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                c => value.push(c),
            }
        }
        out.push((key.trim().to_string(), value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP http_requests HTTP requests\n\
        # TYPE http_requests counter\n\
        http_requests_total{method=\"GET\",route=\"/a,b}\",status=\"200\"} 12\n\
        ts_auto_buffer_current_size{db=\"default\"} 3\n\
        wal_shipper_compression_ratio NaN\n\
        http_request_duration_seconds_bucket{le=\"+Inf\",route=\"/q\\\"x\\\\\"} 4\n\
        process_cpu_seconds_total 1.5 1700000000000\n\
        garbage{unterminated=\"x 1\n\
        # EOF\n";

    #[test]
    fn samples_are_split_with_quotes_and_escapes_respected() {
        let s: Vec<_> = TEXT.lines().filter_map(split_sample).collect();
        let names: Vec<&str> = s.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "http_requests_total{method=\"GET\",route=\"/a,b}\",status=\"200\"}",
                "ts_auto_buffer_current_size{db=\"default\"}",
                "wal_shipper_compression_ratio",
                "http_request_duration_seconds_bucket{le=\"+Inf\",route=\"/q\\\"x\\\\\"}",
                "process_cpu_seconds_total",
            ]
        );
        assert_eq!(s[0].1, 12.0);
        assert!(s[2].1.is_nan());
        assert_eq!(s[4].1, 1.5);
        assert_eq!(
            parse_series(names[3]).unwrap(),
            [
                ("__name__", "http_request_duration_seconds_bucket"),
                ("le", "+Inf"),
                ("route", "/q\"x\\"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
        assert_eq!(
            parse_series("up").unwrap(),
            [("__name__".to_string(), "up".to_string())]
        );
        assert_eq!(parse_series("m{a=1}"), None);
    }

    #[test]
    fn a_batch_has_every_finite_sample_and_reuses_known_series() {
        let limits = PointLimits::default();
        let mut asked = 0;
        let batch = exposition_batch(TEXT, 42, &limits, |names| {
            let n = names.count();
            asked = n;
            vec![None; n]
        });
        // NaN and the unterminated line are skipped; the rest are new series.
        assert_eq!(asked, 4);
        assert_eq!(batch.series.len(), 4);
        let values: Vec<f64> = batch.samples.iter().map(|s| s.value).collect();
        assert_eq!(values, [12.0, 3.0, 4.0, 1.5]);
        assert!(batch.samples.iter().all(|s| s.timestamp_ms == 42));
        assert!(
            batch
                .series
                .iter()
                .all(|s| matches!(s, NamedSeries::New(_, Some(_))))
        );
    }
}
