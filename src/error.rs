//! The public error type. Every message says what went wrong and what to do.

use std::path::PathBuf;

/// Everything that can go wrong at the public API.
///
/// # Examples
/// ```
/// use ml_dash::{Error, Experiment};
/// let err = Experiment::new("just-a-name").run().unwrap_err();
/// assert!(matches!(err, Error::InvalidPrefix { .. }));
/// assert!(err.to_string().contains("owner/project/[folders/]name")); // says what to do
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The experiment prefix is not `owner/project[/folders...]/name`.
    #[error("invalid prefix {prefix:?}: {reason} (expected \"owner/project/[folders/]name\")")]
    InvalidPrefix {
        /// The prefix as given.
        prefix: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A stream, topic, field, file or folder name that cannot be stored safely.
    #[error("invalid name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A log level other than info, warn, error, debug, fatal.
    #[error("invalid log level {0:?}: use one of info, warn, error, debug, fatal")]
    InvalidLevel(String),
    /// A value that cannot be stored (for example a parameter set that is not a map).
    #[error("invalid value: {0}")]
    InvalidValue(String),
    /// A file that cannot be uploaded (missing, a directory, a non-UTF-8 name).
    #[error("cannot upload {path}: {reason}")]
    InvalidFile {
        /// The path as given.
        path: PathBuf,
        /// Why it was refused.
        reason: &'static str,
    },
    /// No stored file has this name (or matches this pattern); deleted files
    /// are not stored files.
    #[error(
        "no stored file matches {0:?} in this experiment: `files(dir).list()` shows the stored files"
    )]
    FileNotFound(String),
    /// An operation this run cannot do; the message says what to do instead.
    #[error("{0}")]
    Unsupported(&'static str),
    /// A record larger than the configured `max_record_bytes`, or than the
    /// memory budget can ever hold beside its thread's ring (only with
    /// settings that `BufferConfig::validate` refuses).
    #[error(
        "record of {size} bytes is larger than this run takes ({limit} bytes): raise BufferConfig::max_record_bytes (ML_DASH_MAX_RECORD_BYTES; memory_budget must be at least twice it) or store the content as a file"
    )]
    RecordTooLarge {
        /// The encoded size of the record.
        size: usize,
        /// The largest record the run takes.
        limit: usize,
    },
    /// The run was closed (completed, failed or cancelled); nothing more can be logged to it.
    #[error("the run is closed: open a new run (or reopen the experiment) to log more")]
    Closed,
    /// A bad `ML_DASH_*` environment value or `BufferConfig` setting.
    #[error("invalid setting {name}={value:?}: {reason}")]
    Config {
        /// The variable or setting name.
        name: &'static str,
        /// The value as given.
        value: String,
        /// What a valid value looks like.
        reason: &'static str,
    },
    /// The store could not be written or read.
    #[error("i/o error on {path}: {source}")]
    Io {
        /// The file or folder concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file in the store that does not parse.
    #[error("corrupt store file {path}: {reason}")]
    Corrupt {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The store refused a write; the data stays buffered and is retried at the
    /// next flush (and at close).
    #[error(
        "the store could not be written ({0}); the data stays buffered and is retried at the next flush"
    )]
    Sink(String),
    /// The background collector thread is gone (it could not be started, or it died).
    #[error("the collector thread is not running: {0}")]
    Collector(String),
    /// This process is the child of a `fork()` of the process that opened the
    /// run: the run, its threads and its store stay the parent's, and nothing
    /// is logged from here. Dropping the run in the child is silent.
    #[error(
        "this run belongs to the parent process (this is a fork() child of it): log from the parent, or open a new run in the child"
    )]
    Forked,
    /// A background thread of the run (the remote sender) or [`sync`](fn@crate::sync)
    /// panicked, a bug in ml-dash; the message says where the data it had not
    /// sent is (nothing is dropped: it stays in the spool).
    #[error("an ml-dash thread panicked (a bug, please report it): {0}")]
    Panicked(String),
}

/// Shorthand for results of this crate.
///
/// # Examples
/// ```
/// fn train(run: &ml_dash::Run) -> ml_dash::Result<()> {
///     run.log("step")?;
///     run.flush()
/// }
/// assert!(train(&ml_dash::Run::noop()).is_ok());
/// ```
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The message of a caught panic (`panic!` with a literal or a format).
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message")
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
