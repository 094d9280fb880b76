//! Backend-neutral error types of the event log.
//!
//! Both implementations (JetStream and the embedded SQLite log) report failures with these
//! types, so callers never see a backend's own error type. The split that matters to callers:
//!
//! - [`AppendError::Conflict`]: the optimistic-concurrency check failed; reload the aggregate
//!   and re-check the command.
//! - `Unavailable`: a transient failure (no leader, timeouts, connection loss) that persisted
//!   through the implementation's bounded retries; retry later with the **same** message id.
//! - `Invalid`: the caller passed something the log cannot accept (bad subject, empty id).
//! - `Other`: anything else, with the backend's error as the source.

/// A boxed error used as the source of the `Other` variants.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why [`EventLog::append`](crate::EventLog::append) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    /// The subject's last event is not the one the caller expected.
    ///
    /// `actual` is the stream sequence of the subject's last event (0 if it has none).
    #[error(
        "append conflict: expected the subject's last event at seq {expected}, but it is at seq {actual}"
    )]
    Conflict {
        /// The sequence the caller expected (`Expected::Seq(expected)`).
        expected: u64,
        /// The sequence of the subject's last event, 0 if the subject has no events.
        actual: u64,
    },
    /// A transient failure persisted through the bounded retries. The event may or may not
    /// have been stored: retry with the same message id, which is idempotent.
    #[error("event log unavailable: {0}")]
    Unavailable(String),
    /// The arguments cannot be accepted (invalid subject or message id).
    #[error("invalid append: {0}")]
    Invalid(String),
    /// Any other failure.
    #[error("event log append failed: {0}")]
    Other(#[source] BoxError),
}

impl AppendError {
    /// True for [`AppendError::Unavailable`]: retrying later (same message id) may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }

    /// True for [`AppendError::Conflict`].
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Conflict { .. })
    }
}

/// Why a read, consumer or notification operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// A transient failure (no leader, timeout, connection loss); retrying later may succeed.
    #[error("event log unavailable: {0}")]
    Unavailable(String),
    /// The arguments cannot be accepted (invalid subject, topic or consumer name or config).
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// Any other failure.
    #[error("event log error: {0}")]
    Other(#[source] BoxError),
}

impl LogError {
    /// True for [`LogError::Unavailable`]: retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }

    /// Wraps any error as [`LogError::Other`].
    pub fn other(error: impl Into<BoxError>) -> Self {
        Self::Other(error.into())
    }
}

impl From<LogError> for AppendError {
    fn from(error: LogError) -> Self {
        match error {
            LogError::Unavailable(message) => Self::Unavailable(message),
            LogError::Invalid(message) => Self::Invalid(message),
            LogError::Other(source) => Self::Other(source),
        }
    }
}
