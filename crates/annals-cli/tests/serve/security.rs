//! Who may read: the Host and Origin checks against DNS rebinding and other sites, reads only,
//! the token, and the headers every answer carries.

use annals::{SegmentId, SessionId, StoreExt};
use std::process::Command;

use crate::support::http;
use crate::support::stores;
use crate::Fixture;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
    connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; \
    require-trusted-types-for 'script'; trusted-types 'none'";

fn one_session(fx: &Fixture) -> (SessionId, SegmentId) {
    let (s, g) = (SessionId::new(), SegmentId::new());
    fx.store.create(s, g, &stores::messages(0..3)).unwrap();
    (s, g)
}

#[test]
fn every_answer_carries_a_strict_policy_and_no_sniffing() {
    let fx = Fixture::new();
    let (s, g) = one_session(&fx);
    let server = fx.serve(&[]);
    for path in [
        "/".to_owned(),
        "/assets/app.js".to_owned(),
        "/api/sessions".to_owned(),
        format!("/api/sessions/{s}/segments/{g}/entries"),
        "/api/sessions/bad".to_owned(),
        "/nothing".to_owned(),
    ] {
        let r = server.get(&path);
        assert_eq!(r.header("content-security-policy"), Some(CSP), "{path}");
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(r.header("x-frame-options"), Some("DENY"), "{path}");
        assert_eq!(
            r.header("cross-origin-resource-policy"),
            Some("same-origin"),
            "{path}"
        );
        assert_eq!(r.header("referrer-policy"), Some("no-referrer"), "{path}");
    }
    let refused = server.get_with("/", &[("Host", "evil.example")]);
    assert_eq!(refused.header("content-security-policy"), Some(CSP));
}

#[test]
fn a_rebinding_host_name_is_refused() {
    let fx = Fixture::new();
    one_session(&fx);
    let server = fx.serve(&[]);
    let port = server.addr.port();
    for host in [
        format!("evil.example:{port}"),
        format!("127.0.0.1.evil.example:{port}"),
        format!("127.0.0.1:{}", port.wrapping_add(1)),
        "evil.example".to_owned(),
    ] {
        let r = server.get_with("/api/sessions", &[("Host", &host)]);
        assert_eq!(r.status, 403, "{host}");
        assert!(
            !r.text().contains("session"),
            "{host}: nothing of the store"
        );
    }
    for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}")] {
        assert_eq!(
            server.get_with("/api/sessions", &[("Host", &host)]).status,
            200
        );
    }
}

#[test]
fn other_sites_may_link_to_pages_but_never_read_the_api() {
    let fx = Fixture::new();
    let (s, _) = one_session(&fx);
    let server = fx.serve(&[]);
    let evil = server.get_with("/api/sessions", &[("Origin", "http://evil.example")]);
    assert_eq!(evil.status, 403);
    let same = format!("http://{}", server.addr);
    assert_eq!(
        server
            .get_with("/api/sessions", &[("Origin", &same)])
            .status,
        200
    );
    let cross = [
        ("Sec-Fetch-Site", "cross-site"),
        ("Sec-Fetch-Mode", "no-cors"),
        ("Sec-Fetch-Dest", "script"),
    ];
    assert_eq!(server.get_with("/api/sessions", &cross).status, 403);
    assert_eq!(server.get_with("/assets/app.js", &cross).status, 403);
    let link = [
        ("Sec-Fetch-Site", "cross-site"),
        ("Sec-Fetch-Mode", "navigate"),
        ("Sec-Fetch-Dest", "document"),
    ];
    assert_eq!(server.get_with(&format!("/s/{s}"), &link).status, 200);
    assert_eq!(server.get_with("/api/sessions", &link).status, 403);
}

#[test]
fn only_reads_are_served() {
    let fx = Fixture::new();
    let (s, g) = one_session(&fx);
    let before = fx.snapshot();
    let server = fx.serve(&[]);
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let path = format!("/api/sessions/{s}/segments/{g}/entries");
        let r = http::request(server.addr, method, &path, &[], Some(b"{}")).unwrap();
        assert_eq!(r.status, 405, "{method}");
        assert_eq!(r.header("allow"), Some("GET, HEAD"));
    }
    drop(server);
    assert_eq!(fx.snapshot(), before);
}

#[test]
fn with_a_token_every_request_must_carry_it() {
    let fx = Fixture::new();
    let (s, g) = one_session(&fx);
    let server = fx.serve(&["--token"]);
    let token = server.token.clone().expect("the URL carries the token");
    assert_eq!(token.len(), 64);
    let api = format!("/api/sessions/{s}/segments/{g}/entries");
    for path in ["/", "/api/sessions", api.as_str(), "/assets/app.js"] {
        let r = server.get(path);
        assert_eq!(r.status, 401, "{path}");
        assert!(!r.text().contains(&s.to_string()));
    }
    assert_eq!(server.get("/?token=wrong").status, 401);
    // The API does not take the token from the URL: only pages swap it for the cookie.
    assert_eq!(
        server.get(&format!("/api/sessions?token={token}")).status,
        401
    );

    let swap = server.get(&format!("/s/{s}?from=1&token={token}"));
    assert_eq!(swap.status, 303);
    assert_eq!(
        swap.header("location"),
        Some(format!("/s/{s}?from=1").as_str())
    );
    let cookie = swap.header("set-cookie").unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap();
    assert_eq!(server.get_with(&api, &[("Cookie", pair)]).status, 200);
    let bearer = format!("Bearer {token}");
    assert_eq!(
        server
            .get_with("/api/sessions", &[("Authorization", &bearer)])
            .status,
        200
    );
    let wrong = format!("{}x", &pair[..pair.len() - 1]);
    assert_eq!(
        server
            .get_with("/api/sessions", &[("Cookie", &wrong)])
            .status,
        401
    );
}

#[test]
fn beyond_loopback_needs_a_flag_and_then_a_token() {
    let fx = Fixture::new();
    one_session(&fx);
    let refused = Command::new(env!("CARGO_BIN_EXE_annals"))
        .arg("--root")
        .arg(fx.root())
        .args(["serve", "--bind", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("--allow-remote"), "{stderr}");

    // Listening on every interface; this test talks to it over loopback only.
    let server = fx.serve(&["--bind", "0.0.0.0:0", "--allow-remote"]);
    assert!(
        server.url.starts_with("http://localhost:"),
        "{}",
        server.url
    );
    let token = server.token.clone().expect("a token beyond loopback");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], server.addr.port()));
    assert_eq!(http::get(addr, "/api/sessions", &[]).status, 401);
    let bearer = format!("Bearer {token}");
    assert_eq!(
        http::get(addr, "/api/sessions", &[("Authorization", &bearer)]).status,
        200
    );
}

#[test]
fn a_store_that_is_not_there_is_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_annals"))
        .arg("--root")
        .arg(dir.path().join("missing"))
        .args(["serve", "--bind", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no annals store here"));
    assert!(
        !dir.path().join("missing").exists(),
        "serve created the root"
    );
}
