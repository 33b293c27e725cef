//! Prometheus metrics of functions, routes and custom EMF metrics.

use std::sync::atomic::AtomicU64;

use nimbus_core::{ExecutorStats, Outcome};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::logs::EmfSample;

type Labels = Vec<(String, String)>;
type FloatCounter = Counter<f64, AtomicU64>;

/// Lambda durations span a millisecond to 15 minutes.
const DURATION_BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// Outcome labels, in the order of `FunctionMetrics::by_outcome`.
const OUTCOMES: [&str; 6] = [
    "ok",
    "error",
    "timeout",
    "out-of-memory",
    "crashed",
    "throttled",
];

pub(crate) struct Metrics {
    registry: Registry,
    invocations: Family<Labels, Counter>,
    errors: Family<Labels, Counter>,
    throttles: Family<Labels, Counter>,
    timeouts: Family<Labels, Counter>,
    cold_starts: Family<Labels, Counter>,
    duration: Family<Labels, Histogram, fn() -> Histogram>,
    concurrent: Family<Labels, Gauge>,
    instances: Family<Labels, Gauge>,
    billed_gb_seconds: Family<Labels, FloatCounter>,
    http_requests: Family<Labels, Counter>,
    custom_sum: Family<Labels, FloatCounter>,
    custom_count: Family<Labels, Counter>,
    queue_messages: Family<Labels, Gauge>,
    queue_oldest_age: Family<Labels, Gauge<f64, AtomicU64>>,
    stream_records: Family<Labels, Counter>,
    stream_iterator_age: Family<Labels, Gauge<f64, AtomicU64>>,
    websocket_connections: Gauge,
    workflow_transitions: Family<Labels, Counter>,
    workflow_executions: Family<Labels, Counter>,
}

/// A queue's depth at scrape time.
pub(crate) struct QueueDepth {
    pub(crate) visible: u64,
    pub(crate) in_flight: u64,
    pub(crate) delayed: u64,
    pub(crate) oldest_age_seconds: f64,
}

/// A function's metric handles, made once so the invocation path only touches atomics.
#[derive(Clone)]
pub(crate) struct FunctionMetrics {
    by_outcome: [Counter; 6],
    errors: Counter,
    throttles: Counter,
    timeouts: Counter,
    cold_starts: Counter,
    duration: Histogram,
    pub(crate) concurrent: Gauge,
    billed_gb_seconds: FloatCounter,
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let mut registry = Registry::default();
        let metrics = Metrics {
            invocations: Family::default(),
            errors: Family::default(),
            throttles: Family::default(),
            timeouts: Family::default(),
            cold_starts: Family::default(),
            duration: Family::new_with_constructor(|| Histogram::new(DURATION_BUCKETS)),
            concurrent: Family::default(),
            instances: Family::default(),
            billed_gb_seconds: Family::default(),
            http_requests: Family::default(),
            custom_sum: Family::default(),
            custom_count: Family::default(),
            queue_messages: Family::default(),
            queue_oldest_age: Family::default(),
            stream_records: Family::default(),
            stream_iterator_age: Family::default(),
            websocket_connections: Gauge::default(),
            workflow_transitions: Family::default(),
            workflow_executions: Family::default(),
            registry: Registry::default(),
        };
        // Names follow nimbus_<thing>_<unit>; the `_total` suffix is added by the encoder.
        registry.register(
            "nimbus_invocations",
            "Invocations by function and outcome",
            metrics.invocations.clone(),
        );
        registry.register(
            "nimbus_workflow_transitions",
            "State transitions of workflow executions (states entered), by state machine: what Step Functions bills STANDARD workflows by",
            metrics.workflow_transitions.clone(),
        );
        registry.register(
            "nimbus_workflow_executions",
            "Workflow executions by state machine and status: started, then SUCCEEDED, FAILED, TIMED_OUT or ABORTED",
            metrics.workflow_executions.clone(),
        );
        registry.register(
            "nimbus_invocation_errors",
            "Invocations that did not end ok (error, timeout, out-of-memory, crashed)",
            metrics.errors.clone(),
        );
        registry.register(
            "nimbus_throttles",
            "Invocations refused at reservedConcurrency or at the unreserved concurrency left under --max-instances",
            metrics.throttles.clone(),
        );
        registry.register(
            "nimbus_timeouts",
            "Invocations stopped at their timeout",
            metrics.timeouts.clone(),
        );
        registry.register(
            "nimbus_cold_starts",
            "Invocations that started a new instance",
            metrics.cold_starts.clone(),
        );
        registry.register(
            "nimbus_invocation_duration_seconds",
            "Time in the function",
            metrics.duration.clone(),
        );
        registry.register(
            "nimbus_concurrent_executions",
            "Invocations in flight",
            metrics.concurrent.clone(),
        );
        registry.register(
            "nimbus_instances",
            "Live instances by state (warm: idle and ready; busy: invoking)",
            metrics.instances.clone(),
        );
        registry.register(
            "nimbus_billed_gb_seconds",
            "Billed duration times configured memory, as Lambda bills it",
            metrics.billed_gb_seconds.clone(),
        );
        registry.register(
            "nimbus_http_requests",
            "Gateway requests by route and status",
            metrics.http_requests.clone(),
        );
        registry.register(
            "nimbus_custom_metric_sum",
            "Sum of values of custom metrics logged in CloudWatch Embedded Metric Format",
            metrics.custom_sum.clone(),
        );
        registry.register(
            "nimbus_custom_metric_samples",
            "Values logged of custom EMF metrics",
            metrics.custom_count.clone(),
        );
        registry.register(
            "nimbus_queue_messages",
            "Messages per queue by state (visible, in_flight, delayed); a dead-letter queue's visible messages are its depth",
            metrics.queue_messages.clone(),
        );
        registry.register(
            "nimbus_queue_oldest_message_age_seconds",
            "Age of the oldest message per queue",
            metrics.queue_oldest_age.clone(),
        );
        registry.register(
            "nimbus_stream_records",
            "Stream records per function and stream by what became of them (invoked: in a batch that succeeded; filtered; failed: sent to onFailure or dropped)",
            metrics.stream_records.clone(),
        );
        registry.register(
            "nimbus_stream_iterator_age_seconds",
            "Age of the last record of a function's last batch from a stream when it was done (Lambda's IteratorAge): how far the consumer is behind",
            metrics.stream_iterator_age.clone(),
        );
        registry.register(
            "nimbus_websocket_connections",
            "Live WebSocket connections of the app's WebSocket API",
            metrics.websocket_connections.clone(),
        );
        Metrics {
            registry,
            ..metrics
        }
    }

    pub(crate) fn function(&self, function: &str) -> FunctionMetrics {
        let labels = vec![("function".to_owned(), function.to_owned())];
        let by_outcome = OUTCOMES.map(|outcome| {
            self.invocations.get_or_create_owned(&vec![
                ("function".to_owned(), function.to_owned()),
                ("outcome".to_owned(), outcome.to_owned()),
            ])
        });
        FunctionMetrics {
            by_outcome,
            errors: self.errors.get_or_create_owned(&labels),
            throttles: self.throttles.get_or_create_owned(&labels),
            timeouts: self.timeouts.get_or_create_owned(&labels),
            cold_starts: self.cold_starts.get_or_create_owned(&labels),
            duration: self.duration.get_or_create_owned(&labels),
            concurrent: self.concurrent.get_or_create_owned(&labels),
            billed_gb_seconds: self.billed_gb_seconds.get_or_create_owned(&labels),
        }
    }

    /// Counts `n` state transitions of an execution of `machine`.
    pub(crate) fn workflow_transitions(&self, machine: &str, n: u64) {
        self.workflow_transitions
            .get_or_create(&vec![("state_machine".to_owned(), machine.to_owned())])
            .inc_by(n);
    }

    /// Counts an execution of `machine` that started (`status` "started") or ended.
    pub(crate) fn workflow_execution(&self, machine: &str, status: &str) {
        self.workflow_executions
            .get_or_create(&vec![
                ("state_machine".to_owned(), machine.to_owned()),
                ("status".to_owned(), status.to_owned()),
            ])
            .inc();
    }

    /// Sets the number of live WebSocket connections.
    pub(crate) fn set_websocket_connections(&self, n_connections: usize) {
        self.websocket_connections
            .set(i64::try_from(n_connections).unwrap_or(i64::MAX));
    }

    pub(crate) fn http_request(&self, route: &str, status: u16) {
        self.http_requests
            .get_or_create(&vec![
                ("route".to_owned(), route.to_owned()),
                ("status".to_owned(), status.to_string()),
            ])
            .inc();
    }

    pub(crate) fn custom(&self, function: &str, sample: &EmfSample) {
        let mut labels = vec![
            ("function".to_owned(), function.to_owned()),
            ("namespace".to_owned(), sample.namespace.clone()),
            ("metric".to_owned(), sample.name.clone()),
            ("unit".to_owned(), sample.unit.clone()),
        ];
        labels.extend(
            sample
                .dimensions
                .iter()
                .map(|(k, v)| (sanitize_label(k), v.clone())),
        );
        self.custom_sum.get_or_create(&labels).inc_by(sample.value);
        self.custom_count.get_or_create(&labels).inc();
    }

    /// Sets a queue's depth gauges (refreshed at each scrape).
    pub(crate) fn set_queue(&self, queue: &str, depth: &QueueDepth) {
        for (state, n) in [
            ("visible", depth.visible),
            ("in_flight", depth.in_flight),
            ("delayed", depth.delayed),
        ] {
            self.queue_messages
                .get_or_create(&vec![
                    ("queue".to_owned(), queue.to_owned()),
                    ("state".to_owned(), state.to_owned()),
                ])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        self.queue_oldest_age
            .get_or_create(&vec![("queue".to_owned(), queue.to_owned())])
            .set(depth.oldest_age_seconds);
    }

    /// Counts a stream batch's records by what became of them (`invoked`, `filtered`,
    /// `failed`) and, for one that was done, sets the function's iterator age.
    pub(crate) fn stream_batch(
        &self,
        function: &str,
        stream: &str,
        outcome: &str,
        n_records: usize,
        iterator_age: Option<f64>,
    ) {
        let labels = vec![
            ("function".to_owned(), function.to_owned()),
            ("stream".to_owned(), stream.to_owned()),
        ];
        let mut with_outcome = labels.clone();
        with_outcome.push(("outcome".to_owned(), outcome.to_owned()));
        self.stream_records
            .get_or_create(&with_outcome)
            .inc_by(n_records as u64);
        if let Some(age) = iterator_age {
            self.stream_iterator_age.get_or_create(&labels).set(age);
        }
    }

    /// The text exposition, with instance gauges refreshed from the executors.
    pub(crate) fn render<'a>(
        &self,
        stats: impl Iterator<Item = (&'a str, ExecutorStats)>,
    ) -> String {
        for (function, stats) in stats {
            let gauge = |state: &str| {
                self.instances.get_or_create_owned(&vec![
                    ("function".to_owned(), function.to_owned()),
                    ("state".to_owned(), state.to_owned()),
                ])
            };
            gauge("warm").set((stats.n_instances.saturating_sub(stats.n_busy)) as i64);
            gauge("busy").set(stats.n_busy as i64);
        }
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }
}

impl FunctionMetrics {
    pub(crate) fn finished(
        &self,
        outcome: &Outcome,
        cold_start: bool,
        seconds: f64,
        gb_seconds: f64,
    ) {
        let idx = match outcome {
            Outcome::Ok(_) => 0,
            Outcome::Error(_) => 1,
            Outcome::Timeout(_) => 2,
            Outcome::OutOfMemory { .. } => 3,
            Outcome::Crashed(_) => 4,
        };
        self.by_outcome[idx].inc();
        if idx != 0 {
            self.errors.inc();
        }
        if idx == 2 {
            self.timeouts.inc();
        }
        if cold_start {
            self.cold_starts.inc();
        }
        self.duration.observe(seconds);
        self.billed_gb_seconds.inc_by(gb_seconds);
    }

    pub(crate) fn throttled(&self) {
        self.by_outcome[5].inc();
        self.throttles.inc();
    }
}

/// Prometheus label names are `[a-zA-Z_][a-zA-Z0-9_]*`; EMF dimension names are free text.
fn sanitize_label(name: &str) -> String {
    let mut label: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if label.is_empty() || label.starts_with(|c: char| c.is_ascii_digit()) {
        label.insert(0, '_');
    }
    // Dimension names must not collide with ours.
    if matches!(label.as_str(), "function" | "namespace" | "metric" | "unit") {
        label.insert_str(0, "dim_");
    }
    label
}
