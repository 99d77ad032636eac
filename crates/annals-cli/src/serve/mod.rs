//! `annals serve`: a local web viewer for a store, read-only.
//!
//! - [`guard`]: who may ask (Host, Origin, fetch metadata, token) and the security headers.
//! - [`routes`]: the URL space and its thin handlers; [`api`]: the blocking work behind them,
//!   over `&dyn Store` only; [`rows`]: what the page shows of one entry.
//! - [`stream`]: answers streamed from a blocking producer through a bounded channel;
//!   [`live`]: the watcher behind a page's server-sent events; [`search`]: `annals grep`'s
//!   search, answered as JSON lines.
//! - [`assets`]: the page itself (HTML, CSS, a script), embedded in the binary.
//!
//! The server runs on a small tokio runtime; every store call runs on its blocking pool, so a
//! slow disk never stalls other requests.

mod api;
mod assets;
mod guard;
mod live;
mod routes;
mod rows;
mod search;
mod stream;

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::Arc;

use clap::Args;

use crate::fail::{Failure, Outcome, CANNOT_RUN, OK};
use crate::target::{Location, Target};

/// The address `serve` listens on unless told otherwise.
pub const DEFAULT_BIND: &str = "127.0.0.1:7311";

/// Most threads calling the store at once: bounds the memory of concurrent requests (each
/// holds at most one entry of the store).
const STORE_THREADS: usize = 16;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address and port to listen on (port 0 picks a free one); a loopback address unless
    /// --allow-remote is given
    #[arg(long, value_name = "ADDR:PORT", default_value = DEFAULT_BIND)]
    pub bind: String,

    /// Allow a --bind address beyond loopback (other machines can connect). Every request
    /// must then carry the access token, printed once in the URL
    #[arg(long)]
    pub allow_remote: bool,

    /// Require the access token on loopback too (other users of this machine can reach a
    /// loopback port)
    #[arg(long)]
    pub token: bool,

    /// Also accept this name in the Host header (a DNS name for this machine); repeatable
    #[arg(long, value_name = "NAME")]
    pub allow_host: Vec<String>,

    /// Open the viewer in the default web browser
    #[arg(long)]
    pub open: bool,
}

pub fn run(location: &Location, args: &ServeArgs) -> Outcome {
    let target = Target::existing(location)?;
    let bind = parse_bind(&args.bind)?;
    if !bind.ip().is_loopback() && !args.allow_remote {
        return Err(Failure::usage(
            format!("{bind} is not a loopback address: other machines could read the store"),
            "add --allow-remote to serve beyond this machine (a token is then required), \
             or bind 127.0.0.1",
        ));
    }
    let token = if args.token || !bind.ip().is_loopback() {
        Some(
            guard::new_token()
                .map_err(|e| Failure::new(CANNOT_RUN, format!("no random token ({e})"), "", ""))?,
        )
    } else {
        None
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(STORE_THREADS)
        .thread_name("annals-serve")
        .enable_all()
        .build()
        .map_err(|e| Failure::new(CANNOT_RUN, format!("cannot start the server ({e})"), "", ""))?;
    runtime.block_on(serve(target, bind, token, args))
}

async fn serve(
    target: Target,
    bind: SocketAddr,
    token: Option<String>,
    args: &ServeArgs,
) -> Outcome {
    let listener = tokio::net::TcpListener::bind(bind).await.map_err(|e| {
        Failure::new(
            CANNOT_RUN,
            format!("cannot listen on {bind} ({e})"),
            "",
            "pick another port with --bind 127.0.0.1:PORT (port 0 picks a free one)",
        )
    })?;
    let bound = listener
        .local_addr()
        .map_err(|e| Failure::new(CANNOT_RUN, format!("cannot listen on {bind} ({e})"), "", ""))?;
    let url = url(bound, token.as_deref());
    let app = Arc::new(routes::App {
        root: target.location().root.clone(),
        store: target.into_shared(),
        guard: guard::Guard::new(bound, &args.allow_host, token),
    });
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{url}");
        let _ = out.flush();
    }
    say!(
        "annals serve: store {} read-only at {url} (Ctrl-C stops)",
        app.root.display()
    );
    if bound.ip().is_unspecified() {
        say!(
            "annals serve: listening on every interface; use this machine's address \
             (or --allow-host NAME for a DNS name)"
        );
    }
    if args.open {
        open_browser(&url);
    }
    axum::serve(listener, routes::router(app))
        .await
        .map_err(|e| Failure::new(CANNOT_RUN, format!("the server stopped ({e})"), "", ""))?;
    Ok(OK)
}

/// `127.0.0.1:7311`, `[::1]:7311`, `localhost:7311`, or a bare port (on 127.0.0.1).
fn parse_bind(text: &str) -> Result<SocketAddr, Failure> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    if let Some(port) = text.strip_prefix("localhost:") {
        if let Ok(port) = port.parse::<u16>() {
            return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
        }
    }
    text.parse().map_err(|_| {
        Failure::usage(
            format!("--bind {text:?} is not an address and port"),
            "give an IP address and a port, such as 127.0.0.1:7311",
        )
    })
}

/// The URL to open: loopback names as `127.0.0.1`, every interface as `localhost`.
fn url(bound: SocketAddr, token: Option<&str>) -> String {
    let host = match bound.ip() {
        ip if ip.is_unspecified() => "localhost".to_owned(),
        IpAddr::V6(ip) => format!("[{ip}]"),
        IpAddr::V4(ip) => ip.to_string(),
    };
    let query = token
        .map(|t| format!("?{}={t}", guard::TOKEN_PARAM))
        .unwrap_or_default();
    format!("http://{host}:{}/{query}", bound.port())
}

fn open_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    let spawned = Command::new(opener)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    if let Err(e) = spawned {
        say!("annals serve: could not start {opener} ({e}): open the URL yourself");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_addresses_parse() {
        assert_eq!(
            parse_bind("8080").unwrap(),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert_eq!(
            parse_bind("localhost:0").unwrap(),
            "127.0.0.1:0".parse().unwrap()
        );
        assert_eq!(parse_bind("[::1]:9").unwrap(), "[::1]:9".parse().unwrap());
        assert!(parse_bind("example.com:80").is_err());
        assert!(parse_bind("127.0.0.1").is_err());
    }

    #[test]
    fn urls_name_a_reachable_host() {
        assert_eq!(
            url("127.0.0.1:7311".parse().unwrap(), None),
            "http://127.0.0.1:7311/"
        );
        assert_eq!(
            url("[::1]:80".parse().unwrap(), Some("ab")),
            "http://[::1]:80/?token=ab"
        );
        assert_eq!(
            url("0.0.0.0:5".parse().unwrap(), Some("ab")),
            "http://localhost:5/?token=ab"
        );
    }
}
