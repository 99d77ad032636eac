//! The line codec: arbitrary bytes as one line, and `(seq, json)` encoded, decoded and damaged.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| annals_fuzz::line::check(data));
