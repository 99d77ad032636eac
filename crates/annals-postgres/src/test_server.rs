//! A private, throwaway PostgreSQL cluster for tests and benchmarks (feature `test-server`).
//!
//! [`TestServer::start`] runs `initdb` into a new temporary directory, then starts `postgres` on
//! `127.0.0.1` and a free port, with its Unix socket in that directory, password authentication
//! over TCP, and a random password. `initdb` refuses to run as root, so when the tests run as
//! root the cluster runs as the unprivileged `postgres` user.
//!
//! The cluster is stopped (`pg_ctl stop -m immediate`) and its directory removed by a guardian
//! process that waits for the test process to go away, however it goes: a normal exit, a panic, a
//! `kill -9`. So one cluster per test binary ([`shared`]) needs no destructor, and a crashed test
//! run leaves no server behind.
//!
//! [`server_for_tests`] is what tests call: the shared cluster, or the server named by
//! `ANNALS_PG_URL`, or — when neither is possible — `None` after printing one line saying why the
//! PostgreSQL tests are skipped. Under `CI=true` a missing server is a failure, not a skip.

#![allow(
    clippy::expect_used,
    clippy::panic,
    reason = "test support: a cluster that cannot start is a failed test, said loudly"
)]

use std::fmt;
use std::io::{self, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The database user the cluster is created with (a superuser).
pub const USER: &str = "annals";
/// The database the tests use.
pub const DATABASE: &str = "postgres";

/// A running throwaway cluster.
pub struct TestServer {
    bin: PathBuf,
    dir: PathBuf,
    data: PathBuf,
    port: u16,
    password: String,
    run_as: Option<(u32, u32)>,
    extra_config: Vec<(String, String)>,
    // Held open for the life of the process: when it closes, the guardian stops the cluster.
    _guardian: Mutex<(Child, ChildStdin)>,
}

impl fmt::Debug for TestServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestServer")
            .field("dir", &self.dir)
            .field("port", &self.port)
            .field("run_as", &self.run_as)
            .finish_non_exhaustive()
    }
}

/// Where the server binaries are: `initdb` on `PATH`, else the newest
/// `/usr/lib/postgresql/N/bin` (Debian installs them there, off `PATH`).
///
/// # Errors
/// Why no server can be started here.
pub fn find_binaries() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if is_executable(&dir.join("initdb")) && is_executable(&dir.join("pg_ctl")) {
                return Ok(dir);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            is_executable(&bin.join("initdb")).then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).ok_or_else(|| {
        "initdb is not on PATH nor in /usr/lib/postgresql/*/bin (install the `postgresql` package, or set ANNALS_PG_URL)".to_owned()
    })
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The uid and gid of the `postgres` user, from `/etc/passwd`.
fn postgres_user() -> Result<(u32, u32), String> {
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| format!("/etc/passwd: {e}"))?;
    passwd
        .lines()
        .find_map(|line| {
            let mut f = line.split(':');
            (f.next()? == "postgres").then_some(())?;
            let _password = f.next()?;
            Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
        })
        .ok_or_else(|| {
            "running as root, and there is no `postgres` user to run the server as (initdb refuses root)".to_owned()
        })
}

impl TestServer {
    /// Creates and starts a new cluster.
    ///
    /// # Errors
    /// Why it could not: binaries missing, `initdb` or `pg_ctl start` failing (with its log).
    pub fn start() -> Result<Self, String> {
        Self::start_with(&[])
    }

    /// Creates and starts a new cluster with extra `postgresql.conf` settings.
    ///
    /// # Errors
    /// As [`TestServer::start`].
    pub fn start_with(config: &[(&str, &str)]) -> Result<Self, String> {
        let bin = find_binaries()?;
        let run_as = if rustix::process::geteuid().is_root() {
            Some(postgres_user()?)
        } else {
            None
        };
        // The server user must be able to reach the directory: /tmp is, whatever TMPDIR says.
        let base = if run_as.is_some() {
            PathBuf::from("/tmp")
        } else {
            std::env::temp_dir()
        };
        let dir = tempfile::Builder::new()
            .prefix("annals-pg-")
            .tempdir_in(&base)
            .map_err(|e| format!("temporary directory in {}: {e}", base.display()))?
            .keep();
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .map_err(|e| format!("chown {}: {e}", dir.display()))?;
        }
        let data = dir.join("data");
        let password = format!("pw-{}", uuid::Uuid::now_v7().simple());
        let pwfile = dir.join("pwfile");
        std::fs::write(&pwfile, format!("{password}\n")).map_err(|e| e.to_string())?;
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
        }

        // The guardian first: from here on, whatever happens to this process, the directory
        // (and the server, once started) goes away with it.
        let guardian = spawn_guardian(&bin, &dir, &data, run_as)?;

        let out = command(&bin.join("initdb"), run_as, &dir)
            .arg("-D")
            .arg(&data)
            .args(["-U", USER, "-E", "UTF8", "--locale=C", "--no-sync"])
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .map_err(|e| format!("initdb: {e}"))?;
        check(&out, "initdb")?;
        let _ = std::fs::remove_file(&pwfile);

        let mut server = Self {
            bin,
            dir,
            data,
            port: 0,
            password,
            run_as,
            extra_config: config
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            _guardian: Mutex::new(guardian),
        };
        // A free port can be taken by someone else between our probe and the server's bind:
        // try a few.
        let mut last = String::new();
        for _ in 0..5 {
            server.port = free_port().map_err(|e| format!("free port: {e}"))?;
            match server.pg_ctl_start() {
                Ok(()) => return Ok(server),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn pg_ctl_start(&self) -> Result<(), String> {
        let mut options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c max_connections=300 -c shared_buffers=64MB",
            self.port,
            self.dir.display()
        );
        for (k, v) in &self.extra_config {
            options.push_str(&format!(" -c {k}={v}"));
        }
        let log = self.dir.join("server.log");
        let out = command(&self.bin.join("pg_ctl"), self.run_as, &self.dir)
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&log)
            .args(["-o", &options, "-w", "-t", "60", "start"])
            .output()
            .map_err(|e| format!("pg_ctl start: {e}"))?;
        check(&out, "pg_ctl start").map_err(|e| {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            format!("{e}\nserver log:\n{log}")
        })
    }

    /// Starts the cluster again after [`TestServer::stop_immediate`], on the same port.
    ///
    /// # Errors
    /// `pg_ctl start` failing.
    pub fn restart(&self) -> Result<(), String> {
        self.pg_ctl_start()
    }

    /// Stops the server the way a crash would: `pg_ctl stop -m immediate` (no checkpoint; on
    /// start it recovers from its WAL).
    ///
    /// # Errors
    /// `pg_ctl stop` failing.
    pub fn stop_immediate(&self) -> Result<(), String> {
        let out = command(&self.bin.join("pg_ctl"), self.run_as, &self.dir)
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .output()
            .map_err(|e| format!("pg_ctl stop: {e}"))?;
        check(&out, "pg_ctl stop")
    }

    /// The TCP port on 127.0.0.1.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The superuser's password.
    #[must_use]
    pub fn password(&self) -> &str {
        &self.password
    }

    /// `postgresql://annals:PASSWORD@127.0.0.1:PORT/postgres`.
    #[must_use]
    pub fn url(&self) -> String {
        self.url_for(USER, &self.password, DATABASE)
    }

    /// A URL for this server with another user, password or database (for tests of refusals).
    #[must_use]
    pub fn url_for(&self, user: &str, password: &str, database: &str) -> String {
        format!(
            "postgresql://{user}:{password}@127.0.0.1:{}/{database}",
            self.port
        )
    }

    /// The directory holding the cluster (data, socket, log).
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// A `Command` for a server binary, as the server user when we are root, in `cwd`.
fn command(program: &Path, run_as: Option<(u32, u32)>, cwd: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir(cwd).stdin(Stdio::null());
    // PG* variables of the caller's environment must not steer initdb or pg_ctl.
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_some_and(|k| k.starts_with("PG")) {
            cmd.env_remove(key);
        }
    }
    if let Some((uid, gid)) = run_as {
        cmd.uid(uid).gid(gid).env("HOME", cwd);
    }
    cmd
}

/// A shell that waits for its stdin to close (this process ending, however it ends), then stops
/// the server and removes the cluster's directory.
fn spawn_guardian(
    bin: &Path,
    dir: &Path,
    data: &Path,
    run_as: Option<(u32, u32)>,
) -> Result<(Child, ChildStdin), String> {
    let script =
        r#"cat >/dev/null; "$1" -D "$2" -m immediate -w stop >/dev/null 2>&1; rm -rf "$3""#;
    let mut cmd = command(Path::new("/bin/sh"), run_as, dir);
    let mut child = cmd
        .arg("-c")
        .arg(script)
        .arg("annals-pg-guardian")
        .arg(bin.join("pg_ctl"))
        .arg(data)
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own process group: a Ctrl-C to the test run must not kill it before it cleans up.
        .process_group(0)
        .spawn()
        .map_err(|e| format!("guardian: {e}"))?;
    let stdin = child.stdin.take().ok_or("guardian has no stdin")?;
    Ok((child, stdin))
}

fn check(out: &Output, what: &str) -> Result<(), String> {
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The one cluster of this process, started on first use.
///
/// # Errors
/// Why it could not start (the same answer on every call).
pub fn shared() -> Result<&'static TestServer, String> {
    static SERVER: OnceLock<Result<TestServer, String>> = OnceLock::new();
    // fsync off: this cluster only ever crashes as a process (pg_ctl stop -m immediate), never
    // loses power, and a process crash keeps what the server wrote to the page cache. Commits
    // stay synchronous, so what a test sees acknowledged is what a real server keeps.
    SERVER
        .get_or_init(|| TestServer::start_with(&[("fsync", "off")]))
        .as_ref()
        .map_err(Clone::clone)
}

/// A server to test against.
#[derive(Debug, Clone, Copy)]
pub enum Server {
    /// The cluster this process started.
    Local(&'static TestServer),
    /// The server `ANNALS_PG_URL` names (the URL, leaked once for the process).
    External(&'static str),
}

impl Server {
    /// Its URL.
    #[must_use]
    pub fn url(&self) -> String {
        match self {
            Self::Local(s) => s.url(),
            Self::External(url) => (*url).to_owned(),
        }
    }

    /// The cluster, if this process started it (fault tests need to stop and kill it).
    #[must_use]
    pub fn local(&self) -> Option<&'static TestServer> {
        match self {
            Self::Local(s) => Some(s),
            Self::External(_) => None,
        }
    }
}

/// The server tests run against: `ANNALS_PG_URL` if set, else this process's own cluster. When
/// there is none, prints one line saying the PostgreSQL tests are skipped and why (once per
/// process) and returns `None`.
///
/// # Panics
/// Under `CI=true` when there is no server: CI must run these tests.
#[must_use]
pub fn server_for_tests() -> Option<Server> {
    static ANSWER: OnceLock<Result<Server, String>> = OnceLock::new();
    let answer = ANSWER.get_or_init(|| match std::env::var("ANNALS_PG_URL") {
        Ok(url) if !url.is_empty() => Ok(Server::External(Box::leak(url.into_boxed_str()))),
        _ => shared().map(Server::Local),
    });
    match answer {
        Ok(server) => Some(*server),
        Err(why) => {
            if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
                panic!("CI=true and no PostgreSQL server for the annals-postgres tests: {why}");
            }
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                let first = why.lines().next().unwrap_or_default();
                let _ = writeln!(
                    io::stderr(),
                    "annals-postgres: PostgreSQL tests skipped: {first}"
                );
            });
            None
        }
    }
}

/// A schema name no other test uses: `annals_test_<uuid>`.
#[must_use]
pub fn fresh_schema() -> String {
    format!("annals_test_{}", uuid::Uuid::now_v7().simple())
}

/// Waits until `f` returns `Some`, polling every 10 ms, for at most `limit`.
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
