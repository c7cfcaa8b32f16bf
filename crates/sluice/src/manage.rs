//! Command-line management of a running server: databases, collections, tokens, status,
//! export, and shell completions.
//!
//! Every command takes `--url` and `--token` (or `SLUICE_URL`, `SLUICE_TOKEN`); a server error
//! is printed with its `code` and `error_id` and the exit code is 1.

use std::io::{IsTerminal, Write};

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use sluice_client::{Client, Method};

use crate::client_cmds::ServerArg;

/// `sluice db …`.
#[derive(Subcommand)]
pub enum DbCommand {
    /// Create a database.
    Create {
        #[command(flatten)]
        server: ServerArg,
        name: String,
        /// Time-series retention in milliseconds (default: the server's).
        #[arg(long)]
        retention_ms: Option<u64>,
        /// Most series the database may hold (default: the server's `ts.max_series`).
        #[arg(long)]
        max_series: Option<u64>,
        /// Most new series it may create in any hour; 0 for no limit (default: the server's).
        #[arg(long)]
        max_new_series_per_hour: Option<u64>,
    },
    /// List databases.
    List {
        #[command(flatten)]
        server: ServerArg,
        #[command(flatten)]
        output: OutputArg,
    },
    /// Delete a database and everything in it.
    Delete {
        #[command(flatten)]
        server: ServerArg,
        name: String,
    },
}

/// `sluice collection …`.
#[derive(Subcommand)]
pub enum CollectionCommand {
    /// Create a vector collection.
    Create {
        #[command(flatten)]
        server: ServerArg,
        #[command(flatten)]
        db: DbArg,
        name: String,
        /// Vector dimension.
        #[arg(long)]
        dimension: usize,
        /// cosine (default), l2 or ip (inner product).
        #[arg(long)]
        distance: Option<String>,
    },
    /// List the collections of a database.
    List {
        #[command(flatten)]
        server: ServerArg,
        #[command(flatten)]
        db: DbArg,
        #[command(flatten)]
        output: OutputArg,
    },
    /// Delete a collection.
    Delete {
        #[command(flatten)]
        server: ServerArg,
        #[command(flatten)]
        db: DbArg,
        name: String,
    },
}

#[derive(Args)]
pub struct DbArg {
    /// Database.
    #[arg(long, default_value = "default")]
    db: String,
}

#[derive(Args)]
pub struct OutputArg {
    /// table (default), json or csv.
    #[arg(long, short, default_value = "table", value_parser = ["table", "json", "csv"])]
    pub output: String,
}

/// `sluice export`.
#[derive(Args)]
pub struct ExportArgs {
    #[command(flatten)]
    server: ServerArg,
    #[command(flatten)]
    db: DbArg,
    #[command(flatten)]
    select: crate::client_cmds::Selection,
    /// ndjson (default; what `sluice import` reads back), csv, parquet (an Apache Parquet file:
    /// metric, entity, tags as JSON, timestamp, value) or arrow (an Arrow IPC stream).
    #[arg(long, default_value = "ndjson", value_parser = ["ndjson", "csv", "parquet", "arrow"])]
    format: String,
    /// Write to this file instead of stdout.
    #[arg(long, short = 'o', value_name = "FILE")]
    output: Option<std::path::PathBuf>,
}

/// Prints a server error with its code and error id; other errors as they are.
pub fn explain(e: sluice_client::Error) -> anyhow::Error {
    match &e {
        sluice_client::Error::Api { status, .. } => {
            anyhow::anyhow!("server answered {status}: {}", crate::import::describe(&e))
        }
        _ => e.into(),
    }
}

fn client(server: &ServerArg, db: Option<&str>) -> anyhow::Result<Client> {
    let c = server.client_with(sluice_client::RetryPolicy::default())?;
    Ok(match db {
        Some(db) if db != "default" => c.database(db),
        _ => c,
    })
}

pub async fn db(cmd: DbCommand) -> anyhow::Result<()> {
    match cmd {
        DbCommand::Create {
            server,
            name,
            retention_ms,
            max_series,
            max_new_series_per_hour,
        } => {
            let mut body = json!({ "name": name });
            for (key, v) in [
                ("retention_ms", retention_ms),
                ("max_series", max_series),
                ("max_new_series_per_hour", max_new_series_per_hour),
            ] {
                if let Some(v) = v {
                    body[key] = v.into();
                }
            }
            let v = client(&server, None)?
                .request_json(Method::POST, "/v1/databases", Some(&body), false)
                .await
                .map_err(explain)?;
            outln!("created database {}", v["name"].as_str().unwrap_or(&name))?;
            Ok(())
        }
        DbCommand::List { server, output } => {
            let v = client(&server, None)?
                .request_json(Method::GET, "/v1/databases", None, true)
                .await
                .map_err(explain)?;
            let rows = v["databases"].as_array().cloned().unwrap_or_default();
            print_rows(
                &output.output,
                &[
                    "name",
                    "retention_ms",
                    "max_series",
                    "max_new_series_per_hour",
                    "has_policy",
                ],
                &rows,
            )
        }
        DbCommand::Delete { server, name } => {
            client(&server, None)?
                .request_json(
                    Method::DELETE,
                    &format!("/v1/databases/{}", path_segment(&name)),
                    None,
                    false,
                )
                .await
                .map_err(explain)?;
            outln!("deleted database {name}")?;
            Ok(())
        }
    }
}

pub async fn collection(cmd: CollectionCommand) -> anyhow::Result<()> {
    match cmd {
        CollectionCommand::Create {
            server,
            db,
            name,
            dimension,
            distance,
        } => {
            let mut body = json!({ "name": name, "dimension": dimension });
            if let Some(d) = distance {
                body["distance"] = d.into();
            }
            let path = db_path(&db.db, "/v1/collections");
            client(&server, None)?
                .request_json(Method::POST, &path, Some(&body), false)
                .await
                .map_err(explain)?;
            outln!("created collection {name} in database {}", db.db)?;
            Ok(())
        }
        CollectionCommand::List { server, db, output } => {
            let v = client(&server, None)?
                .request_json(Method::GET, &db_path(&db.db, "/v1/collections"), None, true)
                .await
                .map_err(explain)?;
            let rows = v["collections"].as_array().cloned().unwrap_or_default();
            print_rows(
                &output.output,
                &[
                    "name",
                    "dimension",
                    "distance",
                    "vectors",
                    "buffered",
                    "index_bytes",
                ],
                &rows,
            )
        }
        CollectionCommand::Delete { server, db, name } => {
            let path = db_path(&db.db, &format!("/v1/collections/{}", path_segment(&name)));
            client(&server, None)?
                .request_json(Method::DELETE, &path, None, false)
                .await
                .map_err(explain)?;
            outln!("deleted collection {name} of database {}", db.db)?;
            Ok(())
        }
    }
}

/// `route` of database `db` (the flat route for `default`).
fn db_path(db: &str, route: &str) -> String {
    if db == "default" {
        route.to_string()
    } else {
        format!("/v1/databases/{}{route}", path_segment(db))
    }
}

fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `sluice token create`: a new random token and its line for the tokens file.
pub fn token_create(name: &str, role: &str, database: &str) -> anyhow::Result<()> {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let token = format!("sluice_{token}");
    let hashed = sluice_server::auth::tokens::hashed_form(&token);
    let entry = json!({ name: { "token": hashed, "roles": { database: role } } });
    let entry = entry.to_string();
    let entry = entry
        .strip_prefix('{')
        .and_then(|e| e.strip_suffix('}'))
        .unwrap_or(&entry);
    outln!("{token}")?;
    outln!("{entry}")?;
    eprintln!(
        "the first line is the token (shown once: give it to the client); the second is its entry \
         for the object in auth.bearer_tokens_file (only its SHA-256 digest is stored)"
    );
    Ok(())
}

/// `sluice status`: role, databases, buffers, replicas and lag on one screen.
pub async fn status(server: ServerArg) -> anyhow::Result<()> {
    let c = client(&server, None)?;
    let version = c
        .request_json(Method::GET, "/version", None, true)
        .await
        .map_err(explain)?;
    let ready = c.request_json(Method::GET, "/readyz", None, true).await;
    // Replication statistics need `admin` on `*`: without it, the rest of the screen.
    let repl = match c
        .request_json(Method::GET, "/api/v1/replication/stats", None, true)
        .await
    {
        Ok(v) => v,
        Err(sluice_client::Error::Api { status: 403, .. }) => {
            json!({"role": "? (replication needs admin)", "epoch": "?", "replicas": null})
        }
        Err(e) => return Err(explain(e)),
    };
    let dbs = c
        .request_json(Method::GET, "/v1/databases", None, true)
        .await
        .map_err(explain)?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{} {} at {}  role {}  epoch {}  {}",
        version["name"].as_str().unwrap_or("sluice"),
        version["version"].as_str().unwrap_or("?"),
        server.url(),
        repl["role"].as_str().unwrap_or("?"),
        repl["epoch"],
        if ready.is_ok() { "ready" } else { "NOT READY" }
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "{:<20} {:>14} {:>12} {:>12} {:>12} {:>14}",
        "database", "points flushed", "ts buffer", "collections", "vectors", "vector buffer"
    )?;
    for db in dbs["databases"].as_array().into_iter().flatten() {
        let name = db["name"].as_str().unwrap_or("?");
        let ts = c
            .request_json(Method::GET, &db_path(name, "/ts/buffer/stats"), None, true)
            .await
            .unwrap_or(Value::Null);
        let cols = c
            .request_json(Method::GET, &db_path(name, "/v1/collections"), None, true)
            .await
            .unwrap_or(Value::Null);
        let cols = cols["collections"].as_array().cloned().unwrap_or_default();
        let vectors: u64 = cols.iter().filter_map(|c| c["vectors"].as_u64()).sum();
        let vbuf: u64 = cols.iter().filter_map(|c| c["buffered"].as_u64()).sum();
        writeln!(
            out,
            "{:<20} {:>14} {:>12} {:>12} {:>12} {:>14}",
            name,
            ts["points_flushed"].as_u64().unwrap_or(0),
            ts["current_buffer_size"].as_u64().unwrap_or(0),
            cols.len(),
            vectors,
            vbuf
        )?;
    }
    let replicas = repl["replicas"].as_array().cloned().unwrap_or_default();
    writeln!(out)?;
    if repl["replicas"].is_null() {
        writeln!(out, "replicas: ? (replication needs admin)")?;
    } else if replicas.is_empty() {
        writeln!(out, "replicas: none")?;
    } else {
        writeln!(
            out,
            "{:<20} {:<32} {:>8} {:>12} {:>10}  last error",
            "replica", "endpoint", "healthy", "lag bytes", "lag ms"
        )?;
        for r in replicas {
            writeln!(
                out,
                "{:<20} {:<32} {:>8} {:>12} {:>10}  {}",
                r["replica_id"].as_str().unwrap_or("?"),
                r["endpoint"].as_str().unwrap_or("?"),
                if r["is_healthy"].as_bool() == Some(true) {
                    "yes"
                } else {
                    "NO"
                },
                r["lag_bytes"],
                r["lag_ms"],
                r["last_error"].as_str().unwrap_or(""),
            )?;
        }
    }
    if let Some(side) = repl.get("replica").filter(|v| !v.is_null()) {
        writeln!(out, "this replica: {side}")?;
    }
    Ok(())
}

/// `sluice export`: NDJSON as the server streams it, CSV (`metric,entity,timestamp_ms,value,tags`
/// with tags as a JSON object), or the server's Parquet or Arrow answer byte for byte.
pub async fn export(a: ExportArgs) -> anyhow::Result<()> {
    let (tags, to_ms) = a.select.resolved()?;
    let request = sluice_client::api::ts::ExportRequest {
        metric: a.select.metric.clone(),
        entity: a.select.entity.clone(),
        tags,
        matchers: Vec::new(),
        from_ms: a.select.from_ms,
        to_ms,
    };
    let c = client(&a.server, Some(&a.db.db))?;
    let columnar = match a.format.as_str() {
        "parquet" => Some(sluice_client::api::ts::OutputFormat::Parquet),
        "arrow" => Some(sluice_client::api::ts::OutputFormat::Arrow),
        _ => None,
    };
    if columnar.is_some() && a.output.is_none() && std::io::stdout().is_terminal() {
        anyhow::bail!(
            "--format {} writes binary: give --output FILE or redirect stdout",
            a.format
        );
    }
    let mut stream = c.export_as(&request, columnar).await.map_err(explain)?;
    let mut out: Box<dyn Write> = match &a.output {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let mut points = 0u64;
    if columnar.is_some() {
        let mut bytes = 0u64;
        while let Some(chunk) = stream.chunk().await.map_err(explain)? {
            bytes += chunk.len() as u64;
            out.write_all(&chunk)?;
        }
        out.flush()?;
        eprintln!("exported {bytes} bytes of {}", a.format);
        return Ok(());
    }
    if a.format != "csv" {
        while let Some(chunk) = stream.chunk().await.map_err(explain)? {
            points += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
            out.write_all(&chunk)?;
        }
        out.flush()?;
    } else {
        let mut w = csv::Writer::from_writer(out);
        w.write_record(["metric", "entity", "timestamp_ms", "value", "tags"])?;
        let mut partial: Vec<u8> = Vec::new();
        while let Some(chunk) = stream.chunk().await.map_err(explain)? {
            partial.extend_from_slice(&chunk);
            let end = partial
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
            for line in partial[..end]
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
            {
                let p: sluice_client::api::ts::DataPoint = serde_json::from_slice(line)
                    .with_context(|| format!("export line {}", String::from_utf8_lossy(line)))?;
                let tags = if p.tags.is_empty() {
                    String::new()
                } else {
                    serde_json::to_string(&p.tags)?
                };
                w.write_record([
                    p.metric.as_str(),
                    p.entity.as_str(),
                    &p.timestamp_ms.unwrap_or_default().to_string(),
                    &p.value.to_string(),
                    &tags,
                ])?;
                points += 1;
            }
            partial.drain(..end);
        }
        w.flush()?;
    }
    eprintln!("exported {points} points");
    Ok(())
}

/// Prints `rows` (JSON objects) as a table, JSON or CSV with `columns`.
pub fn print_rows(output: &str, columns: &[&str], rows: &[Value]) -> anyhow::Result<()> {
    let cell = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let mut out = std::io::stdout().lock();
    match output {
        "json" => writeln!(out, "{}", serde_json::to_string_pretty(rows)?)?,
        "csv" => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record(columns)?;
            for r in rows {
                w.write_record(columns.iter().map(|c| cell(&r[*c])))?;
            }
            w.flush()?;
        }
        _ => {
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|r| columns.iter().map(|c| cell(&r[*c])).collect())
                .collect();
            print_table(&mut out, columns, &table)?;
        }
    }
    Ok(())
}

/// A plain aligned table: numbers right-aligned, text left-aligned.
pub fn print_table(
    out: &mut dyn Write,
    header: &[&str],
    rows: &[Vec<String>],
) -> anyhow::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let numeric: Vec<bool> = (0..header.len())
        .map(|i| {
            !rows.is_empty()
                && rows
                    .iter()
                    .all(|r| r[i].is_empty() || r[i].parse::<f64>().is_ok())
        })
        .collect();
    let line = |cells: Vec<&str>| -> String {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if numeric[i] {
                    format!("{c:>w$}", w = widths[i])
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    writeln!(
        out,
        "{}",
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join("  ")
    )?;
    for r in rows {
        writeln!(out, "{}", line(r.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}
