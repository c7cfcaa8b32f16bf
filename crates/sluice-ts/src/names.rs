//! Series a protocol names by its own bytes: the ingest path of remote write.
//!
//! # Why
//! A Prometheus remote-write request names every series it carries (10,000 series with one
//! sample each is a typical request), and the same series come back in every request. Built
//! the general way, each series costs its labels as strings, a [`SeriesKey`], a hash of that key
//! in the series index and its encoding for the WAL: measured at ~1.9 µs a sample, most of the
//! remote-write profile. Here a series is remembered by the raw bytes the protocol names it
//! with (a `TimeSeries` message's label section), so a known series costs one hash of borrowed
//! bytes and the copy of its stored encoding into the WAL record: no string, no key, no index
//! look-up.
//!
//! # Invariants
//! - An entry maps raw bytes to the id and the [`SeriesKey::encode_into`] encoding of the series
//!   those bytes were validated and resolved to once. Raw bytes must determine the series: the
//!   caller only names series by bytes it decodes deterministically into one key.
//! - Ids never change for an engine's life (the index is append-only and rebuilt in the same
//!   order), so an entry stays true; the cache belongs to one engine and dies with it.
//! - A [`NamedBatch`] encodes to exactly the WAL record a [`crate::Batch`] of the same keys
//!   and samples encodes to, so replay, replication and changefeeds do not know it exists.
//!
//! # Limits
//! The cache holds at most [`CACHE_BYTES`] of entries (~250 bytes each: ~500,000 series of
//! typical labels); when full it is emptied and refills from the next requests, so a changing
//! set of series cannot grow it and a steady set larger than it costs the general path.

use std::sync::Arc;

use crate::batch::Sample;
use crate::series::{HashMap, SeriesId, SeriesKey};

/// Most bytes of names the cache holds (see the module doc).
pub const CACHE_BYTES: usize = 128 << 20;

/// Bookkeeping bytes an entry costs beyond its raw name and encoding (map slot, boxes, Arc).
const ENTRY_OVERHEAD: usize = 64;

/// What the engine knows of a series named by raw bytes.
#[derive(Clone, Debug)]
pub struct KnownSeries {
    pub id: SeriesId,
    /// The series key as [`SeriesKey::encode_into`] writes it.
    pub encoded: Arc<[u8]>,
}

/// A series of a [`NamedBatch`].
#[derive(Clone, Debug)]
pub enum NamedSeries {
    /// Known by its raw name ([`SeriesCache::get`]).
    Known(KnownSeries),
    /// Not known yet: its validated key, and the raw name to remember it by once it has an id
    /// (`None`: do not remember it, as for a label section the parser could not delimit).
    New(SeriesKey, Option<Box<[u8]>>),
}

/// A write as series (named, see [`NamedSeries`]) and samples, for [`crate::TsEngine::write_named`].
#[derive(Clone, Debug, Default)]
pub struct NamedBatch {
    pub series: Vec<NamedSeries>,
    pub samples: Vec<Sample>,
}

impl NamedBatch {
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

/// Raw name → series, bounded by [`CACHE_BYTES`].
#[derive(Default)]
pub struct SeriesCache {
    map: HashMap<Box<[u8]>, KnownSeries>,
    bytes: usize,
}

impl SeriesCache {
    pub fn get(&self, raw: &[u8]) -> Option<&KnownSeries> {
        self.map.get(raw)
    }

    /// Remembers `raw` as naming `known`; empties the cache first when it is full.
    pub fn insert(&mut self, raw: Box<[u8]>, known: KnownSeries) {
        let cost = raw.len() + known.encoded.len() + ENTRY_OVERHEAD;
        if self.bytes + cost > CACHE_BYTES {
            self.map = HashMap::default();
            self.bytes = 0;
        }
        if self.map.insert(raw, known).is_none() {
            self.bytes += cost;
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_cache_empties_and_refills() {
        let mut c = SeriesCache::default();
        let known = |id| KnownSeries {
            id,
            encoded: Arc::from(vec![0u8; 1 << 20].into_boxed_slice()),
        };
        for id in 0..200u32 {
            c.insert(id.to_le_bytes().to_vec().into_boxed_slice(), known(id));
            assert!(c.bytes <= CACHE_BYTES);
            assert_eq!(c.get(&id.to_le_bytes()).map(|k| k.id), Some(id));
        }
        assert!(c.len() < 200 && !c.is_empty());
        assert!(c.get(&0u32.to_le_bytes()).is_none());
    }
}
