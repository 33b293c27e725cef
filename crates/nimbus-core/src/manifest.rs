//! The app manifest: `nimbus.yaml` or `serverless.yml`, in the Serverless Framework v3 shape.
//!
//! [`parse`] reads the YAML with saphyr into a positioned tree (`tree`), substitutes
//! `${source:address}` variables as values are read (`vars`; `${secret:NAME}` only in
//! `environment` values), and validates the service, provider and functions (`schema`,
//! `routes`), the queues, topics, buckets and KV namespaces the app declares (`resources`,
//! `references`), and the functions' event sources, asynchronous destinations and grants
//! (`sources`, `access`). It collects every problem instead of stopping at the first, so
//! one run of `nimbus deploy` shows all of them.
//!
//! Keys that nimbus does not model are never dropped silently: each one becomes a
//! warning in [`Manifest::warnings`].

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use crate::FunctionSpec;
use crate::events::AppResources;
use crate::policy::GatewayPolicies;

pub use self::limits::MAX_MANIFEST_BYTES;

use self::tree::{Node, Pos};

mod access;
mod constructs;
mod custom;
mod lenient;
mod limits;
mod policy;
mod references;
mod resources;
mod routes;
mod schema;
mod sources;
mod streams;
mod tables;
mod tree;
mod vars;
mod websocket;
mod workflows;
pub mod wrangler;

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;

/// A parsed, validated manifest with every variable resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// `service` (or `service.name`).
    pub service: String,
    /// `--stage`, else `provider.stage`, else `dev`.
    pub stage: String,
    /// `--region`, else `provider.region`, else `us-east-1`.
    pub region: String,
    /// The functions, in manifest order.
    pub functions: Vec<FunctionSpec>,
    /// Queues, topics, buckets and KV namespaces: those declared under `queues:`,
    /// `topics:`, `buckets:`, `kv:` and `resources`, and those `sns` and `s3` events
    /// declare implicitly.
    pub resources: AppResources,
    /// Authorizers, API keys, the usage plan: what the gateway enforces app-wide.
    pub policies: GatewayPolicies,
    /// The `custom` section with its variables resolved, for the parts of it
    /// that plugins nimbus stands in for read, such as serverless-esbuild's
    /// `custom.esbuild`; `None` when the manifest has none.
    pub custom: Option<serde_json::Value>,
    /// Keys nimbus read but does not model (plugins, custom, CloudFormation resources of
    /// other types, unknown events, Deny statements...), in source order.
    pub warnings: Vec<Diagnostic>,
}

/// A problem found in a manifest, pointing at the key responsible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The manifest file name as given to `parse`.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Dotted key path, for example `functions.api.events[0].httpApi.path`; empty for
    /// problems with the document as a whole (such as malformed YAML).
    pub key: String,
    /// What is wrong and, where it helps, what to do.
    pub message: String,
}

/// Values for `${env:..}`, `${opt:..}` and `${secret:..}` variables; core reads no
/// environment or store itself.
#[derive(Debug, Clone, Default)]
pub struct Variables {
    /// The process environment.
    pub env: BTreeMap<String, String>,
    /// CLI options such as `stage` and `region`.
    pub options: BTreeMap<String, String>,
    /// Where `${secret:NAME}` values come from; `None` when the app has no secrets, which
    /// makes every `${secret:..}` unknown.
    pub secrets: Option<Arc<dyn SecretResolver>>,
    /// Where `${file(path)}` reads files from; `None` makes every file variable unknown.
    pub files: Option<Arc<dyn FileSource>>,
    /// `${sls:instanceId}`: the same for every variable of one run (the Framework uses the
    /// time it started, in milliseconds).
    pub instance_id: Option<String>,
}

/// Reads the files that `${file(path)}` variables name; the binary implements it on the
/// app folder.
pub trait FileSource: fmt::Debug + Send + Sync {
    /// The text of `path`, relative to the manifest's folder; `Ok(None)` when no such file
    /// exists, `Err` with a message when it cannot be read (or may not be: outside the app).
    fn read(&self, path: &str) -> Result<Option<String>, String>;
}

/// Files from a map of path to text, for tests.
impl FileSource for BTreeMap<String, String> {
    fn read(&self, path: &str) -> Result<Option<String>, String> {
        let path = path.strip_prefix("./").unwrap_or(path);
        Ok(self.get(path).cloned())
    }
}

/// Looks up the values of `${secret:NAME}` variables; the binary implements it on the
/// app's secret store.
///
/// A value it returns only ever lands in a function's `environment` (and so in
/// `FunctionSpec::secrets`, by name): the parser never puts it in a diagnostic.
pub trait SecretResolver: fmt::Debug + Send + Sync {
    /// The value of the secret `name`; `Ok(None)` when no such secret is set, `Err` with a
    /// message (never the value) when it exists but cannot be read.
    fn resolve(&self, name: &str) -> Result<Option<String>, String>;
}

/// Secrets from a map, for tests and callers that hold the values already.
impl SecretResolver for BTreeMap<String, String> {
    fn resolve(&self, name: &str) -> Result<Option<String>, String> {
        Ok(self.get(name).cloned())
    }
}

/// Parses and validates a manifest. `file` is only used in diagnostics.
///
/// On success the manifest carries its warnings; on failure every error found is
/// returned, sorted by position (warnings are then left out).
pub fn parse(source: &str, file: &str, vars: &Variables) -> Result<Manifest, Vec<Diagnostic>> {
    let loaded = match tree::load(source) {
        Ok(loaded) => loaded,
        Err(errors) => {
            return Err(errors
                .into_iter()
                .map(|e| diagnostic(file, e.pos, &e.key, e.message))
                .collect());
        }
    };
    let Some(root) = loaded.root else {
        return Err(vec![diagnostic(
            file,
            Pos { line: 1, column: 1 },
            "",
            "the manifest is empty; it needs at least `service`, `provider.runtime` and `functions`",
        )]);
    };
    let mut cx = Cx {
        file,
        vars,
        root: &root,
        errors: Vec::new(),
        warnings: loaded
            .warnings
            .into_iter()
            .map(|w| diagnostic(file, w.pos, &w.key, w.message))
            .collect(),
        self_memo: HashMap::new(),
        self_stack: Vec::new(),
        variable_depth: 0,
        resolved_bytes: 0,
        variable_limit_hit: false,
        app: resources::App::default(),
        policy_names: policy::PolicyNames::default(),
        secret_scope: None,
    };
    let res = cx.manifest();
    let errors = sorted(cx.errors);
    match res {
        Some(mut manifest) if errors.is_empty() => {
            manifest.warnings = sorted(cx.warnings);
            Ok(manifest)
        }
        // Every path that gives up reports why first; this guard keeps a bug from
        // turning into an error list that explains nothing.
        _ if errors.is_empty() => Err(vec![diagnostic(
            file,
            Pos { line: 1, column: 1 },
            "",
            "the manifest was rejected without a reason; this is a bug in nimbus",
        )]),
        _ => Err(errors),
    }
}

/// The state of one `parse`: where diagnostics go, and the cache for `${self:..}`.
struct Cx<'a> {
    file: &'a str,
    vars: &'a Variables,
    /// The document as written, for `${self:..}` lookups.
    root: &'a Node,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
    /// `${self:path}` results by path; `None` when resolving failed (already reported).
    self_memo: HashMap<String, Option<Node>>,
    /// The `${self:..}` paths being resolved right now, to report cycles.
    self_stack: Vec<String>,
    /// How many variables are being resolved inside each other right now.
    variable_depth: usize,
    /// What the variables resolved so far came to, bounded by `limits::MAX_RESOLVED_BYTES`.
    resolved_bytes: usize,
    /// Set once a variable limit is reported; every variable fails from then on.
    variable_limit_hit: bool,
    /// What the app declares, for resolving references from events and grants.
    app: resources::App,
    /// The provider's authorizers, API keys and default rate limit, for routes.
    policy_names: policy::PolicyNames,
    /// The names of the secrets read while reading one `environment` value; `None` anywhere
    /// else, where `${secret:..}` is an error, so a secret's value reaches only a function's
    /// environment and never a route, a name or a diagnostic.
    secret_scope: Option<Vec<String>>,
}

impl Cx<'_> {
    fn error(&mut self, pos: Pos, key: &str, message: impl Into<String>) {
        self.errors.push(diagnostic(self.file, pos, key, message));
    }

    fn warn(&mut self, pos: Pos, key: &str, message: impl Into<String>) {
        self.warnings.push(diagnostic(self.file, pos, key, message));
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

fn diagnostic(file: &str, pos: Pos, key: &str, message: impl Into<String>) -> Diagnostic {
    Diagnostic {
        file: file.to_owned(),
        line: pos.line,
        column: pos.column,
        key: key.to_owned(),
        message: message.into(),
    }
}

/// Sorts by position and drops exact repeats: a value read both directly and through
/// `${self:..}` would otherwise report the same problem twice.
fn sorted(mut diagnostics: Vec<Diagnostic>) -> Vec<Diagnostic> {
    diagnostics.sort_by(|a, b| {
        (a.line, a.column, &a.key, &a.message).cmp(&(b.line, b.column, &b.key, &b.message))
    });
    diagnostics.dedup();
    diagnostics
}

/// `parent.child`, or `child` at the top level.
fn join_key(parent: &str, child: &str) -> String {
    if parent.is_empty() {
        child.to_owned()
    } else {
        format!("{parent}.{child}")
    }
}
