//! A WebDriver client for the distribution's `chromedriver`, driving headless Chromium: just
//! the commands the browser tests use, over the small HTTP client in `support`.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::http;

/// The W3C key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long a wait lasts before the check fails (a wait ends as soon as its condition holds:
/// the bound only matters on a loaded machine or a failure).
pub const WAIT: Duration = Duration::from_secs(60);
/// How long one WebDriver command may take: starting Chromium (or loading a page) on two cores
/// shared with a parallel build has been seen to take over 30 s.
const COMMAND: Duration = Duration::from_secs(180);

/// Why there is no browser.
pub enum NoBrowser {
    /// Not installed: a skip outside CI.
    Missing(String),
    /// Installed but not working: always a failure.
    Broken(String),
}

pub struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
    _profile: tempfile::TempDir,
}

/// `program` as `$ENV` names it, else on `PATH`; only an existing file counts.
fn find(program: &str, env: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(9515)
}

impl Browser {
    /// Starts chromedriver on a free loopback port and a headless Chromium with a fresh
    /// profile, with the flags this machine needs (no sandbox as root, no background network).
    pub fn start() -> Result<Self, NoBrowser> {
        let chromium = find("chromium", "CHROMIUM")
            .or_else(|| find("chromium-browser", "CHROMIUM"))
            .ok_or_else(|| NoBrowser::Missing("no chromium on PATH".into()))?;
        let chromedriver = find("chromedriver", "CHROMEDRIVER")
            .ok_or_else(|| NoBrowser::Missing("no chromedriver on PATH".into()))?;
        let port = free_port();
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| NoBrowser::Broken(format!("{}: {e}", chromedriver.display())))?;
        let profile = tempfile::tempdir().map_err(|e| NoBrowser::Broken(e.to_string()))?;
        let mut browser = Self {
            driver,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            session: String::new(),
            _profile: profile,
        };
        let deadline = Instant::now() + WAIT;
        loop {
            let ready = http::request(browser.addr, "GET", "/status", &[], None)
                .ok()
                .and_then(|r| serde_json::from_slice::<Value>(&r.body).ok())
                .is_some_and(|v| v["value"]["ready"] == true);
            if ready {
                break;
            }
            if Instant::now() > deadline {
                return Err(NoBrowser::Broken(
                    "chromedriver did not become ready".into(),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            // No crash handler process, which would outlive a Chromium killed mid-start.
            "--disable-breakpad",
            "--disable-crash-reporter",
            "--window-size=1400,1000",
            "--hide-scrollbars",
        ]
        .iter()
        .map(|a| (*a).to_owned())
        .chain([format!(
            "--user-data-dir={}",
            browser._profile.path().display()
        )])
        .collect::<Vec<_>>();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
            "goog:loggingPrefs": {"browser": "ALL"},
            "unhandledPromptBehavior": "ignore",
        }}});
        // Chromium that has not written its DevTools port in chromedriver's minute (a loaded
        // machine starting it cold) is "session not created": a start that failed, not a page
        // that did; it gets two more tries before the tests call the browser broken.
        let mut attempt = 1;
        let created = loop {
            match browser.command("POST", "/session", &caps) {
                Ok(created) => break created,
                Err(e) if attempt < 3 && e.contains("session not created") => {
                    eprintln!("browser start {attempt} failed, trying again: {e}");
                    attempt += 1;
                }
                Err(e) => return Err(NoBrowser::Broken(e)),
            }
        };
        browser.session = created["sessionId"]
            .as_str()
            .ok_or_else(|| NoBrowser::Broken(format!("no session id in {created}")))?
            .to_owned();
        Ok(browser)
    }

    fn command(&self, method: &str, path: &str, body: &Value) -> Result<Value, String> {
        let bytes = serde_json::to_vec(body).unwrap();
        let body = (method == "POST").then_some(bytes.as_slice());
        let r = http::request_waiting(self.addr, method, path, &[], body, COMMAND)
            .map_err(|e| format!("{method} {path}: {e}"))?;
        let v: Value = serde_json::from_slice(&r.body)
            .map_err(|e| format!("{method} {path}: not JSON ({e})"))?;
        if r.status != 200 {
            return Err(format!(
                "{method} {path}: {} {}",
                v["value"]["error"], v["value"]["message"]
            ));
        }
        Ok(v["value"].clone())
    }

    fn session_command(&self, method: &str, path: &str, body: &Value) -> Result<Value, String> {
        self.command(method, &format!("/session/{}{path}", self.session), body)
    }

    pub fn goto(&self, url: &str) -> Result<(), String> {
        self.session_command("POST", "/url", &json!({"url": url}))
            .map(|_| ())
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page.
    pub fn exec(&self, script: &str, args: &[Value]) -> Result<Value, String> {
        self.session_command(
            "POST",
            "/execute/sync",
            &json!({"script": script, "args": args}),
        )
    }

    /// Waits until `script` returns something truthy, and returns it. `what` names the wait
    /// in the failure.
    pub fn wait(&self, what: &str, script: &str, args: &[Value]) -> Result<Value, String> {
        let deadline = Instant::now() + WAIT;
        loop {
            let v = self.exec(script, args)?;
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return Ok(v);
            }
            if Instant::now() > deadline {
                return Err(format!("waited {WAIT:?} for {what}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The text of the first element matching `css`, once there is one.
    pub fn text_of(&self, css: &str) -> Result<String, String> {
        let v = self.wait(
            css,
            "const e = document.querySelector(arguments[0]); return e ? e.textContent || ' ' : null;",
            &[json!(css)],
        )?;
        Ok(v.as_str().unwrap_or_default().to_owned())
    }

    /// Clicks the first element matching `css` as a user would (WebDriver's element click).
    pub fn click(&self, css: &str) -> Result<(), String> {
        self.wait(
            css,
            "return document.querySelector(arguments[0]) !== null;",
            &[json!(css)],
        )?;
        let found = self.session_command(
            "POST",
            "/element",
            &json!({"using": "css selector", "value": css}),
        )?;
        let id = found[ELEMENT]
            .as_str()
            .ok_or_else(|| format!("no element {css}"))?
            .to_owned();
        self.session_command("POST", &format!("/element/{id}/click"), &json!({}))
            .map(|_| ())
    }

    /// Types `text` into the first element matching `css`.
    pub fn keys(&self, css: &str, text: &str) -> Result<(), String> {
        let found = self.session_command(
            "POST",
            "/element",
            &json!({"using": "css selector", "value": css}),
        )?;
        let id = found[ELEMENT]
            .as_str()
            .ok_or_else(|| format!("no element {css}"))?
            .to_owned();
        self.session_command(
            "POST",
            &format!("/element/{id}/value"),
            &json!({"text": text}),
        )
        .map(|_| ())
    }

    /// The open dialog's text (alert, confirm, prompt), if one is open.
    pub fn dialog(&self) -> Option<String> {
        self.session_command("GET", "/alert/text", &json!({}))
            .ok()
            .map(|v| v.as_str().unwrap_or_default().to_owned())
    }

    /// The browser's console and network log since the last call, as `(level, message)`.
    pub fn logs(&self) -> Result<Vec<(String, String)>, String> {
        let v = self.session_command("POST", "/se/log", &json!({"type": "browser"}))?;
        Ok(v.as_array()
            .map(|entries| {
                entries
                    .iter()
                    .map(|e| {
                        (
                            e["level"].as_str().unwrap_or_default().to_owned(),
                            e["message"].as_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// A PNG of the window.
    pub fn screenshot(&self) -> Result<Vec<u8>, String> {
        let v = self.session_command("GET", "/screenshot", &json!({}))?;
        base64(v.as_str().unwrap_or_default())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.command("DELETE", &format!("/session/{}", self.session), &json!({}));
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        // A Chromium that chromedriver was still starting when it was killed (a session
        // request that timed out) outlives it: stop every process of this run's own profile,
        // found by its unique directory, and nothing else.
        let profile = format!("--user-data-dir={}", self._profile.path().display());
        for pid in processes_with_arg(&profile) {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
        }
    }
}

/// The processes whose command line has `arg` as one of its arguments (from /proc).
fn processes_with_arg(arg: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|line| line.split(|b| *b == 0).any(|a| a == arg.as_bytes()))
        })
        .collect()
}

fn base64(text: &str) -> Result<Vec<u8>, String> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
    {
        acc = (acc << 6) | u32::from(value(c).ok_or("bad base64")?);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Ok(out)
}
