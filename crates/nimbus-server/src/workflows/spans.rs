//! An execution's telemetry: a span for the execution (a child of whoever started it), a span
//! per state under it, the invocations of a Task state under the state's span, and the
//! transition and execution counters.
//!
//! Span ids are derived from the execution's ARN and the id of the event that entered the
//! state, so an execution resumed after a restart closes the spans its first run opened
//! under the same ids.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash as _, Hasher as _};
use std::time::{Duration, SystemTime};

use nimbus_core::workflow::engine::{EventDetails, ScopeStep};
use nimbus_core::workflow::{HistoryEvent, TaskId};
use nimbus_store::SpanRecord;

use crate::telemetry::{Telemetry, TraceContext};

/// The spans an execution has open.
pub(super) struct ExecutionSpans {
    arn: String,
    machine: String,
    /// The context the execution was started in: its span's parent.
    caller: TraceContext,
    /// The execution's own span.
    span_id: String,
    /// States entered and not yet exited, by scope and name.
    open: HashMap<(Vec<ScopeStep>, String), OpenState>,
}

struct OpenState {
    span_id: String,
    state_type: &'static str,
    start_us: i64,
}

impl ExecutionSpans {
    pub(super) fn new(arn: &str, machine: &str, mut caller: TraceContext) -> ExecutionSpans {
        let span_id = span_id(arn, 0);
        // A root execution is stored with its own span as the parent (see `stored_trace`).
        if caller.parent_span_id.as_deref() == Some(span_id.as_str()) {
            caller.parent_span_id = None;
        }
        ExecutionSpans {
            arn: arn.to_owned(),
            machine: machine.to_owned(),
            caller,
            span_id,
            open: HashMap::new(),
        }
    }

    /// The context of the execution's own span, for what it starts outside any state.
    pub(super) fn execution_trace(&self) -> TraceContext {
        self.caller.child_of(&self.span_id)
    }

    /// The context an invocation of `task` runs in: a child of its state's span.
    pub(super) fn task_trace(&self, task: &TaskId) -> TraceContext {
        match self.open.get(&(task.scope.clone(), task.state.clone())) {
            Some(state) => self.caller.child_of(&state.span_id),
            None => self.execution_trace(),
        }
    }

    /// Follows journaled `events`: opens a span at each state entered and, with
    /// `telemetry`, records it when the state is exited and counts the transitions. Without
    /// it (replaying a history at resume) only the open states are rebuilt.
    pub(super) fn observe(&mut self, events: &[HistoryEvent], telemetry: Option<&Telemetry>) {
        let mut transitions = 0;
        for event in events {
            match &event.details {
                EventDetails::StateEntered {
                    state_type, name, ..
                } => {
                    transitions += 1;
                    self.open.insert(
                        (event.scope.clone(), name.clone()),
                        OpenState {
                            span_id: span_id(&self.arn, event.id),
                            state_type: state_type.name(),
                            start_us: event.timestamp_us,
                        },
                    );
                }
                EventDetails::StateExited { name, .. } => {
                    let Some(state) = self.open.remove(&(event.scope.clone(), name.clone())) else {
                        continue;
                    };
                    if let Some(telemetry) = telemetry {
                        self.record_state(telemetry, name, &state, event.timestamp_us, "ok");
                    }
                }
                _ => {}
            }
        }
        if let Some(telemetry) = telemetry
            && transitions > 0
        {
            telemetry
                .metrics
                .workflow_transitions(&self.machine, transitions);
        }
    }

    /// Records the execution's span (and those of states it never exited, which failed
    /// with it) once it has ended with `status`.
    pub(super) fn finish(
        &mut self,
        telemetry: &Telemetry,
        start_us: i64,
        stop_us: i64,
        status: &str,
    ) {
        telemetry.metrics.workflow_execution(&self.machine, status);
        if !telemetry.keeps_spans() {
            return;
        }
        let open: Vec<((Vec<ScopeStep>, String), OpenState)> = self.open.drain().collect();
        for ((_, name), state) in open {
            self.record_state(telemetry, &name, &state, stop_us, "error");
        }
        telemetry.span(SpanRecord {
            trace_id: self.caller.trace_id.clone(),
            span_id: self.span_id.clone(),
            parent_span_id: self.caller.parent_span_id.clone(),
            name: format!("execution {}", self.machine),
            kind: "internal".to_owned(),
            start: at(start_us),
            end: at(stop_us),
            attributes: vec![
                (
                    "aws.stepfunctions.execution_arn".to_owned(),
                    self.arn.clone(),
                ),
                ("aws.stepfunctions.status".to_owned(), status.to_owned()),
            ],
            status: if status == "SUCCEEDED" { "ok" } else { "error" }.to_owned(),
        });
    }

    fn record_state(
        &self,
        telemetry: &Telemetry,
        name: &str,
        state: &OpenState,
        end_us: i64,
        status: &str,
    ) {
        if !telemetry.keeps_spans() {
            return;
        }
        telemetry.span(SpanRecord {
            trace_id: self.caller.trace_id.clone(),
            span_id: state.span_id.clone(),
            parent_span_id: Some(self.span_id.clone()),
            name: format!("state {name}"),
            kind: "internal".to_owned(),
            start: at(state.start_us),
            end: at(end_us),
            attributes: vec![
                (
                    "aws.stepfunctions.execution_arn".to_owned(),
                    self.arn.clone(),
                ),
                (
                    "aws.stepfunctions.state_type".to_owned(),
                    state.state_type.to_owned(),
                ),
            ],
            status: status.to_owned(),
        });
    }
}

/// The trace header an execution is stored with, which `ExecutionSpans::new` reads back
/// after a restart: the caller's span as the parent, or for an execution started outside any
/// trace its own span, so both runs agree that it is a root.
pub(super) fn stored_trace(caller: &TraceContext, arn: &str) -> String {
    match &caller.parent_span_id {
        Some(parent) => caller.xray_header(parent),
        None => caller.xray_header(&span_id(arn, 0)),
    }
}

/// A span id (16 hex digits) that depends only on the execution and the event.
fn span_id(arn: &str, event_id: u64) -> String {
    let mut hasher = DefaultHasher::new();
    arn.hash(&mut hasher);
    event_id.hash(&mut hasher);
    // Never all zeros, which W3C trace context reserves.
    format!("{:016x}", hasher.finish().max(1))
}

fn at(us: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_micros(u64::try_from(us).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn span_ids_are_stable_per_execution_and_event() {
        let a = span_id("arn:aws:states:us-east-1:1:execution:m:a", 3);
        assert_eq!(a, span_id("arn:aws:states:us-east-1:1:execution:m:a", 3));
        assert_ne!(a, span_id("arn:aws:states:us-east-1:1:execution:m:a", 4));
        assert_ne!(a, span_id("arn:aws:states:us-east-1:1:execution:m:b", 3));
        assert_eq!(a.len(), 16);
    }
}
