//! A function as the manifest declares it, validated and with variables resolved.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::events::{AsyncConfig, EventSource, Grant};
use crate::policy::{RateLimit, RouteAuthorizer};

/// The most invocations one instance may run at once (`concurrency`), as Cloud Run's
/// per-instance limit.
pub const MAX_INSTANCE_CONCURRENCY: u32 = 1000;

/// One function of an app: its code, runtime, limits and triggers.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionSpec {
    /// The key under `functions:` in the manifest.
    pub name: String,
    /// `file.export` for node and python; for `provided` runtimes the value is passed
    /// to the bootstrap as `_HANDLER`.
    pub handler: String,
    /// 1-based line of the `handler` key, so later checks (missing file) can point at it.
    pub handler_line: usize,
    /// Which runtime runs the function.
    pub runtime: Runtime,
    /// Memory limit in MB (`memorySize`), default 1024 as in the Serverless Framework.
    pub memory_mb: u32,
    /// Invocation deadline (`timeout`), default 6 seconds as in the Serverless Framework.
    pub timeout: Duration,
    /// The size of a process function's `/tmp` in MB (`ephemeralStorageSize`), 512 to
    /// 10240, default 512 as on Lambda.
    pub ephemeral_storage_mb: u32,
    /// Provider environment merged with the function's own (the function wins).
    pub environment: BTreeMap<String, String>,
    /// The secrets (`${secret:NAME}`) whose values are in `environment`, by name, sorted.
    /// Their values are never to be shown: executors' log sinks redact them.
    pub secrets: Vec<String>,
    /// At most this many instances at once (`reservedConcurrency`); `None` is unbounded.
    pub reserved_concurrency: Option<u32>,
    /// Instances started at boot and kept warm (`provisionedConcurrency`).
    pub provisioned_concurrency: u32,
    /// Invocations one instance runs at once (`concurrency`, Node.js only): 1, Lambda's
    /// semantics, unless the manifest opts in; at most `MAX_INSTANCE_CONCURRENCY`.
    pub concurrency: u32,
    /// `http` and `httpApi` events of the function.
    pub http_routes: Vec<HttpRoute>,
    /// `allowedOutboundHosts`: the `host` or `host:port` a wasm function may send HTTP
    /// requests to; empty denies every outbound request.
    pub allowed_outbound_hosts: Vec<String>,
    /// `sqs`, `sns`, `s3` and `schedule` events of the function, in manifest order.
    pub events: Vec<EventSource>,
    /// Retries and destinations of asynchronous invocations.
    pub async_config: AsyncConfig,
    /// What the function may reach: the provider's IAM statements, its own, and those its
    /// events imply (receiving from its `sqs` queues).
    pub grants: Vec<Grant>,
    /// The types of the function's events that nimbus does not serve (`websocket`,
    /// `alexaSkill`, ...), in manifest order; each is also a warning.
    pub ignored_events: Vec<String>,
    /// The bindings and limits of a `runtime: workers` function; `None` for the others.
    pub worker: Option<crate::worker::WorkerSpec>,
}

/// A runtime named in the manifest (`nodejs20.x`, `python3.12`, `provided.al2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// `nodejsNN.x`, with NN the major version.
    Node {
        /// The major Node.js version named, for example 20.
        major: u32,
    },
    /// `python3.N`, with N the minor version.
    Python {
        /// The minor Python 3 version named, for example 12.
        minor: u32,
    },
    /// `provided`, `provided.al2` or `provided.al2023`: the function's own `bootstrap`.
    Provided,
    /// `wasm`: a WebAssembly component, invoked in-process; `handler` is its `.wasm` path.
    Wasm,
    /// `workers`: a Workers-style JavaScript module (or service-worker script) served by
    /// one long-lived host process that takes many requests at once; `handler` is the
    /// module's path.
    Workers,
}

/// Which API Gateway flavour a route belongs to; it decides the event shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ApiKind {
    /// `http` events: API Gateway REST API, proxy integration payload 1.0.
    Rest,
    /// `httpApi` events: API Gateway HTTP API, payload format 2.0.
    Http,
}

/// The method a route matches.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HttpMethod {
    /// `ANY` or `*`: every method.
    Any,
    /// One method, upper case (`GET`, `POST`, ...).
    Named(String),
}

/// One HTTP route of a function.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpRoute {
    /// The API flavour, which decides the event format.
    pub api: ApiKind,
    /// The method matched.
    pub method: HttpMethod,
    /// The path template, always starting with `/`, with `{param}` and `{proxy+}` segments.
    /// `*` alone (an `httpApi: '*'` catch-all) is kept as `*`.
    pub path: String,
    /// `cors: true`: answer preflight requests and add CORS headers to responses.
    pub cors: bool,
    /// `authorizer`: the authorizer every request must pass.
    pub authorizer: Option<RouteAuthorizer>,
    /// `private: true` (REST): requests need a valid `x-api-key`.
    pub private: bool,
    /// `rateLimit`, else `provider.rateLimit` (nimbus extension).
    pub rate_limit: Option<RateLimit>,
}

impl HttpRoute {
    /// Whether the gateway checks anything before invoking: routes without policies
    /// skip that step entirely.
    pub fn has_policies(&self) -> bool {
        self.private || self.authorizer.is_some() || self.rate_limit.is_some()
    }
}

impl fmt::Display for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Runtime::Node { major } => write!(f, "nodejs{major}.x"),
            Runtime::Python { minor } => write!(f, "python3.{minor}"),
            Runtime::Provided => f.write_str("provided"),
            Runtime::Wasm => f.write_str("wasm"),
            Runtime::Workers => f.write_str("workers"),
        }
    }
}

impl fmt::Display for HttpMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpMethod::Any => f.write_str("ANY"),
            HttpMethod::Named(method) => f.write_str(method),
        }
    }
}
