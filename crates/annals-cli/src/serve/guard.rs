//! Who may talk to the viewer: the checks every request passes before any handler runs, and
//! the headers every response carries. Pure: a request's method, path and headers in, a
//! verdict out, so each rule is tested on its own.
//!
//! - Only `GET` and `HEAD`: the viewer never changes anything.
//! - `Host` must name this server (`localhost`, a loopback address or the address it is bound
//!   to, with its port): a DNS-rebinding page whose name resolves to 127.0.0.1 sends its own
//!   name and is refused.
//! - `Origin`, when sent, must be this server's own origin, and a browser's `Sec-Fetch-Site`
//!   must be `same-origin` (or `none`, typed by the user) except for the navigation that opens
//!   a page (a deep link clicked in a bug report): other sites can link to the viewer, never
//!   read from it.
//! - With a token (always when bound beyond loopback), every request carries it: as the
//!   cookie the first visit sets, or `Authorization: Bearer`. The printed URL holds it as
//!   `?token=`, which is swapped for the cookie and a redirect to the same page without it.

use std::net::{IpAddr, SocketAddr};

/// Name of the query parameter that carries the token in the printed URL.
pub const TOKEN_PARAM: &str = "token";

/// The rules of one running server.
#[derive(Debug, Clone)]
pub struct Guard {
    /// The address the listener is bound to (the real port, after binding port 0).
    bound: SocketAddr,
    /// Extra host names accepted in `Host` (`--allow-host`), lower case.
    extra_hosts: Vec<String>,
    /// The access token, when one is required.
    token: Option<String>,
}

/// What to do with a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Serve it.
    Pass,
    /// The token came in the query string of a page: set it as a cookie and send the browser
    /// to `location` (the same path and query without the token).
    SetCookie { cookie: String, location: String },
    /// Refuse it with this status and a one-line reason.
    Refuse { status: u16, reason: &'static str },
}

/// The headers of a request that the guard reads.
#[derive(Debug, Default, Clone, Copy)]
pub struct Seen<'a> {
    pub host: Option<&'a str>,
    pub origin: Option<&'a str>,
    pub fetch_site: Option<&'a str>,
    pub fetch_mode: Option<&'a str>,
    pub fetch_dest: Option<&'a str>,
    pub authorization: Option<&'a str>,
    pub cookie: Option<&'a str>,
}

impl Guard {
    pub fn new(bound: SocketAddr, extra_hosts: &[String], token: Option<String>) -> Self {
        Self {
            bound,
            extra_hosts: extra_hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
            token,
        }
    }

    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The cookie that carries the token: one per port, since cookies ignore ports and two
    /// viewers may run on one machine.
    pub fn cookie_name(&self) -> String {
        format!("annals-token-{}", self.bound.port())
    }

    /// Decides about one request: its method, path, query string and the headers read.
    /// Pages (see [`is_page`]) are the only requests another site may start, by a link, and
    /// the only place a token in the query string is taken (then swapped for the cookie).
    pub fn check(&self, method: &str, path: &str, query: Option<&str>, seen: &Seen<'_>) -> Verdict {
        if method != "GET" && method != "HEAD" {
            return refuse(405, "this viewer only reads: GET and HEAD only");
        }
        let Some(host) = seen.host else {
            return refuse(400, "no Host header");
        };
        if !self.host_allowed(host) {
            return refuse(
                403,
                "Host is not this server (a page on another name must not read the store)",
            );
        }
        if let Some(origin) = seen.origin {
            if !same_origin(origin, host) {
                return refuse(403, "cross-origin request refused");
            }
        }
        let page = is_page(path);
        if let Some(site) = seen.fetch_site {
            let navigation =
                seen.fetch_mode == Some("navigate") && seen.fetch_dest == Some("document");
            if site != "same-origin" && site != "none" && !(page && navigation) {
                return refuse(403, "cross-site request refused");
            }
        }
        let Some(token) = &self.token else {
            return Verdict::Pass;
        };
        let presented = seen
            .cookie
            .and_then(|c| cookie_value(c, &self.cookie_name()))
            .or_else(|| seen.authorization.and_then(|a| a.strip_prefix("Bearer ")));
        if presented.is_some_and(|p| equal_in_constant_time(p.trim(), token)) {
            return Verdict::Pass;
        }
        if page {
            if let Some(given) = query.and_then(|q| query_value(q, TOKEN_PARAM)) {
                if equal_in_constant_time(&given, token) {
                    let rest = query.map(without_token).unwrap_or_default();
                    let location = if rest.is_empty() {
                        path.to_owned()
                    } else {
                        format!("{path}?{rest}")
                    };
                    return Verdict::SetCookie {
                        cookie: format!(
                            "{}={token}; Path=/; HttpOnly; SameSite=Lax",
                            self.cookie_name()
                        ),
                        location,
                    };
                }
            }
        }
        refuse(
            401,
            "this viewer needs its access token: open the URL `annals serve` printed",
        )
    }

    fn host_allowed(&self, host: &str) -> bool {
        let Some((name, port)) = split_host(host) else {
            return false;
        };
        if port != self.bound.port() {
            return false;
        }
        let name = name.to_ascii_lowercase();
        if name == "localhost" || self.extra_hosts.contains(&name) {
            return true;
        }
        let literal = name.trim_start_matches('[').trim_end_matches(']');
        match literal.parse::<IpAddr>() {
            Ok(ip) => ip.is_loopback() || ip == self.bound.ip() || self.bound.ip().is_unspecified(),
            Err(_) => false,
        }
    }
}

fn refuse(status: u16, reason: &'static str) -> Verdict {
    Verdict::Refuse { status, reason }
}

/// Paths of the HTML pages (everything that is not the API, an asset or a download).
pub fn is_page(path: &str) -> bool {
    path == "/" || path == "/search" || path.starts_with("/s/")
}

/// `name:port` (the port defaults to 80, as HTTP says) → its parts. `None` when malformed.
fn split_host(host: &str) -> Option<(&str, u16)> {
    let host = host.trim();
    if host.is_empty() || host.contains(['/', '@', ' ']) {
        return None;
    }
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let end = rest.find(']')?;
        let name = host.get(..end + 2)?;
        match rest.get(end + 1..)? {
            "" => (name, None),
            p => (name, Some(p.strip_prefix(':')?)),
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        }
    };
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => 80,
    };
    Some((name, port))
}

/// Whether `origin` (`http://host:port`) is the origin of a page served under `host`.
fn same_origin(origin: &str, host: &str) -> bool {
    let Some(rest) = origin.strip_prefix("http://") else {
        return false;
    };
    match (split_host(rest), split_host(host)) {
        (Some((a, ap)), Some((b, bp))) => ap == bp && a.eq_ignore_ascii_case(b),
        _ => false,
    }
}

fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The value of `name` in a query string, percent-decoded.
pub fn query_value(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| percent_decode(v))
}

fn without_token(query: &str) -> String {
    query
        .split('&')
        .filter(|pair| !pair.is_empty() && pair.split('=').next() != Some(TOKEN_PARAM))
        .collect::<Vec<_>>()
        .join("&")
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = || {
            let pair = text.get(i + 1..i + 3)?;
            u8::from_str_radix(pair, 16).ok()
        };
        match (b, hex()) {
            (b'%', Some(decoded)) => {
                out.push(decoded);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Compares a presented token with the real one without stopping at the first difference, so
/// the time taken says nothing about how much of a guess was right.
fn equal_in_constant_time(presented: &str, token: &str) -> bool {
    let (a, b) = (presented.as_bytes(), token.as_bytes());
    let mut diff = u8::from(a.len() != b.len());
    for (i, &y) in b.iter().enumerate() {
        diff |= a.get(i).copied().unwrap_or(0) ^ y;
    }
    diff == 0
}

/// A new random token: 32 bytes from the operating system, as hex.
pub fn new_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The Content-Security-Policy of every page and API answer: scripts, styles and images only
/// from this server's own assets, requests only to itself, no inline script or style, no
/// frames, no plugins, and Trusted Types required so that no string can ever be assigned to
/// `innerHTML` or another HTML sink, whatever the page's code does.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; \
    frame-ancestors 'none'; require-trusted-types-for 'script'; trusted-types 'none'";

/// The policy of answers that carry an entry's or attachment's own bytes (raw JSON, downloads):
/// even opened on their own they run nothing and load nothing.
pub const CSP_SANDBOX: &str = "sandbox; default-src 'none'; frame-ancestors 'none'";

/// Headers every response carries besides the policy.
pub const COMMON_HEADERS: [(&str, &str); 5] = [
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
    ("cross-origin-resource-policy", "same-origin"),
    ("cross-origin-opener-policy", "same-origin"),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback() -> Guard {
        Guard::new("127.0.0.1:7311".parse().unwrap(), &[], None)
    }

    fn seen(host: &str) -> Seen<'_> {
        Seen {
            host: Some(host),
            ..Seen::default()
        }
    }

    fn status(v: Verdict) -> u16 {
        match v {
            Verdict::Pass => 200,
            Verdict::SetCookie { .. } => 303,
            Verdict::Refuse { status, .. } => status,
        }
    }

    #[test]
    fn loopback_names_with_the_right_port_pass() {
        let g = loopback();
        for host in [
            "127.0.0.1:7311",
            "localhost:7311",
            "LOCALHOST:7311",
            "[::1]:7311",
        ] {
            assert_eq!(
                g.check("GET", "/", None, &seen(host)),
                Verdict::Pass,
                "{host}"
            );
        }
    }

    #[test]
    fn a_rebinding_name_or_another_port_is_refused() {
        let g = loopback();
        for host in [
            "evil.example:7311",
            "127.0.0.1:8080",
            "127.0.0.1",
            "localhost.evil.example:7311",
            "user@127.0.0.1:7311",
            "",
            "[::1:7311",
        ] {
            assert_eq!(
                status(g.check("GET", "/api/sessions", None, &seen(host))),
                403,
                "{host:?}"
            );
        }
        assert_eq!(status(g.check("GET", "/", None, &Seen::default())), 400);
    }

    #[test]
    fn only_reads_are_served() {
        let g = loopback();
        for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
            assert_eq!(
                status(g.check(method, "/", None, &seen("localhost:7311"))),
                405
            );
        }
        assert_eq!(
            status(g.check("HEAD", "/", None, &seen("localhost:7311"))),
            200
        );
    }

    #[test]
    fn another_origin_cannot_read_the_api() {
        let g = loopback();
        let mut s = seen("127.0.0.1:7311");
        s.origin = Some("http://evil.example");
        assert_eq!(status(g.check("GET", "/api/sessions", None, &s)), 403);
        s.origin = Some("null");
        assert_eq!(status(g.check("GET", "/api/sessions", None, &s)), 403);
        s.origin = Some("http://127.0.0.1:7311");
        assert_eq!(g.check("GET", "/api/sessions", None, &s), Verdict::Pass);
    }

    #[test]
    fn other_sites_may_link_to_pages_but_not_fetch() {
        let g = loopback();
        let mut s = seen("127.0.0.1:7311");
        s.fetch_site = Some("cross-site");
        s.fetch_mode = Some("navigate");
        s.fetch_dest = Some("document");
        assert_eq!(g.check("GET", "/s/x", None, &s), Verdict::Pass);
        assert_eq!(status(g.check("GET", "/api/sessions", None, &s)), 403);
        s.fetch_mode = Some("no-cors");
        s.fetch_dest = Some("script");
        assert_eq!(status(g.check("GET", "/s/x", None, &s)), 403);
        // Another port of localhost is "same-site", not same-origin.
        s.fetch_site = Some("same-site");
        assert_eq!(status(g.check("GET", "/assets/app.js", None, &s)), 403);
        s.fetch_site = Some("same-origin");
        assert_eq!(g.check("GET", "/assets/app.js", None, &s), Verdict::Pass);
    }

    #[test]
    fn a_token_is_required_on_every_request_when_set() {
        let g = Guard::new(
            "0.0.0.0:7311".parse().unwrap(),
            &["viewer.lan".into()],
            Some("s3cret".into()),
        );
        let s = seen("192.168.1.5:7311");
        assert_eq!(status(g.check("GET", "/", None, &s)), 401);
        assert_eq!(
            status(g.check("GET", "/api/sessions", Some("token=s3cret"), &s)),
            401
        );
        assert_eq!(status(g.check("GET", "/", Some("token=wrong"), &s)), 401);
        let mut with = s;
        with.authorization = Some("Bearer s3cret");
        assert_eq!(g.check("GET", "/api/sessions", None, &with), Verdict::Pass);
        with.authorization = Some("Bearer s3cre");
        assert_eq!(status(g.check("GET", "/api/sessions", None, &with)), 401);
        let mut cookie = s;
        cookie.cookie = Some("a=b; annals-token-7311=s3cret");
        assert_eq!(
            g.check("GET", "/api/sessions", None, &cookie),
            Verdict::Pass
        );
        cookie.cookie = Some("annals-token-7312=s3cret");
        assert_eq!(status(g.check("GET", "/api/sessions", None, &cookie)), 401);
        // A name given with --allow-host passes the Host check; the token is still needed.
        assert_eq!(
            status(g.check("GET", "/", None, &seen("viewer.lan:7311"))),
            401
        );
        assert_eq!(
            status(g.check("GET", "/", None, &seen("other.lan:7311"))),
            403
        );
    }

    #[test]
    fn the_printed_url_swaps_its_token_for_a_cookie() {
        let g = Guard::new(
            "127.0.0.1:7311".parse().unwrap(),
            &[],
            Some("s3cret".into()),
        );
        let v = g.check(
            "GET",
            "/s/abc",
            Some("from=3&token=s3cret&to=9"),
            &seen("localhost:7311"),
        );
        assert_eq!(
            v,
            Verdict::SetCookie {
                cookie: "annals-token-7311=s3cret; Path=/; HttpOnly; SameSite=Lax".into(),
                location: "/s/abc?from=3&to=9".into(),
            }
        );
    }

    #[test]
    fn a_specific_bind_address_accepts_itself_only() {
        let g = Guard::new("192.168.1.5:80".parse().unwrap(), &[], Some("t".into()));
        let mut s = seen("192.168.1.5");
        s.authorization = Some("Bearer t");
        assert_eq!(g.check("GET", "/", None, &s), Verdict::Pass);
        s.host = Some("192.168.1.6");
        assert_eq!(status(g.check("GET", "/", None, &s)), 403);
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(equal_in_constant_time("abc", "abc"));
        assert!(!equal_in_constant_time("abd", "abc"));
        assert!(!equal_in_constant_time("ab", "abc"));
        assert!(!equal_in_constant_time("abcd", "abc"));
        assert!(!equal_in_constant_time("", "abc"));
        let t = new_token().unwrap();
        assert_eq!(t.len(), 64);
        assert_ne!(t, new_token().unwrap());
    }

    #[test]
    fn query_values_are_decoded() {
        assert_eq!(query_value("q=a%20b+c&x=1", "q").as_deref(), Some("a b c"));
        assert_eq!(query_value("q=%zz", "q").as_deref(), Some("%zz"));
        assert_eq!(query_value("x=1", "q"), None);
    }
}
