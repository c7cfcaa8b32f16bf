//! The OpenAPI document as a contract: what the handlers enforce, stated in the schemas.
//!
//! The routes' `#[utoipa::path]` annotations and the `sluice-api` types give the document its
//! shapes. This module adds what a generator or a client needs to send only valid requests
//! and to read every answer, and it is the one place that lists the input rules:
//!
//! - **Constraints** (`minLength`, `maxLength`, `pattern`, `minimum`, `maximum`, `minItems`,
//!   `maxItems`, `maxProperties`, `propertyNames`, `enum`) for every rule the server checks on
//!   a single value, with this server's configured limits (`limits.*`, `vector.*`): the
//!   document served by a server states that server's limits. Strings are measured in
//!   characters, as JSON Schema measures them (see `limits.max_name_chars`).
//! - **Error shapes**: `ErrorBody` everywhere; on seed routes (whose success answer carries
//!   `success`) error answers carry `success: false` too; the Prometheus API answers in
//!   Prometheus's error shape, except refusals made before its handlers run (authentication,
//!   admission), which have `ErrorBody`'s.
//!
//! The rule for statuses (docs/api-contract.md): a request that breaks the schema is refused
//! with 400 (or 413 for size, 415 for media type). A request that fits the schema but breaks
//! a rule JSON Schema cannot state (one field against another, a regex's syntax, a vector
//! against its collection's dimension) is refused with 422 `invalid_value`. Foreign protocols
//! keep their own statuses: the Prometheus API and line protocol answer 400 to queries or
//! lines that do not parse, as Prometheus and InfluxDB do (their grammars are checked by the
//! differential tests against the real implementations, not by the schema).

use serde_json::{Value, json};

use crate::config::Config;

/// The document as served: `api` with every constraint and error shape of `config`'s server.
pub fn finish(api: &utoipa::openapi::OpenApi, config: &Config) -> String {
    let mut doc = serde_json::to_value(api).unwrap_or(Value::Null);
    for missing in constrain_schemas(&mut doc, config) {
        // The test below fails on it: a renamed field must not silently lose its rule.
        tracing::error!("OpenAPI contract: no property {missing}");
    }
    constrain_parameters(&mut doc, config);
    document_common_responses(&mut doc);
    shape_errors(&mut doc);
    shape_event_streams(&mut doc);
    shape_binary_bodies(&mut doc);
    shape_ndjson_answers(&mut doc);
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

/// Database names: lower-case letters, digits, `_`, `-`, starting with a letter or digit, at
/// most 64 (`catalogue::valid_name`).
const DATABASE_NAME: &str = "^[a-z0-9][a-z0-9_-]{0,63}$";
/// Collection names (`sluice_vector::collection::valid_name`).
const COLLECTION_NAME: &str = "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$";
/// Replica ids (`replication::check_replica`).
const REPLICA_ID: &str = "^[A-Za-z0-9._-]{1,64}$";
/// Replica endpoints: `http://host[:port][/path]` (`replication::check_replica`), with at most
/// 256 characters after `http://` (a `maxLength` of 263 beside the pattern).
const REPLICA_ENDPOINT: &str = "^http://[A-Za-z0-9.-]{1,253}(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4}))?(/[A-Za-z0-9._~/-]*)?$";
/// A header value a server can read as text: visible ASCII, inner spaces allowed.
const HEADER_TEXT: &str = "^[!-~]([ -~]*[!-~])?$";
/// The range of a JSON integer the server reads into an `i64`.
const I64: (i64, i64) = (i64::MIN, i64::MAX);

/// Adds the rules to the component schemas; returns the `Schema.property` of each rule that
/// found no such property.
fn constrain_schemas(doc: &mut Value, config: &Config) -> Vec<String> {
    let limits = &config.limits;
    let vector = &config.vector;
    let name = limits.max_name_chars;
    let tag = limits.max_tag_chars;
    let tags = json!({
        "maxProperties": limits.max_tags_per_point,
        "propertyNames": {"minLength": 1, "maxLength": tag, "not": {"const": "__name__"}},
        "additionalProperties": {"type": "string", "maxLength": tag},
    });
    let pk = json!({"minLength": 1, "maxLength": vector.max_pk_chars});
    // Components are f32s: a JSON number beyond f32's range would read as infinity.
    let components = &json!({
        "minItems": 1,
        "maxItems": vector.max_dimension,
        "items": {"type": "number", "format": "float", "minimum": -f32::MAX, "maximum": f32::MAX},
    });
    let rules: &[(&str, &str, Value)] = &[
        (
            "DataPoint",
            "metric",
            json!({"minLength": 1, "maxLength": name}),
        ),
        ("DataPoint", "entity", json!({"maxLength": name})),
        ("DataPoint", "tags", tags.clone()),
        (
            "DataPoint",
            "timestamp_ms",
            json!({"minimum": I64.0, "maximum": I64.1}),
        ),
        (
            "BatchPutRequest",
            "points",
            json!({"minItems": 1, "maxItems": limits.max_points_per_batch}),
        ),
        ("QueryRequest", "metric", json!({"minLength": 1})),
        (
            "QueryRequest",
            "matchers",
            json!({"maxItems": crate::http::routes::ts::MAX_MATCHERS}),
        ),
        (
            "QueryRequest",
            "from_ms",
            json!({"minimum": I64.0, "maximum": I64.1}),
        ),
        (
            "QueryRequest",
            "to_ms",
            json!({"minimum": I64.0, "maximum": I64.1}),
        ),
        (
            "QueryRequest",
            "step_ms",
            json!({"minimum": 1, "maximum": I64.1}),
        ),
        ("ExportRequest", "metric", json!({"minLength": 1})),
        (
            "ExportRequest",
            "matchers",
            json!({"maxItems": crate::http::routes::ts::MAX_MATCHERS}),
        ),
        (
            "ExportRequest",
            "from_ms",
            json!({"minimum": I64.0, "maximum": I64.1}),
        ),
        (
            "ExportRequest",
            "to_ms",
            json!({"minimum": I64.0, "maximum": I64.1}),
        ),
        ("CreateDatabase", "max_series", json!({"minimum": 1})),
        ("CreateDatabase", "retention_rules", json!({"maxItems": 64})),
        ("CreateDatabase", "downsampling", json!({"maxItems": 8})),
        ("RetentionRule", "metric", json!({"minLength": 1})),
        ("TsDeleteRequest", "metric", json!({"minLength": 1})),
        (
            "TsDeleteRequest",
            "matchers",
            json!({"maxItems": crate::http::routes::ts::MAX_MATCHERS}),
        ),
        (
            "TsDeleteRequest",
            "from_ms",
            json!({"minimum": I64.0, "maximum": I64.1}),
        ),
        (
            "TsDeleteRequest",
            "to_ms",
            json!({"minimum": I64.0, "maximum": I64.1}),
        ),
        ("TagMatcher", "op", json!({"enum": ["=", "!=", "=~", "!~"]})),
        ("VectorEntity", "pk", pk.clone()),
        ("VectorEntity", "vector", components.clone()),
        ("RemoveRequest", "pk", pk.clone()),
        (
            "BatchAddRequest",
            "vectors",
            json!({"minItems": 1, "maxItems": vector.max_vectors_per_batch}),
        ),
        ("SearchRequest", "vector", components.clone()),
        (
            "SearchRequest",
            "k",
            json!({"minimum": 1, "maximum": vector.max_k}),
        ),
        (
            "SearchRequest",
            "ef",
            json!({"minimum": 1, "maximum": crate::core::vectors::MAX_EF}),
        ),
        (
            "CreateCollection",
            "name",
            json!({"pattern": COLLECTION_NAME}),
        ),
        (
            "CreateCollection",
            "dimension",
            json!({"minimum": 1, "maximum": vector.max_dimension}),
        ),
        ("HnswSpec", "m", json!({"minimum": 2, "maximum": 128})),
        (
            "HnswSpec",
            "ef_construction",
            json!({"minimum": 1, "maximum": 4096}),
        ),
        (
            "HnswSpec",
            "ef_search",
            json!({"minimum": 1, "maximum": 4096}),
        ),
        ("CreateDatabase", "name", json!({"pattern": DATABASE_NAME})),
        (
            "ReplicationConfigRequest",
            "compression_type",
            json!({"enum": ["zstd", "none", null]}),
        ),
        (
            "ReplicationConfigRequest",
            "level",
            json!({"minimum": 1, "maximum": 22}),
        ),
        ("ReplicaInfo", "replica_id", json!({"pattern": REPLICA_ID})),
        (
            "ReplicaInfo",
            "endpoint",
            json!({"pattern": REPLICA_ENDPOINT, "maxLength": 263}),
        ),
    ];
    let schemas = &mut doc["components"]["schemas"];
    let mut missing = Vec::new();
    for (schema, property, keywords) in rules {
        let Some(target) = schemas
            .get_mut(*schema)
            .and_then(|s| s.get_mut("properties"))
            .and_then(|p| p.get_mut(*property))
            .and_then(Value::as_object_mut)
        else {
            missing.push(format!("{schema}.{property}"));
            continue;
        };
        if let Value::Object(k) = keywords {
            target.extend(k.clone());
        }
    }
    missing
}

/// Every operation of the document, with its path.
fn operations(doc: &mut Value) -> impl Iterator<Item = (&String, &mut Value)> {
    doc.get_mut("paths")
        .and_then(Value::as_object_mut)
        .into_iter()
        .flat_map(|paths| paths.iter_mut())
        .filter_map(|(path, item)| item.as_object_mut().map(|item| (path, item)))
        .flat_map(|(path, item)| item.values_mut().map(move |op| (path, op)))
}

/// The `media` entry of every answer of every operation (`{"schema": …}`).
fn answers<'a>(doc: &'a mut Value, media: &'a str) -> impl Iterator<Item = &'a mut Value> {
    operations(doc)
        .filter_map(|(_, op)| op.get_mut("responses").and_then(Value::as_object_mut))
        .flat_map(|responses| responses.values_mut())
        .filter_map(move |r| r.get_mut("content").and_then(|c| c.get_mut(media)))
}

/// Path, query and header parameters: names, enumerations, ranges.
fn constrain_parameters(doc: &mut Value, config: &Config) {
    for (path, op) in operations(doc) {
        let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) else {
            continue;
        };
        for p in params {
            // A parameter is absent or has a value: never JSON's null.
            if let Some(types) = p
                .get_mut("schema")
                .and_then(|s| s.get_mut("type"))
                .filter(|t| t.is_array())
            {
                let kept: Vec<Value> = types
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|t| *t != "null")
                    .cloned()
                    .collect();
                *types = match <[Value; 1]>::try_from(kept) {
                    Ok([one]) => one,
                    Err(many) => Value::Array(many),
                };
            }
            let (Some(name), Some(place)) = (p["name"].as_str(), p["in"].as_str()) else {
                continue;
            };
            let keywords = match (name, place) {
                ("db", _) | ("bucket", "query") => json!({"pattern": DATABASE_NAME}),
                ("collection", "query") => json!({"pattern": COLLECTION_NAME}),
                ("name", "path") if path.contains("/collections/") => {
                    json!({"pattern": COLLECTION_NAME})
                }
                ("replica_id", "path") => json!({"pattern": REPLICA_ID}),
                ("database", "query") => json!({"pattern": DATABASE_NAME}),
                ("lsn", "query") => json!({"format": "uint64", "maximum": u64::MAX - 1}),
                ("X-Primary-ID", "header") => json!({"pattern": HEADER_TEXT}),
                // Decimal digits, at most 19 (the handler's rule).
                ("X-Primary-Epoch", "header") => {
                    json!({"format": "uint64", "minimum": 0, "maximum": 9_999_999_999_999_999_999u64})
                }
                ("pk", "path") => {
                    json!({"minLength": 1, "maxLength": config.vector.max_pk_chars})
                }
                ("precision", "query") => json!({"enum": ["ns", "us", "ms", "s"]}),
                _ => continue,
            };
            if let (Some(schema), Value::Object(k)) =
                (p.get_mut("schema").and_then(Value::as_object_mut), keywords)
            {
                schema.extend(k);
            }
        }
    }
}

/// Answers any operation can give that its annotation need not repeat: a body's refusals
/// (408 too slow, 413 too large, 415 an unknown `Content-Encoding`) wherever a body is read,
/// and `Retry-After` on 429 (always sent) and 503 (sent when the server knows when to retry).
/// A method a path does not serve is 405 with `Allow` (the document's description says so: a
/// path has no operation to list it under).
fn document_common_responses(doc: &mut Value) {
    let error = |description: &str| {
        json!({
            "description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
        })
    };
    let retry_after = |required: bool| {
        json!({"Retry-After": {
            "description": "Seconds to wait before retrying",
            "required": required,
            "schema": {"type": "integer", "minimum": 0},
        }})
    };
    for (_, op) in operations(doc) {
        let has_body = op.get("requestBody").is_some();
        // Whatever may append to a WAL or replace a file: writes, and the admin operations
        // that create or delete (collections, databases, replicas).
        let writes = op["x-sluice-authz"]["action"] == "write"
            || (op["x-sluice-authz"]["action"] == "admin" && has_body)
            || op["operationId"]
                .as_str()
                .is_some_and(|id| id.contains("delete"));
        let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
            continue;
        };
        if has_body {
            for (status, description) in [
                ("408", "`body_timeout`: the body was sent too slowly"),
                (
                    "413",
                    "`payload_too_large`: the body (or what it expands to) is over the limit",
                ),
                (
                    "415",
                    "`unsupported_media_type`: an unknown `Content-Encoding`",
                ),
            ] {
                responses
                    .entry(status)
                    .or_insert_with(|| error(description));
            }
        }
        if writes {
            responses.entry("507").or_insert_with(|| {
                error("`insufficient_storage`: the disk is full; writes resume by themselves once space returns, reads are served")
            });
        }
        for (status, required) in [("429", true), ("503", false), ("507", true)] {
            if let Some(r) = responses.get_mut(status).and_then(Value::as_object_mut) {
                let headers = r.entry("headers").or_insert_with(|| json!({}));
                if let (Some(h), Value::Object(add)) =
                    (headers.as_object_mut(), retry_after(required))
                {
                    for (k, v) in add {
                        h.entry(k).or_insert(v);
                    }
                }
            }
        }
    }
}

/// Server-sent event streams: each event as an object of its fields (how SSE clients and
/// schema checkers read a stream), not the stream as one string.
fn shape_event_streams(doc: &mut Value) {
    let event = json!({
        "type": "object",
        "required": ["data"],
        "properties": {
            "event": {"type": "string"},
            "data": {"type": "string"},
            "id": {"type": "string"},
            "retry": {"type": "integer"},
        },
    });
    for stream in answers(doc, "text/event-stream") {
        stream["schema"] = event.clone();
    }
}

/// NDJSON answers: the stream read as the array of its lines, each line the schema the route
/// documents (OpenAPI 3.1 has no per-item schema for sequential media types).
fn shape_ndjson_answers(doc: &mut Value) {
    for stream in answers(doc, "application/x-ndjson") {
        if let Some(line) = stream.get("schema").cloned() {
            stream["schema"] = json!({"type": "array", "items": line});
        }
    }
}

/// Protobuf bodies are bytes (`format: binary`), not the array of integers a `Vec<u8>`
/// documents.
fn shape_binary_bodies(doc: &mut Value) {
    for (_, op) in operations(doc) {
        if let Some(body) = op
            .get_mut("requestBody")
            .and_then(|b| b.get_mut("content"))
            .and_then(|c| c.get_mut("application/x-protobuf"))
        {
            body["schema"] = json!({"type": "string", "format": "binary"});
        }
    }
}

/// Error answers: `success: false` on seed routes; Prometheus's shape or ours on the
/// Prometheus API.
fn shape_errors(doc: &mut Value) {
    let schemas = &mut doc["components"]["schemas"];
    schemas["SeedErrorBody"] = json!({
        "description": "The error answer of a seed route: ErrorBody with `success: false`.",
        "allOf": [
            {"$ref": "#/components/schemas/ErrorBody"},
            {"type": "object", "required": ["success"], "properties": {"success": {"const": false}}},
        ],
    });
    schemas["PromErrorBody"] = json!({
        "description": "An error of the Prometheus API, in Prometheus's shape, plus error_id.",
        "type": "object",
        "required": ["status", "errorType", "error"],
        "properties": {
            "status": {"const": "error"},
            "errorType": {"type": "string", "enum": ["bad_data", "execution", "timeout", "canceled", "not_found", "unavailable", "internal"]},
            "error": {"type": "string"},
            "error_id": {"type": "string"},
        },
    });
    let success_schemas: Vec<String> = schemas
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, s)| s["properties"].get("success").is_some())
        .map(|(name, _)| format!("#/components/schemas/{name}"))
        .collect();
    for (_, op) in operations(doc) {
        let prometheus = op["tags"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t == "prometheus"));
        let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
            continue;
        };
        let seed = responses.iter().any(|(status, r)| {
            status.starts_with('2')
                && r["content"]["application/json"]["schema"]["$ref"]
                    .as_str()
                    .is_some_and(|s| success_schemas.iter().any(|x| x == s))
        });
        for (status, r) in responses.iter_mut() {
            if status.starts_with(['1', '2', '3']) {
                continue;
            }
            // `get_mut`, not indexing: indexing a `Value` mutably inserts what is missing.
            let Some(schema) = r
                .get_mut("content")
                .and_then(|c| c.get_mut("application/json"))
                .and_then(|c| c.get_mut("schema"))
            else {
                continue;
            };
            if prometheus {
                *schema = json!({"anyOf": [
                    {"$ref": "#/components/schemas/PromErrorBody"},
                    {"$ref": "#/components/schemas/ErrorBody"},
                ]});
            } else if seed && schema["$ref"] == "#/components/schemas/ErrorBody" {
                *schema = json!({"$ref": "#/components/schemas/SeedErrorBody"});
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The document of the HTTP routes as a dev-mode server with `config` serves it.
    fn document(config: &Config) -> Value {
        let (_, mut api) = crate::http::api_router().split_for_parts();
        let (table, _) = crate::auth::authz::RouteTable::from_openapi(&api);
        crate::http::document(&mut api, &table, false, true);
        serde_json::from_str(&finish(&api, config)).unwrap()
    }

    #[test]
    fn every_rule_lands_on_a_property() {
        let (_, api) = crate::http::api_router().split_for_parts();
        let mut doc = serde_json::to_value(&api).unwrap();
        assert_eq!(
            constrain_schemas(&mut doc, &Config::default()),
            Vec::<String>::new()
        );
    }

    #[test]
    fn the_served_document_states_the_configured_limits() {
        let mut config = Config::default();
        config.limits.max_name_chars = 17;
        config.vector.max_k = 33;
        let doc = document(&config);
        let schemas = &doc["components"]["schemas"];
        assert_eq!(
            schemas["DataPoint"]["properties"]["metric"]["maxLength"],
            17
        );
        assert_eq!(schemas["DataPoint"]["properties"]["metric"]["minLength"], 1);
        assert_eq!(schemas["SearchRequest"]["properties"]["k"]["maximum"], 33);
        assert_eq!(
            schemas["DataPoint"]["properties"]["tags"]["propertyNames"]["not"]["const"],
            "__name__"
        );
    }

    #[test]
    fn error_answers_have_the_shape_the_route_gives() {
        let doc = document(&Config::default());
        let response = |path: &str, method: &str, status: &str| {
            doc["paths"][path][method]["responses"][status].clone()
        };
        let schema = |r: &Value| r["content"]["application/json"]["schema"].clone();
        // A seed route: success: false on its errors.
        assert_eq!(
            schema(&response("/ts/put/buffered", "post", "400"))["$ref"],
            "#/components/schemas/SeedErrorBody"
        );
        // Not a seed route.
        assert_eq!(
            schema(&response("/v1/collections", "post", "400"))["$ref"],
            "#/components/schemas/ErrorBody"
        );
        // The Prometheus API: its shape, or ours for refusals before the handler.
        assert_eq!(
            schema(&response("/api/v1/query", "get", "400"))["anyOf"][0]["$ref"],
            "#/components/schemas/PromErrorBody"
        );
        // Retry-After on every 429, and a body's refusals wherever a body is read.
        let r429 = response("/ts/put", "post", "429");
        assert_eq!(r429["headers"]["Retry-After"]["required"], true);
        for status in ["408", "413", "415"] {
            assert!(
                response("/vectors/search", "post", status).is_object(),
                "{status}"
            );
        }
        assert!(response("/healthz", "get", "415").is_null());
        // Parameters are never null, and names are patterns.
        let params = doc["paths"]["/api/v1/replication/snapshot"]["post"]["parameters"]
            .as_array()
            .unwrap()
            .clone();
        let epoch = params
            .iter()
            .find(|p| p["name"] == "X-Primary-Epoch")
            .unwrap();
        assert_eq!(epoch["schema"]["type"], "integer");
        let database = params.iter().find(|p| p["name"] == "database").unwrap();
        assert_eq!(database["schema"]["pattern"], DATABASE_NAME);
    }
}
