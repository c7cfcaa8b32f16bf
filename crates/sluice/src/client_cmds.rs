//! `sluice put` and `sluice query`: talk to a running server over HTTP.
//!
//! Both print the server's JSON answer on stdout and exit 0 on success; on an error answer they
//! print its body on stderr and exit 1. The server is `--server` or `SLUICE_SERVER`
//! (default `http://127.0.0.1:8080`); the bearer token is `--token` or `SLUICE_TOKEN`.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::Args;
use serde_json::{Map, Value, json};

#[derive(Args)]
pub struct ServerArg {
    /// Base URL of the server.
    #[arg(long, env = "SLUICE_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// Bearer token (or JWT) for a server with authentication on.
    #[arg(long, env = "SLUICE_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

/// `sluice put`: write one point.
#[derive(Args)]
pub struct PutArgs {
    #[command(flatten)]
    server: ServerArg,
    #[arg(long)]
    metric: String,
    #[arg(long, default_value = "")]
    entity: String,
    #[arg(long)]
    value: f64,
    /// Milliseconds since the epoch; default now.
    #[arg(long)]
    timestamp_ms: Option<i64>,
    /// A tag as KEY=VALUE; repeat for more.
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    tags: Vec<String>,
    /// Acknowledgement level: buffer, wal or fsync (default: the route's).
    #[arg(long)]
    ack: Option<String>,
    /// Use the buffered route (`/ts/put/buffered`).
    #[arg(long)]
    buffered: bool,
}

/// `sluice query`: query points.
#[derive(Args)]
pub struct QueryArgs {
    #[command(flatten)]
    server: ServerArg,
    #[arg(long)]
    metric: String,
    #[arg(long)]
    entity: Option<String>,
    /// An exact tag match as KEY=VALUE; repeat for more.
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    tags: Vec<String>,
    #[arg(long, default_value_t = 0)]
    from_ms: i64,
    /// Default: now.
    #[arg(long)]
    to_ms: Option<i64>,
    /// min, max, sum, avg, count, first or last.
    #[arg(long)]
    aggregation: Option<String>,
    #[arg(long)]
    step_ms: Option<i64>,
    /// A tag to group by; repeat for more.
    #[arg(long = "group-by", value_name = "TAG")]
    group_by: Vec<String>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn tags(pairs: &[String]) -> anyhow::Result<Map<String, Value>> {
    pairs
        .iter()
        .map(|p| {
            let (k, v) = p
                .split_once('=')
                .with_context(|| format!("tag {p:?} is not KEY=VALUE"))?;
            Ok((k.to_string(), Value::String(v.to_string())))
        })
        .collect()
}

async fn post(server: &ServerArg, path: &str, body: &Value) -> anyhow::Result<()> {
    let url = format!("{}{path}", server.server.trim_end_matches('/'));
    let mut request = reqwest::Client::new().post(&url).json(body);
    if let Some(token) = &server.token {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let status = response.status();
    let text = response.text().await.context("reading the answer")?;
    if !status.is_success() {
        eprintln!("{text}");
        bail!("server answered {status}");
    }
    let pretty = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or(text);
    println!("{pretty}");
    Ok(())
}

pub async fn put(a: PutArgs) -> anyhow::Result<()> {
    let body = json!({
        "metric": a.metric,
        "entity": a.entity,
        "timestamp_ms": a.timestamp_ms.unwrap_or_else(now_ms),
        "value": a.value,
        "tags": tags(&a.tags)?,
    });
    let route = if a.buffered {
        "/ts/put/buffered"
    } else {
        "/ts/put"
    };
    let path = match &a.ack {
        Some(ack) => format!("{route}?ack={ack}"),
        None => route.to_string(),
    };
    post(&a.server, &path, &body).await
}

pub async fn query(a: QueryArgs) -> anyhow::Result<()> {
    let mut body = json!({
        "metric": a.metric,
        "tags": tags(&a.tags)?,
        "from_ms": a.from_ms,
        "to_ms": a.to_ms.unwrap_or_else(now_ms),
        "group_by": a.group_by,
    });
    if let Some(e) = a.entity {
        body["entity"] = json!(e);
    }
    if let Some(agg) = a.aggregation {
        body["aggregation"] = json!(agg);
    }
    if let Some(step) = a.step_ms {
        body["step_ms"] = json!(step);
    }
    post(&a.server, "/ts/query", &body).await
}
