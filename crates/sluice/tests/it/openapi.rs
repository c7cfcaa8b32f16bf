//! The OpenAPI document is the contract.
//!
//! - Served `/openapi.json` equals the committed `openapi/openapi.json`; regenerate it with
//!   `cargo run -p sluice -- openapi > openapi/openapi.json` when the API changes on purpose.
//! - Every documented operation is served: each is called and must not answer 404/405
//!   (routes and document come from the same `utoipa-axum` definitions, so an undocumented
//!   route cannot be registered; this test catches the other direction and any drift).

use crate::support::TestServer;

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../openapi/openapi.json");

#[tokio::test]
async fn served_document_equals_the_committed_one() {
    let s = TestServer::start().await;
    let (status, served) = s.get_json("/openapi.json").await;
    assert_eq!(status, 200);
    let committed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(GOLDEN).expect("openapi/openapi.json is committed"),
    )
    .unwrap();
    assert!(
        served == committed,
        "openapi/openapi.json is stale: run `cargo run -p sluice -- openapi > openapi/openapi.json`"
    );
    assert_eq!(served["openapi"], "3.1.0");
}

#[tokio::test]
async fn every_documented_operation_is_served() {
    let s = TestServer::start().await;
    let (_, api) = s.get_json("/openapi.json").await;
    let paths = api["paths"].as_object().unwrap();
    assert!(paths.len() >= 7, "suspiciously few paths: {paths:?}");
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{method} {path} documents no response"
            );
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let mut req = s.client.request(m, s.url(path));
            if op.get("requestBody").is_some() {
                req = req.body("{}");
            }
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let body: serde_json::Value = r.json().await.unwrap_or_default();
            // A 404 from a served route names what is missing (`collection_not_found`, …);
            // `not_found` is the answer for a route that does not exist.
            assert!(
                status != 405 && !(status == 404 && body["code"] == "not_found"),
                "{method} {path} documented but answered {status}: {body}"
            );
            assert!(status < 500, "{method} {path} answered {status}");
            let documented = op["responses"].as_object().unwrap();
            assert!(
                documented.contains_key(&status.to_string()),
                "{method} {path} answered {status}, which is not documented"
            );
        }
    }
}

/// What a client generator relies on: every `$ref` resolves, every `{parameter}` of a path is
/// declared in that path's operations, and no two operations share an `operationId`.
#[test]
fn the_document_is_a_contract_a_generator_can_use() {
    let doc: serde_json::Value =
        serde_json::from_str(&sluice_server::router::openapi_json()).unwrap();
    fn refs<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a str>) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(r) = m.get("$ref").and_then(|r| r.as_str()) {
                    out.push(r);
                }
                m.values().for_each(|v| refs(v, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in all {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected $ref {r}"));
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "$ref {r} does not resolve"
        );
    }
    let mut ids = std::collections::HashMap::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let templated: Vec<&str> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        for (method, op) in item.as_object().unwrap() {
            let declared: Vec<&str> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "path")
                .filter_map(|p| p["name"].as_str())
                .collect();
            for t in &templated {
                assert!(
                    declared.contains(t),
                    "{method} {path} does not declare its path parameter {t}"
                );
            }
            let id = op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path}: no operationId"));
            if let Some(other) = ids.insert(id.to_string(), format!("{method} {path}")) {
                panic!("operationId {id} names both {other} and {method} {path}");
            }
        }
    }
}
