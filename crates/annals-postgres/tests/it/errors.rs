//! Opening with a bad URL, a wrong password, a missing database, nothing listening, or a schema
//! from the future: each is refused with an error of its own kind that names the server and
//! never shows the password.

use annals::BackendErrorKind;
use annals_postgres::{PgOptions, PgStore};

use crate::support::{self, backend_kind};

fn open(url: &str) -> annals::Result<PgStore> {
    let mut options = PgOptions::new(url).schema("annals_never_created");
    options.connect_timeout = std::time::Duration::from_secs(3);
    PgStore::open_with(options)
}

#[test]
fn a_wrong_password_is_an_authentication_failure_that_never_shows_the_password() {
    let Some(server) = support::server() else {
        return;
    };
    let Some(local) = server.local() else { return };
    let secret = "not-the-password-8c1f";
    let url = local.url_for(annals_postgres::test_server::USER, secret, "postgres");
    let (kind, unknown, text) = backend_kind(open(&url));
    assert_eq!(kind, BackendErrorKind::Auth, "{text}");
    assert!(!unknown);
    assert!(!text.contains(secret), "{text}");
    assert!(!text.contains(local.password()), "{text}");
    assert!(
        text.contains(&format!("127.0.0.1:{}", local.port())),
        "names the server: {text}"
    );
}

#[test]
fn an_unknown_user_is_an_authentication_failure() {
    let Some(server) = support::server() else {
        return;
    };
    let Some(local) = server.local() else { return };
    let url = local.url_for("nobody_here", "x", "postgres");
    let (kind, _, text) = backend_kind(open(&url));
    assert_eq!(kind, BackendErrorKind::Auth, "{text}");
}

#[test]
fn a_missing_database_is_named_as_such() {
    let Some(server) = support::server() else {
        return;
    };
    let Some(local) = server.local() else { return };
    let url = local.url_for(
        annals_postgres::test_server::USER,
        local.password(),
        "no_such_db",
    );
    let (kind, _, text) = backend_kind(open(&url));
    assert_eq!(kind, BackendErrorKind::MissingDatabase, "{text}");
    assert!(text.contains("no_such_db"), "{text}");
    assert!(!text.contains(local.password()), "{text}");
}

#[test]
fn nothing_listening_is_a_connect_failure() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // The listener is gone: nothing listens there now.
    let url = format!("postgresql://annals:s3cret-pw@127.0.0.1:{port}/postgres");
    let (kind, unknown, text) = backend_kind(open(&url));
    assert_eq!(kind, BackendErrorKind::Connect, "{text}");
    assert!(!unknown);
    assert!(!text.contains("s3cret-pw"), "{text}");
}

#[test]
fn a_malformed_url_is_refused_before_connecting_and_never_echoed_with_its_password() {
    for url in [
        "postgresql://annals:s3cret-pw@127.0.0.1:notaport/postgres",
        "postgresql://annals:s3cret-pw@127.0.0.1/postgres?sslmode=sometimes",
    ] {
        let (kind, _, text) = backend_kind(open(url));
        assert_eq!(kind, BackendErrorKind::Other, "{text}");
        assert!(!text.contains("s3cret-pw"), "{text}");
        assert!(text.contains("***"), "shows the URL redacted: {text}");
    }
    let bad_schema = PgOptions::new("postgresql://u@127.0.0.1/db").schema("Robert'); DROP");
    let (kind, _, text) = backend_kind(PgStore::open_with(bad_schema));
    assert_eq!(kind, BackendErrorKind::Other, "{text}");
}

#[test]
fn a_schema_written_by_a_newer_version_is_refused_and_left_alone() {
    let Some(server) = support::server() else {
        return;
    };
    let (store, _guard) = support::open(support::options(&server));
    let schema = store.schema().to_owned();
    drop(store);
    let mut admin = support::admin(&server.url());
    admin
        .batch_execute(&format!(
            "INSERT INTO \"{schema}\".schema_version VALUES (99, 0, 'the future')"
        ))
        .unwrap();
    let reopened = PgStore::open_with(PgOptions::new(server.url()).schema(schema.clone()));
    let (kind, _, text) = backend_kind(reopened);
    assert_eq!(kind, BackendErrorKind::Schema, "{text}");
    assert!(text.contains("99"), "{text}");
    let versions: i64 = admin
        .query_one(
            &format!("SELECT count(*) FROM \"{schema}\".schema_version"),
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(versions, 2, "the refused open changed the schema");
}

#[test]
fn opening_an_existing_schema_again_keeps_its_data() {
    let Some(server) = support::server() else {
        return;
    };
    let options = support::options(&server);
    let (store, _guard) = support::open(options.clone());
    let (session, segment) = (annals::SessionId::new(), annals::SegmentId::new());
    annals::StoreExt::create(&store, session, segment, &support::entries(0..3)).unwrap();
    drop(store);
    let again = PgStore::open_with(options).unwrap();
    let back: Vec<serde_json::Value> = annals::StoreExt::read(&again, session, segment).unwrap();
    assert_eq!(back, support::entries(0..3));
    assert_eq!(
        annals_postgres::SCHEMA_VERSION,
        1,
        "a new migration needs a test that upgrades a schema of the previous version"
    );
}

#[test]
fn debug_of_a_store_names_the_server_and_not_the_password() {
    let Some(server) = support::server() else {
        return;
    };
    let Some(local) = server.local() else { return };
    let (store, _guard) = support::open(support::options(&server));
    let shown = format!("{store:?}");
    assert!(!shown.contains(local.password()), "{shown}");
    assert!(shown.contains("127.0.0.1"), "{shown}");
}

#[test]
fn a_reader_open_refuses_a_schema_without_a_store_and_creates_nothing() {
    let Some(server) = support::server() else {
        return;
    };
    let options = support::options(&server).create_schema(false);
    let schema = options.schema.clone();
    let (kind, _, text) = backend_kind(PgStore::open_with(options.clone()));
    assert_eq!(kind, BackendErrorKind::MissingDatabase, "{text}");
    assert!(text.contains(&schema), "names the schema: {text}");
    let mut admin = support::admin(&server.url());
    let created = admin
        .query_opt(
            "SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1",
            &[&schema],
        )
        .unwrap();
    assert!(created.is_none(), "the schema {schema} was created");
    // Once a writer made the store, the reader opens it.
    let (_writer, _guard) = support::open(options.clone().create_schema(true));
    PgStore::open_with(options).unwrap();
}
