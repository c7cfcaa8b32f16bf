//! InfluxDB line protocol ingest: `POST /write` (1.x) and `POST /api/v2/write` (2.x), so
//! Telegraf and existing tools can write to Sluice.
//!
//! Mapping: each field of a line becomes one point with metric
//! `<measurement>_<field>`, or `<measurement>` for a field named `value`; the tag `entity`
//! becomes the entity and leaves the tag set, else the `host` tag's value is the entity and
//! `host` stays a tag (else the entity is empty); other tags stay tags. Float,
//! integer and unsigned fields are the value, booleans 1/0; string fields are skipped and
//! counted (`X-Sluice-Skipped-Fields` and a metric). A line without a timestamp takes the
//! server's time. `precision` is `ns` (default), `us`, `ms` or `s` (also the 1.x spellings `n`
//! and `u`); timestamps are stored in milliseconds, rounded down.
//!
//! The whole request is one WAL record: a syntax or validation error anywhere answers 400
//! naming the line, and nothing of the request is written.
//!
//! Parsing is `sluice-lineproto`'s (InfluxDB's grammar, checked against InfluxDB's own parser;
//! errors name the line and column). Series are interned per request by their raw text, so a
//! repeated series is parsed once and costs one hash afterwards, and the request becomes one
//! [`Batch`] of series and samples.

use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sluice_api::ErrorBody;
use sluice_api::ErrorCode;
use sluice_lineproto::{Field, FieldValue, LineError, Precision};
use sluice_ts::series::SeriesKey;
use sluice_ts::{Batch, PointLimits};
use sluice_wal::AckLevel;
use utoipa::IntoParams;

use crate::core::ts::write;
use crate::error::ApiError;
use crate::http::extract::{AckParam, BatchBody, TargetDb};
use crate::http::routes::WriteErrors;
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
#[utoipa::path(post, path = "/write", tag = "timeseries", extensions(("x-sluice-authz" = json!({"action": "write", "scope": "database"}))), params(LineProtocolParams),
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
#[utoipa::path(post, path = "/api/v2/write", tag = "timeseries", extensions(("x-sluice-authz" = json!({"action": "write", "scope": "database"}))), params(LineProtocolParams),
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
    let Query(params) =
        params.map_err(|e| ApiError::new(ErrorCode::InvalidParameter, e.body_text()))?;
    // `db`/`bucket` were read (once, for authorization too) into `db_name`.
    let db = state.database(db_name)?;
    let precision = parse_precision(params.precision.as_deref())?;
    let text = std::str::from_utf8(body).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidEncoding,
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

/// Bytes a point costs beyond its strings (timestamp, value, lengths).
const SERIES_OVERHEAD_BYTES: usize = 24;
/// Most bytes of points (each with its series' strings) one request may expand into: as much
/// as the largest JSON batch body (whose points cannot expand), half the WAL's record limit.
const MAX_EXPANDED_BYTES: usize = sluice_wal::record::MAX_PAYLOAD_BYTES / 2;

/// The `precision` parameter (default `ns`).
fn parse_precision(p: Option<&str>) -> Result<Precision, ApiError> {
    let p = p.unwrap_or("ns");
    Precision::parse(p).ok_or_else(|| {
        ApiError::invalid_field("precision", format!("{p:?} is not one of ns, us, ms, s"))
    })
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
    /// Field name → index in the batch's series and the bytes its point form costs (what
    /// each of its samples counts toward `MAX_EXPANDED_BYTES`).
    fields: sluice_ts::series::HashMap<String, (u32, usize)>,
}

fn parse(
    text: &str,
    precision: Precision,
    limits: &PointLimits,
    now_ms: i64,
    max_points: usize,
) -> Result<Parsed, ApiError> {
    let mut p = Parser {
        out: Parsed::default(),
        by_raw: Default::default(),
        line_series: Vec::new(),
        expanded_bytes: 0,
        precision,
        limits,
        now_ms,
        max_points,
    };
    let mut lines = sluice_lineproto::Parser::new(text);
    let mut fields = Vec::new();
    while let Some(line) = lines.next_line(&mut fields) {
        let line = line.map_err(lp_error)?;
        p.line(
            line.number,
            line.series_text,
            || line.series(),
            &fields,
            line.timestamp,
        )?;
    }
    Ok(p.out)
}

/// The state of one request's parse: samples so far and the series cache.
struct Parser<'t, 'l> {
    out: Parsed,
    /// Raw series text → index in `line_series`.
    by_raw: sluice_ts::series::HashMap<&'t str, usize>,
    line_series: Vec<LineSeries>,
    expanded_bytes: usize,
    precision: Precision,
    limits: &'l PointLimits,
    now_ms: i64,
    max_points: usize,
}

fn line_error(n: usize, msg: String) -> ApiError {
    ApiError {
        field: Some(format!("line {n}")),
        ..ApiError::new(ErrorCode::InvalidLineProtocol, format!("line {n}: {msg}"))
    }
}

/// A syntax error: its line as the field, line and column in the message.
fn lp_error(e: LineError) -> ApiError {
    ApiError {
        field: Some(format!("line {}", e.line)),
        ..ApiError::new(ErrorCode::InvalidLineProtocol, e.to_string())
    }
}

impl<'t> Parser<'t, '_> {
    /// Adds the samples of line `n`: `series_text` keys the cache, `series` parses it on a
    /// miss.
    fn line(
        &mut self,
        n: usize,
        series_text: &'t str,
        series: impl FnOnce() -> Result<sluice_lineproto::Series<'t>, LineError>,
        fields: &[Field<'_>],
        timestamp: Option<i64>,
    ) -> Result<(), ApiError> {
        let ls = match self.by_raw.get(series_text) {
            Some(&ls) => ls,
            None => {
                let sluice_lineproto::SluiceSeries {
                    measurement,
                    entity,
                    tags,
                } = series().map_err(lp_error)?.into_sluice();
                // The syntax is checked here; the limits (lengths, counts) are checked by each
                // numeric field's series key, so a line of string fields only, which writes
                // nothing, is not refused for them.
                self.line_series.push(LineSeries {
                    measurement,
                    entity,
                    tags,
                    fields: Default::default(),
                });
                self.by_raw.insert(series_text, self.line_series.len() - 1);
                self.line_series.len() - 1
            }
        };
        let timestamp_ms = match timestamp {
            Some(t) => self.precision.to_millis(t).ok_or_else(|| {
                line_error(
                    n,
                    format!(
                        "timestamp {t} in precision {:?} is outside the range InfluxDB accepts",
                        self.precision
                    ),
                )
            })?,
            None => self.now_ms,
        };
        for f in fields {
            let field = f.key.as_ref();
            let value = match f.value {
                FieldValue::Float(v) => v,
                FieldValue::Integer(v) => v as f64,
                FieldValue::UInteger(v) => v as f64,
                FieldValue::Boolean(b) => f64::from(u8::from(b)),
                FieldValue::String(_) => {
                    self.out.skipped_string_fields += 1;
                    continue;
                }
            };
            let entry = &mut self.line_series[ls];
            let (series, point_bytes) = match entry.fields.get(field) {
                Some(&s) => s,
                None => {
                    let metric = sluice_lineproto::metric_name(&entry.measurement, field);
                    let key = SeriesKey::new(
                        metric,
                        entry.entity.clone(),
                        entry.tags.clone(),
                        self.limits,
                    )
                    .map_err(|e| line_error(n, e.to_string()))?;
                    let point_bytes = SERIES_OVERHEAD_BYTES + key.heap_bytes();
                    let s = self.out.batch.add_series(key);
                    entry.fields.insert(field.to_string(), (s, point_bytes));
                    (s, point_bytes)
                }
            };
            self.out
                .batch
                .push(series, timestamp_ms, value)
                .map_err(|e| line_error(n, e.to_string()))?;
            // Counted as points (each repeating its series' names and tags), as queries,
            // exports and changefeed events show them: a small body of many fields on long tag
            // sets cannot become an unbounded event or answer.
            self.expanded_bytes += point_bytes;
            if self.expanded_bytes > MAX_EXPANDED_BYTES {
                return Err(ApiError::new(
                    ErrorCode::TooLargeExpanded,
                    format!(
                        "the request expands to more than {MAX_EXPANDED_BYTES} bytes of points \
                         (each field is a point of its own); split it"
                    ),
                ));
            }
            if self.out.batch.len() > self.max_points {
                return Err(ApiError::new(
                    ErrorCode::TooManyPoints,
                    format!(
                        "more than {} points in one request; split it",
                        self.max_points
                    ),
                ));
            }
        }
        Ok(())
    }
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
        // `host` names the entity and stays a tag.
        assert_eq!(
            r.points()[0].tags,
            vec![
                ("dc".to_string(), "eu".to_string()),
                ("host".to_string(), "h1".to_string())
            ]
        );
        // `entity` wins over `host`, which stays a tag.
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
    fn lines_of_string_fields_only_are_skipped_whatever_their_tag_lengths() {
        let long = "x".repeat(300);
        let text = format!("m,a=1 msg=\"x\" 1\nsyslog,host={long} message=\"y\" 2\nm v=1 3");
        let r = p(&text, Precision::Ms).unwrap();
        assert_eq!(r.skipped_string_fields, 2);
        assert_eq!(r.points().len(), 1);
        // A numeric field on such a series is checked against the limits, and refused.
        let e = p(&format!("m v=1 1\nsyslog,host={long} v=1 2"), Precision::Ms).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("line 2"));
        // Syntax is checked on every line: a duplicate tag key is refused with its column.
        let e = p("m v=1 1\nm,a=1,a=2 msg=\"x\" 1", Precision::Ms).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("line 2"));
        assert!(
            e.message.contains("line 2, column 7: duplicate tag key"),
            "{}",
            e.message
        );
    }

    #[test]
    fn what_telegraf_sends_and_influxdb_accepts() {
        let text = "cpu value=1. 1000\r\ncpu value=.1 2000 \r\ncpu value=-0. 3000\ncpu,regions=east\\\\ value=4 \n";
        let r = p(text, Precision::Ms).unwrap();
        let got: Vec<(f64, i64)> = r
            .points()
            .iter()
            .map(|p| (p.value, p.timestamp_ms))
            .collect();
        assert_eq!(got[..3], [(1.0, 1000), (0.1, 2000), (-0.0, 3000)]);
        assert_eq!(got[3], (4.0, 42));
        assert_eq!(
            r.points()[3].tags,
            vec![("regions".to_string(), "east\\".to_string())]
        );
        for bad in [
            "c\tpu value=1",
            "cpu\u{1} value=1",
            "cpu value=1 9223372036854775807",
        ] {
            let e = p(bad, Precision::Ns).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidLineProtocol, "{bad:?}");
            assert_eq!(e.field.as_deref(), Some("line 1"));
        }
        // Timestamps outside InfluxDB's range in the request's precision.
        assert!(p("m v=1 9223372036854775806", Precision::Ns).is_ok());
        assert!(p("m v=1 9223372037", Precision::S).is_err());
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
            vec![
                ("host".to_string(), "a b".to_string()),
                ("tag,key".to_string(), "va=lue".to_string())
            ]
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
