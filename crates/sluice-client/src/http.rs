//! The HTTP transport: typed methods for every route.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sluice_api::ErrorBody;
use sluice_api::database::{CreateDatabase, DatabaseInfo, DatabaseList, DeleteDatabaseResponse};
use sluice_api::replication::{
    PromoteResponse, RemoveReplicaResponse, ReplicaInfo, ReplicaList, ReplicationConfigRequest,
    ReplicationConfigResponse, ReplicationStats, WalApplyRequest, WalApplyResponse,
};
use sluice_api::ts::{
    Ack, BatchPutRequest, BatchPutResponse, BufferStats, BufferedPutResponse, DataPoint,
    ExportRequest, FlushResponse, PutResponse, QueryRequest, QueryResponse,
};
use sluice_api::vector::{
    AddResponse, BatchAddRequest, BatchAddResponse, BufferedVectorResponse, CollectionInfo,
    CollectionList, CreateCollection, DeleteResponse, RemoveRequest, SearchRequest, SearchResponse,
    VectorBufferStats, VectorEntity, VectorFlushResponse,
};

use crate::{Error, Result, RetryPolicy};

/// The body of an export, read as it arrives.
pub struct ExportStream {
    resp: reqwest::Response,
    /// The longest wait for the next bytes (the client's timeout): an export may run for
    /// hours, but not stall.
    idle: Duration,
}

impl ExportStream {
    /// The next bytes of NDJSON, `None` at the end.
    pub async fn chunk(&mut self) -> Result<Option<Vec<u8>>> {
        match tokio::time::timeout(self.idle, self.resp.chunk()).await {
            Ok(chunk) => Ok(chunk?.map(|b| b.to_vec())),
            Err(_) => Err(Error::Transport(format!(
                "the export stalled: no data for {:?}",
                self.idle
            ))),
        }
    }
}

/// An export's whole-request deadline: the stream is bounded by its idle time instead.
const EXPORT_DEADLINE: Duration = Duration::from_secs(7 * 24 * 3600);

/// Builds a [`Client`].
pub struct ClientBuilder {
    base: String,
    token: Option<String>,
    retry: RetryPolicy,
    timeout: Duration,
    ca_pem: Option<Vec<u8>>,
}

impl ClientBuilder {
    /// Bearer token (or JWT) sent with every request.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// PEM certificates (one or a bundle) to trust for `https://` besides the system's, e.g. a
    /// server's self-signed certificate or a private CA.
    pub fn ca_certificates_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_pem = Some(pem.into());
        self
    }

    /// Per-request timeout (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn build(self) -> Result<Client> {
        let mut http = reqwest::Client::builder().timeout(self.timeout);
        if let Some(pem) = &self.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| Error::Invalid(format!("CA certificates: {e}")))?;
            if certs.is_empty() {
                return Err(Error::Invalid(
                    "CA certificates: no PEM certificate found".into(),
                ));
            }
            for cert in certs {
                http = http.add_root_certificate(cert);
            }
        }
        let http = http.build().map_err(|e| Error::Transport(e.to_string()))?;
        Ok(Client {
            http,
            base: self.base.trim_end_matches('/').to_string(),
            prefix: String::new(),
            token: self.token,
            retry: self.retry,
            timeout: self.timeout,
        })
    }
}

/// An HTTP client of one server (cheap to clone; clones share the connection pool).
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    /// `""` (database `default`) or `/v1/databases/<db>`.
    prefix: String,
    token: Option<String>,
    retry: RetryPolicy,
    timeout: Duration,
}

fn ack_query(ack: Option<Ack>) -> &'static str {
    match ack {
        None => "",
        Some(Ack::Buffer) => "?ack=buffer",
        Some(Ack::Wal) => "?ack=wal",
        Some(Ack::Fsync) => "?ack=fsync",
    }
}

fn collection_query(collection: Option<&str>) -> String {
    collection.map_or_else(String::new, |c| format!("?collection={}", encode(c)))
}

/// Percent-encodes a path segment or query value.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Client {
    /// A builder for the server at `base` (e.g. `http://127.0.0.1:8080`).
    pub fn builder(base: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            base: base.into(),
            token: None,
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(30),
            ca_pem: None,
        }
    }

    /// A client with default settings.
    pub fn new(base: impl Into<String>) -> Result<Client> {
        Client::builder(base).build()
    }

    /// The same client acting on database `name` (`/v1/databases/{name}/…`).
    pub fn database(&self, name: &str) -> Client {
        Client {
            prefix: format!("/v1/databases/{}", encode(name)),
            ..self.clone()
        }
    }

    /// Sends a request, retrying refusals (429/503) and connection failures per the policy.
    async fn send<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T> {
        let text = self.send_raw(method, path, body, None, None, true).await?;
        serde_json::from_str(&text).map_err(|e| Error::Decode(format!("{e}: {text}")))
    }

    /// [`Client::send`] for operations whose repetition is not the same outcome (create,
    /// delete, remove: a repeat answers 409/404): after a lost answer they are not re-sent.
    async fn send_once<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T> {
        let text = self.send_raw(method, path, body, None, None, false).await?;
        serde_json::from_str(&text).map_err(|e| Error::Decode(format!("{e}: {text}")))
    }

    async fn send_raw<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        json: Option<&B>,
        raw: Option<(&str, String)>,
        header: Option<(&str, &str)>,
        idempotent: bool,
    ) -> Result<String> {
        let url = format!("{}{}", self.base, path);
        let mut attempt = 0;
        loop {
            let mut req = self.http.request(method.clone(), &url);
            if let Some(t) = &self.token {
                req = req.bearer_auth(t);
            }
            if let Some(b) = json {
                req = req.json(b);
            }
            if let Some((content_type, body)) = &raw {
                req = req
                    .header(reqwest::header::CONTENT_TYPE, *content_type)
                    .body(body.clone());
            }
            if let Some((name, value)) = header {
                req = req.header(name, value);
            }
            let (error, retry_after) = match req.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    let retry_after = resp
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let text = resp.text().await?;
                    if status.is_success() {
                        return Ok(text);
                    }
                    let err = api_error(status, &text);
                    if status != StatusCode::TOO_MANY_REQUESTS
                        && status != StatusCode::SERVICE_UNAVAILABLE
                    {
                        return Err(err);
                    }
                    (err, retry_after)
                }
                // A refused connection never reached the server: always safe to retry. A
                // timeout or reset may have been applied: retried only when repeating the
                // request gives the same outcome (writes of full state, reads, flushes).
                Err(e) if e.is_connect() || (idempotent && (e.is_timeout() || e.is_request())) => {
                    (Error::from(e), None)
                }
                Err(e) => return Err(e.into()),
            };
            attempt += 1;
            if attempt > self.retry.max_retries {
                return Err(if self.retry.max_retries == 0 {
                    error
                } else {
                    Error::RetriesExhausted {
                        attempts: attempt,
                        last: Box::new(error),
                    }
                });
            }
            tokio::time::sleep(self.retry.wait(attempt, retry_after)).await;
        }
    }

    fn data(&self, path: &str) -> String {
        format!("{}{path}", self.prefix)
    }

    // --- time series -------------------------------------------------------------------------

    /// `POST /ts/put`: one point, acknowledged at `ack` (server default `fsync`).
    pub async fn put(&self, point: &DataPoint, ack: Option<Ack>) -> Result<PutResponse> {
        let path = self.data(&format!("/ts/put{}", ack_query(ack)));
        self.send(Method::POST, &path, Some(point)).await
    }

    /// `POST /ts/put/batch`: all points or none.
    pub async fn put_batch(
        &self,
        points: &[DataPoint],
        ack: Option<Ack>,
    ) -> Result<BatchPutResponse> {
        let path = self.data(&format!("/ts/put/batch{}", ack_query(ack)));
        let body = BatchPutRequest {
            points: points.to_vec(),
        };
        self.send(Method::POST, &path, Some(&body)).await
    }

    /// `POST /ts/put/batch` with a body already encoded as JSON (`{"points":[…]}`); re-sent
    /// after a lost answer only when `idempotent` (every point has its timestamp).
    pub async fn put_batch_encoded(
        &self,
        body: Vec<u8>,
        ack: Option<Ack>,
        idempotent: bool,
    ) -> Result<BatchPutResponse> {
        let path = self.data(&format!("/ts/put/batch{}", ack_query(ack)));
        let body = String::from_utf8(body).map_err(|e| Error::Invalid(e.to_string()))?;
        let text = self
            .send_raw::<()>(
                Method::POST,
                &path,
                None,
                Some(("application/json", body)),
                None,
                idempotent,
            )
            .await?;
        serde_json::from_str(&text).map_err(|e| Error::Decode(format!("{e}: {text}")))
    }

    /// `POST /ts/put/buffered` (seed): through the TSAutoBuffer.
    pub async fn put_buffered(&self, point: &DataPoint) -> Result<BufferedPutResponse> {
        let path = self.data("/ts/put/buffered");
        self.send(Method::POST, &path, Some(point)).await
    }

    /// `GET /ts/buffer/stats` (seed).
    pub async fn get_buffer_stats(&self) -> Result<BufferStats> {
        self.send::<(), _>(Method::GET, &self.data("/ts/buffer/stats"), None)
            .await
    }

    /// `POST /ts/buffer/flush` (seed; admin).
    pub async fn flush_buffer(&self) -> Result<FlushResponse> {
        self.send::<(), _>(Method::POST, &self.data("/ts/buffer/flush"), None)
            .await
    }

    /// `POST /ts/query`.
    pub async fn query(&self, query: &QueryRequest) -> Result<QueryResponse> {
        self.send(Method::POST, &self.data("/ts/query"), Some(query))
            .await
    }

    /// `POST /write`: InfluxDB line protocol (`precision` `ns`, `us`, `ms` or `s`).
    pub async fn write_line_protocol(
        &self,
        lines: &str,
        precision: &str,
        ack: Option<Ack>,
    ) -> Result<()> {
        let ack = ack_query(ack).replace('?', "&");
        let path = self.data(&format!("/write?precision={}{ack}", encode(precision)));
        self.send_raw::<()>(
            Method::POST,
            &path,
            None,
            Some(("text/plain; charset=utf-8", lines.to_string())),
            None,
            true,
        )
        .await
        .map(|_| ())
    }

    // --- vectors -----------------------------------------------------------------------------

    /// `POST /vectors/add`: searchable on return.
    pub async fn add_vector(
        &self,
        collection: Option<&str>,
        entity: &VectorEntity,
    ) -> Result<AddResponse> {
        let path = self.data(&format!("/vectors/add{}", collection_query(collection)));
        self.send(Method::POST, &path, Some(entity)).await
    }

    /// `POST /vectors/add/batch`.
    pub async fn add_vectors(
        &self,
        collection: Option<&str>,
        entities: &[VectorEntity],
    ) -> Result<BatchAddResponse> {
        let path = self.data(&format!(
            "/vectors/add/batch{}",
            collection_query(collection)
        ));
        let body = BatchAddRequest {
            vectors: entities.to_vec(),
        };
        self.send(Method::POST, &path, Some(&body)).await
    }

    /// `POST /vectors/add/buffered` (seed).
    pub async fn add_buffered(
        &self,
        collection: Option<&str>,
        entity: &VectorEntity,
    ) -> Result<BufferedVectorResponse> {
        let path = self.data(&format!(
            "/vectors/add/buffered{}",
            collection_query(collection)
        ));
        self.send(Method::POST, &path, Some(entity)).await
    }

    /// `POST /vectors/update/buffered` (seed).
    pub async fn update_buffered(
        &self,
        collection: Option<&str>,
        entity: &VectorEntity,
    ) -> Result<BufferedVectorResponse> {
        let path = self.data(&format!(
            "/vectors/update/buffered{}",
            collection_query(collection)
        ));
        self.send(Method::POST, &path, Some(entity)).await
    }

    /// `DELETE /vectors/remove/buffered` (seed).
    pub async fn remove_buffered(
        &self,
        collection: Option<&str>,
        pk: &str,
    ) -> Result<BufferedVectorResponse> {
        let path = self.data(&format!(
            "/vectors/remove/buffered{}",
            collection_query(collection)
        ));
        let body = RemoveRequest { pk: pk.to_string() };
        self.send_once(Method::DELETE, &path, Some(&body)).await
    }

    /// `GET /vectors/buffer/stats` (seed).
    pub async fn get_vector_buffer_stats(&self) -> Result<VectorBufferStats> {
        self.send::<(), _>(Method::GET, &self.data("/vectors/buffer/stats"), None)
            .await
    }

    /// `POST /vectors/buffer/flush` (seed; admin).
    pub async fn flush_vector_buffer(&self) -> Result<VectorFlushResponse> {
        self.send::<(), _>(Method::POST, &self.data("/vectors/buffer/flush"), None)
            .await
    }

    /// `POST /vectors/search`.
    pub async fn search(
        &self,
        collection: Option<&str>,
        request: &SearchRequest,
    ) -> Result<SearchResponse> {
        let path = self.data(&format!("/vectors/search{}", collection_query(collection)));
        self.send(Method::POST, &path, Some(request)).await
    }

    /// `GET /vectors/{pk}`.
    pub async fn get_vector(&self, collection: Option<&str>, pk: &str) -> Result<VectorEntity> {
        let path = self.data(&format!(
            "/vectors/{}{}",
            encode(pk),
            collection_query(collection)
        ));
        self.send::<(), _>(Method::GET, &path, None).await
    }

    /// `DELETE /vectors/{pk}`.
    pub async fn delete_vector(
        &self,
        collection: Option<&str>,
        pk: &str,
    ) -> Result<DeleteResponse> {
        let path = self.data(&format!(
            "/vectors/{}{}",
            encode(pk),
            collection_query(collection)
        ));
        self.send_once::<(), _>(Method::DELETE, &path, None).await
    }

    /// `POST /v1/collections`.
    pub async fn create_collection(&self, spec: &CreateCollection) -> Result<CollectionInfo> {
        self.send_once(Method::POST, &self.data("/v1/collections"), Some(spec))
            .await
    }

    /// `DELETE /v1/collections/{name}`.
    pub async fn delete_collection(&self, name: &str) -> Result<serde_json::Value> {
        let path = self.data(&format!("/v1/collections/{}", encode(name)));
        self.send_once::<(), _>(Method::DELETE, &path, None).await
    }

    /// Any JSON operation of the API by method and its full path from the server's root (not
    /// scoped to this client's database: pass `/v1/databases/{db}/…` for another database).
    /// Re-sent after a lost answer only when `idempotent`.
    pub async fn request_json(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
        idempotent: bool,
    ) -> Result<serde_json::Value> {
        let text = self
            .send_raw(method, path, body, None, None, idempotent)
            .await?;
        if text.is_empty() {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| Error::Decode(format!("{e}: {text}")))
    }

    /// `GET` of a text answer (e.g. `/metrics`).
    pub async fn get_text(&self, path: &str) -> Result<String> {
        self.send_raw::<()>(Method::GET, path, None, None, None, true)
            .await
    }

    /// `POST /ts/export`: the points as NDJSON, read chunk by chunk with
    /// [`ExportStream::chunk`] (nothing is buffered whole).
    pub async fn export(&self, request: &ExportRequest) -> Result<ExportStream> {
        self.export_as(request, None).await
    }

    /// `POST /ts/export?format=`: `arrow` (an Arrow IPC stream) or `parquet` (a Parquet file),
    /// streamed like [`Self::export`]; `None` is NDJSON.
    pub async fn export_as(
        &self,
        request: &ExportRequest,
        format: Option<sluice_api::ts::OutputFormat>,
    ) -> Result<ExportStream> {
        let query = match format {
            Some(sluice_api::ts::OutputFormat::Arrow) => "?format=arrow",
            Some(sluice_api::ts::OutputFormat::Parquet) => "?format=parquet",
            Some(sluice_api::ts::OutputFormat::Json) | None => "",
        };
        let url = format!("{}{}{query}", self.base, self.data("/ts/export"));
        let mut req = self.http.post(&url).json(request).timeout(EXPORT_DEADLINE);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = tokio::time::timeout(self.timeout, req.send())
            .await
            .map_err(|_| Error::Transport(format!("no answer in {:?}", self.timeout)))??;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().await?;
            return Err(api_error(status, &text));
        }
        Ok(ExportStream {
            resp,
            idle: self.timeout,
        })
    }

    /// `GET /v1/collections`.
    pub async fn list_collections(&self) -> Result<CollectionList> {
        self.send::<(), _>(Method::GET, &self.data("/v1/collections"), None)
            .await
    }

    // --- databases ---------------------------------------------------------------------------

    /// `POST /v1/databases` (admin).
    pub async fn create_database(&self, spec: &CreateDatabase) -> Result<DatabaseInfo> {
        self.send_once(Method::POST, "/v1/databases", Some(spec))
            .await
    }

    /// `GET /v1/databases`: those the caller has a role on.
    pub async fn list_databases(&self) -> Result<DatabaseList> {
        self.send::<(), _>(Method::GET, "/v1/databases", None).await
    }

    /// `DELETE /v1/databases/{db}` (admin).
    pub async fn delete_database(&self, name: &str) -> Result<DeleteDatabaseResponse> {
        let path = format!("/v1/databases/{}", encode(name));
        self.send_once::<(), _>(Method::DELETE, &path, None).await
    }

    // ----- replication (seed names; admin on the server) -----

    /// `POST /api/v1/replication/replicas`: register a replica on this primary.
    pub async fn add_replica(&self, replica_id: &str, endpoint: &str) -> Result<ReplicaInfo> {
        let body = ReplicaInfo {
            replica_id: replica_id.to_string(),
            endpoint: endpoint.to_string(),
        };
        // Registering the same id and endpoint again is harmless: safe to retry.
        self.send(Method::POST, "/api/v1/replication/replicas", Some(&body))
            .await
    }

    /// `DELETE /api/v1/replication/replicas/{replica_id}`.
    pub async fn remove_replica(&self, replica_id: &str) -> Result<RemoveReplicaResponse> {
        let path = format!("/api/v1/replication/replicas/{}", encode(replica_id));
        self.send_once::<(), _>(Method::DELETE, &path, None).await
    }

    /// `GET /api/v1/replication/replicas`.
    pub async fn list_replicas(&self) -> Result<ReplicaList> {
        self.send::<(), _>(Method::GET, "/api/v1/replication/replicas", None)
            .await
    }

    /// `POST /api/v1/wal/apply` (seed `ApplyWALBatch`; on a replica, admin): applies a batch
    /// of WAL records shipped by a primary (build one with [`wal_batch`]). Safe to retry: a
    /// replica skips the records it already has.
    pub async fn apply_wal_batch(&self, batch: &WalApplyRequest) -> Result<WalApplyResponse> {
        let text = self
            .send_raw(
                Method::POST,
                "/api/v1/wal/apply",
                Some(batch),
                None,
                Some(("x-primary-id", &batch.primary_id)),
                true,
            )
            .await?;
        serde_json::from_str(&text).map_err(|e| Error::Decode(format!("{e}: {text}")))
    }

    /// `GET /api/v1/replication/stats` (seed).
    pub async fn get_replication_stats(&self) -> Result<ReplicationStats> {
        self.send::<(), _>(Method::GET, "/api/v1/replication/stats", None)
            .await
    }

    /// `POST /api/v1/replication/config` (seed): `compression_type` `zstd` or `none`, zstd
    /// `level` 1 to 22.
    pub async fn configure_compression(
        &self,
        compression_type: &str,
        level: i32,
    ) -> Result<ReplicationConfigResponse> {
        let body = ReplicationConfigRequest {
            compression_type: Some(compression_type.to_string()),
            level: Some(level),
        };
        self.send(Method::POST, "/api/v1/replication/config", Some(&body))
            .await
    }

    /// `POST /api/v1/replication/promote`: make this replica a primary (fences the old one).
    pub async fn promote(&self) -> Result<PromoteResponse> {
        self.send_once::<(), _>(Method::POST, "/api/v1/replication/promote", None)
            .await
    }
}

/// The error of a non-2xx answer: the server's error body, or one made from the status.
fn api_error(status: StatusCode, text: &str) -> Error {
    let body = serde_json::from_str::<ErrorBody>(text).unwrap_or_else(|_| ErrorBody {
        error: text.chars().take(512).collect(),
        code: sluice_api::ErrorCode::Unknown,
        error_id: String::new(),
        ..ErrorBody::default()
    });
    Error::Api {
        status: status.as_u16(),
        body: Box::new(body),
    }
}

/// How a [`wal_batch`] carries its records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchCompression {
    /// As they are (`compression: "none"`).
    None,
    /// zstd at this level (1 to 22), as primaries ship them.
    Zstd(i32),
}

/// The seed's `CompressedWALBatch`: `records` are consecutive WAL records exactly as a segment
/// holds them (length, CRC32C, LSN, kind, payload; `sluice_wal::record::encode` writes them),
/// LSNs `first_lsn..=last_lsn`, `entries` of them. The batch carries their checksum and size
/// so the replica verifies it before inflating or applying anything.
#[allow(clippy::too_many_arguments)]
pub fn wal_batch(
    primary_id: &str,
    database: &str,
    epoch: u64,
    first_lsn: u64,
    last_lsn: u64,
    entries: u64,
    records: &[u8],
    compression: BatchCompression,
) -> std::io::Result<WalApplyRequest> {
    use base64::Engine as _;
    let (kind, bytes) = match compression {
        BatchCompression::None => ("none", records.to_vec()),
        BatchCompression::Zstd(level) => ("zstd", zstd::bulk::compress(records, level)?),
    };
    Ok(WalApplyRequest {
        primary_id: primary_id.to_string(),
        compression: kind.to_string(),
        entries_crc32c: crc32c::crc32c(&bytes),
        entries_compressed: base64::engine::general_purpose::STANDARD.encode(&bytes),
        database: database.to_string(),
        epoch,
        first_lsn,
        last_lsn,
        entries,
        uncompressed_bytes: records.len() as u64,
        primary_durable_lsn: last_lsn,
        lag_bytes: 0,
        lag_ms: 0,
        primary_endpoint: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_encoded() {
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
        let c = Client::new("http://x/").unwrap().database("db 1");
        assert_eq!(c.data("/ts/put"), "/v1/databases/db%201/ts/put");
        assert_eq!(collection_query(Some("c&d")), "?collection=c%26d");
    }
}
