//! `nimbus validate`: check a manifest and every handler without running anything.

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
}

impl ValidateCommand {
    pub(crate) fn execute(self) -> anyhow::Result<ExitCode> {
        let app = app::load(
            &self.dir,
            &LoadOptions {
                stage: self.stage,
                region: None,
                fetch: Fetch::ToolsOnly,
            },
        )?;
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
        Ok(ExitCode::SUCCESS)
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
