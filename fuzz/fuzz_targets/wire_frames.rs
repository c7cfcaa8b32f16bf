//! Feeds arbitrary bytes to the frame splitter and the request decoder: they must never panic,
//! and every decoded request must encode back to a frame that decodes to the same request.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_wire::{decode_request, split_frame};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some((frame, used))) = split_frame(rest, 1 << 16) {
        if let Ok(req) = decode_request(&frame) {
            let mut again = Vec::new();
            req.encode(&mut again);
            let (f2, _) = split_frame(&again, usize::MAX).unwrap().unwrap();
            let back = decode_request(&f2).unwrap();
            // NaN values compare unequal; compare the encodings instead.
            let mut again2 = Vec::new();
            back.encode(&mut again2);
            assert_eq!(again, again2);
        }
        rest = &rest[used..];
    }
});
