//! Tests of `PgStore` against a real PostgreSQL server: this binary starts its own throwaway
//! cluster (or uses `ANNALS_PG_URL`), and every test works in a schema of its own, so they run
//! in parallel. Without a server they are skipped with one line saying why (a failure under
//! `CI=true`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    missing_docs,
    reason = "tests report a failure by panicking, at the value or index at fault"
)]

mod conformance;
mod damage;
mod errors;
mod faults;
mod multiprocess;
mod support;
