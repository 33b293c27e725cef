//! Loading an app folder: find the manifest, parse it, check every handler's code.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use nimbus_core::manifest::{self, Diagnostic, Manifest};
use nimbus_core::{LogLine, LogSink, LogStream};
use nimbus_lambda::{Code, LambdaConfig, LambdaExecutor};

/// The manifest names nimbus looks for, in order.
const MANIFEST_NAMES: [&str; 4] = [
    "nimbus.yaml",
    "nimbus.yml",
    "serverless.yml",
    "serverless.yaml",
];

/// A loaded, valid app.
pub(crate) struct App {
    pub(crate) dir: PathBuf,
    pub(crate) manifest: Manifest,
    /// The code of each function, in `manifest.functions` order.
    pub(crate) codes: Vec<Code>,
}

/// CLI values that feed manifest variables.
pub(crate) struct LoadOptions {
    pub(crate) stage: Option<String>,
    pub(crate) region: Option<String>,
}

/// Loads the app in `dir`, printing warnings; every error is printed and makes it fail.
pub(crate) fn load(dir: &Path, opts: &LoadOptions) -> anyhow::Result<App> {
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
    let source = std::fs::read_to_string(&manifest_path)
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
    let vars = manifest::Variables {
        env: std::env::vars().collect(),
        options,
    };
    let manifest = match manifest::parse(&source, &file_name, &vars) {
        Ok(manifest) => manifest,
        Err(errors) => return Err(report_errors(&errors)),
    };
    for warning in &manifest.warnings {
        eprintln!("warning: {warning}");
    }
    let mut errors = Vec::new();
    let mut codes = Vec::new();
    for spec in &manifest.functions {
        match nimbus_lambda::resolve_code(&dir, spec) {
            Ok(code) => codes.push(code),
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
    Ok(App {
        dir,
        manifest,
        codes,
    })
}

fn report_errors(errors: &[Diagnostic]) -> anyhow::Error {
    for error in errors {
        eprintln!("error: {error}");
    }
    let n = errors.len();
    anyhow::anyhow!(
        "the manifest has {n} error{}; fix {} and try again",
        if n == 1 { "" } else { "s" },
        if n == 1 { "it" } else { "them" }
    )
}

impl App {
    pub(crate) fn lambda_config(&self, idle_timeout: Duration) -> LambdaConfig {
        LambdaConfig {
            app_dir: self.dir.clone(),
            runtime_dir: self.state_dir().join("runtime"),
            service: self.manifest.service.clone(),
            stage: self.manifest.stage.clone(),
            region: self.manifest.region.clone(),
            idle_timeout,
            init_timeout: Duration::from_secs(10),
            log_sink: Arc::new(TracingLogSink),
        }
    }

    /// The app's state folder, `.nimbus/` inside it.
    pub(crate) fn state_dir(&self) -> PathBuf {
        self.dir.join(".nimbus")
    }

    /// Starts the executor of the function at `idx`.
    pub(crate) async fn start_executor(
        &self,
        idx: usize,
        cfg: &LambdaConfig,
    ) -> anyhow::Result<Arc<LambdaExecutor>> {
        let spec = &self.manifest.functions[idx];
        let executor = LambdaExecutor::start(spec.clone(), self.codes[idx].clone(), cfg.clone())
            .await
            .with_context(|| format!("starting function {}", spec.name))?;
        Ok(Arc::new(executor))
    }
}

/// Sends function output to the process log, tagged with function and request id.
struct TracingLogSink;

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
