//! The server's Prometheus registry and its HTTP metrics.
//!
//! One registry for the server's own metrics, plus one per open database: engines and the WAL
//! own their metric handles (atomics) and register them with a `db` label when a database
//! opens; deleting the database drops its registry. `/metrics` encodes every registry and merges
//! them so that each metric family appears once (one `# HELP`/`# TYPE`, the samples of every
//! database under it), as the Prometheus text format requires. Route labels are route
//! templates, never raw paths, so cardinality is bounded by the route table.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError, RwLock};
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
    databases: Mutex<BTreeMap<String, Registry>>,
    pub http_requests: Family<RequestLabels, Counter>,
    pub http_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub http_in_flight: Gauge,
    pub lineproto_skipped_fields: Counter,
    pub admission_rejections: Family<ReasonLabels, Counter>,
    /// Self-monitoring (`monitoring.rs`): scrapes written, their total time, the samples of
    /// the last one, and the scrapes that failed.
    pub self_scrapes: Counter,
    pub self_scrape_seconds: Counter<f64, std::sync::atomic::AtomicU64>,
    pub self_scrape_samples: Gauge,
    pub self_scrape_failures: Counter,
    /// The families' series per route template, then method and status: a request finds its
    /// counter and histogram with one look-up of borrowed text instead of building label
    /// strings and looking them up in both families.
    http_handles: RwLock<sluice_ts::series::HashMap<String, Vec<HttpHandles>>>,
}

/// One (method, status) of a route's request counter and duration histogram.
struct HttpHandles {
    method: &'static str,
    status: u16,
    requests: Counter,
    duration: Histogram,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
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
        let admission_rejections = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "admission_rejected_requests",
            "Requests refused by admission control, by reason (rate_limited, too_many_in_flight, too_many_bytes_in_flight, server_overloaded)",
            admission_rejections.clone(),
        );
        let self_scrapes = Counter::default();
        registry.register(
            "monitoring_self_scrapes",
            "Self-monitoring scrapes written into the database _monitoring",
            self_scrapes.clone(),
        );
        let self_scrape_seconds = Counter::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "monitoring_self_scrape_seconds",
            "Time spent rendering, parsing and writing self-monitoring scrapes",
            self_scrape_seconds.clone(),
        );
        let self_scrape_samples = Gauge::default();
        registry.register(
            "monitoring_self_scrape_samples",
            "Samples written by the last self-monitoring scrape",
            self_scrape_samples.clone(),
        );
        let self_scrape_failures = Counter::default();
        registry.register(
            "monitoring_self_scrape_failures",
            "Self-monitoring scrapes that could not be written (e.g. a full buffer)",
            self_scrape_failures.clone(),
        );
        Metrics {
            admission_rejections,
            self_scrapes,
            self_scrape_seconds,
            self_scrape_samples,
            self_scrape_failures,
            lineproto_skipped_fields,
            registry: RwLock::new(registry),
            databases: Mutex::default(),
            http_requests,
            http_duration,
            http_in_flight,
            http_handles: RwLock::default(),
        }
    }
}

impl Metrics {
    pub fn observe_http(&self, method: &'static str, route: &str, status: u16, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        {
            let handles = self
                .http_handles
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(h) = handles
                .get(route)
                .and_then(|v| v.iter().find(|h| h.method == method && h.status == status))
            {
                h.requests.inc();
                h.duration.observe(seconds);
                return;
            }
        }
        // First request of this route, method and status: resolve the families' series once.
        let requests = self
            .http_requests
            .get_or_create(&RequestLabels {
                method: method.to_string(),
                route: route.to_string(),
                status,
            })
            .clone();
        let duration = self
            .http_duration
            .get_or_create(&RouteLabels {
                method: method.to_string(),
                route: route.to_string(),
            })
            .clone();
        requests.inc();
        duration.observe(seconds);
        self.http_handles
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(route.to_string())
            .or_default()
            .push(HttpHandles {
                method,
                status,
                requests,
                duration,
            });
    }

    /// Counts a request refused by admission control, labelled by its code.
    pub fn admission_rejected(&self, code: sluice_api::ErrorCode) {
        self.admission_rejections
            .get_or_create(&ReasonLabels {
                reason: code.as_str(),
            })
            .inc();
    }

    /// Registers a database's metrics under a `db` label (replacing any earlier registration of
    /// that name).
    /// Registers server-level metrics owned elsewhere (replication).
    pub fn register_server(&self, register: impl FnOnce(&mut Registry)) {
        register(
            &mut self
                .registry
                .write()
                .unwrap_or_else(PoisonError::into_inner),
        );
    }

    pub fn register_database(&self, db: &str, register: impl FnOnce(&mut Registry)) {
        let mut registry = Registry::with_labels(
            [(
                std::borrow::Cow::Borrowed("db"),
                std::borrow::Cow::Owned(db.to_string()),
            )]
            .into_iter(),
        );
        register(&mut registry);
        self.databases
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(db.to_string(), registry);
    }

    /// Forgets a deleted database's metrics.
    pub fn unregister_database(&self, db: &str) {
        self.databases
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(db);
    }

    /// Every registry in the Prometheus text format, each metric family once.
    pub fn encode(&self) -> String {
        let mut texts = Vec::new();
        {
            let registry = self.registry.read().unwrap_or_else(PoisonError::into_inner);
            texts.push(encode_registry(&registry));
        }
        for registry in self
            .databases
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
        {
            texts.push(encode_registry(registry));
        }
        texts.push(process_text());
        merge_families(&texts)
    }
}

/// The process's own families, as Prometheus client libraries name them, from `/proc` (Linux;
/// elsewhere nothing): CPU seconds, resident and virtual memory, open descriptors, threads,
/// start time.
fn process_text() -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return out;
    };
    // The fields after `(comm)`, numbered as in proc(5): state is 3, utime 14, stime 15,
    // num_threads 20, starttime 22, vsize 23.
    let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return out;
    };
    let f: Vec<&str> = after.split_whitespace().collect();
    let field = |n: usize| f.get(n - 3).and_then(|v| v.parse::<f64>().ok());
    // Linux reports clock ticks in USER_HZ, 100 in every architecture's user ABI.
    const TICKS: f64 = 100.0;
    let mut family = |name: &str, kind: &str, help: &str, sample: &str, value: Option<f64>| {
        if let Some(v) = value {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{sample} {v}\n"
            );
        }
    };
    let cpu = field(14).zip(field(15)).map(|(u, s)| (u + s) / TICKS);
    family(
        "process_cpu_seconds",
        "counter",
        "User and system CPU time spent by the server",
        "process_cpu_seconds_total",
        cpu,
    );
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map(|kib| kib * 1024.0);
    family(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory of the server",
        "process_resident_memory_bytes",
        rss,
    );
    family(
        "process_virtual_memory_bytes",
        "gauge",
        "Virtual memory of the server",
        "process_virtual_memory_bytes",
        field(23),
    );
    let fds = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count() as f64);
    family(
        "process_open_fds",
        "gauge",
        "Open file descriptors (sockets included)",
        "process_open_fds",
        fds,
    );
    family(
        "process_threads",
        "gauge",
        "Threads of the server",
        "process_threads",
        field(20),
    );
    let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<f64>().ok())
    });
    family(
        "process_start_time_seconds",
        "gauge",
        "Start time of the server, seconds since the epoch",
        "process_start_time_seconds",
        boot.zip(field(22)).map(|(b, t)| b + t / TICKS),
    );
    out
}

fn encode_registry(registry: &Registry) -> String {
    let mut out = String::with_capacity(8 * 1024);
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    out
}

/// Merges OpenMetrics texts so that each family's metadata appears once, followed by the
/// samples of every text, in first-seen order; one `# EOF` at the end.
fn merge_families(texts: &[String]) -> String {
    struct Family<'a> {
        meta: Vec<&'a str>,
        samples: Vec<&'a str>,
    }
    let mut order: Vec<&str> = Vec::new();
    let mut families: std::collections::HashMap<&str, Family<'_>> = Default::default();
    for text in texts {
        let mut current: Option<&str> = None;
        let mut meta_seen = false;
        for line in text.lines() {
            if line == "# EOF" || line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix("# ") {
                // `# HELP name …`, `# TYPE name …`, `# UNIT name …`
                let name = rest.split(' ').nth(1).unwrap_or("");
                if current != Some(name) {
                    current = Some(name);
                    meta_seen = families.contains_key(name);
                    if !meta_seen {
                        order.push(name);
                        families.insert(
                            name,
                            Family {
                                meta: Vec::new(),
                                samples: Vec::new(),
                            },
                        );
                    }
                }
                if !meta_seen && let Some(f) = families.get_mut(name) {
                    f.meta.push(line);
                }
            } else if let Some(f) = current.and_then(|name| families.get_mut(name)) {
                f.samples.push(line);
            }
        }
    }
    let mut out = String::with_capacity(texts.iter().map(String::len).sum());
    for name in order {
        if let Some(f) = families.get(name) {
            for line in f.meta.iter().chain(&f.samples) {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out.push_str("# EOF\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_of_several_databases_are_merged_once() {
        let m = Metrics::default();
        for db in ["a", "b"] {
            let c = Counter::<u64>::default();
            c.inc();
            m.register_database(db, |r| r.register("things", "Things", c.clone()));
        }
        let text = m.encode();
        assert_eq!(text.matches("# HELP things_total").count(), 0, "{text}");
        assert_eq!(text.matches("# HELP things ").count(), 1, "{text}");
        assert!(text.contains("things_total{db=\"a\"} 1"), "{text}");
        assert!(text.contains("things_total{db=\"b\"} 1"), "{text}");
        assert_eq!(text.matches("# EOF").count(), 1);
        m.unregister_database("a");
        let text = m.encode();
        assert!(!text.contains("db=\"a\""), "{text}");
        assert!(text.contains("http_requests"), "{text}");
    }
}
