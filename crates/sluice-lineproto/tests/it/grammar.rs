//! The grammar of the crate doc, input class by input class, including every case where an
//! earlier parser disagreed with InfluxDB 2.x; and a round-trip property over generated lines.

use std::borrow::Cow;

use proptest::prelude::*;
use sluice_lineproto::{Field, FieldValue, LineError, Series, parse_lines};

/// A parsed point, owned: measurement, tags, fields, timestamp.
type Owned = (
    String,
    Vec<(String, String)>,
    Vec<(String, FieldValue<'static>)>,
    Option<i64>,
);

/// The one point of `text`.
fn one(text: &str) -> Owned {
    let lines = parse_lines(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    assert_eq!(lines.len(), 1, "{text:?}");
    let (s, f, t) = lines.into_iter().next().unwrap();
    owned(s, f, t)
}

fn owned(s: Series<'_>, f: Vec<Field<'_>>, t: Option<i64>) -> Owned {
    (
        s.measurement.into_owned(),
        s.tags
            .into_iter()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect(),
        f.into_iter()
            .map(|f| {
                let v = match f.value {
                    FieldValue::String(s) => FieldValue::String(Cow::Owned(s.into_owned())),
                    FieldValue::Float(v) => FieldValue::Float(v),
                    FieldValue::Integer(v) => FieldValue::Integer(v),
                    FieldValue::UInteger(v) => FieldValue::UInteger(v),
                    FieldValue::Boolean(v) => FieldValue::Boolean(v),
                };
                (f.key.into_owned(), v)
            })
            .collect(),
        t,
    )
}

fn value(text: &str) -> FieldValue<'static> {
    let (_, _, mut fields, _) = one(text);
    fields.remove(0).1
}

fn error(text: &str) -> LineError {
    match parse_lines(text) {
        Ok(lines) => panic!("{text:?} parsed: {} lines", lines.len()),
        Err(e) => e,
    }
}

fn tags(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn floats_in_every_form_influxdb_accepts() {
    for (text, want) in [
        ("m value=1.", 1.0),
        ("m value=.1", 0.1),
        ("m value=-0.", -0.0),
        ("m value=-.5", -0.5),
        ("m value=1", 1.0),
        ("m value=-1.25e3", -1250.0),
        ("m value=1E+2", 100.0),
        ("m value=1e-2", 0.01),
        ("m value=0.000", 0.0),
    ] {
        assert_eq!(value(text), FieldValue::Float(want), "{text}");
    }
    for bad in [
        "m value=.",
        "m value=-",
        "m value=1.2.3",
        "m value=1e",
        "m value=e1",
        "m value=+1",
        "m value=NaN",
        "m value=inf",
        "m value=-Inf",
        "m value=1e400",
        "m value=0x10",
        "m value=1_0",
    ] {
        let e = error(bad);
        assert_eq!((e.line, e.column), (1, 9), "{bad}: {e}");
    }
}

#[test]
fn integers_unsigned_and_booleans() {
    assert_eq!(
        value("m v=-9223372036854775808i"),
        FieldValue::Integer(i64::MIN)
    );
    assert_eq!(
        value("m v=9223372036854775807i"),
        FieldValue::Integer(i64::MAX)
    );
    assert_eq!(
        value("m v=18446744073709551615u"),
        FieldValue::UInteger(u64::MAX)
    );
    assert_eq!(value("m v=0u"), FieldValue::UInteger(0));
    for bad in [
        "m v=9223372036854775808i",
        "m v=18446744073709551616u",
        "m v=-1u",
        "m v=1.5i",
        "m v=i",
        "m v=9i10",
        "m v=1iu",
    ] {
        assert!(
            error(bad).reason.contains("v") || !error(bad).reason.is_empty(),
            "{bad}"
        );
    }
    for t in ["t", "T", "true", "True", "TRUE"] {
        assert_eq!(value(&format!("m v={t}")), FieldValue::Boolean(true));
    }
    for f in ["f", "F", "false", "False", "FALSE"] {
        assert_eq!(value(&format!("m v={f}")), FieldValue::Boolean(false));
    }
    for bad in ["tRUE", "yes", "truee", "Fals"] {
        error(&format!("m v={bad}"));
    }
}

#[test]
fn strings_keep_commas_spaces_equals_and_newlines_and_unescape_quotes() {
    let text = "m s=\"a, b=c \\\"q\\\" \\\\ \\n\nnext\",v=1i 5\nm v=2i 6";
    let lines = parse_lines(text).unwrap();
    assert_eq!(lines.len(), 2);
    let (_, _, fields, t) = owned(lines[0].0.clone(), lines[0].1.clone(), lines[0].2);
    assert_eq!(
        fields[0].1,
        FieldValue::String(Cow::Owned("a, b=c \"q\" \\ \\n\nnext".into()))
    );
    assert_eq!(fields[1].1, FieldValue::Integer(1));
    assert_eq!(t, Some(5));
    let e = error("m v=1\nm s=\"open, v=2");
    assert_eq!((e.line, e.column), (2, 5), "{e}");
    assert!(e.reason.contains("unbalanced"), "{e}");
    error("m s=\"x\"y");
    // Lines are counted across the newlines of a string field.
    assert_eq!(error("m s=\"a\nb\" 1\r\n\nbad").line, 4);
}

#[test]
fn escapes_in_names() {
    let (m, t, f, _) = one(r#"my\ meas\,ure\=me\"nt,ta\ g\,k\=ey=va\ l\,u\=e fi\ eld\=k\,e\"y=1"#);
    assert_eq!(m, "my meas,ure=me\"nt");
    assert_eq!(t, tags(&[("ta g,k=ey", "va l,u=e")]));
    assert_eq!(f[0].0, "fi eld=k,e\"y");
    // In tags a `\"` stays as written; a tag value may start with '='.
    assert_eq!(one(r#"m,a\"=\"b v=1"#).1, tags(&[(r#"a\""#, r#"\"b"#)]));
    assert_eq!(one("m,a== v=1").1, tags(&[("a", "=")]));
    error("m,a=b= v=1");
    // An escaped backslash ends a tag value (InfluxDB 2.x); a lone backslash stays.
    let (_, t, _, _) = one(r"cpu,regions=east\\ value=1");
    assert_eq!(t, tags(&[("regions", r"east\")]));
    let (m, t, _, _) = one(r"c\pu,a=b\c value=1");
    assert_eq!((m.as_str(), t), (r"c\pu", tags(&[("a", r"b\c")])));
    let (m, _, _, _) = one(r"my\\measurement value=1");
    assert_eq!(m, r"my\measurement");
}

#[test]
fn blanks_comments_and_line_endings() {
    let text = "# a comment\n\n   \n\tcpu value=1 10\r\ncpu value=2 20   \r\n  cpu \t value=3  \ncpu value=4 \t 5\n# end";
    let lines = parse_lines(text).unwrap();
    let got: Vec<(f64, Option<i64>)> = lines
        .iter()
        .map(|(_, f, t)| match f[0].value {
            FieldValue::Float(v) => (v, *t),
            _ => panic!(),
        })
        .collect();
    assert_eq!(
        got,
        [
            (1.0, Some(10)),
            (2.0, Some(20)),
            (3.0, None),
            (4.0, Some(5))
        ]
    );
    // A tab inside a value or after the timestamp is not a separator (as in InfluxDB).
    error("cpu value=4\t");
    error("cpu value=4 5\t");
    assert!(parse_lines("").unwrap().is_empty());
    assert!(parse_lines("\n\r\n# only\n").unwrap().is_empty());
    // A bare `\r` inside a line is not a line ending.
    error("cpu value=1\r2");
}

#[test]
fn timestamps_at_the_int64_edges() {
    assert_eq!(one("m v=1 -9223372036854775808").3, Some(i64::MIN));
    assert_eq!(one("m v=1 9223372036854775807").3, Some(i64::MAX));
    assert_eq!(one("m v=1 0").3, Some(0));
    let e = error("m v=1 9223372036854775808");
    assert_eq!(e.column, 7, "{e}");
    assert!(e.reason.contains("out of range"), "{e}");
    for bad in [
        "m v=1 1.5",
        "m v=1 12a",
        "m v=1 -",
        "m v=1 1e9",
        "m v=1 10 11",
    ] {
        error(bad);
    }
}

#[test]
fn duplicate_tag_keys_are_refused_with_line_and_column() {
    let e = error("cpu value=1\ncpu,host=a,host=b value=1");
    assert_eq!((e.line, e.column), (2, 12), "{e}");
    assert!(e.reason.contains("duplicate tag key \"host\""), "{e}");
    // After unescaping too.
    error(r"cpu,a\ b=1,a\ b=2 value=1");
    // Different keys in any order are fine, kept in the order written.
    assert_eq!(one("cpu,z=1,a=2 v=1").1, tags(&[("z", "1"), ("a", "2")]));
}

#[test]
fn control_characters_in_names_are_refused() {
    for (text, column) in [
        ("c\tpu value=1", 2),
        ("cpu\u{1}x value=1", 4),
        ("cpu,ho\u{7f}st=a value=1", 7),
        ("cpu,host=a\u{0}b value=1", 11),
        ("cpu va\u{1b}lue=1", 7),
        ("cpu,h=\u{fffd} value=1", 7),
    ] {
        let e = error(text);
        assert_eq!((e.line, e.column), (1, column), "{text:?}: {e}");
        assert!(e.reason.contains("control character"), "{e}");
    }
    // Non-ASCII printable names are fine; columns count characters.
    let (m, t, _, _) = one("température,lieu=Zürich valeur=1");
    assert_eq!(
        (m.as_str(), t),
        ("température", tags(&[("lieu", "Zürich")]))
    );
    let e = error("température,lieu=Zürich,lieu=x valeur=1");
    assert_eq!(e.column, 25, "{e}");
}

#[test]
fn structural_errors_name_line_and_column() {
    for (text, column, what) in [
        ("cpu", 4, "missing fields"),
        ("cpu ", 5, "missing fields"),
        (",host=a value=1", 1, "missing measurement"),
        ("cpu, value=1", 5, "missing tag key"),
        ("cpu,host value=1", 9, "missing tag value"),
        ("cpu,host= value=1", 10, "missing tag value"),
        ("cpu,host=a=b value=1", 11, "unescaped '='"),
        ("cpu value", 10, "missing field value"),
        ("cpu value=", 11, "missing field value"),
        ("cpu =1", 5, "missing field key"),
        ("cpu a=1,=2", 9, "missing field key"),
        ("cpu a=1,b", 10, "missing field value"),
        ("cpu a b=1", 6, "invalid field format"),
        ("cpu a=1 10 x", 12, "after the timestamp"),
    ] {
        let e = error(text);
        assert_eq!((e.line, e.column), (1, column), "{text:?}: {e}");
        assert!(e.reason.contains(what), "{text:?}: {e}");
    }
}

#[test]
fn the_parser_stops_at_the_first_error() {
    let mut p = sluice_lineproto::Parser::new("a v=1\nbad\nc v=1");
    let mut fields = Vec::new();
    assert!(p.next_line(&mut fields).unwrap().is_ok());
    assert_eq!(p.next_line(&mut fields).unwrap().unwrap_err().line, 2);
    assert!(fields.is_empty());
    assert!(p.next_line(&mut fields).is_none());
}

// ---- round trip --------------------------------------------------------------------------

fn escape(s: &str, specials: &[char]) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if specials.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn name() -> impl Strategy<Value = String> {
    // Printable names with every character that needs escaping, and backslashes.
    "[a-zA-Z0-9_ ,=\\\\é\"#.-]{1,10}".prop_filter("not only blanks", |s| !s.trim().is_empty())
}

#[derive(Clone, Debug)]
enum GenValue {
    Float(f64),
    Int(i64),
    UInt(u64),
    Bool(bool),
    Str(String),
}

fn gen_value() -> impl Strategy<Value = GenValue> {
    prop_oneof![
        any::<f64>()
            .prop_filter("finite", |v| v.is_finite())
            .prop_map(GenValue::Float),
        any::<i64>().prop_map(GenValue::Int),
        any::<u64>().prop_map(GenValue::UInt),
        any::<bool>().prop_map(GenValue::Bool),
        "[ -~\n\t]{0,12}".prop_map(GenValue::Str),
    ]
}

proptest! {
    #[test]
    fn encoded_lines_parse_back_to_what_was_encoded(
        measurement in name(),
        tag_set in proptest::collection::btree_map(name(), name(), 0..4),
        field_set in proptest::collection::vec((name(), gen_value()), 1..4),
        timestamp in proptest::option::of(any::<i64>()),
        crlf in any::<bool>(),
    ) {
        let m = measurement.trim_start_matches([' ', '\t', '#']);
        prop_assume!(!m.is_empty());
        let mut line = escape(m, &[',', ' ', '\\']);
        for (k, v) in &tag_set {
            line.push(',');
            line.push_str(&escape(k, &[',', '=', ' ', '\\']));
            line.push('=');
            line.push_str(&escape(v, &[',', '=', ' ', '\\']));
        }
        line.push(' ');
        for (i, (k, v)) in field_set.iter().enumerate() {
            if i > 0 {
                line.push(',');
            }
            line.push_str(&escape(k, &[',', '=', ' ', '\\']));
            line.push('=');
            match v {
                GenValue::Float(f) => line.push_str(&format!("{f:?}")),
                GenValue::Int(n) => line.push_str(&format!("{n}i")),
                GenValue::UInt(n) => line.push_str(&format!("{n}u")),
                GenValue::Bool(b) => line.push_str(if *b { "true" } else { "F" }),
                GenValue::Str(s) => {
                    line.push('"');
                    line.push_str(&escape(s, &['"', '\\']));
                    line.push('"');
                }
            }
        }
        if let Some(t) = timestamp {
            line.push_str(&format!(" {t}"));
        }
        let body = format!("{line}{}{line}", if crlf { "\r\n" } else { "\n" });
        let lines = parse_lines(&body).map_err(|e| TestCaseError::fail(format!("{body:?}: {e}")))?;
        prop_assert_eq!(lines.len(), 2);
        for (series, fields, ts) in lines {
            prop_assert_eq!(series.measurement.as_ref(), m);
            let got: Vec<(String, String)> = series.tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            let want: Vec<(String, String)> = tag_set.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            prop_assert_eq!(got, want);
            prop_assert_eq!(ts, timestamp);
            prop_assert_eq!(fields.len(), field_set.len());
            for (f, (k, v)) in fields.iter().zip(&field_set) {
                prop_assert_eq!(f.key.as_ref(), k.as_str());
                match (v, &f.value) {
                    (GenValue::Float(a), FieldValue::Float(b)) => prop_assert_eq!(a.to_bits(), b.to_bits()),
                    (GenValue::Int(a), FieldValue::Integer(b)) => prop_assert_eq!(a, b),
                    (GenValue::UInt(a), FieldValue::UInteger(b)) => prop_assert_eq!(a, b),
                    (GenValue::Bool(a), FieldValue::Boolean(b)) => prop_assert_eq!(a, b),
                    (GenValue::Str(a), FieldValue::String(b)) => prop_assert_eq!(a.as_str(), b.as_ref()),
                    (a, b) => prop_assert!(false, "{:?} parsed as {:?}", a, b),
                }
            }
        }
    }

    #[test]
    fn arbitrary_bodies_never_panic(body in "[ -~\t\r\n\\\\é\u{1}]{0,80}") {
        let _ = parse_lines(&body);
    }
}

#[test]
fn precisions_and_influxdb_time_range() {
    use sluice_lineproto::{MAX_NANOS, MIN_NANOS, Precision};
    assert_eq!(Precision::parse("n"), Some(Precision::Ns));
    assert_eq!(Precision::parse("u"), Some(Precision::Us));
    assert_eq!(Precision::parse("h"), None);
    assert_eq!(Precision::Ns.to_millis(1_999_999), Some(1));
    assert_eq!(Precision::Ns.to_millis(-1), Some(-1));
    assert_eq!(
        Precision::S.to_millis(1_700_000_000),
        Some(1_700_000_000_000)
    );
    assert_eq!(Precision::Ns.to_nanos(i64::MIN), None);
    assert_eq!(Precision::Ns.to_nanos(i64::MIN + 1), None);
    assert_eq!(Precision::Ns.to_nanos(MIN_NANOS), Some(MIN_NANOS));
    assert_eq!(Precision::Ns.to_nanos(MAX_NANOS), Some(MAX_NANOS));
    assert_eq!(Precision::Ns.to_nanos(i64::MAX), None);
    assert_eq!(
        Precision::S.to_nanos(9_223_372_036),
        Some(9_223_372_036_000_000_000)
    );
    assert_eq!(Precision::S.to_nanos(9_223_372_037), None);
    assert_eq!(
        Precision::Us.to_nanos(-9_223_372_036_854_775),
        Some(-9_223_372_036_854_775_000)
    );
}

/// Duplicate tag keys are found in `n log n`: a line of 100,000 tags parses at once (the
/// pairwise check would take billions of comparisons), and a duplicate among them is named
/// where it is.
#[test]
fn many_tags_and_a_duplicate_among_them() {
    use std::fmt::Write as _;
    let mut line = String::from("m");
    for i in 0..100_000 {
        write!(line, ",k{i}=v").unwrap();
    }
    let (_, tags, _, _) = one(&format!("{line} v=1"));
    assert_eq!(tags.len(), 100_000);
    let e = error(&format!("{line},k5=x v=1"));
    assert!(e.reason.contains("\"k5\""), "{e}");
    assert_eq!(e.column, line.len() + 2);
}
