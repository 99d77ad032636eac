//! Operations and injected damage on an `FsStore` in a temporary directory, against `MemStore`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| annals_fuzz::ops::run(data));
