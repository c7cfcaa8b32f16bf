//! InfluxDB line protocol: a parser of our own, outside any transport.
//!
//! # Grammar
//! ```text
//! body        = line *( "\n" line )            ; "\r\n" ends a line too
//! line        = *blank ( comment | point | "" )
//! comment     = "#" *( any but "\n" )
//! point       = series " " *blank fields [ " " *blank timestamp ] *" "
//!               ; a tab may follow the separating space, never replace it
//! series      = measurement *( "," tag-key "=" tag-value )
//! fields      = field *( "," field )
//! field       = field-key "=" value
//! value       = float | integer "i" | unsigned "u" | boolean | string
//! float       = ["-"] ( digits ["." *digit] | "." digits ) [ ("e"|"E") ["+"|"-"] digits ]
//! integer     = ["-"] digits            ; within i64
//! unsigned    = digits                  ; within u64
//! boolean     = "t" | "T" | "true" | "True" | "TRUE" | "f" | "F" | "false" | "False" | "FALSE"
//! string      = DQUOTE *( any but unescaped DQUOTE, newlines included ) DQUOTE
//! timestamp   = ["-"] digits            ; within i64, in the request's precision
//! blank       = " " | "\t"
//! ```
//!
//! Escapes (a backslash before any other character is a literal backslash):
//! - measurement and field keys: `\,` `\=` `\ ` `\"` `\\` (InfluxDB unescapes `=` and `"` in
//!   both, though its documentation names only comma and space for measurements);
//! - tag keys and tag values: `\,` `\=` `\ ` `\\`;
//! - string field values: `\"` `\\`.
//!
//! So `regions=east\\` is the tag value `east\` followed by the end of the series. An
//! unescaped `=` in a tag value (but as its first character, which InfluxDB allows), an empty
//! measurement, key or value, a tag key given twice (`cpu,host=a,host=b`), a control
//! character (Unicode `Cc`) or U+FFFD in a measurement, tag key, tag value or field key, a
//! float that overflows `f64` (`1e400`), `NaN`/`inf`, an integer outside its type, and
//! anything after the timestamp but spaces are errors, each with the line and the
//! column (in characters, 1-based) where the parser stopped. This follows InfluxDB 2.x's
//! behaviour and documentation where it differs from the 1.x parser: `\r\n` line endings,
//! `\\` as an escape, and control characters refused in names (1.x refuses them later, at
//! write time).
//!
//! # Cost
//! Parsing borrows the body: names without escapes are `Cow::Borrowed`, and the series part of
//! a line is only scanned for its end; [`Line::series`] parses and validates it, which a caller
//! does once per distinct series text (metrics agents repeat a few hundred series across
//! thousands of lines). Field values are parsed by hand-written scanners (`str::parse` for the
//! final conversion only).

use std::borrow::Cow;

/// A line that is not valid line protocol.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {reason}")]
pub struct LineError {
    /// 1-based line number in the body.
    pub line: usize,
    /// 1-based column, in characters, within that line.
    pub column: usize,
    pub reason: String,
}

/// A field's value.
#[derive(Clone, Debug, PartialEq)]
pub enum FieldValue<'a> {
    Float(f64),
    Integer(i64),
    UInteger(u64),
    Boolean(bool),
    String(Cow<'a, str>),
}

/// A field: its (unescaped) key and value.
#[derive(Clone, Debug, PartialEq)]
pub struct Field<'a> {
    pub key: Cow<'a, str>,
    pub value: FieldValue<'a>,
}

/// A line's measurement and tags, unescaped, tags in the order written (keys distinct).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Series<'a> {
    pub measurement: Cow<'a, str>,
    pub tags: Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

/// One point line. Its fields are in the vector passed to [`Parser::next_line`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Line<'a> {
    /// 1-based line number in the body.
    pub number: usize,
    /// The measurement and tags as written, escapes included: equal texts are the same
    /// series, so a caller can key a cache by it and call [`Line::series`] on a miss.
    pub series_text: &'a str,
    /// The timestamp as written (no precision applied), if any.
    pub timestamp: Option<i64>,
    /// The body and the byte offsets of the line's start and of `series_text` in it (for
    /// error columns, worked out only when there is an error).
    body: &'a str,
    start: usize,
    series_at: usize,
}

impl<'a> Line<'a> {
    /// Parses and validates the series part: measurement and tags, unescaped.
    pub fn series(&self) -> Result<Series<'a>, LineError> {
        parse_series(self.series_text).map_err(|(at, reason)| LineError {
            line: self.number,
            column: column(self.body, self.start, self.series_at + at),
            reason,
        })
    }
}

/// A streaming parser over a body: [`Parser::next_line`] yields each point line, skipping
/// blank and comment lines. After an error it yields nothing more.
#[derive(Clone, Debug)]
pub struct Parser<'a> {
    text: &'a str,
    pos: usize,
    /// Line number of `pos`.
    line: usize,
    failed: bool,
}

impl<'a> Parser<'a> {
    pub fn new(text: &'a str) -> Parser<'a> {
        Parser {
            text,
            pos: 0,
            line: 1,
            failed: false,
        }
    }

    /// The next point line, its fields in `fields` (cleared first); `None` at the end.
    pub fn next_line(
        &mut self,
        fields: &mut Vec<Field<'a>>,
    ) -> Option<Result<Line<'a>, LineError>> {
        fields.clear();
        if self.failed {
            return None;
        }
        let b = self.text.as_bytes();
        loop {
            if self.pos >= b.len() {
                return None;
            }
            let start = self.pos;
            let mut i = skip_blanks(b, start);
            if at_eol(b, i) || b[i] == b'#' {
                // Blank or comment line.
                i = memchr_newline(b, i).map_or(b.len(), |n| n + 1);
                self.pos = i;
                self.line += 1;
                continue;
            }
            let result = self.point(start, i, fields);
            if result.is_err() {
                self.failed = true;
                fields.clear();
            }
            return Some(result);
        }
    }

    /// Parses the point line starting at `start` (its first non-blank byte at `i`).
    fn point(
        &mut self,
        start: usize,
        mut i: usize,
        fields: &mut Vec<Field<'a>>,
    ) -> Result<Line<'a>, LineError> {
        let text = self.text;
        let b = text.as_bytes();
        let number = self.line;
        // Columns count from the line's start (across the newlines of a string field that
        // spans lines, if any).
        let err = |at: usize, reason: String| LineError {
            line: number,
            column: column(text, start, at),
            reason,
        };
        let mut newlines = 0;

        // Series: up to the first unescaped space.
        let series_at = i;
        loop {
            if at_eol(b, i) {
                return Err(err(i, "missing fields (a space and field=value)".into()));
            }
            match b[i] {
                b'\\' if i + 1 < b.len() && b[i + 1] != b'\n' => i += 2,
                b' ' => break,
                _ => i += 1,
            }
        }
        let series_text = &text[series_at..i];
        i = skip_blanks(b, i);
        if at_eol(b, i) {
            return Err(err(i, "missing fields".into()));
        }

        // Fields.
        loop {
            let key_at = i;
            loop {
                if at_eol(b, i) {
                    return Err(err(i, "missing field value (field=value)".into()));
                }
                match b[i] {
                    b'\\' if i + 1 < b.len() && b[i + 1] != b'\n' => i += 2,
                    b'=' => break,
                    b' ' | b',' => {
                        return Err(err(i, "invalid field format (field=value)".into()));
                    }
                    _ => i += 1,
                }
            }
            if i == key_at {
                return Err(err(i, "missing field key".into()));
            }
            let raw_key = &text[key_at..i];
            if let Some(off) = bad_char(raw_key) {
                return Err(err(
                    key_at + off,
                    "a field key holds a control character".into(),
                ));
            }
            let key = unescape(raw_key, FIELD_KEY_ESCAPES);
            i += 1; // '='
            let value_at = i;
            if at_eol(b, i) || matches!(b[i], b',' | b' ') {
                return Err(err(i, "missing field value".into()));
            }
            let value = if b[i] == b'"' {
                let (value, end) = string_value(text, i).ok_or_else(|| {
                    err(
                        value_at,
                        "unbalanced quotes (a string field is not closed)".into(),
                    )
                })?;
                newlines += value.bytes().filter(|&c| c == b'\n').count();
                i = end;
                FieldValue::String(value)
            } else {
                let end = token_end(b, i);
                let token = &text[i..end];
                let value = scalar(token).map_err(|reason| err(value_at, reason))?;
                i = end;
                value
            };
            fields.push(Field { key, value });
            if at_eol(b, i) {
                return self.finish(
                    line_end_after(b, i),
                    newlines,
                    Line {
                        number,
                        series_text,
                        timestamp: None,
                        body: text,
                        start,
                        series_at,
                    },
                );
            }
            match b[i] {
                b',' => i += 1,
                b' ' => break,
                _ => {
                    return Err(err(
                        i,
                        format!("unexpected {:?} after a field value", char_at(text, i)),
                    ));
                }
            }
        }

        // Timestamp, then only blanks.
        i = skip_blanks(b, i);
        let mut timestamp = None;
        if !at_eol(b, i) {
            let ts_at = i;
            let end = token_end(b, i);
            timestamp = Some(parse_timestamp(&text[i..end]).map_err(|reason| err(ts_at, reason))?);
            // After the timestamp only spaces (a tab there is refused, as in InfluxDB).
            i = end;
            while i < b.len() && b[i] == b' ' {
                i += 1;
            }
            if !at_eol(b, i) {
                return Err(err(i, "unexpected text after the timestamp".into()));
            }
        }
        self.finish(
            line_end_after(b, i),
            newlines,
            Line {
                number,
                series_text,
                timestamp,
                body: text,
                start,
                series_at,
            },
        )
    }

    /// Moves past the line (to `next`): one line, plus the newlines inside its strings.
    fn finish(
        &mut self,
        next: usize,
        newlines: usize,
        line: Line<'a>,
    ) -> Result<Line<'a>, LineError> {
        self.line += 1 + newlines;
        self.pos = next;
        Ok(line)
    }
}

/// A point line with its series parsed: series, fields, timestamp.
pub type ParsedLine<'a> = (Series<'a>, Vec<Field<'a>>, Option<i64>);

/// Every point line of `text` with its series parsed: for tests and tools (servers use
/// [`Parser`] and parse each distinct series once).
pub fn parse_lines(text: &str) -> Result<Vec<ParsedLine<'_>>, LineError> {
    let mut p = Parser::new(text);
    let mut out = Vec::new();
    let mut fields = Vec::new();
    while let Some(line) = p.next_line(&mut fields) {
        let line = line?;
        out.push((line.series()?, std::mem::take(&mut fields), line.timestamp));
    }
    Ok(out)
}

const MEASUREMENT_ESCAPES: &[u8] = b",= \"\\";
const NAME_ESCAPES: &[u8] = b",= \\";
const FIELD_KEY_ESCAPES: &[u8] = b",= \"\\";
const STRING_ESCAPES: &[u8] = b"\"\\";

/// The measurement and tags of a series text; on error, the byte offset in it and why.
fn parse_series(text: &str) -> Result<Series<'_>, (usize, String)> {
    let b = text.as_bytes();
    let end = scan_to(b, 0, b',');
    if end == 0 {
        return Err((0, "missing measurement".into()));
    }
    let raw = &text[..end];
    if let Some(off) = bad_char(raw) {
        return Err((off, "the measurement holds a control character".into()));
    }
    let measurement = unescape(raw, MEASUREMENT_ESCAPES);
    let mut tags: Vec<(Cow<'_, str>, Cow<'_, str>)> = Vec::new();
    // Where each tag key starts, for the error naming a duplicate.
    let mut key_starts: Vec<usize> = Vec::new();
    let mut i = end;
    while i < b.len() {
        i += 1; // ','
        let key_at = i;
        let key_end = scan_to_any(b, i, b"=,");
        if key_end == key_at {
            return Err((key_at, "missing tag key".into()));
        }
        if key_end >= b.len() || b[key_end] == b',' {
            return Err((key_end, "missing tag value (tag=value)".into()));
        }
        let value_at = key_end + 1;
        // A tag value may start with an unescaped '=' (InfluxDB's scanner checks from its
        // second character on).
        let from = if b.get(value_at) == Some(&b'=') {
            value_at + 1
        } else {
            value_at
        };
        let value_end = scan_to_any(b, from, b"=,");
        if value_end < b.len() && b[value_end] == b'=' {
            return Err((
                value_end,
                "invalid tag format: an unescaped '=' in a tag value".into(),
            ));
        }
        if value_end == value_at {
            return Err((value_at, "missing tag value".into()));
        }
        let (raw_key, raw_value) = (&text[key_at..key_end], &text[value_at..value_end]);
        if let Some(off) = bad_char(raw_key) {
            return Err((key_at + off, "a tag key holds a control character".into()));
        }
        if let Some(off) = bad_char(raw_value) {
            return Err((
                value_at + off,
                "a tag value holds a control character".into(),
            ));
        }
        tags.push((
            unescape(raw_key, NAME_ESCAPES),
            unescape(raw_value, NAME_ESCAPES),
        ));
        key_starts.push(key_at);
        i = value_end;
    }
    if let Some((at, key)) = duplicate_key(&tags, &key_starts) {
        return Err((at, format!("duplicate tag key {key:?}")));
    }
    Ok(Series { measurement, tags })
}

/// The first tag key (in order written) that repeats an earlier one: its offset and text.
/// Pairwise for a few tags, sorted beyond: a line of millions of tags costs `n log n`.
fn duplicate_key<'t>(
    tags: &'t [(Cow<'_, str>, Cow<'_, str>)],
    starts: &[usize],
) -> Option<(usize, &'t str)> {
    const PAIRWISE: usize = 16;
    if tags.len() <= PAIRWISE {
        return (1..tags.len())
            .find(|&j| tags[..j].iter().any(|(k, _)| *k == tags[j].0))
            .map(|j| (starts[j], tags[j].0.as_ref()));
    }
    let mut order: Vec<usize> = (0..tags.len()).collect();
    // By key, then position: of equal keys, all but the first written are duplicates.
    order.sort_by(|&a, &b| tags[a].0.cmp(&tags[b].0).then(a.cmp(&b)));
    order
        .windows(2)
        .filter(|w| tags[w[0]].0 == tags[w[1]].0)
        .map(|w| w[1])
        .min()
        .map(|j| (starts[j], tags[j].0.as_ref()))
}

/// Index of the first unescaped `stop` at or after `i` (or the end).
fn scan_to(b: &[u8], i: usize, stop: u8) -> usize {
    scan_to_any(b, i, &[stop])
}

/// Index of the first unescaped byte of `stops` at or after `i` (or the end).
fn scan_to_any(b: &[u8], mut i: usize, stops: &[u8]) -> usize {
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            i += 2;
        } else if stops.contains(&b[i]) {
            return i;
        } else {
            i += 1;
        }
    }
    b.len()
}

/// `raw` with the escapes of `specials` removed (a backslash before anything else stays).
fn unescape<'a>(raw: &'a str, specials: &[u8]) -> Cow<'a, str> {
    if !raw.as_bytes().contains(&b'\\') {
        return Cow::Borrowed(raw);
    }
    let b = raw.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() && specials.contains(&b[i + 1]) {
            out.push(b[i + 1]);
            i += 2;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    // Only backslashes before ASCII bytes were removed: still UTF-8.
    Cow::Owned(
        String::from_utf8(out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
    )
}

/// Byte offset of the first control character or U+FFFD in `s`.
fn bad_char(s: &str) -> Option<usize> {
    if s.bytes().all(|c| (0x20..0x7f).contains(&c)) {
        return None;
    }
    s.char_indices()
        .find(|(_, c)| c.is_control() || *c == char::REPLACEMENT_CHARACTER)
        .map(|(i, _)| i)
}

/// A quoted string value starting at the `"` at `i`: the unescaped value and the index after
/// the closing quote; `None` if it is not closed.
fn string_value(text: &str, i: usize) -> Option<(Cow<'_, str>, usize)> {
    let b = text.as_bytes();
    let mut j = i + 1;
    while j < b.len() {
        match b[j] {
            b'\\' if j + 1 < b.len() => j += 2,
            b'"' => return Some((unescape(&text[i + 1..j], STRING_ESCAPES), j + 1)),
            _ => j += 1,
        }
    }
    None
}

/// The end of a value or timestamp token: the next `,`, space or line end (a tab is part of
/// the token, which makes it invalid, as in InfluxDB).
fn token_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() {
        match b[i] {
            b',' | b' ' | b'\n' => return i,
            b'\r' if at_eol(b, i) => return i,
            _ => i += 1,
        }
    }
    i
}

/// A non-string field value.
fn scalar(t: &str) -> Result<FieldValue<'static>, String> {
    match t {
        "t" | "T" | "true" | "True" | "TRUE" => return Ok(FieldValue::Boolean(true)),
        "f" | "F" | "false" | "False" | "FALSE" => return Ok(FieldValue::Boolean(false)),
        _ => {}
    }
    let invalid = || format!("invalid field value {t:?}");
    if let Some(digits) = t.strip_suffix('i') {
        return match parse_i64(digits) {
            Some(Ok(v)) => Ok(FieldValue::Integer(v)),
            Some(Err(())) => Err(format!("integer {t:?} is out of range")),
            None => Err(invalid()),
        };
    }
    if let Some(digits) = t.strip_suffix('u') {
        if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
            return Err(invalid());
        }
        return digits
            .parse()
            .map(FieldValue::UInteger)
            .map_err(|_| format!("unsigned integer {t:?} is out of range"));
    }
    if !is_float(t) {
        return Err(invalid());
    }
    match t.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(FieldValue::Float(v)),
        _ => Err(format!("float {t:?} is out of range")),
    }
}

/// The float form of the grammar: `["-"] (digits ["." *digit] | "." digits) [exponent]`.
fn is_float(s: &str) -> bool {
    let s = s.strip_prefix('-').unwrap_or(s);
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(e) => (&s[..e], Some(&s[e + 1..])),
        None => (s, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |d: &str| d.bytes().all(|c| c.is_ascii_digit());
    if !digits(int) || !digits(frac) || int.len() + frac.len() == 0 {
        return false;
    }
    exponent.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && digits(e)
    })
}

fn parse_timestamp(t: &str) -> Result<i64, String> {
    match parse_i64(t) {
        Some(Ok(v)) => Ok(v),
        Some(Err(())) => Err(format!("timestamp {t} is out of range (64-bit signed)")),
        None => Err(format!("bad timestamp {t:?} (an integer is expected)")),
    }
}

/// `["-"] digits` as an i64: `None` if not of that form, `Some(Err)` if out of range. One pass.
fn parse_i64(t: &str) -> Option<Result<i64, ()>> {
    let (negative, digits) = match t.as_bytes() {
        [b'-', rest @ ..] => (true, rest),
        all => (false, all),
    };
    if digits.is_empty() {
        return None;
    }
    // Accumulated as a negative number: i64::MIN has no positive counterpart.
    let mut v: i64 = 0;
    let mut overflow = false;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        match v
            .checked_mul(10)
            .and_then(|v| v.checked_sub(i64::from(c - b'0')))
        {
            Some(n) => v = n,
            None => overflow = true,
        }
    }
    if overflow {
        return Some(Err(()));
    }
    if negative {
        Some(Ok(v))
    } else {
        Some(v.checked_neg().ok_or(()))
    }
}

fn skip_blanks(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t') {
        i += 1;
    }
    i
}

/// At the end of a line: the end of the body, `\n`, or a `\r` ending the body or before `\n`.
fn at_eol(b: &[u8], i: usize) -> bool {
    i >= b.len() || b[i] == b'\n' || (b[i] == b'\r' && (i + 1 == b.len() || b[i + 1] == b'\n'))
}

/// Where the next line starts, given the line's end at `i` (see [`at_eol`]).
fn line_end_after(b: &[u8], i: usize) -> usize {
    if i < b.len() && b[i] == b'\r' {
        (i + 2).min(b.len())
    } else {
        (i + 1).min(b.len())
    }
}

fn memchr_newline(b: &[u8], from: usize) -> Option<usize> {
    b[from.min(b.len())..]
        .iter()
        .position(|&c| c == b'\n')
        .map(|p| from + p)
}

/// 1-based column in characters of byte offset `at` of `body`, on the line starting at `start`.
fn column(body: &str, start: usize, at: usize) -> usize {
    let mut at = at.min(body.len());
    while !body.is_char_boundary(at) {
        at -= 1;
    }
    body[start.min(at)..at].chars().count() + 1
}

fn char_at(text: &str, i: usize) -> char {
    text[i..].chars().next().unwrap_or(' ')
}

/// The unit of a request's timestamps (`precision=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    Ns,
    Us,
    Ms,
    S,
}

/// The earliest and latest instants a timestamp may stand for, in nanoseconds: InfluxDB's
/// range (`i64::MIN` and `i64::MIN + 1` are its sentinels, `i64::MAX` too).
pub const MIN_NANOS: i64 = i64::MIN + 2;
pub const MAX_NANOS: i64 = i64::MAX - 1;

impl Precision {
    /// `ns` (also `n`), `us` (also `u`), `ms`, `s`.
    pub fn parse(s: &str) -> Option<Precision> {
        Some(match s {
            "ns" | "n" => Precision::Ns,
            "us" | "u" => Precision::Us,
            "ms" => Precision::Ms,
            "s" => Precision::S,
            _ => return None,
        })
    }

    fn nanos_per_unit(self) -> i64 {
        match self {
            Precision::Ns => 1,
            Precision::Us => 1_000,
            Precision::Ms => 1_000_000,
            Precision::S => 1_000_000_000,
        }
    }

    /// Timestamp `t` in nanoseconds, if within [`MIN_NANOS`]..=[`MAX_NANOS`].
    pub fn to_nanos(self, t: i64) -> Option<i64> {
        t.checked_mul(self.nanos_per_unit())
            .filter(|n| (MIN_NANOS..=MAX_NANOS).contains(n))
    }

    /// Timestamp `t` in milliseconds (rounded down), if within the range of [`Precision::to_nanos`].
    pub fn to_millis(self, t: i64) -> Option<i64> {
        self.to_nanos(t).map(|n| n.div_euclid(1_000_000))
    }
}

/// How Sluice maps a line to points (the server's `/write` and `sluice import` share it): each
/// numeric field becomes one point whose metric is `<measurement>_<field>`, or `<measurement>`
/// for a field named `value`.
pub fn metric_name(measurement: &str, field: &str) -> String {
    if field == "value" {
        measurement.to_string()
    } else {
        format!("{measurement}_{field}")
    }
}

/// The entity of a line's tags, as Sluice maps it: the tag `entity` becomes the entity and
/// leaves the tag set; else the `host` tag's value is the entity and `host` stays a tag (so
/// PromQL still selects it); else the entity is empty.
pub fn take_entity(tags: &mut Vec<(String, String)>) -> String {
    match tags.iter().position(|(k, _)| k == "entity") {
        Some(pos) => tags.remove(pos).1,
        None => tags
            .iter()
            .find(|(k, _)| k == "host")
            .map(|(_, v)| v.clone())
            .unwrap_or_default(),
    }
}

/// A line's series as Sluice stores it: owned strings, the entity taken out of the tags by
/// [`take_entity`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SluiceSeries {
    pub measurement: String,
    pub entity: String,
    pub tags: Vec<(String, String)>,
}

impl Series<'_> {
    /// The series mapped as Sluice stores it (see [`SluiceSeries`]).
    pub fn into_sluice(self) -> SluiceSeries {
        let mut tags: Vec<(String, String)> = self
            .tags
            .into_iter()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let entity = take_entity(&mut tags);
        SluiceSeries {
            measurement: self.measurement.into_owned(),
            entity,
            tags,
        }
    }
}

#[cfg(test)]
mod mapping_tests {
    use super::*;

    #[test]
    fn fields_become_metrics_and_entity_or_host_names_the_entity() {
        assert_eq!(metric_name("cpu", "usage"), "cpu_usage");
        assert_eq!(metric_name("temp", "value"), "temp");
        let mut tags = vec![("entity".into(), "e1".into()), ("dc".into(), "eu".into())];
        assert_eq!(take_entity(&mut tags), "e1");
        assert_eq!(tags, vec![("dc".to_string(), "eu".to_string())]);
        let mut tags = vec![("host".into(), "h1".into())];
        assert_eq!(take_entity(&mut tags), "h1");
        assert_eq!(tags.len(), 1, "host stays a tag");
        assert_eq!(take_entity(&mut Vec::new()), "");
    }
}
