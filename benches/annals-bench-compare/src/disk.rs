//! What a contender's files take on disk.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Bytes of a directory tree: `(apparent, allocated)` — the sum of file lengths, and of the
/// blocks the file system allocated (`st_blocks × 512`, which counts preallocated space, whole
/// blocks of small files and directories). Symlinks are not followed.
///
/// # Panics
/// On I/O errors.
#[must_use]
pub fn usage(dir: &Path) -> (u64, u64) {
    let mut apparent = 0;
    let mut allocated = 0;
    for entry in std::fs::read_dir(dir).expect("read directory") {
        let entry = entry.expect("read directory entry");
        let meta = entry.metadata().expect("stat");
        allocated += meta.blocks() * 512;
        if meta.is_dir() {
            let (a, b) = usage(&entry.path());
            apparent += a;
            allocated += b;
        } else if meta.is_file() {
            apparent += meta.len();
        }
    }
    (apparent, allocated)
}
