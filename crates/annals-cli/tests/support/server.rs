//! `annals serve` as its own process on a free loopback port (the server picks it: port 0),
//! stopped when the value is dropped.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::http::{self, Response};

pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    /// The URL it printed (with `?token=` when it requires one).
    pub url: String,
    /// The token, when it printed one.
    pub token: Option<String>,
}

impl Server {
    /// Serves `root`; `extra` are more `serve` arguments.
    pub fn start(root: &Path, extra: &[&str]) -> Self {
        Self::start_at(&["--root".as_ref(), root.as_os_str()], extra)
    }

    /// Serves the store `--store STORE` names (a database, say).
    pub fn start_store(store: &str, extra: &[&str]) -> Self {
        Self::start_at(&["--store".as_ref(), store.as_ref()], extra)
    }

    fn start_at(location: &[&std::ffi::OsStr], extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_annals"))
            .env_remove("ANNALS_ROOT")
            .env_remove("ANNALS_STORE")
            .env("NO_COLOR", "1")
            .args(location)
            .arg("serve")
            .args(if extra.contains(&"--bind") {
                &[][..]
            } else {
                &["--bind", "127.0.0.1:0"][..]
            })
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("annals serve starts");
        let stdout = child.stdout.take().unwrap();
        // From here on the process is stopped however this function ends, a panic included.
        let mut server = Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            url: String::new(),
            token: None,
        };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let Ok(line) = rx.recv_timeout(Duration::from_secs(120)) else {
            panic!("annals serve printed no URL within 120 s");
        };
        let url = line.trim().to_owned();
        let rest = url.strip_prefix("http://").expect("an http URL");
        let host = rest.split('/').next().unwrap();
        let addr = match host.strip_prefix("localhost:") {
            Some(port) => SocketAddr::from(([127, 0, 0, 1], port.parse().unwrap())),
            None => host.parse().expect("a socket address"),
        };
        server.token = url.split_once("?token=").map(|(_, t)| t.to_owned());
        server.addr = addr;
        server.url = url;
        server
    }

    /// The base URL, without the token.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn get(&self, path: &str) -> Response {
        http::get(self.addr, path, &[])
    }

    pub fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        http::get(self.addr, path, headers)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
