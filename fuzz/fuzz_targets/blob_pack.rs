//! Arbitrary bytes as a session's blob pack, under a segment that refers to every blob they
//! name, through every reader, gc and a writer (`annals_fuzz::pack`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| annals_fuzz::pack::check(data));
