//! Metadata filters: `{field: value | {"$in": [...]} | {"$gt" | "$gte" | "$lt" | "$lte": n, ...}}`.
//!
//! Every condition must hold (AND). `field` names a top-level metadata key. Equality compares
//! JSON values (numbers by value: `1` equals `1.0`); a metadata array matches when any element
//! does. Range operators apply to numbers only and may be combined (`{"$gte": 1, "$lt": 5}`); a
//! missing or non-numeric field never matches a range. A filter is parsed once per request and
//! then evaluated per candidate inside the index search, so it must be cheap: no allocation.

use serde_json::{Map, Value};

/// Most conditions in one filter.
pub const MAX_CONDITIONS: usize = 32;
/// Most values in one `$in`.
pub const MAX_IN_VALUES: usize = 1024;

#[derive(Clone, Debug, PartialEq)]
pub struct Filter {
    conditions: Vec<(String, Condition)>,
}

#[derive(Clone, Debug, PartialEq)]
enum Condition {
    Eq(Value),
    In(Vec<Value>),
    Range {
        gt: Option<f64>,
        gte: Option<f64>,
        lt: Option<f64>,
        lte: Option<f64>,
    },
}

/// Why a filter was refused; `field` is the path inside the filter object.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidFilter {
    pub field: String,
    pub reason: String,
}

impl Filter {
    /// Parses a filter object. `prefix` is prepended to field paths in errors (e.g. `filter.`).
    pub fn parse(value: &Value, prefix: &str) -> Result<Filter, InvalidFilter> {
        let bad = |field: String, reason: &str| InvalidFilter {
            field,
            reason: reason.to_string(),
        };
        let Value::Object(map) = value else {
            return Err(bad(
                prefix.trim_end_matches('.').to_string(),
                "must be an object",
            ));
        };
        if map.len() > MAX_CONDITIONS {
            return Err(bad(
                prefix.trim_end_matches('.').to_string(),
                &format!("at most {MAX_CONDITIONS} conditions"),
            ));
        }
        let mut conditions = Vec::with_capacity(map.len());
        for (field, cond) in map {
            let path = format!("{prefix}{field}");
            if field.is_empty() {
                return Err(bad(path, "field names must not be empty"));
            }
            let condition = match cond {
                Value::Object(ops) if ops.keys().any(|k| k.starts_with('$')) => {
                    parse_ops(ops, &path)?
                }
                Value::Null => return Err(bad(path, "null is not a filter value")),
                v => Condition::Eq(v.clone()),
            };
            conditions.push((field.clone(), condition));
        }
        Ok(Filter { conditions })
    }

    pub fn is_empty(&self) -> bool {
        self.conditions.is_empty()
    }

    /// Whether `metadata` satisfies every condition.
    pub fn matches(&self, metadata: &Map<String, Value>) -> bool {
        self.conditions.iter().all(|(field, cond)| {
            let Some(v) = metadata.get(field) else {
                return false;
            };
            match cond {
                Condition::Eq(want) => any_element(v, |x| json_eq(x, want)),
                Condition::In(wants) => any_element(v, |x| wants.iter().any(|w| json_eq(x, w))),
                Condition::Range { gt, gte, lt, lte } => any_element(v, |x| {
                    let Some(n) = x.as_f64() else {
                        return false;
                    };
                    gt.is_none_or(|b| n > b)
                        && gte.is_none_or(|b| n >= b)
                        && lt.is_none_or(|b| n < b)
                        && lte.is_none_or(|b| n <= b)
                }),
            }
        })
    }
}

fn parse_ops(ops: &Map<String, Value>, path: &str) -> Result<Condition, InvalidFilter> {
    let bad = |op: &str, reason: String| InvalidFilter {
        field: format!("{path}.{op}"),
        reason,
    };
    if let Some(list) = ops.get("$in") {
        if ops.len() != 1 {
            return Err(bad("$in", "cannot be combined with other operators".into()));
        }
        let Value::Array(values) = list else {
            return Err(bad("$in", "must be an array".into()));
        };
        if values.is_empty() || values.len() > MAX_IN_VALUES {
            return Err(bad("$in", format!("must hold 1 to {MAX_IN_VALUES} values")));
        }
        if values.iter().any(|v| v.is_null() || v.is_object()) {
            return Err(bad(
                "$in",
                "values must be strings, numbers or booleans".into(),
            ));
        }
        return Ok(Condition::In(values.clone()));
    }
    let (mut gt, mut gte, mut lt, mut lte) = (None, None, None, None);
    for (op, v) in ops {
        let slot = match op.as_str() {
            "$gt" => &mut gt,
            "$gte" => &mut gte,
            "$lt" => &mut lt,
            "$lte" => &mut lte,
            other => {
                return Err(bad(
                    other,
                    "unknown operator; use $in, $gt, $gte, $lt or $lte".into(),
                ));
            }
        };
        let Some(n) = v.as_f64() else {
            return Err(bad(op, "must be a number".into()));
        };
        *slot = Some(n);
    }
    Ok(Condition::Range { gt, gte, lt, lte })
}

fn any_element(v: &Value, f: impl Fn(&Value) -> bool) -> bool {
    match v {
        Value::Array(items) => items.iter().any(f),
        v => f(v),
    }
}

fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn meta(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn conditions_combine_with_and() {
        let f = Filter::parse(
            &json!({"cat": "a", "n": {"$gte": 2, "$lt": 5}, "tag": {"$in": ["x", 7]}}),
            "filter.",
        )
        .unwrap();
        assert!(f.matches(&meta(json!({"cat": "a", "n": 2, "tag": 7.0}))));
        assert!(f.matches(&meta(json!({"cat": "a", "n": 4.5, "tag": ["y", "x"]}))));
        assert!(!f.matches(&meta(json!({"cat": "a", "n": 5, "tag": "x"}))));
        assert!(!f.matches(&meta(json!({"cat": "b", "n": 3, "tag": "x"}))));
        assert!(!f.matches(&meta(json!({"cat": "a", "n": "3", "tag": "x"}))));
        assert!(!f.matches(&meta(json!({"cat": "a", "tag": "x"}))));
    }

    #[test]
    fn bad_filters_name_the_field() {
        let e = Filter::parse(&json!({"n": {"$between": [1, 2]}}), "filter.").unwrap_err();
        assert_eq!(e.field, "filter.n.$between");
        let e = Filter::parse(&json!({"n": {"$gt": "x"}}), "filter.").unwrap_err();
        assert_eq!(e.field, "filter.n.$gt");
        let e = Filter::parse(&json!({"n": {"$in": 3}}), "filter.").unwrap_err();
        assert_eq!(e.field, "filter.n.$in");
        let e = Filter::parse(&json!([1]), "filter.").unwrap_err();
        assert_eq!(e.field, "filter");
        let e = Filter::parse(&json!({"n": null}), "filter.").unwrap_err();
        assert_eq!(e.field, "filter.n");
    }
}
