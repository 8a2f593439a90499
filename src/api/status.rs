//! A run's status, as the store and the server name it.

/// Final status of a run.
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
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "RUNNING",
            Status::Completed => "COMPLETED",
            Status::Failed => "FAILED",
            Status::Cancelled => "CANCELLED",
        }
    }
}
