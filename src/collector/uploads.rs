//! Files: the collector hands decoded file jobs to the upload workers and
//! passes what they stored on to the sink.

use std::sync::Arc;

use super::Collector;
use crate::files::Pool;
use crate::sink::Sink;

impl<S: Sink> Collector<S> {
    /// Stores the run's files with `pool`.
    pub(crate) fn with_files(mut self, pool: Pool) -> Self {
        self.files = Some(pool);
        self
    }

    /// Hands decoded file jobs to the workers and collects finished ones.
    pub(super) fn pump_files(&mut self) {
        let Some(pool) = self.files.as_mut() else {
            self.file_jobs.clear();
            return;
        };
        for job in self.file_jobs.drain(..) {
            pool.submit(job);
        }
        let errors = pool.poll();
        self.report.stored.files = pool.stored;
        for e in errors {
            self.file_error(e);
        }
        self.send_recorded_files();
    }

    /// A file that was not stored (or not sent): a warning of its own, which
    /// says where its content is, also kept for `flush()` and the report.
    /// The other records are unaffected: a file's content is not held here.
    fn file_error(&mut self, e: String) {
        self.core.last_error.store(Some(Arc::new(e.clone())));
        self.report.errors.push(e.clone());
        self.warn(e);
    }

    /// Files that were not stored so far.
    pub(super) fn files_failed(&self) -> u64 {
        self.files.as_ref().map_or(0, |p| p.failed)
    }

    /// Hands files the pool stored to the sink (a remote sink spools a copy).
    fn send_recorded_files(&mut self) {
        let Some(pool) = self.files.as_mut() else {
            return;
        };
        for (entry, content, _size, sum) in pool.take_recorded() {
            if let Err(e) = self.store.file_stored(&entry, &content, &sum) {
                self.file_error(format!(
                    "file {} not sent: {e}; it is stored locally at {}",
                    entry.filename,
                    content.display()
                ));
            }
        }
    }

    /// Waits for every queued file.
    pub(super) fn wait_files(&mut self) {
        self.pump_files();
        let Some(pool) = self.files.as_mut() else {
            return;
        };
        let errors = pool.wait_idle();
        self.report.stored.files = pool.stored;
        for e in errors {
            self.file_error(e);
        }
        self.send_recorded_files();
    }
}
