//! `store_ops`: sequences of operations on an `FsStore` in a temporary directory, with a
//! `MemStore` as the model, plus damage injected into the files behind the store's back.
//!
//! While a segment is undamaged the two stores must agree on everything (entries, tips, errors,
//! listings). Torn tails (a partial line without a newline, or the last line cut short) are
//! not damage: the store must go on exactly like the model, minus the torn entry. Real damage
//! (a flipped byte, garbage that cannot be a torn line) makes the segment *damaged* until a
//! verify finds it clean again (after a truncate, a repair, or an append that removed a
//! garbage tail); meanwhile the file store may refuse with a corruption error, but every entry
//! it does return must be the model's entry at that sequence number.
//!
//! Inputs are decoded with a small hand-written format (see [`decode`] and [`encode`]) rather
//! than `arbitrary`, so that the seed corpus can be written from readable op lists.
//!
//! - `wire`: the operations and their byte format.
//! - `harness`: the two stores and the model, and the operations run on all of them.
//! - `damage`: bytes broken behind the store's back (flips, torn writes, cut lines, garbage,
//!   damaged blobs).
//! - `checks`: after every step, everything the file store shows against the model.

mod checks;
mod damage;
mod harness;
mod wire;

use std::fs;

use self::harness::Harness;
pub use self::wire::{decode, encode, Entry, Op, MAX_BATCH, MAX_ENTRY, MAX_OPS};

/// Runs the operations `data` decodes to; panics on any disagreement.
pub fn run(data: &[u8]) {
    let mut h = Harness::new();
    let trace = std::env::var_os("ANNALS_FUZZ_TRACE").is_some();
    for op in decode(data) {
        if trace {
            eprintln!("{op:?}");
        }
        h.apply(&op);
        if trace {
            for session in h.sessions {
                let root = h.fs.root().join(session.to_string()).join("blobs");
                for shard in fs::read_dir(root).into_iter().flatten().flatten() {
                    for blob in fs::read_dir(shard.path()).into_iter().flatten().flatten() {
                        eprintln!("  blob {}", blob.file_name().to_string_lossy());
                    }
                }
            }
            for s in &h.segs {
                let bytes = fs::read(h.fs.segment_path(s.session, s.id)).unwrap_or_default();
                eprintln!("  {s:?}\n{}", String::from_utf8_lossy(&bytes));
            }
        }
    }
    h.check_all();
}
