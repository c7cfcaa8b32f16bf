//! RFC 3339 timestamps for API answers (`2025-12-15T12:30:00Z`) and parameters (the Prometheus
//! API's `time`, `start`, `end`), without a calendar crate:
//! the civil-date arithmetic of `sluice_promql::calendar`.

use sluice_promql::calendar::{civil_from_days, days_from_civil};

/// Formats milliseconds since the Unix epoch as RFC 3339 in UTC with millisecond precision
/// dropped (seconds resolution, like the seed's example).
pub fn rfc3339_from_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let rem = secs.rem_euclid(86_400);
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    let (year, month, d) = civil_from_days(secs.div_euclid(86_400));
    format!("{year:04}-{month:02}-{d:02}T{h:02}:{m:02}:{s:02}Z")
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` into milliseconds since the Unix epoch
/// (fractions beyond milliseconds are truncated); `None` when malformed.
pub fn ms_from_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        (!part.is_empty() && part.bytes().all(|c| c.is_ascii_digit()))
            .then(|| part.parse().ok())
            .flatten()
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut ms = 0;
    if b[i] == b'.' {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
        let frac = &s[start..i.min(start + 3)];
        ms = frac.parse::<i64>().ok()? * 10_i64.pow(3 - frac.len() as u32);
    }
    let offset_min = match &s[i..] {
        "Z" | "z" => 0,
        tz if tz.len() == 6
            && matches!(tz.as_bytes()[0], b'+' | b'-')
            && tz.as_bytes()[3] == b':' =>
        {
            let v = num(i + 1..i + 3)? * 60 + num(i + 4..i + 6)?;
            if tz.starts_with('-') { -v } else { v }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_min * 60;
    Some(secs * 1000 + ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_parses_what_it_formats_and_offsets() {
        for ms in [0, 1_702_643_400_000, 951_782_400_000] {
            assert_eq!(ms_from_rfc3339(&rfc3339_from_ms(ms)), Some(ms));
        }
        assert_eq!(
            ms_from_rfc3339("2023-12-15T12:30:00.5Z"),
            Some(1_702_643_400_500)
        );
        assert_eq!(
            ms_from_rfc3339("2023-12-15T14:30:00.123456+02:00"),
            Some(1_702_643_400_123)
        );
        for bad in [
            "2023-12-15",
            "2023-13-15T12:30:00Z",
            "2023-12-15T12:30:00",
            "x023-12-15T12:30:00Z",
            "2023-12-15T12:30:00.Z",
        ] {
            assert_eq!(ms_from_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn known_instants() {
        assert_eq!(rfc3339_from_ms(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_from_ms(1_702_643_400_000), "2023-12-15T12:30:00Z");
        assert_eq!(rfc3339_from_ms(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_from_ms(1_765_801_800_999), "2025-12-15T12:30:00Z");
    }
}
