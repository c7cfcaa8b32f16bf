#!/usr/bin/env python3
"""Generates the Grafana dashboards in deploy/grafana/dashboards/ (the JSON files are committed).

Edit this file, run `python3 deploy/grafana/generate_dashboards.py`, and commit both; the deploy
checks (tests/deploy/run.sh) fail when a committed dashboard differs from what this prints.

Every panel and target uses the data source template variable `${datasource}` (type
prometheus), so the same dashboards work against a Prometheus that scrapes Sluice and against
Sluice's own Prometheus API over its self-monitoring database
(`http://HOST:8080/v1/databases/_monitoring`, SLUICE_MONITORING_SELF_SCRAPE_INTERVAL_MS) or over
a database Prometheus remote-writes into. Self-monitoring samples carry no `job`/`instance`
labels: the variables' "All" value `.*` matches them. Only the standard library is used.
"""

import json
import pathlib
import sys

SCHEMA_VERSION = 39
DS = {"type": "prometheus", "uid": "${datasource}"}
HERE = pathlib.Path(__file__).resolve().parent
OUT = HERE / "dashboards"

# Label filters of every selector: the template variables.
SEL = 'job=~"$job",instance=~"$instance"'
DBSEL = SEL + ',db=~"$db"'
RI = "$__rate_interval"
# Databases whose WAL is not shipped, so whose LSNs differ between nodes by design: each node's
# own self-monitoring database.
NOT_SHIPPED = 'db!="_monitoring"'
LAGSEL = DBSEL + "," + NOT_SHIPPED
# The newest position of a job: over all its nodes, whatever the instance filter.
JOBMAX = 'job=~"$job",db=~"$db",' + NOT_SHIPPED

# Route classes, from the route template and method of `http_requests_total` and
# `http_request_duration_seconds`. Applied in order: a later class overrides an earlier one.
# The classes follow the authorization classes of docs/security.md.
ROUTE_CLASSES = [
    ("other", ".*"),
    (
        "read",
        "(GET|HEAD) .*"
        "|POST .*/(ts/query|ts/export|api/v1/(query|query_range|series|labels)|vectors/search)",
    ),
    (
        "write",
        "POST .*/(ts/put(/batch|/buffered)?|write|vectors/(add(/batch|/buffered)?|update/buffered))"
        "|DELETE .*/vectors/.*",
    ),
    (
        "admin",
        "POST .*/(ts|vectors)/buffer/flush|(POST|DELETE) .*/v1/collections.*"
        "|POST /v1/databases|DELETE /v1/databases/[^/]+",
    ),
    ("replication", "[A-Z]+ /api/v1/(replication/.*|wal/apply)|GET .*/changes"),
    ("websocket", "GET /v1/ws"),
    ("probes", "(GET|HEAD) /(healthz|readyz|metrics|version|openapi.json)"),
    ("console/unmatched", "[A-Z]+ unmatched"),
]


def classify(expr):
    """Adds a `class` label (see ROUTE_CLASSES) to a vector with `method` and `route` labels."""
    e = f'label_join({expr}, "method_route", " ", "method", "route")'
    for name, regex in ROUTE_CLASSES:
        e = f'label_replace({e}, "class", "{name}", "method_route", "{regex}")'
    return e


def target(expr, legend, ref, instant=False):
    t = {
        "datasource": DS,
        "editorMode": "code",
        "expr": expr,
        "legendFormat": legend,
        "range": not instant,
        "instant": instant,
        "refId": ref,
    }
    return t


class Dashboard:
    def __init__(self, uid, title, description, tags, variables=("job", "instance", "db")):
        self.uid = uid
        self.title = title
        self.description = description
        self.tags = tags
        self.variables = variables
        self.panels = []
        self.next_id = 1
        self.y = 0
        self.x = 0
        self.row_h = 0

    def _place(self, w, h):
        if self.x + w > 24:
            self.x = 0
            self.y += self.row_h
            self.row_h = 0
        pos = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.x += w
        self.row_h = max(self.row_h, h)
        return pos

    def _id(self):
        i = self.next_id
        self.next_id += 1
        return i

    def row(self, title):
        if self.x:
            self.y += self.row_h
        self.x, self.row_h = 0, 0
        self.panels.append(
            {
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y},
                "id": self._id(),
                "panels": [],
                "title": title,
                "type": "row",
            }
        )
        self.y += 1

    def text(self, title, content, w=24, h=4):
        self.panels.append(
            {
                "gridPos": self._place(w, h),
                "id": self._id(),
                "options": {"content": content, "mode": "markdown"},
                "title": title,
                "type": "text",
            }
        )

    def timeseries(self, title, description, targets, unit, w=12, h=8, decimals=None,
                   stack=False, min_zero=True, legend_calcs=("mean", "max", "lastNotNull")):
        refs = "ABCDEFGHIJ"
        defaults = {
            "color": {"mode": "palette-classic"},
            "custom": {
                "axisPlacement": "auto",
                "drawStyle": "line",
                "fillOpacity": 10,
                "lineWidth": 1,
                "pointSize": 4,
                "showPoints": "never",
                "spanNulls": False,
                "stacking": {"group": "A", "mode": "normal" if stack else "none"},
            },
            "unit": unit,
        }
        if min_zero:
            defaults["min"] = 0
        if decimals is not None:
            defaults["decimals"] = decimals
        self.panels.append(
            {
                "datasource": DS,
                "description": description,
                "fieldConfig": {"defaults": defaults, "overrides": []},
                "gridPos": self._place(w, h),
                "id": self._id(),
                "options": {
                    "legend": {
                        "calcs": list(legend_calcs),
                        "displayMode": "table",
                        "placement": "bottom",
                        "showLegend": True,
                    },
                    "tooltip": {"mode": "multi", "sort": "desc"},
                },
                "targets": [target(e, l, refs[i]) for i, (e, l) in enumerate(targets)],
                "title": title,
                "type": "timeseries",
            }
        )

    def stat(self, title, description, expr, legend, unit, w=4, h=4, thresholds=None,
             decimals=None):
        steps = [{"color": "green", "value": None}]
        for value, color in thresholds or []:
            steps.append({"color": color, "value": value})
        defaults = {
            "color": {"mode": "thresholds"},
            "thresholds": {"mode": "absolute", "steps": steps},
            "unit": unit,
        }
        if decimals is not None:
            defaults["decimals"] = decimals
        self.panels.append(
            {
                "datasource": DS,
                "description": description,
                "fieldConfig": {"defaults": defaults, "overrides": []},
                "gridPos": self._place(w, h),
                "id": self._id(),
                "options": {
                    "colorMode": "value",
                    "graphMode": "area",
                    "justifyMode": "auto",
                    "orientation": "auto",
                    "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                    "textMode": "auto",
                },
                "targets": [target(expr, legend, "A")],
                "title": title,
                "type": "stat",
            }
        )

    def _variables(self):
        out = [
            {
                "current": {},
                "hide": 0,
                "includeAll": False,
                "label": "Data source",
                "multi": False,
                "name": "datasource",
                "options": [],
                "query": "prometheus",
                "refresh": 1,
                "regex": "",
                "type": "datasource",
            }
        ]
        queries = {
            "job": ("Job", "label_values(http_requests_total, job)"),
            "instance": ("Instance", 'label_values(http_requests_total{job=~"$job"}, instance)'),
            "db": ("Database", 'label_values(wal_last_lsn{job=~"$job",instance=~"$instance"}, db)'),
        }
        for name in self.variables:
            label, query = queries[name]
            out.append(
                {
                    # ".*" also matches series without the label (Sluice's self-monitoring
                    # samples in `_monitoring` have no job/instance labels).
                    "allValue": ".*",
                    "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
                    "datasource": DS,
                    "definition": query,
                    "hide": 0,
                    "includeAll": True,
                    "label": label,
                    "multi": True,
                    "name": name,
                    "options": [],
                    "query": query,
                    "refresh": 2,
                    "regex": "",
                    "sort": 1,
                    "type": "query",
                }
            )
        return out

    def json(self):
        return {
            "annotations": {
                "list": [
                    {
                        "builtIn": 1,
                        "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                        "enable": True,
                        "hide": True,
                        "iconColor": "rgba(0, 211, 255, 1)",
                        "name": "Annotations & Alerts",
                        "type": "dashboard",
                    }
                ]
            },
            "description": self.description,
            "editable": True,
            "fiscalYearStartMonth": 0,
            "graphTooltip": 1,
            "id": None,
            "links": [
                {
                    "asDropdown": True,
                    "icon": "external link",
                    "includeVars": True,
                    "keepTime": True,
                    "tags": ["sluice"],
                    "title": "Sluice dashboards",
                    "type": "dashboards",
                }
            ],
            "panels": self.panels,
            "refresh": "30s",
            "schemaVersion": SCHEMA_VERSION,
            "tags": self.tags,
            "templating": {"list": self._variables()},
            "time": {"from": "now-3h", "to": "now"},
            "timepicker": {},
            "timezone": "",
            "title": self.title,
            "uid": self.uid,
            "version": 1,
            "weekStart": "",
        }


def overview():
    d = Dashboard(
        "sluice-overview",
        "Sluice / Overview",
        "Requests, errors, WAL, buffers, admission control, replication, process resources and "
        "self-monitoring of Sluice servers. Metrics are described in docs/monitoring.md.",
        ["sluice"],
    )
    d.row("Health")
    d.stat("Nodes up", "On a Prometheus data source: scrape targets answering /metrics "
           "(`up`). On Sluice's own data source (the database `_monitoring`, which has no `up`): "
           "the nodes whose self-monitoring samples are current "
           "(process_start_time_seconds within the last 5 minutes).",
           f"sum(up{{{SEL}}}) or count(process_start_time_seconds{{{SEL}}})", "", "short",
           decimals=0)
    d.stat("Requests / s", "All HTTP requests answered.",
           f"sum(rate(http_requests_total{{{SEL}}}[{RI}]))", "", "reqps")
    d.stat("5xx ratio", "Share of requests answered with a 5xx status.",
           f'sum(rate(http_requests_total{{{SEL},status=~"5.."}}[{RI}])) / '
           f"sum(rate(http_requests_total{{{SEL}}}[{RI}]))",
           "", "percentunit", thresholds=[(0.01, "orange"), (0.05, "red")])
    d.stat("In flight", "HTTP requests being handled now.",
           f"sum(http_requests_in_flight{{{SEL}}})", "", "short", decimals=0)
    d.stat("Storage full", "1 while a database's WAL refuses appends because the disk is full.",
           f"max(wal_storage_full{{{DBSEL}}})", "", "short",
           thresholds=[(1, "red")], decimals=0)
    d.stat("Admission refusals / s", "Requests refused by admission control (429/503).",
           f"sum(rate(admission_rejected_requests_total{{{SEL}}}[{RI}]))", "", "reqps",
           thresholds=[(0.001, "orange")])

    d.row("Requests")
    by_class = classify(f"rate(http_requests_total{{{SEL}}}[{RI}])")
    d.timeseries(
        "Request rate by route class",
        "Requests per second by route class: read, write, admin, replication, websocket, "
        "probes, console/unmatched (the console, /docs and unknown paths), other. Classes are "
        "derived from the `method` and `route` labels.",
        [(f"sum by (class) ({by_class})", "{{class}}")],
        "reqps", stack=True,
    )
    buckets = classify(f"rate(http_request_duration_seconds_bucket{{{SEL}}}[{RI}])")
    d.timeseries(
        "Latency by route class (p50, p99)",
        "Time from request head to response head, quantiles estimated from the "
        "`http_request_duration_seconds` histogram.",
        [
            (f"histogram_quantile(0.99, sum by (class, le) ({buckets}))", "p99 {{class}}"),
            (f"histogram_quantile(0.5, sum by (class, le) ({buckets}))", "p50 {{class}}"),
        ],
        "s", min_zero=True,
    )
    d.timeseries(
        "Errors by status code",
        "Requests answered with a 4xx or 5xx status, by status. 401/403: credentials; 404: "
        "unknown routes or missing objects; 408: slow senders; 413: bodies over the limits; "
        "429: admission control; 503: overload (WAL queue or buffer full, load shedding, "
        "query timeout); 507: the disk is full.",
        [(f'sum by (status) (rate(http_requests_total{{{SEL},status=~"[45].."}}[{RI}]))',
          "{{status}}")],
        "reqps", stack=True,
    )
    d.timeseries(
        "Errors by route (top 10)",
        "Routes with the most 4xx/5xx answers.",
        [(f'topk(10, sum by (method, route, status) (rate(http_requests_total{{{SEL},'
          f'status=~"[45].."}}[{RI}])))', "{{status}} {{method}} {{route}}")],
        "reqps",
    )
    d.timeseries(
        "Busiest routes (top 10)",
        "Request rate of the ten busiest route templates.",
        [(f"topk(10, sum by (method, route) (rate(http_requests_total{{{SEL}}}[{RI}])))",
          "{{method}} {{route}}")],
        "reqps",
    )
    d.timeseries(
        "Slowest routes, p99 (top 10)",
        "99th percentile latency of the ten slowest route templates.",
        [(f"topk(10, histogram_quantile(0.99, sum by (method, route, le) "
          f"(rate(http_request_duration_seconds_bucket{{{SEL}}}[{RI}]))))",
          "{{method}} {{route}}")],
        "s",
    )

    d.row("Admission control")
    d.timeseries(
        "Admission refusals by reason",
        "Requests refused by admission control: rate_limited, too_many_in_flight, "
        "too_many_bytes_in_flight (429, per actor) and server_overloaded (503, load shedding).",
        [(f"sum by (reason) (rate(admission_rejected_requests_total{{{SEL}}}[{RI}]))",
          "{{reason}}")],
        "reqps", stack=True,
    )
    d.timeseries(
        "Requests in flight",
        "HTTP requests being handled, per server (load shedding starts at "
        "admission.max_in_flight_total).",
        [(f"sum by (instance) (http_requests_in_flight{{{SEL}}})", "{{instance}}")],
        "short",
    )

    d.row("Write-ahead log")
    fsync = f"rate(wal_fsync_seconds_bucket{{{DBSEL}}}[{RI}])"
    d.timeseries(
        "WAL fsync latency (p50, p99)",
        "Latency of one fdatasync of a WAL segment, per database.",
        [
            (f"histogram_quantile(0.99, sum by (instance, db, le) ({fsync}))",
             "p99 {{instance}} {{db}}"),
            (f"histogram_quantile(0.5, sum by (instance, db, le) ({fsync}))",
             "p50 {{instance}} {{db}}"),
        ],
        "s",
    )
    d.timeseries(
        "WAL group-commit batch size",
        "Records per group-commit batch (one write, at most one fdatasync): the mean and the "
        "99th percentile.",
        [
            (f"sum by (instance, db) (rate(wal_batch_records_sum{{{DBSEL}}}[{RI}])) / "
             f"sum by (instance, db) (rate(wal_batch_records_count{{{DBSEL}}}[{RI}]))",
             "mean {{instance}} {{db}}"),
            (f"histogram_quantile(0.99, sum by (instance, db, le) "
             f"(rate(wal_batch_records_bucket{{{DBSEL}}}[{RI}])))", "p99 {{instance}} {{db}}"),
        ],
        "short",
    )
    d.timeseries(
        "WAL appends, batches and fsyncs",
        "Records appended, group-commit batches written and fdatasync calls per second.",
        [
            (f"sum by (db) (rate(wal_appends_total{{{DBSEL}}}[{RI}]))", "records {{db}}"),
            (f"sum by (db) (rate(wal_batches_total{{{DBSEL}}}[{RI}]))", "batches {{db}}"),
            (f"sum by (db) (rate(wal_fsyncs_total{{{DBSEL}}}[{RI}]))", "fsyncs {{db}}"),
        ],
        "ops",
    )
    d.timeseries(
        "WAL write throughput",
        "Bytes written to WAL segments per second, framing included.",
        [(f"sum by (instance, db) (rate(wal_appended_bytes_total{{{DBSEL}}}[{RI}]))",
          "{{instance}} {{db}}")],
        "binBps",
    )
    d.timeseries(
        "WAL queue and backpressure",
        "Records waiting for the WAL writer, and appends refused because the queue was full "
        "(those writes got 503).",
        [
            (f"sum by (instance, db) (wal_queue_depth{{{DBSEL}}})", "queued {{instance}} {{db}}"),
            (f"sum by (instance, db) (rate(wal_overloaded_total{{{DBSEL}}}[{RI}]))",
             "refused/s {{instance}} {{db}}"),
        ],
        "short",
    )
    d.timeseries(
        "WAL segments and records not checkpointed",
        "Segment files on disk, and records written after the checkpoint (replayed at start; a "
        "growing value means checkpoints are held back by a lagging replica or the vector "
        "snapshot interval).",
        [
            (f"sum by (instance, db) (wal_segments{{{DBSEL}}})", "segments {{instance}} {{db}}"),
            (f"sum by (instance, db) (wal_last_lsn{{{DBSEL}}} - wal_checkpoint_lsn{{{DBSEL}}})",
             "records after checkpoint {{instance}} {{db}}"),
        ],
        "short",
    )

    d.row("Auto-buffers")
    d.timeseries(
        "Buffer sizes",
        "Points in the time-series buffer and operations in the vector buffer, per database.",
        [
            (f"sum by (instance, db) (ts_auto_buffer_current_size{{{DBSEL}}})",
             "ts points {{instance}} {{db}}"),
            (f"sum by (instance, db) (vector_auto_buffer_current_size{{{DBSEL}}})",
             "vector ops {{instance}} {{db}}"),
        ],
        "short",
    )
    d.timeseries(
        "Buffer flushes",
        "Auto-buffer flushes per second, per database.",
        [
            (f"sum by (db) (rate(ts_auto_buffer_flush_count_total{{{DBSEL}}}[{RI}]))",
             "ts {{db}}"),
            (f"sum by (db) (rate(vector_auto_buffer_flush_count_total{{{DBSEL}}}[{RI}]))",
             "vector {{db}}"),
        ],
        "ops",
    )
    d.timeseries(
        "Buffered writes refused (503 Buffer overflow)",
        "Buffered write requests answered 503: the buffer plus what is being flushed is over "
        "overflow_buffer_bytes, or the WAL queue is full.",
        [(f'sum by (route) (rate(http_requests_total{{{SEL},status="503",'
          f'route=~".*/(ts/put/buffered|vectors/(add|update|remove)/buffered)"}}[{RI}]))',
          "{{route}}")],
        "reqps",
    )

    d.row("Replication")
    d.timeseries(
        "Replication lag per node (records behind)",
        "For every node of the job, the newest WAL position (LSN) of any node of the same job "
        "minus its own, per database (except `_monitoring`, which each node keeps for itself): 0 "
        "on the primary and on caught-up replicas. Needs the primary and its replicas scraped "
        "under one `job` label. Time and byte lag per replica are in GET "
        "/api/v1/replication/stats.",
        [(f"max by (job, db) (wal_last_lsn{{{JOBMAX}}}) - on (job, db) group_right "
          f"wal_last_lsn{{{LAGSEL}}}", "{{instance}} {{db}}")],
        "short",
    )
    d.timeseries(
        "Shipping and applying",
        "Primary: batches a replica accepted and failed shipping attempts (three failures in "
        "a row mark a replica unhealthy). Replica: batches applied and refused.",
        [
            (f"sum by (instance) (rate(wal_shipper_batches_total{{{SEL}}}[{RI}]))",
             "shipped {{instance}}"),
            (f"sum by (instance) (rate(wal_shipper_failed_ships_total{{{SEL}}}[{RI}]))",
             "failed {{instance}}"),
            (f"sum by (instance) (rate(replication_applied_batches_total{{{SEL}}}[{RI}]))",
             "applied {{instance}}"),
            (f"sum by (instance, reason) (rate(replication_refused_batches_total{{{SEL}}}[{RI}]))",
             "refused {{reason}} {{instance}}"),
        ],
        "ops",
    )

    d.row("Process")
    d.timeseries(
        "Memory (resident)",
        "Resident memory of each server process (process_resident_memory_bytes, from "
        "/proc/self/status): buffers, vector indexes, the series index and caches live here. "
        "Compare it with the container's memory limit (the SluiceMemoryHigh alert fires at "
        "3.6 GiB, 90% of the Helm chart's default 4 GiB limit).",
        [(f"sum by (instance) (process_resident_memory_bytes{{{SEL}}})", "{{instance}}")],
        "bytes",
    )
    d.timeseries(
        "CPU",
        "CPU time (user and system) used per second by each server process: 1 is one core "
        "busy.",
        [(f"sum by (instance) (rate(process_cpu_seconds_total{{{SEL}}}[{RI}]))", "{{instance}}")],
        "short",
    )
    d.timeseries(
        "Open file descriptors and threads",
        "Descriptors the process holds open (WAL segments, chunk files, sockets) and its "
        "threads (the runtime's workers, WAL writers, flushers, query threads).",
        [
            (f"sum by (instance) (process_open_fds{{{SEL}}})", "fds {{instance}}"),
            (f"sum by (instance) (process_threads{{{SEL}}})", "threads {{instance}}"),
        ],
        "short",
    )
    d.timeseries(
        "Uptime",
        "Time since each process started (process_start_time_seconds): it drops to zero at a "
        "restart. Sluice stops itself when a flush, index write, checkpoint or fsync fails; "
        "see the SluiceRestarted alert.",
        [(f"max by (instance) (time() - process_start_time_seconds{{{SEL}}})", "{{instance}}")],
        "s",
    )

    d.row("Self-monitoring")
    d.timeseries(
        "Self-scrape duration",
        "Mean time one self-monitoring scrape takes (render /metrics, parse, buffered write into "
        "the database `_monitoring`): monitoring_self_scrape_seconds_total over "
        "monitoring_self_scrapes_total. NaN while self-monitoring is off "
        "(SLUICE_MONITORING_SELF_SCRAPE_INTERVAL_MS=0).",
        [(f"sum by (instance) (rate(monitoring_self_scrape_seconds_total{{{SEL}}}[{RI}])) / "
          f"sum by (instance) (rate(monitoring_self_scrapes_total{{{SEL}}}[{RI}]))",
          "{{instance}}")],
        "s", w=8,
    )
    d.timeseries(
        "Samples per self-scrape",
        "Samples the last self-monitoring scrape wrote into `_monitoring` "
        "(monitoring_self_scrape_samples); it grows with databases, routes and statuses seen.",
        [(f"sum by (instance) (monitoring_self_scrape_samples{{{SEL}}})", "{{instance}}")],
        "short", w=8,
    )
    d.timeseries(
        "Self-scrapes and failures / s",
        "Self-monitoring scrapes written per second (one per interval), and scrapes that could "
        "not be written (a full buffer or WAL queue, a full disk; logged): see the "
        "SluiceSelfMonitoringFailing alert.",
        [
            (f"sum by (instance) (rate(monitoring_self_scrapes_total{{{SEL}}}[{RI}]))",
             "scrapes {{instance}}"),
            (f"sum by (instance) (rate(monitoring_self_scrape_failures_total{{{SEL}}}[{RI}]))",
             "failed {{instance}}"),
        ],
        "ops", w=8,
    )
    return d


def ts_auto_buffer():
    d = Dashboard(
        "sluice-ts-auto-buffer",
        "Sluice / TSAutoBuffer",
        "The time-series auto-buffer: points accepted by buffered writes, flushes into "
        "compressed chunks, compression and buffer size, per database.",
        ["sluice", "time-series"],
    )
    d.row("Now")
    d.stat("Points in buffer", "ts_auto_buffer_current_size summed over the selection.",
           f"sum(ts_auto_buffer_current_size{{{DBSEL}}})", "", "short", w=6, decimals=0)
    d.stat("Points buffered (total)", "Points accepted into the buffer since the servers started.",
           f"sum(ts_auto_buffer_points_buffered_total{{{DBSEL}}})", "", "short", w=6)
    d.stat("Points flushed (total)", "Points flushed into compressed chunks since the servers "
           "started.", f"sum(ts_auto_buffer_points_flushed_total{{{DBSEL}}})", "", "short", w=6)
    d.stat("Flushes (total)", "Buffer flushes since the servers started.",
           f"sum(ts_auto_buffer_flush_count_total{{{DBSEL}}})", "", "short", w=6, decimals=0)

    d.row("Throughput")
    d.timeseries(
        "Points buffered and flushed / s",
        "Points accepted into the buffer and points flushed into chunks per second. Flushed "
        "lagging buffered for long means flushes are not keeping up.",
        [
            (f"sum by (instance, db) (rate(ts_auto_buffer_points_buffered_total{{{DBSEL}}}[{RI}]))",
             "buffered {{instance}} {{db}}"),
            (f"sum by (instance, db) (rate(ts_auto_buffer_points_flushed_total{{{DBSEL}}}[{RI}]))",
             "flushed {{instance}} {{db}}"),
        ],
        "suffix: points/s",
    )
    d.timeseries(
        "Flushes / s",
        "Flushes per second (count, age, memory, manual and shutdown triggers together).",
        [(f"sum by (instance, db) (rate(ts_auto_buffer_flush_count_total{{{DBSEL}}}[{RI}]))",
          "{{instance}} {{db}}")],
        "ops",
    )
    d.timeseries(
        "Points per flush",
        "Mean points written by one flush over the interval: larger flushes make larger chunks.",
        [(f"sum by (instance, db) (rate(ts_auto_buffer_points_flushed_total{{{DBSEL}}}[{RI}])) / "
          f"sum by (instance, db) (rate(ts_auto_buffer_flush_count_total{{{DBSEL}}}[{RI}]))",
          "{{instance}} {{db}}")],
        "short",
    )
    d.timeseries(
        "Buffer size",
        "Points in the buffer now. A flush starts at features.ts_auto_buffer.max_points_per_buffer "
        "points (default 1000), when the oldest point is flush_interval_ms old, or at "
        "max_buffer_bytes of memory.",
        [(f"sum by (instance, db) (ts_auto_buffer_current_size{{{DBSEL}}})", "{{instance}} {{db}}")],
        "short",
    )

    d.row("Compression")
    d.timeseries(
        "Compression ratio",
        "Raw bytes (16 per point) over stored bytes, over all flushes since start (0 before the "
        "first flush). Gorilla or decimal-aware chunks usually reach 10x or more on regular "
        "series; small flushes of few points per series compress less.",
        [(f"max by (instance, db) (ts_auto_buffer_compression_ratio{{{DBSEL}}} > 0)",
          "{{instance}} {{db}}")],
        "suffix:x", decimals=2,
    )
    d.timeseries(
        "Buffered write requests by status",
        "Requests to the buffered time-series route (flat and per database), by status. 503 is "
        "the \"Buffer overflow\" refusal.",
        [(f'sum by (status) (rate(http_requests_total{{{SEL},route=~".*/ts/put/buffered"}}[{RI}]))',
          "{{status}}")],
        "reqps", stack=True,
    )
    return d


def vector_auto_buffer():
    d = Dashboard(
        "sluice-vector-auto-buffer",
        "Sluice / VectorAutoBuffer",
        "The vector auto-buffer: operations (add, update, remove) accepted by buffered writes, "
        "flushes into the HNSW indexes, buffer size and index snapshots, per database.",
        ["sluice", "vectors"],
    )
    d.row("Now")
    d.stat("Operations in buffer", "vector_auto_buffer_current_size summed over the selection.",
           f"sum(vector_auto_buffer_current_size{{{DBSEL}}})", "", "short", w=6, decimals=0)
    d.stat("Operations buffered (total)", "Vector operations accepted into the buffer since the "
           "servers started.", f"sum(vector_auto_buffer_vectors_buffered_total{{{DBSEL}}})", "",
           "short", w=6)
    d.stat("Operations flushed (total)", "Vector operations applied to the indexes by flushes "
           "since the servers started.", f"sum(vector_auto_buffer_vectors_flushed_total{{{DBSEL}}})",
           "", "short", w=6)
    d.stat("Flushes (total)", "Buffer flushes since the servers started.",
           f"sum(vector_auto_buffer_flush_count_total{{{DBSEL}}})", "", "short", w=6, decimals=0)

    d.row("Throughput")
    d.timeseries(
        "Operations buffered and flushed / s",
        "Vector operations accepted into the buffer and applied to the index by flushes, per "
        "second.",
        [
            (f"sum by (instance, db) (rate(vector_auto_buffer_vectors_buffered_total{{{DBSEL}}}[{RI}]))",
             "buffered {{instance}} {{db}}"),
            (f"sum by (instance, db) (rate(vector_auto_buffer_vectors_flushed_total{{{DBSEL}}}[{RI}]))",
             "flushed {{instance}} {{db}}"),
        ],
        "suffix: ops/s",
    )
    d.timeseries(
        "Flushes / s",
        "Vector buffer flushes per second.",
        [(f"sum by (instance, db) (rate(vector_auto_buffer_flush_count_total{{{DBSEL}}}[{RI}]))",
          "{{instance}} {{db}}")],
        "ops",
    )
    d.timeseries(
        "Buffer size",
        "Vector operations in the buffer now (searches see them: read-your-writes). A flush "
        "starts at features.vector_auto_buffer.max_vectors_per_buffer operations (default "
        "1000), when the oldest is flush_interval_ms old, or at max_buffer_bytes.",
        [(f"sum by (instance, db) (vector_auto_buffer_current_size{{{DBSEL}}})",
          "{{instance}} {{db}}")],
        "short",
    )
    d.timeseries(
        "Operations per flush",
        "Mean operations applied by one flush over the interval.",
        [(f"sum by (instance, db) (rate(vector_auto_buffer_vectors_flushed_total{{{DBSEL}}}[{RI}])) / "
          f"sum by (instance, db) (rate(vector_auto_buffer_flush_count_total{{{DBSEL}}}[{RI}]))",
          "{{instance}} {{db}}")],
        "short",
    )

    d.row("Index snapshots and requests")
    d.timeseries(
        "Index snapshots",
        "Vector index snapshots written (after vector.snapshot_after_ops operations or "
        "vector.snapshot_interval_ms, and at shutdown); the WAL is checkpointed past them.",
        [(f"sum by (instance, db) (increase(vector_snapshots_total{{{DBSEL}}}[{RI}]))",
          "{{instance}} {{db}}")],
        "short",
    )
    d.timeseries(
        "Buffered vector requests by status",
        "Requests to the buffered vector routes (add, update, remove; flat and per database), "
        "by status. 503 is the \"Buffer overflow\" refusal.",
        [(f'sum by (status) (rate(http_requests_total{{{SEL},'
          f'route=~".*/vectors/(add|update|remove)/buffered"}}[{RI}]))', "{{status}}")],
        "reqps", stack=True,
    )
    return d


def wal_shipping():
    d = Dashboard(
        "sluice-wal-shipping",
        "Sluice / Compressed WAL shipping",
        "Replication: WAL batches a primary ships to its replicas (zstd-compressed), what the "
        "replicas apply, and how far behind they are.",
        ["sluice", "replication"],
        variables=("job", "instance"),
    )
    d.row("Now")
    d.stat("Compression ratio", "wal_shipper_compression_ratio: WAL record bytes over bytes "
           "sent, over all batches since start (below 1 when small batches cost more in "
           "framing than zstd saves).", f"max(wal_shipper_compression_ratio{{{SEL}}} > 0)", "",
           "suffix:x", w=6, decimals=2)
    d.stat("Batches shipped (total)", "WAL batches replicas accepted since the primary started.",
           f"sum(wal_shipper_batches_total{{{SEL}}})", "", "short", w=6, decimals=0)
    d.stat("Bytes shipped (total)", "Request bodies sent to replicas since the primary started.",
           f"sum(wal_shipper_bytes_shipped_total{{{SEL}}})", "", "bytes", w=6)
    d.stat("Failed ships (last hour)", "Shipping attempts that failed in the last hour.",
           f"sum(increase(wal_shipper_failed_ships_total{{{SEL}}}[1h]))", "", "short", w=6,
           thresholds=[(1, "orange")], decimals=0)

    d.row("Primary: shipping")
    d.timeseries(
        "Shipping throughput",
        "WAL record bytes shipped (before compression) and bytes sent (compressed request "
        "bodies) per second.",
        [
            (f"sum by (instance) (rate(wal_shipper_bytes_uncompressed_total{{{SEL}}}[{RI}]))",
             "uncompressed {{instance}}"),
            (f"sum by (instance) (rate(wal_shipper_bytes_shipped_total{{{SEL}}}[{RI}]))",
             "sent {{instance}}"),
        ],
        "binBps",
    )
    d.timeseries(
        "Compression ratio",
        "Since start (wal_shipper_compression_ratio) and over the interval (uncompressed over "
        "sent bytes).",
        [
            (f"max by (instance) (wal_shipper_compression_ratio{{{SEL}}} > 0)",
             "since start {{instance}}"),
            (f"sum by (instance) (rate(wal_shipper_bytes_uncompressed_total{{{SEL}}}[{RI}])) / "
             f"sum by (instance) (rate(wal_shipper_bytes_shipped_total{{{SEL}}}[{RI}]))",
             "interval {{instance}}"),
        ],
        "suffix:x", decimals=2,
    )
    d.timeseries(
        "Batches and records shipped / s",
        "WAL batches and records replicas accepted per second.",
        [
            (f"sum by (instance) (rate(wal_shipper_batches_total{{{SEL}}}[{RI}]))",
             "batches {{instance}}"),
            (f"sum by (instance) (rate(wal_shipper_entries_total{{{SEL}}}[{RI}]))",
             "records {{instance}}"),
        ],
        "ops",
    )
    d.timeseries(
        "Failures and snapshots",
        "Failed shipping attempts (unreachable replica, refusal, timeout) and snapshots sent to "
        "replicas whose WAL was no longer retained.",
        [
            (f"sum by (instance) (increase(wal_shipper_failed_ships_total{{{SEL}}}[{RI}]))",
             "failed {{instance}}"),
            (f"sum by (instance) (increase(wal_shipper_snapshots_total{{{SEL}}}[{RI}]))",
             "snapshots {{instance}}"),
        ],
        "short",
    )
    d.timeseries(
        "Mean batch size",
        "Bytes per shipped batch, before and after compression.",
        [
            (f"sum by (instance) (rate(wal_shipper_bytes_uncompressed_total{{{SEL}}}[{RI}])) / "
             f"sum by (instance) (rate(wal_shipper_batches_total{{{SEL}}}[{RI}]))",
             "uncompressed {{instance}}"),
            (f"sum by (instance) (rate(wal_shipper_bytes_shipped_total{{{SEL}}}[{RI}])) / "
             f"sum by (instance) (rate(wal_shipper_batches_total{{{SEL}}}[{RI}]))",
             "sent {{instance}}"),
        ],
        "bytes",
    )
    d.timeseries(
        "Replication lag per node (records behind)",
        "For every node of the job, the newest WAL position (LSN) of any node of the same job "
        "minus its own, per database (except `_monitoring`, which each node keeps for itself): "
        "0 on the primary and on caught-up replicas. Needs the primary and its replicas scraped "
        "under one `job` label.",
        [(f"max by (job, db) (wal_last_lsn{{job=~\"$job\",{NOT_SHIPPED}}}) - on (job, db) group_right "
          f"wal_last_lsn{{{SEL},{NOT_SHIPPED}}}", "{{instance}} {{db}}")],
        "short",
    )

    d.row("Replica: applying")
    d.timeseries(
        "Applied / s",
        "WAL batches and records this replica applied per second.",
        [
            (f"sum by (instance) (rate(replication_applied_batches_total{{{SEL}}}[{RI}]))",
             "batches {{instance}}"),
            (f"sum by (instance) (rate(replication_applied_entries_total{{{SEL}}}[{RI}]))",
             "records {{instance}}"),
        ],
        "ops",
    )
    d.timeseries(
        "Received bytes / s",
        "Bytes of applied batches as sent by the primary, and their WAL record bytes.",
        [
            (f"sum by (instance) (rate(replication_received_bytes_total{{{SEL}}}[{RI}]))",
             "sent {{instance}}"),
            (f"sum by (instance) (rate(replication_received_uncompressed_bytes_total{{{SEL}}}[{RI}]))",
             "uncompressed {{instance}}"),
        ],
        "binBps",
    )
    d.timeseries(
        "Refused batches by reason",
        "Batches this replica refused, by reason: wal_gap (the primary then resends from the "
        "replica's position), stale_epoch, conflicting_primary, corrupt_batch, overloaded, "
        "not_a_replica, record_refused.",
        [(f"sum by (instance, reason) (increase(replication_refused_batches_total{{{SEL}}}[{RI}]))",
          "{{reason}} {{instance}}")],
        "short",
    )
    d.timeseries(
        "Snapshots installed",
        "Snapshots this replica installed (it had fallen behind the primary's retained WAL).",
        [(f"sum by (instance) (increase(replication_snapshots_installed_total{{{SEL}}}[{RI}]))",
          "{{instance}}")],
        "short",
    )
    return d


DASHBOARDS = {
    "overview.json": overview,
    "ts_auto_buffer.json": ts_auto_buffer,
    "vector_auto_buffer.json": vector_auto_buffer,
    "compressed_wal_shipping.json": wal_shipping,
}


def render():
    return {name: json.dumps(f().json(), indent=2) + "\n" for name, f in DASHBOARDS.items()}


def main():
    check = "--check" in sys.argv[1:]
    stale = []
    for name, text in render().items():
        path = OUT / name
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            OUT.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print("out of date (run deploy/grafana/generate_dashboards.py): " + ", ".join(stale))
        sys.exit(1)


if __name__ == "__main__":
    main()
