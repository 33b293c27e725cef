//! `nimbus runtimes`: the packages Lambda's runtimes provide (the AWS SDKs) and esbuild,
//! kept in a cache shared by every app.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use nimbus_lambda::{PackageCache, PackageSet};

/// Fetch or list the runtime-provided packages (AWS SDKs) and esbuild.
#[derive(clap::Args)]
pub(crate) struct RuntimesCommand {
    #[command(subcommand)]
    action: RuntimesAction,
}

#[derive(clap::Subcommand)]
enum RuntimesAction {
    /// Fetch package sets into the cache now (all of them when none is named), so that
    /// `nimbus up` does not need the registries later.
    Install {
        /// aws-sdk-v3, aws-sdk-v2, boto3 or esbuild.
        sets: Vec<String>,
    },
    /// List what the cache holds, with versions.
    Ls,
}

/// The cache folder: `NIMBUS_SDK_CACHE`, else `$XDG_CACHE_HOME/nimbus/sdk`, else
/// `~/.cache/nimbus/sdk`, else (no home) `nimbus-sdk` in the temp folder.
pub(crate) fn package_cache() -> anyhow::Result<PackageCache> {
    let from_env = |name: &str| {
        std::env::var_os(name)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    let root = match from_env("NIMBUS_SDK_CACHE") {
        Some(root) => root,
        None => match from_env("XDG_CACHE_HOME") {
            Some(cache) => cache.join("nimbus").join("sdk"),
            None => from_env("HOME")
                .map(|home| home.join(".cache").join("nimbus").join("sdk"))
                .unwrap_or_else(|| std::env::temp_dir().join("nimbus-sdk")),
        },
    };
    Ok(PackageCache::new(root))
}

/// One line per set in the cache: `name version, ...` of its main packages.
pub(crate) fn cache_lines(cache: &PackageCache) -> Vec<String> {
    cache
        .installed()
        .into_iter()
        .map(|installed| {
            let versions: Vec<String> = installed
                .versions
                .iter()
                .map(|(name, version)| format!("{name} {version}"))
                .collect();
            format!("{}: {}", installed.set.id(), versions.join(", "))
        })
        .collect()
}

impl RuntimesCommand {
    pub(crate) fn execute(self) -> anyhow::Result<ExitCode> {
        let cache = package_cache()?;
        match self.action {
            RuntimesAction::Install { sets } => {
                let sets = if sets.is_empty() {
                    PackageSet::ALL.to_vec()
                } else {
                    sets.iter()
                        .map(|id| {
                            PackageSet::from_id(id).with_context(|| {
                                format!(
                                    "unknown package set `{id}`: expected one of {}",
                                    PackageSet::ALL.map(PackageSet::id).join(", ")
                                )
                            })
                        })
                        .collect::<anyhow::Result<Vec<_>>>()?
                };
                for set in sets {
                    if cache.is_installed(set) {
                        eprintln!("nimbus: {set} is in {} already", cache.dir(set).display());
                        continue;
                    }
                    crate::app::fetch_set(&cache, set)?;
                }
                print_cache(&cache)
            }
            RuntimesAction::Ls => print_cache(&cache),
        }
    }
}

fn print_cache(cache: &PackageCache) -> anyhow::Result<ExitCode> {
    let lines = cache_lines(cache);
    println!("package cache {}:", cache.root().display());
    if lines.is_empty() {
        println!("  empty: `nimbus runtimes install` fetches the AWS SDKs and esbuild");
    }
    for line in lines {
        println!("  {line}");
    }
    Ok(ExitCode::SUCCESS)
}
