//! What nimbus records about every invocation: metrics, logs with START/END/REPORT lines,
//! invocation records, and trace spans (kept in the store, exported over OTLP when asked).

mod logs;
mod metrics;
mod otlp;
mod redact;
pub(crate) mod trace;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

use nimbus_core::{FunctionSpec, InvocationReport, LogLine, LogSink, LogStream, Outcome};
use nimbus_store::{InvocationRecord, LogRecord, SpanRecord, Store};
use tokio::sync::mpsc;

pub(crate) use metrics::{FunctionMetrics, QueueDepth};
pub use redact::{REDACTED, RedactingLogSink, Redactor};
pub use trace::TraceContext;

/// Settings of telemetry, decided by the binary.
pub struct TelemetryConfig {
    /// Where invocation records, logs and spans are kept; `None` keeps none (metrics stay).
    pub store: Option<Store>,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`: spans are also sent there (OTLP/HTTP, JSON).
    pub otlp_endpoint: Option<String>,
    /// Also write function output to the process log.
    pub echo_function_output: bool,
}

/// The sink of everything observable. One per server; shared with executors as their
/// `LogSink`.
pub struct Telemetry {
    pub(crate) metrics: metrics::Metrics,
    store: Option<Store>,
    /// What each invocation under way (or recently finished) has written, by request id.
    outputs: Arc<Mutex<HashMap<String, Output>>>,
    otlp: Option<mpsc::Sender<SpanRecord>>,
    echo: bool,
}

/// The most of its output one invocation keeps (stored and echoed): past it, lines are
/// counted as dropped. A function printing 1 GB costs the store and nimbus's own log this
/// much, not a gigabyte.
pub(crate) const MAX_OUTPUT_BYTES: usize = 4 << 20;

/// The longest line kept whole; longer ones are cut here. Lambda's limit on one log event.
pub(crate) const MAX_LINE_BYTES: usize = 256 << 10;

/// The output of one invocation so far.
struct Output {
    n_bytes: usize,
    n_dropped: u64,
    /// Whether its invocation record went out; dropped lines after it are added to it.
    recorded: bool,
    /// Dropped lines not yet added to the record.
    n_unsent: u64,
    last_line: Instant,
}

/// How often dropped lines that arrive after an invocation's record are added to it, and
/// how long after its last line a finished invocation's output is forgotten.
const AMEND_INTERVAL: Duration = Duration::from_millis(250);
const FORGET_AFTER: Duration = Duration::from_secs(10);
/// Longer than any function's timeout (Lambda's longest is 15 minutes).
const UNFINISHED_FORGET_AFTER: Duration = Duration::from_secs(30 * 60);

/// What caused an invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trigger {
    Http,
    Invoke,
    /// An asynchronous invocation (`X-Amz-Invocation-Type: Event`, a destination).
    Event,
    Sqs,
    Sns,
    S3,
    Schedule,
    /// A stream event source mapping (DynamoDB Streams, Kinesis).
    Stream,
    /// A WebSocket API route (`$connect`, a message, `$disconnect`).
    WebSocket,
}

/// The facts of one finished invocation.
pub(crate) struct Finished<'a> {
    pub(crate) request_id: &'a str,
    pub(crate) trigger: Trigger,
    pub(crate) start: SystemTime,
    pub(crate) trace: &'a TraceContext,
    pub(crate) span_id: &'a str,
    pub(crate) report: &'a InvocationReport,
    /// The function's secret values, hidden in the recorded error message.
    pub(crate) redactor: Option<&'a Redactor>,
}

impl Telemetry {
    /// Starts telemetry; spawns the OTLP exporter when an endpoint is set (call it inside
    /// the tokio runtime).
    pub fn new(cfg: TelemetryConfig) -> Telemetry {
        let outputs = Arc::new(Mutex::new(HashMap::new()));
        if let (Some(store), Ok(runtime)) = (&cfg.store, tokio::runtime::Handle::try_current()) {
            runtime.spawn(amend_dropped_lines(Arc::downgrade(&outputs), store.clone()));
        }
        Telemetry {
            metrics: metrics::Metrics::new(),
            outputs,
            store: cfg.store,
            otlp: cfg.otlp_endpoint.map(otlp::spawn_exporter),
            echo: cfg.echo_function_output,
        }
    }

    pub(crate) fn started(&self, function: &str, request_id: &str) {
        if let Ok(mut outputs) = self.outputs.lock() {
            outputs.insert(
                request_id.to_owned(),
                Output {
                    n_bytes: 0,
                    n_dropped: 0,
                    recorded: false,
                    n_unsent: 0,
                    last_line: Instant::now(),
                },
            );
        }
        // START/END/REPORT are not stored as lines: `Store::logs` makes them from the
        // invocation record. They reach the process log at debug level only.
        if tracing::enabled!(tracing::Level::DEBUG) {
            let message = nimbus_store::start_message(request_id, "$LATEST");
            tracing::debug!(function, request_id, "{message}");
        }
    }

    pub(crate) fn finished(
        &self,
        spec: &FunctionSpec,
        metrics: &FunctionMetrics,
        done: Finished<'_>,
    ) {
        let report = done.report;
        let log_lines_dropped = self.output_recorded(done.request_id);
        let duration_ms = report.duration.as_secs_f64() * 1000.0;
        // Lambda bills each invocation's duration rounded up to the millisecond.
        let billed_ms = (duration_ms.ceil() as u64).max(1);
        let gb_seconds = billed_ms as f64 / 1000.0 * f64::from(spec.memory_mb) / 1024.0;
        metrics.finished(
            &report.outcome,
            report.cold_start,
            report.duration.as_secs_f64(),
            gb_seconds,
        );
        let debug = tracing::enabled!(tracing::Level::DEBUG);
        if self.store.is_none() && self.otlp.is_none() && !debug {
            return;
        }
        let request_id = done.request_id;
        let (error_type, mut error_message) = error_fields(&report.outcome, request_id);
        if let (Some(redactor), Some(message)) = (done.redactor, &error_message)
            && let Some(redacted) = redactor.redact(message)
        {
            error_message = Some(redacted);
        }
        let record = InvocationRecord {
            log_lines_dropped,
            request_id: request_id.to_owned(),
            function: spec.name.clone(),
            version: "$LATEST".to_owned(),
            trigger: done.trigger.as_str().to_owned(),
            start: done.start,
            duration: report.duration,
            billed_ms,
            memory_mb: spec.memory_mb,
            max_memory_mb: report.max_memory_mb,
            cold_start: report.cold_start,
            prestarted: report.prestarted,
            init_duration: report.init_duration,
            outcome: report.outcome.label().to_owned(),
            error_type,
            error_message,
            trace_id: done.trace.trace_id.clone(),
            span_id: Some(done.span_id.to_owned()),
            parent_span_id: done.trace.parent_span_id.clone(),
        };
        if debug {
            // START went out when the invocation started.
            for line in nimbus_store::platform_lines(&record).iter().skip(1) {
                tracing::debug!(function = spec.name, request_id, "{}", line.message);
            }
        }
        if let Some(otlp) = &self.otlp
            && let Some(span) = nimbus_store::invocation_span(&record)
        {
            // A full export queue drops the span from export only; it is still kept locally.
            let _ = otlp.try_send(span);
        }
        self.record_invocation(record);
    }

    /// The lines of `request_id`'s output dropped so far. Its output is followed further
    /// (late drops are added to the record) when the store keeps records, else forgotten.
    fn output_recorded(&self, request_id: &str) -> u64 {
        let Ok(mut outputs) = self.outputs.lock() else {
            return 0;
        };
        if self.store.is_none() {
            return outputs
                .remove(request_id)
                .map_or(0, |output| output.n_dropped);
        }
        match outputs.get_mut(request_id) {
            Some(output) => {
                output.recorded = true;
                output.n_unsent = 0;
                output.n_dropped
            }
            None => 0,
        }
    }

    pub(crate) fn throttled(
        &self,
        spec: &FunctionSpec,
        metrics: &FunctionMetrics,
        request_id: &str,
        trigger: Trigger,
        trace: &TraceContext,
    ) {
        metrics.throttled();
        self.record_invocation(InvocationRecord {
            request_id: request_id.to_owned(),
            function: spec.name.clone(),
            version: "$LATEST".to_owned(),
            trigger: trigger.as_str().to_owned(),
            start: SystemTime::now(),
            duration: Duration::ZERO,
            billed_ms: 0,
            memory_mb: spec.memory_mb,
            max_memory_mb: 0,
            cold_start: false,
            prestarted: false,
            init_duration: None,
            outcome: "throttled".to_owned(),
            error_type: Some("TooManyRequestsException".to_owned()),
            error_message: Some(match spec.reserved_concurrency {
                Some(n) => format!("Rate Exceeded: reservedConcurrency {n} reached"),
                None => "Rate Exceeded: the unreserved concurrency is in use".to_owned(),
            }),
            trace_id: trace.trace_id.clone(),
            span_id: None,
            parent_span_id: None,
            log_lines_dropped: 0,
        });
    }

    /// Whether spans go anywhere (`--telemetry on` or an OTLP endpoint); when not, callers
    /// need not build them.
    pub(crate) fn keeps_spans(&self) -> bool {
        self.store.is_some() || self.otlp.is_some()
    }

    /// Records a finished span locally and, when configured, exports it.
    pub(crate) fn span(&self, span: SpanRecord) {
        if let Some(otlp) = &self.otlp {
            // A full export queue drops the span from export only; it is still kept locally.
            let _ = otlp.try_send(span.clone());
        }
        if let Some(store) = &self.store {
            store.record_span(span);
        }
    }

    /// The end of an invocation's log, START to REPORT, at most `max_bytes` long (cut at a
    /// line's start where one fits): what Lambda's Invoke answers for `LogType: Tail`.
    /// `None` when telemetry keeps no records (`--telemetry off`).
    pub(crate) fn log_tail(&self, request_id: &str, max_bytes: usize) -> Option<String> {
        let store = self.store.as_ref()?;
        store.flush();
        let query = nimbus_store::LogQuery {
            request_id: Some(request_id.to_owned()),
            ..nimbus_store::LogQuery::default()
        };
        let page = match store.logs(&query) {
            Ok(page) => page,
            Err(err) => {
                tracing::warn!(error = %err, request_id, "reading an invocation's log for its tail");
                return None;
            }
        };
        let text: String = page
            .lines
            .iter()
            .map(|line| format!("{}\n", line.message))
            .collect();
        let mut cut = text.len().saturating_sub(max_bytes);
        while !text.is_char_boundary(cut) {
            cut += 1;
        }
        let tail = &text[cut..];
        let tail = match tail.find('\n') {
            Some(newline) if cut > 0 && newline + 1 < tail.len() => &tail[newline + 1..],
            _ => tail,
        };
        Some(tail.to_owned())
    }

    /// Waits until records sent so far are on disk.
    pub fn flush(&self) {
        if let Some(store) = &self.store {
            store.flush();
        }
    }

    fn record_invocation(&self, record: InvocationRecord) {
        if let Some(store) = &self.store {
            store.record_invocation(record);
        }
    }
}

impl LogSink for Telemetry {
    fn log(&self, line: LogLine<'_>) {
        // Each invocation keeps at most `MAX_OUTPUT_BYTES` of output; the rest is counted.
        let counted = match line.request_id {
            Some(request_id) => self.outputs.lock().ok().and_then(|mut outputs| {
                let output = outputs.get_mut(request_id)?;
                output.last_line = Instant::now();
                if output.n_bytes + line.text.len().min(MAX_LINE_BYTES) > MAX_OUTPUT_BYTES {
                    output.n_dropped += 1;
                    output.n_unsent += u64::from(output.recorded);
                    return Some(false);
                }
                output.n_bytes += line.text.len().min(MAX_LINE_BYTES);
                Some(true)
            }),
            None => None,
        };
        if counted == Some(false) {
            return;
        }
        let text = cut_line(line.text);
        let line = LogLine { text, ..line };
        let parsed = logs::parse_line(line.text, line.stream);
        if let Some(fields) = &parsed.fields {
            for sample in logs::emf_samples(fields) {
                self.metrics.custom(line.function, &sample);
            }
        }
        if self.echo {
            let request_id = line.request_id.unwrap_or("-");
            match parsed.level {
                "ERROR" | "FATAL" => {
                    tracing::warn!(function = line.function, request_id, "{}", line.text)
                }
                _ => tracing::info!(function = line.function, request_id, "{}", line.text),
            }
        }
        if let Some(store) = &self.store {
            let kept = store.record_log(LogRecord {
                time: SystemTime::now(),
                function: line.function.to_owned(),
                request_id: line.request_id.map(str::to_owned),
                level: parsed.level.to_owned(),
                stream: match line.stream {
                    LogStream::Stdout => "stdout",
                    LogStream::Stderr => "stderr",
                }
                .to_owned(),
                message: parsed.message.to_owned(),
                fields: parsed
                    .fields
                    .map(|fields| serde_json::Value::Object(fields).to_string()),
            });
            if !kept
                && let Some(request_id) = line.request_id
                && let Ok(mut outputs) = self.outputs.lock()
                && let Some(output) = outputs.get_mut(request_id)
            {
                output.n_dropped += 1;
                output.n_unsent += u64::from(output.recorded);
            }
        }
    }
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Http => "http",
            Trigger::Invoke => "invoke",
            Trigger::Event => "event",
            Trigger::Sqs => "sqs",
            Trigger::Sns => "sns",
            Trigger::S3 => "s3",
            Trigger::Schedule => "schedule",
            Trigger::Stream => "stream",
            Trigger::WebSocket => "websocket",
        }
    }
}

/// `errorType` and `errorMessage` of a failed outcome.
fn error_fields(outcome: &Outcome, request_id: &str) -> (Option<String>, Option<String>) {
    if matches!(outcome, Outcome::Ok(_)) {
        return (None, None);
    }
    let payload = outcome.payload(request_id);
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(&payload) else {
        return (
            Some("Unknown".to_owned()),
            Some(String::from_utf8_lossy(&payload).into_owned()),
        );
    };
    let text = |key: &str| value.get(key).and_then(|v| v.as_str()).map(str::to_owned);
    (text("errorType"), text("errorMessage"))
}

/// `text` cut to `MAX_LINE_BYTES` at a character boundary.
fn cut_line(text: &str) -> &str {
    if text.len() <= MAX_LINE_BYTES {
        return text;
    }
    let mut end = MAX_LINE_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Adds dropped lines that arrive after an invocation's record to it, every
/// `AMEND_INTERVAL`, and forgets finished invocations' output after `FORGET_AFTER` without
/// a line; stops with the telemetry.
async fn amend_dropped_lines(outputs: Weak<Mutex<HashMap<String, Output>>>, store: Store) {
    let mut tick = tokio::time::interval(AMEND_INTERVAL);
    loop {
        tick.tick().await;
        let Some(outputs) = outputs.upgrade() else {
            return;
        };
        let Ok(mut outputs) = outputs.lock() else {
            return;
        };
        // One clock read per sweep: the map holds every invocation of the last
        // `FORGET_AFTER` (tens of thousands under load), and a read per entry was most of
        // the sweep's cost.
        let now = Instant::now();
        outputs.retain(|request_id, output| {
            if output.n_unsent > 0 && store.record_dropped_lines(request_id, output.n_unsent) {
                output.n_unsent = 0;
            }
            // An invocation that never finished (the server failed it) is forgotten later.
            let idle = now.saturating_duration_since(output.last_line);
            let done = (output.recorded && output.n_unsent == 0) || idle > UNFINISHED_FORGET_AFTER;
            !(done && idle > FORGET_AFTER)
        });
    }
}
