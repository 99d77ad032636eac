//! The public conformance suite (`annals::testing`), unchanged, against `PgStore`.

use annals::testing::Fixture;
use annals::Durability;

use crate::support;

/// A fresh store in a fresh schema, or `None` without a server.
fn fresh(durability: Durability, max_entry_bytes: usize) -> Option<Fixture> {
    let server = support::server()?;
    let mut options = support::options(&server).durability(durability);
    options.max_entry_bytes = max_entry_bytes;
    let (store, guard) = support::open(options);
    Some(Fixture::new(store).keeping(guard))
}

// The filesystem suite exercises the default 64 MiB maximum; here 8 MiB (Sync) and 1 MiB
// (Buffered) keep the oversized entries of a debug build affordable: the code path does not
// depend on the size.
//
// Each test gets its fixture from the expression; without a server the `return` ends the test
// there (skipped, with the one line `server_for_tests` prints).
mod sync {
    annals::conformance_tests!(match super::fresh(annals::Durability::Sync, 8 << 20) {
        Some(f) => f,
        None => return,
    });
}

mod buffered {
    annals::conformance_tests!(match super::fresh(annals::Durability::Buffered, 1 << 20) {
        Some(f) => f,
        None => return,
    });
}
