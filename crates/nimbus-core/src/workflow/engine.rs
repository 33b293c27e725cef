//! The step function: an execution's state, the events that change it, and what the host must do next.
//!
//! [`advance`] decides; every decision is written as a [`HistoryEvent`] and applied to a working
//! copy of the state with [`ExecutionState::apply`], the same function the host folds a stored
//! history with after a restart, so the live state and the rebuilt one cannot disagree.

use std::collections::VecDeque;
use std::fmt;

use serde_json::{Map, Value, json};

use crate::time::{from_unix_micros, rfc3339_millis};
use crate::workflow::definition::{
    Definition, ErrorHandling, Machine, Op, Operand, PathField, Rule, Seconds, State, StateKind,
    StateType, Template, Text, Transition, WaitFor, parse_timestamp,
};
use crate::workflow::random::Rng;

/// The errors no Retry or Catch handles: they fail the execution. A host reports a task
/// result that is not JSON as `States.Runtime`.
pub const TERMINAL_ERRORS: &[&str] = &["States.Runtime", "States.DataLimitExceeded"];

/// The most history events an execution may have, as in Step Functions.
pub const HISTORY_LIMIT: u64 = 25_000;

/// What Step Functions allows in one payload: 256 KiB.
pub const PAYLOAD_LIMIT: usize = 256 * 1024;

/// Who started an execution, and the seed its random draws come from.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionInfo {
    /// `arn:aws:states:<region>:<account>:execution:<machine>:<name>`: `$$.Execution.Id`.
    pub execution_arn: String,
    /// The execution's name.
    pub name: String,
    /// The state machine's ARN: `$$.StateMachine.Id`.
    pub state_machine_arn: String,
    /// The state machine's name.
    pub state_machine_name: String,
    /// `$$.Execution.RoleArn`.
    pub role_arn: String,
    /// The seed of retry jitter, task tokens, `States.UUID` and `States.MathRandom`.
    pub seed: u64,
}

/// Something that happened to an execution, which the host hands to [`advance`].
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// StartExecution.
    Start {
        /// Names and seed.
        info: ExecutionInfo,
        /// The execution's input.
        input: Value,
    },
    /// A task's invocation returned a result (or SendTaskSuccess arrived for its token).
    TaskSucceeded {
        /// The task, as the [`Command::Invoke`] named it.
        task: TaskId,
        /// Its result: for a Lambda function, its response JSON.
        output: Value,
    },
    /// A task's invocation failed (or SendTaskFailure arrived for its token).
    TaskFailed {
        /// The task, as the [`Command::Invoke`] named it.
        task: TaskId,
        /// The error name: a function's `errorType`, `Lambda.Unknown`, ...
        error: String,
        /// The cause: for a function, its error JSON as text.
        cause: String,
    },
    /// SendTaskHeartbeat for a task's token.
    TaskHeartbeat {
        /// The task.
        task: TaskId,
    },
    /// A timer of a [`Command::StartTimer`] came due.
    TimerFired {
        /// The timer.
        timer: TimerId,
    },
    /// StopExecution.
    Stop {
        /// The error given, if any.
        error: Option<String>,
        /// The cause given, if any.
        cause: Option<String>,
    },
}

/// One level of nesting: branch `index` of Parallel `state`, or iteration `index` of Map `state`,
/// in that state's `attempt` (its retries so far).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ScopeStep {
    /// The Parallel or Map state.
    pub state: String,
    /// Its attempt.
    pub attempt: u32,
    /// The branch or iteration.
    pub index: usize,
}

/// One attempt of one Task state in one scope: what results are matched against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskId {
    /// Where the state is: empty at the top level.
    pub scope: Vec<ScopeStep>,
    /// The Task state.
    pub state: String,
    /// Its attempt (`$$.State.RetryCount`).
    pub attempt: u32,
}

/// A timer the host keeps; a [`Command::StartTimer`] with an id already armed moves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerId {
    /// Where the state is.
    pub scope: Vec<ScopeStep>,
    /// The state (empty for the execution's own timeout).
    pub state: String,
    /// The state's attempt.
    pub attempt: u32,
    /// What the timer is for.
    pub kind: TimerKind,
}

/// Why a timer was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerKind {
    /// A Wait state's wait.
    Wait,
    /// The delay before a retry.
    Retry,
    /// A Task's `TimeoutSeconds`.
    TaskTimeout,
    /// A Task's `HeartbeatSeconds`.
    Heartbeat,
    /// The execution's `TimeoutSeconds`.
    Execution,
}

/// How a task completes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// Request-response: the invocation's result is the task's.
    Response,
    /// `.sync`: the host waits for the job it started (a child execution) to finish.
    Sync,
    /// `.waitForTaskToken`: the host makes the call, then waits for SendTaskSuccess or
    /// SendTaskFailure with this token (the call's own result is ignored).
    Token(String),
}

/// Something the host must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Invoke a function or a service integration, then report [`Event::TaskSucceeded`] or
    /// [`Event::TaskFailed`] for `task`.
    Invoke {
        /// What to report the result for.
        task: TaskId,
        /// Stable across re-dispatches of this attempt: `<execution arn>/<task>`.
        key: String,
        /// The state's `Resource`, as written.
        resource: String,
        /// The payload (the effective input after `Parameters`).
        parameters: Value,
        /// How the task completes.
        completion: Completion,
        /// The task's timeout, for the invocation's own deadline.
        timeout_seconds: Option<u64>,
    },
    /// Arm (or move) a timer; report [`Event::TimerFired`] when it is due.
    StartTimer {
        /// Which timer.
        timer: TimerId,
        /// When, in microseconds since the epoch.
        due_us: i64,
    },
    /// A task's result is no longer wanted (its branch failed, it timed out, the execution
    /// stopped): cancel it if possible; a late result is ignored anyway.
    Cancel {
        /// The task.
        task: TaskId,
    },
    /// The execution succeeded.
    Succeed {
        /// Its output.
        output: Value,
    },
    /// The execution failed (or timed out).
    Fail {
        /// The error name.
        error: String,
        /// The cause.
        cause: String,
    },
}

/// One entry of the execution's history, as GetExecutionHistory lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEvent {
    /// From 1, contiguous.
    pub id: u64,
    /// The event before it (0 for the first).
    pub previous_event_id: u64,
    /// When, in microseconds since the epoch.
    pub timestamp_us: i64,
    /// Which branch or iteration it happened in (empty at the top level).
    pub scope: Vec<ScopeStep>,
    /// What happened.
    pub details: EventDetails,
}

/// What a history event says; the names are Step Functions' event types.
#[derive(Debug, Clone, PartialEq)]
pub enum EventDetails {
    /// `ExecutionStarted`.
    ExecutionStarted {
        /// The execution's input.
        input: Value,
        /// Names and seed.
        info: ExecutionInfo,
    },
    /// `ExecutionSucceeded`.
    ExecutionSucceeded {
        /// The output.
        output: Value,
    },
    /// `ExecutionFailed`.
    ExecutionFailed {
        /// The error.
        error: String,
        /// The cause.
        cause: String,
    },
    /// `ExecutionAborted` (StopExecution).
    ExecutionAborted {
        /// The error given.
        error: String,
        /// The cause given.
        cause: String,
    },
    /// `ExecutionTimedOut`.
    ExecutionTimedOut {
        /// `States.Timeout`.
        error: String,
        /// Why.
        cause: String,
    },
    /// `<Type>StateEntered`.
    StateEntered {
        /// The state's type.
        state_type: StateType,
        /// The state's name.
        name: String,
        /// Its raw input.
        input: Value,
        /// For a Wait, when it ends (nimbus's addition, so a rebuilt state re-arms the timer).
        due_us: Option<i64>,
    },
    /// `<Type>StateExited`.
    StateExited {
        /// The state's type.
        state_type: StateType,
        /// The state's name.
        name: String,
        /// Its output.
        output: Value,
    },
    /// `TaskScheduled`.
    TaskScheduled {
        /// `Resource`.
        resource: String,
        /// The payload.
        parameters: Value,
        /// The timeout.
        timeout_seconds: Option<u64>,
        /// The heartbeat interval.
        heartbeat_seconds: Option<u64>,
        /// The task token of a `.waitForTaskToken` task (nimbus's addition).
        token: Option<String>,
    },
    /// `TaskSucceeded`.
    TaskSucceeded {
        /// `Resource`.
        resource: String,
        /// The result.
        output: Value,
    },
    /// `TaskFailed`.
    TaskFailed {
        /// `Resource`.
        resource: String,
        /// The error.
        error: String,
        /// The cause.
        cause: String,
        /// What the state does about it (nimbus's addition).
        plan: Plan,
    },
    /// `TaskTimedOut`.
    TaskTimedOut {
        /// `Resource`.
        resource: String,
        /// `States.Timeout` or `States.HeartbeatTimeout`.
        error: String,
        /// Why.
        cause: String,
        /// What the state does about it (nimbus's addition).
        plan: Plan,
    },
    /// `ParallelStateStarted`.
    ParallelStateStarted {
        /// How many branches.
        branches: usize,
    },
    /// `ParallelStateSucceeded`.
    ParallelStateSucceeded,
    /// `ParallelStateFailed`.
    ParallelStateFailed {
        /// The failed branch's error.
        error: String,
        /// Its cause.
        cause: String,
        /// What the state does about it (nimbus's addition).
        plan: Plan,
    },
    /// `MapStateStarted`.
    MapStateStarted {
        /// The iterations' inputs (AWS records only their number, `length`).
        inputs: Vec<Value>,
        /// The resolved MaxConcurrency (0: no limit).
        max_concurrency: u64,
    },
    /// `MapIterationStarted`.
    MapIterationStarted {
        /// The Map state.
        name: String,
        /// Which iteration.
        index: usize,
    },
    /// `MapIterationSucceeded`.
    MapIterationSucceeded {
        /// The Map state.
        name: String,
        /// Which iteration.
        index: usize,
        /// Its output (nimbus's addition).
        output: Value,
    },
    /// `MapIterationFailed`.
    MapIterationFailed {
        /// The Map state.
        name: String,
        /// Which iteration.
        index: usize,
        /// Its error (nimbus's addition).
        error: String,
        /// Its cause (nimbus's addition).
        cause: String,
    },
    /// `MapIterationAborted`.
    MapIterationAborted {
        /// The Map state.
        name: String,
        /// Which iteration.
        index: usize,
    },
    /// `MapStateSucceeded`.
    MapStateSucceeded,
    /// `MapStateFailed`.
    MapStateFailed {
        /// The error.
        error: String,
        /// The cause.
        cause: String,
        /// What the state does about it (nimbus's addition).
        plan: Plan,
    },
}

/// What a Task, Parallel or Map does about an error: its Retry and Catch, decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Retry after a delay, counting against retrier `retrier`.
    Retry {
        /// The index of the retrier that matched.
        retrier: usize,
        /// When the retry starts.
        due_us: i64,
    },
    /// Go to catcher `catcher`'s `Next`.
    Catch {
        /// The index of the catcher that matched.
        catcher: usize,
    },
    /// Fail the state, and so its branch, iteration or execution.
    Fail,
}

/// The execution's state: the fold of its history.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExecutionState {
    /// Names and seed, once started.
    pub info: Option<ExecutionInfo>,
    /// The execution's input.
    pub input: Value,
    /// When it started.
    pub start_us: i64,
    /// Running or how it ended.
    pub status: ExecutionStatus,
    /// The top-level run.
    pub root: Run,
    /// The id of the last event applied.
    pub last_event_id: u64,
}

/// Where an execution is.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum ExecutionStatus {
    /// Before `ExecutionStarted`.
    #[default]
    NotStarted,
    /// Running.
    Running,
    /// Succeeded with this output.
    Succeeded(Value),
    /// Failed.
    Failed {
        /// The error.
        error: String,
        /// The cause.
        cause: String,
    },
    /// Timed out.
    TimedOut,
    /// Stopped by StopExecution.
    Aborted,
}

/// One sequence of states: the execution, a Parallel branch or a Map iteration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Run {
    /// The state it is in.
    pub active: Option<Active>,
    /// Its output, once it reached its end.
    pub output: Option<Value>,
}

/// The state a run is in.
#[derive(Debug, Clone, PartialEq)]
pub struct Active {
    /// Its name.
    pub name: String,
    /// Its raw input.
    pub input: Value,
    /// When it was entered.
    pub entered_us: i64,
    /// The id of its `StateEntered` event.
    pub entered_event_id: u64,
    /// Retries so far.
    pub attempt: u32,
    /// Retries so far per retrier.
    pub retries: Vec<u64>,
    /// What it waits for.
    pub step: Step,
}

/// What the state a run is in waits for.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Nothing: it is between two events of one [`advance`].
    Instant,
    /// Its error was caught; it leaves for the catcher's `Next`.
    Caught,
    /// A task's result.
    Task {
        /// `Resource`.
        resource: String,
        /// The payload.
        parameters: Value,
        /// `.waitForTaskToken`'s token.
        token: Option<String>,
        /// The timeout.
        timeout_seconds: Option<u64>,
        /// The heartbeat interval.
        heartbeat_seconds: Option<u64>,
        /// When it was scheduled.
        scheduled_us: i64,
    },
    /// The retry timer.
    Retrying {
        /// When.
        due_us: i64,
    },
    /// A Wait's timer.
    Wait {
        /// When.
        due_us: i64,
    },
    /// Parallel branches.
    Parallel {
        /// One run per branch.
        branches: Vec<Run>,
    },
    /// Map iterations.
    Map {
        /// The iterations' inputs.
        inputs: Vec<Value>,
        /// How many may run at once (0: no limit).
        max_concurrency: u64,
        /// One per input.
        iterations: Vec<Iteration>,
    },
}

/// One Map iteration.
#[derive(Debug, Clone, PartialEq)]
#[expect(
    clippy::large_enum_variant,
    reason = "a Run is a few hundred bytes and most iterations of a live Map are running"
)]
pub enum Iteration {
    /// Not started yet (MaxConcurrency).
    Pending,
    /// Running.
    Running(Run),
    /// Done with this output.
    Succeeded(Value),
    /// Failed (its `{Error, Cause}`) or aborted (null).
    Failed(Value),
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for step in &self.scope {
            write!(f, "{}#{}[{}]/", step.state, step.attempt, step.index)?;
        }
        write!(f, "{}#{}", self.state, self.attempt)
    }
}

impl HistoryEvent {
    /// The Step Functions event type: `TaskStateEntered`, `MapIterationStarted`, ...
    pub fn event_type(&self) -> String {
        self.details.event_type()
    }
}

impl EventDetails {
    /// The Step Functions event type.
    pub fn event_type(&self) -> String {
        let fixed = match self {
            EventDetails::StateEntered { state_type, .. } => {
                return format!("{}StateEntered", state_type.name());
            }
            EventDetails::StateExited { state_type, .. } => {
                return format!("{}StateExited", state_type.name());
            }
            EventDetails::ExecutionStarted { .. } => "ExecutionStarted",
            EventDetails::ExecutionSucceeded { .. } => "ExecutionSucceeded",
            EventDetails::ExecutionFailed { .. } => "ExecutionFailed",
            EventDetails::ExecutionAborted { .. } => "ExecutionAborted",
            EventDetails::ExecutionTimedOut { .. } => "ExecutionTimedOut",
            EventDetails::TaskScheduled { .. } => "TaskScheduled",
            EventDetails::TaskSucceeded { .. } => "TaskSucceeded",
            EventDetails::TaskFailed { .. } => "TaskFailed",
            EventDetails::TaskTimedOut { .. } => "TaskTimedOut",
            EventDetails::ParallelStateStarted { .. } => "ParallelStateStarted",
            EventDetails::ParallelStateSucceeded => "ParallelStateSucceeded",
            EventDetails::ParallelStateFailed { .. } => "ParallelStateFailed",
            EventDetails::MapStateStarted { .. } => "MapStateStarted",
            EventDetails::MapIterationStarted { .. } => "MapIterationStarted",
            EventDetails::MapIterationSucceeded { .. } => "MapIterationSucceeded",
            EventDetails::MapIterationFailed { .. } => "MapIterationFailed",
            EventDetails::MapIterationAborted { .. } => "MapIterationAborted",
            EventDetails::MapStateSucceeded => "MapStateSucceeded",
            EventDetails::MapStateFailed { .. } => "MapStateFailed",
        };
        fixed.to_owned()
    }
}

impl ExecutionState {
    /// The state after `events`, folded from the start.
    pub fn fold<'a>(
        definition: &Definition,
        events: impl IntoIterator<Item = &'a HistoryEvent>,
    ) -> ExecutionState {
        let mut state = ExecutionState::default();
        for event in events {
            state.apply(definition, event);
        }
        state
    }

    /// Applies one history event. Events that do not fit the state (which [`advance`] never
    /// writes) are ignored rather than trusted.
    pub fn apply(&mut self, definition: &Definition, event: &HistoryEvent) {
        self.last_event_id = event.id;
        let ts = event.timestamp_us;
        match &event.details {
            EventDetails::ExecutionStarted { input, info } => {
                self.info = Some(info.clone());
                self.input = input.clone();
                self.start_us = ts;
                self.status = ExecutionStatus::Running;
                self.root = Run::default();
                return;
            }
            EventDetails::ExecutionSucceeded { output } => {
                self.status = ExecutionStatus::Succeeded(output.clone());
                return;
            }
            EventDetails::ExecutionFailed { error, cause } => {
                self.status = ExecutionStatus::Failed {
                    error: error.clone(),
                    cause: cause.clone(),
                };
                return;
            }
            EventDetails::ExecutionAborted { .. } => {
                self.status = ExecutionStatus::Aborted;
                return;
            }
            EventDetails::ExecutionTimedOut { .. } => {
                self.status = ExecutionStatus::TimedOut;
                return;
            }
            _ => {}
        }
        let terminal = match &event.details {
            EventDetails::StateExited { name, .. } => machine_at(definition, &event.scope)
                .and_then(|m| m.state(name))
                .is_some_and(|s| {
                    s.transition == Transition::End || matches!(s.kind, StateKind::Succeed)
                }),
            _ => false,
        };
        let Some(run) = self.run_mut(&event.scope) else {
            return;
        };
        if let EventDetails::StateEntered {
            name,
            input,
            due_us,
            state_type,
        } = &event.details
        {
            run.active = Some(Active {
                name: name.clone(),
                input: input.clone(),
                entered_us: ts,
                entered_event_id: event.id,
                attempt: 0,
                retries: Vec::new(),
                step: match (state_type, due_us) {
                    (StateType::Wait, Some(due_us)) => Step::Wait { due_us: *due_us },
                    _ => Step::Instant,
                },
            });
            return;
        }
        if let EventDetails::StateExited { output, .. } = &event.details {
            // A state left through a catcher goes to the catcher's Next, whatever its own End.
            let caught = run.active.as_ref().is_some_and(|a| a.step == Step::Caught);
            run.active = None;
            if terminal && !caught {
                run.output = Some(output.clone());
            }
            return;
        }
        let Some(active) = run.active.as_mut() else {
            return;
        };
        match &event.details {
            EventDetails::TaskScheduled {
                resource,
                parameters,
                timeout_seconds,
                heartbeat_seconds,
                token,
            } => {
                active.step = Step::Task {
                    resource: resource.clone(),
                    parameters: parameters.clone(),
                    token: token.clone(),
                    timeout_seconds: *timeout_seconds,
                    heartbeat_seconds: *heartbeat_seconds,
                    scheduled_us: ts,
                }
            }
            EventDetails::TaskFailed { plan, .. }
            | EventDetails::TaskTimedOut { plan, .. }
            | EventDetails::ParallelStateFailed { plan, .. }
            | EventDetails::MapStateFailed { plan, .. } => match plan {
                Plan::Retry { retrier, due_us } => {
                    if active.retries.len() <= *retrier {
                        active.retries.resize(retrier + 1, 0);
                    }
                    active.retries[*retrier] += 1;
                    active.attempt += 1;
                    active.step = Step::Retrying { due_us: *due_us };
                }
                Plan::Catch { .. } => active.step = Step::Caught,
                Plan::Fail => active.step = Step::Instant,
            },
            EventDetails::TaskSucceeded { .. }
            | EventDetails::ParallelStateSucceeded
            | EventDetails::MapStateSucceeded => {
                active.step = Step::Instant;
            }
            EventDetails::ParallelStateStarted { branches } => {
                active.step = Step::Parallel {
                    branches: vec![Run::default(); *branches],
                };
            }
            EventDetails::MapStateStarted {
                inputs,
                max_concurrency,
            } => {
                active.step = Step::Map {
                    inputs: inputs.clone(),
                    max_concurrency: *max_concurrency,
                    iterations: vec![Iteration::Pending; inputs.len()],
                };
            }
            EventDetails::MapIterationStarted { index, .. }
            | EventDetails::MapIterationSucceeded { index, .. }
            | EventDetails::MapIterationFailed { index, .. }
            | EventDetails::MapIterationAborted { index, .. } => {
                let Step::Map { iterations, .. } = &mut active.step else {
                    return;
                };
                let Some(slot) = iterations.get_mut(*index) else {
                    return;
                };
                *slot = match &event.details {
                    EventDetails::MapIterationStarted { .. } => Iteration::Running(Run::default()),
                    EventDetails::MapIterationSucceeded { output, .. } => {
                        Iteration::Succeeded(output.clone())
                    }
                    EventDetails::MapIterationFailed { error, cause, .. } => {
                        Iteration::Failed(json!({"Error": error, "Cause": cause}))
                    }
                    _ => Iteration::Failed(Value::Null),
                };
            }
            _ => {}
        }
    }

    /// The run at `scope`, if that branch or iteration is live.
    pub fn run(&self, scope: &[ScopeStep]) -> Option<&Run> {
        let mut run = &self.root;
        for step in scope {
            let active = run.active.as_ref()?;
            if active.name != step.state || active.attempt != step.attempt {
                return None;
            }
            run = match &active.step {
                Step::Parallel { branches } => branches.get(step.index)?,
                Step::Map { iterations, .. } => match iterations.get(step.index)? {
                    Iteration::Running(run) => run,
                    _ => return None,
                },
                _ => return None,
            };
        }
        Some(run)
    }

    fn run_mut(&mut self, scope: &[ScopeStep]) -> Option<&mut Run> {
        let mut run = &mut self.root;
        for step in scope {
            let active = run.active.as_mut()?;
            if active.name != step.state || active.attempt != step.attempt {
                return None;
            }
            run = match &mut active.step {
                Step::Parallel { branches } => branches.get_mut(step.index)?,
                Step::Map { iterations, .. } => match iterations.get_mut(step.index)? {
                    Iteration::Running(run) => run,
                    _ => return None,
                },
                _ => return None,
            };
        }
        Some(run)
    }

    fn active(&self, scope: &[ScopeStep], name: &str) -> Option<&Active> {
        self.run(scope)?.active.as_ref().filter(|a| a.name == name)
    }

    /// The task whose `.waitForTaskToken` token is `token`, for SendTask*.
    pub fn task_by_token(&self, token: &str) -> Option<TaskId> {
        let mut found = None;
        self.walk(&mut |scope, active| {
            if let Step::Task { token: Some(t), .. } = &active.step
                && t == token
            {
                found = Some(TaskId {
                    scope: scope.to_vec(),
                    state: active.name.clone(),
                    attempt: active.attempt,
                });
            }
        });
        found
    }

    /// What the host must have in flight for this state: the invocations of running tasks
    /// and the timers. After a restart, the host folds the history and carries these out
    /// again (a task is invoked again with the same key: at least once).
    pub fn outstanding(&self, definition: &Definition) -> Vec<Command> {
        let mut commands = Vec::new();
        if self.status != ExecutionStatus::Running {
            return commands;
        }
        if let Some(seconds) = definition.timeout_seconds {
            commands.push(Command::StartTimer {
                timer: TimerId {
                    scope: Vec::new(),
                    state: String::new(),
                    attempt: 0,
                    kind: TimerKind::Execution,
                },
                due_us: self.start_us.saturating_add(secs_to_us(seconds as f64)),
            });
        }
        let execution_arn = self
            .info
            .as_ref()
            .map_or("", |i| i.execution_arn.as_str())
            .to_owned();
        self.walk(&mut |scope, active| match &active.step {
            Step::Task {
                resource,
                parameters,
                token,
                timeout_seconds,
                heartbeat_seconds,
                scheduled_us,
            } => {
                let task = TaskId {
                    scope: scope.to_vec(),
                    state: active.name.clone(),
                    attempt: active.attempt,
                };
                commands.extend(task_commands(
                    &execution_arn,
                    task,
                    resource,
                    parameters,
                    token.as_deref(),
                    *timeout_seconds,
                    *heartbeat_seconds,
                    *scheduled_us,
                ));
            }
            Step::Retrying { due_us } | Step::Wait { due_us } => {
                commands.push(Command::StartTimer {
                    timer: TimerId {
                        scope: scope.to_vec(),
                        state: active.name.clone(),
                        attempt: active.attempt,
                        kind: if matches!(active.step, Step::Wait { .. }) {
                            TimerKind::Wait
                        } else {
                            TimerKind::Retry
                        },
                    },
                    due_us: *due_us,
                })
            }
            _ => {}
        });
        commands
    }

    /// Calls `f` with every active state and its scope, parents before children.
    fn walk(&self, f: &mut dyn FnMut(&[ScopeStep], &Active)) {
        fn go(run: &Run, scope: &mut Vec<ScopeStep>, f: &mut dyn FnMut(&[ScopeStep], &Active)) {
            let Some(active) = &run.active else {
                return;
            };
            f(scope, active);
            let runs: Vec<(usize, &Run)> = match &active.step {
                Step::Parallel { branches } => branches.iter().enumerate().collect(),
                Step::Map { iterations, .. } => iterations
                    .iter()
                    .enumerate()
                    .filter_map(|(i, it)| match it {
                        Iteration::Running(run) => Some((i, run)),
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            };
            for (index, run) in runs {
                scope.push(ScopeStep {
                    state: active.name.clone(),
                    attempt: active.attempt,
                    index,
                });
                go(run, scope, f);
                scope.pop();
            }
        }
        go(&self.root, &mut Vec::new(), f);
    }
}

#[expect(clippy::too_many_arguments, reason = "the fields of one Step::Task")]
fn task_commands(
    execution_arn: &str,
    task: TaskId,
    resource: &str,
    parameters: &Value,
    token: Option<&str>,
    timeout_seconds: Option<u64>,
    heartbeat_seconds: Option<u64>,
    scheduled_us: i64,
) -> Vec<Command> {
    let mut commands = Vec::new();
    let timer = |kind, seconds: u64| Command::StartTimer {
        timer: TimerId {
            scope: task.scope.clone(),
            state: task.state.clone(),
            attempt: task.attempt,
            kind,
        },
        due_us: scheduled_us.saturating_add(
            i64::try_from(seconds)
                .unwrap_or(i64::MAX / 2)
                .saturating_mul(1_000_000),
        ),
    };
    if let Some(seconds) = timeout_seconds {
        commands.push(timer(TimerKind::TaskTimeout, seconds));
    }
    if let Some(seconds) = heartbeat_seconds {
        commands.push(timer(TimerKind::Heartbeat, seconds));
    }
    let completion = match token {
        Some(token) => Completion::Token(token.to_owned()),
        None if resource.ends_with(".sync") || resource.contains(".sync:") => Completion::Sync,
        None => Completion::Response,
    };
    commands.insert(
        0,
        Command::Invoke {
            key: format!("{execution_arn}/{task}"),
            task,
            resource: resource.to_owned(),
            parameters: parameters.clone(),
            completion,
            timeout_seconds,
        },
    );
    commands
}

/// The machine a scope's states belong to.
pub fn machine_at<'a>(definition: &'a Definition, scope: &[ScopeStep]) -> Option<&'a Machine> {
    let mut machine = &definition.machine;
    for step in scope {
        machine = match &machine.state(&step.state)?.kind {
            StateKind::Parallel { branches, .. } => branches.get(step.index)?,
            StateKind::Map(map) => &map.processor,
            _ => return None,
        };
    }
    Some(machine)
}

/// Applies `event` to the execution: the history events to append (already applied to the
/// returned copy of the state, which [`ExecutionState::fold`] of the whole history equals)
/// and the commands for the host. An event that no longer fits (a late result of a task that
/// timed out, a timer moved since) changes nothing.
pub fn advance(
    definition: &Definition,
    state: &ExecutionState,
    now_us: i64,
    event: Event,
) -> (ExecutionState, Vec<HistoryEvent>, Vec<Command>) {
    let mut engine = Engine {
        def: definition,
        state: state.clone(),
        now: now_us,
        events: Vec::new(),
        commands: Vec::new(),
        work: VecDeque::new(),
    };
    if let Err(fatal) = engine.handle(event).and_then(|()| engine.drain()) {
        engine.fail_execution(fatal.error, fatal.cause);
    }
    (engine.state, engine.events, engine.commands)
}

/// An error that fails the whole execution, whatever Retry and Catch say: `States.Runtime`
/// and `States.DataLimitExceeded`, as in Step Functions.
#[derive(Debug)]
struct Fatal {
    error: String,
    cause: String,
}

/// An error a state may retry or catch.
#[derive(Debug, Clone)]
struct Failure {
    error: String,
    cause: String,
}

enum Work {
    Enter {
        scope: Vec<ScopeStep>,
        name: String,
        input: Value,
    },
    Finished {
        scope: Vec<ScopeStep>,
        result: Result<Value, Failure>,
    },
}

struct Engine<'a> {
    def: &'a Definition,
    state: ExecutionState,
    now: i64,
    events: Vec<HistoryEvent>,
    commands: Vec<Command>,
    work: VecDeque<Work>,
}

fn runtime(cause: impl Into<String>) -> Fatal {
    Fatal {
        error: "States.Runtime".to_owned(),
        cause: cause.into(),
    }
}

fn error_object(failure: &Failure) -> Value {
    json!({"Error": failure.error, "Cause": failure.cause})
}

fn secs_to_us(seconds: f64) -> i64 {
    (seconds * 1_000_000.0).round().min(i64::MAX as f64 / 2.0) as i64
}

impl<'a> Engine<'a> {
    fn emit(&mut self, scope: &[ScopeStep], details: EventDetails) {
        let event = HistoryEvent {
            id: self.state.last_event_id + 1,
            previous_event_id: self.state.last_event_id,
            timestamp_us: self.now,
            scope: scope.to_vec(),
            details,
        };
        self.state.apply(self.def, &event);
        self.events.push(event);
    }

    /// The draws of templates (`States.UUID`, `States.MathRandom`) at this point of the history.
    fn rng(&self) -> Rng {
        self.rng_stream(Stream::Templates)
    }

    /// A separate stream per use, so a task token never equals a `States.UUID()` drawn while
    /// evaluating the same state's Parameters.
    fn rng_stream(&self, stream: Stream) -> Rng {
        let seed = self.state.info.as_ref().map_or(0, |i| i.seed);
        Rng::new(
            seed ^ (stream as u64).wrapping_mul(0xA076_1D64_78BD_642F),
            self.state.last_event_id,
        )
    }

    fn running(&self) -> bool {
        self.state.status == ExecutionStatus::Running
    }

    fn state_def(&self, scope: &[ScopeStep], name: &str) -> Option<&'a State> {
        machine_at(self.def, scope)?.state(name)
    }

    fn handle(&mut self, event: Event) -> Result<(), Fatal> {
        if let Event::Start { info, input } = event {
            if self.state.status != ExecutionStatus::NotStarted {
                return Ok(());
            }
            let size = input.to_string().len();
            self.emit(
                &[],
                EventDetails::ExecutionStarted {
                    input: input.clone(),
                    info,
                },
            );
            if size > PAYLOAD_LIMIT {
                return Err(Fatal {
                    error: "States.DataLimitExceeded".to_owned(),
                    cause: format!(
                        "The state/task input of {size} bytes is larger than the {PAYLOAD_LIMIT} bytes allowed"
                    ),
                });
            }
            if let Some(seconds) = self.def.timeout_seconds {
                self.commands.push(Command::StartTimer {
                    timer: TimerId {
                        scope: Vec::new(),
                        state: String::new(),
                        attempt: 0,
                        kind: TimerKind::Execution,
                    },
                    due_us: self.now.saturating_add(secs_to_us(seconds as f64)),
                });
            }
            self.work.push_back(Work::Enter {
                scope: Vec::new(),
                name: self.def.machine.start_at.clone(),
                input,
            });
            return Ok(());
        }
        if !self.running() {
            return Ok(());
        }
        match event {
            Event::Start { .. } => Ok(()),
            Event::TaskSucceeded { task, output } => {
                let Some((active, state, resource)) = self.running_task(&task) else {
                    return Ok(());
                };
                let size = output.to_string().len();
                if size > PAYLOAD_LIMIT {
                    // Recorded as a failure so the journal never holds the oversized result.
                    let error = "States.DataLimitExceeded".to_owned();
                    let cause = format!(
                        "The state/task '{}' returned a result of {size} bytes, larger than the {PAYLOAD_LIMIT} bytes allowed",
                        task.state
                    );
                    self.emit(
                        &task.scope,
                        EventDetails::TaskFailed {
                            resource,
                            error: error.clone(),
                            cause: cause.clone(),
                            plan: Plan::Fail,
                        },
                    );
                    return Err(Fatal { error, cause });
                }
                self.emit(
                    &task.scope,
                    EventDetails::TaskSucceeded {
                        resource,
                        output: output.clone(),
                    },
                );
                self.finish_result(&task.scope, state, &active, output)
            }
            Event::TaskFailed { task, error, cause } => {
                let Some((active, state, resource)) = self.running_task(&task) else {
                    return Ok(());
                };
                if TERMINAL_ERRORS.contains(&error.as_str()) {
                    // A result the host could not use (not JSON, too large) fails the
                    // execution, as these errors do in Step Functions: no Retry or Catch.
                    self.emit(
                        &task.scope,
                        EventDetails::TaskFailed {
                            resource,
                            error: error.clone(),
                            cause: cause.clone(),
                            plan: Plan::Fail,
                        },
                    );
                    return Err(Fatal { error, cause });
                }
                self.state_failed(
                    &task.scope,
                    state,
                    &active,
                    Failure { error, cause },
                    FailureKind::Task(resource, false),
                )
            }
            Event::TaskHeartbeat { task } => {
                let Some((active, _, _)) = self.running_task(&task) else {
                    return Ok(());
                };
                if let Step::Task {
                    heartbeat_seconds: Some(seconds),
                    ..
                } = active.step
                {
                    self.commands.push(Command::StartTimer {
                        timer: TimerId {
                            scope: task.scope.clone(),
                            state: task.state.clone(),
                            attempt: task.attempt,
                            kind: TimerKind::Heartbeat,
                        },
                        due_us: self.now.saturating_add(secs_to_us(seconds as f64)),
                    });
                }
                Ok(())
            }
            Event::TimerFired { timer } => self.timer(timer),
            Event::Stop { error, cause } => {
                self.cancel_under(&[]);
                self.emit(
                    &[],
                    EventDetails::ExecutionAborted {
                        error: error.unwrap_or_default(),
                        cause: cause.unwrap_or_default(),
                    },
                );
                Ok(())
            }
        }
    }

    /// The active Task state `task` names, if it still waits for that attempt's result.
    fn running_task(&self, task: &TaskId) -> Option<(Active, &'a State, String)> {
        let active = self.state.active(&task.scope, &task.state)?;
        let Step::Task { resource, .. } = &active.step else {
            return None;
        };
        if active.attempt != task.attempt {
            return None;
        }
        let state = self.state_def(&task.scope, &task.state)?;
        Some((active.clone(), state, resource.clone()))
    }

    fn timer(&mut self, timer: TimerId) -> Result<(), Fatal> {
        if timer.kind == TimerKind::Execution {
            self.cancel_under(&[]);
            let cause = "The execution ran longer than its TimeoutSeconds".to_owned();
            self.emit(
                &[],
                EventDetails::ExecutionTimedOut {
                    error: "States.Timeout".to_owned(),
                    cause: cause.clone(),
                },
            );
            self.commands.push(Command::Fail {
                error: "States.Timeout".to_owned(),
                cause,
            });
            return Ok(());
        }
        let Some(active) = self.state.active(&timer.scope, &timer.state).cloned() else {
            return Ok(());
        };
        let Some(state) = self.state_def(&timer.scope, &timer.state) else {
            return Ok(());
        };
        if active.attempt != timer.attempt {
            return Ok(());
        }
        match (timer.kind, &active.step) {
            (TimerKind::Wait, Step::Wait { .. }) => {
                let ctx = self.context(&timer.scope, &active, None, None);
                let effective = self.input_path(state, &active, &ctx)?;
                let output = self.output_path(state, &active, effective, &ctx)?;
                self.exit(&timer.scope, state, output);
                Ok(())
            }
            (TimerKind::Retry, Step::Retrying { .. }) => {
                self.start_body(&timer.scope, state, &active)
            }
            (TimerKind::TaskTimeout | TimerKind::Heartbeat, Step::Task { resource, .. }) => {
                let (error, cause) = if timer.kind == TimerKind::TaskTimeout {
                    (
                        "States.Timeout",
                        "The task did not finish within its TimeoutSeconds",
                    )
                } else {
                    (
                        "States.HeartbeatTimeout",
                        "The task sent no heartbeat within its HeartbeatSeconds",
                    )
                };
                let resource = resource.clone();
                self.commands.push(Command::Cancel {
                    task: TaskId {
                        scope: timer.scope.clone(),
                        state: timer.state.clone(),
                        attempt: timer.attempt,
                    },
                });
                self.state_failed(
                    &timer.scope,
                    state,
                    &active,
                    Failure {
                        error: error.to_owned(),
                        cause: cause.to_owned(),
                    },
                    FailureKind::Task(resource, true),
                )
            }
            _ => Ok(()),
        }
    }

    fn drain(&mut self) -> Result<(), Fatal> {
        while let Some(work) = self.work.pop_front() {
            if !self.running() {
                break;
            }
            // A loop of Pass or Choice states would otherwise never return.
            if self.state.last_event_id >= HISTORY_LIMIT {
                return Err(runtime(format!(
                    "The execution reached the limit of {HISTORY_LIMIT} history events"
                )));
            }
            match work {
                Work::Enter { scope, name, input } => {
                    if self
                        .state
                        .run(&scope)
                        .is_none_or(|r| r.active.is_some() || r.output.is_some())
                    {
                        continue;
                    }
                    self.enter(&scope, &name, input)?;
                }
                Work::Finished { scope, result } => self.finished(&scope, result)?,
            }
        }
        Ok(())
    }

    fn fail_execution(&mut self, error: String, cause: String) {
        if !self.running() {
            return;
        }
        self.cancel_under(&[]);
        self.emit(
            &[],
            EventDetails::ExecutionFailed {
                error: error.clone(),
                cause: cause.clone(),
            },
        );
        self.commands.push(Command::Fail { error, cause });
        self.work.clear();
    }

    /// Cancels every running task at or below `scope`.
    fn cancel_under(&mut self, scope: &[ScopeStep]) {
        let mut cancels = Vec::new();
        self.state.walk(&mut |at, active| {
            if at.starts_with(scope) && matches!(active.step, Step::Task { .. }) {
                cancels.push(Command::Cancel {
                    task: TaskId {
                        scope: at.to_vec(),
                        state: active.name.clone(),
                        attempt: active.attempt,
                    },
                });
            }
        });
        self.commands.extend(cancels);
    }

    /// Cancels every running task in the branches or iterations of `state` at `scope`.
    fn cancel_children(&mut self, scope: &[ScopeStep], state: &str, attempt: u32) {
        let mut cancels = Vec::new();
        self.state.walk(&mut |at, active| {
            let inside = at.len() > scope.len()
                && at.starts_with(scope)
                && at[scope.len()].state == state
                && at[scope.len()].attempt == attempt;
            if inside && matches!(active.step, Step::Task { .. }) {
                cancels.push(Command::Cancel {
                    task: TaskId {
                        scope: at.to_vec(),
                        state: active.name.clone(),
                        attempt: active.attempt,
                    },
                });
            }
        });
        self.commands.extend(cancels);
    }

    /// The context object (`$$`) for a state.
    fn context(
        &self,
        scope: &[ScopeStep],
        active: &Active,
        token: Option<&str>,
        item: Option<(usize, &Value)>,
    ) -> Value {
        let _ = scope;
        if !self.def.uses_context {
            return Value::Null;
        }
        let info = self.state.info.clone().unwrap_or(ExecutionInfo {
            execution_arn: String::new(),
            name: String::new(),
            state_machine_arn: String::new(),
            state_machine_name: String::new(),
            role_arn: String::new(),
            seed: 0,
        });
        let mut ctx = json!({
            "Execution": {
                "Id": info.execution_arn,
                "Input": self.state.input,
                "Name": info.name,
                "RoleArn": info.role_arn,
                "StartTime": rfc3339_millis(from_unix_micros(self.state.start_us)),
            },
            "State": {
                "EnteredTime": rfc3339_millis(from_unix_micros(active.entered_us)),
                "Name": active.name,
                "RetryCount": active.attempt,
            },
            "StateMachine": {"Id": info.state_machine_arn, "Name": info.state_machine_name},
        });
        if let Some(object) = ctx.as_object_mut() {
            if let Some(token) = token {
                object.insert("Task".to_owned(), json!({"Token": token}));
            }
            if let Some((index, value)) = item {
                object.insert(
                    "Map".to_owned(),
                    json!({"Item": {"Index": index, "Value": value}}),
                );
            }
        }
        ctx
    }

    fn where_(&self, state: &State, active: &Active) -> String {
        format!(
            "An error occurred while executing the state '{}' (entered at the event id #{}).",
            state.name, active.entered_event_id
        )
    }

    fn select(
        &self,
        state: &State,
        active: &Active,
        field: &str,
        path: &crate::workflow::path::Path,
        input: &Value,
        ctx: &Value,
    ) -> Result<Value, Fatal> {
        path.select(input, ctx).ok_or_else(|| {
            runtime(format!(
                "{} Invalid path '{path}' : No results for path: {path}{}",
                self.where_(state, active),
                if field.is_empty() {
                    String::new()
                } else {
                    format!(" (in {field})")
                }
            ))
        })
    }

    fn input_path(&self, state: &State, active: &Active, ctx: &Value) -> Result<Value, Fatal> {
        match &state.io.input_path {
            PathField::Default => Ok(active.input.clone()),
            PathField::Null => Ok(Value::Object(Map::new())),
            PathField::Path(p) => self.select(state, active, "InputPath", p, &active.input, ctx),
        }
    }

    fn output_path(
        &self,
        state: &State,
        active: &Active,
        output: Value,
        ctx: &Value,
    ) -> Result<Value, Fatal> {
        match &state.io.output_path {
            PathField::Default => Ok(output),
            PathField::Null => Ok(Value::Object(Map::new())),
            PathField::Path(p) => self.select(state, active, "OutputPath", p, &output, ctx),
        }
    }

    fn result_path(
        &self,
        state: &State,
        active: &Active,
        field: &PathField,
        result: Value,
    ) -> Result<Value, Fatal> {
        match field {
            PathField::Default => Ok(result),
            PathField::Null => Ok(active.input.clone()),
            PathField::Path(p) => p
                .set(active.input.clone(), result)
                .map_err(|e| runtime(format!("{} {e}", self.where_(state, active)))),
        }
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "the state, its input and the context a template is evaluated in"
    )]
    fn template(
        &self,
        state: &State,
        active: &Active,
        field: &str,
        template: &Template,
        input: &Value,
        ctx: &Value,
        rng: &mut Rng,
    ) -> Result<Value, Fatal> {
        Ok(match template {
            Template::Literal(v) => v.clone(),
            Template::Path(p) => self.select(state, active, field, p, input, ctx)?,
            Template::Call(call) => call
                .eval(input, ctx, rng)
                .map_err(|e| runtime(format!("{} {e}", self.where_(state, active))))?,
            Template::Object(members) => {
                let mut object = Map::new();
                for (key, t) in members {
                    object.insert(
                        key.clone(),
                        self.template(state, active, field, t, input, ctx, rng)?,
                    );
                }
                Value::Object(object)
            }
            Template::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for t in items {
                    out.push(self.template(state, active, field, t, input, ctx, rng)?);
                }
                Value::Array(out)
            }
        })
    }

    /// InputPath then Parameters: the effective input.
    fn effective_input(&self, state: &State, active: &Active, ctx: &Value) -> Result<Value, Fatal> {
        let input = self.input_path(state, active, ctx)?;
        match &state.io.parameters {
            Some(template) => self.template(
                state,
                active,
                "Parameters",
                template,
                &input,
                ctx,
                &mut self.rng(),
            ),
            None => Ok(input),
        }
    }

    fn enter(&mut self, scope: &[ScopeStep], name: &str, input: Value) -> Result<(), Fatal> {
        let Some(state) = self.state_def(scope, name) else {
            return Err(runtime(format!("no state is named '{name}'")));
        };
        let state_type = state.kind.state_type();
        // A Wait's end is computed before its StateEntered so the event can carry it; a
        // failure is raised after, as Step Functions records it.
        let provisional = Active {
            name: name.to_owned(),
            input: input.clone(),
            entered_us: self.now,
            entered_event_id: self.state.last_event_id + 1,
            attempt: 0,
            retries: Vec::new(),
            step: Step::Instant,
        };
        let due = match &state.kind {
            StateKind::Wait(wait) => Some(self.wait_due(scope, state, &provisional, wait)),
            _ => None,
        };
        self.emit(
            scope,
            EventDetails::StateEntered {
                state_type,
                name: name.to_owned(),
                input,
                due_us: due.as_ref().and_then(|d| d.as_ref().ok().copied()),
            },
        );
        let Some(active) = self.state.active(scope, name).cloned() else {
            return Ok(());
        };
        match &state.kind {
            StateKind::Pass { result } => {
                let ctx = self.context(scope, &active, None, None);
                let effective = self.effective_input(state, &active, &ctx)?;
                let result = result.clone().unwrap_or(effective);
                let output = self.result_path(state, &active, &state.io.result_path, result)?;
                let output = self.output_path(state, &active, output, &ctx)?;
                self.exit(scope, state, output);
            }
            StateKind::Choice { choices, default } => {
                let ctx = self.context(scope, &active, None, None);
                let effective = self.input_path(state, &active, &ctx)?;
                let mut next = None;
                for (rule, target) in choices {
                    if self.rule(state, &active, rule, &effective, &ctx)? {
                        next = Some(target);
                        break;
                    }
                }
                let Some(next) = next.or(default.as_ref()) else {
                    self.work.push_back(Work::Finished {
                        scope: scope.to_vec(),
                        result: Err(Failure {
                            error: "States.NoChoiceMatched".to_owned(),
                            cause: format!("No Matches! (in the Choice state '{name}')"),
                        }),
                    });
                    return Ok(());
                };
                let output = self.output_path(state, &active, effective, &ctx)?;
                self.emit(
                    scope,
                    EventDetails::StateExited {
                        state_type,
                        name: name.to_owned(),
                        output: output.clone(),
                    },
                );
                self.work.push_back(Work::Enter {
                    scope: scope.to_vec(),
                    name: next.clone(),
                    input: output,
                });
            }
            StateKind::Succeed => {
                let ctx = self.context(scope, &active, None, None);
                let effective = self.input_path(state, &active, &ctx)?;
                let output = self.output_path(state, &active, effective, &ctx)?;
                self.exit(scope, state, output);
            }
            StateKind::Fail { error, cause } => {
                let ctx = self.context(scope, &active, None, None);
                let text = |engine: &Self,
                            text: &Option<Text>,
                            field: &str|
                 -> Result<String, Fatal> {
                    Ok(match text {
                        None => String::new(),
                        Some(Text::Fixed(s)) => s.clone(),
                        Some(Text::Path(p)) => {
                            match engine.select(state, &active, field, p, &active.input, &ctx)? {
                                Value::String(s) => s,
                                other => {
                                    return Err(runtime(format!(
                                        "{} The {field} '{p}' selected {other}, not a string",
                                        engine.where_(state, &active)
                                    )));
                                }
                            }
                        }
                        Some(Text::Call(call)) => {
                            match call.eval(&active.input, &ctx, &mut engine.rng()) {
                                Ok(Value::String(s)) => s,
                                Ok(other) => other.to_string(),
                                Err(e) => {
                                    return Err(runtime(format!(
                                        "{} {e}",
                                        engine.where_(state, &active)
                                    )));
                                }
                            }
                        }
                    })
                };
                let failure = Failure {
                    error: text(self, error, "ErrorPath")?,
                    cause: text(self, cause, "CausePath")?,
                };
                self.work.push_back(Work::Finished {
                    scope: scope.to_vec(),
                    result: Err(failure),
                });
            }
            StateKind::Wait(_) => match due {
                Some(Ok(due_us)) => self.commands.push(Command::StartTimer {
                    timer: TimerId {
                        scope: scope.to_vec(),
                        state: name.to_owned(),
                        attempt: 0,
                        kind: TimerKind::Wait,
                    },
                    due_us,
                }),
                Some(Err(fatal)) => return Err(fatal),
                None => {}
            },
            StateKind::Task(_) | StateKind::Parallel { .. } | StateKind::Map(_) => {
                self.start_body(scope, state, &active)?;
            }
        }
        Ok(())
    }

    fn wait_due(
        &self,
        scope: &[ScopeStep],
        state: &State,
        active: &Active,
        wait: &WaitFor,
    ) -> Result<i64, Fatal> {
        let ctx = self.context(scope, active, None, None);
        let due = match wait {
            WaitFor::Seconds(s) => self.now.saturating_add(secs_to_us(*s as f64)),
            WaitFor::Timestamp(t) => *t,
            WaitFor::SecondsPath(p) => {
                let effective = self.input_path(state, active, &ctx)?;
                match self
                    .select(state, active, "SecondsPath", p, &effective, &ctx)?
                    .as_u64()
                {
                    Some(s) => self.now.saturating_add(secs_to_us(s as f64)),
                    None => {
                        return Err(runtime(format!(
                            "{} The SecondsPath parameter does not reference a valid non-negative integer: '{p}'",
                            self.where_(state, active)
                        )));
                    }
                }
            }
            WaitFor::TimestampPath(p) => {
                let effective = self.input_path(state, active, &ctx)?;
                match self
                    .select(state, active, "TimestampPath", p, &effective, &ctx)?
                    .as_str()
                    .and_then(parse_timestamp)
                {
                    Some(t) => t,
                    None => {
                        return Err(runtime(format!(
                            "{} The TimestampPath parameter does not reference a valid ISO-8601 extended offset date-time format string: '{p}'",
                            self.where_(state, active)
                        )));
                    }
                }
            }
        };
        Ok(due)
    }

    /// Starts (or, after a retry delay, restarts) a Task, Parallel or Map.
    fn start_body(
        &mut self,
        scope: &[ScopeStep],
        state: &'a State,
        active: &Active,
    ) -> Result<(), Fatal> {
        match &state.kind {
            StateKind::Task(task) => {
                let token =
                    task_token(&task.resource).then(|| self.rng_stream(Stream::Tokens).uuid());
                let ctx = self.context(scope, active, token.as_deref(), None);
                let parameters = self.effective_input(state, active, &ctx)?;
                let effective = self.input_path(state, active, &ctx)?;
                let seconds = |s: &Option<Seconds>, field: &str| -> Result<Option<u64>, Fatal> {
                    match s {
                        None => Ok(None),
                        Some(Seconds::Fixed(n)) => Ok(Some(*n)),
                        Some(Seconds::Path(p)) => match self
                            .select(state, active, field, p, &effective, &ctx)?
                            .as_u64()
                        {
                            Some(n) if n > 0 => Ok(Some(n)),
                            _ => Err(runtime(format!(
                                "{} The {field} '{p}' does not select a positive integer",
                                self.where_(state, active)
                            ))),
                        },
                    }
                };
                let timeout_seconds = seconds(&task.timeout, "TimeoutSecondsPath")?;
                let heartbeat_seconds = seconds(&task.heartbeat, "HeartbeatSecondsPath")?;
                self.emit(
                    scope,
                    EventDetails::TaskScheduled {
                        resource: task.resource.clone(),
                        parameters: parameters.clone(),
                        timeout_seconds,
                        heartbeat_seconds,
                        token: token.clone(),
                    },
                );
                let execution_arn = self
                    .state
                    .info
                    .as_ref()
                    .map_or("", |i| i.execution_arn.as_str());
                let commands = task_commands(
                    execution_arn,
                    TaskId {
                        scope: scope.to_vec(),
                        state: state.name.clone(),
                        attempt: active.attempt,
                    },
                    &task.resource,
                    &parameters,
                    token.as_deref(),
                    timeout_seconds,
                    heartbeat_seconds,
                    self.now,
                );
                self.commands.extend(commands);
            }
            StateKind::Parallel { branches, .. } => {
                let ctx = self.context(scope, active, None, None);
                let input = self.effective_input(state, active, &ctx)?;
                self.emit(
                    scope,
                    EventDetails::ParallelStateStarted {
                        branches: branches.len(),
                    },
                );
                for (index, branch) in branches.iter().enumerate() {
                    let mut inner = scope.to_vec();
                    inner.push(ScopeStep {
                        state: state.name.clone(),
                        attempt: active.attempt,
                        index,
                    });
                    self.work.push_back(Work::Enter {
                        scope: inner,
                        name: branch.start_at.clone(),
                        input: input.clone(),
                    });
                }
            }
            StateKind::Map(map) => {
                let ctx = self.context(scope, active, None, None);
                let effective = self.input_path(state, active, &ctx)?;
                let items = match &map.items_path {
                    PathField::Default => effective.clone(),
                    PathField::Null => Value::Null,
                    PathField::Path(p) => {
                        self.select(state, active, "ItemsPath", p, &effective, &ctx)?
                    }
                };
                let Value::Array(items) = items else {
                    return Err(runtime(format!(
                        "{} Map's ItemsPath must select an array, not {}",
                        self.where_(state, active),
                        type_name(&items)
                    )));
                };
                let mut inputs = Vec::with_capacity(items.len());
                let mut rng = self.rng();
                for (index, item) in items.iter().enumerate() {
                    inputs.push(match &state.io.parameters {
                        Some(template) => {
                            let ctx = self.context(scope, active, None, Some((index, item)));
                            self.template(
                                state,
                                active,
                                "ItemSelector",
                                template,
                                &effective,
                                &ctx,
                                &mut rng,
                            )?
                        }
                        None => item.clone(),
                    });
                }
                let max_concurrency = match &map.max_concurrency {
                    Seconds::Fixed(n) => *n,
                    Seconds::Path(p) => match self
                        .select(state, active, "MaxConcurrencyPath", p, &effective, &ctx)?
                        .as_u64()
                    {
                        Some(n) => n,
                        None => {
                            return Err(runtime(format!(
                                "{} MaxConcurrencyPath '{p}' does not select a non-negative integer",
                                self.where_(state, active)
                            )));
                        }
                    },
                };
                let n = inputs.len();
                self.emit(
                    scope,
                    EventDetails::MapStateStarted {
                        inputs,
                        max_concurrency,
                    },
                );
                if n == 0 {
                    self.emit(scope, EventDetails::MapStateSucceeded);
                    return self.finish_result(scope, state, active, Value::Array(Vec::new()));
                }
                self.fill_map(scope, state);
            }
            _ => {}
        }
        Ok(())
    }

    /// Starts pending Map iterations while MaxConcurrency allows.
    fn fill_map(&mut self, scope: &[ScopeStep], state: &'a State) {
        let StateKind::Map(map) = &state.kind else {
            return;
        };
        loop {
            let Some(active) = self.state.active(scope, &state.name) else {
                return;
            };
            let Step::Map {
                inputs,
                max_concurrency,
                iterations,
            } = &active.step
            else {
                return;
            };
            let n_running = iterations
                .iter()
                .filter(|i| matches!(i, Iteration::Running(_)))
                .count() as u64;
            if *max_concurrency != 0 && n_running >= *max_concurrency {
                return;
            }
            let Some(index) = iterations
                .iter()
                .position(|i| matches!(i, Iteration::Pending))
            else {
                return;
            };
            let input = inputs.get(index).cloned().unwrap_or(Value::Null);
            let attempt = active.attempt;
            self.emit(
                scope,
                EventDetails::MapIterationStarted {
                    name: state.name.clone(),
                    index,
                },
            );
            let mut inner = scope.to_vec();
            inner.push(ScopeStep {
                state: state.name.clone(),
                attempt,
                index,
            });
            self.work.push_back(Work::Enter {
                scope: inner,
                name: map.processor.start_at.clone(),
                input,
            });
        }
    }

    fn exit(&mut self, scope: &[ScopeStep], state: &State, output: Value) {
        self.emit(
            scope,
            EventDetails::StateExited {
                state_type: state.kind.state_type(),
                name: state.name.clone(),
                output: output.clone(),
            },
        );
        match &state.transition {
            Transition::Next(next) => self.work.push_back(Work::Enter {
                scope: scope.to_vec(),
                name: next.clone(),
                input: output,
            }),
            Transition::End | Transition::None => self.work.push_back(Work::Finished {
                scope: scope.to_vec(),
                result: Ok(output),
            }),
        }
    }

    /// ResultSelector, ResultPath and OutputPath on a Task's, Parallel's or Map's result, then on.
    fn finish_result(
        &mut self,
        scope: &[ScopeStep],
        state: &State,
        active: &Active,
        result: Value,
    ) -> Result<(), Fatal> {
        let ctx = self.context(scope, active, None, None);
        let result = match &state.io.result_selector {
            Some(template) => self.template(
                state,
                active,
                "ResultSelector",
                template,
                &result,
                &ctx,
                &mut self.rng(),
            )?,
            None => result,
        };
        let output = self.result_path(state, active, &state.io.result_path, result)?;
        let output = self.output_path(state, active, output, &ctx)?;
        self.exit(scope, state, output);
        Ok(())
    }

    /// A Task, Parallel or Map failed: record it with what Retry and Catch decide, and act.
    fn state_failed(
        &mut self,
        scope: &[ScopeStep],
        state: &State,
        active: &Active,
        failure: Failure,
        kind: FailureKind,
    ) -> Result<(), Fatal> {
        let errors = state.kind.errors();
        let mut rng = self.rng_stream(Stream::Jitter);
        let plan = errors.map_or(Plan::Fail, |e| {
            decide(e, active, &failure.error, self.now, &mut rng)
        });
        let (error, cause) = (failure.error.clone(), failure.cause.clone());
        let details = match kind {
            FailureKind::Task(resource, false) => EventDetails::TaskFailed {
                resource,
                error,
                cause,
                plan: plan.clone(),
            },
            FailureKind::Task(resource, true) => EventDetails::TaskTimedOut {
                resource,
                error,
                cause,
                plan: plan.clone(),
            },
            FailureKind::Parallel => EventDetails::ParallelStateFailed {
                error,
                cause,
                plan: plan.clone(),
            },
            FailureKind::Map => EventDetails::MapStateFailed {
                error,
                cause,
                plan: plan.clone(),
            },
        };
        self.emit(scope, details);
        match plan {
            Plan::Retry { due_us, .. } => {
                self.commands.push(Command::StartTimer {
                    timer: TimerId {
                        scope: scope.to_vec(),
                        state: state.name.clone(),
                        attempt: active.attempt + 1,
                        kind: TimerKind::Retry,
                    },
                    due_us,
                });
                Ok(())
            }
            Plan::Catch { catcher } => {
                let Some(catcher) = errors.and_then(|e| e.catch.get(catcher)) else {
                    return Ok(());
                };
                let output =
                    self.result_path(state, active, &catcher.result_path, error_object(&failure))?;
                self.emit(
                    scope,
                    EventDetails::StateExited {
                        state_type: state.kind.state_type(),
                        name: state.name.clone(),
                        output: output.clone(),
                    },
                );
                self.work.push_back(Work::Enter {
                    scope: scope.to_vec(),
                    name: catcher.next.clone(),
                    input: output,
                });
                Ok(())
            }
            Plan::Fail => {
                self.work.push_back(Work::Finished {
                    scope: scope.to_vec(),
                    result: Err(failure),
                });
                Ok(())
            }
        }
    }

    /// A run reached its end: the execution's, or a branch's or iteration's for its parent.
    fn finished(
        &mut self,
        scope: &[ScopeStep],
        result: Result<Value, Failure>,
    ) -> Result<(), Fatal> {
        let Some((last, parent)) = scope.split_last() else {
            match result {
                Ok(output) => {
                    let size = output.to_string().len();
                    if size > PAYLOAD_LIMIT {
                        return Err(Fatal {
                            error: "States.DataLimitExceeded".to_owned(),
                            cause: format!(
                                "The execution's output of {size} bytes is larger than the {PAYLOAD_LIMIT} bytes allowed"
                            ),
                        });
                    }
                    self.emit(
                        &[],
                        EventDetails::ExecutionSucceeded {
                            output: output.clone(),
                        },
                    );
                    self.commands.push(Command::Succeed { output });
                }
                Err(failure) => self.fail_execution(failure.error, failure.cause),
            }
            return Ok(());
        };
        let Some(active) = self.state.active(parent, &last.state).cloned() else {
            return Ok(());
        };
        if active.attempt != last.attempt {
            return Ok(());
        }
        let Some(state) = self.state_def(parent, &last.state) else {
            return Ok(());
        };
        match (&active.step, &state.kind) {
            (Step::Parallel { branches }, StateKind::Parallel { .. }) => match result {
                Err(failure) => {
                    self.cancel_children(parent, &last.state, last.attempt);
                    self.state_failed(parent, state, &active, failure, FailureKind::Parallel)
                }
                Ok(_) => {
                    let outputs: Option<Vec<Value>> =
                        branches.iter().map(|b| b.output.clone()).collect();
                    let Some(outputs) = outputs else {
                        return Ok(());
                    };
                    self.emit(parent, EventDetails::ParallelStateSucceeded);
                    self.finish_result(parent, state, &active, Value::Array(outputs))
                }
            },
            (Step::Map { iterations, .. }, StateKind::Map(map)) => {
                let n = iterations.len();
                match result {
                    Ok(output) => self.emit(
                        parent,
                        EventDetails::MapIterationSucceeded {
                            name: state.name.clone(),
                            index: last.index,
                            output,
                        },
                    ),
                    Err(failure) => {
                        self.emit(
                            parent,
                            EventDetails::MapIterationFailed {
                                name: state.name.clone(),
                                index: last.index,
                                error: failure.error.clone(),
                                cause: failure.cause.clone(),
                            },
                        );
                        let n_failed = match self.state.active(parent, &state.name).map(|a| &a.step)
                        {
                            Some(Step::Map { iterations, .. }) => iterations
                                .iter()
                                .filter(|i| matches!(i, Iteration::Failed(_)))
                                .count(),
                            _ => 0,
                        };
                        let tolerated = match (
                            map.tolerated_failure_count,
                            map.tolerated_failure_percentage,
                        ) {
                            (None, None) => false,
                            (count, percentage) => {
                                count.is_none_or(|c| n_failed as u64 <= c)
                                    && percentage
                                        .is_none_or(|p| (n_failed as f64) * 100.0 / (n as f64) <= p)
                            }
                        };
                        if !tolerated {
                            let failure = if map.tolerated_failure_count.is_some()
                                || map.tolerated_failure_percentage.is_some()
                            {
                                Failure {
                                    error: "States.ExceedToleratedFailureThreshold".to_owned(),
                                    cause: "The number of failed items exceeded the tolerated failure threshold".to_owned(),
                                }
                            } else {
                                failure
                            };
                            self.abort_iterations(parent, state);
                            let Some(active) = self.state.active(parent, &state.name).cloned()
                            else {
                                return Ok(());
                            };
                            return self.state_failed(
                                parent,
                                state,
                                &active,
                                failure,
                                FailureKind::Map,
                            );
                        }
                    }
                }
                let Some(Step::Map { iterations, .. }) =
                    self.state.active(parent, &state.name).map(|a| &a.step)
                else {
                    return Ok(());
                };
                if iterations
                    .iter()
                    .all(|i| matches!(i, Iteration::Succeeded(_) | Iteration::Failed(_)))
                {
                    let results: Vec<Value> = iterations
                        .iter()
                        .map(|i| match i {
                            Iteration::Succeeded(v) | Iteration::Failed(v) => v.clone(),
                            _ => Value::Null,
                        })
                        .collect();
                    let Some(active) = self.state.active(parent, &state.name).cloned() else {
                        return Ok(());
                    };
                    self.emit(parent, EventDetails::MapStateSucceeded);
                    return self.finish_result(parent, state, &active, Value::Array(results));
                }
                self.fill_map(parent, state);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn abort_iterations(&mut self, scope: &[ScopeStep], state: &State) {
        let Some(active) = self.state.active(scope, &state.name).cloned() else {
            return;
        };
        let Step::Map { iterations, .. } = &active.step else {
            return;
        };
        for (index, iteration) in iterations.iter().enumerate() {
            if matches!(iteration, Iteration::Running(_)) {
                let mut inner = scope.to_vec();
                inner.push(ScopeStep {
                    state: state.name.clone(),
                    attempt: active.attempt,
                    index,
                });
                self.cancel_under(&inner);
                self.emit(
                    scope,
                    EventDetails::MapIterationAborted {
                        name: state.name.clone(),
                        index,
                    },
                );
            }
        }
    }

    fn rule(
        &self,
        state: &State,
        active: &Active,
        rule: &Rule,
        input: &Value,
        ctx: &Value,
    ) -> Result<bool, Fatal> {
        match rule {
            Rule::And(rules) => {
                for r in rules {
                    if !self.rule(state, active, r, input, ctx)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            Rule::Or(rules) => {
                for r in rules {
                    if self.rule(state, active, r, input, ctx)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Rule::Not(r) => Ok(!self.rule(state, active, r, input, ctx)?),
            Rule::Compare {
                variable,
                op,
                operand,
            } => {
                let value = variable.select(input, ctx);
                if *op == Op::IsPresent {
                    return Ok(value.is_some() == (operand_bool(operand)));
                }
                let Some(value) = value else {
                    return Err(runtime(format!(
                        "{} Invalid path '{variable}': The choice state's condition path references an invalid value.",
                        self.where_(state, active)
                    )));
                };
                let expected = match operand {
                    Operand::Value(v) => v.clone(),
                    Operand::Path(p) => self.select(state, active, op.name(), p, input, ctx)?,
                };
                Ok(compare(*op, &value, &expected))
            }
        }
    }
}

/// The uses of random draws, each its own stream.
#[derive(Clone, Copy)]
enum Stream {
    Templates = 0,
    Tokens = 1,
    Jitter = 2,
}

enum FailureKind {
    /// The resource, and whether it timed out.
    Task(String, bool),
    Parallel,
    Map,
}

fn task_token(resource: &str) -> bool {
    resource.ends_with(".waitForTaskToken")
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn operand_bool(operand: &Operand) -> bool {
    matches!(operand, Operand::Value(Value::Bool(true)))
}

/// Whether an error name in `ErrorEquals` matches `error`.
fn matches_error(name: &str, error: &str) -> bool {
    match name {
        // States.ALL matches every error but the terminal ones, which never get here.
        "States.ALL" => true,
        // ASL: States.TaskFailed matches any error except States.Timeout.
        "States.TaskFailed" => error != "States.Timeout" && error != "States.HeartbeatTimeout",
        "States.Timeout" => error == "States.Timeout" || error == "States.HeartbeatTimeout",
        _ => name == error,
    }
}

/// The first retrier whose ErrorEquals matches decides; when its attempts are used up, the
/// first matching catcher; otherwise the state fails.
fn decide(errors: &ErrorHandling, active: &Active, error: &str, now: i64, rng: &mut Rng) -> Plan {
    if let Some((idx, retrier)) = errors
        .retry
        .iter()
        .enumerate()
        .find(|(_, r)| r.error_equals.iter().any(|n| matches_error(n, error)))
    {
        let done = active.retries.get(idx).copied().unwrap_or(0);
        if done < retrier.max_attempts {
            let exponent = i32::try_from(done).unwrap_or(i32::MAX);
            let mut delay = retrier.interval_seconds as f64 * retrier.backoff_rate.powi(exponent);
            if let Some(max) = retrier.max_delay_seconds {
                delay = delay.min(max as f64);
            }
            if retrier.full_jitter {
                delay *= rng.next_f64();
            }
            return Plan::Retry {
                retrier: idx,
                due_us: now.saturating_add(secs_to_us(delay)),
            };
        }
    }
    match errors
        .catch
        .iter()
        .position(|c| c.error_equals.iter().any(|n| matches_error(n, error)))
    {
        Some(catcher) => Plan::Catch { catcher },
        None => Plan::Fail,
    }
}

fn compare(op: Op, value: &Value, expected: &Value) -> bool {
    let ordered = |ord: Option<std::cmp::Ordering>, wanted: &[std::cmp::Ordering]| {
        ord.is_some_and(|o| wanted.contains(&o))
    };
    match op {
        Op::IsPresent => true,
        Op::IsNull => value.is_null() == (expected == &Value::Bool(true)),
        Op::IsString => value.is_string() == (expected == &Value::Bool(true)),
        Op::IsNumeric => value.is_number() == (expected == &Value::Bool(true)),
        Op::IsBoolean => value.is_boolean() == (expected == &Value::Bool(true)),
        Op::IsTimestamp => {
            value.as_str().and_then(parse_timestamp).is_some() == (expected == &Value::Bool(true))
        }
        Op::StringMatches => match (value.as_str(), expected.as_str()) {
            (Some(s), Some(pattern)) => glob(pattern, s),
            _ => false,
        },
        Op::BooleanEquals => match (value.as_bool(), expected.as_bool()) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        },
        Op::StringEquals
        | Op::StringLessThan
        | Op::StringGreaterThan
        | Op::StringLessThanEquals
        | Op::StringGreaterThanEquals => {
            let ord = match (value.as_str(), expected.as_str()) {
                (Some(a), Some(b)) => Some(a.cmp(b)),
                _ => None,
            };
            ordered(ord, wanted(op))
        }
        Op::NumericEquals
        | Op::NumericLessThan
        | Op::NumericGreaterThan
        | Op::NumericLessThanEquals
        | Op::NumericGreaterThanEquals => {
            let ord = match (value.as_f64(), expected.as_f64()) {
                (Some(a), Some(b)) if value.is_number() => a.partial_cmp(&b),
                _ => None,
            };
            ordered(ord, wanted(op))
        }
        Op::TimestampEquals
        | Op::TimestampLessThan
        | Op::TimestampGreaterThan
        | Op::TimestampLessThanEquals
        | Op::TimestampGreaterThanEquals => {
            let ord = match (
                value.as_str().and_then(parse_timestamp),
                expected.as_str().and_then(parse_timestamp),
            ) {
                (Some(a), Some(b)) => Some(a.cmp(&b)),
                _ => None,
            };
            ordered(ord, wanted(op))
        }
    }
}

fn wanted(op: Op) -> &'static [std::cmp::Ordering] {
    use std::cmp::Ordering::{Equal, Greater, Less};
    let name = op.name();
    if name.ends_with("LessThanEquals") {
        &[Less, Equal]
    } else if name.ends_with("GreaterThanEquals") {
        &[Greater, Equal]
    } else if name.ends_with("LessThan") {
        &[Less]
    } else if name.ends_with("GreaterThan") {
        &[Greater]
    } else {
        &[Equal]
    }
}

/// ASL's StringMatches: `*` matches any run of characters; `\*` and `\\` are literal.
fn glob(pattern: &str, text: &str) -> bool {
    enum Token {
        Star,
        Char(char),
    }
    let mut tokens = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => tokens.push(Token::Char(chars.next().unwrap_or('\\'))),
            '*' => tokens.push(Token::Star),
            c => tokens.push(Token::Char(c)),
        }
    }
    let text: Vec<char> = text.chars().collect();
    // Iterative wildcard matching with backtracking to the last star: linear in practice.
    let (mut t, mut p) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match tokens.get(p) {
            Some(Token::Char(c)) if *c == text[t] => {
                t += 1;
                p += 1;
            }
            Some(Token::Star) => {
                star = Some((p, t));
                p += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    tokens[p..].iter().all(|t| matches!(t, Token::Star))
}
