//! What queries read and return: label sets, series, samples, and the four PromQL value types.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// The metric-name label.
pub const METRIC_NAME: &str = "__name__";
/// The bucket label of classic histograms.
pub const BUCKET_LABEL: &str = "le";

/// Prometheus's staleness marker: a NaN with this exact bit pattern, written when a series
/// disappears from a scrape. A lookup that lands on it finds nothing.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

pub fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// A label set, sorted by name, names unique, no empty values. Cheap to clone (shared).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Labels(Arc<Vec<(String, String)>>);

impl Hash for Labels {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state)
    }
}

impl Labels {
    /// From pairs in any order; empty values are dropped (an empty label is an absent one).
    /// A name given twice keeps its last value.
    pub fn new(mut pairs: Vec<(String, String)>) -> Labels {
        pairs.retain(|(_, v)| !v.is_empty());
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<(String, String)> = Vec::with_capacity(pairs.len());
        for p in pairs {
            match out.last_mut() {
                Some(last) if last.0 == p.0 => *last = p,
                _ => out.push(p),
            }
        }
        Labels(Arc::new(out))
    }

    pub fn empty() -> Labels {
        Labels::default()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The value of `name`, `""` when absent.
    pub fn get(&self, name: &str) -> &str {
        self.0
            .binary_search_by(|(k, _)| k.as_str().cmp(name))
            .map(|i| self.0[i].1.as_str())
            .unwrap_or("")
    }

    pub fn has(&self, name: &str) -> bool {
        self.0
            .binary_search_by(|(k, _)| k.as_str().cmp(name))
            .is_ok()
    }

    /// Without `__name__` (shared when there is none).
    pub fn without_name(&self) -> Labels {
        if !self.has(METRIC_NAME) {
            return self.clone();
        }
        self.filtered(|k| k != METRIC_NAME)
    }

    /// Only the labels whose name `keep` accepts.
    pub fn filtered(&self, keep: impl Fn(&str) -> bool) -> Labels {
        Labels(Arc::new(
            self.0.iter().filter(|(k, _)| keep(k)).cloned().collect(),
        ))
    }

    /// With `name` set to `value` (removed when `value` is empty).
    pub fn with(&self, name: &str, value: &str) -> Labels {
        let mut v: Vec<(String, String)> = (*self.0).clone();
        match v.binary_search_by(|(k, _)| k.as_str().cmp(name)) {
            Ok(i) if value.is_empty() => {
                v.remove(i);
            }
            Ok(i) => v[i].1 = value.to_string(),
            Err(_) if value.is_empty() => {}
            Err(i) => v.insert(i, (name.to_string(), value.to_string())),
        }
        Labels(Arc::new(v))
    }

    /// Prometheus's text form: `{a="1", b="2"}`.
    pub fn to_prom_string(&self) -> String {
        let parts: Vec<String> = self.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
        format!("{{{}}}", parts.join(", "))
    }
}

/// A series: its labels and samples in time order.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub labels: Labels,
    pub samples: Vec<(i64, f64)>,
}

/// One element of an instant vector.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub labels: Labels,
    pub t: i64,
    pub v: f64,
}

/// A query's result.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Scalar(i64, f64),
    String(i64, String),
    /// An instant vector, in evaluation order (or sorted, for `sort`/`sort_desc`).
    Vector(Vec<Sample>),
    /// A range vector, or a range query's result: series sorted by labels.
    Matrix(Vec<Series>),
}

impl Value {
    /// Prometheus's name for the type (`resultType`).
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Scalar(..) => "scalar",
            Value::String(..) => "string",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
        }
    }
}

/// A float as Prometheus writes it: shortest exact decimal, no exponent, `NaN`, `+Inf`, `-Inf`.
pub fn format_float(v: f64) -> String {
    let mut out = String::new();
    push_float(&mut out, v);
    out
}

/// [`format_float`], appended to `out` (answers print millions of points: no allocation, and
/// integers, most counters' values, without float formatting). The digits are Ryū's shortest
/// round trip, which is what Go's `strconv.FormatFloat(v, 'f', -1, 64)` prints (Rust's own
/// shortest formatting breaks some ties the other way: `142372986152081.625` prints as
/// `…81.63`, Go and Ryū print `…81.62`).
pub fn push_float(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else if v.fract() == 0.0 && v.abs() < 9_007_199_254_740_992.0 {
        // Below 2^53 an integer's shortest exact decimal is its digits.
        if v == 0.0 && v.is_sign_negative() {
            out.push('-');
        }
        out.push_str(itoa::Buffer::new().format(v as i64));
    } else {
        let mut buf = ryu::Buffer::new();
        let shortest = buf.format_finite(v);
        match shortest.split_once('e') {
            // Integers past 2^53 come as `9100000000000000.0`.
            None => out.push_str(shortest.strip_suffix(".0").unwrap_or(shortest)),
            // Prometheus never writes an exponent: `1.5e-7` is `0.00000015`.
            Some((mantissa, exp)) => {
                let (sign, mantissa) = match mantissa.strip_prefix('-') {
                    Some(m) => ("-", m),
                    None => ("", mantissa),
                };
                let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
                let digits = digits.trim_end_matches('0');
                let digits = if digits.is_empty() { "0" } else { digits };
                // The decimal point goes after `point` digits.
                let point = exp.parse::<i64>().unwrap_or(0) + 1;
                out.push_str(sign);
                let n = digits.len() as i64;
                if point <= 0 {
                    out.push_str("0.");
                    (0..-point).for_each(|_| out.push('0'));
                    out.push_str(digits);
                } else if point >= n {
                    out.push_str(digits);
                    (0..point - n).for_each(|_| out.push('0'));
                } else {
                    out.push_str(&digits[..point as usize]);
                    out.push('.');
                    out.push_str(&digits[point as usize..]);
                }
            }
        }
    }
}

/// A millisecond timestamp as Prometheus writes it in JSON: seconds, then (unless zero) a
/// three-digit millisecond fraction.
pub fn format_timestamp(t_ms: i64) -> String {
    let mut out = String::new();
    push_timestamp(&mut out, t_ms);
    out
}

/// [`format_timestamp`], appended to `out`.
pub fn push_timestamp(out: &mut String, t_ms: i64) {
    if t_ms < 0 {
        out.push('-');
    }
    let t = t_ms.unsigned_abs();
    out.push_str(itoa::Buffer::new().format(t / 1000));
    let f = t % 1000;
    if f != 0 {
        out.push('.');
        out.push((b'0' + (f / 100) as u8) as char);
        out.push((b'0' + (f / 10 % 10) as u8) as char);
        out.push((b'0' + (f % 10) as u8) as char);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_and_timestamps_print_as_prometheus_does() {
        assert_eq!(format_float(1.0), "1");
        assert_eq!(format_float(0.1), "0.1");
        assert_eq!(format_float(-2.5e-7), "-0.00000025");
        assert_eq!(format_float(1e21), "1000000000000000000000");
        assert_eq!(format_float(f64::NAN), "NaN");
        assert_eq!(format_float(-0.0), "-0");
        assert_eq!(format_float(123456789.0), "123456789");
        assert_eq!(format_float(1.5), "1.5");
        assert_eq!(format_float(1e15 + 0.5), "1000000000000000.5");
        assert_eq!(format_float(f64::MAX), format!("{}", f64::MAX));
        // The fast paths print what Rust's shortest formatting prints.
        for v in [
            0.3,
            1.0 / 3.0,
            2.0f64.powi(60),
            2.0f64.powi(70),
            -7e-300,
            4.5e15,
            9.1e15,
            12345.678,
            1e17 + 0.5,
        ] {
            assert_eq!(format_float(v), format!("{v}"), "{v}");
        }
        assert_eq!(format_float(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_timestamp(1_700_000_000_000), "1700000000");
        assert_eq!(format_timestamp(1_700_000_000_120), "1700000000.120");
        assert_eq!(format_timestamp(5), "0.005");
        assert_eq!(format_timestamp(-1500), "-1.500");
    }

    /// Floats print as Go's `strconv.FormatFloat(v, 'f', -1, 64)` prints them (the expected
    /// strings are Go 1.19's output), and every printed float reads back as itself.
    #[test]
    fn floats_print_as_go_does_and_round_trip() {
        for (v, go) in [
            (1.4237298615208163e14, "142372986152081.62"),
            (1.5e-7, "0.00000015"),
            (-2.5e-10, "-0.00000000025"),
            (1e21, "1000000000000000000000"),
            (1.2345e20, "123450000000000000000"),
            (2f64.powi(60), "1152921504606847000"),
            (9.1e15, "9100000000000000"),
            (123.456, "123.456"),
            (
                5e-324,
                "0.000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000005",
            ),
        ] {
            assert_eq!(format_float(v), go, "{v:e}");
        }
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for _ in 0..200_000 {
            let v = f64::from_bits(rng.random());
            let i = rng.random_range(-1e17..1e17f64).round();
            let d = rng.random_range(-1e6..1e6f64);
            for v in [v, i, d] {
                if v.is_finite() {
                    let s = format_float(v);
                    assert!(!s.contains('e'), "{s}");
                    assert_eq!(s.parse::<f64>().unwrap().to_bits(), v.to_bits(), "{s}");
                }
            }
        }
    }

    #[test]
    fn labels_are_sorted_unique_and_drop_empty_values() {
        let l = Labels::new(vec![
            ("b".into(), "2".into()),
            ("a".into(), "1".into()),
            ("c".into(), "".into()),
        ]);
        assert_eq!(l.to_prom_string(), r#"{a="1", b="2"}"#);
        assert_eq!(l.get("c"), "");
        assert_eq!(l.with("a", "").to_prom_string(), r#"{b="2"}"#);
        assert_eq!(l.with("0", "x").get("0"), "x");
    }
}
