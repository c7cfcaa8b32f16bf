package sluice

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
)

// covered maps each operation of openapi/openapi.json to the SDK method that calls it
// ("Type.Method"), checked by reflection.
var covered = map[string]string{
	"POST /ts/put":                                     "TimeSeriesClient.Put",
	"POST /ts/put/batch":                               "TimeSeriesClient.PutBatch",
	"POST /ts/put/buffered":                            "TimeSeriesClient.PutBuffered",
	"GET /ts/buffer/stats":                             "TimeSeriesClient.GetBufferStats",
	"POST /ts/buffer/flush":                            "TimeSeriesClient.FlushBuffer",
	"POST /ts/query":                                   "TimeSeriesClient.Query",
	"POST /ts/export":                                  "TimeSeriesClient.Export",
	"POST /ts/delete":                                  "TimeSeriesClient.Delete",
	"GET /ts/cardinality":                              "TimeSeriesClient.Cardinality",
	"POST /write":                                      "TimeSeriesClient.WriteLines",
	"POST /api/v2/write":                               "TimeSeriesClient.WriteLines",
	"POST /vectors/add":                                "VectorsClient.Add",
	"POST /vectors/add/batch":                          "VectorsClient.AddBatch",
	"POST /vectors/add/buffered":                       "VectorsClient.AddBuffered",
	"POST /vectors/update/buffered":                    "VectorsClient.UpdateBuffered",
	"DELETE /vectors/remove/buffered":                  "VectorsClient.RemoveBuffered",
	"GET /vectors/buffer/stats":                        "VectorsClient.GetBufferStats",
	"POST /vectors/buffer/flush":                       "VectorsClient.FlushBuffer",
	"POST /vectors/search":                             "VectorsClient.Search",
	"GET /vectors/{pk}":                                "VectorsClient.Get",
	"DELETE /vectors/{pk}":                             "VectorsClient.Delete",
	"GET /v1/collections":                              "CollectionsClient.List",
	"POST /v1/collections":                             "CollectionsClient.Create",
	"GET /v1/collections/{name}":                       "CollectionsClient.Get",
	"DELETE /v1/collections/{name}":                    "CollectionsClient.Delete",
	"GET /v1/collections/{name}/export":                "CollectionsClient.Export",
	"GET /v1/databases":                                "DatabasesClient.List",
	"POST /v1/databases":                               "DatabasesClient.Create",
	"DELETE /v1/databases/{db}":                        "DatabasesClient.Delete",
	"POST /api/v1/replication/replicas":                "ReplicationClient.AddReplica",
	"GET /api/v1/replication/replicas":                 "ReplicationClient.ListReplicas",
	"DELETE /api/v1/replication/replicas/{replica_id}": "ReplicationClient.RemoveReplica",
	"GET /api/v1/replication/stats":                    "ReplicationClient.GetReplicationStats",
	"POST /api/v1/replication/config":                  "ReplicationClient.ConfigureCompression",
	"POST /api/v1/replication/promote":                 "ReplicationClient.Promote",
	"POST /api/v1/wal/apply":                           "WALShipperClient.ApplyWALBatch",
	"GET /healthz":                                     "Client.Health",
	"GET /readyz":                                      "Client.Ready",
	"GET /version":                                     "Client.Version",
	"GET /metrics":                                     "Client.Metrics",
	"GET /openapi.json":                                "Client.OpenAPI",
	"GET /v1/databases/{db}/changes":                   "Client.Changes",
}

// uncovered lists operations with no SDK method, each with its reason.
var uncovered = map[string]string{
	"POST /api/v1/replication/snapshot": "primary-to-replica snapshot transfer (zstd NDJSON stream), sent by the server's shipper, not by applications",
	"POST /api/v1/write":                "Prometheus remote write (snappy protobuf): for Prometheus itself; applications use PutBatch or the BatchWriter",
	"GET /v1/ws":                        "WebSocket carriage of the wire protocol; the Go client speaks the same frames over TCP (WireClient)",
	"GET /api/v1/query":                 "Prometheus HTTP API for Grafana and PromQL tools; use a Prometheus client library against the same URL",
	"POST /api/v1/query":                "Prometheus HTTP API (see GET /api/v1/query)",
	"GET /api/v1/query_range":           "Prometheus HTTP API (see GET /api/v1/query)",
	"POST /api/v1/query_range":          "Prometheus HTTP API (see GET /api/v1/query)",
	"GET /api/v1/series":                "Prometheus HTTP API (see GET /api/v1/query)",
	"POST /api/v1/series":               "Prometheus HTTP API (see GET /api/v1/query)",
	"GET /api/v1/labels":                "Prometheus HTTP API (see GET /api/v1/query)",
	"POST /api/v1/labels":               "Prometheus HTTP API (see GET /api/v1/query)",
	"GET /api/v1/label/{name}/values":   "Prometheus HTTP API (see GET /api/v1/query)",
	"GET /api/v1/metadata":              "Prometheus HTTP API (see GET /api/v1/query)",
	"GET /api/v1/status/buildinfo":      "Prometheus HTTP API (see GET /api/v1/query); Client.Version gives the server's version",
}

var sdkTypes = map[string]reflect.Type{
	"Client":            reflect.TypeOf(&Client{}),
	"TimeSeriesClient":  reflect.TypeOf(&TimeSeriesClient{}),
	"VectorsClient":     reflect.TypeOf(&VectorsClient{}),
	"CollectionsClient": reflect.TypeOf(&CollectionsClient{}),
	"DatabasesClient":   reflect.TypeOf(&DatabasesClient{}),
	"ReplicationClient": reflect.TypeOf(&ReplicationClient{}),
	"WALShipperClient":  reflect.TypeOf(&WALShipperClient{}),
}

func TestOpenAPICoverage(t *testing.T) {
	path := filepath.Join("..", "..", "openapi", "openapi.json")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading %s: %v", path, err)
	}
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	var missing []string
	seen := map[string]bool{}
	for p, ops := range doc.Paths {
		if flat := strings.TrimPrefix(p, "/v1/databases/{db}"); flat != p && doc.Paths[flat] != nil {
			continue // the database option (WithDatabase, Client.Database) reaches these copies
		}
		for m := range ops {
			switch m {
			case "get", "post", "put", "delete", "patch":
			default:
				continue
			}
			key := strings.ToUpper(m) + " " + p
			seen[key] = true
			if meth, ok := covered[key]; ok {
				parts := strings.SplitN(meth, ".", 2)
				typ, ok := sdkTypes[parts[0]]
				if !ok {
					t.Errorf("%s: unknown type in %q", key, meth)
				} else if _, ok := typ.MethodByName(parts[1]); !ok {
					t.Errorf("%s: %s has no method %s", key, parts[0], parts[1])
				}
				continue
			}
			if reason := uncovered[key]; strings.TrimSpace(reason) == "" {
				missing = append(missing, key)
			}
		}
	}
	sort.Strings(missing)
	for _, k := range missing {
		t.Errorf("operation %s has no SDK method and no reason in uncovered", k)
	}
	for k := range covered {
		if !seen[k] {
			t.Errorf("covered lists %s, which openapi.json does not have", k)
		}
	}
	for k := range uncovered {
		if !seen[k] {
			t.Errorf("uncovered lists %s, which openapi.json does not have", k)
		}
	}
}
