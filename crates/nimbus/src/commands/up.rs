//! `nimbus up`: serve an app until Ctrl-C.

use std::collections::HashMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use nimbus_core::events::ScheduleEvent;
use nimbus_core::prewarm::{HybridSettings, Policy};
use nimbus_core::services::Services;
use nimbus_core::{Executor, FunctionSpec};
use nimbus_server::{
    EventsConfig, Queues, ServedFunction, Server, ServerConfig, Shutdown, Telemetry,
    TelemetryConfig,
};

use crate::app::{self, Fetch, LoadOptions};
use crate::banner;
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
    /// At most this many instances (and invocations) at once over all functions, like
    /// Lambda's account concurrency; beyond it, 429 TooManyRequestsException. Default:
    /// what fits in 80% of memory at the largest memorySize (10 to 1000).
    #[arg(long)]
    max_instances: Option<usize>,
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
    /// Keep .nimbus/nimbus.db within this size (KB, MB, GB: powers of 1024), deleting the
    /// oldest records, logs and spans first.
    #[arg(long, default_value = "1GB", value_parser = parse_size)]
    retention_size: u64,
    /// Cluster mode: keep the app's queues in NATS JetStream at this URL
    /// (nats://HOST:PORT, several joined by commas), so every nimbus started with the same
    /// URL and app shares them and consumes them together.
    #[arg(long, value_name = "URL")]
    cluster: Option<String>,
    #[command(flatten)]
    prewarm: PrewarmArgs,
    #[command(flatten)]
    listener: crate::listen::ListenerArgs,
}

/// How idle instances are kept warm and pre-warmed.
#[derive(clap::Args)]
pub(crate) struct PrewarmArgs {
    /// How long idle instances stay: `hybrid` learns each function's idle times (stops an
    /// instance after an invocation and starts one just before the next predicted one,
    /// as Azure Functions' hybrid histogram policy does; --idle-timeout until it can
    /// predict), `fixed` keeps every instance --idle-timeout.
    #[arg(long, value_enum, default_value = "hybrid")]
    keep_alive: KeepAlive,
    /// Memory (memorySize, KB, MB, GB: powers of 1024) the instances warm on a prediction
    /// may hold over all functions: pre-warmed (by the histogram, before a schedule) or
    /// kept past --idle-timeout. Past it, instances get the fixed keep-alive. Default: a
    /// quarter of the machine's memory, at least 1GB.
    #[arg(long, value_parser = parse_size)]
    prewarm_budget: Option<u64>,
    /// The width of one bin of the idle-time histograms (240 bins); shorter bins predict
    /// shorter idle times (for tests and trace replays in compressed time). Default: a
    /// fifth of --idle-timeout, at most 1m (the paper's bin at the default 5m).
    #[arg(long, value_parser = duration::parse)]
    prewarm_bin: Option<Duration>,
    /// Idle times a function needs before `hybrid` trusts its histogram.
    #[arg(long, default_value_t = 50)]
    prewarm_min_samples: u32,
}

/// The `--keep-alive` policies.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum KeepAlive {
    Hybrid,
    Fixed,
}

impl PrewarmArgs {
    fn policy(&self, idle_timeout: Duration) -> Policy {
        match self.keep_alive {
            KeepAlive::Fixed => Policy::Fixed(idle_timeout),
            KeepAlive::Hybrid => Policy::Hybrid(HybridSettings {
                bin: self
                    .prewarm_bin
                    .unwrap_or((idle_timeout / 5).min(Duration::from_secs(60)))
                    .max(Duration::from_millis(10)),
                min_samples: self.prewarm_min_samples.max(1),
                ..HybridSettings::with_fallback(idle_timeout)
            }),
        }
    }

    fn budget_mb(&self) -> u64 {
        match self.prewarm_budget {
            Some(bytes) => bytes / (1024 * 1024),
            None => (app::machine_memory_mb() / 4).max(1024),
        }
    }
}

/// Warns about the process functions that never fit in the pre-warm budget: they are
/// served as under the fixed keep-alive. Not an error: the app runs the same, colder.
fn warn_about_prewarm_budget(app: &app::App, budget_mb: u64, keep_alive: KeepAlive) {
    let process_functions = app.manifest.functions.iter().filter(|spec| {
        matches!(
            spec.runtime,
            nimbus_core::Runtime::Node { .. }
                | nimbus_core::Runtime::Python { .. }
                | nimbus_core::Runtime::Provided
        )
    });
    for spec in process_functions {
        let scheduled = spec.events.iter().any(
            |event| matches!(event, nimbus_core::events::EventSource::Schedule(s) if s.enabled),
        );
        let predicts = keep_alive == KeepAlive::Hybrid;
        if u64::from(spec.memory_mb) > budget_mb && (predicts || scheduled) {
            tracing::warn!(
                "--prewarm-budget {budget_mb} MB is smaller than function {}'s memorySize {} MB: it is never pre-warmed{} nor kept warm past --idle-timeout; raise --prewarm-budget to at least {} MB",
                spec.name,
                spec.memory_mb,
                if scheduled {
                    " (not even before its schedule)"
                } else {
                    ""
                },
                spec.memory_mb
            );
        }
    }
}

/// On or off, for flags that read better as words.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Switch {
    On,
    Off,
}

/// Whether the folder is watched for changes (`nimbus dev`) or not (`nimbus up`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Up,
    Dev,
}

/// Starts the executors of a loaded app and makes the `App` the server serves, keeping
/// what must stay the same from one reload to the next.
pub(crate) struct Launcher {
    idle_timeout: Duration,
    /// The keep-alive policy of process functions (`--keep-alive`).
    keep_alive: Policy,
    async_retry_delay: Duration,
    /// The control API, which functions reach through `NIMBUS_API`.
    admin: SocketAddr,
    /// The gateway, whose AWS endpoint functions reach through `AWS_ENDPOINT_URL`.
    gateway: SocketAddr,
    services: Arc<dyn Services>,
    telemetry: Arc<Telemetry>,
    store: nimbus_store::Store,
    /// Cluster mode's connection (`--cluster`): queues live there instead of in `store`.
    cluster: Option<nimbus_nats::Cluster>,
    /// Each function's control-API token, by function name: a reload keeps it, so the
    /// instances of a replaced version stay authorized while they finish.
    tokens: HashMap<String, String>,
    /// The value generated for each API key declared without one, by key name.
    api_keys: HashMap<String, String>,
}

/// An app being served: as loaded (with the environment nimbus adds) and the executor
/// of each of its functions, in manifest order.
pub(crate) struct Launched {
    pub(crate) app: app::App,
    pub(crate) executors: Vec<Arc<dyn Executor>>,
}

/// What a launch made: the app to hand the server, and a line for each API key value it
/// generated.
pub(crate) struct Launch {
    pub(crate) launched: Launched,
    pub(crate) served: nimbus_server::App,
    pub(crate) generated_keys: Vec<String>,
}

impl UpCommand {
    pub(crate) fn execute(self) -> anyhow::Result<ExitCode> {
        crate::runtime()?.block_on(self.serve(Mode::Up))?;
        Ok(ExitCode::SUCCESS)
    }

    /// Serves the app until Ctrl-C; in `Mode::Dev`, reloads it when its folder changes.
    pub(crate) async fn serve(self, mode: Mode) -> anyhow::Result<()> {
        let opts = LoadOptions {
            stage: self.stage.clone(),
            region: self.region.clone(),
            fetch: Fetch::Everything,
        };
        let app = app::load(&self.dir, &opts)?;
        let largest_memory = app.manifest.functions.iter().map(|f| f.memory_mb).max();
        let max_instances = self
            .max_instances
            .unwrap_or_else(|| app::default_max_instances(largest_memory.unwrap_or(1024)));
        app::instance_limit(Some(max_instances)).set_prewarm_budget_mb(self.prewarm.budget_mb());
        tracing::info!("at most {max_instances} instances at once (--max-instances)");
        warn_about_prewarm_budget(&app, self.prewarm.budget_mb(), self.prewarm.keep_alive);
        let state_dir = app.state_dir();
        // Before anything starts: an unreachable cluster is one error naming its URL.
        let cluster = match &self.cluster {
            Some(url) => Some(nimbus_nats::Cluster::connect(url).await?),
            None => None,
        };
        if let Some(record) = UpRecord::read(&state_dir)
            && record.serving()
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
                store.set_retention_size(Some(self.retention_size));
                Some(store.clone())
            }
            Switch::Off => None,
        };
        // In cluster mode every node's invocations and logs are every node's to show.
        if let (Some(cluster), Some(store)) = (&cluster, &telemetry_store) {
            cluster
                .share_telemetry(&cluster_namespace(&app), store.clone())
                .await;
        }
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
        let listener = self.listener.listener(&state_dir)?;
        let cfg = ServerConfig {
            gateway_addr: SocketAddr::new(self.listener.host, self.port),
            stage: app.manifest.stage.clone(),
            queue_wait: self.queue_wait,
            max_queued: self.max_queued,
            max_concurrency: max_instances,
            admin_token: uuid::Uuid::new_v4().simple().to_string(),
            drain_timeout: longest_timeout + Duration::from_secs(1),
            // As LocalStack does, any key is the operator's on a local `nimbus up`.
            aws_keys: nimbus_server::AwsKeys::AnyAsOperator,
            listener: listener.config,
        };
        // Bind first: functions learn the control API's address from their environment.
        let server = Server::bind(cfg.clone()).await?;
        let gateway = server.gateway_addr()?;
        let admin = server.admin_addr()?;
        let mut launcher = Launcher {
            idle_timeout: self.idle_timeout,
            keep_alive: self.prewarm.policy(self.idle_timeout),
            async_retry_delay: self.async_retry_delay,
            admin,
            gateway: server.local_gateway_addr()?,
            services: server.services(),
            telemetry,
            store,
            cluster,
            tokens: HashMap::new(),
            api_keys: HashMap::new(),
        };
        let lambda_cfg = app.lambda_config(self.idle_timeout, launcher.telemetry.clone());
        nimbus_lambda::install_bootstraps(&lambda_cfg).with_context(|| {
            format!(
                "writing runtime bootstraps to {}",
                lambda_cfg.runtime_dir.display()
            )
        })?;
        let launch = launcher.launch(app, |_, _| None).await?;
        let (trigger, shutdown) = Shutdown::new();
        let trigger = Arc::new(trigger);
        tokio::spawn(async move {
            wait_for_stop_signal().await;
            trigger.trigger();
        });
        let reloader = server.reloader();
        // Everything starts (queues, consumers, both listeners) before the banner says
        // "listening": a store that cannot be written fails here, with nothing printed.
        let running = server.start(launch.served, shutdown).await?;
        let pid = std::process::id();
        let record = UpRecord {
            pid,
            started: crate::control::process_identity(pid).map(|identity| identity.started),
            gateway,
            admin,
            token: cfg.admin_token.clone(),
        };
        record.write(&state_dir)?;
        let launched = launch.launched;
        // A schedule fires next at the slot after its stored anchor (the trigger reads the
        // same anchor when it starts), or at once when that slot has passed.
        let mut next_fire = |schedule: &ScheduleEvent| {
            let now = SystemTime::now();
            let anchor = launcher.store.schedule_anchor(&schedule.name, now).ok();
            let next = schedule.expression.next_after(anchor.unwrap_or(now))?;
            Some(next.max(now))
        };
        let base_url = format!("{}://{gateway}", listener.scheme);
        let mut banner_lines = banner::lines(
            &launched.app.manifest,
            listener.scheme,
            gateway,
            &mut next_fire,
        );
        banner_lines.extend(launch.generated_keys);
        banner_lines.push(banner::dashboard_line(admin, &cfg.admin_token));
        banner_lines.push(format!("isolation: {}", crate::app::sandbox().describe()));
        banner_lines.extend(listener.tls_line);
        let (service, stage) = (
            launched.app.manifest.service.clone(),
            launched.app.manifest.stage.clone(),
        );
        // `nimbus dev` watches the folder before the banner says it is ready, so an edit
        // made right after it is seen.
        let watching = match mode {
            Mode::Dev => super::dev::Session::new(opts, launcher, launched, reloader).start(),
            Mode::Up => None,
        };
        print_banner(&service, &stage, &base_url, &banner_lines)?;

        let mut watchers = tokio::task::JoinSet::new();
        if let Some(watching) = watching {
            watchers.spawn(watching.run());
        }
        let res = running.run().await;
        watchers.abort_all();
        let _ = std::fs::remove_file(UpRecord::path(&state_dir));
        tracing::info!("stopped");
        res
    }
}

impl Launcher {
    /// A launcher for an app whose functions reach the control API at `admin` and the
    /// in-process services through `services`, with its telemetry and durable store.
    pub(crate) fn new(
        idle_timeout: Duration,
        async_retry_delay: Duration,
        admin: SocketAddr,
        gateway: SocketAddr,
        services: Arc<dyn Services>,
        telemetry: Arc<Telemetry>,
        store: nimbus_store::Store,
    ) -> Launcher {
        Launcher {
            idle_timeout,
            keep_alive: Policy::Fixed(idle_timeout),
            async_retry_delay,
            admin,
            gateway,
            services,
            telemetry,
            store,
            cluster: None,
            tokens: HashMap::new(),
            api_keys: HashMap::new(),
        }
    }

    /// Where the app's queues live: in cluster mode, every node serving the same service
    /// and stage shares them.
    fn queues(&self, app: &app::App) -> Queues {
        match &self.cluster {
            None => Queues::Embedded,
            Some(cluster) => Queues::Shared(Arc::new(cluster.queues(&cluster_namespace(app)))),
        }
    }

    /// Where the app's KV namespaces live: in cluster mode, shared as its queues are.
    fn kv(&self, app: &app::App) -> Option<Arc<dyn nimbus_core::kv::KvStore>> {
        let cluster = self.cluster.as_ref()?;
        Some(Arc::new(cluster.kv(&cluster_namespace(app))))
    }

    /// Puts the app's queues on the cluster's engine (`nimbus server --cluster`).
    pub(crate) fn with_cluster(mut self, cluster: Option<nimbus_nats::Cluster>) -> Launcher {
        self.cluster = cluster;
        self
    }

    /// Starts an executor for each function of `app`, except where `keep` hands over a
    /// running one for a function (by index and final spec). If one fails to start, those
    /// started so far are shut down.
    pub(crate) async fn launch(
        &mut self,
        mut app: app::App,
        keep: impl Fn(usize, &FunctionSpec) -> Option<Arc<dyn Executor>>,
    ) -> anyhow::Result<Launch> {
        let mut tokens = Vec::new();
        for spec in &mut app.manifest.functions {
            let token = self
                .tokens
                .entry(spec.name.clone())
                .or_insert_with(|| uuid::Uuid::new_v4().simple().to_string())
                .clone();
            spec.environment
                .insert("NIMBUS_API".to_owned(), format!("http://{}", self.admin));
            spec.environment
                .insert("NIMBUS_TOKEN".to_owned(), token.clone());
            // The AWS SDKs find nimbus's endpoint and sign as this function, so its grants
            // apply to SDK calls; an endpoint or keys the manifest sets win.
            let endpoint = match self.gateway.ip() {
                ip if ip.is_unspecified() => {
                    SocketAddr::from(([127, 0, 0, 1], self.gateway.port()))
                }
                _ => self.gateway,
            };
            for (name, value) in [
                ("AWS_ENDPOINT_URL", format!("http://{endpoint}")),
                (
                    "AWS_ACCESS_KEY_ID",
                    nimbus_server::aws_access_key_id(&token),
                ),
                ("AWS_SECRET_ACCESS_KEY", token.clone()),
            ] {
                spec.environment.entry(name.to_owned()).or_insert(value);
            }
            // Queue URLs from the manifest (`Ref` of a queue, `${construct:q.queueUrl}`) lead
            // to the AWS endpoint, as SDKs that send to the queue URL's host expect.
            for value in spec.environment.values_mut() {
                if value.contains(nimbus_core::QUEUE_URL_HOST) {
                    *value =
                        value.replace(nimbus_core::QUEUE_URL_HOST, &format!("http://{endpoint}"));
                }
            }
            tokens.push(token);
        }
        let mut lambda_cfg = app.lambda_config(self.idle_timeout, self.telemetry.clone());
        lambda_cfg.keep_alive = self.keep_alive.clone();
        lambda_cfg.durable_objects = Some(Arc::new(self.store.clone()));
        let mut executors: Vec<Arc<dyn Executor>> = Vec::new();
        let mut started: Vec<Arc<dyn Executor>> = Vec::new();
        for (idx, spec) in app.manifest.functions.iter().enumerate() {
            if let Some(executor) = keep(idx, spec) {
                executors.push(executor);
                continue;
            }
            match app
                .start_executor(idx, &lambda_cfg, self.services.clone())
                .await
            {
                Ok(executor) => {
                    started.push(executor.clone());
                    executors.push(executor);
                }
                Err(e) => {
                    for executor in started {
                        executor.shutdown().await;
                    }
                    return Err(e);
                }
            }
        }
        // A key declared without a value gets one for the life of this server.
        let mut generated_keys = Vec::new();
        for key in &mut app.manifest.policies.api_keys {
            if key.value.is_none() {
                let value = match self.api_keys.get(&key.name) {
                    Some(value) => value.clone(),
                    None => {
                        let value = uuid::Uuid::new_v4().simple().to_string();
                        generated_keys.push(format!("api key {}: {value}", key.name));
                        self.api_keys.insert(key.name.clone(), value.clone());
                        value
                    }
                };
                key.value = Some(value);
            }
        }
        let served = nimbus_server::App {
            functions: app
                .manifest
                .functions
                .iter()
                .zip(executors.iter().zip(tokens))
                .map(|(spec, (executor, token))| ServedFunction {
                    spec: spec.clone(),
                    executor: executor.clone(),
                    token,
                    redactor: app.redactor(spec),
                })
                .collect(),
            telemetry: self.telemetry.clone(),
            events: EventsConfig {
                store: self.store.clone(),
                queues: self.queues(&app),
                kv: self.kv(&app),
                resources: app.manifest.resources.clone(),
                region: app.manifest.region.clone(),
                async_retry_delay: self.async_retry_delay,
            },
            policies: app.manifest.policies.clone(),
        };
        Ok(Launch {
            launched: Launched { app, executors },
            served,
            generated_keys,
        })
    }
}

/// What names an app in a cluster's engine: its service and stage, which every node serving
/// it shares.
fn cluster_namespace(app: &app::App) -> String {
    format!("{}-{}", app.manifest.service, app.manifest.stage)
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
    base_url: &str,
    routes: &[String],
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "nimbus: {service} ({stage}) listening on {base_url}")?;
    for route in routes {
        writeln!(out, "  {route}")?;
    }
    out.flush()?;
    Ok(())
}

/// A size on the command line: a number, then B, KB, MB or GB (powers of 1024).
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size: write it like 500MB or 2GB"))?;
    let scale: u64 = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        _ => {
            return Err(format!(
                "{text:?} has an unknown unit {unit:?}: use B, KB, MB or GB"
            ));
        }
    };
    value
        .checked_mul(scale)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// Ctrl-C or SIGTERM.
pub(crate) async fn wait_for_stop_signal() {
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
