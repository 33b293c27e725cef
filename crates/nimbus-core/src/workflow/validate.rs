//! The checks `nimbus validate` runs on a parsed definition: transitions, reachability, Retry and Catch order, reserved error names.

use std::collections::{BTreeSet, VecDeque};

use crate::workflow::Diagnostic;
use crate::workflow::definition::{
    Definition, ErrorHandling, Machine, StateKind, Text, Transition,
};
use crate::workflow::resource::Resource;

/// The error names ASL reserves (`States.*`), which `ErrorEquals` may use.
pub const RESERVED_ERRORS: &[&str] = &[
    "States.ALL",
    "States.DataLimitExceeded",
    "States.Runtime",
    "States.HeartbeatTimeout",
    "States.Timeout",
    "States.TaskFailed",
    "States.Permissions",
    "States.ResultPathMatchFailure",
    "States.ParameterPathFailure",
    "States.BranchFailed",
    "States.NoChoiceMatched",
    "States.IntrinsicFailure",
    "States.ExceedToleratedFailureThreshold",
    "States.ItemReaderFailed",
    "States.ResultWriterFailed",
    "States.QueryEvaluationError",
];

/// Every problem with the definition's structure, warnings included; it may run when none is
/// an error.
pub fn validate(definition: &Definition) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    machine(&definition.machine, &mut out);
    out
}

fn machine(machine: &Machine, out: &mut Vec<Diagnostic>) {
    let at = |key: &str| {
        if machine.location.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", machine.location)
        }
    };
    if !machine.has_state(&machine.start_at) {
        out.push(Diagnostic::new(
            &at("StartAt"),
            format!("no state is named '{}'", machine.start_at),
        ));
    }
    for state in &machine.states {
        let mut targets: Vec<(String, &str)> = Vec::new();
        if let Transition::Next(next) = &state.transition {
            targets.push((format!("{}.Next", state.location), next));
        }
        match &state.kind {
            StateKind::Choice { choices, default } => {
                for (i, (_, next)) in choices.iter().enumerate() {
                    targets.push((format!("{}.Choices[{i}].Next", state.location), next));
                }
                if let Some(default) = default {
                    targets.push((format!("{}.Default", state.location), default));
                }
            }
            StateKind::Fail {
                error: Some(Text::Fixed(error)),
                ..
            } if error.starts_with("States.") && !RESERVED_ERRORS.contains(&error.as_str()) => {
                // Step Functions runs such names (published samples use them), so this
                // only warns.
                out.push(Diagnostic::warning(
                    &format!("{}.Error", state.location),
                    format!("'{error}': error names starting with States. are reserved"),
                ));
            }
            StateKind::Parallel { branches, .. } => {
                for branch in branches {
                    self::machine(branch, out);
                }
            }
            StateKind::Map(map) => self::machine(&map.processor, out),
            _ => {}
        }
        if let Some(errors) = state.kind.errors() {
            for (i, catcher) in errors.catch.iter().enumerate() {
                targets.push((format!("{}.Catch[{i}].Next", state.location), &catcher.next));
            }
        }
        for (location, next) in targets {
            if !machine.has_state(next) {
                out.push(Diagnostic::new(
                    &location,
                    format!("no state is named '{next}' in this {}", scope_name(machine)),
                ));
            }
        }
        if let Some(errors) = state.kind.errors() {
            error_handling(&state.location, errors, out);
        }
        if let StateKind::Task(task) = &state.kind {
            if let (
                Some(crate::workflow::definition::Seconds::Fixed(timeout)),
                Some(crate::workflow::definition::Seconds::Fixed(heartbeat)),
            ) = (&task.timeout, &task.heartbeat)
                && heartbeat >= timeout
            {
                out.push(Diagnostic::new(
                    &format!("{}.HeartbeatSeconds", state.location),
                    "must be smaller than TimeoutSeconds",
                ));
            }
            if let Err(message) = Resource::parse(&task.resource) {
                out.push(Diagnostic::new(
                    &format!("{}.Resource", state.location),
                    message,
                ));
            }
        }
    }
    reachability(machine, out);
}

fn scope_name(machine: &Machine) -> &'static str {
    if machine.location.contains("Branches[") && !machine.location.ends_with("ItemProcessor") {
        "branch"
    } else if machine.location.ends_with("ItemProcessor") || machine.location.ends_with("Iterator")
    {
        "Map's processor"
    } else {
        "state machine"
    }
}

fn error_handling(location: &str, errors: &ErrorHandling, out: &mut Vec<Diagnostic>) {
    let lists = errors
        .retry
        .iter()
        .map(|r| ("Retry", &r.error_equals))
        .enumerate()
        .map(|(i, (k, e))| (k, i, e, errors.retry.len()))
        .chain(
            errors
                .catch
                .iter()
                .enumerate()
                .map(|(i, c)| ("Catch", i, &c.error_equals, errors.catch.len())),
        );
    for (kind, i, names, n) in lists {
        let at = format!("{location}.{kind}[{i}].ErrorEquals");
        for name in names {
            if name == "States.ALL" {
                if names.len() != 1 {
                    out.push(Diagnostic::new(
                        &at,
                        "States.ALL must be the only error name in its ErrorEquals",
                    ));
                }
                if i + 1 != n {
                    out.push(Diagnostic::new(
                        &at,
                        format!("States.ALL must be in the last {kind} entry"),
                    ));
                }
            } else if name.starts_with("States.") && !RESERVED_ERRORS.contains(&name.as_str()) {
                out.push(Diagnostic::warning(
                    &at,
                    format!(
                        "unknown error name '{name}': names starting with States. are reserved"
                    ),
                ));
            }
        }
    }
}

fn reachability(machine: &Machine, out: &mut Vec<Diagnostic>) {
    let mut seen = BTreeSet::new();
    let mut queue = VecDeque::from([machine.start_at.as_str()]);
    while let Some(name) = queue.pop_front() {
        if !seen.insert(name) {
            continue;
        }
        let Some(state) = machine.state(name) else {
            continue;
        };
        if let Transition::Next(next) = &state.transition {
            queue.push_back(next);
        }
        if let StateKind::Choice { choices, default } = &state.kind {
            queue.extend(choices.iter().map(|(_, next)| next.as_str()));
            queue.extend(default.as_deref());
        }
        if let Some(errors) = state.kind.errors() {
            queue.extend(errors.catch.iter().map(|c| c.next.as_str()));
        }
    }
    for state in &machine.states {
        if !seen.contains(state.name.as_str()) {
            out.push(Diagnostic::new(
                &state.location,
                format!("the state '{}' is not reachable from StartAt", state.name),
            ));
        }
    }
}
