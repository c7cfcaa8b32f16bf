//! `sluice`: the server and its command-line tools.
//!
//! `sluice serve` runs the server (defaults ← `--config` file ← `SLUICE_*` env ← flags);
//! `sluice config print` prints the effective configuration as TOML; `sluice openapi` prints
//! the OpenAPI document the server serves at `/openapi.json`; `put`, `query`, `import`,
//! `export`, `db`, `collection` and `status` talk to a running server (docs/cli.md);
//! `sluice token hash|create` make the token file's entries; `completions` prints shell
//! completion scripts.

/// `println!` that returns the write's `io::Result` instead of panicking, so that `sluice … |
/// head` ends quietly (`main` treats a broken pipe as success) and other errors are reported.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}

mod client_cmds;
mod import;
mod manage;

/// mimalloc instead of glibc's allocator: the server allocates and frees per request and per
/// query (decoded samples, label sets, response bodies) from many threads, where glibc's
/// arenas spent a quarter of the remote-write profile in `malloc_consolidate`/`unlink_chunk`
/// and returned memory to the kernel only to fault it back in on the next query.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use sluice_server::config::{Config, LogFormat, Overrides};

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "Sluice: time series and vectors behind one fast front door"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(ConfigArgs),
    /// Inspect the configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Print the OpenAPI 3.1 document of the HTTP API.
    Openapi,
    /// Write one point to a running server.
    Put(client_cmds::PutArgs),
    /// Query a running server.
    Query(client_cmds::QueryArgs),
    /// Load line protocol, CSV or NDJSON files (or stdin; gzip or not) into a running server.
    Import(import::ImportArgs),
    /// Export points as NDJSON (what `import` reads back), CSV, Parquet or Arrow.
    Export(manage::ExportArgs),
    /// Databases of a running server.
    Db {
        #[command(subcommand)]
        command: manage::DbCommand,
    },
    /// Vector collections of a running server.
    Collection {
        #[command(subcommand)]
        command: manage::CollectionCommand,
    },
    /// A running server on one screen: role, databases, buffers, replicas and their lag.
    Status(client_cmds::ServerArg),
    /// Print a shell completion script (bash, zsh, fish, elvish or powershell).
    Completions { shell: clap_complete::Shell },
    /// Bearer token tools.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Print `sha256:<hex>` of a token read from stdin, for the token file (so the file holds
    /// no secret in the clear).
    Hash,
    /// Print a new random token and its entry for the tokens file (its digest only).
    Create {
        /// The actor's name in the tokens file.
        #[arg(long, default_value = "client")]
        name: String,
        /// reader, writer or admin.
        #[arg(long, default_value = "reader", value_parser = ["reader", "writer", "admin"])]
        role: String,
        /// The database the role applies to (`*`: all).
        #[arg(long, default_value = "*")]
        db: String,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration (defaults, file, env, flags) as TOML.
    Print(ConfigArgs),
}

/// The flags that override configuration (each also a `SLUICE_*` env var and a config key).
#[derive(Args)]
struct ConfigArgs {
    /// TOML configuration file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory [key: data_dir, env: SLUICE_DATA_DIR].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// HTTP listen address [key: http.addr, env: SLUICE_HTTP_ADDR].
    #[arg(long, value_name = "HOST:PORT")]
    http_addr: Option<SocketAddr>,
    /// Wire protocol listen address [key: wire.addr, env: SLUICE_WIRE_ADDR].
    #[arg(long, value_name = "HOST:PORT")]
    wire_addr: Option<SocketAddr>,
    /// Allow binding a non-loopback address with authentication off
    /// [key: unauthenticated, env: SLUICE_UNAUTHENTICATED].
    #[arg(long)]
    unauthenticated: bool,
    /// `primary` or `replica` (read-only, applies a primary's WAL) [key: role, env: SLUICE_ROLE].
    #[arg(long, value_name = "ROLE", value_parser = parse_role)]
    role: Option<sluice_server::config::Role>,
}

fn parse_role(s: &str) -> Result<sluice_server::config::Role, String> {
    match s {
        "primary" => Ok(sluice_server::config::Role::Primary),
        "replica" => Ok(sluice_server::config::Role::Replica),
        _ => Err("expected primary or replica".into()),
    }
}

impl ConfigArgs {
    fn load(&self) -> anyhow::Result<Config> {
        let overrides = Overrides {
            data_dir: self.data_dir.clone(),
            http_addr: self.http_addr,
            wire_addr: self.wire_addr,
            unauthenticated: self.unauthenticated,
            role: self.role,
        };
        Ok(Config::load(
            self.config.as_deref(),
            env_vars()?,
            &overrides,
        )?)
    }
}

/// The environment as strings; variables that are not UTF-8 are skipped unless they are ours.
fn env_vars() -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (k, v) in std::env::vars_os() {
        match (k.into_string(), v.into_string()) {
            (Ok(k), Ok(v)) => out.push((k, v)),
            (Ok(k), Err(_)) if k.starts_with("SLUICE_") => {
                anyhow::bail!("environment variable {k} is not valid UTF-8")
            }
            _ => {}
        }
    }
    Ok(out)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(&args),
        Command::Config {
            command: ConfigCommand::Print(args),
        } => args
            .load()
            .and_then(|c| Ok(outln!("{}", c.to_toml().trim_end())?)),
        Command::Openapi => outln!("{}", sluice_server::router::openapi_json()).map_err(Into::into),
        Command::Put(args) => client_runtime().and_then(|rt| rt.block_on(client_cmds::put(args))),
        Command::Query(args) => {
            client_runtime().and_then(|rt| rt.block_on(client_cmds::query(args)))
        }
        Command::Import(args) => {
            return import::import(args).unwrap_or_else(|e| {
                eprintln!("sluice: error: {e:#}");
                ExitCode::from(2)
            });
        }
        Command::Export(args) => client_runtime().and_then(|rt| rt.block_on(manage::export(args))),
        Command::Db { command } => client_runtime().and_then(|rt| rt.block_on(manage::db(command))),
        Command::Collection { command } => {
            client_runtime().and_then(|rt| rt.block_on(manage::collection(command)))
        }
        Command::Status(server) => {
            client_runtime().and_then(|rt| rt.block_on(manage::status(server)))
        }
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(
                shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "sluice",
                &mut script,
            );
            std::io::Write::write_all(&mut std::io::stdout().lock(), &script).map_err(Into::into)
        }
        Command::Token {
            command: TokenCommand::Hash,
        } => token_hash(),
        Command::Token {
            command: TokenCommand::Create { name, role, db },
        } => manage::token_create(&name, &role, &db),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // `sluice export | head`: the reader left; not an error.
        Err(e) if e.chain().any(is_broken_pipe) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("sluice: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A write to a stdout whose reader has gone, directly or through the CSV writer.
fn is_broken_pipe(e: &(dyn std::error::Error + 'static)) -> bool {
    let io = e.downcast_ref::<std::io::Error>().or_else(|| {
        e.downcast_ref::<csv::Error>().and_then(|c| match c.kind() {
            csv::ErrorKind::Io(io) => Some(io),
            _ => None,
        })
    });
    io.is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}

fn token_hash() -> anyhow::Result<()> {
    let mut token = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut token)
        .context("reading the token from stdin")?;
    let token = token.trim_end_matches(['\r', '\n']);
    anyhow::ensure!(!token.is_empty(), "no token on stdin");
    outln!("{}", sluice_server::auth::tokens::hashed_form(token))?;
    Ok(())
}

pub(crate) fn client_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn serve(args: &ConfigArgs) -> anyhow::Result<()> {
    let config = args.load()?;
    init_logging(&config)?;
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all().thread_name("sluice-worker");
    if config.http.network_threads > 0 {
        runtime.worker_threads(config.http.network_threads);
    }
    let runtime = runtime.build().context("starting the async runtime")?;
    runtime.block_on(sluice_server::run(config, shutdown_signal()))?;
    Ok(())
}

fn init_logging(config: &Config) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.level)
        .with_context(|| format!("log.level {:?} is not a valid filter", config.log.level))?;
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match config.log.format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
    }
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the server");
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
