//! Where a function's code is and how its runtime starts: the handler file checks and
//! the command line of each runtime.

use std::path::{Path, PathBuf};

use nimbus_core::{FunctionSpec, Runtime};

use crate::wsgi::WsgiApp;

pub(crate) const NODE_BOOTSTRAP: &str = include_str!("../bootstrap/node/bootstrap.cjs");
pub(crate) const NODE_BOOTSTRAP_FILE: &str = "bootstrap.cjs";
pub(crate) const PYTHON_BOOTSTRAP: &str = include_str!("../bootstrap/python/bootstrap.py");
pub(crate) const PYTHON_BOOTSTRAP_FILE: &str = "bootstrap.py";
/// The host of `runtime: workers` functions (`crate::workers`).
pub(crate) const WORKERS_HOST: &str = include_str!("../bootstrap/workers/host.mjs");
pub(crate) const WORKERS_HOST_FILE: &str = "workers/host.mjs";
/// The `cloudflare:workers` module of the Workers host and the hook that resolves it.
pub(crate) const WORKERS_SHIMS: [(&str, &str); 2] = [
    (
        "workers/cloudflare-workers.mjs",
        include_str!("../bootstrap/workers/cloudflare-workers.mjs"),
    ),
    (
        "workers/resolve.mjs",
        include_str!("../bootstrap/workers/resolve.mjs"),
    ),
];
/// The adapter serving serverless-wsgi functions (`crate::wsgi`), alone in a folder that
/// only their `PYTHONPATH` holds.
pub(crate) const WSGI_ADAPTER: (&str, &str) = (
    "wsgi/wsgi_handler.py",
    include_str!("../bootstrap/python/wsgi_handler.py"),
);

/// The clients of nimbus's services that functions load as `require('nimbus')` and
/// `import nimbus`, with their paths under the runtime folder.
pub(crate) const CLIENTS: [(&str, &str); 3] = [
    (
        "node_modules/nimbus/index.js",
        include_str!("../bootstrap/node/node_modules/nimbus/index.js"),
    ),
    (
        "node_modules/nimbus/package.json",
        include_str!("../bootstrap/node/node_modules/nimbus/package.json"),
    ),
    (
        "python/nimbus.py",
        include_str!("../bootstrap/python/nimbus.py"),
    ),
];

/// How an instance of a function is started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Code {
    /// `node <runtime_dir>/bootstrap.cjs`, loading the handler module from the app folder.
    Node,
    /// A TypeScript handler (`.ts`, `.mts`, `.cts`; the path relative to the app folder)
    /// that is not compiled yet: `compile_typescript` turns it into `NodeBuilt`.
    TypeScript(PathBuf),
    /// `node bootstrap.cjs` loading the file nimbus compiled from a TypeScript handler.
    NodeBuilt {
        /// The compiled module, in the app's `.nimbus/build`.
        built: PathBuf,
        /// Whether it has a source map, so stack traces name the TypeScript lines.
        source_maps: bool,
        /// The `node_modules` folders between the source and the app folder, where
        /// packages left outside the output are found.
        module_dirs: Vec<PathBuf>,
    },
    /// `python3 <runtime_dir>/bootstrap.py`.
    Python {
        /// The function's `requirements.txt`, relative to the app folder (the nearest one
        /// from the handler's folder up), when it has one.
        requirements: Option<PathBuf>,
        /// Where those requirements are installed, once they are: first on `PYTHONPATH`.
        dependencies: Option<PathBuf>,
        /// The WSGI app nimbus's `wsgi_handler` serves, for a serverless-wsgi function
        /// (`crate::resolve_wsgi`).
        wsgi: Option<WsgiApp>,
    },
    /// The function's own `bootstrap` executable.
    Provided(PathBuf),
    /// A `runtime: workers` module or service-worker script (the path relative to the app
    /// folder), served by the Workers host (`crate::workers`), not the Lambda bootstrap.
    Worker(PathBuf),
}

impl Code {
    /// The interpreter a Python function runs with and installs its requirements with:
    /// serverless-wsgi's `pythonBin` for a WSGI function that names one, else `python3`.
    pub fn python_program(&self) -> &str {
        match self {
            Code::Python {
                wsgi:
                    Some(WsgiApp {
                        python_bin: Some(bin),
                        ..
                    }),
                ..
            } => bin,
            _ => "python3",
        }
    }
}

/// The handler of a function points at nothing that can run.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CodeError {
    /// What is missing and what to do.
    pub message: String,
}

/// Checks that the handler of `spec` exists under `app_dir` and says how to start it.
pub fn resolve_code(app_dir: &Path, spec: &FunctionSpec) -> Result<Code, CodeError> {
    match spec.runtime {
        Runtime::Node { .. } => {
            let module = handler_module(spec)?;
            // A TypeScript source wins over JavaScript of the same name, which is most
            // likely an earlier compiler output (serverless-esbuild prefers it too).
            let candidates: Vec<String> = ["ts", "mts", "cts", "js", "mjs", "cjs"]
                .iter()
                .map(|ext| format!("{module}.{ext}"))
                .collect();
            if let Some(found) = candidates.iter().find(|c| app_dir.join(c).is_file()) {
                if found.ends_with("ts") {
                    return Ok(Code::TypeScript(PathBuf::from(found)));
                }
                return Ok(Code::Node);
            }
            Err(CodeError {
                message: format!(
                    "handler file not found: looked for {} in {}",
                    candidates.join(", "),
                    app_dir.display()
                ),
            })
        }
        Runtime::Python { .. } => {
            let module = handler_module(spec)?;
            let file = format!("{module}.py");
            if app_dir.join(&file).is_file() {
                return Ok(Code::Python {
                    requirements: nearest_requirements(app_dir, Path::new(&file)),
                    dependencies: None,
                    wsgi: None,
                });
            }
            Err(CodeError {
                message: format!(
                    "handler file not found: looked for {file} in {}",
                    app_dir.display()
                ),
            })
        }
        Runtime::Provided => {
            // As on Lambda the handler of a custom runtime is only a string for the
            // bootstrap; when it names an executable file we run that, else `bootstrap`.
            let named = app_dir.join(&spec.handler);
            let candidates = [named, app_dir.join("bootstrap")];
            for candidate in candidates.iter() {
                if is_executable(candidate) {
                    return Ok(Code::Provided(candidate.clone()));
                }
            }
            Err(CodeError {
                message: format!(
                    "no bootstrap executable: looked for {} and {}; build your custom runtime there and make it executable",
                    candidates[0].display(),
                    candidates[1].display()
                ),
            })
        }
        Runtime::Workers => {
            let main = spec.handler.trim_start_matches("./");
            if app_dir.join(main).is_file() {
                return Ok(Code::Worker(PathBuf::from(main)));
            }
            Err(CodeError {
                message: format!(
                    "the worker's module {main} is not in {}; `main` (or `handler`) names the file that exports its handlers",
                    app_dir.display()
                ),
            })
        }
        // The caller routes wasm functions to nimbus-wasm; reaching here is its mistake.
        Runtime::Wasm => Err(CodeError {
            message: "a wasm function has no process code; nimbus-wasm invokes it".to_owned(),
        }),
    }
}

/// Warnings for runtimes whose named version differs from the interpreter on this machine,
/// one per runtime named, listing the functions that name it.
pub fn runtime_version_warnings(specs: &[FunctionSpec]) -> Vec<String> {
    let mut by_runtime: Vec<(Runtime, Vec<&str>)> = Vec::new();
    for spec in specs {
        if !matches!(spec.runtime, Runtime::Node { .. } | Runtime::Python { .. }) {
            continue;
        }
        match by_runtime.iter_mut().find(|(r, _)| *r == spec.runtime) {
            Some((_, names)) => names.push(&spec.name),
            None => by_runtime.push((spec.runtime, vec![&spec.name])),
        }
    }
    let mut warnings = Vec::new();
    let mut versions: std::collections::HashMap<&str, Option<String>> = Default::default();
    for (runtime, names) in by_runtime {
        // (program, what to install, the version part the runtime names, that part of
        // `program --version`)
        let (program, install, wanted, found_part): (&str, &str, String, fn(&str) -> &str) =
            match runtime {
                Runtime::Node { major } => ("node", "Node.js", major.to_string(), |v| {
                    v.trim_start_matches('v').split('.').next().unwrap_or("")
                }),
                Runtime::Python { minor } => ("python3", "Python 3", minor.to_string(), |v| {
                    v.trim_start_matches("Python ")
                        .split('.')
                        .nth(1)
                        .unwrap_or("")
                }),
                _ => continue,
            };
        let (s, them) = if names.len() > 1 {
            ("", "them")
        } else {
            ("s", "it")
        };
        let names = names.join(", ");
        // Once per program, however many of its versions the manifest names; resolving
        // the real executable now spares the first cold start.
        let found = versions.entry(program).or_insert_with(|| {
            crate::spawn::interpreter(program);
            crate::spawn::interpreter_version(program)
        });
        match found {
            Some(found) if found_part(found) != wanted => warnings.push(format!(
                "{names} ask{s} for {runtime}, but {program} on this machine is {found}; running {them} with that"
            )),
            Some(_) => {}
            None => warnings.push(format!(
                "{names} need{s} {program}, which is not on PATH: install {install} to run {them}"
            )),
        }
    }
    warnings
}

/// The `requirements.txt` in the folder of `file` or the nearest folder above it, up to
/// the app folder: serverless-python-requirements reads the one at the service's root,
/// and the one in a function's `module` folder for functions packaged individually.
pub(crate) fn nearest_requirements(app_dir: &Path, file: &Path) -> Option<PathBuf> {
    let mut dir = file.parent();
    while let Some(d) = dir {
        let candidate = d.join("requirements.txt");
        if app_dir.join(&candidate).is_file() {
            return Some(candidate);
        }
        dir = d.parent();
    }
    None
}

fn handler_module(spec: &FunctionSpec) -> Result<&str, CodeError> {
    match spec.handler.rsplit_once('.') {
        Some((module, export)) if !module.is_empty() && !export.is_empty() => Ok(module),
        _ => Err(CodeError {
            message: format!(
                "handler {:?} must be file.export, for example src/api.handler",
                spec.handler
            ),
        }),
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
