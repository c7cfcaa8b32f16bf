//! The Prometheus HTTP API (what Grafana's Prometheus data source and `promtool` speak) and
//! Prometheus remote write, on every database: flat routes act on `default`, the same routes
//! under `/v1/databases/{db}/` on that database.
//!
//! Answers have Prometheus's envelopes: `{"status":"success","data":…}` and, on failure,
//! `{"status":"error","errorType":…,"error":…}` with Prometheus's status codes (400
//! `bad_data`, 422 `execution`, 503 `timeout`), plus our `error_id`. Parameters come from the
//! query string and, for POST, a form body, as Prometheus reads them (`match[]` repeats).
//! Queries run on the blocking pool with a deadline (`ts.promql_timeout_ms`, shortened by a
//! request's `timeout`). The data model (which labels a series has) is documented in
//! docs/prometheus.md and `core::prom`.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sluice_api::ErrorBody;
use sluice_promql::{Labels, Options, Value};
use sluice_wal::AckLevel;

use crate::core::prom::{self, TsStorage};
use crate::core::ts::write_named;
use crate::error::ApiError;
use crate::http::error::{ErrorShaped, http_status};
use crate::http::extract::{AckParam, BatchBody, TargetDb};
use crate::http::routes::WriteErrors;
use crate::request_id;
use crate::state::AppState;

/// Most steps a range query may have per series (Prometheus's limit).
const MAX_STEPS: i64 = 11_000;

/// Request parameters: the query string, then (POST) the form body.
pub struct PromForm(Vec<(String, String)>);

impl PromForm {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

impl FromRequest<AppState> for PromForm {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let mut pairs: Vec<(String, String)> =
            form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
                .into_owned()
                .collect();
        let is_form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if req.method() == Method::POST && is_form {
            let BatchBody(body) = BatchBody::from_request(req, state)
                .await
                .map_err(PromError::from_api)
                .map_err(IntoResponse::into_response)?;
            pairs.extend(form_urlencoded::parse(&body).into_owned());
        }
        Ok(PromForm(pairs))
    }
}

/// A Prometheus-shaped error answer.
pub struct PromError {
    status: StatusCode,
    error_type: &'static str,
    message: String,
}

impl PromError {
    fn bad_data(message: impl Into<String>) -> PromError {
        PromError {
            status: StatusCode::BAD_REQUEST,
            error_type: "bad_data",
            message: message.into(),
        }
    }

    fn from_api(e: ApiError) -> PromError {
        let status = http_status(e.code);
        let error_type = match status.as_u16() {
            400 | 413 => "bad_data",
            404 => "not_found",
            422 => "execution",
            503 => "unavailable",
            s if s >= 500 => "internal",
            _ => "bad_data",
        };
        if status.is_server_error() {
            tracing::error!(request_id = %request_id::current(), "{}", e.message);
        }
        PromError {
            status,
            error_type,
            message: e.message,
        }
    }

    fn from_query(e: sluice_promql::Error) -> PromError {
        let status = match &e {
            sluice_promql::Error::BadData(_) => StatusCode::BAD_REQUEST,
            sluice_promql::Error::Execution(_) => StatusCode::UNPROCESSABLE_ENTITY,
            sluice_promql::Error::Timeout(_) => StatusCode::SERVICE_UNAVAILABLE,
            sluice_promql::Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() && !matches!(e, sluice_promql::Error::Timeout(_)) {
            tracing::error!(request_id = %request_id::current(), "query failed: {e}");
        }
        PromError {
            status,
            error_type: e.error_type(),
            message: e.to_string(),
        }
    }
}

impl IntoResponse for PromError {
    fn into_response(self) -> Response {
        let body = json!({
            "status": "error",
            "errorType": self.error_type,
            "error": self.message,
            "error_id": request_id::current(),
        });
        let mut r = (self.status, axum::Json(body)).into_response();
        r.extensions_mut().insert(ErrorShaped);
        r
    }
}

pub type PromResult = Result<Response, PromError>;

/// `{"status":"success","data":<data>}` from pre-rendered JSON.
fn success(data: &str) -> Response {
    let mut body = String::with_capacity(data.len() + 32);
    body.push_str(r#"{"status":"success","data":"#);
    body.push_str(data);
    body.push('}');
    let mut r = body.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn push_json_str(out: &mut String, s: &str) {
    // serde_json's escaping; a `&str` always serializes.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

fn push_labels(out: &mut String, l: &Labels) {
    out.push('{');
    for (i, (k, v)) in l.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_str(out, k);
        out.push(':');
        push_json_str(out, v);
    }
    out.push('}');
}

fn push_point(out: &mut String, t: i64, v: f64) {
    out.push('[');
    sluice_promql::value::push_timestamp(out, t);
    out.push_str(",\"");
    sluice_promql::value::push_float(out, v);
    out.push_str("\"]");
}

fn render(value: &Value) -> String {
    let mut out = String::with_capacity(256);
    let _ = write!(out, r#"{{"resultType":"{}","result":"#, value.type_name());
    match value {
        Value::Scalar(t, v) => push_point(&mut out, *t, *v),
        Value::String(t, s) => {
            let _ = write!(out, "[{},", sluice_promql::value::format_timestamp(*t));
            push_json_str(&mut out, s);
            out.push(']');
        }
        Value::Vector(samples) => {
            out.push('[');
            for (i, s) in samples.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(r#"{"metric":"#);
                push_labels(&mut out, &s.labels);
                out.push_str(r#","value":"#);
                push_point(&mut out, s.t, s.v);
                out.push('}');
            }
            out.push(']');
        }
        Value::Matrix(series) => {
            out.push('[');
            for (i, s) in series.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(r#"{"metric":"#);
                push_labels(&mut out, &s.labels);
                out.push_str(r#","values":["#);
                for (j, (t, v)) in s.samples.iter().enumerate() {
                    if j > 0 {
                        out.push(',');
                    }
                    push_point(&mut out, *t, *v);
                }
                out.push_str("]}");
            }
            out.push(']');
        }
    }
    out.push('}');
    out
}

/// A time parameter as Prometheus reads it: Unix seconds (a float) or RFC 3339.
fn parse_time(name: &str, s: &str) -> Result<i64, PromError> {
    if let Ok(f) = s.parse::<f64>()
        && f.is_finite()
    {
        let secs = f.trunc();
        let frac = ((f - secs) * 1000.0).round();
        if secs.abs() < 9.2e15 {
            return Ok(secs as i64 * 1000 + frac as i64);
        }
    }
    crate::timefmt::ms_from_rfc3339(s).ok_or_else(|| {
        PromError::bad_data(format!(
            "invalid parameter \"{name}\": cannot parse \"{s}\" to a valid timestamp"
        ))
    })
}

/// A duration parameter: seconds (a float) or a Prometheus duration (`1m30s`), in ms.
fn parse_duration(name: &str, s: &str) -> Result<i64, PromError> {
    if let Ok(f) = s.parse::<f64>() {
        let ms = f * 1000.0;
        if ms.is_finite() && ms.abs() < 9.2e18 {
            return Ok(ms.round() as i64);
        }
    } else if let Ok(d) = promql_duration(s) {
        return Ok(d);
    }
    Err(PromError::bad_data(format!(
        "invalid parameter \"{name}\": cannot parse \"{s}\" to a valid duration"
    )))
}

fn promql_duration(s: &str) -> Result<i64, String> {
    sluice_promql::parse_duration(s).map(|d| d.as_millis().min(i64::MAX as u128) as i64)
}

/// The query's options: the server's limits, and a deadline shortened by `timeout`.
fn options(state: &AppState, form: &PromForm) -> Result<Options, PromError> {
    let ts = &state.config().ts;
    let mut timeout = ts.promql_timeout_ms as i64;
    if let Some(t) = form.get("timeout").filter(|t| !t.is_empty()) {
        timeout = timeout.min(parse_duration("timeout", t)?.max(1));
    }
    Ok(Options {
        lookback_ms: ts.promql_lookback_delta_ms as i64,
        max_samples: ts.promql_max_samples,
        deadline: Some(Instant::now() + Duration::from_millis(timeout as u64)),
        subquery_step_ms: 60_000,
    })
}

fn database(
    state: &AppState,
    name: &str,
) -> Result<std::sync::Arc<crate::db::Database>, PromError> {
    state.database(name).map_err(PromError::from_api)
}

/// Queries evaluated at once; more wait for a slot (Prometheus's `--query.max-concurrency`
/// default). Their deadline runs while they wait.
const MAX_CONCURRENT_QUERIES: usize = 20;
static QUERY_SLOTS: tokio::sync::Semaphore =
    tokio::sync::Semaphore::const_new(MAX_CONCURRENT_QUERIES);
/// Stack of a query thread: parsing and evaluation recurse once per nesting level, and the
/// longest query (`sluice_promql::MAX_QUERY_BYTES`) nests a few tens of thousands deep. Only
/// the pages a query touches are committed.
const QUERY_STACK_BYTES: usize = 256 << 20;

/// Runs `f` (parsing and evaluation: CPU work, synchronous storage reads, deep recursion) on a
/// thread of its own with a large stack, within the query slots.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, PromError> + Send + 'static,
) -> Result<T, PromError> {
    let internal = |message: String| PromError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        error_type: "internal",
        message,
    };
    let _slot = QUERY_SLOTS
        .acquire()
        .await
        .map_err(|e| internal(format!("query slots closed: {e}")))?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("promql".into())
        .stack_size(QUERY_STACK_BYTES)
        .spawn(move || {
            let _ = tx.send(f());
        })
        .map_err(|e| internal(format!("cannot start a query thread: {e}")))?;
    rx.await
        .map_err(|_| internal("the query failed unexpectedly".into()))?
}

/// The parameters of `/api/v1/query` (query string or form body).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Documentation only: PromForm reads the parameters.
pub struct InstantQueryParams {
    /// PromQL expression.
    query: String,
    /// Evaluation time: Unix seconds or RFC 3339 (default: now).
    time: Option<String>,
    /// Shortens the server's query timeout (`30s`, or seconds).
    timeout: Option<String>,
}

/// Evaluate a PromQL expression at one instant.
#[utoipa::path(method(get, post), path = "/api/v1/query", tag = "prometheus",
    extensions(("x-sluice-authz" = json!({"action": "read", "scope": "database"}))),
    params(InstantQueryParams),
    responses(
        (status = 200, description = "`{status: success, data: {resultType, result}}`", body = Object),
        (status = 400, description = "`bad_data`: malformed query or parameter", body = Object),
        (status = 422, description = "`execution`: the query cannot be evaluated (e.g. too many samples)", body = Object),
        (status = 503, description = "`timeout`", body = Object),
    ))]
pub async fn query(
    State(state): State<AppState>,
    TargetDb(db): TargetDb,
    form: PromForm,
) -> PromResult {
    let query = form.get("query").unwrap_or("").to_string();
    let t = match form.get("time").filter(|t| !t.is_empty()) {
        Some(t) => parse_time("time", t)?,
        None => crate::now_ms(),
    };
    let opts = options(&state, &form)?;
    let db = database(&state, &db)?;
    let body = blocking(move || {
        let expr = sluice_promql::parse(&query).map_err(PromError::from_query)?;
        let storage = TsStorage { engine: &db.ts };
        sluice_promql::instant_query(&storage, &expr, t, &opts)
            .map(|v| render(&v))
            .map_err(PromError::from_query)
    })
    .await?;
    Ok(success(&body))
}

/// The parameters of `/api/v1/query_range`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct RangeQueryParams {
    /// PromQL expression.
    query: String,
    /// First step: Unix seconds or RFC 3339.
    start: String,
    /// Last step (inclusive).
    end: String,
    /// Step width: seconds or a duration (`15s`); at most 11,000 steps.
    step: String,
    /// Shortens the server's query timeout.
    timeout: Option<String>,
}

/// Evaluate a PromQL expression at every step of a range.
#[utoipa::path(method(get, post), path = "/api/v1/query_range", tag = "prometheus",
    extensions(("x-sluice-authz" = json!({"action": "read", "scope": "database"}))),
    params(RangeQueryParams),
    responses(
        (status = 200, description = "`{status: success, data: {resultType: matrix, result}}`", body = Object),
        (status = 400, description = "`bad_data`", body = Object),
        (status = 422, description = "`execution`", body = Object),
        (status = 503, description = "`timeout`", body = Object),
    ))]
pub async fn query_range(
    State(state): State<AppState>,
    TargetDb(db): TargetDb,
    form: PromForm,
) -> PromResult {
    let query = form.get("query").unwrap_or("").to_string();
    let start = parse_time("start", form.get("start").unwrap_or(""))?;
    let end = parse_time("end", form.get("end").unwrap_or(""))?;
    if end < start {
        return Err(PromError::bad_data(
            "invalid parameter \"end\": end timestamp must not be before start time",
        ));
    }
    let step = parse_duration("step", form.get("step").unwrap_or(""))?;
    if step <= 0 {
        return Err(PromError::bad_data(
            "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    if (end as i128 - start as i128) / step as i128 > MAX_STEPS as i128 {
        return Err(PromError::bad_data(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        ));
    }
    let opts = options(&state, &form)?;
    let db = database(&state, &db)?;
    let body = blocking(move || {
        let expr = sluice_promql::parse(&query).map_err(PromError::from_query)?;
        let storage = TsStorage { engine: &db.ts };
        sluice_promql::range_query(&storage, &expr, start, end, step, &opts)
            .map(|series| render(&Value::Matrix(series)))
            .map_err(PromError::from_query)
    })
    .await?;
    Ok(success(&body))
}

/// The `match[]` selectors of a request (parsed by [`parse_selectors`] on a query thread).
fn selectors(form: &PromForm, required: bool) -> Result<Vec<String>, PromError> {
    let raw: Vec<String> = form
        .all("match[]")
        .into_iter()
        .map(str::to_string)
        .collect();
    if raw.is_empty() && required {
        return Err(PromError::bad_data("no match[] parameter provided"));
    }
    Ok(raw)
}

/// Each selector as its matchers; none means one selector matching every series.
fn parse_selectors(raw: &[String]) -> Result<Vec<Vec<sluice_promql::Matcher>>, PromError> {
    if raw.is_empty() {
        return Ok(vec![Vec::new()]);
    }
    raw.iter()
        .map(|m| {
            let expr = sluice_promql::parse(m).map_err(PromError::from_query)?;
            sluice_promql::selector_matchers_of(&expr).map_err(PromError::from_query)
        })
        .collect()
}

fn optional_time(form: &PromForm, name: &str) -> Result<Option<i64>, PromError> {
    form.get(name)
        .filter(|v| !v.is_empty())
        .map(|v| parse_time(name, v))
        .transpose()
}

/// The parameters of the metadata look-ups.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct LookupParams {
    /// Series selectors (repeatable).
    #[param(rename = "match[]")]
    matches: Option<Vec<String>>,
    /// Only series with data at or after this time (a stored chunk counts by its time span).
    start: Option<String>,
    /// Only series with data at or before this time.
    end: Option<String>,
}

/// The label sets of the series matching `match[]`.
#[utoipa::path(method(get, post), path = "/api/v1/series", tag = "prometheus",
    extensions(("x-sluice-authz" = json!({"action": "read", "scope": "database"}))),
    params(LookupParams),
    responses(
        (status = 200, description = "`{status: success, data: [label sets]}`", body = Object),
        (status = 400, description = "`bad_data`: no or a malformed `match[]`", body = Object),
    ))]
pub async fn series(
    State(state): State<AppState>,
    TargetDb(db): TargetDb,
    form: PromForm,
) -> PromResult {
    let selectors = selectors(&form, true)?;
    let (from, to) = (optional_time(&form, "start")?, optional_time(&form, "end")?);
    let db = database(&state, &db)?;
    let body = blocking(move || {
        let selectors = parse_selectors(&selectors)?;
        let found =
            prom::series_labels(&db.ts, &selectors, from, to).map_err(PromError::from_query)?;
        let mut out = String::from("[");
        for (i, l) in found.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_labels(&mut out, l);
        }
        out.push(']');
        Ok(out)
    })
    .await?;
    Ok(success(&body))
}

/// The series `match[]` selects (every series without it) with samples in `[start, end]`
/// (when either is given), for the label look-ups.
async fn label_sets(state: &AppState, db: &str, form: &PromForm) -> Result<Vec<Labels>, PromError> {
    let selectors = selectors(form, false)?;
    let (from, to) = (optional_time(form, "start")?, optional_time(form, "end")?);
    let db = database(state, db)?;
    blocking(move || {
        let selectors = parse_selectors(&selectors)?;
        prom::series_labels(&db.ts, &selectors, from, to).map_err(PromError::from_query)
    })
    .await
}

fn string_list(items: impl IntoIterator<Item = String>) -> String {
    let mut v: Vec<String> = items.into_iter().collect();
    v.sort();
    v.dedup();
    let mut out = String::from("[");
    for (i, s) in v.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_str(&mut out, s);
    }
    out.push(']');
    out
}

/// Every label name (of the series `match[]` selects).
#[utoipa::path(method(get, post), path = "/api/v1/labels", tag = "prometheus",
    extensions(("x-sluice-authz" = json!({"action": "read", "scope": "database"}))),
    params(LookupParams),
    responses(
        (status = 200, description = "`{status: success, data: [names]}`, sorted", body = Object),
        (status = 400, description = "`bad_data`", body = Object),
    ))]
pub async fn labels(
    State(state): State<AppState>,
    TargetDb(db): TargetDb,
    form: PromForm,
) -> PromResult {
    let sets = label_sets(&state, &db, &form).await?;
    Ok(success(&string_list(sets.iter().flat_map(|l| {
        l.iter().map(|(k, _)| k.to_string()).collect::<Vec<_>>()
    }))))
}

/// Every value of one label (of the series `match[]` selects).
#[utoipa::path(get, path = "/api/v1/label/{name}/values", tag = "prometheus",
    extensions(("x-sluice-authz" = json!({"action": "read", "scope": "database"}))),
    params(("name" = String, Path, description = "Label name (`__name__` lists the metrics)"), LookupParams),
    responses(
        (status = 200, description = "`{status: success, data: [values]}`, sorted", body = Object),
        (status = 400, description = "`bad_data`: invalid label name or `match[]`", body = Object),
    ))]
pub async fn label_values(
    State(state): State<AppState>,
    TargetDb(db): TargetDb,
    axum::extract::Path(params): axum::extract::Path<std::collections::HashMap<String, String>>,
    form: PromForm,
) -> PromResult {
    let name = params.get("name").cloned().unwrap_or_default();
    let valid = {
        let mut c = name.chars();
        matches!(c.next(), Some(x) if x.is_ascii_alphabetic() || x == '_')
            && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
    };
    if !valid {
        return Err(PromError::bad_data(format!("invalid label name: {name:?}")));
    }
    let sets = label_sets(&state, &db, &form).await?;
    Ok(success(&string_list(
        sets.iter()
            .map(|l| l.get(&name).to_string())
            .filter(|v| !v.is_empty()),
    )))
}

/// Metric metadata: Sluice keeps none (remote write's metadata is not stored), so `{}`, as
/// Prometheus answers for series it did not scrape.
#[utoipa::path(get, path = "/api/v1/metadata", tag = "prometheus",
    extensions(("x-sluice-authz" = json!({"action": "read", "scope": "database"}))),
    responses(
        (status = 200, description = "`{status: success, data: {}}`", body = Object),
        (status = 400, description = "`bad_data`: an invalid database name", body = Object),
    ))]
pub async fn metadata(State(state): State<AppState>, TargetDb(db): TargetDb) -> PromResult {
    database(&state, &db)?;
    Ok(success("{}"))
}

/// Build information, in Prometheus's shape (Grafana reads it to detect the server).
#[utoipa::path(get, path = "/api/v1/status/buildinfo", tag = "prometheus",
    extensions(("x-sluice-authz" = json!({"action": "read", "scope": "database"}))),
    responses(
        (status = 200, description = "`{status: success, data: {version, revision, branch, buildUser, buildDate, goVersion}}`", body = Object),
        (status = 400, description = "`bad_data`: an invalid database name", body = Object),
    ))]
pub async fn buildinfo(State(state): State<AppState>, TargetDb(db): TargetDb) -> PromResult {
    database(&state, &db)?;
    // Grafana reads `version` to pick the features it uses: we answer the Prometheus release
    // whose query semantics we follow, and name ourselves in `branch`.
    let data = json!({
        "version": "2.42.0",
        "revision": env!("CARGO_PKG_VERSION"),
        "branch": "sluice",
        "buildUser": "sluice",
        "buildDate": "",
        "goVersion": "none",
    });
    Ok(success(&data.to_string()))
}

/// Largest decompressed remote-write body: what one WAL record may hold, like line protocol's
/// expansion bound (Prometheus sends a few hundred kilobytes).
const MAX_DECOMPRESSED_BYTES: usize = sluice_wal::record::MAX_PAYLOAD_BYTES / 2;

/// Prometheus remote write 1.0: a snappy-compressed protobuf `WriteRequest`, written as one
/// batch (all or nothing) at the requested acknowledgement level (default `fsync`).
#[utoipa::path(post, path = "/api/v1/write", tag = "prometheus",
    extensions(("x-sluice-authz" = json!({"action": "write", "scope": "database"}))),
    params(("ack" = Option<String>, Query, description = "`buffer`, `wal` or `fsync` (default)")),
    request_body(content = Vec<u8>, content_type = "application/x-protobuf", description = "snappy (block format) around a remote-write 1.0 WriteRequest; `Content-Encoding: snappy`"),
    responses(
        (status = 204, description = "Every sample written at the requested level"),
        (status = 404, description = "Unknown database", body = ErrorBody),
        WriteErrors,
    ))]
pub async fn remote_write(
    State(state): State<AppState>,
    TargetDb(db_name): TargetDb,
    ack: AckParam,
    BatchBody(body): BatchBody,
) -> Result<Response, ApiError> {
    let db = state.database(&db_name)?;
    let limits = db.ts.config().point_limits;
    let max_samples = state.config().limits.max_points_per_batch;
    // Decoding is CPU work: off the network threads.
    let engine = db.clone();
    let batch = tokio::task::spawn_blocking(move || {
        prom::remote_write_batch(
            &body,
            &limits,
            MAX_DECOMPRESSED_BYTES,
            max_samples,
            |names| engine.ts.known_series(names),
        )
    })
    .await
    .map_err(|e| ApiError::internal(format!("remote-write decoding failed: {e}")))??;
    if !batch.is_empty() {
        write_named(&db, batch, ack.or(AckLevel::Fsync)).await?;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Prometheus sends remote-write bodies with `Content-Encoding: snappy`, which the request
/// decompression layer does not know (it would answer 415): on the remote-write routes the
/// outer middleware removes the header before that layer, and the handler decodes snappy.
pub fn accept_snappy(req: &mut Request) {
    let snappy = req
        .headers()
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"snappy"));
    if snappy && req.uri().path().ends_with("/api/v1/write") {
        req.headers_mut().remove(header::CONTENT_ENCODING);
    }
}
