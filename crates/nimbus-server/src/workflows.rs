//! Step Functions on nimbus: the host of `nimbus_core::workflow`'s engine.
//!
//! Every running execution is one task (an actor) that owns its folded state and feeds the
//! engine one event at a time: a task's result, a timer, SendTask*, StopExecution. What the
//! engine returns is journaled first (one transaction through the `WorkflowStore` seam,
//! with the ending when the execution ends) and only then carried out, so a crash loses at
//! most the work in flight: after a restart `resume` folds each running execution's
//! history and carries out `ExecutionState::outstanding` again. A Task whose result was not
//! journaled is invoked again, once per crash (at least once, as Step Functions' own
//! retries are).
//!
//! One `Workflows` lives as long as the app slot it serves: reloads hand it to the next
//! generation (`generation.rs`), which gives it the new state machines; executions already
//! running keep the definition they started with (stored with them), and invoke functions
//! through whichever generation is current when they do.

pub(crate) mod schedules;
mod spans;
mod tasks;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use nimbus_core::workflow::machine::{self, MachineKind, StateMachineSpec};
use nimbus_core::workflow::store::{
    Created, Ending, ExecutionFilter, ExecutionRecord, NewExecution, WorkflowStore,
    WorkflowStoreError,
};
use nimbus_core::workflow::{
    Command, Completion, Definition, Event, ExecutionInfo, ExecutionState, ExecutionStatus,
    HistoryEvent, TaskId, TimerId,
};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::AbortHandle;

use crate::generation::Current;
use crate::telemetry::{Telemetry, TraceContext};
use spans::ExecutionSpans;

/// The workflows of one app slot.
pub(crate) struct Workflows {
    store: Arc<dyn WorkflowStore>,
    region: String,
    machines: ArcSwap<HashMap<String, Arc<Machine>>>,
    current: OnceLock<Weak<Current>>,
    /// The running executions' actors, by execution ARN.
    live: Mutex<HashMap<String, mpsc::UnboundedSender<Msg>>>,
    /// `.waitForTaskToken` tokens of running tasks: token → execution ARN.
    tokens: Mutex<HashMap<String, String>>,
    /// Who waits for an execution to end (StartSyncExecution, `.sync` parents).
    waiters: Mutex<HashMap<String, Vec<watch::Sender<bool>>>>,
}

/// A state machine as served.
pub(crate) struct Machine {
    pub(crate) name: String,
    pub(crate) arn: String,
    pub(crate) kind: MachineKind,
    pub(crate) definition: Arc<Definition>,
    /// The definition as JSON text: DescribeStateMachine's, and what executions store.
    pub(crate) text: String,
}

/// What an execution's actor is told.
pub(crate) enum Msg {
    /// Something for the engine.
    Event(Event),
    /// SendTask* for a `.waitForTaskToken` token; the reply says whether a running task has it.
    Token {
        token: String,
        result: TokenResult,
        reply: oneshot::Sender<bool>,
    },
}

/// What SendTask* says about a task.
pub(crate) enum TokenResult {
    Success(Value),
    Failure { error: String, cause: String },
    Heartbeat,
}

/// Why a workflow operation was refused: Step Functions' error code and message.
#[derive(Debug)]
pub(crate) struct WorkflowError {
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

/// An execution just started.
pub(crate) struct Started {
    pub(crate) arn: String,
    pub(crate) start_us: i64,
}

/// How an execution is started.
pub(crate) struct StartRequest {
    /// Its name; a UUID when none is given.
    pub(crate) name: Option<String>,
    /// Its input as JSON text.
    pub(crate) input: String,
    /// The trace it joins, if the caller is traced.
    pub(crate) trace: Option<TraceContext>,
    /// The execution whose Task started it.
    pub(crate) parent: Option<String>,
}

impl WorkflowError {
    pub(crate) fn new(code: &'static str, message: impl Into<String>) -> WorkflowError {
        WorkflowError {
            code,
            message: message.into(),
        }
    }

    fn internal(e: WorkflowStoreError) -> WorkflowError {
        WorkflowError::new("InternalFailure", e.to_string())
    }
}

impl Workflows {
    pub(crate) fn new(store: Arc<dyn WorkflowStore>, region: String) -> Workflows {
        Workflows {
            store,
            region,
            machines: ArcSwap::from_pointee(HashMap::new()),
            current: OnceLock::new(),
            live: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
            waiters: Mutex::new(HashMap::new()),
        }
    }

    /// Serves the app's state machines from now on. A definition that does not check is
    /// left out with a warning (`nimbus validate` and the manifest loader report it first).
    pub(crate) fn set_machines(&self, specs: &[StateMachineSpec]) {
        let mut machines = HashMap::new();
        for spec in specs {
            match nimbus_core::workflow::check(&spec.definition) {
                Ok(definition) => {
                    machines.insert(
                        spec.name.clone(),
                        Arc::new(Machine {
                            name: spec.name.clone(),
                            arn: machine::state_machine_arn(&self.region, &spec.name),
                            kind: spec.kind,
                            definition: Arc::new(definition),
                            text: spec.definition.to_string(),
                        }),
                    );
                }
                Err(diagnostics) => {
                    let problems: Vec<String> = diagnostics.iter().map(|d| d.to_string()).collect();
                    tracing::warn!(
                        state_machine = %spec.name,
                        "state machine not served: {}",
                        problems.join("; ")
                    );
                }
            }
        }
        self.machines.store(Arc::new(machines));
    }

    /// Invokes functions through the generation current at each invocation from now on,
    /// and resumes the executions a previous run left running.
    pub(crate) fn bind(self: &Arc<Self>, current: &Arc<Current>) {
        if self.current.set(Arc::downgrade(current)).is_ok() {
            let workflows = self.clone();
            tokio::spawn(async move { workflows.resume().await });
        }
    }

    /// The state machine named (or with the ARN) `name_or_arn`.
    pub(crate) fn machine(&self, name_or_arn: &str) -> Result<Arc<Machine>, WorkflowError> {
        self.machines
            .load()
            .get(machine::machine_name(name_or_arn))
            .cloned()
            .ok_or_else(|| {
                WorkflowError::new(
                    "StateMachineDoesNotExist",
                    format!("State Machine Does Not Exist: '{name_or_arn}'"),
                )
            })
    }

    /// Every state machine, by name.
    pub(crate) fn machines(&self) -> Vec<Arc<Machine>> {
        let mut machines: Vec<Arc<Machine>> = self.machines.load().values().cloned().collect();
        machines.sort_by(|a, b| a.name.cmp(&b.name));
        machines
    }

    /// StartExecution: journals the start and hands the execution to its actor. A repeat
    /// with the name and input of a running execution answers as the first did.
    pub(crate) async fn start(
        self: &Arc<Self>,
        machine: &Machine,
        request: StartRequest,
    ) -> Result<Started, WorkflowError> {
        let name = request
            .name
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        if !machine::valid_name(&name) {
            return Err(WorkflowError::new(
                "InvalidName",
                format!(
                    "Invalid Name: '{name}' (1 to 80 characters, no whitespace, brackets, wildcards or punctuation such as : / ? * \" # % \\ ^ | ~ ` $ & , ;)"
                ),
            ));
        }
        let input: Value = serde_json::from_str(&request.input).map_err(|e| {
            WorkflowError::new(
                "InvalidExecutionInput",
                format!("Invalid State Machine Execution Input: the input is not JSON: {e}"),
            )
        })?;
        if request.input.len() > nimbus_core::workflow::engine::PAYLOAD_LIMIT {
            return Err(WorkflowError::new(
                "InvalidExecutionInput",
                format!(
                    "the input is {} bytes, over Step Functions' limit of 262144",
                    request.input.len()
                ),
            ));
        }
        let arn = machine::execution_arn(&self.region, &machine.name, &name);
        let start_us = now_us();
        let trace = request.trace.unwrap_or_else(TraceContext::new_root);
        let info = ExecutionInfo {
            execution_arn: arn.clone(),
            name: name.clone(),
            state_machine_arn: machine.arn.clone(),
            state_machine_name: machine.name.clone(),
            role_arn: machine::role_arn(&machine.name),
            seed: uuid::Uuid::new_v4().as_u64_pair().0,
        };
        let (state, events, commands) = nimbus_core::workflow::advance(
            &machine.definition,
            &ExecutionState::default(),
            start_us,
            Event::Start { info, input },
        );
        let new = NewExecution {
            arn: arn.clone(),
            machine_arn: machine.arn.clone(),
            name,
            definition: machine.text.clone(),
            input: request.input.clone(),
            start_us,
            trace: Some(spans::stored_trace(&trace, &arn)),
            parent: request.parent,
        };
        let stored = journal(&events);
        let ending = ending_of(&state, start_us);
        let store = self.store.clone();
        let created = tokio::task::spawn_blocking(move || {
            store.create_execution(&new, &stored, ending.as_ref())
        })
        .await
        .map_err(|e| WorkflowError::new("InternalFailure", e.to_string()))?
        .map_err(WorkflowError::internal)?;
        if let Created::Exists(existing) = created {
            let same_input = serde_json::from_str::<Value>(&existing.input).ok()
                == serde_json::from_str::<Value>(&request.input).ok();
            if existing.status == "RUNNING" && same_input {
                return Ok(Started {
                    arn: existing.arn,
                    start_us: existing.start_us,
                });
            }
            return Err(WorkflowError::new(
                "ExecutionAlreadyExists",
                format!("Execution Already Exists: '{}'", existing.arn),
            ));
        }
        let mut spans = ExecutionSpans::new(&arn, &machine.name, trace);
        if let Some(telemetry) = self.telemetry() {
            telemetry
                .metrics
                .workflow_execution(&machine.name, "started");
            spans.observe(&events, Some(&telemetry));
        }
        self.spawn(machine.definition.clone(), state, spans, start_us, commands);
        Ok(Started { arn, start_us })
    }

    /// DescribeExecution.
    pub(crate) async fn describe(&self, arn: &str) -> Result<ExecutionRecord, WorkflowError> {
        let store = self.store.clone();
        let key = arn.to_owned();
        tokio::task::spawn_blocking(move || store.execution(&key))
            .await
            .map_err(|e| WorkflowError::new("InternalFailure", e.to_string()))?
            .map_err(WorkflowError::internal)?
            .ok_or_else(|| does_not_exist(arn))
    }

    /// ListExecutions.
    pub(crate) async fn list(
        &self,
        filter: ExecutionFilter,
    ) -> Result<Vec<ExecutionRecord>, WorkflowError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.list_executions(&filter))
            .await
            .map_err(|e| WorkflowError::new("InternalFailure", e.to_string()))?
            .map_err(WorkflowError::internal)
    }

    /// GetExecutionHistory: stored events (JSON) after `after`, or before it newest first.
    pub(crate) async fn history(
        &self,
        arn: &str,
        after: u64,
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<Value>, WorkflowError> {
        self.describe(arn).await?;
        let store = self.store.clone();
        let key = arn.to_owned();
        let rows = tokio::task::spawn_blocking(move || store.history(&key, after, limit, reverse))
            .await
            .map_err(|e| WorkflowError::new("InternalFailure", e.to_string()))?
            .map_err(WorkflowError::internal)?;
        Ok(rows
            .into_iter()
            .filter_map(|(_, text)| serde_json::from_str(&text).ok())
            .collect())
    }

    /// StopExecution: the stop date, once journaled.
    pub(crate) async fn stop(
        &self,
        arn: &str,
        error: Option<String>,
        cause: Option<String>,
    ) -> Result<i64, WorkflowError> {
        let record = self.describe(arn).await?;
        if record.status != "RUNNING" {
            return Ok(record.stop_us.unwrap_or(record.start_us));
        }
        let mut ended = self.watch_end(arn);
        self.send(arn, Msg::Event(Event::Stop { error, cause }))?;
        let _ = ended.wait_for(|ended| *ended).await;
        let record = self.describe(arn).await?;
        Ok(record.stop_us.unwrap_or_else(now_us))
    }

    /// Waits until the execution ends and returns its record.
    pub(crate) async fn wait(&self, arn: &str) -> Result<ExecutionRecord, WorkflowError> {
        let mut ended = self.watch_end(arn);
        let record = self.describe(arn).await?;
        if record.status != "RUNNING" {
            return Ok(record);
        }
        if !self.is_live(arn) {
            return Err(WorkflowError::new(
                "InternalFailure",
                format!(
                    "execution {arn} is running but nothing drives it; restart nimbus to resume it"
                ),
            ));
        }
        let _ = ended.wait_for(|ended| *ended).await;
        self.describe(arn).await
    }

    /// SendTaskSuccess, SendTaskFailure and SendTaskHeartbeat.
    pub(crate) async fn task_token(
        &self,
        token: &str,
        result: TokenResult,
    ) -> Result<(), WorkflowError> {
        let gone = || {
            WorkflowError::new(
                "TaskDoesNotExist",
                "Task Does Not Exist: no running task has this token (it finished, timed out, or the token is not one nimbus handed out)",
            )
        };
        let arn = self
            .tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(token)
            .cloned()
            .ok_or_else(gone)?;
        let (reply, found) = oneshot::channel();
        self.send(
            &arn,
            Msg::Token {
                token: token.to_owned(),
                result,
                reply,
            },
        )
        .map_err(|_| gone())?;
        match found.await {
            Ok(true) => Ok(()),
            _ => Err(gone()),
        }
    }

    /// The state machine of the execution a token was handed out by.
    pub(crate) fn token_machine(&self, token: &str) -> Option<String> {
        let tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        let arn = tokens.get(token)?;
        machine::parse_execution_arn(arn).map(|(machine, _)| machine.to_owned())
    }

    fn send(&self, arn: &str, msg: Msg) -> Result<(), WorkflowError> {
        let live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        match live.get(arn) {
            Some(tx) if tx.send(msg).is_ok() => Ok(()),
            _ => Err(WorkflowError::new(
                "ExecutionDoesNotExist",
                format!("Execution Does Not Exist: '{arn}' is not running"),
            )),
        }
    }

    fn is_live(&self, arn: &str) -> bool {
        self.live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(arn)
    }

    fn watch_end(&self, arn: &str) -> watch::Receiver<bool> {
        let (tx, rx) = watch::channel(false);
        self.waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(arn.to_owned())
            .or_default()
            .push(tx);
        rx
    }

    fn ended(&self, arn: &str) {
        self.live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(arn);
        self.tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, a| a != arn);
        let waiters = self
            .waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(arn);
        for waiter in waiters.into_iter().flatten() {
            let _ = waiter.send(true);
        }
    }

    /// Resumes every execution the store holds as running.
    async fn resume(self: Arc<Self>) {
        let store = self.store.clone();
        let running = match tokio::task::spawn_blocking(move || store.running_executions()).await {
            Ok(Ok(running)) => running,
            Ok(Err(e)) => {
                tracing::error!("reading running workflow executions: {e}");
                return;
            }
            Err(e) => {
                tracing::error!("reading running workflow executions: {e}");
                return;
            }
        };
        for record in running {
            if self.is_live(&record.arn) {
                continue;
            }
            if let Err(e) = self.resume_one(&record).await {
                tracing::error!(execution = %record.arn, "resuming a workflow execution: {e}");
            }
        }
    }

    async fn resume_one(self: &Arc<Self>, record: &ExecutionRecord) -> anyhow::Result<()> {
        let value: Value = serde_json::from_str(&record.definition)?;
        let definition = nimbus_core::workflow::check(&value).map_err(|problems| {
            let problems: Vec<String> = problems.iter().map(|d| d.to_string()).collect();
            anyhow::anyhow!(
                "its stored definition no longer checks: {}",
                problems.join("; ")
            )
        })?;
        let store = self.store.clone();
        let arn = record.arn.clone();
        let rows = tokio::task::spawn_blocking(move || store.history(&arn, 0, usize::MAX, false))
            .await??;
        let mut events = Vec::with_capacity(rows.len());
        for (_, text) in rows {
            let value: Value = serde_json::from_str(&text)?;
            events.push(HistoryEvent::from_json(&value)?);
        }
        let state = ExecutionState::fold(&definition, &events);
        let commands = state.outstanding(&definition);
        let trace = record
            .trace
            .as_deref()
            .and_then(TraceContext::from_xray)
            .unwrap_or_else(TraceContext::new_root);
        let machine = machine::machine_name(&record.machine_arn);
        let mut spans = ExecutionSpans::new(&record.arn, machine, trace);
        spans.observe(&events, None);
        tracing::info!(execution = %record.arn, n_events = events.len(), "resuming workflow execution");
        self.spawn(
            Arc::new(definition),
            state,
            spans,
            record.start_us,
            commands,
        );
        Ok(())
    }

    /// The telemetry of the generation being served, unless nimbus is shutting down.
    fn telemetry(&self) -> Option<Arc<Telemetry>> {
        let current = self.current.get()?.upgrade()?;
        Some(current.load().functions.telemetry.clone())
    }

    /// Starts the actor of an execution whose state and first commands are journaled.
    fn spawn(
        self: &Arc<Self>,
        definition: Arc<Definition>,
        state: ExecutionState,
        spans: ExecutionSpans,
        start_us: i64,
        commands: Vec<Command>,
    ) {
        let Some(arn) = state.info.as_ref().map(|i| i.execution_arn.clone()) else {
            return;
        };
        let (tx, rx) = mpsc::unbounded_channel();
        self.live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(arn.clone(), tx.clone());
        let actor = Actor {
            workflows: self.clone(),
            definition,
            state,
            arn,
            spans,
            start_us,
            tx,
            tasks: Vec::new(),
            timers: Vec::new(),
        };
        tokio::spawn(actor.run(rx, commands));
    }
}

/// One running execution.
struct Actor {
    workflows: Arc<Workflows>,
    definition: Arc<Definition>,
    state: ExecutionState,
    arn: String,
    spans: ExecutionSpans,
    start_us: i64,
    tx: mpsc::UnboundedSender<Msg>,
    tasks: Vec<(TaskId, AbortHandle)>,
    timers: Vec<(TimerId, AbortHandle)>,
}

impl Actor {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>, first: Vec<Command>) {
        if self.carry_out(first) {
            return self.finish();
        }
        while let Some(msg) = rx.recv().await {
            let event = match msg {
                Msg::Event(event) => event,
                Msg::Token {
                    token,
                    result,
                    reply,
                } => {
                    let Some(task) = self.state.task_by_token(&token) else {
                        let _ = reply.send(false);
                        continue;
                    };
                    let _ = reply.send(true);
                    match result {
                        TokenResult::Success(output) => Event::TaskSucceeded { task, output },
                        TokenResult::Failure { error, cause } => {
                            Event::TaskFailed { task, error, cause }
                        }
                        TokenResult::Heartbeat => Event::TaskHeartbeat { task },
                    }
                }
            };
            let now = now_us();
            let (state, events, commands) =
                nimbus_core::workflow::advance(&self.definition, &self.state, now, event);
            if events.is_empty() && commands.is_empty() {
                continue;
            }
            let ending = ending_of(&state, now);
            let stored = journal(&events);
            let store = self.workflows.store.clone();
            let arn = self.arn.clone();
            let res =
                tokio::task::spawn_blocking(move || store.append(&arn, &stored, ending.as_ref()))
                    .await;
            match res {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    // The journal refused the transition: stop driving the execution, so
                    // nothing happens that is not recorded; a restart resumes it from the
                    // journal.
                    tracing::error!(execution = %self.arn, "journaling a workflow transition: {e}");
                    return self.abandon();
                }
                Err(e) => {
                    tracing::error!(execution = %self.arn, "journaling a workflow transition: {e}");
                    return self.abandon();
                }
            }
            self.state = state;
            let telemetry = self.workflows.telemetry();
            self.spans.observe(&events, telemetry.as_deref());
            if self.carry_out(commands) {
                return self.finish();
            }
        }
    }

    /// Carries out the engine's commands; whether the execution ended.
    fn carry_out(&mut self, commands: Vec<Command>) -> bool {
        let mut ended = false;
        for command in commands {
            match command {
                Command::Invoke {
                    task,
                    key: _,
                    resource,
                    parameters,
                    completion,
                    timeout_seconds,
                } => {
                    self.prewarm_next(&task, timeout_seconds);
                    if let Completion::Token(token) = &completion {
                        self.workflows
                            .tokens
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .insert(token.clone(), self.arn.clone());
                    }
                    let ctx = tasks::TaskContext {
                        workflows: self.workflows.clone(),
                        execution_arn: self.arn.clone(),
                        trace: self.spans.task_trace(&task),
                        tx: self.tx.clone(),
                    };
                    let handle = tokio::spawn(tasks::run(
                        ctx,
                        task.clone(),
                        resource,
                        parameters,
                        completion,
                    ));
                    self.tasks.retain(|(t, h)| t != &task && !h.is_finished());
                    self.tasks.push((task, handle.abort_handle()));
                }
                Command::StartTimer { timer, due_us } => {
                    let tx = self.tx.clone();
                    let fired = timer.clone();
                    let wait = u64::try_from(due_us.saturating_sub(now_us())).unwrap_or(0);
                    let handle = tokio::spawn(async move {
                        tokio::time::sleep(std::time::Duration::from_micros(wait)).await;
                        let _ = tx.send(Msg::Event(Event::TimerFired { timer: fired }));
                    });
                    if let Some(idx) = self.timers.iter().position(|(t, _)| t == &timer) {
                        self.timers.swap_remove(idx).1.abort();
                    }
                    self.timers.retain(|(_, h)| !h.is_finished());
                    self.timers.push((timer, handle.abort_handle()));
                }
                Command::Cancel { task } => {
                    if let Some(idx) = self.tasks.iter().position(|(t, _)| t == &task) {
                        self.tasks.swap_remove(idx).1.abort();
                    }
                }
                Command::Succeed { .. } | Command::Fail { .. } => ended = true,
            }
        }
        ended
    }

    /// Workflow-aware pre-warming (issue 18): while a Task runs, the function of the Task
    /// after it (`Machine::next_function`) is started unless it has an idle instance, so
    /// the next step does not wait for a cold start. It is held for the running Task's
    /// timeout, at most a minute, within the pre-warm budget like any pre-warm. Only for
    /// the top level's states: a Parallel branch's or a Map's run side by side.
    fn prewarm_next(&self, task: &TaskId, timeout_seconds: Option<u64>) {
        if !task.scope.is_empty() {
            return;
        }
        let Some(name) = self.definition.machine.next_function(&task.state) else {
            return;
        };
        let Some(current) = self.workflows.current.get().and_then(Weak::upgrade) else {
            return;
        };
        let generation = current.load();
        let Some(idx) = crate::services::function_index(&generation.functions, &name) else {
            return;
        };
        let hold = std::time::Duration::from_secs(timeout_seconds.unwrap_or(60).min(60));
        generation.functions.list[idx]
            .executor
            .prewarm(nimbus_core::prewarm::WarmReason::Workflow, hold);
    }

    /// Stops the tasks and timers in flight.
    fn stop_work(&self) {
        let handles = self.tasks.iter().map(|(_, h)| h);
        for handle in handles.chain(self.timers.iter().map(|(_, h)| h)) {
            handle.abort();
        }
    }

    fn finish(mut self) {
        self.stop_work();
        if let (Some(telemetry), Some(ending)) =
            (self.workflows.telemetry(), ending_of(&self.state, now_us()))
        {
            self.spans
                .finish(&telemetry, self.start_us, ending.stop_us, &ending.status);
        }
        self.workflows.ended(&self.arn);
    }

    fn abandon(self) {
        self.stop_work();
        self.workflows
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.arn);
    }
}

/// The ending to journal with a transition that leaves the execution in `state`.
fn ending_of(state: &ExecutionState, now: i64) -> Option<Ending> {
    let ending = |status: &str,
                  output: Option<String>,
                  error: Option<String>,
                  cause: Option<String>| Ending {
        status: status.to_owned(),
        stop_us: now,
        output,
        error,
        cause,
    };
    match &state.status {
        ExecutionStatus::NotStarted | ExecutionStatus::Running => None,
        ExecutionStatus::Succeeded(output) => {
            Some(ending("SUCCEEDED", Some(output.to_string()), None, None))
        }
        ExecutionStatus::Failed { error, cause } => Some(ending(
            "FAILED",
            None,
            Some(error.clone()),
            Some(cause.clone()),
        )),
        ExecutionStatus::TimedOut => Some(ending("TIMED_OUT", None, None, None)),
        ExecutionStatus::Aborted => Some(ending("ABORTED", None, None, None)),
    }
}

/// Events as the journal stores them.
fn journal(events: &[HistoryEvent]) -> Vec<(u64, String)> {
    events
        .iter()
        .map(|e| (e.id, e.to_json().to_string()))
        .collect()
}

/// `execution:MACHINE:NAME`: what grants name an execution by (both APIs check it).
pub(crate) fn execution_resource(arn: &str) -> String {
    match machine::parse_execution_arn(arn) {
        Some((machine, name)) => format!("execution:{machine}:{name}"),
        None => format!("execution:{arn}"),
    }
}

/// Epoch seconds, as Step Functions' APIs write dates.
pub(crate) fn seconds(us: i64) -> f64 {
    us as f64 / 1_000_000.0
}

fn does_not_exist(arn: &str) -> WorkflowError {
    WorkflowError::new(
        "ExecutionDoesNotExist",
        format!("Execution Does Not Exist: '{arn}'"),
    )
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}
