//! The wire transport: one TCP connection speaking the binary protocol
//! (`docs/wire-protocol.md`).
//!
//! Requests are answered in order; [`WireClient::pipeline`] writes many frames before reading
//! their answers, in windows of at most [`WINDOW_FRAMES`] frames / [`WINDOW_BYTES`] bytes so
//! that neither side blocks writing while the other does (a whole multi-megabyte pipeline
//! written before reading anything could deadlock both send buffers).
//!
//! A refused frame — status `0x04` (buffer overflow) or `0x07` (too many requests) — is re-sent
//! after the server's `retry_after_sec` (or a backoff) per the [`RetryPolicy`], but only when
//! every later frame of its window was refused too: re-sending an older write after a newer one
//! was applied would reorder writes (time series keep the last write). Otherwise the refusals
//! are returned as errors. Other error statuses become [`Error::Api`] with the server's body.
//!
//! If a call fails or is cancelled (dropped) between writing and reading all its answers, the
//! connection is out of step with its answers; every later call then fails with
//! [`Error::Transport`] and the client must reconnect (answers are never matched to the wrong
//! request).

use std::time::Duration;

use serde::de::DeserializeOwned;
use sluice_api::ErrorBody;
use sluice_api::ts::{BufferStats, FlushResponse};
use sluice_api::vector::{SearchResult, VectorBufferStats, VectorFlushResponse};
use sluice_wire::{HEADER_LEN, Request, Status, TsPoint, VectorEntity};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::{Error, Result, RetryPolicy};

/// A connection to a server's wire listener.
/// Frames written before their answers are read, at most.
pub const WINDOW_FRAMES: usize = 256;
/// Bytes of frames written before their answers are read, at most (a larger frame goes alone).
pub const WINDOW_BYTES: usize = 256 * 1024;

pub struct WireClient {
    stream: BufReader<TcpStream>,
    /// Set while answers are outstanding; still set after a failure or cancellation.
    out_of_step: bool,
    out: Vec<u8>,
    retry: RetryPolicy,
    /// Largest answer accepted (a corrupt length must not allocate gigabytes).
    max_answer: usize,
}

/// One answer frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u8,
    pub payload: Vec<u8>,
}

impl WireClient {
    /// Connects to `addr` (`host:port`) and, with a token, authenticates the connection.
    pub async fn connect(addr: &str, token: Option<&str>) -> Result<WireClient> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let mut client = WireClient {
            stream: BufReader::with_capacity(64 * 1024, stream),
            out_of_step: false,
            out: Vec::with_capacity(64 * 1024),
            retry: RetryPolicy::default(),
            max_answer: 64 << 20,
        };
        if let Some(t) = token {
            client.auth(t).await?;
        }
        Ok(client)
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// `AUTH`: (re-)authenticates the connection.
    pub async fn auth(&mut self, token: &str) -> Result<()> {
        self.call(&Request::Auth { token }).await.map(|_| ())
    }

    /// `TS_PUT_BUFFERED` (seed): one point or a batch; the buffer size after the write.
    pub async fn put_buffered(&mut self, points: &[TsPoint]) -> Result<u64> {
        let mut frame = Vec::new();
        sluice_wire::try_encode_ts_put(points, true, &mut frame)
            .map_err(|e| Error::Invalid(e.to_string()))?;
        u64_answer(&self.one(frame).await?)
    }

    /// `TS_PUT` (ours): the points written directly, all or none, answered once fsync'd;
    /// returns the write's LSN.
    pub async fn put(&mut self, points: &[TsPoint]) -> Result<u64> {
        let mut frame = Vec::new();
        sluice_wire::try_encode_ts_put(points, false, &mut frame)
            .map_err(|e| Error::Invalid(e.to_string()))?;
        u64_answer(&self.one(frame).await?)
    }

    /// `TS_BUFFER_STATS` (seed): the JSON of `GET /ts/buffer/stats`.
    pub async fn get_buffer_stats(&mut self) -> Result<BufferStats> {
        json_answer(&self.call(&Request::TsBufferStats).await?)
    }

    /// `TS_BUFFER_FLUSH` (seed).
    pub async fn flush_buffer(&mut self) -> Result<FlushResponse> {
        json_answer(&self.call(&Request::TsBufferFlush).await?)
    }

    /// `VECTOR_ADD_BUFFERED` (seed), collection `default`.
    pub async fn add_buffered(&mut self, entities: &[VectorEntity<'_>]) -> Result<u64> {
        let mut frame = Vec::new();
        sluice_wire::try_encode_vector_put(entities, false, &mut frame)
            .map_err(|e| Error::Invalid(e.to_string()))?;
        u64_answer(&self.one(frame).await?)
    }

    /// `VECTOR_UPDATE_BUFFERED` (seed).
    pub async fn update_buffered(&mut self, entities: &[VectorEntity<'_>]) -> Result<u64> {
        let mut frame = Vec::new();
        sluice_wire::try_encode_vector_put(entities, true, &mut frame)
            .map_err(|e| Error::Invalid(e.to_string()))?;
        u64_answer(&self.one(frame).await?)
    }

    /// `VECTOR_REMOVE_BUFFERED` (seed).
    pub async fn remove_buffered(&mut self, pks: &[&str]) -> Result<u64> {
        let req = Request::VectorRemoveBuffered {
            pks: pks.to_vec(),
            batch: pks.len() != 1,
        };
        u64_answer(&self.call(&req).await?)
    }

    /// `VECTOR_BUFFER_STATS` (seed).
    pub async fn get_vector_buffer_stats(&mut self) -> Result<VectorBufferStats> {
        json_answer(&self.call(&Request::VectorBufferStats).await?)
    }

    /// `VECTOR_BUFFER_FLUSH` (seed).
    pub async fn flush_vector_buffer(&mut self) -> Result<VectorFlushResponse> {
        json_answer(&self.call(&Request::VectorBufferFlush).await?)
    }

    /// `VECTOR_SEARCH` (ours, `0xA0`): the `k` nearest entities of `collection` (empty:
    /// `default`) that pass `filter` (the JSON object `POST /vectors/search` takes), best first;
    /// `ef`: candidates explored (`None`: the collection's `ef_search`).
    pub async fn search(
        &mut self,
        collection: &str,
        vector: &[f32],
        k: u32,
        ef: Option<u32>,
        filter: Option<&serde_json::Value>,
    ) -> Result<Vec<SearchResult>> {
        let bytes = sluice_wire::le_bytes(vector);
        let filter = match filter {
            Some(f) => serde_json::to_vec(f).map_err(|e| Error::Invalid(e.to_string()))?,
            None => Vec::new(),
        };
        let query = sluice_wire::VectorQuery {
            collection,
            k,
            ef: ef.unwrap_or(0),
            vector: sluice_wire::VectorRef::new(&bytes),
            filter: &filter,
        };
        let answer = self.call(&Request::VectorSearch(query)).await?;
        let hits =
            sluice_wire::decode_search_hits(&answer).map_err(|e| Error::Decode(e.to_string()))?;
        hits.into_iter()
            .map(|h| {
                let metadata = if h.metadata.is_empty() {
                    serde_json::Map::new()
                } else {
                    serde_json::from_slice(h.metadata).map_err(|e| Error::Decode(e.to_string()))?
                };
                Ok(SearchResult {
                    pk: h.pk.to_string(),
                    score: h.score,
                    distance: h.distance,
                    metadata,
                    timestamp_ms: None,
                    expires_at_ms: None,
                    rank: None,
                    series: None,
                })
            })
            .collect()
    }

    /// One request, retried while refused.
    pub async fn call(&mut self, req: &Request<'_>) -> Result<Vec<u8>> {
        let mut frame = Vec::new();
        req.try_encode(&mut frame)
            .map_err(|e| Error::Invalid(e.to_string()))?;
        self.one(frame).await
    }

    async fn one(&mut self, frame: Vec<u8>) -> Result<Vec<u8>> {
        self.frames(vec![frame])
            .await?
            .pop()
            .ok_or_else(|| Error::Decode("no answer".into()))?
    }

    /// Sends every request before reading any answer (one round trip), then re-sends, after a
    /// backoff, those refused with `0x04`/`0x07`. Answers are in request order: the payload
    /// for ok frames, the error for others.
    pub async fn pipeline(&mut self, reqs: &[Request<'_>]) -> Result<Vec<Result<Vec<u8>>>> {
        let frames = reqs
            .iter()
            .map(|r| {
                let mut f = Vec::new();
                r.try_encode(&mut f).map(|()| f)
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::Invalid(e.to_string()))?;
        self.frames(frames).await
    }

    /// [`WireClient::pipeline`] for frames already encoded (one frame per element).
    pub async fn frames(&mut self, frames: Vec<Vec<u8>>) -> Result<Vec<Result<Vec<u8>>>> {
        let mut results = Vec::with_capacity(frames.len());
        let mut start = 0;
        while start < frames.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < frames.len()
                && end - start < WINDOW_FRAMES
                && (end == start || bytes + frames[end].len() <= WINDOW_BYTES)
            {
                bytes += frames[end].len();
                end += 1;
            }
            results.extend(self.window(&frames[start..end]).await?);
            start = end;
        }
        Ok(results)
    }

    /// One window: written at once, answers read in order, refused suffixes retried.
    async fn window(&mut self, frames: &[Vec<u8>]) -> Result<Vec<Result<Vec<u8>>>> {
        if self.out_of_step {
            return Err(Error::Transport(
                "the connection lost track of its answers after an earlier failure; reconnect"
                    .into(),
            ));
        }
        let mut results: Vec<Option<Result<Vec<u8>>>> = (0..frames.len()).map(|_| None).collect();
        let mut from = 0;
        let mut attempt = 0;
        loop {
            self.out.clear();
            for f in &frames[from..] {
                self.out.extend_from_slice(f);
            }
            self.out_of_step = true;
            self.stream.get_mut().write_all(&self.out).await?;
            let mut first_refused: Option<usize> = None;
            let mut applied_after_refusal = false;
            let mut retry_after = None;
            for (i, slot) in results.iter_mut().enumerate().skip(from) {
                let answer = self.read_answer().await?;
                let refused = answer.status == Status::BufferOverflow as u8
                    || answer.status == Status::TooManyRequests as u8;
                if refused {
                    first_refused.get_or_insert(i);
                } else if first_refused.is_some() {
                    applied_after_refusal = true;
                }
                *slot = Some(if answer.status == Status::Ok as u8 {
                    Ok(answer.payload)
                } else {
                    let (e, wait) = wire_error(&answer);
                    if refused {
                        retry_after = retry_after.max(wait);
                    }
                    Err(e)
                });
            }
            self.out_of_step = false;
            let Some(first) = first_refused else { break };
            if applied_after_refusal || attempt >= self.retry.max_retries {
                if self.retry.max_retries > 0 && !applied_after_refusal {
                    for slot in &mut results[first..] {
                        if let Some(Err(e)) = slot.take() {
                            *slot = Some(Err(Error::RetriesExhausted {
                                attempts: attempt + 1,
                                last: Box::new(e),
                            }));
                        }
                    }
                }
                break;
            }
            attempt += 1;
            tokio::time::sleep(self.retry.wait(attempt, retry_after)).await;
            from = first;
        }
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::Decode("no answer".into()))))
            .collect())
    }

    async fn read_answer(&mut self) -> Result<Answer> {
        let mut header = [0u8; HEADER_LEN];
        self.stream.read_exact(&mut header).await?;
        let len = u32::from_le_bytes([header[2], header[3], header[4], header[5]]) as usize;
        if len > self.max_answer {
            return Err(Error::Decode(format!("answer of {len} bytes")));
        }
        let mut payload = vec![0u8; len];
        self.stream.read_exact(&mut payload).await?;
        Ok(Answer {
            status: header[0],
            payload,
        })
    }

    /// Closes the connection.
    pub async fn close(mut self) -> Result<()> {
        self.stream.get_mut().shutdown().await?;
        Ok(())
    }
}

/// The error of an error frame, and the server's `retry_after_sec` if it gave one.
fn wire_error(answer: &Answer) -> (Error, Option<Duration>) {
    let body = serde_json::from_slice::<ErrorBody>(&answer.payload).unwrap_or_else(|_| ErrorBody {
        error: format!(
            "wire status 0x{:02x}: {}",
            answer.status,
            String::from_utf8_lossy(&answer.payload)
                .chars()
                .take(512)
                .collect::<String>()
        ),
        code: sluice_api::ErrorCode::Unknown,
        error_id: String::new(),
        ..ErrorBody::default()
    });
    let wait = body.retry_after_sec.map(Duration::from_secs);
    (
        Error::Api {
            status: answer.status as u16,
            body: Box::new(body),
        },
        wait,
    )
}

fn u64_answer(payload: &[u8]) -> Result<u64> {
    let bytes: [u8; 8] = payload
        .try_into()
        .map_err(|_| Error::Decode(format!("expected 8 bytes, got {}", payload.len())))?;
    Ok(u64::from_le_bytes(bytes))
}

fn json_answer<T: DeserializeOwned>(payload: &[u8]) -> Result<T> {
    serde_json::from_slice(payload).map_err(|e| Error::Decode(e.to_string()))
}
