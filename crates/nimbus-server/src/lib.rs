//! The HTTP face of nimbus: the API Gateway-compatible gateway that turns requests into
//! events, the loopback control API (`nimbus invoke` against a running app), the
//! per-function concurrency limits, and graceful shutdown.
//!
//! This crate never sees a process or a Wasm engine: functions arrive as
//! `Arc<dyn Executor>` values, so it is tested with a fake executor.

mod admin;
mod error;
mod functions;
mod gateway;
mod telemetry;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use nimbus_core::{Executor, FunctionSpec};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::functions::Functions;
pub use crate::telemetry::{Telemetry, TelemetryConfig, TraceContext};

/// A function and the executor that invokes it.
pub struct ServedFunction {
    /// What the manifest says about the function.
    pub spec: FunctionSpec,
    /// Runs its invocations.
    pub executor: Arc<dyn Executor>,
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
    /// Bearer token of the control API, which listens on loopback only.
    pub admin_token: String,
    /// How long shutdown waits for in-flight requests before stopping instances anyway.
    pub drain_timeout: Duration,
}

/// A bound, not yet running server.
pub struct Server {
    cfg: ServerConfig,
    functions: Arc<Functions>,
    gateway: TcpListener,
    admin: TcpListener,
}

/// Resolves when the owner asks the server to stop.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// The sending side of a `Shutdown`.
pub struct ShutdownTrigger(watch::Sender<bool>);

impl Server {
    /// Binds the gateway (at `cfg.gateway_addr`) and the control API (loopback, any port).
    pub async fn bind(
        cfg: ServerConfig,
        functions: Vec<ServedFunction>,
        telemetry: Arc<Telemetry>,
    ) -> anyhow::Result<Server> {
        let gateway = TcpListener::bind(cfg.gateway_addr)
            .await
            .with_context(|| format!("binding the gateway to {}", cfg.gateway_addr))?;
        // The control API invokes any function: it listens on loopback only.
        let admin = TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("binding the control API on 127.0.0.1")?;
        let functions = Arc::new(Functions::new(functions, &cfg, telemetry));
        Ok(Server {
            cfg,
            functions,
            gateway,
            admin,
        })
    }

    /// The address the gateway listens on.
    pub fn gateway_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.gateway.local_addr()?)
    }

    /// The address the control API listens on.
    pub fn admin_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.admin.local_addr()?)
    }

    /// The route table as `METHOD path -> function` lines, for the start-up banner.
    pub fn route_lines(&self) -> Vec<String> {
        self.functions.route_lines()
    }

    /// Serves until `shutdown`, then drains in-flight requests (up to the drain timeout)
    /// and stops every instance.
    pub async fn run(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let Server {
            cfg,
            functions,
            gateway,
            admin,
        } = self;
        let gateway_app = gateway::router(functions.clone(), &cfg);
        let admin_app = admin::router(functions.clone(), &cfg);
        let mut services = tokio::task::JoinSet::new();
        for (listener, app) in [(gateway, gateway_app), (admin, admin_app)] {
            let mut shutdown = shutdown.clone();
            services.spawn(async move {
                axum::serve(
                    listener,
                    app.into_make_service_with_connect_info::<SocketAddr>(),
                )
                .with_graceful_shutdown(async move { shutdown.wait().await })
                .await
            });
        }
        let mut shutdown_signal = shutdown.clone();
        shutdown_signal.wait().await;
        tracing::info!("shutting down: draining in-flight requests");
        let drained = tokio::time::timeout(cfg.drain_timeout, async {
            while let Some(res) = services.join_next().await {
                if let Ok(Err(e)) = res {
                    tracing::warn!("server stopped with an error: {e}");
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
        functions.shutdown().await;
        let telemetry = functions.telemetry.clone();
        // The store writes on its own thread; wait for it off the async workers.
        let _ = tokio::task::spawn_blocking(move || telemetry.flush()).await;
        Ok(())
    }
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
