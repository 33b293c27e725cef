//! One instance: a runtime process, its Runtime API endpoint and the task watching it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nimbus_core::{LogLine, LogSink, LogStream};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::{mpsc, oneshot, watch};

use crate::runtime_api::{Dispatch, Init, Peer, RuntimeApi};
use crate::sandbox::Confinement;
use crate::spawn::{self, ProcessSpec};

/// Why an instance process ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Exit {
    /// It went over its memory limit and was stopped.
    OutOfMemory,
    /// nimbus stopped it (timeout, idle, shutdown).
    Stopped,
    /// It exited by itself; the text describes the status.
    Exited(String),
}

/// State of an instance shared between the pool, the invocation and the watch task.
pub(crate) struct InstanceState {
    pub(crate) id: u64,
    pub(crate) pid: u32,
    /// Invocations in flight; memory is watched closely only while there are any.
    pub(crate) in_flight: AtomicUsize,
    pub(crate) max_rss_kib: AtomicU64,
    stop_requested: AtomicBool,
    oom: AtomicBool,
    exit_rx: watch::Receiver<Option<Exit>>,
}

/// A started instance, shared by the slots the pool hands to invocations (one, or the
/// function's `concurrency`). Dropping it stops the process.
pub(crate) struct Instance {
    pub(crate) state: Arc<InstanceState>,
    pub(crate) next_tx: mpsc::Sender<Dispatch>,
    /// Whether it was a pre-started process handed to its function (`Spare::assign`).
    pub(crate) prestarted: bool,
    server_task: tokio::task::JoinHandle<()>,
}

/// What starting an instance produced.
pub(crate) enum Started {
    Ready(Instance, Duration),
    /// The runtime reported an init error (`/runtime/init/error`) with this body.
    InitFailed(bytes::Bytes),
    /// The process ended or hung before asking for work.
    Died(String),
}

pub(crate) struct StartConfig<'a> {
    pub(crate) id: u64,
    pub(crate) function: &'a str,
    pub(crate) function_arn: String,
    pub(crate) memory_mb: u32,
    pub(crate) init_timeout: Duration,
    pub(crate) log_sink: Arc<dyn LogSink>,
    /// Invocations the runtime may run at once (`concurrency`).
    pub(crate) concurrency: usize,
}

/// A pre-started runtime process: it has loaded its bootstrap and waits, in the Runtime
/// API, for the function it is handed to (`assign`), before any function's code runs.
pub(crate) struct Spare {
    instance: Instance,
    api: Arc<RuntimeApi>,
    init_rx: oneshot::Receiver<Init>,
    assign_tx: oneshot::Sender<bytes::Bytes>,
}

/// A process-wide id per instance: pools and the spares they adopt share the numbering.
pub(crate) fn next_instance_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl Instance {
    /// Starts a process with `process` (its env completed with `AWS_LAMBDA_RUNTIME_API`)
    /// and waits until it asks for its first invocation.
    pub(crate) async fn start(
        cfg: StartConfig<'_>,
        process: ProcessSpec<'_>,
    ) -> std::io::Result<Started> {
        let started_at = Instant::now();
        let init_timeout = cfg.init_timeout;
        let (instance, _api, init_rx, _) = Instance::spawn(cfg, process, false).await?;
        Ok(instance.until_init(init_rx, started_at, init_timeout).await)
    }

    /// Starts a pre-started process: the bootstrap (told by `NIMBUS_PRESTART` in
    /// `process`'s environment) loads and asks which function it serves; `None` when it
    /// ended or hung before that.
    pub(crate) async fn start_spare(
        cfg: StartConfig<'_>,
        process: ProcessSpec<'_>,
    ) -> std::io::Result<Option<Spare>> {
        let init_timeout = cfg.init_timeout;
        let (instance, api, init_rx, assignment) = Instance::spawn(cfg, process, true).await?;
        let Some((asked_rx, assign_tx)) = assignment else {
            return Ok(None);
        };
        let mut exit_rx = instance.state.exit_rx.clone();
        let asked = tokio::select! {
            asked = asked_rx => asked.is_ok(),
            _ = exit_rx.wait_for(Option::is_some) => false,
            () = tokio::time::sleep(init_timeout) => false,
        };
        if asked {
            // Its runtime has loaded: most of what the instance will hold.
            instance.state.sample_memory();
        }
        Ok(asked.then_some(Spare {
            instance,
            api,
            init_rx,
            assign_tx,
        }))
    }

    async fn spawn(
        cfg: StartConfig<'_>,
        mut process: ProcessSpec<'_>,
        spare: bool,
    ) -> std::io::Result<(
        Instance,
        Arc<RuntimeApi>,
        oneshot::Receiver<Init>,
        Option<(oneshot::Receiver<()>, oneshot::Sender<bytes::Bytes>)>,
    )> {
        // A uid of its own, when nimbus is root: its Runtime API then answers only
        // sockets that uid opened, so no other instance can take its invocations.
        let confinement = process
            .view
            .sandbox
            .confine(cfg.memory_mb, process.view.tmp_bytes())?;
        let peer = match confinement.uid() {
            Some(uid) => Peer::Uid(uid),
            None => Peer::Any,
        };
        let api_function_arn = cfg.function_arn.clone();
        let (addr, api, next_tx, init_rx, server_task) =
            RuntimeApi::start(cfg.function_arn, peer, cfg.concurrency).await?;
        api.set_function(cfg.function, &api_function_arn);
        let assignment = match spare {
            true => Some(api.expect_assignment().await),
            false => None,
        };
        process
            .env
            .push(("AWS_LAMBDA_RUNTIME_API".to_owned(), addr.to_string()));
        let mut child = match spawn::spawn_instance(process, &confinement) {
            Ok(child) => child,
            Err(e) => {
                server_task.abort();
                tokio::spawn(confinement.end(0));
                return Err(e);
            }
        };
        let pid = child.id().unwrap_or(0);
        let (exit_tx, exit_rx) = watch::channel(None);
        let state = Arc::new(InstanceState {
            id: cfg.id,
            pid,
            in_flight: AtomicUsize::new(0),
            max_rss_kib: AtomicU64::new(0),
            stop_requested: AtomicBool::new(false),
            oom: AtomicBool::new(false),
            exit_rx,
        });
        let mut readers = tokio::task::JoinSet::new();
        let streams: [(Option<Box<dyn AsyncRead + Send + Unpin>>, LogStream); 2] = [
            (
                child.stdout.take().map(|s| Box::new(s) as _),
                LogStream::Stdout,
            ),
            (
                child.stderr.take().map(|s| Box::new(s) as _),
                LogStream::Stderr,
            ),
        ];
        for (pipe, stream) in streams {
            let Some(pipe) = pipe else { continue };
            let output = Output {
                stream,
                state: state.clone(),
                api: api.clone(),
                sink: cfg.log_sink.clone(),
            };
            readers.spawn(forward_lines(pipe, output));
        }
        tokio::spawn(watch_process(
            child,
            readers,
            state.clone(),
            u64::from(cfg.memory_mb) * 1024,
            exit_tx,
            confinement,
        ));
        let instance = Instance {
            state,
            next_tx,
            prestarted: false,
            server_task,
        };
        Ok((instance, api, init_rx, assignment))
    }

    /// Waits until the runtime asks for its first invocation, reports an init error, ends
    /// or runs out of `init_timeout`.
    async fn until_init(
        self,
        init_rx: oneshot::Receiver<Init>,
        started_at: Instant,
        init_timeout: Duration,
    ) -> Started {
        let instance = self;
        let mut exit_rx = instance.state.exit_rx.clone();
        tokio::select! {
            biased;
            init = init_rx => match init {
                Ok(Init::Ready) => {
                    let init = started_at.elapsed();
                    // One sample after init, so even invocations shorter than the watch
                    // interval report the memory the instance holds. A pre-started process
                    // was sampled while it waited, off the cold start's path.
                    if instance.state.max_rss_kib.load(Ordering::Acquire) == 0 {
                        instance.state.sample_memory();
                    }
                    Started::Ready(instance, init)
                }
                Ok(Init::Failed(body)) => Started::InitFailed(body),
                Err(_) => Started::Died("runtime API stopped".to_owned()),
            },
            exit = exit_rx.wait_for(Option::is_some) => {
                let detail = match exit.as_deref() {
                    Ok(Some(Exit::Exited(detail))) => detail.clone(),
                    Ok(Some(Exit::OutOfMemory)) => "out of memory during init".to_owned(),
                    _ => "stopped during init".to_owned(),
                };
                Started::Died(format!("{detail} before asking for an invocation"))
            }
            () = tokio::time::sleep(init_timeout) => Started::Died(format!(
                "init did not finish within {:.2} seconds",
                init_timeout.as_secs_f64()
            )),
        }
    }

    /// Waits until the process has ended and says why.
    pub(crate) async fn exited(&self) -> Exit {
        let mut exit_rx = self.state.exit_rx.clone();
        match exit_rx.wait_for(Option::is_some).await {
            Ok(exit) => exit.clone().unwrap_or(Exit::Stopped),
            Err(_) => Exit::Stopped,
        }
    }

    pub(crate) fn is_alive(&self) -> bool {
        self.state.exit_rx.borrow().is_none()
    }
}

impl Spare {
    /// Hands the process to a function: it takes on `env` (the function's whole
    /// environment), then loads the handler as a cold start would; the result is that
    /// start's, with the time from hand-over as its init.
    pub(crate) async fn assign(
        self,
        function: &str,
        function_arn: &str,
        env: &[(String, String)],
        init_timeout: Duration,
    ) -> Started {
        let started_at = Instant::now();
        self.api.set_function(function, function_arn);
        let env: serde_json::Map<String, serde_json::Value> = env
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        let body = serde_json::json!({ "environment": env }).to_string();
        if self.assign_tx.send(bytes::Bytes::from(body)).is_err() {
            return Started::Died("the pre-started process stopped waiting".to_owned());
        }
        let mut instance = self.instance;
        instance.prestarted = true;
        instance
            .until_init(self.init_rx, started_at, init_timeout)
            .await
    }

    /// The instance id it was started with.
    pub(crate) fn id(&self) -> u64 {
        self.instance.state.id
    }

    pub(crate) fn is_alive(&self) -> bool {
        self.instance.is_alive()
    }
}

impl InstanceState {
    /// Whether an invocation is in flight.
    pub(crate) fn is_busy(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0
    }

    /// Adds a sample of the process tree's memory to `max_rss_kib`.
    fn sample_memory(&self) {
        if let Some((rss, hwm)) = spawn::tree_memory_kib(self.pid) {
            self.max_rss_kib.fetch_max(rss.max(hwm), Ordering::AcqRel);
        }
    }

    /// Stops the process (and its process group).
    pub(crate) fn stop(&self) {
        if self.exit_rx.borrow().is_none() {
            self.stop_requested.store(true, Ordering::Release);
            spawn::kill_group(self.pid);
        }
    }

    /// Resolves once the process has ended.
    pub(crate) async fn wait_exit(&self) {
        let mut exit_rx = self.exit_rx.clone();
        let _ = exit_rx.wait_for(Option::is_some).await;
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.state.stop();
        self.server_task.abort();
    }
}

/// Waits for the process to end while watching its memory; publishes why it ended.
async fn watch_process(
    mut child: tokio::process::Child,
    mut readers: tokio::task::JoinSet<()>,
    state: Arc<InstanceState>,
    limit_kib: u64,
    exit_tx: watch::Sender<Option<Exit>>,
    confinement: Confinement,
) {
    // Memory is sampled often while an invocation runs and rarely while idle: an idle
    // runtime does not grow, and a scaled-down pool should cost nothing.
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut n_ticks: u64 = 0;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            _ = tick.tick() => {
                n_ticks += 1;
                if !state.is_busy() && !n_ticks.is_multiple_of(50) {
                    continue;
                }
                let Some((rss, hwm)) = spawn::tree_memory_kib(state.pid) else { continue };
                state.max_rss_kib.fetch_max(rss.max(hwm), Ordering::AcqRel);
                if rss > limit_kib {
                    state.oom.store(true, Ordering::Release);
                    spawn::kill_group(state.pid);
                }
            }
        }
    };
    // Let the log readers drain, so a last line (such as V8's heap message) is seen.
    let _ = tokio::time::timeout(Duration::from_millis(200), async {
        while readers.join_next().await.is_some() {}
    })
    .await;
    // Whatever the runtime started goes with it (its group, its cgroup, its uid); the
    // kernel's OOM killer may have been quicker than the watch.
    if confinement.end(state.pid).await {
        state.oom.store(true, Ordering::Release);
    }
    let exit = if state.oom.load(Ordering::Acquire) {
        Exit::OutOfMemory
    } else if state.stop_requested.load(Ordering::Acquire) {
        Exit::Stopped
    } else {
        Exit::Exited(match status {
            Ok(status) => describe(status),
            Err(e) => format!("waiting for the process failed: {e}"),
        })
    };
    let _ = exit_tx.send(Some(exit));
}

fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        (None, None) => status.to_string(),
    }
}

/// One output stream of an instance and where its lines go.
struct Output {
    stream: LogStream,
    state: Arc<InstanceState>,
    api: Arc<RuntimeApi>,
    sink: Arc<dyn LogSink>,
}

/// An instance's output is read this much at a time: a function flooding its stdout
/// costs nimbus a read and a wake-up per 64 KiB, not per 8 KiB (a tokio `BufReader`'s).
const OUTPUT_READ_BYTES: usize = 64 << 10;

/// The longest line passed on whole: Lambda's limit on one log event. A longer one (or
/// output that never ends a line) goes on in pieces this long, so nimbus never holds more
/// of an instance's output than this.
const MAX_LINE_BYTES: usize = 256 << 10;

/// Forwards each output line of an instance to the log sink, tagged with the invocation
/// in flight, and flags V8 heap exhaustion.
async fn forward_lines(stream: impl tokio::io::AsyncRead + Unpin, output: Output) {
    read_lines(stream, |line| forward_line(line, &output)).await;
}

/// Calls `each` with every line of `stream` (without its `\n`), lines longer than
/// `MAX_LINE_BYTES` in pieces.
async fn read_lines(stream: impl tokio::io::AsyncRead + Unpin, mut each: impl FnMut(&[u8])) {
    let mut reader = BufReader::with_capacity(OUTPUT_READ_BYTES, stream);
    let mut line = Vec::new();
    // Whether the last line was cut at `MAX_LINE_BYTES`: a newline right after it ends
    // that line, not an empty one.
    let mut cut = false;
    loop {
        let buf = match reader.fill_buf().await {
            Ok(buf) if !buf.is_empty() => buf,
            _ => break,
        };
        let window = &buf[..buf.len().min(MAX_LINE_BYTES - line.len())];
        match memchr::memchr(b'\n', window) {
            Some(end) => {
                line.extend_from_slice(&window[..end]);
                reader.consume(end + 1);
                if std::mem::take(&mut cut) && line.is_empty() {
                    continue;
                }
            }
            None => {
                let n_read = window.len();
                line.extend_from_slice(window);
                reader.consume(n_read);
                if line.len() < MAX_LINE_BYTES {
                    continue;
                }
                cut = true;
            }
        }
        each(&line);
        line.clear();
    }
    if !line.is_empty() {
        each(&line);
    }
}

/// Passes one line of output (without its `\n`) to the log sink.
fn forward_line(line: &[u8], output: &Output) {
    let line = String::from_utf8_lossy(line.strip_suffix(b"\r").unwrap_or(line));
    // Node aborts with this message (on stderr) when `--max-old-space-size` is exhausted:
    // the same memory limit, reached by the heap before the resident-size watch saw it.
    if output.stream == LogStream::Stderr
        && (line.contains("JavaScript heap out of memory") || line.contains("Reached heap limit"))
    {
        output.state.oom.store(true, Ordering::Release);
    }
    // Lambda's runtimes put the request id in their log prefix; trust it over timing.
    let request_id = prefixed_request_id(&line)
        .map(str::to_owned)
        .or_else(|| output.api.last_request_id());
    output.sink.log(LogLine {
        function: &output.api.function_name(),
        request_id: request_id.as_deref(),
        stream: output.stream,
        text: &line,
    });
}

/// The request id in a Node.js (`time\tid\tLEVEL\tmsg`) or Python logging
/// (`[LEVEL]\ttime\tid\tmsg`) line prefix.
fn prefixed_request_id(line: &str) -> Option<&str> {
    let mut fields = line.splitn(4, '\t');
    let first = fields.next()?;
    let id = if first.starts_with('[') {
        fields.nth(1)?
    } else {
        fields.next()?
    };
    // A UUID: 36 characters of hex digits and dashes.
    (id.len() == 36 && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')).then_some(id)
}

/// Sends an invocation's reply channel pair; here so the pool does not import oneshot.
pub(crate) fn reply_channel() -> (
    oneshot::Sender<crate::runtime_api::Reply>,
    oneshot::Receiver<crate::runtime_api::Reply>,
) {
    oneshot::channel()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lines `read_lines` finds in `output`, as (length, first byte) pairs.
    fn lines_of(output: &[u8]) -> Vec<(usize, u8)> {
        let mut lines = Vec::new();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        runtime.block_on(read_lines(output, |line| {
            lines.push((line.len(), line.first().copied().unwrap_or(b'-')));
        }));
        lines
    }

    #[test]
    fn output_is_split_at_newlines_and_long_lines_are_passed_on_in_pieces() {
        assert_eq!(
            lines_of(b"a\nbb\r\n\nccc"),
            vec![(1, b'a'), (3, b'b'), (0, b'-'), (3, b'c')]
        );
        // A line of exactly the limit, then its newline: one line, not an extra empty one.
        let mut exact = vec![b'x'; MAX_LINE_BYTES];
        exact.extend_from_slice(b"\ny\n");
        assert_eq!(lines_of(&exact), vec![(MAX_LINE_BYTES, b'x'), (1, b'y')]);
        // Output that never ends a line is held at most `MAX_LINE_BYTES` at a time.
        let endless = vec![b'z'; MAX_LINE_BYTES * 2 + 5];
        assert_eq!(
            lines_of(&endless),
            vec![(MAX_LINE_BYTES, b'z'), (MAX_LINE_BYTES, b'z'), (5, b'z')]
        );
    }
}
