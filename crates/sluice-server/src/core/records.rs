//! The registry of WAL record kinds: every kind a database's log holds, in one enum that every
//! reader of the log matches exhaustively (replay at open, a replica's verify-then-apply,
//! changefeed events), so adding a kind is a compile error wherever it must be handled.
//!
//! The WAL stores a kind as one byte and never interprets payloads; each engine defines the
//! payloads of its kinds (`sluice_ts::record`, `sluice_vector::record`). The numbers are part
//! of the on-disk format and of replication: never reuse or renumber one.
//!
//! | kind | byte | payload |
//! |---|---|---|
//! | `Points` | 1 | time-series points one by one (written before series grouping; still read) |
//! | `VectorOps` | 2 | vector operations on one collection (add, update, remove) |
//! | `Collection` | 3 | a collection created or deleted |
//! | `SeriesPoints` | 4 | time-series points as distinct series plus samples (written today) |
//! | `TsDelete` | 5 | a deletion of time-series points: a selection and a time range |

use sluice_wal::RecordKind;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Points,
    VectorOps,
    Collection,
    SeriesPoints,
    TsDelete,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Points,
        Kind::VectorOps,
        Kind::Collection,
        Kind::SeriesPoints,
        Kind::TsDelete,
    ];

    /// The byte this kind is stored as.
    pub fn wal(self) -> RecordKind {
        match self {
            Kind::Points => sluice_ts::record::POINTS,
            Kind::VectorOps => sluice_vector::record::VECTOR_OPS,
            Kind::Collection => sluice_vector::record::COLLECTION,
            Kind::SeriesPoints => sluice_ts::record::SERIES_POINTS,
            Kind::TsDelete => sluice_ts::record::DELETE,
        }
    }

    /// The kind stored as `kind`; `None` for a byte this build does not know (written by a
    /// newer Sluice: refuse it, never skip it).
    pub fn of(kind: RecordKind) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.wal() == kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_own_byte_and_round_trips() {
        let mut bytes: Vec<u8> = Kind::ALL.iter().map(|k| k.wal().0).collect();
        assert_eq!(bytes, [1, 2, 3, 4, 5], "the on-disk numbers never change");
        bytes.dedup();
        assert_eq!(bytes.len(), Kind::ALL.len());
        for k in Kind::ALL {
            assert_eq!(Kind::of(k.wal()), Some(k));
        }
        assert_eq!(Kind::of(RecordKind(0)), None);
        assert_eq!(Kind::of(RecordKind(6)), None);
    }
}
