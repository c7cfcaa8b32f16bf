//! Integers in JSON bodies, as JSON Schema reads them.
//!
//! JSON has one number type, and JSON Schema's `"type": "integer"` accepts any number with no
//! fractional part: `744.0` is an integer there, and JavaScript clients send what their
//! `Number`s print. Serde's derived integer fields refuse `744.0`, so the schema we publish
//! would promise more than the server takes. Integer fields of request bodies deserialize
//! through [`integer`] (or [`optional`]): an integer, or a finite float with no fractional
//! part that fits the field; anything else is refused with serde's usual message.
//!
//! Every integer is also at most 2^63 − 1, whatever the field's Rust type: the OpenAPI document
//! says `format: int64` for them (unsigned ones too), and a generator or a JavaScript client
//! reads that as the range.
//!
//! `#[serde(deserialize_with = "sluice_api::int::integer")]` on the field.

use serde::de::{self, Deserializer, Visitor};

/// An integer field: `12`, `-3`, or a float with no fractional part (`12.0`, `1.7e12`).
pub fn integer<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i128>,
{
    d.deserialize_any(IntVisitor(std::marker::PhantomData))
}

/// An optional integer field: `null` or absent (with `#[serde(default)]`) is `None`.
pub fn optional<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i128>,
{
    struct Opt<T>(std::marker::PhantomData<T>);
    impl<'de, T: TryFrom<i128>> Visitor<'de> for Opt<T> {
        type Value = Option<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an integer or null")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            integer(d).map(Some)
        }
    }
    d.deserialize_option(Opt(std::marker::PhantomData))
}

struct IntVisitor<T>(std::marker::PhantomData<T>);

impl<T: TryFrom<i128>> IntVisitor<T> {
    fn fit<E: de::Error>(v: i128, unexp: de::Unexpected) -> Result<T, E> {
        if v > i128::from(i64::MAX) {
            return Err(E::invalid_value(
                unexp,
                &"an integer of at most 2^63 - 1 (int64)",
            ));
        }
        T::try_from(v).map_err(|_| E::invalid_value(unexp, &"an integer in the field's range"))
    }
}

impl<'de, T: TryFrom<i128>> Visitor<'de> for IntVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an integer")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        Self::fit(v.into(), de::Unexpected::Signed(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        Self::fit(v.into(), de::Unexpected::Unsigned(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        // Only where a double holds every integer exactly (|v| <= 2^53): beyond, the text may
        // have named another integer than the double does (`-9223372036854775809` reads as
        // -2^63), so such integers must be written as integers.
        if v.is_finite() && v.fract() == 0.0 && v.abs() <= 9_007_199_254_740_992.0 {
            Self::fit(v as i128, de::Unexpected::Float(v))
        } else {
            Err(E::invalid_type(de::Unexpected::Float(v), &self))
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Body {
        #[serde(deserialize_with = "super::integer")]
        n: u32,
        #[serde(default, deserialize_with = "super::optional")]
        t: Option<i64>,
        #[serde(default, deserialize_with = "super::optional")]
        u: Option<u64>,
    }

    fn parse(s: &str) -> Result<Body, String> {
        serde_json::from_str(s).map_err(|e| e.to_string())
    }

    #[test]
    fn integral_floats_are_integers_and_the_rest_is_refused() {
        assert_eq!(
            parse(r#"{"n": 7}"#).unwrap(),
            Body {
                n: 7,
                t: None,
                u: None
            }
        );
        assert_eq!(
            parse(r#"{"n": 7, "u": 9223372036854775807}"#).unwrap().u,
            Some(i64::MAX as u64)
        );
        assert_eq!(
            parse(r#"{"n": 744.0, "t": 1.7e12}"#).unwrap(),
            Body {
                n: 744,
                t: Some(1_700_000_000_000),
                u: None
            }
        );
        assert_eq!(parse(r#"{"n": 1, "t": null}"#).unwrap().t, None);
        assert_eq!(parse(r#"{"n": 1, "t": -5}"#).unwrap().t, Some(-5));
        for bad in [
            r#"{"n": 1.5}"#,
            r#"{"n": -1}"#,
            r#"{"n": 4294967296}"#,
            r#"{"n": 1e300}"#,
            r#"{"n": "7"}"#,
            r#"{"n": true}"#,
            r#"{"n": 1, "t": 9.3e18}"#,
            r#"{"n": 1, "t": -9223372036854775809}"#,
            r#"{"n": 1, "t": 1e16}"#,
            r#"{"n": 1, "t": 9223372036854775808}"#,
            r#"{"n": 1, "u": 9223372036854775808}"#,
            r#"{"n": 1, "t": 0.5}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad} must be refused");
        }
    }
}
