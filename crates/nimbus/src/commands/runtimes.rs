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
            format!(
                "{}: {}",
                installed.set.id(),
                versions_text(&installed.versions)
            )
        })
        .collect()
}

/// `name version, ...`; when more than three packages share the most common version, they
/// are counted rather than named (the v3 SDK is a dozen packages, mostly at one version).
fn versions_text(versions: &[(String, String)]) -> String {
    let mut counts: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for (_, version) in versions {
        *counts.entry(version.as_str()).or_default() += 1;
    }
    let common = counts
        .iter()
        .max_by_key(|(_, n)| **n)
        .filter(|(_, n)| **n > 3)
        .map(|(version, n)| (*version, *n));
    let mut parts = Vec::new();
    if let Some((version, n)) = common {
        parts.push(format!("{n} packages at {version}"));
    }
    for (name, version) in versions {
        if common.is_none_or(|(v, _)| v != version) {
            parts.push(format!("{name} {version}"));
        }
    }
    parts.join(", ")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_packages_that_share_a_version() {
        let list = |items: &[(&str, &str)]| -> Vec<(String, String)> {
            items
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            versions_text(&list(&[("boto3", "1.44.8"), ("botocore", "1.44.8")])),
            "boto3 1.44.8, botocore 1.44.8"
        );
        let v3 = list(&[
            ("a", "3.2"),
            ("b", "3.2"),
            ("c", "3.1"),
            ("d", "3.2"),
            ("e", "3.2"),
        ]);
        assert_eq!(versions_text(&v3), "4 packages at 3.2, c 3.1");
    }
}
