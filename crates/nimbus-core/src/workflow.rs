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

pub mod definition;
pub mod engine;
pub mod history;
pub mod intrinsic;
pub mod path;
pub mod random;
pub mod resource;
pub mod validate;

#[cfg(test)]
mod tests;

pub use definition::{Definition, StateType, parse, parse_timestamp};
pub use engine::{
    Command, Completion, Event, EventDetails, ExecutionInfo, ExecutionState, ExecutionStatus,
    HistoryEvent, ScopeStep, TaskId, TimerId, TimerKind, advance,
};
pub use history::HistoryError;
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
}

impl Diagnostic {
    /// A diagnostic at `location`.
    pub fn new(location: &str, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            location: location.to_owned(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.location.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.location, self.message)
        }
    }
}

/// Parses and validates a definition: the definition, or every problem found.
pub fn check(value: &serde_json::Value) -> Result<Definition, Vec<Diagnostic>> {
    let definition = parse(value)?;
    let diagnostics = validate(&definition);
    if diagnostics.is_empty() {
        Ok(definition)
    } else {
        Err(diagnostics)
    }
}
