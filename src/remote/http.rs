//! One HTTP request to the ML-Dash server, its answer sorted into what the
//! sender does next. The only module that names `ureq`.

use std::io::Read;
use std::sync::Mutex;
use std::time::Duration;

use ureq::Agent;

/// Largest answer body read (ids and short JSON documents come back).
const MAX_ANSWER: u64 = 16 << 20;
/// How much of a refusal's body a message or dead-letter line keeps.
pub(crate) const MAX_ERROR_BODY: usize = 4096;

/// HTTP methods the sink uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Post,
    Patch,
}

impl Method {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Method::Post => "POST",
            Method::Patch => "PATCH",
        }
    }
}

/// A request body.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Body<'a> {
    /// A JSON document.
    Json(&'a [u8]),
    /// `multipart/form-data`: `head`, the file's bytes (streamed), `tail`.
    Multipart {
        boundary: &'a str,
        head: &'a [u8],
        file: &'a std::path::Path,
        tail: &'a [u8],
    },
}

/// What an answer means for the sender.
#[derive(Debug)]
pub(crate) enum Answer {
    /// 2xx: the body.
    Ok(Vec<u8>),
    /// Worth retrying: connection error, timeout, 408, 429 or 5xx.
    Transient {
        why: String,
        retry_after: Option<Duration>,
        /// A 429: the server asks for fewer requests.
        overload: bool,
    },
    /// 401 or 403: the token is missing, wrong or expired.
    Auth { status: u16, body: String },
    /// 409: a race between two upserts of one node.
    Conflict(String),
    /// 413: the body is too large for the server.
    TooLarge(String),
    /// Any other status: the server will never take this request.
    Rejected { status: u16, body: String },
    /// The request cannot be made (its file is gone).
    Unsendable(String),
}

/// An HTTP client bound to one server and token, shared by the sender's
/// workers (one pooled connection each).
#[derive(Debug)]
pub(crate) struct Client {
    agent: Agent,
    base: String,
    /// `Bearer <token>`; replaced by a worker that looked the token up again.
    auth: Mutex<Option<String>>,
}

impl Client {
    /// `base` is the server's URL (`ML_DASH_API_URL`), without `/api`;
    /// `connections`: how many requests may be out at once.
    pub(crate) fn new(
        base: &str,
        token: Option<&str>,
        connect_timeout: Duration,
        connections: usize,
    ) -> Client {
        let agent: Agent = Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(connect_timeout))
            .user_agent(concat!("ml-dash-rs/", env!("CARGO_PKG_VERSION")))
            .max_idle_connections_per_host(connections.max(1))
            .max_idle_connections(connections.max(10))
            .build()
            .into();
        let mut c = Client {
            agent,
            base: String::new(),
            auth: Mutex::new(None),
        };
        c.set_base(base);
        c.set_token(token);
        c
    }

    pub(crate) fn set_base(&mut self, base: &str) {
        self.base = base.trim_end_matches('/').to_owned();
    }

    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    pub(crate) fn set_token(&self, token: Option<&str>) {
        *self.auth.lock().unwrap_or_else(|e| e.into_inner()) = token.map(|t| format!("Bearer {t}"));
    }

    /// Sends one JSON request; never panics, never blocks past `timeout`
    /// (plus the connect timeout at most, when that is shorter).
    pub(crate) fn send(
        &self,
        method: Method,
        path: &str,
        body: Body<'_>,
        key: Option<&str>,
        timeout: Duration,
    ) -> Answer {
        let url = format!("{}{}", self.base, path);
        let req = match method {
            Method::Post => self.agent.post(&url),
            Method::Patch => self.agent.patch(&url),
        };
        let mut req = req
            .config()
            .timeout_global(Some(timeout.max(Duration::from_millis(1))))
            .build()
            .header("Accept", "application/json");
        let auth = self.auth.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        let sent = match body {
            Body::Json(b) => req.header("Content-Type", "application/json").send(b),
            Body::Multipart {
                boundary,
                head,
                file,
                tail,
            } => {
                // Streamed from the file, never read whole into memory.
                let f = match std::fs::File::open(file) {
                    Ok(f) => f,
                    Err(e) => {
                        return Answer::Unsendable(format!("cannot read {}: {e}", file.display()));
                    }
                };
                let size = f.metadata().map(|m| m.len()).unwrap_or(0);
                let len = head.len() as u64 + size + tail.len() as u64;
                let mut reader = head.chain(f.take(size)).chain(tail);
                req.header(
                    "Content-Type",
                    format!("multipart/form-data; boundary={boundary}"),
                )
                .header("Content-Length", len.to_string())
                .send(ureq::SendBody::from_reader(&mut reader))
            }
        };
        let mut resp = match sent {
            Ok(r) => r,
            Err(e) => {
                return Answer::Transient {
                    why: describe(&e),
                    retry_after: None,
                    overload: false,
                };
            }
        };
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER)
            .read_to_vec();
        let body = match body {
            Ok(b) => b,
            Err(e) if (200..300).contains(&status) => {
                // Taken but the answer was cut: the idempotency key makes a resend safe.
                return Answer::Transient {
                    why: format!("HTTP {status} with an unreadable body: {}", describe(&e)),
                    retry_after: None,
                    overload: false,
                };
            }
            Err(_) => Vec::new(),
        };
        classify(status, body, retry_after)
    }
}

fn classify(status: u16, body: Vec<u8>, retry_after: Option<Duration>) -> Answer {
    let text = || excerpt(&body);
    match status {
        200..=299 => Answer::Ok(body),
        408 | 429 | 500..=599 => Answer::Transient {
            why: format!("HTTP {status}: {}", text()),
            retry_after,
            overload: status == 429,
        },
        401 | 403 => Answer::Auth {
            status,
            body: text(),
        },
        409 => Answer::Conflict(text()),
        413 => Answer::TooLarge(text()),
        _ => Answer::Rejected {
            status,
            body: text(),
        },
    }
}

/// The start of a body as text, for messages.
pub(crate) fn excerpt(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(&body[..body.len().min(MAX_ERROR_BODY)]);
    s.trim().to_owned()
}

fn describe(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(t) => format!("timed out ({t})"),
        ureq::Error::Io(io) => format!("connection error: {io}"),
        other => format!("connection error: {other}"),
    }
}

/// `Retry-After` as delay-seconds (integer or decimal). An HTTP-date is not
/// parsed: the normal backoff applies then.
pub(crate) fn parse_retry_after(v: &str) -> Option<Duration> {
    let secs: f64 = v.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(3600.0)))
}

/// Percent-encodes one path segment the way Python's `quote(s, safe='')` does.
pub(crate) fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Appends `item` to `out` with every bare `NaN`, `Infinity` and `-Infinity`
/// token (outside strings) written as `null`; returns how many were replaced.
/// The server cannot store non-finite numbers (the Python SDK refuses them in
/// remote mode); the spool and a hybrid run's local store keep them.
pub(crate) fn push_finite(out: &mut Vec<u8>, item: &[u8]) -> u64 {
    if !item.iter().any(|&b| b == b'N' || b == b'I') {
        out.extend_from_slice(item);
        return 0;
    }
    let mut n = 0;
    let mut in_str = false;
    let mut i = 0;
    while i < item.len() {
        let b = item[i];
        if in_str {
            out.push(b);
            if b == b'\\' && i + 1 < item.len() {
                out.push(item[i + 1]);
                i += 2;
                continue;
            }
            if b == b'"' {
                in_str = false;
            }
            i += 1;
            continue;
        }
        let rest = &item[i..];
        let token = if rest.starts_with(b"NaN") {
            3
        } else if rest.starts_with(b"Infinity") {
            8
        } else if rest.starts_with(b"-Infinity") {
            9
        } else {
            0
        };
        if token > 0 {
            out.extend_from_slice(b"null");
            n += 1;
            i += token;
            continue;
        }
        if b == b'"' {
            in_str = true;
        }
        out.push(b);
        i += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_tokens_become_null_outside_strings() {
        let mut out = Vec::new();
        let n = push_finite(
            &mut out,
            br#"{"a":NaN,"b":-Infinity,"c":[Infinity,1],"s":"NaN \"Infinity\"","d":1e5}"#,
        );
        assert_eq!(n, 3);
        assert_eq!(
            out,
            br#"{"a":null,"b":null,"c":[null,1],"s":"NaN \"Infinity\"","d":1e5}"#
        );
        out.clear();
        assert_eq!(push_finite(&mut out, br#"{"NaN":1}"#), 0);
        assert_eq!(out, br#"{"NaN":1}"#);
    }

    #[test]
    fn segments_are_encoded_like_python_quote() {
        assert_eq!(encode_segment("robot/pose"), "robot%2Fpose");
        assert_eq!(encode_segment("a b~c.d-e_f"), "a%20b~c.d-e_f");
        assert_eq!(encode_segment("é"), "%C3%A9");
    }

    #[test]
    fn answers_are_classified() {
        assert!(matches!(classify(201, vec![], None), Answer::Ok(_)));
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(
                matches!(classify(s, vec![], None), Answer::Transient { overload, .. } if overload == (s == 429)),
                "{s}"
            );
        }
        assert!(matches!(classify(401, vec![], None), Answer::Auth { .. }));
        assert!(matches!(classify(403, vec![], None), Answer::Auth { .. }));
        assert!(matches!(classify(409, vec![], None), Answer::Conflict(_)));
        assert!(matches!(classify(413, vec![], None), Answer::TooLarge(_)));
        for s in [400, 404, 410, 422] {
            assert!(
                matches!(classify(s, vec![], None), Answer::Rejected { .. }),
                "{s}"
            );
        }
        assert_eq!(parse_retry_after(" 2 "), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }
}
