//! The reference server of `front_bench`: bare axum (the version Sluice uses), no middleware,
//! answering what Sluice's front door answers at its floor. `GET /healthz` answers `ok`;
//! `POST /ts/put/buffered` parses the seed's point JSON into a struct (the same fields and
//! types Sluice's `DataPoint` has) and answers a small JSON, touching no storage.
//!
//! Run: `bare_axum --addr 127.0.0.1:PORT` (front_bench starts it pinned to the server's CPU).

use std::collections::BTreeMap;

use axum::Json;
use axum::routing::{get, post};
use clap::Parser;
use serde::{Deserialize, Serialize};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    addr: String,
}

#[derive(Deserialize)]
#[allow(dead_code)] // parsed, as Sluice parses it; not otherwise used
struct Point {
    metric: String,
    entity: String,
    timestamp_ms: Option<i64>,
    value: f64,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct Answer {
    success: bool,
    buffered: bool,
    buffer_size: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let app = axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/ts/put/buffered",
            post(|Json(p): Json<Point>| async move {
                Json(Answer {
                    success: true,
                    buffered: true,
                    buffer_size: p.value as u64,
                })
            }),
        );
    let listener = tokio::net::TcpListener::bind(&args.addr).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
