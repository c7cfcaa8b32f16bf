//! The connection loop: hyper-util's HTTP/1.1 + HTTP/2 (prior knowledge) server with explicit
//! timeouts and a connection cap, and graceful shutdown.
//!
//! - `header_read_timeout_ms` bounds the time to receive a request head, including the idle
//!   wait for the next request on a keep-alive connection (hyper starts the timer when it
//!   begins reading a head). Before that, the same deadline bounds the protocol sniffing: a
//!   connection that sends nothing (or a partial HTTP/2 preface) is closed, so silent clients
//!   cannot hold connection slots.
//! - HTTP/2 connections are pinged every `header_read_timeout_ms`; a peer that does not answer
//!   within it is dropped.
//! - At most `max_connections` connections are served; further clients wait in the kernel's
//!   accept backlog rather than consume memory here.
//! - With `tls_cert_file`/`tls_key_file` configured, connections are TLS 1.3 only (rustls,
//!   ring provider); ALPN offers `h2` and `http/1.1` and the negotiated one is served. The
//!   handshake must finish within `header_read_timeout_ms`.
//! - On shutdown the listener closes, every connection finishes its in-flight requests (HTTP/1
//!   stops keep-alive, HTTP/2 sends GOAWAY), and after `shutdown_grace_ms` the connection tasks
//!   still running are aborted.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::Layer as _;

use crate::config::HttpConfig;

/// Lets a handler close its request's connection (a changefeed whose subscriber stopped
/// reading: hyper never polls a body whose socket is full, so only closing ends it).
#[derive(Clone, Default)]
pub struct ConnectionCloser(Arc<tokio::sync::Notify>);

impl ConnectionCloser {
    pub fn close(&self) {
        self.0.notify_one();
    }

    async fn closed(&self) {
        self.0.notified().await;
    }
}

/// The TLS acceptor the configuration asks for (`None` = plain TCP).
pub fn tls_acceptor(c: &HttpConfig) -> Result<Option<TlsAcceptor>, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls;
    if c.tls_cert_file.is_empty() {
        return Ok(None);
    }
    let certs = CertificateDer::pem_file_iter(&c.tls_cert_file)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", c.tls_cert_file))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate found", c.tls_cert_file));
    }
    let key = PrivateKeyDer::from_pem_file(&c.tls_key_file)
        .map_err(|e| format!("{}: {e}", c.tls_key_file))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Some(TlsAcceptor::from(Arc::new(config))))
}

/// Serves `app` on `listener` until `shutdown` completes, then drains.
pub async fn serve(
    listener: TcpListener,
    app: crate::http::middleware::FrontDoor,
    config: &HttpConfig,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    let head_timeout = Duration::from_millis(config.header_read_timeout_ms);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(head_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(head_timeout)
        .keep_alive_timeout(head_timeout);
    let mut connections = JoinSet::new();
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(config.max_connections));
    tokio::pin!(shutdown);

    loop {
        while connections.try_join_next().is_some() {}
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        let app = app.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        connections.spawn(async move {
            let _permit = permit;
            if let Some(acceptor) = tls {
                let Ok(Ok(stream)) =
                    tokio::time::timeout(head_timeout, acceptor.accept(stream)).await
                else {
                    return;
                };
                let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
                let builder = if h2 {
                    builder.http2_only()
                } else {
                    builder.http1_only()
                };
                let closer = ConnectionCloser::default();
                let service = TowerToHyperService::new(axum::Extension(closer.clone()).layer(app));
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                tokio::select! {
                    _ = watcher.watch(conn.into_owned()) => {}
                    () = closer.closed() => {}
                }
                return;
            }
            if !protocol_known_within(&stream, head_timeout).await {
                return;
            }
            let closer = ConnectionCloser::default();
            let service = TowerToHyperService::new(axum::Extension(closer.clone()).layer(app));
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            tokio::select! {
                _ = watcher.watch(conn.into_owned()) => {}
                () = closer.closed() => {}
            }
        });
    }
    drop(listener);

    let grace = Duration::from_millis(config.shutdown_grace_ms);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections drained"),
        () = tokio::time::sleep(grace) => {
            tracing::warn!(grace_ms = config.shutdown_grace_ms, "shutdown grace elapsed; cutting remaining connections");
        }
    }
    connections.abort_all();
    while connections.join_next().await.is_some() {}
}

/// Waits until the first bytes tell HTTP/1 from HTTP/2 (prior knowledge), within `deadline`.
/// False if the peer closed, failed, or stayed silent.
async fn protocol_known_within(stream: &TcpStream, deadline: Duration) -> bool {
    const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let mut buf = [0u8; 24];
    let sniff = async {
        loop {
            let n = match stream.peek(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => n,
            };
            if n == PREFACE.len() || buf[..n] != PREFACE[..n] {
                return true;
            }
            // A partial HTTP/2 preface: peek would return at once again; wait for the rest.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(deadline, sniff).await.unwrap_or(false)
}
