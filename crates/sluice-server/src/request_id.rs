//! Request ids: one per request, echoed in `X-Request-Id`, used as `error_id`, carried by the
//! request's tracing span so every log line of the request names it.
//!
//! A client may send its own `X-Request-Id` (1–64 characters of `[A-Za-z0-9._-]`) to correlate
//! with its logs; anything else is replaced. Generated ids are 26 characters: 12 hex digits of
//! milliseconds since the epoch, then 14 hex digits of randomness, so they sort by time.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::HeaderMap;

pub const HEADER: &str = "x-request-id";
const MAX_LEN: usize = 64;

/// What the request's task knows of it: its id, and whether its route is a seed route (whose
/// error answers carry the seed's `success: false`).
struct Current {
    id: String,
    seed_route: std::cell::Cell<bool>,
}

tokio::task_local! {
    static CURRENT: Current;
}

/// Runs `f` with `id` as the current request id.
pub async fn scope<F: Future>(id: String, f: F) -> F::Output {
    let current = Current {
        id,
        seed_route: std::cell::Cell::new(false),
    };
    CURRENT.scope(current, f).await
}

/// The id of the request being handled, or `"-"` outside a request.
pub fn current() -> String {
    CURRENT
        .try_with(|c| c.id.clone())
        .unwrap_or_else(|_| "-".to_string())
}

/// Marks the current request's route as a seed route (the route guard does, from the route
/// table).
pub fn mark_seed_route() {
    let _ = CURRENT.try_with(|c| c.seed_route.set(true));
}

/// Whether the current request's route is a seed route.
pub fn on_seed_route() -> bool {
    CURRENT.try_with(|c| c.seed_route.get()).unwrap_or(false)
}

/// The client's id if acceptable, else a new one.
pub fn from_headers(headers: &HeaderMap) -> String {
    headers
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_acceptable(v))
        .map_or_else(generate, str::to_string)
}

fn is_acceptable(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

pub fn generate() -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let r: u64 = rand::random();
    format!("{:012x}{:014x}", ms & 0xffff_ffff_ffff, r >> 8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_acceptable_and_distinct() {
        let a = generate();
        let b = generate();
        assert_eq!(a.len(), 26);
        assert!(is_acceptable(&a));
        assert_ne!(a, b);
    }

    #[test]
    fn hostile_client_ids_are_replaced() {
        let mut h = HeaderMap::new();
        h.insert(HEADER, "abc-123".parse().unwrap());
        assert_eq!(from_headers(&h), "abc-123");
        h.insert(
            HEADER,
            "a b\nc".parse().unwrap_or_else(|_| "a b".parse().unwrap()),
        );
        assert_ne!(from_headers(&h), "a b");
        h.insert(HEADER, "x".repeat(65).parse().unwrap());
        assert_eq!(from_headers(&h).len(), 26);
    }
}
