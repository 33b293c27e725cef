//! The executor for process runtimes (Node.js, Python, `provided`): each instance is an
//! OS process that speaks the AWS Lambda Runtime API to a loopback endpoint of its own.
//!
//! This crate owns child processes and nothing else: it does not route HTTP, does not
//! limit concurrency (the caller does) and keeps no state on disk beyond the bootstrap
//! files it writes into the runtime folder it is given, and the folders it is given for
//! what it installs and compiles: the package cache (AWS SDKs, esbuild), an app's
//! `.nimbus/build` (TypeScript output) and `.nimbus/requirements` (Python dependencies).
//! It does not decide where those are: the binary does, from the environment.

mod code;
mod imports;
mod instance;
mod packages;
mod pool;
mod runtime_api;
mod sandbox;
mod spawn;
mod typescript;
mod workers;
mod wsgi;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nimbus_core::LogSink;

pub use code::{Code, CodeError, resolve_code, runtime_version_warnings};
pub use imports::{ImportUse, ProvidedImports, scan_imports};
pub use packages::{
    AWS_SDK_V3_PACKAGES, InstallError, InstalledSet, PackageCache, PackageSet,
    install_requirements, requirements_installed,
};
pub use pool::{InstanceLimit, LambdaExecutor, check_handler};
pub use sandbox::{Sandbox, SandboxMode, SandboxSettings, UidRange};
pub use typescript::{CompileError, EsbuildOptions, compile_typescript};
pub use workers::WorkersExecutor;
pub use wsgi::{WSGI_HANDLER, WsgiApp, resolve_wsgi, uses_wsgi_adapter};

/// Settings shared by every function of an app.
#[derive(Clone)]
pub struct LambdaConfig {
    /// The app folder: `LAMBDA_TASK_ROOT` and the working directory of every instance.
    pub app_dir: PathBuf,
    /// Where the shipped bootstraps are written (`.nimbus/runtime` under the app).
    pub runtime_dir: PathBuf,
    /// `service` from the manifest; part of the Lambda function name.
    pub service: String,
    /// The stage; part of the Lambda function name.
    pub stage: String,
    /// `AWS_REGION` given to functions.
    pub region: String,
    /// An idle instance is stopped after this long (scale to zero) under the fixed
    /// policy, and when the hybrid policy cannot predict its function or the pre-warm
    /// budget is used up.
    pub idle_timeout: Duration,
    /// How long idle instances stay warm and when they are pre-warmed.
    pub keep_alive: nimbus_core::prewarm::Policy,
    /// The longest an instance may take to start before its first invocation.
    pub init_timeout: Duration,
    /// Receives every line instances write to stdout and stderr.
    pub log_sink: Arc<dyn LogSink>,
    /// The runtime-provided packages (AWS SDKs) functions find when they do not bring
    /// their own.
    pub packages: RuntimePackages,
    /// The sandbox every instance starts in, probed once per process.
    pub sandbox: Arc<Sandbox>,
    /// The bound on instances over every function in the process (`--max-instances`).
    pub instance_limit: Arc<InstanceLimit>,
    /// Where the Durable Objects of workers keep their storage and alarms; `None` where
    /// nothing is kept (`nimbus invoke`, `nimbus validate`), and storage calls fail.
    pub durable_objects: Option<Arc<dyn nimbus_core::durable_objects::DurableObjectStore>>,
}

/// Folders of runtime-provided packages, searched after a function's own packages, as on
/// Lambda (where the SDK sits in the runtime's folder, after `/var/task`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimePackages {
    /// `node_modules` folders: on `NODE_PATH` for `require`, and searched by the
    /// bootstrap's resolve hook for `import`, which ignores `NODE_PATH`.
    pub node: Vec<PathBuf>,
    /// Folders on `PYTHONPATH`.
    pub python: Vec<PathBuf>,
}

impl RuntimePackages {
    /// No provided packages: functions find only their own and nimbus's clients.
    pub fn none() -> RuntimePackages {
        RuntimePackages {
            node: Vec::new(),
            python: Vec::new(),
        }
    }
}

/// Writes the shipped Node.js and Python bootstraps, service clients and WSGI adapter
/// into `cfg.runtime_dir`.
pub fn install_bootstraps(cfg: &LambdaConfig) -> std::io::Result<()> {
    std::fs::create_dir_all(&cfg.runtime_dir)?;
    let files = [
        (code::NODE_BOOTSTRAP_FILE, code::NODE_BOOTSTRAP),
        (code::PYTHON_BOOTSTRAP_FILE, code::PYTHON_BOOTSTRAP),
        (code::WORKERS_HOST_FILE, code::WORKERS_HOST),
    ]
    .into_iter()
    .chain(code::CLIENTS)
    .chain(code::WORKERS_SHIMS)
    .chain([code::WSGI_ADAPTER]);
    for (name, text) in files {
        let path = cfg.runtime_dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        // Only rewrite when changed, so a running sibling process never reads a half file.
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text) {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, text)?;
            std::fs::rename(&tmp, &path)?;
        }
    }
    Ok(())
}
