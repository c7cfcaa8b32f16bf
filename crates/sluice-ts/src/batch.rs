//! A write as its distinct series and its samples: what the ingest paths build, the WAL record
//! holds ([`crate::record::SERIES_POINTS`]) and the head inserts.
//!
//! # Why
//! A batch of 5,000 points from 1,000 hosts names each series five times. Carried point by
//! point, every point costs its strings (allocation, copy, WAL bytes) and a series-index
//! lookup hashing them. Carried as series + samples, a series costs that once per request and
//! a sample is 20 bytes: `(series index, timestamp, value)`. Parsers intern series as they read
//! (line protocol keys its cache by the line's raw series text, the wire protocol by the
//! point's raw bytes), so a repeated series costs a hash of borrowed bytes, no allocation.
//!
//! # Invariants
//! Every key in `series` passed [`SeriesKey::new`] (limits checked, tags sorted and unique);
//! every sample names an index into `series`, and its value is finite with no negative zero
//! ([`crate::point::check_value`]) unless it is a Prometheus sample ([`Batch::push_sample`]),
//! whose bits are kept as sent. Keys need not be unique (a parser may skip interning); the
//! engine maps each to its series id once per batch.

use crate::InvalidPoint;
use crate::point::{Point, check_value};
use crate::series::{HashMap, SeriesKey};

/// One sample of a batch: the index of its series in [`Batch::series`], time and value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    pub series: u32,
    pub timestamp_ms: i64,
    pub value: f64,
}

/// Series and samples of one write (see the module doc).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Batch {
    pub series: Vec<SeriesKey>,
    pub samples: Vec<Sample>,
}

impl Batch {
    pub fn with_capacity(series: usize, samples: usize) -> Batch {
        Batch {
            series: Vec::with_capacity(series),
            samples: Vec::with_capacity(samples),
        }
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Adds a validated series key; returns its index for [`Self::push`].
    pub fn add_series(&mut self, key: SeriesKey) -> u32 {
        self.series.push(key);
        (self.series.len() - 1) as u32
    }

    /// Adds a sample of series `series` (an index [`Self::add_series`] returned), checking
    /// the index and the value.
    pub fn push(&mut self, series: u32, timestamp_ms: i64, value: f64) -> Result<(), InvalidPoint> {
        if series as usize >= self.series.len() {
            return Err(InvalidPoint {
                field: "series".into(),
                reason: format!("no series {series} in the batch"),
            });
        }
        self.samples.push(Sample {
            series,
            timestamp_ms,
            value: check_value(value)?,
        });
        Ok(())
    }

    /// Adds a Prometheus sample of series `series` (an index [`Self::add_series`] returned;
    /// the caller guarantees it): any value, NaN, ±Inf and staleness markers included.
    pub fn push_sample(&mut self, series: u32, timestamp_ms: i64, value: f64) {
        debug_assert!((series as usize) < self.series.len());
        self.samples.push(Sample {
            series,
            timestamp_ms,
            value,
        });
    }

    /// A batch of one validated point (no grouping to do).
    pub fn from_point(p: Point) -> Batch {
        Batch {
            series: vec![SeriesKey {
                metric: p.metric,
                entity: p.entity,
                tags: p.tags,
            }],
            samples: vec![Sample {
                series: 0,
                timestamp_ms: p.timestamp_ms,
                value: p.value,
            }],
        }
    }

    /// Groups validated points by series.
    pub fn from_points(points: Vec<Point>) -> Batch {
        let mut batch = Batch::with_capacity(0, points.len());
        let mut index: HashMap<SeriesKey, u32> = HashMap::default();
        for p in points {
            let key = SeriesKey {
                metric: p.metric,
                entity: p.entity,
                tags: p.tags,
            };
            let series = match index.get(&key) {
                Some(&i) => i,
                None => {
                    let i = batch.add_series(key.clone());
                    index.insert(key, i);
                    i
                }
            };
            batch.samples.push(Sample {
                series,
                timestamp_ms: p.timestamp_ms,
                value: p.value,
            });
        }
        batch
    }

    /// The samples with their series, in order.
    pub fn points(&self) -> impl Iterator<Item = (&SeriesKey, i64, f64)> {
        self.samples
            .iter()
            .map(|s| (&self.series[s.series as usize], s.timestamp_ms, s.value))
    }

    /// The samples as points, in order.
    pub fn to_points(&self) -> Vec<Point> {
        self.points()
            .map(|(k, t, v)| Point {
                metric: k.metric.clone(),
                entity: k.entity.clone(),
                timestamp_ms: t,
                value: v,
                tags: k.tags.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::point::PointLimits;

    fn pt(entity: &str, t: i64, v: f64) -> Point {
        Point::new(
            "m".into(),
            entity.into(),
            t,
            v,
            [("k".to_string(), "v".to_string())],
            &PointLimits::default(),
        )
        .unwrap()
    }

    #[test]
    fn points_are_grouped_by_series_and_come_back_in_order() {
        let points = vec![pt("a", 1, 1.0), pt("b", 1, 2.0), pt("a", 2, 3.0)];
        let b = Batch::from_points(points.clone());
        assert_eq!(
            Batch::from_point(points[0].clone()).to_points(),
            points[..1]
        );
        assert_eq!(b.series.len(), 2);
        assert_eq!(
            b.samples.iter().map(|s| s.series).collect::<Vec<_>>(),
            [0, 1, 0]
        );
        assert_eq!(b.to_points(), points);
    }

    #[test]
    fn push_checks_the_value() {
        let mut b = Batch::default();
        let s = b.add_series(
            SeriesKey::new("m".into(), "e".into(), [], &PointLimits::default()).unwrap(),
        );
        assert_eq!(b.push(s, 1, f64::NAN).unwrap_err().field, "value");
        b.push(s, 1, -0.0).unwrap();
        assert_eq!(b.samples[0].value.to_bits(), 0.0f64.to_bits());
        assert!(b.samples.len() == 1 && b.len() == 1);
    }
}
