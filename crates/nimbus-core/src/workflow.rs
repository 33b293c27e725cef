//! Step Functions workflows: the Amazon States Language (JSONPath dialect) as a pure engine.
//!
//! [`parse`] turns a definition into a [`Definition`], [`validate()`] reports what `nimbus
//! validate` refuses, and [`advance`] is the deterministic step function: given the
//! definition, the execution's state and one [`Event`] (start, a task's result, a timer), it
//! returns the history events to append to the journal and the [`Command`]s the host carries
//! out (invoke a task, start a timer, complete the execution).
//! The execution's state is the fold of its history ([`ExecutionState::apply`]), so the host
//! keeps the journal and nothing else.
//!
//! This module does no IO and reads no clock: the host passes the time with each event, and
//! randomness (retry jitter, task tokens, `States.UUID`) is drawn from the seed recorded in
//! `ExecutionStarted`.
//!
//! # What the host does
//!
//! - Keep the journal: append each returned [`HistoryEvent`] (in order, ids contiguous from 1)
//!   in one transaction with the work rows below; [`HistoryEvent::to_json`] is the stored form
//!   and GetExecutionHistory's (drop its `nimbus` member when answering the API).
//!   After a restart, [`ExecutionState::fold`] the journal and carry out
//!   [`ExecutionState::outstanding`] again.
//! - [`Command::Invoke`]: by [`Resource::parse`] of its `resource`, invoke the function with
//!   `parameters` as the event (a direct function ARN), or run the integration (`lambda:invoke`
//!   answers with the Invoke response `{ExecutedVersion, Payload, StatusCode, ...}`;
//!   `sqs:sendMessage`, `sns:publish`, `dynamodb:*Item`, `events:putEvents`,
//!   `states:startExecution` take `parameters` as the API request); pass `key` along as the
//!   idempotency key; report [`Event::TaskSucceeded`] with the result, or
//!   [`Event::TaskFailed`] with the function's `errorType` (`Lambda.Unknown` for a crash) and
//!   its error JSON as text for the cause, or `States.Runtime` for a result that is not JSON.
//!   [`Completion::Token`]: make the call, ignore its result, and map SendTaskSuccess /
//!   SendTaskFailure for that token ([`ExecutionState::task_by_token`]) to the same events and
//!   SendTaskHeartbeat to [`Event::TaskHeartbeat`]. [`Completion::Sync`]: report when the
//!   child execution ends.
//! - [`Command::StartTimer`]: arm or move the timer with that id and report
//!   [`Event::TimerFired`] at `due_us` (waits, retry delays, task and heartbeat timeouts, the
//!   execution's `TimeoutSeconds`); persist it with the journal so it survives a restart.
//! - [`Command::Cancel`]: forget the task (stop it if possible); a late result is ignored.
//! - [`Command::Succeed`] / [`Command::Fail`]: the execution ended; record its status, output
//!   or error and cause (also in [`ExecutionState::status`]); StartSyncExecution answers now.
//! - StopExecution is [`Event::Stop`]. Events that no longer apply (a stale timer, a second
//!   result for a task) return no history and no commands, so the host may deliver at least
//!   once.

pub mod definition;
pub mod engine;
pub mod history;
pub mod intrinsic;
pub mod machine;
pub mod path;
pub mod random;
pub mod resource;
pub mod store;
pub mod validate;

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;

pub use definition::{Definition, StateType, parse, parse_timestamp};
pub use engine::{
    Command, Completion, Event, EventDetails, ExecutionInfo, ExecutionState, ExecutionStatus,
    HistoryEvent, ScopeStep, TaskId, TimerId, TimerKind, advance,
};
pub use history::HistoryError;
pub use machine::{MachineKind, StateMachineSpec};
pub use resource::{Pattern, Resource};
pub use validate::validate;

/// A problem with a definition, at a dotted location such as `States.Hello.Retry[0].BackoffRate`
/// (the manifest layer maps it to a file and line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Where: the dotted path of the field from the definition's root.
    pub location: String,
    /// What is wrong.
    pub message: String,
    /// Whether it stops the definition from running.
    pub severity: Severity,
}

/// How bad a [`Diagnostic`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The definition cannot run.
    Error,
    /// Step Functions runs it too, but it is probably a mistake.
    Warning,
}

impl Diagnostic {
    /// An error at `location`.
    pub fn new(location: &str, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            location: location.to_owned(),
            message: message.into(),
            severity: Severity::Error,
        }
    }

    /// A warning at `location`.
    pub fn warning(location: &str, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::new(location, message)
        }
    }
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.severity == Severity::Warning {
            f.write_str("warning: ")?;
        }
        if self.location.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.location, self.message)
        }
    }
}

/// Parses and validates a definition: the definition (warnings aside: [`validate()`] lists
/// them), or every problem found when any is an error.
/// Parse errors come first, then what validation finds in the states that did parse.
pub fn check(value: &serde_json::Value) -> Result<Definition, Vec<Diagnostic>> {
    let (definition, mut diagnostics) = definition::parse_partial(value);
    if let Some(definition) = &definition {
        diagnostics.extend(validate(definition));
    }
    match definition {
        Some(definition) if diagnostics.iter().all(|d| d.severity == Severity::Warning) => {
            Ok(definition)
        }
        _ => Err(diagnostics),
    }
}
