//! One request's answer: the data requests in the server at once (and
//! the `gather` switch), the faults decided on the whole request,
//! deduplication by `Idempotency-Key`, then the endpoint (`routes.rs`).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::conn::{Raw, header, is_data};
use super::routes::{count_points, route};
use super::server::Inner;
use super::state::Request;

pub(super) type Answer = (u16, Vec<(String, String)>, Vec<u8>, Option<Duration>);

/// Answers one request, counting the data requests in the server at once.
pub(super) fn handle(inner: &Inner, raw: Raw) -> Answer {
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
