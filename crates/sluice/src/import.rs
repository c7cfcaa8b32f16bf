//! `sluice import`: load line protocol, CSV or NDJSON files (or stdin, gzip or not) into a
//! running server, through the binary protocol (default) or HTTP batches.
//!
//! # Pipeline
//! A reader thread reads each input, parses it into points and encodes them straight into
//! batch frames (`TS_PUT`, or `TS_PUT_BUFFERED` with `--ack buffer`; JSON `/ts/put/batch`
//! bodies over HTTP) of at most `--batch` points, ending at line boundaries. A bounded channel
//! (two batches per connection) carries them to `--connections` sender tasks, each with its own
//! connection and one batch in flight, so memory is bounded by a few batches whatever the
//! file size and the reader waits when the server is slower.
//!
//! # What is refused, and resuming
//! - A line that does not parse is reported (file, line, reason, text) and skipped; the rest is
//!   imported.
//! - A batch the server refuses for its data (an invalid name, a limit; all or nothing) is
//!   split by line and re-sent line by line, so only the offending lines are refused.
//! - Refusals meaning "retry later" (`0x04`/`0x07`, HTTP 429/503) are retried after the
//!   server's `Retry-After`; batches with server-stamped points (no timestamp) are re-sent
//!   after a lost answer only over the wire's ordered stream, never twice over HTTP.
//! - Anything else (credentials, an unknown database, the server gone) stops the import. The
//!   summary then names the position before which every line was acknowledged, and
//!   `--resume FILE:LINE` skips what was already imported. Ctrl-C stops the same way.
//!
//! The exit code is 0 when every line was imported, 1 when some lines were refused (they are
//! listed, and all written to `--rejects FILE`), 2 when the import stopped early.
//!
//! # Progress
//! On a terminal, a progress bar on stderr shows bytes read of the inputs' total (compressed
//! bytes for gzip), points acknowledged, points/s and the ETA; without a terminal it is silent
//! and only the summary is printed.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use sluice_api::ErrorCode;
use sluice_api::ts::{Ack, DataPoint};
use sluice_client::{Client, RetryPolicy, WireClient};
use sluice_lineproto::{FieldValue, Precision};
use sluice_wire::{HEADER_LEN, TIMESTAMP_NOW, TsFrameBuilder};

use crate::client_cmds::{ServerArg, parse_ack};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// InfluxDB line protocol.
    Lp,
    /// Comma-separated values with a header row.
    Csv,
    /// One JSON point per line (`sluice export`'s format).
    Ndjson,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Transport {
    /// The binary protocol (database `default`, a plain `http://` URL), else HTTP.
    Auto,
    Wire,
    Http,
}

/// `sluice import`.
#[derive(Args)]
pub struct ImportArgs {
    #[command(flatten)]
    server: ServerArg,
    /// Files to import, in order; `-` reads stdin. Gzip is recognised by its magic bytes.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Input format (default: from the extension: .csv, .ndjson/.jsonl, else line protocol).
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Line protocol timestamp unit: ns (default), us, ms or s (as on `/write`).
    #[arg(long, default_value = "ns")]
    precision: String,
    /// Database to write to.
    #[arg(long, default_value = "default")]
    db: String,
    /// How to send: the binary protocol (`wire`, database `default` only), `http`, or `auto`.
    #[arg(long, value_enum, default_value = "auto")]
    transport: Transport,
    /// The binary protocol's address (default: the URL's host, port 18765).
    #[arg(long, value_name = "HOST:PORT")]
    wire: Option<String>,
    /// Acknowledgement level: fsync (default), wal or buffer. Over the binary protocol `wal` is
    /// acknowledged at fsync (the protocol has no opcode for it).
    #[arg(long, default_value = "fsync")]
    ack: String,
    /// Points per batch.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    batch: u32,
    /// Connections (one batch in flight on each).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    connections: u16,
    /// Skip what an earlier run imported: inputs before FILE, and lines up to LINE of FILE.
    #[arg(long, value_name = "FILE:LINE")]
    resume: Option<String>,
    /// Write every refused line (with its reason) to this file.
    #[arg(long, value_name = "FILE")]
    rejects: Option<PathBuf>,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
    #[command(flatten)]
    csv: CsvMapping,
}

/// How CSV columns map to points. Columns are named by their header (or a 1-based number).
/// Without flags: `metric`, `entity`, `timestamp_ms` (or `time`/`timestamp`), `value`, and
/// `tags` (a JSON object) or every other column as a tag.
#[derive(Args, Clone, Debug, Default)]
pub struct CsvMapping {
    /// Column holding the metric name.
    #[arg(long, value_name = "COLUMN", help_heading = "CSV")]
    metric_column: Option<String>,
    /// One metric name for every row (instead of --metric-column).
    #[arg(
        long,
        value_name = "NAME",
        help_heading = "CSV",
        conflicts_with = "metric_column"
    )]
    metric: Option<String>,
    /// Column holding the entity.
    #[arg(long, value_name = "COLUMN", help_heading = "CSV")]
    entity_column: Option<String>,
    /// Column holding the timestamp.
    #[arg(long, value_name = "COLUMN", help_heading = "CSV")]
    time_column: Option<String>,
    /// The timestamp's form: ms (default), s, us, ns or rfc3339.
    #[arg(long, default_value = "ms", help_heading = "CSV")]
    time_format: String,
    /// Column holding the value; repeat for several: each is then a point whose metric is the
    /// column's name, prefixed by --metric and `_` (or by the row's --metric-column value and `_`).
    #[arg(long = "value-column", value_name = "COLUMN", help_heading = "CSV")]
    value_columns: Vec<String>,
    /// A column to keep as a tag (named by its header); repeat for more. Default: every
    /// column not mapped otherwise.
    #[arg(long = "tag-column", value_name = "COLUMN", help_heading = "CSV")]
    tag_columns: Vec<String>,
    /// Field delimiter.
    #[arg(long, default_value = ",", help_heading = "CSV")]
    delimiter: char,
}

/// A position in the inputs: input index and 1-based line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
struct Pos {
    input: usize,
    line: u64,
}

/// A refused line.
struct Reject {
    pos: Pos,
    reason: String,
    text: String,
}

/// A batch on its way: the encoded request and where each point came from.
struct Batch {
    seq: u64,
    body: Vec<u8>,
    /// Per point: its line and its item's byte range in `body`.
    items: Vec<(u64, u32, u32)>,
    input: usize,
    last_line: u64,
    /// Every point carries its own timestamp (re-sending after a lost answer is harmless).
    stamped: bool,
}

/// Encodes points into batches of one kind.
enum Encoder {
    Wire(TsFrameBuilder),
    Json(Vec<u8>),
}

/// What the reader and the senders share.
struct Shared {
    inputs: Vec<String>,
    rejects: Mutex<Rejects>,
    /// Acknowledged batches not yet contiguous with the first unacknowledged one.
    acked: Mutex<AckTrack>,
    points: AtomicU64,
    lines: AtomicU64,
    skipped_fields: AtomicU64,
    bytes_read: AtomicU64,
    stop: AtomicBool,
    fatal: Mutex<Option<anyhow::Error>>,
}

/// Refused lines: counted, written to `--rejects` as they are found, and the first
/// [`KEPT_REJECTS`] kept for the summary (memory stays bounded however many are refused).
#[derive(Default)]
struct Rejects {
    count: u64,
    kept: Vec<Reject>,
    file: Option<std::io::BufWriter<File>>,
    /// Writing the file failed: said once at the end.
    file_error: Option<std::io::Error>,
}

const KEPT_REJECTS: usize = 1000;

#[derive(Default)]
struct AckTrack {
    next: u64,
    done: BTreeMap<u64, (usize, u64)>,
    /// Everything up to here (input, line) is acknowledged.
    through: Option<(usize, u64)>,
}

impl Shared {
    fn reject(&self, pos: Pos, reason: impl Into<String>, text: impl Into<String>) {
        let mut text: String = text.into();
        if text.len() > 300 {
            let mut cut = 300;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push('…');
        }
        let reject = Reject {
            pos,
            reason: reason.into(),
            text,
        };
        let mut r = self.rejects.lock().unwrap_or_else(PoisonError::into_inner);
        r.count += 1;
        if let Some(f) = &mut r.file {
            let line = format!(
                "{}:{}: {}: {}\n",
                self.inputs[reject.pos.input], reject.pos.line, reject.reason, reject.text
            );
            if let Err(e) = f.write_all(line.as_bytes()) {
                r.file = None;
                r.file_error = Some(e);
            }
        }
        if r.kept.len() < KEPT_REJECTS {
            r.kept.push(reject);
        }
    }

    fn acknowledge(&self, b: &Batch, points: u64) {
        self.points.fetch_add(points, Ordering::Relaxed);
        let mut t = self.acked.lock().unwrap_or_else(PoisonError::into_inner);
        t.done.insert(b.seq, (b.input, b.last_line));
        loop {
            let next = t.next;
            let Some(pos) = t.done.remove(&next) else {
                break;
            };
            t.through = Some(pos);
            t.next += 1;
        }
    }

    fn fail(&self, e: anyhow::Error) {
        self.stop.store(true, Ordering::SeqCst);
        self.fatal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert(e);
    }
}

pub fn import(a: ImportArgs) -> anyhow::Result<std::process::ExitCode> {
    let precision = Precision::parse(&a.precision)
        .with_context(|| format!("--precision {:?}: use ns, us, ms or s", a.precision))?;
    let ack = parse_ack(Some(&a.ack))?.unwrap_or(Ack::Fsync);
    // The binary protocol has no TLS: with an https URL, `auto` is HTTP, and `wire` needs its
    // address named (e.g. a tunnel) rather than sending the token in the clear by default.
    let tls = reqwest::Url::parse(&a.server.url())
        .context("--url")?
        .scheme()
        == "https";
    let transport = match (a.transport, a.db == "default") {
        (Transport::Wire, false) => bail!(
            "the binary protocol writes to database `default` only; use --transport http for --db {}",
            a.db
        ),
        (Transport::Wire, true) if tls && a.wire.is_none() => bail!(
            "--url is https but the binary protocol has no TLS (the token and the data would cross in the clear): use --transport http, or name the address with --wire if it is protected otherwise"
        ),
        (Transport::Auto, true) if !tls => Transport::Wire,
        (Transport::Wire, true) => Transport::Wire,
        _ => Transport::Http,
    };
    // With ack=wal over the wire there is no opcode: TS_PUT waits for fsync.
    let wire_buffered = ack == Ack::Buffer;
    let wire_addr = match &a.wire {
        Some(w) => w.clone(),
        None => {
            let url = reqwest::Url::parse(&a.server.url()).context("--url")?;
            format!("{}:18765", url.host_str().unwrap_or("127.0.0.1"))
        }
    };
    let inputs: Vec<String> = a.files.iter().map(|f| f.display().to_string()).collect();
    let resume = match &a.resume {
        None => None,
        Some(r) => {
            let (file, line) = r
                .rsplit_once(':')
                .with_context(|| format!("--resume {r:?}: expected FILE:LINE"))?;
            let line: u64 = line
                .parse()
                .with_context(|| format!("--resume {r:?}: LINE is not a number"))?;
            let input = inputs
                .iter()
                .position(|i| i == file)
                .with_context(|| format!("--resume {r:?}: {file} is not one of the inputs"))?;
            Some(Pos { input, line })
        }
    };
    let total_bytes: u64 = a
        .files
        .iter()
        .filter(|f| f.as_os_str() != "-")
        .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .sum();
    // Checked before anything is sent: the inputs exist, the rejects file can be written (in
    // append mode when resuming, so an earlier run's refusals stay).
    for f in a.files.iter().filter(|f| f.as_os_str() != "-") {
        std::fs::metadata(f).with_context(|| format!("input {}", f.display()))?;
    }
    let rejects_file = match &a.rejects {
        None => None,
        Some(path) => Some(std::io::BufWriter::new(
            std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .append(a.resume.is_some())
                .truncate(a.resume.is_none())
                .open(path)
                .with_context(|| format!("--rejects {}", path.display()))?,
        )),
    };
    let shared = Arc::new(Shared {
        inputs,
        rejects: Mutex::new(Rejects {
            file: rejects_file,
            ..Rejects::default()
        }),
        acked: Mutex::default(),
        points: AtomicU64::new(0),
        lines: AtomicU64::new(0),
        skipped_fields: AtomicU64::new(0),
        bytes_read: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        fatal: Mutex::default(),
    });
    let (tx, rx) = tokio::sync::mpsc::channel::<Batch>(2 * a.connections as usize);
    let reader = {
        let shared = shared.clone();
        let files = a.files.clone();
        let format = a.format;
        let csv = a.csv.clone();
        let batch = a.batch as usize;
        let wire = transport == Transport::Wire;
        std::thread::Builder::new()
            .name("sluice-import-reader".into())
            .spawn(move || {
                let mut r = Reader {
                    shared: &shared,
                    precision,
                    series: HashMap::new(),
                    out: Out {
                        shared: &shared,
                        tx,
                        batch,
                        wire,
                        wire_buffered,
                        seq: 0,
                        current: None,
                    },
                };
                if let Err(e) = r.run(&files, format, &csv, resume) {
                    shared.fail(e);
                }
            })?
    };
    let started = Instant::now();
    let progress = Progress::new(a.quiet, total_bytes);
    let runtime = crate::client_runtime()?;
    let interrupted = runtime.block_on(send_all(
        &a, &shared, rx, transport, &wire_addr, ack, &progress,
    ))?;
    if reader.join().is_err() {
        shared.fail(anyhow::anyhow!(
            "the input reader failed (a bug: please report it)"
        ));
    }
    progress.finish();
    summary(&a, &shared, started, interrupted)
}

/// Runs the senders until the reader is done (or the import stops); true when interrupted.
async fn send_all(
    a: &ImportArgs,
    shared: &Arc<Shared>,
    rx: tokio::sync::mpsc::Receiver<Batch>,
    transport: Transport,
    wire_addr: &str,
    ack: Ack,
    progress: &Progress,
) -> anyhow::Result<bool> {
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let retry = RetryPolicy {
        max_retries: 10_000,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_secs(2),
    };
    let http = a.server.client_with(retry.clone())?.database(&a.db);
    // Every connection before any batch is sent: a refused connection (a limit, a token)
    // stops the import with nothing written rather than after some batches.
    let mut wires = Vec::new();
    for _ in 0..a.connections {
        wires.push(if transport == Transport::Wire {
            let conn = WireClient::connect(wire_addr, a.server.token.as_deref())
                .await
                .with_context(|| format!("connecting to the binary protocol at {wire_addr} (--wire, or --transport http)"))?;
            Some(conn.with_retry(retry.clone()))
        } else {
            None
        });
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    for wire in wires {
        let (rx, shared, http) = (rx.clone(), shared.clone(), http.clone());
        let mut stop = stop_rx.clone();
        tasks.spawn(async move {
            let mut sender = Sender { wire, http, ack };
            loop {
                // Never holds the queue while stopping: Ctrl-C is not kept waiting on input.
                let next = tokio::select! {
                    b = async { rx.lock().await.recv().await } => b,
                    _ = stop.wait_for(|s| *s) => None,
                };
                let Some(batch) = next else { break };
                if shared.stop.load(Ordering::SeqCst) {
                    break;
                }
                if let Err(e) = sender.send(&shared, &batch).await {
                    shared.fail(e);
                    break;
                }
            }
        });
    }
    let mut interrupted = false;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            done = tasks.join_next() => match done {
                None => break,
                Some(Err(e)) if !e.is_cancelled() => {
                    shared.fail(anyhow::anyhow!("a sender failed (a bug: please report it): {e}"));
                }
                Some(_) => {}
            },
            _ = tick.tick() => progress.update(shared),
            // The first Ctrl-C lets the batches in flight finish; a second abandons them (they
            // count as not acknowledged, so the resume position stays right).
            _ = tokio::signal::ctrl_c() => {
                if interrupted {
                    tasks.abort_all();
                } else {
                    interrupted = true;
                    shared.stop.store(true, Ordering::SeqCst);
                    let _ = stop_tx.send(true);
                }
            }
        }
    }
    // Unblocks the reader if it waits for room: what is still queued is dropped.
    rx.lock().await.close();
    Ok(interrupted)
}

struct Sender {
    wire: Option<WireClient>,
    http: Client,
    ack: Ack,
}

/// Refusals of the data itself (the lines are at fault), as opposed to the request.
fn data_refusal(e: &sluice_client::Error) -> bool {
    matches!(
        e.code(),
        Some(
            ErrorCode::InvalidField
                | ErrorCode::InvalidValue
                | ErrorCode::Unprocessable
                | ErrorCode::SeriesLimit
                | ErrorCode::InvalidLineProtocol
                | ErrorCode::InvalidJson
        )
    )
}

impl Sender {
    async fn post(&mut self, body: Vec<u8>, stamped: bool) -> sluice_client::Result<()> {
        match &mut self.wire {
            Some(conn) => {
                let answer = conn.frames(vec![body]).await?;
                answer
                    .into_iter()
                    .next()
                    .unwrap_or_else(|| Err(sluice_client::Error::Decode("no answer".into())))
                    .map(|_| ())
            }
            None => self
                .http
                .put_batch_encoded(body, Some(self.ack), stamped)
                .await
                .map(|_| ()),
        }
    }

    async fn send(&mut self, shared: &Shared, b: &Batch) -> anyhow::Result<()> {
        match self.post(b.body.clone(), b.stamped).await {
            Ok(()) => {
                shared.acknowledge(b, b.items.len() as u64);
                Ok(())
            }
            Err(e) if data_refusal(&e) => {
                // All or nothing: find the refused lines by sending each line on its own.
                let mut accepted = 0u64;
                let mut i = 0;
                while i < b.items.len() {
                    let line = b.items[i].0;
                    let mut j = i;
                    while j < b.items.len() && b.items[j].0 == line {
                        j += 1;
                    }
                    let body = self.single(b, &b.items[i..j]);
                    match self.post(body, b.stamped).await {
                        Ok(()) => accepted += (j - i) as u64,
                        Err(e) if data_refusal(&e) => shared.reject(
                            Pos {
                                input: b.input,
                                line,
                            },
                            describe(&e),
                            item_text(b, &b.items[i..j], self.wire.is_some()),
                        ),
                        Err(e) => return Err(anyhow::Error::new(e).context("sending a line")),
                    }
                    i = j;
                }
                shared.acknowledge(b, accepted);
                Ok(())
            }
            Err(e) => Err(anyhow::Error::new(e).context(format!(
                "sending lines {}..={} of {}",
                b.items.first().map_or(0, |i| i.0),
                b.last_line,
                shared.inputs[b.input]
            ))),
        }
    }

    /// A request holding only `items` of `b`.
    fn single(&self, b: &Batch, items: &[(u64, u32, u32)]) -> Vec<u8> {
        if self.wire.is_some() {
            let mut out = b.body[..HEADER_LEN + 4].to_vec();
            for &(_, s, e) in items {
                out.extend_from_slice(&b.body[s as usize..e as usize]);
            }
            let payload = (out.len() - HEADER_LEN) as u32;
            out[2..6].copy_from_slice(&payload.to_le_bytes());
            out[6..10].copy_from_slice(&(items.len() as u32).to_le_bytes());
            out
        } else {
            let mut out = b"{\"points\":[".to_vec();
            for (k, &(_, s, e)) in items.iter().enumerate() {
                if k > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(&b.body[s as usize..e as usize]);
            }
            out.extend_from_slice(b"]}");
            out
        }
    }
}

/// A server error as one line: message, code and error id.
pub fn describe(e: &sluice_client::Error) -> String {
    match e {
        sluice_client::Error::Api { body, .. } => format!(
            "{} (code {}, error_id {})",
            body.error,
            serde_json::to_value(body.code)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            body.error_id
        ),
        other => other.to_string(),
    }
}

/// What a refused line's points were, for the report (the source text is not kept).
fn item_text(b: &Batch, items: &[(u64, u32, u32)], wire: bool) -> String {
    let mut out = String::new();
    for &(_, s, e) in items {
        let bytes = &b.body[s as usize..e as usize];
        if !out.is_empty() {
            out.push(' ');
        }
        if wire {
            // metric, entity as text; the rest is binary.
            let mut r = sluice_wire::Reader::new(bytes);
            let mut str16 = || {
                let n = r.u16().map_or(0, usize::from);
                r.take(n).map(String::from_utf8_lossy).unwrap_or_default()
            };
            let metric = str16();
            let entity = str16();
            out.push_str(&format!("metric={metric:?} entity={entity:?}"));
        } else {
            out.push_str(&String::from_utf8_lossy(bytes));
        }
    }
    out
}

/// A line protocol series as parsed once: its entity, tags (JSON) and field → metric names.
struct LpSeries {
    measurement: String,
    entity: String,
    tags_json: Vec<u8>,
    metrics: Vec<(String, String)>,
}

/// Most distinct series texts kept; the cache is cleared beyond (bounded memory).
const SERIES_CACHE: usize = 200_000;

struct Reader<'s> {
    shared: &'s Shared,
    precision: Precision,
    series: HashMap<String, LpSeries>,
    out: Out<'s>,
}

/// The batch being filled and where sealed batches go.
struct Out<'s> {
    shared: &'s Shared,
    tx: tokio::sync::mpsc::Sender<Batch>,
    batch: usize,
    wire: bool,
    wire_buffered: bool,
    seq: u64,
    current: Option<Current>,
}

/// The batch being filled: its encoder, items, input, last line, and whether every point
/// has its own timestamp.
struct Current {
    enc: Encoder,
    items: Vec<(u64, u32, u32)>,
    input: usize,
    last_line: u64,
    stamped: bool,
}

/// Counts the bytes read from the underlying file (for progress and gzip inputs).
struct Counting<'s, R> {
    inner: R,
    count: &'s AtomicU64,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

fn format_of(path: &std::path::Path) -> Format {
    let name = path.to_string_lossy().to_ascii_lowercase();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    if name.ends_with(".csv") {
        Format::Csv
    } else if name.ends_with(".ndjson") || name.ends_with(".jsonl") || name.ends_with(".json") {
        Format::Ndjson
    } else {
        Format::Lp
    }
}

impl Reader<'_> {
    fn run(
        &mut self,
        files: &[PathBuf],
        format: Option<Format>,
        csv: &CsvMapping,
        resume: Option<Pos>,
    ) -> anyhow::Result<()> {
        for (input, path) in files.iter().enumerate() {
            let skip_through = match resume {
                Some(r) if input < r.input => continue,
                Some(r) if input == r.input => r.line,
                _ => 0,
            };
            let raw: Box<dyn Read + Send> = if path.as_os_str() == "-" {
                Box::new(std::io::stdin())
            } else {
                Box::new(File::open(path).with_context(|| format!("opening {}", path.display()))?)
            };
            let mut counted = BufReader::with_capacity(
                1 << 20,
                Counting {
                    inner: raw,
                    count: &self.shared.bytes_read,
                },
            );
            let gz = counted.fill_buf()?.starts_with(&[0x1f, 0x8b]);
            let mut stream: Box<dyn BufRead + '_> = if gz {
                Box::new(BufReader::with_capacity(
                    1 << 20,
                    flate2::bufread::MultiGzDecoder::new(counted),
                ))
            } else {
                Box::new(counted)
            };
            let format = format.unwrap_or_else(|| format_of(path));
            let result = match format {
                Format::Lp => self.lp(input, &mut stream, skip_through),
                Format::Ndjson => self.ndjson(input, &mut stream, skip_through),
                Format::Csv => self.csv(input, &mut stream, skip_through, csv),
            };
            result.with_context(|| format!("reading {}", path.display()))?;
            if self.stopped() {
                return Ok(());
            }
        }
        self.out.seal()
    }

    fn stopped(&self) -> bool {
        self.shared.stop.load(Ordering::Relaxed)
    }

    /// Skips lines 1..=`through` of `stream`; returns the lines skipped.
    fn skip_lines(stream: &mut dyn BufRead, through: u64) -> std::io::Result<u64> {
        let mut line = 0;
        while line < through {
            let buf = stream.fill_buf()?;
            if buf.is_empty() {
                break;
            }
            let mut used = buf.len();
            for (i, &c) in buf.iter().enumerate() {
                if c == b'\n' {
                    line += 1;
                    if line == through {
                        used = i + 1;
                        break;
                    }
                }
            }
            stream.consume(used);
        }
        Ok(line)
    }

    /// Line protocol, read in blocks of whole lines.
    fn lp(&mut self, input: usize, stream: &mut dyn BufRead, skip: u64) -> anyhow::Result<()> {
        let mut first_line = Self::skip_lines(stream, skip)? + 1;
        let mut block: Vec<u8> = Vec::with_capacity(2 << 20);
        loop {
            if self.stopped() {
                return Ok(());
            }
            // Fill a block of about 1 MiB ending at a newline (or the end of the input).
            let mut eof = false;
            while block.len() < 1 << 20 {
                let buf = stream.fill_buf()?;
                if buf.is_empty() {
                    eof = true;
                    break;
                }
                let n = buf.len();
                block.extend_from_slice(buf);
                stream.consume(n);
            }
            if !eof && !block.ends_with(b"\n") {
                stream.read_until(b'\n', &mut block)?;
            }
            if block.is_empty() {
                return Ok(());
            }
            match std::str::from_utf8(&block) {
                Ok(text) => {
                    self.lp_text(input, first_line, text)?;
                    first_line += newlines(&block);
                    block.clear();
                    if eof {
                        return Ok(());
                    }
                }
                Err(e) => {
                    // Refuse the line holding the bad bytes, parse the lines before it, keep
                    // the rest for the next round.
                    let bad = e.valid_up_to();
                    let start = block[..bad]
                        .iter()
                        .rposition(|&c| c == b'\n')
                        .map_or(0, |i| i + 1);
                    let end = block[bad..]
                        .iter()
                        .position(|&c| c == b'\n')
                        .map_or(block.len(), |i| bad + i + 1);
                    let line = first_line + newlines(&block[..start]);
                    self.shared.reject(
                        Pos { input, line },
                        "not UTF-8",
                        String::from_utf8_lossy(&block[start..end]).trim_end(),
                    );
                    let head = std::str::from_utf8(&block[..start]).unwrap_or_default();
                    self.lp_text(input, first_line, head)?;
                    first_line = line + 1;
                    block.drain(..end);
                }
            }
        }
    }

    /// Parses whole lines of line protocol starting at line `first_line`.
    fn lp_text(&mut self, input: usize, first_line: u64, mut text: &str) -> anyhow::Result<()> {
        let mut base = first_line;
        let mut fields = Vec::new();
        'restart: loop {
            let mut parser = sluice_lineproto::Parser::new(text);
            let mut lines = LineFinder::default();
            while let Some(line) = parser.next_line(&mut fields) {
                let line = match line {
                    Ok(l) => l,
                    Err(e) => {
                        // Report the line, then parse again after it.
                        let (start, end) = lines.bounds(text, e.line);
                        self.shared.reject(
                            Pos {
                                input,
                                line: base + e.line as u64 - 1,
                            },
                            format!("column {}: {}", e.column, e.reason),
                            text[start..end].trim_end(),
                        );
                        text = &text[end..];
                        base += e.line as u64;
                        continue 'restart;
                    }
                };
                let number = base + line.number as u64 - 1;
                self.shared.lines.fetch_add(1, Ordering::Relaxed);
                let ts = match line.timestamp {
                    Some(t) => match self.precision.to_millis(t) {
                        Some(ms) => ms,
                        None => {
                            let (s, e) = lines.bounds(text, line.number);
                            self.shared.reject(
                                Pos {
                                    input,
                                    line: number,
                                },
                                format!(
                                    "timestamp {t} is out of range in precision {:?}",
                                    self.precision
                                ),
                                text[s..e].trim_end(),
                            );
                            continue;
                        }
                    },
                    None => TIMESTAMP_NOW,
                };
                if !self.series.contains_key(line.series_text) {
                    let parsed = match line.series() {
                        Ok(s) => s,
                        Err(e) => {
                            let (s, en) = lines.bounds(text, line.number);
                            self.shared.reject(
                                Pos {
                                    input,
                                    line: number,
                                },
                                format!("column {}: {}", e.column, e.reason),
                                text[s..en].trim_end(),
                            );
                            continue;
                        }
                    };
                    let sluice_lineproto::SluiceSeries {
                        measurement,
                        entity,
                        tags,
                    } = parsed.into_sluice();
                    let tags_json = if tags.is_empty() {
                        Vec::new()
                    } else {
                        serde_json::to_vec(&tags.into_iter().collect::<BTreeMap<_, _>>())?
                    };
                    if self.series.len() >= SERIES_CACHE {
                        self.series.clear();
                    }
                    self.series.insert(
                        line.series_text.to_string(),
                        LpSeries {
                            measurement,
                            entity,
                            tags_json,
                            metrics: Vec::new(),
                        },
                    );
                }
                let s = self
                    .series
                    .get_mut(line.series_text)
                    .expect("inserted above");
                for f in fields.iter() {
                    let value = match f.value {
                        FieldValue::Float(v) => v,
                        FieldValue::Integer(v) => v as f64,
                        FieldValue::UInteger(v) => v as f64,
                        FieldValue::Boolean(b) => f64::from(u8::from(b)),
                        FieldValue::String(_) => {
                            self.shared.skipped_fields.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                    };
                    let metric = match s.metrics.iter().position(|(k, _)| k == f.key.as_ref()) {
                        Some(i) => i,
                        None => {
                            let m = sluice_lineproto::metric_name(&s.measurement, &f.key);
                            s.metrics.push((f.key.to_string(), m));
                            s.metrics.len() - 1
                        }
                    };
                    self.out.push(
                        input,
                        number,
                        &s.metrics[metric].1,
                        &s.entity,
                        ts,
                        value,
                        &s.tags_json,
                    )?;
                }
                self.out.seal_if_full()?;
            }
            return Ok(());
        }
    }

    /// NDJSON: one `DataPoint` per line.
    fn ndjson(&mut self, input: usize, stream: &mut dyn BufRead, skip: u64) -> anyhow::Result<()> {
        let mut number = Self::skip_lines(stream, skip)?;
        let mut line = String::new();
        loop {
            if self.stopped() {
                return Ok(());
            }
            line.clear();
            let mut raw = Vec::new();
            if stream.read_until(b'\n', &mut raw)? == 0 {
                return Ok(());
            }
            number += 1;
            let pos = Pos {
                input,
                line: number,
            };
            match String::from_utf8(raw) {
                Ok(s) => line = s,
                Err(e) => {
                    self.shared
                        .reject(pos, "not UTF-8", String::from_utf8_lossy(e.as_bytes()));
                    continue;
                }
            }
            let text = line.trim();
            if text.is_empty() {
                continue;
            }
            self.shared.lines.fetch_add(1, Ordering::Relaxed);
            match serde_json::from_str::<DataPoint>(text) {
                Ok(p) => {
                    let tags = if p.tags.is_empty() {
                        Vec::new()
                    } else {
                        serde_json::to_vec(&p.tags)?
                    };
                    self.out.push(
                        input,
                        number,
                        &p.metric,
                        &p.entity,
                        p.timestamp_ms.unwrap_or(TIMESTAMP_NOW),
                        p.value,
                        &tags,
                    )?;
                    self.out.seal_if_full()?;
                }
                Err(e) => self.shared.reject(pos, format!("not a point: {e}"), text),
            }
        }
    }

    /// CSV with a header row, mapped by `m`.
    fn csv(
        &mut self,
        input: usize,
        stream: &mut dyn BufRead,
        skip: u64,
        m: &CsvMapping,
    ) -> anyhow::Result<()> {
        anyhow::ensure!(
            m.delimiter.is_ascii(),
            "--delimiter must be one ASCII character"
        );
        let mut rdr = csv::ReaderBuilder::new()
            .delimiter(m.delimiter as u8)
            .flexible(true)
            .from_reader(stream);
        let header: Vec<String> = rdr.headers()?.iter().map(str::to_string).collect();
        let map = CsvColumns::new(&header, m)?;
        let mut record = csv::StringRecord::new();
        loop {
            if self.stopped() {
                return Ok(());
            }
            let more = match rdr.read_record(&mut record) {
                Ok(more) => more,
                Err(e) => {
                    let line = e.position().map_or(0, |p| p.line());
                    self.shared
                        .reject(Pos { input, line }, format!("not CSV: {e}"), "");
                    if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                        return Err(e.into());
                    }
                    continue;
                }
            };
            if !more {
                return Ok(());
            }
            let line = record.position().map_or(0, |p| p.line());
            if line <= skip {
                continue;
            }
            self.shared.lines.fetch_add(1, Ordering::Relaxed);
            let pos = Pos { input, line };
            match map.points(&record) {
                Ok(points) => {
                    for (metric, entity, ts, value, tags) in points {
                        self.out
                            .push(input, line, &metric, &entity, ts, value, &tags)?;
                    }
                    self.out.seal_if_full()?;
                }
                Err(reason) => {
                    let text = record
                        .iter()
                        .collect::<Vec<_>>()
                        .join(&m.delimiter.to_string());
                    self.shared.reject(pos, reason, text);
                }
            }
        }
    }
}

/// A batch's encoded size at most (plus one line's points): well under the server's request
/// and frame limits (32 MiB by default).
const MAX_BATCH_BYTES: usize = 8 << 20;

impl Out<'_> {
    /// Seals the batch at `--batch` points or [`MAX_BATCH_BYTES`] (long tags or names must not
    /// make a batch the server refuses as too large).
    fn seal_if_full(&mut self) -> anyhow::Result<()> {
        if self.current.as_ref().is_some_and(|c| {
            c.items.len() >= self.batch
                || match &c.enc {
                    Encoder::Wire(b) => b.bytes(),
                    Encoder::Json(body) => body.len(),
                } >= MAX_BATCH_BYTES
        }) {
            self.seal()?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        input: usize,
        line: u64,
        metric: &str,
        entity: &str,
        ts: i64,
        value: f64,
        tags_json: &[u8],
    ) -> anyhow::Result<()> {
        if self.current.as_ref().is_some_and(|c| c.input != input) {
            self.seal()?;
        }
        let (wire, buffered, batch) = (self.wire, self.wire_buffered, self.batch);
        let cur = self.current.get_or_insert_with(|| Current {
            enc: if wire {
                Encoder::Wire(TsFrameBuilder::new(buffered, batch * 48))
            } else {
                Encoder::Json(b"{\"points\":[".to_vec())
            },
            items: Vec::with_capacity(batch),
            input,
            last_line: line,
            stamped: true,
        });
        cur.last_line = line;
        cur.stamped &= ts != TIMESTAMP_NOW;
        match &mut cur.enc {
            Encoder::Wire(b) => {
                let start = b.bytes() as u32;
                if let Err(e) = b.push(metric, entity, ts, value, tags_json) {
                    self.shared
                        .reject(Pos { input, line }, e.to_string(), metric);
                    return Ok(());
                }
                cur.items.push((line, start, b.bytes() as u32));
            }
            Encoder::Json(body) => {
                if !cur.items.is_empty() {
                    body.push(b',');
                }
                let start = body.len() as u32;
                body.extend_from_slice(b"{\"metric\":");
                serde_json::to_writer(&mut *body, metric)?;
                body.extend_from_slice(b",\"entity\":");
                serde_json::to_writer(&mut *body, entity)?;
                if ts != TIMESTAMP_NOW {
                    write!(body, ",\"timestamp_ms\":{ts}")?;
                }
                body.extend_from_slice(b",\"value\":");
                if value.is_finite() {
                    serde_json::to_writer(&mut *body, &value)?;
                } else {
                    body.extend_from_slice(b"null");
                }
                if !tags_json.is_empty() {
                    body.extend_from_slice(b",\"tags\":");
                    body.extend_from_slice(tags_json);
                }
                body.push(b'}');
                cur.items.push((line, start, body.len() as u32));
            }
        }
        Ok(())
    }

    /// Sends the current batch (waiting while the senders are busy).
    fn seal(&mut self) -> anyhow::Result<()> {
        let Some(Current {
            enc,
            items,
            input,
            last_line,
            stamped,
        }) = self.current.take()
        else {
            return Ok(());
        };
        if items.is_empty() {
            return Ok(());
        }
        let body = match enc {
            Encoder::Wire(b) => b.finish()?,
            Encoder::Json(mut body) => {
                body.extend_from_slice(b"]}");
                body
            }
        };
        self.seq += 1;
        let batch = Batch {
            seq: self.seq - 1,
            body,
            items,
            input,
            last_line,
            stamped,
        };
        if self.tx.blocking_send(batch).is_err() {
            // The senders stopped (an error or Ctrl-C): the import is over.
            self.shared.stop.store(true, Ordering::SeqCst);
        }
        Ok(())
    }
}

fn newlines(b: &[u8]) -> u64 {
    b.iter().filter(|&&c| c == b'\n').count() as u64
}

/// Finds lines of one text by number, scanning on from the last one found: refusals come in
/// line order, so a block costs one pass however many of its lines are refused.
#[derive(Default)]
struct LineFinder {
    /// The 1-based number of the line starting at `start` (0: none found yet).
    n: usize,
    start: usize,
}

impl LineFinder {
    /// Byte range of 1-based line `n` of `text` (its newline included).
    fn bounds(&mut self, text: &str, n: usize) -> (usize, usize) {
        if self.n == 0 || n < self.n {
            (self.n, self.start) = (1, 0);
        }
        while self.n < n {
            match text[self.start..].find('\n') {
                Some(i) => (self.n, self.start) = (self.n + 1, self.start + i + 1),
                None => return (text.len(), text.len()),
            }
        }
        let end = text[self.start..]
            .find('\n')
            .map_or(text.len(), |i| self.start + i + 1);
        (self.start, end)
    }
}

/// CSV columns resolved against the header.
struct CsvColumns {
    metric: Option<usize>,
    metric_name: Option<String>,
    entity: Option<usize>,
    time: Option<usize>,
    time_format: String,
    values: Vec<(usize, String)>,
    tags_json: Option<usize>,
    tags: Vec<(usize, String)>,
}

type CsvPoint = (String, String, i64, f64, Vec<u8>);

impl CsvColumns {
    fn new(header: &[String], m: &CsvMapping) -> anyhow::Result<CsvColumns> {
        let find = |name: &str| -> anyhow::Result<usize> {
            if let Some(i) = header.iter().position(|h| h == name) {
                return Ok(i);
            }
            match name.parse::<usize>() {
                Ok(n) if n >= 1 && n <= header.len() => Ok(n - 1),
                _ => bail!("no CSV column {name:?} (header: {})", header.join(",")),
            }
        };
        let default = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| header.iter().position(|h| h == n))
        };
        let metric = match &m.metric_column {
            Some(c) => Some(find(c)?),
            None if m.metric.is_none() => default(&["metric"]),
            None => None,
        };
        let entity = match &m.entity_column {
            Some(c) => Some(find(c)?),
            None => default(&["entity"]),
        };
        let time = match &m.time_column {
            Some(c) => Some(find(c)?),
            None => default(&["timestamp_ms", "time", "timestamp"]),
        };
        anyhow::ensure!(
            ["ms", "s", "us", "ns", "rfc3339"].contains(&m.time_format.as_str()),
            "--time-format {:?}: use ms, s, us, ns or rfc3339",
            m.time_format
        );
        let values: Vec<(usize, String)> = if m.value_columns.is_empty() {
            let v =
                default(&["value"]).context("no `value` column: name it with --value-column")?;
            vec![(v, String::new())]
        } else {
            let several = m.value_columns.len() > 1;
            m.value_columns
                .iter()
                .map(|c| {
                    let i = find(c)?;
                    // Several value columns: each names its metric.
                    let name = if several || metric.is_none() && m.metric.is_none() {
                        header[i].clone()
                    } else {
                        String::new()
                    };
                    Ok((i, name))
                })
                .collect::<anyhow::Result<_>>()?
        };
        anyhow::ensure!(
            metric.is_some() || m.metric.is_some() || values.iter().all(|(_, n)| !n.is_empty()),
            "no metric: give --metric NAME or --metric-column COLUMN"
        );
        let mapped: Vec<usize> = [metric, entity, time]
            .into_iter()
            .flatten()
            .chain(values.iter().map(|v| v.0))
            .collect();
        let tags_json = if m.tag_columns.is_empty() {
            default(&["tags"]).filter(|i| !mapped.contains(i))
        } else {
            None
        };
        let tags: Vec<(usize, String)> = if m.tag_columns.is_empty() {
            if tags_json.is_some() {
                Vec::new()
            } else {
                (0..header.len())
                    .filter(|i| !mapped.contains(i))
                    .map(|i| (i, header[i].clone()))
                    .collect()
            }
        } else {
            m.tag_columns
                .iter()
                .map(|c| find(c).map(|i| (i, header[i].clone())))
                .collect::<anyhow::Result<_>>()?
        };
        Ok(CsvColumns {
            metric,
            metric_name: m.metric.clone(),
            entity,
            time,
            time_format: m.time_format.clone(),
            values,
            tags_json,
            tags,
        })
    }

    fn points(&self, r: &csv::StringRecord) -> Result<Vec<CsvPoint>, String> {
        let get = |i: usize| r.get(i).unwrap_or("");
        let ts = match self.time.map(get) {
            None | Some("") => TIMESTAMP_NOW,
            Some(t) => parse_time(t, &self.time_format)?,
        };
        let entity = self.entity.map(get).unwrap_or("").to_string();
        let tags_json = match self.tags_json {
            Some(i) if !get(i).is_empty() => {
                let tags: BTreeMap<String, String> = serde_json::from_str(get(i))
                    .map_err(|e| format!("column tags is not a JSON object of strings: {e}"))?;
                if tags.is_empty() {
                    Vec::new()
                } else {
                    serde_json::to_vec(&tags).map_err(|e| e.to_string())?
                }
            }
            _ => {
                let tags: BTreeMap<&str, &str> = self
                    .tags
                    .iter()
                    .filter(|(i, _)| !get(*i).is_empty())
                    .map(|(i, k)| (k.as_str(), get(*i)))
                    .collect();
                if tags.is_empty() {
                    Vec::new()
                } else {
                    serde_json::to_vec(&tags).map_err(|e| e.to_string())?
                }
            }
        };
        let mut out = Vec::with_capacity(self.values.len());
        for (i, name) in &self.values {
            let raw = get(*i);
            if raw.is_empty() {
                continue;
            }
            let value: f64 = raw
                .trim()
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite())
                .ok_or_else(|| format!("{raw:?} is not a finite number"))?;
            let metric = match (self.metric.map(get), &self.metric_name, name.is_empty()) {
                (Some(m), _, true) => m.to_string(),
                (_, Some(prefix), false) => format!("{prefix}_{name}"),
                (Some(prefix), None, false) if !prefix.is_empty() => format!("{prefix}_{name}"),
                (_, Some(m), true) => m.clone(),
                (_, None, false) => name.clone(),
                (None, None, true) => return Err("no metric".into()),
            };
            out.push((metric, entity.clone(), ts, value, tags_json.clone()));
        }
        Ok(out)
    }
}

fn parse_time(t: &str, format: &str) -> Result<i64, String> {
    let t = t.trim();
    if format == "rfc3339" {
        return t
            .parse::<jiff::Timestamp>()
            .map(|ts| ts.as_millisecond())
            .map_err(|e| format!("{t:?} is not an RFC 3339 time: {e}"));
    }
    // Integers exactly (a nanosecond epoch is beyond f64's 2^53); fractions through f64.
    if let Ok(i) = t.parse::<i64>() {
        return Ok(match format {
            "s" => i
                .checked_mul(1000)
                .ok_or_else(|| format!("{t:?} is out of range"))?,
            "us" => i.div_euclid(1000),
            "ns" => i.div_euclid(1_000_000),
            _ => i,
        });
    }
    let n: f64 = t
        .parse()
        .map_err(|_| format!("{t:?} is not a {format} timestamp"))?;
    let ms = match format {
        "s" => n * 1e3,
        "us" => n / 1e3,
        "ns" => n / 1e6,
        _ => n,
    };
    if !ms.is_finite() || ms.abs() > 9.2e18 {
        return Err(format!("{t:?} is out of range"));
    }
    Ok(ms.floor() as i64)
}

/// The progress bar (hidden when stderr is not a terminal or with `--quiet`).
struct Progress {
    bar: indicatif::ProgressBar,
    started: Instant,
}

impl Progress {
    fn new(quiet: bool, total: u64) -> Progress {
        let target = if quiet {
            indicatif::ProgressDrawTarget::hidden()
        } else {
            indicatif::ProgressDrawTarget::stderr_with_hz(5)
        };
        let bar = if total > 0 {
            indicatif::ProgressBar::with_draw_target(Some(total), target)
        } else {
            indicatif::ProgressBar::with_draw_target(None, target)
        };
        let template = if total > 0 {
            "{spinner} {elapsed_precise} [{wide_bar}] {bytes}/{total_bytes}  {msg}  ETA {eta}"
        } else {
            "{spinner} {elapsed_precise} {bytes}  {msg}"
        };
        if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        Progress {
            bar,
            started: Instant::now(),
        }
    }

    fn update(&self, s: &Shared) {
        let points = s.points.load(Ordering::Relaxed);
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        self.bar.set_position(s.bytes_read.load(Ordering::Relaxed));
        self.bar.set_message(format!(
            "{} points, {}/s",
            human(points as f64),
            human(points as f64 / secs)
        ));
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// 1234567 → "1.23M".
fn human(n: f64) -> String {
    if n >= 1e9 {
        format!("{:.2}G", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.2}M", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1}k", n / 1e3)
    } else {
        format!("{n:.0}")
    }
}

fn summary(
    a: &ImportArgs,
    shared: &Shared,
    started: Instant,
    interrupted: bool,
) -> anyhow::Result<std::process::ExitCode> {
    let secs = started.elapsed().as_secs_f64();
    let points = shared.points.load(Ordering::Relaxed);
    let lines = shared.lines.load(Ordering::Relaxed);
    let (refused, mut rejects, file, file_error) = {
        let mut r = shared
            .rejects
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        (
            r.count,
            std::mem::take(&mut r.kept),
            r.file.take(),
            r.file_error.take(),
        )
    };
    rejects.sort_by_key(|r| r.pos);
    let err = &mut std::io::stderr();
    writeln!(
        err,
        "imported {points} points from {lines} lines in {secs:.1} s ({} points/s); {} lines refused{}",
        human(points as f64 / secs.max(1e-3)),
        refused,
        match shared.skipped_fields.load(Ordering::Relaxed) {
            0 => String::new(),
            n => format!("; {n} string fields skipped"),
        }
    )?;
    const SHOWN: usize = 20;
    for r in rejects.iter().take(SHOWN) {
        writeln!(
            err,
            "  {}:{}: {}: {}",
            shared.inputs[r.pos.input], r.pos.line, r.reason, r.text
        )?;
    }
    if refused > SHOWN as u64 {
        writeln!(
            err,
            "  … and {} more{}",
            refused - SHOWN as u64,
            if a.rejects.is_none() {
                " (--rejects FILE lists them all)"
            } else {
                ""
            }
        )?;
    }
    let file_error = file_error.or_else(|| file.and_then(|mut f| f.flush().err()));
    if let (Some(e), Some(path)) = (&file_error, &a.rejects) {
        writeln!(err, "sluice: could not write {}: {e}", path.display())?;
    }
    let fatal = shared
        .fatal
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    if fatal.is_some() || interrupted {
        if let Some(e) = &fatal {
            writeln!(err, "sluice: import stopped: {e:#}")?;
        } else {
            writeln!(err, "sluice: import interrupted")?;
        }
        let through = shared
            .acked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .through;
        match through {
            Some((input, line)) => writeln!(
                err,
                "every line through {}:{line} is imported; resume with: --resume {}:{line}",
                shared.inputs[input], shared.inputs[input]
            )?,
            None => writeln!(
                err,
                "no leading part of the input was acknowledged; run the import again (points without a timestamp may be written twice)"
            )?,
        }
        return Ok(std::process::ExitCode::from(2));
    }
    Ok(if refused == 0 && file_error.is_none() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use super::LineFinder;

    #[test]
    fn line_finder_finds_lines_in_order_out_of_order_and_past_the_end() {
        let text = "a\nbb\n\nccc\nlast";
        let mut f = LineFinder::default();
        let line = |f: &mut LineFinder, n| {
            let (s, e) = f.bounds(text, n);
            &text[s..e]
        };
        assert_eq!(line(&mut f, 2), "bb\n");
        assert_eq!(line(&mut f, 2), "bb\n");
        assert_eq!(line(&mut f, 3), "\n");
        assert_eq!(line(&mut f, 5), "last");
        assert_eq!(line(&mut f, 1), "a\n");
        assert_eq!(line(&mut f, 4), "ccc\n");
        assert_eq!(line(&mut f, 9), "");
    }
}

#[cfg(test)]
mod time_tests {
    use super::parse_time;

    #[test]
    fn integer_timestamps_convert_exactly_in_every_unit() {
        // Beyond f64's 2^53: a float parse would shift some of these by a millisecond.
        for ms in 1_714_557_600_000i64..1_714_557_602_000 {
            let ns = (ms * 1_000_000 + 999_999).to_string();
            assert_eq!(parse_time(&ns, "ns"), Ok(ms));
        }
        assert_eq!(parse_time("1700000000123456", "us"), Ok(1_700_000_000_123));
        assert_eq!(parse_time("-1", "ns"), Ok(-1));
        assert_eq!(parse_time("1700000000", "s"), Ok(1_700_000_000_000));
        assert_eq!(parse_time("1700000000.5", "s"), Ok(1_700_000_000_500));
        assert_eq!(parse_time("1700000000123", "ms"), Ok(1_700_000_000_123));
        assert!(parse_time("9223372036854775807", "s").is_err());
        assert!(parse_time("soon", "ms").is_err());
        assert_eq!(
            parse_time("2024-05-01T10:00:00.002Z", "rfc3339"),
            Ok(1_714_557_600_002)
        );
    }
}
