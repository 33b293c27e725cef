//! `wrangler.toml` and `wrangler.json(c)`: a Cloudflare Worker's own configuration, read
//! unchanged into an app of one `runtime: workers` function.
//!
//! KV namespaces become nimbus KV namespaces named by their binding, R2 buckets nimbus
//! buckets (`bucket_name`), queues nimbus queues, `triggers.crons` schedules, and the
//! worker answers every path of the gateway (`routes` name zones nimbus does not serve).

use std::borrow::Cow;
use std::time::Duration;

use super::tree::{self, Entry, Node, Pos, Value};
use super::{Diagnostic, Manifest, Variables, diagnostic, sorted};
use crate::events::{
    AppResources, AsyncConfig, EventSource, Grant, QueueSpec, Redrive, ScheduleEvent, SqsEvent,
};
use crate::function::{ApiKind, FunctionSpec, HttpMethod, HttpRoute, Runtime};
use crate::policy::GatewayPolicies;
use crate::schedule::ScheduleExpression;
use crate::worker::{BindingKind, WorkerBinding, WorkerCron, WorkerSpec};

/// The file names a Worker's configuration goes by, in the order wrangler looks for them.
pub const WRANGLER_FILES: &[&str] = &["wrangler.toml", "wrangler.jsonc", "wrangler.json"];

/// Reads a `wrangler.toml` (or, when `file` ends in `.json` / `.jsonc`, a
/// `wrangler.json(c)`) into an app: one `runtime: workers` function named after the
/// worker, its bindings, and the queues, buckets, KV namespaces and schedules they use.
pub fn parse(source: &str, file: &str, vars: &Variables) -> Result<Manifest, Vec<Diagnostic>> {
    let root = if file.ends_with(".json") || file.ends_with(".jsonc") {
        // JSON is YAML's flow style, which also allows trailing commas; only the comments
        // of JSONC need blanking (with spaces, so positions stay true).
        match tree::load(&blank_json_comments(source)) {
            Ok(loaded) => loaded.root,
            Err(problems) => {
                return Err(problems
                    .into_iter()
                    .map(|p| diagnostic(file, p.pos, &p.key, p.message))
                    .collect());
            }
        }
    } else {
        match toml::de::DeTable::parse(source) {
            Ok(table) => Some(from_toml_table(
                source,
                table.get_ref(),
                pos_at(source, table.span().start),
            )),
            Err(e) => {
                let pos = pos_at(source, e.span().map_or(0, |span| span.start));
                let message = format!("not valid TOML: {}", e.message().trim_end());
                return Err(vec![diagnostic(file, pos, "", message)]);
            }
        }
    };
    let Some(root) = root else {
        return Err(vec![diagnostic(
            file,
            Pos { line: 1, column: 1 },
            "",
            "the worker's configuration is empty; it needs at least `name` and `main`",
        )]);
    };
    let mut cx = Cx {
        file,
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let stage = vars
        .options
        .get("stage")
        .cloned()
        .unwrap_or_else(|| "dev".to_owned());
    let region = vars
        .options
        .get("region")
        .cloned()
        .unwrap_or_else(|| "us-east-1".to_owned());
    let mut res = cx.worker(&root, stage, region);
    // `.dev.vars` (dotenv lines) holds a worker's secrets for local runs, as `wrangler
    // dev` reads it; its values win over `vars` of the same name.
    if let (Some(manifest), Some(files)) = (res.as_mut(), vars.files.as_ref()) {
        match files.read(".dev.vars") {
            Ok(Some(text)) => add_dev_vars(manifest, &text),
            Ok(None) => {}
            Err(message) => cx.warn(
                Pos { line: 1, column: 1 },
                "",
                format!(".dev.vars not read: {message}"),
            ),
        }
    }
    let errors = sorted(cx.errors);
    match res {
        Some(mut manifest) if errors.is_empty() => {
            manifest.warnings = sorted(cx.warnings);
            Ok(manifest)
        }
        _ if errors.is_empty() => Err(vec![diagnostic(
            file,
            root.pos,
            "",
            "the configuration was rejected without a reason; this is a bug in nimbus",
        )]),
        _ => Err(errors),
    }
}

/// Keys of wrangler's configuration that only mean something to Cloudflare's deploy
/// (accounts, zones, bundling, the dashboard): read and left alone without a warning.
const CLOUD_ONLY_KEYS: &[&str] = &[
    "$schema",
    "account_id",
    "workers_dev",
    "preview_urls",
    "zone_id",
    "usage_model",
    "placement",
    "observability",
    "upload_source_maps",
    "minify",
    "keep_names",
    "node_compat",
    "tsconfig",
    "rules",
    "no_bundle",
    "find_additional_modules",
    "base_dir",
    "preserve_file_names",
    "logpush",
    "tail_consumers",
    "dev",
    "build",
    "send_metrics",
    "keep_vars",
    "migrations",
    "alias",
    "define",
    "jsx_factory",
    "jsx_fragment",
];

/// Workers' memory limit per isolate, which nimbus gives the host process.
const WORKER_MEMORY_MB: u32 = 128;
/// How long one invocation may take in wall-clock time. Workers has no such limit while
/// the client waits; nimbus needs one to keep an invocation from waiting forever.
const WORKER_TIMEOUT: Duration = Duration::from_secs(30);

struct Cx<'a> {
    file: &'a str,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
}

/// What the bindings of the worker add to the app.
#[derive(Default)]
struct Collected {
    bindings: Vec<WorkerBinding>,
    resources: AppResources,
    grants: Vec<Grant>,
    events: Vec<EventSource>,
    crons: Vec<WorkerCron>,
}

impl Cx<'_> {
    fn error(&mut self, pos: Pos, key: &str, message: impl Into<String>) {
        self.errors
            .push(diagnostic(self.file, pos, key, message.into()));
    }

    fn warn(&mut self, pos: Pos, key: &str, message: impl Into<String>) {
        self.warnings
            .push(diagnostic(self.file, pos, key, message.into()));
    }

    fn worker(&mut self, root: &Node, stage: String, region: String) -> Option<Manifest> {
        let Value::Map(entries) = &root.value else {
            self.error(
                root.pos,
                "",
                format!(
                    "expected a table of settings such as `name` and `main`, got {}",
                    root.describe()
                ),
            );
            return None;
        };
        let mut name = None;
        let mut main = None;
        let mut collected = Collected::default();
        let mut worker = WorkerSpec::default();
        for entry in entries {
            let key = entry.key.as_str();
            match key {
                "name" => name = self.name(entry),
                "main" => main = self.string(&entry.value, key).map(|m| (m, entry.key_pos)),
                "compatibility_date" => worker.compatibility_date = self.string(&entry.value, key),
                "compatibility_flags" => {
                    worker.compatibility_flags = self.strings(&entry.value, key);
                }
                "vars" => self.vars(&entry.value, &mut collected),
                "kv_namespaces" => self.kv_namespaces(&entry.value, &mut collected),
                "r2_buckets" => self.r2_buckets(&entry.value, &mut collected),
                "queues" => self.queues(&entry.value, &mut collected),
                "services" => self.services(&entry.value, &mut collected),
                "durable_objects" => self.durable_objects(&entry.value, &mut collected),
                "triggers" => self.triggers(&entry.value, &mut collected),
                "limits" => worker.cpu_limit = self.limits(&entry.value),
                "routes" | "route" => self.warn(
                    entry.key_pos,
                    key,
                    "routes name Cloudflare zones; nimbus serves the worker at every path of its gateway",
                ),
                "env" => self.warn(
                    entry.key_pos,
                    key,
                    "wrangler environments are not read yet; the top-level settings are used",
                ),
                "nimbus" => worker.cf_defaults = self.nimbus_settings(&entry.value),
                _ if CLOUD_ONLY_KEYS.contains(&key) => {}
                _ => self.warn(
                    entry.key_pos,
                    key,
                    format!("`{key}` is not modelled by nimbus; ignored"),
                ),
            }
        }
        let Some(name) = name else {
            if root.get("name").is_some() {
                return None;
            }
            self.error(
                root.pos,
                "name",
                "the worker has no `name`; add `name = \"my-worker\"`",
            );
            return None;
        };
        let Some((main, main_pos)) = main else {
            if root.get("main").is_some() {
                return None;
            }
            self.error(
                root.pos,
                "main",
                "the worker has no `main`; add `main = \"src/index.js\"`, the module that exports its handlers",
            );
            return None;
        };
        let main = main.trim_start_matches("./").to_owned();
        for (idx, cron) in collected.crons.iter_mut().enumerate() {
            cron.schedule = format!("{name}-cron-{idx}");
        }
        for event in &mut collected.events {
            if let EventSource::Schedule(schedule) = event
                && let Some(idx) = schedule.name.strip_prefix("cron-")
            {
                schedule.name = format!("{name}-cron-{idx}");
            }
        }
        worker.bindings = collected.bindings;
        worker.crons = collected.crons;
        let grants = with_consumer_grants(collected.grants, &collected.events);
        let function = FunctionSpec {
            name: name.clone(),
            handler: main,
            handler_line: main_pos.line,
            runtime: Runtime::Workers,
            memory_mb: WORKER_MEMORY_MB,
            timeout: WORKER_TIMEOUT,
            ephemeral_storage_mb: 512,
            environment: Default::default(),
            secrets: Vec::new(),
            reserved_concurrency: None,
            provisioned_concurrency: 0,
            concurrency: 1,
            http_routes: vec![HttpRoute {
                api: ApiKind::Http,
                method: HttpMethod::Any,
                path: "*".to_owned(),
                cors: false,
                authorizer: None,
                private: false,
                rate_limit: None,
            }],
            allowed_outbound_hosts: Vec::new(),
            events: collected.events,
            async_config: AsyncConfig::default(),
            grants,
            ignored_events: Vec::new(),
            worker: Some(worker),
        };
        Some(Manifest {
            service: name,
            stage,
            region,
            functions: vec![function],
            resources: collected.resources,
            policies: GatewayPolicies::default(),
            custom: None,
            warnings: Vec::new(),
        })
    }

    fn name(&mut self, entry: &Entry) -> Option<String> {
        let name = self.string(&entry.value, "name")?;
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid {
            self.error(
                entry.value.pos,
                "name",
                format!("`{name}` is not a worker name; use letters, digits, `-` and `_`"),
            );
            return None;
        }
        Some(name)
    }

    fn string(&mut self, node: &Node, key: &str) -> Option<String> {
        match &node.value {
            Value::Str(s) => Some(s.clone()),
            _ => {
                self.error(
                    node.pos,
                    key,
                    format!("expected a string, got {}", node.describe()),
                );
                None
            }
        }
    }

    fn strings(&mut self, node: &Node, key: &str) -> Vec<String> {
        let Value::Seq(items) = &node.value else {
            self.error(
                node.pos,
                key,
                format!("expected a list of strings, got {}", node.describe()),
            );
            return Vec::new();
        };
        items
            .iter()
            .enumerate()
            .filter_map(|(idx, item)| self.string(item, &format!("{key}[{idx}]")))
            .collect()
    }

    fn number(&mut self, node: &Node, key: &str) -> Option<u64> {
        match &node.value {
            Value::Int(n) if *n >= 0 => u64::try_from(*n).ok(),
            _ => {
                self.error(
                    node.pos,
                    key,
                    format!("expected a whole number, got {}", node.describe()),
                );
                None
            }
        }
    }

    /// The entries of a table (`[vars]`, `[limits]`), or an error.
    fn table<'n>(&mut self, node: &'n Node, key: &str) -> &'n [Entry] {
        match &node.value {
            Value::Map(entries) => entries,
            _ => {
                self.error(
                    node.pos,
                    key,
                    format!("expected a table, got {}", node.describe()),
                );
                &[]
            }
        }
    }

    /// The tables of an array of tables (`[[kv_namespaces]]`), each with its key path.
    fn tables<'n>(&mut self, node: &'n Node, key: &str) -> Vec<(String, &'n Node)> {
        let Value::Seq(items) = &node.value else {
            self.error(
                node.pos,
                key,
                format!(
                    "expected a list of tables (`[[{key}]]`), got {}",
                    node.describe()
                ),
            );
            return Vec::new();
        };
        let mut tables = Vec::new();
        for (idx, item) in items.iter().enumerate() {
            let item_key = format!("{key}[{idx}]");
            if matches!(item.value, Value::Map(_)) {
                tables.push((item_key, item));
            } else {
                self.error(
                    item.pos,
                    &item_key,
                    format!("expected a table, got {}", item.describe()),
                );
            }
        }
        tables
    }

    /// A required string field of a binding table.
    fn field(&mut self, table: &Node, key: &str, field: &str, what: &str) -> Option<String> {
        match table.get(field) {
            Some(entry) => self.string(&entry.value, &format!("{key}.{field}")),
            None => {
                self.error(
                    table.pos,
                    &format!("{key}.{field}"),
                    format!("missing `{field}`: {what}"),
                );
                None
            }
        }
    }

    fn binding(&mut self, collected: &mut Collected, name: String, kind: BindingKind) {
        if collected.bindings.iter().any(|b| b.name == name) {
            // wrangler refuses a name bound twice; the first keeps it here.
            return;
        }
        collected.bindings.push(WorkerBinding { name, kind });
    }

    fn vars(&mut self, node: &Node, collected: &mut Collected) {
        for entry in self.table(node, "vars") {
            let value = json_of(&entry.value);
            self.binding(collected, entry.key.clone(), BindingKind::Var(value));
        }
    }

    fn kv_namespaces(&mut self, node: &Node, collected: &mut Collected) {
        for (key, table) in self.tables(node, "kv_namespaces") {
            let Some(binding) = self.field(table, &key, "binding", "the name the code uses") else {
                continue;
            };
            if !collected.resources.kv_namespaces.contains(&binding) {
                collected.resources.kv_namespaces.push(binding.clone());
            }
            collected.grants.push(Grant {
                actions: vec!["kv:*".to_owned()],
                resources: vec![format!("kv:{binding}")],
            });
            let namespace = binding.clone();
            self.binding(collected, binding, BindingKind::Kv { namespace });
        }
    }

    fn r2_buckets(&mut self, node: &Node, collected: &mut Collected) {
        for (key, table) in self.tables(node, "r2_buckets") {
            let binding = self.field(table, &key, "binding", "the name the code uses");
            let bucket = self.field(table, &key, "bucket_name", "the bucket's name");
            let (Some(binding), Some(bucket)) = (binding, bucket) else {
                continue;
            };
            if !collected.resources.buckets.contains(&bucket) {
                collected.resources.buckets.push(bucket.clone());
            }
            collected.grants.push(Grant {
                actions: vec!["s3:*".to_owned()],
                resources: vec![format!("bucket:{bucket}"), format!("bucket:{bucket}/*")],
            });
            self.binding(collected, binding, BindingKind::Bucket { bucket });
        }
    }

    fn queues(&mut self, node: &Node, collected: &mut Collected) {
        for entry in self.table(node, "queues") {
            let key = format!("queues.{}", entry.key);
            match entry.key.as_str() {
                "producers" => {
                    for (key, table) in self.tables(&entry.value, &key) {
                        let binding = self.field(table, &key, "binding", "the name the code uses");
                        let queue = self.field(table, &key, "queue", "the queue's name");
                        let (Some(binding), Some(queue)) = (binding, queue) else {
                            continue;
                        };
                        add_queue(&mut collected.resources, &queue);
                        collected.grants.push(Grant {
                            actions: vec!["sqs:SendMessage".to_owned()],
                            resources: vec![format!("queue:{queue}")],
                        });
                        self.binding(collected, binding, BindingKind::Queue { queue });
                    }
                }
                "consumers" => {
                    for (key, table) in self.tables(&entry.value, &key) {
                        self.consumer(table, &key, collected);
                    }
                }
                other => self.warn(
                    entry.key_pos,
                    &key,
                    format!("`{other}` is not modelled by nimbus; ignored"),
                ),
            }
        }
    }

    fn consumer(&mut self, table: &Node, key: &str, collected: &mut Collected) {
        let Some(queue) = self.field(table, key, "queue", "the queue the worker consumes") else {
            return;
        };
        // Cloudflare's defaults: batches of 10, a 5 s window, 3 retries.
        let mut batch_size = 10;
        let mut window = Duration::from_secs(5);
        let mut max_retries = 3;
        let mut dead_letter = None;
        let mut max_concurrency = None;
        let Value::Map(entries) = &table.value else {
            return;
        };
        for entry in entries {
            let field_key = format!("{key}.{}", entry.key);
            match entry.key.as_str() {
                "queue" => {}
                "max_batch_size" => {
                    if let Some(n) = self.number(&entry.value, &field_key) {
                        if (1..=10).contains(&n) {
                            batch_size = n as u32;
                        } else {
                            // Cloudflare allows 100; nimbus's batches follow SQS's 10.
                            self.warn(
                                entry.value.pos,
                                &field_key,
                                format!(
                                    "nimbus delivers at most 10 messages a batch; {n} is read as 10"
                                ),
                            );
                            batch_size = 10;
                        }
                    }
                }
                "max_batch_timeout" => {
                    if let Some(n) = self.number(&entry.value, &field_key) {
                        window = Duration::from_secs(n.min(300));
                    }
                }
                "max_retries" => {
                    if let Some(n) = self.number(&entry.value, &field_key) {
                        max_retries = u32::try_from(n.min(100)).unwrap_or(100);
                    }
                }
                "dead_letter_queue" => dead_letter = self.string(&entry.value, &field_key),
                "max_concurrency" => {
                    max_concurrency = self
                        .number(&entry.value, &field_key)
                        .and_then(|n| u32::try_from(n).ok());
                }
                "retry_delay" | "visibility_timeout_ms" | "max_wait_time_ms" | "type" => {}
                other => self.warn(
                    entry.key_pos,
                    &field_key,
                    format!("`{other}` is not modelled by nimbus; ignored"),
                ),
            }
        }
        add_queue(&mut collected.resources, &queue);
        if let Some(dlq) = &dead_letter {
            add_queue(&mut collected.resources, dlq);
        }
        if let Some(spec) = collected
            .resources
            .queues
            .iter_mut()
            .find(|q| q.name == queue)
        {
            // A message is delivered `max_retries + 1` times at most; after that it goes
            // to the dead-letter queue when there is one, and is dropped otherwise
            // (Cloudflare deletes it). Without a DLQ nimbus keeps SQS's behaviour: the
            // message stays until its retention ends.
            if let Some(dlq) = dead_letter {
                spec.redrive = Some(Redrive {
                    dead_letter_queue: dlq,
                    max_receive_count: max_retries + 1,
                });
            }
            // A retried message comes back at once (Cloudflare's `retry_delay` default
            // of 0), unless the code asks for a delay.
            spec.visibility_timeout = WORKER_TIMEOUT;
        }
        collected.events.push(EventSource::Sqs(SqsEvent {
            queue,
            batch_size,
            maximum_batching_window: window,
            report_batch_item_failures: true,
            maximum_concurrency: max_concurrency,
            enabled: true,
        }));
    }

    fn services(&mut self, node: &Node, collected: &mut Collected) {
        for (key, table) in self.tables(node, "services") {
            let binding = self.field(table, &key, "binding", "the name the code uses");
            let service = self.field(table, &key, "service", "the worker it reaches");
            let (Some(binding), Some(function)) = (binding, service) else {
                continue;
            };
            collected.grants.push(Grant {
                actions: vec!["lambda:InvokeFunction".to_owned()],
                resources: vec![format!("function:{function}")],
            });
            self.binding(collected, binding, BindingKind::Service { function });
        }
    }

    fn durable_objects(&mut self, node: &Node, collected: &mut Collected) {
        for entry in self.table(node, "durable_objects") {
            let key = format!("durable_objects.{}", entry.key);
            if entry.key != "bindings" {
                self.warn(
                    entry.key_pos,
                    &key,
                    format!("`{}` is not modelled by nimbus; ignored", entry.key),
                );
                continue;
            }
            for (key, table) in self.tables(&entry.value, &key) {
                let binding = self.field(table, &key, "name", "the name the code uses");
                let class = self.field(table, &key, "class_name", "the class exported");
                let (Some(binding), Some(class)) = (binding, class) else {
                    continue;
                };
                if let Some(script) = table.get("script_name") {
                    self.warn(
                        script.key_pos,
                        &format!("{key}.script_name"),
                        "a Durable Object class of another worker is not reachable yet; the class must be exported by this worker",
                    );
                }
                // Storage goes through the host's own channel to nimbus (no grant):
                // `nimbus_core::durable_objects`.
                self.binding(collected, binding, BindingKind::DurableObject { class });
            }
        }
    }

    fn triggers(&mut self, node: &Node, collected: &mut Collected) {
        for entry in self.table(node, "triggers") {
            let key = format!("triggers.{}", entry.key);
            if entry.key != "crons" {
                self.warn(
                    entry.key_pos,
                    &key,
                    format!("`{}` is not modelled by nimbus; ignored", entry.key),
                );
                continue;
            }
            let Value::Seq(items) = &entry.value.value else {
                self.error(
                    entry.value.pos,
                    &key,
                    format!(
                        "expected a list of cron strings, got {}",
                        entry.value.describe()
                    ),
                );
                continue;
            };
            for (idx, item) in items.iter().enumerate() {
                let item_key = format!("{key}[{idx}]");
                let Some(cron) = self.string(item, &item_key) else {
                    continue;
                };
                let expression = match unix_cron_to_eventbridge(&cron)
                    .and_then(|text| ScheduleExpression::parse(&text))
                {
                    Ok(expression) => expression,
                    Err(message) => {
                        self.error(item.pos, &item_key, message);
                        continue;
                    }
                };
                let n_crons = collected.crons.len();
                collected.crons.push(WorkerCron {
                    schedule: String::new(),
                    cron: cron.clone(),
                });
                collected.events.push(EventSource::Schedule(ScheduleEvent {
                    // Named after the worker once its name is known.
                    name: format!("cron-{n_crons}"),
                    expression,
                    enabled: true,
                    input: None,
                }));
            }
        }
    }

    fn limits(&mut self, node: &Node) -> Option<Duration> {
        let mut cpu_limit = None;
        for entry in self.table(node, "limits") {
            let key = format!("limits.{}", entry.key);
            match entry.key.as_str() {
                "cpu_ms" => {
                    cpu_limit = self
                        .number(&entry.value, &key)
                        .filter(|ms| *ms > 0)
                        .map(Duration::from_millis);
                }
                other => self.warn(
                    entry.key_pos,
                    &key,
                    format!("`{other}` is not modelled by nimbus; ignored"),
                ),
            }
        }
        cpu_limit
    }

    /// `[nimbus.cf]`: the `request.cf` fields requests start with (`country = "DE"`).
    fn nimbus_settings(&mut self, node: &Node) -> Vec<(String, String)> {
        let mut defaults = Vec::new();
        for entry in self.table(node, "nimbus") {
            if entry.key != "cf" {
                self.warn(
                    entry.key_pos,
                    &format!("nimbus.{}", entry.key),
                    format!("`{}` is not a nimbus setting; ignored", entry.key),
                );
                continue;
            }
            for field in self.table(&entry.value, "nimbus.cf") {
                let value = match &field.value.value {
                    Value::Str(s) => s.clone(),
                    Value::Int(n) => n.to_string(),
                    Value::Float(f) => f.to_string(),
                    _ => {
                        self.error(
                            field.value.pos,
                            &format!("nimbus.cf.{}", field.key),
                            format!("expected a string, got {}", field.value.describe()),
                        );
                        continue;
                    }
                };
                defaults.push((field.key.clone(), value));
            }
        }
        defaults
    }
}

/// Adds the `KEY=value` lines of a `.dev.vars` file (quotes stripped, `#` comments and
/// blank lines skipped) to the worker's bindings as string vars.
fn add_dev_vars(manifest: &mut Manifest, text: &str) {
    let Some(worker) = manifest
        .functions
        .first_mut()
        .and_then(|f| f.worker.as_mut())
    else {
        return;
    };
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            continue;
        };
        let name = name.trim().trim_start_matches("export ").trim().to_owned();
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(value)
            .to_owned();
        worker.bindings.retain(|b| b.name != name);
        worker.bindings.push(WorkerBinding {
            name,
            kind: BindingKind::Var(serde_json::Value::String(value)),
        });
    }
}

fn add_queue(resources: &mut AppResources, queue: &str) {
    if !resources.queues.iter().any(|q| q.name == queue) {
        resources.queues.push(QueueSpec::with_defaults(queue));
    }
}

/// A consumer receives, deletes, and changes the visibility of its messages (a retry with
/// a delay).
fn with_consumer_grants(mut grants: Vec<Grant>, events: &[EventSource]) -> Vec<Grant> {
    for event in events {
        if let EventSource::Sqs(sqs) = event {
            grants.push(Grant {
                actions: vec![
                    "sqs:ReceiveMessage".to_owned(),
                    "sqs:DeleteMessage".to_owned(),
                    "sqs:ChangeMessageVisibility".to_owned(),
                ],
                resources: vec![format!("queue:{}", sqs.queue)],
            });
        }
    }
    grants
}

/// A Workers cron (five fields, Unix style: `*/5 * * * *`, Sunday 0 or 7) as an
/// EventBridge `cron(..)` expression (six fields, Sunday 1, one of the two day fields `?`).
fn unix_cron_to_eventbridge(cron: &str) -> Result<String, String> {
    let fields: Vec<&str> = cron.split_whitespace().collect();
    let [minute, hour, dom, month, dow] = fields[..] else {
        return Err(format!(
            "`{cron}` is not a cron of five fields (minute hour day-of-month month day-of-week), such as `*/5 * * * *`"
        ));
    };
    let dow = convert_days_of_week(dow)?;
    let (dom, dow) = match (dom, dow.as_str()) {
        (_, "*") => (dom.to_owned(), "?".to_owned()),
        ("*", _) => ("?".to_owned(), dow),
        _ => {
            return Err(format!(
                "`{cron}` names both days of the month and days of the week; nimbus's schedules take one of them"
            ));
        }
    };
    Ok(format!("cron({minute} {hour} {dom} {month} {dow} *)"))
}

/// Unix day numbers (Sunday 0 or 7) to EventBridge's (Sunday 1); names stay as they are.
fn convert_days_of_week(field: &str) -> Result<String, String> {
    let convert_one = |day: &str| -> Result<String, String> {
        match day.parse::<u32>() {
            Ok(n) if n <= 7 => Ok(((n % 7) + 1).to_string()),
            Ok(n) => Err(format!("day of week {n} is out of range (0-7)")),
            Err(_) => Ok(day.to_owned()),
        }
    };
    let mut items = Vec::new();
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => (range, Some(step)),
            None => (item, None),
        };
        let range = match range.split_once('-') {
            _ if range == "*" => "*".to_owned(),
            Some((from, to)) => format!("{}-{}", convert_one(from)?, convert_one(to)?),
            None => convert_one(range)?,
        };
        items.push(match step {
            Some(step) => format!("{range}/{step}"),
            None => range,
        });
    }
    Ok(items.join(","))
}

/// JSONC without its comments: each comment's characters become spaces (newlines stay),
/// so every position in the rest is where the author wrote it.
fn blank_json_comments(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut chars = source.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match c {
                '\\' => {
                    if let Some(next) = chars.next() {
                        out.push(next);
                    }
                }
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match (c, chars.peek()) {
            ('"', _) => {
                in_string = true;
                out.push(c);
            }
            ('/', Some('/')) => {
                out.push(' ');
                while let Some(&next) = chars.peek() {
                    if next == '\n' {
                        break;
                    }
                    out.push(' ');
                    chars.next();
                }
            }
            ('/', Some('*')) => {
                out.push(' ');
                out.push(' ');
                chars.next();
                let mut prev = ' ';
                for next in chars.by_ref() {
                    out.push(if next == '\n' { '\n' } else { ' ' });
                    if prev == '*' && next == '/' {
                        break;
                    }
                    prev = next;
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// The 1-based line and column of byte `offset` in `source`.
fn pos_at(source: &str, offset: usize) -> Pos {
    let offset = offset.min(source.len());
    let before = source.get(..offset).unwrap_or(source);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    Pos { line, column }
}

fn from_toml_table(source: &str, table: &toml::de::DeTable<'_>, pos: Pos) -> Node {
    let entries = table
        .iter()
        .map(|(key, value)| Entry {
            key: Cow::as_ref(key.get_ref()).to_owned(),
            key_pos: pos_at(source, key.span().start),
            value: from_toml_value(source, value),
        })
        .collect();
    Node::new(Value::Map(entries), pos)
}

fn from_toml_value(source: &str, value: &toml::Spanned<toml::de::DeValue<'_>>) -> Node {
    let pos = pos_at(source, value.span().start);
    let converted = match value.get_ref() {
        toml::de::DeValue::String(s) => Value::Str(s.to_string()),
        toml::de::DeValue::Integer(n) => match i64::from_str_radix(
            &n.as_str()
                .replace('_', "")
                .replace("0x", "")
                .replace("0o", "")
                .replace("0b", ""),
            n.radix(),
        ) {
            Ok(n) => Value::Int(n),
            Err(_) => Value::Str(n.as_str().to_owned()),
        },
        toml::de::DeValue::Float(f) => match f.as_str().replace('_', "").parse::<f64>() {
            Ok(f) => Value::Float(f),
            Err(_) => Value::Str(f.as_str().to_owned()),
        },
        toml::de::DeValue::Boolean(b) => Value::Bool(*b),
        toml::de::DeValue::Datetime(d) => Value::Str(d.to_string()),
        toml::de::DeValue::Array(items) => Value::Seq(
            items
                .iter()
                .map(|item| from_toml_value(source, item))
                .collect(),
        ),
        toml::de::DeValue::Table(table) => return from_toml_table(source, table, pos),
    };
    Node::new(converted, pos)
}

/// A `vars` value as the JSON the worker sees: strings stay strings, tables and arrays
/// become objects and arrays (wrangler's JSON vars).
fn json_of(node: &Node) -> serde_json::Value {
    match &node.value {
        Value::Null | Value::Invalid => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Int(n) => serde_json::Value::from(*n),
        Value::Float(f) => serde_json::Number::from_f64(*f)
            .map_or(serde_json::Value::Null, serde_json::Value::Number),
        Value::Str(s) => serde_json::Value::String(s.clone()),
        Value::Seq(items) => serde_json::Value::Array(items.iter().map(json_of).collect()),
        Value::Map(entries) => serde_json::Value::Object(
            entries
                .iter()
                .map(|e| (e.key.clone(), json_of(&e.value)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use expect_test::{Expect, expect};

    use super::*;

    fn check(file: &str, source: &str, expect: Expect) {
        let res = match parse(source, file, &Variables::default()) {
            Ok(manifest) => {
                let function = &manifest.functions[0];
                let mut out = format!(
                    "service {} handler {} line {}\n",
                    manifest.service, function.handler, function.handler_line
                );
                if let Some(worker) = &function.worker {
                    out.push_str(&format!("{}\n", worker.host_config()));
                }
                for queue in &manifest.resources.queues {
                    out.push_str(&format!(
                        "queue {} redrive {:?}\n",
                        queue.name, queue.redrive
                    ));
                }
                for kv in &manifest.resources.kv_namespaces {
                    out.push_str(&format!("kv {kv}\n"));
                }
                for bucket in &manifest.resources.buckets {
                    out.push_str(&format!("bucket {bucket}\n"));
                }
                for event in &function.events {
                    match event {
                        EventSource::Schedule(s) => {
                            let text = match &s.expression {
                                ScheduleExpression::Cron(cron) => cron.text.clone(),
                                ScheduleExpression::Rate(every) => format!("{every:?}"),
                            };
                            out.push_str(&format!("schedule {} {text}\n", s.name));
                        }
                        EventSource::Sqs(s) => out.push_str(&format!(
                            "sqs {} batch {} window {:?}\n",
                            s.queue, s.batch_size, s.maximum_batching_window
                        )),
                        _ => {}
                    }
                }
                for warning in &manifest.warnings {
                    out.push_str(&format!("warning: {warning}\n"));
                }
                out
            }
            Err(errors) => errors.iter().map(|e| format!("{e}\n")).collect(),
        };
        expect.assert_eq(&res);
    }

    #[test]
    fn wrangler_toml_with_every_binding_kind() {
        check(
            "wrangler.toml",
            r#"name = "shop"
main = "./src/index.js"
compatibility_date = "2024-09-23"
compatibility_flags = ["nodejs_compat"]
account_id = "abc"
routes = ["shop.example.com/*"]

[vars]
GREETING = "hi"
LIMITS = { max = 3 }

[[kv_namespaces]]
binding = "CACHE"
id = "0f2ac74b498b48028cb68387c421e279"

[[r2_buckets]]
binding = "FILES"
bucket_name = "shop-files"

[[queues.producers]]
binding = "JOBS"
queue = "jobs"

[[queues.consumers]]
queue = "jobs"
max_batch_size = 5
max_retries = 2
dead_letter_queue = "jobs-dlq"

[triggers]
crons = ["*/5 * * * *", "0 9 * * 1-5"]

[limits]
cpu_ms = 50
"#,
            expect![[r#"
                service shop handler src/index.js line 2
                {"bindings":{"CACHE":{"namespace":"CACHE","type":"kv"},"FILES":{"bucket":"shop-files","type":"r2"},"GREETING":{"type":"var","value":"hi"},"JOBS":{"queue":"jobs","type":"queue"},"LIMITS":{"type":"var","value":{"max":3}}},"cf":{},"compatibilityDate":"2024-09-23","compatibilityFlags":["nodejs_compat"],"crons":{"shop-cron-0":"*/5 * * * *","shop-cron-1":"0 9 * * 1-5"}}
                queue jobs redrive Some(Redrive { dead_letter_queue: "jobs-dlq", max_receive_count: 3 })
                queue jobs-dlq redrive None
                kv CACHE
                bucket shop-files
                sqs jobs batch 5 window 5s
                schedule shop-cron-0 cron(*/5 * * * ? *)
                schedule shop-cron-1 cron(0 9 ? * 2-6 *)
                warning: wrangler.toml:6:1: routes: routes name Cloudflare zones; nimbus serves the worker at every path of its gateway
            "#]],
        );
    }

    #[test]
    fn wrangler_jsonc_with_comments_and_trailing_commas() {
        check(
            "wrangler.jsonc",
            r#"{
  // the worker
  "name": "edge", /* inline */
  "main": "src/worker.ts",
  "kv_namespaces": [{ "binding": "KV", "id": "x" },],
}
"#,
            expect![[r#"
                service edge handler src/worker.ts line 4
                {"bindings":{"KV":{"namespace":"KV","type":"kv"}},"cf":{},"compatibilityDate":null,"compatibilityFlags":[],"crons":{}}
                kv KV
            "#]],
        );
    }

    #[test]
    fn dev_vars_are_secrets_that_win_over_vars() {
        let files: std::collections::BTreeMap<String, String> = [(
            ".dev.vars".to_owned(),
            "# local secrets\nAPI_KEY=\"s3cr3t\"\nGREETING='hey'\n".to_owned(),
        )]
        .into();
        let vars = Variables {
            files: Some(std::sync::Arc::new(files)),
            ..Variables::default()
        };
        let manifest = parse(
            "name = \"w\"\nmain = \"a.js\"\n[vars]\nGREETING = \"hi\"\n",
            "wrangler.toml",
            &vars,
        )
        .expect("a valid worker");
        let worker = manifest.functions[0].worker.as_ref().expect("a worker");
        expect![[
            r#"{"API_KEY":{"type":"var","value":"s3cr3t"},"GREETING":{"type":"var","value":"hey"}}"#
        ]]
        .assert_eq(&worker.host_config()["bindings"].to_string());
    }

    #[test]
    fn errors_name_the_line_and_key() {
        check(
            "wrangler.toml",
            "name = \"w\"\nmain = 3\n",
            expect![[r#"
                wrangler.toml:2:8: main: expected a string, got number 3
            "#]],
        );
        check(
            "wrangler.toml",
            "name = \"w\"\nmain = \"a.js\"\n[[kv_namespaces]]\nid = \"x\"\n",
            expect![[r#"
                wrangler.toml:3:1: kv_namespaces[0].binding: missing `binding`: the name the code uses
            "#]],
        );
        check(
            "wrangler.toml",
            "name = \"w\"\nmain = \"a.js\"\n[triggers]\ncrons = [\"* * *\"]\n",
            expect![[r#"
                wrangler.toml:4:10: triggers.crons[0]: `* * *` is not a cron of five fields (minute hour day-of-month month day-of-week), such as `*/5 * * * *`
            "#]],
        );
        check(
            "wrangler.toml",
            "name = \"w\"\nmain = [\n",
            expect![[r#"
                wrangler.toml:2:9: not valid TOML: unclosed array, expected `]`
            "#]],
        );
        check(
            "wrangler.toml",
            "main = \"a.js\"\n",
            expect![[r#"
                wrangler.toml:1:1: name: the worker has no `name`; add `name = "my-worker"`
            "#]],
        );
    }
}
