//! The executor of `runtime: workers` functions: one Node.js host process per worker
//! (`bootstrap/workers/host.mjs`) loads the module once and takes many invocations at
//! once, as one isolate serves many requests on Cloudflare.
//!
//! Invocations go to the host as JSON lines on its stdin and come back as JSON lines on
//! its stdout, with the console output of each request tagged with its request id. No
//! port is opened, so no other process can hand the host work.
//!
//! Limits: the host ticks every 20 ms while an invocation is in flight; when no line comes
//! for longer than the worker's CPU limit (`limits.cpu_ms`, else its `timeout`) and the
//! host spent that much CPU time meanwhile, its event loop is stuck in one piece of code
//! (an endless loop), and the process is killed with the invocations it held, as
//! Cloudflare resets an isolate over its CPU limit. Memory is
//! the V8 heap cap and the watch of resident memory Lambda instances have.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use nimbus_core::durable_objects::{
    Alarm, AlarmChange, Commit, DurableObjectError, DurableObjectStore, ListOptions, ObjectName,
    SavepointStep, SqlSession, SqlValue, StorageWrite,
};
use nimbus_core::worker::BindingKind;
use nimbus_core::{
    BoxFuture, Executor, ExecutorStats, FunctionSpec, Invocation, InvocationReport, InvokeError,
    LogLine, LogStream, Outcome, SocketFrame, SocketSink,
};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::sync::{Notify, oneshot, watch};

use crate::LambdaConfig;
use crate::code::WORKERS_HOST_FILE;
use crate::sandbox::View;
use crate::spawn::{self, ProcessSpec, StdinMode};

/// The executor of one worker: its host process, started on the first invocation and
/// stopped when idle past `LambdaConfig::idle_timeout`.
pub struct WorkersExecutor {
    host: Arc<Host>,
    reaper: tokio::task::JoinHandle<()>,
    /// Fires the alarms of the worker's Durable Objects, if it has any.
    alarms: Option<tokio::task::JoinHandle<()>>,
}

struct Host {
    spec: FunctionSpec,
    /// The module, relative to the app folder.
    main: PathBuf,
    cfg: LambdaConfig,
    /// `WorkerSpec::host_config`, serialized once.
    config: String,
    cpu_limit: Duration,
    /// The live process, if any; held while one starts, so a burst of first requests
    /// waits for one start.
    process: tokio::sync::Mutex<Option<Arc<Process>>>,
    next_process_id: AtomicU64,
    shutting_down: AtomicBool,
    /// The storage of the worker's Durable Object classes, if it has any.
    objects: Option<Arc<Objects>>,
    /// The WebSockets the worker accepted (`WebSocketPair`), by the id its host gave them.
    sockets: Arc<Sockets>,
}

/// Where the frames a worker sends to its WebSockets go: the gateway's connection once it
/// attached, else a short queue (frames sent before the `101` answer left).
#[derive(Default)]
struct Sockets(Mutex<HashMap<String, SocketSlot>>);

enum SocketSlot {
    Waiting(Vec<SocketFrame>),
    Attached(SocketSink),
}

/// The most frames kept for a socket the gateway has not attached yet.
const MAX_WAITING_FRAMES: usize = 1024;

/// The Durable Objects of a worker: the classes it binds and where their storage is.
struct Objects {
    store: Arc<dyn DurableObjectStore>,
    /// The classes the worker's host may touch the storage of.
    classes: Vec<String>,
    /// Woken when a commit sets or clears an alarm.
    alarms_changed: Notify,
}

/// One host process.
struct Process {
    pid: u32,
    stdin: tokio::sync::Mutex<tokio::process::ChildStdin>,
    /// Invocations in flight, by the id their frame carries.
    pending: Mutex<HashMap<u64, oneshot::Sender<Reply>>>,
    next_invocation_id: AtomicU64,
    /// When the host last wrote a line: a tick, an answer or a log line.
    last_seen: Mutex<Instant>,
    last_used: Mutex<Instant>,
    max_rss_kib: AtomicU64,
    /// Set before nimbus kills the process, to tell invocations why.
    stop_reason: Mutex<Option<StopReason>>,
    /// Set once the process is being stopped or has exited: it takes no new invocation,
    /// though its end is not published yet (`exit_rx`).
    ending: AtomicBool,
    /// `Some` once the process has ended.
    exit_rx: watch::Receiver<Option<String>>,
    /// The SQL databases of the objects this host used, each with the transaction of
    /// the running event open; they roll back when the process goes.
    sql: Arc<SqlSessions>,
}

/// Open SQL databases of Durable Objects, by object.
type SqlSessions = Mutex<HashMap<ObjectName, Box<dyn SqlSession>>>;

enum Reply {
    Ok(Vec<u8>),
    Error(Vec<u8>),
}

#[derive(Clone, Copy)]
enum StopReason {
    CpuLimit,
    OutOfMemory,
    Idle,
    Shutdown,
}

/// What starting a host came to.
enum Start {
    Ready(Arc<Process>, Duration),
    /// The module failed to load: its error payload.
    InitFailed(Vec<u8>),
    Died(String),
}

impl WorkersExecutor {
    /// The executor of the worker `spec`, whose module is `main` (relative to the app
    /// folder). Nothing starts until the first invocation or [`WorkersExecutor::prestart`].
    pub fn start(
        spec: FunctionSpec,
        main: PathBuf,
        cfg: LambdaConfig,
    ) -> Result<WorkersExecutor, InvokeError> {
        let host = Arc::new(Host::new(spec, main, cfg));
        let reaper = tokio::spawn(reap(Arc::downgrade(&host)));
        let alarms = host
            .objects
            .clone()
            .map(|objects| tokio::spawn(fire_alarms(Arc::downgrade(&host), objects)));
        Ok(WorkersExecutor {
            host,
            reaper,
            alarms,
        })
    }
}

impl WorkersExecutor {
    /// Starts the worker's host now, so the first request after a deploy finds the module
    /// loaded; a module that fails to load is reported by that first request instead.
    pub async fn prestart(&self) {
        let mut slot = self.host.process.lock().await;
        if slot.as_ref().is_some_and(|p| p.is_alive()) {
            return;
        }
        if let Ok(Start::Ready(process, _)) = self.host.start_process().await {
            *slot = Some(process);
        }
    }
}

/// Loads the worker `spec` in a host of its own, as its first invocation would, and stops
/// it: `Err` holds the module's own error (a failing import, no handlers exported).
pub(crate) async fn check_worker(
    spec: FunctionSpec,
    main: PathBuf,
    cfg: LambdaConfig,
) -> Result<(), String> {
    let host = Host::new(spec, main, cfg);
    match host.start_process().await {
        Ok(Start::Ready(process, _)) => {
            process.stop(StopReason::Shutdown);
            Ok(())
        }
        Ok(Start::InitFailed(body)) => Err(crate::pool::init_error_message(&body)),
        Ok(Start::Died(detail)) => Err(detail),
        Err(e) => Err(e.to_string()),
    }
}

impl Host {
    fn new(spec: FunctionSpec, main: PathBuf, cfg: LambdaConfig) -> Host {
        let worker = spec.worker.clone().unwrap_or_default();
        let cpu_limit = worker.cpu_limit.unwrap_or(spec.timeout);
        let classes: Vec<String> = worker
            .bindings
            .iter()
            .filter_map(|b| match &b.kind {
                BindingKind::DurableObject { class } => Some(class.clone()),
                _ => None,
            })
            .collect();
        let objects = match (&cfg.durable_objects, classes.is_empty()) {
            (Some(store), false) => Some(Arc::new(Objects {
                store: store.clone(),
                classes,
                alarms_changed: Notify::new(),
            })),
            _ => None,
        };
        let mut config = worker.host_config();
        if let Some(fields) = config.as_object_mut() {
            fields.insert(
                "objectIdleMs".to_owned(),
                json!(object_idle_timeout(cfg.idle_timeout).as_millis()),
            );
        }
        Host {
            objects,
            sockets: Arc::new(Sockets::default()),
            config: config.to_string(),
            cpu_limit,
            spec,
            main,
            cfg,
            process: tokio::sync::Mutex::new(None),
            next_process_id: AtomicU64::new(1),
            shutting_down: AtomicBool::new(false),
        }
    }

    async fn invoke(&self, invocation: Invocation) -> Result<InvocationReport, InvokeError> {
        if self.shutting_down.load(Ordering::Acquire) {
            return Err(InvokeError::ShuttingDown {
                function: self.spec.name.clone(),
            });
        }
        let (process, init_duration) = {
            let mut slot = self.process.lock().await;
            match slot.as_ref() {
                Some(process) if process.is_alive() => (process.clone(), None),
                _ => match self.start_process().await? {
                    Start::Ready(process, init) => {
                        *slot = Some(process.clone());
                        (process, Some(init))
                    }
                    Start::InitFailed(body) => {
                        return Ok(report(Outcome::Error(body), true, None, Duration::ZERO, 0));
                    }
                    Start::Died(detail) => {
                        return Ok(report(
                            Outcome::Crashed(detail),
                            true,
                            None,
                            Duration::ZERO,
                            0,
                        ));
                    }
                },
            }
        };
        let started_at = Instant::now();
        let outcome = self.run(&process, &invocation).await;
        if let Ok(mut last_used) = process.last_used.lock() {
            *last_used = Instant::now();
        }
        let max_memory_mb =
            u32::try_from(process.max_rss_kib.load(Ordering::Acquire) / 1024).unwrap_or(u32::MAX);
        Ok(report(
            outcome,
            init_duration.is_some(),
            init_duration,
            started_at.elapsed(),
            max_memory_mb,
        ))
    }

    /// Hands `invocation` to `process` and waits for its answer, its deadline or the
    /// process's end.
    async fn run(&self, process: &Arc<Process>, invocation: &Invocation) -> Outcome {
        let id = process.next_invocation_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        if let Ok(mut pending) = process.pending.lock() {
            if pending.is_empty() {
                // The CPU watch counts from the hand-over, not from the last idle tick.
                if let Ok(mut last_seen) = process.last_seen.lock() {
                    *last_seen = Instant::now();
                }
            }
            pending.insert(id, tx);
        }
        let line = invoke_frame(id, invocation);
        let written = {
            let mut stdin = process.stdin.lock().await;
            stdin.write_all(&line).await
        };
        if let Err(e) = written {
            process.forget(id);
            return Outcome::Crashed(format!("the worker's host took no input: {e}"));
        }
        let deadline = tokio::time::sleep(self.spec.timeout);
        tokio::select! {
            reply = rx => match reply {
                Ok(Reply::Ok(body)) => Outcome::Ok(body),
                Ok(Reply::Error(body)) => Outcome::Error(body),
                Err(_) => process.ended_outcome(self.cpu_limit, self.spec.memory_mb).await,
            },
            () = deadline => {
                // The host goes on with the request (its event loop is not stuck, or the
                // CPU watch would have ended it); only this answer is abandoned.
                process.forget(id);
                Outcome::Timeout(self.spec.timeout)
            }
        }
    }

    async fn start_process(&self) -> Result<Start, InvokeError> {
        let started_at = Instant::now();
        let program = spawn::interpreter("node");
        // A heap cap under the memory limit, as Lambda's Node.js runtime sets, so a
        // runaway allocation ends in V8's own error.
        let heap_mb = (u64::from(self.spec.memory_mb) * 9 / 10).max(16);
        let mut args = vec![format!("--max-old-space-size={heap_mb}")];
        // Workers write ES modules in `.js` files without `"type": "module"`; Node 22
        // detects them by their syntax, Node 20 only when asked.
        if spawn::interpreter_version("node")
            .is_some_and(|v| v.starts_with("v20") || v.starts_with("v21"))
        {
            args.push("--experimental-detect-module".to_owned());
            args.push("--disable-warning=ExperimentalWarning".to_owned());
        }
        args.push(
            self.cfg
                .runtime_dir
                .join(WORKERS_HOST_FILE)
                .display()
                .to_string(),
        );
        let view = View::for_worker(&self.cfg, &self.spec);
        let platform = |e: std::io::Error| InvokeError::Platform {
            function: self.spec.name.clone(),
            source: Box::new(std::io::Error::new(
                e.kind(),
                format!("starting the Workers host {}: {e}", program.display()),
            )),
        };
        let confinement = view
            .sandbox
            .confine(self.spec.memory_mb, view.tmp_bytes())
            .map_err(platform)?;
        let process_id = self.next_process_id.fetch_add(1, Ordering::Relaxed);
        let spec = ProcessSpec {
            program: &program,
            args,
            cwd: &self.cfg.app_dir,
            env: self.environment(process_id),
            view,
            stdin: StdinMode::Piped,
        };
        let mut child = match spawn::spawn_instance(spec, &confinement) {
            Ok(child) => child,
            Err(e) => {
                tokio::spawn(confinement.end(0));
                return Err(platform(e));
            }
        };
        let pid = child.id().unwrap_or(0);
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            spawn::kill_group(pid);
            return Ok(Start::Died("the host's pipes were not set up".to_owned()));
        };
        let (exit_tx, exit_rx) = watch::channel(None);
        let process = Arc::new(Process {
            pid,
            stdin: tokio::sync::Mutex::new(stdin),
            pending: Mutex::new(HashMap::new()),
            next_invocation_id: AtomicU64::new(1),
            last_seen: Mutex::new(Instant::now()),
            last_used: Mutex::new(Instant::now()),
            max_rss_kib: AtomicU64::new(0),
            stop_reason: Mutex::new(None),
            ending: AtomicBool::new(false),
            exit_rx,
            sql: Arc::new(Mutex::new(HashMap::new())),
        });
        let (ready_tx, ready_rx) = oneshot::channel();
        let mut readers = tokio::task::JoinSet::new();
        readers.spawn(read_frames(
            stdout,
            process.clone(),
            self.spec.name.clone(),
            self.cfg.log_sink.clone(),
            self.objects.clone(),
            self.sockets.clone(),
            ready_tx,
        ));
        readers.spawn(read_stderr(
            stderr,
            self.spec.name.clone(),
            self.cfg.log_sink.clone(),
        ));
        tokio::spawn(watch_process(
            child,
            readers,
            process.clone(),
            self.cpu_limit,
            u64::from(self.spec.memory_mb) * 1024,
            exit_tx,
            confinement,
        ));
        let mut exit_rx = process.exit_rx.clone();
        let start = tokio::select! {
            biased;
            ready = ready_rx => match ready {
                Ok(Ok(())) => Start::Ready(process, started_at.elapsed()),
                Ok(Err(body)) => Start::InitFailed(body),
                Err(_) => Start::Died("the host ended before loading the worker".to_owned()),
            },
            exit = exit_rx.wait_for(Option::is_some) => {
                let detail = exit.ok().and_then(|e| e.clone()).unwrap_or_default();
                Start::Died(format!("the host ended ({detail}) before loading the worker"))
            }
            () = tokio::time::sleep(self.cfg.init_timeout) => {
                process.stop(StopReason::Shutdown);
                Start::Died(format!(
                    "the worker did not load within {:.2} seconds",
                    self.cfg.init_timeout.as_secs_f64()
                ))
            }
        };
        Ok(start)
    }

    /// The host's environment: where the worker is, its bindings, and the function's own
    /// variables (the services API's address and token among them).
    fn environment(&self, process_id: u64) -> Vec<(String, String)> {
        let mut env = vec![
            ("_HANDLER".to_owned(), self.main.display().to_string()),
            (
                "LAMBDA_TASK_ROOT".to_owned(),
                self.cfg.app_dir.display().to_string(),
            ),
            (
                "NODE_PATH".to_owned(),
                self.cfg
                    .runtime_dir
                    .join("node_modules")
                    .display()
                    .to_string(),
            ),
            ("NIMBUS_WORKER".to_owned(), self.config.clone()),
            ("NIMBUS_STAGE".to_owned(), self.cfg.stage.clone()),
            (
                "NIMBUS_WORKER_INSTANCE".to_owned(),
                format!("{process_id:032x}"),
            ),
            ("TZ".to_owned(), ":UTC".to_owned()),
        ];
        env.extend(
            self.spec
                .environment
                .iter()
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        env
    }

    async fn shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
        let process = self.process.lock().await.take();
        if let Some(process) = process {
            process.stop(StopReason::Shutdown);
            let mut exit_rx = process.exit_rx.clone();
            let _ = exit_rx.wait_for(Option::is_some).await;
        }
    }
}

impl Process {
    fn is_alive(&self) -> bool {
        !self.ending.load(Ordering::Acquire) && self.exit_rx.borrow().is_none()
    }

    fn stop(&self, reason: StopReason) {
        self.ending.store(true, Ordering::Release);
        if let Ok(mut stop_reason) = self.stop_reason.lock() {
            stop_reason.get_or_insert(reason);
        }
        spawn::kill_group(self.pid);
    }

    fn forget(&self, id: u64) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.remove(&id);
        }
    }

    fn n_pending(&self) -> usize {
        self.pending.lock().map_or(0, |p| p.len())
    }

    /// The outcome of an invocation whose process ended before answering it.
    async fn ended_outcome(&self, cpu_limit: Duration, memory_mb: u32) -> Outcome {
        let mut exit_rx = self.exit_rx.clone();
        let detail =
            match tokio::time::timeout(Duration::from_secs(2), exit_rx.wait_for(Option::is_some))
                .await
            {
                Ok(Ok(exit)) => exit.clone().unwrap_or_default(),
                _ => "the host stopped answering".to_owned(),
            };
        let reason = self.stop_reason.lock().ok().and_then(|r| *r);
        match reason {
            Some(StopReason::CpuLimit) => Outcome::Crashed(format!(
                "Worker exceeded CPU time limit of {} ms",
                cpu_limit.as_millis()
            )),
            Some(StopReason::OutOfMemory) => Outcome::OutOfMemory {
                limit_mb: memory_mb,
            },
            Some(StopReason::Idle | StopReason::Shutdown) => {
                Outcome::Crashed("the worker's host was stopped".to_owned())
            }
            None => Outcome::Crashed(detail),
        }
    }
}

impl Executor for WorkersExecutor {
    fn invoke(
        &self,
        invocation: Invocation,
    ) -> BoxFuture<'_, Result<InvocationReport, InvokeError>> {
        Box::pin(self.host.invoke(invocation))
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.host.shutdown())
    }

    fn attach_socket(&self, socket_id: &str, sink: SocketSink) -> bool {
        self.host.sockets.attach(socket_id, sink);
        true
    }

    fn detach_socket(&self, socket_id: &str) {
        self.host.sockets.lock().remove(socket_id);
    }

    fn stats(&self) -> ExecutorStats {
        let process = self.host.process.try_lock().ok().and_then(|p| p.clone());
        match process {
            Some(process) if process.is_alive() => ExecutorStats {
                n_instances: 1,
                n_busy: usize::from(process.n_pending() > 0),
            },
            _ => ExecutorStats::default(),
        }
    }
}

impl Drop for WorkersExecutor {
    fn drop(&mut self) {
        self.reaper.abort();
        if let Some(alarms) = &self.alarms {
            alarms.abort();
        }
        if let Ok(slot) = self.host.process.try_lock()
            && let Some(process) = slot.as_ref()
        {
            process.stop(StopReason::Shutdown);
        }
    }
}

fn report(
    outcome: Outcome,
    cold_start: bool,
    init_duration: Option<Duration>,
    duration: Duration,
    max_memory_mb: u32,
) -> InvocationReport {
    InvocationReport {
        outcome,
        cold_start,
        prestarted: false,
        init_duration,
        duration,
        max_memory_mb,
    }
}

/// The invocation's frame, `{"id":N,"event":EVENT,"t":"invoke","id":N,"rid":"..."}`. The
/// event goes in as it is, unparsed, when it is on one line (the gateway's events are);
/// the host answers one that is not JSON by the id in front of it. The fields nimbus
/// sets come again after the event, and the last of a repeated key is the one JSON.parse
/// keeps, so an event cannot stand in for another invocation's id.
fn invoke_frame(id: u64, invocation: &Invocation) -> Vec<u8> {
    let mut line = Vec::with_capacity(invocation.payload.len() + 96);
    line.extend_from_slice(format!("{{\"id\":{id},\"event\":").as_bytes());
    if invocation.payload.contains(&b'\n') {
        match serde_json::from_slice::<Value>(&invocation.payload) {
            Ok(value) => line.extend_from_slice(value.to_string().as_bytes()),
            Err(_) => line.extend_from_slice(b"null"),
        }
    } else if invocation.payload.is_empty() {
        line.extend_from_slice(b"null");
    } else {
        line.extend_from_slice(&invocation.payload);
    }
    line.extend_from_slice(format!(",\"t\":\"invoke\",\"id\":{id},\"rid\":").as_bytes());
    line.extend_from_slice(
        Value::from(invocation.request_id.as_str())
            .to_string()
            .as_bytes(),
    );
    line.extend_from_slice(b"}\n");
    line
}

async fn read_frames(
    stdout: tokio::process::ChildStdout,
    process: Arc<Process>,
    function: String,
    sink: Arc<dyn nimbus_core::LogSink>,
    objects: Option<Arc<Objects>>,
    sockets: Arc<Sockets>,
    ready_tx: oneshot::Sender<Result<(), Vec<u8>>>,
) {
    let mut ready_tx = Some(ready_tx);
    let mut lines = BufReader::new(stdout).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Ok(mut last_seen) = process.last_seen.lock() {
            *last_seen = Instant::now();
        }
        // An answer's payload goes on as the host wrote it, without a parse.
        if let Some((id, reply)) = answer_of(&line) {
            let tx = process.pending.lock().ok().and_then(|mut p| p.remove(&id));
            if let Some(tx) = tx {
                let _ = tx.send(reply);
            }
            continue;
        }
        let frame = match serde_json::from_str::<serde_json::Value>(&line) {
            Ok(serde_json::Value::Object(frame)) => frame,
            _ => {
                sink.log(LogLine {
                    function: &function,
                    request_id: None,
                    stream: LogStream::Stdout,
                    text: &line,
                });
                continue;
            }
        };
        let text_of = |key: &str| frame.get(key).and_then(|v| v.as_str());
        match text_of("t").unwrap_or("") {
            "tick" => {}
            "res" => {
                let id = frame
                    .get("id")
                    .and_then(serde_json::Value::as_u64)
                    .unwrap_or(0);
                let tx = process.pending.lock().ok().and_then(|mut p| p.remove(&id));
                let reply = match (frame.get("ok"), frame.get("error")) {
                    (Some(ok), _) => Reply::Ok(ok.to_string().into_bytes()),
                    (None, Some(error)) => Reply::Error(error.to_string().into_bytes()),
                    (None, None) => Reply::Ok(b"null".to_vec()),
                };
                if let Some(tx) = tx {
                    let _ = tx.send(reply);
                }
            }
            "log" => {
                let stream = match text_of("s") {
                    Some("err") => LogStream::Stderr,
                    _ => LogStream::Stdout,
                };
                let request_id = text_of("rid");
                for text in text_of("m").unwrap_or("").lines() {
                    sink.log(LogLine {
                        function: &function,
                        request_id,
                        stream,
                        text,
                    });
                }
            }
            "ws" => {
                if let (Some(socket_id), Some(socket_frame)) =
                    (text_of("sid"), socket_frame(&frame))
                {
                    sockets.deliver(socket_id, socket_frame);
                }
            }
            "do" | "sql" => {
                // Each object's calls come one at a time; different objects' run at once.
                tokio::spawn(storage_call(
                    objects.clone(),
                    process.clone(),
                    Value::Object(frame.clone()),
                ));
            }
            "ready" => {
                if let Some(tx) = ready_tx.take() {
                    let _ = tx.send(Ok(()));
                }
            }
            "init_error" => {
                let body = frame
                    .get("error")
                    .map_or_else(|| b"{}".to_vec(), |e| e.to_string().into_bytes());
                if let Some(tx) = ready_tx.take() {
                    let _ = tx.send(Err(body));
                }
            }
            _ => {}
        }
    }
    // The host is gone, and with it every socket it served.
    sockets.end_all();
}

async fn read_stderr(
    stderr: tokio::process::ChildStderr,
    function: String,
    sink: Arc<dyn nimbus_core::LogSink>,
) {
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        sink.log(LogLine {
            function: &function,
            request_id: None,
            stream: LogStream::Stderr,
            text: &line,
        });
    }
}

/// Waits for the host to end, watching its CPU (a stuck event loop) and memory meanwhile;
/// then drops what it held in flight and frees its uid.
async fn watch_process(
    mut child: tokio::process::Child,
    mut readers: tokio::task::JoinSet<()>,
    process: Arc<Process>,
    cpu_limit: Duration,
    limit_kib: u64,
    exit_tx: watch::Sender<Option<String>>,
    confinement: crate::sandbox::Confinement,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut n_ticks: u64 = 0;
    // The host's CPU time when it last wrote a line, sampled at the first watch tick after
    // it: a silence longer than the limit ends the host only if it spent the limit in CPU
    // (an endless loop), not if a busy machine left it waiting for a core.
    let mut progress: Option<(Instant, Option<u64>)> = None;
    let status = loop {
        tokio::select! {
            status = child.wait() => {
                process.ending.store(true, Ordering::Release);
                break status;
            }
            _ = tick.tick() => {
                n_ticks += 1;
                let busy = process.n_pending() > 0;
                if busy && let Ok(last_seen) = process.last_seen.lock().map(|t| *t) {
                    let cpu_at_progress = match progress {
                        Some((seen, Some(cpu_ms))) if seen == last_seen => cpu_ms,
                        _ => {
                            let cpu_ms = spawn::tree_cpu_ms(process.pid);
                            progress = Some((last_seen, cpu_ms));
                            cpu_ms.unwrap_or(0)
                        }
                    };
                    if last_seen.elapsed() > cpu_limit {
                        let spent = spawn::tree_cpu_ms(process.pid)
                            .map_or(Duration::MAX, |now| {
                                Duration::from_millis(now.saturating_sub(cpu_at_progress))
                            });
                        // One watch tick of slack: the sample is taken up to 10 ms late.
                        if spent + Duration::from_millis(10) >= cpu_limit {
                            process.stop(StopReason::CpuLimit);
                            continue;
                        }
                    }
                }
                // Memory: every 20 ms while busy, every second while idle.
                let sample_every = if busy { 2 } else { 100 };
                if !n_ticks.is_multiple_of(sample_every) {
                    continue;
                }
                let Some((rss, hwm)) = spawn::tree_memory_kib(process.pid) else { continue };
                process.max_rss_kib.fetch_max(rss.max(hwm), Ordering::AcqRel);
                if rss > limit_kib {
                    process.stop(StopReason::OutOfMemory);
                }
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(200), async {
        while readers.join_next().await.is_some() {}
    })
    .await;
    // The kernel's OOM killer may have been quicker than the watch.
    if confinement.end(process.pid).await
        && let Ok(mut stop_reason) = process.stop_reason.lock()
    {
        stop_reason.get_or_insert(StopReason::OutOfMemory);
    }
    let detail = match status {
        Ok(status) => status.to_string(),
        Err(e) => format!("waiting for the process failed: {e}"),
    };
    let _ = exit_tx.send(Some(detail));
    // Invocations still waiting learn of the end through their dropped senders.
    if let Ok(mut pending) = process.pending.lock() {
        pending.clear();
    }
}

/// Stops the host once it has been idle past the idle timeout (scale to zero).
async fn reap(host: std::sync::Weak<Host>) {
    let period = match host.upgrade() {
        Some(host) => {
            (host.cfg.idle_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(10))
        }
        None => return,
    };
    loop {
        tokio::time::sleep(period).await;
        let Some(host) = host.upgrade() else { return };
        let Ok(mut slot) = host.process.try_lock() else {
            continue;
        };
        // A host with live WebSockets stays: it holds their objects and listeners.
        let idle = !host.sockets.any_attached()
            && slot.as_ref().is_some_and(|p| {
                p.n_pending() == 0
                    && p.last_used
                        .lock()
                        .is_ok_and(|t| t.elapsed() > host.cfg.idle_timeout)
            });
        if idle && let Some(process) = slot.take() {
            process.stop(StopReason::Idle);
        }
    }
}

/// How long a Durable Object may go without an event before its host evicts it (its
/// accepted WebSockets stay open): Cloudflare's 10 seconds, or half the worker's idle
/// timeout when that is shorter, so an object is rebuilt before its host would stop.
fn object_idle_timeout(idle_timeout: Duration) -> Duration {
    (idle_timeout / 2).clamp(Duration::from_millis(50), Duration::from_secs(10))
}

/// An answer line as the host writes it, `{"t":"res","id":N,"ok":PAYLOAD}` (or `"error"`):
/// its id and payload, cut out of the line.
fn answer_of(line: &str) -> Option<(u64, Reply)> {
    let rest = line.strip_prefix(r#"{"t":"res","id":"#)?;
    let digits = rest.find(|c: char| !c.is_ascii_digit())?;
    let id = rest[..digits].parse().ok()?;
    let rest = &rest[digits..];
    let (payload, ok) = match rest.strip_prefix(r#","ok":"#) {
        Some(payload) => (payload, true),
        None => (rest.strip_prefix(r#","error":"#)?, false),
    };
    let payload = payload.strip_suffix('}')?.as_bytes().to_vec();
    Some((
        id,
        if ok {
            Reply::Ok(payload)
        } else {
            Reply::Error(payload)
        },
    ))
}

/// Answers one Durable Object storage call of the host (`{"t":"do","q":N,"op":...}`) on
/// its stdin: `{"t":"do_res","q":N,"ok":...}`, or `"error"` with a message the host
/// throws. A SQL call (`{"t":"sql",...}`, answered by `"sql_res"`) is one the host waits
/// for with its event loop stopped, as `sql.exec` is synchronous.
async fn storage_call(objects: Option<Arc<Objects>>, process: Arc<Process>, frame: Value) {
    let q = frame.get("q").and_then(Value::as_u64).unwrap_or(0);
    let answer = if frame.get("t").and_then(Value::as_str) == Some("sql") {
        "sql_res"
    } else {
        "do_res"
    };
    let res = match objects {
        Some(objects) => {
            let store = objects.clone();
            let sessions = process.sql.clone();
            match tokio::task::spawn_blocking(move || storage_op(&store, &sessions, &frame)).await {
                Ok(Ok((value, alarm_changed))) => {
                    if alarm_changed {
                        objects.alarms_changed.notify_one();
                    }
                    Ok(value)
                }
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(format!("Durable Object storage failed: {e}")),
            }
        }
        None => Err(
            "Durable Object storage is not available here (nimbus up and nimbus server keep it)"
                .to_owned(),
        ),
    };
    let reply = match res {
        Ok(value) => json!({"t": answer, "q": q, "ok": value}),
        Err(message) => json!({"t": answer, "q": q, "error": message}),
    };
    let mut line = reply.to_string().into_bytes();
    line.push(b'\n');
    let mut stdin = process.stdin.lock().await;
    // A host that is gone has no one waiting for the answer.
    let _ = stdin.write_all(&line).await;
}

/// Runs one storage call; its answer, and whether it changed an alarm.
fn storage_op(
    objects: &Objects,
    sessions: &SqlSessions,
    frame: &Value,
) -> Result<(Value, bool), DurableObjectError> {
    let invalid =
        |what: &str| DurableObjectError::Invalid(format!("a storage call without {what}"));
    let text = |key: &str| frame.get(key).and_then(Value::as_str);
    let class = text("class").ok_or_else(|| invalid("a class"))?;
    if !objects.classes.iter().any(|c| c == class) {
        return Err(DurableObjectError::Invalid(format!(
            "the worker binds no Durable Object class {class}"
        )));
    }
    let object = ObjectName {
        class: class.to_owned(),
        id: text("id").ok_or_else(|| invalid("an id"))?.to_owned(),
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    let store = &objects.store;
    match text("op").unwrap_or("") {
        "get" => {
            let keys: Vec<String> = frame
                .get("keys")
                .and_then(Value::as_array)
                .ok_or_else(|| invalid("keys"))?
                .iter()
                .map(|k| {
                    k.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| invalid("string keys"))
                })
                .collect::<Result<_, _>>()?;
            let values = store.get(&object, &keys)?;
            let values = values
                .into_iter()
                .map(|v| v.map_or(Value::Null, |v| Value::String(b64.encode(v))))
                .collect();
            Ok((Value::Array(values), false))
        }
        "list" => {
            let options = frame.get("options").cloned().unwrap_or(Value::Null);
            let opt = |key: &str| options.get(key).and_then(Value::as_str).map(str::to_owned);
            let list = ListOptions {
                prefix: opt("prefix"),
                start: opt("start"),
                start_after: opt("startAfter"),
                end: opt("end"),
                reverse: options
                    .get("reverse")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                limit: options
                    .get("limit")
                    .and_then(Value::as_u64)
                    .and_then(|n| usize::try_from(n).ok()),
            };
            let rows = store.list(&object, &list)?;
            let rows = rows
                .into_iter()
                .map(|(k, v)| json!([k, b64.encode(v)]))
                .collect();
            Ok((Value::Array(rows), false))
        }
        "commit" => {
            // The event's SQL lands first, then its keys and alarm: two commits.
            if frame.get("sql").and_then(Value::as_bool) == Some(true) {
                open_sql_session(sessions, &object, |sql| sql.commit())?;
            }
            let mut commit = Commit {
                delete_all: frame
                    .get("deleteAll")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                ..Commit::default()
            };
            for write in frame
                .get("writes")
                .and_then(Value::as_array)
                .map_or(&[][..], Vec::as_slice)
            {
                let key = write
                    .get(0)
                    .and_then(Value::as_str)
                    .ok_or_else(|| invalid("a key"))?;
                commit
                    .writes
                    .push(match write.get(1).and_then(Value::as_str) {
                        Some(value) => StorageWrite::Put(
                            key.to_owned(),
                            b64.decode(value).map_err(|_| invalid("a base64 value"))?,
                        ),
                        None => StorageWrite::Delete(key.to_owned()),
                    });
            }
            commit.alarm = match frame.get("alarm") {
                Some(Value::String(clear)) if clear == "clear" => AlarmChange::Clear,
                Some(Value::Number(ms)) => AlarmChange::Set(
                    SystemTime::UNIX_EPOCH
                        + Duration::from_millis(ms.as_f64().unwrap_or(0.0).max(0.0) as u64),
                ),
                _ => AlarmChange::Keep,
            };
            store.commit(&object, &commit)?;
            Ok((Value::Bool(true), commit.alarm != AlarmChange::Keep))
        }
        "sql.exec" => {
            let query = text("query").ok_or_else(|| invalid("a query"))?;
            let bindings = frame
                .get("bindings")
                .and_then(Value::as_array)
                .map_or(&[][..], Vec::as_slice)
                .iter()
                .map(sql_value)
                .collect::<Result<Vec<_>, _>>()?;
            let res = sql_session(sessions, store, &object, |sql| sql.exec(query, &bindings))?;
            let rows: Vec<Value> = res
                .rows
                .iter()
                .map(|row| Value::Array(row.iter().map(sql_json).collect()))
                .collect();
            Ok((
                json!({
                    "columns": res.columns,
                    "rows": rows,
                    "rowsRead": res.rows_read,
                    "rowsWritten": res.rows_written,
                }),
                false,
            ))
        }
        "sql.size" => {
            let size = sql_session(sessions, store, &object, |sql| sql.database_size())?;
            Ok((json!(size), false))
        }
        "sql.commit" => {
            sql_session(sessions, store, &object, |sql| sql.commit())?;
            Ok((Value::Bool(true), false))
        }
        "sql.close" => {
            // An evicted object's database; what it had not committed rolls back.
            sessions
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&object);
            Ok((Value::Bool(true), false))
        }
        "sql.rollback" => {
            open_sql_session(sessions, &object, |sql| sql.rollback())?;
            Ok((Value::Bool(true), false))
        }
        "sql.savepoint" => {
            let depth = frame
                .get("depth")
                .and_then(Value::as_u64)
                .and_then(|d| u32::try_from(d).ok())
                .ok_or_else(|| invalid("a depth"))?;
            let step = match text("step") {
                Some("open") => SavepointStep::Open,
                Some("release") => SavepointStep::Release,
                Some("rollback") => SavepointStep::RollBack,
                _ => return Err(invalid("a savepoint step")),
            };
            sql_session(sessions, store, &object, |sql| sql.savepoint(step, depth))?;
            Ok((Value::Bool(true), false))
        }
        "sql.deleteAll" => {
            // An object that never ran SQL gets no database for it.
            let open = sessions
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .contains_key(&object);
            if open || store.has_sql(&object) {
                sql_session(sessions, store, &object, |sql| sql.delete_all())?;
            }
            Ok((Value::Bool(true), false))
        }
        "getAlarm" => {
            let at = store
                .alarm(&object)?
                .map_or(Value::Null, |alarm| json!(unix_ms(alarm.at)));
            Ok((at, false))
        }
        other => Err(DurableObjectError::Invalid(format!(
            "unknown storage call `{other}`"
        ))),
    }
}

/// Runs `op` on the object's SQL database, opening it first if this host has not yet.
fn sql_session<T>(
    sessions: &SqlSessions,
    store: &Arc<dyn DurableObjectStore>,
    object: &ObjectName,
    op: impl FnOnce(&mut dyn SqlSession) -> Result<T, DurableObjectError>,
) -> Result<T, DurableObjectError> {
    let mut sessions = sessions
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let session = match sessions.entry(object.clone()) {
        std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
        std::collections::hash_map::Entry::Vacant(entry) => {
            entry.insert(store.sql_session(object)?)
        }
    };
    op(session.as_mut())
}

/// Runs `op` on the object's SQL database if this host has it open (a commit or rollback
/// of an object that ran no SQL here has nothing to do).
fn open_sql_session(
    sessions: &SqlSessions,
    object: &ObjectName,
    op: impl FnOnce(&mut dyn SqlSession) -> Result<(), DurableObjectError>,
) -> Result<(), DurableObjectError> {
    let mut sessions = sessions
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match sessions.get_mut(object) {
        Some(session) => op(session.as_mut()),
        None => Ok(()),
    }
}

/// A binding of `sql.exec` as the host sends it: null, a number, a string, or
/// `{"b64": ...}` for bytes.
fn sql_value(value: &Value) -> Result<SqlValue, DurableObjectError> {
    Ok(match value {
        Value::Null => SqlValue::Null,
        Value::Bool(b) => SqlValue::Integer(i64::from(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(n) => SqlValue::Integer(n),
            None => SqlValue::Real(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(text) => SqlValue::Text(text.clone()),
        Value::Object(fields) => match fields.get("b64").and_then(Value::as_str) {
            Some(b64) => SqlValue::Blob(
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|_| {
                        DurableObjectError::Invalid("a binding's bytes are not base64".to_owned())
                    })?,
            ),
            None => {
                return Err(DurableObjectError::Invalid(
                    "a SQL binding is null, a number, a string, a boolean or bytes".to_owned(),
                ));
            }
        },
        Value::Array(_) => {
            return Err(DurableObjectError::Invalid(
                "a SQL binding is null, a number, a string, a boolean or bytes".to_owned(),
            ));
        }
    })
}

/// A SQL value as the host reads it back (bytes as `{"b64": ...}`).
fn sql_json(value: &SqlValue) -> Value {
    match value {
        SqlValue::Null => Value::Null,
        SqlValue::Integer(n) => json!(n),
        SqlValue::Real(x) => json!(x),
        SqlValue::Text(text) => Value::String(text.clone()),
        SqlValue::Blob(bytes) => {
            json!({"b64": base64::engine::general_purpose::STANDARD.encode(bytes)})
        }
    }
}

fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// How many times an alarm is tried before it is dropped (Cloudflare: 6).
const ALARM_ATTEMPTS: u32 = 6;
/// The longest the alarm loop sleeps without looking at the store again.
const ALARM_POLL: Duration = Duration::from_secs(60);

/// Fires the alarms of the worker's Durable Objects when they are due, starting the host
/// if it is not running: alarms live in the store, so one set before a crash fires after
/// the restart even if the object is never used again. A failed alarm is retried with
/// exponential backoff (2, 4, 8, ... seconds), up to [`ALARM_ATTEMPTS`] attempts.
async fn fire_alarms(host: std::sync::Weak<Host>, objects: Arc<Objects>) {
    let mut firing: HashSet<ObjectName> = HashSet::new();
    let mut fired = tokio::task::JoinSet::new();
    loop {
        let store = objects.clone();
        let alarms = tokio::task::spawn_blocking(move || store.store.alarms(&store.classes))
            .await
            .unwrap_or_else(|e| Err(DurableObjectError::Storage(e.to_string())));
        let alarms = match alarms {
            Ok(alarms) => alarms,
            Err(e) => {
                tracing::warn!("reading Durable Object alarms: {e}");
                Vec::new()
            }
        };
        let now = SystemTime::now();
        let mut next: Option<SystemTime> = None;
        for alarm in alarms {
            if firing.contains(&alarm.object) {
                continue;
            }
            if alarm.at > now {
                next = Some(alarm.at);
                break;
            }
            let Some(host) = host.upgrade() else { return };
            if host.shutting_down.load(Ordering::Acquire) {
                return;
            }
            firing.insert(alarm.object.clone());
            fired.spawn(fire_alarm(host, objects.clone(), alarm));
        }
        let wait = next
            .and_then(|at| at.duration_since(now).ok())
            .unwrap_or(ALARM_POLL)
            .min(ALARM_POLL);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = objects.alarms_changed.notified() => {}
            Some(done) = fired.join_next(), if !fired.is_empty() => {
                if let Ok(object) = done {
                    firing.remove(&object);
                }
            }
        }
    }
}

/// Invokes the host with one alarm; on failure moves the alarm on to its next attempt.
async fn fire_alarm(host: Arc<Host>, objects: Arc<Objects>, alarm: Alarm) -> ObjectName {
    static N_ALARMS: AtomicU64 = AtomicU64::new(1);
    let payload = json!({"nimbusAlarm": {
        "class": alarm.object.class,
        "id": alarm.object.id,
        "retryCount": alarm.retry_count,
    }});
    let request_id = format!(
        "alarm-{:016x}-{}",
        unix_ms(SystemTime::now()),
        N_ALARMS.fetch_add(1, Ordering::Relaxed)
    );
    let invocation = Invocation {
        request_id,
        payload: payload.to_string().into_bytes(),
        trace_id: String::new(),
    };
    let ok = matches!(
        host.invoke(invocation).await,
        Ok(InvocationReport {
            outcome: Outcome::Ok(_),
            ..
        })
    );
    drop(host);
    if !ok {
        let attempt = alarm.retry_count + 1;
        let next = (attempt < ALARM_ATTEMPTS)
            .then(|| SystemTime::now() + Duration::from_secs(1 << attempt.min(10)));
        let object = alarm.object.clone();
        let at = alarm.at;
        let store = objects.clone();
        let res =
            tokio::task::spawn_blocking(move || store.store.retry_alarm(&object, at, next)).await;
        if let Ok(Err(e)) = res {
            tracing::warn!("moving a failed Durable Object alarm on: {e}");
        }
        if next.is_none() {
            tracing::warn!(
                class = alarm.object.class,
                id = alarm.object.id,
                "a Durable Object alarm failed {ALARM_ATTEMPTS} times and is dropped"
            );
        }
    }
    alarm.object
}

impl Sockets {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, SocketSlot>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn any_attached(&self) -> bool {
        self.lock()
            .values()
            .any(|slot| matches!(slot, SocketSlot::Attached(_)))
    }

    /// Hands `sink` the socket's frames: those that waited first, then each as it comes.
    fn attach(&self, socket_id: &str, sink: SocketSink) {
        let mut sockets = self.lock();
        if let Some(SocketSlot::Waiting(frames)) = sockets.remove(socket_id) {
            for frame in frames {
                sink(frame);
            }
        }
        sockets.insert(socket_id.to_owned(), SocketSlot::Attached(sink));
    }

    fn deliver(&self, socket_id: &str, frame: SocketFrame) {
        let mut sockets = self.lock();
        match sockets
            .entry(socket_id.to_owned())
            .or_insert_with(|| SocketSlot::Waiting(Vec::new()))
        {
            SocketSlot::Attached(sink) => sink(frame),
            SocketSlot::Waiting(frames) => {
                if frames.len() < MAX_WAITING_FRAMES {
                    frames.push(frame);
                }
            }
        }
    }

    /// Closes every attached socket (1011, as Cloudflare closes a socket whose isolate
    /// went away) and forgets them all.
    fn end_all(&self) {
        for (_, slot) in self.lock().drain() {
            if let SocketSlot::Attached(sink) = slot {
                sink(SocketFrame::Close(
                    1011,
                    "the worker's host stopped".to_owned(),
                ));
            }
        }
    }
}

/// The frame of a host's `{"t":"ws","sid":...,"op":"send"|"close",...}` line.
fn socket_frame(frame: &serde_json::Map<String, Value>) -> Option<SocketFrame> {
    match frame.get("op").and_then(Value::as_str)? {
        "send" => {
            if let Some(text) = frame.get("text").and_then(Value::as_str) {
                return Some(SocketFrame::Text(text.to_owned()));
            }
            let b64 = frame.get("b64").and_then(Value::as_str)?;
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .ok()
                .map(SocketFrame::Binary)
        }
        "close" => {
            let code = frame
                .get("code")
                .and_then(Value::as_u64)
                .and_then(|c| u16::try_from(c).ok())
                .unwrap_or(1000);
            let reason = frame
                .get("reason")
                .and_then(Value::as_str)
                .unwrap_or_default();
            Some(SocketFrame::Close(code, reason.to_owned()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_goes_into_its_frame_unparsed_and_cannot_override_the_id() {
        let frame = |payload: &str| {
            let invocation = Invocation {
                request_id: "r\"1".to_owned(),
                payload: payload.as_bytes().to_vec(),
                trace_id: String::new(),
            };
            String::from_utf8(invoke_frame(7, &invocation)).expect("frames are UTF-8")
        };
        assert_eq!(
            frame(r#"{"a":1}"#),
            "{\"id\":7,\"event\":{\"a\":1},\"t\":\"invoke\",\"id\":7,\"rid\":\"r\\\"1\"}\n"
        );
        assert_eq!(
            frame("{\n\"a\": 1\n}"),
            "{\"id\":7,\"event\":{\"a\":1},\"t\":\"invoke\",\"id\":7,\"rid\":\"r\\\"1\"}\n"
        );
        assert!(frame("not json\n").starts_with("{\"id\":7,\"event\":null,"));
        assert!(frame("").starts_with("{\"id\":7,\"event\":null,"));
        // Whatever the event says, the id nimbus set comes last.
        assert!(frame(r#"1,"id":9"#).ends_with(",\"t\":\"invoke\",\"id\":7,\"rid\":\"r\\\"1\"}\n"));
    }

    #[test]
    fn answers_are_cut_out_of_their_line_and_other_lines_are_not_answers() {
        let ok = answer_of(r#"{"t":"res","id":42,"ok":{"statusCode":200,"body":"}"}}"#);
        assert!(matches!(ok, Some((42, Reply::Ok(p))) if p == br#"{"statusCode":200,"body":"}"}"#));
        let error = answer_of(r#"{"t":"res","id":7,"error":{"errorType":"Error"}}"#);
        assert!(matches!(error, Some((7, Reply::Error(p))) if p == br#"{"errorType":"Error"}"#));
        assert!(answer_of(r#"{"t":"res","id":7}"#).is_none());
        assert!(answer_of(r#"{"t":"log","rid":null,"s":"out","m":"x"}"#).is_none());
        assert!(answer_of(r#"{"t":"res","id":,"ok":1}"#).is_none());
    }
}
