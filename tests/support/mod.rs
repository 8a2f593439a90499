//! A test ML-Dash server on 127.0.0.1 (random port), std only: the
//! endpoints of ML-DASH.md §4 with answers shaped like the real server's
//! (19-digit ids as bare JSON numbers), a record of every request,
//! deduplication by `Idempotency-Key`, and switches for faults: answers
//! (5xx, 429, resets, black hole, late), a real outage
//! ([`TestServer::refuse_connections`]: the port is closed, connects are
//! refused), an idle timeout per connection (a client that stops mid-request
//! does not hold a worker forever) and a counting mode for long runs
//! ([`TestServer::set_counting`]: metric points are tallied, not kept).
//!
//! Used by `tests/sink_remote_*.rs` (each includes it with `mod support;`).
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::io::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

/// First id handed out: 19 digits, as the server's snowflakes.
const FIRST_ID: u64 = 7_355_667_590_605_628_000;

/// One request as received, and what the server did with it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The status answered (0: no answer: reset, black hole or dropped).
    pub status: u16,
    /// The fault applied, if any.
    pub fault: Option<&'static str>,
    /// A repeated idempotency key: answered from the record, not applied.
    pub duplicate: bool,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    pub fn key(&self) -> Option<&str> {
        self.header("idempotency-key")
    }
    /// Applied to the server's data (answered 2xx, not a duplicate).
    pub fn applied(&self) -> bool {
        (200..300).contains(&self.status) && !self.duplicate
    }
}

/// Random faults, drawn per request from a seeded generator.
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomFaults {
    pub p_5xx: f64,
    pub p_429: f64,
    pub p_reset: f64,
    /// Applied, but answered after `late` (after the client's timeout).
    pub p_late: f64,
    pub seed: u64,
}

/// A rule answering `status` to requests whose path contains `path`.
#[derive(Debug, Clone)]
pub struct Reject {
    pub path: String,
    pub status: u16,
    /// How many times (`u32::MAX`: always).
    pub times: u32,
}

/// Fault switches (all off by default).
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// The next N requests fail with `fail_status` (500 or 503).
    pub fail_next: u32,
    pub fail_status: u16,
    pub random: Option<RandomFaults>,
    /// `Retry-After` sent with 429 (and 503) answers.
    pub retry_after: Option<String>,
    /// The next N requests get their connection reset in the middle of the body.
    pub reset_next: u32,
    /// Accept connections and never answer.
    pub black_hole: bool,
    /// Answer 503 to everything (the server is "down").
    pub down: bool,
    pub reject: Vec<Reject>,
    /// 413 when a data request carries more items than this.
    pub max_items: Option<usize>,
    /// Delay of late answers.
    pub late: Duration,
    /// Answer 401 unless `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// Answer 409 to the next N node creations.
    pub conflict_next: u32,
    /// Apply the next N data requests but answer them `late` later.
    pub late_next: u32,
    /// Answer 503 to the next N file uploads.
    pub fail_files: u32,
    /// Answer this status to every file upload.
    pub reject_files: Option<u16>,
    /// Hold each data request until this many are in the server at once, or
    /// `gather_wait` passed; once reached (or timed out) it is switched off.
    pub gather: u32,
    pub gather_wait: Duration,
}

/// What the server holds.
#[derive(Debug, Default)]
pub struct State {
    pub requests: Vec<Request>,
    seen: HashMap<String, (u16, Vec<u8>)>,
    next_id: u64,
    /// (namespace, slug) -> project id.
    pub projects: Vec<(String, String, u64)>,
    /// Nodes: id -> node JSON.
    pub nodes: Vec<Value>,
    /// experiment id -> experiment name.
    pub experiments: HashMap<u64, String>,
    /// (experiment id, metric name) -> points.
    pub metrics: HashMap<(u64, String), Vec<Value>>,
    pub logs: HashMap<u64, Vec<Value>>,
    pub tracks: HashMap<(u64, String), Vec<Value>>,
    pub params: HashMap<u64, Map<String, Value>>,
    pub param_versions: HashMap<u64, u64>,
    /// node id -> statuses in order.
    pub statuses: HashMap<u64, Vec<String>>,
    pub files: Vec<StoredFile>,
    pub faults: Faults,
    rng: Option<fastrand::Rng>,
    /// Requests received (also in counting mode, where `requests` stays empty).
    pub request_count: u64,
    /// Their body bytes (also in counting mode).
    pub body_bytes: u64,
    /// Requests answered from the record by their repeated idempotency key.
    pub duplicate_count: u64,
    /// Connections closed because the client sent nothing for the idle timeout.
    pub idle_closed: u64,
    /// ... of which in the middle of a request (head or body cut short).
    pub idle_mid_request: u64,
    /// Data requests (`/api/experiments/..`) being answered now, and the most at once.
    pub in_flight: u32,
    pub max_in_flight: u32,
    /// Counting mode: metric points are tallied in `tallies`, not kept in
    /// `metrics`, and request bodies are not recorded.
    pub counting: bool,
    /// (experiment id, metric name) -> tally (counting mode).
    pub tallies: HashMap<(u64, String), Tally>,
}

/// What counting mode keeps of a metric stream: points carry `t` (a
/// producer) and `i` (its sequence, from 0); each must be the next of its
/// producer, so a lost, repeated or reordered point shows as `out_of_order`.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub points: u64,
    /// Producer `t` -> the next `i` expected (= points of `t` so far, when in order).
    pub next: HashMap<u64, u64>,
    pub out_of_order: u64,
    /// The first few out-of-order points: (t, i, expected).
    pub first_errors: Vec<(u64, u64, u64)>,
}

impl Tally {
    /// Producer `t` logged `per_thread[t]` points: each arrived exactly once, in order.
    pub fn assert_each_once(&self, per_thread: &[u64]) {
        assert_eq!(
            self.out_of_order, 0,
            "lost, repeated or reordered points (t, i, expected): {:?}",
            self.first_errors
        );
        assert_eq!(
            self.points,
            per_thread.iter().sum::<u64>(),
            "each point exactly once"
        );
        for (t, n) in per_thread.iter().enumerate() {
            assert_eq!(self.next.get(&(t as u64)), Some(n), "all of producer {t}");
        }
    }
}

/// Peak resident size of this process (KiB), from /proc (0 where there is none).
pub fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

impl State {
    fn id(&mut self) -> u64 {
        if self.next_id == 0 {
            self.next_id = FIRST_ID;
        }
        self.next_id += 1;
        self.next_id
    }

    /// The experiment id of experiment `name` (the last prefix segment).
    pub fn experiment(&self, name: &str) -> Option<u64> {
        self.experiments
            .iter()
            .find(|(_, n)| n.as_str() == name)
            .map(|(id, _)| *id)
    }

    /// The points of one metric stream of experiment `name`.
    pub fn points(&self, name: &str, metric: &str) -> Vec<Value> {
        self.experiment(name)
            .and_then(|e| self.metrics.get(&(e, metric.to_owned())))
            .cloned()
            .unwrap_or_default()
    }

    /// The tally of one metric stream of experiment `name` (counting mode).
    pub fn tally(&self, name: &str, metric: &str) -> Tally {
        self.experiment(name)
            .and_then(|e| self.tallies.get(&(e, metric.to_owned())))
            .cloned()
            .unwrap_or_default()
    }

    /// Points of a stream of experiment `name` taken so far (either mode).
    pub fn point_count(&self, name: &str, metric: &str) -> u64 {
        let Some(e) = self.experiment(name) else {
            return 0;
        };
        let key = (e, metric.to_owned());
        if self.counting {
            self.tallies.get(&key).map_or(0, |t| t.points)
        } else {
            self.metrics.get(&key).map_or(0, |v| v.len() as u64)
        }
    }

    fn push_request(&mut self, mut req: Request) {
        self.request_count += 1;
        self.body_bytes += req.body.len() as u64;
        if req.duplicate {
            self.duplicate_count += 1;
        }
        if !self.counting {
            self.requests.push(req);
        } else if self.requests.len() < 64 {
            // The first few, without their bodies (for messages).
            req.body.clear();
            self.requests.push(req);
        }
    }

    /// Requests whose path contains `part`.
    pub fn matching(&self, part: &str) -> Vec<&Request> {
        self.requests
            .iter()
            .filter(|r| r.path.contains(part))
            .collect()
    }
}

struct Inner {
    state: Mutex<State>,
    cv: Condvar,
    stop: AtomicBool,
    /// Open connections by id (removed when their worker ends).
    open: Mutex<HashMap<u64, TcpStream>>,
    next_conn: AtomicU64,
    /// Read timeout of new connections (`None`: wait for ever).
    idle: Mutex<Option<Duration>>,
    net: Mutex<Net>,
    net_cv: Condvar,
}

/// The listener's state (see [`TestServer::refuse_connections`]).
#[derive(Debug)]
struct Net {
    refuse: bool,
    listening: bool,
}

/// Default idle timeout of a connection: longer than any pause of the
/// client's own between requests in the tests.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// The running server; stopped on drop.
pub struct TestServer {
    addr: SocketAddr,
    inner: Arc<Inner>,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    pub fn start() -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        let inner = Arc::new(Inner {
            state: Mutex::new(State::default()),
            cv: Condvar::new(),
            stop: AtomicBool::new(false),
            open: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(0),
            idle: Mutex::new(Some(IDLE_TIMEOUT)),
            net: Mutex::new(Net {
                refuse: false,
                listening: true,
            }),
            net_cv: Condvar::new(),
        });
        let i2 = inner.clone();
        let thread = std::thread::Builder::new()
            .name("test-server".into())
            .spawn(move || accept_loop(&i2, listener, addr))
            .unwrap();
        TestServer {
            addr,
            inner,
            thread: Some(thread),
        }
    }

    /// A real outage (`true`): the listening socket is closed, so connects
    /// are refused, and every open connection is closed. `false` listens
    /// again on the same port. Returns once the change is in effect.
    pub fn refuse_connections(&self, refuse: bool) {
        let mut net = self.inner.net.lock().unwrap();
        net.refuse = refuse;
        self.inner.net_cv.notify_all();
        if refuse {
            drop(net);
            // Wakes the accept loop, which sees `refuse` and closes the port.
            let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
            let mut net = self.inner.net.lock().unwrap();
            while net.listening {
                net = self.inner.net_cv.wait(net).unwrap();
            }
            drop(net);
            self.drop_connections();
        } else {
            while !net.listening {
                net = self.inner.net_cv.wait(net).unwrap();
            }
        }
    }

    /// Read timeout of connections accepted from now on (default
    /// [`IDLE_TIMEOUT`]; `None`: none): a connection whose client sends
    /// nothing for that long is closed and counted in `State::idle_closed`.
    pub fn set_idle_timeout(&self, idle: Option<Duration>) {
        *self.inner.idle.lock().unwrap() = idle;
    }

    /// Counting mode (set it before the run starts): metric points are
    /// tallied per stream ([`State::tally`]) instead of kept, and request
    /// bodies are not recorded, so a run of any length fits in memory.
    pub fn set_counting(&self, on: bool) {
        self.state().counting = on;
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn faults(&self, f: impl FnOnce(&mut Faults)) {
        let mut st = self.state();
        f(&mut st.faults);
        if let Some(r) = st.faults.random {
            st.rng = Some(fastrand::Rng::with_seed(r.seed));
        }
        drop(st);
        self.inner.cv.notify_all();
    }

    /// Closes every connection the server holds (a black hole lets go).
    pub fn drop_connections(&self) {
        for (_, c) in self.inner.open.lock().unwrap().drain() {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state().requests.clone()
    }

    /// Waits until `cond` holds (re-checked after every request), at most `timeout`.
    pub fn wait_for(&self, timeout: Duration, mut cond: impl FnMut(&State) -> bool) -> bool {
        let end = Instant::now() + timeout;
        let mut st = self.state();
        loop {
            if cond(&st) {
                return true;
            }
            let now = Instant::now();
            if now >= end {
                return false;
            }
            st = self.inner.cv.wait_timeout(st, end - now).unwrap().0;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        {
            let _net = self.inner.net.lock().unwrap();
            self.inner.net_cv.notify_all();
        }
        for (_, c) in self.inner.open.lock().unwrap().drain() {
            let _ = c.shutdown(Shutdown::Both);
        }
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Accepts connections (one worker thread each); closes the port while
/// refusing and binds it again after.
fn accept_loop(inner: &Arc<Inner>, listener: TcpListener, addr: SocketAddr) {
    let mut listener = Some(listener);
    loop {
        let l = match listener.take() {
            Some(l) => l,
            None => {
                let mut net = inner.net.lock().unwrap();
                while net.refuse && !inner.stop.load(Ordering::SeqCst) {
                    net = inner.net_cv.wait(net).unwrap();
                }
                drop(net);
                if inner.stop.load(Ordering::SeqCst) {
                    return;
                }
                // The port was ours a moment ago; another socket may hold it
                // briefly (SO_REUSEADDR is set by std on Unix).
                let end = Instant::now() + Duration::from_secs(30);
                let l = loop {
                    match TcpListener::bind(addr) {
                        Ok(l) => break l,
                        Err(e) if Instant::now() < end => {
                            let _ = e;
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        Err(e) => panic!("cannot listen on {addr} again: {e}"),
                    }
                };
                let mut net = inner.net.lock().unwrap();
                net.listening = true;
                inner.net_cv.notify_all();
                l
            }
        };
        for conn in l.incoming() {
            if inner.stop.load(Ordering::SeqCst) {
                return;
            }
            if inner.net.lock().unwrap().refuse {
                break;
            }
            let Ok(conn) = conn else { continue };
            let _ = conn.set_nodelay(true);
            let _ = conn.set_read_timeout(*inner.idle.lock().unwrap());
            let id = inner.next_conn.fetch_add(1, Ordering::Relaxed);
            if let Ok(c) = conn.try_clone() {
                inner.open.lock().unwrap().insert(id, c);
            }
            let i3 = inner.clone();
            let _ = std::thread::Builder::new()
                .name("test-server-conn".into())
                .spawn(move || {
                    serve(&i3, conn);
                    i3.open.lock().unwrap().remove(&id);
                });
        }
        drop(l); // the port is closed: connects are refused
        let mut net = inner.net.lock().unwrap();
        net.listening = false;
        inner.net_cv.notify_all();
    }
}

struct Raw {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Method, path and headers of a request.
type Head = (String, String, Vec<(String, String)>);

/// Why no request was read.
enum NoRequest {
    /// The client closed the connection (or it failed).
    Closed,
    /// The read timeout passed; `true` when part of a request had come.
    Idle(bool),
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// Reads the request line and headers.
fn read_head(r: &mut BufReader<TcpStream>) -> Result<Head, NoRequest> {
    let mut line = String::new();
    match r.read_line(&mut line) {
        Ok(0) => return Err(NoRequest::Closed),
        Ok(_) => {}
        Err(e) if is_timeout(&e) => return Err(NoRequest::Idle(!line.is_empty())),
        Err(_) => return Err(NoRequest::Closed),
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
        return Err(NoRequest::Closed);
    };
    let (method, path) = (method.to_owned(), path.to_owned());
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        match r.read_line(&mut h) {
            Ok(0) => return Err(NoRequest::Closed),
            Ok(_) => {}
            Err(e) if is_timeout(&e) => return Err(NoRequest::Idle(true)),
            Err(_) => return Err(NoRequest::Closed),
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    Ok((method, path, headers))
}

/// Closes a connection whose client went quiet, and counts it.
fn idle_close(inner: &Inner, conn: &TcpStream, mid_request: bool) {
    let mut st = inner.state.lock().unwrap();
    st.idle_closed += 1;
    if mid_request {
        st.idle_mid_request += 1;
    }
    drop(st);
    inner.cv.notify_all();
    let _ = conn.shutdown(Shutdown::Both);
}

fn reset(conn: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket we own, with a correctly sized linger struct.
    unsafe {
        libc::setsockopt(
            conn.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

fn serve(inner: &Inner, conn: TcpStream) {
    let Ok(read_half) = conn.try_clone() else {
        return;
    };
    let mut r = BufReader::new(read_half);
    let mut w = conn;
    loop {
        let (method, path, headers) = match read_head(&mut r) {
            Ok(h) => h,
            Err(NoRequest::Closed) => return,
            Err(NoRequest::Idle(mid)) => return idle_close(inner, &w, mid),
        };
        let len: usize = header(&headers, "content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);

        // Faults decided before reading the body.
        let (black_hole, reset_now) = {
            let mut st = inner.state.lock().unwrap();
            let f = &mut st.faults;
            let bh = f.black_hole;
            let mut rs = false;
            if !bh && f.reset_next > 0 && path.starts_with("/api/experiments/") {
                f.reset_next -= 1;
                rs = true;
            }
            if !bh
                && !rs
                && let Some(rf) = st.faults.random
                && is_data(&path)
            {
                let rng = st
                    .rng
                    .get_or_insert_with(|| fastrand::Rng::with_seed(rf.seed));
                rs = rng.f64() < rf.p_reset;
            }
            (bh, rs)
        };
        if black_hole {
            record(
                inner,
                Raw {
                    method,
                    path,
                    headers,
                    body: Vec::new(),
                },
                0,
                Some("black hole"),
                false,
            );
            // Hold the connection: read until the client gives up.
            let _ = w.set_read_timeout(None);
            let mut sink = [0u8; 4096];
            while let Ok(n) = r.read(&mut sink) {
                if n == 0 {
                    break;
                }
            }
            return;
        }
        if reset_now {
            let mut half = vec![0u8; len / 2];
            let _ = r.read_exact(&mut half);
            record(
                inner,
                Raw {
                    method,
                    path,
                    headers,
                    body: half,
                },
                0,
                Some("reset"),
                false,
            );
            reset(&w);
            return;
        }
        let mut body = vec![0u8; len];
        match r.read_exact(&mut body) {
            Ok(()) => {}
            Err(e) if is_timeout(&e) => return idle_close(inner, &w, true),
            Err(_) => return,
        }
        let raw = Raw {
            method,
            path,
            headers,
            body,
        };
        let (status, extra_headers, answer, late) = handle(inner, raw);
        if let Some(d) = late {
            std::thread::sleep(d);
        }
        let mut out = format!(
            "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            reason(status),
            answer.len()
        );
        for (k, v) in extra_headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&answer);
        if w.write_all(&bytes).is_err() {
            return;
        }
        let _ = w.flush();
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        409 => "Conflict",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

fn is_data(path: &str) -> bool {
    path.starts_with("/api/")
}

fn record(inner: &Inner, raw: Raw, status: u16, fault: Option<&'static str>, duplicate: bool) {
    let mut st = inner.state.lock().unwrap();
    st.push_request(Request {
        method: raw.method,
        path: raw.path,
        headers: raw.headers,
        body: raw.body,
        status,
        fault,
        duplicate,
    });
    drop(st);
    inner.cv.notify_all();
}

type Answer = (u16, Vec<(String, String)>, Vec<u8>, Option<Duration>);

/// Answers one request, counting the data requests in the server at once.
fn handle(inner: &Inner, raw: Raw) -> Answer {
    if !raw.path.starts_with("/api/experiments/") {
        return answer(inner, raw);
    }
    {
        let mut st = inner.state.lock().unwrap();
        st.in_flight += 1;
        st.max_in_flight = st.max_in_flight.max(st.in_flight);
        inner.cv.notify_all();
        let end = Instant::now() + st.faults.gather_wait;
        while st.faults.gather > 0 {
            let now = Instant::now();
            if st.in_flight >= st.faults.gather || now >= end {
                st.faults.gather = 0;
                break;
            }
            st = inner.cv.wait_timeout(st, end - now).unwrap().0;
        }
    }
    let a = answer(inner, raw);
    inner.state.lock().unwrap().in_flight -= 1;
    inner.cv.notify_all();
    a
}

fn answer(inner: &Inner, raw: Raw) -> Answer {
    let mut st = inner.state.lock().unwrap();
    let mut fault: Option<&'static str> = None;
    let mut late = None;
    let mut extra = Vec::new();
    let reply = 'reply: {
        if st.faults.down {
            fault = Some("down");
            break 'reply (503, json!({"error": "down"}));
        }
        if let Some(tok) = &st.faults.token {
            let want = format!("Bearer {tok}");
            if header(&raw.headers, "authorization") != Some(want.as_str()) {
                fault = Some("401");
                break 'reply (
                    401,
                    json!({"error": "Unauthorized", "message": "invalid token"}),
                );
            }
        }
        if let Some(i) = st
            .faults
            .reject
            .iter()
            .position(|r| raw.path.contains(&r.path) && r.times > 0)
        {
            let r = &mut st.faults.reject[i];
            if r.times != u32::MAX {
                r.times -= 1;
            }
            let status = r.status;
            fault = Some("reject");
            break 'reply (
                status,
                json!({"error": "rejected", "message": format!("test rule {status}")}),
            );
        }
        if st.faults.fail_next > 0 {
            st.faults.fail_next -= 1;
            fault = Some("fail_next");
            let s = if st.faults.fail_status == 0 {
                500
            } else {
                st.faults.fail_status
            };
            if let Some(ra) = st.faults.retry_after.clone() {
                extra.push(("Retry-After".to_owned(), ra));
            }
            break 'reply (s, json!({"error": "injected"}));
        }
        if let Some(rf) = st.faults.random
            && is_data(&raw.path)
        {
            let rng = st
                .rng
                .get_or_insert_with(|| fastrand::Rng::with_seed(rf.seed));
            let x = rng.f64();
            if x < rf.p_5xx {
                fault = Some("5xx");
                let s = if rng.bool() { 500 } else { 503 };
                break 'reply (s, json!({"error": "injected"}));
            }
            if x < rf.p_5xx + rf.p_429 {
                fault = Some("429");
                if let Some(ra) = st.faults.retry_after.clone() {
                    extra.push(("Retry-After".to_owned(), ra));
                }
                break 'reply (429, json!({"error": "slow down"}));
            }
            if x < rf.p_5xx + rf.p_429 + rf.p_late {
                fault = Some("late");
                late = Some(st.faults.late);
            }
        }
        if st.faults.late_next > 0 && raw.path.starts_with("/api/experiments/") {
            st.faults.late_next -= 1;
            fault = Some("late");
            late = Some(st.faults.late);
        }
        if let Some(max) = st.faults.max_items {
            let n = serde_json::from_slice::<Value>(&raw.body)
                .ok()
                .and_then(|v| {
                    ["dataPoints", "logs", "entries"]
                        .iter()
                        .find_map(|k| v.get(*k).and_then(Value::as_array).map(Vec::len))
                })
                .unwrap_or(0);
            if n > max {
                fault = Some("413");
                break 'reply (413, json!({"error": "Payload Too Large"}));
            }
        }
        let key = header(&raw.headers, "idempotency-key").map(str::to_owned);
        if let Some(k) = &key
            && let Some((s, body)) = st.seen.get(k).cloned()
        {
            let req = Request {
                method: raw.method,
                path: raw.path,
                headers: raw.headers,
                body: raw.body,
                status: s,
                fault,
                duplicate: true,
            };
            st.push_request(req);
            drop(st);
            inner.cv.notify_all();
            return (s, extra, body, late);
        }
        let (s, v) = match count_points(&mut st, &raw) {
            Some(answer) => answer,
            None => route(&mut st, &raw),
        };
        if let Some(k) = key
            && (200..300).contains(&s)
        {
            st.seen.insert(k, (s, serde_json::to_vec(&v).unwrap()));
        }
        (s, v)
    };
    let (status, v) = reply;
    let body = serde_json::to_vec(&v).unwrap();
    st.push_request(Request {
        method: raw.method,
        path: raw.path,
        headers: raw.headers,
        body: raw.body,
        status,
        fault,
        duplicate: false,
    });
    drop(st);
    inner.cv.notify_all();
    (status, extra, body, late)
}

/// Counting mode: a metric batch is tallied, not kept (`None`: not one).
fn count_points(st: &mut State, raw: &Raw) -> Option<(u16, Value)> {
    if !st.counting || raw.method != "POST" {
        return None;
    }
    let path = raw.path.split('?').next().unwrap_or("");
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let ["api", "experiments", id, "metrics", name, "append-batch"] = segs.as_slice() else {
        return None;
    };
    let exp = id.parse::<u64>().ok()?;
    if !st.experiments.contains_key(&exp) {
        return Some(not_found());
    }
    #[derive(serde::Deserialize)]
    struct Point {
        t: Option<u64>,
        i: Option<u64>,
    }
    #[derive(serde::Deserialize)]
    struct Batch {
        #[serde(rename = "dataPoints")]
        data_points: Vec<Point>,
    }
    let batch: Batch = match serde_json::from_slice(&raw.body) {
        Ok(b) => b,
        Err(e) => return Some(bad(&format!("dataPoints: {e}"))),
    };
    if batch.data_points.is_empty() {
        return Some(bad("dataPoints must be non-empty objects"));
    }
    let mid = st.id();
    let tally = st.tallies.entry((exp, decode(name))).or_default();
    let start = tally.points;
    for p in &batch.data_points {
        let (t, i) = (p.t.unwrap_or(u64::MAX), p.i.unwrap_or(u64::MAX));
        let next = tally.next.entry(t).or_insert(0);
        if i == *next {
            *next += 1;
        } else {
            tally.out_of_order += 1;
            if tally.first_errors.len() < 8 {
                tally.first_errors.push((t, i, *next));
            }
        }
        tally.points += 1;
    }
    let n = batch.data_points.len() as u64;
    Some((
        200,
        json!({"metricId": mid, "startIndex": start, "endIndex": start + n - 1, "count": n}),
    ))
}

fn not_found() -> (u16, Value) {
    (404, json!({"error": "Not Found"}))
}

fn bad(msg: &str) -> (u16, Value) {
    (400, json!({"error": "Bad Request", "message": msg}))
}

fn decode(seg: &str) -> String {
    let b = seg.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(x) = u8::from_str_radix(&seg[i + 1..i + 3], 16)
        {
            out.push(x);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn id_of(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn route(st: &mut State, raw: &Raw) -> (u16, Value) {
    let path = raw.path.split('?').next().unwrap_or("");
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let ct = header(&raw.headers, "content-type").unwrap_or("");
    let body: Value = if ct.starts_with("multipart/") {
        Value::Null
    } else {
        match serde_json::from_slice(&raw.body) {
            Ok(v) => v,
            Err(_) if raw.body.is_empty() => Value::Null,
            Err(e) => return bad(&format!("invalid JSON: {e}")),
        }
    };
    match (raw.method.as_str(), segs.as_slice()) {
        ("GET", ["health"]) => (200, json!({"status": "ok"})),
        ("POST", ["graphql"]) => graphql(st, &body),
        ("POST", ["api", "namespaces", ns, "nodes"]) => {
            if st.faults.conflict_next > 0 {
                st.faults.conflict_next -= 1;
                return (409, json!({"error": "Conflict", "message": "P2002"}));
            }
            if ct.starts_with("multipart/") {
                if st.faults.fail_files > 0 {
                    st.faults.fail_files -= 1;
                    return (503, json!({"error": "injected"}));
                }
                if let Some(s) = st.faults.reject_files {
                    return (
                        s,
                        json!({"error": "rejected", "message": format!("test rule {s}")}),
                    );
                }
                return file_node(st, raw);
            }
            create_node(st, ns, &body)
        }
        ("PATCH", ["api", "nodes", id]) => {
            let Ok(id) = id.parse::<u64>() else {
                return not_found();
            };
            let Some(node) = st.nodes.iter_mut().find(|n| n["id"].as_u64() == Some(id)) else {
                return not_found();
            };
            let Some(s) = body.get("status").and_then(Value::as_str) else {
                return bad("status required");
            };
            node["status"] = s.into();
            let n = node.clone();
            st.statuses.entry(id).or_default().push(s.to_owned());
            (200, n)
        }
        ("POST", ["api", "experiments", id, rest @ ..]) => {
            let Ok(exp) = id.parse::<u64>() else {
                return not_found();
            };
            if !st.experiments.contains_key(&exp) {
                return not_found();
            }
            match rest {
                ["parameters"] => {
                    let Some(data) = body.get("data").and_then(Value::as_object) else {
                        return bad("data must be an object");
                    };
                    let p = st.params.entry(exp).or_default();
                    for (k, v) in data {
                        p.insert(k.clone(), v.clone());
                    }
                    let d = Value::Object(p.clone());
                    let v = st.param_versions.entry(exp).or_insert(0);
                    *v += 1;
                    let version = *v;
                    let id = st.id();
                    (
                        200,
                        json!({"id": id, "experimentId": exp, "data": d, "version": version}),
                    )
                }
                ["logs"] => {
                    let Some(logs) = body.get("logs").and_then(Value::as_array) else {
                        return bad("logs must be an array");
                    };
                    for l in logs {
                        let lvl = l.get("level").and_then(Value::as_str).unwrap_or("");
                        if !["info", "warn", "error", "debug", "fatal"].contains(&lvl)
                            || l.get("message").is_none()
                        {
                            return bad("invalid log entry");
                        }
                    }
                    let v = st.logs.entry(exp).or_default();
                    let start = v.len();
                    v.extend(logs.iter().cloned());
                    let end = v.len().saturating_sub(1);
                    (
                        201,
                        json!({"created": logs.len(), "startSequence": start, "endSequence": end, "experimentId": exp.to_string()}),
                    )
                }
                ["metrics", name, "append-batch"] => {
                    let Some(points) = body.get("dataPoints").and_then(Value::as_array) else {
                        return bad("dataPoints must be an array");
                    };
                    if points.is_empty() || points.iter().any(|p| !p.is_object()) {
                        return bad("dataPoints must be non-empty objects");
                    }
                    let name = decode(name);
                    let mid = st.id();
                    let v = st.metrics.entry((exp, name)).or_default();
                    let start = v.len();
                    v.extend(points.iter().cloned());
                    (
                        200,
                        json!({"metricId": mid, "startIndex": start, "endIndex": v.len() - 1, "count": points.len()}),
                    )
                }
                ["tracks", topic, "append_batch"] => {
                    let Some(entries) = body.get("entries").and_then(Value::as_array) else {
                        return bad("entries must be an array");
                    };
                    if entries.is_empty() || entries.iter().any(|e| e.get("timestamp").is_none()) {
                        return bad("entries must be non-empty, each with a timestamp");
                    }
                    let topic = decode(topic);
                    st.tracks
                        .entry((exp, topic.clone()))
                        .or_default()
                        .extend(entries.iter().cloned());
                    (201, json!({"count": entries.len(), "topic": topic}))
                }
                _ => not_found(),
            }
        }
        _ => not_found(),
    }
}

fn project(st: &mut State, ns: &str, slug: &str) -> u64 {
    if let Some(p) = st.projects.iter().find(|p| p.0 == ns && p.1 == slug) {
        return p.2;
    }
    let id = st.id();
    st.projects.push((ns.to_owned(), slug.to_owned(), id));
    id
}

fn create_node(st: &mut State, ns: &str, body: &Value) -> (u16, Value) {
    let ty = body.get("type").and_then(Value::as_str).unwrap_or("");
    let name = body
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    if name.is_empty() {
        return bad("name required");
    }
    if ty == "PROJECT" {
        let slug = body
            .get("slug")
            .and_then(Value::as_str)
            .unwrap_or(&name)
            .to_owned();
        let pid = project(st, ns, &slug);
        return (
            201,
            json!({"project": {"id": pid, "slug": slug, "name": name}, "node": {"id": pid, "type": "PROJECT"}}),
        );
    }
    let pid = match id_of(body.get("projectId")) {
        Some(p) => p,
        None => match body.get("projectSlug").and_then(Value::as_str) {
            Some(slug) => project(st, ns, slug),
            None => return bad("projectId or projectSlug required"),
        },
    };
    let parent: Value = match body.get("parentId") {
        Some(Value::String(s)) if s == "ROOT" => Value::Null,
        Some(v) => match id_of(Some(v)) {
            Some(p) => p.into(),
            None => return bad("bad parentId"),
        },
        None => Value::Null,
    };
    if !matches!(ty, "FOLDER" | "EXPERIMENT") {
        return bad("unknown node type");
    }
    let existing = st
        .nodes
        .iter()
        .find(|n| {
            n["type"] == ty
                && n["projectId"].as_u64() == Some(pid)
                && n["parentId"] == parent
                && n["name"] == name.as_str()
        })
        .cloned();
    let node = match existing {
        Some(n) => n,
        None => {
            let id = st.id();
            let mut n = json!({"id": id, "type": ty, "name": name, "projectId": pid, "parentId": parent, "status": null});
            if ty == "EXPERIMENT" {
                let eid = st.id();
                n["experimentId"] = eid.into();
                n["status"] = "RUNNING".into();
                st.experiments.insert(eid, name.clone());
            }
            st.nodes.push(n.clone());
            n
        }
    };
    let proj = st.projects.iter().find(|p| p.2 == pid).cloned();
    let project = json!({"id": pid, "slug": proj.as_ref().map(|p| p.1.clone())});
    if ty == "EXPERIMENT" {
        let eid = node["experimentId"].clone();
        (
            201,
            json!({"experiment": {"id": eid, "name": name, "projectId": pid}, "node": node, "project": project}),
        )
    } else {
        (201, json!({"node": node, "project": project}))
    }
}

fn file_node(st: &mut State, raw: &Raw) -> (u16, Value) {
    let ct = header(&raw.headers, "content-type").unwrap_or("");
    let parts = multipart(ct, &raw.body);
    let field = |name: &str| -> Option<String> {
        parts
            .iter()
            .find(|p| p.name == name && p.filename.is_none())
            .map(|p| String::from_utf8_lossy(&p.data).into_owned())
    };
    let Some(file) = parts
        .iter()
        .find(|p| p.name == "file" && p.filename.is_some())
    else {
        return bad("a file part is required");
    };
    if field("type").as_deref() != Some("FILE") {
        return bad("type must be FILE");
    }
    let id = st.id();
    let name = field("name").unwrap_or_default();
    let exp: Option<u64> = field("experimentId").and_then(|e| e.parse().ok());
    let parent: Option<u64> = field("parentId").and_then(|e| e.parse().ok());
    let node = json!({"id": id, "type": "FILE", "name": name, "experimentId": exp,
        "parentId": parent, "projectId": field("projectId").and_then(|p| p.parse::<u64>().ok())});
    st.nodes.push(node.clone());
    st.files.push(StoredFile {
        name: name.clone(),
        parent,
        experiment: exp,
        checksum: field("checksum").unwrap_or_default(),
        content_type: file.content_type.clone().unwrap_or_default(),
        content: file.data.clone(),
    });
    (
        201,
        json!({"node": node, "physicalFile": {"id": st.id(), "filename": name,
            "checksum": field("checksum"), "sizeBytes": file.data.len().to_string(),
            "contentType": file.content_type}}),
    )
}

/// One part of a `multipart/form-data` body.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    pub name: String,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub data: Vec<u8>,
}

/// Splits a `multipart/form-data` body (`content_type` carries the boundary).
pub fn multipart(content_type: &str, body: &[u8]) -> Vec<Part> {
    let Some(b) = content_type.split("boundary=").nth(1) else {
        return Vec::new();
    };
    let delim = format!("--{}", b.trim_matches('"'));
    let d = delim.as_bytes();
    let find = |hay: &[u8], from: usize| -> Option<usize> {
        (from..=hay.len().checked_sub(d.len())?).find(|&i| &hay[i..i + d.len()] == d)
    };
    let mut parts = Vec::new();
    let Some(mut at) = find(body, 0) else {
        return parts;
    };
    loop {
        let start = at + d.len();
        if body[start..].starts_with(b"--") {
            break;
        }
        let Some(next) = find(body, start) else { break };
        // "\r\n" headers "\r\n\r\n" data "\r\n"
        let chunk = &body[start + 2..next - 2];
        let Some(sep) =
            (0..chunk.len().saturating_sub(3)).find(|&i| &chunk[i..i + 4] == b"\r\n\r\n")
        else {
            break;
        };
        let head = String::from_utf8_lossy(&chunk[..sep]).into_owned();
        let data = chunk[sep + 4..].to_vec();
        let attr = |key: &str| {
            let k = format!("{key}=\"");
            head.find(&k).map(|i| {
                let rest = &head[i + k.len()..];
                rest[..rest.find('"').unwrap_or(rest.len())].to_owned()
            })
        };
        let content_type = head
            .lines()
            .find_map(|l| {
                l.strip_prefix("Content-Type:")
                    .or_else(|| l.strip_prefix("content-type:"))
            })
            .map(|v| v.trim().to_owned());
        parts.push(Part {
            name: attr(" name").or_else(|| attr("name")).unwrap_or_default(),
            filename: attr("filename"),
            content_type,
            data,
        });
        at = next;
    }
    parts
}

/// A file the server took.
#[derive(Debug, Clone)]
pub struct StoredFile {
    pub name: String,
    pub parent: Option<u64>,
    pub experiment: Option<u64>,
    pub checksum: String,
    pub content_type: String,
    pub content: Vec<u8>,
}

/// GraphQL: a superset answer (the SDK reads only what it asked for).
fn graphql(st: &mut State, body: &Value) -> (u16, Value) {
    let vars = body.get("variables").cloned().unwrap_or(Value::Null);
    let mut data = Map::new();
    if let Some(ns) = vars.get("namespace").and_then(Value::as_str) {
        let projects: Vec<Value> = st
            .projects
            .iter()
            .filter(|p| p.0 == ns)
            .map(|p| json!({"id": p.2, "slug": p.1}))
            .collect();
        data.insert("namespace".into(), json!({"projects": projects}));
    }
    let exp = id_of(vars.get("experimentId"));
    let exp_node = exp.and_then(|e| {
        st.nodes
            .iter()
            .find(|n| n["experimentId"].as_u64() == Some(e))
            .cloned()
    });
    let pid = exp_node
        .as_ref()
        .and_then(|n| n["projectId"].as_u64())
        .or_else(|| id_of(vars.get("projectId")))
        .or_else(|| {
            let slug = vars.get("projectSlug")?.as_str()?;
            st.projects.iter().find(|p| p.1 == slug).map(|p| p.2)
        });
    if let Some(pid) = pid {
        let proj = st.projects.iter().find(|p| p.2 == pid).cloned();
        let slug = proj.as_ref().map(|p| p.1.clone());
        let ns = proj.as_ref().map(|p| p.0.clone());
        if let Some(n) = &exp_node {
            data.insert(
                "experimentById".into(),
                json!({"id": n["experimentId"], "projectId": pid, "project": {"slug": slug, "name": slug, "namespace": {"slug": ns}}}),
            );
            data.insert("experimentNode".into(), json!({"id": n["id"]}));
        }
        fn tree(nodes: &[Value], pid: u64, parent: &Value) -> Vec<Value> {
            nodes
                .iter()
                .filter(|n| n["projectId"].as_u64() == Some(pid) && &n["parentId"] == parent)
                .map(|n| {
                    let mut m = n.clone();
                    m["children"] = Value::Array(tree(nodes, pid, &n["id"]));
                    m
                })
                .collect()
        }
        let nodes = tree(&st.nodes, pid, &Value::Null);
        data.insert(
            "project".into(),
            json!({"id": pid, "slug": slug, "nodes": nodes}),
        );
    }
    (200, json!({"data": data}))
}

// ---------------------------------------------------------------------------
// Helpers for driving the remote sink.

use ml_dash::__remote_testing as rt;

/// The test token.
pub const TOKEN: &str = "test-token";

/// A sink config for `server`: fast retries, quiet, explicit token.
pub fn config(url: &str, prefix: &str, spool_dir: &std::path::Path) -> rt::RemoteConfig {
    let mut c = rt::RemoteConfig::new(url, prefix, spool_dir);
    c.token = Some(TOKEN.into());
    c.retry_base_delay = Duration::from_millis(1);
    c.retry_max_delay = Duration::from_millis(20);
    c.request_timeout = Duration::from_secs(5);
    c.connect_timeout = Duration::from_secs(2);
    c.quiet = true;
    c
}

/// Options of a replay against `url`.
pub fn sync_options(url: &str) -> rt::SyncOptions {
    let mut o = rt::SyncOptions::default();
    o.dash_url = Some(url.into());
    o.token = Some(TOKEN.into());
    o.retry_base_delay = Duration::from_millis(1);
    o.retry_max_delay = Duration::from_millis(20);
    o.request_timeout = Duration::from_secs(5);
    o.deadline = Duration::from_secs(60);
    o.quiet = true;
    o
}

/// `n` metric points `{"i":k,"t":tag,"_ts":…}` for k in `from..from+n`.
pub fn points(tag: u32, from: u64, n: u64) -> Vec<Vec<u8>> {
    (from..from + n)
        .map(|i| format!("{{\"i\":{i},\"t\":{tag},\"_ts\":{}.5}}", 1_795_817_645 + i).into_bytes())
        .collect()
}

/// Slices of `v` for an `append_*` call.
pub fn refs(v: &[Vec<u8>]) -> impl Iterator<Item = &[u8]> {
    v.iter().map(Vec::as_slice)
}

/// `(t, i)` of stored points, with how many times each is there.
pub fn census(points: &[Value]) -> HashMap<(u64, u64), u32> {
    let mut m = HashMap::new();
    for p in points {
        let key = (
            p["t"].as_u64().unwrap_or(u64::MAX),
            p["i"].as_u64().unwrap_or(u64::MAX),
        );
        *m.entry(key).or_insert(0) += 1;
    }
    m
}

/// Blocks until no one holds the session's lock (a sender left running by a
/// close that timed out lets go of it when its request ends).
pub fn wait_unlocked(session_dir: &std::path::Path) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(session_dir.join("lock"));
    if let Ok(f) = f {
        // SAFETY: flock on a file we own; blocks until the holder lets go.
        unsafe {
            libc::flock(f.as_raw_fd(), libc::LOCK_EX);
            libc::flock(f.as_raw_fd(), libc::LOCK_UN);
        }
    }
}

// ---------------------------------------------------------------------------
// The record as one JSON document (`examples/record_server.rs`, `tests/differential.rs`).

/// Every request in `reqs` as JSON, for `tests/differential/compare.py`:
/// `{"requests": [{"method", "path", "query", "status", "headers", "body"}]}`,
/// the query as an object (`null` when none), header names in lower case, and
/// the body as its JSON when it is JSON, `{"multipart": [parts]}` for a form
/// (each part's `name`, `filename`, `contentType`, `size`, `sha256`, and a
/// field's text as `value`), else `{"size", "sha256"}` (`null` when empty).
pub fn requests_json(reqs: &[Request]) -> Value {
    fn sha256(b: &[u8]) -> String {
        use sha2::Digest;
        sha2::Sha256::digest(b)
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect()
    }
    let one = |r: &Request| {
        let (path, query) = match r.path.split_once('?') {
            Some((p, q)) => {
                let pairs = q.split('&').filter(|kv| !kv.is_empty()).map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    (decode(k), Value::String(decode(v)))
                });
                (p, Value::Object(pairs.collect()))
            }
            None => (r.path.as_str(), Value::Null),
        };
        let headers: Map<String, Value> = (r.headers.iter())
            .map(|(k, v)| (k.to_ascii_lowercase(), Value::String(v.clone())))
            .collect();
        let ct = r.header("content-type").unwrap_or("");
        let body = if r.body.is_empty() {
            Value::Null
        } else if ct.starts_with("multipart/") {
            let parts = multipart(ct, &r.body).into_iter().map(|p| {
                let mut m = json!({"name": p.name, "filename": p.filename,
                    "contentType": p.content_type, "size": p.data.len(), "sha256": sha256(&p.data)});
                if p.filename.is_none() {
                    m["value"] = String::from_utf8_lossy(&p.data).into();
                }
                m
            });
            json!({"multipart": parts.collect::<Vec<_>>()})
        } else {
            serde_json::from_slice(&r.body)
                .unwrap_or_else(|_| json!({"size": r.body.len(), "sha256": sha256(&r.body)}))
        };
        json!({"method": r.method, "path": path, "query": query, "status": r.status,
            "headers": headers, "body": body})
    };
    json!({"requests": reqs.iter().map(one).collect::<Vec<_>>()})
}
