//! How one call failed, and what that says to the retry policy and the limiter.

use std::time::Duration;

use crate::connector::http::{ClientError, ErrorClass};
use crate::overload::limiter::Outcome;
use crate::overload::retry::{classify, Retryability};

/// The failure of one call to an external service.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use weir_operators::overload::caller::CallError;
/// use weir_operators::overload::limiter::Outcome;
/// use weir_operators::overload::retry::Retryability;
///
/// let busy = CallError::status(503, Some(Duration::from_secs(2)));
/// assert_eq!(busy.retryability(), Retryability::Retryable);
/// assert_eq!(busy.outcome(), Outcome::Overloaded);
/// assert_eq!(CallError::status(404, None).retryability(), Retryability::NonRetryable);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The service answered with a failure status.
    #[error("the service answered {status}{}", retry_after.map(|d| format!(" (retry after {d:?})")).unwrap_or_default())]
    Status {
        /// The HTTP status (or an equivalent code).
        status: u16,
        /// The service's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
    },
    /// No answer: connect failure, reset, timeout. The call may or may not have had an effect.
    #[error("no answer from the service: {detail}")]
    Transport {
        /// Whether the call ran out of time (a sign of load).
        timed_out: bool,
        /// What happened.
        detail: String,
    },
    /// The call can never succeed as made (a malformed request, an unusable input): not retried.
    #[error("{0}")]
    Permanent(String),
}

impl CallError {
    /// A failure status with an optional `Retry-After`.
    pub fn status(status: u16, retry_after: Option<Duration>) -> Self {
        CallError::Status {
            status,
            retry_after,
        }
    }

    /// A transport failure.
    pub fn transport(detail: impl Into<String>) -> Self {
        CallError::Transport {
            timed_out: false,
            detail: detail.into(),
        }
    }

    /// A timeout.
    pub fn timeout(after: Duration) -> Self {
        CallError::Transport {
            timed_out: true,
            detail: format!("no answer within {after:?}"),
        }
    }

    /// Whether another attempt may succeed: statuses as [`classify`], transport failures yes,
    /// permanent failures no.
    pub fn retryability(&self) -> Retryability {
        match self {
            CallError::Status { status, .. } => classify(*status),
            CallError::Transport { .. } => Retryability::Retryable,
            CallError::Permanent(_) => Retryability::NonRetryable,
        }
    }

    /// What the failure tells the concurrency limiter: 429/503 and timeouts are overload,
    /// anything else carries no signal.
    pub fn outcome(&self) -> Outcome {
        match self {
            CallError::Status { status, .. } => Outcome::from_status(*status),
            CallError::Transport {
                timed_out: true, ..
            } => Outcome::Overloaded,
            _ => Outcome::Failed,
        }
    }

    /// The service's hint of when to retry.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            CallError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

impl From<ClientError> for CallError {
    fn from(e: ClientError) -> Self {
        match (&e, e.class()) {
            (ClientError::Status { response, .. }, _) => {
                CallError::status(response.status.as_u16(), response.retry_after)
            }
            (ClientError::Timeout { .. }, _) => CallError::Transport {
                timed_out: true,
                detail: e.to_string(),
            },
            (_, ErrorClass::Transport) => CallError::transport(e.to_string()),
            (_, _) => CallError::Permanent(e.to_string()),
        }
    }
}
