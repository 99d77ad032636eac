//! Arbitrary bytes as a whole segment file, through `annals::check_image`, strict and tolerant.
//! Run with `-max_len` of a few hundred KiB and `-rss_limit_mb=512` (see .ci/fuzz.sh).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| annals_fuzz::image::check(data));
