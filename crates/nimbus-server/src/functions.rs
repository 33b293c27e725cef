//! The functions a server serves, each with its concurrency limit, and the one path every
//! invocation takes: limit, invoke, log.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use nimbus_core::{Executor, FunctionSpec, Invocation, InvocationReport, InvokeError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use crate::error::ApiError;
use crate::telemetry::trace::{self, TraceContext};
use crate::telemetry::{Finished, FunctionMetrics, Redactor, Telemetry, Trigger};
use crate::{ServedFunction, ServerConfig};

pub(crate) struct Functions {
    pub(crate) list: Vec<Function>,
    by_name: HashMap<String, usize>,
    /// The stage, part of Lambda's `service-stage-function` names.
    pub(crate) stage: String,
    pub(crate) telemetry: Arc<Telemetry>,
    /// Dropped with the last reference to these functions (the generation, its
    /// consumers, every detached invocation), which tells a replaced generation that
    /// nothing can invoke its executors any more.
    _released: oneshot::Sender<()>,
}

pub(crate) struct Function {
    pub(crate) spec: FunctionSpec,
    /// The function's own control-API token.
    pub(crate) token: String,
    /// Its AWS access key id (derived from the token once, not per request); the token is
    /// the secret.
    pub(crate) access_key_id: String,
    pub(crate) executor: Arc<dyn Executor>,
    redactor: Option<Arc<Redactor>>,
    /// Its `reservedConcurrency`, or the app's unreserved concurrency it shares with every
    /// function without a reservation (as on Lambda).
    limiter: Arc<Limiter>,
    metrics: FunctionMetrics,
    telemetry: Arc<Telemetry>,
}

/// A concurrency limit as a semaphore with a short, bounded wait in front of it.
struct Limiter {
    kind: LimitKind,
    permits: Arc<Semaphore>,
    n_waiting: AtomicUsize,
    max_waiting: usize,
    wait: Duration,
}

/// Which limit a `Limiter` enforces, for the throttle's log line.
#[derive(Clone, Copy)]
enum LimitKind {
    Reserved(u32),
    Unreserved(usize),
}

impl Functions {
    /// The functions with their limits: each `reservedConcurrency` is set aside from the
    /// app's `cfg.max_concurrency`, and the functions without one share the rest, Lambda's
    /// unreserved concurrency. Fails when the reservations leave nothing for a function
    /// that has none.
    pub(crate) fn new(
        served: Vec<ServedFunction>,
        cfg: &ServerConfig,
        telemetry: Arc<Telemetry>,
        released: oneshot::Sender<()>,
    ) -> Result<Functions, String> {
        let n_reserved: usize = served
            .iter()
            .filter_map(|f| f.spec.reserved_concurrency)
            .map(|n| n as usize)
            .sum();
        let n_unreserved = cfg.max_concurrency.saturating_sub(n_reserved);
        if let Some(unreserved) = served
            .iter()
            .find(|f| f.spec.reserved_concurrency.is_none())
            && n_unreserved == 0
        {
            return Err(format!(
                "the functions' reservedConcurrency adds up to {n_reserved}, which leaves no concurrency for {} (it has none reserved) under the limit of {} concurrent invocations (--max-instances)",
                unreserved.spec.name, cfg.max_concurrency
            ));
        }
        let limiter = |kind: LimitKind, n_permits: usize| {
            Arc::new(Limiter {
                kind,
                permits: Arc::new(Semaphore::new(n_permits)),
                n_waiting: AtomicUsize::new(0),
                max_waiting: cfg.max_queued,
                wait: cfg.queue_wait,
            })
        };
        let unreserved = limiter(LimitKind::Unreserved(n_unreserved), n_unreserved);
        let list: Vec<Function> = served
            .into_iter()
            .map(|f| Function {
                limiter: match f.spec.reserved_concurrency {
                    Some(n) => limiter(LimitKind::Reserved(n), n as usize),
                    None => unreserved.clone(),
                },
                metrics: telemetry.metrics.function(&f.spec.name),
                telemetry: telemetry.clone(),
                spec: f.spec,
                executor: f.executor,
                access_key_id: crate::aws::aws_access_key_id(&f.token),
                token: f.token,
                redactor: f.redactor,
            })
            .collect();
        let by_name = list
            .iter()
            .enumerate()
            .map(|(idx, f)| (f.spec.name.clone(), idx))
            .collect();
        Ok(Functions {
            list,
            by_name,
            stage: cfg.stage.clone(),
            telemetry,
            _released: released,
        })
    }

    /// Invokes function `idx` in a task of its own, so a client that goes away mid-request
    /// neither cancels the invocation nor kills the instance serving it (on Lambda too an
    /// invocation runs to its end); a panic in it becomes a platform error.
    pub(crate) async fn invoke_detached(
        self: &Arc<Self>,
        idx: usize,
        req: InvokeRequest,
    ) -> Result<InvocationReport, ApiError> {
        let functions = self.clone();
        match tokio::spawn(async move { functions.list[idx].invoke(req).await }).await {
            Ok(res) => res,
            Err(e) => Err(ApiError::platform(format!(
                "an invocation task failed: {e}"
            ))),
        }
    }

    /// The index of the function called `name`.
    pub(crate) fn index(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// The function whose control-API token this is.
    pub(crate) fn by_token(&self, token: &str) -> Option<&Function> {
        self.list
            .iter()
            .find(|f| crate::admin::constant_time_eq(f.token.as_bytes(), token.as_bytes()))
    }
}

/// One invocation to make, before the function's limit and executor see it.
pub(crate) struct InvokeRequest {
    pub(crate) request_id: String,
    pub(crate) payload: Vec<u8>,
    /// The trace, with the caller's span as parent.
    pub(crate) trace: TraceContext,
    pub(crate) trigger: Trigger,
}

impl Function {
    /// Invokes the function within its concurrency limit and records it. Throttling and
    /// platform failures are errors; a failing function is an `Outcome` in the report.
    pub(crate) async fn invoke(&self, req: InvokeRequest) -> Result<InvocationReport, ApiError> {
        let telemetry = &*self.telemetry;
        let Some(_permit) = self.limiter.acquire().await else {
            let limit = match self.limiter.kind {
                LimitKind::Reserved(n) => format!("reservedConcurrency {n}"),
                LimitKind::Unreserved(n) => format!("the app's unreserved concurrency {n}"),
            };
            tracing::info!(function = %self.spec.name, request_id = %req.request_id, "throttled: {limit} reached");
            telemetry.throttled(
                &self.spec,
                &self.metrics,
                &req.request_id,
                req.trigger,
                &req.trace,
            );
            return Err(ApiError::throttled());
        };
        let span_id = trace::new_span_id();
        let invocation = Invocation {
            request_id: req.request_id,
            payload: req.payload,
            trace_id: req.trace.xray_header(&span_id),
        };
        let request_id = invocation.request_id.clone();
        telemetry.started(&self.spec.name, &request_id);
        let start = SystemTime::now();
        self.metrics.concurrent.inc();
        let res = self.executor.invoke(invocation).await;
        self.metrics.concurrent.dec();
        let report = match res {
            Ok(report) => report,
            Err(InvokeError::ShuttingDown { .. }) => {
                return Err(ApiError::client(
                    http::StatusCode::SERVICE_UNAVAILABLE,
                    "Service Unavailable: shutting down",
                ));
            }
            Err(e) => {
                return Err(ApiError::platform(format!(
                    "invoking {}: {}",
                    self.spec.name,
                    error_chain(&e)
                )));
            }
        };
        telemetry.finished(
            &self.spec,
            &self.metrics,
            Finished {
                request_id: &request_id,
                trigger: req.trigger,
                start,
                trace: &req.trace,
                span_id: &span_id,
                report: &report,
                redactor: self.redactor.as_deref(),
            },
        );
        let outcome = &report.outcome;
        if outcome.fault().is_some() {
            tracing::warn!(
                function = %self.spec.name,
                request_id = %request_id,
                outcome = outcome.label(),
                "{}",
                String::from_utf8_lossy(&outcome.payload(&request_id))
            );
        }
        Ok(report)
    }
}

impl Limiter {
    async fn acquire(&self) -> Option<OwnedSemaphorePermit> {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Some(permit);
        }
        // The queue in front of a busy function is bounded in length and in time, so a
        // burst is smoothed but never piles up unboundedly (Lambda itself throttles at once).
        if self.n_waiting.fetch_add(1, Ordering::AcqRel) >= self.max_waiting {
            self.n_waiting.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let res = tokio::time::timeout(self.wait, self.permits.clone().acquire_owned()).await;
        self.n_waiting.fetch_sub(1, Ordering::AcqRel);
        res.ok().and_then(Result::ok)
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
