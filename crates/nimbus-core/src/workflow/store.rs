//! The journal of workflow executions: the seam a clustered backend implements beside the
//! embedded SQLite one.
//!
//! An execution is a row (its names, input, status and end) plus its history: the events
//! [`crate::workflow::advance`] returned, in order, ids contiguous from 1. Everything else
//! (timers, tasks in flight, tokens) is a fold of the history
//! ([`crate::workflow::ExecutionState::outstanding`]), so one append is the only write a
//! transition makes.

/// A new execution: its row, and the definition it runs (kept by hash, so a later change to
/// the state machine does not change executions already running).
#[derive(Debug, Clone, PartialEq)]
pub struct NewExecution {
    /// `arn:aws:states:<region>:<account>:execution:<machine>:<name>`.
    pub arn: String,
    /// The state machine's ARN.
    pub machine_arn: String,
    /// The execution's name (unique per state machine).
    pub name: String,
    /// The definition as JSON text.
    pub definition: String,
    /// The input as JSON text.
    pub input: String,
    /// When it started, in microseconds since the epoch.
    pub start_us: i64,
    /// The X-Ray trace header the execution's work carries, if any.
    pub trace: Option<String>,
    /// The execution that started this one (`states:startExecution` from a Task), if any.
    pub parent: Option<String>,
}

/// What [`WorkflowStore::create_execution`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum Created {
    /// The execution is new.
    New,
    /// An execution of that name exists already (StartExecution decides whether that is
    /// the idempotent repeat or `ExecutionAlreadyExists`).
    Exists(Box<ExecutionRecord>),
}

/// One execution's row.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionRecord {
    /// Its ARN.
    pub arn: String,
    /// Its state machine's ARN.
    pub machine_arn: String,
    /// Its name.
    pub name: String,
    /// Its definition as JSON text.
    pub definition: String,
    /// Its input as JSON text.
    pub input: String,
    /// `RUNNING`, `SUCCEEDED`, `FAILED`, `TIMED_OUT` or `ABORTED`.
    pub status: String,
    /// When it started.
    pub start_us: i64,
    /// When it ended.
    pub stop_us: Option<i64>,
    /// Its output as JSON text, once it succeeded.
    pub output: Option<String>,
    /// Its error, once it failed.
    pub error: Option<String>,
    /// Its cause, once it failed.
    pub cause: Option<String>,
    /// The id of the last history event.
    pub last_event_id: u64,
    /// Its trace header.
    pub trace: Option<String>,
    /// The execution that started it.
    pub parent: Option<String>,
}

/// How an execution ended, written with the events that ended it.
#[derive(Debug, Clone, PartialEq)]
pub struct Ending {
    /// `SUCCEEDED`, `FAILED`, `TIMED_OUT` or `ABORTED`.
    pub status: String,
    /// When.
    pub stop_us: i64,
    /// The output, for `SUCCEEDED`.
    pub output: Option<String>,
    /// The error, otherwise.
    pub error: Option<String>,
    /// The cause, otherwise.
    pub cause: Option<String>,
}

/// Which executions [`WorkflowStore::list_executions`] returns.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ExecutionFilter {
    /// Only this state machine's.
    pub machine_arn: Option<String>,
    /// Only those with this status.
    pub status: Option<String>,
    /// Only those that started before this execution (newest first, as ListExecutions
    /// pages): the last ARN of the previous page.
    pub before: Option<String>,
    /// At most this many.
    pub limit: usize,
}

/// Why a journal operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkflowStoreError {
    /// No execution has that ARN.
    #[error("no execution {0}")]
    NotFound(String),
    /// The append does not follow the stored history (another writer got there first, or
    /// the execution ended).
    #[error("the history of {0} moved on: {1}")]
    Conflict(String, String),
    /// The store failed.
    #[error("{0}")]
    Internal(String),
}

/// Storage of executions and their histories.
pub trait WorkflowStore: Send + Sync {
    /// Records a new execution with its first events (and its ending, when they end it:
    /// a machine of Pass states ends in its first transition), unless one of that name
    /// exists for that state machine.
    fn create_execution(
        &self,
        new: &NewExecution,
        events: &[(u64, String)],
        ending: Option<&Ending>,
    ) -> Result<Created, WorkflowStoreError>;
    /// Appends events (ids continuing the stored history) and, when they end the execution,
    /// its ending, in one transaction.
    fn append(
        &self,
        arn: &str,
        events: &[(u64, String)],
        ending: Option<&Ending>,
    ) -> Result<(), WorkflowStoreError>;
    /// One execution.
    fn execution(&self, arn: &str) -> Result<Option<ExecutionRecord>, WorkflowStoreError>;
    /// Executions, newest first.
    fn list_executions(
        &self,
        filter: &ExecutionFilter,
    ) -> Result<Vec<ExecutionRecord>, WorkflowStoreError>;
    /// Every execution still running, oldest first: what a restart resumes.
    fn running_executions(&self) -> Result<Vec<ExecutionRecord>, WorkflowStoreError>;
    /// History events as stored (JSON text), ids from `after + 1`, at most `limit`, in
    /// order (or newest first when `reverse`, ids below `after` when `after` is not 0).
    fn history(
        &self,
        arn: &str,
        after: u64,
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<(u64, String)>, WorkflowStoreError>;
}
