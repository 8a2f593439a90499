//! The upload workers: `file_upload_workers` threads that store file jobs.
//! Cold path: a mutex-guarded job queue is fine here.

use std::collections::HashMap;
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

type Latest = Arc<Mutex<HashMap<(String, String), u64>>>;

/// The worker pool of one run.
#[derive(Debug)]
pub(crate) struct Pool {
    jobs: Option<mpsc::Sender<FileJob>>,
    done: mpsc::Receiver<Result<(), String>>,
    workers: Vec<thread::JoinHandle<()>>,
    latest: Latest,
    outstanding: usize,
    /// Files stored so far.
    pub(crate) stored: u64,
}

impl Pool {
    pub(crate) fn new(store: FileStore, workers: usize) -> Pool {
        let (jobs, rx) = mpsc::channel::<FileJob>();
        let rx = Arc::new(Mutex::new(rx));
        let (done_tx, done) = mpsc::channel();
        let latest: Latest = Arc::default();
        let workers = (0..workers.max(1))
            .filter_map(|i| {
                let (rx, done_tx, latest, store) =
                    (rx.clone(), done_tx.clone(), latest.clone(), store.clone());
                thread::Builder::new()
                    .name(format!("ml-dash-upload-{i}"))
                    .spawn(move || worker(&store, &rx, &done_tx, &latest))
                    .ok()
            })
            .collect();
        Pool {
            jobs: Some(jobs),
            done,
            workers,
            latest,
            outstanding: 0,
            stored: 0,
        }
    }

    /// Queues a job.
    pub(crate) fn submit(&mut self, job: FileJob) {
        {
            let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
            let key = (job.entry.path.clone(), job.entry.filename.clone());
            let seq = latest.entry(key).or_insert(job.seq);
            *seq = (*seq).max(job.seq);
        }
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

    /// Collects finished jobs without waiting; returns their errors.
    pub(crate) fn poll(&mut self) -> Vec<String> {
        let mut errors = Vec::new();
        while let Ok(r) = self.done.try_recv() {
            self.finish(r, &mut errors);
        }
        errors
    }

    /// Waits until every queued job finished; returns their errors.
    pub(crate) fn wait_idle(&mut self) -> Vec<String> {
        let mut errors = Vec::new();
        while self.outstanding > 0 {
            match self.done.recv() {
                Ok(r) => self.finish(r, &mut errors),
                Err(_) => {
                    errors.push("the upload workers are gone".into());
                    self.outstanding = 0;
                }
            }
        }
        errors
    }

    fn finish(&mut self, r: Result<(), String>, errors: &mut Vec<String>) {
        self.outstanding -= 1;
        match r {
            Ok(()) => self.stored += 1,
            Err(e) => errors.push(e),
        }
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

fn worker(
    store: &FileStore,
    rx: &Mutex<mpsc::Receiver<FileJob>>,
    done: &mpsc::Sender<Result<(), String>>,
    latest: &Latest,
) {
    loop {
        let job = match rx.lock().unwrap_or_else(|e| e.into_inner()).recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        let key = (job.entry.path.clone(), job.entry.filename.clone());
        let is_latest = || {
            latest
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&key)
                .is_none_or(|&s| s == job.seq)
        };
        let r = store
            .store(&job.entry, &job.source, &is_latest)
            .map_err(|e| {
                let kept = match &job.source {
                    Source::Temp(p) => format!("; its content is kept in {}", p.display()),
                    Source::User(_) => String::new(),
                };
                format!(
                    "file {}{} not stored: {e}{kept}",
                    job.entry.path, job.entry.filename
                )
            });
        if done.send(r).is_err() {
            return;
        }
    }
}
