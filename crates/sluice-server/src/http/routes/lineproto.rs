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
//! Parsing: a body without backslashes or double quotes (no escapes, no string fields: what
//! agents send almost always) takes a byte-level fast path that accepts only plain lines and
//! hands anything else to the `influxdb-line-protocol` crate (InfluxDB's own parser), which also
//! parses every other body; a property test holds both to the same answers. Series are
//! interned per request by their raw text, so a repeated series costs one hash and no
//! allocation, and the request becomes one [`Batch`] of series and samples. The nom-based
//! crate alone was ~30% of the ingest profile; with the fast path, line protocol ingest runs at
//! ~1.9x VictoriaMetrics on the benchmark (bench/RESULTS.md).

use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use influxdb_line_protocol::{FieldValue, parse_lines, split_lines};
use serde::Deserialize;
use sluice_api::ErrorBody;
use sluice_api::ErrorCode;
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
    let precision = Precision::parse(params.precision.as_deref())?;
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
    /// Field name → index in the batch's series and the bytes its point form costs (what
    /// each of its samples counts toward `MAX_EXPANDED_BYTES`).
    fields: sluice_ts::series::HashMap<String, (u32, usize)>,
}

/// A field's value as ingested: a number (floats, integers, booleans as 1/0) or a skipped
/// string.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Value {
    Number(f64),
    Text,
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

/// The fast path: lines of a body without backslashes or double quotes (no escapes, no string
/// fields), which is what metrics agents send almost always. It accepts only lines whose
/// meaning is plain and answers `None` for anything else, which then goes to the
/// `influxdb-line-protocol` crate (InfluxDB's own parser) for its result or its error; the
/// property test `fast_path_agrees_with_the_reference_parser` holds the two to the same
/// answers. In such a body, lines are exactly the `\n`-separated pieces.
mod fast {
    use super::Value;

    /// Splits a line (already trimmed of leading blanks) into its series text, its fields
    /// (into `fields`) and its timestamp.
    pub fn line<'a>(
        line: &'a str,
        fields: &mut Vec<(&'a str, Value)>,
    ) -> Option<(&'a str, Option<i64>)> {
        fields.clear();
        let b = line.as_bytes();
        let series_end = b.iter().position(|&c| c == b' ')?;
        let mut i = series_end;
        while i < b.len() && b[i] == b' ' {
            i += 1;
        }
        loop {
            let key_end = i + b[i..].iter().position(|&c| c == b'=')?;
            let key = &line[i..key_end];
            if key.is_empty() || key.bytes().any(|c| matches!(c, b',' | b' ' | b'\t')) {
                return None;
            }
            let v = key_end + 1;
            let v_end = v + b[v..]
                .iter()
                .position(|&c| c == b',' || c == b' ')
                .unwrap_or(b.len() - v);
            fields.push((key, Value::Number(number(&line[v..v_end])?)));
            i = v_end;
            if i == b.len() {
                return Some((&line[..series_end], None));
            }
            if b[i] == b' ' {
                break;
            }
            i += 1; // ','
        }
        while i < b.len() && b[i] == b' ' {
            i += 1;
        }
        let t_end = i + b[i..]
            .iter()
            .position(|&c| c == b' ')
            .unwrap_or(b.len() - i);
        let t = integer(&line[i..t_end])?;
        if b[t_end..].iter().any(|&c| c != b' ') {
            return None;
        }
        Some((&line[..series_end], Some(t)))
    }

    /// A series text's measurement and tags, in the order given.
    pub fn series(text: &str) -> Option<(&str, Vec<(&str, &str)>)> {
        let mut parts = text.split(',');
        let measurement = parts.next()?;
        if measurement.is_empty() || measurement.bytes().any(|c| matches!(c, b'\t' | b'\0')) {
            return None;
        }
        let mut tags = Vec::new();
        for part in parts {
            let (k, v) = part.split_once('=')?;
            if k.is_empty() || v.is_empty() || k.contains('\t') || v.contains('\t') {
                return None;
            }
            tags.push((k, v));
        }
        Some((measurement, tags))
    }

    /// `-?digits`, as an i64.
    fn integer(s: &str) -> Option<i64> {
        let digits = s.strip_prefix('-').unwrap_or(s);
        if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    }

    /// A field value of the plain forms: float (`-?d+`, `-?d+.d+`, with an optional
    /// `[eE][+-]?d+`), integer (`-?d+i`), unsigned (`d+u`), boolean.
    fn number(s: &str) -> Option<f64> {
        match s {
            "t" | "T" | "true" | "True" | "TRUE" => return Some(1.0),
            "f" | "F" | "false" | "False" | "FALSE" => return Some(0.0),
            _ => {}
        }
        if let Some(i) = s.strip_suffix('i') {
            return integer(i).map(|v| v as f64);
        }
        if let Some(u) = s.strip_suffix('u') {
            if u.is_empty() || !u.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            return u.parse::<u64>().ok().map(|v| v as f64);
        }
        let rest = s.strip_prefix('-').unwrap_or(s);
        let (mantissa, exponent) = match rest.find(['e', 'E']) {
            Some(e) => (&rest[..e], Some(&rest[e + 1..])),
            None => (rest, None),
        };
        let (int, frac) = match mantissa.split_once('.') {
            Some((a, b)) => (a, Some(b)),
            None => (mantissa, None),
        };
        let digits = |d: &str| !d.is_empty() && d.bytes().all(|c| c.is_ascii_digit());
        if !digits(int) || frac.is_some_and(|f| !digits(f)) {
            return None;
        }
        if let Some(e) = exponent {
            let e = e.strip_prefix(['+', '-']).unwrap_or(e);
            if !digits(e) {
                return None;
            }
        }
        s.parse().ok()
    }
}

fn parse(
    text: &str,
    precision: Precision,
    limits: &PointLimits,
    now_ms: i64,
    max_points: usize,
) -> Result<Parsed, ApiError> {
    parse_with(text, precision, limits, now_ms, max_points, true)
}

/// [`parse`], with the fast path on or off (the property test compares the two).
fn parse_with(
    text: &str,
    precision: Precision,
    limits: &PointLimits,
    now_ms: i64,
    max_points: usize,
    fast_path: bool,
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
    if fast_path && !text.bytes().any(|c| c == b'\\' || c == b'"') {
        let mut fields = Vec::new();
        for (i, raw) in text.split('\n').enumerate() {
            let line = raw.trim_start_matches([' ', '\t']);
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match fast::line(line, &mut fields) {
                Some((series, timestamp))
                    if p.line(i + 1, series, || fast_series(series), &fields, timestamp)? => {}
                _ => p.reference(i + 1, raw)?,
            }
        }
    } else {
        for (i, raw) in split_lines(text).enumerate() {
            p.reference(i + 1, raw)?;
        }
    }
    Ok(p.out)
}

/// A series text of the fast path as owned measurement and tags (`None`: leave it to the
/// reference parser).
fn fast_series(text: &str) -> Option<(String, Vec<(String, String)>)> {
    let (m, tags) = fast::series(text)?;
    Some((
        m.to_string(),
        tags.into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    ))
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

impl<'t> Parser<'t, '_> {
    /// Parses line `n` with the reference parser (escapes, string fields, and whatever the
    /// fast path declined).
    fn reference(&mut self, n: usize, raw: &'t str) -> Result<(), ApiError> {
        for line in parse_lines(raw) {
            let line = line.map_err(|e| line_error(n, e.to_string()))?;
            let fields: Vec<(&str, Value)> = line
                .field_set
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        FieldValue::F64(v) => Value::Number(*v),
                        FieldValue::I64(v) => Value::Number(*v as f64),
                        FieldValue::U64(v) => Value::Number(*v as f64),
                        FieldValue::Boolean(b) => Value::Number(f64::from(u8::from(*b))),
                        FieldValue::String(_) => Value::Text,
                    };
                    (k.as_str(), v)
                })
                .collect();
            let series = || {
                let tags = line
                    .series
                    .tag_set
                    .iter()
                    .flatten()
                    .map(|(k, v)| (k.as_str().to_string(), v.as_str().to_string()))
                    .collect();
                Some((line.series.measurement.as_str().to_string(), tags))
            };
            self.line(n, series_text(raw), series, &fields, line.timestamp)?;
        }
        Ok(())
    }

    /// Adds the samples of line `n`: `series_text` keys the cache, `series` parses it on a
    /// miss. `false` (nothing added) when `series` declines: the fast path then hands the
    /// line to the reference parser.
    fn line(
        &mut self,
        n: usize,
        series_text: &'t str,
        series: impl FnOnce() -> Option<(String, Vec<(String, String)>)>,
        fields: &[(&str, Value)],
        timestamp: Option<i64>,
    ) -> Result<bool, ApiError> {
        let ls = match self.by_raw.get(series_text) {
            Some(&ls) => ls,
            None => {
                let Some((measurement, mut tags)) = series() else {
                    return Ok(false);
                };
                // The tag `entity` becomes the entity; else the `host` tag names it and stays
                // a tag (so PromQL selects it as `host`, see docs/prometheus.md).
                let entity = match tags.iter().position(|(k, _)| k == "entity") {
                    Some(pos) => tags.remove(pos).1,
                    None => tags
                        .iter()
                        .find(|(k, _)| k == "host")
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default(),
                };
                // Not checked here: a line of string fields only writes nothing and is not
                // refused for its tags; each numeric field's series key checks them.
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
            Some(t) => self
                .precision
                .to_ms(t)
                .ok_or_else(|| line_error(n, format!("timestamp {t} overflows in precision s")))?,
            None => self.now_ms,
        };
        for &(field, value) in fields {
            let Value::Number(value) = value else {
                self.out.skipped_string_fields += 1;
                continue;
            };
            let entry = &mut self.line_series[ls];
            let (series, point_bytes) = match entry.fields.get(field) {
                Some(&s) => s,
                None => {
                    let metric = if field == "value" {
                        entry.measurement.clone()
                    } else {
                        format!("{}_{field}", entry.measurement)
                    };
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
        Ok(true)
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

    /// Lines built from tokens chosen to hit the grammar's edges (signs, exponents, suffixes,
    /// booleans, empty parts, tabs, stray `=` and `,`, comments, blank lines, timestamps).
    fn lp_text() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let name = prop_oneof![
            Just("cpu"),
            Just("m"),
            Just("é"),
            Just(""),
            Just("a=b"),
            Just("a,b"),
            Just("x\t"),
            Just("host"),
            Just("entity"),
            Just("value"),
            Just("t"),
        ];
        let value = prop_oneof![
            Just("1"),
            Just("-1"),
            Just("1.5"),
            Just("-0.25"),
            Just("1e3"),
            Just("1E-3"),
            Just("2.5e+2"),
            Just("1."),
            Just(".5"),
            Just("+1"),
            Just("1i"),
            Just("-3i"),
            Just("9223372036854775808i"),
            Just("7u"),
            Just("-7u"),
            Just("1.5i"),
            Just("t"),
            Just("TRUE"),
            Just("False"),
            Just("f"),
            Just("tru"),
            Just(""),
            Just("1e999"),
            Just("0x10"),
            Just("nan"),
            Just("inf"),
            Just("1=2"),
            Just("1,"),
        ];
        let tag = (name.clone(), name.clone()).prop_map(|(k, v)| format!("{k}={v}"));
        let field = (name.clone(), value).prop_map(|(k, v)| format!("{k}={v}"));
        let ts = prop_oneof![
            Just(String::new()),
            Just(" 1700000000123".to_string()),
            Just(" -5".into()),
            Just(" 9223372036854775807".into()),
            Just(" 99999999999999999999".into()),
            Just(" 12 ".into()),
            Just("  12".into()),
            Just(" +1".into()),
            Just(" x".into()),
            Just(" ".into()),
        ];
        let line = (
            prop_oneof![Just(""), Just(" "), Just("\t")],
            name,
            proptest::collection::vec(tag, 0..3),
            prop_oneof![Just(" "), Just("  "), Just("\t"), Just(",")],
            proptest::collection::vec(field, 0..3),
            ts,
        )
            .prop_map(|(lead, m, tags, sep, fields, ts)| {
                let mut l = format!("{lead}{m}");
                for t in tags {
                    l.push(',');
                    l.push_str(&t);
                }
                l.push_str(sep);
                l.push_str(&fields.join(","));
                l.push_str(&ts);
                l
            });
        let line = prop_oneof![
            8 => line,
            1 => Just("# a comment".to_string()),
            1 => Just(String::new()),
            1 => Just("  ".to_string()),
        ];
        proptest::collection::vec(line, 1..6).prop_map(|ls| ls.join("\n"))
    }

    proptest::proptest! {
        #[test]
        fn fast_path_agrees_with_the_reference_parser(text in lp_text()) {
            let run = |fast| {
                parse_with(&text, Precision::Ns, &PointLimits::default(), 42, 1000, fast)
                    .map(|p| (p.points(), p.skipped_string_fields))
                    .map_err(|e| (e.code, e.field))
            };
            proptest::prop_assert_eq!(run(true), run(false), "{:?}", text);
        }
    }

    #[test]
    fn lines_of_string_fields_only_are_skipped_whatever_their_tags() {
        let long = "x".repeat(300);
        let text = format!("m,a=1,a=2 msg=\"x\" 1\nsyslog,host={long} message=\"y\" 2\nm v=1 3");
        let r = p(&text, Precision::Ms).unwrap();
        assert_eq!(r.skipped_string_fields, 2);
        assert_eq!(r.points().len(), 1);
        // A numeric field on such a series is checked, and refused.
        let e = p("m,a=1,a=2 v=1 1", Precision::Ms).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("line 1"));
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
