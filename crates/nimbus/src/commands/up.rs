//! `nimbus up`: serve an app until Ctrl-C.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use nimbus_server::{
    EventsConfig, ServedFunction, Server, ServerConfig, Shutdown, Telemetry, TelemetryConfig,
};

use crate::app::{self, LoadOptions};
use crate::control::UpRecord;
use crate::duration;

/// Serve an app's functions over HTTP until Ctrl-C, scaling each from zero.
#[derive(clap::Args)]
pub(crate) struct UpCommand {
    /// The app folder, holding nimbus.yaml or serverless.yml.
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// Gateway port; 0 picks a free one.
    #[arg(long, default_value_t = 3000)]
    port: u16,
    /// Gateway address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Stage, for `${opt:stage}` and `${sls:stage}`.
    #[arg(long)]
    stage: Option<String>,
    /// Region given to functions as AWS_REGION.
    #[arg(long)]
    region: Option<String>,
    /// Stop an instance after it has been idle this long (scale to zero).
    #[arg(long, default_value = "5m", value_parser = duration::parse)]
    idle_timeout: Duration,
    /// How long a request waits for a function at its reservedConcurrency before 429.
    #[arg(long, default_value = "1s", value_parser = duration::parse)]
    queue_wait: Duration,
    /// How many requests may wait per function before 429 at once.
    #[arg(long, default_value_t = 100)]
    max_queued: usize,
    /// Keep invocation records, logs and spans in .nimbus/nimbus.db (off: metrics only).
    #[arg(long, value_enum, default_value = "on")]
    telemetry: Switch,
    /// Wait this long before retrying a failed asynchronous invocation, doubling after
    /// (Lambda waits about a minute).
    #[arg(long, default_value = "1m", value_parser = duration::parse)]
    async_retry_delay: Duration,
    /// Delete records, logs and spans older than this.
    #[arg(long, default_value = "7d", value_parser = duration::parse)]
    retention: Duration,
}

/// On or off, for flags that read better as words.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Switch {
    On,
    Off,
}

impl UpCommand {
    pub(crate) fn execute(self) -> anyhow::Result<ExitCode> {
        crate::runtime()?.block_on(self.run())?;
        Ok(ExitCode::SUCCESS)
    }

    async fn run(self) -> anyhow::Result<()> {
        let mut app = app::load(
            &self.dir,
            &LoadOptions {
                stage: self.stage.clone(),
                region: self.region.clone(),
            },
        )?;
        let state_dir = app.state_dir();
        if let Some(record) = UpRecord::read(&state_dir)
            && process_alive(record.pid)
        {
            anyhow::bail!(
                "another nimbus (pid {}) is already serving {} on http://{}: stop it first",
                record.pid,
                app.dir.display(),
                record.gateway
            );
        }
        let store = nimbus_store::Store::open(&state_dir)
            .with_context(|| format!("opening the store in {}", state_dir.display()))?;
        let telemetry_store = match self.telemetry {
            Switch::On => {
                spawn_pruner(store.clone(), self.retention);
                Some(store.clone())
            }
            Switch::Off => None,
        };
        let telemetry = Arc::new(Telemetry::new(TelemetryConfig {
            store: telemetry_store,
            otlp_endpoint: std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
                .ok()
                .filter(|v| !v.is_empty()),
            echo_function_output: true,
        }));
        let longest_timeout = app
            .manifest
            .functions
            .iter()
            .map(|f| f.timeout)
            .max()
            .unwrap_or(Duration::ZERO);
        let cfg = ServerConfig {
            gateway_addr: SocketAddr::new(self.host, self.port),
            stage: app.manifest.stage.clone(),
            queue_wait: self.queue_wait,
            max_queued: self.max_queued,
            admin_token: uuid::Uuid::new_v4().simple().to_string(),
            drain_timeout: longest_timeout + Duration::from_secs(1),
        };
        // Bind first: functions learn the control API's address from their environment.
        let server = Server::bind(cfg.clone()).await?;
        let gateway = server.gateway_addr()?;
        let admin = server.admin_addr()?;
        let mut tokens = Vec::new();
        for spec in &mut app.manifest.functions {
            let token = uuid::Uuid::new_v4().simple().to_string();
            spec.environment
                .insert("NIMBUS_API".to_owned(), format!("http://{admin}"));
            spec.environment
                .insert("NIMBUS_TOKEN".to_owned(), token.clone());
            tokens.push(token);
        }
        let lambda_cfg = app.lambda_config(self.idle_timeout, telemetry.clone());
        nimbus_lambda::install_bootstraps(&lambda_cfg).with_context(|| {
            format!(
                "writing runtime bootstraps to {}",
                lambda_cfg.runtime_dir.display()
            )
        })?;
        let mut served = Vec::new();
        for ((idx, spec), token) in app.manifest.functions.iter().enumerate().zip(tokens) {
            let executor = app
                .start_executor(idx, &lambda_cfg, server.services())
                .await?;
            served.push(ServedFunction {
                spec: spec.clone(),
                executor,
                token,
            });
        }
        let record = UpRecord {
            pid: std::process::id(),
            gateway,
            admin,
            token: cfg.admin_token.clone(),
        };
        record.write(&state_dir)?;
        // A key declared without a value gets one for the life of this server.
        let mut generated_keys = Vec::new();
        for key in &mut app.manifest.policies.api_keys {
            if key.value.is_none() {
                let value = uuid::Uuid::new_v4().simple().to_string();
                generated_keys.push(format!("api key {}: {value}", key.name));
                key.value = Some(value);
            }
        }
        let mut banner_lines = nimbus_server::route_lines(&app.manifest.functions);
        banner_lines.extend(generated_keys);
        print_banner(
            &app.manifest.service,
            &app.manifest.stage,
            gateway,
            &banner_lines,
        )?;
        let served_app = nimbus_server::App {
            functions: served,
            telemetry,
            events: EventsConfig {
                store,
                resources: app.manifest.resources.clone(),
                region: app.manifest.region.clone(),
                async_retry_delay: self.async_retry_delay,
            },
            policies: app.manifest.policies.clone(),
        };

        let (trigger, shutdown) = Shutdown::new();
        let trigger = Arc::new(trigger);
        tokio::spawn(async move {
            wait_for_stop_signal().await;
            trigger.trigger();
        });
        let res = server.run(served_app, shutdown).await;
        let _ = std::fs::remove_file(UpRecord::path(&state_dir));
        tracing::info!("stopped");
        res
    }
}

/// Applies the retention limit now and every ten minutes.
fn spawn_pruner(store: nimbus_store::Store, retention: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(600));
        loop {
            tick.tick().await;
            let store = store.clone();
            let res = tokio::task::spawn_blocking(move || {
                store.prune(std::time::SystemTime::now() - retention)
            })
            .await;
            match res {
                Ok(Ok(n_deleted)) if n_deleted > 0 => {
                    tracing::debug!("retention: deleted {n_deleted} old records");
                }
                Ok(Err(e)) => tracing::warn!("applying retention: {e}"),
                _ => {}
            }
        }
    });
}

fn print_banner(
    service: &str,
    stage: &str,
    gateway: SocketAddr,
    routes: &[String],
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "nimbus: {service} ({stage}) listening on http://{gateway}"
    )?;
    for route in routes {
        writeln!(out, "  {route}")?;
    }
    out.flush()?;
    Ok(())
}

/// Ctrl-C or SIGTERM.
async fn wait_for_stop_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            tracing::warn!("cannot listen for SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill(2) with signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}
