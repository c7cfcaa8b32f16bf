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
use std::io::Write;

use sluice_client::api::ts::{Ack, Aggregation, DataPoint, QueryRequest, QueryResponse};

#[derive(Args)]
pub struct ServerArg {
    /// Base URL of the server [default: http://127.0.0.1:8080; env: SLUICE_URL, or
    /// SLUICE_SERVER].
    #[arg(long, alias = "server", value_name = "URL")]
    url: Option<String>,
    /// Bearer token (or JWT) for a server with authentication on.
    #[arg(long, env = "SLUICE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// PEM file of certificates to trust for an https URL besides the system's (a server's
    /// self-signed certificate, a private CA).
    #[arg(long, env = "SLUICE_CA_CERT", value_name = "FILE")]
    pub ca_cert: Option<std::path::PathBuf>,
}

impl ServerArg {
    /// The server's base URL: `--url`, else `SLUICE_URL`, else `SLUICE_SERVER`, else local.
    pub fn url(&self) -> String {
        self.url
            .clone()
            .or_else(|| std::env::var("SLUICE_URL").ok())
            .or_else(|| std::env::var("SLUICE_SERVER").ok())
            .unwrap_or_else(|| "http://127.0.0.1:8080".into())
    }

    /// A client of the server with this retry policy.
    pub fn client_with(&self, retry: sluice_client::RetryPolicy) -> anyhow::Result<Client> {
        let mut builder = Client::builder(self.url()).retry(retry);
        if let Some(token) = &self.token {
            builder = builder.token(token);
        }
        if let Some(path) = &self.ca_cert {
            let pem =
                std::fs::read(path).with_context(|| format!("--ca-cert {}", path.display()))?;
            builder = builder.ca_certificates_pem(pem);
        }
        Ok(builder.build()?)
    }
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

/// Which points `query` and `export` read.
#[derive(Args)]
pub struct Selection {
    /// The metric.
    #[arg(long)]
    pub metric: String,
    /// Only this entity.
    #[arg(long)]
    pub entity: Option<String>,
    /// An exact tag match as KEY=VALUE; repeat for more.
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    pub tags: Vec<String>,
    /// Start of the range, ms since the epoch (inclusive).
    #[arg(long, default_value_t = 0)]
    pub from_ms: i64,
    /// End of the range, ms since the epoch (default: now).
    #[arg(long)]
    pub to_ms: Option<i64>,
}

impl Selection {
    /// `(tags, to_ms)` resolved: the tag flags parsed, the end defaulted to now.
    pub fn resolved(&self) -> anyhow::Result<(BTreeMap<String, String>, i64)> {
        Ok((
            tags(&self.tags)?,
            self.to_ms.unwrap_or_else(sluice_server::now_ms),
        ))
    }
}

/// `sluice query`: query points.
#[derive(Args)]
pub struct QueryArgs {
    #[command(flatten)]
    server: ServerArg,
    #[command(flatten)]
    select: Selection,
    /// min, max, sum, avg, count, first or last.
    #[arg(long)]
    aggregation: Option<String>,
    #[arg(long)]
    step_ms: Option<i64>,
    /// A tag to group by; repeat for more.
    #[arg(long = "group-by", value_name = "TAG")]
    group_by: Vec<String>,
    /// Database.
    #[arg(long, default_value = "default")]
    db: String,
    #[command(flatten)]
    output: crate::manage::OutputArg,
}

pub fn tags(pairs: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
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
    server.client_with(sluice_client::RetryPolicy::default())
}

/// Prints an answer as pretty JSON; an error answer as the error (its code and `error_id`).
fn print<T: serde::Serialize>(result: sluice_client::Result<T>) -> anyhow::Result<()> {
    let v = result.map_err(crate::manage::explain)?;
    outln!("{}", serde_json::to_string_pretty(&v)?)?;
    Ok(())
}

pub fn parse_ack(ack: Option<&str>) -> anyhow::Result<Option<Ack>> {
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
    let (tags, to_ms) = a.select.resolved()?;
    let q = QueryRequest {
        metric: a.select.metric,
        entity: a.select.entity,
        tags,
        matchers: Vec::new(),
        from_ms: a.select.from_ms,
        to_ms,
        aggregation,
        step_ms: a.step_ms,
        group_by: a.group_by,
    };
    let mut c = client(&a.server)?;
    if a.db != "default" {
        c = c.database(&a.db);
    }
    let answer = c.query(&q).await.map_err(crate::manage::explain)?;
    print_query(&a.output.output, &answer)
}

/// A query answer as one row per point (`metric, entity, tags, time, value`), and for a
/// single series a sparkline under the table.
fn print_query(output: &str, answer: &QueryResponse) -> anyhow::Result<()> {
    if output == "json" {
        outln!("{}", serde_json::to_string_pretty(answer)?)?;
        return Ok(());
    }
    let tags_text = |t: &BTreeMap<String, String>| {
        t.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    if output == "csv" {
        let mut w = csv::Writer::from_writer(std::io::stdout().lock());
        w.write_record(["metric", "entity", "tags", "timestamp_ms", "value"])?;
        for s in &answer.series {
            for (t, v) in &s.points {
                // Tags as a JSON object, as `export --format csv` writes them and `import` reads.
                w.write_record([
                    &s.metric,
                    &s.entity,
                    &if s.tags.is_empty() {
                        String::new()
                    } else {
                        serde_json::to_string(&s.tags)?
                    },
                    &t.to_string(),
                    &v.to_string(),
                ])?;
            }
        }
        w.flush()?;
        return Ok(());
    }
    let mut rows = Vec::new();
    for s in &answer.series {
        for (t, v) in &s.points {
            rows.push(vec![
                s.metric.clone(),
                s.entity.clone(),
                tags_text(&s.tags),
                rfc3339_ms(*t),
                v.to_string(),
            ]);
        }
    }
    let mut out = std::io::stdout().lock();
    crate::manage::print_table(
        &mut out,
        &["metric", "entity", "tags", "time", "value"],
        &rows,
    )?;
    let points: usize = answer.series.iter().map(|s| s.points.len()).sum();
    writeln!(out, "({} series, {points} points)", answer.series.len())?;
    if let [one] = answer.series.as_slice()
        && one.points.len() > 1
    {
        let values: Vec<f64> = one.points.iter().map(|p| p.1).collect();
        writeln!(out, "{}", sparkline(&values, 60))?;
    }
    Ok(())
}

/// Milliseconds since the epoch as an RFC 3339 UTC time.
fn rfc3339_ms(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map_or_else(|_| ms.to_string(), |t| t.to_string())
}

/// Values as a line of block characters, at most `width` wide (averaged into buckets), with
/// the range after it.
pub fn sparkline(values: &[f64], width: usize) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if finite.is_empty() {
        return String::new();
    }
    let buckets = values.len().min(width).max(1);
    let per = values.len() as f64 / buckets as f64;
    let means: Vec<f64> = (0..buckets)
        .map(|b| {
            let (lo, hi) = (
                (b as f64 * per) as usize,
                (((b + 1) as f64 * per) as usize).min(values.len()),
            );
            let chunk: Vec<f64> = values[lo..hi.max(lo + 1)]
                .iter()
                .copied()
                .filter(|v| v.is_finite())
                .collect();
            if chunk.is_empty() {
                f64::NAN
            } else {
                chunk.iter().sum::<f64>() / chunk.len() as f64
            }
        })
        .collect();
    let (min, max) = finite
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let line: String = means
        .iter()
        .map(|&m| {
            if !m.is_finite() {
                ' '
            } else if max > min {
                BARS[(((m - min) / (max - min)) * 7.0).round() as usize]
            } else {
                BARS[3]
            }
        })
        .collect();
    format!("{line}  min {min} max {max}")
}
