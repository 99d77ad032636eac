//! Fuzzing annals: the checks behind the libFuzzer targets in `fuzz_targets/`, kept in a
//! library so that the stable test suite (`tests/corpus.rs`) replays the checked-in corpus
//! through exactly the same code.
//!
//! - [`line`]: `line_decoder`, the line codec against an independent oracle.
//! - [`image`]: `replay_image`, whole file images through `annals::check_image`.
//! - [`ops`]: `store_ops`, `FsStore` under operations and damage against `MemStore`.
//! - [`pack`]: `blob_pack`, arbitrary bytes as a session's blob pack under every reader,
//!   gc and a writer.
//! - [`seeds`]: the seed corpus, generated.

pub mod image;
pub mod line;
pub mod ops;
pub mod oracle;
pub mod pack;
pub mod seeds;

/// A target's check: panics if the input shows a bug.
pub type Check = fn(&[u8]);

/// The fuzz targets, by name, with their check.
pub const TARGETS: [(&str, Check); 4] = [
    ("line_decoder", line::check),
    ("replay_image", image::check),
    ("store_ops", ops::run),
    ("blob_pack", pack::check),
];
