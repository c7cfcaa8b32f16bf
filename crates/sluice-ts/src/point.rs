//! A validated time-series point.
//!
//! Limits (configurable through [`PointLimits`], defaults in brackets): metric and entity names
//! [256 bytes], tag keys and values [256 bytes], tags per point [64]. Metric names and tag keys
//! must be non-empty; entity may be empty (line protocol writes without a host tag). Values
//! written as JSON or line protocol must be finite: neither can carry NaN or infinities, and we
//! refuse to invent a meaning for them. Prometheus samples ([`crate::Batch::push_sample`]) keep their bits
//! as sent: NaN, ±Inf and Prometheus's staleness marker (a NaN with its own bit pattern) are
//! stored and read back exactly, as the codecs are bit-exact. The engine's own queries and
//! exports (JSON answers) skip non-finite values; PromQL reads them all.
//! Tags are kept sorted by key, so a series is identified by metric + entity + tags in one
//! canonical order. Negative zero is stored as zero.

use crate::series::SeriesKey;

/// The label PromQL names the metric by; no tag may take it.
pub const METRIC_LABEL: &str = "__name__";

/// One point, after validation.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    pub metric: String,
    pub entity: String,
    pub timestamp_ms: i64,
    pub value: f64,
    /// Sorted by key, keys unique.
    pub tags: Vec<(String, String)>,
}

/// Size limits on a point's strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PointLimits {
    pub max_name_chars: usize,
    pub max_tags: usize,
    pub max_tag_chars: usize,
}

impl Default for PointLimits {
    fn default() -> Self {
        PointLimits {
            max_name_chars: 256,
            max_tags: 64,
            max_tag_chars: 256,
        }
    }
}

/// Why a point was refused, with the field at fault (relative to the point).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidPoint {
    pub field: String,
    pub reason: String,
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> InvalidPoint {
    InvalidPoint {
        field: field.into(),
        reason: reason.into(),
    }
}

impl Point {
    /// Builds a point from its parts, checking every limit. Tags may come in any order; a key
    /// given twice is refused.
    pub fn new(
        metric: String,
        entity: String,
        timestamp_ms: i64,
        value: f64,
        tags: impl IntoIterator<Item = (String, String)>,
        limits: &PointLimits,
    ) -> Result<Point, InvalidPoint> {
        let key = SeriesKey::new(metric, entity, tags, limits)?;
        let value = check_value(value)?;
        Ok(Point {
            metric: key.metric,
            entity: key.entity,
            timestamp_ms,
            value,
            tags: key.tags,
        })
    }
}

impl SeriesKey {
    /// A series key from its parts, checking every limit (as [`Point::new`] does). Tags may
    /// come in any order; a key given twice is refused.
    pub fn new(
        metric: String,
        entity: String,
        tags: impl IntoIterator<Item = (String, String)>,
        limits: &PointLimits,
    ) -> Result<SeriesKey, InvalidPoint> {
        check_metric(&metric, limits)?;
        if longer_than(&entity, limits.max_name_chars) {
            return Err(invalid(
                "entity",
                format!("longer than {} characters", limits.max_name_chars),
            ));
        }
        let mut tags: Vec<(String, String)> = tags.into_iter().collect();
        if tags.len() > limits.max_tags {
            return Err(invalid(
                "tags",
                format!("more than {} tags", limits.max_tags),
            ));
        }
        for (k, v) in &tags {
            if k.is_empty() {
                return Err(invalid("tags", "tag keys must not be empty"));
            }
            if k == METRIC_LABEL {
                return Err(invalid(
                    format!("tags.{k}"),
                    "reserved: it is the metric's label in PromQL",
                ));
            }
            if longer_than(k, limits.max_tag_chars) {
                return Err(invalid(
                    format!("tags.{k}"),
                    format!("key longer than {} characters", limits.max_tag_chars),
                ));
            }
            if longer_than(v, limits.max_tag_chars) {
                return Err(invalid(
                    format!("tags.{k}"),
                    format!("value longer than {} characters", limits.max_tag_chars),
                ));
            }
        }
        tags.sort_by(|a, b| a.0.cmp(&b.0));
        if let Some(w) = tags.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(invalid(format!("tags.{}", w[0].0), "tag key given twice"));
        }
        Ok(SeriesKey {
            metric,
            entity,
            tags,
        })
    }
}

impl Point {
    /// A point of the same series shape (entity, tags) and time with another metric and value,
    /// as line protocol makes one per field. Only the metric and value are checked: the rest was
    /// checked when `self` was built.
    pub fn with_metric_value(
        &self,
        metric: String,
        value: f64,
        limits: &PointLimits,
    ) -> Result<Point, InvalidPoint> {
        check_metric(&metric, limits)?;
        Ok(Point {
            metric,
            entity: self.entity.clone(),
            timestamp_ms: self.timestamp_ms,
            value: check_value(value)?,
            tags: self.tags.clone(),
        })
    }
}

pub(crate) fn check_metric(metric: &str, limits: &PointLimits) -> Result<(), InvalidPoint> {
    if metric.is_empty() {
        return Err(invalid("metric", "must not be empty"));
    }
    if longer_than(metric, limits.max_name_chars) {
        return Err(invalid(
            "metric",
            format!("longer than {} characters", limits.max_name_chars),
        ));
    }
    Ok(())
}

/// Limits count characters (Unicode scalar values), as JSON Schema's `maxLength` does; a
/// string within the limit in bytes is within it in characters, so only longer ones are
/// counted.
pub fn longer_than(s: &str, max_chars: usize) -> bool {
    s.len() > max_chars && s.chars().count() > max_chars
}

/// A finite value; -0.0 becomes 0.0 (they compare equal, and one zero keeps decimal chunks
/// exact).
pub fn check_value(value: f64) -> Result<f64, InvalidPoint> {
    if !value.is_finite() {
        return Err(invalid("value", "must be a finite number"));
    }
    Ok(if value == 0.0 { 0.0 } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(metric: &str, value: f64, tags: &[(&str, &str)]) -> Result<Point, InvalidPoint> {
        Point::new(
            metric.into(),
            "e".into(),
            1,
            value,
            tags.iter().map(|(k, v)| (k.to_string(), v.to_string())),
            &PointLimits::default(),
        )
    }

    #[test]
    fn tags_are_sorted_and_checked() {
        let p = point("m", 1.0, &[("b", "2"), ("a", "1")]).unwrap();
        assert_eq!(
            p.tags,
            vec![("a".into(), "1".into()), ("b".into(), "2".into())]
        );
        assert_eq!(
            point("m", 1.0, &[("a", "1"), ("a", "2")])
                .unwrap_err()
                .field,
            "tags.a"
        );
        assert_eq!(point("m", 1.0, &[("", "1")]).unwrap_err().field, "tags");
        let long = "x".repeat(257);
        assert_eq!(
            point("m", 1.0, &[("k", &long)]).unwrap_err().field,
            "tags.k"
        );
    }

    #[test]
    fn siblings_share_entity_tags_and_time() {
        let p = point("m", 1.0, &[("b", "2"), ("a", "1")]).unwrap();
        let q = p
            .with_metric_value("m_other".into(), -0.0, &PointLimits::default())
            .unwrap();
        assert_eq!(
            (q.entity.as_str(), q.timestamp_ms, &q.tags),
            (p.entity.as_str(), p.timestamp_ms, &p.tags)
        );
        assert_eq!(q.value.to_bits(), 0.0f64.to_bits());
        assert_eq!(
            p.with_metric_value(String::new(), 1.0, &PointLimits::default())
                .unwrap_err()
                .field,
            "metric"
        );
        assert_eq!(
            p.with_metric_value("x".into(), f64::NAN, &PointLimits::default())
                .unwrap_err()
                .field,
            "value"
        );
    }

    #[test]
    fn names_and_values_are_checked() {
        assert_eq!(point("", 1.0, &[]).unwrap_err().field, "metric");
        assert_eq!(
            point(&"m".repeat(300), 1.0, &[]).unwrap_err().field,
            "metric"
        );
        assert_eq!(point("m", f64::NAN, &[]).unwrap_err().field, "value");
        assert_eq!(point("m", f64::INFINITY, &[]).unwrap_err().field, "value");
    }
}
