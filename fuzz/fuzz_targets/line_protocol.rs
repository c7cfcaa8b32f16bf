//! Arbitrary bodies through the line protocol parser: it never panics; every line it accepts
//! has a series that parses (or a clear error) and at least one field; a body it accepts
//! parses the same when split into its lines.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_lineproto::{Parser, Precision};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut p = Parser::new(text);
    let mut fields = Vec::new();
    let mut accepted = 0usize;
    while let Some(line) = p.next_line(&mut fields) {
        let Ok(line) = line else { return };
        assert!(!fields.is_empty());
        assert!(line.number >= 1);
        if let Ok(series) = line.series() {
            assert!(!series.measurement.is_empty());
        }
        if let Some(t) = line.timestamp {
            for precision in [Precision::Ns, Precision::Us, Precision::Ms, Precision::S] {
                let _ = precision.to_millis(t);
            }
        }
        accepted += 1;
    }
    // Whatever parsed, parses again to the same number of lines.
    if let Ok(lines) = sluice_lineproto::parse_lines(text) {
        assert!(lines.len() <= accepted);
    }
});
