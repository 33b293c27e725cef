//! Loading an app folder: find the manifest, parse it, check every handler's code.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context as _;
use nimbus_core::manifest::{self, Diagnostic, Manifest};
use nimbus_core::services::Services;
use nimbus_core::{FunctionSpec, LogLine, LogSink, LogStream};
use nimbus_lambda::{
    Code, InstanceLimit, LambdaConfig, LambdaExecutor, PackageCache, PackageSet, RuntimePackages,
    Sandbox, SandboxMode, SandboxSettings, UidRange, WorkersExecutor,
};
use nimbus_server::{RedactingLogSink, Redactor};
use nimbus_wasm::{WasmComponent, WasmEngine, WasmEngineConfig, WasmExecutor};

use crate::secrets::StoreSecrets;

/// The manifest names nimbus looks for, in order: a Worker's own `wrangler.toml` (or
/// `wrangler.json(c)`) serves when the folder has no nimbus or Serverless manifest.
pub(crate) const MANIFEST_NAMES: [&str; 7] = [
    "nimbus.yaml",
    "nimbus.yml",
    "serverless.yml",
    "serverless.yaml",
    "wrangler.toml",
    "wrangler.jsonc",
    "wrangler.json",
];

/// A loaded, valid app.
pub(crate) struct App {
    pub(crate) dir: PathBuf,
    pub(crate) manifest: Manifest,
    /// The code of each function, in `manifest.functions` order.
    pub(crate) codes: Vec<FunctionCode>,
    /// The wasm engine, when the app has wasm functions.
    pub(crate) wasm_engine: Option<WasmEngine>,
    /// The values of the secrets the functions' environments hold, by name: executors hide
    /// them from function output.
    pub(crate) secret_values: BTreeMap<String, String>,
    /// The runtime-provided packages (AWS SDKs) the app's code imports, from the cache.
    pub(crate) packages: RuntimePackages,
}

/// What runs a function: a process runtime or a compiled wasm component.
pub(crate) enum FunctionCode {
    Process(Code),
    Wasm(WasmComponent),
}

/// How many wasm instances may be alive at once across the app's functions.
const MAX_WASM_INSTANCES: u32 = 1000;

/// CLI values that feed manifest variables, and what loading may fetch.
#[derive(Clone)]
pub(crate) struct LoadOptions {
    pub(crate) stage: Option<String>,
    pub(crate) region: Option<String>,
    pub(crate) fetch: Fetch,
}

/// What loading an app fetches into the package cache when the cache lacks it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fetch {
    /// The AWS SDKs the code imports and esbuild for TypeScript handlers: the app is
    /// about to run.
    Everything,
    /// Only esbuild, which checking TypeScript handlers needs; missing SDKs are warnings
    /// (`nimbus validate`, the client side of `nimbus deploy`).
    ToolsOnly,
}

/// Loads the app in `dir`, printing warnings; every error is printed and makes it fail.
pub(crate) fn load(dir: &Path, opts: &LoadOptions) -> anyhow::Result<App> {
    load_with_engine(dir, opts, None)
}

/// As `load`, compiling wasm functions with `engine` when given (a reload keeps the one
/// engine of the process) rather than starting a new one.
pub(crate) fn load_with_engine(
    dir: &Path,
    opts: &LoadOptions,
    engine: Option<WasmEngine>,
) -> anyhow::Result<App> {
    let dir = dir
        .canonicalize()
        .with_context(|| format!("opening app folder {}", dir.display()))?;
    let Some(manifest_path) = MANIFEST_NAMES
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
    else {
        anyhow::bail!(
            "no manifest in {}: expected one of {}",
            dir.display(),
            MANIFEST_NAMES.join(", ")
        );
    };
    let source = read_bounded(&manifest_path)
        .with_context(|| format!("reading manifest {}", manifest_path.display()))?;
    let file_name = manifest_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut options = BTreeMap::new();
    if let Some(stage) = &opts.stage {
        options.insert("stage".to_owned(), stage.clone());
    }
    if let Some(region) = &opts.region {
        options.insert("region".to_owned(), region.clone());
    }
    let secrets = Arc::new(StoreSecrets::new(dir.join(".nimbus")));
    let vars = manifest::Variables {
        env: std::env::vars().collect(),
        options,
        secrets: Some(secrets.clone()),
        files: Some(Arc::new(AppFiles { dir: dir.clone() })),
        instance_id: Some(instance_id()),
    };
    let parsed = if manifest::wrangler::WRANGLER_FILES.contains(&file_name.as_str()) {
        manifest::wrangler::parse(&source, &file_name, &vars)
    } else {
        manifest::parse(&source, &file_name, &vars)
    };
    let manifest = match parsed {
        Ok(manifest) => manifest,
        Err(errors) => return Err(report_errors(&errors)),
    };
    for warning in &manifest.warnings {
        eprintln!("warning: {warning}");
    }
    let mut manifest = manifest;
    let mut errors = read_jwks_files(&dir, &file_name, &mut manifest);
    errors.extend(resolve_static_sites(&dir, &file_name, &mut manifest));
    let mut codes = Vec::new();
    let mut wasm_engine = engine;
    let (wsgi, warnings) = nimbus_lambda::WsgiApp::from_custom(manifest.custom.as_ref());
    for warning in warnings {
        eprintln!("warning: {file_name}: {warning}");
    }
    for spec in &manifest.functions {
        if spec.runtime == nimbus_core::Runtime::Wasm {
            match load_component(&dir, spec, &mut wasm_engine) {
                Ok(component) => codes.push(FunctionCode::Wasm(component)),
                Err(message) => errors.push(Diagnostic {
                    file: file_name.clone(),
                    line: spec.handler_line,
                    column: 1,
                    key: format!("functions.{}.handler", spec.name),
                    message,
                }),
            }
            continue;
        }
        // serverless-wsgi's handler is a file the plugin writes at deploy time; nimbus
        // serves the app with its own adapter unless the app has that file.
        let res = if nimbus_lambda::uses_wsgi_adapter(&dir, spec) {
            nimbus_lambda::resolve_wsgi(&dir, wsgi.as_ref())
        } else {
            nimbus_lambda::resolve_code(&dir, spec)
        };
        match res {
            Ok(code) => codes.push(FunctionCode::Process(code)),
            Err(e) => errors.push(Diagnostic {
                file: file_name.clone(),
                line: spec.handler_line,
                column: 1,
                key: format!("functions.{}.handler", spec.name),
                message: e.message,
            }),
        }
    }
    if !errors.is_empty() {
        return Err(report_errors(&errors));
    }
    for warning in nimbus_lambda::runtime_version_warnings(&manifest.functions) {
        eprintln!("warning: {warning}");
    }
    let errors = install_requirements(&dir, &file_name, &manifest, opts.fetch, &mut codes);
    if !errors.is_empty() {
        return Err(report_errors(&errors));
    }
    let cache = crate::commands::runtimes::package_cache()?;
    let packages = provide_packages(&dir, &manifest, &codes, &cache, opts.fetch)?;
    let errors = compile_typescript(&dir, &file_name, &manifest, &cache, &mut codes)?;
    if !errors.is_empty() {
        return Err(report_errors(&errors));
    }
    Ok(App {
        dir,
        manifest,
        codes,
        wasm_engine,
        secret_values: secrets.resolved(),
        packages,
    })
}

/// The files `${file(..)}` variables read: inside the app folder only, because a deployed
/// bundle holds nothing else and a server must not read its own files for a client.
#[derive(Debug)]
struct AppFiles {
    dir: PathBuf,
}

impl manifest::FileSource for AppFiles {
    fn read(&self, path: &str) -> Result<Option<String>, String> {
        let full = self.dir.join(path);
        let real = match full.canonicalize() {
            Ok(real) => real,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        if !real.starts_with(&self.dir) {
            return Err(format!(
                "it is outside the app folder {}; nimbus reads variable files only inside it (a deployed bundle holds nothing else)",
                self.dir.display()
            ));
        }
        read_bounded(&real).map(Some).map_err(|e| e.to_string())
    }
}

/// The text of a manifest or variable file, read up to one byte past
/// `manifest::MAX_MANIFEST_BYTES`: the parser refuses a longer text, so a huge file is
/// never read whole.
fn read_bounded(path: &Path) -> std::io::Result<String> {
    use std::io::Read as _;
    let limit = u64::try_from(manifest::MAX_MANIFEST_BYTES).unwrap_or(u64::MAX);
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(limit + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() > manifest::MAX_MANIFEST_BYTES {
        // Cut anywhere, perhaps inside a character; the parser only looks at the length.
        return Ok(String::from_utf8_lossy(&bytes).into_owned());
    }
    String::from_utf8(bytes).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// `${sls:instanceId}`: the Framework's is the time it started, in milliseconds.
fn instance_id() -> String {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
        .to_string()
}

/// Installs the `requirements.txt` of each Python function that has one (when `fetch`
/// says so; else a missing install is a warning) into `.nimbus/requirements/`, keyed by
/// the file's content, and records the folder in the function's code. A failed install
/// is an error at the function's `handler` key.
fn install_requirements(
    dir: &Path,
    file_name: &str,
    manifest: &Manifest,
    fetch: Fetch,
    codes: &mut [FunctionCode],
) -> Vec<Diagnostic> {
    let root = dir.join(".nimbus").join("requirements");
    let mut errors = Vec::new();
    for (spec, code) in manifest.functions.iter().zip(codes.iter_mut()) {
        let FunctionCode::Process(code) = code else {
            continue;
        };
        // pip runs with the interpreter the function runs with.
        let python = code.python_program().to_owned();
        let Code::Python {
            requirements: Some(requirements),
            dependencies,
            ..
        } = code
        else {
            continue;
        };
        let file = dir.join(&*requirements);
        if let Some(installed) = nimbus_lambda::requirements_installed(&file, &root, &python) {
            *dependencies = Some(installed);
            continue;
        }
        if fetch == Fetch::ToolsOnly {
            eprintln!(
                "warning: {} of {} is not installed yet: `nimbus up` installs it with pip",
                requirements.display(),
                spec.name
            );
            continue;
        }
        eprintln!(
            "nimbus: installing {} for {} with pip into {} (once per content of the file)",
            requirements.display(),
            spec.name,
            root.display()
        );
        match nimbus_lambda::install_requirements(&file, &root, &python) {
            Ok(installed) => *dependencies = Some(installed),
            Err(message) => errors.push(Diagnostic {
                file: file_name.to_owned(),
                line: spec.handler_line,
                column: 1,
                key: format!("functions.{}.handler", spec.name),
                message: format!("installing {}: {message}", requirements.display()),
            }),
        }
    }
    errors
}

/// Finds the AWS SDKs the app's code imports without bringing them, fetches those the
/// cache lacks (when `fetch` says so) and prints what differs from Lambda.
fn provide_packages(
    dir: &Path,
    manifest: &Manifest,
    codes: &[FunctionCode],
    cache: &PackageCache,
    fetch: Fetch,
) -> anyhow::Result<RuntimePackages> {
    let imports = nimbus_lambda::scan_imports(dir, &manifest.functions);
    let mut sets = imports.sets();
    // When every Python function's requirements bring boto3, they win anyway: the cache's
    // copy is not needed (and not fetched, which matters offline).
    let mut python = codes.iter().filter_map(|code| match code {
        FunctionCode::Process(Code::Python { dependencies, .. }) => Some(dependencies),
        _ => None,
    });
    if python.all(|deps| {
        deps.as_ref()
            .is_some_and(|deps| deps.join("boto3").is_dir() && deps.join("botocore").is_dir())
    }) {
        sets.remove(&PackageSet::Boto3);
    }
    let mut packages = RuntimePackages::none();
    for set in sets {
        if !cache.is_installed(set) {
            match fetch {
                Fetch::Everything => fetch_set(cache, set)?,
                Fetch::ToolsOnly => {
                    let files: Vec<String> = imports
                        .uses
                        .iter()
                        .filter(|u| u.set == Some(set))
                        .map(|u| u.file.display().to_string())
                        .collect::<std::collections::BTreeSet<_>>()
                        .into_iter()
                        .collect();
                    eprintln!(
                        "warning: {} import{} {set}, which is not in {} yet: `nimbus up` fetches it, or run `nimbus runtimes install`",
                        files.join(", "),
                        if files.len() == 1 { "s" } else { "" },
                        cache.root().display()
                    );
                    continue;
                }
            }
        }
        match set {
            PackageSet::Boto3 => packages.python.push(cache.modules_dir(set)),
            _ => packages.node.push(cache.modules_dir(set)),
        }
    }
    for warning in imports.warnings(&manifest.functions, cache) {
        eprintln!("warning: {warning}");
    }
    Ok(packages)
}

/// Fetches one set into the cache, saying so first: it takes seconds.
pub(crate) fn fetch_set(cache: &PackageCache, set: PackageSet) -> anyhow::Result<()> {
    eprintln!(
        "nimbus: fetching {set} into {} (once; later runs use the cache)",
        cache.dir(set).display()
    );
    cache.install(set)?;
    Ok(())
}

/// Compiles the app's TypeScript handlers (fetching esbuild first if needed); a handler
/// that fails to compile is an error at its `handler` key.
fn compile_typescript(
    dir: &Path,
    file_name: &str,
    manifest: &Manifest,
    cache: &PackageCache,
    codes: &mut [FunctionCode],
) -> anyhow::Result<Vec<Diagnostic>> {
    let has_typescript = codes
        .iter()
        .any(|c| matches!(c, FunctionCode::Process(Code::TypeScript(_))));
    if !has_typescript {
        return Ok(Vec::new());
    }
    // Every kind of load fetches esbuild: checking a TypeScript handler means compiling it.
    if !cache.is_installed(PackageSet::Esbuild) {
        fetch_set(cache, PackageSet::Esbuild)?;
    }
    let (opts, warnings) = nimbus_lambda::EsbuildOptions::from_custom(manifest.custom.as_ref());
    for warning in warnings {
        eprintln!("warning: {file_name}: {warning}");
    }
    // Compile only the process functions, then put their codes back in place.
    let mut idxs = Vec::new();
    let mut process_codes = Vec::new();
    let mut runtimes = Vec::new();
    for (idx, code) in codes.iter().enumerate() {
        if let FunctionCode::Process(code) = code {
            idxs.push(idx);
            process_codes.push(code.clone());
            runtimes.push(manifest.functions[idx].runtime);
        }
    }
    let build_dir = dir.join(".nimbus").join("build");
    let compile_errors = nimbus_lambda::compile_typescript(
        dir,
        &build_dir,
        cache,
        &runtimes,
        &mut process_codes,
        &opts,
    );
    for (idx, code) in idxs.iter().zip(process_codes) {
        codes[*idx] = FunctionCode::Process(code);
    }
    Ok(compile_errors
        .into_iter()
        .map(|e| {
            let spec = &manifest.functions[idxs[e.function_idx]];
            Diagnostic {
                file: file_name.to_owned(),
                line: spec.handler_line,
                column: 1,
                key: format!("functions.{}.handler", spec.name),
                message: format!("TypeScript does not compile: {}", e.message),
            }
        })
        .collect())
}

/// Makes each static site's folder absolute; a missing folder is an error at its construct.
fn resolve_static_sites(dir: &Path, file_name: &str, manifest: &mut Manifest) -> Vec<Diagnostic> {
    let mut errors = Vec::new();
    for site in &mut manifest.policies.static_sites {
        let full = dir.join(&site.dir);
        if full.is_dir() {
            site.dir = full.display().to_string();
        } else {
            errors.push(Diagnostic {
                file: file_name.to_owned(),
                line: site.line,
                column: 1,
                key: format!("constructs.{}.path", site.id),
                message: format!(
                    "the folder {} does not exist; create it or point `path` at the site's files",
                    full.display()
                ),
            });
        }
    }
    errors
}

/// Reads each authorizer's `jwksFile` (relative to the app folder) into the manifest, so
/// the server gets the keys and a missing or malformed file is a manifest error.
fn read_jwks_files(dir: &Path, file_name: &str, manifest: &mut Manifest) -> Vec<Diagnostic> {
    use nimbus_core::policy::{AuthorizerKind, JwtKeys};
    let mut errors = Vec::new();
    for authorizer in &mut manifest.policies.authorizers {
        let AuthorizerKind::Jwt(jwt) = &mut authorizer.kind else {
            continue;
        };
        let JwtKeys::JwksFile { path, line, key } = &jwt.keys else {
            continue;
        };
        let full = dir.join(path);
        let res = std::fs::read_to_string(&full)
            .map_err(|e| format!("cannot read the JWKS file {}: {e}", full.display()))
            .and_then(|text| {
                let doc: serde_json::Value = serde_json::from_str(&text)
                    .map_err(|e| format!("the JWKS file {path} is not JSON: {e}"))?;
                if doc["keys"].is_array() {
                    Ok(text)
                } else {
                    Err(format!("the JWKS file {path} has no `keys` list"))
                }
            });
        match res {
            Ok(text) => jwt.keys = JwtKeys::Jwks(text),
            Err(message) => errors.push(Diagnostic {
                file: file_name.to_owned(),
                line: *line,
                column: 1,
                key: key.clone(),
                message,
            }),
        }
    }
    errors
}

/// Compiles (or loads from `.nimbus/wasm-cache`) the component of a wasm function,
/// starting the engine on first use.
fn load_component(
    dir: &Path,
    spec: &nimbus_core::FunctionSpec,
    engine: &mut Option<WasmEngine>,
) -> Result<WasmComponent, String> {
    let engine = match engine {
        Some(engine) => engine,
        None => engine.insert(
            WasmEngine::new(&WasmEngineConfig {
                cache_dir: dir.join(".nimbus").join("wasm-cache"),
                max_instances: MAX_WASM_INSTANCES,
            })
            .map_err(|e| e.message)?,
        ),
    };
    let started = std::time::Instant::now();
    let component = engine
        .load(&dir.join(&spec.handler))
        .map_err(|e| e.message)?;
    if component.compiled_now {
        tracing::info!(
            function = spec.name,
            "compiled {} in {} ms (cached in .nimbus/wasm-cache)",
            spec.handler,
            started.elapsed().as_millis()
        );
    }
    Ok(component)
}

/// The errors a manifest and its code have, each as printed (`file:line:col: key: ...`);
/// a server that checks a deployed bundle sends them back to the deployer.
#[derive(Debug)]
pub(crate) struct ManifestErrors(pub(crate) Vec<String>);

impl std::fmt::Display for ManifestErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0.len();
        write!(
            f,
            "the manifest has {n} error{}; fix {} and try again",
            if n == 1 { "" } else { "s" },
            if n == 1 { "it" } else { "them" }
        )
    }
}

impl std::error::Error for ManifestErrors {}

fn report_errors(errors: &[Diagnostic]) -> anyhow::Error {
    for error in errors {
        eprintln!("error: {error}");
    }
    anyhow::Error::new(ManifestErrors(
        errors.iter().map(ToString::to_string).collect(),
    ))
}

impl App {
    pub(crate) fn lambda_config(
        &self,
        idle_timeout: Duration,
        log_sink: Arc<dyn LogSink>,
    ) -> LambdaConfig {
        LambdaConfig {
            app_dir: self.dir.clone(),
            runtime_dir: self.state_dir().join("runtime"),
            service: self.manifest.service.clone(),
            stage: self.manifest.stage.clone(),
            region: self.manifest.region.clone(),
            idle_timeout,
            keep_alive: nimbus_core::prewarm::Policy::Fixed(idle_timeout),
            init_timeout: Duration::from_secs(10),
            log_sink,
            packages: self.packages.clone(),
            sandbox: sandbox(),
            instance_limit: instance_limit(None),
            durable_objects: None,
        }
    }

    /// The app's state folder, `.nimbus/` inside it.
    pub(crate) fn state_dir(&self) -> PathBuf {
        self.dir.join(".nimbus")
    }

    /// What hides the function's secret values as `****` (in its output and in the
    /// recorded error messages of its invocations); `None` when it has no secrets.
    pub(crate) fn redactor(&self, spec: &FunctionSpec) -> Option<Arc<Redactor>> {
        if spec.secrets.is_empty() {
            return None;
        }
        let values = spec
            .secrets
            .iter()
            .filter_map(|name| self.secret_values.get(name).cloned());
        Some(Arc::new(Redactor::new(values)))
    }

    /// `sink`, behind one that replaces the function's secret values with `****` when its
    /// environment holds any; other functions' output goes straight to `sink`.
    fn log_sink(&self, spec: &FunctionSpec, sink: &Arc<dyn LogSink>) -> Arc<dyn LogSink> {
        match self.redactor(spec) {
            Some(redactor) => Arc::new(RedactingLogSink::new(sink.clone(), redactor)),
            None => sink.clone(),
        }
    }

    /// Starts the executor of the function at `idx`. Wasm functions reach `services`
    /// through their imports; process functions reach them over the control API.
    pub(crate) async fn start_executor(
        &self,
        idx: usize,
        cfg: &LambdaConfig,
        services: Arc<dyn Services>,
    ) -> anyhow::Result<Arc<dyn nimbus_core::Executor>> {
        let spec = &self.manifest.functions[idx];
        let log_sink = self.log_sink(spec, &cfg.log_sink);
        let code = match &self.codes[idx] {
            FunctionCode::Process(Code::Worker(main)) => {
                let cfg = LambdaConfig {
                    log_sink,
                    ..cfg.clone()
                };
                let executor = WorkersExecutor::start(spec.clone(), main.clone(), cfg)
                    .with_context(|| format!("starting worker {}", spec.name))?;
                executor.prestart().await;
                return Ok(Arc::new(executor));
            }
            FunctionCode::Process(code) => code.clone(),
            FunctionCode::Wasm(component) => {
                let engine = self
                    .wasm_engine
                    .as_ref()
                    .expect("load starts the engine for every wasm function");
                // The same app-wide settings as process functions get.
                let wasm_cfg = nimbus_wasm::WasmConfig {
                    service: cfg.service.clone(),
                    stage: cfg.stage.clone(),
                    region: cfg.region.clone(),
                    log_sink,
                    services,
                };
                let executor = WasmExecutor::new(engine, spec.clone(), component, wasm_cfg)
                    .with_context(|| format!("starting function {}", spec.name))?;
                return Ok(Arc::new(executor));
            }
        };
        let cfg = LambdaConfig {
            log_sink,
            ..cfg.clone()
        };
        let executor = LambdaExecutor::start(spec.clone(), code, cfg)
            .await
            .with_context(|| format!("starting function {}", spec.name))?;
        Ok(Arc::new(executor))
    }
}

/// The bound on process instances over every function this process runs, set by the
/// first call: `max` (`--max-instances`) when given, else what fits in memory at Lambda's
/// default `memorySize` (see `default_max_instances`).
pub(crate) fn instance_limit(max: Option<usize>) -> Arc<InstanceLimit> {
    static LIMIT: OnceLock<Arc<InstanceLimit>> = OnceLock::new();
    LIMIT
        .get_or_init(|| InstanceLimit::new(max.unwrap_or_else(|| default_max_instances(1024))))
        .clone()
}

/// `--max-instances` when not given: as many instances of `memory_mb` as fit in 80 % of
/// the machine's memory (an instance is stopped when it outgrows its `memorySize`, so
/// they cannot together exhaust it), at least 10 (most instances use far less than their
/// `memorySize`) and at most 1,000 (Lambda's default account concurrency).
pub(crate) fn default_max_instances(memory_mb: u32) -> usize {
    let total_mb = machine_memory_mb();
    let fits = total_mb * 8 / 10 / u64::from(memory_mb.max(1));
    usize::try_from(fits).unwrap_or(usize::MAX).clamp(10, 1000)
}

/// The machine's memory in MB (`MemTotal`), 4096 where it cannot be read.
pub(crate) fn machine_memory_mb() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|meminfo| {
            let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib / 1024)
        })
        .unwrap_or(4096)
}

/// The sandbox of process functions, probed once per process from `NIMBUS_SANDBOX`
/// (`auto`, the default, or `off`) and `NIMBUS_SANDBOX_UIDS` (the uids instances get when
/// nimbus is root, `200000-265535` by default). What this machine does not let it
/// enforce is printed once, as one warning.
pub(crate) fn sandbox() -> Arc<Sandbox> {
    static SANDBOX: OnceLock<Arc<Sandbox>> = OnceLock::new();
    SANDBOX
        .get_or_init(|| {
            let mode = match std::env::var("NIMBUS_SANDBOX").as_deref() {
                Ok("off") => SandboxMode::Off,
                Ok("auto") | Err(_) => SandboxMode::Auto,
                Ok(other) => {
                    eprintln!(
                        "warning: NIMBUS_SANDBOX={other} is neither auto nor off; using auto"
                    );
                    SandboxMode::Auto
                }
            };
            let uids = match std::env::var("NIMBUS_SANDBOX_UIDS") {
                Ok(text) => UidRange::parse(&text).unwrap_or_else(|e| {
                    eprintln!(
                        "warning: NIMBUS_SANDBOX_UIDS: {e}; using {}",
                        UidRange::DEFAULT
                    );
                    UidRange::DEFAULT
                }),
                Err(_) => UidRange::DEFAULT,
            };
            let sandbox = Sandbox::probe(SandboxSettings { mode, uids });
            if let Some(warning) = sandbox.warning() {
                eprintln!("warning: {warning}");
            }
            sandbox
        })
        .clone()
}

/// Sends function output to the process log, tagged with function and request id.
pub(crate) struct TracingLogSink;

impl LogSink for TracingLogSink {
    fn log(&self, line: LogLine<'_>) {
        let request_id = line.request_id.unwrap_or("-");
        match line.stream {
            LogStream::Stdout => {
                tracing::info!(function = line.function, request_id, "{}", line.text);
            }
            LogStream::Stderr => {
                tracing::warn!(function = line.function, request_id, "{}", line.text);
            }
        }
    }
}
