//! What the demo's agents say and do: a seeded generator of agent-like content (prompts,
//! tool calls with file contents and build logs, answers), and the JSON it is written as.

use std::time::{SystemTime, UNIX_EPOCH};

use annals::RawEntry;
use serde_json::value::RawValue;

/// A JSON object whose keys keep the order written here (`json!` sorts them), as an agent
/// runtime would write it: `obj!({"type": "user", "text": text})`. Values may be anything
/// `Serialize`, nested `obj!`s included.
macro_rules! obj {
    ({ $($key:literal : $value:expr),* $(,)? }) => {
        $crate::cmd::demo::script::ordered(&[$(($key, serde_json::to_string(&$value).unwrap_or_else(|_| "null".into()))),*])
    };
}

/// Cuts `text` to at most `max` bytes on a character boundary.
pub fn fit(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

/// JSON text of one entry, keys in the order they were written.
pub type Json = Box<RawValue>;

pub fn ordered(fields: &[(&str, String)]) -> Json {
    let mut text = String::from("{");
    for (i, (key, value)) in fields.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push_str(&serde_json::to_string(key).unwrap_or_default());
        text.push(':');
        text.push_str(value);
    }
    text.push('}');
    // Keys are string literals and values come from serde_json: always one JSON object.
    RawValue::from_string(text).unwrap_or_else(|_| Box::<RawValue>::default())
}

pub fn raw_entries(entries: &[Json]) -> annals::Result<Vec<RawEntry>> {
    entries
        .iter()
        .map(|e| RawEntry::from_json(e.get()))
        .collect()
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

pub fn system_prompt() -> Json {
    obj!({"type": "system", "ts": now_ms(),
        "text": "You are a careful coding agent working in a large repository. Use the tools to \
                 read before you write, run the tests after every change, and explain what you \
                 did in plain words.",
        "tools": ["read_file", "write_file", "run_command", "search"]})
}

/// splitmix64: small, fast, good enough to vary demo content; no dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn pick(&mut self, items: &[&'static str]) -> &'static str {
        let i = usize::try_from(self.below(items.len() as u64)).unwrap_or(0);
        items.get(i).copied().unwrap_or_default()
    }
}

impl Rng {
    /// A tool call's name, arguments and output, as a coding agent's tools produce them.
    pub fn tool_use(&mut self, file: &str) -> (&'static str, Json, String) {
        // Mostly short outputs, and one in ten a whole file or a long build log (8-256 KiB):
        // too long for a line, so annals keeps it as a blob.
        let budget = if self.chance(10) {
            8192 + self.below(248 << 10)
        } else {
            100 + self.below(2900)
        };
        let budget = usize::try_from(budget).unwrap_or(1000);
        match self.below(3) {
            0 => {
                let start = 1 + self.below(200);
                let first = self.below(CODE.len() as u64);
                let mut text = String::new();
                let mut n = start;
                // Consecutive lines of the snippet pool, so it reads like a file.
                while text.len() < budget {
                    let line = CODE
                        .iter()
                        .cycle()
                        .nth(usize::try_from(first + n - start).unwrap_or(0))
                        .copied()
                        .unwrap_or_default();
                    text.push_str(&format!("{n:>5}  {line}\n"));
                    n += 1;
                }
                (
                    "read_file",
                    obj!({"path": file, "offset": start}),
                    fit(text, budget),
                )
            }
            1 => {
                let cmd = self.pick(COMMANDS).replace("{file}", file);
                let mut text = format!("$ {cmd}\n");
                let mut failed = false;
                while text.len() < budget {
                    let test = self.pick(TESTS);
                    if self.chance(8) {
                        failed = true;
                        text.push_str(&format!("test {test} ... FAILED\n"));
                    } else {
                        text.push_str(&format!("test {test} ... ok\n"));
                    }
                }
                if failed {
                    text.push_str("error: test failed, to rerun pass `--test integration`\n");
                }
                (
                    "run_command",
                    obj!({"cmd": cmd, "timeout_s": 120}),
                    fit(text, budget),
                )
            }
            _ if self.chance(25) && budget < 8192 => {
                let query = self.pick(QUERIES);
                let mut text = String::new();
                while text.len() < budget {
                    text.push_str(&format!(
                        "{}:{}: {}\n",
                        self.pick(FILES),
                        1 + self.below(400),
                        self.pick(CODE)
                    ));
                }
                ("search", obj!({"query": query}), fit(text, budget))
            }
            _ => {
                let lines = 2 + self.below(12);
                let content: Vec<&str> = (0..lines).map(|_| self.pick(CODE)).collect();
                let content = fit(content.join("\n"), budget);
                let written = content.len();
                (
                    "write_file",
                    obj!({"path": file, "content": content}),
                    format!("wrote {written} bytes to {file}"),
                )
            }
        }
    }

    /// A few sentences of an assistant's answer.
    pub fn prose(&mut self, sentences: u64) -> String {
        let parts: Vec<&str> = (0..sentences).map(|_| self.pick(SENTENCES)).collect();
        parts.join(" ")
    }
}

pub const FILES: &[&str] = &[
    "src/server/routes.rs",
    "src/db/pool.rs",
    "tests/integration/login.rs",
    "src/agent/planner.py",
    "web/src/components/Chat.tsx",
    "migrations/0042_add_session_index.sql",
    "src/search/ranking.rs",
    "deploy/helm/values.yaml",
];

pub const PROMPTS: &[&str] = &[
    "The integration test in {file} fails on CI but passes locally. Can you find out why?",
    "Refactor {file} so that the connection pool is created once at startup, not per request.",
    "Add retries with exponential backoff and jitter to the HTTP client used in {file}.",
    "p99 latency of /search went up 40% after yesterday's deploy. Start with {file} and find the cause.",
    "Write a migration that adds an index on sessions(user_id, created_at), and update {file} to use it.",
    "The agent loops forever when a tool returns an empty list. Fix it in {file} and add a test.",
    "Add structured logging (request id, user id, latency) to {file} without changing behaviour.",
    "Summarize what changed in {file} over the last week and flag anything risky.",
];

pub const FOLLOW_UPS: &[&str] = &[
    "Thanks. Can you also run the full test suite?",
    "That looks wrong: the timeout should be configurable. Please change {file} accordingly.",
    "Good. Now write a short summary I can paste into the pull request.",
    "Does this also handle the case where the database is read-only?",
    "Please double-check {file} for other callers of that function.",
];

pub const EDITS: &[&str] = &[
    "(Edit: keep the public API unchanged and do not touch the tests.)",
    "(Edit: I meant the staging environment, not production.)",
    "(Edit: use the existing retry helper instead of writing a new one.)",
];

pub const SENTENCES: &[&str] = &[
    "I read the file and the failing test first.",
    "The pool is created inside the request handler, so every request pays for a new TLS handshake.",
    "Locally the test passes because the fixture database is warm; on CI it starts cold and the 2 s timeout is too short.",
    "I moved the construction into `main` and pass the pool down through the application state.",
    "All 214 tests pass, including the two that were flaky before.",
    "There is one more caller in the admin routes that still builds its own client; I left it alone for now.",
    "The empty-list case fell through to the retry branch, which retried forever without a budget.",
    "I added a test that returns an empty list from the mock tool and asserts that the agent stops after one attempt.",
    "The index is created concurrently so that the migration does not lock the table in production.",
    "Latency went up because the ranking step now loads every candidate's full document instead of its summary.",
    "Reverting that line brings p99 back to 180 ms on the benchmark dataset.",
    "Let me know if you want me to open a pull request with these changes.",
    "I could not reproduce the failure with the seed from the CI log, so I ran the test 200 times in a loop.",
    "One run failed with a connection reset, which points at the server closing idle connections after 30 s.",
];

pub const CODE: &[&str] = &[
    "let pool = Pool::builder().max_size(16).build(manager)?;",
    "async fn handle(req: Request, state: State<App>) -> Result<Response> {",
    "    let user = state.sessions.lookup(&req.token).await?;",
    "    tracing::info!(request_id = %req.id, latency_ms = elapsed, \"done\");",
    "}",
    "def plan(self, goal: str, tools: list[Tool]) -> list[Step]:",
    "    if not results:",
    "        return self.retry(step, budget=budget - 1)",
    "CREATE INDEX CONCURRENTLY idx_sessions_user_created ON sessions (user_id, created_at);",
    "export function Chat({ messages, onSend }: ChatProps) {",
    "  const [draft, setDraft] = useState(\"\");",
    "    assert_eq!(resp.status(), StatusCode::OK, \"body: {body}\");",
    "timeout: 2s  # TODO: make configurable",
    "#[tokio::test(flavor = \"multi_thread\")]",
];

pub const COMMANDS: &[&str] = &[
    "cargo test --test integration -- login",
    "pytest -x tests/test_planner.py",
    "git log --oneline -n 20 -- {file}",
    "cargo bench --bench search -- ranking",
];

pub const TESTS: &[&str] = &[
    "login::rejects_expired_token",
    "login::refreshes_session_cookie",
    "pool::reuses_connections_across_requests",
    "planner::stops_on_empty_tool_result",
    "search::ranks_exact_title_first",
    "migrations::apply_cleanly_on_empty_db",
];

pub const QUERIES: &[&str] = &["Pool::builder", "fn retry", "timeout", "sessions.lookup"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_cuts_on_character_boundaries() {
        assert_eq!(fit("héllo".into(), 2), "h");
        assert_eq!(fit("abc".into(), 10), "abc");
    }

    #[test]
    fn most_demo_tool_outputs_fit_a_line_and_some_are_large_enough_for_a_blob() {
        let mut rng = Rng(7);
        let (mut inline, mut large) = (0, 0);
        for _ in 0..400 {
            let (name, args, output) = rng.tool_use("src/db/pool.rs");
            let entry = obj!({"type": "tool_result", "ts": now_ms(), "call_id": "call_0123456789abcdef",
                "name": name, "args": args, "ok": true, "output": output});
            let raw = RawEntry::from_json(entry.get()).unwrap();
            if raw.len() <= annals::MAX_INLINE {
                inline += 1;
            } else {
                assert!(raw.len() < 300 << 10, "{} bytes", raw.len());
                large += 1;
            }
        }
        assert!(inline > 300 && large > 10, "{inline} inline, {large} large");
    }
}
