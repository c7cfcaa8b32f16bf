//! Distances and storage precisions of a collection.
//!
//! Distances follow usearch's metrics, lower is closer: `cosine` = 1 − cos(a, b), `l2` = the
//! squared Euclidean distance, `ip` = 1 − a·b. [`Distance::score`] turns a distance into the
//! score the API returns: the cosine similarity, the inner product, or the Euclidean distance
//! (for `l2` a lower score is better; results are always ordered best first).

use serde::{Deserialize, Serialize};
use usearch::{MetricKind, ScalarKind};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Distance {
    Cosine,
    L2,
    Ip,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    F32,
    F16,
    I8,
}

impl Distance {
    pub fn metric(self) -> MetricKind {
        match self {
            Distance::Cosine => MetricKind::Cos,
            Distance::L2 => MetricKind::L2sq,
            Distance::Ip => MetricKind::IP,
        }
    }

    /// The distance between `a` and `b` (same length), as usearch computes it.
    pub fn between(self, a: &[f32], b: &[f32]) -> f32 {
        match self {
            Distance::Cosine => {
                let (mut ab, mut aa, mut bb) = (0f32, 0f32, 0f32);
                for (x, y) in a.iter().zip(b) {
                    ab += x * y;
                    aa += x * x;
                    bb += y * y;
                }
                if aa == 0.0 || bb == 0.0 {
                    return 1.0;
                }
                1.0 - ab / (aa.sqrt() * bb.sqrt())
            }
            Distance::L2 => a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum(),
            Distance::Ip => 1.0 - a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>(),
        }
    }

    /// The score the API reports for a distance.
    pub fn score(self, distance: f32) -> f32 {
        match self {
            Distance::Cosine | Distance::Ip => 1.0 - distance,
            Distance::L2 => distance.max(0.0).sqrt(),
        }
    }
}

impl Precision {
    pub fn scalar(self) -> ScalarKind {
        match self {
            Precision::F32 => ScalarKind::F32,
            Precision::F16 => ScalarKind::F16,
            Precision::I8 => ScalarKind::I8,
        }
    }

    /// Bytes one component takes in the index.
    pub fn bytes(self) -> usize {
        match self {
            Precision::F32 => 4,
            Precision::F16 => 2,
            Precision::I8 => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_and_scores() {
        let a = [1.0, 0.0];
        let b = [0.0, 2.0];
        assert_eq!(Distance::Cosine.between(&a, &a), 0.0);
        assert!((Distance::Cosine.between(&a, &b) - 1.0).abs() < 1e-6);
        assert_eq!(Distance::L2.between(&a, &b), 5.0);
        assert_eq!(Distance::Ip.between(&a, &[3.0, 1.0]), -2.0);
        assert_eq!(Distance::Ip.score(-2.0), 3.0);
        assert_eq!(Distance::L2.score(4.0), 2.0);
        assert_eq!(Distance::Cosine.between(&[0.0, 0.0], &a), 1.0);
    }
}
