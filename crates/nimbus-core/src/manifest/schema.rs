//! The Serverless Framework v3 schema as nimbus models it: service, provider and functions.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::events::{AsyncConfig, EventSource, Grant};
use crate::policy::GatewayPolicies;
use crate::{FunctionSpec, HttpRoute, MAX_INSTANCE_CONCURRENCY, Runtime};

use super::references::is_intrinsic;
use super::resources::Sections;
use super::routes::{FunctionEvents, RouteTable};
use super::tree::{Entry, Node, Pos, Value};
use super::{Cx, Manifest, join_key};

/// Memory limit when neither the function nor the provider sets `memorySize`, as in the
/// Serverless Framework.
const DEFAULT_MEMORY_MB: u32 = 1024;
/// Deadline when neither the function nor the provider sets `timeout`, as in the
/// Serverless Framework.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(6);
/// Lambda's `/tmp` when `ephemeralStorageSize` is not set, and its bounds, in MB.
const DEFAULT_EPHEMERAL_STORAGE_MB: u32 = 512;
const MAX_EPHEMERAL_STORAGE_MB: u32 = 10_240;

/// Plugins whose work nimbus does itself: serving locally (serverless-offline and its stage
/// path), TypeScript builds, Lift's queue and storage constructs, per-function IAM
/// statements, a Python function's `requirements.txt`, WSGI apps behind serverless-wsgi's
/// handler.
const PLUGINS_STOOD_IN_FOR: &[&str] = &[
    "serverless-offline",
    "serverless-esbuild",
    "serverless-plugin-typescript",
    "serverless-lift",
    "serverless-iam-roles-per-function",
    "serverless-python-requirements",
    "serverless-wsgi",
    "serverless-step-functions",
];

/// The runtimes nimbus runs, by their manifest names.
const RUNTIMES: &[(&str, Runtime)] = &[
    ("nodejs18.x", Runtime::Node { major: 18 }),
    ("nodejs20.x", Runtime::Node { major: 20 }),
    ("nodejs22.x", Runtime::Node { major: 22 }),
    ("python3.9", Runtime::Python { minor: 9 }),
    ("python3.10", Runtime::Python { minor: 10 }),
    ("python3.11", Runtime::Python { minor: 11 }),
    ("python3.12", Runtime::Python { minor: 12 }),
    ("python3.13", Runtime::Python { minor: 13 }),
    ("provided", Runtime::Provided),
    ("provided.al2", Runtime::Provided),
    ("provided.al2023", Runtime::Provided),
    ("wasm", Runtime::Wasm),
    ("workers", Runtime::Workers),
];

/// What the manifest says about a runtime, so that a bad provider runtime is reported
/// once rather than once per function.
#[derive(Clone, Copy)]
enum RuntimeSetting {
    Unset,
    Invalid,
    Set(Runtime),
}

/// Environment variables, and which of them hold secrets' values.
#[derive(Clone, Default)]
struct Environment {
    values: BTreeMap<String, String>,
    /// Variable name to the names of the secrets (`${secret:..}`) in its value.
    secrets: BTreeMap<String, Vec<String>>,
}

/// Provider settings that functions inherit.
struct Provider {
    runtime: RuntimeSetting,
    environment: Environment,
    memory_mb: u32,
    timeout: Duration,
    ephemeral_storage_mb: u32,
    /// `provider.httpApi.cors`, the CORS setting of every `httpApi` route.
    http_api_cors: bool,
    /// `provider.httpApi.authorizers` and `provider.apiGateway`.
    policies: GatewayPolicies,
    stage: Option<String>,
    region: Option<String>,
    /// `iam` and `iamRoleStatements`, read once the service and stage are known (Lambda
    /// ARNs in them name functions as `service-stage-function`).
    iam: Vec<(Node, String)>,
    iam_role_statements: Vec<(Node, String)>,
}

impl Environment {
    /// Adds `other`'s variables, replacing those of the same name (a function's own
    /// variables win over the provider's).
    fn extend(&mut self, other: Environment) {
        for name in other.values.keys() {
            self.secrets.remove(name);
        }
        self.values.extend(other.values);
        self.secrets.extend(other.secrets);
    }

    /// The secrets whose values are in the variables, sorted, each once.
    fn secret_names(&self) -> Vec<String> {
        let names: BTreeSet<&String> = self.secrets.values().flatten().collect();
        names.into_iter().cloned().collect()
    }
}

impl Cx<'_> {
    /// Reads the whole document. `None` means errors were reported.
    pub(super) fn manifest(&mut self) -> Option<Manifest> {
        let root = self.root;
        let Value::Map(entries) = &root.value else {
            let message = format!(
                "the manifest must be a mapping with `service`, `provider` and `functions`, got {}",
                root.describe()
            );
            self.error(root.pos, "", message);
            return None;
        };
        let mut service = None;
        let mut provider_node = None;
        let mut functions_entry = None;
        let mut service_seen = false;
        let mut custom = None;
        let mut constructs = None;
        let mut sections = Sections::default();
        let mut state_machines = None;
        for entry in entries {
            let key = entry.key.as_str();
            match key {
                "service" => {
                    service_seen = true;
                    service = self.service(&entry.value);
                }
                "provider" => provider_node = Some(&entry.value),
                "functions" => functions_entry = Some(entry),
                // The CLI version constraint means nothing to nimbus.
                "frameworkVersion" => {}
                // Stage parameters, read through `${param:..}` variables.
                "params" => {}
                // Variables and plugin settings: nimbus reads those of the plugins it stands
                // in for; a plugin it does not is warned about under `plugins`.
                "custom" => custom = Some(&entry.value),
                "plugins" => self.plugins(&entry.value),
                "resources" => sections.resources = Some(entry),
                "constructs" => constructs = Some(entry),
                "queues" => sections.queues = Some(entry),
                "topics" => sections.topics = Some(entry),
                "buckets" => sections.buckets = Some(entry),
                "kv" => sections.kv = Some(entry),
                "tables" => sections.tables = Some(entry),
                "streams" => sections.streams = Some(entry),
                "stepFunctions" | "workflows" => state_machines = Some(entry),
                _ => self.warn(entry.key_pos, key, "not modelled by nimbus; ignored"),
            }
        }
        if !service_seen {
            self.error(
                Pos { line: 1, column: 1 },
                "service",
                "missing `service`; name the service, as in `service: shop`",
            );
        }
        self.declarations(&sections);
        // State machines are declared before the provider and the functions, whose
        // environments may name them, and read after, since their definitions name the
        // functions.
        let pending_machines = match state_machines {
            Some(entry) => self.state_machines(entry),
            None => Vec::new(),
        };
        // Table ARNs in the provider's environment need the region before the provider is
        // read: a plain `provider.region` (or `--region`) gives it early.
        self.app.region = match self.vars.options.get("region") {
            Some(region) => region.clone(),
            None => provider_node
                .and_then(|node| node.get("region"))
                .map_or(Some("us-east-1".to_owned()), |entry| {
                    match &entry.value.value {
                        Value::Str(region) if !region.contains("${") => Some(region.clone()),
                        _ => None,
                    }
                })
                .unwrap_or_default(),
        };
        let mut provider = self.provider(provider_node);
        provider.policies.stage_path = self.stage_path(custom);
        self.policy_names.has_api_keys = !provider.policies.api_keys.is_empty();
        let stage = match self.vars.options.get("stage") {
            Some(stage) => stage.clone(),
            None => provider.stage.clone().unwrap_or_else(|| "dev".to_owned()),
        };
        let region = match self.vars.options.get("region") {
            Some(region) => region.clone(),
            None => provider
                .region
                .clone()
                .unwrap_or_else(|| "us-east-1".to_owned()),
        };
        self.app.service = service.clone().unwrap_or_default();
        self.app.stage = stage.clone();
        self.app.region = region.clone();
        if let Some(entry) = functions_entry {
            let node = self.read(&entry.value, "functions");
            if let Value::Map(entries) = &node.value {
                self.app.function_names = entries.iter().map(|e| e.key.clone()).collect();
            }
        }
        let workers = match constructs {
            Some(entry) => self.constructs(entry),
            None => Vec::new(),
        };
        self.app
            .function_names
            .extend(workers.iter().map(|worker| worker.name.clone()));
        let construct_buckets = self.construct_buckets();
        let mut provider_grants = self.construct_grants(&workers, &construct_buckets);
        for (node, key) in &provider.iam {
            provider_grants.extend(self.provider_iam(node, key));
        }
        for (node, key) in &provider.iam_role_statements {
            provider_grants.extend(self.statements(node, key));
        }
        let mut functions = self.functions(functions_entry, &provider, &provider_grants);
        for worker in workers {
            let entry = Entry {
                key: worker.name.clone(),
                key_pos: worker.pos,
                value: worker.node.clone(),
            };
            let mut routes = RouteTable::default();
            let Some(mut function) =
                self.function(&entry, &provider, &provider_grants, &mut routes)
            else {
                continue;
            };
            if functions.iter().any(|f| f.name == function.name) {
                let message = format!(
                    "the worker of this construct is the function `{}`, which `functions` declares too; rename one",
                    function.name
                );
                self.error(worker.pos, &entry.key, message);
                continue;
            }
            // A webhook's authorizer has no event source: the gateway invokes it.
            let Some(event) = worker.event_source() else {
                functions.push(function);
                continue;
            };
            function.grants = with_event_grants(function.grants, std::slice::from_ref(&event));
            function.events.push(event);
            // Lift sets the queue's visibility timeout to six times its worker's timeout.
            if let Some(queue) = self
                .app
                .resources
                .queues
                .iter_mut()
                .find(|queue| worker.event.as_ref().is_some_and(|e| e.queue == queue.name))
            {
                queue.visibility_timeout = (function.timeout * 6).min(Duration::from_secs(43_200));
            }
            functions.push(function);
        }
        provider.policies.static_sites = std::mem::take(&mut self.app.static_sites);
        provider.policies.webhooks = std::mem::take(&mut self.app.webhooks);
        self.finish_authorizers(&mut provider.policies);
        self.finish_websocket(
            &mut provider.policies.websocket,
            service.as_deref().unwrap_or_default(),
            &stage,
        );
        self.check_destinations();
        self.finish_state_machines(pending_machines);
        Some(Manifest {
            service: service?,
            stage,
            region,
            functions,
            resources: std::mem::take(&mut self.app.resources),
            policies: std::mem::take(&mut provider.policies),
            custom: custom.map(|node| super::resources::to_json(&self.read_deep(node, "custom"))),
            warnings: Vec::new(),
        })
    }

    /// `plugins`: a list of names (or `{ modules: [..] }`). nimbus does what some of them do
    /// itself; each other plugin is a warning naming it.
    fn plugins(&mut self, node: &Node) {
        let node = self.read(node, "plugins");
        let (items, key) = match node.get("modules") {
            Some(entry) => (
                self.read(&entry.value, "plugins.modules"),
                "plugins.modules",
            ),
            None => (node, "plugins"),
        };
        let Some(items) = self.sequence(&items, key, "a list of plugin names") else {
            return;
        };
        for (item_idx, item) in items.iter().enumerate() {
            let item_key = format!("{key}[{item_idx}]");
            let item = self.read(item, &item_key);
            let Some(name) = self.string(&item, &item_key, "a plugin name") else {
                continue;
            };
            if !PLUGINS_STOOD_IN_FOR.contains(&name.as_str()) {
                let message = format!(
                    "the Serverless plugin `{name}` does not run under nimbus; ignored (COMPAT.md lists the plugins nimbus stands in for)"
                );
                self.warn(item.pos, &item_key, message);
            }
        }
    }

    fn service(&mut self, node: &Node) -> Option<String> {
        let node = self.read(node, "service");
        let (node, key) = match &node.value {
            Value::Map(_) => match node.get("name") {
                Some(entry) => (self.read(&entry.value, "service.name"), "service.name"),
                None => {
                    self.error(node.pos, "service", "missing `name`");
                    return None;
                }
            },
            _ => (node, "service"),
        };
        let name = self.string(&node, key, "a service name")?;
        if !is_name(&name) {
            let message =
                format!("service name {name:?} may only contain letters, digits, `-` and `_`");
            self.error(node.pos, key, message);
            return None;
        }
        Some(name)
    }

    fn provider(&mut self, node: Option<&Node>) -> Provider {
        let mut provider = Provider {
            runtime: RuntimeSetting::Unset,
            environment: Environment::default(),
            memory_mb: DEFAULT_MEMORY_MB,
            timeout: DEFAULT_TIMEOUT,
            ephemeral_storage_mb: DEFAULT_EPHEMERAL_STORAGE_MB,
            http_api_cors: false,
            policies: GatewayPolicies::default(),
            stage: None,
            region: None,
            iam: Vec::new(),
            iam_role_statements: Vec::new(),
        };
        let Some(node) = node else { return provider };
        let node = self.read(node, "provider");
        let entries = match node.value {
            Value::Map(entries) => entries,
            Value::Null | Value::Invalid => return provider,
            _ => {
                let message = format!("expected a mapping, got {}", node.describe());
                self.error(node.pos, "provider", message);
                return provider;
            }
        };
        for entry in &entries {
            let key = join_key("provider", &entry.key);
            match entry.key.as_str() {
                "name" => {
                    let value = self.read(&entry.value, &key);
                    if let Some(name) = self.string(&value, &key, "a provider name")
                        && name != "aws"
                    {
                        let message =
                            format!("nimbus reads manifests for the `aws` provider, not {name:?}");
                        self.error(value.pos, &key, message);
                    }
                }
                "runtime" => provider.runtime = self.runtime(&entry.value, &key),
                "stage" => {
                    let value = self.read(&entry.value, &key);
                    provider.stage = self.string(&value, &key, "a stage name");
                }
                "region" => {
                    let value = self.read(&entry.value, &key);
                    provider.region = self.string(&value, &key, "a region name");
                }
                "environment" => provider.environment = self.environment(&entry.value, &key),
                "memorySize" => {
                    if let Some(mb) = self.memory_mb(&entry.value, &key) {
                        provider.memory_mb = mb;
                    }
                }
                "ephemeralStorageSize" => {
                    if let Some(mb) = self.ephemeral_storage_mb(&entry.value, &key) {
                        provider.ephemeral_storage_mb = mb;
                    }
                }
                "timeout" => {
                    if let Some(timeout) = self.timeout(&entry.value, &key) {
                        provider.timeout = timeout;
                    }
                }
                "httpApi" => self.provider_http_api(&entry.value, &key, &mut provider),
                "apiGateway" => {
                    let (keys, plan) = self.api_gateway(&entry.value, &key);
                    provider.policies.api_keys = keys;
                    provider.policies.usage_plan = plan;
                }
                "websocketsApiName"
                | "websocketsApiRouteSelectionExpression"
                | "websocketsDescription"
                | "websockets" => {
                    self.websocket_provider_key(entry, &key, &mut provider.policies.websocket);
                }
                // nimbus extension: the rate limit of every route without its own.
                "rateLimit" => self.policy_names.rate_limit = self.rate_limit(&entry.value, &key),
                "iam" => provider.iam.push((entry.value.clone(), key)),
                // The Serverless Framework v2 spelling of `iam.role.statements`.
                "iamRoleStatements" => provider
                    .iam_role_statements
                    .push((entry.value.clone(), key)),
                _ => self.warn(entry.key_pos, &key, "not modelled by nimbus; ignored"),
            }
        }
        provider
    }

    /// `provider.httpApi`: `cors` and `authorizers`.
    fn provider_http_api(&mut self, node: &Node, key: &str, provider: &mut Provider) {
        let node = self.read(node, key);
        let entries = match node.value {
            Value::Map(entries) => entries,
            Value::Null | Value::Invalid => return,
            _ => {
                let message = format!("expected a mapping, got {}", node.describe());
                self.error(node.pos, key, message);
                return;
            }
        };
        for entry in &entries {
            let entry_key = join_key(key, &entry.key);
            match entry.key.as_str() {
                "cors" => provider.http_api_cors = self.cors(entry, &entry_key),
                "authorizers" => {
                    provider.policies.authorizers = self.authorizers(&entry.value, &entry_key);
                }
                _ => self.warn(entry.key_pos, &entry_key, "not modelled by nimbus; ignored"),
            }
        }
    }

    fn functions(
        &mut self,
        entry: Option<&Entry>,
        provider: &Provider,
        provider_grants: &[Grant],
    ) -> Vec<FunctionSpec> {
        let Some(entry) = entry else {
            self.error(
                Pos { line: 1, column: 1 },
                "functions",
                "missing `functions`; declare at least one function",
            );
            return Vec::new();
        };
        let node = self.read(&entry.value, "functions");
        let entries = match node.value {
            Value::Map(entries) if !entries.is_empty() => entries,
            Value::Map(_) | Value::Null => {
                self.error(
                    entry.key_pos,
                    "functions",
                    "`functions` is empty; declare at least one function",
                );
                return Vec::new();
            }
            Value::Invalid => return Vec::new(),
            _ => {
                let message = format!(
                    "expected a mapping from function names to functions, got {}",
                    node.describe()
                );
                self.error(node.pos, "functions", message);
                return Vec::new();
            }
        };
        let mut routes = RouteTable::default();
        let mut functions = Vec::new();
        for entry in &entries {
            if let Some(function) = self.function(entry, provider, provider_grants, &mut routes) {
                functions.push(function);
            }
        }
        functions
    }

    fn function(
        &mut self,
        entry: &Entry,
        provider: &Provider,
        provider_grants: &[Grant],
        routes: &mut RouteTable,
    ) -> Option<FunctionSpec> {
        let name = entry.key.as_str();
        let key = join_key("functions", name);
        let n_errors = self.errors.len();
        if !is_name(name) {
            let message =
                format!("function name {name:?} may only contain letters, digits, `-` and `_`");
            self.error(entry.key_pos, &key, message);
        }
        let node = self.read(&entry.value, &key);
        let fields = match node.value {
            Value::Map(fields) => fields,
            Value::Null => Vec::new(),
            Value::Invalid => return None,
            _ => {
                let message = format!(
                    "expected a mapping with at least `handler`, got {}",
                    node.describe()
                );
                self.error(node.pos, &key, message);
                return None;
            }
        };
        let mut handler = None;
        let mut runtime = RuntimeSetting::Unset;
        let mut environment = provider.environment.clone();
        let mut memory_mb = provider.memory_mb;
        let mut timeout = provider.timeout;
        let mut ephemeral_storage_mb = provider.ephemeral_storage_mb;
        let mut reserved_concurrency = None;
        let mut provisioned = None;
        let mut concurrency = None;
        let mut http_routes: Vec<HttpRoute> = Vec::new();
        let mut allowed_outbound_hosts = None;
        let mut cpu_ms = None;
        let mut function_events = FunctionEvents::default();
        let mut async_config = AsyncConfig::default();
        // Every function gets the provider's grants; its own statements (the
        // serverless-iam-roles-per-function plugin's `iamRoleStatements`) add to them.
        let mut grants: Vec<Grant> = provider_grants.to_vec();
        for field in &fields {
            let field_key = join_key(&key, &field.key);
            if self.async_field(field, &field_key, &mut async_config) {
                continue;
            }
            match field.key.as_str() {
                "handler" => {
                    let value = self.read(&field.value, &field_key);
                    match self.string(&value, &field_key, "a handler such as `src/api.handler`") {
                        Some(text) if text.is_empty() => {
                            self.error(
                                value.pos,
                                &field_key,
                                "the handler is empty; set it to `file.export`",
                            );
                        }
                        Some(text) => handler = Some((text, field.key_pos.line)),
                        None => {}
                    }
                }
                "runtime" => runtime = self.runtime(&field.value, &field_key),
                // The function's variables win over the provider's.
                "environment" => environment.extend(self.environment(&field.value, &field_key)),
                "memorySize" => {
                    memory_mb = self
                        .memory_mb(&field.value, &field_key)
                        .unwrap_or(memory_mb);
                }
                "timeout" => timeout = self.timeout(&field.value, &field_key).unwrap_or(timeout),
                "ephemeralStorageSize" => {
                    ephemeral_storage_mb = self
                        .ephemeral_storage_mb(&field.value, &field_key)
                        .unwrap_or(ephemeral_storage_mb);
                }
                "reservedConcurrency" => {
                    reserved_concurrency = self.reserved_concurrency(&field.value, &field_key);
                }
                "provisionedConcurrency" => {
                    let value = self.read(&field.value, &field_key);
                    provisioned = self
                        .whole_number(&value, &field_key, "a whole number of instances")
                        .map(|n_instances| (n_instances, value.pos));
                }
                "concurrency" => {
                    concurrency = self
                        .instance_concurrency(&field.value, &field_key)
                        .map(|n| (n, field.key_pos));
                }
                "events" => {
                    http_routes = self.events(
                        &field.value,
                        &field_key,
                        name,
                        provider.http_api_cors,
                        routes,
                        &mut function_events,
                    );
                }
                "iamRoleStatements" => {
                    grants.extend(self.statements(&field.value, &field_key));
                }
                "allowedOutboundHosts" => {
                    allowed_outbound_hosts =
                        Some((self.outbound_hosts(&field.value, &field_key), field.key_pos));
                }
                // A worker's CPU limit, as wrangler's `limits.cpu_ms`.
                "cpuMs" => {
                    let value = self.read(&field.value, &field_key);
                    cpu_ms = self.whole_number(&value, &field_key, "milliseconds of CPU time");
                }
                // Documentation only; nothing to do with it.
                "description" => {}
                _ => self.warn(field.key_pos, &field_key, "not modelled by nimbus; ignored"),
            }
        }
        if !fields.iter().any(|field| field.key == "handler") {
            let message = format!(
                "function `{name}` has no `handler`; set it to `file.export`, as in `handler: src/{name}.handler`"
            );
            self.error(entry.key_pos, &join_key(&key, "handler"), message);
        }
        let runtime = match (runtime, provider.runtime) {
            (RuntimeSetting::Set(runtime), _)
            | (RuntimeSetting::Unset, RuntimeSetting::Set(runtime)) => Some(runtime),
            (RuntimeSetting::Unset, RuntimeSetting::Unset) => {
                let message = format!(
                    "function `{name}` has no runtime; set `runtime` on it or under `provider`"
                );
                self.error(entry.key_pos, &join_key(&key, "runtime"), message);
                None
            }
            (RuntimeSetting::Invalid, _) | (RuntimeSetting::Unset, RuntimeSetting::Invalid) => None,
        };
        let provisioned_concurrency = match (provisioned, reserved_concurrency) {
            (Some((n_instances, pos)), Some(reserved)) if n_instances > u64::from(reserved) => {
                let message = format!(
                    "provisionedConcurrency {n_instances} exceeds reservedConcurrency {reserved}"
                );
                self.error(pos, &join_key(&key, "provisionedConcurrency"), message);
                0
            }
            (Some((n_instances, pos)), _) => match u32::try_from(n_instances) {
                Ok(n_instances) => n_instances,
                Err(_) => {
                    self.error(pos, &join_key(&key, "provisionedConcurrency"), "too large");
                    0
                }
            },
            (None, _) => 0,
        };
        let concurrency = match (concurrency, runtime) {
            (Some((1, _)), _) => 1,
            (Some((n, _)), Some(Runtime::Node { .. })) => n,
            (Some((n, pos)), Some(other)) => {
                let message = format!(
                    "concurrency {n} is for Node.js functions, whose handlers are async; a {other} function runs one invocation per instance (remove the key)"
                );
                self.error(pos, &join_key(&key, "concurrency"), message);
                1
            }
            (Some(_), None) | (None, _) => 1,
        };
        let allowed_outbound_hosts = match allowed_outbound_hosts {
            Some((_, pos)) if runtime.is_some_and(|r| r != Runtime::Wasm) => {
                self.warn(
                    pos,
                    &join_key(&key, "allowedOutboundHosts"),
                    "only wasm functions are limited to allowedOutboundHosts; ignored",
                );
                Vec::new()
            }
            Some((hosts, _)) => hosts,
            None => Vec::new(),
        };
        let FunctionEvents {
            sources: events,
            ignored: ignored_events,
        } = function_events;
        self.check_visibility_timeouts(&events, timeout, entry.key_pos, &key);
        if self.errors.len() > n_errors {
            return None;
        }
        let (handler, handler_line) = handler?;
        // A worker in nimbus.yaml sees its `environment` as `vars`.
        let worker = (runtime == Some(Runtime::Workers)).then(|| crate::worker::WorkerSpec {
            cpu_limit: cpu_ms
                .filter(|ms| *ms > 0)
                .map(std::time::Duration::from_millis),
            ..crate::worker::WorkerSpec::with_vars(&environment.values)
        });
        Some(FunctionSpec {
            name: name.to_owned(),
            handler,
            handler_line,
            runtime: runtime?,
            memory_mb,
            timeout,
            ephemeral_storage_mb,
            secrets: environment.secret_names(),
            environment: environment.values,
            reserved_concurrency,
            provisioned_concurrency,
            concurrency,
            http_routes,
            allowed_outbound_hosts,
            grants: with_event_grants(grants, &events),
            events,
            async_config,
            ignored_events,
            worker,
        })
    }

    /// `allowedOutboundHosts`: a list of `host`, `host:port` or `http(s)://host[:port]`,
    /// kept as `host` or `host:port`.
    fn outbound_hosts(&mut self, node: &Node, key: &str) -> Vec<String> {
        let node = self.read(node, key);
        let items = match node.value {
            Value::Seq(items) => items,
            Value::Null | Value::Invalid => return Vec::new(),
            _ => {
                let message = format!(
                    "expected a list of hosts such as `api.example.com` or `127.0.0.1:8080`, got {}",
                    node.describe()
                );
                self.error(node.pos, key, message);
                return Vec::new();
            }
        };
        let mut hosts = Vec::new();
        for (host_idx, item) in items.iter().enumerate() {
            let item_key = format!("{key}[{host_idx}]");
            let item = self.read(item, &item_key);
            let Some(text) = self.string(&item, &item_key, "a host such as `api.example.com`")
            else {
                continue;
            };
            let host = text
                .trim()
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .trim_end_matches('/');
            let valid = !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-.:[]*".contains(c));
            if valid {
                hosts.push(host.to_ascii_lowercase());
            } else {
                let message = format!(
                    "{text:?} is not a host; write `host`, `host:port` or `http://host:port`"
                );
                self.error(item.pos, &item_key, message);
            }
        }
        hosts
    }

    fn runtime(&mut self, node: &Node, key: &str) -> RuntimeSetting {
        let node = self.read(node, key);
        let Some(name) = self.string(&node, key, "a runtime name") else {
            return RuntimeSetting::Invalid;
        };
        match RUNTIMES.iter().find(|(known, _)| *known == name) {
            Some((_, runtime)) => RuntimeSetting::Set(*runtime),
            None => {
                let names: Vec<&str> = RUNTIMES.iter().map(|(known, _)| *known).collect();
                let message = format!(
                    "unknown runtime {name:?}; nimbus supports {}",
                    names.join(", ")
                );
                self.error(node.pos, key, message);
                RuntimeSetting::Invalid
            }
        }
    }

    /// A mapping of variable names to text; numbers and booleans are written as text.
    fn environment(&mut self, node: &Node, key: &str) -> Environment {
        let node = self.read(node, key);
        let entries = match node.value {
            Value::Map(entries) => entries,
            Value::Null | Value::Invalid => return Environment::default(),
            _ => {
                let message = format!(
                    "expected a mapping of variable names to values, got {}",
                    node.describe()
                );
                self.error(node.pos, key, message);
                return Environment::default();
            }
        };
        let mut environment = Environment::default();
        for entry in &entries {
            let entry_key = join_key(key, &entry.key);
            if !is_env_name(&entry.key) {
                let message = format!(
                    "environment variable name {:?} must be letters, digits and `_`, not starting with a digit",
                    entry.key
                );
                self.error(entry.key_pos, &entry_key, message);
            }
            // Only here may `${secret:..}` be used; the scope collects the secrets it reads.
            self.secret_scope = Some(Vec::new());
            let value = self.read(&entry.value, &entry_key);
            let secrets = self.secret_scope.take().unwrap_or_default();
            let text = match value.value {
                Value::Str(s) => s,
                Value::Int(i) => i.to_string(),
                Value::Float(f) => f.to_string(),
                Value::Bool(b) => b.to_string(),
                Value::Invalid => continue,
                // `{ Ref: OrdersQueue }` or `!GetAtt OrdersQueue.Arn`: the resource's ARN
                // (a bucket's `Ref`, its name), which nimbus's clients accept as well as names.
                Value::Map(entries) if matches!(entries.as_slice(), [intrinsic] if is_intrinsic(&intrinsic.key)) => {
                    match self.reference_text(&entry.value, &entry_key, "a string") {
                        Some((text, _)) => text,
                        None => continue,
                    }
                }
                Value::Null | Value::Seq(_) | Value::Map(_) => {
                    let message = format!("expected a string, got {}", value.describe());
                    self.error(value.pos, &entry_key, message);
                    continue;
                }
            };
            if !secrets.is_empty() {
                environment.secrets.insert(entry.key.clone(), secrets);
            }
            environment.values.insert(entry.key.clone(), text);
        }
        environment
    }

    fn memory_mb(&mut self, node: &Node, key: &str) -> Option<u32> {
        let node = self.read(node, key);
        let mb = self.whole_number(&node, key, "a whole number of MB")?;
        match u32::try_from(mb) {
            Ok(mb) if mb > 0 => Some(mb),
            _ => {
                self.error(node.pos, key, format!("memorySize {mb} MB is out of range"));
                None
            }
        }
    }

    /// `ephemeralStorageSize`: whole MB, 512 to 10240 as on Lambda.
    fn ephemeral_storage_mb(&mut self, node: &Node, key: &str) -> Option<u32> {
        let node = self.read(node, key);
        let mb = self.whole_number(&node, key, "a whole number of MB")?;
        match u32::try_from(mb) {
            Ok(mb) if (DEFAULT_EPHEMERAL_STORAGE_MB..=MAX_EPHEMERAL_STORAGE_MB).contains(&mb) => {
                Some(mb)
            }
            _ => {
                self.error(
                    node.pos,
                    key,
                    format!(
                        "ephemeralStorageSize {mb} MB is out of range ({DEFAULT_EPHEMERAL_STORAGE_MB} to {MAX_EPHEMERAL_STORAGE_MB})"
                    ),
                );
                None
            }
        }
    }

    /// Seconds, whole or not (`timeout: 0.5`).
    fn timeout(&mut self, node: &Node, key: &str) -> Option<Duration> {
        let node = self.read(node, key);
        let seconds = match &node.value {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            Value::Str(s) => s.trim().parse::<f64>().ok(),
            Value::Invalid => return None,
            _ => None,
        };
        let Some(seconds) = seconds else {
            let message = format!("expected a number of seconds, got {}", node.describe());
            self.error(node.pos, key, message);
            return None;
        };
        match Duration::try_from_secs_f64(seconds) {
            Ok(timeout) if !timeout.is_zero() => Some(timeout),
            _ => {
                let message =
                    format!("timeout must be a positive number of seconds, got {seconds}");
                self.error(node.pos, key, message);
                None
            }
        }
    }

    /// `concurrency`: invocations one instance runs at once, 1 to
    /// `MAX_INSTANCE_CONCURRENCY`.
    fn instance_concurrency(&mut self, node: &Node, key: &str) -> Option<u32> {
        let node = self.read(node, key);
        let what = format!(
            "a whole number of invocations per instance from 1 to {MAX_INSTANCE_CONCURRENCY}"
        );
        let n = self.whole_number(&node, key, &what)?;
        match u32::try_from(n) {
            Ok(n) if (1..=MAX_INSTANCE_CONCURRENCY).contains(&n) => Some(n),
            _ => {
                self.error(
                    node.pos,
                    key,
                    format!("concurrency {n} is out of range: expected {what}"),
                );
                None
            }
        }
    }

    /// `reservedConcurrency`. Zero is an error: on AWS it disables the function, which
    /// nimbus users express by removing the function instead.
    fn reserved_concurrency(&mut self, node: &Node, key: &str) -> Option<u32> {
        let node = self.read(node, key);
        let n_instances = self.whole_number(&node, key, "a whole number of instances")?;
        match u32::try_from(n_instances) {
            Ok(0) => {
                self.error(
                    node.pos,
                    key,
                    "reservedConcurrency 0 would throttle every invocation; remove the key or the function",
                );
                None
            }
            Ok(n_instances) => Some(n_instances),
            Err(_) => {
                self.error(
                    node.pos,
                    key,
                    format!("reservedConcurrency {n_instances} is too large"),
                );
                None
            }
        }
    }

    /// A non-negative whole number; text holding one is accepted too, because values
    /// from `${env:..}` are always text.
    pub(super) fn whole_number(&mut self, node: &Node, key: &str, what: &str) -> Option<u64> {
        let number = match &node.value {
            Value::Int(i) => u64::try_from(*i).ok(),
            Value::Str(s) => s.trim().parse::<u64>().ok(),
            Value::Invalid => return None,
            _ => None,
        };
        if number.is_none() {
            self.error(
                node.pos,
                key,
                format!("expected {what}, got {}", node.describe()),
            );
        }
        number
    }

    /// A string, or an error naming what was expected.
    pub(super) fn string(&mut self, node: &Node, key: &str, what: &str) -> Option<String> {
        match &node.value {
            Value::Str(s) => Some(s.clone()),
            Value::Invalid => None,
            _ => {
                self.error(
                    node.pos,
                    key,
                    format!("expected {what}, got {}", node.describe()),
                );
                None
            }
        }
    }

    /// Warns about each `sqs` queue whose visibility timeout is shorter than the function's
    /// timeout: a message still being processed would become visible again and be
    /// delivered twice. AWS refuses such a mapping at deploy.
    fn check_visibility_timeouts(
        &mut self,
        events: &[EventSource],
        timeout: Duration,
        pos: Pos,
        key: &str,
    ) {
        for event in events {
            let EventSource::Sqs(sqs) = event else {
                continue;
            };
            let Some(queue) = self
                .app
                .resources
                .queues
                .iter()
                .find(|q| q.name == sqs.queue)
            else {
                continue;
            };
            if queue.visibility_timeout < timeout {
                let message = format!(
                    "queue `{}` hides a received message for {}s, less than this function's timeout of {}s, so a message still being processed can be delivered again (AWS refuses this at deploy); give the queue a visibilityTimeout of at least {}s (AWS recommends 6 times the timeout)",
                    queue.name,
                    queue.visibility_timeout.as_secs_f64(),
                    timeout.as_secs_f64(),
                    timeout.as_secs_f64().ceil(),
                );
                self.warn(pos, key, message);
            }
        }
    }

    /// `cors: true | false`, or a mapping of CORS options, which nimbus treats as `true`.
    pub(super) fn cors(&mut self, entry: &Entry, key: &str) -> bool {
        let node = self.read(&entry.value, key);
        match &node.value {
            Value::Bool(cors) => *cors,
            Value::Str(s) if s == "true" || s == "false" => s == "true",
            Value::Map(_) => {
                self.warn(
                    entry.key_pos,
                    key,
                    "CORS options are not modelled by nimbus; treated as `cors: true`",
                );
                true
            }
            Value::Invalid => false,
            _ => {
                let message = format!("expected true or false, got {}", node.describe());
                self.error(node.pos, key, message);
                false
            }
        }
    }
}

/// `grants` plus what the function's events imply: consuming each of its `sqs` queues.
fn with_event_grants(mut grants: Vec<Grant>, events: &[EventSource]) -> Vec<Grant> {
    for event in events {
        if let EventSource::Sqs(sqs) = event {
            let grant = Grant {
                actions: vec![
                    "sqs:ReceiveMessage".to_owned(),
                    "sqs:DeleteMessage".to_owned(),
                    "sqs:ChangeMessageVisibility".to_owned(),
                ],
                resources: vec![format!("queue:{}", sqs.queue)],
            };
            if !grants.contains(&grant) {
                grants.push(grant);
            }
        }
    }
    grants
}

/// Function and service names end up in URLs, paths and metric labels.
fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn is_env_name(name: &str) -> bool {
    !name.starts_with(|c: char| c.is_ascii_digit())
        && !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}
