//! One invocation of a function: its input, its outcome, and the executor that runs it.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// A boxed future, so `Executor` stays object safe without an async-trait dependency.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The input of one invocation.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The request id the function sees as `awsRequestId` / `context.aws_request_id`.
    pub request_id: String,
    /// The event, as the JSON bytes AWS would send.
    pub payload: Vec<u8>,
    /// The X-Ray style trace header value passed as `Lambda-Runtime-Trace-Id`.
    pub trace_id: String,
}

/// How an invocation ended. A failing function is data, not an `Err`.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The function returned this response payload (JSON bytes).
    Ok(Vec<u8>),
    /// The function reported an error: `{errorType, errorMessage, stackTrace}` JSON bytes.
    Error(Vec<u8>),
    /// The function ran past its timeout and its instance was stopped.
    Timeout(Duration),
    /// The instance went over its memory limit and was stopped.
    OutOfMemory {
        /// The limit it went over, in MB.
        limit_mb: u32,
    },
    /// The instance exited or failed to start while handling the invocation.
    Crashed(String),
}

/// What an executor reports after an invocation.
#[derive(Debug, Clone)]
pub struct InvocationReport {
    /// How the invocation ended.
    pub outcome: Outcome,
    /// Whether a new instance had to be started for it.
    pub cold_start: bool,
    /// Whether that instance was a pre-started runtime process, handed to the function
    /// with its bootstrap loaded, so the cold start only loaded the handler.
    pub prestarted: bool,
    /// Time to start the instance, for cold starts.
    pub init_duration: Option<Duration>,
    /// Time spent in the function, from hand-over to response.
    pub duration: Duration,
    /// Highest resident memory of the instance seen so far, in MB.
    pub max_memory_mb: u32,
}

/// Who is to blame for an error; it decides the HTTP status, metric label and log level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The caller sent something wrong or too much (4xx).
    Client,
    /// The function failed (502, or 504 on timeout).
    Function,
    /// nimbus itself failed (500).
    Platform,
}

/// An invocation that could not even be attempted.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// The executor is shutting down and takes no new invocations.
    #[error("function {function} is shutting down")]
    ShuttingDown {
        /// The function's name.
        function: String,
    },
    /// The executor could not start an instance for a reason that is not the function's.
    #[error("starting an instance of {function}")]
    Platform {
        /// The function's name.
        function: String,
        /// What went wrong.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Runs invocations of one function. The lambda executor keeps a pool of processes;
/// a fake in tests answers directly.
pub trait Executor: Send + Sync {
    /// Runs one invocation to its outcome. Concurrency limits are the caller's job:
    /// the executor starts an instance whenever none is idle.
    fn invoke(
        &self,
        invocation: Invocation,
    ) -> BoxFuture<'_, Result<InvocationReport, InvokeError>>;

    /// Stops every instance; invocations in flight end as `Crashed`.
    fn shutdown(&self) -> BoxFuture<'_, ()>;

    /// Instances alive now, for metrics and `nimbus top`.
    fn stats(&self) -> ExecutorStats {
        ExecutorStats::default()
    }

    /// Why each instance is warm now, for `nimbus top`; empty for executors whose
    /// instances start in microseconds (Wasm).
    fn warm_reasons(&self) -> crate::prewarm::WarmCounts {
        crate::prewarm::WarmCounts::default()
    }

    /// How long starting an instance takes now, so a caller that knows an invocation is
    /// coming (a schedule about to fire) can ask for a warm one that long ahead; zero when
    /// starting costs nothing worth hiding.
    fn warm_lead(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }

    /// Starts an instance ahead of an invocation the caller expects (`reason`), unless one
    /// is idle already, and keeps it at least `hold` unless the pre-warm memory budget
    /// says otherwise. Returns at once; the start runs in the background.
    fn prewarm(&self, reason: crate::prewarm::WarmReason, hold: std::time::Duration) {
        let _ = (reason, hold);
    }

    /// Sends what the function writes to its WebSocket `socket_id` (one its answer
    /// accepted: a worker's `101` with a `webSocket`) into `sink`, frames written before
    /// this call first. `false` when the executor has no such socket; only the Workers
    /// executor has any.
    fn attach_socket(&self, socket_id: &str, sink: SocketSink) -> bool {
        let _ = (socket_id, sink);
        false
    }

    /// Forgets the WebSocket `socket_id`, whose connection has ended.
    fn detach_socket(&self, socket_id: &str) {
        let _ = socket_id;
    }
}

/// A frame a function sends to a client over a WebSocket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketFrame {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
    /// Close the connection with this code and reason.
    Close(u16, String),
}

/// Where the frames a function sends to one WebSocket go (the gateway's connection); it
/// must not block.
pub type SocketSink = std::sync::Arc<dyn Fn(SocketFrame) + Send + Sync>;

/// A snapshot of an executor's instances.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExecutorStats {
    /// Instances started and not stopped, busy or idle.
    pub n_instances: usize,
    /// Instances running an invocation now.
    pub n_busy: usize,
}

impl Outcome {
    /// The fault of an outcome that is not `Ok`.
    pub fn fault(&self) -> Option<Fault> {
        match self {
            Outcome::Ok(_) => None,
            _ => Some(Fault::Function),
        }
    }

    /// A short lowercase label for logs and metrics: ok, error, timeout, out-of-memory, crashed.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Ok(_) => "ok",
            Outcome::Error(_) => "error",
            Outcome::Timeout(_) => "timeout",
            Outcome::OutOfMemory { .. } => "out-of-memory",
            Outcome::Crashed(_) => "crashed",
        }
    }

    /// The `{errorType, errorMessage}` body Lambda returns to a synchronous invoker for
    /// this outcome, or the function's own payload.
    pub fn payload(&self, request_id: &str) -> Vec<u8> {
        let (error_type, message) = match self {
            Outcome::Ok(body) | Outcome::Error(body) => return body.clone(),
            // Lambda's wording, so tools that match on it keep working.
            Outcome::Timeout(after) => (
                "Sandbox.Timedout",
                format!(
                    "{request_id} Task timed out after {:.2} seconds",
                    after.as_secs_f64()
                ),
            ),
            // Lambda says `signal: killed` (its OOM kill); the limit is nimbus's addition,
            // after the words tools match on.
            Outcome::OutOfMemory { limit_mb } => (
                "Runtime.OutOfMemory",
                format!(
                    "RequestId: {request_id} Error: Runtime exited with error: signal: killed (memory limit of {limit_mb} MB exceeded)"
                ),
            ),
            Outcome::Crashed(detail) => (
                "Runtime.ExitError",
                format!("RequestId: {request_id} Error: Runtime exited with error: {detail}"),
            ),
        };
        serde_json::json!({ "errorType": error_type, "errorMessage": message })
            .to_string()
            .into_bytes()
    }
}

/// Which output stream a function wrote a line to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    /// Standard output (console.log, print).
    Stdout,
    /// Standard error.
    Stderr,
}

/// One line a function wrote.
#[derive(Debug, Clone, Copy)]
pub struct LogLine<'a> {
    /// The function's name in the manifest.
    pub function: &'a str,
    /// The invocation in flight when the line was written, if any (init code has none).
    pub request_id: Option<&'a str>,
    /// Where it was written.
    pub stream: LogStream,
    /// The line, without its newline.
    pub text: &'a str,
}

/// Where executors send the lines functions write; the binary decides what to do with them.
pub trait LogSink: Send + Sync {
    /// Records one line. Called on the invocation path: implementations must not block.
    fn log(&self, line: LogLine<'_>);
}
