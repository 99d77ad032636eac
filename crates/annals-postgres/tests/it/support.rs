//! What every test here needs: a store in a fresh schema of the test server.

use annals_postgres::test_server::{fresh_schema, server_for_tests, Server};
use annals_postgres::{PgOptions, PgStore};

/// Drops its schema when dropped (after the store that used it).
pub struct SchemaGuard {
    url: String,
    schema: String,
}

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        if let Ok(mut c) = postgres::Client::connect(&self.url, postgres::NoTls) {
            let _ = c.batch_execute(&format!(
                "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
                self.schema
            ));
        }
    }
}

/// Options for a fresh schema on `server`.
pub fn options(server: &Server) -> PgOptions {
    PgOptions::new(server.url())
        .schema(fresh_schema())
        .pool_size(6)
}

/// A store in a fresh schema, and the guard that drops the schema.
pub fn open(options: PgOptions) -> (PgStore, SchemaGuard) {
    let guard = SchemaGuard {
        url: options.url.clone(),
        schema: options.schema.clone(),
    };
    let store = PgStore::open_with(options).expect("open a PgStore");
    (store, guard)
}

/// The server, or `None` (the test returns: skipped, said once).
pub fn server() -> Option<Server> {
    server_for_tests()
}

/// A plain connection as the superuser, for tests that reach behind the store.
pub fn admin(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls).expect("connect as the test superuser")
}

/// The kind and outcome flag of a backend error, or a panic naming what came instead.
#[track_caller]
pub fn backend_kind<T: std::fmt::Debug>(
    result: annals::Result<T>,
) -> (annals::BackendErrorKind, bool, String) {
    match result {
        Err(e @ annals::Error::Backend { .. }) => {
            let text = e.to_string();
            let annals::Error::Backend {
                kind,
                outcome_unknown,
                ..
            } = e
            else {
                unreachable!()
            };
            (kind, outcome_unknown, text)
        }
        other => panic!("expected a backend error, got {other:?}"),
    }
}

/// JSON entries `{"i": i}` for `range`.
pub fn entries(range: std::ops::Range<u64>) -> Vec<serde_json::Value> {
    range.map(|i| serde_json::json!({ "i": i })).collect()
}

/// A cluster of the test's own, for tests that stop or crash the server (the shared one serves
/// the other tests meanwhile). `None` (skipped, said once) when no server can be started here.
pub fn private_cluster() -> Option<annals_postgres::test_server::TestServer> {
    // Whether the shared one could start says whether this one can (and prints the skip line).
    server()?.local()?;
    Some(
        annals_postgres::test_server::TestServer::start_with(&[("fsync", "off")])
            .expect("start a private cluster"),
    )
}

/// A unique application name, to find the store's backends in `pg_stat_activity`.
pub fn app_name() -> String {
    format!("annals-test-{}", uuid::Uuid::now_v7().simple())
}
