//! `ml-dash serve`: a local web dashboard for a `.dash` store. A small
//! synchronous HTTP/1.1 server (tiny_http, a thread per connection), the
//! page and its script embedded in the binary (`cli/assets/serve/`, no
//! CDN, nothing fetched at run time) and a JSON API under `/api/` that
//! streams every data file (see [`api`]); live pages follow the run's
//! append-only files through server-sent events (`/api/events`).
//!
//! Safety: it binds loopback unless `--token` is given; with a token every
//! request must carry it (`Authorization: Bearer`, the cookie the page sets,
//! or `?token=`), compared in constant time. Prefixes, stream names and file
//! ids from URLs are checked ([`api::run_of`]): no `..`, no hidden segment,
//! and the resolved folder must lie inside the root (a symlink out of it is
//! refused). Stored files are served with `Content-Disposition`, a type
//! that never renders as HTML, and a `sandbox` CSP.

mod api;

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tiny_http::{Header, Request, Response, Server};

use crate::args::ServeArgs;
use crate::{Fail, Result};

const INDEX: &str = include_str!("../../assets/serve/index.html");
const APP_JS: &str = include_str!("../../assets/serve/app.js");
const APP_CSS: &str = include_str!("../../assets/serve/app.css");

/// What every request handler sees.
pub(crate) struct Ctx {
    /// The root, canonical.
    pub root: PathBuf,
    token: Option<String>,
    /// The last series answers, by what they were computed from (the
    /// file's length and mtime included, so a file that grew misses).
    pub series_cache: std::sync::Mutex<std::collections::HashMap<String, Vec<u8>>>,
}

pub(crate) fn run(root: &Path, a: &ServeArgs) -> Result {
    let loopback =
        a.host == "localhost" || a.host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !loopback && a.token.is_none() {
        return Err(Fail::Usage(format!(
            "--host {} is reachable from other machines: give --token T too (every request must then carry it)",
            a.host
        )));
    }
    if a.token.as_deref() == Some("") {
        return Err(Fail::Usage("--token must not be empty".into()));
    }
    std::fs::create_dir_all(root).ok();
    let canon = root
        .canonicalize()
        .map_err(|e| Fail::Usage(format!("cannot open {}: {e}", root.display())))?;
    let server = Server::http((a.host.as_str(), a.port))
        .map_err(|e| Fail::Problem(format!("cannot listen on {}:{}: {e}", a.host, a.port)))?;
    let port = server.server_addr().to_ip().map_or(a.port, |s| s.port());
    let host = if a.host.contains(':') {
        format!("[{}]", a.host)
    } else {
        a.host.clone()
    };
    let url = match &a.token {
        Some(t) => format!("http://{host}:{port}/?token={}", pct(t)),
        None => format!("http://{host}:{port}/"),
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "ml-dash serve: {url}  (root {})", canon.display())?;
    out.flush()?;
    drop(out);
    if a.open {
        let _ = std::process::Command::new("xdg-open")
            .arg(&url)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
    }
    let ctx = Arc::new(Ctx {
        root: canon,
        token: a.token.clone(),
        series_cache: Default::default(),
    });
    // Charts of long streams fold block summaries: build the missing ones
    // now, in the background, the latest runs first (a stream's first
    // chart then needs no full read).
    let warm = ctx.root.clone();
    std::thread::spawn(move || summarise(&warm));
    for req in server.incoming_requests() {
        let ctx = Arc::clone(&ctx);
        std::thread::spawn(move || handle(&ctx, req));
    }
    Ok(())
}

/// Brings the block summary of every metric stream under `root` up to date
/// (one kept by its writer is).
fn summarise(root: &Path) {
    let Ok(mut runs) = ml_dash::read::runs(root) else {
        return;
    };
    runs.sort_by_key(|r| std::cmp::Reverse(r.started_at()));
    for r in runs {
        for s in ml_dash::read::metric_streams(&r.dir).unwrap_or_default() {
            if !ml_dash::read::Summary::is_kept(&s.data()) {
                let _ = ml_dash::read::Summary::open(&s.data());
            }
        }
    }
}

/// A response: status, content type, extra headers, body.
pub(crate) struct Reply {
    pub status: u16,
    pub body: Body,
    pub headers: Vec<(&'static str, String)>,
}

pub(crate) enum Body {
    Bytes(&'static str, Vec<u8>),
    /// A stream of this many bytes.
    Stream(Box<dyn std::io::Read + Send>, u64),
}

impl Reply {
    pub fn json(v: &serde_json::Value) -> Reply {
        Reply::bytes(
            200,
            "application/json",
            serde_json::to_vec(v).unwrap_or_default(),
        )
    }
    pub fn bytes(status: u16, ctype: &'static str, body: Vec<u8>) -> Reply {
        Reply {
            status,
            body: Body::Bytes(ctype, body),
            headers: Vec::new(),
        }
    }
    pub fn error(status: u16, msg: impl Into<String>) -> Reply {
        Reply::bytes(
            status,
            "application/json",
            serde_json::to_vec(&serde_json::json!({ "error": msg.into() })).unwrap_or_default(),
        )
    }
}

/// Constant-time equality (the time depends on the lengths only).
fn same(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i % b.len().max(1)).copied().unwrap_or(0));
    }
    diff == 0
}

/// The decoded query parameters of a URL.
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str())
    }
    pub fn num<T: std::str::FromStr>(&self, k: &str) -> std::result::Result<Option<T>, Reply> {
        self.get(k)
            .filter(|v| !v.is_empty())
            .map(|v| {
                v.parse()
                    .map_err(|_| Reply::error(400, format!("{k}={v:?} is not a number")))
            })
            .transpose()
    }
}

/// Percent-decoding (`+` is a space in queries only).
pub(crate) fn unpct(s: &str, plus: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    while i < b.len() {
        match b[i] {
            b'%' => {
                match (
                    b.get(i + 1).and_then(|&c| hex(c)),
                    b.get(i + 2).and_then(|&c| hex(c)),
                ) {
                    (Some(h), Some(l)) => {
                        out.push(h << 4 | l);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            b'+' if plus => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encoding of everything but unreserved characters.
pub(crate) fn pct(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn header<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers()
        .iter()
        .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

fn handle(ctx: &Ctx, req: Request) {
    let url = req.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let query = Query(
        query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (unpct(k, true), unpct(v, true))
            })
            .collect(),
    );
    let path = unpct(path, false);
    let mut set_cookie = None;
    if let Some(t) = &ctx.token {
        let bearer = header(&req, "authorization").and_then(|v| v.strip_prefix("Bearer "));
        let cookie = header(&req, "cookie").and_then(|c| {
            c.split(';')
                .find_map(|kv| kv.trim().strip_prefix("ml_dash_token="))
        });
        let given = [bearer, cookie.map(|c| c.trim()), query.get("token")];
        let ok = given
            .iter()
            .flatten()
            .any(|g| same(g.as_bytes(), t.as_bytes()));
        if !ok {
            let r = Reply::error(
                401,
                "this server needs its token (?token=T or Authorization: Bearer T)",
            );
            respond(req, r);
            return;
        }
        if query.get("token").is_some() {
            set_cookie = Some(format!(
                "ml_dash_token={}; Path=/; HttpOnly; SameSite=Strict",
                pct(t)
            ));
        }
    }
    let get = matches!(
        req.method(),
        tiny_http::Method::Get | tiny_http::Method::Head
    );
    let reply = if !get {
        Reply::error(405, "only GET is served")
    } else if path == "/" || path == "/runs" || path.starts_with("/runs/") {
        let mut r = Reply::bytes(200, "text/html; charset=utf-8", INDEX.as_bytes().to_vec());
        r.headers.push((
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'".into(),
        ));
        r
    } else if path == "/assets/app.js" {
        Reply::bytes(
            200,
            "text/javascript; charset=utf-8",
            APP_JS.as_bytes().to_vec(),
        )
    } else if path == "/assets/app.css" {
        Reply::bytes(200, "text/css; charset=utf-8", APP_CSS.as_bytes().to_vec())
    } else if let Some(rest) = path.strip_prefix("/api/") {
        if rest == "events" {
            return api::events(ctx, &query, req);
        }
        api::route(ctx, rest, &query)
    } else {
        Reply::error(404, format!("no page {path:?}"))
    };
    let mut reply = reply;
    if let Some(c) = set_cookie {
        reply.headers.push(("Set-Cookie", c));
    }
    respond(req, reply);
}

fn respond(req: Request, r: Reply) {
    let mut headers: Vec<Header> = vec![
        Header::from_bytes("X-Content-Type-Options", "nosniff").expect("a valid header"),
        Header::from_bytes("Cache-Control", "no-store").expect("a valid header"),
        Header::from_bytes("Referrer-Policy", "no-referrer").expect("a valid header"),
    ];
    for (k, v) in &r.headers {
        if let Ok(h) = Header::from_bytes(k.as_bytes(), v.as_bytes()) {
            headers.push(h);
        }
    }
    let status = tiny_http::StatusCode(r.status);
    let _ = match r.body {
        Body::Bytes(ctype, b) => {
            headers.push(Header::from_bytes("Content-Type", ctype).expect("a valid header"));
            let n = b.len();
            req.respond(Response::new(status, headers, &b[..], Some(n), None))
        }
        Body::Stream(f, n) => req.respond(Response::new(
            status,
            headers,
            f,
            usize::try_from(n).ok(),
            None,
        )),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_and_percent_coding() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd") && !same(b"ab", b"abc") && !same(b"abc", b"ab"));
        assert!(!same(b"", b"a") && !same(b"a", b"") && same(b"", b""));
        assert_eq!(
            unpct("a%2Fb%2e%2E+c%zz%", false),
            "a/b.. c%zz%".replace(' ', "+")
        );
        assert_eq!(unpct("a+b", true), "a b");
        assert_eq!(unpct(&pct("x/ y?é"), false), "x/ y?é");
    }
}
