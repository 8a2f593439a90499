//! One connection: HTTP/1.1 requests read one after the other, the faults
//! decided before the body is read (black hole, reset), the idle timeout,
//! and the answer written back (built by `answer.rs`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::io::AsRawFd;

use super::answer::handle;
use super::server::Inner;
use super::state::Request;

pub(super) struct Raw {
    pub(super) method: String,
    pub(super) path: String,
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: Vec<u8>,
}

pub(super) fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
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

pub(super) fn serve(inner: &Inner, conn: TcpStream) {
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

pub(super) fn is_data(path: &str) -> bool {
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
