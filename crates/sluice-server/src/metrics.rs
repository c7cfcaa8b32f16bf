//! The server's Prometheus registry and its HTTP metrics.
//!
//! One registry per server. Engines and the WAL own their metric handles (atomics) and register
//! them here with a `db` label when a database opens; `/metrics` encodes the registry in the
//! Prometheus text format. Route labels are route templates, never raw paths, so cardinality is
//! bounded by the route table.

use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    pub route: String,
}

fn duration_histogram() -> Histogram {
    // 10 µs .. ~20 s
    Histogram::new(exponential_buckets(0.000_01, 2.5, 17))
}

pub struct Metrics {
    registry: RwLock<Registry>,
    pub http_requests: Family<RequestLabels, Counter>,
    pub http_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub http_in_flight: Gauge,
    pub lineproto_skipped_fields: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let http_requests = Family::<RequestLabels, Counter>::default();
        let http_duration =
            Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                duration_histogram,
            );
        let http_in_flight = Gauge::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route template and status",
            http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time from request head to response head, by method and route template",
            http_duration.clone(),
        );
        registry.register(
            "http_requests_in_flight",
            "HTTP requests being handled",
            http_in_flight.clone(),
        );
        let lineproto_skipped_fields = Counter::default();
        registry.register(
            "line_protocol_skipped_string_fields",
            "String fields in line protocol writes, which are not stored",
            lineproto_skipped_fields.clone(),
        );
        Metrics {
            lineproto_skipped_fields,
            registry: RwLock::new(registry),
            http_requests,
            http_duration,
            http_in_flight,
        }
    }
}

impl Metrics {
    pub fn observe_http(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        self.http_requests
            .get_or_create(&RequestLabels {
                method: method.to_string(),
                route: route.to_string(),
                status,
            })
            .inc();
        self.http_duration
            .get_or_create(&RouteLabels {
                method: method.to_string(),
                route: route.to_string(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Registers metrics under a `db` label.
    pub fn register_database(&self, db: &str, register: impl FnOnce(&mut Registry)) {
        let mut registry = self
            .registry
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let sub = registry.sub_registry_with_label(("db".into(), db.to_string().into()));
        register(sub);
    }

    /// The registry in the Prometheus text format.
    pub fn encode(&self) -> String {
        let registry = self.registry.read().unwrap_or_else(PoisonError::into_inner);
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}
