//! `nimbus server`: a long-running host for many apps. Deployed bundles become numbered
//! versions of a (service, stage); aliases (`live`, and any other name) point at one
//! version or two with weights; the gateway routes `/{service}/{stage}/...` to them.
//!
//! Every running version is a `nimbus_server::Version` in one apps table, served by one
//! gateway, one control API and one AWS endpoint (`nimbus_server::AppsServer`); this file
//! keeps the deploy records and the admin API. Versions no alias points at any more are
//! drained (nothing in flight through them) and stopped.

pub(crate) mod credentials;
mod record;
pub(crate) mod tokens;

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use nimbus_server::{
    AliasTargets, Apps, AppsConfig, AppsServer, Shutdown, Telemetry, TelemetryConfig, Version,
    VersionConfig,
};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use self::record::StageRecord;
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
    /// Admin API port (127.0.0.1); 0 picks a free one.
    #[arg(long, default_value_t = 3001)]
    admin_port: u16,
    /// Stop an instance after it has been idle this long (scale to zero).
    #[arg(long, default_value = "5m", value_parser = duration::parse)]
    idle_timeout: Duration,
    /// The gateway's address, TLS, connection limits and deadlines (the admin API has the
    /// same limits, on 127.0.0.1 without TLS).
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

/// The largest bundle the admin API takes, compressed.
const MAX_BUNDLE_BYTES: usize = 256 << 20;

/// The running host: what the admin API changes and the gateway reads.
struct Host {
    state: PathBuf,
    idle_timeout: Duration,
    /// `--retention-size` of each stage's store.
    retention_size: u64,
    /// What the gateway routes by, and every running version's functions.
    apps: Arc<Apps>,
    /// The gateway in plain HTTP, which functions' AWS SDKs reach through
    /// `AWS_ENDPOINT_URL`.
    gateway: SocketAddr,
    /// The control API, which functions reach through `NIMBUS_API`.
    control: SocketAddr,
    stages: tokio::sync::Mutex<Stages>,
    /// The web dashboard at `/_nimbus` on the admin port, behind the same tokens.
    dashboard: nimbus_server::AppsDashboard,
}

struct Stages {
    by_name: BTreeMap<(String, String), Stage>,
    /// Versions draining, then stopping.
    retiring: JoinSet<()>,
}

/// One (service, stage): its record, its durable store shared by its versions, and the
/// versions running now.
struct Stage {
    service: String,
    stage: String,
    dir: PathBuf,
    record: StageRecord,
    store: nimbus_store::Store,
    telemetry: Arc<Telemetry>,
    running: BTreeMap<u64, Version>,
}

/// An admin API failure: status, message, and the manifest's diagnostics if any.
struct ApiError(StatusCode, String, Vec<String>);

type Body = BoxBody<Bytes, hyper::Error>;

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
        let admin = TcpListener::bind((Ipv4Addr::LOCALHOST, self.admin_port))
            .await
            .with_context(|| format!("binding the admin API to 127.0.0.1:{}", self.admin_port))?;
        let gateway_addr = apps_server.gateway_addr()?;
        let (trigger, shutdown) = Shutdown::new();
        let tokens_state = state.clone();
        let dashboard = nimbus_server::AppsDashboard::new(
            apps_server.apps(),
            Arc::new(move |token: &str| tokens::is_valid(&tokens_state, token)),
            shutdown.clone(),
        );
        let host = Arc::new(Host {
            state: state.clone(),
            idle_timeout: self.idle_timeout,
            retention_size: self.retention_size,
            apps: apps_server.apps(),
            gateway: apps_server.local_gateway_addr()?,
            control: apps_server.control_addr()?,
            stages: tokio::sync::Mutex::new(Stages {
                by_name: BTreeMap::new(),
                retiring: JoinSet::new(),
            }),
            dashboard,
        });
        let operator_dir = credentials::dir(&state);
        host.apps.set_operator_keys(Arc::new(move |key: &str| {
            credentials::lookup(&operator_dir, key)
        }));
        host.restore().await;
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
        listeners.spawn(admin_loop(
            admin,
            host.clone(),
            listener.config.header_timeout,
            shutdown.clone(),
        ));
        // Said once both listeners run and the stored versions have started.
        {
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "nimbus: server listening on {}://{gateway_addr}",
                listener.scheme
            )?;
            writeln!(out, "nimbus: admin API on http://{admin_addr}")?;
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

/// Serves the admin API on `listener` until `shutdown`.
async fn admin_loop(
    listener: TcpListener,
    host: Arc<Host>,
    header_timeout: Duration,
    mut shutdown: Shutdown,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let host = host.clone();
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let host = host.clone();
                        async move { Ok::<_, std::convert::Infallible>(host.admin(req).await) }
                    });
                    let stream = nimbus_server::StrictHeads::new(stream);
                    let _ = nimbus_server::http1_builder(header_timeout)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            Some(_) = connections.join_next() => {}
            () = shutdown.wait() => break,
        }
    }
    // Requests under way get a moment; kept-alive idle connections are closed.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    connections.abort_all();
}

impl Host {
    /// The admin API: every call needs a valid bearer token.
    async fn admin(self: &Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        if nimbus_server::AppsDashboard::handles(req.uri().path()) {
            return self.dashboard.serve(req).await.map(|body| body.boxed());
        }
        let token = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_owned);
        let state = self.state.clone();
        let authorized = match token {
            Some(token) => tokio::task::spawn_blocking(move || tokens::is_valid(&state, &token))
                .await
                .unwrap_or(false),
            None => false,
        };
        if !authorized {
            return message(StatusCode::UNAUTHORIZED, "Unauthorized");
        }
        match self.admin_call(req).await {
            Ok(value) => json(StatusCode::OK, &value),
            Err(ApiError(status, text, diagnostics)) => {
                let mut value = serde_json::json!({ "message": text });
                if !diagnostics.is_empty() {
                    value["diagnostics"] = serde_json::json!(diagnostics);
                }
                json(status, &value)
            }
        }
    }

    async fn admin_call(
        self: &Arc<Self>,
        req: Request<Incoming>,
    ) -> Result<serde_json::Value, ApiError> {
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let query = parse_query(req.uri().query().unwrap_or(""));
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let body = Limited::new(req.into_body(), MAX_BUNDLE_BYTES)
            .collect()
            .await
            .map_err(|e| client_error(format!("reading the request body: {e}")))?
            .to_bytes();
        match (&method, segments.as_slice()) {
            (&Method::POST, ["v1", "deployments"]) => {
                let service = query.get("service").cloned().unwrap_or_default();
                let stage = query.get("stage").cloned().unwrap_or_default();
                let canary = match query.get("canary") {
                    Some(p) => Some(parse_percent(p).map_err(client_error)?),
                    None => None,
                };
                let region = query.get("region").cloned();
                self.deploy(&service, &stage, canary, region, body).await
            }
            (&Method::GET, ["v1", "apps"]) => {
                let stages = self.stages.lock().await;
                let apps: Vec<serde_json::Value> = stages
                    .by_name
                    .keys()
                    .map(|(service, stage)| serde_json::json!({ "service": service, "stage": stage }))
                    .collect();
                Ok(serde_json::json!({ "apps": apps }))
            }
            (&Method::GET, ["v1", "apps", service, stage, "versions"]) => {
                let stages = self.stages.lock().await;
                let stage = find(&stages, service, stage)?;
                Ok(stage.record.to_json())
            }
            (&Method::PUT, ["v1", "apps", service, stage, "aliases", alias]) => {
                check_name(alias).map_err(client_error)?;
                let value: serde_json::Value = serde_json::from_slice(&body)
                    .map_err(|e| client_error(format!("the body is not JSON: {e}")))?;
                let targets: Option<Vec<(u64, u32)>> = value["targets"].as_array().map(|list| {
                    list.iter()
                        .filter_map(|t| {
                            let weight = t.get("weight").map_or(Some(100), |w| {
                                w.as_u64().and_then(|w| u32::try_from(w).ok())
                            })?;
                            Some((t["version"].as_u64()?, weight))
                        })
                        .collect()
                });
                let Some(targets) = targets else {
                    return Err(client_error(
                        "expected {\"targets\": [{\"version\": N, \"weight\": W}]}".to_owned(),
                    ));
                };
                self.change(service, stage, |record| {
                    record.set_alias(alias, targets).map(|()| 0)
                })
                .await
            }
            (&Method::POST, ["v1", "apps", service, stage, "promote"]) => {
                self.change(service, stage, StageRecord::promote).await
            }
            (&Method::POST, ["v1", "apps", service, stage, "rollback"]) => {
                self.change(service, stage, StageRecord::rollback).await
            }
            _ => Err(ApiError(
                StatusCode::NOT_FOUND,
                format!("no admin call {method} {path}"),
                Vec::new(),
            )),
        }
    }

    /// Unpacks and checks a bundle, starts it as the next version and points `live` at
    /// it (or gives it the canary share).
    async fn deploy(
        self: &Arc<Self>,
        service: &str,
        stage_name: &str,
        canary: Option<u32>,
        region: Option<String>,
        bundle: Bytes,
    ) -> Result<serde_json::Value, ApiError> {
        check_name(service).map_err(client_error)?;
        check_name(stage_name).map_err(client_error)?;
        let mut stages = self.stages.lock().await;
        let key = (service.to_owned(), stage_name.to_owned());
        if !stages.by_name.contains_key(&key) {
            let stage = self
                .open_stage(service, stage_name, StageRecord::default())
                .map_err(platform_error)?;
            stages.by_name.insert(key.clone(), stage);
        }
        let stage = stages
            .by_name
            .get_mut(&key)
            .expect("inserted above when missing");
        let upload = stage
            .dir
            .join("versions")
            .join(format!(".upload-{}", uuid::Uuid::new_v4().simple()));
        let res = check_bundle(
            &upload,
            &stage.dir.join("state"),
            service,
            stage_name,
            region.clone(),
            bundle,
        )
        .await;
        if let Err(e) = res {
            let _ = std::fs::remove_dir_all(&upload);
            return Err(e);
        }
        let number = stage.record.next_version();
        let dir = stage.dir.join("versions").join(number.to_string());
        if let Err(e) = std::fs::rename(&upload, &dir) {
            let _ = std::fs::remove_dir_all(&upload);
            return Err(platform_error(anyhow::anyhow!("storing the version: {e}")));
        }
        let running = match self.start_version(stage, number, region.clone()).await {
            Ok(running) => running,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(ApiError(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("version {number} did not start: {e:#}"),
                    Vec::new(),
                ));
            }
        };
        stage.running.insert(number, running);
        let mut record = stage.record.clone();
        record.add(number, unix_now(), canary);
        if let Some(region) = region {
            record.regions.insert(number, region);
        }
        self.commit(&mut stages, &key, record)
            .map_err(platform_error)?;
        let stage = find(&stages, service, stage_name)?;
        let mut value = stage.record.to_json();
        value["deployed"] = serde_json::json!(number);
        Ok(value)
    }

    /// Applies an alias move to the record of (service, stage), then routes by it.
    async fn change(
        &self,
        service: &str,
        stage: &str,
        apply: impl FnOnce(&mut StageRecord) -> anyhow::Result<u64>,
    ) -> Result<serde_json::Value, ApiError> {
        let mut stages = self.stages.lock().await;
        let mut record = find(&stages, service, stage)?.record.clone();
        apply(&mut record)
            .map_err(|e| ApiError(StatusCode::CONFLICT, format!("{e:#}"), Vec::new()))?;
        let key = (service.to_owned(), stage.to_owned());
        for version in record.referenced() {
            let stage = stages.by_name.get_mut(&key).expect("found above");
            if !stage.running.contains_key(&version) {
                let running = self
                    .start_version(stage, version, record.regions.get(&version).cloned())
                    .await
                    .map_err(|e| {
                        ApiError(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            format!("version {version} did not start: {e:#}"),
                            Vec::new(),
                        )
                    })?;
                stage.running.insert(version, running);
            }
        }
        self.commit(&mut stages, &key, record)
            .map_err(platform_error)?;
        Ok(find(&stages, service, stage)?.record.to_json())
    }

    /// Stores `record` as the stage's, publishes the routes and retires the versions no
    /// alias points at any more.
    fn commit(
        &self,
        stages: &mut Stages,
        key: &(String, String),
        record: StageRecord,
    ) -> anyhow::Result<()> {
        let stage = stages.by_name.get_mut(key).expect("the caller found it");
        record.write(&stage.dir.join("stage.json"))?;
        stage.record = record;
        let referenced = stage.record.referenced();
        let unreferenced: Vec<u64> = stage
            .running
            .keys()
            .copied()
            .filter(|v| !referenced.contains(v))
            .collect();
        let retired: Vec<Version> = unreferenced
            .iter()
            .filter_map(|v| stage.running.remove(v))
            .collect();
        self.publish(stages);
        for version in retired {
            stages.retiring.spawn(version.stop());
        }
        Ok(())
    }

    /// Routes by the aliases of every stage as they are now.
    fn publish(&self, stages: &Stages) {
        let mut aliases = Vec::new();
        for stage in stages.by_name.values() {
            for (alias, targets) in &stage.record.aliases {
                aliases.push(AliasTargets {
                    service: stage.service.clone(),
                    stage: stage.stage.clone(),
                    alias: alias.clone(),
                    targets: targets
                        .iter()
                        .filter_map(|(v, w)| Some((stage.running.get(v)?.target(), *w)))
                        .collect(),
                });
            }
        }
        self.apps.publish(aliases);
    }

    fn open_stage(&self, service: &str, stage: &str, record: StageRecord) -> anyhow::Result<Stage> {
        let dir = self.state.join("apps").join(service).join(stage);
        let state_dir = dir.join("state");
        std::fs::create_dir_all(&state_dir)
            .with_context(|| format!("creating {}", state_dir.display()))?;
        std::fs::create_dir_all(dir.join("versions"))
            .with_context(|| format!("creating {}", dir.display()))?;
        let store = nimbus_store::Store::open(&state_dir)
            .with_context(|| format!("opening the store in {}", state_dir.display()))?;
        store.set_retention_size(Some(self.retention_size));
        let telemetry = Arc::new(Telemetry::new(TelemetryConfig {
            store: Some(store.clone()),
            otlp_endpoint: None,
            echo_function_output: true,
        }));
        Ok(Stage {
            service: service.to_owned(),
            stage: stage.to_owned(),
            dir,
            record,
            store,
            telemetry,
            running: BTreeMap::new(),
        })
    }

    /// Starts version `number` of `stage` in the apps table; requests reach it once an
    /// alias points at it.
    async fn start_version(
        &self,
        stage: &Stage,
        number: u64,
        region: Option<String>,
    ) -> anyhow::Result<Version> {
        let dir = stage.dir.join("versions").join(number.to_string());
        let opts = LoadOptions {
            stage: Some(stage.stage.clone()),
            region,
            fetch: Fetch::Everything,
        };
        let app = tokio::task::spawn_blocking(move || app::load(&dir, &opts))
            .await
            .context("loading the version")??;
        let cfg = VersionConfig {
            number,
            stage: app.manifest.stage.clone(),
            queue_wait: Duration::from_secs(1),
            max_queued: 100,
            max_concurrency: app::instance_limit(None).max(),
        };
        let slot = self.apps.slot();
        let mut launcher = Launcher::new(
            self.idle_timeout,
            Duration::from_secs(60),
            self.control,
            self.gateway,
            slot.services(),
            stage.telemetry.clone(),
            stage.store.clone(),
        );
        let lambda_cfg = app.lambda_config(self.idle_timeout, stage.telemetry.clone());
        nimbus_lambda::install_bootstraps(&lambda_cfg).context("writing runtime bootstraps")?;
        let launch = launcher.launch(app, |_, _| None).await?;
        let version = self.apps.start(slot, cfg, launch.served).await?;
        tracing::info!(
            service = stage.service,
            stage = stage.stage,
            "version {number} serving"
        );
        Ok(version)
    }

    /// Opens every stage in the state folder and starts the versions its aliases use.
    async fn restore(&self) {
        let mut stages = self.stages.lock().await;
        let apps = self.state.join("apps");
        let Ok(services) = std::fs::read_dir(&apps) else {
            return;
        };
        for service in services.flatten() {
            let Ok(stage_dirs) = std::fs::read_dir(service.path()) else {
                continue;
            };
            for stage_dir in stage_dirs.flatten() {
                let path = stage_dir.path().join("stage.json");
                if !path.is_file() {
                    continue;
                }
                let service = service.file_name().to_string_lossy().into_owned();
                let stage_name = stage_dir.file_name().to_string_lossy().into_owned();
                let res = async {
                    let record = StageRecord::read(&path)?;
                    let mut stage = self.open_stage(&service, &stage_name, record)?;
                    for version in stage.record.referenced() {
                        match self
                            .start_version(
                                &stage,
                                version,
                                stage.record.regions.get(&version).cloned(),
                            )
                            .await
                        {
                            Ok(running) => {
                                stage.running.insert(version, running);
                            }
                            Err(e) => tracing::warn!(
                                service,
                                stage = stage_name,
                                "version {version} did not start: {e:#}"
                            ),
                        }
                    }
                    anyhow::Ok(stage)
                }
                .await;
                match res {
                    Ok(stage) => {
                        stages.by_name.insert((service, stage_name), stage);
                    }
                    Err(e) => tracing::warn!("restoring {}: {e:#}", path.display()),
                }
            }
        }
        self.publish(&stages);
    }

    /// Stops every version, letting requests under way finish.
    async fn shutdown(&self) {
        let mut stages = self.stages.lock().await;
        let by_name = std::mem::take(&mut stages.by_name);
        self.apps.publish(Vec::new());
        let mut telemetry = Vec::new();
        for stage in by_name.into_values() {
            for version in stage.running.into_values() {
                stages.retiring.spawn(version.stop());
            }
            telemetry.push(stage.telemetry);
        }
        while stages.retiring.join_next().await.is_some() {}
        // Each stage's store writes on its own thread; wait for it off the async workers.
        let _ = tokio::task::spawn_blocking(move || {
            for telemetry in telemetry {
                telemetry.flush();
            }
        })
        .await;
    }
}

/// Unpacks `bundle` into `upload` with the stage's state folder as its `.nimbus`, and
/// checks it as `nimbus validate` would, for (service, stage).
async fn check_bundle(
    upload: &Path,
    state_dir: &Path,
    service: &str,
    stage: &str,
    region: Option<String>,
    bundle: Bytes,
) -> Result<(), ApiError> {
    std::fs::create_dir_all(upload)
        .map_err(|e| platform_error(anyhow::anyhow!("creating the upload folder: {e}")))?;
    let dir = upload.to_owned();
    tokio::task::spawn_blocking(move || crate::bundle::unpack(&bundle, &dir))
        .await
        .map_err(|e| platform_error(anyhow::anyhow!("unpacking failed: {e}")))?
        .map_err(|e| client_error(format!("{e:#}")))?;
    // Every version of the stage shares its state: secrets, the wasm cache, the store.
    let state_dir = state_dir
        .canonicalize()
        .map_err(|e| platform_error(anyhow::anyhow!("opening the stage's state: {e}")))?;
    std::os::unix::fs::symlink(&state_dir, upload.join(".nimbus"))
        .map_err(|e| platform_error(anyhow::anyhow!("linking the stage's state: {e}")))?;
    let dir = upload.to_owned();
    let opts = LoadOptions {
        stage: Some(stage.to_owned()),
        region,
        fetch: Fetch::Everything,
    };
    let loaded = tokio::task::spawn_blocking(move || app::load(&dir, &opts))
        .await
        .map_err(|e| platform_error(anyhow::anyhow!("checking failed: {e}")))?;
    let app = match loaded {
        Ok(app) => app,
        Err(e) => {
            let diagnostics = e
                .downcast_ref::<ManifestErrors>()
                .map(|errors| errors.0.clone())
                .unwrap_or_default();
            return Err(ApiError(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("{e:#}"),
                diagnostics,
            ));
        }
    };
    if app.manifest.service != service || app.manifest.stage != stage {
        return Err(client_error(format!(
            "the bundle is {} ({}), not {service} ({stage})",
            app.manifest.service, app.manifest.stage
        )));
    }
    Ok(())
}

fn find<'a>(stages: &'a Stages, service: &str, stage: &str) -> Result<&'a Stage, ApiError> {
    stages
        .by_name
        .get(&(service.to_owned(), stage.to_owned()))
        .ok_or_else(|| {
            ApiError(
                StatusCode::NOT_FOUND,
                format!("nothing is deployed as {service} ({stage})"),
                Vec::new(),
            )
        })
}

/// Service, stage and alias names become folder names: letters, digits, `-` and `_`.
fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid name (letters, digits, - and _, at most 64)"
        ))
    }
}

/// `10%` or `10` as 10; 1 to 99.
pub(crate) fn parse_percent(text: &str) -> Result<u32, String> {
    let number = text.trim().trim_end_matches('%');
    match number.parse::<u32>() {
        Ok(p) if (1..=99).contains(&p) => Ok(p),
        _ => Err(format!("{text:?} is not a percentage from 1% to 99%")),
    }
}

fn parse_query(query: &str) -> HashMap<String, String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| {
            let v = percent_encoding::percent_decode_str(v).decode_utf8_lossy();
            (k.to_owned(), v.into_owned())
        })
        .collect()
}

fn client_error(text: String) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, text, Vec::new())
}

fn platform_error(e: anyhow::Error) -> ApiError {
    tracing::error!("admin call failed: {e:#}");
    ApiError(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Internal server error".to_owned(),
        Vec::new(),
    )
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut res = Response::new(
        Full::new(Bytes::from(value.to_string()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *res.status_mut() = status;
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    res
}

/// A body like API Gateway's own errors: `{"message":"Not Found"}`.
fn message(status: StatusCode, text: &str) -> Response<Body> {
    json(status, &serde_json::json!({ "message": text }))
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Writes `bytes` to `path` through a temporary file and a rename, so readers see the
/// old or the new content, never half.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_and_names_are_checked() {
        assert_eq!(parse_percent("10%"), Ok(10));
        assert_eq!(parse_percent("5"), Ok(5));
        assert!(parse_percent("0%").is_err());
        assert!(parse_percent("100%").is_err());
        assert!(check_name("my-app_2").is_ok());
        assert!(check_name("../x").is_err());
        assert!(check_name("").is_err());
    }
}
