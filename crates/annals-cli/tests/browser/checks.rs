//! The browser checks, each a function of the [`World`]: what a person would see and do.

use std::io::ErrorKind;
use std::path::PathBuf;

use annals::{SegmentId, Store, StoreExt};
use serde_json::{json, Value};

use crate::support::server::Server;
use crate::World;

type Check = fn(&World) -> Result<(), String>;

pub const ALL: &[(&str, Check)] = &[
    (
        "session_list_renders_newest_first_with_health",
        session_list,
    ),
    (
        "fork_tree_has_a_node_per_segment_joined_at_fork_points",
        fork_tree,
    ),
    ("opening_an_entry_shows_its_json", entry_json),
    ("a_5_mib_entry_is_cut_with_a_link_to_the_whole", big_entry),
    ("damage_is_shown_where_it_is", damage),
    (
        "a_script_payload_is_shown_as_text_and_never_runs",
        script_payload,
    ),
    ("a_live_append_appears_without_reload", live_append),
    (
        "a_fork_and_a_rewrite_are_announced_and_redrawn",
        live_fork_and_rewrite,
    ),
    ("search_finds_a_known_word_and_links_to_its_entry", search),
    ("the_session_list_filters_by_text", text_filter),
    ("a_request_without_the_token_is_refused", token),
    ("screenshot_of_a_session_page", screenshot),
];

fn ensure(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(what())
    }
}

/// Fails on any console message of level SEVERE (errors, refused scripts, failed loads)
/// since the last look, except those in `allowed`.
fn console_errors(world: &World, allowed: &[&str]) -> Result<(), String> {
    let bad: Vec<String> = world
        .browser
        .logs()?
        .into_iter()
        .filter(|(level, message)| {
            level == "SEVERE" && !allowed.iter().any(|a| message.contains(a))
        })
        .map(|(_, m)| m)
        .collect();
    ensure(bad.is_empty(), || format!("console errors: {bad:#?}"))
}

pub fn no_console_errors(world: &World) -> Result<(), String> {
    console_errors(world, &[])
}

fn session_list(world: &World) -> Result<(), String> {
    let b = &world.browser;
    b.goto(&world.url("/"))?;
    let sessions = world.store.list_sessions().unwrap();
    let rows = b.wait(
        "the session rows",
        "const r = document.querySelectorAll('table.sessions tbody tr'); return r.length >= arguments[0] ? r.length : 0;",
        &[json!(sessions.len())],
    )?;
    ensure(rows == json!(sessions.len()), || {
        format!("{rows} rows for {} sessions", sessions.len())
    })?;
    let first = b.exec(
        "return document.querySelector('table.sessions tbody tr').dataset.session;",
        &[],
    )?;
    ensure(first == json!(sessions[0].to_string()), || {
        format!("first row {first}, newest {}", sessions[0])
    })?;
    let range = b.text_of("#page-range")?;
    ensure(
        range.contains(&format!("of {} sessions", sessions.len())),
        || range.clone(),
    )?;
    // Verify's verdict arrives for every row: the damaged session says so, the others are ok.
    let damaged = world.damaged.0.to_string();
    let verdicts = b.wait(
        "every row's verify verdict",
        "const cells = [...document.querySelectorAll('td.health')];
         if (cells.some(c => c.textContent === '\u{2026}')) return null;
         return cells.map(c => [c.dataset.session, c.textContent]);",
        &[],
    )?;
    for pair in verdicts.as_array().unwrap() {
        let (session, text) = (pair[0].as_str().unwrap(), pair[1].as_str().unwrap());
        if session == damaged {
            ensure(text == "2 problems", || {
                format!("damaged session shows {text:?}")
            })?;
        } else {
            ensure(text.contains("ok"), || format!("{session} shows {text:?}"))?;
        }
    }
    Ok(())
}

fn fork_tree(world: &World) -> Result<(), String> {
    let b = &world.browser;
    let f = &world.forked;
    b.goto(&world.url(&format!("/s/{}", f.session)))?;
    let nodes = b.wait(
        "the fork tree",
        "const n = [...document.querySelectorAll('#forktree a[data-segment]')];
         return n.length ? n.map(a => [a.dataset.segment, a.dataset.parent || null, a.dataset.at || null, a.getAttribute('class') || '']) : null;",
        &[],
    )?;
    let nodes = nodes.as_array().unwrap();
    ensure(nodes.len() == 4, || {
        format!("{} nodes: {nodes:?}", nodes.len())
    })?;
    let node = |id: SegmentId| {
        nodes
            .iter()
            .find(|n| n[0] == json!(id.to_string()))
            .cloned()
            .ok_or_else(|| format!("no node for {id}"))
    };
    ensure(node(f.root)?[1] == Value::Null, || {
        "the root has a parent".into()
    })?;
    for (child, parent, at) in [(f.b, f.root, 4), (f.c, f.b, 6), (f.d, f.root, 8)] {
        let n = node(child)?;
        ensure(
            n[1] == json!(parent.to_string()) && n[2] == json!(at.to_string()),
            || format!("{child}: {n:?}, expected forked from {parent} at {at}"),
        )?;
    }
    // The page follows the newest segment and marks it.
    ensure(node(f.d)?[3].as_str().unwrap().contains("current"), || {
        "the newest is not shown".into()
    })?;
    let label = b.exec(
        "return document.querySelector('#forktree text.newest').textContent;",
        &[],
    )?;
    ensure(
        label.as_str().unwrap().contains(&f.d.to_string()[28..]),
        || format!("newest label {label}"),
    )?;
    // A click opens the segment.
    b.click(&format!("#forktree a[data-segment=\"{}\"] text", f.c))?;
    b.wait(
        "the clicked segment's page",
        "return location.pathname.endsWith(arguments[0]) && document.querySelectorAll('#transcript .row').length === 6;",
        &[json!(f.c.to_string())],
    )?;
    Ok(())
}

fn entry_json(world: &World) -> Result<(), String> {
    let b = &world.browser;
    let f = &world.forked;
    b.goto(&world.url(&format!("/s/{}/{}", f.session, f.root)))?;
    b.click("#e3 .json-toggle")?;
    let json = b.wait(
        "the JSON",
        "const p = document.querySelector('#e3 pre.json'); return p && !p.textContent.startsWith('loading') ? p.textContent : null;",
        &[],
    )?;
    let json = json.as_str().unwrap_or_default();
    ensure(
        json.contains("\"role\": \"assistant\"") && json.contains("\"text\": \"message number 3\""),
        || format!("shown: {json}"),
    )?;
    // A deep link opens the entry, in context, with its JSON.
    b.goto(&world.url(&format!("/s/{}/{}/5", f.session, f.root)))?;
    b.wait(
        "the linked entry, focused, with its JSON",
        "const r = document.querySelector('#e5.focus pre.json'); return r && r.textContent.includes('message number 5');",
        &[],
    )?;
    Ok(())
}

fn big_entry(world: &World) -> Result<(), String> {
    let b = &world.browser;
    let (s, g) = world.big;
    b.goto(&world.url(&format!("/s/{s}/{g}")))?;
    let meta = b.text_of("#e1 .meta")?;
    ensure(meta.contains("5.0 MiB") && meta.contains("blob"), || {
        format!("meta: {meta}")
    })?;
    let href = b.exec(
        "return document.querySelector('#e1 a.whole').getAttribute('href');",
        &[],
    )?;
    ensure(
        href == json!(format!("/api/sessions/{s}/segments/{g}/entries/1")),
        || format!("{href}"),
    )?;
    // Tool calls and results are folded.
    let folded = b.exec("return !document.querySelector('#e1 details').open;", &[])?;
    ensure(folded == json!(true), || {
        "the tool result is not folded".into()
    })?;
    b.click("#e1 .json-toggle")?;
    let shown = b.wait(
        "the cut JSON",
        "const p = document.querySelector('#e1 pre.json'); const note = p && p.nextElementSibling;
         return note && note.textContent.startsWith('Shown') ? [p.textContent.length, note.textContent] : null;",
        &[],
    )?;
    let len = shown[0].as_u64().unwrap();
    ensure((500_000..=524_288).contains(&len), || {
        format!("{len} characters shown")
    })?;
    // Attachments are listed and downloadable.
    let link = b.exec(
        "const a = document.querySelector('ul.attachments a'); return [a.textContent, a.getAttribute('href'), a.hasAttribute('download')];",
        &[],
    )?;
    ensure(
        link[0] == json!("screen shot.png") && link[2] == json!(true),
        || format!("{link}"),
    )?;
    let download = world.server.get(link[1].as_str().unwrap());
    ensure(
        download.status == 200 && download.body == b"\x89PNG not really",
        || format!("download: {}", download.status),
    )?;
    Ok(())
}

fn damage(world: &World) -> Result<(), String> {
    let b = &world.browser;
    let (s, g) = world.damaged;
    b.goto(&world.url(&format!("/s/{s}/{g}")))?;
    let order = b.wait(
        "the transcript with its damage",
        "const t = document.querySelector('#transcript');
         if (!t || !document.querySelector('#torn-tail')) return null;
         return [...t.children].map(c => c.id);",
        &[],
    )?;
    let order: Vec<&str> = order
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    ensure(
        order
            == [
                "e0",
                "e1",
                "e2",
                "line-5",
                "line-6",
                "e4",
                "e5",
                "e6",
                "e7",
                "torn-tail",
            ],
        || format!("transcript order {order:?}"),
    )?;
    let problem = b.text_of("#line-5")?;
    ensure(
        problem.contains("CRC mismatch") && problem.contains(&format!("{s}/{g}.jsonl")),
        || problem.clone(),
    )?;
    let health = b.wait(
        "verify's findings",
        "const h = document.querySelector('#health .problem'); return h ? h.textContent : null;",
        &[],
    )?;
    ensure(health.as_str().unwrap().contains("2 problems"), || {
        format!("{health}")
    })?;
    Ok(())
}

fn script_payload(world: &World) -> Result<(), String> {
    let b = &world.browser;
    let (s, g) = world.hostile;
    b.goto(&world.url(&format!("/s/{s}/{g}")))?;
    let text = b.text_of("#e0 .text")?;
    ensure(
        text.contains("<script>window.__pwned = 1; alert('pwned')</script>"),
        || format!("shown: {text}"),
    )?;
    ensure(text.contains("\u{241b}[31mred"), || {
        "the terminal escape is not made visible".into()
    })?;
    let role = b.text_of("#e1 .badge")?;
    ensure(role == "<img src=x onerror=alert(4)>", || {
        format!("role shown as {role}")
    })?;
    b.text_of("#t0")?;
    // Open the JSON of the tool call too: more of the payload goes into the page.
    b.click("#e0 .json-toggle")?;
    b.wait("the payload's JSON", "const p = document.querySelector('#e0 pre.json'); return p && p.textContent.includes('__pwned');", &[])?;
    b.click("#e2 details summary")?;
    let state = b.exec(
        "return {pwned: typeof window.__pwned, scripts: document.scripts.length,
                 imgs: document.querySelectorAll('main img, #banners img').length,
                 links: [...document.querySelectorAll('a[href^=\"javascript:\"]')].length};",
        &[],
    )?;
    ensure(
        state == json!({"pwned": "undefined", "scripts": 1, "imgs": 0, "links": 0}),
        || format!("page state {state}"),
    )?;
    ensure(b.dialog().is_none(), || {
        format!("a dialog opened: {:?}", b.dialog())
    })?;
    match world.canary.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        Ok((_, from)) => return Err(format!("the page fetched the payload's URL (from {from})")),
        Err(e) => return Err(format!("canary: {e}")),
    }
    no_console_errors(world)
}

fn row_texts(world: &World) -> Result<Vec<(u64, String)>, String> {
    let v = world.browser.exec(
        "return [...document.querySelectorAll('#transcript .row')].map(r => [Number(r.dataset.seq), r.querySelector('.text') ? r.querySelector('.text').textContent : '']);",
        &[],
    )?;
    Ok(v.as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_u64().unwrap(), p[1].as_str().unwrap().to_owned()))
        .collect())
}

fn live_append(world: &World) -> Result<(), String> {
    let b = &world.browser;
    let (s, g) = world.live;
    b.goto(&world.url(&format!("/s/{s}/{g}")))?;
    b.wait(
        "the live stream",
        "const l = document.querySelector('#live'); return l && l.textContent === 'live';",
        &[],
    )?;
    b.exec("window.__kept = 'this page was not reloaded';", &[])?;
    let before = world.store.tip(s, g).unwrap().count;
    world
        .store
        .append_batch(
            s,
            g,
            &[
                json!({"role": "assistant", "text": "appended while you watched"}),
                json!({"role": "user", "text": "and one more"}),
            ],
        )
        .unwrap();
    world
        .store
        .append_trace(s, g, &json!({"event": "model", "ms": 42}))
        .unwrap();
    b.wait(
        "the appended rows",
        "return document.querySelector('#e' + arguments[0]) && document.querySelector('#e' + (arguments[0] + 1)) && document.querySelector('#t0');",
        &[json!(before)],
    )?;
    let rows = row_texts(world)?;
    ensure(
        rows.last() == Some(&(before + 1, "and one more".to_owned())),
        || format!("{rows:?}"),
    )?;
    let kept = b.exec("return window.__kept;", &[])?;
    ensure(kept == json!("this page was not reloaded"), || {
        "the page reloaded".into()
    })?;
    let count = b.text_of("#count")?;
    ensure(count.contains(&format!("{} entries", before + 2)), || {
        count.clone()
    })?;
    Ok(())
}

fn live_fork_and_rewrite(world: &World) -> Result<(), String> {
    let b = &world.browser;
    let (s, g) = world.live;
    // The session's own URL follows its newest segment.
    b.goto(&world.url(&format!("/s/{s}")))?;
    b.wait(
        "the live stream",
        "const l = document.querySelector('#live'); return l && l.textContent === 'live';",
        &[],
    )?;
    b.exec("window.__kept = 'not reloaded';", &[])?;
    let fork = SegmentId::new();
    world.store.fork(s, g, 2, fork).unwrap();
    world
        .store
        .append(
            s,
            fork,
            &json!({"role": "assistant", "text": "after the fork"}),
        )
        .unwrap();
    let banner = b.wait(
        "the fork's announcement",
        "const b = [...document.querySelectorAll('#banners .banner')].find(b => b.textContent.includes('forked')); return b ? b.textContent : null;",
        &[],
    )?;
    ensure(
        banner.as_str().unwrap().contains(&fork.to_string()[28..]),
        || format!("{banner}"),
    )?;
    b.wait(
        "the new segment's transcript",
        "const t = document.querySelector('.head .id'); return t && t.textContent === arguments[0] && document.querySelector('#e2') && document.querySelector('#live').textContent === 'live';",
        &[json!(fork.to_string())],
    )?;
    let rows = row_texts(world)?;
    ensure(rows.len() == 3 && rows[2].1 == "after the fork", || {
        format!("{rows:?}")
    })?;
    let nodes = b.exec(
        "return document.querySelectorAll('#forktree a[data-segment]').length;",
        &[],
    )?;
    ensure(nodes == json!(2), || format!("{nodes} nodes"))?;

    // A rewrite: the page drops what changed and redraws from there.
    world.store.truncate(s, fork, 1).unwrap();
    world
        .store
        .append(s, fork, &json!({"role": "user", "text": "rewritten"}))
        .unwrap();
    b.wait(
        "the rewrite's announcement",
        "return [...document.querySelectorAll('#banners .banner')].some(b => b.textContent.includes('rewritten') && b.textContent.includes('redrawn from entry 1'));",
        &[],
    )?;
    b.wait(
        "the redrawn rows",
        "const r = [...document.querySelectorAll('#transcript .row')]; return r.length === 2 && r[1].textContent.includes('rewritten');",
        &[],
    )?;
    let rows = row_texts(world)?;
    ensure(
        rows == [
            (0, "message number 0".to_owned()),
            (1, "rewritten".to_owned()),
        ],
        || format!("{rows:?}"),
    )?;
    let kept = b.exec("return window.__kept;", &[])?;
    ensure(kept == json!("not reloaded"), || "the page reloaded".into())?;
    Ok(())
}

/// Types into a text box as a user would (WebDriver's element send keys).
fn type_into(world: &World, css: &str, text: &str) -> Result<(), String> {
    world.browser.click(css)?;
    world.browser.keys(css, text)
}

fn search(world: &World) -> Result<(), String> {
    let b = &world.browser;
    let f = &world.forked;
    b.goto(&world.url("/"))?;
    type_into(world, "#search-q", "message number 102")?;
    b.click("#search-form button[type=submit]")?;
    let status = b.wait(
        "the search's end",
        "const s = document.querySelector('#search-status'); return s && !s.textContent.startsWith('Searching') ? s.textContent : null;",
        &[],
    )?;
    ensure(status.as_str().unwrap().starts_with("1 hit in "), || {
        format!("status: {status}")
    })?;
    let hit = b.exec(
        "const h = document.querySelector('.hit'); return [h.dataset.session, h.dataset.seq, h.querySelector('mark').textContent, h.querySelector('a').getAttribute('href')];",
        &[],
    )?;
    ensure(
        hit[0] == json!(f.session.to_string()) && hit[2] == json!("message number 102"),
        || format!("{hit}"),
    )?;
    ensure(
        hit[3] == json!(format!("/s/{}/{}/6", f.session, f.b)),
        || format!("link {}", hit[3]),
    )?;
    b.click(".hit a")?;
    b.wait(
        "the entry the hit links to",
        "const r = document.querySelector('#e6.focus pre.json'); return r && r.textContent.includes('message number 102');",
        &[],
    )?;
    // On a session page the box searches that session only.
    let scoped = b.exec("const c = document.querySelector('#search-form input[name=session]'); return c && c.checked && c.value;", &[])?;
    ensure(scoped == json!(f.session.to_string()), || {
        format!("scope {scoped}")
    })?;
    Ok(())
}

fn text_filter(world: &World) -> Result<(), String> {
    let b = &world.browser;
    b.goto(&world.url("/"))?;
    type_into(
        world,
        "#text-filter input[name=q]",
        "appended while you watched",
    )?;
    b.click("#text-filter button")?;
    let found = b.wait(
        "the matching sessions",
        "const s = document.querySelector('#search-status'); if (!s || s.textContent.startsWith('Searching')) return null;
         return [...document.querySelectorAll('.session-hit a.id')].map(a => a.textContent);",
        &[],
    )?;
    ensure(found == json!([world.live.0.to_string()]), || {
        format!("sessions {found}")
    })?;
    Ok(())
}

fn token(world: &World) -> Result<(), String> {
    let b = &world.browser;
    let server = Server::start(&world.root, &["--token"]);
    let token = server.token.clone().ok_or("no token printed")?;
    b.goto(&server.base())?;
    let refused = b.text_of("body")?;
    ensure(refused.contains("needs its access token"), || {
        format!("without the token: {refused}")
    })?;
    // The refusal itself is the expected console message here.
    console_errors(world, &["401"])?;
    b.goto(&server.url)?;
    b.wait(
        "the sessions, with the token",
        "return document.querySelectorAll('table.sessions tbody tr').length > 0 && !location.search.includes('token');",
        &[],
    )?;
    // The token went into a cookie: the page's own requests carry it; other requests do not.
    let api = server.get("/api/sessions");
    ensure(api.status == 401, || {
        format!("without the token the API said {}", api.status)
    })?;
    let bearer = format!("Bearer {token}");
    ensure(
        server
            .get_with("/api/sessions", &[("Authorization", &bearer)])
            .status
            == 200,
        || "bearer refused".into(),
    )?;
    // Leave no health check in flight against the server about to stop.
    b.goto("about:blank")?;
    Ok(())
}

fn screenshot(world: &World) -> Result<(), String> {
    let b = &world.browser;
    b.goto(&world.url(&format!("/s/{}", world.demo)))?;
    b.wait(
        "a full session page",
        "return document.querySelector('#live') && document.querySelector('#live').textContent === 'live' && document.querySelector('#forktree a') && document.querySelectorAll('#trace .row').length > 0;",
        &[],
    )?;
    // Open one tool result, as a person reading it would.
    b.exec(
        "const d = document.querySelector('#transcript details'); if (d) d.open = true; window.scrollTo(0, 0);",
        &[],
    )?;
    let png = b.screenshot()?;
    ensure(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        || format!("{} bytes", png.len()),
    )?;
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("annals-serve-session.png");
    std::fs::write(&out, &png).map_err(|e| e.to_string())?;
    if let Some(path) = std::env::var_os("ANNALS_SCREENSHOT") {
        std::fs::write(&path, &png).map_err(|e| e.to_string())?;
    }
    Ok(())
}
