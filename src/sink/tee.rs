//! The store of a run: the local ML-Dash folder, a remote server (through the
//! spool of [`crate::remote`]), or both (hybrid). One [`Sink`] for the collector.
//!
//! Remote batches are cut from the same bytes the local store writes: a
//! metric line's `data` object, a log entry wrapped in braces, a track row.
//! In hybrid mode the spool is written first: a spool error keeps the batch
//! for a retry with nothing written anywhere. When the spool took a batch and
//! the local store then failed (a disk that filled up in between), the
//! collector retries the whole batch, which may have grown meanwhile: the Tee
//! remembers what of it is spooled already (the first lines of a metric or log
//! batch, the timestamps of track rows) and spools only the rest, so the
//! server gets each record once.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value as Json};

use super::local::LocalStore;
use super::{Batch, MetricBatch, Sink, TrackEntry};
use crate::api::Status;
use crate::encode;
use crate::error::Result;
use crate::files::FileEntry;
use crate::remote::{FileUpload, RemoteSink};
use crate::run::StreamInfo;

/// Local, remote or both.
#[derive(Debug)]
pub(crate) struct Tee {
    pub(crate) local: Option<LocalStore>,
    pub(crate) remote: Option<RemoteSink>,
    /// Where the data goes, for messages (the experiment folder or the spool).
    pub(crate) location: PathBuf,
    /// Remote-only mode numbers metric points itself.
    next_index: Vec<u64>,
    close_timeout: Duration,
    buf: Vec<u8>,
    items: Vec<(usize, usize)>,
    /// Lines of each metric stream's held batch already spooled (hybrid, after
    /// a local failure).
    spooled_metrics: Vec<usize>,
    /// Entries of the held log batch already spooled.
    spooled_logs: usize,
    /// Each topic's held rows already spooled: timestamp bits -> a hash of
    /// the row as spooled. A row that changed since (a later append with the
    /// same timestamp merged into it while the local store failed) is spooled
    /// again, whole.
    spooled_tracks: Vec<HashMap<u64, u64>>,
    /// The held parameter set (the oldest, retried first) is spooled already.
    spooled_params: bool,
    /// The remote sender panicked (kept from its close report).
    sender_panic: Option<String>,
    /// This process's rank of a job: it decides whether `finish` records
    /// the status (and when), and closes the rank's entry.
    pub(crate) member: Option<crate::ranks::Member>,
}

impl Tee {
    pub(crate) fn new(
        local: Option<LocalStore>,
        remote: Option<RemoteSink>,
        location: PathBuf,
        close_timeout: Duration,
    ) -> Tee {
        Tee {
            local,
            remote,
            location,
            next_index: Vec::new(),
            close_timeout,
            buf: Vec::new(),
            items: Vec::new(),
            spooled_metrics: Vec::new(),
            spooled_logs: 0,
            spooled_tracks: Vec::new(),
            spooled_params: false,
            sender_panic: None,
            member: None,
        }
    }
}

/// The slot for `id` in a per-stream table, grown on demand.
fn slot<T: Default>(v: &mut Vec<T>, id: u32) -> &mut T {
    let i = id as usize;
    if v.len() <= i {
        v.resize_with(i + 1, T::default);
    }
    &mut v[i]
}

/// The body fields the SDK sends with each batch of a metric stream: those
/// of its description, tags and metadata that are truthy in Python.
fn sent_info(info: &StreamInfo) -> Option<Vec<u8>> {
    let truthy = |v: &Json| match v {
        Json::Null => false,
        Json::Bool(b) => *b,
        Json::Number(n) => n.as_f64() != Some(0.0),
        Json::String(s) => !s.is_empty(),
        Json::Array(a) => !a.is_empty(),
        Json::Object(o) => !o.is_empty(),
    };
    let mut m = Map::new();
    if let Some(d) = info.description.as_ref().filter(|d| !d.is_empty()) {
        m.insert("description".into(), Json::from(d.as_str()));
    }
    if !info.tags.is_empty() {
        m.insert("tags".into(), Json::from(info.tags.clone()));
    }
    if let Some(md) = info.metadata.as_ref().filter(|md| truthy(md)) {
        m.insert("metadata".into(), md.clone());
    }
    (!m.is_empty()).then(|| serde_json::to_vec(&m).unwrap_or_default())
}

/// The `data` object of a local metric line
/// `{"index":N,"data":{...},"createdAt":"..."}\n`.
fn data_object(line: &[u8]) -> &[u8] {
    const DATA: &[u8] = b",\"data\":";
    const CREATED: &[u8] = b",\"createdAt\":\"";
    let start = line
        .windows(DATA.len())
        .position(|w| w == DATA)
        .map_or(0, |i| i + DATA.len());
    let end = line
        .windows(CREATED.len())
        .rposition(|w| w == CREATED)
        .unwrap_or(line.len());
    &line[start..end.max(start)]
}

impl Sink for Tee {
    fn location(&self) -> &Path {
        &self.location
    }

    fn metric_next_index(&mut self, id: u32, name: Option<&str>) -> Result<u64> {
        match &mut self.local {
            Some(l) => l.metric_next_index(id, name),
            None => Ok(self.next_index.get(id as usize).copied().unwrap_or(0)),
        }
    }

    fn append_metrics(
        &mut self,
        id: u32,
        name: Option<&str>,
        batch: &mut MetricBatch,
    ) -> Result<()> {
        if let Some(r) = &mut self.remote {
            let done = slot(&mut self.spooled_metrics, id);
            let points = (batch.lines.split_inclusive(|&c| c == b'\n'))
                .skip(*done)
                .map(data_object);
            let info = batch.info.as_deref().and_then(sent_info);
            r.append_metrics_with(name, info.as_deref(), points)?;
            *done = batch.count;
        }
        match &mut self.local {
            Some(l) => l.append_metrics(id, name, batch)?,
            None => {
                let i = id as usize;
                if self.next_index.len() <= i {
                    self.next_index.resize(i + 1, 0);
                }
                self.next_index[i] = batch.first_index + batch.count as u64;
            }
        }
        // The whole batch is stored: the next one starts unspooled.
        if let Some(done) = self.spooled_metrics.get_mut(id as usize) {
            *done = 0;
        }
        Ok(())
    }

    fn append_logs(&mut self, batch: &Batch) -> Result<()> {
        if self.remote.is_some() {
            self.buf.clear();
            self.items.clear();
            for entry in batch.items().skip(self.spooled_logs) {
                let a = self.buf.len();
                self.buf.push(b'{');
                self.buf.extend_from_slice(entry);
                self.buf.push(b'}');
                self.items.push((a, self.buf.len()));
            }
            let (buf, items) = (&self.buf, &self.items);
            if let Some(r) = &mut self.remote {
                r.append_logs(items.iter().map(|&(a, b)| &buf[a..b]))?;
            }
            self.spooled_logs = batch.len();
        }
        if let Some(l) = &mut self.local {
            l.append_logs(batch)?;
        }
        self.spooled_logs = 0;
        Ok(())
    }

    fn append_tracks(&mut self, id: u32, topic: &str, entries: &mut [TrackEntry]) -> Result<()> {
        if self.remote.is_some() {
            entries.sort_by(|a, b| a.ts.total_cmp(&b.ts));
            self.buf.clear();
            self.items.clear();
            let done = slot(&mut self.spooled_tracks, id);
            let mut spooled = Vec::new();
            for e in entries.iter() {
                let a = self.buf.len();
                self.buf.extend_from_slice(b"{\"timestamp\":");
                encode::f64(&mut self.buf, e.ts);
                for (name, value) in &e.fields {
                    self.buf.push(b',');
                    encode::str(&mut self.buf, name);
                    self.buf.push(b':');
                    self.buf.extend_from_slice(value.as_bytes());
                }
                self.buf.push(b'}');
                let mut h = DefaultHasher::new();
                self.buf[a..].hash(&mut h);
                let (ts, h) = (e.ts.to_bits(), h.finish());
                if done.get(&ts) == Some(&h) {
                    self.buf.truncate(a); // spooled before, unchanged
                    continue;
                }
                spooled.push((ts, h));
                self.items.push((a, self.buf.len()));
            }
            let (buf, items) = (&self.buf, &self.items);
            if let Some(r) = &mut self.remote {
                r.append_tracks(topic, items.iter().map(|&(a, b)| &buf[a..b]))?;
            }
            done.extend(spooled);
        }
        if let Some(l) = &mut self.local {
            l.append_tracks(id, topic, entries)?;
        }
        if let Some(done) = self.spooled_tracks.get_mut(id as usize) {
            done.clear();
        }
        Ok(())
    }

    fn set_params(&mut self, params: &Map<String, Json>) -> Result<()> {
        if let Some(r) = &mut self.remote
            && !self.spooled_params
        {
            r.merge_params(params)?;
            self.spooled_params = true;
        }
        if let Some(l) = &mut self.local {
            l.merge_params(params)?;
        }
        self.spooled_params = false;
        Ok(())
    }

    fn sync_all(&mut self) -> Result<()> {
        let remote = match &mut self.remote {
            Some(r) => r.sync(),
            None => Ok(()),
        };
        let local = match &mut self.local {
            Some(l) => l.sync_all(),
            None => Ok(()),
        };
        remote.and(local)
    }

    fn finish(&mut self, status: Status) -> Result<()> {
        if let Some(m) = &mut self.member {
            if !m.records_status() {
                // A non-zero rank (or a worker) of shared mode: no status,
                // locally or on the server; its entry says it closed.
                let synced = self.local.as_mut().map_or(Ok(()), LocalStore::sync_all);
                return synced.and(m.close(status));
            }
            m.wait_for_ranks();
        }
        let remote = match &mut self.remote {
            Some(r) => r.finish(status),
            None => Ok(()),
        };
        let local = match &mut self.local {
            Some(l) => l.finish(status),
            None => Ok(()),
        };
        let entry = self.member.as_mut().map_or(Ok(()), |m| m.close(status));
        remote.and(local).and(entry)
    }

    fn file_stored(&mut self, entry: &FileEntry, content: &Path, checksum: &str) -> Result<()> {
        match &mut self.remote {
            Some(r) => r.append_file(&FileUpload {
                source: content,
                // The local store keeps its copy; a remote-only run's work
                // area does not (the spool deletes the content once sent).
                owned: self.local.is_none(),
                path: &entry.path,
                filename: &entry.filename,
                content_type: &entry.content_type,
                checksum,
                description: entry.description.as_deref(),
                tags: &entry.tags,
                metadata: entry.metadata.as_ref(),
            }),
            None => Ok(()),
        }
    }

    fn heartbeat(&mut self) -> Result<()> {
        if self.member.as_ref().is_some_and(|m| !m.records_status()) {
            return Ok(()); // shared mode: rank 0's process holds the marker
        }
        self.local.as_mut().map_or(Ok(()), LocalStore::heartbeat)
    }

    fn keeps_summaries(&self) -> bool {
        self.local.is_some()
    }

    fn take_warnings(&mut self) -> Vec<String> {
        let mut w = (self.local.as_mut()).map_or_else(Vec::new, LocalStore::take_warnings);
        if let Some(m) = &mut self.member {
            w.extend(m.take_warnings());
        }
        w
    }

    fn shutdown(&mut self) -> Option<String> {
        let r = self.remote.take()?;
        let report = r.close(self.close_timeout);
        self.sender_panic = report.sender_panic.clone();
        // The report's text says how to send what is left, when anything is.
        Some(report.to_string())
    }

    fn dead_thread(&self) -> Option<String> {
        match &self.remote {
            Some(r) => r.died().map(str::to_owned),
            None => self.sender_panic.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::RemoteConfig;

    #[test]
    fn the_close_line_says_how_to_send_once() {
        // A server that refuses connections: the batch stays spooled.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = RemoteConfig::new(format!("http://127.0.0.1:{port}"), "o/p/e", dir.path());
        cfg.token = Some("t".into());
        cfg.quiet = true;
        let mut remote = RemoteSink::open(cfg).unwrap();
        remote.append_logs([&br#"{"message":"m"}"#[..]]).unwrap();
        let mut tee = Tee::new(None, Some(remote), dir.path().into(), Duration::ZERO);
        let line = tee.shutdown().unwrap();
        assert_eq!(line.matches("stay in the spool").count(), 1, "{line}");
        assert!(line.contains("ml_dash::sync"), "{line}");
    }

    #[test]
    fn data_objects_are_cut_from_lines() {
        let line = br#"{"index":12,"data":{"a":1,"createdAt":"x","_ts":2.5},"createdAt":"2026-01-01T00:00:00Z"}
"#;
        assert_eq!(data_object(line), br#"{"a":1,"createdAt":"x","_ts":2.5}"#);
    }
}
