//! Admission control: per-actor budgets, rate limits and global load shedding.
//!
//! Runs after authorization (the actor is known and allowed), for every transport: the HTTP
//! route middleware (`http::admission`) and the wire listener per frame both call
//! [`Admission::admit`]; public routes (`/healthz`, …) are never refused, so probes keep
//! working under load.
//!
//! Per actor (the authenticated actor's name; `anonymous` in dev mode):
//! - **requests in flight** ≤ `max_in_flight_per_actor`, else 429;
//! - **body bytes in flight** ≤ `max_in_flight_bytes_per_actor`, else 429. The declared
//!   `Content-Length` is reserved up front (refused at once if it cannot fit), and the body is
//!   counted as it is actually read: bytes beyond the reservation (a chunked body, or one that
//!   lies about its length) are charged as they arrive and the read fails with 429 once the
//!   budget is gone. Bytes are counted after request decompression, which is what occupies
//!   memory. They are released when the response body is finished (a streamed export holds
//!   its slot while it streams);
//! - **rate**: a token bucket of `rate_limit_burst` refilled at `rate_limit_per_sec`; every
//!   response carries `X-RateLimit-Limit` (the burst), `X-RateLimit-Remaining` and
//!   `X-RateLimit-Reset` (seconds until the bucket is full); an empty bucket → 429.
//!
//! One actor over its budget never delays another: budgets are separate atomics, the only
//! shared lock is the actor map (a lookup per request). `Retry-After` is derived from load: for
//! rate limits, the time until a token is available; for in-flight limits, the actor's recent
//! mean latency scaled by how far over the limit it is (at least 1 s).
//!
//! Globally, more than `max_in_flight_total` requests in flight → 503 (load shedding) with
//! `Retry-After: 1`. Actors idle for `idle_actor_evict_ms` with nothing in flight are dropped
//! from the map (swept at most twice per that period), so the map stays bounded by the active
//! actors.

use sluice_api::ErrorCode;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use crate::config::AdmissionConfig;
use crate::error::ApiError;
use crate::state::AppState;

/// The body-read error when an actor's byte budget runs out mid-body.
#[derive(Debug, thiserror::Error)]
#[error("in-flight body bytes of this actor exceed the limit of {limit} bytes")]
pub struct BytesBudgetExceeded {
    pub limit: usize,
    pub retry_after_sec: u64,
}

struct ActorLoad {
    in_flight: AtomicUsize,
    bytes: AtomicUsize,
    bucket: Mutex<Bucket>,
    last_seen_ms: AtomicU64,
    /// Exponentially weighted mean request latency, µs.
    mean_latency_us: AtomicU64,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// The admission state of a server.
pub struct Admission {
    config: AdmissionConfig,
    actors: Mutex<HashMap<String, Arc<ActorLoad>>>,
    total_in_flight: AtomicUsize,
    epoch: Instant,
    last_sweep_ms: AtomicU64,
}

/// Why a request was not admitted.
pub struct Rejected {
    pub code: ErrorCode,
    pub message: String,
    pub retry_after_sec: u64,
    /// Rate-limit headers to send with the refusal: (limit, remaining, reset).
    pub rate: Option<(u64, u64, u64)>,
}

impl Rejected {
    pub fn into_api_error(self) -> ApiError {
        ApiError::new(self.code, self.message).retry_after(self.retry_after_sec)
    }
}

/// An admitted unit of work (an HTTP request, a wire frame): holds its slots until dropped.
pub struct Admitted {
    held: Held,
    /// (limit, remaining, reset) of the actor's token bucket, when rate limiting is on.
    rate: Option<(u64, u64, u64)>,
    byte_limit: usize,
    retry_after_sec: u64,
}

impl Admission {
    pub fn new(config: AdmissionConfig) -> Admission {
        Admission {
            config,
            actors: Mutex::default(),
            total_in_flight: AtomicUsize::new(0),
            epoch: Instant::now(),
            last_sweep_ms: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Actors currently tracked.
    pub fn actors(&self) -> usize {
        self.actors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    fn load_of(&self, actor: &str) -> Arc<ActorLoad> {
        let now = self.now_ms();
        let mut map = self.actors.lock().unwrap_or_else(PoisonError::into_inner);
        let evict_after = self.config.idle_actor_evict_ms;
        if now.saturating_sub(self.last_sweep_ms.load(Ordering::Relaxed)) >= evict_after / 2 {
            self.last_sweep_ms.store(now, Ordering::Relaxed);
            map.retain(|_, l| {
                l.in_flight.load(Ordering::Relaxed) > 0
                    || now.saturating_sub(l.last_seen_ms.load(Ordering::Relaxed)) < evict_after
            });
        }
        // Look up before inserting: the common case (a known actor) allocates nothing.
        let load = match map.get(actor) {
            Some(l) => l.clone(),
            None => {
                let l = Arc::new(ActorLoad {
                    in_flight: AtomicUsize::new(0),
                    bytes: AtomicUsize::new(0),
                    bucket: Mutex::new(Bucket {
                        tokens: self.config.rate_limit_burst as f64,
                        updated: Instant::now(),
                    }),
                    last_seen_ms: AtomicU64::new(now),
                    mean_latency_us: AtomicU64::new(1_000),
                });
                map.insert(actor.to_string(), l.clone());
                l
            }
        };
        load.last_seen_ms.store(now, Ordering::Relaxed);
        load
    }

    /// Takes a token; `Ok(remaining)` or `Err(seconds until one is available)`.
    fn take_token(&self, load: &ActorLoad) -> Result<(u64, u64), u64> {
        let rate = self.config.rate_limit_per_sec as f64;
        let burst = self.config.rate_limit_burst as f64;
        let mut b = load.bucket.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        b.tokens = (b.tokens + now.duration_since(b.updated).as_secs_f64() * rate).min(burst);
        b.updated = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            let reset = ((burst - b.tokens) / rate).ceil() as u64;
            Ok((b.tokens as u64, reset))
        } else {
            Err(((1.0 - b.tokens) / rate).ceil().max(1.0) as u64)
        }
    }

    /// Admits one unit of work of `actor` declaring `bytes` of body (0 if unknown): global load
    /// shedding, the actor's token bucket, its in-flight count and byte budget, in that order.
    /// Shared by HTTP (which then counts undeclared body bytes as read) and the wire listener.
    pub fn admit(&self, state: &AppState, actor: &str, bytes: usize) -> Result<Admitted, Rejected> {
        let config = &self.config;
        let total = self.total_in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        if total > config.max_in_flight_total {
            self.total_in_flight.fetch_sub(1, Ordering::Relaxed);
            return Err(Rejected {
                code: ErrorCode::ServerOverloaded,
                message: format!(
                    "the server has {} requests in flight; try again shortly",
                    config.max_in_flight_total
                ),
                retry_after_sec: 1,
                rate: None,
            });
        }
        let load = self.load_of(actor);
        // From here `held` releases the global slot and the actor's slot.
        let held = Held {
            state: state.clone(),
            load: load.clone(),
            bytes: Arc::new(AtomicUsize::new(0)),
            started: Instant::now(),
        };
        let in_flight = load.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        let mut rate = None;
        if config.rate_limit_per_sec > 0 {
            match self.take_token(&load) {
                Ok((remaining, reset)) => {
                    rate = Some((config.rate_limit_burst, remaining, reset));
                }
                Err(wait) => {
                    return Err(Rejected {
                        code: ErrorCode::RateLimited,
                        message: format!(
                            "actor {actor:?} exceeded {} requests per second",
                            config.rate_limit_per_sec
                        ),
                        retry_after_sec: wait,
                        rate: Some((config.rate_limit_burst, 0, wait)),
                    });
                }
            }
        }
        if in_flight > config.max_in_flight_per_actor {
            return Err(Rejected {
                code: ErrorCode::TooManyInFlight,
                message: format!(
                    "actor {actor:?} already has {} requests in flight (limit {})",
                    in_flight - 1,
                    config.max_in_flight_per_actor
                ),
                retry_after_sec: self.retry_after_for(
                    &load,
                    in_flight,
                    config.max_in_flight_per_actor,
                ),
                rate,
            });
        }
        let limit = config.max_in_flight_bytes_per_actor;
        if bytes > limit {
            return Err(Rejected {
                code: ErrorCode::PayloadTooLarge,
                message: format!(
                    "a body of {bytes} bytes exceeds this actor's in-flight byte budget of {limit}"
                ),
                retry_after_sec: 1,
                rate,
            });
        }
        if bytes > 0 {
            let before = load.bytes.fetch_add(bytes, Ordering::Relaxed);
            held.bytes.store(bytes, Ordering::Relaxed);
            if before.saturating_add(bytes) > limit {
                return Err(Rejected {
                    code: ErrorCode::TooManyBytesInFlight,
                    message: format!(
                        "actor {actor:?} has {before} body bytes in flight; {bytes} more would exceed the limit of {limit}"
                    ),
                    retry_after_sec: self.retry_after_for(&load, before + bytes, limit),
                    rate,
                });
            }
        }
        Ok(Admitted {
            retry_after_sec: self.retry_after_for(&load, limit, limit),
            held,
            rate,
            byte_limit: limit,
        })
    }

    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    fn retry_after_for(&self, load: &ActorLoad, used: usize, limit: usize) -> u64 {
        let mean_us = load.mean_latency_us.load(Ordering::Relaxed);
        let over = used.max(1) as f64 / limit.max(1) as f64;
        ((mean_us as f64 * over) / 1e6).ceil().clamp(1.0, 60.0) as u64
    }
}

/// Releases what a request holds when it ends (also when its future is dropped).
struct Held {
    state: AppState,
    load: Arc<ActorLoad>,
    bytes: Arc<AtomicUsize>,
    started: Instant,
}

impl Drop for Held {
    fn drop(&mut self) {
        let a = self.state.admission();
        a.total_in_flight.fetch_sub(1, Ordering::Relaxed);
        self.load.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.load
            .bytes
            .fetch_sub(self.bytes.load(Ordering::Relaxed), Ordering::Relaxed);
        let us = self.started.elapsed().as_micros().min(u64::MAX as u128) as u64;
        let old = self.load.mean_latency_us.load(Ordering::Relaxed);
        self.load
            .mean_latency_us
            .store((old * 7 + us) / 8, Ordering::Relaxed);
    }
}

/// Charges body bytes read beyond a request's reservation to its actor (transports that
/// stream a body count it as it arrives, never trusting a declared length).
pub struct ByteCharger {
    load: Arc<ActorLoad>,
    charged: Arc<AtomicUsize>,
    limit: usize,
    retry_after_sec: u64,
}

impl ByteCharger {
    /// Charges `bytes` more; fails once the actor's in-flight bytes exceed its budget.
    pub fn charge(&self, bytes: usize) -> Result<(), BytesBudgetExceeded> {
        self.charged.fetch_add(bytes, Ordering::Relaxed);
        let total = self.load.bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if total > self.limit {
            return Err(BytesBudgetExceeded {
                limit: self.limit,
                retry_after_sec: self.retry_after_sec,
            });
        }
        Ok(())
    }
}

impl Admitted {
    /// The charger of this unit's body bytes.
    pub fn charger(&self) -> ByteCharger {
        ByteCharger {
            load: self.held.load.clone(),
            charged: self.held.bytes.clone(),
            limit: self.byte_limit,
            retry_after_sec: self.retry_after_sec,
        }
    }

    /// (limit, remaining, reset) of the actor's token bucket, when rate limiting is on.
    pub fn rate(&self) -> Option<(u64, u64, u64)> {
        self.rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> AdmissionConfig {
        AdmissionConfig {
            idle_actor_evict_ms: 0,
            rate_limit_per_sec: 10,
            rate_limit_burst: 2,
            ..AdmissionConfig::default()
        }
    }

    #[test]
    fn idle_actors_are_evicted_busy_ones_kept() {
        let a = Admission::new(config());
        let busy = a.load_of("busy");
        busy.in_flight.fetch_add(1, Ordering::Relaxed);
        drop(a.load_of("idle"));
        assert_eq!(a.actors(), 2);
        // Every lookup sweeps (evict after 0 ms): `idle` goes, `busy` has a request in flight.
        std::thread::sleep(std::time::Duration::from_millis(2));
        drop(a.load_of("other"));
        let mut names: Vec<_> = a.actors.lock().unwrap().keys().cloned().collect();
        names.sort();
        assert_eq!(names, ["busy", "other"]);
    }

    #[test]
    fn token_bucket_refills_at_its_rate() {
        let a = Admission::new(config());
        let l = a.load_of("x");
        assert_eq!(a.take_token(&l), Ok((1, 1)));
        assert_eq!(a.take_token(&l).map(|r| r.0), Ok(0));
        assert_eq!(a.take_token(&l), Err(1));
        std::thread::sleep(std::time::Duration::from_millis(120));
        assert!(a.take_token(&l).is_ok(), "one token after 100 ms at 10/s");
    }
}
