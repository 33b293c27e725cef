//! `nimbus validate`: check a manifest and every handler: its file, and (unless
//! `--no-load`) that it loads and exports a function.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::app::{self, Fetch, LoadOptions};

/// Check an app's manifest and code; exits non-zero on any error.
#[derive(clap::Args)]
pub(crate) struct ValidateCommand {
    /// The app folder, holding nimbus.yaml or serverless.yml.
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// Stage, for `${opt:stage}` and `${sls:stage}`.
    #[arg(long)]
    stage: Option<String>,
    /// Region, for `${opt:region}` and `${aws:region}`.
    #[arg(long)]
    region: Option<String>,
    /// Do not load Node.js and Python handlers to check their export (loading runs the
    /// module's top-level code, in the functions' sandbox).
    #[arg(long)]
    no_load: bool,
}

/// How long one handler may take to load.
const LOAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The exit code when the manifest is valid but a function has events and nimbus serves
/// none of them, so it would never be invoked (documented in README.md).
const EXIT_UNSERVED: u8 = 2;

impl ValidateCommand {
    pub(crate) fn execute(self) -> anyhow::Result<ExitCode> {
        let app = app::load(
            &self.dir,
            &LoadOptions {
                stage: self.stage,
                region: self.region,
                fetch: Fetch::ToolsOnly,
            },
        )?;
        if !self.no_load {
            let failures = crate::runtime()?.block_on(load_handlers(&app))?;
            if !failures.is_empty() {
                for failure in &failures {
                    eprintln!("error: {failure}");
                }
                return Ok(ExitCode::FAILURE);
            }
        }
        let manifest = &app.manifest;
        let n_routes: usize = manifest.functions.iter().map(|f| f.http_routes.len()).sum();
        println!(
            "{}: {} ({}) is valid: {} function{}, {} route{}, {} warning{}",
            app.dir.display(),
            manifest.service,
            manifest.stage,
            manifest.functions.len(),
            plural(manifest.functions.len()),
            n_routes,
            plural(n_routes),
            manifest.warnings.len(),
            plural(manifest.warnings.len()),
        );
        println!("serves: {}", served_summary(manifest));
        if !manifest.warnings.is_empty() {
            println!(
                "ignores: {} part{} of the manifest, each named in a warning above",
                manifest.warnings.len(),
                plural(manifest.warnings.len())
            );
        }
        // How process functions would be isolated on this machine (and, in the one
        // warning, what it lacks).
        if app
            .codes
            .iter()
            .any(|code| matches!(code, app::FunctionCode::Process(_)))
        {
            println!("isolation: {}", app::sandbox().describe());
        }
        // The versions functions will get when they import a provided package.
        let cache = crate::commands::runtimes::package_cache()?;
        let lines = crate::commands::runtimes::cache_lines(&cache);
        if lines.is_empty() {
            println!("package cache {}: empty", cache.root().display());
        } else {
            println!("package cache {}:", cache.root().display());
            for line in lines {
                println!("  {line}");
            }
        }
        let unserved: Vec<String> = manifest
            .functions
            .iter()
            .filter(|f| !f.ignored_events.is_empty() && f.http_routes.is_empty() && f.events.is_empty())
            .map(|f| {
                format!(
                    "function `{}` has only events nimbus does not serve yet ({}); it would never be invoked",
                    f.name,
                    f.ignored_events.join(", ")
                )
            })
            .collect();
        if unserved.is_empty() {
            return Ok(ExitCode::SUCCESS);
        }
        for line in &unserved {
            eprintln!("error: {line}");
        }
        Ok(ExitCode::from(EXIT_UNSERVED))
    }
}

/// Loads each Node.js and Python handler in an instance of its own, as a cold start
/// does, and returns a diagnostic line for each that fails to import or lacks its export.
async fn load_handlers(app: &app::App) -> anyhow::Result<Vec<String>> {
    use anyhow::Context as _;
    let file_name = app::MANIFEST_NAMES
        .iter()
        .find(|name| app.dir.join(name).is_file())
        .copied()
        .unwrap_or("serverless.yml");
    // What the handlers print while loading is not shown: a failure's message says it.
    let mut cfg = app.lambda_config(
        std::time::Duration::from_secs(60),
        std::sync::Arc::new(Discard),
    );
    cfg.init_timeout = LOAD_TIMEOUT;
    let mut failures = Vec::new();
    let mut installed = false;
    for (spec, code) in app.manifest.functions.iter().zip(&app.codes) {
        let app::FunctionCode::Process(code) = code else {
            continue;
        };
        if matches!(code, nimbus_lambda::Code::Provided(_)) {
            continue;
        }
        if !installed {
            nimbus_lambda::install_bootstraps(&cfg).context("writing runtime bootstraps")?;
            installed = true;
        }
        if let Err(message) =
            nimbus_lambda::check_handler(spec.clone(), code.clone(), cfg.clone()).await
        {
            failures.push(format!(
                "{file_name}:{}:1: functions.{}.handler: {message}",
                spec.handler_line, spec.name
            ));
        }
    }
    Ok(failures)
}

/// A log sink that keeps nothing.
struct Discard;

impl nimbus_core::LogSink for Discard {
    fn log(&self, _line: nimbus_core::LogLine<'_>) {}
}

/// One line: what nimbus runs of the app, by kind.
fn served_summary(manifest: &nimbus_core::manifest::Manifest) -> String {
    use nimbus_core::events::EventSource;
    let mut counts = [0usize; 7];
    for event in manifest.functions.iter().flat_map(|f| &f.events) {
        let idx = match event {
            EventSource::Sqs(_) => 0,
            EventSource::Sns(_) => 1,
            EventSource::S3(_) => 2,
            EventSource::Schedule(_) => 3,
            EventSource::EventBridge(_) => 5,
            EventSource::Stream(_) => 6,
        };
        counts[idx] += 1;
    }
    counts[4] = manifest.functions.iter().map(|f| f.http_routes.len()).sum();
    let mut parts = vec![format!("{} HTTP route{}", counts[4], plural(counts[4]))];
    for (n, what) in [
        (counts[0], "queue consumer"),
        (counts[1], "topic subscription"),
        (counts[2], "bucket notification"),
        (counts[3], "schedule"),
        (counts[5], "EventBridge rule"),
        (counts[6], "stream consumer"),
    ] {
        if n > 0 {
            parts.push(format!("{n} {what}{}", plural(n)));
        }
    }
    let resources = &manifest.resources;
    for (n, what) in [
        (resources.queues.len(), "queue"),
        (resources.topics.len(), "topic"),
        (resources.buckets.len(), "bucket"),
        (resources.kv_namespaces.len(), "KV namespace"),
        (resources.tables.len(), "table"),
        (resources.streams.len(), "stream"),
        (resources.event_buses.len(), "event bus"),
    ] {
        if n > 0 {
            let suffix = match plural(n) {
                "s" if what.ends_with('s') => "es",
                suffix => suffix,
            };
            parts.push(format!("{n} {what}{suffix}"));
        }
    }
    parts.join(", ")
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
