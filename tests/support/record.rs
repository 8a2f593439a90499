//! The record as one JSON document (`examples/record_server.rs`,
//! `tests/differential.rs`).

use serde_json::{Map, Value, json};

use super::multipart::multipart;
use super::routes::decode;
use super::state::Request;

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
