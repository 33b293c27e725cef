//! Edge functions (Cloudflare Workers, Vercel Edge): what a `runtime: workers` function
//! is bound to, as `wrangler.toml` or the nimbus manifest declares it.

use std::time::Duration;

/// The settings of a Workers-style function beyond those every function has.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WorkerSpec {
    /// `compatibility_date`, as written; nimbus records it and does not change behaviour
    /// by it.
    pub compatibility_date: Option<String>,
    /// `compatibility_flags`, as written (`nodejs_compat` and friends).
    pub compatibility_flags: Vec<String>,
    /// What `env` (module syntax) or the global scope (service-worker syntax) holds.
    pub bindings: Vec<WorkerBinding>,
    /// `limits.cpu_ms`: the longest the worker may hold its host's event loop without a
    /// pause; `None` leaves only the function's `timeout`.
    pub cpu_limit: Option<Duration>,
    /// The `triggers.crons` of the worker, with the schedule name each became, so the
    /// `scheduled` handler is told which cron fired.
    pub crons: Vec<WorkerCron>,
    /// `request.cf` fields (`country`, `colo`, `city`, ...) every request starts with,
    /// before the `CF-IPCountry`-style headers of the request override them.
    pub cf_defaults: Vec<(String, String)>,
}

/// One name in a worker's `env`.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerBinding {
    /// The name the code uses (`env.CACHE`, or the global `CACHE`).
    pub name: String,
    /// What it is bound to.
    pub kind: BindingKind,
}

/// What a binding reaches.
#[derive(Debug, Clone, PartialEq)]
pub enum BindingKind {
    /// `vars`: a string or a JSON value.
    Var(serde_json::Value),
    /// `kv_namespaces`: a nimbus KV namespace, by name.
    Kv {
        /// The namespace.
        namespace: String,
    },
    /// `queues.producers`: a nimbus queue to send to.
    Queue {
        /// The queue.
        queue: String,
    },
    /// `r2_buckets`: a nimbus bucket.
    Bucket {
        /// The bucket.
        bucket: String,
    },
    /// `services`: another function of the app, reached with `fetch`.
    Service {
        /// The function's name in the app.
        function: String,
    },
    /// `durable_objects.bindings`: a Durable Object namespace, whose objects live in the
    /// worker's host and keep their storage in a
    /// [`DurableObjectStore`](crate::durable_objects::DurableObjectStore).
    DurableObject {
        /// The class the namespace's objects are instances of.
        class: String,
    },
}

/// A `triggers.crons` entry and the schedule nimbus runs it as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerCron {
    /// The schedule's name (`ScheduleEvent::name`).
    pub schedule: String,
    /// The cron as the worker wrote it (five fields), which `event.cron` holds.
    pub cron: String,
}

impl WorkerSpec {
    /// A worker whose only bindings are these string `vars` (a `runtime: workers`
    /// function in nimbus.yaml, whose `environment` they are).
    pub fn with_vars(vars: &std::collections::BTreeMap<String, String>) -> WorkerSpec {
        WorkerSpec {
            bindings: vars
                .iter()
                .map(|(name, value)| WorkerBinding {
                    name: name.clone(),
                    kind: BindingKind::Var(serde_json::Value::String(value.clone())),
                })
                .collect(),
            ..WorkerSpec::default()
        }
    }

    /// The host's view of the worker: the JSON the shipped Workers host reads its
    /// bindings, crons and `request.cf` defaults from (`NIMBUS_WORKER`).
    pub fn host_config(&self) -> serde_json::Value {
        let bindings: serde_json::Map<String, serde_json::Value> = self
            .bindings
            .iter()
            .map(|b| {
                let value = match &b.kind {
                    BindingKind::Var(value) => serde_json::json!({"type": "var", "value": value}),
                    BindingKind::Kv { namespace } => {
                        serde_json::json!({"type": "kv", "namespace": namespace})
                    }
                    BindingKind::Queue { queue } => {
                        serde_json::json!({"type": "queue", "queue": queue})
                    }
                    BindingKind::Bucket { bucket } => {
                        serde_json::json!({"type": "r2", "bucket": bucket})
                    }
                    BindingKind::Service { function } => {
                        serde_json::json!({"type": "service", "function": function})
                    }
                    BindingKind::DurableObject { class } => serde_json::json!({
                        "type": "durable_object",
                        "class": class,
                    }),
                };
                (b.name.clone(), value)
            })
            .collect();
        let crons: serde_json::Map<String, serde_json::Value> = self
            .crons
            .iter()
            .map(|c| {
                (
                    c.schedule.clone(),
                    serde_json::Value::String(c.cron.clone()),
                )
            })
            .collect();
        let cf: serde_json::Map<String, serde_json::Value> = self
            .cf_defaults
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        serde_json::json!({
            "bindings": bindings,
            "crons": crons,
            "cf": cf,
            "compatibilityDate": self.compatibility_date,
            "compatibilityFlags": self.compatibility_flags,
        })
    }
}
