//! InfluxDB line protocol ingest: `POST /write` (1.x) and `POST /api/v2/write` (2.x), so
//! Telegraf and existing tools can write to Sluice.
//!
//! Mapping (SPEC §6): each field of a line becomes one point with metric
//! `<measurement>_<field>`, or `<measurement>` for a field named `value`; the tag `entity`, else
//! `host`, becomes the entity (else empty) and leaves the tag set; other tags stay tags. Float,
//! integer and unsigned fields are the value, booleans 1/0; string fields are skipped and
//! counted (`X-Sluice-Skipped-Fields` and a metric). A line without a timestamp takes the
//! server's time. `precision` is `ns` (default), `us`, `ms` or `s` (also the 1.x spellings `n`
//! and `u`); timestamps are stored in milliseconds, rounded down.
//!
//! The whole request is one WAL record: a syntax or validation error anywhere answers 400
//! naming the line, and nothing of the request is written. Parsing is by the
//! `influxdb-line-protocol` crate (InfluxDB's own).

use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use influxdb_line_protocol::{FieldValue, parse_lines, split_lines};
use serde::Deserialize;
use sluice_api::ErrorBody;
use sluice_ts::series::SeriesKey;
use sluice_ts::{Batch, PointLimits};
use sluice_wal::AckLevel;
use utoipa::IntoParams;

use crate::error::ApiError;
use crate::http::extract::{AckParam, BatchBody, TargetDb};
use crate::http::routes::WriteErrors;
use crate::http::routes::ts::write;
use crate::state::AppState;

/// Query parameters of the line protocol routes.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LineProtocolParams {
    /// Timestamp unit: `ns` (default), `us`, `ms`, `s` (1.x spellings `n`, `u` too).
    pub precision: Option<String>,
    /// Database (1.x name); must exist. Default `default`.
    pub db: Option<String>,
    /// Database (2.x name); must exist. Default `default`.
    pub bucket: Option<String>,
    /// Acknowledgement level, default `fsync`.
    pub ack: Option<sluice_api::ts::Ack>,
}

/// Write InfluxDB line protocol (1.x path).
#[utoipa::path(post, path = "/write", tag = "timeseries", params(LineProtocolParams),
    request_body(content = String, content_type = "text/plain", description = "Line protocol"),
    responses(
        (status = 204, description = "Every line written at the requested level"),
        (status = 404, description = "Unknown database", body = ErrorBody),
        WriteErrors,
    ))]
pub async fn write_v1(
    State(state): State<AppState>,
    TargetDb(db_name): TargetDb,
    params: Result<Query<LineProtocolParams>, axum::extract::rejection::QueryRejection>,
    ack: AckParam,
    BatchBody(body): BatchBody,
) -> Result<Response, ApiError> {
    ingest(&state, &db_name, params, ack, &body).await
}

/// Write InfluxDB line protocol (2.x path).
#[utoipa::path(post, path = "/api/v2/write", tag = "timeseries", params(LineProtocolParams),
    request_body(content = String, content_type = "text/plain", description = "Line protocol"),
    responses(
        (status = 204, description = "Every line written at the requested level"),
        (status = 404, description = "Unknown database", body = ErrorBody),
        WriteErrors,
    ))]
pub async fn write_v2(
    State(state): State<AppState>,
    TargetDb(db_name): TargetDb,
    params: Result<Query<LineProtocolParams>, axum::extract::rejection::QueryRejection>,
    ack: AckParam,
    BatchBody(body): BatchBody,
) -> Result<Response, ApiError> {
    ingest(&state, &db_name, params, ack, &body).await
}

async fn ingest(
    state: &AppState,
    db_name: &str,
    params: Result<Query<LineProtocolParams>, axum::extract::rejection::QueryRejection>,
    ack: AckParam,
    body: &[u8],
) -> Result<Response, ApiError> {
    let Query(params) = params
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_parameter", e.body_text()))?;
    // `db`/`bucket` were read (once, for authorization too) into `db_name`.
    let db = state.database(db_name)?;
    let precision = Precision::parse(params.precision.as_deref())?;
    let text = std::str::from_utf8(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_encoding",
            format!("body is not UTF-8: {e}"),
        )
    })?;
    let max_points = state.config().limits.max_points_per_batch;
    let parsed = parse(
        text,
        precision,
        &db.ts.config().point_limits,
        sluice_ts::engine::now_ms(),
        max_points,
    )?;
    state
        .metrics()
        .lineproto_skipped_fields
        .inc_by(parsed.skipped_string_fields);
    if !parsed.batch.is_empty() {
        write(&db, parsed.batch, ack.or(AckLevel::Fsync)).await?;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        "x-sluice-skipped-fields",
        HeaderValue::from(parsed.skipped_string_fields),
    );
    Ok(response)
}

/// Bytes a sample costs once parsed (series index, timestamp, value).
const SAMPLE_BYTES: usize = 20;
/// Bytes a new series costs beyond its strings (lengths, bookkeeping).
const SERIES_OVERHEAD_BYTES: usize = 24;
/// Most bytes of samples and series one request may expand into: as much as the largest JSON
/// batch body (whose points cannot expand), half the WAL's record limit.
const MAX_EXPANDED_BYTES: usize = sluice_wal::record::MAX_PAYLOAD_BYTES / 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Precision {
    Ns,
    Us,
    Ms,
    S,
}

impl Precision {
    fn parse(p: Option<&str>) -> Result<Precision, ApiError> {
        Ok(match p.unwrap_or("ns") {
            "ns" | "n" => Precision::Ns,
            "us" | "u" => Precision::Us,
            "ms" => Precision::Ms,
            "s" => Precision::S,
            other => {
                return Err(ApiError::invalid_field(
                    "precision",
                    format!("{other:?} is not one of ns, us, ms, s"),
                ));
            }
        })
    }

    fn to_ms(self, t: i64) -> Option<i64> {
        match self {
            Precision::Ns => Some(t.div_euclid(1_000_000)),
            Precision::Us => Some(t.div_euclid(1_000)),
            Precision::Ms => Some(t),
            Precision::S => t.checked_mul(1000),
        }
    }
}

/// Samples of a request (grouped by series) and the string fields it skipped.
#[derive(Debug, Default)]
pub struct Parsed {
    pub batch: Batch,
    pub skipped_string_fields: u64,
}

/// A line's series part (measurement and tags) as parsed and checked once per request: lines
/// repeating the same raw text reuse it, and each of its fields maps to one batch series.
struct LineSeries {
    measurement: String,
    entity: String,
    tags: Vec<(String, String)>,
    /// Field name → index in the batch's series.
    fields: sluice_ts::series::HashMap<String, u32>,
}

/// The series part of a line as the parser reads it: after leading whitespace and comment
/// lines, up to the first unescaped space or tab (a backslash escapes the character after it).
/// Equal texts parse to equal series, so it keys the per-request series cache.
fn series_text(raw: &str) -> &str {
    let mut s = raw;
    loop {
        s = s.trim_start_matches([' ', '\t', '\n']);
        if s.starts_with('#') {
            s = s.find('\n').map_or("", |i| &s[i..]);
        } else {
            break;
        }
    }
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b' ' | b'\t' => break,
            _ => i += 1,
        }
    }
    &s[..i.min(s.len())]
}

fn parse(
    text: &str,
    precision: Precision,
    limits: &PointLimits,
    now_ms: i64,
    max_points: usize,
) -> Result<Parsed, ApiError> {
    let mut out = Parsed::default();
    // Interning: raw series text → its parsed form. A repeated series costs one hash of
    // borrowed bytes and no allocation.
    let mut by_raw: sluice_ts::series::HashMap<&str, usize> = Default::default();
    let mut line_series: Vec<LineSeries> = Vec::new();
    let mut expanded_bytes = 0usize;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large_expanded",
            format!(
                "the request expands to more than {MAX_EXPANDED_BYTES} bytes of points \
                 (each field is a point of its own); split it"
            ),
        )
    };
    let line_error = |n: usize, msg: String| ApiError {
        field: Some(format!("line {n}")),
        ..ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_line_protocol",
            format!("line {n}: {msg}"),
        )
    };
    for (i, raw) in split_lines(text).enumerate() {
        let n = i + 1;
        for line in parse_lines(raw) {
            let line = line.map_err(|e| line_error(n, e.to_string()))?;
            let raw_series = series_text(raw);
            let ls = match by_raw.get(raw_series) {
                Some(&ls) => ls,
                None => {
                    let mut entity = String::new();
                    let mut tags: Vec<(String, String)> = line
                        .series
                        .tag_set
                        .iter()
                        .flatten()
                        .map(|(k, v)| (k.as_str().to_string(), v.as_str().to_string()))
                        .collect();
                    for key in ["entity", "host"] {
                        if let Some(pos) = tags.iter().position(|(k, _)| k == key) {
                            entity = tags.remove(pos).1;
                            break;
                        }
                    }
                    // Checks entity and tags (and sorts them) once for the series.
                    let key = SeriesKey::new("m".into(), entity, tags, limits)
                        .map_err(|e| line_error(n, e.to_string()))?;
                    line_series.push(LineSeries {
                        measurement: line.series.measurement.as_str().to_string(),
                        entity: key.entity,
                        tags: key.tags,
                        fields: Default::default(),
                    });
                    by_raw.insert(raw_series, line_series.len() - 1);
                    line_series.len() - 1
                }
            };
            let timestamp_ms = match line.timestamp {
                Some(t) => precision.to_ms(t).ok_or_else(|| {
                    line_error(n, format!("timestamp {t} overflows in precision s"))
                })?,
                None => now_ms,
            };
            for (field, value) in &line.field_set {
                let value = match value {
                    FieldValue::F64(v) => *v,
                    FieldValue::I64(v) => *v as f64,
                    FieldValue::U64(v) => *v as f64,
                    FieldValue::Boolean(b) => f64::from(u8::from(*b)),
                    FieldValue::String(_) => {
                        out.skipped_string_fields += 1;
                        continue;
                    }
                };
                let entry = &mut line_series[ls];
                let series = match entry.fields.get(field.as_str()) {
                    Some(&s) => s,
                    None => {
                        let metric = if field.as_str() == "value" {
                            entry.measurement.clone()
                        } else {
                            format!("{}_{}", entry.measurement, field.as_str())
                        };
                        let key = SeriesKey::new(
                            metric,
                            entry.entity.clone(),
                            entry.tags.clone(),
                            limits,
                        )
                        .map_err(|e| line_error(n, e.to_string()))?;
                        expanded_bytes += SERIES_OVERHEAD_BYTES + key.heap_bytes();
                        let s = out.batch.add_series(key);
                        entry.fields.insert(field.as_str().to_string(), s);
                        s
                    }
                };
                out.batch
                    .push(series, timestamp_ms, value)
                    .map_err(|e| line_error(n, e.to_string()))?;
                expanded_bytes += SAMPLE_BYTES;
                if expanded_bytes > MAX_EXPANDED_BYTES {
                    return Err(too_large());
                }
                if out.batch.len() > max_points {
                    return Err(ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "too_many_points",
                        format!("more than {max_points} points in one request; split it"),
                    ));
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Parsed {
        fn points(&self) -> Vec<sluice_ts::Point> {
            self.batch.to_points()
        }
    }

    fn p(text: &str, precision: Precision) -> Result<Parsed, ApiError> {
        parse(text, precision, &PointLimits::default(), 42, 1000)
    }

    #[test]
    fn fields_tags_entity_and_precision() {
        let r = p(
            "cpu,host=h1,dc=eu usage=1.5,value=2i,up=true,note=\"x\" 1700000000123456789\n",
            Precision::Ns,
        )
        .unwrap();
        assert_eq!(r.skipped_string_fields, 1);
        let got: Vec<(String, String, f64, i64)> = r
            .points()
            .iter()
            .map(|p| (p.metric.clone(), p.entity.clone(), p.value, p.timestamp_ms))
            .collect();
        assert_eq!(
            got,
            vec![
                ("cpu_usage".into(), "h1".into(), 1.5, 1_700_000_000_123),
                ("cpu".into(), "h1".into(), 2.0, 1_700_000_000_123),
                ("cpu_up".into(), "h1".into(), 1.0, 1_700_000_000_123),
            ]
        );
        assert_eq!(
            r.points()[0].tags,
            vec![("dc".to_string(), "eu".to_string())]
        );
        // `entity` wins over `host`, which then stays a tag.
        let r = p("m,entity=e1,host=h1 value=1 5", Precision::S).unwrap();
        assert_eq!(r.points()[0].entity, "e1");
        assert_eq!(r.points()[0].timestamp_ms, 5000);
        assert_eq!(
            r.points()[0].tags,
            vec![("host".to_string(), "h1".to_string())]
        );
        // No timestamp: now; precision us and ms.
        assert_eq!(
            p("m value=1", Precision::Us).unwrap().points()[0].timestamp_ms,
            42
        );
        assert_eq!(
            p("m value=1 1500", Precision::Us).unwrap().points()[0].timestamp_ms,
            1
        );
        assert_eq!(
            p("m value=1 1500", Precision::Ms).unwrap().points()[0].timestamp_ms,
            1500
        );
    }

    #[test]
    fn series_are_interned_per_request() {
        let r = p(
            "cpu,host=a u=1,s=2 1\n  cpu,host=b u=3 1\n# c\ncpu,host=a s=4,u=5 2\nm\\ x,host=a value=6 3\nm\\ x,host=a value=7 4",
            Precision::Ms,
        )
        .unwrap();
        let keys: Vec<String> = r
            .batch
            .series
            .iter()
            .map(|k| format!("{}/{}", k.metric, k.entity))
            .collect();
        assert_eq!(keys, ["cpu_u/a", "cpu_s/a", "cpu_u/b", "m x/a"]);
        let samples: Vec<(u32, i64, f64)> = r
            .batch
            .samples
            .iter()
            .map(|s| (s.series, s.timestamp_ms, s.value))
            .collect();
        assert_eq!(
            samples,
            [
                (0, 1, 1.0),
                (1, 1, 2.0),
                (2, 1, 3.0),
                (1, 2, 4.0),
                (0, 2, 5.0),
                (3, 3, 6.0),
                (3, 4, 7.0)
            ]
        );
        assert_eq!(
            series_text("  # x\n cpu\\ a,b=c\\ d v=1"),
            "cpu\\ a,b=c\\ d"
        );
        assert_eq!(series_text("é\\é x"), "é\\é");
    }

    #[test]
    fn escaping_is_honoured() {
        let r = p(
            "my\\ metric,tag\\,key=va\\=lue,host=a\\ b value=1 1",
            Precision::Ms,
        )
        .unwrap();
        assert_eq!(r.points()[0].metric, "my metric");
        assert_eq!(r.points()[0].entity, "a b");
        assert_eq!(
            r.points()[0].tags,
            vec![("tag,key".to_string(), "va=lue".to_string())]
        );
    }

    #[test]
    fn errors_name_the_line() {
        let e = p("m value=1 1\n\nm value=oops 2\n", Precision::Ms).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("line 3"));
        let e = p("m value=1 9223372036854775807", Precision::S).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("line 1"));
        assert!(p("# a comment\nm value=1 1", Precision::Ms).is_ok());
    }
}
