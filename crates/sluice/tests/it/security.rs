//! Security and tenancy on a real server: bearer tokens, JWT, roles, Cedar policies,
//! admission control, databases, and the transport (TLS 1.3, compression).

use std::time::Duration;

use crate::support::{Options, TestServer, now_ms};
use serde_json::json;

const ADMIN: &str = "admin-token-0123456789";
const READER: &str = "reader-token-0123456789";
const WRITER: &str = "writer-token-0123456789";
const DB1_WRITER: &str = "db1-writer-token-0123456789";
const GUEST: &str = "guest-token-0123456789";
const DEFAULT_WRITER: &str = "default-writer-token-0123456789";
const HS_SECRET: &str = "hs256-secret-that-is-long-enough-0123456789";
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/fixtures");

fn tokens_json() -> String {
    json!({
        "ops": ADMIN,
        "ro": {"token": READER, "roles": {"*": "reader"}},
        "rw": {"token": WRITER, "roles": {"*": "writer"}},
        "db1w": {"token": DB1_WRITER, "roles": {"db1": "writer"}},
        "guest": {"token": GUEST, "roles": {}},
        "defw": {"token": DEFAULT_WRITER, "roles": {"default": "writer"}},
    })
    .to_string()
}

fn secured() -> Options {
    Options::default().env("SLUICE_BEARER_TOKENS_JSON", &tokens_json())
}

async fn call(
    s: &TestServer,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = s.client.request(m, s.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

/// `GET path` with `token`, the whole response (for status and headers).
async fn get_as(s: &TestServer, path: &str, token: &str) -> reqwest::Response {
    s.client
        .get(s.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

fn point(ts: i64) -> serde_json::Value {
    json!({"metric": "cpu", "entity": "e1", "timestamp_ms": ts, "value": 1.5, "tags": {}})
}

#[tokio::test]
async fn every_protected_operation_needs_credentials() {
    let s = TestServer::start_with(secured()).await;
    let (status, api) = call(&s, "GET", "/openapi.json", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(
        api["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    // `/v1/ws` authenticates per frame (tests/wire.rs).
    let public = [
        "/healthz",
        "/readyz",
        "/version",
        "/metrics",
        "/openapi.json",
        "/v1/ws",
    ];
    let mut protected = 0;
    for (path, item) in api["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let m = method.to_uppercase();
            let body = op.get("requestBody").map(|_| json!({}));
            let (none, err) = call(&s, &m, path, None, body.clone()).await;
            let (wrong, _) = call(&s, &m, path, Some("wrong-token-0123456789"), body.clone()).await;
            let (jwt_garbage, _) = call(&s, &m, path, Some("a.b.c"), body.clone()).await;
            if public.contains(&path.as_str()) {
                assert_ne!(none, 401, "{m} {path} is public");
                assert!(
                    op.get("security").is_none(),
                    "{m} {path} documents security"
                );
                continue;
            }
            protected += 1;
            assert_eq!(none, 401, "{m} {path} without a token: {err}");
            assert_eq!(err["code"], "unauthenticated");
            assert_eq!(wrong, 401, "{m} {path} with a wrong token");
            assert_eq!(jwt_garbage, 401, "{m} {path} with a garbage JWT");
            assert!(
                op["responses"].get("401").is_some(),
                "{m} {path} documents no 401"
            );
            assert!(
                op["security"].is_array(),
                "{m} {path} documents no security"
            );
        }
    }
    assert!(protected > 40, "only {protected} protected operations");
    // The scheme is matched case-insensitively.
    let r = s
        .client
        .get(s.url("/ts/buffer/stats"))
        .header("Authorization", format!("bEaReR {READER}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = s
        .client
        .get(s.url("/ts/buffer/stats"))
        .header("Authorization", format!("Basic {READER}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("www-authenticate").is_some());
}

#[tokio::test]
async fn dev_mode_document_has_no_security_scheme() {
    let s = TestServer::start().await;
    let (_, api) = call(&s, "GET", "/openapi.json", None, None).await;
    assert!(api["components"].get("securitySchemes").is_none());
}

#[tokio::test]
async fn role_matrix() {
    let s = TestServer::start_with(secured()).await;
    let (st, _) = call(
        &s,
        "POST",
        "/v1/databases",
        Some(ADMIN),
        Some(json!({"name": "db1"})),
    )
    .await;
    assert_eq!(st, 201);
    let t = now_ms();
    // (token, method, path, body, expected status)
    let cases: Vec<(&str, &str, &str, Option<serde_json::Value>, u16)> = vec![
        (READER, "GET", "/ts/buffer/stats", None, 200),
        (
            READER,
            "POST",
            "/ts/query",
            Some(json!({"metric": "cpu", "from_ms": 0, "to_ms": t + 1})),
            200,
        ),
        (READER, "POST", "/ts/put", Some(point(t)), 403),
        (READER, "POST", "/ts/buffer/flush", None, 403),
        (
            READER,
            "POST",
            "/v1/databases",
            Some(json!({"name": "nope"})),
            403,
        ),
        (WRITER, "POST", "/ts/put", Some(point(t)), 200),
        (WRITER, "GET", "/vectors/buffer/stats", None, 200),
        (WRITER, "POST", "/ts/buffer/flush", None, 403),
        (
            WRITER,
            "POST",
            "/ts/delete",
            Some(json!({"metric": "cpu", "from_ms": 0, "to_ms": 1})),
            403,
        ),
        (
            ADMIN,
            "POST",
            "/ts/delete",
            Some(json!({"metric": "cpu", "from_ms": 0, "to_ms": 1})),
            200,
        ),
        (
            WRITER,
            "POST",
            "/v1/collections",
            Some(json!({"name": "c", "dimension": 2})),
            403,
        ),
        (WRITER, "DELETE", "/v1/databases/db1", None, 403),
        (ADMIN, "POST", "/ts/buffer/flush", None, 200),
        (
            ADMIN,
            "POST",
            "/v1/collections",
            Some(json!({"name": "c", "dimension": 2})),
            201,
        ),
        (
            DB1_WRITER,
            "POST",
            "/v1/databases/db1/ts/put",
            Some(point(t)),
            200,
        ),
        (
            DB1_WRITER,
            "POST",
            "/v1/databases/db1/ts/query",
            Some(json!({"metric": "cpu", "from_ms": 0, "to_ms": t + 1})),
            200,
        ),
        (DB1_WRITER, "POST", "/ts/put", Some(point(t)), 403),
        (DB1_WRITER, "GET", "/ts/buffer/stats", None, 403),
        (
            DB1_WRITER,
            "POST",
            "/v1/databases/db1/ts/buffer/flush",
            None,
            403,
        ),
        (GUEST, "GET", "/ts/buffer/stats", None, 403),
        (GUEST, "GET", "/v1/databases", None, 403),
    ];
    for (token, method, path, body, want) in cases {
        let (got, resp) = call(&s, method, path, Some(token), body).await;
        assert_eq!(got, want, "{token} {method} {path}: {resp}");
        if want == 403 {
            assert_eq!(resp["code"], "forbidden");
        }
    }
    // Line protocol's database parameter is authorized like a path.
    let lp = |db: &str| format!("/write?db={db}&precision=ms");
    for (token, db, want) in [
        (DB1_WRITER, "db1", 204),
        (DB1_WRITER, "default", 403),
        (DEFAULT_WRITER, "db1", 403),
        (DEFAULT_WRITER, "default", 204),
    ] {
        let r = s
            .client
            .post(s.url(&lp(db)))
            .bearer_auth(token)
            .body(format!("m v=1 {t}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), want, "{db}");
    }
    // The database is decided once, as the handlers read it: an encoded parameter name is the
    // same parameter, and a path segment that is not UTF-8 is refused rather than defaulted.
    for path in [
        "/write?%64b=db1&precision=ms",
        "/api/v2/write?b%75cket=db1&precision=ms",
    ] {
        let r = s
            .client
            .post(s.url(path))
            .bearer_auth(DEFAULT_WRITER)
            .body(format!("m v=1 {t}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{path}");
    }
    let r = s
        .client
        .post(s.url("/write?db=default&%64b=db1"))
        .bearer_auth(WRITER)
        .body(format!("m v=1 {t}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "a database given twice");
    let (st, body) = call(
        &s,
        "POST",
        "/v1/databases/%FF/ts/query",
        Some(WRITER),
        Some(json!({"metric": "cpu", "from_ms": 0, "to_ms": 1})),
    )
    .await;
    assert_eq!((st, body["code"].as_str()), (400, Some("invalid_database")));
    // Listing shows only the databases the caller has a role on.
    let (_, list) = call(&s, "GET", "/v1/databases", Some(DB1_WRITER), None).await;
    let names: Vec<_> = list["databases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["db1"]);
    let (_, list) = call(&s, "GET", "/v1/databases", Some(READER), None).await;
    assert_eq!(list["databases"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn cedar_policies_at_server_and_database_level() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("server.cedar");
    std::fs::write(
        &policy,
        r#"// Writers may not use the direct put on default; buffered writes stay allowed.
forbid(principal == Actor::"rw", action == Action::"write", resource == Database::"default")
  when { context.route == "/ts/put" };
"#,
    )
    .unwrap();
    let s = TestServer::start_with(
        secured().env("SLUICE_AUTH_CEDAR_POLICY_FILE", policy.to_str().unwrap()),
    )
    .await;
    let t = now_ms();
    let (st, _) = call(&s, "POST", "/ts/put", Some(WRITER), Some(point(t))).await;
    assert_eq!(st, 403, "server-level forbid");
    let (st, _) = call(
        &s,
        "POST",
        "/ts/put/buffered",
        Some(WRITER),
        Some(json!({"metric": "cpu", "entity": "e", "timestamp_ms": t, "value": 1.0})),
    )
    .await;
    assert_eq!(st, 200, "the forbid is narrow");
    // A database whose policy lets the guest (no roles) read it.
    let (st, body) = call(
        &s,
        "POST",
        "/v1/databases",
        Some(ADMIN),
        Some(json!({"name": "shared", "policy":
            "permit(principal == Actor::\"guest\", action == Action::\"read\", resource == Database::\"shared\");"})),
    )
    .await;
    assert_eq!(st, 201, "{body}");
    assert_eq!(body["has_policy"], true);
    let (st, _) = call(
        &s,
        "GET",
        "/v1/databases/shared/ts/buffer/stats",
        Some(GUEST),
        None,
    )
    .await;
    assert_eq!(st, 200, "database-level permit");
    let (st, _) = call(
        &s,
        "POST",
        "/v1/databases/shared/ts/put",
        Some(GUEST),
        Some(point(t)),
    )
    .await;
    assert_eq!(st, 403, "read only");
    let (st, _) = call(&s, "GET", "/ts/buffer/stats", Some(GUEST), None).await;
    assert_eq!(st, 403, "only that database");
    // A bad policy is refused at creation, nothing created.
    let (st, body) = call(
        &s,
        "POST",
        "/v1/databases",
        Some(ADMIN),
        Some(json!({"name": "bad", "policy": "permit(principal"})),
    )
    .await;
    assert_eq!(st, 422, "{body}");
    assert_eq!(body["code"], "invalid_value", "{body}");
    let (st, _) = call(
        &s,
        "GET",
        "/v1/databases/bad/ts/buffer/stats",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(st, 404);
}

fn jwt(
    alg: jsonwebtoken::Algorithm,
    key: &jsonwebtoken::EncodingKey,
    claims: serde_json::Value,
) -> String {
    jsonwebtoken::encode(&jsonwebtoken::Header::new(alg), &claims, key).unwrap()
}

#[tokio::test]
async fn jwt_tokens() {
    use jsonwebtoken::{Algorithm, EncodingKey};
    let es_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let es_pub = dir.path().join("es256.pem");
    std::fs::write(&es_pub, es_key.public_key_pem()).unwrap();
    let rs_pub = format!("{FIXTURES}/jwt-rs256-public.pem");
    let rs_priv = std::fs::read(format!("{FIXTURES}/jwt-rs256-private.pem")).unwrap();
    let s = TestServer::start_with(
        secured()
            .env("SLUICE_AUTH_JWT_HS256_SECRET", HS_SECRET)
            .env("SLUICE_AUTH_JWT_RS256_PUBLIC_KEY_FILE", &rs_pub)
            .env(
                "SLUICE_AUTH_JWT_ES256_PUBLIC_KEY_FILE",
                es_pub.to_str().unwrap(),
            )
            .env("SLUICE_AUTH_JWT_AUDIENCE", "sluice")
            .env("SLUICE_AUTH_JWT_ISSUER", "https://issuer.test")
            .env("SLUICE_AUTH_JWT_LEEWAY_SEC", "0"),
    )
    .await;
    let now = now_ms() / 1000;
    let good = json!({"sub": "alice", "aud": "sluice", "iss": "https://issuer.test",
        "exp": now + 600, "nbf": now - 10, "roles": {"*": "reader"}});
    let hs = EncodingKey::from_secret(HS_SECRET.as_bytes());
    let rs = EncodingKey::from_rsa_pem(&rs_priv).unwrap();
    let es = EncodingKey::from_ec_pem(es_key.serialize_pem().as_bytes()).unwrap();
    let read = |token: String| {
        let s = &s;
        async move {
            call(s, "GET", "/ts/buffer/stats", Some(&token), None)
                .await
                .0
        }
    };
    assert_eq!(
        read(jwt(Algorithm::HS256, &hs, good.clone())).await,
        200,
        "HS256"
    );
    assert_eq!(
        read(jwt(Algorithm::RS256, &rs, good.clone())).await,
        200,
        "RS256"
    );
    assert_eq!(
        read(jwt(Algorithm::ES256, &es, good.clone())).await,
        200,
        "ES256"
    );
    // Roles come from the claims: a reader may not write.
    let token = jwt(Algorithm::HS256, &hs, good.clone());
    let (st, _) = call(&s, "POST", "/ts/put", Some(&token), Some(point(now * 1000))).await;
    assert_eq!(st, 403);

    let with = |k: &str, v: serde_json::Value| {
        let mut c = good.clone();
        c[k] = v;
        c
    };
    let refused = [
        (
            "expired",
            jwt(Algorithm::HS256, &hs, with("exp", json!(now - 60))),
        ),
        (
            "not yet valid",
            jwt(Algorithm::HS256, &hs, with("nbf", json!(now + 600))),
        ),
        (
            "wrong audience",
            jwt(Algorithm::HS256, &hs, with("aud", json!("other"))),
        ),
        (
            "wrong issuer",
            jwt(
                Algorithm::HS256,
                &hs,
                with("iss", json!("https://evil.test")),
            ),
        ),
        ("no exp", {
            let mut c = good.clone();
            c.as_object_mut().unwrap().remove("exp");
            jwt(Algorithm::HS256, &hs, c)
        }),
        (
            "wrong secret",
            jwt(
                Algorithm::HS256,
                &EncodingKey::from_secret(b"another-secret-that-is-long-enough-012345"),
                good.clone(),
            ),
        ),
        // Algorithm confusion: an HS256 token whose HMAC key is the RSA public key.
        (
            "HS/RS confusion",
            jwt(
                Algorithm::HS256,
                &EncodingKey::from_secret(&std::fs::read(&rs_pub).unwrap()),
                good.clone(),
            ),
        ),
        ("alg none", {
            use base64::Engine;
            let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            format!(
                "{}.{}.",
                b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
                b64.encode(good.to_string())
            )
        }),
        ("tampered", {
            let t = jwt(Algorithm::RS256, &rs, good.clone());
            let mut parts: Vec<&str> = t.split('.').collect();
            use base64::Engine;
            let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            let admin = b64.encode(with("roles", json!({"*": "admin"})).to_string());
            parts[1] = &admin;
            parts.join(".")
        }),
    ];
    for (what, token) in refused {
        assert_eq!(read(token).await, 401, "{what}");
    }
}

#[tokio::test]
async fn databases_lifecycle_isolation_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        "# operator's notes stay\n[http]\nmax_json_depth = 32\n",
    )
    .unwrap();
    let opts = Options {
        args: vec!["--config".into(), config.to_str().unwrap().into()],
        ..secured()
    };
    let s = TestServer::start_in(&data, opts.clone()).await;
    // 8 concurrent creates all succeed and all land in the file.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (client, url) = (s.client.clone(), s.url("/v1/databases"));
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(ADMIN)
                .json(&json!({"name": format!("db{i}")}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 201);
    }
    let text = std::fs::read_to_string(&config).unwrap();
    for i in 0..8 {
        assert!(text.contains(&format!("[databases.db{i}]")), "{text}");
    }
    assert!(text.contains("# operator's notes stay"));
    // Duplicate and bad names.
    let (st, body) = call(
        &s,
        "POST",
        "/v1/databases",
        Some(ADMIN),
        Some(json!({"name": "db3"})),
    )
    .await;
    assert_eq!((st, body["code"].as_str()), (409, Some("database_exists")));
    let (st, _) = call(
        &s,
        "POST",
        "/v1/databases",
        Some(ADMIN),
        Some(json!({"name": "default"})),
    )
    .await;
    assert_eq!(st, 409);
    let (st, body) = call(
        &s,
        "POST",
        "/v1/databases",
        Some(ADMIN),
        Some(json!({"name": "Bad/Name"})),
    )
    .await;
    assert_eq!(st, 400, "{body}");
    let (st, _) = call(&s, "DELETE", "/v1/databases/default", Some(ADMIN), None).await;
    assert_eq!(st, 409);
    let (st, _) = call(&s, "DELETE", "/v1/databases/nope", Some(ADMIN), None).await;
    assert_eq!(st, 404);
    // Isolation: a point in db1 is invisible from db2 and default.
    let t = now_ms();
    let (st, _) = call(
        &s,
        "POST",
        "/v1/databases/db1/ts/put",
        Some(ADMIN),
        Some(point(t)),
    )
    .await;
    assert_eq!(st, 200);
    let v = json!({"pk": "a", "vector": [1.0, 0.0]});
    let (st, _) = call(
        &s,
        "POST",
        "/v1/databases/db1/vectors/add",
        Some(ADMIN),
        Some(v),
    )
    .await;
    assert_eq!(st, 200);
    let q = json!({"metric": "cpu", "from_ms": 0, "to_ms": t + 1});
    let count = |body: &serde_json::Value| body["series"].as_array().map_or(0, Vec::len);
    let (_, r) = call(
        &s,
        "POST",
        "/v1/databases/db1/ts/query",
        Some(ADMIN),
        Some(q.clone()),
    )
    .await;
    assert_eq!(count(&r), 1);
    for other in ["/v1/databases/db2/ts/query", "/ts/query"] {
        let (_, r) = call(&s, "POST", other, Some(ADMIN), Some(q.clone())).await;
        assert_eq!(count(&r), 0, "{other}");
    }
    let (st, _) = call(&s, "GET", "/v1/databases/db2/vectors/a", Some(ADMIN), None).await;
    assert_eq!(st, 404);
    let (st, _) = call(&s, "GET", "/v1/databases/db1/vectors/a", Some(ADMIN), None).await;
    assert_eq!(st, 200);
    // Delete one.
    let (st, _) = call(&s, "DELETE", "/v1/databases/db7", Some(ADMIN), None).await;
    assert_eq!(st, 200);
    let (st, body) = call(
        &s,
        "GET",
        "/v1/databases/db7/ts/buffer/stats",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(
        (st, body["code"].as_str()),
        (404, Some("database_not_found"))
    );
    assert!(
        !std::fs::read_to_string(&config)
            .unwrap()
            .contains("[databases.db7]")
    );
    assert!(!data.join("databases/db7").exists());

    // Everything survives a restart.
    assert!(s.stop().success());
    let s = TestServer::start_in(&data, opts.clone()).await;
    let (_, list) = call(&s, "GET", "/v1/databases", Some(ADMIN), None).await;
    let mut names: Vec<_> = list["databases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["db0", "db1", "db2", "db3", "db4", "db5", "db6", "default"]
    );
    let (_, r) = call(
        &s,
        "POST",
        "/v1/databases/db1/ts/query",
        Some(ADMIN),
        Some(q.clone()),
    )
    .await;
    assert_eq!(count(&r), 1);
    let (st, _) = call(&s, "GET", "/v1/databases/db1/vectors/a", Some(ADMIN), None).await;
    assert_eq!(st, 200);
    // Recreating a deleted name starts empty.
    let (st, _) = call(
        &s,
        "POST",
        "/v1/databases",
        Some(ADMIN),
        Some(json!({"name": "db7"})),
    )
    .await;
    assert_eq!(st, 201);

    // A hand-edited file: 503, nothing written.
    let edited = format!(
        "{}\n# edited by hand\n",
        std::fs::read_to_string(&config).unwrap()
    );
    std::fs::write(&config, &edited).unwrap();
    let (st, body) = call(
        &s,
        "POST",
        "/v1/databases",
        Some(ADMIN),
        Some(json!({"name": "late"})),
    )
    .await;
    assert_eq!(
        (st, body["code"].as_str()),
        (503, Some("config_drift")),
        "{body}"
    );
    let (st, _) = call(&s, "DELETE", "/v1/databases/db0", Some(ADMIN), None).await;
    assert_eq!(st, 503);
    assert_eq!(std::fs::read_to_string(&config).unwrap(), edited);
    let (st, _) = call(
        &s,
        "GET",
        "/v1/databases/db0/ts/buffer/stats",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(st, 200, "a refused delete deletes nothing");
    let (st, _) = call(
        &s,
        "GET",
        "/v1/databases/late/ts/buffer/stats",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(st, 404);
}

#[tokio::test]
async fn databases_without_a_config_file_persist_in_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = TestServer::start_in(&data, Options::default()).await;
    let (st, _) = call(
        &s,
        "POST",
        "/v1/databases",
        None,
        Some(json!({"name": "solo", "retention_ms": 86400000})),
    )
    .await;
    assert_eq!(st, 201);
    assert!(s.stop().success());
    assert!(
        std::fs::read_to_string(data.join("databases.toml"))
            .unwrap()
            .contains("[databases.solo]")
    );
    let s = TestServer::start_in(&data, Options::default()).await;
    let (_, list) = call(&s, "GET", "/v1/databases", None, None).await;
    let solo = list["databases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "solo")
        .cloned()
        .expect("solo survives");
    assert_eq!(solo["retention_ms"], 86400000);
    // Each database has its own metrics under a `db` label, each family once.
    let text = s.metrics_text().await;
    assert!(text.contains("db=\"solo\""));
    assert_eq!(
        text.matches("# TYPE ts_auto_buffer_current_size ").count(),
        1,
        "{text}"
    );
}

#[tokio::test]
async fn admission_budgets_are_per_actor() {
    let s = TestServer::start_with(
        secured()
            .env("SLUICE_ADMISSION_MAX_IN_FLIGHT_PER_ACTOR", "2")
            .env("SLUICE_ADMISSION_MAX_IN_FLIGHT_BYTES_PER_ACTOR", "65536"),
    )
    .await;
    // Two requests of `rw` held in flight by bodies that never finish.
    let held = [
        hold_in_flight(&s, WRITER).await,
        hold_in_flight(&s, WRITER).await,
    ];
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = get_as(&s, "/ts/buffer/stats", WRITER).await;
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], "too_many_in_flight");
    // Another actor is unaffected.
    let r = get_as(&s, "/ts/buffer/stats", READER).await;
    assert_eq!(r.status(), 200);
    for h in [
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
    ] {
        assert!(r.headers().get(h).is_some(), "{h} missing");
    }
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A chunked body that declares nothing is counted by what is read: 100 KiB > 64 KiB.
    let big = format!(
        "{{\"points\": [{}]}}",
        vec![point(1).to_string(); 1200].join(",")
    );
    assert!(big.len() > 65536);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = big
        .as_bytes()
        .chunks(8192)
        .map(|c| Ok(c.to_vec()))
        .collect();
    let r = s
        .client
        .post(s.url("/ts/put/batch"))
        .bearer_auth(WRITER)
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("retry-after").is_some());
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], "too_many_bytes_in_flight");
    // The same body declared up front is refused before it is read (only the head is sent):
    // larger than the whole budget, it could never be admitted, so 413 rather than 429.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut c = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
        let head = format!(
            "POST /ts/put/batch HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {WRITER}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            big.len()
        );
        c.write_all(head.as_bytes()).await.unwrap();
        let mut answer = vec![0u8; 4096];
        let n = c.read(&mut answer).await.unwrap();
        let answer = String::from_utf8_lossy(&answer[..n]);
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    }
    // The budget was released: a small write passes (on a fresh connection: the server closes
    // connections whose refused body it did not read).
    let r = reqwest::Client::new()
        .post(s.url("/ts/put"))
        .bearer_auth(WRITER)
        .json(&point(now_ms()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = s.metrics_text().await;
    assert!(text.contains("admission_rejected_requests_total{reason=\"too_many_in_flight\"}"));
}

#[tokio::test]
async fn rate_limit_per_actor() {
    let s = TestServer::start_with(
        secured()
            .env("SLUICE_ADMISSION_RATE_LIMIT_PER_SEC", "1")
            .env("SLUICE_ADMISSION_RATE_LIMIT_BURST", "5"),
    )
    .await;
    let mut statuses = Vec::new();
    let mut last = None;
    for _ in 0..6 {
        let r = get_as(&s, "/ts/buffer/stats", READER).await;
        statuses.push(r.status().as_u16());
        last = Some(r);
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429]);
    let r = last.unwrap();
    assert_eq!(r.headers()["x-ratelimit-remaining"], "0");
    assert_eq!(r.headers()["x-ratelimit-limit"], "5");
    assert!(r.headers().get("retry-after").is_some());
    // Others keep their own bucket.
    let (st, _) = call(&s, "GET", "/ts/buffer/stats", Some(WRITER), None).await;
    assert_eq!(st, 200);
}

/// Starts a request whose body never finishes (it stays in flight until the returned sender is
/// dropped).
async fn hold_in_flight(
    s: &TestServer,
    token: &str,
) -> (
    tokio::sync::mpsc::Sender<Result<Vec<u8>, std::io::Error>>,
    tokio::task::JoinHandle<reqwest::Result<reqwest::Response>>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    tx.send(Ok(b"{\"points\": [".to_vec())).await.unwrap();
    let req = reqwest::Client::new()
        .post(s.url("/ts/put/batch"))
        .bearer_auth(token)
        .body(reqwest::Body::wrap_stream(futures_stream(rx)))
        .send();
    (tx, tokio::spawn(req))
}

#[tokio::test]
async fn load_shedding_when_the_server_is_saturated() {
    let s =
        TestServer::start_with(secured().env("SLUICE_ADMISSION_MAX_IN_FLIGHT_TOTAL", "2")).await;
    let held = [
        hold_in_flight(&s, WRITER).await,
        hold_in_flight(&s, ADMIN).await,
    ];
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = get_as(&s, "/ts/buffer/stats", READER).await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], "server_overloaded");
    // Probes are never shed.
    assert_eq!(call(&s, "GET", "/healthz", None, None).await.0, 200);
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        call(&s, "GET", "/ts/buffer/stats", Some(READER), None)
            .await
            .0,
        200
    );
}

fn futures_stream(
    mut rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn compression_both_ways() {
    let s = TestServer::start().await;
    // Accept-Encoding: zstd compresses the answer.
    let r = s
        .client
        .get(s.url("/openapi.json"))
        .header("Accept-Encoding", "zstd")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-encoding"], "zstd");
    let compressed = r.bytes().await.unwrap();
    let plain = zstd::decode_all(&compressed[..]).unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&plain).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(compressed.len() * 3 < plain.len());
    // gzip too.
    let r = s
        .client
        .get(s.url("/openapi.json"))
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-encoding"], "gzip");
    // An error the front door reshapes (here the framework's refusal of a query string) is
    // plain JSON in the error shape, also for a client that accepts gzip.
    let r = s
        .client
        .get(s.url("/v1/databases/default/changes?from_lsn=not-a-number"))
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("content-encoding").is_none());
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("from_lsn"),
        "{body}"
    );
    assert!(!body["error_id"].as_str().unwrap().is_empty());

    // A gzip line-protocol body (Telegraf's default) is accepted.
    let t = now_ms();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, format!("zipped value=7 {t}").as_bytes()).unwrap();
    let r = s
        .client
        .post(s.url("/write?precision=ms"))
        .header("Content-Encoding", "gzip")
        .body(gz.finish().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (_, q) = s
        .post_json(
            "/ts/query",
            &json!({"metric": "zipped", "from_ms": t, "to_ms": t + 1}),
        )
        .await;
    assert_eq!(q["series"][0]["points"][0][1], 7.0);

    // A zstd bomb: 4 KiB on the wire, 64 MiB decompressed → 413, nothing written.
    let bomb = zstd::encode_all(&vec![b' '; 64 << 20][..], 19).unwrap();
    assert!(bomb.len() < 64 * 1024, "{}", bomb.len());
    let r = s
        .client
        .post(s.url("/ts/put/batch"))
        .header("Content-Encoding", "zstd")
        .header("Content-Type", "application/json")
        .body(bomb)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], "payload_too_large");
    // An unsupported encoding is refused with a 4xx in the error shape.
    let r = s
        .client
        .post(s.url("/ts/put"))
        .header("Content-Encoding", "compress")
        .body("x")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["error_id"].is_string());
}

#[tokio::test]
async fn tls13_with_alpn() {
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls;
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let mut opts = secured()
        .env("SLUICE_HTTP_TLS_CERT_FILE", cert_path.to_str().unwrap())
        .env("SLUICE_HTTP_TLS_KEY_FILE", key_path.to_str().unwrap());
    opts.tls = true;
    let s = TestServer::start_with(opts).await;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let connect = |alpn: &[&[u8]]| {
        let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let addr = s.addr();
        async move {
            // The server may still be starting: retry the connection briefly.
            for _ in 0..200 {
                if let Ok(tcp) = tokio::net::TcpStream::connect(&addr).await {
                    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
                    return connector.connect(name, tcp).await.unwrap();
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            panic!("no TLS listener");
        }
    };
    let mut tls = connect(&[b"http/1.1"]).await;
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    // Wait for readiness through TLS, then an authenticated request.
    let mut answer = String::new();
    for _ in 0..200 {
        tls.write_all(
            format!("GET /ts/buffer/stats HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {READER}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        answer.clear();
        tls.read_to_string(&mut answer).await.unwrap();
        if !answer.starts_with("HTTP/1.1 503") {
            break;
        }
        tls = connect(&[b"http/1.1"]).await;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("buffer_size"), "{answer}");
    // ALPN negotiates HTTP/2 when offered, and HTTP/2 is served.
    let tls = connect(&[b"h2", b"http/1.1"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(b"h2".as_slice()));
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::get("https://localhost/ts/buffer/stats")
        .header("authorization", format!("Bearer {READER}"))
        .body(http_body_util::Empty::<hyper::body::Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.version(), hyper::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    // Plain HTTP to the TLS port is not served.
    let r = reqwest::Client::new()
        .get(format!("http://{}/healthz", s.addr()))
        .send()
        .await;
    assert!(r.is_err() || !r.unwrap().status().is_success());
}

#[tokio::test]
async fn credentials_allow_a_public_bind() {
    // With credentials configured, a non-loopback address needs no --unauthenticated.
    let s = TestServer::start_with(Options {
        args: vec!["--http-addr".into(), "0.0.0.0:0".into()],
        ..secured()
    })
    .await;
    let (st, _) = call(&s, "GET", "/ts/buffer/stats", Some(READER), None).await;
    assert_eq!(st, 200);
}
