//! `nimbus server`'s deploys: each (service, stage)'s record of numbered versions and
//! aliases, the admin API that deploys bundles and moves aliases (behind the tokens of
//! `host::tokens`), and the versions it starts in the apps table and retires.
//!
//! Loading an app (its manifest, runtimes, executors) is the binary's: it hands the host
//! a [`VersionLoader`], so this module never sees a manifest file or a process.

mod record;
#[cfg(test)]
mod tests;
pub mod tokens;
pub mod wire;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, put};
use http::StatusCode;
use nimbus_core::BoxFuture;
use nimbus_core::deploys::{DeployShare, ShareError, SharedRecord};
use nimbus_core::services::Services;
use nimbus_store::Store;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use self::record::StageRecord;
use self::wire::{AliasBody, AppList, AppName, DeployQuery, Deployed, ErrorBody, StageView};
use crate::apps::{AliasTargets, Apps, AppsServer, Version, VersionConfig};
use crate::dashboard::AppsDashboard;
use crate::{App, ListenerConfig, Shutdown, Telemetry, TelemetryConfig};

/// The largest bundle the admin API takes, compressed.
pub const MAX_BUNDLE_BYTES: usize = 256 << 20;

/// What the host needs to know besides the apps table.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// The state folder (canonical): `tokens.json` and `apps/{service}/{stage}/`.
    pub state: PathBuf,
    /// `--retention-size` of each stage's store.
    pub retention_size: u64,
    /// At most this many invocations at once per version.
    pub max_concurrency: usize,
}

/// How the binary turns a folder into a running app: unpacking a bundle, checking it as
/// `nimbus validate` does, and starting its functions' executors. `unpack` and `check`
/// block; the host calls them off the async workers.
pub trait VersionLoader: Send + Sync {
    /// Unpacks `bundle` (as `nimbus deploy` packs it) into the empty folder `dir`.
    fn unpack(&self, bundle: &[u8], dir: &Path) -> anyhow::Result<()>;
    /// Loads the app in `dir` for `target` and says which (service, stage) it is.
    fn check(&self, dir: &Path, target: &LoadTarget) -> Result<AppName, Refusal>;
    /// Starts the executors of the app in `req.dir`.
    fn launch(&self, req: LaunchRequest) -> BoxFuture<'static, anyhow::Result<App>>;
}

/// The stage an app is loaded as, and its region (`nimbus deploy --region`).
#[derive(Debug, Clone)]
pub struct LoadTarget {
    /// The stage.
    pub stage: String,
    /// The region, when the deploy named one.
    pub region: Option<String>,
}

/// Why a bundle was refused: a message, and the manifest's diagnostics if any.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// What was wrong.
    pub message: String,
    /// `nimbus validate`'s diagnostics.
    pub diagnostics: Vec<String>,
}

/// Everything a version's executors are given.
pub struct LaunchRequest {
    /// The version's folder (with the stage's state linked in as `.nimbus`).
    pub dir: PathBuf,
    /// What it is loaded as.
    pub target: LoadTarget,
    /// The version's queues, topics, buckets and KV, for wasm imports.
    pub services: Arc<dyn Services>,
    /// The stage's telemetry, shared by its versions.
    pub telemetry: Arc<Telemetry>,
    /// The stage's durable store, shared by its versions.
    pub store: Store,
    /// The control API, which functions reach through `NIMBUS_API`.
    pub control: SocketAddr,
    /// The gateway in plain HTTP, which functions' AWS SDKs reach.
    pub gateway: SocketAddr,
}

/// The running deploys: what the admin API changes and the apps table routes by.
pub struct Host {
    cfg: HostConfig,
    apps: Arc<Apps>,
    gateway: SocketAddr,
    control: SocketAddr,
    loader: Arc<dyn VersionLoader>,
    stages: tokio::sync::Mutex<Stages>,
    /// The web dashboard at `/_nimbus` on the admin port, behind the same tokens.
    dashboard: Router,
    /// In cluster mode, where the nodes share their deploys.
    share: Option<Arc<dyn DeployShare>>,
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
    /// In cluster mode, the shared record's revision `record` is (`None`: none read yet).
    revision: Option<u64>,
    store: Store,
    telemetry: Arc<Telemetry>,
    running: BTreeMap<u64, Version>,
}

/// A failed admin call, answered as [`ErrorBody`].
#[derive(Debug)]
struct AdminError {
    status: StatusCode,
    body: ErrorBody,
}

impl Host {
    /// A host of no stage yet, serving through `server`'s apps table (call `restore`).
    pub fn new(
        cfg: HostConfig,
        server: &AppsServer,
        loader: Arc<dyn VersionLoader>,
        shutdown: Shutdown,
    ) -> anyhow::Result<Arc<Host>> {
        let state = cfg.state.clone();
        let dashboard = AppsDashboard::new(
            server.apps(),
            Arc::new(move |token: &str| tokens::is_valid(&state, token)),
            shutdown,
        );
        Ok(Arc::new(Host {
            apps: server.apps(),
            gateway: server.local_gateway_addr()?,
            control: server.control_addr()?,
            cfg,
            loader,
            stages: tokio::sync::Mutex::new(Stages {
                by_name: BTreeMap::new(),
                retiring: JoinSet::new(),
            }),
            dashboard: dashboard.router(),
            share: None,
        }))
    }

    /// A host whose deploys every node of a cluster shares (call [`Host::follow`] after
    /// `restore`).
    pub fn new_shared(
        cfg: HostConfig,
        server: &AppsServer,
        loader: Arc<dyn VersionLoader>,
        shutdown: Shutdown,
        share: Arc<dyn DeployShare>,
    ) -> anyhow::Result<Arc<Host>> {
        let mut host = Host::new(cfg, server, loader, shutdown)?;
        Arc::get_mut(&mut host)
            .expect("the host was just made")
            .share = Some(share);
        Ok(host)
    }

    /// In cluster mode, applies every stage record the nodes share, now and as they
    /// change, until `shutdown`: versions this node lacks are fetched, checked and started,
    /// and the routes follow the aliases, so a deploy through any node reaches this one.
    pub async fn follow(self: &Arc<Self>, mut shutdown: Shutdown) -> anyhow::Result<()> {
        let Some(share) = &self.share else {
            return Ok(());
        };
        let (tx, mut records) = tokio::sync::mpsc::unbounded_channel();
        share
            .follow(Box::new(move |record| tx.send(record).is_ok()))
            .await?;
        loop {
            let shared = tokio::select! {
                () = shutdown.wait() => return Ok(()),
                shared = records.recv() => shared,
            };
            let Some(shared) = shared else {
                anyhow::bail!("the cluster's deploy records stopped");
            };
            let (service, stage) = (shared.service.clone(), shared.stage.clone());
            if let Err(e) = self.apply_shared(shared).await {
                tracing::warn!(service, stage, "applying a deploy from the cluster: {e:#}");
            }
        }
    }

    /// Makes this node serve a stage as a shared record has it.
    async fn apply_shared(&self, shared: SharedRecord) -> anyhow::Result<()> {
        let view: StageView = serde_json::from_slice(&shared.record)
            .context("the shared stage record is not JSON nimbus reads")?;
        let record = StageRecord::from_view(view);
        let (service, stage_name) = (shared.service.as_str(), shared.stage.as_str());
        check_name(service).map_err(anyhow::Error::msg)?;
        check_name(stage_name).map_err(anyhow::Error::msg)?;
        let mut stages = self.stages.lock().await;
        let key = (service.to_owned(), stage_name.to_owned());
        if !stages.by_name.contains_key(&key) {
            let stage = self.open_stage(service, stage_name, StageRecord::default())?;
            stages.by_name.insert(key.clone(), stage);
        }
        let stage = stages
            .by_name
            .get_mut(&key)
            .expect("inserted above when missing");
        if stage.revision.is_some_and(|seen| seen >= shared.revision) {
            return Ok(());
        }
        for version in record.referenced() {
            if stage.running.contains_key(&version) {
                continue;
            }
            let dir = stage.dir.join("versions").join(version.to_string());
            if !dir.is_dir() {
                self.fetch_version(stage, version, &record).await?;
            }
            let region = record.regions.get(&version).cloned();
            let running = self.start_version(stage, version, region).await?;
            stage.running.insert(version, running);
        }
        stage.revision = Some(shared.revision);
        self.commit(&mut stages, &key, record)?;
        tracing::info!(
            service,
            stage = stage_name,
            "applied the cluster's deploy record (revision {})",
            shared.revision
        );
        Ok(())
    }

    /// Fetches version `version`'s bundle from the cluster, checks it and stores it as the
    /// version's folder.
    async fn fetch_version(
        &self,
        stage: &Stage,
        version: u64,
        record: &StageRecord,
    ) -> anyhow::Result<()> {
        let share = self.share.as_ref().context("not in cluster mode")?;
        let bundle = share
            .get_bundle(stage.service.clone(), stage.stage.clone(), version)
            .await?;
        let upload = stage
            .dir
            .join("versions")
            .join(format!(".upload-{}", uuid::Uuid::new_v4().simple()));
        let target = LoadTarget {
            stage: stage.stage.clone(),
            region: record.regions.get(&version).cloned(),
        };
        let state_dir = stage.dir.join("state");
        if let Err(e) = self
            .check_bundle(&upload, &state_dir, &stage.service, &target, bundle.into())
            .await
        {
            let _ = std::fs::remove_dir_all(&upload);
            anyhow::bail!("version {version}'s bundle: {}", e.body.message);
        }
        let dir = stage.dir.join("versions").join(version.to_string());
        std::fs::rename(&upload, &dir).with_context(|| format!("storing version {version}"))
    }

    /// In cluster mode, stores `record` as the stage's shared record if no other node
    /// changed it since this node read it; the new revision (`None` on a lone server).
    async fn share_record(
        &self,
        stage: &Stage,
        record: &StageRecord,
    ) -> Result<Option<u64>, AdminError> {
        let Some(share) = &self.share else {
            return Ok(None);
        };
        let json = serde_json::to_vec(&record.view())
            .map_err(|e| AdminError::platform(anyhow::anyhow!("encoding the record: {e}")))?;
        share
            .put_record(
                stage.service.clone(),
                stage.stage.clone(),
                json,
                stage.revision,
            )
            .await
            .map(Some)
            .map_err(share_error)
    }

    /// The admin API: every call but the dashboard's pages needs a valid bearer token.
    pub fn router(self: &Arc<Self>) -> Router {
        let api = Router::new()
            .route("/v1/deployments", post(deploy))
            .route("/v1/apps", get(list_apps))
            .route("/v1/apps/{service}/{stage}/versions", get(versions))
            .route("/v1/apps/{service}/{stage}/aliases/{alias}", put(set_alias))
            .route("/v1/apps/{service}/{stage}/promote", post(promote))
            .route("/v1/apps/{service}/{stage}/rollback", post(rollback))
            .fallback(unknown_call)
            .method_not_allowed_fallback(unknown_call)
            .layer(DefaultBodyLimit::max(MAX_BUNDLE_BYTES))
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                authorize,
            ))
            .with_state(self.clone());
        // The dashboard signs in with the same tokens through its own pages.
        Router::new()
            // The deploys page's buttons: the dashboard's session, then `change` as the
            // admin API's promote and rollback.
            .route(
                "/_nimbus/apps/{service}/{stage}/promote",
                post(|host, app, headers| {
                    dashboard_change(host, app, headers, "promoted", StageRecord::promote)
                })
                .fallback(dashboard),
            )
            .route(
                "/_nimbus/apps/{service}/{stage}/rollback",
                post(|host, app, headers| {
                    dashboard_change(host, app, headers, "rolled back", StageRecord::rollback)
                })
                .fallback(dashboard),
            )
            .route("/_nimbus", any(dashboard))
            .route("/_nimbus/", any(dashboard))
            .route("/_nimbus/{*rest}", any(dashboard))
            .with_state(self.clone())
            .merge(api)
    }

    /// Serves the admin API on `listener` until `shutdown`, then lets requests under way
    /// finish.
    pub async fn serve_admin(
        self: &Arc<Self>,
        listener: TcpListener,
        cfg: ListenerConfig,
        shutdown: Shutdown,
    ) {
        crate::listener::serve(listener, self.router(), cfg, shutdown).await;
    }

    /// Opens every stage in the state folder and starts the versions its aliases use.
    pub async fn restore(&self) {
        let mut stages = self.stages.lock().await;
        let apps = self.cfg.state.join("apps");
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
                        let region = stage.record.regions.get(&version).cloned();
                        match self.start_version(&stage, version, region).await {
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

    /// Stops every version, letting requests under way finish, and flushes each stage's
    /// telemetry.
    pub async fn shutdown(&self) {
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

    /// Unpacks and checks a bundle, starts it as the next version and points `live` at
    /// it (or gives it the canary share).
    async fn deploy(
        &self,
        service: &str,
        stage_name: &str,
        canary: Option<u32>,
        region: Option<String>,
        bundle: Bytes,
    ) -> Result<Deployed, AdminError> {
        check_name(service).map_err(AdminError::client)?;
        check_name(stage_name).map_err(AdminError::client)?;
        let mut stages = self.stages.lock().await;
        let key = (service.to_owned(), stage_name.to_owned());
        if !stages.by_name.contains_key(&key) {
            let stage = self
                .open_stage(service, stage_name, StageRecord::default())
                .map_err(AdminError::platform)?;
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
        let target = LoadTarget {
            stage: stage_name.to_owned(),
            region: region.clone(),
        };
        let res = self
            .check_bundle(
                &upload,
                &stage.dir.join("state"),
                service,
                &target,
                bundle.clone(),
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
            return Err(AdminError::platform(anyhow::anyhow!(
                "storing the version: {e}"
            )));
        }
        let running = match self.start_version(stage, number, region.clone()).await {
            Ok(running) => running,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(AdminError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("version {number} did not start: {e:#}"),
                ));
            }
        };
        let mut record = stage.record.clone();
        record.add(number, unix_now(), canary);
        if let Some(region) = region {
            record.regions.insert(number, region);
        }
        // In cluster mode the other nodes learn of the version from the shared record, so
        // its bundle is stored first; a record another node changed meanwhile refuses it.
        if let Some(share) = &self.share {
            let shared = async {
                share
                    .put_bundle(
                        service.to_owned(),
                        stage_name.to_owned(),
                        number,
                        bundle.to_vec(),
                    )
                    .await
                    .map_err(share_error)?;
                self.share_record(stage, &record).await
            }
            .await;
            match shared {
                Ok(revision) => stage.revision = revision,
                Err(e) => {
                    running.stop().await;
                    let _ = std::fs::remove_dir_all(&dir);
                    return Err(e);
                }
            }
        }
        stage.running.insert(number, running);
        self.commit(&mut stages, &key, record)
            .map_err(AdminError::platform)?;
        let stage = find(&stages, service, stage_name)?;
        Ok(Deployed {
            stage: stage.record.view(),
            deployed: number,
        })
    }

    /// Unpacks `bundle` into `upload` with the stage's state folder as its `.nimbus`, and
    /// checks it as `nimbus validate` would, for (service, stage).
    async fn check_bundle(
        &self,
        upload: &Path,
        state_dir: &Path,
        service: &str,
        target: &LoadTarget,
        bundle: Bytes,
    ) -> Result<(), AdminError> {
        std::fs::create_dir_all(upload).map_err(|e| {
            AdminError::platform(anyhow::anyhow!("creating the upload folder: {e}"))
        })?;
        let dir = upload.to_owned();
        let loader = self.loader.clone();
        tokio::task::spawn_blocking(move || loader.unpack(&bundle, &dir))
            .await
            .map_err(|e| AdminError::platform(anyhow::anyhow!("unpacking failed: {e}")))?
            .map_err(|e| AdminError::client(format!("{e:#}")))?;
        // Every version of the stage shares its state: secrets, the wasm cache, the store.
        let state_dir = state_dir
            .canonicalize()
            .map_err(|e| AdminError::platform(anyhow::anyhow!("opening the stage's state: {e}")))?;
        std::os::unix::fs::symlink(&state_dir, upload.join(".nimbus"))
            .map_err(|e| AdminError::platform(anyhow::anyhow!("linking the stage's state: {e}")))?;
        let dir = upload.to_owned();
        let loader = self.loader.clone();
        let check_target = target.clone();
        let checked = tokio::task::spawn_blocking(move || loader.check(&dir, &check_target))
            .await
            .map_err(|e| AdminError::platform(anyhow::anyhow!("checking failed: {e}")))?
            .map_err(|refusal| AdminError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                body: ErrorBody {
                    message: refusal.message,
                    diagnostics: refusal.diagnostics,
                },
            })?;
        if checked.service != service || checked.stage != target.stage {
            return Err(AdminError::client(format!(
                "the bundle is {} ({}), not {service} ({})",
                checked.service, checked.stage, target.stage
            )));
        }
        Ok(())
    }

    /// Applies an alias move to the record of (service, stage), then routes by it.
    async fn change(
        &self,
        service: &str,
        stage: &str,
        apply: impl FnOnce(&mut StageRecord) -> anyhow::Result<u64>,
    ) -> Result<StageView, AdminError> {
        let mut stages = self.stages.lock().await;
        let mut record = find(&stages, service, stage)?.record.clone();
        apply(&mut record).map_err(|e| AdminError::new(StatusCode::CONFLICT, format!("{e:#}")))?;
        let key = (service.to_owned(), stage.to_owned());
        for version in record.referenced() {
            let stage = stages.by_name.get_mut(&key).expect("found above");
            if !stage.running.contains_key(&version) {
                let region = record.regions.get(&version).cloned();
                let running = self
                    .start_version(stage, version, region)
                    .await
                    .map_err(|e| {
                        AdminError::new(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            format!("version {version} did not start: {e:#}"),
                        )
                    })?;
                stage.running.insert(version, running);
            }
        }
        let shared = stages.by_name.get_mut(&key).expect("found above");
        if let Some(revision) = self.share_record(shared, &record).await? {
            shared.revision = Some(revision);
        }
        self.commit(&mut stages, &key, record)
            .map_err(AdminError::platform)?;
        Ok(find(&stages, service, stage)?.record.view())
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
        let dir = self.cfg.state.join("apps").join(service).join(stage);
        let state_dir = dir.join("state");
        std::fs::create_dir_all(&state_dir)
            .with_context(|| format!("creating {}", state_dir.display()))?;
        std::fs::create_dir_all(dir.join("versions"))
            .with_context(|| format!("creating {}", dir.display()))?;
        let store = Store::open(&state_dir)
            .with_context(|| format!("opening the store in {}", state_dir.display()))?;
        store.set_retention_size(Some(self.cfg.retention_size));
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
            revision: None,
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
        let slot = self.apps.slot();
        let app = self
            .loader
            .launch(LaunchRequest {
                dir: stage.dir.join("versions").join(number.to_string()),
                target: LoadTarget {
                    stage: stage.stage.clone(),
                    region,
                },
                services: slot.services(),
                telemetry: stage.telemetry.clone(),
                store: stage.store.clone(),
                control: self.control,
                gateway: self.gateway,
            })
            .await?;
        let cfg = VersionConfig {
            number,
            stage: stage.stage.clone(),
            queue_wait: Duration::from_secs(1),
            max_queued: 100,
            max_concurrency: self.cfg.max_concurrency,
        };
        let version = self.apps.start(slot, cfg, app).await?;
        tracing::info!(
            service = stage.service,
            stage = stage.stage,
            "version {number} serving"
        );
        Ok(version)
    }
}

impl AdminError {
    fn new(status: StatusCode, message: String) -> AdminError {
        AdminError {
            status,
            body: ErrorBody {
                message,
                diagnostics: Vec::new(),
            },
        }
    }

    fn client(message: String) -> AdminError {
        AdminError::new(StatusCode::BAD_REQUEST, message)
    }

    /// The cause is logged here, once; the client is told no more than that it failed.
    fn platform(e: anyhow::Error) -> AdminError {
        tracing::error!("admin call failed: {e:#}");
        AdminError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal server error".to_owned(),
        )
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let mut res = json(self.status, &self.body);
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            // The cluster's engine is expected back: say when to retry.
            res.headers_mut()
                .insert(http::header::RETRY_AFTER, http::HeaderValue::from(1));
        }
        res
    }
}

/// Lets a call through only with a bearer token of `tokens.json`, read on each call so a
/// revocation applies at once.
/// A failure to share a deploy: a conflict is the caller's to retry (409), anything else the
/// cluster's (503), and in either case nothing changed.
fn share_error(e: ShareError) -> AdminError {
    match e {
        ShareError::Conflict => AdminError::new(StatusCode::CONFLICT, e.to_string()),
        ShareError::Unavailable(message) => AdminError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the cluster did not take the deploy, so nothing changed: {message}"),
        ),
    }
}

async fn authorize(State(host): State<Arc<Host>>, req: Request, next: Next) -> Response {
    let token = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let state = host.cfg.state.clone();
    let authorized = match token {
        Some(token) => tokio::task::spawn_blocking(move || tokens::is_valid(&state, &token))
            .await
            .unwrap_or(false),
        None => false,
    };
    if !authorized {
        return AdminError::new(StatusCode::UNAUTHORIZED, "Unauthorized".to_owned())
            .into_response();
    }
    next.run(req).await
}

async fn dashboard(State(host): State<Arc<Host>>, req: Request) -> Response {
    match tower_service::Service::call(&mut host.dashboard.clone(), req).await {
        Ok(res) => res,
        Err(infallible) => match infallible {},
    }
}

/// A deploys-page button: signed in to the dashboard, the alias move, then the apps page
/// again saying what happened.
async fn dashboard_change(
    State(host): State<Arc<Host>>,
    axum::extract::Path((service, stage)): axum::extract::Path<(String, String)>,
    headers: http::HeaderMap,
    done: &str,
    apply: impl FnOnce(&mut StageRecord) -> anyhow::Result<u64>,
) -> Response {
    let state = host.cfg.state.clone();
    let signed_in = tokio::task::spawn_blocking(move || {
        crate::dashboard::session_allows(&headers, &|token| tokens::is_valid(&state, token))
    })
    .await
    .unwrap_or(false);
    if !signed_in {
        return (StatusCode::UNAUTHORIZED, "sign in to the dashboard first").into_response();
    }
    let note = match host.change(&service, &stage, apply).await {
        Ok(_) => format!(
            "done={}",
            crate::dashboard::query_value(&format!("{service}/{stage} {done}"))
        ),
        Err(e) => format!("error={}", crate::dashboard::query_value(&e.body.message)),
    };
    axum::response::Redirect::to(&format!("/_nimbus/?{note}")).into_response()
}

async fn deploy(
    State(host): State<Arc<Host>>,
    uri: http::Uri,
    bundle: Bytes,
) -> Result<Response, AdminError> {
    let query = deploy_query(uri.query().unwrap_or(""));
    let canary = match &query.canary {
        Some(p) => Some(parse_percent(p).map_err(AdminError::client)?),
        None => None,
    };
    let deployed = host
        .deploy(&query.service, &query.stage, canary, query.region, bundle)
        .await?;
    Ok(json(StatusCode::OK, &deployed))
}

async fn list_apps(State(host): State<Arc<Host>>) -> Response {
    let stages = host.stages.lock().await;
    let apps = stages
        .by_name
        .keys()
        .map(|(service, stage)| AppName {
            service: service.clone(),
            stage: stage.clone(),
        })
        .collect();
    json(StatusCode::OK, &AppList { apps })
}

async fn versions(
    State(host): State<Arc<Host>>,
    axum::extract::Path((service, stage)): axum::extract::Path<(String, String)>,
) -> Result<Response, AdminError> {
    let stages = host.stages.lock().await;
    let stage = find(&stages, &service, &stage)?;
    Ok(json(StatusCode::OK, &stage.record.view()))
}

async fn set_alias(
    State(host): State<Arc<Host>>,
    axum::extract::Path((service, stage, alias)): axum::extract::Path<(String, String, String)>,
    body: Bytes,
) -> Result<Response, AdminError> {
    check_name(&alias).map_err(AdminError::client)?;
    let value: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| AdminError::client(format!("the body is not JSON: {e}")))?;
    let Ok(AliasBody { targets }) = serde_json::from_value(value) else {
        return Err(AdminError::client(
            "expected {\"targets\": [{\"version\": N, \"weight\": W}]}".to_owned(),
        ));
    };
    let targets = targets.iter().map(|t| (t.version, t.weight)).collect();
    let view = host
        .change(&service, &stage, |record| {
            record.set_alias(&alias, targets).map(|()| 0)
        })
        .await?;
    Ok(json(StatusCode::OK, &view))
}

async fn promote(
    State(host): State<Arc<Host>>,
    axum::extract::Path((service, stage)): axum::extract::Path<(String, String)>,
) -> Result<Response, AdminError> {
    let view = host.change(&service, &stage, StageRecord::promote).await?;
    Ok(json(StatusCode::OK, &view))
}

async fn rollback(
    State(host): State<Arc<Host>>,
    axum::extract::Path((service, stage)): axum::extract::Path<(String, String)>,
) -> Result<Response, AdminError> {
    let view = host.change(&service, &stage, StageRecord::rollback).await?;
    Ok(json(StatusCode::OK, &view))
}

async fn unknown_call(method: http::Method, uri: http::Uri) -> AdminError {
    AdminError::new(
        StatusCode::NOT_FOUND,
        format!("no admin call {method} {}", uri.path()),
    )
}

fn deploy_query(query: &str) -> DeployQuery {
    let pairs: HashMap<String, String> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    DeployQuery {
        service: pairs.get("service").cloned().unwrap_or_default(),
        stage: pairs.get("stage").cloned().unwrap_or_default(),
        canary: pairs.get("canary").cloned(),
        region: pairs.get("region").cloned(),
    }
}

fn find<'a>(stages: &'a Stages, service: &str, stage: &str) -> Result<&'a Stage, AdminError> {
    stages
        .by_name
        .get(&(service.to_owned(), stage.to_owned()))
        .ok_or_else(|| {
            AdminError::new(
                StatusCode::NOT_FOUND,
                format!("nothing is deployed as {service} ({stage})"),
            )
        })
}

/// Service, stage and alias names become folder names: letters, digits, `-` and `_`.
pub fn check_name(name: &str) -> Result<(), String> {
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
pub fn parse_percent(text: &str) -> Result<u32, String> {
    let number = text.trim().trim_end_matches('%');
    match number.parse::<u32>() {
        Ok(p) if (1..=99).contains(&p) => Ok(p),
        _ => Err(format!("{text:?} is not a percentage from 1% to 99%")),
    }
}

fn json(status: StatusCode, value: &impl serde::Serialize) -> Response {
    let body = match serde_json::to_string(value) {
        Ok(body) => body,
        Err(e) => {
            tracing::error!("encoding an admin answer: {e}");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    (
        status,
        [(http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// Seconds since the Unix epoch.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Writes `bytes` to `path` through a temporary file and a rename, so readers see the
/// old or the new content, never half.
fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
