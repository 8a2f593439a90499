//! A run's status, as the store and the server name it.

/// Final status of a run.
///
/// # Examples
/// ```
/// # let root = tempfile::tempdir().unwrap();
/// let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
/// assert_eq!(run.cancel()?.status, Some(ml_dash::Status::Cancelled));
/// # Ok::<(), ml_dash::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Status {
    /// Open and accepting records.
    Running,
    /// Closed normally.
    Completed,
    /// Closed after an error or a panic.
    Failed,
    /// Closed on request.
    Cancelled,
}

impl Status {
    /// The name the ML-Dash server and store use.
    ///
    /// # Examples
    /// ```
    /// assert_eq!(ml_dash::Status::Completed.as_str(), "COMPLETED");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "RUNNING",
            Status::Completed => "COMPLETED",
            Status::Failed => "FAILED",
            Status::Cancelled => "CANCELLED",
        }
    }
}
