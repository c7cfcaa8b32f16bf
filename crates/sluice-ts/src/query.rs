//! Query model and evaluation: selection by metric, entity, tag equalities and matchers;
//! raw points or aggregation per step; grouping by tags.
//!
//! Semantics (documented for users in the API):
//! - the range is inclusive at both ends: `from_ms <= timestamp_ms <= to_ms`;
//! - a tag a series lacks matches as the empty string (`!=` and `!~` match it, `=~ ".*"` too);
//!   regexes are anchored (`=~ "web.*"` means the whole value);
//! - with `step_ms`, bucket `k` covers `[from + k·step, from + (k+1)·step)` and is reported at
//!   its start; without it, one bucket covers the range, reported at `from_ms`; empty buckets are
//!   omitted;
//! - with `group_by`, the series of a group are merged before aggregating (`avg` is the mean of
//!   all points in the bucket, not a mean of means); the pseudo-tag `entity` groups by entity;
//! - duplicate timestamps within a series: the last write (highest LSN) wins.

use std::collections::BTreeMap;

use regex::Regex;

use crate::series::SeriesKey;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchOp {
    Eq,
    Ne,
    Re,
    NotRe,
}

#[derive(Clone, Debug)]
pub struct Matcher {
    pub tag: String,
    pub op: MatchOp,
    pub value: String,
    regex: Option<Regex>,
}

/// Largest compiled regex accepted from a query.
const MAX_REGEX_BYTES: usize = 1 << 20;

impl Matcher {
    /// Builds a matcher, compiling (and bounding) its regex.
    pub fn new(tag: String, op: MatchOp, value: String) -> Result<Matcher, String> {
        let regex = match op {
            MatchOp::Re | MatchOp::NotRe => Some(
                // Compile the value alone first: it must be a whole regex, so that wrapping it
                // cannot be escaped (`a)|(.*` would otherwise unanchor the pattern).
                regex::RegexBuilder::new(&value)
                    .size_limit(MAX_REGEX_BYTES)
                    .build()
                    .and_then(|_| {
                        regex::RegexBuilder::new(&format!("^(?:{value})$"))
                            .size_limit(MAX_REGEX_BYTES)
                            .build()
                    })
                    .map_err(|e| e.to_string())?,
            ),
            MatchOp::Eq | MatchOp::Ne => None,
        };
        Ok(Matcher {
            tag,
            op,
            value,
            regex,
        })
    }

    pub fn matches(&self, key: &SeriesKey) -> bool {
        let actual = if self.tag == "entity" {
            key.entity.as_str()
        } else {
            key.tag(&self.tag).unwrap_or("")
        };
        match (&self.op, &self.regex) {
            (MatchOp::Eq, _) => actual == self.value,
            (MatchOp::Ne, _) => actual != self.value,
            (MatchOp::Re, Some(r)) => r.is_match(actual),
            (MatchOp::NotRe, Some(r)) => !r.is_match(actual),
            (MatchOp::Re | MatchOp::NotRe, None) => false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aggregation {
    Min,
    Max,
    Sum,
    Avg,
    Count,
    First,
    Last,
}

/// A validated query.
#[derive(Clone, Debug)]
pub struct Query {
    pub metric: String,
    pub entity: Option<String>,
    pub tags: Vec<(String, String)>,
    pub matchers: Vec<Matcher>,
    pub from_ms: i64,
    pub to_ms: i64,
    pub aggregation: Option<Aggregation>,
    /// Positive when set.
    pub step_ms: Option<i64>,
    pub group_by: Vec<String>,
}

/// One series (or group) of a result.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesResult {
    pub metric: String,
    pub entity: String,
    pub tags: Vec<(String, String)>,
    pub points: Vec<(i64, f64)>,
}

/// Merges point sources of one series given oldest write first: sorts by timestamp, keeps the
/// last write of each timestamp, and keeps only `[from, to]`.
///
/// Sources are merged into the answer one at a time. A source that starts after the answer
/// ends is appended (chunks of successive flushes: the common case); one that overlaps it is
/// merged with the answer's overlapping tail only (concurrent writers make successive flushes
/// overlap by a few points at their edges). So merging costs about one copy of the points, not
/// a sort. A source not in strictly increasing time order (a head, written out of order) is
/// sorted first, its last write of a timestamp kept.
pub fn merge_sources(sources: Vec<Vec<(i64, f64)>>, from: i64, to: i64) -> Vec<(i64, f64)> {
    let total = sources.iter().map(Vec::len).sum();
    let mut out: Vec<(i64, f64)> = Vec::with_capacity(total);
    let mut tail: Vec<(i64, f64)> = Vec::new();
    for mut source in sources {
        if !source.windows(2).all(|w| w[0].0 < w[1].0) {
            // Stable: equal timestamps stay in write order, so the last one is the newest.
            source.sort_by_key(|p| p.0);
            let mut kept: Vec<(i64, f64)> = Vec::with_capacity(source.len());
            for p in source {
                match kept.last_mut() {
                    Some(last) if last.0 == p.0 => *last = p,
                    _ => kept.push(p),
                }
            }
            source = kept;
        }
        let lo = source.partition_point(|p| p.0 < from);
        let hi = source.partition_point(|p| p.0 <= to).max(lo);
        let newer = &source[lo..hi];
        let Some(first) = newer.first() else {
            continue;
        };
        if out.last().is_none_or(|last| last.0 < first.0) {
            out.extend_from_slice(newer);
            continue;
        }
        // Merge the answer's points from `first` on with the newer source; ties go to it.
        let at = out.partition_point(|p| p.0 < first.0);
        tail.clear();
        tail.extend_from_slice(&out[at..]);
        out.truncate(at);
        let (mut i, mut j) = (0, 0);
        while i < tail.len() && j < newer.len() {
            if tail[i].0 < newer[j].0 {
                out.push(tail[i]);
                i += 1;
            } else {
                if tail[i].0 == newer[j].0 {
                    i += 1;
                }
                out.push(newer[j]);
                j += 1;
            }
        }
        out.extend_from_slice(&tail[i..]);
        out.extend_from_slice(&newer[j..]);
    }
    out
}

/// The summary of some points: what a bucket of an aggregation accumulates, and what a
/// downsampled bucket stores ([`crate::rollup`]). `first` and `last` keep their timestamps, so
/// summaries of adjacent or interleaved points merge exactly.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Acc {
    pub min: f64,
    pub max: f64,
    pub sum: f64,
    pub count: u64,
    pub first: (i64, f64),
    pub last: (i64, f64),
}

impl Acc {
    pub fn new(t: i64, v: f64) -> Acc {
        Acc {
            min: v,
            max: v,
            sum: v,
            count: 1,
            first: (t, v),
            last: (t, v),
        }
    }

    /// Folds in the summary of other points (none of them also in `self`); at equal
    /// timestamps `other`'s first and last win, as a later write does.
    pub fn merge(&mut self, other: &Acc) {
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.sum += other.sum;
        self.count += other.count;
        if other.first.0 <= self.first.0 {
            self.first = other.first;
        }
        if other.last.0 >= self.last.0 {
            self.last = other.last;
        }
    }

    pub fn add(&mut self, t: i64, v: f64) {
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.sum += v;
        self.count += 1;
        if t < self.first.0 {
            self.first = (t, v);
        }
        if t >= self.last.0 {
            self.last = (t, v);
        }
    }

    pub fn value(&self, agg: Aggregation) -> f64 {
        match agg {
            Aggregation::Min => self.min,
            Aggregation::Max => self.max,
            Aggregation::Sum => self.sum,
            Aggregation::Avg => self.sum / self.count as f64,
            Aggregation::Count => self.count as f64,
            Aggregation::First => self.first.1,
            Aggregation::Last => self.last.1,
        }
    }
}

/// The buckets of one aggregated series or group: points are added series by series, each
/// series in time order; memory is one accumulator per non-empty bucket, whatever the number
/// of points. Consecutive points of one bucket cost one map look-up between them.
#[derive(Debug)]
pub struct Buckets {
    from: i64,
    step: Option<i64>,
    map: BTreeMap<i64, Acc>,
}

/// The bucket holding `t`: its bounds `[lo, hi)` (in i128: a span may end past i64::MAX) and
/// the start it is reported at. `t - from` overflows i64 for ranges spanning most of it; the
/// start lies between `from` and `t`, so it fits back.
fn span(from: i64, step: Option<i64>, t: i64) -> (i128, i128, i64) {
    match step {
        Some(s) => {
            let (t, f, s) = (i128::from(t), i128::from(from), i128::from(s));
            let lo = f + (t - f).div_euclid(s) * s;
            (lo, lo + s, lo as i64)
        }
        None => (i128::from(i64::MIN), i128::from(i64::MAX) + 1, from),
    }
}

impl Buckets {
    /// Buckets of `step` starting at `from` (one bucket at `from` without a step).
    pub fn new(from: i64, step: Option<i64>) -> Buckets {
        Buckets {
            from,
            step,
            map: BTreeMap::new(),
        }
    }

    /// Non-empty buckets.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Adds points (in any order; a run of points in one bucket is cheapest).
    pub fn add(&mut self, points: impl IntoIterator<Item = (i64, f64)>) {
        let (from, step, map) = (self.from, self.step, &mut self.map);
        // The bucket of the previous point: its span (in i128: a span may end past i64::MAX)
        // and its accumulator.
        let mut current: Option<(i128, i128, &mut Acc)> = None;
        for (t, v) in points {
            if let Some((lo, hi, acc)) = current.as_mut()
                && (*lo..*hi).contains(&i128::from(t))
            {
                acc.add(t, v);
                continue;
            }
            let (lo, hi, start) = span(from, step, t);
            let acc = map
                .entry(start)
                .and_modify(|a| a.add(t, v))
                .or_insert_with(|| Acc::new(t, v));
            current = Some((lo, hi, acc));
        }
    }

    /// Adds downsampled buckets `(start, summary)`: each joins the bucket its start falls in
    /// (a stored bucket coarser than `step` lands whole in one); consecutive summaries of one
    /// bucket cost one map look-up between them.
    pub fn add_summaries(&mut self, summaries: impl IntoIterator<Item = (i64, Acc)>) {
        let (from, step, map) = (self.from, self.step, &mut self.map);
        let mut current: Option<(i128, i128, &mut Acc)> = None;
        for (t, summary) in summaries {
            if let Some((lo, hi, acc)) = current.as_mut()
                && (*lo..*hi).contains(&i128::from(t))
            {
                acc.merge(&summary);
                continue;
            }
            let (lo, hi, start) = span(from, step, t);
            let acc = map
                .entry(start)
                .and_modify(|a| a.merge(&summary))
                .or_insert(summary);
            current = Some((lo, hi, acc));
        }
    }

    /// The buckets' values, by start time.
    pub fn finish(self, agg: Aggregation) -> Vec<(i64, f64)> {
        self.map
            .into_iter()
            .map(|(t, a)| (t, a.value(agg)))
            .collect()
    }
}

/// Aggregates the points of one or more series into buckets.
pub fn aggregate<'a>(
    series: impl IntoIterator<Item = &'a [(i64, f64)]>,
    agg: Aggregation,
    from: i64,
    step: Option<i64>,
) -> Vec<(i64, f64)> {
    let mut buckets = Buckets::new(from, step);
    for points in series {
        buckets.add(points.iter().copied());
    }
    buckets.finish(agg)
}

/// A group's key: its entity (when grouped by `entity`) and its tag values.
pub type GroupKey = (String, Vec<(String, String)>);

/// Groups selected series by the values of `group_by` (the pseudo-tag `entity` included).
/// Returns `(entity, tags)` group keys in sorted order with the member indices.
pub fn group<'a>(
    keys: impl IntoIterator<Item = &'a SeriesKey>,
    group_by: &[String],
) -> Vec<(GroupKey, Vec<usize>)> {
    let mut groups: BTreeMap<GroupKey, Vec<usize>> = BTreeMap::new();
    for (i, key) in keys.into_iter().enumerate() {
        let mut entity = String::new();
        let mut tags = Vec::new();
        for g in group_by {
            if g == "entity" {
                entity = key.entity.clone();
            } else {
                tags.push((g.clone(), key.tag(g).unwrap_or("").to_string()));
            }
        }
        tags.sort();
        groups.entry((entity, tags)).or_default().push(i);
    }
    groups.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Merging (appending, merging overlapping tails, sorting unordered sources) answers
        /// exactly as sorting everything and keeping each timestamp's last write would.
        #[test]
        fn merging_matches_sort_and_dedup(
            sources in proptest::collection::vec(
                proptest::collection::vec((0i64..200, -5.0f64..5.0), 0..20), 0..5),
            from in 0i64..100,
            len in 0i64..150,
            shape in 0u8..3,
        ) {
            let mut sources = sources;
            if shape == 2 {
                // Each source sorted, overlapping others (chunks of concurrent writers).
                for s in &mut sources {
                    s.sort_by_key(|p| p.0);
                    s.dedup_by_key(|p| p.0);
                }
            }
            if shape == 1 {
                // Disjoint, increasing sources: the fast path's case.
                let mut next = 0;
                for s in &mut sources {
                    s.sort_by_key(|p| p.0);
                    s.dedup_by_key(|p| p.0);
                    for p in s.iter_mut() {
                        p.0 += next;
                    }
                    next = s.last().map_or(next, |p| p.0 + 1);
                }
            }
            let to = from + len;
            let mut expected: Vec<(i64, f64)> = Vec::new();
            let mut all: Vec<(i64, f64)> = sources.iter().flatten().copied().collect();
            all.sort_by_key(|p| p.0);
            for p in all.into_iter().filter(|p| p.0 >= from && p.0 <= to) {
                match expected.last_mut() {
                    Some(last) if last.0 == p.0 => *last = p,
                    _ => expected.push(p),
                }
            }
            proptest::prop_assert_eq!(merge_sources(sources, from, to), expected);
        }
    }

    fn key(entity: &str, tags: &[(&str, &str)]) -> SeriesKey {
        SeriesKey {
            metric: "m".into(),
            entity: entity.into(),
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn merge_keeps_the_last_write_per_timestamp_and_the_range() {
        let merged = merge_sources(
            vec![
                vec![(1, 1.0), (2, 2.0), (5, 5.0)],
                vec![(2, 20.0), (0, 0.5)],
            ],
            1,
            4,
        );
        assert_eq!(merged, vec![(1, 1.0), (2, 20.0)]);
    }

    #[test]
    fn aggregations_per_step() {
        let pts = [(0, 1.0), (5, 3.0), (10, 2.0), (19, 8.0), (25, -1.0)];
        let a = |agg| aggregate([&pts[..]], agg, 0, Some(10));
        assert_eq!(a(Aggregation::Min), vec![(0, 1.0), (10, 2.0), (20, -1.0)]);
        assert_eq!(a(Aggregation::Max), vec![(0, 3.0), (10, 8.0), (20, -1.0)]);
        assert_eq!(a(Aggregation::Sum), vec![(0, 4.0), (10, 10.0), (20, -1.0)]);
        assert_eq!(a(Aggregation::Avg), vec![(0, 2.0), (10, 5.0), (20, -1.0)]);
        assert_eq!(a(Aggregation::Count), vec![(0, 2.0), (10, 2.0), (20, 1.0)]);
        assert_eq!(a(Aggregation::First), vec![(0, 1.0), (10, 2.0), (20, -1.0)]);
        assert_eq!(a(Aggregation::Last), vec![(0, 3.0), (10, 8.0), (20, -1.0)]);
        assert_eq!(
            aggregate([&pts[..]], Aggregation::Sum, 0, None),
            vec![(0, 13.0)]
        );
        // Buckets are aligned to `from`, also for points before it would be (negative offsets).
        assert_eq!(
            aggregate([&pts[..]], Aggregation::Count, 3, Some(10)),
            vec![(-7, 1.0), (3, 2.0), (13, 1.0), (23, 1.0)]
        );
    }

    #[test]
    fn matchers_treat_missing_tags_as_empty_and_anchor_regexes() {
        let k = key("web-1", &[("dc", "eu-west")]);
        let m =
            |tag: &str, op, v: &str| Matcher::new(tag.into(), op, v.into()).unwrap().matches(&k);
        assert!(m("dc", MatchOp::Eq, "eu-west"));
        assert!(m("dc", MatchOp::Ne, "us"));
        assert!(m("dc", MatchOp::Re, "eu-.*"));
        assert!(!m("dc", MatchOp::Re, "eu"));
        assert!(m("dc", MatchOp::NotRe, "us.*"));
        assert!(m("env", MatchOp::Eq, ""));
        assert!(m("env", MatchOp::Ne, "prod"));
        assert!(m("entity", MatchOp::Re, "web-\\d+"));
        assert!(Matcher::new("dc".into(), MatchOp::Re, "(".into()).is_err());
        assert!(
            Matcher::new("dc".into(), MatchOp::Re, "a)|(.*".into()).is_err(),
            "anchoring escaped"
        );
    }

    #[test]
    fn groups_by_tags_and_entity() {
        let keys = [
            key("a", &[("dc", "eu")]),
            key("b", &[("dc", "us")]),
            key("c", &[("dc", "eu")]),
            key("d", &[]),
        ];
        let g = group(keys.iter(), &["dc".to_string()]);
        let members: Vec<(String, Vec<usize>)> = g
            .into_iter()
            .map(|((_, t), m)| (t[0].1.clone(), m))
            .collect();
        assert_eq!(
            members,
            vec![
                ("".into(), vec![3]),
                ("eu".into(), vec![0, 2]),
                ("us".into(), vec![1])
            ]
        );
        let g = group(keys.iter(), &["entity".to_string()]);
        assert_eq!(g.len(), 4);
        assert_eq!(g[0].0, ("a".to_string(), vec![]));
    }
}
