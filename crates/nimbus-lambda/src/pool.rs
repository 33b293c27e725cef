//! The instance pool of one function: scale from zero, warm reuse, provisioned
//! instances, idle scale-down, deadlines and memory limits.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

use nimbus_core::prewarm::{History, IdleInstance, WarmCounts, WarmReason};
use nimbus_core::{
    BoxFuture, Executor, ExecutorStats, FunctionSpec, Invocation, InvocationReport, InvokeError,
    Outcome, Runtime,
};

use crate::LambdaConfig;
use crate::code::{Code, NODE_BOOTSTRAP_FILE, PYTHON_BOOTSTRAP_FILE};
use crate::instance::{Exit, Instance, InstanceState, Spare, StartConfig, Started};
use crate::runtime_api::{Dispatch, Reply};
use crate::spawn::{ProcessSpec, StdinMode};

/// The executor of one process-runtime function.
pub struct LambdaExecutor {
    pool: Arc<Pool>,
    reaper: tokio::task::JoinHandle<()>,
}

struct Pool {
    spec: FunctionSpec,
    code: Code,
    cfg: LambdaConfig,
    /// `service-stage-function`, the name the function has on Lambda.
    lambda_name: String,
    function_arn: String,
    /// Idle slots, most recently used last: reuse takes from the end, so the least
    /// recently used instances age out first and the pool shrinks under falling load.
    /// An instance has one slot, or `concurrency` when its runtime runs several
    /// invocations at once; it is idle when all of its slots are here.
    idle: Mutex<Vec<Slot>>,
    /// Every live instance, idle or busy, so shutdown can stop them all.
    all: Mutex<HashMap<u64, Arc<InstanceState>>>,
    /// Instances being started on demand, counted against `max_starts` and
    /// `reservedConcurrency`.
    n_starting: AtomicUsize,
    /// Invocations waiting for a slot: with `concurrency` above 1, a start is begun only
    /// while the starts under way offer fewer slots than this.
    n_waiting: AtomicUsize,
    /// How many on-demand starts may run at once.
    max_starts: usize,
    shutting_down: AtomicBool,
    /// Signalled for invocations waiting in `acquire` when an instance goes back to `idle`
    /// (one waiter), and when an instance is forgotten or a start ends (all: one of them
    /// may start an instance now).
    freed: tokio::sync::Notify,
    /// The idle-time history the keep-alive policy (`LambdaConfig::keep_alive`) reads,
    /// on a clock counted from `origin`.
    history: Mutex<History>,
    origin: Instant,
    /// Signalled when an invocation ends and the policy now stops the instance and plans a
    /// pre-warm: the reaper looks at once.
    replan: tokio::sync::Notify,
    /// About how long a start takes here (microseconds): a recent high, decaying.
    init_estimate_us: AtomicU64,
    /// Memory of this pool's instances warm on a prediction, counted against the
    /// pre-warm budget.
    predicted_mb: AtomicU64,
}

/// The platform-wide bound on process instances, alive plus starting, over every function
/// of every app in the process (`--max-instances`, like Lambda's account concurrency).
/// The pools share it through `LambdaConfig`. A pool that may not start an instance for
/// want of room stops the least recently used idle instance of another function first,
/// as Lambda recycles idle sandboxes; with none idle, its invocation waits for one to end.
pub struct InstanceLimit {
    max: usize,
    pools: Mutex<Vec<Weak<Pool>>>,
    /// Held while counting and reserving a start, so two pools never both take the last
    /// room.
    reserving: Mutex<()>,
    /// Signalled when an instance of any pool stops or a start ends.
    freed: tokio::sync::Notify,
    /// Pre-started runtime processes by shape (`Pool::spare_shape`): started only while
    /// they fit under the limit beside the instances, and the first stopped when a start
    /// needs their room, so they never hold an invocation back.
    spares: Mutex<HashMap<String, Spares>>,
    /// Memory the instances warm on a prediction (pre-warmed, or kept past the fixed
    /// keep-alive) may hold over every pool (`--prewarm-budget`).
    prewarm_budget_mb: AtomicU64,
}

/// The pre-started processes of one shape, and how many are being started.
#[derive(Default)]
struct Spares {
    ready: Vec<Spare>,
    n_starting: usize,
    /// Signalled when a start ends.
    ended: Arc<tokio::sync::Notify>,
}

/// Pre-started processes kept ready per shape: a cold start takes one and another starts
/// behind it.
const SPARES_PER_SHAPE: usize = 1;

impl InstanceLimit {
    /// A limit of `max` instances (at least one).
    pub fn new(max: usize) -> Arc<InstanceLimit> {
        Arc::new(InstanceLimit {
            max: max.max(1),
            pools: Mutex::new(Vec::new()),
            reserving: Mutex::new(()),
            freed: tokio::sync::Notify::new(),
            spares: Mutex::new(HashMap::new()),
            prewarm_budget_mb: AtomicU64::new(u64::MAX),
        })
    }

    /// Bounds the memory of instances warm on a prediction (`--prewarm-budget`); past
    /// it, instances get the fixed keep-alive and nothing is pre-warmed.
    pub fn set_prewarm_budget_mb(&self, budget_mb: u64) {
        self.prewarm_budget_mb.store(budget_mb, Ordering::Release);
    }

    /// The memory of instances warm on a prediction in pools other than `except`.
    fn predicted_mb_except(&self, except: &Pool) -> u64 {
        let pools: Vec<Arc<Pool>> = match self.pools.lock() {
            Ok(pools) => pools.iter().filter_map(Weak::upgrade).collect(),
            Err(_) => return 0,
        };
        pools
            .iter()
            .filter(|pool| !std::ptr::eq(Arc::as_ptr(pool), except))
            .map(|pool| pool.predicted_mb.load(Ordering::Acquire))
            .sum()
    }

    fn prewarm_budget_mb(&self) -> u64 {
        self.prewarm_budget_mb.load(Ordering::Acquire)
    }

    fn n_spares(&self) -> usize {
        self.spares
            .lock()
            .map(|spares| spares.values().map(|s| s.ready.len() + s.n_starting).sum())
            .unwrap_or(0)
    }

    /// Counts a spare of `shape` as starting if one is wanted and fits; whether it does.
    fn begin_spare(&self, shape: &str) -> bool {
        let Ok(_reserving) = self.reserving.lock() else {
            return false;
        };
        if self.n_instances() + self.n_spares() >= self.max {
            return false;
        }
        let Ok(mut spares) = self.spares.lock() else {
            return false;
        };
        let entry = spares.entry(shape.to_owned()).or_default();
        entry.ready.retain(Spare::is_alive);
        if entry.ready.len() + entry.n_starting >= SPARES_PER_SHAPE {
            return false;
        }
        entry.n_starting += 1;
        true
    }

    /// Ends a spare's start: it joins the ready ones, or (`None`) failed.
    fn end_spare(&self, shape: &str, spare: Option<Spare>) {
        if let Ok(mut spares) = self.spares.lock() {
            let entry = spares.entry(shape.to_owned()).or_default();
            entry.n_starting = entry.n_starting.saturating_sub(1);
            entry.ready.extend(spare);
            entry.ended.notify_waiters();
        }
        self.freed.notify_waiters();
    }

    /// A live pre-started process of `shape`: a ready one, or the one being started (it
    /// is further along than a process started now would be).
    async fn take_spare(&self, shape: &str) -> Option<Spare> {
        for _ in 0..2 {
            let ended = {
                let mut spares = self.spares.lock().ok()?;
                let entry = spares.get_mut(shape)?;
                while let Some(spare) = entry.ready.pop() {
                    if spare.is_alive() {
                        return Some(spare);
                    }
                }
                if entry.n_starting == 0 {
                    return None;
                }
                entry.ended.clone()
            };
            let ended = ended.notified();
            // Bounded, in case the start ends between the check and the wait.
            let _ = tokio::time::timeout(Duration::from_secs(2), ended).await;
        }
        None
    }

    /// Stops the ready spares of `shape` (its last function shut down), or one of any
    /// shape to make room; whether any was stopped.
    fn drop_spares(&self, shape: Option<&str>) -> bool {
        let Ok(mut spares) = self.spares.lock() else {
            return false;
        };
        let dropped: Vec<Spare> = match shape {
            Some(shape) => spares
                .get_mut(shape)
                .map(|entry| entry.ready.drain(..).collect())
                .unwrap_or_default(),
            None => spares
                .values_mut()
                .find_map(|entry| entry.ready.pop())
                .into_iter()
                .collect(),
        };
        drop(spares);
        !dropped.is_empty()
    }

    /// The limit.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Instances alive or starting, over every pool.
    pub fn n_instances(&self) -> usize {
        let pools: Vec<Arc<Pool>> = match self.pools.lock() {
            Ok(mut pools) => {
                pools.retain(|pool| pool.strong_count() > 0);
                pools.iter().filter_map(Weak::upgrade).collect()
            }
            Err(_) => return 0,
        };
        pools
            .iter()
            .map(|pool| pool.n_alive() + pool.n_starting.load(Ordering::Acquire))
            .sum()
    }

    fn register(&self, pool: &Arc<Pool>) {
        if let Ok(mut pools) = self.pools.lock() {
            pools.push(Arc::downgrade(pool));
        }
    }

    /// Reserves room for one more instance of `pool` (counted in its `n_starting` until
    /// the start ends) if `pool_allows` it, stopping another function's least recently
    /// used idle instance if that makes room; `false` when there is none. Every
    /// reservation holds the one lock, so no count changes under it from another start.
    fn reserve(&self, pool: &Pool, pool_allows: impl Fn(&Pool) -> bool) -> bool {
        let Ok(_reserving) = self.reserving.lock() else {
            return false;
        };
        if !pool_allows(pool) {
            return false;
        }
        if self.n_instances() >= self.max && !self.evict_idle(pool) {
            return false;
        }
        if self.n_instances() >= self.max {
            return false;
        }
        pool.n_starting.fetch_add(1, Ordering::AcqRel);
        // A spare that no longer fits beside the instances makes room (one being started
        // stays: the start may take it).
        if self.n_instances() + self.n_spares() > self.max {
            self.drop_spares(None);
        }
        true
    }

    /// Stops the least recently used idle instance of a pool other than `except` (keeping
    /// provisioned ones); whether one was stopped.
    fn evict_idle(&self, except: &Pool) -> bool {
        let pools: Vec<Arc<Pool>> = match self.pools.lock() {
            Ok(pools) => pools.iter().filter_map(Weak::upgrade).collect(),
            Err(_) => return false,
        };
        let oldest = pools
            .iter()
            .filter(|pool| !std::ptr::eq(Arc::as_ptr(pool), except))
            .filter(|pool| pool.n_alive() > pool.spec.provisioned_concurrency as usize)
            .filter_map(|pool| {
                let idle = pool.idle.lock().ok()?;
                let instance = fully_idle(&idle, pool.concurrency()).into_iter().next()?;
                Some((instance.last_used, instance.id, pool))
            })
            .min_by_key(|(last_used, _, _)| *last_used);
        let Some((_, id, pool)) = oldest else {
            return false;
        };
        match pool.take_idle_instance(id) {
            Some(instance) => {
                tracing::debug!(function = %pool.spec.name, instance = id, "stopping an idle instance to make room under --max-instances");
                pool.forget(instance);
                true
            }
            None => false,
        }
    }
}

/// One of an instance's slots: the right to run one invocation on it. An instance has
/// as many as its function's `concurrency` (1 unless the manifest opts in).
struct Slot {
    instance: Arc<Instance>,
    last_used: Instant,
    /// The init time of an instance started on demand, on the slot of its first
    /// invocation, which reports the cold start.
    fresh: Option<Duration>,
    /// A pre-warmed instance nothing has used yet: kept until then, and why.
    held: Option<(Instant, WarmReason)>,
}

impl Slot {
    fn acquired(mut self) -> Acquired {
        match self.fresh.take() {
            Some(init) => Acquired::Cold(self, init),
            None => Acquired::Warm(self),
        }
    }
}

/// Whether an invocation looking for an idle slot is new or already counted waiting.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Waiter {
    New,
    Waiting,
}

/// The result of taking a slot for an invocation.
enum Acquired {
    Warm(Slot),
    Cold(Slot, Duration),
    /// Start-up failed; this outcome goes back to the invoker.
    Failed(Outcome),
}

/// How long the instance of a function only schedules invoke stays after a run under the
/// hybrid policy: the scheduler pre-warms one before each fire.
const SCHEDULED_KEEP_ALIVE: Duration = Duration::from_secs(10);

/// The start time `lead` assumes before the pool has seen a start.
const INITIAL_INIT_ESTIMATE: Duration = Duration::from_millis(200);

/// An invocation in flight, for the keep-alive policy's history: its end is recorded
/// when this drops.
struct InFlight<'a>(&'a Pool);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let pool = self.0;
        // The reaper is woken only when the end changes its plan at once (the instance stops
        // now and one is pre-warmed later); otherwise its periodic look is enough, and a
        // busy function does not wake it per invocation.
        let replan = match pool.history.lock() {
            Ok(mut history) => {
                history.on_end(pool.clock(Instant::now()));
                history
                    .next_prewarm(&pool.cfg.keep_alive, pool.lead())
                    .is_some()
            }
            Err(_) => false,
        };
        if replan {
            pool.replan.notify_one();
        }
    }
}

/// On-demand starts one function may run at once: two per core. A burst from zero on
/// 2 cores then starts 4 processes, serves the queue from the first ready ones and starts
/// more as the earlier ones finish, instead of starting one process per request at once,
/// all sharing the cores and all ready late.
fn max_concurrent_starts() -> usize {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get() * 2)
        .max(2)
}

/// How many times an invocation is handed to a fresh instance when the one it was given
/// died before picking it up (for example, right after reporting an uncaught error).
const MAX_DELIVERY_ATTEMPTS: usize = 3;

impl LambdaExecutor {
    /// Creates the pool and starts its `provisionedConcurrency` instances.
    pub async fn start(
        spec: FunctionSpec,
        code: Code,
        cfg: LambdaConfig,
    ) -> Result<LambdaExecutor, InvokeError> {
        if let Code::TypeScript(source) = &code {
            return Err(InvokeError::Platform {
                function: spec.name.clone(),
                source: Box::new(std::io::Error::other(format!(
                    "{} is not compiled: compile_typescript must run first",
                    source.display()
                ))),
            });
        }
        if let Code::Worker(main) = &code {
            return Err(InvokeError::Platform {
                function: spec.name.clone(),
                source: Box::new(std::io::Error::other(format!(
                    "{} is a worker: WorkersExecutor serves it",
                    main.display()
                ))),
            });
        }
        let pool = Arc::new(Pool::new(spec, code, cfg, max_concurrent_starts()));
        pool.cfg.instance_limit.register(&pool);
        pool.replenish_provisioned().await?;
        pool.clone().start_spare();
        let reaper = tokio::spawn(reap(Arc::downgrade(&pool)));
        Ok(LambdaExecutor { pool, reaper })
    }
}

/// Starts one instance of a function as a cold start would, which loads its handler (the
/// module imports, and the export exists and is a function: the shipped bootstraps report
/// `Runtime.HandlerNotFound` or the import's own error at init), then stops it. The
/// instance runs in the sandbox functions run in, within `cfg.init_timeout`. `Err` holds
/// the runtime's message. The module's top-level code runs, side effects and all.
pub async fn check_handler(
    spec: FunctionSpec,
    code: Code,
    cfg: LambdaConfig,
) -> Result<(), String> {
    if let Code::Worker(main) = &code {
        return crate::workers::check_worker(spec, main.clone(), cfg).await;
    }
    let pool = Pool::new(spec, code, cfg, 1);
    let res = match pool.start_instance("on-demand").await {
        Ok(Started::Ready(instance, _)) => {
            pool.forget(Arc::new(instance));
            Ok(())
        }
        Ok(Started::InitFailed(body)) => Err(init_error_message(&body)),
        Ok(Started::Died(detail)) => Err(detail),
        Err(e) => Err(e.to_string()),
    };
    pool.shutdown().await;
    res
}

/// `errorType: errorMessage` of an init error body, or the body as text.
pub(crate) fn init_error_message(body: &[u8]) -> String {
    let text = |value: &serde_json::Value, key: &str| {
        value.get(key).and_then(|v| v.as_str()).map(str::to_owned)
    };
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(value) => match (text(&value, "errorType"), text(&value, "errorMessage")) {
            (Some(kind), Some(message)) => format!("{kind}: {message}"),
            (None, Some(message)) => message,
            _ => String::from_utf8_lossy(body).into_owned(),
        },
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    }
}

impl Executor for LambdaExecutor {
    fn invoke(
        &self,
        invocation: Invocation,
    ) -> BoxFuture<'_, Result<InvocationReport, InvokeError>> {
        Box::pin(self.pool.clone().invoke(invocation))
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.reaper.abort();
            self.pool.shutdown().await;
        })
    }

    fn stats(&self) -> ExecutorStats {
        let Ok(all) = self.pool.all.lock() else {
            return ExecutorStats::default();
        };
        ExecutorStats {
            n_instances: all.len(),
            n_busy: all.values().filter(|state| state.is_busy()).count(),
        }
    }

    fn warm_reasons(&self) -> WarmCounts {
        self.pool.warm_reasons()
    }

    fn warm_lead(&self) -> Duration {
        self.pool.lead()
    }

    fn prewarm(&self, reason: WarmReason, hold: Duration) {
        self.pool
            .clone()
            .hold_or_prewarm(reason, Instant::now() + hold);
    }
}

impl Drop for LambdaExecutor {
    fn drop(&mut self) {
        self.reaper.abort();
    }
}

impl Pool {
    fn new(spec: FunctionSpec, code: Code, cfg: LambdaConfig, max_starts: usize) -> Pool {
        let lambda_name = format!("{}-{}-{}", cfg.service, cfg.stage, spec.name);
        let function_arn = format!(
            "arn:aws:lambda:{}:123456789012:function:{lambda_name}",
            cfg.region
        );
        let history = History::for_policy(&cfg.keep_alive);
        Pool {
            spec,
            code,
            cfg,
            lambda_name,
            function_arn,
            idle: Mutex::new(Vec::new()),
            all: Mutex::new(HashMap::new()),
            n_starting: AtomicUsize::new(0),
            n_waiting: AtomicUsize::new(0),
            max_starts,
            shutting_down: AtomicBool::new(false),
            freed: tokio::sync::Notify::new(),
            history: Mutex::new(history),
            origin: Instant::now(),
            replan: tokio::sync::Notify::new(),
            init_estimate_us: AtomicU64::new(INITIAL_INIT_ESTIMATE.as_micros() as u64),
            predicted_mb: AtomicU64::new(0),
        }
    }

    /// Whether only schedules invoke this function (no HTTP route, no other event) and the
    /// keep-alive policy predicts: then the scheduler pre-warms it before each fire and
    /// its instance need not stay long after a run.
    fn schedule_only(&self) -> bool {
        matches!(self.cfg.keep_alive, nimbus_core::prewarm::Policy::Hybrid(_))
            && self.spec.http_routes.is_empty()
            && !self.spec.events.is_empty()
            && self.spec.events.iter().all(
                |event| matches!(event, nimbus_core::events::EventSource::Schedule(s) if s.enabled),
            )
    }

    /// `at` on the policy's clock.
    fn clock(&self, at: Instant) -> Duration {
        at.saturating_duration_since(self.origin)
    }

    /// How long before a predicted invocation an instance is started: twice the recent
    /// start time, within bounds, so a slow start is still ready.
    fn lead(&self) -> Duration {
        (Duration::from_micros(self.init_estimate_us.load(Ordering::Acquire)) * 2)
            .clamp(Duration::from_millis(100), Duration::from_secs(5))
    }

    /// Counts a start's time into the estimate `lead` reads: a longer start sets it, a
    /// shorter one pulls it down slowly.
    fn note_init(&self, init: Duration) {
        let init_us = init.as_micros() as u64;
        let _ =
            self.init_estimate_us
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |estimate| {
                    Some(init_us.max(estimate - estimate / 8 + init_us / 8))
                });
    }

    async fn invoke(
        self: Arc<Self>,
        invocation: Invocation,
    ) -> Result<InvocationReport, InvokeError> {
        if let Ok(mut history) = self.history.lock() {
            history.on_start(self.clock(Instant::now()));
        }
        // Ends the invocation in the history however it ends, cancelled included.
        let _in_flight = InFlight(&self);
        self.clone().invoke_attempts(invocation).await
    }

    async fn invoke_attempts(
        self: Arc<Self>,
        invocation: Invocation,
    ) -> Result<InvocationReport, InvokeError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (slot, cold_start, init_duration) = match self.clone().acquire().await? {
                Acquired::Warm(slot) => (slot, false, None),
                Acquired::Cold(slot, init) => (slot, true, Some(init)),
                Acquired::Failed(outcome) => {
                    return Ok(InvocationReport {
                        outcome,
                        cold_start: true,
                        prestarted: false,
                        init_duration: None,
                        duration: Duration::ZERO,
                        max_memory_mb: 0,
                    });
                }
            };
            let delivered = Arc::new(AtomicBool::new(false));
            let started = Instant::now();
            let (outcome, keep) = self
                .run_on(&slot.instance, invocation.clone(), delivered.clone())
                .await;
            let undelivered =
                matches!(outcome, Outcome::Crashed(_)) && !delivered.load(Ordering::Acquire);
            let max_memory_mb =
                (slot.instance.state.max_rss_kib.load(Ordering::Acquire) / 1024) as u32;
            let prestarted = cold_start && slot.instance.prestarted;
            self.release(slot, keep);
            if undelivered && attempt < MAX_DELIVERY_ATTEMPTS {
                continue;
            }
            return Ok(InvocationReport {
                outcome,
                cold_start,
                prestarted,
                init_duration,
                duration: started.elapsed(),
                max_memory_mb,
            });
        }
    }

    /// Hands `invocation` to `instance` and waits for its reply, its death or the
    /// deadline. The bool says whether the instance can serve again.
    async fn run_on(
        &self,
        instance: &Instance,
        invocation: Invocation,
        delivered: Arc<AtomicBool>,
    ) -> (Outcome, bool) {
        instance.state.in_flight.fetch_add(1, Ordering::AcqRel);
        let ran = self.run_dispatched(instance, invocation, delivered).await;
        instance.state.in_flight.fetch_sub(1, Ordering::AcqRel);
        ran
    }

    async fn run_dispatched(
        &self,
        instance: &Instance,
        invocation: Invocation,
        delivered: Arc<AtomicBool>,
    ) -> (Outcome, bool) {
        let timeout = self.spec.timeout;
        let (reply_tx, reply_rx) = crate::instance::reply_channel();
        let dispatch = Dispatch {
            invocation,
            deadline: SystemTime::now() + timeout,
            reply: reply_tx,
            delivered,
        };
        if instance.next_tx.send(dispatch).await.is_err() {
            return (self.exit_outcome(Exit::Stopped), false);
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::select! {
            biased;
            reply = reply_rx => match reply {
                Ok(Reply::Response(body)) => (Outcome::Ok(body.to_vec()), true),
                Ok(Reply::Error(body)) => (Outcome::Error(body.to_vec()), true),
                Err(_) => (self.exit_outcome(instance.exited().await), false),
            },
            exit = instance.exited() => (self.exit_outcome(exit), false),
            () = deadline => {
                // Lambda stops the sandbox of a timed-out invocation; so do we.
                instance.state.stop();
                (Outcome::Timeout(timeout), false)
            }
        }
    }

    fn exit_outcome(&self, exit: Exit) -> Outcome {
        let detail = match exit {
            Exit::OutOfMemory => {
                return Outcome::OutOfMemory {
                    limit_mb: self.spec.memory_mb,
                };
            }
            Exit::Stopped => "instance stopped".to_owned(),
            Exit::Exited(detail) => detail,
        };
        // The process ran several invocations at once: its end fails all of them, and
        // each says so (COMPAT.md, `concurrency`).
        match self.concurrency() {
            1 => Outcome::Crashed(detail),
            n => Outcome::Crashed(format!(
                "{detail} (the process runs up to {n} invocations at once; every invocation in flight in it failed)"
            )),
        }
    }

    /// Invocations one instance runs at once.
    fn concurrency(&self) -> usize {
        (self.spec.concurrency as usize).max(1)
    }

    async fn acquire(self: Arc<Self>) -> Result<Acquired, InvokeError> {
        if self.shutting_down.load(Ordering::Acquire) {
            return Err(InvokeError::ShuttingDown {
                function: self.spec.name.clone(),
            });
        }
        if let Some(slot) = self.take_idle(Waiter::New) {
            return Ok(slot.acquired());
        }
        let acquired = self.clone().acquire_waiting().await;
        if !matches!(acquired, Ok(Acquired::Warm(_) | Acquired::Cold(..))) {
            // It leaves without a slot: it no longer counts as waiting for one.
            if let Ok(_idle) = self.idle.lock() {
                self.n_waiting.fetch_sub(1, Ordering::AcqRel);
            }
        }
        acquired
    }

    /// Waits for a slot, counted in `n_waiting` until it has one. No idle slot: start an
    /// instance, and serve the invocation on whichever slot is free first, one of the new
    /// instance's or one another invocation frees meanwhile. A handler that runs for a
    /// millisecond frees its slot long before a process starts, so a burst is served by
    /// the warm instances at once instead of each request waiting for its own cold start.
    /// A new instance's slots join the idle ones, its first marked fresh: whoever takes
    /// it reports the cold start. When no start may begin (`max_starts` under way,
    /// `reservedConcurrency` reached by instances alive plus starting, or the starts under
    /// way already offer a slot to every invocation waiting), the invocation waits for a
    /// freed slot or a start slot.
    async fn acquire_waiting(self: Arc<Self>) -> Result<Acquired, InvokeError> {
        let mut starting: Option<tokio::sync::oneshot::Receiver<_>> = None;
        loop {
            let freed = self.freed.notified();
            // Room under `--max-instances` may come from another function's instance.
            let room = self.cfg.instance_limit.freed.notified();
            if let Some(slot) = self.take_idle(Waiter::Waiting) {
                return Ok(slot.acquired());
            }
            if self.shutting_down.load(Ordering::Acquire) {
                return Err(InvokeError::ShuttingDown {
                    function: self.spec.name.clone(),
                });
            }
            if starting.is_none() && self.reserve_start() {
                starting = Some(self.clone().spawn_start());
            }
            let waiting_for_start = starting.is_some();
            let started = async {
                match starting.as_mut() {
                    Some(started_rx) => started_rx.await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                started = started => {
                    starting = None;
                    let Ok(started) = started else {
                        return Ok(Acquired::Failed(Outcome::Crashed(
                            "the instance start was abandoned".to_owned(),
                        )));
                    };
                    match started? {
                        // Its slots are idle now; the loop takes one unless another
                        // invocation was quicker.
                        None => {}
                        // As on Lambda, an init error is the invocation's error.
                        Some(outcome) => return Ok(Acquired::Failed(outcome)),
                    }
                }
                () = freed => {}
                () = room, if !waiting_for_start => {}
            }
        }
    }

    /// Reserves a start if one more instance may start: at most `max_starts` at once
    /// (processes starting together share the cores, so past a few per core each start
    /// only delays the others), under `reservedConcurrency` no more slots alive plus
    /// starting than the limit, no more starts than the invocations waiting need (idle
    /// slots and the slots of the starts under way count), and room under the platform's
    /// `InstanceLimit`.
    fn reserve_start(&self) -> bool {
        self.cfg.instance_limit.reserve(self, |pool| {
            let n_starting = pool.n_starting.load(Ordering::Acquire);
            let concurrency = pool.concurrency();
            let under_reserved = pool
                .spec
                .reserved_concurrency
                .is_none_or(|limit| (pool.n_alive() + n_starting) * concurrency < limit as usize);
            // Read under the idle lock, which every change of both is made under.
            let needed = match pool.idle.lock() {
                Ok(idle) => {
                    idle.len() + n_starting * concurrency < pool.n_waiting.load(Ordering::Acquire)
                }
                Err(_) => false,
            };
            n_starting < pool.max_starts && under_reserved && needed
        })
    }

    /// Starts an on-demand instance (reserved with `reserve_start`) in a task of its own;
    /// once it is ready its slots join the idle ones (before the start stops counting),
    /// and the returned receiver hears `None`, or the failed start's outcome.
    fn spawn_start(
        self: Arc<Self>,
    ) -> tokio::sync::oneshot::Receiver<Result<Option<Outcome>, InvokeError>> {
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let started = self.start_instance("on-demand").await;
            // A spare was taken (or none was ready): have one ready for the next start.
            self.clone().start_spare();
            let started = match started {
                Ok(Started::Ready(instance, init)) => {
                    self.note_init(init);
                    self.adopt(instance, Some(init), None);
                    Ok(None)
                }
                Ok(Started::InitFailed(body)) => Ok(Some(Outcome::Error(body.to_vec()))),
                Ok(Started::Died(detail)) => Ok(Some(Outcome::Crashed(detail))),
                Err(e) => Err(e),
            };
            self.n_starting.fetch_sub(1, Ordering::AcqRel);
            let _ = started_tx.send(started);
            // A start slot is free again: invocations waiting without one may start now.
            self.freed.notify_waiters();
            self.cfg.instance_limit.freed.notify_waiters();
        });
        started_rx
    }

    /// The most recently used idle slot of a live instance, if any; dead instances found
    /// on the way are forgotten. A `New` invocation that finds none starts waiting, and a
    /// waiting one that finds one stops, in the same critical section, so `reserve_start`
    /// never sees a slot counted twice.
    fn take_idle(&self, waiter: Waiter) -> Option<Slot> {
        loop {
            let Ok(mut idle) = self.idle.lock() else {
                return None;
            };
            match idle.pop() {
                Some(slot) if slot.instance.is_alive() => {
                    if waiter == Waiter::Waiting {
                        self.n_waiting.fetch_sub(1, Ordering::AcqRel);
                    }
                    return Some(slot);
                }
                Some(dead) => {
                    drop(idle);
                    self.forget(dead.instance);
                }
                None => {
                    if waiter == Waiter::New {
                        self.n_waiting.fetch_add(1, Ordering::AcqRel);
                    }
                    return None;
                }
            }
        }
    }

    /// Takes every idle slot of instance `id` out of the idle list; the instance, if
    /// any slot was there.
    fn take_idle_instance(&self, id: u64) -> Option<Arc<Instance>> {
        let mut idle = self.idle.lock().ok()?;
        let mut instance = None;
        idle.retain(|slot| {
            if slot.instance.state.id != id {
                return true;
            }
            instance = Some(slot.instance.clone());
            false
        });
        instance
    }

    /// A new instance's slots join the idle ones; with `init`, an on-demand start's, the
    /// first taken is marked fresh, so its invocation reports the cold start. A
    /// pre-warmed one is `held` until then, for that reason.
    fn adopt(
        &self,
        instance: Instance,
        init: Option<Duration>,
        held: Option<(Instant, WarmReason)>,
    ) {
        let instance = Arc::new(instance);
        for idx in (0..self.concurrency()).rev() {
            self.push_idle(Slot {
                instance: instance.clone(),
                last_used: Instant::now(),
                fresh: init.filter(|_| idx == 0),
                held,
            });
        }
    }

    /// Gives a slot back after an invocation: to the idle ones when `keep`, else its
    /// instance is stopped (with whatever else runs in it).
    fn release(&self, slot: Slot, keep: bool) {
        if keep && slot.instance.is_alive() && !self.shutting_down.load(Ordering::Acquire) {
            self.release_slot(slot);
        } else {
            self.forget(slot.instance);
        }
    }

    fn release_slot(&self, mut slot: Slot) {
        slot.last_used = Instant::now();
        slot.fresh = None;
        slot.held = None;
        self.push_idle(slot);
    }

    fn push_idle(&self, slot: Slot) {
        match self.idle.lock() {
            Ok(mut idle) => {
                idle.push(slot);
                drop(idle);
                self.freed.notify_one();
            }
            Err(_) => self.forget(slot.instance),
        }
    }

    /// Stops an instance and removes it from the registry; its process ends when the
    /// last of its slots is dropped, if not already.
    fn forget(&self, instance: Arc<Instance>) {
        if let Ok(mut all) = self.all.lock() {
            all.remove(&instance.state.id);
        }
        instance.state.stop();
        drop(instance);
        // One instance fewer: an invocation waiting at the `reservedConcurrency` limit may
        // start one now (all are woken: one of them may be waiting on a start already).
        self.freed.notify_waiters();
        self.cfg.instance_limit.freed.notify_waiters();
    }

    async fn start_instance(&self, initialization_type: &str) -> Result<Started, InvokeError> {
        if initialization_type == "on-demand"
            && let Some(shape) = self.spare_shape()
            && let Some(spare) = self.cfg.instance_limit.take_spare(&shape).await
        {
            let id = spare.id();
            let env = self.environment(id, initialization_type);
            let started = spare
                .assign(
                    &self.spec.name,
                    &self.function_arn,
                    &env,
                    self.cfg.init_timeout,
                )
                .await;
            self.register_started(id, &started);
            return Ok(started);
        }
        let id = crate::instance::next_instance_id();
        let (program, args) = self.command();
        let env = self.environment(id, initialization_type);
        let process = ProcessSpec {
            program: &program,
            args,
            cwd: &self.cfg.app_dir,
            env,
            view: crate::sandbox::View::new(&self.cfg, &self.code, &self.spec),
            stdin: StdinMode::Null,
        };
        let start_cfg = StartConfig {
            id,
            function: &self.spec.name,
            function_arn: self.function_arn.clone(),
            memory_mb: self.spec.memory_mb,
            init_timeout: self.cfg.init_timeout,
            log_sink: self.cfg.log_sink.clone(),
            concurrency: self.concurrency(),
        };
        let started =
            Instance::start(start_cfg, process)
                .await
                .map_err(|e| InvokeError::Platform {
                    function: self.spec.name.clone(),
                    source: Box::new(std::io::Error::new(
                        e.kind(),
                        format!("starting {}: {e}", program.display()),
                    )),
                })?;
        self.register_started(id, &started);
        Ok(started)
    }

    fn register_started(&self, id: u64, started: &Started) {
        if let Started::Ready(instance, _) = started {
            if let Ok(mut all) = self.all.lock() {
                all.insert(id, instance.state.clone());
            }
            // A shutdown that began while this instance started must still stop it.
            if self.shutting_down.load(Ordering::Acquire) {
                instance.state.stop();
            }
        }
    }

    /// What a pre-started process for this function must share with it, as text: the
    /// command (interpreter, heap limit), the sandbox view (the app folder, the code's own
    /// folders, `/tmp`'s size), the memory watched and the slots. `None` when its runtime
    /// cannot be pre-started (a custom `bootstrap`) or its environment holds variables the
    /// interpreter reads only as it starts (`NODE_OPTIONS`, `PYTHON*` but `PYTHONPATH`,
    /// `LD_*`...), which a process started before them would miss.
    fn spare_shape(&self) -> Option<String> {
        if !matches!(
            self.code,
            Code::Node | Code::NodeBuilt { .. } | Code::Python { .. }
        ) {
            return None;
        }
        let read_at_start = |key: &str| {
            (key.starts_with("NODE_") && key != "NODE_PATH")
                || key.starts_with("UV_")
                || (key.starts_with("PYTHON") && key != "PYTHONPATH")
                || key.starts_with("LD_")
                || key.starts_with("MALLOC")
        };
        if self.spec.environment.keys().any(|key| read_at_start(key)) {
            return None;
        }
        let (program, args) = self.command();
        Some(format!(
            "{program:?} {args:?} {:?} {:?} {} {} {}",
            self.cfg.app_dir,
            self.code,
            self.spec.ephemeral_storage_mb,
            self.spec.memory_mb,
            self.concurrency()
        ))
    }

    /// Starts a pre-started process of this function's shape in a task of its own, if one
    /// is wanted and fits under `--max-instances`: its bootstrap loads and waits for a
    /// function, in the sandbox the function would run in, with only the environment no
    /// function owns.
    fn start_spare(self: Arc<Self>) {
        let Some(shape) = self.spare_shape() else {
            return;
        };
        if self.shutting_down.load(Ordering::Acquire)
            || !self.cfg.instance_limit.begin_spare(&shape)
        {
            return;
        }
        tokio::spawn(async move {
            let id = crate::instance::next_instance_id();
            let (program, args) = self.command();
            let process = ProcessSpec {
                program: &program,
                args,
                cwd: &self.cfg.app_dir,
                env: vec![
                    ("NIMBUS_PRESTART".to_owned(), "1".to_owned()),
                    ("TZ".to_owned(), ":UTC".to_owned()),
                ],
                view: crate::sandbox::View::new(&self.cfg, &self.code, &self.spec),
                stdin: StdinMode::Null,
            };
            let start_cfg = StartConfig {
                id,
                function: "",
                function_arn: String::new(),
                memory_mb: self.spec.memory_mb,
                init_timeout: self.cfg.init_timeout,
                log_sink: self.cfg.log_sink.clone(),
                concurrency: self.concurrency(),
            };
            let spare = match Instance::start_spare(start_cfg, process).await {
                Ok(spare) => spare,
                Err(e) => {
                    tracing::debug!(function = %self.spec.name, "pre-starting a runtime: {e}");
                    None
                }
            };
            self.cfg.instance_limit.end_spare(&shape, spare);
        });
    }

    fn command(&self) -> (PathBuf, Vec<String>) {
        let runtime_dir = &self.cfg.runtime_dir;
        match &self.code {
            Code::Node | Code::TypeScript(_) | Code::NodeBuilt { .. } | Code::Worker(_) => {
                // Lambda's Node.js runtime caps the V8 heap below the function's memory so
                // that the heap limit, not the kernel, stops a runaway allocation.
                let heap_mb = (u64::from(self.spec.memory_mb) * 9 / 10).max(16);
                let mut args = vec![format!("--max-old-space-size={heap_mb}")];
                if let Code::NodeBuilt {
                    source_maps: true, ..
                } = &self.code
                {
                    // Stack traces name the TypeScript file and line.
                    args.push("--enable-source-maps".to_owned());
                }
                args.push(runtime_dir.join(NODE_BOOTSTRAP_FILE).display().to_string());
                (crate::spawn::interpreter("node"), args)
            }
            Code::Python { .. } => (
                crate::spawn::interpreter(self.code.python_program()),
                vec![
                    "-u".to_owned(),
                    runtime_dir
                        .join(PYTHON_BOOTSTRAP_FILE)
                        .display()
                        .to_string(),
                ],
            ),
            Code::Provided(bootstrap) => (bootstrap.clone(), Vec::new()),
        }
    }

    /// The Lambda environment of an instance, then the function's own variables.
    fn environment(&self, instance_id: u64, initialization_type: &str) -> Vec<(String, String)> {
        let spec = &self.spec;
        let execution_env = match spec.runtime {
            Runtime::Provided => None,
            runtime => Some(format!("AWS_Lambda_{runtime}")),
        };
        let mut env = vec![
            ("_HANDLER".to_owned(), spec.handler.clone()),
            (
                "LAMBDA_TASK_ROOT".to_owned(),
                self.cfg.app_dir.display().to_string(),
            ),
            (
                "LAMBDA_RUNTIME_DIR".to_owned(),
                self.cfg.runtime_dir.display().to_string(),
            ),
            (
                "AWS_LAMBDA_FUNCTION_NAME".to_owned(),
                self.lambda_name.clone(),
            ),
            (
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE".to_owned(),
                spec.memory_mb.to_string(),
            ),
            (
                "AWS_LAMBDA_FUNCTION_VERSION".to_owned(),
                "$LATEST".to_owned(),
            ),
            (
                "AWS_LAMBDA_INITIALIZATION_TYPE".to_owned(),
                initialization_type.to_owned(),
            ),
            (
                "AWS_LAMBDA_LOG_GROUP_NAME".to_owned(),
                format!("/aws/lambda/{}", self.lambda_name),
            ),
            (
                "AWS_LAMBDA_LOG_STREAM_NAME".to_owned(),
                format!("[$LATEST]{instance_id:032x}"),
            ),
            ("AWS_REGION".to_owned(), self.cfg.region.clone()),
            ("AWS_DEFAULT_REGION".to_owned(), self.cfg.region.clone()),
            ("TZ".to_owned(), ":UTC".to_owned()),
            ("NIMBUS_STAGE".to_owned(), self.cfg.stage.clone()),
        ];
        if let Some(execution_env) = execution_env {
            env.push(("AWS_EXECUTION_ENV".to_owned(), execution_env));
        }
        // As Lambda Managed Instances tell a runtime how many invocations to take at once
        // (one `/next` in flight per slot); absent, as on Lambda, for one.
        if self.concurrency() > 1 {
            env.push((
                "AWS_LAMBDA_MAX_CONCURRENCY".to_owned(),
                self.concurrency().to_string(),
            ));
        }
        // `require('nimbus')` and `import nimbus` find the shipped service clients here,
        // then the runtime-provided packages. Node looks in a function's own
        // `node_modules` before `NODE_PATH`, and Python in LAMBDA_TASK_ROOT (the
        // bootstrap puts it first on `sys.path`) before `PYTHONPATH`, so a function's own
        // copy of a package wins, as on Lambda.
        let runtime_dir = &self.cfg.runtime_dir;
        let mut node_fallback: Vec<&Path> = Vec::new();
        if let Code::NodeBuilt {
            built, module_dirs, ..
        } = &self.code
        {
            env.push((
                "NIMBUS_HANDLER_FILE".to_owned(),
                built.display().to_string(),
            ));
            node_fallback.extend(module_dirs.iter().map(PathBuf::as_path));
        }
        node_fallback.extend(self.cfg.packages.node.iter().map(PathBuf::as_path));
        let node_modules = runtime_dir.join("node_modules");
        env.push((
            "NODE_PATH".to_owned(),
            join_paths(
                std::iter::once(node_modules.as_path()).chain(node_fallback.iter().copied()),
            ),
        ));
        if !node_fallback.is_empty() {
            // ES-module `import` ignores NODE_PATH; the bootstrap registers a resolve hook
            // that falls back to these folders, only when this is set, so functions that
            // need none pay nothing for it.
            env.push((
                "NIMBUS_NODE_FALLBACK".to_owned(),
                join_paths(node_fallback.iter().copied()),
            ));
        }
        // A function's requirements come first: serverless-python-requirements puts them
        // at the root of the function's package, /var/task on Lambda.
        let python = runtime_dir.join("python");
        let (dependencies, wsgi) = match &self.code {
            Code::Python {
                dependencies, wsgi, ..
            } => (dependencies.as_deref(), wsgi.as_ref()),
            _ => (None, None),
        };
        // A serverless-wsgi function finds nimbus's `wsgi_handler` after the app folder
        // (so an app's own file of that name wins) and its requirements.
        let wsgi_dir = runtime_dir.join("wsgi");
        if let Some(wsgi) = wsgi {
            env.push(("NIMBUS_WSGI_APP".to_owned(), wsgi.app.clone()));
            env.push((
                "NIMBUS_WSGI_TEXT_MIME_TYPES".to_owned(),
                wsgi.text_mime_types.join(","),
            ));
        }
        env.push((
            "PYTHONPATH".to_owned(),
            join_paths(
                dependencies
                    .into_iter()
                    .chain(wsgi.map(|_| wsgi_dir.as_path()))
                    .chain(std::iter::once(python.as_path()))
                    .chain(self.cfg.packages.python.iter().map(PathBuf::as_path)),
            ),
        ));
        env.extend(spec.environment.iter().map(|(k, v)| (k.clone(), v.clone())));
        env
    }

    /// Starts provisioned instances until `provisionedConcurrency` are alive.
    async fn replenish_provisioned(&self) -> Result<(), InvokeError> {
        let wanted = self.spec.provisioned_concurrency as usize;
        while !self.shutting_down.load(Ordering::Acquire) && self.n_alive() < wanted {
            if !self.cfg.instance_limit.reserve(self, |_| true) {
                tracing::warn!(function = %self.spec.name, "provisionedConcurrency {wanted}: only {} instances fit under --max-instances {}", self.n_alive(), self.cfg.instance_limit.max());
                break;
            }
            let started = self.start_instance("provisioned-concurrency").await;
            self.n_starting.fetch_sub(1, Ordering::AcqRel);
            match started? {
                Started::Ready(instance, init) => {
                    self.note_init(init);
                    self.adopt(instance, None, None);
                }
                Started::InitFailed(body) => {
                    tracing::warn!(function = %self.spec.name, "provisioned instance failed to start: {}", String::from_utf8_lossy(&body));
                    break;
                }
                Started::Died(detail) => {
                    tracing::warn!(function = %self.spec.name, "provisioned instance failed to start: {detail}");
                    break;
                }
            }
        }
        Ok(())
    }

    fn n_alive(&self) -> usize {
        self.all.lock().map(|all| all.len()).unwrap_or(0)
    }

    /// Stops the idle instances the keep-alive policy no longer wants, keeping the
    /// provisioned ones, then starts the pre-warm the policy asks for now, if any.
    fn reap_idle(self: &Arc<Self>) {
        let now = Instant::now();
        let expired: Vec<u64> = match self.idle.lock() {
            Ok(mut idle) => {
                idle.retain(|slot| slot.instance.is_alive() || !self.unregister(&slot.instance));
                self.plan_idle(&idle, now)
                    .into_iter()
                    .filter(|(_, stop_at, _)| *stop_at <= now)
                    .map(|(id, _, _)| id)
                    .collect()
            }
            Err(_) => return,
        };
        for id in expired {
            if let Some(instance) = self.take_idle_instance(id) {
                tracing::debug!(function = %self.spec.name, instance = id, "stopping idle instance");
                self.forget(instance);
            }
        }
        let prewarm = match self.history.lock() {
            Ok(mut history) => {
                history.take_prewarm(&self.cfg.keep_alive, self.clock(now), self.lead())
            }
            Err(_) => None,
        };
        if let Some(prewarm) = prewarm {
            let until = self.origin + prewarm.until;
            self.clone().prewarm_instance(prewarm.reason, until);
        }
    }

    /// Each fully idle instance, when the policy stops it and why it is warm until then,
    /// least recently used first. The most recently used `provisionedConcurrency` stay.
    /// Instances warm on a prediction count against the pre-warm budget, in this order;
    /// those past it get the fixed keep-alive. Updates this pool's count for the budget.
    fn plan_idle(&self, idle: &[Slot], now: Instant) -> Vec<(u64, Instant, WarmReason)> {
        let candidates = fully_idle(idle, self.concurrency());
        let n_removable = candidates
            .len()
            .saturating_sub(self.spec.provisioned_concurrency as usize);
        let lead = self.lead();
        let budget = self.cfg.instance_limit.prewarm_budget_mb();
        let mut predicted_mb = self.cfg.instance_limit.predicted_mb_except(self);
        let mut own_mb = 0;
        let memory_mb = u64::from(self.spec.memory_mb);
        let history = match self.history.lock() {
            Ok(history) => history,
            Err(_) => return Vec::new(),
        };
        let mut plan = Vec::with_capacity(candidates.len());
        let n_candidates = candidates.len();
        for (idx, candidate) in candidates.into_iter().enumerate() {
            if idx >= n_removable {
                plan.push((
                    candidate.id,
                    now + Duration::from_secs(86_400),
                    WarmReason::Provisioned,
                ));
                continue;
            }
            let idle = IdleInstance {
                last_used: self.clock(candidate.last_used),
                held_until: candidate.held.map(|(until, _)| self.clock(until)),
                held_for: candidate.held.map_or(WarmReason::KeepAlive, |(_, why)| why),
                is_newest: idx + 1 == n_candidates,
            };
            let (mut stop_at, mut reason) = match (self.schedule_only(), candidate.held) {
                // Its next invocation is the next fire, which is pre-warmed.
                (true, None) => (idle.last_used + SCHEDULED_KEEP_ALIVE, WarmReason::KeepAlive),
                _ => history.stop_at(&self.cfg.keep_alive, idle, lead),
            };
            if reason.is_predicted() {
                if predicted_mb.saturating_add(memory_mb) <= budget {
                    predicted_mb += memory_mb;
                    own_mb += memory_mb;
                } else {
                    stop_at = idle.last_used + self.cfg.idle_timeout;
                    reason = WarmReason::KeepAlive;
                }
            }
            plan.push((candidate.id, self.origin + stop_at, reason));
        }
        self.predicted_mb.store(own_mb, Ordering::Release);
        plan
    }

    /// Starts an instance ahead of an invocation, kept until `until` unless it serves
    /// one first: in the background, within `--max-instances`, `reservedConcurrency`, the
    /// starts a pool may run at once and the pre-warm budget. Whether it began.
    fn prewarm_instance(self: Arc<Self>, reason: WarmReason, until: Instant) -> bool {
        if self.shutting_down.load(Ordering::Acquire) {
            return false;
        }
        let memory_mb = u64::from(self.spec.memory_mb);
        let limit = &self.cfg.instance_limit;
        if limit.predicted_mb_except(&self) + self.predicted_mb.load(Ordering::Acquire) + memory_mb
            > limit.prewarm_budget_mb()
        {
            tracing::debug!(function = %self.spec.name, reason = reason.label(), "not pre-warming: --prewarm-budget is used up");
            return false;
        }
        let reserved = limit.reserve(&self, |pool| {
            let n_starting = pool.n_starting.load(Ordering::Acquire);
            n_starting < pool.max_starts
                && pool.spec.reserved_concurrency.is_none_or(|max| {
                    (pool.n_alive() + n_starting) * pool.concurrency() < max as usize
                })
        });
        if !reserved {
            return false;
        }
        self.predicted_mb.fetch_add(memory_mb, Ordering::AcqRel);
        tracing::debug!(function = %self.spec.name, reason = reason.label(), "pre-warming an instance");
        tokio::spawn(async move {
            let started = self.start_instance("on-demand").await;
            self.clone().start_spare();
            match started {
                Ok(Started::Ready(instance, init)) => {
                    self.note_init(init);
                    self.adopt(instance, None, Some((until, reason)));
                }
                Ok(Started::InitFailed(body)) => {
                    tracing::warn!(function = %self.spec.name, "pre-warmed instance failed to start: {}", init_error_message(&body));
                }
                Ok(Started::Died(detail)) => {
                    tracing::warn!(function = %self.spec.name, "pre-warmed instance failed to start: {detail}");
                }
                Err(e) => {
                    tracing::warn!(function = %self.spec.name, "pre-warming an instance: {e}");
                }
            }
            self.n_starting.fetch_sub(1, Ordering::AcqRel);
            self.freed.notify_waiters();
            self.cfg.instance_limit.freed.notify_waiters();
        });
        true
    }

    /// Keeps an idle instance warm until `until` for `reason` (the most recently used,
    /// whose hold is extended), or starts one; for callers that know an invocation is
    /// coming.
    fn hold_or_prewarm(self: Arc<Self>, reason: WarmReason, until: Instant) {
        let held = match self.idle.lock() {
            Ok(mut idle) => match fully_idle(&idle, self.concurrency()).last() {
                Some(newest) => {
                    let id = newest.id;
                    for slot in idle.iter_mut().filter(|slot| slot.instance.state.id == id) {
                        let keep = slot.held.map_or(until, |(held, _)| held.max(until));
                        slot.held = Some((keep, reason));
                    }
                    true
                }
                None => false,
            },
            Err(_) => return,
        };
        if !held && self.n_starting.load(Ordering::Acquire) == 0 {
            self.prewarm_instance(reason, until);
        }
    }

    /// Why each instance is warm now.
    fn warm_reasons(&self) -> WarmCounts {
        let mut counts = WarmCounts::default();
        let now = Instant::now();
        let Ok(idle) = self.idle.lock() else {
            return counts;
        };
        let plan = self.plan_idle(&idle, now);
        drop(idle);
        for (_, _, reason) in &plan {
            counts.add(*reason);
        }
        for _ in plan.len()..self.n_alive() {
            counts.add(WarmReason::Busy);
        }
        counts
    }

    /// Removes a dead instance from the registry; returns true (for `retain`).
    fn unregister(&self, instance: &Instance) -> bool {
        if let Ok(mut all) = self.all.lock() {
            all.remove(&instance.state.id);
        }
        true
    }

    async fn shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
        if let Some(shape) = self.spare_shape() {
            self.cfg.instance_limit.drop_spares(Some(&shape));
        }
        let idle: Vec<Slot> = self
            .idle
            .lock()
            .map(|mut idle| idle.drain(..).collect())
            .unwrap_or_default();
        drop(idle);
        let states: Vec<Arc<InstanceState>> = self
            .all
            .lock()
            .map(|all| all.values().cloned().collect())
            .unwrap_or_default();
        for state in &states {
            state.stop();
        }
        for state in &states {
            let _ = tokio::time::timeout(Duration::from_secs(2), state.wait_exit()).await;
        }
    }
}

/// A fully idle instance, as `fully_idle` finds it.
struct IdleEntry {
    id: u64,
    /// When the last of its slots came back.
    last_used: Instant,
    /// Its pre-warm hold, if it has served nothing since.
    held: Option<(Instant, WarmReason)>,
}

/// The instances whose every slot is in `idle` (no invocation in flight), least recently
/// used first.
fn fully_idle(idle: &[Slot], concurrency: usize) -> Vec<IdleEntry> {
    let mut by_instance: HashMap<u64, (usize, IdleEntry)> = HashMap::new();
    for slot in idle {
        let id = slot.instance.state.id;
        let entry = by_instance.entry(id).or_insert((
            0,
            IdleEntry {
                id,
                last_used: slot.last_used,
                held: slot.held,
            },
        ));
        entry.0 += 1;
        entry.1.last_used = entry.1.last_used.max(slot.last_used);
        if slot.held.is_none() {
            entry.1.held = None;
        }
    }
    let mut instances: Vec<IdleEntry> = by_instance
        .into_values()
        .filter(|(n_slots, _)| *n_slots >= concurrency)
        .map(|(_, entry)| entry)
        .collect();
    instances.sort_by_key(|entry| (entry.last_used, entry.id));
    instances
}

/// Paths joined with `:`, as `NODE_PATH` and `PYTHONPATH` take them.
fn join_paths<'a>(paths: impl Iterator<Item = &'a Path>) -> String {
    paths
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":")
}

/// The reaper of one pool: looks at its idle instances every quarter of the idle timeout
/// (50 ms to 10 s), when an invocation ends and when a planned pre-warm is due, and keeps
/// the provisioned instances started.
async fn reap(pool: std::sync::Weak<Pool>) {
    let period = match pool.upgrade() {
        Some(pool) => {
            (pool.cfg.idle_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(10))
        }
        None => return,
    };
    loop {
        let Some(strong) = pool.upgrade() else { return };
        let next_prewarm = strong
            .history
            .lock()
            .ok()
            .and_then(|history| history.next_prewarm(&strong.cfg.keep_alive, strong.lead()))
            .map(|prewarm| strong.origin + prewarm.at);
        let wake = next_prewarm.map_or(Instant::now() + period, |at| {
            at.min(Instant::now() + period)
        });
        // The executor aborts this task when it is dropped or shut down, so holding the
        // pool while waiting keeps nothing alive past it.
        tokio::select! {
            () = tokio::time::sleep_until(wake.into()) => {}
            () = strong.replan.notified() => {}
        }
        let pool = strong;
        pool.reap_idle();
        if let Err(e) = pool.replenish_provisioned().await {
            tracing::warn!(function = %pool.spec.name, "keeping provisioned instances warm: {e}");
        }
    }
}
