//! WAL records of the vector engine.
//!
//! `VECTOR_OPS` (kind 2): one request's operations on one collection, applied in order.
//! ```text
//! collection_len u16, collection, created u64 (LSN of the collection's creation record: which
//! incarnation of the name the operations belong to), count u32,
//! count × { op u8, pk_len u16, pk, [body] }
//! ```
//! Ops: 1 add and 2 update (body: `dim u32, dim × f32, metadata_len u32, metadata JSON
//! object`); 4 add and 5 update with times (the same body, then `flags u8` — bit 0 timestamp,
//! bit 1 expiry — and an `i64` for each flag set: `timestamp_ms`, then `expires_at_ms`); 3
//! remove (no body); 6 expire (body: `at_ms i64`: remove the entity if, when the operation is
//! applied, it expires at or before `at_ms`; written by the TTL sweep, so that a client's newer
//! write of the same pk, logged after the sweep looked, is never removed by it). Entities
//! without times are written as ops 1 and 2, byte for byte what older versions wrote.
//! `COLLECTION` (kind 3): a collection created or deleted, as JSON
//! (`{"create": CollectionConfig}` or `{"delete": name}`): rare and small.
//!
//! Little-endian. Add and update both carry the entity's whole state, so replaying any suffix
//! of the log over a snapshot that already holds part of it ends in the same state (the
//! snapshot recovery argument in `engine.rs` relies on this). Decoding checks every length.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sluice_wal::RecordKind;

use crate::collection::CollectionConfig;

pub const VECTOR_OPS: RecordKind = RecordKind(2);
pub const COLLECTION: RecordKind = RecordKind(3);

const OP_ADD: u8 = 1;
const OP_UPDATE: u8 = 2;
const OP_REMOVE: u8 = 3;
const OP_ADD_TIMED: u8 = 4;
const OP_UPDATE_TIMED: u8 = 5;
const OP_EXPIRE: u8 = 6;
const HAS_TIMESTAMP: u8 = 1;
const HAS_EXPIRY: u8 = 2;

/// One operation on one entity.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Insert or replace.
    Add(EntityData),
    /// Replace an entity that exists (checked when written; replayed like `Add`).
    Update(EntityData),
    Remove {
        pk: String,
    },
    /// Remove the entity if its expiry, when applied, is at or before `at_ms` (TTL sweep).
    Expire {
        pk: String,
        at_ms: i64,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct EntityData {
    pub pk: String,
    pub vector: Vec<f32>,
    pub metadata: Map<String, Value>,
    /// The entity's time (time-range search, recency decay).
    pub timestamp_ms: Option<i64>,
    /// When the entity expires (from the request, or the collection's `ttl_ms` at write time).
    pub expires_at_ms: Option<i64>,
}

impl EntityData {
    /// Whether the entity is expired at `now_ms`.
    pub fn expired(&self, now_ms: i64) -> bool {
        self.expires_at_ms.is_some_and(|t| t <= now_ms)
    }
}

impl Op {
    pub fn pk(&self) -> &str {
        match self {
            Op::Add(e) | Op::Update(e) => &e.pk,
            Op::Remove { pk } | Op::Expire { pk, .. } => pk,
        }
    }

    /// The entity's state after the operation (`None`: removed).
    pub fn entity(&self) -> Option<&EntityData> {
        match self {
            Op::Add(e) | Op::Update(e) => Some(e),
            Op::Remove { .. } | Op::Expire { .. } => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CollectionChange {
    Create(CollectionConfig),
    Delete(String),
}

/// A payload that is not a valid record.
#[derive(Debug, thiserror::Error)]
#[error("malformed vector record: {0}")]
pub struct DecodeError(pub String);

pub fn encode_ops(collection: &str, created: u64, ops: &[Op]) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        14 + collection.len()
            + ops
                .iter()
                .map(|op| {
                    3 + op.pk().len()
                        + op.entity()
                            .map_or(0, |e| 8 + 4 * e.vector.len() + 64 + e.metadata.len() * 32)
                })
                .sum::<usize>(),
    );
    put_str(&mut out, collection);
    out.extend_from_slice(&created.to_le_bytes());
    out.extend_from_slice(&(ops.len() as u32).to_le_bytes());
    for op in ops {
        let timed = op
            .entity()
            .is_some_and(|e| e.timestamp_ms.is_some() || e.expires_at_ms.is_some());
        let tag = match op {
            Op::Add(_) if timed => OP_ADD_TIMED,
            Op::Update(_) if timed => OP_UPDATE_TIMED,
            Op::Add(_) => OP_ADD,
            Op::Update(_) => OP_UPDATE,
            Op::Remove { .. } => OP_REMOVE,
            Op::Expire { .. } => OP_EXPIRE,
        };
        out.push(tag);
        put_str(&mut out, op.pk());
        if let Op::Expire { at_ms, .. } = op {
            out.extend_from_slice(&at_ms.to_le_bytes());
        }
        if let Some(e) = op.entity() {
            out.extend_from_slice(&(e.vector.len() as u32).to_le_bytes());
            for x in &e.vector {
                out.extend_from_slice(&x.to_le_bytes());
            }
            let len_at = out.len();
            out.extend_from_slice(&[0; 4]);
            serde_json::to_writer(&mut out, &e.metadata).expect("a JSON map serializes");
            let len = (out.len() - len_at - 4) as u32;
            out[len_at..len_at + 4].copy_from_slice(&len.to_le_bytes());
            if timed {
                let flags = u8::from(e.timestamp_ms.is_some()) * HAS_TIMESTAMP
                    + u8::from(e.expires_at_ms.is_some()) * HAS_EXPIRY;
                out.push(flags);
                for t in [e.timestamp_ms, e.expires_at_ms].into_iter().flatten() {
                    out.extend_from_slice(&t.to_le_bytes());
                }
            }
        }
    }
    out
}

/// Decodes `(collection, created, ops)`.
pub fn decode_ops(payload: &[u8]) -> Result<(String, u64, Vec<Op>), DecodeError> {
    let mut r = Reader { buf: payload };
    let collection = r.str()?;
    let created = u64::from_le_bytes(r.take(8)?.try_into().expect("8"));
    let count = r.u32()? as usize;
    // Every op takes at least 3 bytes: never trust the count for an allocation beyond that.
    let mut ops = Vec::with_capacity(count.min(r.buf.len() / 3));
    for _ in 0..count {
        let tag = r.take(1)?[0];
        let pk = r.str()?;
        let op = match tag {
            OP_REMOVE => Op::Remove { pk },
            OP_EXPIRE => Op::Expire {
                pk,
                at_ms: r.i64()?,
            },
            OP_ADD | OP_UPDATE | OP_ADD_TIMED | OP_UPDATE_TIMED => {
                let dim = r.u32()? as usize;
                let bytes = r.take(dim.checked_mul(4).ok_or_else(|| err("dimension"))?)?;
                let vector = bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                    .collect();
                let len = r.u32()? as usize;
                let metadata = serde_json::from_slice(r.take(len)?)
                    .map_err(|e| err(&format!("metadata: {e}")))?;
                let (mut timestamp_ms, mut expires_at_ms) = (None, None);
                if matches!(tag, OP_ADD_TIMED | OP_UPDATE_TIMED) {
                    let flags = r.take(1)?[0];
                    if flags & !(HAS_TIMESTAMP | HAS_EXPIRY) != 0 {
                        return Err(err(&format!("unknown time flags {flags}")));
                    }
                    if flags & HAS_TIMESTAMP != 0 {
                        timestamp_ms = Some(r.i64()?);
                    }
                    if flags & HAS_EXPIRY != 0 {
                        expires_at_ms = Some(r.i64()?);
                    }
                }
                let e = EntityData {
                    pk,
                    vector,
                    metadata,
                    timestamp_ms,
                    expires_at_ms,
                };
                if matches!(tag, OP_ADD | OP_ADD_TIMED) {
                    Op::Add(e)
                } else {
                    Op::Update(e)
                }
            }
            other => return Err(err(&format!("unknown op {other}"))),
        };
        ops.push(op);
    }
    if !r.buf.is_empty() {
        return Err(err("trailing bytes"));
    }
    Ok((collection, created, ops))
}

pub fn encode_collection(change: &CollectionChange) -> Vec<u8> {
    serde_json::to_vec(change).expect("a collection change serializes")
}

pub fn decode_collection(payload: &[u8]) -> Result<CollectionChange, DecodeError> {
    serde_json::from_slice(payload).map_err(|e| err(&e.to_string()))
}

fn err(what: &str) -> DecodeError {
    DecodeError(what.to_string())
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    debug_assert!(s.len() <= u16::MAX as usize, "names and pks are short");
    out.extend_from_slice(&(s.len() as u16).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(err("truncated"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }

    fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }

    fn str(&mut self) -> Result<String, DecodeError> {
        let n = u16::from_le_bytes(self.take(2)?.try_into().expect("2")) as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| err("invalid UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn arb_op() -> impl Strategy<Value = Op> {
        let entity = (
            "[a-z0-9_]{1,12}",
            proptest::collection::vec(-1e6f32..1e6, 1..16),
            proptest::collection::btree_map("[a-z]{1,4}", any::<i32>(), 0..4),
            proptest::option::of(any::<i64>()),
            proptest::option::of(any::<i64>()),
        )
            .prop_map(|(pk, vector, m, timestamp_ms, expires_at_ms)| EntityData {
                pk,
                vector,
                metadata: m.into_iter().map(|(k, v)| (k, json!(v))).collect(),
                timestamp_ms,
                expires_at_ms,
            });
        prop_oneof![
            entity.clone().prop_map(Op::Add),
            entity.prop_map(Op::Update),
            "[a-z0-9]{1,8}".prop_map(|pk| Op::Remove { pk }),
            ("[a-z0-9]{1,8}", any::<i64>()).prop_map(|(pk, at_ms)| Op::Expire { pk, at_ms }),
        ]
    }

    proptest! {
        #[test]
        fn ops_round_trip(name in "[a-z]{1,10}", ops in proptest::collection::vec(arb_op(), 0..20)) {
            let payload = encode_ops(&name, 77, &ops);
            let (n, created, back) = decode_ops(&payload).unwrap();
            prop_assert_eq!(n, name);
            prop_assert_eq!(created, 77);
            prop_assert_eq!(back, ops);
        }

        #[test]
        fn untimed_entities_keep_the_old_encoding(pk in "[a-z]{1,8}", v in proptest::collection::vec(-1f32..1., 1..4)) {
            let e = EntityData { pk, vector: v, metadata: Map::new(), timestamp_ms: None, expires_at_ms: None };
            let payload = encode_ops("c", 1, &[Op::Add(e)]);
            prop_assert_eq!(payload[2 + 1 + 8 + 4], OP_ADD);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_ops(&bytes);
            let _ = decode_collection(&bytes);
        }

        #[test]
        fn every_truncation_is_an_error(ops in proptest::collection::vec(arb_op(), 1..5)) {
            let payload = encode_ops("c", 1, &ops);
            for cut in 0..payload.len() {
                prop_assert!(decode_ops(&payload[..cut]).is_err());
            }
        }
    }
}
