//! Series identity: metric + entity + sorted tags, and the in-memory index over them.
//!
//! Every series gets a dense [`SeriesId`] (`u32`) in order of first appearance, so the inverted
//! index (metric → ids, entity → ids, tag=value → ids) is a set of roaring bitmaps. The index is
//! rebuilt at open from the persisted series (flushed) and the WAL replay (not yet flushed);
//! both happen in LSN order, so ids are reproducible. ~100 bytes of index per series plus its
//! strings: a million series cost ~200 MB.

use std::collections::HashMap as StdHashMap;

/// Hash maps keyed by client-chosen names: foldhash, randomly seeded per map (fast, and not
/// predictable enough for hash flooding), instead of std's SipHash which showed up at ~6 % of
/// the ingest profile.
pub type HashMap<K, V> = StdHashMap<K, V, foldhash::fast::RandomState>;

use roaring::RoaringBitmap;

/// Dense id of a series within one database.
pub type SeriesId = u32;

/// What identifies a series.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SeriesKey {
    pub metric: String,
    pub entity: String,
    /// Sorted by key, keys unique.
    pub tags: Vec<(String, String)>,
}

impl SeriesKey {
    pub fn tag(&self, name: &str) -> Option<&str> {
        self.tags
            .binary_search_by(|(k, _)| k.as_str().cmp(name))
            .ok()
            .map(|i| self.tags[i].1.as_str())
    }

    /// Approximate heap bytes, for buffer memory accounting.
    pub fn heap_bytes(&self) -> usize {
        self.metric.len()
            + self.entity.len()
            + self
                .tags
                .iter()
                .map(|(k, v)| k.len() + v.len() + 48)
                .sum::<usize>()
            + 64
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out
    }

    /// Appends the key's encoding (`metric`, `entity`, tag count, tags; strings with a u16
    /// length): the series catalogue's value and a series entry of a WAL points record.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        put_str(out, &self.metric);
        put_str(out, &self.entity);
        out.extend_from_slice(&(self.tags.len() as u16).to_le_bytes());
        for (k, v) in &self.tags {
            put_str(out, k);
            put_str(out, v);
        }
    }

    /// Bytes [`Self::encode_into`] appends.
    pub fn encoded_len(&self) -> usize {
        6 + self.metric.len()
            + self.entity.len()
            + self
                .tags
                .iter()
                .map(|(k, v)| 4 + k.len() + v.len())
                .sum::<usize>()
    }

    pub fn decode(mut bytes: &[u8]) -> Option<SeriesKey> {
        let metric = take_str(&mut bytes)?;
        let entity = take_str(&mut bytes)?;
        let n = u16::from_le_bytes(take(&mut bytes, 2)?.try_into().ok()?) as usize;
        let mut tags = Vec::with_capacity(n.min(bytes.len() / 4));
        for _ in 0..n {
            tags.push((take_str(&mut bytes)?, take_str(&mut bytes)?));
        }
        bytes.is_empty().then_some(SeriesKey {
            metric,
            entity,
            tags,
        })
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if bytes.len() < n {
        return None;
    }
    let (head, rest) = bytes.split_at(n);
    *bytes = rest;
    Some(head)
}

fn take_str(bytes: &mut &[u8]) -> Option<String> {
    let len = u16::from_le_bytes(take(bytes, 2)?.try_into().ok()?) as usize;
    String::from_utf8(take(bytes, len)?.to_vec()).ok()
}

/// A set of series the inverted index can name: a selection is narrowed by intersecting them
/// before each remaining key is checked in full.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Narrow {
    Metric(String),
    Entity(String),
    Tag(String, String),
    /// The union of the sets.
    AnyOf(Vec<Narrow>),
}

/// Series counts of the index ([`SeriesIndex::counts`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Series counted.
    pub series: u64,
    /// `(metric, series)`.
    pub metrics: Vec<(String, u64)>,
    /// `(label, series with it, distinct values)`.
    pub labels: Vec<(String, u64, u64)>,
    /// `(label, value, series)`.
    pub label_values: Vec<(String, String, u64)>,
}

/// The `limit` items with the largest `key` count, largest first, ties by the names.
fn top<T>(mut items: Vec<T>, limit: usize, key: impl Fn(&T) -> (u64, &str, &str)) -> Vec<T> {
    let order = |a: &T, b: &T| {
        let (ca, na, va) = key(a);
        let (cb, nb, vb) = key(b);
        cb.cmp(&ca).then(na.cmp(nb)).then(va.cmp(vb))
    };
    if items.len() > limit && limit > 0 {
        items.select_nth_unstable_by(limit - 1, order);
    }
    items.truncate(limit);
    items.sort_by(order);
    items
}

/// The in-memory series index.
#[derive(Default)]
pub struct SeriesIndex {
    ids: HashMap<SeriesKey, SeriesId>,
    keys: Vec<SeriesKey>,
    by_metric: HashMap<String, RoaringBitmap>,
    by_entity: HashMap<String, RoaringBitmap>,
    by_tag: HashMap<(String, String), RoaringBitmap>,
}

impl SeriesIndex {
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Every metric name, sorted.
    pub fn metrics(&self) -> Vec<String> {
        let mut m: Vec<String> = self.by_metric.keys().cloned().collect();
        m.sort();
        m
    }

    pub fn id(&self, key: &SeriesKey) -> Option<SeriesId> {
        self.ids.get(key).copied()
    }

    pub fn key(&self, id: SeriesId) -> Option<&SeriesKey> {
        self.keys.get(id as usize)
    }

    /// The id of `key`, adding it if new (then with the bytes it costs the head, see
    /// [`SeriesKey::heap_bytes`]).
    pub fn get_or_insert_owned(&mut self, key: SeriesKey) -> (SeriesId, Option<usize>) {
        if let Some(&id) = self.ids.get(&key) {
            return (id, None);
        }
        let id = self.keys.len() as SeriesId;
        let bytes = key.heap_bytes();
        self.insert_with_id(key, id);
        (id, Some(bytes))
    }

    /// The id of `key`, adding it if new (`true` when added).
    pub fn get_or_insert(&mut self, key: &SeriesKey) -> (SeriesId, bool) {
        if let Some(&id) = self.ids.get(key) {
            return (id, false);
        }
        let id = self.keys.len() as SeriesId;
        self.insert_with_id(key.clone(), id);
        (id, true)
    }

    /// Adds a persisted series under its stored id. Ids must arrive densely in order.
    pub fn insert_with_id(&mut self, key: SeriesKey, id: SeriesId) {
        debug_assert_eq!(id as usize, self.keys.len());
        self.by_metric
            .entry(key.metric.clone())
            .or_default()
            .insert(id);
        self.by_entity
            .entry(key.entity.clone())
            .or_default()
            .insert(id);
        for (k, v) in &key.tags {
            self.by_tag
                .entry((k.clone(), v.clone()))
                .or_default()
                .insert(id);
        }
        self.ids.insert(key.clone(), id);
        self.keys.push(key);
    }

    /// The series that every narrowing admits, or `None` (every series) when `narrows` is
    /// empty. Each narrowing is a set from the inverted index; they are intersected.
    pub fn narrowed(&self, narrows: &[Narrow]) -> Option<RoaringBitmap> {
        let mut out: Option<RoaringBitmap> = None;
        for n in narrows {
            let set = self.narrow_set(n);
            out = Some(match out {
                Some(acc) => acc & set,
                None => set,
            });
        }
        out
    }

    fn narrow_set(&self, n: &Narrow) -> RoaringBitmap {
        let get = |b: Option<&RoaringBitmap>| b.cloned().unwrap_or_default();
        match n {
            Narrow::Metric(m) => get(self.by_metric.get(m)),
            Narrow::Entity(e) => get(self.by_entity.get(e)),
            Narrow::Tag(k, v) => get(self.by_tag.get(&(k.clone(), v.clone()))),
            Narrow::AnyOf(ns) => ns
                .iter()
                .fold(RoaringBitmap::new(), |acc, n| acc | self.narrow_set(n)),
        }
    }

    /// Series counts by metric, by label (`entity` included) and by label value, among
    /// `within` (every series when `None`); each list holds its `limit` largest, largest first
    /// (ties by name). Reads only the inverted index.
    pub fn counts(&self, within: Option<&RoaringBitmap>, limit: usize) -> Counts {
        let n = |b: &RoaringBitmap| within.map_or(b.len(), |w| b.intersection_len(w));
        let metrics: Vec<(&str, u64)> = self
            .by_metric
            .iter()
            .map(|(m, b)| (m.as_str(), n(b)))
            .filter(|x| x.1 > 0)
            .collect();
        let pairs: Vec<(&str, &str, u64)> = self
            .by_entity
            .iter()
            .map(|(e, b)| ("entity", e.as_str(), n(b)))
            .chain(
                self.by_tag
                    .iter()
                    .map(|((k, v), b)| (k.as_str(), v.as_str(), n(b))),
            )
            .filter(|x| x.2 > 0)
            .collect();
        // A series has one value per label: its series are the sum over its values.
        let mut labels: HashMap<&str, (u64, u64)> = HashMap::default();
        for (k, _, c) in &pairs {
            let e = labels.entry(k).or_default();
            e.0 += c;
            e.1 += 1;
        }
        let labels: Vec<(&str, u64, u64)> =
            labels.into_iter().map(|(k, (s, v))| (k, s, v)).collect();
        Counts {
            series: within.map_or(self.keys.len() as u64, |w| w.len()),
            metrics: top(metrics, limit, |x| (x.1, x.0, ""))
                .into_iter()
                .map(|(m, c)| (m.to_string(), c))
                .collect(),
            labels: top(labels, limit, |x| (x.1, x.0, ""))
                .into_iter()
                .map(|(k, s, v)| (k.to_string(), s, v))
                .collect(),
            label_values: top(pairs, limit, |x| (x.2, x.0, x.1))
                .into_iter()
                .map(|(k, v, c)| (k.to_string(), v.to_string(), c))
                .collect(),
        }
    }

    /// Series of `metric` with `entity` (if given) and every `tags` pair.
    pub fn select(
        &self,
        metric: &str,
        entity: Option<&str>,
        tags: &[(String, String)],
    ) -> RoaringBitmap {
        let Some(mut set) = self.by_metric.get(metric).cloned() else {
            return RoaringBitmap::new();
        };
        if let Some(e) = entity {
            match self.by_entity.get(e) {
                Some(b) => set &= b,
                None => return RoaringBitmap::new(),
            }
        }
        for (k, v) in tags {
            match self.by_tag.get(&(k.clone(), v.clone())) {
                Some(b) => set &= b,
                None => return RoaringBitmap::new(),
            }
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(metric: &str, entity: &str, tags: &[(&str, &str)]) -> SeriesKey {
        SeriesKey {
            metric: metric.into(),
            entity: entity.into(),
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn keys_round_trip_and_garbage_is_none() {
        let k = key("cpu", "h1", &[("dc", "eu"), ("env", "prod")]);
        assert_eq!(SeriesKey::decode(&k.encode()), Some(k.clone()));
        let bytes = k.encode();
        for cut in 0..bytes.len() {
            assert_eq!(SeriesKey::decode(&bytes[..cut]), None);
        }
    }

    #[test]
    fn select_intersects_metric_entity_and_tags() {
        let mut idx = SeriesIndex::default();
        let a = idx.get_or_insert(&key("cpu", "h1", &[("dc", "eu")])).0;
        let b = idx.get_or_insert(&key("cpu", "h2", &[("dc", "us")])).0;
        let c = idx.get_or_insert(&key("mem", "h1", &[("dc", "eu")])).0;
        assert_eq!(
            idx.get_or_insert(&key("cpu", "h1", &[("dc", "eu")])),
            (a, false)
        );
        assert_eq!(
            idx.select("cpu", None, &[]).iter().collect::<Vec<_>>(),
            vec![a, b]
        );
        assert_eq!(
            idx.select("cpu", Some("h1"), &[])
                .iter()
                .collect::<Vec<_>>(),
            vec![a]
        );
        assert_eq!(
            idx.select("cpu", None, &[("dc".into(), "us".into())])
                .iter()
                .collect::<Vec<_>>(),
            vec![b]
        );
        assert!(idx.select("cpu", Some("h3"), &[]).is_empty());
        assert!(idx.select("disk", None, &[]).is_empty());
        assert_eq!(idx.key(c).unwrap().metric, "mem");
    }
}
