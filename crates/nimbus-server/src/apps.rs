//! Many deployed apps in one process (`nimbus server`): a table of (service, stage) →
//! alias → weighted versions, each version a `Generations` of its own, served by one
//! gateway (`/{service}/{stage}[@alias]/{path}`), one control API and one AWS endpoint.
//!
//! A function's own calls carry no path prefix: its control-API token (`NIMBUS_TOKEN`)
//! or its AWS access key names its function, and so its version. The caller (the host's
//! deploy records) starts versions, publishes where aliases point, and stops the versions
//! no alias points at any more; a stopping version drains through the same drop signal
//! as a replaced generation, so it stops once nothing in flight holds it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use nimbus_core::services::Services;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::error::ApiError;
use crate::gateway::Gateway;
use crate::generation::{Generation, Generations};
use crate::services::ServicesHandle;
use crate::{App, AwsKeys, ServerConfig, Shutdown};

/// The alias a request reaches unless it names another.
pub const LIVE: &str = "live";

/// The header that picks an alias other than `live`.
const ALIAS_HEADER: &str = "x-nimbus-alias";

/// The header each answer names the version that served it in.
const VERSION_HEADER: &str = "x-nimbus-version";

/// Where the apps are served.
#[derive(Debug, Clone)]
pub struct AppsConfig {
    /// Where the gateway and the AWS endpoint listen.
    pub gateway_addr: SocketAddr,
    /// Where the control API listens (functions reach it through `NIMBUS_API`).
    pub control_addr: SocketAddr,
    /// The gateway's connection limits, deadlines and TLS; the control API (and, when the
    /// gateway speaks TLS, its plain loopback twin for the functions' SDKs) takes the same
    /// without TLS.
    pub listener: crate::ListenerConfig,
    /// How long shutdown lets requests under way finish before closing their connections.
    pub drain_timeout: Duration,
}

/// The listeners of many apps, bound and not yet serving.
pub struct AppsServer {
    cfg: AppsConfig,
    gateway: TcpListener,
    /// The gateway in plain HTTP on loopback, when the gateway speaks TLS.
    local_gateway: Option<TcpListener>,
    control: TcpListener,
    apps: Arc<Apps>,
}

/// The apps table: what the gateway routes by, and every running version's functions by
/// token and access key.
pub struct Apps {
    table: ArcSwap<Table>,
    /// Functions' control-API tokens and AWS access key ids → their version. Weak, so a
    /// stopping version is held only by what is in flight through it.
    callers: RwLock<HashMap<String, Weak<Served>>>,
    /// Operators' access keys (`nimbus credentials`), when the host keeps any.
    operator_keys: RwLock<Option<OperatorKeys>>,
    rng: AtomicU64,
}

/// A (service, stage) with each alias's versions and weights, as the dashboard lists it.
pub(crate) type StageRoutes = (String, String, Vec<(String, Vec<(u64, u32)>)>);

/// service → stage → alias → versions with weights.
type Table = HashMap<String, HashMap<String, HashMap<String, Vec<(VersionRef, u32)>>>>;

/// A version as requests reach it.
struct Served {
    number: u64,
    gateway: Arc<Gateway>,
}

/// An operator's access key of `nimbus server`, scoped to the apps of one (service, stage).
#[derive(Clone)]
pub struct OperatorKey {
    /// The secret the key's signatures are made with.
    pub secret: String,
    /// The service whose apps the key reaches.
    pub service: String,
    /// The stage whose apps the key reaches.
    pub stage: String,
}

/// Finds an operator's key by its access key id (reading wherever keys are kept, so a
/// revocation applies at once); called off the async workers.
pub type OperatorKeys = Arc<dyn Fn(&str) -> Option<OperatorKey> + Send + Sync>;

/// A running version, for routing: cheap to clone. Requests under way hold it.
#[derive(Clone)]
pub struct VersionRef(Arc<Served>);

/// A version about to start: its services exist before its executors, which offer them
/// to wasm guests.
pub struct VersionSlot {
    services: Arc<ServicesHandle>,
}

/// What a version is and how it is limited.
#[derive(Debug, Clone)]
pub struct VersionConfig {
    /// The version's number within its (service, stage).
    pub number: u64,
    /// The stage, as it appears in events.
    pub stage: String,
    /// How long a request waits for a function at its `reservedConcurrency` before 429.
    pub queue_wait: Duration,
    /// At most this many requests wait per function.
    pub max_queued: usize,
    /// At most this many invocations of the version run at once.
    pub max_concurrency: usize,
}

/// A running version, owned by whoever started it.
pub struct Version {
    served: Arc<Served>,
    generations: Generations,
    /// Its functions' tokens and access key ids in `Apps::callers`.
    callers: Vec<String>,
    apps: Arc<Apps>,
}

/// Where one alias of one (service, stage) points.
pub struct AliasTargets {
    /// The service.
    pub service: String,
    /// The stage.
    pub stage: String,
    /// The alias (`live`, or another name).
    pub alias: String,
    /// The versions with their weights; the first is the stable one.
    pub targets: Vec<(VersionRef, u32)>,
}

impl AppsServer {
    /// Binds the gateway and the control API.
    pub async fn bind(cfg: AppsConfig) -> anyhow::Result<AppsServer> {
        let gateway = TcpListener::bind(cfg.gateway_addr)
            .await
            .with_context(|| format!("binding the gateway to {}", cfg.gateway_addr))?;
        let local_gateway = match cfg.listener.tls {
            Some(_) => Some(
                TcpListener::bind(("127.0.0.1", 0))
                    .await
                    .context("binding the gateway's plain twin on 127.0.0.1")?,
            ),
            None => None,
        };
        let control = TcpListener::bind(cfg.control_addr)
            .await
            .with_context(|| format!("binding the control API to {}", cfg.control_addr))?;
        Ok(AppsServer {
            cfg,
            gateway,
            local_gateway,
            control,
            apps: Arc::new(Apps::new()),
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
    pub fn control_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.control.local_addr()?)
    }

    /// The table the listeners serve from.
    pub fn apps(&self) -> Arc<Apps> {
        self.apps.clone()
    }

    /// Serves until `shutdown`, then lets requests under way finish (up to the drain
    /// timeout). The versions are the caller's to stop.
    pub async fn run(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let AppsServer {
            cfg,
            gateway,
            local_gateway,
            control,
            apps,
        } = self;
        let gateway_app = Router::new().fallback(route).with_state(apps.clone());
        let control_app = crate::admin::router_for_apps(apps);
        let plain = crate::ListenerConfig {
            tls: None,
            ..cfg.listener.clone()
        };
        let mut served = vec![
            (gateway, gateway_app.clone(), cfg.listener.clone()),
            (control, control_app, plain.clone()),
        ];
        if let Some(twin) = local_gateway {
            served.push((twin, gateway_app, plain));
        }
        let mut listeners = JoinSet::new();
        for (listener, app, listener_cfg) in served {
            listeners.spawn(crate::listener::serve(
                listener,
                app,
                listener_cfg,
                shutdown.clone(),
            ));
        }
        let mut shutdown = shutdown;
        tokio::select! {
            () = shutdown.wait() => {}
            Some(_) = listeners.join_next() => anyhow::bail!("a listener stopped"),
        }
        let drained = tokio::time::timeout(cfg.drain_timeout, async {
            while listeners.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                "requests still in flight after {:.1} s; closing their connections",
                cfg.drain_timeout.as_secs_f64()
            );
            listeners.abort_all();
        }
        Ok(())
    }
}

impl Apps {
    fn new() -> Apps {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9e37_79b9, |d| d.as_nanos() as u64)
            | 1;
        Apps {
            table: ArcSwap::from_pointee(Table::new()),
            callers: RwLock::new(HashMap::new()),
            operator_keys: RwLock::new(None),
            rng: AtomicU64::new(seed),
        }
    }

    /// A slot for a version about to start: hand `VersionSlot::services` to its
    /// executors, then `start` it.
    pub fn slot(&self) -> VersionSlot {
        VersionSlot {
            services: Arc::new(ServicesHandle::new()),
        }
    }

    /// Starts `app` as a version: its queues, consumers and schedules run from now on, and
    /// its functions' own calls reach it. Requests reach it once `publish` points an
    /// alias at it. On failure, `app`'s executors are shut down.
    pub async fn start(
        self: &Arc<Self>,
        slot: VersionSlot,
        cfg: VersionConfig,
        app: App,
    ) -> anyhow::Result<Version> {
        let mut callers = Vec::new();
        for function in &app.functions {
            callers.push(crate::aws::aws_access_key_id(&function.token));
            callers.push(function.token.clone());
        }
        let server_cfg = ServerConfig {
            // Unused: the apps' listeners serve every version.
            gateway_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            stage: cfg.stage.clone(),
            queue_wait: cfg.queue_wait,
            max_queued: cfg.max_queued,
            max_concurrency: cfg.max_concurrency,
            admin_token: uuid::Uuid::new_v4().simple().to_string(),
            drain_timeout: Duration::ZERO,
            aws_keys: AwsKeys::FunctionsOnly,
            listener: crate::ListenerConfig::internal(),
        };
        let generations = Generations::start(app, &server_cfg).await?;
        slot.services.bind(&generations.current);
        let served = Arc::new(Served {
            number: cfg.number,
            gateway: Arc::new(Gateway::new(
                generations.current.clone(),
                cfg.stage,
                AwsKeys::FunctionsOnly,
            )),
        });
        {
            let mut map = self.callers.write().unwrap_or_else(|e| e.into_inner());
            for caller in &callers {
                map.insert(caller.clone(), Arc::downgrade(&served));
            }
        }
        Ok(Version {
            served,
            generations,
            callers,
            apps: self.clone(),
        })
    }

    /// Routes by `aliases` from now on (replacing every earlier route). Requests under way
    /// keep the version they started on.
    pub fn publish(&self, aliases: Vec<AliasTargets>) {
        let mut table = Table::new();
        for entry in aliases {
            table
                .entry(entry.service)
                .or_default()
                .entry(entry.stage)
                .or_default()
                .insert(entry.alias, entry.targets);
        }
        self.table.store(Arc::new(table));
    }

    /// Every (service, stage) with its aliases and their versions (number, weight), for
    /// the dashboard; sorted by name.
    pub(crate) fn routes(&self) -> Vec<StageRoutes> {
        let table = self.table.load();
        let mut out = Vec::new();
        for (service, stages) in table.iter() {
            for (stage, aliases) in stages {
                let mut aliases: Vec<(String, Vec<(u64, u32)>)> = aliases
                    .iter()
                    .map(|(alias, targets)| {
                        let targets = targets.iter().map(|(t, w)| (t.0.number, *w)).collect();
                        (alias.clone(), targets)
                    })
                    .collect();
                aliases.sort();
                out.push((service.clone(), stage.clone(), aliases));
            }
        }
        out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        out
    }

    /// The version `live` serves first (its stable one) of a (service, stage), with its
    /// current generation, for the dashboard.
    pub(crate) fn live_generation(
        &self,
        service: &str,
        stage: &str,
    ) -> Option<(u64, Arc<Generation>)> {
        let table = self.table.load();
        let (target, _) = table.get(service)?.get(stage)?.get(LIVE)?.first()?;
        Some((target.0.number, target.0.gateway.current.load()))
    }

    /// Accepts operators' access keys found by `keys` on the AWS endpoint, each for the
    /// `live` version of its (service, stage).
    pub fn set_operator_keys(&self, keys: OperatorKeys) {
        *self
            .operator_keys
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(keys);
    }

    /// The operator's key with access key id `key`, if there is one.
    async fn operator_key(&self, key: &str) -> Option<OperatorKey> {
        let keys = self
            .operator_keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()?;
        let key = key.to_owned();
        tokio::task::spawn_blocking(move || keys(&key))
            .await
            .ok()
            .flatten()
    }

    /// The version `live` of (service, stage) picks now.
    fn live(&self, service: &str, stage: &str) -> Option<Arc<Served>> {
        let table = self.table.load();
        let targets = table.get(service)?.get(stage)?.get(LIVE)?;
        self.pick(targets)
    }

    /// The generation of the version whose function has the control-API `token`.
    pub(crate) fn generation_by_token(&self, token: &str) -> Option<Arc<Generation>> {
        Some(self.caller(token)?.gateway.current.load())
    }

    fn caller(&self, token_or_key: &str) -> Option<Arc<Served>> {
        let map = self.callers.read().unwrap_or_else(|e| e.into_inner());
        map.get(token_or_key)?.upgrade()
    }

    /// The version a gateway request is for, and the path it has inside the app.
    fn resolve(&self, parts: &http::request::Parts) -> Result<(Arc<Served>, http::Uri), ApiError> {
        let not_found = || ApiError::client(StatusCode::NOT_FOUND, "Not Found");
        let (service, stage, path_alias, rest) =
            split_route(parts.uri.path()).ok_or_else(not_found)?;
        let header_alias = parts
            .headers
            .get(ALIAS_HEADER)
            .and_then(|v| v.to_str().ok());
        let alias = header_alias.or(path_alias).unwrap_or(LIVE);
        let table = self.table.load();
        let targets = table
            .get(service)
            .and_then(|stages| stages.get(stage))
            .and_then(|aliases| aliases.get(alias))
            .ok_or_else(not_found)?;
        let served = self.pick(targets).ok_or_else(|| {
            ApiError::client(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable")
        })?;
        let uri = match parts.uri.query() {
            Some(query) => format!("{rest}?{query}"),
            None => rest.to_owned(),
        };
        let uri = uri
            .parse()
            .map_err(|_| ApiError::client(StatusCode::BAD_REQUEST, "Bad Request"))?;
        Ok((served, uri))
    }

    /// One target by weight (xorshift64: cheap, and good enough to split traffic).
    fn pick(&self, targets: &[(VersionRef, u32)]) -> Option<Arc<Served>> {
        let total: u64 = targets.iter().map(|(_, w)| u64::from(*w)).sum();
        if targets.len() == 1 || total == 0 {
            return targets.first().map(|(t, _)| t.0.clone());
        }
        let mut x = self.rng.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.store(x, Ordering::Relaxed);
        let mut roll = x % total;
        for (target, weight) in targets {
            if roll < u64::from(*weight) {
                return Some(target.0.clone());
            }
            roll -= u64::from(*weight);
        }
        targets.last().map(|(t, _)| t.0.clone())
    }
}

impl VersionSlot {
    /// The queues, topics, buckets and KV of the version, for its executors to offer
    /// their functions (wasm imports); unavailable until the version starts.
    pub fn services(&self) -> Arc<dyn Services> {
        self.services.clone()
    }
}

impl Version {
    /// The version's number.
    pub fn number(&self) -> u64 {
        self.served.number
    }

    /// The version, for `Apps::publish`.
    pub fn target(&self) -> VersionRef {
        VersionRef(self.served.clone())
    }

    /// Stops the version, which no published alias may point at any more: its consumers
    /// stop at once; once nothing in flight holds it (or its drain bound passes), its
    /// instances are stopped.
    pub async fn stop(self) {
        let Version {
            served,
            generations,
            callers,
            apps,
        } = self;
        let number = served.number;
        // Requests under way hold `served` (and so the generation) until they end.
        drop(served);
        let executors = generations.drain_all().await;
        tracing::info!("version {number} drained; stopping it");
        crate::generation::stop_unused(executors, Vec::new()).await;
        let mut map = apps.callers.write().unwrap_or_else(|e| e.into_inner());
        for caller in &callers {
            if map.get(caller).is_some_and(|weak| weak.strong_count() == 0) {
                map.remove(caller);
            }
        }
    }
}

/// The gateway of every app: an AWS request goes to the app of the function whose key
/// signed it; any other to the version `/{service}/{stage}[@alias]` picks, as `/{path}`.
async fn route(
    State(apps): State<Arc<Apps>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let (mut parts, body) = req.into_parts();
    if let Some(service) = crate::aws::service_of(&parts) {
        let key = crate::aws::access_key(&parts);
        if let Some(served) = key.as_deref().and_then(|key| apps.caller(key)) {
            let req = Request::from_parts(parts, body);
            return crate::gateway::handle(State(served.gateway.clone()), ConnectInfo(peer), req)
                .await;
        }
        // An operator's key reaches what its (service, stage) serves under `live`.
        let operator = match &key {
            Some(key) => apps.operator_key(key).await,
            None => None,
        };
        let Some(operator) = operator else {
            return crate::aws::refuse_unknown_key(service, &parts);
        };
        let Some(served) = apps.live(&operator.service, &operator.stage) else {
            let message = format!(
                "nothing is deployed as {} ({}), which this access key is for",
                operator.service, operator.stage
            );
            return crate::aws::refuse(service, &parts, "InvalidClientTokenId", message);
        };
        let generation = served.gateway.current.load();
        return crate::aws::handle_as_operator(service, &generation, &operator.secret, parts, body)
            .await;
    }
    let (served, uri) = match apps.resolve(&parts) {
        Ok(resolved) => resolved,
        Err(e) => return e.into_response(),
    };
    parts.uri = uri;
    let req = Request::from_parts(parts, body);
    let mut res =
        crate::gateway::handle(State(served.gateway.clone()), ConnectInfo(peer), req).await;
    res.headers_mut()
        .insert(VERSION_HEADER, http::HeaderValue::from(served.number));
    res
}

/// `/{service}/{stage}[@alias]/rest` as (service, stage, alias, `/rest`).
fn split_route(path: &str) -> Option<(&str, &str, Option<&str>, &str)> {
    let path = path.strip_prefix('/')?;
    let (service, rest) = path.split_once('/')?;
    let (stage, rest) = match rest.find('/') {
        Some(idx) => (&rest[..idx], &rest[idx..]),
        None => (rest, "/"),
    };
    let (stage, alias) = match stage.split_once('@') {
        Some((stage, alias)) => (stage, Some(alias)),
        None => (stage, None),
    };
    (!service.is_empty() && !stage.is_empty()).then_some((service, stage, alias, rest))
}

#[cfg(test)]
mod tests;
