//! Errors: of graph construction, of operators, and of a run.

use std::error::Error as StdError;
use std::fmt;

/// Who is at fault when an operator fails, so callers can decide what to do about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum ErrorKind {
    /// Bad input or a failing user function (a closure returned an error or panicked).
    User,
    /// Something outside the process: a file, a socket, a remote service.
    External,
    /// A bug in weir or a violated invariant.
    Internal,
    /// The operator stopped because another part of the run failed or was cancelled.
    Cancelled,
}

/// An operator's failure, with its cause.
///
/// # Examples
///
/// ```
/// use weir_runtime::{ErrorKind, OperatorError};
///
/// let e = OperatorError::user("amount must not be negative");
/// assert_eq!(e.kind(), ErrorKind::User);
/// assert_eq!(e.to_string(), "amount must not be negative");
/// ```
#[derive(Debug)]
pub struct OperatorError {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn StdError + Send + Sync>>,
    /// Set when the error arose in an operator chained into another's task, so the run reports
    /// the operator that failed rather than the task's first.
    pub(crate) origin: Option<Origin>,
}

/// Which chained operator an error came from, and whether it was a panic.
#[derive(Debug, Clone)]
pub(crate) struct Origin {
    pub(crate) operator: String,
    pub(crate) instance: usize,
    pub(crate) panicked: bool,
}

impl OperatorError {
    /// A user error with a message.
    pub fn user(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::User, message, None)
    }

    /// An external failure (I/O, network) with its cause.
    pub fn external(
        message: impl Into<String>,
        source: impl StdError + Send + Sync + 'static,
    ) -> Self {
        Self::new(ErrorKind::External, message, Some(Box::new(source)))
    }

    /// An internal failure: a bug or violated invariant.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message, None)
    }

    pub(crate) fn cancelled(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Cancelled, message, None)
    }

    /// An error of the given kind with an optional cause.
    pub fn new(
        kind: ErrorKind,
        message: impl Into<String>,
        source: Option<Box<dyn StdError + Send + Sync>>,
    ) -> Self {
        Self {
            kind,
            message: message.into(),
            source,
            origin: None,
        }
    }

    /// Who is at fault.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without the cause.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for OperatorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl StdError for OperatorError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_ref()
            .map(|s| s.as_ref() as &(dyn StdError + 'static))
    }
}

/// A pipeline that cannot run as built. Each variant names the operators involved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GraphError {
    /// The pipeline has no source: nothing would ever flow.
    #[error("pipeline `{pipeline}` has no source: add one with `Pipeline::source`")]
    NoSource {
        /// The pipeline.
        pipeline: String,
    },
    /// The pipeline has no sink: results would go nowhere.
    #[error(
        "pipeline `{pipeline}` has no sink: end every stream in a sink (`discard` if you mean to)"
    )]
    NoSink {
        /// The pipeline.
        pipeline: String,
    },
    /// An operator's output stream is never consumed.
    #[error("the output of `{operator}` is never consumed: sink it, or `discard` it explicitly")]
    Unconsumed {
        /// The operator whose output dangles.
        operator: String,
    },
    /// The operators form a cycle.
    #[error("the operators {} form a cycle", .operators.join(" -> "))]
    Cycle {
        /// Operators on the cycle.
        operators: Vec<String>,
    },
    /// Two operators share a name; names identify operators in reports and errors.
    #[error("two operators are named `{name}`: give each a unique name")]
    DuplicateName {
        /// The repeated name.
        name: String,
    },
    /// An edge or operator setting is invalid.
    #[error("invalid configuration of `{operator}`: {reason}")]
    InvalidConfig {
        /// The operator.
        operator: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// The pipeline was already run; a pipeline runs once.
    #[error("pipeline `{pipeline}` has already been run")]
    AlreadyRun {
        /// The pipeline.
        pipeline: String,
    },
}

/// Why a run failed. The first failure wins; the rest of the run is cancelled.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The graph is invalid; nothing ran.
    #[error(transparent)]
    Graph(#[from] GraphError),
    /// An operator instance returned an error.
    #[error("operator `{operator}` (instance {instance}) failed: {error}")]
    Operator {
        /// The operator's name.
        operator: String,
        /// Which parallel instance.
        instance: usize,
        /// The cause.
        #[source]
        error: OperatorError,
    },
    /// An operator instance panicked; the panic was contained and the run cancelled.
    #[error("operator `{operator}` (instance {instance}) panicked: {message}")]
    Panic {
        /// The operator's name.
        operator: String,
        /// Which parallel instance.
        instance: usize,
        /// The panic message.
        message: String,
    },
    /// The run was stopped from outside before it could report.
    #[error("the run was cancelled")]
    Cancelled,
    /// Checkpoints could not be set up: the directory cannot be opened, or the checkpoint to
    /// restore from does not fit the job (another graph, another source parallelism).
    #[error("checkpoints: {0}")]
    Checkpoint(String),
    /// The executor itself failed (e.g. could not start its threads).
    #[error("the executor failed: {0}")]
    Executor(#[source] std::io::Error),
}

impl RunError {
    /// The operator this error names, if it names one.
    pub fn operator(&self) -> Option<&str> {
        match self {
            RunError::Operator { operator, .. } | RunError::Panic { operator, .. } => {
                Some(operator)
            }
            _ => None,
        }
    }
}
