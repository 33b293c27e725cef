//! The HTTP face of nimbus and its event machinery: the API Gateway-compatible gateway,
//! the loopback control API (Lambda's Invoke API, queues, topics, buckets, KV, metrics),
//! the triggers that turn queue messages, topic publishes, object changes, schedules and
//! asynchronous invocations into invocations, per-function concurrency limits, telemetry,
//! reloads that swap the served app without dropping a request (`Reloader`), and
//! graceful shutdown.
//!
//! This crate never sees a process or a Wasm engine: functions arrive as
//! `Arc<dyn Executor>` values, so it is tested with a fake executor.

mod admin;
mod api;
mod apps;
mod aws;
pub mod cost;
mod dashboard;
mod error;
mod events;
mod functions;
mod gateway;
mod generation;
pub mod host;
mod listener;
mod services;
mod telemetry;
mod tls;
mod workflows;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use nimbus_core::events::AppResources;
use nimbus_core::queues::QueueStore;
use nimbus_core::services::Services;
use nimbus_core::{Executor, FunctionSpec};
use nimbus_store::Store;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};

pub use crate::api::wire;
pub use crate::apps::{
    AliasTargets, Apps, AppsConfig, AppsServer, LIVE, OperatorKey, OperatorKeys, Version,
    VersionConfig, VersionRef, VersionSlot,
};
pub use crate::aws::{AwsKeys, aws_access_key_id};
pub use crate::dashboard::{AppsDashboard, DashboardBody};
use crate::generation::{Generations, Reload, ReloadRx, ReloadTx};
pub use crate::listener::{
    BODY_MIN_RATE, DEFAULT_BODY_TIMEOUT, DEFAULT_HEADER_TIMEOUT, DEFAULT_MAX_CONNECTIONS,
    ListenerConfig, StrictHeads, http1_builder,
};
use crate::services::ServicesHandle;
pub use crate::telemetry::{
    REDACTED, RedactingLogSink, Redactor, Telemetry, TelemetryConfig, TraceContext,
};
pub use crate::tls::{DevCertificate, Tls, dev_certificate, pem_fingerprint};

/// A function and the executor that invokes it.
pub struct ServedFunction {
    /// What the manifest says about the function.
    pub spec: FunctionSpec,
    /// Runs its invocations.
    pub executor: Arc<dyn Executor>,
    /// The bearer token the function's code uses on the control API (`NIMBUS_TOKEN`);
    /// it allows what the function's grants allow.
    pub token: String,
    /// Hides the function's secret values in what is recorded about its invocations (the
    /// error message of a failed one); `None` when it has no secrets.
    pub redactor: Option<Arc<Redactor>>,
}

/// Everything a server serves. A reload hands the server a whole new `App`; pass it the
/// same `telemetry` and `events.store`, which is what keeps metrics and durable state
/// (queues, objects, KV, schedules) continuous across reloads.
pub struct App {
    /// The functions.
    pub functions: Vec<ServedFunction>,
    /// Where metrics, logs, records and spans go.
    pub telemetry: Arc<Telemetry>,
    /// Queues, topics, buckets, KV and schedules, on the store.
    pub events: EventsConfig,
    /// Authorizers, API keys (each with its value) and the usage plan; JWKS files read.
    pub policies: nimbus_core::policy::GatewayPolicies,
}

/// The event machinery's settings.
pub struct EventsConfig {
    /// The durable store of messages, objects, keys and schedule state.
    pub store: Store,
    /// Where the queues live.
    pub queues: Queues,
    /// Where the KV namespaces live: `None` in `store`; in cluster mode, the engine every
    /// node serving the app shares (`nimbus_nats::NatsKv`).
    pub kv: Option<Arc<dyn nimbus_core::kv::KvStore>>,
    /// Declared queues, topics, buckets and KV namespaces.
    pub resources: AppResources,
    /// `AWS_REGION`, as it appears in ARNs of events.
    pub region: String,
    /// The delay before the first retry of a failed asynchronous invocation, doubling
    /// after (Lambda waits about a minute, then two).
    pub async_retry_delay: Duration,
}

/// Where an app's queues live.
pub enum Queues {
    /// In `EventsConfig::store`: a topic's fan-out, an object's notifications and a
    /// schedule's fire commit in the same transaction as what caused them.
    Embedded,
    /// In a cluster's shared engine (`nimbus_nats::NatsQueues`), which every node serving
    /// the app consumes from. What the store commits (an object and its notifications, a
    /// schedule's claim and its fire) is sent there right after the commit.
    Shared(Arc<dyn QueueStore>),
}

/// Validated settings of a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where the gateway listens.
    pub gateway_addr: SocketAddr,
    /// The stage, as it appears in events.
    pub stage: String,
    /// How long a request waits for a free instance of a function at its
    /// `reservedConcurrency` before it is throttled with 429.
    pub queue_wait: Duration,
    /// At most this many requests wait per function; beyond it, 429 at once.
    pub max_queued: usize,
    /// At most this many invocations of the app run at once (Lambda's account
    /// concurrency): each `reservedConcurrency` is set aside from it, and the functions
    /// without one share the rest; beyond it, 429 `TooManyRequestsException`.
    pub max_concurrency: usize,
    /// Bearer token of the control API, which listens on loopback only.
    pub admin_token: String,
    /// How long shutdown waits for in-flight requests before stopping instances anyway.
    pub drain_timeout: Duration,
    /// Which keys the AWS endpoint on the gateway port accepts besides the functions'.
    pub aws_keys: AwsKeys,
    /// The connection limits and deadlines of both listeners (each has its own cap, so a
    /// flood on the gateway leaves the control API, which functions call, reachable).
    pub listener: ListenerConfig,
}

/// A bound, not yet running server.
pub struct Server {
    cfg: ServerConfig,
    gateway: TcpListener,
    /// With TLS on the gateway, the same gateway in plain HTTP on loopback: the functions'
    /// SDKs reach the AWS endpoint there, with no certificate to trust.
    local_gateway: Option<TcpListener>,
    admin: TcpListener,
    services: Arc<ServicesHandle>,
    reloads: (ReloadTx, ReloadRx),
}

/// A server whose app and listeners have started: what `Server::start` returns once
/// everything is up, so the caller says "listening" only then.
pub struct Running {
    cfg: ServerConfig,
    generations: Generations,
    listeners: tokio::task::JoinSet<()>,
    reloads: ReloadRx,
    shutdown: Shutdown,
}

/// Swaps the app a running server serves, without dropping a request. Cloneable; get it
/// from `Server::reloader` before `Server::run`.
#[derive(Clone)]
pub struct Reloader(ReloadTx);

/// Resolves when the owner asks the server to stop.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// The sending side of a `Shutdown`.
pub struct ShutdownTrigger(watch::Sender<bool>);

impl Server {
    /// Binds the gateway (at `cfg.gateway_addr`) and the control API (loopback, any port).
    pub async fn bind(cfg: ServerConfig) -> anyhow::Result<Server> {
        let gateway = TcpListener::bind(cfg.gateway_addr)
            .await
            .with_context(|| format!("binding the gateway to {}", cfg.gateway_addr))?;
        // The control API invokes any function: it listens on loopback only.
        let local_gateway = match cfg.listener.tls {
            Some(_) => Some(
                TcpListener::bind(("127.0.0.1", 0))
                    .await
                    .context("binding the gateway's plain twin on 127.0.0.1")?,
            ),
            None => None,
        };
        let admin = TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("binding the control API on 127.0.0.1")?;
        Ok(Server {
            cfg,
            gateway,
            local_gateway,
            admin,
            services: Arc::new(ServicesHandle::new()),
            reloads: mpsc::channel(4),
        })
    }

    /// The address the gateway listens on.
    pub fn gateway_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.gateway.local_addr()?)
    }

    /// Where processes on this machine (the functions' SDKs) reach the gateway in plain
    /// HTTP: the gateway itself, or its loopback twin when the gateway speaks TLS.
    pub fn local_gateway_addr(&self) -> anyhow::Result<SocketAddr> {
        match &self.local_gateway {
            Some(twin) => Ok(twin.local_addr()?),
            None => self.gateway_addr(),
        }
    }

    /// The address the control API listens on.
    pub fn admin_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.admin.local_addr()?)
    }

    /// The queues, topics, buckets and KV of the app this server will run, for executors
    /// to offer their functions (wasm imports). Calls are checked against the calling
    /// function's grants, as on the services HTTP API; they fail as unavailable until
    /// `run` starts and after it ends.
    pub fn services(&self) -> Arc<dyn Services> {
        self.services.clone()
    }

    /// A handle that makes the running server serve another app (see
    /// `Reloader::reload`).
    pub fn reloader(&self) -> Reloader {
        Reloader(self.reloads.0.clone())
    }

    /// Serves `app` (or what reloads replace it with) until `shutdown`, then drains
    /// in-flight requests (up to the drain timeout), stops the triggers and every
    /// instance.
    pub async fn run(self, app: App, shutdown: Shutdown) -> anyhow::Result<()> {
        self.start(app, shutdown).await?.run().await
    }

    /// Starts `app` (its queues, consumers and policies) and both listeners; an error
    /// here (a store that cannot be written, say) means nothing was served.
    pub async fn start(self, app: App, shutdown: Shutdown) -> anyhow::Result<Running> {
        let Server {
            cfg,
            gateway,
            local_gateway,
            admin,
            services,
            reloads: (reloads_tx, reloads),
        } = self;
        // Reloads come from `Reloader`s only; once they are all gone, none comes.
        drop(reloads_tx);
        let generations = Generations::start(app, &cfg).await?;
        services.bind(&generations.current);
        let gateway_app = gateway::router(generations.current.clone(), &cfg);
        let admin_app = admin::router(generations.current.clone(), &cfg, &shutdown);
        let mut listeners = tokio::task::JoinSet::new();
        // Only the gateway speaks TLS: the control API and the twin are for this machine.
        let plain = ListenerConfig {
            tls: None,
            ..cfg.listener.clone()
        };
        let mut served = vec![
            (gateway, gateway_app.clone(), cfg.listener.clone()),
            (admin, admin_app, plain.clone()),
        ];
        if let Some(twin) = local_gateway {
            served.push((twin, gateway_app, plain));
        }
        for (listener, app, listener_cfg) in served {
            listeners.spawn(listener::serve(
                listener,
                app,
                listener_cfg,
                shutdown.clone(),
            ));
        }
        Ok(Running {
            cfg,
            generations,
            listeners,
            reloads,
            shutdown,
        })
    }
}

impl Running {
    /// Serves until shutdown, then drains in-flight requests (up to the drain timeout),
    /// stops the triggers and every instance.
    pub async fn run(self) -> anyhow::Result<()> {
        let Running {
            cfg,
            mut generations,
            listeners: mut services,
            mut reloads,
            shutdown,
        } = self;
        let mut shutdown_signal = shutdown.clone();
        loop {
            let event = tokio::select! {
                () = shutdown_signal.wait() => Event::Shutdown,
                Some(reload) = reloads.recv() => Event::Reload(Box::new(reload)),
                drained = generations.next_drained() => Event::Drained(drained),
            };
            match event {
                Event::Shutdown => break,
                Event::Reload(reload) => {
                    let res = generations.reload(reload.app, &cfg).await;
                    reload.done.send(res).ok();
                }
                Event::Drained(drained) => generations.retire(drained),
            }
        }
        tracing::info!("shutting down: draining in-flight requests");
        // WebSocket clients are told the server is going away (1001), and `$disconnect`
        // runs for each, while the functions are still there.
        let websockets = generations.current.load().websockets.clone();
        websockets.close_all(cfg.drain_timeout).await;
        // Consumers take no new message from here on, as the listeners take no new
        // connection.
        generations.stop_triggers();
        let drained = tokio::time::timeout(cfg.drain_timeout, async {
            while let Some(res) = services.join_next().await {
                if let Err(e) = res {
                    tracing::warn!("a listener stopped with an error: {e}");
                }
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                "requests still in flight after {:.1} s; stopping anyway",
                cfg.drain_timeout.as_secs_f64()
            );
            services.abort_all();
        }
        let telemetry = generations.current.load().functions.telemetry.clone();
        generations.shutdown().await;
        // The store writes on its own thread; wait for it off the async workers.
        let _ = tokio::task::spawn_blocking(move || telemetry.flush()).await;
        Ok(())
    }
}

/// What the run loop of a server waits for.
enum Event {
    Shutdown,
    Reload(Box<Reload>),
    Drained(generation::Drained),
}

impl Reloader {
    /// Serves `app` instead of the app served now, without dropping a request: once this
    /// returns `Ok`, new requests, events and service calls go to `app`'s functions,
    /// while invocations already under way finish on the replaced app's executors. Those
    /// are shut down once the replaced app has drained, except the ones `app` hands over
    /// again (a function whose code did not change can keep its warm instances).
    ///
    /// Fails, and the served app keeps serving, when `app` cannot start (a JWKS that does
    /// not parse, queues that cannot be created) or the server does not run; executors
    /// of `app` that no served app uses are then shut down.
    pub async fn reload(&self, app: App) -> anyhow::Result<()> {
        let (done, answer) = oneshot::channel();
        if self.0.send(Reload { app, done }).await.is_err() {
            anyhow::bail!("the server is not running");
        }
        match answer.await {
            Ok(res) => res,
            Err(_) => anyhow::bail!("the server stopped before it took the new app"),
        }
    }
}

/// The route table as `METHOD path -> function` lines, for the start-up banner.
pub fn route_lines(specs: &[FunctionSpec]) -> Vec<String> {
    let mut lines = Vec::new();
    for spec in specs {
        for route in &spec.http_routes {
            lines.push(format!(
                "{:<7} {} -> {}",
                route.method.to_string(),
                route.path,
                spec.name
            ));
        }
    }
    lines
}

impl Shutdown {
    /// A shutdown signal and its trigger.
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (ShutdownTrigger(tx), Shutdown(rx))
    }

    /// Resolves once shutdown was triggered (or its trigger dropped).
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

impl ShutdownTrigger {
    /// Asks every holder of the matching `Shutdown` to stop.
    pub fn trigger(&self) {
        let _ = self.0.send(true);
    }
}
