"""Every operation of openapi/openapi.json has a client method, or is listed in UNCOVERED with
a reason. Routes nested under /v1/databases/{db}/… map to the same methods through database
scoping (``client.database(name)``)."""

import json

import sluice
from conftest import REPO

# (method, flat path) -> attribute path on Client (and AsyncClient)
COVERAGE = {
    ("GET", "/healthz"): "health",
    ("GET", "/readyz"): "ready",
    ("GET", "/version"): "version",
    ("GET", "/metrics"): "metrics",
    ("GET", "/openapi.json"): "openapi",
    ("POST", "/ts/put"): "timeseries.put",
    ("POST", "/ts/put/batch"): "timeseries.put_batch",
    ("POST", "/ts/put/buffered"): "timeseries.put_buffered",
    ("GET", "/ts/buffer/stats"): "timeseries.get_buffer_stats",
    ("POST", "/ts/buffer/flush"): "timeseries.flush_buffer",
    ("POST", "/ts/query"): "timeseries.query",
    ("POST", "/ts/export"): "timeseries.export",
    ("POST", "/ts/delete"): "timeseries.delete",
    ("GET", "/ts/cardinality"): "timeseries.cardinality",
    ("POST", "/write"): "timeseries.write_lines",  # api="v1"; also write_dataframe(transport="http")
    ("POST", "/api/v2/write"): "timeseries.write_lines",  # api="v2"
    ("POST", "/vectors/add"): "vectors.add",
    ("POST", "/vectors/add/batch"): "vectors.add_batch",
    ("POST", "/vectors/add/buffered"): "vectors.add_buffered",
    ("POST", "/vectors/update/buffered"): "vectors.update_buffered",
    ("DELETE", "/vectors/remove/buffered"): "vectors.remove_buffered",
    ("GET", "/vectors/buffer/stats"): "vectors.get_buffer_stats",
    ("POST", "/vectors/buffer/flush"): "vectors.flush_buffer",
    ("POST", "/vectors/search"): "vectors.search",
    ("GET", "/vectors/{pk}"): "vectors.get",
    ("DELETE", "/vectors/{pk}"): "vectors.delete",
    ("GET", "/v1/collections"): "collections.list",
    ("POST", "/v1/collections"): "collections.create",
    ("GET", "/v1/collections/{name}"): "collections.get",
    ("DELETE", "/v1/collections/{name}"): "collections.delete",
    ("GET", "/v1/collections/{name}/export"): "collections.export",
    ("GET", "/v1/databases"): "databases.list",
    ("POST", "/v1/databases"): "databases.create",
    ("DELETE", "/v1/databases/{db}"): "databases.delete",
    ("POST", "/api/v1/replication/replicas"): "replication.add_replica",
    ("GET", "/api/v1/replication/replicas"): "replication.list_replicas",
    ("DELETE", "/api/v1/replication/replicas/{replica_id}"): "replication.remove_replica",
    ("GET", "/api/v1/replication/stats"): "replication.get_replication_stats",
    ("POST", "/api/v1/replication/config"): "replication.configure_compression",
    ("POST", "/api/v1/replication/promote"): "replication.promote",
}

# Operations that exist only under /v1/databases/{db}/…: attribute path on Database.
NESTED_ONLY = {
    ("GET", "/changes"): "changes",
}

UNCOVERED = {
    ("POST", "/api/v1/wal/apply"): "server-to-server: a primary ships its WAL to replicas; no client sends it",
    ("POST", "/api/v1/replication/snapshot"): "server-to-server: snapshot transfer from a primary to a replica",
    ("GET", "/v1/ws"): "the WebSocket carriage of the wire protocol; the client speaks the same frames over TCP "
    "(sluice.wire) and follows changefeeds over SSE (Database.changes), so it needs no WebSocket dependency",
}
# The Prometheus API and remote write are Prometheus's own protocols, spoken by Grafana,
# Prometheus, its agents and Prometheus client libraries (docs/prometheus.md); this client
# writes and queries through Sluice's API.
_PROMETHEUS = "the Prometheus protocol, for Prometheus-speaking tools (docs/prometheus.md)"
UNCOVERED.update({
    (method, path): _PROMETHEUS
    for method, path in [
        ("GET", "/api/v1/query"), ("POST", "/api/v1/query"),
        ("GET", "/api/v1/query_range"), ("POST", "/api/v1/query_range"),
        ("GET", "/api/v1/series"), ("POST", "/api/v1/series"),
        ("GET", "/api/v1/labels"), ("POST", "/api/v1/labels"),
        ("GET", "/api/v1/label/{name}/values"), ("GET", "/api/v1/metadata"),
        ("GET", "/api/v1/status/buildinfo"), ("POST", "/api/v1/write"),
    ]
})

PREFIX = "/v1/databases/{db}"


def operations():
    doc = json.loads((REPO / "openapi" / "openapi.json").read_text())
    for path, item in doc["paths"].items():
        for method in item:
            if method in ("get", "post", "put", "delete", "patch", "head"):
                yield method.upper(), path


def resolve(obj, dotted):
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def test_every_operation_is_covered_or_explained():
    c = sluice.Client("http://127.0.0.1:1")
    ac = sluice.AsyncClient("http://127.0.0.1:1")
    missing = []
    seen = set()
    for method, path in operations():
        if path.startswith(PREFIX + "/"):
            flat = path[len(PREFIX):]
            key = (method, flat)
            if key in COVERAGE:
                attr = COVERAGE[key]
                if attr.split(".")[0] in ("timeseries", "vectors", "collections"):
                    assert callable(resolve(c.database("x"), attr)), (method, path)
                    assert callable(resolve(ac.database("x"), attr)), (method, path)
                    continue
            if key in NESTED_ONLY:
                assert callable(resolve(c.database("x"), NESTED_ONLY[key]))
                assert callable(resolve(ac.database("x"), NESTED_ONLY[key]))
                seen.add(key)
                continue
            if (method, path) not in UNCOVERED and key not in UNCOVERED:
                missing.append((method, path))
            continue
        key = (method, path)
        seen.add(key)
        if key in COVERAGE:
            assert callable(resolve(c, COVERAGE[key])), key
            assert callable(resolve(ac, COVERAGE[key])), key
        elif key not in UNCOVERED:
            missing.append(key)
    assert not missing, f"operations without a client method (add one, or list them in UNCOVERED with a reason): {missing}"
    stale = (set(COVERAGE) | set(UNCOVERED) | set(NESTED_ONLY)) - seen
    assert not stale, f"entries for operations the API no longer has: {stale}"
    c.close()


def test_the_served_document_matches_the_file(client):
    served = {(m.upper(), p) for p, item in client.openapi()["paths"].items() for m in item if m in ("get", "post", "delete", "put", "patch")}
    assert served == set(operations())
