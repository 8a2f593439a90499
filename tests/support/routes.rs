//! The endpoints of ML-DASH.md §4: `route` dispatches on method and path;
//! the experiment's data (parameters, logs, metrics, tracks) is answered
//! here, nodes and GraphQL in `nodes.rs`; counting mode's metric batches in
//! `count_points`.

use serde_json::{Value, json};

use super::conn::{Raw, header};
use super::nodes::{create_node, file_node, graphql};
use super::state::State;

/// Counting mode: a metric batch is tallied, not kept (`None`: not one).
pub(super) fn count_points(st: &mut State, raw: &Raw) -> Option<(u16, Value)> {
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

pub(super) fn not_found() -> (u16, Value) {
    (404, json!({"error": "Not Found"}))
}

pub(super) fn bad(msg: &str) -> (u16, Value) {
    (400, json!({"error": "Bad Request", "message": msg}))
}

pub(super) fn decode(seg: &str) -> String {
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

pub(super) fn id_of(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

pub(super) fn route(st: &mut State, raw: &Raw) -> (u16, Value) {
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
