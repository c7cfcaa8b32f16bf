//! Downsampling: the rules of a database, the tiers they define, and how a downsampled bucket
//! is stored.
//!
//! # Rules and tiers
//! A rule `{after_ms, resolution_ms}` says: points older than `after_ms` are kept only as
//! buckets of `resolution_ms` (their `min`, `max`, `sum`, `count`, `first` and `last`, the
//! last two with their timestamps: [`Acc`]). Rules are ordered by age, each coarser than the
//! one before and a multiple of it (1 min, then 1 h), so a coarse bucket is a union of whole
//! fine ones and moving a fine bucket into a coarse one never splits it. At a time `now`, tier
//! `k` (rule `k`) starts at its *cutoff*, `now - after_ms` aligned down to its resolution:
//! every point before cutoff `k` (and not before cutoff `k + 1`) belongs in tier `k`, and a
//! point after cutoff 0 stays raw. Cutoffs only fall with `k`, so the tiers partition time.
//! Buckets are aligned to the Unix epoch (`start = t - t mod resolution`).
//!
//! # Where a point is
//! Every point is in exactly one place: a raw chunk (or the head), or one bucket of one tier.
//! The background sweep (`TsEngine::sweep`) moves data in one direction only, raw → tier 0
//! → tier 1 …, and each move deletes its source in the same atomic, synced batch that writes
//! its destination. A kill at any moment therefore leaves each point counted once, and a
//! sweep that ran again would find nothing more to move (it is idempotent). Queries add up
//! every place (raw points and each tier's buckets) inside their range, which is exactly
//! "the finest resolution available for each part of the range".
//!
//! # Storage
//! Keyspace `rollups`: `series u32 BE ++ resolution_ms u64 BE ++ block_start (i64, sign bit
//! flipped) BE` → a block of up to [`BLOCK_BUCKETS`] consecutive buckets (a block of 1-minute
//! buckets spans 17 h, of 1-hour buckets 43 days). The value is six Gorilla/decimal streams
//! of the chunk codec, each `u32 LE length ++ block`: `(start, min)`, `(start, max)`,
//! `(start, sum)`, `(start, count)`, `(first_ts, first)`, `(last_ts, last)`. Regular bucket
//! starts cost about a bit each after the first stream; a 1-minute bucket of 6 points at 10 s
//! costs about 20 bytes against 6 × ~1.5 bytes raw, so the gain is in what a query decodes
//! (one bucket instead of 6 points at 1 minute, instead of 360 at 1 hour).
//!
//! # Limits
//! At most [`MAX_RULES`] rules; resolutions from 1 ms to 2^40 ms. Non-finite values (NaN,
//! ±Inf, as remote write may store) are not rolled up: JSON queries skip them anyway, and
//! Prometheus staleness markers in a rolled-up range are dropped with their points (the
//! range then reads as one sample per bucket).

use std::collections::BTreeMap;

use crate::query::{Acc, Aggregation};

/// Most downsampling rules a database may have.
pub const MAX_RULES: usize = 8;
/// Buckets per stored block.
pub const BLOCK_BUCKETS: i64 = 1024;
/// Largest resolution (about 35 years).
pub const MAX_RESOLUTION_MS: u64 = 1 << 40;

/// After `after_ms`, keep only buckets of `resolution_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DownsampleRule {
    pub after_ms: u64,
    pub resolution_ms: u64,
}

/// Why a set of rules was refused: the index of the rule, the field, the reason.
pub type RuleError = (usize, &'static str, String);

/// Checks each rule on its own: at most [`MAX_RULES`], `after_ms` in 1..=i64::MAX,
/// `resolution_ms` in 1..=[`MAX_RESOLUTION_MS`] (what a schema can say).
pub fn check_ranges(rules: &[DownsampleRule]) -> Result<(), RuleError> {
    if rules.len() > MAX_RULES {
        return Err((
            MAX_RULES,
            "downsampling",
            format!("at most {MAX_RULES} rules"),
        ));
    }
    for (i, r) in rules.iter().enumerate() {
        if r.after_ms == 0 || r.after_ms > i64::MAX as u64 {
            return Err((i, "after_ms", "must be at least 1 and fit in an i64".into()));
        }
        if r.resolution_ms == 0 || r.resolution_ms > MAX_RESOLUTION_MS {
            return Err((
                i,
                "resolution_ms",
                format!("must be between 1 and {MAX_RESOLUTION_MS}"),
            ));
        }
    }
    Ok(())
}

/// Checks rules: [`check_ranges`], then ages strictly increasing, resolutions strictly
/// increasing and each a multiple of the one before.
pub fn validate(rules: &[DownsampleRule]) -> Result<(), RuleError> {
    check_ranges(rules)?;
    for (i, r) in rules.iter().enumerate() {
        if let Some(prev) = i.checked_sub(1).map(|p| rules[p]) {
            if r.after_ms <= prev.after_ms {
                return Err((
                    i,
                    "after_ms",
                    "rules must be ordered by increasing age".into(),
                ));
            }
            if r.resolution_ms <= prev.resolution_ms || r.resolution_ms % prev.resolution_ms != 0 {
                return Err((
                    i,
                    "resolution_ms",
                    format!(
                        "must be coarser than the previous rule's ({} ms) and a multiple of it",
                        prev.resolution_ms
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// `t` aligned down to a multiple of `step` (> 0); `i64::MIN` for the few `t` below the lowest
/// multiple.
pub fn align(t: i64, step: i64) -> i64 {
    t.saturating_sub(t.rem_euclid(step))
}

/// The tiers of a set of rules at one moment (see the module doc).
#[derive(Clone, Debug)]
pub struct Tiers {
    /// Resolution of tier `k`, in ms.
    pub res: Vec<i64>,
    /// Tier `k` holds the points before `cutoff[k]` (and not before `cutoff[k + 1]`).
    pub cutoff: Vec<i64>,
}

impl Tiers {
    pub fn at(rules: &[DownsampleRule], now: i64) -> Tiers {
        let res: Vec<i64> = rules.iter().map(|r| r.resolution_ms as i64).collect();
        let cutoff = rules
            .iter()
            .zip(&res)
            .map(|(r, &res)| align(now.saturating_sub(r.after_ms as i64), res))
            .collect();
        Tiers { res, cutoff }
    }

    pub fn is_empty(&self) -> bool {
        self.res.is_empty()
    }

    /// The tier a point (or a bucket starting) at `t` belongs in; `None`: raw.
    pub fn tier_of(&self, t: i64) -> Option<usize> {
        self.cutoff.iter().rposition(|&c| t < c)
    }

    /// The start of tier `k`'s bucket holding `t`.
    pub fn bucket(&self, k: usize, t: i64) -> i64 {
        align(t, self.res[k])
    }

    /// The start of tier `k`'s block holding `t`.
    pub fn block(&self, k: usize, t: i64) -> i64 {
        align(t, self.res[k].saturating_mul(BLOCK_BUCKETS))
    }
}

/// Encodes buckets (in start order) as a stored block.
pub fn encode_block(buckets: &BTreeMap<i64, Acc>) -> Vec<u8> {
    let column = |f: &dyn Fn(i64, &Acc) -> (i64, f64)| -> Vec<(i64, f64)> {
        buckets.iter().map(|(&s, a)| f(s, a)).collect()
    };
    let streams = [
        column(&|s, a| (s, a.min)),
        column(&|s, a| (s, a.max)),
        column(&|s, a| (s, a.sum)),
        column(&|s, a| (s, a.count as f64)),
        column(&|_, a| a.first),
        column(&|_, a| a.last),
    ];
    let mut out = Vec::new();
    for s in &streams {
        let block = crate::engine::encode_chunk(s);
        out.extend_from_slice(&(block.len() as u32).to_le_bytes());
        out.extend_from_slice(&block);
    }
    out
}

/// Decodes a stored block into its buckets, in start order.
pub fn decode_block(bytes: &[u8]) -> Result<Vec<(i64, Acc)>, String> {
    decode_block_for(bytes, None)
}

/// Streams of a block: min, max, sum, count, first, last.
const STREAMS: usize = 6;

/// [`decode_block`], decoding only the streams `agg` reads (every stream for `None`): the
/// other fields of each [`Acc`] are left empty (`min` +∞, `max` −∞, `sum` 0, `count` 0,
/// `first`/`last` at the far ends of time with NaN), so the result serves that aggregation
/// only. An aggregation reads one stream (two for `avg`), not six.
pub fn decode_block_for(
    mut bytes: &[u8],
    agg: Option<Aggregation>,
) -> Result<Vec<(i64, Acc)>, String> {
    let wanted: &[usize] = match agg {
        None => &[0, 1, 2, 3, 4, 5],
        Some(Aggregation::Min) => &[0],
        Some(Aggregation::Max) => &[1],
        Some(Aggregation::Sum) => &[2],
        Some(Aggregation::Avg) => &[2, 3],
        Some(Aggregation::Count) => &[3],
        Some(Aggregation::First) => &[4],
        Some(Aggregation::Last) => &[5],
    };
    let mut streams: [Option<Vec<(i64, f64)>>; STREAMS] = Default::default();
    for (i, stream) in streams.iter_mut().enumerate() {
        let (len, rest) = bytes
            .split_first_chunk::<4>()
            .ok_or("rollup block truncated")?;
        let len = u32::from_le_bytes(*len) as usize;
        if rest.len() < len {
            return Err("rollup block truncated".into());
        }
        if wanted.contains(&i) {
            *stream = Some(sluice_gorilla::decode_chunk(&rest[..len]).map_err(|e| e.to_string())?);
        }
        bytes = &rest[len..];
    }
    let n = streams.iter().flatten().map(Vec::len).max().unwrap_or(0);
    if streams.iter().flatten().any(|s| s.len() != n) {
        return Err("rollup block streams differ in length".into());
    }
    let at = |s: usize, i: usize| streams[s].as_ref().map(|v| v[i]);
    Ok((0..n)
        .map(|i| {
            // Every stream but first/last is keyed by the bucket start.
            let start = [0, 1, 2, 3]
                .iter()
                .find_map(|&s| at(s, i).map(|p| p.0))
                .or_else(|| at(4, i).map(|p| p.0))
                .or_else(|| at(5, i).map(|p| p.0))
                .unwrap_or(0);
            let count = at(3, i).map_or(0.0, |p| p.1);
            (
                start,
                Acc {
                    min: at(0, i).map_or(f64::INFINITY, |p| p.1),
                    max: at(1, i).map_or(f64::NEG_INFINITY, |p| p.1),
                    sum: at(2, i).map_or(0.0, |p| p.1),
                    count: if count.is_finite() && count >= 0.0 {
                        count as u64
                    } else {
                        0
                    },
                    first: at(4, i).unwrap_or((i64::MAX, f64::NAN)),
                    last: at(5, i).unwrap_or((i64::MIN, f64::NAN)),
                },
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(after_ms: u64, resolution_ms: u64) -> DownsampleRule {
        DownsampleRule {
            after_ms,
            resolution_ms,
        }
    }

    #[test]
    fn rules_are_ordered_and_nested() {
        assert!(
            validate(&[
                rule(7 * 86_400_000, 60_000),
                rule(30 * 86_400_000, 3_600_000)
            ])
            .is_ok()
        );
        assert!(validate(&[]).is_ok());
        assert_eq!(validate(&[rule(0, 1000)]).unwrap_err().1, "after_ms");
        assert_eq!(validate(&[rule(10, 0)]).unwrap_err().1, "resolution_ms");
        assert_eq!(
            validate(&[rule(10, 1000), rule(5, 60_000)]).unwrap_err(),
            (
                1,
                "after_ms",
                "rules must be ordered by increasing age".into()
            )
        );
        let e = validate(&[rule(10, 60_000), rule(20, 90_000)]).unwrap_err();
        assert_eq!((e.0, e.1), (1, "resolution_ms"));
        assert_eq!(
            validate(&[rule(10, 60_000), rule(20, 60_000)])
                .unwrap_err()
                .1,
            "resolution_ms"
        );
        let many: Vec<_> = (1..=9).map(|i| rule(i, 1 << i)).collect();
        assert_eq!(validate(&many).unwrap_err().1, "downsampling");
    }

    #[test]
    fn tiers_partition_time() {
        let t = Tiers::at(&[rule(1_000, 10), rule(5_000, 100)], 10_005);
        assert_eq!(t.cutoff, vec![9_000, 5_000]);
        assert_eq!(t.tier_of(9_000), None);
        assert_eq!(t.tier_of(8_999), Some(0));
        assert_eq!(t.tier_of(5_000), Some(0));
        assert_eq!(t.tier_of(4_999), Some(1));
        assert_eq!(t.tier_of(-7), Some(1));
        assert_eq!(t.bucket(0, 8_999), 8_990);
        assert_eq!(t.bucket(1, -7), -100);
        assert_eq!(t.block(0, 8_999), 0);
        assert_eq!(t.block(0, 11_000), 10_240);
    }

    #[test]
    fn blocks_round_trip() {
        let mut buckets = BTreeMap::new();
        let mut a = Acc::new(61_000, 1.5);
        a.add(65_000, -2.25);
        a.add(119_999, 7.0);
        buckets.insert(60_000, a);
        buckets.insert(-60_000, Acc::new(-1, 1e300));
        let bytes = encode_block(&buckets);
        let back = decode_block(&bytes).unwrap();
        assert_eq!(back, buckets.into_iter().collect::<Vec<_>>());
        assert!(decode_block(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode_block(&[]).is_err());
    }
}
