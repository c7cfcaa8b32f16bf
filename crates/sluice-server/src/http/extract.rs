//! Extractors that turn a request into typed input or an [`ApiError`] in the one error shape.
//!
//! Bodies are read with a byte limit (refused early when `Content-Length` already exceeds it,
//! counted as read otherwise, so a chunked body that lies is cut at the limit), within the
//! body deadline (slow senders get 408), checked for JSON nesting depth before parsing, and
//! parsed with the path of the offending field in the error (`points[3].value`).

use sluice_api::ErrorCode;
use std::time::Duration;

use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::header;
use axum::http::request::Parts;
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;
use sluice_api::ts::{Ack, AckParams};
use sluice_wal::AckLevel;

use crate::error::ApiError;
use crate::state::AppState;

/// The database a data route acts on (see [`crate::http::authn::TargetDatabase`]): `{db}` of
/// `/v1/databases/{db}/…`, line protocol's `db`/`bucket`, else `default`.
pub struct Db(pub std::sync::Arc<crate::db::Database>);

/// The target database's name, as the auth middleware decided it (computed the same way if the
/// middleware did not run).
pub struct TargetDb(pub String);

impl<S: Send + Sync> FromRequestParts<S> for TargetDb {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        if let Some(t) = parts.extensions.get::<crate::http::authn::TargetDatabase>() {
            return Ok(TargetDb(t.0.clone()));
        }
        let route = parts
            .extensions
            .get::<axum::extract::MatchedPath>()
            .map_or("", |p| p.as_str());
        crate::http::authn::request_database(route, &parts.uri).map(TargetDb)
    }
}

impl FromRequestParts<AppState> for Db {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let TargetDb(name) = TargetDb::from_request_parts(parts, state).await?;
        state.database(&name).map(Db)
    }
}

/// A JSON body within `http.max_body_bytes`.
pub struct ApiJson<T>(pub T);

/// A JSON body within `http.max_batch_body_bytes` (batch and import routes).
pub struct BatchJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let limit = state.config().http.max_body_bytes;
        read_json(req, state, limit).await.map(ApiJson)
    }
}

impl<T: DeserializeOwned> FromRequest<AppState> for BatchJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let limit = state.config().http.max_batch_body_bytes;
        read_json(req, state, limit).await.map(BatchJson)
    }
}

/// A shipped WAL batch (`/api/v1/wal/apply`): within `http.max_batch_body_bytes`, but never
/// less than the largest single WAL record as base64 in JSON, so any record the primary logged
/// can reach its replicas.
pub struct ReplicationJson<T>(pub T);

/// Bytes of a shipped batch holding one largest WAL record: base64 is 4/3 of it, plus the
/// record header and the JSON around it.
pub const REPLICATION_BODY_BYTES: usize = sluice_wal::record::MAX_PAYLOAD_BYTES / 3 * 4 + (1 << 20);

impl<T: DeserializeOwned> FromRequest<AppState> for ReplicationJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let limit = state
            .config()
            .http
            .max_batch_body_bytes
            .max(REPLICATION_BODY_BYTES);
        read_json(req, state, limit).await.map(ReplicationJson)
    }
}

async fn read_json<T: DeserializeOwned>(
    req: Request,
    state: &AppState,
    limit: usize,
) -> Result<T, ApiError> {
    let bytes = read_body(req, state, limit).await?;
    parse_json(&bytes, state.config().http.max_json_depth)
}

/// A raw body within `http.max_batch_body_bytes` (line protocol, imports).
pub struct BatchBody(pub axum::body::Bytes);

impl FromRequest<AppState> for BatchBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let limit = state.config().http.max_batch_body_bytes;
        read_body(req, state, limit).await.map(BatchBody)
    }
}

/// Reads a whole body within `limit` bytes (counted as read) and the body deadline.
async fn read_body(
    req: Request,
    state: &AppState,
    limit: usize,
) -> Result<axum::body::Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("request body exceeds the limit of {limit} bytes"),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let deadline = Duration::from_millis(state.config().http.body_read_timeout_ms);
    let body = http_body_util::Limited::new(req.into_body(), limit);
    let bytes = match tokio::time::timeout(deadline, body.collect()).await {
        Err(_) => {
            return Err(ApiError::new(
                ErrorCode::BodyTimeout,
                format!(
                    "request body not received within {} ms",
                    deadline.as_millis()
                ),
            ));
        }
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => return Err(too_large()),
        Ok(Err(e)) if find_source::<crate::admission::BytesBudgetExceeded>(&*e).is_some() => {
            let budget = find_source::<crate::admission::BytesBudgetExceeded>(&*e);
            let retry = budget.map_or(1, |b| b.retry_after_sec);
            let message = budget.map_or_else(String::new, ToString::to_string);
            return Err(ApiError::new(ErrorCode::TooManyBytesInFlight, message).retry_after(retry));
        }
        Ok(Err(e)) => {
            return Err(ApiError::new(
                ErrorCode::BodyReadFailed,
                format!("could not read the request body: {e}"),
            ));
        }
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    Ok(bytes)
}

/// The first error of type `T` in `e`'s source chain.
fn find_source<'a, T: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(t) = err.downcast_ref::<T>() {
            return Some(t);
        }
        cur = err.source();
    }
    None
}

/// Parses `bytes` as `T`, naming the offending field on type errors.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8], max_depth: usize) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::new(
            ErrorCode::InvalidJson,
            "request body is empty; expected a JSON object",
        ));
    }
    // Every request body is an object; serde would read an array as a struct's fields in order.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::new(
            ErrorCode::InvalidJson,
            "request body must be a JSON object",
        ));
    }
    if json_depth_exceeds(bytes, max_depth) {
        return Err(ApiError::new(
            ErrorCode::JsonTooDeep,
            format!("JSON nesting deeper than {max_depth} levels"),
        ));
    }
    // The common case, a valid body, without the path tracking (a third of a small request's
    // parse); only a body that fails is parsed again to name the offending field.
    if let Ok(value) = serde_json::from_slice::<T>(bytes) {
        return Ok(value);
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        json_error(path, e.into_inner())
    })?;
    de.end().map_err(|e| json_error(String::new(), e))?;
    Ok(value)
}

fn json_error(path: String, inner: serde_json::Error) -> ApiError {
    let syntax = matches!(
        inner.classify(),
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof
    );
    if syntax || path.is_empty() || path == "." {
        ApiError::new(
            ErrorCode::InvalidJson,
            format!("request body is not valid: {inner}"),
        )
    } else {
        ApiError::invalid_field(path, inner.to_string())
    }
}

/// True if arrays/objects nest deeper than `max` anywhere in `bytes` (strings are skipped).
/// One pass, no allocation: it runs before the parser so a hostile body cannot recurse deeply.
fn json_depth_exceeds(bytes: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// The `?ack=` parameter, as the WAL's level.
pub struct AckParam(pub Option<AckLevel>);

impl AckParam {
    pub fn or(self, default: AckLevel) -> AckLevel {
        self.0.unwrap_or(default)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for AckParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(params) = Query::<AckParams>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::invalid_field("ack", "must be one of buffer, wal, fsync"))?;
        Ok(AckParam(params.ack.map(|a| match a {
            Ack::Buffer => AckLevel::Buffer,
            Ack::Wal => AckLevel::Wal,
            Ack::Fsync => AckLevel::Fsync,
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Outer {
        points: Vec<Inner>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        value: f64,
    }

    #[test]
    fn type_errors_name_the_field() {
        let e = parse_json::<Outer>(br#"{"points":[{"value":1},{"value":"x"}]}"#, 32).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("points[1].value"));
    }

    #[test]
    fn syntax_errors_and_depth_are_refused() {
        let e = parse_json::<Outer>(b"{\"points\": [", 32).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidJson);
        let deep = format!("{{\"a\": {}{}}}", "[".repeat(40), "]".repeat(40));
        let e = parse_json::<serde_json::Value>(deep.as_bytes(), 32).unwrap_err();
        assert_eq!(e.code, ErrorCode::JsonTooDeep);
        // Brackets inside strings do not count.
        let s = format!("{{\"a\": \"{}\"}}", "[".repeat(100));
        assert!(parse_json::<serde_json::Value>(s.as_bytes(), 32).is_ok());
        let e = parse_json::<Outer>(b"   ", 32).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidJson);
        let e = parse_json::<Outer>(br#"{"points": []} trailing"#, 32).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidJson);
    }
}
