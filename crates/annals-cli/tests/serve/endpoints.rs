//! Every endpoint: what it answers, with which status and content type.

use annals::{SegmentId, SessionId, Store, StoreExt};
use serde_json::{json, Value};

use crate::support::stores::{self, BIG};
use crate::Fixture;

fn seqs(lines: &[Value]) -> Vec<u64> {
    lines
        .iter()
        .filter(|l| l["kind"] == "entry" || l["kind"] == "trace")
        .map(|l| l["seq"].as_u64().unwrap())
        .collect()
}

#[test]
fn sessions_are_listed_newest_first_in_pages_with_counts() {
    let fx = Fixture::new();
    let mut made = Vec::new();
    for n in [3u64, 1, 2] {
        let (s, g) = (SessionId::new(), SegmentId::new());
        fx.store.create(s, g, &stores::messages(0..n)).unwrap();
        made.push((s, n));
    }
    let server = fx.serve(&[]);
    let page = server.get("/api/sessions?limit=2");
    assert_eq!(page.status, 200);
    assert_eq!(page.header("content-type"), Some("application/json"));
    let page = page.json();
    assert_eq!(page["total"], 3);
    let rows = page["sessions"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["session"], made[2].0.to_string());
    assert_eq!(rows[0]["entries"], 2);
    assert_eq!(rows[0]["segments"], 1);
    assert!(rows[0]["bytes"].as_u64().unwrap() > 0);
    assert!(rows[0]["last_ms"].as_u64().is_some());
    let rest = server.get("/api/sessions?limit=2&offset=2").json();
    assert_eq!(rest["sessions"][0]["session"], made[0].0.to_string());
    assert_eq!(rest["sessions"][0]["entries"], 3);
    let id = made[1].0.to_string();
    let found = server
        .get(&format!("/api/sessions?id={}", &id[id.len() - 10..]))
        .json();
    assert_eq!(found["total"], 1);
    assert_eq!(found["sessions"][0]["session"], id);
    assert_eq!(server.get("/api/sessions?id=%3Cscript%3E").status, 400);
    assert_eq!(server.get("/api/sessions?limit=x").status, 400);
}

#[test]
fn a_session_shows_its_fork_tree_and_attachments() {
    let fx = Fixture::new();
    let f = stores::forked(&fx.store);
    let (big, _) = stores::big(&fx.store);
    let server = fx.serve(&[]);
    let doc = server.get(&format!("/api/sessions/{}", f.session)).json();
    assert_eq!(doc["newest_segment"], f.d.to_string());
    let segments = doc["segments"].as_array().unwrap();
    assert_eq!(segments.len(), 4);
    let find = |id: SegmentId| {
        segments
            .iter()
            .find(|s| s["segment"] == id.to_string())
            .unwrap()
            .clone()
    };
    assert_eq!(find(f.root)["fork"], Value::Null);
    assert_eq!(find(f.root)["entries"], 10);
    assert_eq!(
        find(f.b)["fork"],
        json!({"segment": f.root.to_string(), "at": 4})
    );
    assert_eq!(find(f.b)["entries"], 7);
    assert_eq!(
        find(f.c)["fork"],
        json!({"segment": f.b.to_string(), "at": 6})
    );
    assert_eq!(
        find(f.d)["fork"],
        json!({"segment": f.root.to_string(), "at": 8})
    );
    let doc = server.get(&format!("/api/sessions/{big}")).json();
    let attachments = doc["attachments"].as_array().unwrap();
    assert_eq!(attachments.len(), 1);
    assert_eq!(attachments[0]["type"], "image/png");
    assert_eq!(attachments[0]["label"], "screen shot.png");
    assert_eq!(
        server
            .get(&format!("/api/sessions/{}", SessionId::new()))
            .status,
        404
    );
    assert_eq!(server.get("/api/sessions/not-an-id").status, 400);
}

#[test]
fn entries_stream_as_json_lines_in_ranges() {
    let fx = Fixture::new();
    let (s, g) = (SessionId::new(), SegmentId::new());
    fx.store.create(s, g, &stores::messages(0..10)).unwrap();
    let server = fx.serve(&[]);
    let base = format!("/api/sessions/{s}/segments/{g}/entries");
    let all = server.get(&base);
    assert_eq!(all.status, 200);
    assert_eq!(all.header("content-type"), Some("application/x-ndjson"));
    let lines = all.lines();
    assert_eq!(seqs(&lines), (0..10).collect::<Vec<_>>());
    assert_eq!(lines[1]["role"], "assistant");
    assert_eq!(lines[1]["text"], "message number 1");
    let end = lines.last().unwrap();
    assert_eq!(end["kind"], "end");
    assert_eq!(end["next"], Value::Null);
    assert_eq!(end["tip"], json!({"count": 10, "generation": 0}));
    assert_eq!(end["report"]["problem_count"], 0);

    let range = server.get(&format!("{base}?from=2&to=4")).lines();
    assert_eq!(seqs(&range), [2, 3, 4]);
    let page = server.get(&format!("{base}?from=3&limit=2")).lines();
    assert_eq!(seqs(&page), [3, 4]);
    assert_eq!(page.last().unwrap()["next"], 5);
    let past = server.get(&format!("{base}?from=50")).lines();
    assert!(seqs(&past).is_empty());

    let backwards = server.get(&format!("{base}?from=5&to=2"));
    assert_eq!(backwards.status, 400);
    let why = backwards.json()["error"].as_str().unwrap().to_owned();
    assert!(why.contains("is after --to 2"), "{why}");
    // Times use the CLI's parser; these entries (format version 2) were appended just now.
    let timed = server.get(&format!("{base}?since=10m")).lines();
    assert_eq!(seqs(&timed), (0..10).collect::<Vec<u64>>());
    let bad_time = server.get(&format!("{base}?since=yesterday"));
    assert_eq!(bad_time.status, 400);
    assert!(bad_time.json()["error"]
        .as_str()
        .unwrap()
        .contains("not a time"));
    assert_eq!(server.get(&format!("{base}?from=-1")).status, 400);
    assert_eq!(
        server
            .get(&format!("/api/sessions/{s}/segments/nope/entries"))
            .status,
        400
    );
    let missing = server.get(&format!(
        "/api/sessions/{s}/segments/{}/entries",
        SegmentId::new()
    ));
    assert_eq!(missing.status, 404);
    assert_eq!(missing.header("content-type"), Some("application/json"));
    let no_session = server.get(&format!(
        "/api/sessions/{}/segments/{g}/entries",
        SessionId::new()
    ));
    assert_eq!(no_session.status, 404);
}

#[test]
fn one_entry_comes_whole_as_stored_or_indented() {
    let fx = Fixture::new();
    let (s, g) = stores::big(&fx.store);
    let stored: Vec<Value> = fx.store.read(s, g).unwrap();
    let server = fx.serve(&[]);
    let base = format!("/api/sessions/{s}/segments/{g}/entries");

    let whole = server.get(&format!("{base}/1"));
    assert_eq!(whole.status, 200);
    assert_eq!(whole.header("content-type"), Some("application/json"));
    assert!(whole
        .header("content-security-policy")
        .unwrap()
        .starts_with("sandbox"));
    assert!(whole.body.len() > BIG);
    assert_eq!(whole.json(), stored[1]);

    let pretty = server.get(&format!("{base}/0?format=pretty"));
    assert_eq!(
        pretty.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    let text = pretty.text();
    assert!(text.contains("\n  \"name\": \"run_tests\""), "{text}");
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), stored[0]);

    // The transcript's row for it carries a preview, not the 5 MiB.
    let rows = server.get(&base).lines();
    assert_eq!(rows[1]["len"].as_u64().unwrap(), whole.body.len() as u64);
    assert!(rows[1]["blob"].as_str().unwrap().len() == 64);
    assert_eq!(rows[1]["cut"], true);
    assert!(serde_json::to_string(&rows[1]).unwrap().len() < 8 << 10);

    assert_eq!(server.get(&format!("{base}/3")).status, 404);
    assert_eq!(server.get(&format!("{base}/x")).status, 400);
    assert_eq!(server.get(&format!("{base}/0?format=xml")).status, 400);
}

#[test]
fn damage_is_shown_where_it_is() {
    let fx = Fixture::new();
    let (s, g, path) = stores::damaged(&fx.store);
    let server = fx.serve(&[]);
    let lines = server
        .get(&format!("/api/sessions/{s}/segments/{g}/entries"))
        .lines();
    assert_eq!(seqs(&lines), [0, 1, 2, 4, 5, 6, 7]);
    let report = &lines.last().unwrap()["report"];
    // The bad line, then the gap it leaves in the sequence numbers.
    assert_eq!(report["problem_count"], 2);
    assert_eq!(report["problems"][0]["line"], 5);
    assert_eq!(report["problems"][1]["line"], 6);
    assert!(report["problems"][1]["reason"]
        .as_str()
        .unwrap()
        .contains("entry 3 is missing"));
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(
        report["problems"][0]["offset"],
        stores::line_start(&bytes, 5) as u64
    );
    assert!(report["torn_tail"]["len"].as_u64().unwrap() > 0);
    assert_eq!(
        report["path"],
        format!("{s}/{g}.jsonl"),
        "paths are shown relative to the store's root"
    );
    let verdict = server.get(&format!("/api/sessions/{s}/verify")).json();
    let log = &verdict["segments"][0]["log"];
    assert_eq!(log["problem_count"], 2);
    assert_eq!(log["problems"][0]["line"], 5);
    assert!(log["problems"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("CRC"));
    assert!(log["torn_tail"].is_object());
    assert_eq!(verdict["segments"][0]["trace"]["problem_count"], 0);
    // The damaged entry itself: refused with what is wrong, not "not found".
    let entry = server.get(&format!("/api/sessions/{s}/segments/{g}/entries/3"));
    assert_eq!(entry.status, 422);
}

#[test]
fn traces_stream_beside_their_segment() {
    let fx = Fixture::new();
    let f = stores::forked(&fx.store);
    let server = fx.serve(&[]);
    let lines = server
        .get(&format!(
            "/api/sessions/{}/segments/{}/trace",
            f.session, f.d
        ))
        .lines();
    assert_eq!(seqs(&lines), [0]);
    assert_eq!(lines[0]["kind"], "trace");
    assert_eq!(lines[0]["type"], "conflict_fork");
    let empty = server
        .get(&format!(
            "/api/sessions/{}/segments/{}/trace",
            f.session, f.b
        ))
        .lines();
    assert!(seqs(&empty).is_empty());
}

#[test]
fn attachments_download_as_files() {
    let fx = Fixture::new();
    let (s, _) = stores::big(&fx.store);
    let listed = fx.store.list_attachments(s).unwrap();
    let server = fx.serve(&[]);
    let file = server.get(&format!("/api/sessions/{s}/attachments/{}", listed[0].id));
    assert_eq!(file.status, 200);
    assert_eq!(file.body, b"\x89PNG not really");
    assert_eq!(
        file.header("content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(
        file.header("content-disposition"),
        Some("attachment; filename=\"screenshot.png\"")
    );
    assert!(file
        .header("content-security-policy")
        .unwrap()
        .starts_with("sandbox"));
    let other = annals::BlobId::of(b"nothing");
    assert_eq!(
        server
            .get(&format!("/api/sessions/{s}/attachments/{other}"))
            .status,
        404
    );
    assert_eq!(
        server
            .get(&format!("/api/sessions/{s}/attachments/xyz"))
            .status,
        400
    );
    // An entry's blob is not an attachment.
    let (s2, g2) = stores::big(&fx.store);
    let rows = server
        .get(&format!("/api/sessions/{s2}/segments/{g2}/entries"))
        .lines();
    let blob = rows[1]["blob"].as_str().unwrap().to_owned();
    assert_eq!(
        server
            .get(&format!("/api/sessions/{s2}/attachments/{blob}"))
            .status,
        404
    );
}

#[test]
fn pages_are_one_shell_whose_status_says_what_exists() {
    let fx = Fixture::new();
    let (s, g) = (SessionId::new(), SegmentId::new());
    fx.store.create(s, g, &stores::messages(0..2)).unwrap();
    let server = fx.serve(&[]);
    for (path, status) in [
        ("/".to_owned(), 200),
        ("/search?q=x".to_owned(), 200),
        (format!("/s/{s}"), 200),
        (format!("/s/{s}/{g}"), 200),
        (format!("/s/{s}/{g}/1"), 200),
        (format!("/s/{s}/{g}/one"), 400),
        (format!("/s/{}", SessionId::new()), 404),
        (format!("/s/{s}/{}", SegmentId::new()), 404),
        ("/s/..%2F..%2Fetc".to_owned(), 400),
    ] {
        let page = server.get(&path);
        assert_eq!(page.status, status, "{path}");
        assert_eq!(
            page.header("content-type"),
            Some("text/html; charset=utf-8"),
            "{path}"
        );
        assert!(page.text().contains("/assets/app.js"));
    }
    let missing = server.get("/nothing/here");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.header("content-type"), Some("application/json"));
    for (asset, kind) in [
        ("app.js", "text/javascript; charset=utf-8"),
        ("app.css", "text/css; charset=utf-8"),
        ("icon.svg", "image/svg+xml"),
    ] {
        let a = server.get(&format!("/assets/{asset}"));
        assert_eq!(a.status, 200);
        assert_eq!(a.header("content-type"), Some(kind));
    }
    assert_eq!(server.get("/assets/../Cargo.toml").status, 404);
    assert_eq!(server.get("/assets/secret").status, 404);
    let info = server.get("/api/info").json();
    assert_eq!(info["read_only"], true);
    assert_eq!(info["token_required"], false);
    let head = crate::support::http::request(server.addr, "HEAD", "/", &[], None).unwrap();
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
}

#[test]
fn serving_never_writes_to_the_store() {
    let fx = Fixture::new();
    let f = stores::forked(&fx.store);
    let (ds, dg, _) = stores::damaged(&fx.store);
    let (bs, bg) = stores::big(&fx.store);
    let before = fx.snapshot();
    let server = fx.serve(&[]);
    let paths = [
        "/".to_owned(),
        "/api/sessions".to_owned(),
        format!("/api/sessions/{}", f.session),
        format!("/api/sessions/{}/verify", f.session),
        format!("/api/sessions/{ds}/verify"),
        format!("/api/sessions/{ds}/segments/{dg}/entries"),
        format!("/api/sessions/{ds}/segments/{dg}/trace"),
        format!("/api/sessions/{bs}/segments/{bg}/entries/1"),
        format!("/api/sessions/{bs}/segments/{bg}/entries/1?format=pretty"),
        format!("/s/{}/{}", f.session, f.c),
    ];
    for path in &paths {
        assert!(server.get(path).status < 500, "{path}");
    }
    let events = crate::support::http::Events::open(
        server.addr,
        &format!("/api/sessions/{ds}/segments/{dg}/events?from=0&next=8"),
        &[],
    )
    .unwrap();
    assert_eq!(events.status, 200);
    // Let the watcher look at the segment a few times.
    std::thread::sleep(std::time::Duration::from_millis(600));
    drop(events);
    drop(server);
    assert_eq!(fx.snapshot(), before, "the viewer changed the store");
}

#[test]
fn search_finds_what_grep_finds_and_links_to_it() {
    let fx = Fixture::new();
    let f = stores::forked(&fx.store);
    let (bs, bg) = stores::big(&fx.store);
    let (ds, _, _) = stores::damaged(&fx.store);
    let server = fx.serve(&[]);
    let hits = server.get("/api/search?q=message%20number%207").lines();
    let found: Vec<(String, u64)> = hits
        .iter()
        .filter(|l| l["kind"] == "hit")
        .map(|l| {
            (
                l["session"].as_str().unwrap().to_owned(),
                l["seq"].as_u64().unwrap(),
            )
        })
        .collect();
    // Once in the forked session (entries copied by a fork are found in their parent), once in
    // the damaged one.
    assert_eq!(found.len(), 2, "{hits:?}");
    assert!(found.contains(&(f.session.to_string(), 7)));
    assert!(found.contains(&(ds.to_string(), 7)));
    let hit = hits
        .iter()
        .find(|l| l["session"] == f.session.to_string())
        .unwrap();
    assert_eq!(hit["segment"], f.root.to_string());
    let marked: Vec<&str> = hit["parts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p[1] == true)
        .map(|p| p[0].as_str().unwrap())
        .collect();
    assert_eq!(marked, ["message number 7"]);
    let end = hits.last().unwrap();
    assert_eq!(end["kind"], "end");
    assert_eq!(end["hits"], 2);
    assert_eq!(
        end["damaged_count"], 1,
        "the damaged file is searched around and reported"
    );

    // Inside blobs, case-insensitively by default (smart case), with a regex.
    let blob = server
        .get("/api/search?q=build%20log%20line&limit=1")
        .lines();
    assert_eq!(blob[0]["session"], bs.to_string());
    assert_eq!(blob[0]["from_blob"], true);
    assert_eq!(blob[1]["stopped"], true);
    let upper = server
        .get("/api/search?q=BUILD%20LOG&case=insensitive")
        .lines();
    assert_eq!(upper.len(), 2, "one hit and the end line");
    let sensitive = server.get("/api/search?q=BUILD%20LOG").lines();
    assert_eq!(
        sensitive.len(),
        1,
        "smart case: a capital makes it sensitive"
    );
    let regex = server
        .get(&format!(
            "/api/search?q=message%20number%20%5B89%5D&regex=1&session={}",
            f.session
        ))
        .lines();
    assert_eq!(regex.iter().filter(|l| l["kind"] == "hit").count(), 2);
    let fields = server
        .get(&format!("/api/search?where=type%3Dtool_call&session={bs}"))
        .lines();
    assert_eq!(fields[0]["segment"], bg.to_string());
    assert_eq!(fields[0]["seq"], 0);

    // One line per session, for the session list's text filter.
    let sessions = server
        .get("/api/search?q=message%20number&sessions=1&limit=1")
        .lines();
    assert_eq!(sessions[0]["kind"], "session");
    let first = sessions[0]["session"].as_str().unwrap().to_owned();
    let after = sessions.last().unwrap()["next_after"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(after, first);
    let rest = server
        .get(&format!(
            "/api/search?q=message%20number&sessions=1&after={after}"
        ))
        .lines();
    assert!(rest.iter().all(|l| l["session"] != first.as_str()));
    assert_eq!(rest.iter().filter(|l| l["kind"] == "session").count(), 1);

    for bad in [
        "",
        "?q=(&regex=1",
        "?q=x&since=yesterday",
        "?q=x&from=5&to=2",
        "?q=x&session=nope",
        "?q=x&nonsense=1",
    ] {
        let r = server.get(&format!("/api/search{bad}"));
        assert_eq!(r.status, 400, "{bad}");
        assert!(r.json()["error"].is_string());
    }
}
