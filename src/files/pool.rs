//! The upload workers: `file_upload_workers` threads that store file jobs.
//! Cold path: a mutex-guarded job queue is fine here.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;

use super::{FileEntry, FileStore, Source};

/// One file to store.
#[derive(Debug)]
pub(crate) struct FileJob {
    pub(crate) entry: FileEntry,
    pub(crate) source: Source,
    /// Call order of the save (per run): the highest wins a path + filename.
    pub(crate) seq: u64,
}

/// What a worker reports: the stored content, or why it failed.
type Done = Result<(FileJob, u64, String), String>;

/// The worker pool of one run. Workers store the content (copy, hash, move
/// into place) in parallel; the pool records finished files in
/// `.files_metadata.json` in batches (one rewrite per batch, not per file).
#[derive(Debug)]
pub(crate) struct Pool {
    store: FileStore,
    jobs: Option<mpsc::Sender<FileJob>>,
    done: mpsc::Receiver<Done>,
    workers: Vec<thread::JoinHandle<()>>,
    /// The newest save (call order) of each path + filename.
    latest: HashMap<(String, String), u64>,
    outstanding: usize,
    /// Files stored (and recorded) so far.
    pub(crate) stored: u64,
    /// Files that were not stored, or stored but not recorded: never counted
    /// in `stored`; each one's error says where its content is.
    pub(crate) failed: u64,
    /// Files stored and recorded since the last [`take_recorded`](Self::take_recorded):
    /// (entry, where its content is, bytes, sha256), for a remote sink.
    recorded: Vec<(FileEntry, std::path::PathBuf, u64, String)>,
}

impl Pool {
    pub(crate) fn new(store: FileStore, workers: usize) -> Pool {
        let (jobs, rx) = mpsc::channel::<FileJob>();
        let rx = Arc::new(Mutex::new(rx));
        let (done_tx, done) = mpsc::channel();
        let workers = (0..workers.max(1))
            .filter_map(|i| {
                let (rx, done_tx, store) = (rx.clone(), done_tx.clone(), store.clone());
                thread::Builder::new()
                    .name(format!("ml-dash-upload-{i}"))
                    .spawn(move || worker(&store, &rx, &done_tx))
                    .ok()
            })
            .collect();
        Pool {
            store,
            jobs: Some(jobs),
            done,
            workers,
            latest: HashMap::new(),
            outstanding: 0,
            stored: 0,
            failed: 0,
            recorded: Vec::new(),
        }
    }

    /// Queues a job.
    pub(crate) fn submit(&mut self, job: FileJob) {
        let key = (job.entry.path.clone(), job.entry.filename.clone());
        let seq = self.latest.entry(key).or_insert(job.seq);
        *seq = (*seq).max(job.seq);
        if let Some(tx) = &self.jobs
            && tx.send(job).is_ok()
        {
            self.outstanding += 1;
        }
    }

    /// Jobs queued and not finished.
    pub(crate) fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// Collects finished jobs without waiting and records them; returns errors.
    pub(crate) fn poll(&mut self) -> Vec<String> {
        let mut finished = Vec::new();
        while let Ok(r) = self.done.try_recv() {
            finished.push(r);
        }
        self.record(finished)
    }

    /// Waits until every queued job finished and is recorded; returns errors.
    pub(crate) fn wait_idle(&mut self) -> Vec<String> {
        let mut finished = Vec::new();
        while self.outstanding > finished.len() {
            match self.done.recv() {
                Ok(r) => finished.push(r),
                Err(_) => {
                    // One error per file the workers took with them.
                    while self.outstanding > finished.len() {
                        finished.push(Err("a file was not stored: the upload workers are gone; \
                             its content is kept in the engine's work area (files/.pending/)"
                            .into()));
                    }
                }
            }
        }
        self.record(finished)
    }

    /// Records a batch of finished jobs: the newest save of each path +
    /// filename goes into the metadata; older ones are discarded.
    fn record(&mut self, finished: Vec<Done>) -> Vec<String> {
        self.outstanding -= finished.len();
        let mut errors = Vec::new();
        let mut keep: Vec<(crate::files::FileEntry, u64, String)> = Vec::new();
        for r in finished {
            match r {
                Ok((job, size, sum)) => {
                    let key = (job.entry.path.clone(), job.entry.filename.clone());
                    if self.latest.get(&key).is_some_and(|&s| s > job.seq) {
                        self.store.discard(&job.entry); // a later save won
                    } else {
                        keep.push((job.entry, size, sum));
                    }
                }
                Err(e) => {
                    self.failed += 1;
                    errors.push(e);
                }
            }
        }
        let n = keep.len() as u64;
        match self.store.merge_entries(&keep) {
            Ok(()) => {
                self.stored += n;
                for (entry, size, sum) in keep {
                    let at = self.store.content_path(&entry);
                    self.recorded.push((entry, at, size, sum));
                }
            }
            Err(e) => {
                self.failed += n;
                let at: Vec<String> = (keep.iter())
                    .map(|(entry, ..)| self.store.content_path(entry).display().to_string())
                    .collect();
                errors.push(format!(
                    "{n} file(s) not recorded in .files_metadata.json: {e}; their content is at {}",
                    at.join(", ")
                ));
            }
        }
        errors
    }

    /// The files recorded since the last call.
    pub(crate) fn take_recorded(&mut self) -> Vec<(FileEntry, std::path::PathBuf, u64, String)> {
        std::mem::take(&mut self.recorded)
    }

    /// Drains the queue and stops the workers.
    pub(crate) fn shutdown(&mut self) -> Vec<String> {
        let errors = self.wait_idle();
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        errors
    }
}

fn worker(store: &FileStore, rx: &Mutex<mpsc::Receiver<FileJob>>, done: &mpsc::Sender<Done>) {
    loop {
        let job = match rx.lock().unwrap_or_else(|e| e.into_inner()).recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        // A panic (a bug) fails this file like an I/O error would; the worker
        // lives on, so no job is left without an answer (close would wait).
        let stored = catch_unwind(AssertUnwindSafe(|| {
            crate::__fault::panic_point(crate::__fault::PanicAt::Upload);
            store.store_content(&job.entry, &job.source)
        }));
        let why = match stored {
            Ok(Ok((size, sum))) => {
                if done.send(Ok((job, size, sum))).is_err() {
                    return;
                }
                continue;
            }
            Ok(Err(e)) => e.to_string(),
            Err(p) => format!(
                "the upload thread panicked ({})",
                crate::error::panic_message(&*p)
            ),
        };
        let kept = match &job.source {
            Source::Temp { path: p, .. } => format!("; its content is kept in {}", p.display()),
            Source::User(p) => format!("; the original is unchanged at {}", p.display()),
        };
        let r = Err(format!(
            "file {}/{} not stored: {why}{kept}",
            job.entry.path.trim_end_matches('/'),
            job.entry.filename
        ));
        if done.send(r).is_err() {
            return;
        }
    }
}
