//! Prometheus compatibility, transport-neutral: the mapping between Sluice series and
//! Prometheus label sets, PromQL storage over the time-series engine, the series/labels
//! look-ups of the query API, and remote-write requests as write batches.
//!
//! # Data model (also in docs/prometheus.md)
//! A Sluice series is `metric + entity + tags`. Its Prometheus labels are its tags, `__name__`
//! = the metric, and `entity` = the entity when it is non-empty and no tag is named `entity`.
//! - Remote write: `__name__` becomes the metric, a label `entity` the entity, every other
//!   label a tag; so a series reads back label for label. Empty label values are absent labels
//!   (as in Prometheus).
//! - Line protocol: the tag `entity` becomes the entity; otherwise the `host` tag's value is the
//!   entity and `host` stays a tag: `cpu,host=h1 usage=1` is `cpu_usage{host="h1",entity="h1"}`.
//! - JSON and the wire protocol: `{metric, entity, tags}` as written, plus `entity`.
//!
//! Selecting by `entity="x"` finds both a series whose entity is `x` and one with a tag
//! `entity="x"`; the inverted index narrows every equality matcher before the remaining
//! matchers are checked series by series.
//!
//! # Remote write
//! A Prometheus remote-write 1.0 request (snappy block format around a protobuf
//! `WriteRequest`) becomes one batch: every series validated (a metric name, unique label
//! names, the point limits), every sample kept bit for bit (NaN, ±Inf and staleness markers
//! included), or nothing is written. The decompressed size is checked from the snappy header
//! before anything is allocated. Native histograms are refused (400); exemplars and metadata
//! are ignored.

use prost::Message;
use sluice_api::ErrorCode;
use sluice_promql::{EachSeries, Labels, MatchOp, Matcher, Series, Storage};
use sluice_ts::engine::QueryError;
use sluice_ts::series::{Narrow, SeriesKey};
use sluice_ts::{KnownSeries, NamedBatch, NamedSeries, PointLimits, Sample, TsEngine};

use crate::error::ApiError;

/// The label the entity is exposed as.
pub const ENTITY_LABEL: &str = "entity";

/// The Prometheus labels of a series (see the module doc).
pub fn labels_of(key: &SeriesKey) -> Labels {
    let mut pairs: Vec<(String, String)> = Vec::with_capacity(key.tags.len() + 2);
    pairs.push(("__name__".into(), key.metric.clone()));
    if !key.entity.is_empty() && key.tag(ENTITY_LABEL).is_none() {
        pairs.push((ENTITY_LABEL.into(), key.entity.clone()));
    }
    pairs.extend(key.tags.iter().cloned());
    Labels::new(pairs)
}

/// The value of label `name` of a series, `""` when it has none.
fn label_value<'k>(key: &'k SeriesKey, name: &str) -> &'k str {
    match name {
        "__name__" => &key.metric,
        ENTITY_LABEL => key.tag(ENTITY_LABEL).unwrap_or(&key.entity),
        _ => key.tag(name).unwrap_or(""),
    }
}

/// Index narrowings implied by the matchers (equalities with a non-empty value).
fn narrows(matchers: &[Matcher]) -> Vec<Narrow> {
    matchers
        .iter()
        .filter(|m| m.op == MatchOp::Equal && !m.value.is_empty())
        .map(|m| match m.name.as_str() {
            "__name__" => Narrow::Metric(m.value.clone()),
            ENTITY_LABEL => Narrow::AnyOf(vec![
                Narrow::Entity(m.value.clone()),
                Narrow::Tag(ENTITY_LABEL.into(), m.value.clone()),
            ]),
            name => Narrow::Tag(name.into(), m.value.clone()),
        })
        .collect()
}

/// The series of `engine` matching every matcher (no points read).
pub fn find(
    engine: &TsEngine,
    matchers: &[Matcher],
) -> Vec<(sluice_ts::series::SeriesId, SeriesKey)> {
    engine.find_series(&narrows(matchers), |key| {
        matchers
            .iter()
            .all(|m| m.is_match(label_value(key, &m.name)))
    })
}

fn storage_error(e: QueryError) -> sluice_promql::Error {
    match e {
        QueryError::TooManyPoints { .. } => {
            sluice_promql::Error::Execution(sluice_promql::TOO_MANY_SAMPLES.into())
        }
        QueryError::Store(e) => sluice_promql::Error::Internal(e.to_string()),
    }
}

/// PromQL storage over one database's time-series engine.
pub struct TsStorage<'a> {
    pub engine: &'a TsEngine,
}

impl Storage for TsStorage<'_> {
    fn select(
        &self,
        matchers: &[Matcher],
        from: i64,
        to: i64,
        budget: &mut usize,
    ) -> Result<Vec<Series>, sluice_promql::Error> {
        let mut out = Vec::new();
        self.select_each(matchers, from, to, budget, &mut |s, _| {
            out.push(s);
            Ok(())
        })?;
        Ok(out)
    }

    fn select_each(
        &self,
        matchers: &[Matcher],
        from: i64,
        to: i64,
        budget: &mut usize,
        f: &mut EachSeries<'_>,
    ) -> Result<(), sluice_promql::Error> {
        /// A storage error or the evaluator's, out of one read.
        enum Failed {
            Read(QueryError),
            Eval(sluice_promql::Error),
        }
        impl From<QueryError> for Failed {
            fn from(e: QueryError) -> Failed {
                Failed::Read(e)
            }
        }
        let found = find(self.engine, matchers);
        let ids: Vec<_> = found.iter().map(|(id, _)| *id).collect();
        self.engine
            .read_series_each(&ids, from, to, budget, |i, samples, left| {
                if samples.is_empty() {
                    return Ok(());
                }
                f(
                    Series {
                        labels: labels_of(&found[i].1),
                        samples,
                    },
                    left,
                )
                .map_err(Failed::Eval)
            })
            .map_err(|e| match e {
                Failed::Read(e) => storage_error(e),
                Failed::Eval(e) => e,
            })
    }
}

/// The label sets of the series matching any of `selectors` (each a list of matchers) that
/// hold data in `[from, to]` (`None`: any time; a chunk counts by its time span, see
/// `TsEngine::series_with_data`), sorted, without duplicates.
pub fn series_labels(
    engine: &TsEngine,
    selectors: &[Vec<Matcher>],
    from: Option<i64>,
    to: Option<i64>,
) -> Result<Vec<Labels>, sluice_promql::Error> {
    let mut out: Vec<Labels> = Vec::new();
    for matchers in selectors {
        let found = find(engine, matchers);
        if from.is_none() && to.is_none() {
            out.extend(found.iter().map(|(_, k)| labels_of(k)));
            continue;
        }
        let ids: Vec<_> = found.iter().map(|(id, _)| *id).collect();
        let with_data = engine
            .series_with_data(&ids, from.unwrap_or(i64::MIN), to.unwrap_or(i64::MAX))
            .map_err(storage_error)?;
        out.extend(
            found
                .iter()
                .zip(with_data)
                .filter(|(_, has)| *has)
                .map(|((_, k), _)| labels_of(k)),
        );
    }
    out.sort();
    out.dedup();
    Ok(out)
}

// --- Remote write 1.0 protobuf messages (prometheus/prompb/remote.proto, types.proto). ---

#[derive(Clone, PartialEq, Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<PromSample>,
    /// Native histograms (refused); only their presence matters.
    #[prost(bytes = "vec", repeated, tag = "4")]
    pub histograms: Vec<Vec<u8>>,
}

impl TimeSeries {
    /// A series from `(name, value)` labels and `(timestamp ms, value)` samples (tests,
    /// benchmarks and tools that write remote write).
    pub fn new(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
        TimeSeries {
            labels: labels
                .iter()
                .map(|(name, value)| Label {
                    name: name.to_string(),
                    value: value.to_string(),
                })
                .collect(),
            samples: samples
                .iter()
                .map(|&(timestamp, value)| PromSample { value, timestamp })
                .collect(),
            histograms: Vec::new(),
        }
    }
}

#[derive(Clone, PartialEq, Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct PromSample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// Decodes a snappy-compressed remote-write body into one batch (see the module doc).
/// `max_bytes` bounds the decompressed size, `max_samples` the series and the samples.
/// `known(names)` says which series the engine already knows by their raw names (see
/// [`sluice_ts::names`]; `TsEngine::known_series`): those are neither decoded nor validated
/// again.
pub fn remote_write_batch(
    body: &[u8],
    limits: &PointLimits,
    max_bytes: usize,
    max_samples: usize,
    known: impl FnOnce(&mut dyn Iterator<Item = Option<&[u8]>>) -> Vec<Option<KnownSeries>>,
) -> Result<NamedBatch, ApiError> {
    let len = snap::raw::decompress_len(body).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidEncoding,
            format!("body is not snappy-compressed (block format): {e}"),
        )
    })?;
    if len > max_bytes {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("the decompressed body would be {len} bytes; the limit is {max_bytes}"),
        ));
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| {
            ApiError::new(
                ErrorCode::InvalidEncoding,
                format!("body is not snappy-compressed (block format): {e}"),
            )
        })?;
    let malformed = |reason: String| {
        ApiError::new(
            ErrorCode::MalformedPayload,
            format!("body is not a remote-write WriteRequest: {reason}"),
        )
    };
    let parsed =
        parse_write_request(&raw, limits.max_tags + 2, max_samples).map_err(|e| match e {
            ParseError::Malformed(reason) => malformed(reason),
            ParseError::Invalid(field, reason) => ApiError::invalid_field(field, reason),
        })?;
    let known = known(&mut parsed.series.iter().map(|s| s.name));
    let mut batch = NamedBatch {
        series: Vec::with_capacity(parsed.series.len()),
        samples: Vec::with_capacity(parsed.samples.len()),
    };
    for (s, known) in parsed.series.iter().zip(known) {
        let named = match known {
            Some(k) => NamedSeries::Known(k),
            None => {
                let key = decode_labels(s.message)
                    .map_err(malformed)
                    .and_then(|labels| {
                        series_key(labels, limits).map_err(|(field, reason)| {
                            ApiError::invalid_field(
                                format!("timeseries[{}].{field}", s.index),
                                reason,
                            )
                        })
                    })?;
                NamedSeries::New(key, s.name.map(Box::from))
            }
        };
        let index = batch.series.len() as u32;
        batch.series.push(named);
        batch.samples.extend(
            parsed.samples[s.samples.clone()]
                .iter()
                .map(|&(t, v)| Sample {
                    series: index,
                    timestamp_ms: t,
                    value: v,
                }),
        );
    }
    Ok(batch)
}

/// A `WriteRequest`'s series with samples, borrowed from its bytes.
struct Parsed<'a> {
    series: Vec<RawSeries<'a>>,
    /// Every sample, series after series.
    samples: Vec<(i64, f64)>,
}

/// One `TimeSeries` message with samples.
struct RawSeries<'a> {
    /// Its position among the request's series (for error fields).
    index: usize,
    message: &'a [u8],
    /// Its label fields' bytes, when they come first and together (as Prometheus writes
    /// them): the raw name it is remembered by. `None`: it is decoded every time.
    name: Option<&'a [u8]>,
    /// Its samples' range in [`Parsed::samples`].
    samples: std::ops::Range<usize>,
}

enum ParseError {
    /// Not protobuf, or not this message.
    Malformed(String),
    /// A field's value breaks a rule: `(field path, reason)`.
    Invalid(String, String),
}

impl From<String> for ParseError {
    fn from(reason: String) -> ParseError {
        ParseError::Malformed(reason)
    }
}

impl From<&str> for ParseError {
    fn from(reason: &str) -> ParseError {
        ParseError::Malformed(reason.into())
    }
}

/// A protobuf field's value.
enum Wire<'a> {
    Varint(u64),
    Fixed64([u8; 8]),
    Fixed32,
    Bytes(&'a [u8]),
}

fn varint(buf: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos).ok_or("truncated varint")?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("varint too long".into())
}

/// Walks one message's fields: `f(field number, value, offset just past the field)`.
fn walk<'a>(
    buf: &'a [u8],
    mut f: impl FnMut(u64, Wire<'a>, usize) -> Result<(), ParseError>,
) -> Result<(), ParseError> {
    let mut pos = 0;
    while pos < buf.len() {
        let key = varint(buf, &mut pos)?;
        let value = match key & 7 {
            0 => Wire::Varint(varint(buf, &mut pos)?),
            1 => {
                let bytes = buf.get(pos..pos + 8).ok_or("truncated field")?;
                pos += 8;
                Wire::Fixed64(bytes.try_into().map_err(|_| "truncated field")?)
            }
            5 => {
                buf.get(pos..pos + 4).ok_or("truncated field")?;
                pos += 4;
                Wire::Fixed32
            }
            2 => {
                let len =
                    usize::try_from(varint(buf, &mut pos)?).map_err(|_| "length too large")?;
                let end = pos
                    .checked_add(len)
                    .filter(|e| *e <= buf.len())
                    .ok_or("truncated field")?;
                let bytes = &buf[pos..end];
                pos = end;
                Wire::Bytes(bytes)
            }
            w => return Err(ParseError::Malformed(format!("unsupported wire type {w}"))),
        };
        f(key >> 3, value, pos)?;
    }
    Ok(())
}

/// Reads a `WriteRequest`'s series and samples without copying a label, refusing more than
/// `max_labels` labels in a series or more than `max` series or samples before holding them.
fn parse_write_request(
    raw: &[u8],
    max_labels: usize,
    max: usize,
) -> Result<Parsed<'_>, ParseError> {
    let mut out = Parsed {
        series: Vec::new(),
        samples: Vec::new(),
    };
    let mut index = 0;
    walk(raw, |field, value, _| {
        let Wire::Bytes(message) = value else {
            return Ok(());
        };
        if field != 1 {
            return Ok(()); // metadata
        }
        let i = index;
        index += 1;
        if index > max {
            return Err(ParseError::Invalid(
                "timeseries".into(),
                format!("more than {max} series; a request may hold at most {max}"),
            ));
        }
        let first_sample = out.samples.len();
        // The raw name: the label fields, if nothing comes between or before them.
        let (mut labels, mut name_end, mut labels_first, mut named) = (0, 0, true, true);
        walk(message, |f, v, end| {
            match (f, v) {
                (1, Wire::Bytes(_)) => {
                    labels += 1;
                    if labels > max_labels {
                        return Err(ParseError::Invalid(
                            format!("timeseries[{i}].labels"),
                            format!("more than {max_labels} labels"),
                        ));
                    }
                    if labels_first {
                        name_end = end;
                    } else {
                        named = false;
                    }
                }
                (2, Wire::Bytes(sample)) => {
                    labels_first = false;
                    if out.samples.len() >= max {
                        return Err(ParseError::Invalid(
                            "timeseries".into(),
                            format!("more than {max} samples; a request may hold at most {max}"),
                        ));
                    }
                    out.samples.push(parse_sample(sample)?);
                }
                (1 | 2, _) => {
                    return Err(ParseError::Malformed(
                        "a label or sample is not a message".into(),
                    ));
                }
                (4, _) => {
                    return Err(ParseError::Invalid(
                        format!("timeseries[{i}].histograms"),
                        "native histograms are not supported".into(),
                    ));
                }
                _ => labels_first = false,
            }
            Ok(())
        })?;
        if out.samples.len() > first_sample {
            out.series.push(RawSeries {
                index: i,
                message,
                name: (named && labels > 0).then(|| &message[..name_end]),
                samples: first_sample..out.samples.len(),
            });
        }
        Ok(())
    })?;
    Ok(out)
}

/// A `Sample {value = 1 (double), timestamp = 2 (int64)}`.
fn parse_sample(buf: &[u8]) -> Result<(i64, f64), ParseError> {
    let (mut t, mut v) = (0i64, 0f64);
    walk(buf, |f, value, _| {
        match (f, value) {
            (1, Wire::Fixed64(b)) => v = f64::from_le_bytes(b),
            (2, Wire::Varint(x)) => t = x as i64,
            (1 | 2, _) => {
                return Err(ParseError::Malformed(
                    "a sample field has the wrong type".into(),
                ));
            }
            _ => {}
        }
        Ok(())
    })?;
    Ok((t, v))
}

/// A series' labels as `(name, value)` pairs, in the order sent.
fn decode_labels(message: &[u8]) -> Result<Vec<(&str, &str)>, String> {
    let mut labels = Vec::new();
    fn text(b: &[u8]) -> Result<&str, String> {
        std::str::from_utf8(b).map_err(|_| "a label is not UTF-8".to_string())
    }
    walk(message, |f, v, _| {
        if let (1, Wire::Bytes(label)) = (f, v) {
            let (mut name, mut value) = ("", "");
            walk(label, |f, v, _| {
                match (f, v) {
                    (1, Wire::Bytes(b)) => name = text(b)?,
                    (2, Wire::Bytes(b)) => value = text(b)?,
                    (1 | 2, _) => {
                        return Err("a label field has the wrong type".to_string().into());
                    }
                    _ => {}
                }
                Ok(())
            })?;
            labels.push((name, value));
        }
        Ok(())
    })
    .map_err(|e| match e {
        ParseError::Malformed(r) | ParseError::Invalid(_, r) => r,
    })?;
    Ok(labels)
}

/// A remote-write label set as a series key.
pub(crate) fn series_key(
    labels: Vec<(&str, &str)>,
    limits: &PointLimits,
) -> Result<SeriesKey, (String, String)> {
    let mut metric = None;
    let mut entity = String::new();
    let mut tags = Vec::with_capacity(labels.len());
    let mut names: Vec<&str> = labels.iter().map(|l| l.0).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(("labels".into(), format!("label {:?} given twice", w[0])));
    }
    for (name, value) in labels {
        if name.is_empty() {
            return Err(("labels".into(), "a label name is empty".into()));
        }
        if value.is_empty() {
            continue;
        }
        match name {
            "__name__" => metric = Some(value.to_string()),
            ENTITY_LABEL => entity = value.to_string(),
            _ => tags.push((name.to_string(), value.to_string())),
        }
    }
    let metric = metric.ok_or_else(|| ("labels".to_string(), "no __name__ label".to_string()))?;
    SeriesKey::new(metric, entity, tags, limits).map_err(|e| {
        let field = match e.field.as_str() {
            "metric" => "labels.__name__".to_string(),
            "entity" => "labels.entity".to_string(),
            f => format!("labels{}", f.strip_prefix("tags").unwrap_or(f)),
        };
        (field, e.reason)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(metric: &str, entity: &str, tags: &[(&str, &str)]) -> SeriesKey {
        SeriesKey::new(
            metric.into(),
            entity.into(),
            tags.iter().map(|(k, v)| (k.to_string(), v.to_string())),
            &PointLimits::default(),
        )
        .unwrap()
    }

    #[test]
    fn labels_expose_the_entity_unless_a_tag_is_named_entity() {
        let l = labels_of(&key("cpu_usage", "h1", &[("host", "h1"), ("dc", "eu")]));
        assert_eq!(
            l.to_prom_string(),
            r#"{__name__="cpu_usage", dc="eu", entity="h1", host="h1"}"#
        );
        assert_eq!(
            labels_of(&key("up", "", &[("job", "a")])).to_prom_string(),
            r#"{__name__="up", job="a"}"#
        );
        let k = key("m", "e1", &[("entity", "t1")]);
        assert_eq!(labels_of(&k).get("entity"), "t1");
        assert_eq!(label_value(&k, "entity"), "t1");
    }

    fn encode(req: &WriteRequest) -> Vec<u8> {
        snap::raw::Encoder::new()
            .compress_vec(&req.encode_to_vec())
            .unwrap()
    }

    use TimeSeries as Ts;

    /// A `known` for an engine that knows no series.
    fn unknown(names: &mut dyn Iterator<Item = Option<&[u8]>>) -> Vec<Option<KnownSeries>> {
        names.map(|_| None).collect()
    }

    fn series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
        Ts::new(labels, samples)
    }

    #[test]
    fn remote_write_round_trips_labels_and_keeps_sample_bits() {
        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        let req = WriteRequest {
            timeseries: vec![series(
                &[
                    ("__name__", "up"),
                    ("job", "a"),
                    ("entity", "e"),
                    ("empty", ""),
                ],
                &[(1, 1.0), (2, stale), (3, f64::INFINITY)],
            )],
        };
        let b = remote_write_batch(
            &encode(&req),
            &PointLimits::default(),
            1 << 20,
            100,
            unknown,
        )
        .unwrap();
        assert_eq!(b.series.len(), 1);
        let NamedSeries::New(key, Some(_)) = &b.series[0] else {
            panic!("{:?}", b.series[0]);
        };
        assert_eq!(
            labels_of(key).to_prom_string(),
            r#"{__name__="up", entity="e", job="a"}"#
        );
        assert_eq!(b.samples[1].value.to_bits(), stale.to_bits());
        assert_eq!(b.samples[2].value, f64::INFINITY);
    }

    #[test]
    fn bad_remote_write_bodies_are_refused_with_a_field() {
        let limits = PointLimits::default();
        let err = |req: WriteRequest| {
            remote_write_batch(&encode(&req), &limits, 1 << 20, 100, unknown).unwrap_err()
        };
        let e = err(WriteRequest {
            timeseries: vec![series(&[("job", "a")], &[(1, 1.0)])],
        });
        assert_eq!(e.field.as_deref(), Some("timeseries[0].labels"));
        let e = err(WriteRequest {
            timeseries: vec![
                series(&[("__name__", "a")], &[(1, 1.0)]),
                series(&[("__name__", "a"), ("x", "1"), ("x", "2")], &[(1, 1.0)]),
            ],
        });
        assert_eq!(e.field.as_deref(), Some("timeseries[1].labels"));
        let e =
            remote_write_batch(b"not snappy at all", &limits, 1 << 20, 100, unknown).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidEncoding);
        let big = WriteRequest {
            timeseries: vec![series(&[("__name__", "a")], &[(1, 1.0); 50])],
        };
        let e = remote_write_batch(&encode(&big), &limits, 100, 1000, unknown).unwrap_err();
        assert_eq!(e.code, ErrorCode::PayloadTooLarge);
        let e = remote_write_batch(&encode(&big), &limits, 1 << 20, 10, unknown).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("timeseries"));
    }
}
