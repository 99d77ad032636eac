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
