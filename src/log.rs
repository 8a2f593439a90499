//! A [`log::Log`] that records the `log` crate's records as logs of
//! a run (feature `log`).
//!
//! A record's message is the log's message, its level is mapped (`Trace` and
//! `Debug` to debug, `Info` to info, `Warn` to warn, `Error` to error), and
//! its target is the log's metadata `{"target": ..}`. It filters nothing
//! itself: the `log` crate's max level ([`log::set_max_level`],
//! set by [`Sink::install`]) decides what reaches it. A message that is a
//! plain string literal is not formatted; any other is formatted into a
//! reused per-thread buffer. A record the run refuses (the run is closed, a
//! record over the size limit) is dropped: `log` has no way to return the
//! error. `flush()` is [`Run::flush`].
//!
//! # Examples
//! ```no_run
//! let run = ml_dash::Experiment::new("alice/mnist/logged").run()?;
//! ml_dash::log::Sink::new(&run).install(log::LevelFilter::Info)?;
//! log::info!("epoch {} done", 1);
//! run.complete()?;
//! # Ok::<(), ml_dash::Error>(())
//! ```

use std::cell::RefCell;
use std::fmt::Write as _;

use crate::api::{Logger, Run};
use crate::error::{Error, Result};
use crate::record::{Level, Value};

/// Records `log` records into a run: see the [module docs](self).
///
/// # Examples
/// ```
/// use log::Log as _;
/// # let root = tempfile::tempdir().unwrap();
/// let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
/// let sink = ml_dash::log::Sink::new(&run);
/// // What `log::warn!(target: "data", "slow disk")` hands the installed logger.
/// sink.log(&log::Record::builder().level(log::Level::Warn).target("data").args(format_args!("slow disk")).build());
/// sink.flush();
/// let logs = ml_dash::read::logs(root.path(), "a/b")?;
/// assert_eq!(logs[0]["metadata"]["target"], "data");
/// # Ok::<(), ml_dash::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Sink {
    logger: Logger,
}

impl Sink {
    /// A sink that records into `run`.
    ///
    /// # Examples
    /// ```
    /// use log::Log as _;
    /// # let root = tempfile::tempdir().unwrap();
    /// let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
    /// let sink = ml_dash::log::Sink::new(&run);
    /// sink.log(&log::Record::builder().level(log::Level::Info).args(format_args!("epoch {}", 1)).build());
    /// sink.flush();
    /// assert_eq!(ml_dash::read::logs(root.path(), "a/b")?[0]["message"], "epoch 1");
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn new(run: &Run) -> Sink {
        Sink {
            logger: run.logger(),
        }
    }

    /// Makes this sink the process's logger (`log::set_boxed_logger`) and sets
    /// `log`'s max level to `max`.
    ///
    /// # Errors
    /// [`Error::Unsupported`] when a logger is already installed (`log` keeps
    /// one for the life of the process).
    ///
    /// # Examples
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
    /// ml_dash::log::Sink::new(&run).install(log::LevelFilter::Info)?;
    /// log::info!("epoch {} done", 1);
    /// log::debug!("not recorded: below the max level");
    /// run.flush()?;
    /// assert_eq!(ml_dash::read::logs(root.path(), "a/b")?.len(), 1);
    /// // `log` keeps its first logger for the life of the process.
    /// assert!(ml_dash::log::Sink::new(&run).install(log::LevelFilter::Info).is_err());
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn install(self, max: ::log::LevelFilter) -> Result<()> {
        ::log::set_boxed_logger(Box::new(self)).map_err(|_| {
            Error::Unsupported(
                "a logger is already installed, and the log crate keeps one for the life of \
                 the process: install ml_dash::log::Sink first, or call it from your logger",
            )
        })?;
        ::log::set_max_level(max);
        Ok(())
    }
}

fn level(l: ::log::Level) -> Level {
    match l {
        ::log::Level::Error => Level::Error,
        ::log::Level::Warn => Level::Warn,
        ::log::Level::Info => Level::Info,
        ::log::Level::Debug | ::log::Level::Trace => Level::Debug,
    }
}

thread_local! {
    static TEXT: RefCell<String> = RefCell::default();
}

impl ::log::Log for Sink {
    fn enabled(&self, _: &::log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &::log::Record<'_>) {
        let level = level(record.level());
        let meta = [("target", Value::Str(record.target()))];
        // Failures drop the record (see the module docs).
        if let Some(text) = record.args().as_str() {
            let _ = self.logger.log(level, text, &meta);
            return;
        }
        TEXT.with(|cell| match cell.try_borrow_mut() {
            Ok(mut text) => {
                text.clear();
                let _ = write!(text, "{}", record.args());
                let _ = self.logger.log(level, &text, &meta);
            }
            // An argument's `Display` that logs itself: a buffer of its own.
            Err(_) => {
                let _ = self.logger.log(level, &record.args().to_string(), &meta);
            }
        });
    }

    fn flush(&self) {
        let _ = self.logger.flush();
    }
}
