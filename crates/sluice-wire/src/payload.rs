//! Request payloads: typed decoding (borrowing where it pays) and encoding.
//!
//! Item layouts (one item, or with [`FLAG_BATCH`] `count u32` then `count` items):
//! ```text
//! TS_PUT_BUFFERED         metric_len u16, metric, entity_len u16, entity, timestamp_ms i64,
//!                         value f64, tags_len u16, tags (JSON object of strings; 0 bytes: none)
//!                         (timestamp_ms = i64::MIN, [`TIMESTAMP_NOW`]: the server's receive time)
//! VECTOR_ADD_BUFFERED,    pk_len u16, pk, dim u32, dim × f32,
//! VECTOR_UPDATE_BUFFERED  metadata_len u32, metadata (JSON object; 0 bytes: none)
//! VECTOR_REMOVE_BUFFERED  pk_len u16, pk
//! AUTH                    token_len u16, token (no batch)
//! VECTOR_SEARCH (ours)    collection_len u16, collection (0 bytes: `default`), k u32,
//!                         ef u32 (0: the collection's ef_search), dim u32, dim × f32,
//!                         filter_len u32, filter (JSON object; 0 bytes: none) (no batch);
//!                         answers count u32, then per hit pk_len u16, pk, distance f32,
//!                         score f32, metadata_len u32, metadata (JSON object; 0 bytes: none)
//! *_STATS, *_FLUSH        empty (no batch)
//! WAL_APPLY_COMPRESSED,   opaque bytes, interpreted by replication
//! REPLICATION_CONFIG
//! ```

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value};

use crate::frame::{FLAG_BATCH, HEADER_LEN, Opcode, RawFrame, Status, encode_frame};

/// A point's `timestamp_ms` meaning "stamp it with the server's receive time" (the JSON routes
/// leave the field out for the same). No real timestamp is this far in the past.
pub const TIMESTAMP_NOW: i64 = i64::MIN;

/// Smallest encoded item per opcode: bounds a batch's count by the bytes present.
const MIN_TS_ITEM: usize = 2 + 2 + 8 + 8 + 2;
const MIN_VECTOR_ITEM: usize = 2 + 4 + 4;
const MIN_REMOVE_ITEM: usize = 2;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown opcode 0x{0:02x}")]
    UnknownOpcode(u8),
    #[error("malformed payload: {0}")]
    Malformed(String),
}

impl DecodeError {
    /// The response status for this error.
    pub fn status(&self) -> Status {
        match self {
            DecodeError::UnknownOpcode(_) => Status::InvalidOpcode,
            DecodeError::Malformed(_) => Status::MalformedPayload,
        }
    }
}

fn malformed(what: impl Into<String>) -> DecodeError {
    DecodeError::Malformed(what.into())
}

/// A time-series point as the wire carries it.
#[derive(Clone, Debug, PartialEq)]
pub struct TsPoint {
    pub metric: String,
    pub entity: String,
    pub timestamp_ms: i64,
    pub value: f64,
    pub tags: BTreeMap<String, String>,
}

/// A vector's components as little-endian `f32` bytes, borrowed from the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VectorRef<'a>(&'a [u8]);

impl<'a> VectorRef<'a> {
    /// A vector over little-endian `f32` bytes (e.g. from [`le_bytes`]).
    pub fn new(bytes: &'a [u8]) -> Self {
        VectorRef(bytes)
    }

    /// Components.
    pub fn len(&self) -> usize {
        self.0.len() / 4
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = f32> + 'a {
        self.0
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
    }

    pub fn to_vec(&self) -> Vec<f32> {
        self.iter().collect()
    }

    /// The components without copying, when the bytes happen to be 4-byte aligned on a
    /// little-endian machine.
    pub fn as_f32s(&self) -> Option<&'a [f32]> {
        if cfg!(target_endian = "big") {
            return None;
        }
        // SAFETY: every bit pattern is a valid f32, and align_to only yields the aligned middle.
        let (head, body, tail) = unsafe { self.0.align_to::<f32>() };
        (head.is_empty() && tail.is_empty()).then_some(body)
    }

    pub fn bytes(&self) -> &'a [u8] {
        self.0
    }
}

/// A vector entity as the wire carries it.
#[derive(Clone, Debug, PartialEq)]
pub struct VectorEntity<'a> {
    pub pk: &'a str,
    pub vector: VectorRef<'a>,
    pub metadata: Option<Map<String, Value>>,
}

/// A similarity search as the wire carries it (`VECTOR_SEARCH`, ours): the body of
/// `POST /vectors/search` with the vector in binary.
#[derive(Clone, Debug, PartialEq)]
pub struct VectorQuery<'a> {
    /// The collection; empty: `default`.
    pub collection: &'a str,
    pub k: u32,
    /// Candidates explored; 0: the collection's `ef_search`.
    pub ef: u32,
    pub vector: VectorRef<'a>,
    /// The filter as the JSON object the HTTP route takes; empty: none.
    pub filter: &'a [u8],
}

/// One hit of a `VECTOR_SEARCH` answer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SearchHitRef<'a> {
    pub pk: &'a str,
    pub distance: f32,
    pub score: f32,
    /// The metadata as a JSON object; empty: none.
    pub metadata: &'a [u8],
}

/// The payload of a `VECTOR_SEARCH` answer: `count u32`, then the hits in order.
pub fn encode_search_hits(hits: &[SearchHitRef<'_>], out: &mut Vec<u8>) -> Result<(), EncodeError> {
    fits32("hits", hits.len())?;
    out.extend_from_slice(&(hits.len() as u32).to_le_bytes());
    for h in hits {
        fits16("pk", h.pk.len())?;
        fits32("metadata", h.metadata.len())?;
        put_str16(out, h.pk);
        out.extend_from_slice(&h.distance.to_le_bytes());
        out.extend_from_slice(&h.score.to_le_bytes());
        out.extend_from_slice(&(h.metadata.len() as u32).to_le_bytes());
        out.extend_from_slice(h.metadata);
    }
    Ok(())
}

/// Smallest encoded hit: empty pk, distance, score, metadata length.
const MIN_HIT: usize = 2 + 4 + 4 + 4;

/// Decodes the payload of a `VECTOR_SEARCH` answer, borrowing it.
pub fn decode_search_hits(payload: &[u8]) -> Result<Vec<SearchHitRef<'_>>, DecodeError> {
    let mut r = Reader::new(payload);
    let count = r.u32()? as usize;
    if count > r.remaining() / MIN_HIT {
        return Err(malformed(format!(
            "{count} hits cannot fit in {} bytes",
            r.remaining()
        )));
    }
    let mut hits = Vec::with_capacity(count);
    for _ in 0..count {
        let pk = r.str16()?;
        let distance = r.f32()?;
        let score = r.f32()?;
        let len = r.u32()? as usize;
        hits.push(SearchHitRef {
            pk,
            distance,
            score,
            metadata: r.take(len)?,
        });
    }
    if !r.is_empty() {
        return Err(malformed(format!("{} trailing bytes", r.remaining())));
    }
    Ok(hits)
}

/// A decoded request. `batch` records whether the frame carried the batch flag.
#[derive(Clone, Debug, PartialEq)]
pub enum Request<'a> {
    Auth {
        token: &'a str,
    },
    TsPutBuffered {
        points: Vec<TsPoint>,
        batch: bool,
    },
    /// Ours (`0x73`): the same points, written directly and acknowledged at `fsync`.
    TsPut {
        points: Vec<TsPoint>,
        batch: bool,
    },
    TsBufferStats,
    TsBufferFlush,
    VectorAddBuffered {
        entities: Vec<VectorEntity<'a>>,
        batch: bool,
    },
    VectorUpdateBuffered {
        entities: Vec<VectorEntity<'a>>,
        batch: bool,
    },
    VectorRemoveBuffered {
        pks: Vec<&'a str>,
        batch: bool,
    },
    VectorBufferStats,
    VectorBufferFlush,
    WalApplyCompressed(&'a [u8]),
    ReplicationStats,
    ReplicationConfig(&'a [u8]),
    /// Ours (`0x93`): `{"database": "default", "from_lsn": N}` (JSON).
    ChangesSubscribe(&'a [u8]),
    /// Ours (`0xA0`): a similarity search.
    VectorSearch(VectorQuery<'a>),
}

impl Request<'_> {
    pub fn opcode(&self) -> Opcode {
        match self {
            Request::Auth { .. } => Opcode::Auth,
            Request::TsPutBuffered { .. } => Opcode::TsPutBuffered,
            Request::TsPut { .. } => Opcode::TsPut,
            Request::TsBufferStats => Opcode::TsBufferStats,
            Request::TsBufferFlush => Opcode::TsBufferFlush,
            Request::VectorAddBuffered { .. } => Opcode::VectorAddBuffered,
            Request::VectorUpdateBuffered { .. } => Opcode::VectorUpdateBuffered,
            Request::VectorRemoveBuffered { .. } => Opcode::VectorRemoveBuffered,
            Request::VectorBufferStats => Opcode::VectorBufferStats,
            Request::VectorBufferFlush => Opcode::VectorBufferFlush,
            Request::WalApplyCompressed(_) => Opcode::WalApplyCompressed,
            Request::ReplicationStats => Opcode::ReplicationStats,
            Request::ReplicationConfig(_) => Opcode::ReplicationConfig,
            Request::ChangesSubscribe(_) => Opcode::ChangesSubscribe,
            Request::VectorSearch(_) => Opcode::VectorSearch,
        }
    }

    /// Checks that every length fits its field (u16 for strings and tag JSON, u32 for counts,
    /// dimensions, metadata and the frame payload), so [`Request::encode`] cannot fail.
    pub fn check(&self) -> Result<(), EncodeError> {
        // Without the batch flag a frame carries exactly one item.
        let single = |batch: bool, n: usize| {
            if !batch && n != 1 {
                Err(EncodeError {
                    field: "items (one without the batch flag)",
                    len: n,
                })
            } else {
                Ok(())
            }
        };
        match self {
            Request::TsPutBuffered { points, batch } | Request::TsPut { points, batch } => {
                single(*batch, points.len())?
            }
            Request::VectorAddBuffered { entities, batch }
            | Request::VectorUpdateBuffered { entities, batch } => single(*batch, entities.len())?,
            Request::VectorRemoveBuffered { pks, batch } => single(*batch, pks.len())?,
            _ => {}
        }
        match self {
            Request::Auth { token } => fits16("token", token.len()),
            Request::TsPutBuffered { points, .. } | Request::TsPut { points, .. } => {
                check_ts_points(points)
            }
            Request::VectorAddBuffered { entities, .. }
            | Request::VectorUpdateBuffered { entities, .. } => check_vector_entities(entities),
            Request::VectorRemoveBuffered { pks, .. } => {
                fits32("pks", pks.len())?;
                pks.iter().try_for_each(|pk| fits16("pk", pk.len()))
            }
            Request::WalApplyCompressed(b)
            | Request::ReplicationConfig(b)
            | Request::ChangesSubscribe(b) => fits32("payload", b.len()),
            Request::VectorSearch(q) => {
                fits16("collection", q.collection.len())?;
                fits32("vector", q.vector.len())?;
                if q.vector.bytes().len() % 4 != 0 {
                    return Err(EncodeError {
                        field: "vector (bytes not a multiple of 4)",
                        len: q.vector.bytes().len(),
                    });
                }
                fits32("filter", q.filter.len())
            }
            Request::TsBufferStats
            | Request::TsBufferFlush
            | Request::VectorBufferStats
            | Request::VectorBufferFlush
            | Request::ReplicationStats => Ok(()),
        }
    }

    /// [`Request::check`], then [`Request::encode`]: the encoder for input the caller does not
    /// control.
    pub fn try_encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        self.check()?;
        let (flags, payload) = self.flags_and_payload();
        checked_frame(self.opcode(), flags, &payload, out)
    }

    /// Appends this request as one frame.
    ///
    /// # Panics
    /// If a field is longer than its length prefix allows (see [`Request::check`]; use
    /// [`Request::try_encode`] for unchecked input).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let (flags, payload) = self.flags_and_payload();
        encode_frame(self.opcode() as u8, flags, &payload, out);
    }

    fn flags_and_payload(&self) -> (u8, Vec<u8>) {
        match self {
            Request::Auth { token } => (0, encode_auth(token)),
            Request::TsPutBuffered { points, batch } | Request::TsPut { points, batch } => {
                batched(*batch, points, encode_ts_point)
            }
            Request::VectorAddBuffered { entities, batch }
            | Request::VectorUpdateBuffered { entities, batch } => {
                batched(*batch, entities, encode_vector_entity)
            }
            Request::VectorRemoveBuffered { pks, batch } => {
                batched(*batch, pks, |pk, out| put_str16(out, pk))
            }
            Request::WalApplyCompressed(b)
            | Request::ReplicationConfig(b)
            | Request::ChangesSubscribe(b) => (0, b.to_vec()),
            Request::VectorSearch(q) => (0, encode_vector_query(q)),
            Request::TsBufferStats
            | Request::TsBufferFlush
            | Request::VectorBufferStats
            | Request::VectorBufferFlush
            | Request::ReplicationStats => (0, Vec::new()),
        }
    }
}

fn batched<T>(batch: bool, items: &[T], item: impl Fn(&T, &mut Vec<u8>)) -> (u8, Vec<u8>) {
    let mut out = Vec::new();
    if batch {
        out.extend_from_slice(&(items.len() as u32).to_le_bytes());
        for i in items {
            item(i, &mut out);
        }
        (FLAG_BATCH, out)
    } else {
        if let Some(first) = items.first() {
            item(first, &mut out);
        }
        (0, out)
    }
}

/// The payload of an `AUTH` frame.
pub fn encode_auth(token: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + token.len());
    put_str16(&mut out, token);
    out
}

/// `TS_PUT_BUFFERED` payload for `points` (batch flag when more than one).
pub fn encode_ts_points(points: &[TsPoint]) -> (u8, Vec<u8>) {
    batched(points.len() != 1, points, encode_ts_point)
}

/// `VECTOR_ADD/UPDATE_BUFFERED` payload for `entities` (batch flag when more than one).
pub fn encode_vector_entities(entities: &[VectorEntity<'_>]) -> (u8, Vec<u8>) {
    batched(entities.len() != 1, entities, encode_vector_entity)
}

/// `VECTOR_REMOVE_BUFFERED` payload for `pks` (batch flag when more than one).
pub fn encode_vector_removes(pks: &[&str]) -> (u8, Vec<u8>) {
    batched(pks.len() != 1, pks, |pk, out| put_str16(out, pk))
}

fn encode_ts_point(p: &TsPoint, out: &mut Vec<u8>) {
    put_str16(out, &p.metric);
    put_str16(out, &p.entity);
    out.extend_from_slice(&p.timestamp_ms.to_le_bytes());
    out.extend_from_slice(&p.value.to_le_bytes());
    if p.tags.is_empty() {
        out.extend_from_slice(&0u16.to_le_bytes());
    } else {
        let json = serde_json::to_vec(&p.tags).expect("a string map serializes");
        put_bytes16(out, &json);
    }
}

fn encode_vector_query(q: &VectorQuery<'_>) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(2 + q.collection.len() + 16 + q.vector.bytes().len() + q.filter.len());
    put_str16(&mut out, q.collection);
    out.extend_from_slice(&q.k.to_le_bytes());
    out.extend_from_slice(&q.ef.to_le_bytes());
    out.extend_from_slice(&(q.vector.len() as u32).to_le_bytes());
    out.extend_from_slice(q.vector.bytes());
    out.extend_from_slice(&(q.filter.len() as u32).to_le_bytes());
    out.extend_from_slice(q.filter);
    out
}

fn encode_vector_entity(e: &VectorEntity<'_>, out: &mut Vec<u8>) {
    put_str16(out, e.pk);
    out.extend_from_slice(&(e.vector.len() as u32).to_le_bytes());
    out.extend_from_slice(e.vector.bytes());
    match &e.metadata {
        Some(m) => {
            let json = serde_json::to_vec(m).expect("a JSON map serializes");
            out.extend_from_slice(&(json.len() as u32).to_le_bytes());
            out.extend_from_slice(&json);
        }
        None => out.extend_from_slice(&0u32.to_le_bytes()),
    }
}

impl<'a> VectorEntity<'a> {
    /// An entity over `vector_bytes` (little-endian f32s, e.g. from [`le_bytes`]).
    pub fn new(pk: &'a str, vector_bytes: &'a [u8], metadata: Option<Map<String, Value>>) -> Self {
        VectorEntity {
            pk,
            vector: VectorRef(vector_bytes),
            metadata,
        }
    }
}

/// Little-endian bytes of `v`, for building a [`VectorEntity`].
pub fn le_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn put_str16(out: &mut Vec<u8>, s: &str) {
    put_bytes16(out, s.as_bytes());
}

fn put_bytes16(out: &mut Vec<u8>, b: &[u8]) {
    let len = u16::try_from(b.len()).expect("callers keep u16-length fields short");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(b);
}

fn fits16(field: &'static str, len: usize) -> Result<(), EncodeError> {
    if len > u16::MAX as usize {
        return Err(EncodeError { field, len });
    }
    Ok(())
}

fn fits32(field: &'static str, len: usize) -> Result<(), EncodeError> {
    if len > u32::MAX as usize {
        return Err(EncodeError { field, len });
    }
    Ok(())
}

fn check_ts_points(points: &[TsPoint]) -> Result<(), EncodeError> {
    fits32("points", points.len())?;
    for p in points {
        fits16("metric", p.metric.len())?;
        fits16("entity", p.entity.len())?;
        if !p.tags.is_empty() {
            let json = serde_json::to_vec(&p.tags).map_or(usize::MAX, |j| j.len());
            fits16("tags", json)?;
        }
    }
    Ok(())
}

fn check_vector_entities(entities: &[VectorEntity<'_>]) -> Result<(), EncodeError> {
    fits32("entities", entities.len())?;
    for e in entities {
        fits16("pk", e.pk.len())?;
        fits32("vector", e.vector.len())?;
        if e.vector.bytes().len() % 4 != 0 {
            return Err(EncodeError {
                field: "vector (bytes not a multiple of 4)",
                len: e.vector.bytes().len(),
            });
        }
        if let Some(m) = &e.metadata {
            let json = serde_json::to_vec(m).map_or(usize::MAX, |j| j.len());
            fits32("metadata", json)?;
        }
    }
    Ok(())
}

/// Appends a checked `TS_PUT_BUFFERED` (`buffered`) or `TS_PUT` frame for borrowed `points`
/// (batch flag when more than one): what a client sends without building a [`Request`].
pub fn try_encode_ts_put(
    points: &[TsPoint],
    buffered: bool,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    check_ts_points(points)?;
    let (flags, payload) = encode_ts_points(points);
    let op = if buffered {
        Opcode::TsPutBuffered
    } else {
        Opcode::TsPut
    };
    checked_frame(op, flags, &payload, out)
}

/// Appends a checked `VECTOR_ADD_BUFFERED` (or, with `update`, `VECTOR_UPDATE_BUFFERED`) frame.
pub fn try_encode_vector_put(
    entities: &[VectorEntity<'_>],
    update: bool,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    check_vector_entities(entities)?;
    let (flags, payload) = encode_vector_entities(entities);
    let op = if update {
        Opcode::VectorUpdateBuffered
    } else {
        Opcode::VectorAddBuffered
    };
    checked_frame(op, flags, &payload, out)
}

/// Appends a frame whose payload length was checked to fit the header's `u32`.
fn checked_frame(
    op: Opcode,
    flags: u8,
    payload: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    fits32("frame", payload.len())?;
    encode_frame(op as u8, flags, payload, out);
    Ok(())
}

/// A field too long for its length prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field} is {len} bytes (or items), more than its length field can hold")]
pub struct EncodeError {
    pub field: &'static str,
    pub len: usize,
}

/// The opcode and batch flag of a request frame, checked.
fn opcode_and_batch(frame: &RawFrame<'_>) -> Result<(Opcode, bool), DecodeError> {
    let op = Opcode::from_u8(frame.code).ok_or(DecodeError::UnknownOpcode(frame.code))?;
    if frame.flags & !FLAG_BATCH != 0 {
        return Err(malformed(format!("unknown flags 0x{:02x}", frame.flags)));
    }
    let batch = frame.flags & FLAG_BATCH != 0;
    let batchable = matches!(
        op,
        Opcode::TsPutBuffered
            | Opcode::TsPut
            | Opcode::VectorAddBuffered
            | Opcode::VectorUpdateBuffered
            | Opcode::VectorRemoveBuffered
    );
    if batch && !batchable {
        return Err(malformed(format!("{op:?} takes no batch flag")));
    }
    Ok((op, batch))
}

/// The points of a `TS_PUT_BUFFERED` or `TS_PUT` frame grouped by series, as a server ingests
/// them: each distinct series (metric, entity and tag bytes as sent) once, its tags JSON
/// parsed once, and one `(series, timestamp, value)` sample per point, borrowing the frame.
/// Decodes to the same points as [`decode_request`], with the same errors.
#[derive(Clone, Debug, PartialEq)]
pub struct TsSeriesBatch<'a> {
    pub op: Opcode,
    pub batch: bool,
    pub series: Vec<TsSeries<'a>>,
    pub samples: Vec<TsSample>,
}

/// A distinct series of a [`TsSeriesBatch`]; `first` is the index of its first point.
#[derive(Clone, Debug, PartialEq)]
pub struct TsSeries<'a> {
    pub metric: &'a str,
    pub entity: &'a str,
    pub tags: BTreeMap<String, String>,
    pub first: usize,
}

/// A point of a [`TsSeriesBatch`]: the index of its series, time and value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TsSample {
    pub series: u32,
    pub timestamp_ms: i64,
    pub value: f64,
}

/// Decodes a time-series put frame as a [`TsSeriesBatch`]; `None` for any other opcode.
pub fn decode_ts_series<'a>(
    frame: &RawFrame<'a>,
) -> Result<Option<TsSeriesBatch<'a>>, DecodeError> {
    let (op, batch) = opcode_and_batch(frame)?;
    if !matches!(op, Opcode::TsPutBuffered | Opcode::TsPut) {
        return Ok(None);
    }
    let mut r = Reader::new(frame.payload);
    let mut series: Vec<TsSeries<'a>> = Vec::new();
    // foldhash, randomly seeded per map: SipHash was ~18% of a wire ingest profile.
    let mut index: HashMap<(&'a str, &'a str, &'a [u8]), u32, foldhash::fast::RandomState> =
        HashMap::with_capacity_and_hasher(256, foldhash::fast::RandomState::default());
    let mut n = 0usize;
    let samples = items(&mut r, batch, MIN_TS_ITEM, |r| {
        let metric = r.str16()?;
        let entity = r.str16()?;
        let timestamp_ms = r.i64()?;
        let value = r.f64()?;
        let tags_json = r.bytes16()?;
        let at = n;
        n += 1;
        let s = match index.get(&(metric, entity, tags_json)) {
            Some(&s) => s,
            None => {
                series.push(TsSeries {
                    metric,
                    entity,
                    tags: decode_tags(tags_json)?,
                    first: at,
                });
                let s = (series.len() - 1) as u32;
                index.insert((metric, entity, tags_json), s);
                s
            }
        };
        Ok(TsSample {
            series: s,
            timestamp_ms,
            value,
        })
    })?;
    if !r.is_empty() {
        return Err(malformed(format!("{} trailing bytes", r.remaining())));
    }
    Ok(Some(TsSeriesBatch {
        op,
        batch,
        series,
        samples,
    }))
}

/// Decodes a request frame.
pub fn decode_request<'a>(frame: &RawFrame<'a>) -> Result<Request<'a>, DecodeError> {
    let (op, batch) = opcode_and_batch(frame)?;
    let mut r = Reader::new(frame.payload);
    let request = match op {
        Opcode::Auth => Request::Auth { token: r.str16()? },
        Opcode::TsPutBuffered => Request::TsPutBuffered {
            points: items(&mut r, batch, MIN_TS_ITEM, decode_ts_point)?,
            batch,
        },
        Opcode::TsPut => Request::TsPut {
            points: items(&mut r, batch, MIN_TS_ITEM, decode_ts_point)?,
            batch,
        },
        Opcode::VectorAddBuffered => Request::VectorAddBuffered {
            entities: items(&mut r, batch, MIN_VECTOR_ITEM, decode_vector_entity)?,
            batch,
        },
        Opcode::VectorUpdateBuffered => Request::VectorUpdateBuffered {
            entities: items(&mut r, batch, MIN_VECTOR_ITEM, decode_vector_entity)?,
            batch,
        },
        Opcode::VectorRemoveBuffered => Request::VectorRemoveBuffered {
            pks: items(&mut r, batch, MIN_REMOVE_ITEM, |r| r.str16())?,
            batch,
        },
        Opcode::WalApplyCompressed => Request::WalApplyCompressed(r.rest()),
        Opcode::ReplicationConfig => Request::ReplicationConfig(r.rest()),
        Opcode::ChangesSubscribe => Request::ChangesSubscribe(r.rest()),
        Opcode::VectorSearch => Request::VectorSearch(decode_vector_query(&mut r)?),
        Opcode::TsBufferStats => Request::TsBufferStats,
        Opcode::TsBufferFlush => Request::TsBufferFlush,
        Opcode::VectorBufferStats => Request::VectorBufferStats,
        Opcode::VectorBufferFlush => Request::VectorBufferFlush,
        Opcode::ReplicationStats => Request::ReplicationStats,
    };
    if !r.is_empty() {
        return Err(malformed(format!("{} trailing bytes", r.remaining())));
    }
    Ok(request)
}

fn items<'a, T>(
    r: &mut Reader<'a>,
    batch: bool,
    min_item: usize,
    mut item: impl FnMut(&mut Reader<'a>) -> Result<T, DecodeError>,
) -> Result<Vec<T>, DecodeError> {
    if !batch {
        return Ok(vec![item(r)?]);
    }
    let count = r.u32()? as usize;
    if count == 0 {
        return Err(malformed("a batch holds at least one item"));
    }
    if count > r.remaining() / min_item {
        return Err(malformed(format!(
            "a batch of {count} items cannot fit in {} bytes",
            r.remaining()
        )));
    }
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        out.push(item(r)?);
    }
    Ok(out)
}

fn decode_ts_point(r: &mut Reader<'_>) -> Result<TsPoint, DecodeError> {
    let metric = r.str16()?.to_string();
    let entity = r.str16()?.to_string();
    let timestamp_ms = r.i64()?;
    let value = r.f64()?;
    let tags = decode_tags(r.bytes16()?)?;
    Ok(TsPoint {
        metric,
        entity,
        timestamp_ms,
        value,
        tags,
    })
}

/// A point's tags: empty bytes, or a JSON object of strings.
fn decode_tags(json: &[u8]) -> Result<BTreeMap<String, String>, DecodeError> {
    if json.is_empty() {
        return Ok(BTreeMap::new());
    }
    serde_json::from_slice(json)
        .map_err(|e| malformed(format!("tags: not a JSON object of strings: {e}")))
}

fn decode_vector_query<'a>(r: &mut Reader<'a>) -> Result<VectorQuery<'a>, DecodeError> {
    let collection = r.str16()?;
    let k = r.u32()?;
    let ef = r.u32()?;
    let vector = vector_ref(r)?;
    let len = r.u32()? as usize;
    Ok(VectorQuery {
        collection,
        k,
        ef,
        vector,
        filter: r.take(len)?,
    })
}

/// `dim u32, dim × f32`, borrowed.
fn vector_ref<'a>(r: &mut Reader<'a>) -> Result<VectorRef<'a>, DecodeError> {
    let dim = r.u32()? as usize;
    let bytes = dim
        .checked_mul(4)
        .ok_or_else(|| malformed("dimension overflows"))?;
    Ok(VectorRef(r.take(bytes)?))
}

fn decode_vector_entity<'a>(r: &mut Reader<'a>) -> Result<VectorEntity<'a>, DecodeError> {
    let pk = r.str16()?;
    let vector = vector_ref(r)?;
    let len = r.u32()? as usize;
    let json = r.take(len)?;
    let metadata = if json.is_empty() {
        None
    } else {
        Some(
            serde_json::from_slice(json)
                .map_err(|e| malformed(format!("metadata: not a JSON object: {e}")))?,
        )
    };
    Ok(VectorEntity {
        pk,
        vector,
        metadata,
    })
}

/// A bounds-checked little-endian reader over a payload.
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(malformed(format!(
                "needs {n} more bytes, {} left",
                self.buf.len()
            )));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        Ok(self.take(N)?.try_into().expect("take returns N bytes"))
    }

    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub fn f32(&mut self) -> Result<f32, DecodeError> {
        Ok(f32::from_le_bytes(self.array()?))
    }

    pub fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    pub fn f64(&mut self) -> Result<f64, DecodeError> {
        Ok(f64::from_le_bytes(self.array()?))
    }

    pub fn bytes16(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.u16()? as usize;
        self.take(n)
    }

    pub fn str16(&mut self) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(self.bytes16()?).map_err(|_| malformed("a string is not UTF-8"))
    }
}

/// One `TS_PUT` (or `TS_PUT_BUFFERED`) batch frame built point by point from borrowed parts,
/// with no allocation per point: what an importer encoding parsed lines uses. The frame always
/// carries the batch flag (a count of 1 is valid).
#[derive(Debug)]
pub struct TsFrameBuilder {
    buf: Vec<u8>,
    count: u32,
}

impl TsFrameBuilder {
    /// An empty frame for `TS_PUT_BUFFERED` (`buffered`) or `TS_PUT`, with room for
    /// `capacity` bytes.
    pub fn new(buffered: bool, capacity: usize) -> TsFrameBuilder {
        let op = if buffered {
            Opcode::TsPutBuffered
        } else {
            Opcode::TsPut
        };
        let mut buf = Vec::with_capacity(capacity.max(HEADER_LEN + 4));
        buf.extend_from_slice(&[op as u8, FLAG_BATCH, 0, 0, 0, 0, 0, 0, 0, 0]);
        TsFrameBuilder { buf, count: 0 }
    }

    /// Appends a point; `tags_json` is a JSON object of strings or empty (no tags).
    pub fn push(
        &mut self,
        metric: &str,
        entity: &str,
        timestamp_ms: i64,
        value: f64,
        tags_json: &[u8],
    ) -> Result<(), EncodeError> {
        fits16("metric", metric.len())?;
        fits16("entity", entity.len())?;
        fits16("tags", tags_json.len())?;
        self.buf
            .reserve(14 + metric.len() + entity.len() + 8 + 8 + tags_json.len());
        put_str16(&mut self.buf, metric);
        put_str16(&mut self.buf, entity);
        self.buf.extend_from_slice(&timestamp_ms.to_le_bytes());
        self.buf.extend_from_slice(&value.to_le_bytes());
        put_bytes16(&mut self.buf, tags_json);
        self.count += 1;
        Ok(())
    }

    /// Points so far.
    pub fn points(&self) -> usize {
        self.count as usize
    }

    /// Bytes of the frame so far.
    pub fn bytes(&self) -> usize {
        self.buf.len()
    }

    /// The finished frame.
    pub fn finish(mut self) -> Result<Vec<u8>, EncodeError> {
        let payload = self.buf.len() - HEADER_LEN;
        fits32("frame", payload)?;
        self.buf[2..6].copy_from_slice(&(payload as u32).to_le_bytes());
        self.buf[6..10].copy_from_slice(&self.count.to_le_bytes());
        Ok(self.buf)
    }
}

#[cfg(test)]
mod builder_tests {
    use super::*;

    #[test]
    fn the_builder_encodes_what_try_encode_ts_put_does() {
        let points = vec![
            TsPoint {
                metric: "cpu".into(),
                entity: "a".into(),
                timestamp_ms: 1000,
                value: 1.0,
                tags: Default::default(),
            },
            TsPoint {
                metric: "cpu".into(),
                entity: "b".into(),
                timestamp_ms: 2000,
                value: 2.5,
                tags: [("dc".to_string(), "eu".to_string())].into(),
            },
        ];
        for buffered in [false, true] {
            let mut expected = Vec::new();
            try_encode_ts_put(&points, buffered, &mut expected).unwrap();
            let mut b = TsFrameBuilder::new(buffered, 0);
            for p in &points {
                let tags = if p.tags.is_empty() {
                    Vec::new()
                } else {
                    serde_json::to_vec(&p.tags).unwrap()
                };
                b.push(&p.metric, &p.entity, p.timestamp_ms, p.value, &tags)
                    .unwrap();
            }
            assert_eq!(b.points(), 2);
            assert_eq!(b.finish().unwrap(), expected);
        }
    }
}
