//! `nimbus server`: a long-running host for many apps. Deployed bundles become numbered
//! versions of a (service, stage); aliases (`live`, and any other name) point at one
//! version or two with weights; the gateway routes `/{service}/{stage}/...` to them.
//!
//! The deploy records, the admin API and the apps table are `nimbus_server::host`'s;
//! this file parses the flags, hands the host a loader of apps (`app::load` and the
//! executors' `Launcher`), and prints.

pub(crate) mod credentials;

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use nimbus_core::BoxFuture;
use nimbus_server::host::wire::AppName;
use nimbus_server::host::{
    Host, HostConfig, LaunchRequest, LoadTarget, Refusal, VersionLoader, tokens,
};
use nimbus_server::{App, AppsConfig, AppsServer, Shutdown};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::app::{self, Fetch, LoadOptions, ManifestErrors};
use crate::commands::up::Launcher;
use crate::duration;

/// Host many apps: `nimbus deploy --to URL` sends them here.
#[derive(clap::Args)]
pub(crate) struct ServerCommand {
    #[command(subcommand)]
    command: Option<ServerSubcommand>,
    /// The server's state folder: tokens, versions and each stage's durable state.
    #[arg(long, global = true, default_value = ".nimbus-server")]
    state: PathBuf,
    /// Gateway port (on --host); 0 picks a free one.
    #[arg(long, default_value_t = 3000)]
    port: u16,
    /// Admin API port (on --admin-host); 0 picks a free one.
    #[arg(long, default_value_t = 3001)]
    admin_port: u16,
    /// The admin API's address (default: --host). It has the gateway's TLS, deadlines and
    /// connection limits, and answers only requests with an admin token.
    #[arg(long)]
    admin_host: Option<std::net::IpAddr>,
    /// Stop an instance after it has been idle this long (scale to zero).
    #[arg(long, default_value = "5m", value_parser = duration::parse)]
    idle_timeout: Duration,
    /// The gateway's address, TLS, connection limits and deadlines (the admin API's too).
    #[command(flatten)]
    listener: crate::listen::ListenerArgs,
    /// Keep each stage's store within this size (KB, MB, GB: powers of 1024), deleting
    /// the oldest records, logs and spans first.
    #[arg(long, default_value = "1GB", value_parser = super::up::parse_size)]
    retention_size: u64,
    /// At most this many instances at once over every deployed app, and invocations at
    /// once per app; beyond it, 429 TooManyRequestsException. Default: what fits in 80%
    /// of memory at 1024 MB each (10 to 1000).
    #[arg(long)]
    max_instances: Option<usize>,
    /// Cluster mode: keep every app's queues in NATS JetStream at this URL
    /// (nats://HOST:PORT, several joined by commas), shared with every nimbus server or
    /// `nimbus up` given the same URL that serves the same (service, stage).
    #[arg(long, value_name = "URL")]
    cluster: Option<String>,
}

#[derive(clap::Subcommand)]
enum ServerSubcommand {
    /// Manage the bearer tokens of the admin API.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
}

#[derive(clap::Subcommand)]
enum TokenAction {
    /// Make a new token and print it (only its SHA-256 is stored).
    Create,
    /// Revoke a token, given whole or by id.
    Revoke { token_or_id: String },
    /// List the tokens' ids and when they were made.
    Ls,
}

/// What the host's main loop waits for.
enum Event {
    Shutdown,
    Stopped(&'static str),
}

impl ServerCommand {
    pub(crate) fn execute(self) -> anyhow::Result<ExitCode> {
        match self.command {
            Some(ServerSubcommand::Token { action }) => token_command(&self.state, action),
            None => {
                let state = self.state.clone();
                crate::runtime()?.block_on(self.serve(state))?;
                Ok(ExitCode::SUCCESS)
            }
        }
    }

    async fn serve(self, state: PathBuf) -> anyhow::Result<()> {
        // Before anything starts: an unreachable cluster is one error naming its URL.
        let cluster = match &self.cluster {
            Some(url) => Some(nimbus_nats::Cluster::connect(url).await?),
            None => None,
        };
        let max_instances = app::instance_limit(self.max_instances).max();
        tracing::info!("at most {max_instances} instances at once (--max-instances)");
        std::fs::create_dir_all(state.join("apps"))
            .with_context(|| format!("creating the state folder {}", state.display()))?;
        let state = state
            .canonicalize()
            .with_context(|| format!("opening {}", state.display()))?;
        let listener = self.listener.listener(&state)?;
        let apps_server = AppsServer::bind(AppsConfig {
            gateway_addr: SocketAddr::new(self.listener.host, self.port),
            // Functions reach the control API from this machine only.
            control_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            listener: listener.config.clone(),
            drain_timeout: Duration::from_secs(30),
        })
        .await?;
        let admin_host = self.admin_host.unwrap_or(self.listener.host);
        if listener.config.tls.is_none() && !admin_host.is_loopback() {
            tracing::warn!(
                "the admin API listens on {admin_host} without TLS: admin tokens cross the network in the clear (--tls-cert/--tls-key or --tls-dev)"
            );
        }
        let admin = TcpListener::bind((admin_host, self.admin_port))
            .await
            .with_context(|| {
                format!(
                    "binding the admin API to {}",
                    SocketAddr::new(admin_host, self.admin_port)
                )
            })?;
        let gateway_addr = apps_server.gateway_addr()?;
        let (trigger, shutdown) = Shutdown::new();
        let host_cfg = HostConfig {
            state: state.clone(),
            retention_size: self.retention_size,
            max_concurrency: app::instance_limit(None).max(),
        };
        let loader = Arc::new(AppLoader {
            idle_timeout: self.idle_timeout,
            cluster: cluster.clone(),
        });
        // In cluster mode a deploy through any node reaches every node.
        let host = match &cluster {
            Some(cluster) => Host::new_shared(
                host_cfg,
                &apps_server,
                loader,
                shutdown.clone(),
                Arc::new(cluster.deploys()),
            )?,
            None => Host::new(host_cfg, &apps_server, loader, shutdown.clone())?,
        };
        let operator_dir = credentials::dir(&state);
        apps_server
            .apps()
            .set_operator_keys(Arc::new(move |key: &str| {
                credentials::lookup(&operator_dir, key)
            }));
        host.restore().await;
        if cluster.is_some() {
            let (host, shutdown) = (host.clone(), shutdown.clone());
            tokio::spawn(async move {
                if let Err(e) = host.follow(shutdown).await {
                    tracing::error!("following the cluster's deploys: {e:#}");
                }
            });
        }
        if tokens::read(&state).map_or(true, |t| t.is_empty()) {
            tracing::warn!(
                "no admin token yet: `nimbus server token create --state {}` makes one",
                state.display()
            );
        }
        let admin_addr = admin.local_addr()?;
        let mut listeners = JoinSet::new();
        listeners.spawn({
            let shutdown = shutdown.clone();
            async move {
                if let Err(e) = apps_server.run(shutdown).await {
                    tracing::warn!("{e:#}");
                }
            }
        });
        // The admin API has the gateway's TLS and limits.
        let admin_cfg = listener.config.clone();
        listeners.spawn({
            let host = host.clone();
            let shutdown = shutdown.clone();
            async move { host.serve_admin(admin, admin_cfg, shutdown).await }
        });
        // Said once both listeners run and the stored versions have started.
        {
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "nimbus: server listening on {}://{gateway_addr}",
                listener.scheme
            )?;
            writeln!(
                out,
                "nimbus: admin API on {}://{admin_addr}",
                listener.scheme
            )?;
            if let Some(line) = &listener.tls_line {
                writeln!(out, "nimbus: {line}")?;
            }
            out.flush()?;
        }
        let event = tokio::select! {
            () = super::up::wait_for_stop_signal() => Event::Shutdown,
            Some(res) = listeners.join_next() => Event::Stopped(match res {
                Ok(()) => "a listener",
                Err(_) => "a listener task",
            }),
        };
        if let Event::Stopped(what) = event {
            tracing::warn!("{what} stopped; shutting down");
        }
        tracing::info!("shutting down: stopping every version");
        trigger.trigger();
        while listeners.join_next().await.is_some() {}
        host.shutdown().await;
        tracing::info!("stopped");
        Ok(())
    }
}

fn token_command(state: &Path, action: TokenAction) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match action {
        TokenAction::Create => {
            let token = tokens::create(state)?;
            writeln!(out, "{token}")?;
        }
        TokenAction::Revoke { token_or_id } => {
            let id = tokens::revoke(state, &token_or_id)?;
            writeln!(out, "revoked token {id}")?;
        }
        TokenAction::Ls => {
            for token in tokens::read(state)? {
                writeln!(out, "{}  created {}", token.id, token.created)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Loads deployed versions as `nimbus up` loads an app.
struct AppLoader {
    idle_timeout: Duration,
    /// Cluster mode's connection (`--cluster`), shared by every app's queues.
    cluster: Option<nimbus_nats::Cluster>,
}

impl VersionLoader for AppLoader {
    fn unpack(&self, bundle: &[u8], dir: &Path) -> anyhow::Result<()> {
        crate::bundle::unpack(bundle, dir)
    }

    fn check(&self, dir: &Path, target: &LoadTarget) -> Result<AppName, Refusal> {
        match app::load(dir, &load_options(target)) {
            Ok(app) => Ok(AppName {
                service: app.manifest.service,
                stage: app.manifest.stage,
            }),
            Err(e) => Err(Refusal {
                message: format!("{e:#}"),
                diagnostics: e
                    .downcast_ref::<ManifestErrors>()
                    .map(|errors| errors.0.clone())
                    .unwrap_or_default(),
            }),
        }
    }

    fn launch(&self, req: LaunchRequest) -> BoxFuture<'static, anyhow::Result<App>> {
        let idle_timeout = self.idle_timeout;
        let cluster = self.cluster.clone();
        Box::pin(async move {
            let dir = req.dir.clone();
            let opts = load_options(&req.target);
            let app = tokio::task::spawn_blocking(move || app::load(&dir, &opts))
                .await
                .context("loading the version")??;
            let lambda_cfg = app.lambda_config(idle_timeout, req.telemetry.clone());
            nimbus_lambda::install_bootstraps(&lambda_cfg).context("writing runtime bootstraps")?;
            let mut launcher = Launcher::new(
                idle_timeout,
                Duration::from_secs(60),
                req.control,
                req.gateway,
                req.services,
                req.telemetry,
                req.store,
            )
            .with_cluster(cluster);
            Ok(launcher.launch(app, |_, _| None).await?.served)
        })
    }
}

fn load_options(target: &LoadTarget) -> LoadOptions {
    LoadOptions {
        stage: Some(target.stage.clone()),
        region: target.region.clone(),
        fetch: Fetch::Everything,
    }
}
