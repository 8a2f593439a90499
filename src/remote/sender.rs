//! The sender: reads spool sessions in order and delivers every record to
//! the server, acknowledging each one in the session's cursor. It runs on
//! the sink's sender thread, or on the caller's thread in [`super::sync`].
//!
//! Per session: create or upsert the experiment (GraphQL project lookup,
//! project, folders, experiment, as the Python SDK does), then each record in
//! order: params, log / metric / track batches (split at `max_batch_points`
//! items or `max_batch_bytes`, and halved again on 413), the status PATCH.
//! Connection errors, timeouts, 408, 429 and 5xx are retried with doubling
//! backoff and jitter (a `Retry-After` is obeyed); 409 on a node upsert is
//! retried; 401/403 keep the data and warn once (retried every
//! `retry_max_delay` with the token looked up again, never at close); any
//! other 4xx puts the request in the dead-letter file.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value as Json, json};

use super::auth::{TokenSource, describe, resolve_token};
use super::http::{Answer, Body, Client, Method, encode_segment, excerpt, push_finite};
use super::{Stats, UndeliverableSession};
use crate::spool::{
    self, AckFile, Cursor, DEAD_LETTER_FILE, Kind, Pos, Record, SESSION_FILE, SessionId,
    SessionReader, session_bytes,
};

/// Where refused files go (beside the dead-letter file).
pub(crate) const DEAD_LETTER_FILES: &str = "dead-letter-files";

/// The GraphQL query the Python SDK sends to find the project id (byte for byte).
pub(crate) const GET_PROJECT_QUERY: &str = "\n        query GetProject($namespace: String!) {\n          namespace(slug: $namespace) {\n            projects {\n              id\n              slug\n            }\n          }\n        }\n        ";

/// Room for the `{"dataPoints":[` ... `]}` wrapper when sizing a request.
const WRAPPER_BYTES: usize = 32;

/// State shared by the sink (writer and closer) and the sender.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) state: Mutex<State>,
    pub(crate) cv: Condvar,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits on the condition variable for at most `d` (a notify, a timeout or
    /// a spurious wake-up: callers re-check their condition).
    pub(crate) fn wait<'a>(&self, st: MutexGuard<'a, State>, d: Duration) -> MutexGuard<'a, State> {
        self.cv
            .wait_timeout(st, d)
            .unwrap_or_else(|e| e.into_inner())
            .0
    }
}

#[derive(Debug, Default)]
pub(crate) struct State {
    /// End of what the live writer has appended (readers stop there).
    pub(crate) written: Pos,
    /// Records of the live session appended and handled (sent or dead-lettered).
    pub(crate) live_appended: u64,
    pub(crate) live_done: u64,
    /// Set by close (or from the start in `sync`): the wall-clock end of delivery.
    pub(crate) closing: Option<Instant>,
    /// Bumped by close so a sender in backoff retries at once.
    pub(crate) close_calls: u64,
    /// Stop now: close returned (its deadline passed).
    pub(crate) abandon: bool,
    /// The live session was read to its end after close started.
    pub(crate) live_drained: bool,
    /// The sender has stopped.
    pub(crate) finished: bool,
    pub(crate) stats: Stats,
}

/// How the sender works.
#[derive(Debug, Clone)]
pub(crate) struct SendConfig {
    /// Server URL overriding the sessions' own.
    pub(crate) dash_url: Option<String>,
    /// Explicit token (else `ML_DASH_TOKEN`, else the SDK's stores: see `auth`).
    pub(crate) token: Option<String>,
    pub(crate) retry_base_delay: Duration,
    pub(crate) retry_max_delay: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) delivery_timeout: Duration,
    pub(crate) max_batch_points: usize,
    pub(crate) max_batch_bytes: usize,
    pub(crate) quiet: bool,
    pub(crate) spool_dir: PathBuf,
}

/// One session to send; `lock` is held until it is done.
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) dir: PathBuf,
    pub(crate) id: SessionId,
    pub(crate) live: bool,
    /// Never read: held for its `flock` until the job is done.
    #[allow(dead_code)]
    pub(crate) lock: Arc<File>,
}

/// The server's ids of the experiment (kept as the JSON the server sent:
/// integers or strings, never floats).
#[derive(Debug, Clone)]
struct ExpIds {
    experiment: String,
    node: String,
    /// The same ids as the server sent them (sent back unchanged in bodies).
    experiment_json: Json,
    node_json: Json,
    project_json: Option<Json>,
    /// Folder nodes made for files: logical path -> id.
    folders: std::collections::HashMap<String, Json>,
}

/// Why a request did not succeed.
enum Fail {
    /// Close's deadline passed or the sender must stop; the data stays spooled.
    Stop,
    TooLarge(String),
    Rejected {
        status: u16,
        body: String,
    },
}

struct Stop;

/// The session descriptor (`session.json`).
#[derive(Debug, Clone)]
pub(crate) struct Descriptor {
    pub(crate) prefix: String,
    pub(crate) dash_url: Option<String>,
    pub(crate) description: Option<String>,
    pub(crate) tags: Option<Vec<String>>,
    pub(crate) bindrs: Option<Vec<String>>,
    pub(crate) metadata: Option<Json>,
}

impl Descriptor {
    pub(crate) fn to_json(&self, id: &SessionId) -> Vec<u8> {
        let v = json!({
            "format": 1,
            "prefix": self.prefix,
            "dashUrl": self.dash_url,
            "description": self.description,
            "tags": self.tags,
            "bindrs": self.bindrs,
            "metadata": self.metadata,
            "run": format!("{:016x}", id.run),
            "pid": id.pid,
            "createdMs": id.created_ms,
        });
        serde_json::to_vec_pretty(&v).unwrap_or_default()
    }

    pub(crate) fn read(session_dir: &Path) -> Result<Descriptor, String> {
        let p = session_dir.join(SESSION_FILE);
        let bytes = fs::read(&p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
        Descriptor::parse(&bytes, &p.display().to_string())
    }

    /// Parses a descriptor; `what` names it in the error.
    pub(crate) fn parse(bytes: &[u8], what: &str) -> Result<Descriptor, String> {
        let v: Json =
            serde_json::from_slice(bytes).map_err(|e| format!("{what} does not parse: {e}"))?;
        let s = |k: &str| v.get(k).and_then(Json::as_str).map(str::to_owned);
        let list = |k: &str| {
            v.get(k).and_then(Json::as_array).map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect()
            })
        };
        Ok(Descriptor {
            prefix: s("prefix").ok_or_else(|| format!("{what} has no prefix"))?,
            dash_url: s("dashUrl"),
            description: s("description"),
            tags: list("tags"),
            bindrs: list("bindrs"),
            metadata: v.get("metadata").filter(|m| !m.is_null()).cloned(),
        })
    }
}

/// Default server when neither the options nor the session name one.
pub(crate) const DEFAULT_DASH_URL: &str = "https://api.dash.ml";

pub(crate) struct Sender {
    cfg: SendConfig,
    shared: Arc<Shared>,
    client: Client,
    token_from: Option<TokenSource>,
    rec: Record,
    body: Vec<u8>,
    outage_since: Option<Instant>,
    warned_outage: bool,
    warned_auth: bool,
    warned_dead: bool,
    warned_nonfinite: bool,
    /// The namespace of the session being sent.
    owner: String,
}

impl Sender {
    pub(crate) fn new(cfg: SendConfig, shared: Arc<Shared>) -> Sender {
        let client = Client::new(DEFAULT_DASH_URL, None, cfg.connect_timeout);
        let mut s = Sender {
            cfg,
            shared,
            client,
            token_from: None,
            rec: Record::default(),
            body: Vec::with_capacity(256 * 1024),
            outage_since: None,
            warned_outage: false,
            warned_auth: false,
            warned_dead: false,
            warned_nonfinite: false,
            owner: String::new(),
        };
        s.refresh_token();
        s
    }

    fn refresh_token(&mut self) {
        let lookup = resolve_token(self.cfg.token.as_deref());
        for w in lookup.warnings {
            self.warn(w);
        }
        match lookup.token {
            Some((t, from)) => {
                self.client.set_token(Some(&t));
                self.token_from = Some(from);
            }
            None => {
                self.client.set_token(None);
                self.token_from = None;
            }
        }
    }

    /// Sends every job in order; marks the sender finished at the end.
    pub(crate) fn run(mut self, jobs: Vec<Job>) {
        struct Finish(Arc<Shared>);
        impl Drop for Finish {
            fn drop(&mut self) {
                let mut st = self.0.lock();
                st.finished = true;
                self.0.cv.notify_all();
            }
        }
        let _finish = Finish(self.shared.clone());
        for job in jobs {
            if self.session(&job).is_err() {
                break;
            }
        }
    }

    fn stats(&self, f: impl FnOnce(&mut Stats)) {
        let mut st = self.shared.lock();
        f(&mut st.stats);
    }

    pub(crate) fn warn(&self, msg: String) {
        if !self.cfg.quiet {
            eprintln!("[ML-Dash] warning: {msg}");
        }
        self.stats(|s| s.warnings.push(msg));
    }

    fn session(&mut self, job: &Job) -> Result<(), Stop> {
        let opened = AckFile::open(&job.dir);
        // An adopted session is counted before anything can stop it: what is
        // not sent stays counted as pending.
        let mut left = 0;
        if !job.live {
            let from = opened.as_ref().map(|(_, c)| c.pos).unwrap_or_default();
            match self.recover(job, from) {
                Some(n) => left = n,
                None => return Ok(()),
            }
        }
        let (mut ack, cursor) = match opened {
            Ok(x) => x,
            Err(e) => {
                let p = job.dir.join("ack");
                self.undeliverable(
                    job,
                    left,
                    format!("its cursor {} cannot be opened: {e}", p.display()),
                );
                return Ok(());
            }
        };
        let Some(desc) = self.descriptor(job, left) else {
            return Ok(());
        };
        let base = self
            .cfg
            .dash_url
            .clone()
            .or_else(|| desc.dash_url.clone())
            .unwrap_or_else(|| DEFAULT_DASH_URL.to_owned());
        self.client.set_base(&base);
        let Some(mut ids) = self.open_experiment(&desc, &job.dir)? else {
            // open_experiment warned why: that warning is the reason.
            let why = self.shared.lock().stats.warnings.last().cloned();
            let why = why.unwrap_or_else(|| "the server refused it".into());
            self.list_undeliverable(job, left, format!("its experiment was not created: {why}"));
            return Ok(());
        };
        let mut reader = SessionReader::new(&job.dir, cursor.pos);
        reader.repair = !job.live;
        let mut done_items = cursor.done_items;
        let key_base = format!("{:016x}-{}", job.id.run, job.id.pid);
        loop {
            let limit = if job.live {
                match self.wait_for_data(reader.pos())? {
                    Some(l) => Some(l),
                    None => return Ok(()),
                }
            } else {
                None
            };
            let start = reader.pos();
            let next = match reader.next(&mut self.rec, limit) {
                Ok(Some(p)) => p,
                Ok(None) if job.live => continue,
                Ok(None) => break,
                Err(e) => {
                    self.undeliverable(job, left, format!("its segments cannot be read: {e}"));
                    return Ok(());
                }
            };
            let rec = std::mem::take(&mut self.rec);
            let r = self.deliver(
                &rec,
                &mut ids,
                &key_base,
                start,
                &mut done_items,
                &mut ack,
                &job.dir,
            );
            self.rec = rec;
            r?;
            done_items = 0;
            let _ = ack.store(Cursor {
                pos: next,
                done_items: 0,
            });
            let freed = if next.seg > start.seg {
                reader.delete_before(next.seg).unwrap_or(0)
            } else {
                0
            };
            left = left.saturating_sub(1);
            let mut st = self.shared.lock();
            st.stats.pending_records = st.stats.pending_records.saturating_sub(1);
            st.stats.spool_bytes = st.stats.spool_bytes.saturating_sub(freed);
            if job.live {
                st.live_done += 1;
            }
            self.shared.cv.notify_all();
        }
        // A finished session, all handled: remove it.
        let left = session_bytes(&job.dir);
        let _ = ack.sync();
        if fs::remove_dir_all(&job.dir).is_ok() {
            let mut st = self.shared.lock();
            st.stats.spool_bytes = st.stats.spool_bytes.saturating_sub(left);
            st.stats.sessions_replayed += 1;
        }
        Ok(())
    }

    /// Counts what an adopted session still holds (as pending) and truncates
    /// a torn tail. `None` when nothing is to be sent: the session was empty
    /// (and is removed) or cannot be read (reported undeliverable).
    fn recover(&mut self, job: &Job, from: Pos) -> Option<u64> {
        let mut r = SessionReader::new(&job.dir, from);
        r.repair = true;
        let mut n = 0u64;
        let failed = loop {
            match r.next(&mut self.rec, None) {
                Ok(Some(_)) => n += 1,
                Ok(None) => break None,
                Err(e) => break Some(e),
            }
        };
        let damage = r.damage();
        let bytes = session_bytes(&job.dir);
        {
            let mut st = self.shared.lock();
            st.stats.pending_records += n;
            st.stats.spool_bytes += bytes;
            st.stats.damage.add(damage);
        }
        if let Some(e) = failed {
            let why = format!("its segments cannot be read past {n} batch(es): {e}");
            self.undeliverable(job, n, why);
            return None;
        }
        if !damage.is_clean() {
            self.warn(format!(
                "the spool in {} was damaged (a process killed while writing, or a disk fault): \
                 {} torn tail(s) truncated, {} corrupt stretch(es) skipped, {} bytes in all; \
                 every intact batch is kept and sent",
                job.dir.display(),
                damage.torn_tails,
                damage.corrupt_stretches,
                damage.bytes
            ));
        }
        if n == 0 {
            if fs::remove_dir_all(&job.dir).is_ok() {
                let mut st = self.shared.lock();
                st.stats.spool_bytes = st.stats.spool_bytes.saturating_sub(bytes);
            }
            return None;
        }
        Some(n)
    }

    /// The session's descriptor: `session.json`, else the copy its segments
    /// hold (then `session.json` is rewritten from it). `None` when neither
    /// is usable: the session is reported undeliverable.
    fn descriptor(&mut self, job: &Job, records: u64) -> Option<Descriptor> {
        let broken = match Descriptor::read(&job.dir) {
            Ok(d) => return Some(d),
            Err(e) => e,
        };
        let copy = match spool::descriptor_copy(&job.dir) {
            Ok(Some(bytes)) => {
                Descriptor::parse(&bytes, "the copy in its segments").map(|d| (d, bytes))
            }
            Ok(None) => Err(
                "no segment holds an intact copy of it (all damaged, or written \
                             before ml-dash kept one)"
                    .to_owned(),
            ),
            Err(e) => Err(format!("its segments cannot be read: {e}")),
        };
        match copy {
            Ok((d, bytes)) => {
                let rewritten = match spool::write_descriptor(&job.dir, &bytes) {
                    Ok(()) => "session.json is rewritten from it".to_owned(),
                    Err(e) => format!("session.json cannot be rewritten: {e}"),
                };
                self.stats(|s| s.sessions_restored += 1);
                self.warn(format!(
                    "{broken}; the session is rebuilt from the copy in its segments \
                     ({rewritten}) and sent"
                ));
                Some(d)
            }
            Err(why) => {
                let fix = format!(
                    "write {} holding {{\"prefix\": \"owner/project/name\"}} (the experiment \
                     its data belongs to) and sync again",
                    job.dir.join(SESSION_FILE).display()
                );
                self.undeliverable(job, records, format!("{broken}, and {why}; {fix}"));
                None
            }
        }
    }

    /// Leaves a session that cannot be sent as it is, with a warning: its
    /// records stay on disk, counted as pending, and are listed with the reason.
    fn undeliverable(&self, job: &Job, records: u64, reason: String) {
        self.warn(format!(
            "the spool session {} cannot be sent: {reason}; its batches stay there untouched",
            job.dir.display()
        ));
        self.list_undeliverable(job, records, reason);
    }

    /// [`undeliverable`](Self::undeliverable) without the warning. A live
    /// session's count is what it holds now (close updates it).
    fn list_undeliverable(&self, job: &Job, records: u64, reason: String) {
        let mut st = self.shared.lock();
        let records = if job.live {
            st.live_appended.saturating_sub(st.live_done)
        } else {
            records
        };
        st.stats.undeliverable.push(UndeliverableSession {
            session_dir: job.dir.clone(),
            records,
            reason,
        });
    }

    /// Waits until the live writer has appended past `pos`; `None` once close
    /// started and everything was read.
    fn wait_for_data(&self, pos: Pos) -> Result<Option<Pos>, Stop> {
        let mut st = self.shared.lock();
        loop {
            if st.abandon {
                return Err(Stop);
            }
            if st.written > pos {
                return Ok(Some(st.written));
            }
            if st.closing.is_some() {
                st.live_drained = true;
                self.shared.cv.notify_all();
                return Ok(None);
            }
            st = self.shared.cv.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn deliver(
        &mut self,
        rec: &Record,
        ids: &mut ExpIds,
        key_base: &str,
        start: Pos,
        done_items: &mut u32,
        ack: &mut AckFile,
        dir: &Path,
    ) -> Result<(), Stop> {
        let kind = rec.kind();
        let stream_tag = match rec.stream() {
            Some(s) => format!("{}{:08x}", kind.tag(), crc32fast::hash(s.as_bytes())),
            None => kind.tag().to_string(),
        };
        let key = format!("{key_base}-{stream_tag}-{}", rec.seq());
        let exp = encode_segment(&ids.experiment);
        match kind {
            Kind::Session => Ok(()), // skipped by the reader; never sent
            Kind::File => {
                if rec.is_empty() {
                    return Ok(());
                }
                self.send_file(rec.item(0), ids, &key, dir)
            }
            Kind::Status | Kind::Params => {
                if rec.is_empty() {
                    return Ok(());
                }
                let mut body = std::mem::take(&mut self.body);
                body.clear();
                let (method, path) = if kind == Kind::Status {
                    let status = String::from_utf8_lossy(rec.item(0)).into_owned();
                    serde_json::to_writer(&mut body, &json!({ "status": status }))
                        .unwrap_or_default();
                    (
                        Method::Patch,
                        format!("/api/nodes/{}", encode_segment(&ids.node)),
                    )
                } else {
                    body.extend_from_slice(b"{\"data\":");
                    let nulled = push_finite(&mut body, rec.item(0));
                    body.push(b'}');
                    self.count_nonfinite(nulled);
                    (Method::Post, format!("/api/experiments/{exp}/parameters"))
                };
                let r = self.request(method, &path, Body::Json(&body), Some(&key), false);
                let out = match r {
                    Ok(_) => {
                        self.stats(|s| {
                            s.sent_records += 1;
                            s.sent_items += 1;
                        });
                        Ok(())
                    }
                    Err(Fail::Stop) => Err(Stop),
                    Err(Fail::TooLarge(b)) => {
                        self.dead_letter(413, &b, method, &path, &key, &body, 1, None)
                    }
                    Err(Fail::Rejected { status, body: b }) => {
                        self.dead_letter(status, &b, method, &path, &key, &body, 1, None)
                    }
                };
                self.body = body;
                out
            }
            Kind::Logs | Kind::Metrics | Kind::Tracks => {
                let (path, head): (String, &[u8]) = match kind {
                    Kind::Logs => (format!("/api/experiments/{exp}/logs"), b"{\"logs\":["),
                    Kind::Metrics => (
                        format!(
                            "/api/experiments/{exp}/metrics/{}/append-batch",
                            encode_segment(rec.stream().unwrap_or("None"))
                        ),
                        b"{\"dataPoints\":[",
                    ),
                    _ => (
                        format!(
                            "/api/experiments/{exp}/tracks/{}/append_batch",
                            encode_segment(rec.stream().unwrap_or(""))
                        ),
                        b"{\"entries\":[",
                    ),
                };
                let n = rec.len() as u32;
                let mut a = (*done_items).min(n);
                let mut body = std::mem::take(&mut self.body);
                let mut out = Ok(());
                'outer: while a < n {
                    let b = self.greedy_end(rec, a, n);
                    let mut stack = vec![(a, b)];
                    while let Some((x, y)) = stack.pop() {
                        let chunk_key = if x == 0 && y == n {
                            key.clone()
                        } else {
                            format!("{key}.{x}-{y}")
                        };
                        body.clear();
                        body.extend_from_slice(head);
                        let mut nulled = 0;
                        for i in x..y {
                            if i > x {
                                body.push(b',');
                            }
                            nulled += push_finite(&mut body, rec.item(i as usize));
                        }
                        body.push(b']');
                        // The stream's info, beside `dataPoints` as the SDK sends it.
                        match rec.info().and_then(|i| i.strip_prefix(b"{")) {
                            Some(rest) if rest != b"}" => {
                                body.push(b',');
                                body.extend_from_slice(rest);
                            }
                            _ => body.push(b'}'),
                        }
                        let items = u64::from(y - x);
                        match self.request(
                            Method::Post,
                            &path,
                            Body::Json(&body),
                            Some(&chunk_key),
                            false,
                        ) {
                            Ok(_) => {
                                self.count_nonfinite(nulled);
                                self.stats(|s| s.sent_items += items);
                            }
                            Err(Fail::Stop) => {
                                out = Err(Stop);
                                break 'outer;
                            }
                            Err(Fail::TooLarge(_)) if y - x > 1 => {
                                let mid = x + (y - x) / 2;
                                stack.push((mid, y));
                                stack.push((x, mid));
                                self.stats(|s| s.splits += 1);
                                continue;
                            }
                            Err(e @ (Fail::TooLarge(_) | Fail::Rejected { .. })) => {
                                let (status, msg) = match e {
                                    Fail::Rejected { status, body } => (status, body),
                                    Fail::TooLarge(body) => (413, body),
                                    Fail::Stop => unreachable!("matched above"),
                                };
                                let r = self.dead_letter(
                                    status,
                                    &msg,
                                    Method::Post,
                                    &path,
                                    &chunk_key,
                                    &body,
                                    items,
                                    None,
                                );
                                if r.is_err() {
                                    out = r;
                                    break 'outer;
                                }
                            }
                        }
                        a = y;
                        *done_items = y;
                        if y < n {
                            let _ = ack.store(Cursor {
                                pos: start,
                                done_items: y,
                            });
                        }
                    }
                }
                self.body = body;
                if out.is_ok() {
                    self.stats(|s| s.sent_records += 1);
                }
                out
            }
        }
    }

    /// The end of the chunk starting at item `a`: at most `max_batch_points`
    /// items and `max_batch_bytes` of body (at least one item). Greedy from
    /// `a`, so a restart from a chunk boundary cuts the same chunks (and keys).
    fn greedy_end(&self, rec: &Record, a: u32, n: u32) -> u32 {
        let max_points = self.cfg.max_batch_points.max(1) as u32;
        let mut bytes = WRAPPER_BYTES + rec.info().map_or(0, <[u8]>::len);
        let mut i = a;
        while i < n && i - a < max_points {
            let l = rec.item(i as usize).len() + 1;
            if i > a && bytes + l > self.cfg.max_batch_bytes {
                break;
            }
            bytes += l;
            i += 1;
        }
        i
    }

    fn count_nonfinite(&mut self, n: u64) {
        if n == 0 {
            return;
        }
        self.stats(|s| s.nonfinite_nulled += n);
        if !self.warned_nonfinite {
            self.warned_nonfinite = true;
            self.warn(
                "NaN or infinite values were sent to the server as null (it cannot store them); \
                 a local store keeps them as NaN / Infinity tokens (see the close report's count)"
                    .to_owned(),
            );
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn dead_letter(
        &mut self,
        status: u16,
        answer: &str,
        method: Method,
        path: &str,
        key: &str,
        body: &[u8],
        items: u64,
        blob: Option<&Path>,
    ) -> Result<(), Stop> {
        let file = self.cfg.spool_dir.join(DEAD_LETTER_FILE);
        // A refused file's content is kept beside the dead-letter file.
        let kept = blob.and_then(|b| {
            let d = self.cfg.spool_dir.join(DEAD_LETTER_FILES);
            let name = b.file_name()?;
            let to = d.join(format!("{}-{}", key, name.to_string_lossy()));
            fs::create_dir_all(&d).ok()?;
            fs::rename(b, &to).ok()?;
            Some(to)
        });
        let mut line = Vec::with_capacity(body.len() + 256);
        let s = |v: &str| serde_json::to_string(v).unwrap_or_else(|_| "\"\"".into());
        let time = humantime::format_rfc3339_micros(SystemTime::now()).to_string();
        line.extend_from_slice(
            format!(
                "{{\"time\":{},\"status\":{status},\"method\":\"{}\",\"url\":{},\"idempotencyKey\":{},\"answer\":{},\"body\":",
                s(&time),
                method.as_str(),
                s(&format!("{}{path}", self.client.base())),
                s(key),
                s(answer)
            )
            .as_bytes(),
        );
        if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() {
            line.extend_from_slice(body);
        } else {
            line.extend_from_slice(s(&String::from_utf8_lossy(body)).as_bytes());
        }
        if let Some(k) = &kept {
            line.extend_from_slice(b",\"file\":");
            line.extend_from_slice(s(&k.display().to_string()).as_bytes());
        }
        line.extend_from_slice(b"}\n");
        let written = fs::create_dir_all(&self.cfg.spool_dir).and_then(|()| {
            let mut f = OpenOptions::new().create(true).append(true).open(&file)?;
            f.write_all(&line)?;
            f.sync_data()
        });
        if let Err(e) = written {
            self.warn(format!(
                "the server refused a batch (HTTP {status}) and it could not be put in {}: {e}; \
                 it stays in the spool and sending stops",
                file.display()
            ));
            return Err(Stop);
        }
        self.stats(|s| {
            s.dead_lettered += 1;
            s.dead_lettered_items += items;
            s.dead_letter_file = Some(file.clone());
        });
        if !self.warned_dead {
            self.warned_dead = true;
            self.warn(format!(
                "the server refused a request ({} {path}: HTTP {status} {}); it is not retried and is kept, \
                 with the answer, in {} (later refusals go there too)",
                method.as_str(),
                excerpt(answer.as_bytes()).chars().take(200).collect::<String>(),
                file.display()
            ));
        }
        Ok(())
    }

    /// One request, retried while it may succeed later. `Err(Fail::Stop)`
    /// when close's deadline passes (or the sender must stop).
    fn request(
        &mut self,
        method: Method,
        path: &str,
        body: Body<'_>,
        key: Option<&str>,
        retry_conflict: bool,
    ) -> Result<Vec<u8>, Fail> {
        let mut attempt = 0u32;
        loop {
            let (timeout, closing) = {
                let st = self.shared.lock();
                if st.abandon {
                    return Err(Fail::Stop);
                }
                match st.closing {
                    Some(d) => {
                        let left = d.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            return Err(Fail::Stop);
                        }
                        (left.min(self.cfg.request_timeout), true)
                    }
                    None => (self.cfg.request_timeout, false),
                }
            };
            let answer = self.client.send(method, path, body, key, timeout);
            self.stats(|s| s.requests += 1);
            let delay = match answer {
                Answer::Ok(b) => {
                    self.on_success();
                    return Ok(b);
                }
                Answer::Transient { why, retry_after } => {
                    self.on_failure(why);
                    match retry_after {
                        Some(d) => {
                            self.stats(|s| s.retry_after_honoured += 1);
                            d
                        }
                        None => self.backoff(attempt),
                    }
                }
                Answer::Auth { status, body } => {
                    self.on_auth_failure(status, &body);
                    if closing {
                        return Err(Fail::Stop);
                    }
                    self.cfg.retry_max_delay
                }
                Answer::Conflict(b) if retry_conflict => {
                    self.on_failure(format!("HTTP 409: {b}"));
                    self.backoff(attempt)
                }
                Answer::Conflict(b) => {
                    return Err(Fail::Rejected {
                        status: 409,
                        body: b,
                    });
                }
                Answer::TooLarge(b) => return Err(Fail::TooLarge(b)),
                Answer::Rejected { status, body } => return Err(Fail::Rejected { status, body }),
                Answer::Unsendable(why) => {
                    return Err(Fail::Rejected {
                        status: 0,
                        body: why,
                    });
                }
            };
            attempt = attempt.saturating_add(1);
            self.stats(|s| s.retries += 1);
            if !self.pause(delay) {
                return Err(Fail::Stop);
            }
        }
    }

    /// `retry_base_delay * 2^attempt`, at most `retry_max_delay`, with jitter
    /// (uniform in the upper half).
    fn backoff(&self, attempt: u32) -> Duration {
        let base = self.cfg.retry_base_delay;
        let d = base
            .checked_mul(1u32 << attempt.min(20))
            .unwrap_or(self.cfg.retry_max_delay)
            .min(self.cfg.retry_max_delay);
        d.mul_f64(0.5 + fastrand::f64() * 0.5)
    }

    /// Waits `delay`; `false` if close's deadline passes first (or the sender
    /// must stop). A close starting during the wait ends it (one more try).
    fn pause(&self, delay: Duration) -> bool {
        let until = super::instant_after(delay);
        let mut st = self.shared.lock();
        let calls = st.close_calls;
        loop {
            if st.abandon {
                return false;
            }
            let now = Instant::now();
            let mut wake = until;
            if let Some(d) = st.closing {
                if now >= d {
                    return false;
                }
                wake = wake.min(d);
            }
            if st.close_calls != calls || now >= wake {
                return true;
            }
            st = self.shared.wait(st, wake - now);
        }
    }

    fn on_success(&mut self) {
        if self.outage_since.take().is_some() && self.warned_outage && !self.cfg.quiet {
            eprintln!(
                "[ML-Dash] the server at {} answers again; spooled data is being sent",
                self.client.base()
            );
        }
        self.warned_outage = false;
        if self.warned_auth {
            self.warned_auth = false;
        }
        self.stats(|s| s.auth_failed = false);
    }

    fn on_failure(&mut self, why: String) {
        let since = *self.outage_since.get_or_insert_with(Instant::now);
        let (pending, dir) = {
            let mut st = self.shared.lock();
            st.stats.last_error = Some(why.clone());
            (st.stats.pending_records, self.cfg.spool_dir.clone())
        };
        if !self.warned_outage && since.elapsed() >= self.cfg.delivery_timeout {
            self.warned_outage = true;
            self.warn(format!(
                "the server at {} has not taken data for {} s (last error: {why}); {pending} batch(es) \
                 are kept in the spool at {} and retried every {} s at most, nothing is dropped. \
                 They are sent when the server is back, by the next run that opens this spool, \
                 or by ml_dash::sync",
                self.client.base(),
                since.elapsed().as_secs(),
                dir.display(),
                self.cfg.retry_max_delay.as_secs_f64()
            ));
        }
    }

    fn on_auth_failure(&mut self, status: u16, body: &str) {
        self.stats(|s| {
            s.auth_failed = true;
            s.last_error = Some(format!("HTTP {status}: {body}"));
        });
        if !self.warned_auth {
            self.warned_auth = true;
            let from = describe(self.token_from.as_ref());
            self.warn(format!(
                "the server at {} refused {from} (HTTP {status}): run `ml-dash login` to sign in again. \
                 Nothing is lost: the data stays in the spool at {} and is sent once the token works",
                self.client.base(),
                self.cfg.spool_dir.display()
            ));
        }
        // `ml-dash login` may have written a new token meanwhile.
        self.refresh_token();
    }

    /// A request whose answer is a JSON document; `Ok(None)` after a refusal
    /// (warned), `Err(Stop)` when close's deadline passed.
    fn request_json(
        &mut self,
        path: &str,
        body: &Json,
        what: &str,
        dir: &Path,
    ) -> Result<Option<Json>, Stop> {
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        let refused = |s: &Self, why: String| {
            s.warn(format!(
                "the server at {} refused {what} ({why}); the run's batches stay in the spool at {} \
                 (send them later with ml_dash::sync)",
                s.client.base(),
                dir.display()
            ));
        };
        match self.request(Method::Post, path, Body::Json(&bytes), None, true) {
            Ok(b) => match serde_json::from_slice::<Json>(&b) {
                Ok(v) => Ok(Some(v)),
                Err(e) => {
                    refused(self, format!("its answer is not JSON: {e}"));
                    Ok(None)
                }
            },
            Err(Fail::Stop) => Err(Stop),
            Err(Fail::TooLarge(b)) => {
                refused(self, format!("HTTP 413: {b}"));
                Ok(None)
            }
            Err(Fail::Rejected { status, body }) => {
                refused(self, format!("HTTP {status}: {body}"));
                Ok(None)
            }
        }
    }

    /// Creates or upserts the experiment as the Python SDK does.
    fn open_experiment(&mut self, d: &Descriptor, dir: &Path) -> Result<Option<ExpIds>, Stop> {
        let parts: Vec<&str> = d.prefix.trim_matches('/').split('/').collect();
        if parts.len() < 2 || parts.iter().any(|p| p.is_empty()) {
            self.warn(format!(
                "the spool in {} names an invalid prefix {:?}; its batches stay there",
                dir.display(),
                d.prefix
            ));
            return Ok(None);
        }
        let (owner, project, name) = (parts[0], parts[1], parts[parts.len() - 1]);
        self.owner = owner.to_owned();
        let folders: &[&str] = if parts.len() > 3 {
            &parts[2..parts.len() - 1]
        } else {
            &[]
        };
        let nodes = format!("/api/namespaces/{}/nodes", encode_segment(owner));
        let what = format!("to create the experiment {}", d.prefix);

        // 1. The project's id, if it exists (GraphQL, as the SDK).
        let q = json!({"query": GET_PROJECT_QUERY, "variables": {"namespace": owner}});
        let Some(ans) = self.request_json("/graphql", &q, &what, dir)? else {
            return Ok(None);
        };
        if let Some(errs) = ans.get("errors") {
            self.warn(format!(
                "the server at {} refused {what} (GraphQL: {errs}); the run's batches stay in the spool at {}",
                self.client.base(),
                dir.display()
            ));
            return Ok(None);
        }
        let ns = ans.get("data").and_then(|d| d.get("namespace"));
        let Some(ns) = ns.filter(|n| !n.is_null()) else {
            self.warn(format!(
                "the namespace {owner:?} does not exist on the server at {}; the run's batches stay in \
                 the spool at {}",
                self.client.base(),
                dir.display()
            ));
            return Ok(None);
        };
        let mut project_id: Option<Json> = ns
            .get("projects")
            .and_then(Json::as_array)
            .and_then(|ps| {
                ps.iter()
                    .find(|p| p.get("slug").and_then(Json::as_str) == Some(project))
            })
            .and_then(|p| p.get("id"))
            .filter(|id| id_text(id).is_some())
            .cloned();

        let mut parent = Json::String("ROOT".into());
        if !folders.is_empty() {
            // 2. The project itself, when folders need its id.
            if project_id.is_none() {
                let body = json!({"type": "PROJECT", "name": project, "slug": project});
                let Some(ans) = self.request_json(&nodes, &body, &what, dir)? else {
                    return Ok(None);
                };
                project_id = ans
                    .get("project")
                    .and_then(|p| p.get("id"))
                    .filter(|id| id_text(id).is_some())
                    .cloned();
            }
            // 3. The folders between project and name.
            if let Some(pid) = &project_id {
                for f in folders {
                    let body =
                        json!({"type": "FOLDER", "projectId": pid, "parentId": parent, "name": f});
                    let Some(ans) = self.request_json(&nodes, &body, &what, dir)? else {
                        return Ok(None);
                    };
                    match ans.get("node").and_then(|n| n.get("id")) {
                        Some(id) if id_text(id).is_some() => parent = id.clone(),
                        _ => {
                            self.bad_answer(&what, "a folder without an integer or string id", dir);
                            return Ok(None);
                        }
                    }
                }
            }
        }
        // 4. The experiment.
        let mut body = serde_json::Map::new();
        body.insert("type".into(), "EXPERIMENT".into());
        body.insert("name".into(), name.into());
        body.insert("parentId".into(), parent);
        match &project_id {
            Some(pid) => body.insert("projectId".into(), pid.clone()),
            None => body.insert("projectSlug".into(), project.into()),
        };
        if let Some(x) = &d.description {
            body.insert("description".into(), x.clone().into());
        }
        if let Some(x) = &d.tags {
            body.insert("tags".into(), x.clone().into());
        }
        if let Some(x) = &d.bindrs {
            body.insert("bindrs".into(), x.clone().into());
        }
        if let Some(x) = &d.metadata {
            body.insert("metadata".into(), x.clone());
        }
        let Some(ans) = self.request_json(&nodes, &Json::Object(body), &what, dir)? else {
            return Ok(None);
        };
        let exp_json = ans.get("experiment").and_then(|e| e.get("id")).cloned();
        let node_json = ans.get("node").and_then(|e| e.get("id")).cloned();
        let project_json = project_id.or_else(|| {
            ans.get("project")
                .and_then(|p| p.get("id"))
                .filter(|id| id_text(id).is_some())
                .cloned()
        });
        let exp = exp_json.as_ref().and_then(id_text);
        let node = node_json.as_ref().and_then(id_text);
        match (exp, node, exp_json, node_json) {
            (Some(experiment), Some(node), Some(experiment_json), Some(node_json)) => {
                Ok(Some(ExpIds {
                    experiment,
                    node,
                    experiment_json,
                    node_json,
                    project_json,
                    folders: Default::default(),
                }))
            }
            _ => {
                self.bad_answer(&what, "no integer or string experiment.id and node.id", dir);
                Ok(None)
            }
        }
    }

    /// Sends one spooled file: its folders under the experiment node (as the
    /// SDK: `FOLDER` nodes with `experimentId`), then the multipart `FILE`
    /// node, the content streamed from the blob. The blob is removed once sent.
    fn send_file(
        &mut self,
        item: &[u8],
        ids: &mut ExpIds,
        key: &str,
        dir: &Path,
    ) -> Result<(), Stop> {
        let desc: Json = match serde_json::from_slice(item) {
            Ok(v) => v,
            Err(e) => {
                self.warn(format!(
                    "a spooled file descriptor in {} does not parse ({e}); skipped",
                    dir.display()
                ));
                return Ok(());
            }
        };
        let text = |k: &str| desc.get(k).and_then(Json::as_str).unwrap_or("").to_owned();
        let blob = dir.join(text("blob"));
        let (filename, logical) = (text("filename"), text("path"));
        let nodes = format!("/api/namespaces/{}/nodes", encode_segment(&self.owner));
        let Some(project) = ids.project_json.clone() else {
            self.warn(format!(
                "the server gave no project id for the experiment, so {filename} cannot be \
                 uploaded; it stays in {}",
                blob.display()
            ));
            return Ok(());
        };
        let mut parent = ids.node_json.clone();
        let mut walked = String::new();
        for seg in logical.split('/').filter(|s| !s.is_empty()) {
            walked.push('/');
            walked.push_str(seg);
            if let Some(id) = ids.folders.get(&walked) {
                parent = id.clone();
                continue;
            }
            let body = json!({"type": "FOLDER", "projectId": project,
                "experimentId": ids.experiment_json, "parentId": parent, "name": seg});
            let bytes = serde_json::to_vec(&body).unwrap_or_default();
            let id = match self.request(Method::Post, &nodes, Body::Json(&bytes), None, true) {
                Ok(b) => serde_json::from_slice::<Json>(&b)
                    .ok()
                    .and_then(|v| v.get("node")?.get("id").cloned())
                    .filter(|id| id_text(id).is_some()),
                Err(Fail::Stop) => return Err(Stop),
                Err(Fail::TooLarge(b)) => {
                    return self.dead_letter(
                        413,
                        &b,
                        Method::Post,
                        &nodes,
                        key,
                        item,
                        1,
                        Some(&blob),
                    );
                }
                Err(Fail::Rejected { status, body: b }) => {
                    return self.dead_letter(
                        status,
                        &b,
                        Method::Post,
                        &nodes,
                        key,
                        item,
                        1,
                        Some(&blob),
                    );
                }
            };
            let Some(id) = id else {
                self.bad_answer(
                    "to create a file's folder",
                    "a folder without an integer or string id",
                    dir,
                );
                return Ok(());
            };
            ids.folders.insert(walked.clone(), id.clone());
            parent = id;
        }
        let boundary = format!("{:032x}", fastrand::u128(..));
        let mut head = Vec::with_capacity(1024);
        let mut field = |name: &str, value: &str| {
            head.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
                )
                .as_bytes(),
            );
        };
        let id_str = |v: &Json| id_text(v).unwrap_or_else(|| "ROOT".into());
        field("type", "FILE");
        field("projectId", &id_str(&project));
        field("experimentId", &ids.experiment);
        field("parentId", &id_str(&parent));
        field("name", &filename);
        field("checksum", &text("checksum"));
        if let Some(d) = desc
            .get("description")
            .and_then(Json::as_str)
            .filter(|d| !d.is_empty())
        {
            field("description", d);
        }
        let tags: Vec<&str> = desc
            .get("tags")
            .and_then(Json::as_array)
            .map(|a| a.iter().filter_map(Json::as_str).collect())
            .unwrap_or_default();
        if !tags.is_empty() {
            field("tags", &tags.join(","));
        }
        if let Some(m) = desc
            .get("metadata")
            .filter(|m| m.as_object().is_some_and(|o| !o.is_empty()))
        {
            field("metadata", &m.to_string());
        }
        let quoted: String = filename
            .chars()
            .filter(|c| *c != '\r' && *c != '\n')
            .map(|c| if c == '"' { '\'' } else { c })
            .collect();
        let content_type = Some(text("contentType"))
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| "application/octet-stream".into());
        head.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; \
                 filename=\"{quoted}\"\r\nContent-Type: {content_type}\r\n\r\n"
            )
            .as_bytes(),
        );
        let tail = format!("\r\n--{boundary}--\r\n");
        let body = Body::Multipart {
            boundary: &boundary,
            head: &head,
            file: &blob,
            tail: tail.as_bytes(),
        };
        match self.request(Method::Post, &nodes, body, Some(key), true) {
            Ok(_) => {
                let size = fs::metadata(&blob).map(|m| m.len()).unwrap_or(0);
                let _ = fs::remove_file(&blob);
                self.stats(|s| {
                    s.sent_records += 1;
                    s.sent_items += 1;
                    s.spool_bytes = s.spool_bytes.saturating_sub(size);
                });
                Ok(())
            }
            Err(Fail::Stop) => Err(Stop),
            Err(Fail::TooLarge(b)) => {
                self.dead_letter(413, &b, Method::Post, &nodes, key, item, 1, Some(&blob))
            }
            Err(Fail::Rejected { status, body: b }) => {
                self.dead_letter(status, &b, Method::Post, &nodes, key, item, 1, Some(&blob))
            }
        }
    }

    fn bad_answer(&self, what: &str, why: &str, dir: &Path) {
        self.warn(format!(
            "the server at {} answered the request {what} with {why}; the run's batches stay in the \
             spool at {}",
            self.client.base(),
            dir.display()
        ));
    }
}

/// An id as text: a JSON integer or string, never a float.
fn id_text(v: &Json) -> Option<String> {
    match v {
        Json::String(s) if !s.is_empty() => Some(s.clone()),
        Json::Number(n) if n.is_u64() || n.is_i64() => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_integers_or_strings_never_floats() {
        let v: Json = serde_json::from_str(
            r#"[7355667590605628123, "7355667590605628124", 1.5e18, 12.0, null]"#,
        )
        .unwrap();
        let a = v.as_array().unwrap();
        assert_eq!(id_text(&a[0]).as_deref(), Some("7355667590605628123"));
        assert_eq!(id_text(&a[1]).as_deref(), Some("7355667590605628124"));
        assert_eq!(id_text(&a[2]), None);
        assert_eq!(id_text(&a[3]), None);
        assert_eq!(id_text(&a[4]), None);
    }
}
