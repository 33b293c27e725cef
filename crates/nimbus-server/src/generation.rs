//! Generations: the app a server serves (functions, executors, routes, policies, event
//! consumers) as one value that a reload swaps atomically, and the draining of the one
//! it replaces.
//!
//! Every request and service call loads the current generation once (one atomic load
//! and a reference count) and keeps it to its end, so a request started before a reload
//! finishes on the functions it started with. A replaced generation stops its consumers,
//! waits until nothing holds its functions any more (no request, no detached invocation,
//! no consumer), then its executors are shut down, except those the new app kept.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use nimbus_core::Executor;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use crate::events::Events;
use crate::functions::Functions;
use crate::workflows::Workflows;
use crate::{App, ServerConfig, Shutdown, ShutdownTrigger, gateway};

/// One app as served: what a request needs, shared by every request that loaded it.
pub(crate) struct Generation {
    pub(crate) functions: Arc<Functions>,
    pub(crate) events: Arc<Events>,
    pub(crate) routing: gateway::Routing,
    /// The server's live WebSocket connections, the same in every generation.
    pub(crate) websockets: Arc<gateway::websocket::Hub>,
    /// The app's workflows and their running executions, the same in every generation.
    pub(crate) workflows: Arc<Workflows>,
}

/// The generation being served now.
pub(crate) struct Current(ArcSwap<Generation>);

/// A request to serve another app, sent by a `Reloader` to the server's run loop.
pub(crate) struct Reload {
    pub(crate) app: App,
    pub(crate) done: oneshot::Sender<anyhow::Result<()>>,
}

/// Sends reloads to a running server.
pub(crate) type ReloadTx = mpsc::Sender<Reload>;
/// Where the run loop receives reloads.
pub(crate) type ReloadRx = mpsc::Receiver<Reload>;

/// What the run loop keeps of a generation besides what requests share.
struct Live {
    /// Its consumers and schedules.
    triggers: JoinSet<()>,
    /// Stops its consumers (on reload or shutdown).
    stop: ShutdownTrigger,
    stop_rx: Shutdown,
    /// Resolves once its functions are dropped: nothing can invoke them any more.
    released: oneshot::Receiver<()>,
    /// The executors of its functions, to shut down after it drains.
    executors: Vec<Arc<dyn Executor>>,
    /// How long draining may take before its instances are stopped anyway: its longest
    /// function timeout, plus the wait for a concurrency permit and a cold start.
    drain_bound: Duration,
}

/// Every generation a running server holds: the current one and those draining.
pub(crate) struct Generations {
    pub(crate) current: Arc<Current>,
    live: Live,
    /// Replaced generations, each draining in a task that returns its id and executors.
    draining: JoinSet<(u64, Vec<Arc<dyn Executor>>)>,
    /// The executors of each draining generation, so none still in use is shut down.
    draining_executors: HashMap<u64, Vec<Arc<dyn Executor>>>,
    next_id: u64,
    /// Shutdowns of executors no generation uses any more.
    stopping: JoinSet<()>,
    /// The WebSocket connections, which outlive reloads.
    websockets: Arc<gateway::websocket::Hub>,
    /// The workflows, whose executions outlive reloads.
    workflows: Arc<Workflows>,
}

/// A drained generation: its id and its executors.
pub(crate) type Drained = (u64, Vec<Arc<dyn Executor>>);

/// The longest a cold start takes before an invocation begins (the Lambda pool's init
/// bound), so draining allows for it.
const COLD_START_ALLOWANCE: Duration = Duration::from_secs(10);

impl Current {
    /// The generation to serve one request or call with; hold it until the end.
    pub(crate) fn load(&self) -> Arc<Generation> {
        self.0.load_full()
    }
}

impl Generations {
    /// Starts serving `app`: builds its generation and starts its consumers.
    pub(crate) async fn start(app: App, cfg: &ServerConfig) -> anyhow::Result<Generations> {
        let websockets = Arc::new(gateway::websocket::Hub::new());
        let workflows = Arc::new(Workflows::new(
            Arc::new(app.events.store.clone()),
            app.events.region.clone(),
        ));
        let (generation, mut live) = match build(app, cfg, &websockets, &workflows).await {
            Ok(built) => built,
            Err((e, executors)) => {
                stop_unused(executors, Vec::new()).await;
                return Err(e);
            }
        };
        let current = Arc::new(Current(ArcSwap::from_pointee(generation)));
        // Executions a previous run left running resume now, and tasks reach the functions
        // through `current` before any consumer or schedule can start an execution.
        workflows.bind(&current);
        live.spawn_triggers(&current.load());
        Ok(Generations {
            current,
            live,
            draining: JoinSet::new(),
            draining_executors: HashMap::new(),
            next_id: 0,
            stopping: JoinSet::new(),
            websockets,
            workflows,
        })
    }

    /// Serves `app` from now on and drains the generation it replaces in the background.
    /// On failure the current generation keeps serving, and the executors of `app` that
    /// it does not share are shut down.
    pub(crate) async fn reload(&mut self, app: App, cfg: &ServerConfig) -> anyhow::Result<()> {
        let (generation, live) = match build(app, cfg, &self.websockets, &self.workflows).await {
            Ok(built) => built,
            Err((e, executors)) => {
                let in_use = self.in_use();
                self.stopping.spawn(stop_unused(executors, in_use));
                return Err(e);
            }
        };
        let generation = Arc::new(generation);
        let previous = std::mem::replace(&mut self.live, live);
        // The old consumers stop before the new ones start, so a schedule due right now
        // fires once.
        previous.stop.trigger();
        // From here on every request loads the new generation; those that loaded the old
        // one keep it until they end.
        drop(self.current.0.swap(generation.clone()));
        self.live.spawn_triggers(&generation);
        let id = self.next_id;
        self.next_id += 1;
        self.draining_executors
            .insert(id, previous.executors.clone());
        self.draining
            .spawn(async move { (id, previous.drain().await) });
        Ok(())
    }

    /// The next generation to finish draining; pending forever while none drains.
    pub(crate) async fn next_drained(&mut self) -> Drained {
        loop {
            match self.draining.join_next().await {
                Some(Ok(drained)) => return drained,
                Some(Err(e)) => tracing::warn!("draining a replaced app failed: {e}"),
                None => std::future::pending::<()>().await,
            }
        }
    }

    /// Shuts down the executors of a drained generation that no other one uses.
    pub(crate) fn retire(&mut self, (id, executors): Drained) {
        self.draining_executors.remove(&id);
        let in_use = self.in_use();
        self.stopping.spawn(stop_unused(executors, in_use));
    }

    /// Tells the current generation's consumers to stop after what they are doing.
    pub(crate) fn stop_triggers(&self) {
        self.live.stop.trigger();
    }

    /// Stops every consumer (bounded), abandons draining, and shuts down every executor.
    pub(crate) async fn shutdown(mut self) {
        self.draining.abort_all();
        while self.draining.join_next().await.is_some() {}
        let mut executors = self.live.stop_triggers().await;
        executors.extend(self.draining_executors.into_values().flatten());
        while self.stopping.join_next().await.is_some() {}
        stop_unused(executors, Vec::new()).await;
    }

    /// Stops serving altogether, for a deployed version no alias points at any more: its
    /// consumers stop, then (within its drain bound) the invocations under way finish;
    /// returns every executor, to shut down with `stop_unused`. The caller's other
    /// references to `current` must be gone (or go while this waits), since the
    /// generation counts as drained only once nothing holds it.
    pub(crate) async fn drain_all(self) -> Vec<Arc<dyn Executor>> {
        let Generations {
            current,
            live,
            mut draining,
            draining_executors,
            mut stopping,
            ..
        } = self;
        drop(current);
        let mut executors = live.drain().await;
        draining.abort_all();
        while draining.join_next().await.is_some() {}
        executors.extend(draining_executors.into_values().flatten());
        while stopping.join_next().await.is_some() {}
        executors
    }

    /// The executors of the current and of every draining generation.
    fn in_use(&self) -> Vec<Arc<dyn Executor>> {
        let mut in_use = self.live.executors.clone();
        in_use.extend(self.draining_executors.values().flatten().cloned());
        in_use
    }
}

/// Builds the generation of `app`, without starting its consumers. On failure the
/// executors of `app` come back with the error.
async fn build(
    app: App,
    cfg: &ServerConfig,
    websockets: &Arc<gateway::websocket::Hub>,
    workflows: &Arc<Workflows>,
) -> Result<(Generation, Live), (anyhow::Error, Vec<Arc<dyn Executor>>)> {
    let executors: Vec<Arc<dyn Executor>> =
        app.functions.iter().map(|f| f.executor.clone()).collect();
    let longest_timeout = app
        .functions
        .iter()
        .map(|f| f.spec.timeout)
        .max()
        .unwrap_or(Duration::ZERO);
    let routing = match gateway::Routing::new(&app) {
        Ok(routing) => routing,
        Err(e) => return Err((anyhow::anyhow!(e), executors)),
    };
    let (released_tx, released) = oneshot::channel();
    let functions = match Functions::new(app.functions, cfg, app.telemetry, released_tx) {
        Ok(functions) => Arc::new(functions),
        Err(message) => return Err((anyhow::anyhow!(message), executors)),
    };
    let events = match Events::start(functions.clone(), app.events)
        .await
        .context("starting queues, topics, buckets and schedules")
    {
        Ok(events) => Arc::new(events),
        Err(e) => return Err((e, executors)),
    };
    workflows.set_machines(&events.resources.state_machines);
    let (stop, stop_rx) = Shutdown::new();
    let generation = Generation {
        functions,
        events,
        routing,
        websockets: websockets.clone(),
        workflows: workflows.clone(),
    };
    let live = Live {
        triggers: JoinSet::new(),
        stop,
        stop_rx,
        released,
        executors,
        drain_bound: longest_timeout + cfg.queue_wait + COLD_START_ALLOWANCE,
    };
    Ok((generation, live))
}

impl Live {
    /// Starts the consumers and schedules of `generation`'s functions and state machines.
    fn spawn_triggers(&mut self, generation: &Generation) {
        self.triggers = generation
            .events
            .clone()
            .spawn_triggers(self.stop_rx.clone());
        crate::workflows::schedules::spawn(
            &generation.events,
            &generation.workflows,
            &mut self.triggers,
            &self.stop_rx,
        );
    }

    /// Waits (bounded) for the consumers, which were told to stop, and for every
    /// invocation of the generation to finish; returns its executors, ready to be shut
    /// down. The generation must no longer be current.
    async fn drain(self) -> Vec<Arc<dyn Executor>> {
        let Live {
            mut triggers,
            stop,
            stop_rx,
            released,
            executors,
            drain_bound,
        } = self;
        stop.trigger();
        drop(stop_rx);
        let deadline = tokio::time::Instant::now() + drain_bound;
        // A consumer finishes the invocation it is in, then sees the stop.
        let _ = tokio::time::timeout_at(deadline, async {
            while triggers.join_next().await.is_some() {}
        })
        .await;
        triggers.abort_all();
        drop(triggers);
        if tokio::time::timeout_at(deadline, released).await.is_err() {
            tracing::warn!(
                "the replaced app still had invocations in flight after {:.1} s; stopping its instances anyway",
                drain_bound.as_secs_f64()
            );
        }
        executors
    }

    /// Stops the consumers and waits for them (bounded), for shutdown.
    async fn stop_triggers(self) -> Vec<Arc<dyn Executor>> {
        self.stop.trigger();
        crate::events::stop_triggers(self.triggers).await;
        self.executors
    }
}

/// Shuts down, one after another, those of `executors` that no live generation uses
/// (an app may hand a reload the executors of functions it did not change).
pub(crate) async fn stop_unused(executors: Vec<Arc<dyn Executor>>, in_use: Vec<Arc<dyn Executor>>) {
    let mut stopped: Vec<Arc<dyn Executor>> = Vec::new();
    for executor in executors {
        let shared = in_use.iter().any(|e| Arc::ptr_eq(e, &executor));
        let done = stopped.iter().any(|e| Arc::ptr_eq(e, &executor));
        if !shared && !done {
            executor.shutdown().await;
            stopped.push(executor);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
