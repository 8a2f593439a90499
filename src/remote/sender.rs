//! The sender: reads spool sessions in order and delivers every record to
//! the server, acknowledging each one in the session's cursor. It runs on
//! the sink's sender thread, or on the caller's thread in [`super::sync`].
//!
//! Per session: create or upsert the experiment (GraphQL project lookup,
//! project, folders, experiment, as the Python SDK does), then each record:
//! params, log / metric / track batches (split at `max_batch_points` items or
//! `max_batch_bytes`, and halved again on 413), the status PATCH.
//!
//! ```text
//!  dispatcher (this thread)                 workers (scoped, up to max_in_flight)
//!  ------------------------                 -------------------------------------
//!  read records in spool order, up to
//!    max_in_flight waiting ahead
//!  logs / metrics / tracks: hand one out    deliver it (chunks in order, retries;
//!    when its stream is free (at most   -->   each request admitted by the gate's
//!    max_in_flight in delivery)               AIMD limit); commit: the cursor moves
//!                                             over the records done, in spool order
//!  params, status, files: once all before
//!    are handled, send here
//! ```
//!
//! At most one record per stream (logs, one metric name, one track topic) is
//! in delivery at a time, so the server gets each stream's batches in spool
//! order; different streams go in parallel. The cursor only moves over a
//! prefix of handled records, so after a kill the records past it are sent
//! again, with the same `Idempotency-Key`s.
//!
//! Connection errors, timeouts, 408, 429 and 5xx are retried: the failed
//! request waits a short jittered backoff of its own while the server takes
//! others; an outage (every recent request failed) collapses to one probe per
//! backoff, doubling up to `retry_max_delay`; a `Retry-After` holds all
//! requests; the in-flight limit adapts to the failure rate (see
//! [`super::flight`]). 409 on a node upsert is retried; 401/403 keep the data
//! and warn once (retried every `retry_max_delay` with the token looked up
//! again, never at close); any other 4xx puts the request in the dead-letter
//! file.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, mpsc};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value as Json, json};

use super::auth::{TokenSource, describe, resolve_token};
use super::flight::{Admit, Gate, after, retry_delay};
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
    /// The live session was read to its end, and every record of it handled,
    /// after close started.
    pub(crate) live_drained: bool,
    /// The sender has stopped.
    pub(crate) finished: bool,
    pub(crate) stats: Stats,
    /// The server's health as the sender's requests see it.
    pub(crate) gate: Gate,
    /// Requests waiting in [`Sender::admit`] (woken by a change of the gate).
    gate_waiters: u32,
    /// Streams with a record in delivery (one at most each).
    busy: Vec<StreamId>,
    /// A worker had to stop (close's deadline, or the dead-letter file could
    /// not be written): the session stops, its records stay spooled.
    stopped: bool,
}

/// A stream whose batches the server must get in order: the kind's tag and
/// the metric name or track topic.
type StreamId = (char, Option<String>);

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
    /// Retries of one request once close has begun (`None`: no limit).
    pub(crate) max_close_retries: Option<u32>,
    pub(crate) max_batch_points: usize,
    pub(crate) max_batch_bytes: usize,
    /// Records in delivery at once and requests out at once (the AIMD
    /// ceiling), at most; 1 to 64.
    pub(crate) max_in_flight: usize,
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

#[derive(Debug, Clone, Copy)]
struct Stop;

/// What the workers of one session share with its dispatcher.
struct Session<'a> {
    dir: &'a Path,
    live: bool,
    /// `<run id hex>-<pid>`, the start of every idempotency key.
    key_base: String,
    /// The experiment id, as a path segment.
    exp: String,
    commit: Mutex<Commit>,
}

/// A record handed to a worker.
struct Task {
    /// Its place in the session's [`Commit`].
    idx: u64,
    rec: Record,
    stream: StreamId,
    /// Items already acknowledged (a split record resumed after a restart).
    done_items: u32,
}

/// What the dispatcher waited for.
enum Work {
    /// A waiting record may be handed out.
    Ready,
    /// The live writer appended up to here.
    Data(Pos),
    /// Close started and everything appended was read.
    Closed,
}

/// The session's cursor, moved in spool order over the records handled
/// (with several in flight they finish out of order).
#[derive(Debug)]
struct Commit {
    ack: AckFile,
    dir: PathBuf,
    /// Records handed out and not yet behind the cursor, in spool order; the
    /// first has index `first`.
    slots: VecDeque<Slot>,
    first: u64,
}

#[derive(Debug)]
struct Slot {
    start: Pos,
    next: Pos,
    done: bool,
}

impl Commit {
    /// The record from `start` to `next` is being delivered; returns its index.
    fn push(&mut self, start: Pos, next: Pos) -> u64 {
        self.slots.push_back(Slot {
            start,
            next,
            done: false,
        });
        self.first + self.slots.len() as u64 - 1
    }

    /// The first `items` of record `idx` were taken: kept in the cursor when
    /// every record before it is handled.
    fn progress(&mut self, idx: u64, items: u32) {
        if idx == self.first
            && let Some(s) = self.slots.front()
        {
            let _ = self.ack.store(Cursor {
                pos: s.start,
                done_items: items,
            });
        }
    }

    /// Record `idx` is handled; returns how many records the cursor moved
    /// over and the bytes of the segments it left behind (deleted).
    fn done(&mut self, idx: u64) -> (u64, u64) {
        if let Some(s) = self.slots.get_mut((idx - self.first) as usize) {
            s.done = true;
        }
        let n = self.slots.iter().take_while(|s| s.done).count();
        if n == 0 {
            return (0, 0);
        }
        let (from, to) = (self.slots[0].start, self.slots[n - 1].next);
        self.slots.drain(..n);
        self.first += n as u64;
        let _ = self.ack.store(Cursor {
            pos: to,
            done_items: 0,
        });
        let freed = if to.seg > from.seg {
            SessionReader::new(&self.dir, to)
                .delete_before(to.seg)
                .unwrap_or(0)
        } else {
            0
        };
        (n as u64, freed)
    }
}

/// Warnings given once, and the outage clock.
#[derive(Debug, Default)]
struct Notes {
    token_from: Option<TokenSource>,
    outage_since: Option<Instant>,
    warned_outage: bool,
    warned_auth: bool,
    warned_dead: bool,
    warned_nonfinite: bool,
}

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
    /// Also held while a line goes into the dead-letter file.
    notes: Mutex<Notes>,
    /// The namespace of the session being sent.
    owner: String,
}

impl Sender {
    pub(crate) fn new(cfg: SendConfig, shared: Arc<Shared>) -> Sender {
        let client = Client::new(
            DEFAULT_DASH_URL,
            None,
            cfg.connect_timeout,
            cfg.max_in_flight,
        );
        shared.lock().gate =
            Gate::new(cfg.max_in_flight, cfg.retry_base_delay, cfg.retry_max_delay);
        let s = Sender {
            cfg,
            shared,
            client,
            notes: Mutex::default(),
            owner: String::new(),
        };
        s.refresh_token();
        s
    }

    fn notes(&self) -> MutexGuard<'_, Notes> {
        self.notes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn refresh_token(&self) {
        let lookup = resolve_token(self.cfg.token.as_deref());
        for w in lookup.warnings {
            self.warn(w);
        }
        match lookup.token {
            Some((t, from)) => {
                self.client.set_token(Some(&t));
                self.notes().token_from = Some(from);
            }
            None => {
                self.client.set_token(None);
                self.notes().token_from = None;
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
        let (ack, cursor) = match opened {
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
        let s = Session {
            dir: &job.dir,
            live: job.live,
            key_base: format!("{:016x}-{}", job.id.run, job.id.pid),
            exp: encode_segment(&ids.experiment),
            commit: Mutex::new(Commit {
                ack,
                dir: job.dir.clone(),
                slots: VecDeque::new(),
                first: 0,
            }),
        };
        self.shared.lock().stopped = false;
        let this = &*self;
        let (tx, rx) = mpsc::channel::<Task>();
        let rx = Mutex::new(rx);
        let unread = std::thread::scope(|scope| {
            let mut workers = 0;
            let r = this.dispatch(&s, cursor, &mut ids, |in_flight| {
                if in_flight > workers {
                    workers += 1;
                    let (s, rx) = (&s, &rx);
                    let spawned = std::thread::Builder::new()
                        .name("ml-dash-send".into())
                        .spawn_scoped(scope, move || this.work(s, rx));
                    if let Err(e) = spawned {
                        workers -= 1;
                        if workers == 0 {
                            this.warn(format!("cannot start a sender thread: {e}"));
                            return None;
                        }
                        // The workers there are take it.
                    }
                }
                Some(&tx)
            });
            drop(tx); // the workers end once the tasks are taken
            r
        })?;
        let commit = s.commit.into_inner().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = unread {
            let left = left.saturating_sub(commit.first);
            self.undeliverable(job, left, format!("its segments cannot be read: {e}"));
            return Ok(());
        }
        if !job.live {
            // A finished session, all handled: remove it.
            let left = session_bytes(&job.dir);
            let _ = commit.ack.sync();
            if fs::remove_dir_all(&job.dir).is_ok() {
                let mut st = self.shared.lock();
                st.stats.spool_bytes = st.stats.spool_bytes.saturating_sub(left);
                st.stats.sessions_replayed += 1;
            }
        }
        Ok(())
    }

    /// Reads the session's records in order and hands each out: data records
    /// to a worker (`worker(in_flight)` makes sure there is one and gives the
    /// channel) once their stream is free, reading ahead past busy streams
    /// (up to `max_in_flight` records waiting); params, status and files are
    /// sent here, after everything before them and with nothing in flight.
    /// Returns once everything read is handled (the live session: after close
    /// started); `Some(error)` when the spool could not be read to its end.
    fn dispatch<'t>(
        &self,
        s: &Session<'_>,
        cursor: Cursor,
        ids: &mut ExpIds,
        mut worker: impl FnMut(usize) -> Option<&'t mpsc::Sender<Task>>,
    ) -> Result<Option<std::io::Error>, Stop> {
        let mut reader = SessionReader::new(s.dir, cursor.pos);
        reader.repair = !s.live;
        let mut done_items = cursor.done_items;
        let mut rec = Record::default();
        let mut body = Vec::new();
        let mut waiting = VecDeque::new();
        let mut unread = None;
        let mut end = false;
        loop {
            self.hand_out(s, &mut waiting, &mut worker)?;
            if end && waiting.is_empty() {
                break;
            }
            let can_read = !end && waiting.len() < self.cfg.max_in_flight;
            let limit = match (can_read, s.live) {
                (false, _) => {
                    self.wait_for_work(&waiting, None)?;
                    continue;
                }
                (true, true) => match self.wait_for_work(&waiting, Some(reader.pos()))? {
                    Work::Ready => continue,
                    Work::Data(l) => Some(l),
                    Work::Closed => {
                        end = true;
                        continue;
                    }
                },
                (true, false) => None,
            };
            let start = reader.pos();
            let next = match reader.next(&mut rec, limit) {
                Ok(Some(p)) => p,
                Ok(None) if s.live => continue,
                Ok(None) => {
                    end = true;
                    continue;
                }
                Err(e) => {
                    (end, unread) = (true, Some(e));
                    continue;
                }
            };
            let idx = lock(&s.commit).push(start, next);
            let items = std::mem::take(&mut done_items);
            match stream_of(&rec) {
                Some(stream) => waiting.push_back(Task {
                    idx,
                    rec: std::mem::take(&mut rec),
                    stream,
                    done_items: items,
                }),
                None => {
                    while !waiting.is_empty() {
                        self.wait_for_work(&waiting, None)?;
                        self.hand_out(s, &mut waiting, &mut worker)?;
                    }
                    self.idle()?;
                    let r = self.deliver_here(&rec, ids, s, &mut body);
                    self.finish(s, idx, None, r);
                    r?;
                }
            }
        }
        self.idle()?;
        if s.live && unread.is_none() {
            let mut st = self.shared.lock();
            st.live_drained = true;
            self.shared.cv.notify_all();
        }
        Ok(unread)
    }

    /// Hands out the waiting records that may go now: in spool order, each
    /// whose stream has nothing in delivery, up to `max_in_flight` records in
    /// delivery (the gate limits how many of their requests are out).
    fn hand_out<'t>(
        &self,
        s: &Session<'_>,
        waiting: &mut VecDeque<Task>,
        worker: &mut impl FnMut(usize) -> Option<&'t mpsc::Sender<Task>>,
    ) -> Result<(), Stop> {
        loop {
            let (task, in_flight) = {
                let mut st = self.shared.lock();
                if st.abandon || st.stopped {
                    return Err(Stop);
                }
                if st.busy.len() >= self.cfg.max_in_flight {
                    return Ok(());
                }
                let Some(i) = waiting.iter().position(|t| !st.busy.contains(&t.stream)) else {
                    return Ok(());
                };
                let Some(task) = waiting.remove(i) else {
                    return Ok(());
                };
                st.busy.push(task.stream.clone());
                (task, st.busy.len())
            };
            let unsent = match worker(in_flight) {
                Some(tx) => tx.send(task).err().map(|e| e.0),
                None => Some(task),
            };
            if let Some(t) = unsent {
                // No worker to take it: it stays spooled.
                self.finish(s, t.idx, Some(&t.stream), Err(Stop));
                return Err(Stop);
            }
        }
    }

    /// Waits until a waiting record may be handed out (`Ready`), or, with
    /// `read` (the live session's reader position), until the writer
    /// appended past it (`Data`) or close started with nothing more (`Closed`).
    fn wait_for_work(&self, waiting: &VecDeque<Task>, read: Option<Pos>) -> Result<Work, Stop> {
        let mut st = self.shared.lock();
        loop {
            if st.abandon || st.stopped {
                return Err(Stop);
            }
            if st.busy.len() < self.cfg.max_in_flight
                && waiting.iter().any(|t| !st.busy.contains(&t.stream))
            {
                return Ok(Work::Ready);
            }
            if let Some(pos) = read {
                if st.written > pos {
                    return Ok(Work::Data(st.written));
                }
                if st.closing.is_some() {
                    return Ok(Work::Closed);
                }
            }
            st = self.shared.wait(st, self.cfg.retry_max_delay);
        }
    }

    /// A worker: delivers the records handed to it until the channel closes.
    fn work(&self, s: &Session<'_>, tasks: &Mutex<mpsc::Receiver<Task>>) {
        let mut body = Vec::with_capacity(256 * 1024);
        loop {
            let Ok(task) = lock(tasks).recv() else {
                return;
            };
            let r = if self.shared.lock().stopped {
                Err(Stop)
            } else {
                let progress = |items| lock(&s.commit).progress(task.idx, items);
                self.deliver(&task.rec, s, task.done_items, &mut body, &progress)
            };
            self.finish(s, task.idx, Some(&task.stream), r);
        }
    }

    /// Record `idx` was handled (`Ok`) or must stay spooled (`Err`): moves
    /// the cursor and the counters, frees its stream.
    fn finish(&self, s: &Session<'_>, idx: u64, stream: Option<&StreamId>, r: Result<(), Stop>) {
        let (records, freed) = match r {
            Ok(()) => lock(&s.commit).done(idx),
            Err(Stop) => (0, 0),
        };
        let mut st = self.shared.lock();
        if r.is_err() {
            st.stopped = true;
        }
        if let Some(stream) = stream {
            st.busy.retain(|b| b != stream);
        }
        st.stats.pending_records = st.stats.pending_records.saturating_sub(records);
        st.stats.spool_bytes = st.stats.spool_bytes.saturating_sub(freed);
        if s.live {
            st.live_done += records;
        }
        self.shared.cv.notify_all();
    }

    /// Waits until no record is in delivery.
    fn idle(&self) -> Result<(), Stop> {
        let mut st = self.shared.lock();
        loop {
            if st.abandon || st.stopped {
                return Err(Stop);
            }
            if st.busy.is_empty() {
                return Ok(());
            }
            st = self.shared.wait(st, self.cfg.retry_max_delay);
        }
    }

    /// Counts what an adopted session still holds (as pending) and truncates
    /// a torn tail. `None` when nothing is to be sent: the session was empty
    /// (and is removed) or cannot be read (reported undeliverable).
    fn recover(&self, job: &Job, from: Pos) -> Option<u64> {
        let mut r = SessionReader::new(&job.dir, from);
        r.repair = true;
        let mut n = 0u64;
        let mut rec = Record::default();
        let failed = loop {
            match r.next(&mut rec, None) {
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
    fn descriptor(&self, job: &Job, records: u64) -> Option<Descriptor> {
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

    /// Sends a params, status or file record (on the dispatcher, nothing else in flight).
    fn deliver_here(
        &self,
        rec: &Record,
        ids: &mut ExpIds,
        s: &Session<'_>,
        body: &mut Vec<u8>,
    ) -> Result<(), Stop> {
        let kind = rec.kind();
        if rec.is_empty() || kind == Kind::Session {
            return Ok(()); // a session record is skipped by the reader; never sent
        }
        let key = record_key(&s.key_base, rec);
        if kind == Kind::File {
            return self.send_file(rec.item(0), ids, &key, s.dir);
        }
        body.clear();
        let (method, path) = if kind == Kind::Status {
            let status = String::from_utf8_lossy(rec.item(0)).into_owned();
            serde_json::to_writer(&mut *body, &json!({ "status": status })).unwrap_or_default();
            (
                Method::Patch,
                format!("/api/nodes/{}", encode_segment(&ids.node)),
            )
        } else {
            body.extend_from_slice(b"{\"data\":");
            let nulled = push_finite(body, rec.item(0));
            body.push(b'}');
            self.count_nonfinite(nulled);
            (
                Method::Post,
                format!("/api/experiments/{}/parameters", s.exp),
            )
        };
        match self.request(method, &path, Body::Json(body), Some(&key), false) {
            Ok(_) => {
                self.stats(|s| {
                    s.sent_records += 1;
                    s.sent_items += 1;
                });
                Ok(())
            }
            Err(Fail::Stop) => Err(Stop),
            Err(Fail::TooLarge(b)) => self.dead_letter(413, &b, method, &path, &key, body, 1, None),
            Err(Fail::Rejected { status, body: b }) => {
                self.dead_letter(status, &b, method, &path, &key, body, 1, None)
            }
        }
    }

    /// Sends a log, metric or track batch (on a worker): chunks in order from
    /// item `done_items`, `progress(items)` after each chunk but the last.
    fn deliver(
        &self,
        rec: &Record,
        s: &Session<'_>,
        done_items: u32,
        body: &mut Vec<u8>,
        progress: &dyn Fn(u32),
    ) -> Result<(), Stop> {
        let kind = rec.kind();
        let key = record_key(&s.key_base, rec);
        let exp = &s.exp;
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
        let mut a = done_items.min(n);
        while a < n {
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
                    nulled += push_finite(body, rec.item(i as usize));
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
                    Body::Json(body),
                    Some(&chunk_key),
                    false,
                ) {
                    Ok(_) => {
                        self.count_nonfinite(nulled);
                        self.stats(|s| s.sent_items += items);
                    }
                    Err(Fail::Stop) => return Err(Stop),
                    Err(Fail::TooLarge(_)) if y - x > 1 => {
                        let mid = x + (y - x) / 2;
                        stack.push((mid, y));
                        stack.push((x, mid));
                        self.stats(|s| s.splits += 1);
                        continue;
                    }
                    Err(Fail::TooLarge(msg)) => {
                        self.dead_letter(
                            413,
                            &msg,
                            Method::Post,
                            &path,
                            &chunk_key,
                            body,
                            items,
                            None,
                        )?;
                    }
                    Err(Fail::Rejected { status, body: msg }) => {
                        self.dead_letter(
                            status,
                            &msg,
                            Method::Post,
                            &path,
                            &chunk_key,
                            body,
                            items,
                            None,
                        )?;
                    }
                }
                a = y;
                if y < n {
                    progress(y);
                }
            }
        }
        self.stats(|s| s.sent_records += 1);
        Ok(())
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

    fn count_nonfinite(&self, n: u64) {
        if n == 0 {
            return;
        }
        self.stats(|s| s.nonfinite_nulled += n);
        let first = !std::mem::replace(&mut self.notes().warned_nonfinite, true);
        if first {
            self.warn(
                "NaN or infinite values were sent to the server as null (it cannot store them); \
                 a local store keeps them as NaN / Infinity tokens (see the close report's count)"
                    .to_owned(),
            );
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn dead_letter(
        &self,
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
        let (written, first) = {
            // One line at a time from all workers.
            let mut notes = self.notes();
            let written = fs::create_dir_all(&self.cfg.spool_dir).and_then(|()| {
                let mut f = OpenOptions::new().create(true).append(true).open(&file)?;
                f.write_all(&line)?;
                f.sync_data()
            });
            let first = written.is_ok() && !std::mem::replace(&mut notes.warned_dead, true);
            (written, first)
        };
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
        if first {
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
    /// when close's deadline passes, when it failed more than
    /// `max_close_retries` times since close began, or the sender must stop.
    fn request(
        &self,
        method: Method,
        path: &str,
        body: Body<'_>,
        key: Option<&str>,
        retry_conflict: bool,
    ) -> Result<Vec<u8>, Fail> {
        let mut attempt = 0u32;
        let mut failed_closing = 0u32;
        let mut ready = Instant::now();
        loop {
            let (timeout, closing, probe) = self.admit(ready)?;
            let answer = self.client.send(method, path, body, key, timeout);
            self.stats(|s| s.requests += 1);
            let now = Instant::now();
            let delay = match answer {
                Answer::Ok(b) => {
                    self.on_success(probe);
                    return Ok(b);
                }
                Answer::Transient {
                    why,
                    retry_after,
                    overload,
                } => {
                    if retry_after.is_some() {
                        self.stats(|s| s.retry_after_honoured += 1);
                    }
                    let d = self.gate(|g| g.failure(now, probe, attempt, retry_after, overload));
                    self.on_failure(why);
                    d
                }
                Answer::Auth { status, body } => {
                    self.gate(|g| g.answered(probe));
                    self.on_auth_failure(status, &body);
                    if closing {
                        return Err(Fail::Stop);
                    }
                    self.cfg.retry_max_delay
                }
                Answer::Conflict(b) if retry_conflict => {
                    self.gate(|g| g.answered(probe));
                    self.on_failure(format!("HTTP 409: {b}"));
                    retry_delay(attempt, self.cfg.retry_base_delay)
                }
                other => {
                    self.gate(|g| g.answered(probe));
                    return Err(match other {
                        Answer::Conflict(body) => Fail::Rejected { status: 409, body },
                        Answer::TooLarge(b) => Fail::TooLarge(b),
                        Answer::Rejected { status, body } => Fail::Rejected { status, body },
                        Answer::Unsendable(why) => Fail::Rejected {
                            status: 0,
                            body: why,
                        },
                        Answer::Ok(_) | Answer::Transient { .. } | Answer::Auth { .. } => {
                            unreachable!("matched above")
                        }
                    });
                }
            };
            if closing {
                failed_closing += 1;
                if self
                    .cfg
                    .max_close_retries
                    .is_some_and(|m| failed_closing > m)
                {
                    // Close's retry budget is spent: every worker stops, the
                    // rest stays in the spool.
                    let mut st = self.shared.lock();
                    st.abandon = true;
                    self.shared.cv.notify_all();
                    return Err(Fail::Stop);
                }
            }
            attempt = attempt.saturating_add(1);
            self.stats(|s| s.retries += 1);
            ready = after(now, delay);
        }
    }

    /// Changes the gate and wakes the requests waiting on it.
    fn gate<R>(&self, f: impl FnOnce(&mut Gate) -> R) -> R {
        let mut st = self.shared.lock();
        let r = f(&mut st.gate);
        if st.gate_waiters > 0 {
            self.shared.cv.notify_all();
        }
        r
    }

    /// Waits until this request may be sent: its own backoff ends at `ready`,
    /// then the gate lets it go (see [`Gate::admit`]). Returns its timeout,
    /// whether close started, and whether it is the outage probe. A close
    /// starting during the wait ends it (one more try); `Err(Fail::Stop)` if
    /// close's deadline passes first (or the sender must stop).
    fn admit(&self, ready: Instant) -> Result<(Duration, bool, bool), Fail> {
        let mut st = self.shared.lock();
        let calls = st.close_calls;
        loop {
            if st.abandon || st.stopped {
                return Err(Fail::Stop);
            }
            let now = Instant::now();
            let deadline = st.closing;
            if deadline.is_some_and(|d| now >= d) {
                return Err(Fail::Stop);
            }
            let hurry = st.close_calls != calls;
            let wake = if !hurry && now < ready {
                Some(ready)
            } else {
                match st.gate.admit(now, hurry) {
                    Admit::Go { probe } => {
                        let timeout = deadline.map_or(self.cfg.request_timeout, |d| {
                            (d - now).min(self.cfg.request_timeout)
                        });
                        return Ok((timeout, deadline.is_some(), probe));
                    }
                    // Until then, or until the probe's answer wakes us.
                    Admit::Wait(t) => t,
                }
            };
            let until = wake.into_iter().chain(deadline).min();
            let d = until.map_or(self.cfg.retry_max_delay, |u| u - now);
            st.gate_waiters += 1;
            st = self.shared.wait(st, d);
            st.gate_waiters -= 1;
        }
    }

    fn on_success(&self, probe: bool) {
        self.gate(|g| g.success(probe));
        let back = {
            let mut n = self.notes();
            let back = n.outage_since.take().is_some() && n.warned_outage;
            n.warned_outage = false;
            n.warned_auth = false;
            back
        };
        if back && !self.cfg.quiet {
            eprintln!(
                "[ML-Dash] the server at {} answers again; spooled data is being sent",
                self.client.base()
            );
        }
        self.stats(|s| s.auth_failed = false);
    }

    fn on_failure(&self, why: String) {
        let (pending, dir) = {
            let mut st = self.shared.lock();
            st.stats.last_error = Some(why.clone());
            (st.stats.pending_records, self.cfg.spool_dir.clone())
        };
        let since = {
            let mut n = self.notes();
            let since = *n.outage_since.get_or_insert_with(Instant::now);
            let warn = !n.warned_outage && since.elapsed() >= self.cfg.delivery_timeout;
            n.warned_outage |= warn;
            warn.then_some(since)
        };
        if let Some(since) = since {
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

    fn on_auth_failure(&self, status: u16, body: &str) {
        self.stats(|s| {
            s.auth_failed = true;
            s.last_error = Some(format!("HTTP {status}: {body}"));
        });
        let from = {
            let mut n = self.notes();
            let first = !std::mem::replace(&mut n.warned_auth, true);
            first.then(|| n.token_from.clone())
        };
        if let Some(from) = from {
            let from = describe(from.as_ref());
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
        &self,
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
    fn send_file(&self, item: &[u8], ids: &mut ExpIds, key: &str, dir: &Path) -> Result<(), Stop> {
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

/// The stream of a log, metric or track record; `None` for params, status
/// and files (sent with nothing else in flight).
fn stream_of(rec: &Record) -> Option<StreamId> {
    match rec.kind() {
        Kind::Logs | Kind::Metrics | Kind::Tracks => {
            Some((rec.kind().tag(), rec.stream().map(str::to_owned)))
        }
        Kind::Params | Kind::Status | Kind::File | Kind::Session => None,
    }
}

/// `<key_base>-<stream>-<seq>`: the record's idempotency key (a chunk of a
/// split record adds `.<from>-<to>`).
fn record_key(key_base: &str, rec: &Record) -> String {
    let kind = rec.kind();
    match rec.stream() {
        Some(s) => format!(
            "{key_base}-{}{:08x}-{}",
            kind.tag(),
            crc32fast::hash(s.as_bytes()),
            rec.seq()
        ),
        None => format!("{key_base}-{}-{}", kind.tag(), rec.seq()),
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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
    fn the_cursor_moves_only_over_records_all_handled() {
        let dir = tempfile::tempdir().unwrap();
        let (ack, _) = AckFile::open(dir.path()).unwrap();
        let mut c = Commit {
            ack,
            dir: dir.path().to_owned(),
            slots: VecDeque::new(),
            first: 0,
        };
        let pos = |off| Pos { seg: 1, off };
        let cursor = || AckFile::open(dir.path()).unwrap().1;
        let idx: Vec<u64> = (0..4)
            .map(|i| c.push(pos(i * 10), pos(i * 10 + 10)))
            .collect();
        assert_eq!(c.done(idx[1]), (0, 0), "record 0 is still out");
        c.progress(idx[2], 7);
        assert_eq!(
            cursor(),
            Cursor::default(),
            "only the first record's items count"
        );
        c.progress(idx[0], 3);
        assert_eq!(cursor().pos, pos(0));
        assert_eq!(cursor().done_items, 3);
        assert_eq!(c.done(idx[0]).0, 2, "records 0 and 1");
        assert_eq!(cursor().pos, pos(20));
        assert_eq!(cursor().done_items, 0);
        assert_eq!(c.done(idx[3]).0, 0);
        assert_eq!(c.done(idx[2]).0, 2);
        assert_eq!(cursor().pos, pos(40));
        assert_eq!(c.push(pos(40), pos(50)), 4);
    }

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
