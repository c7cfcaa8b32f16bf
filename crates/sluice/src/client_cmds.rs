//! `sluice put` and `sluice query`: talk to a running server over HTTP through the Rust client
//! (`sluice-client`, which retries refused requests honouring `Retry-After`).
//!
//! Both print the server's JSON answer on stdout and exit 0 on success; on an error answer they
//! print its body on stderr and exit 1. The server is `--server` or `SLUICE_SERVER`
//! (default `http://127.0.0.1:8080`); the bearer token is `--token` or `SLUICE_TOKEN`.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use clap::Args;
use sluice_client::Client;
use sluice_client::api::ts::{Ack, Aggregation, DataPoint, QueryRequest};

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

fn tags(pairs: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    pairs
        .iter()
        .map(|p| {
            let (k, v) = p
                .split_once('=')
                .with_context(|| format!("tag {p:?} is not KEY=VALUE"))?;
            Ok((k.to_string(), v.to_string()))
        })
        .collect()
}

fn client(server: &ServerArg) -> anyhow::Result<Client> {
    let mut builder = Client::builder(&server.server);
    if let Some(token) = &server.token {
        builder = builder.token(token);
    }
    Ok(builder.build()?)
}

/// Prints an answer as pretty JSON; an error answer's body goes to stderr.
fn print<T: serde::Serialize>(result: sluice_client::Result<T>) -> anyhow::Result<()> {
    match result {
        Ok(v) => {
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(())
        }
        Err(sluice_client::Error::Api { status, body }) => {
            eprintln!("{}", serde_json::to_string(&body)?);
            bail!("server answered {status}")
        }
        Err(e) => Err(e.into()),
    }
}

fn parse_ack(ack: Option<&str>) -> anyhow::Result<Option<Ack>> {
    Ok(match ack {
        None => None,
        Some("buffer") => Some(Ack::Buffer),
        Some("wal") => Some(Ack::Wal),
        Some("fsync") => Some(Ack::Fsync),
        Some(other) => bail!("--ack {other:?}: use buffer, wal or fsync"),
    })
}

pub async fn put(a: PutArgs) -> anyhow::Result<()> {
    let point = DataPoint {
        metric: a.metric,
        entity: a.entity,
        timestamp_ms: a.timestamp_ms,
        value: a.value,
        tags: tags(&a.tags)?,
    };
    let c = client(&a.server)?;
    let ack = parse_ack(a.ack.as_deref())?;
    if a.buffered {
        anyhow::ensure!(ack.is_none(), "--ack does not apply to --buffered writes");
        print(c.put_buffered(&point).await)
    } else {
        print(c.put(&point, ack).await)
    }
}

pub async fn query(a: QueryArgs) -> anyhow::Result<()> {
    let aggregation = match a.aggregation {
        None => None,
        Some(agg) => Some(
            serde_json::from_value::<Aggregation>(serde_json::Value::String(agg.clone())).map_err(
                |_| {
                    anyhow::anyhow!(
                        "--aggregation {agg:?}: use min, max, sum, avg, count, first or last"
                    )
                },
            )?,
        ),
    };
    let q = QueryRequest {
        metric: a.metric,
        entity: a.entity,
        tags: tags(&a.tags)?,
        matchers: Vec::new(),
        from_ms: a.from_ms,
        to_ms: a.to_ms.unwrap_or_else(sluice_server::now_ms),
        aggregation,
        step_ms: a.step_ms,
        group_by: a.group_by,
    };
    print(client(&a.server)?.query(&q).await)
}
