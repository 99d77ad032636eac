//! Tests of `PgStore` against a real PostgreSQL server: this binary starts its own throwaway
//! cluster (or uses `ANNALS_PG_URL`), and every test works in a schema of its own, so they run
//! in parallel. Without a server they are skipped with one line saying why (a failure under
//! `CI=true`).

mod conformance;
mod damage;
mod errors;
mod faults;
mod multiprocess;
mod support;
