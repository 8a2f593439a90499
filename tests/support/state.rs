//! What the server holds ([`State`]), what it received ([`Request`]), what
//! counting mode keeps of a metric stream ([`Tally`]) and the files it took
//! ([`StoredFile`]): what tests query through [`super::TestServer::state`].

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::faults::Faults;

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

/// What the server holds.
#[derive(Debug, Default)]
pub struct State {
    pub requests: Vec<Request>,
    pub(super) seen: HashMap<String, (u16, Vec<u8>)>,
    pub(super) next_id: u64,
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
    pub(super) rng: Option<fastrand::Rng>,
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

impl State {
    pub(super) fn id(&mut self) -> u64 {
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

    pub(super) fn push_request(&mut self, mut req: Request) {
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
