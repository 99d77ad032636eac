//! The viewer in front of a PostgreSQL store: the same API, paths shown relative to the
//! server, no password anywhere in what it sends.

use annals::{SegmentId, SessionId, StoreExt};
use annals_postgres::test_server::{fresh_schema, server_for_tests};
use annals_postgres::{PgOptions, PgStore};
use serde_json::json;

use crate::support::server::Server;

#[test]
fn the_viewer_serves_a_postgres_store_without_showing_its_password() {
    let Some(pg) = server_for_tests() else {
        return;
    };
    let schema = fresh_schema();
    let store = PgStore::open_with(PgOptions::new(pg.url()).schema(schema.clone())).unwrap();
    let (session, segment) = (SessionId::new(), SegmentId::new());
    let entries: Vec<_> = (0..5)
        .map(|i| json!({"role": "user", "text": format!("message number {i}")}))
        .collect();
    store.create(session, segment, &entries).unwrap();
    let server = Server::start_store(&format!("{}?schema={schema}", pg.url()), &[]);
    let secret = pg.local().map(|l| l.password().to_owned());
    let pages = [
        "/api/info".to_owned(),
        "/api/sessions".to_owned(),
        format!("/api/sessions/{session}"),
        format!("/api/sessions/{session}/verify"),
        format!("/api/sessions/{session}/segments/{segment}/entries"),
        "/api/search?q=number%203".to_owned(),
    ];
    for page in &pages {
        let response = server.get(page);
        assert_eq!(response.status, 200, "{page}: {}", response.text());
        if let Some(secret) = &secret {
            assert!(
                !response.text().contains(secret.as_str()),
                "{page}: {}",
                response.text()
            );
        }
    }
    assert!(server.get("/api/info").json()["store"]
        .as_str()
        .unwrap()
        .contains(&schema));
    let sessions = server.get("/api/sessions").text();
    assert!(sessions.contains(&session.to_string()), "{sessions}");
    let found = server.get("/api/search?q=number%203").lines();
    assert_eq!(
        found.iter().filter(|l| l["kind"] == "hit").count(),
        1,
        "{found:?}"
    );
    drop(server);
    store.drop_schema().unwrap();
}
