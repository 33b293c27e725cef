//! TypeScript handlers: compiled with esbuild into the app's `.nimbus/build/`, with
//! source maps, and compiled again only when a file that went into the output changed.
//!
//! The options follow serverless-esbuild's `custom.esbuild` where nimbus has a use for
//! them (bundle, external, exclude, target, sourcemap, format, packages, minify,
//! keepNames).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::Digest as _;

use crate::code::Code;
use crate::packages::{PackageCache, PackageSet};

/// How TypeScript handlers are compiled: the parts of `custom.esbuild` nimbus uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EsbuildOptions {
    /// Whether packages from `node_modules` go into the output. Without `custom.esbuild`
    /// they stay outside it and load from the app's `node_modules` at run time, which
    /// keeps compiles fast and native modules working; with it, as serverless-esbuild
    /// does, they are bundled unless `bundle: false` or `packages: external`.
    bundle_packages: bool,
    /// Packages left out of the output (`external` and `exclude`); `aws-sdk` and
    /// `@aws-sdk/*` always are, since the runtime provides them.
    external: Vec<String>,
    /// `target`, else `nodeNN` of the function's runtime.
    target: Option<String>,
    sourcemap: SourceMap,
    format: Option<Format>,
    minify: bool,
    keep_names: bool,
}

/// `sourcemap`: where the source map goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SourceMap {
    /// A `.map` file beside the output, linked from it (the default).
    Linked,
    /// In the output file itself.
    Inline,
    /// None: stack traces name the compiled file.
    Off,
}

/// The module format of the compiled output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    CommonJs,
    Esm,
}

/// The options nimbus reads from `custom.esbuild`.
const USED_OPTIONS: [&str; 9] = [
    "bundle",
    "external",
    "exclude",
    "target",
    "sourcemap",
    "format",
    "packages",
    "minify",
    "keepNames",
];

impl EsbuildOptions {
    /// The options in `custom.esbuild` of the manifest's `custom` section (`None` when
    /// the manifest has none), with a warning for each one nimbus ignores or cannot read.
    pub fn from_custom(custom: Option<&serde_json::Value>) -> (EsbuildOptions, Vec<String>) {
        let mut warnings = Vec::new();
        let mut opts = EsbuildOptions {
            bundle_packages: false,
            external: Vec::new(),
            target: None,
            sourcemap: SourceMap::Linked,
            format: None,
            minify: false,
            keep_names: false,
        };
        let Some(esbuild) = custom.and_then(|c| c.get("esbuild")) else {
            return (opts, warnings);
        };
        let Some(fields) = esbuild.as_object() else {
            warnings
                .push("custom.esbuild must be a mapping of esbuild options; ignored".to_owned());
            return (opts, warnings);
        };
        let mut bad = |key: &str, expected: &str| {
            warnings.push(format!("custom.esbuild.{key} must be {expected}; ignored"));
        };
        let mut bundle = true;
        let mut packages_external = false;
        let mut ignored = Vec::new();
        for (key, value) in fields {
            match key.as_str() {
                "bundle" => match value.as_bool() {
                    Some(b) => bundle = b,
                    None => bad(key, "true or false"),
                },
                "external" | "exclude" => match string_list(value) {
                    Some(list) => opts.external.extend(list),
                    None => bad(key, "a list of package names"),
                },
                "target" => match string_list(value) {
                    Some(list) if !list.is_empty() => opts.target = Some(list.join(",")),
                    _ => bad(key, "a target such as node20, or a list of them"),
                },
                "sourcemap" => match value {
                    serde_json::Value::Bool(true) => opts.sourcemap = SourceMap::Linked,
                    serde_json::Value::Bool(false) => opts.sourcemap = SourceMap::Off,
                    serde_json::Value::String(s) if s == "inline" => {
                        opts.sourcemap = SourceMap::Inline;
                    }
                    // An external map is not linked from the output, so Node would not
                    // find it: nimbus links it.
                    serde_json::Value::String(s)
                        if matches!(s.as_str(), "linked" | "external" | "both") =>
                    {
                        opts.sourcemap = SourceMap::Linked;
                    }
                    _ => bad(key, "true, false, linked, inline, external or both"),
                },
                "format" => match value.as_str() {
                    Some("cjs") => opts.format = Some(Format::CommonJs),
                    Some("esm") => opts.format = Some(Format::Esm),
                    _ => bad(key, "cjs or esm"),
                },
                "packages" => match value.as_str() {
                    Some("external") => packages_external = true,
                    Some("bundle") => packages_external = false,
                    _ => bad(key, "external or bundle"),
                },
                "minify" => match value.as_bool() {
                    Some(b) => opts.minify = b,
                    None => bad(key, "true or false"),
                },
                "keepNames" => match value.as_bool() {
                    Some(b) => opts.keep_names = b,
                    None => bad(key, "true or false"),
                },
                _ => ignored.push(key.clone()),
            }
        }
        opts.bundle_packages = bundle && !packages_external;
        if !ignored.is_empty() {
            warnings.push(format!(
                "custom.esbuild: nimbus uses {} and ignores {}",
                USED_OPTIONS.join(", "),
                ignored.join(", ")
            ));
        }
        (opts, warnings)
    }
}

/// A TypeScript handler that failed to compile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    /// The index of the function in the slice given to [`compile_typescript`].
    pub function_idx: usize,
    /// esbuild's errors, each as `file:line:column: message`, or what else failed.
    pub message: String,
}

/// Compiles the handler of every function whose code is [`Code::TypeScript`] and turns
/// that code into [`Code::NodeBuilt`]; each source is compiled once however many
/// functions name it, and different sources in parallel. Output goes into `build_dir`
/// (the app's `.nimbus/build`), one folder per source and settings, and is used again
/// while every file that went into it is unchanged. esbuild must be in `cache`.
pub fn compile_typescript(
    app_dir: &Path,
    build_dir: &Path,
    cache: &PackageCache,
    runtimes: &[nimbus_core::Runtime],
    codes: &mut [Code],
    opts: &EsbuildOptions,
) -> Vec<CompileError> {
    let mut errors = Vec::new();
    let Some(esbuild) = esbuild_binary(cache) else {
        for (function_idx, code) in codes.iter().enumerate() {
            if matches!(code, Code::TypeScript(_)) {
                errors.push(CompileError {
                    function_idx,
                    message: format!(
                        "compiling TypeScript needs esbuild, which is not in {} yet: run `nimbus runtimes install esbuild`",
                        cache.root().display()
                    ),
                });
            }
        }
        return errors;
    };
    let esbuild_version = cache
        .version_of(PackageSet::Esbuild, "esbuild")
        .unwrap_or_default();
    // One build per (source, target): functions naming the same file share it.
    let mut builds: BTreeMap<(PathBuf, String), Vec<usize>> = BTreeMap::new();
    for (idx, code) in codes.iter().enumerate() {
        if let Code::TypeScript(source) = code {
            let target = opts
                .target
                .clone()
                .unwrap_or_else(|| match runtimes.get(idx) {
                    Some(nimbus_core::Runtime::Node { major }) => format!("node{major}"),
                    _ => "node20".to_owned(),
                });
            builds
                .entry((source.clone(), target))
                .or_default()
                .push(idx);
        }
    }
    let results: Vec<(Vec<usize>, Result<Code, String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = builds
            .into_iter()
            .map(|((source, target), idxs)| {
                let esbuild = &esbuild;
                let esbuild_version = &esbuild_version;
                scope.spawn(move || {
                    let build = Build {
                        app_dir,
                        build_dir,
                        esbuild,
                        esbuild_version,
                        source: &source,
                        target: &target,
                        opts,
                    };
                    (idxs, build.run())
                })
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|handle| handle.join().ok())
            .collect()
    });
    for (idxs, res) in results {
        for idx in idxs {
            match &res {
                Ok(code) => codes[idx] = code.clone(),
                Err(message) => errors.push(CompileError {
                    function_idx: idx,
                    message: message.clone(),
                }),
            }
        }
    }
    errors.sort_by_key(|e| e.function_idx);
    errors
}

/// The esbuild executable in the cache: the platform package's native binary, which
/// starts faster than the `esbuild` package's launcher.
fn esbuild_binary(cache: &PackageCache) -> Option<PathBuf> {
    if !cache.is_installed(PackageSet::Esbuild) {
        return None;
    }
    let modules = cache.modules_dir(PackageSet::Esbuild);
    let native = std::fs::read_dir(modules.join("@esbuild"))
        .ok()
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|entry| entry.path().join("bin").join("esbuild"))
        .find(|path| path.is_file());
    native.or_else(|| {
        let launcher = modules.join("esbuild").join("bin").join("esbuild");
        launcher.is_file().then_some(launcher)
    })
}

/// One source compiled with one set of settings.
struct Build<'a> {
    app_dir: &'a Path,
    build_dir: &'a Path,
    esbuild: &'a Path,
    esbuild_version: &'a str,
    /// The handler's source, relative to the app folder.
    source: &'a Path,
    target: &'a str,
    opts: &'a EsbuildOptions,
}

/// `inputs.json` in a build folder: what went into the output, by content.
const INPUTS_FILE: &str = "inputs.json";

impl Build<'_> {
    fn run(&self) -> Result<Code, String> {
        let format = self.format();
        let module = self.source.with_extension("");
        let output = module.with_extension(match format {
            Format::CommonJs => "cjs",
            Format::Esm => "mjs",
        });
        let dir = self.build_dir.join(self.key(format));
        let code = Code::NodeBuilt {
            built: dir.join(&output),
            source_maps: self.opts.sourcemap != SourceMap::Off,
            module_dirs: self.module_dirs(),
        };
        if self.is_fresh(&dir, &output) {
            return Ok(code);
        }
        let started = std::time::Instant::now();
        let tmp = self.build_dir.join(format!(
            ".{}.tmp-{}-{}",
            self.key(format),
            std::process::id(),
            unique()
        ));
        let _ = std::fs::remove_dir_all(&tmp);
        let res = self.compile(&tmp, &output, format).and_then(|()| {
            let old = self.build_dir.join(format!(
                ".{}.old-{}-{}",
                self.key(format),
                std::process::id(),
                unique()
            ));
            let had_old = std::fs::rename(&dir, &old).is_ok();
            let moved = std::fs::rename(&tmp, &dir)
                .map_err(|e| format!("moving the build into {}: {e}", dir.display()));
            if had_old {
                let _ = std::fs::remove_dir_all(&old);
            }
            moved
        });
        let _ = std::fs::remove_dir_all(&tmp);
        res?;
        tracing::info!(
            "compiled {} in {} ms (cached in .nimbus/build)",
            self.source.display(),
            started.elapsed().as_millis()
        );
        Ok(code)
    }

    /// CommonJS unless `format` or the source says ES module: a `.mts` file, or a `.ts`
    /// file under a package.json with `"type": "module"`.
    fn format(&self) -> Format {
        if let Some(format) = self.opts.format {
            return format;
        }
        match self.source.extension().and_then(|e| e.to_str()) {
            Some("mts") => Format::Esm,
            Some("cts") => Format::CommonJs,
            _ if package_type_is_module(self.app_dir, self.source) => Format::Esm,
            _ => Format::CommonJs,
        }
    }

    /// The build folder's name: a hash of everything but the sources' contents (those
    /// are checked against `inputs.json`). The app folder is part of it, since deployed
    /// versions of a stage share one state folder.
    fn key(&self, format: Format) -> String {
        let mut hasher = sha2::Sha256::new();
        for part in [
            self.app_dir.display().to_string(),
            self.source.display().to_string(),
            self.target.to_owned(),
            self.esbuild_version.to_owned(),
            format!("{format:?} {:?}", self.opts),
        ] {
            hasher.update(part.as_bytes());
            hasher.update([0]);
        }
        let digest = hasher.finalize();
        let stem = self
            .source
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        format!("{stem}-{}", hex(&digest[..8]))
    }

    /// Whether `dir` holds an output built from the files as they are now.
    fn is_fresh(&self, dir: &Path, output: &Path) -> bool {
        if !dir.join(output).is_file() {
            return false;
        }
        let Ok(text) = std::fs::read_to_string(dir.join(INPUTS_FILE)) else {
            return false;
        };
        let Ok(serde_json::Value::Object(inputs)) = serde_json::from_str(&text) else {
            return false;
        };
        !inputs.is_empty()
            && inputs.iter().all(|(path, hash)| {
                hash.as_str().is_some_and(|hash| {
                    file_hash(&self.app_dir.join(path)).as_deref() == Some(hash)
                })
            })
    }

    /// Runs esbuild into `tmp` and records the hashes of its inputs there.
    fn compile(&self, tmp: &Path, output: &Path, format: Format) -> Result<(), String> {
        std::fs::create_dir_all(tmp).map_err(|e| format!("creating {}: {e}", tmp.display()))?;
        let metafile = tmp.join("meta.json");
        let mut args = vec![
            self.source.display().to_string(),
            "--bundle".to_owned(),
            "--platform=node".to_owned(),
            format!("--target={}", self.target),
            format!(
                "--format={}",
                match format {
                    Format::CommonJs => "cjs",
                    Format::Esm => "esm",
                }
            ),
            format!("--outfile={}", tmp.join(output).display()),
            format!("--metafile={}", metafile.display()),
            "--log-level=error".to_owned(),
            "--color=false".to_owned(),
            "--external:aws-sdk".to_owned(),
            "--external:@aws-sdk/*".to_owned(),
        ];
        match self.opts.sourcemap {
            SourceMap::Linked => args.push("--sourcemap=linked".to_owned()),
            SourceMap::Inline => args.push("--sourcemap=inline".to_owned()),
            SourceMap::Off => {}
        }
        if !self.opts.bundle_packages {
            args.push("--packages=external".to_owned());
        }
        args.extend(self.opts.external.iter().map(|e| format!("--external:{e}")));
        if self.opts.minify {
            args.push("--minify".to_owned());
        }
        if self.opts.keep_names {
            args.push("--keep-names".to_owned());
        }
        let out = crate::spawn::run_tool(self.esbuild, &args, self.app_dir)
            .map_err(|e| format!("cannot run {}: {e}", self.esbuild.display()))?;
        if !out.status.success() {
            return Err(esbuild_errors(&String::from_utf8_lossy(&out.stderr)));
        }
        let meta = std::fs::read_to_string(&metafile)
            .map_err(|e| format!("reading esbuild's metafile {}: {e}", metafile.display()))?;
        let meta: serde_json::Value = serde_json::from_str(&meta)
            .map_err(|e| format!("esbuild's metafile is not JSON: {e}"))?;
        let mut inputs = serde_json::Map::new();
        if let Some(list) = meta["inputs"].as_object() {
            for path in list.keys() {
                if let Some(hash) = file_hash(&self.app_dir.join(path)) {
                    inputs.insert(path.clone(), serde_json::Value::String(hash));
                }
            }
        }
        let _ = std::fs::remove_file(&metafile);
        std::fs::write(
            tmp.join(INPUTS_FILE),
            serde_json::Value::Object(inputs).to_string(),
        )
        .map_err(|e| format!("writing {}: {e}", tmp.join(INPUTS_FILE).display()))
    }

    /// The `node_modules` folders from the source's folder up to (not including) the app
    /// folder, nearest first: the compiled file lives in `.nimbus/build/`, from where
    /// Node's own lookup reaches only the app folder's `node_modules`, so packages left
    /// outside the output are looked up in these too. None for a handler whose folders
    /// have none, so its cold start registers no resolve hook.
    fn module_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = Vec::new();
        let mut dir = self.source.parent();
        while let Some(d) = dir {
            if d.as_os_str().is_empty() {
                break;
            }
            let candidate = self.app_dir.join(d).join("node_modules");
            if candidate.is_dir() {
                dirs.push(candidate);
            }
            dir = d.parent();
        }
        dirs
    }
}

/// esbuild's error report, as `file:line:column: message` lines joined with "; ".
fn esbuild_errors(stderr: &str) -> String {
    // esbuild prints each error as "✘ [ERROR] message", a blank line, then
    // "    file:line:column:" and the offending line.
    let mut errors = Vec::new();
    let lines: Vec<&str> = stderr.lines().collect();
    for (idx, line) in lines.iter().enumerate() {
        let Some(message) = line.trim_start().strip_prefix("✘ [ERROR] ") else {
            continue;
        };
        let location = lines[idx + 1..]
            .iter()
            .take_while(|l| !l.trim_start().starts_with('✘'))
            .map(|l| l.trim())
            .find(|l| !l.is_empty())
            .and_then(|l| l.strip_suffix(':'))
            .filter(|l| l.contains(':'));
        match location {
            Some(location) => errors.push(format!("{location}: {}", message.trim())),
            None => errors.push(message.trim().to_owned()),
        }
    }
    if errors.is_empty() {
        let text = stderr.trim();
        return if text.is_empty() {
            "esbuild failed without saying why".to_owned()
        } else {
            text.to_owned()
        };
    }
    errors.join("; ")
}

/// A string or a list of strings, as a list; `None` for anything else.
fn string_list(value: &serde_json::Value) -> Option<Vec<String>> {
    match value {
        serde_json::Value::String(s) => Some(vec![s.clone()]),
        serde_json::Value::Array(items) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned))
            .collect(),
        _ => None,
    }
}

/// Whether the nearest package.json above `source`, up to the app folder, says
/// `"type": "module"`.
fn package_type_is_module(app_dir: &Path, source: &Path) -> bool {
    let mut dir = source.parent();
    while let Some(d) = dir {
        if let Ok(text) = std::fs::read_to_string(app_dir.join(d).join("package.json")) {
            return serde_json::from_str::<serde_json::Value>(&text)
                .is_ok_and(|doc| doc["type"] == "module");
        }
        dir = d.parent();
    }
    false
}

fn file_hash(path: &Path) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    Some(hex(&sha2::Sha256::digest(&bytes)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A number unique within this process, for temporary folder names.
fn unique() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_esbuild_options_nimbus_uses() {
        let custom = serde_json::json!({ "esbuild": {
            "bundle": true, "external": ["pg-native"], "exclude": ["sharp"], "target": "node18",
            "sourcemap": "inline", "plugins": "./plugins.js", "minify": "yes",
        }});
        let (opts, warnings) = EsbuildOptions::from_custom(Some(&custom));
        assert!(opts.bundle_packages);
        assert_eq!(opts.external, ["sharp", "pg-native"]);
        assert_eq!(opts.target.as_deref(), Some("node18"));
        assert_eq!(opts.sourcemap, SourceMap::Inline);
        assert_eq!(
            warnings,
            [
                "custom.esbuild.minify must be true or false; ignored",
                "custom.esbuild: nimbus uses bundle, external, exclude, target, sourcemap, format, packages, minify, keepNames and ignores plugins",
            ]
        );
    }

    #[test]
    fn leaves_packages_outside_the_output_without_custom_esbuild() {
        let (opts, warnings) = EsbuildOptions::from_custom(None);
        assert!(!opts.bundle_packages);
        assert_eq!(opts.sourcemap, SourceMap::Linked);
        assert!(warnings.is_empty());
        let custom = serde_json::json!({ "esbuild": { "packages": "external" } });
        assert!(!EsbuildOptions::from_custom(Some(&custom)).0.bundle_packages);
    }

    #[test]
    fn names_file_line_and_column_of_each_esbuild_error() {
        let stderr = "✘ [ERROR] Expected \";\" but found \"world\"\n\n    src/handler.ts:3:14:\n      3 │   const hello world = 1;\n        │               ^\n        ╵               ;\n\n✘ [ERROR] Could not resolve \"./missing\"\n\n    src/handler.ts:1:18:\n      1 │ import x from './missing';\n\n2 errors\n";
        assert_eq!(
            esbuild_errors(stderr),
            "src/handler.ts:3:14: Expected \";\" but found \"world\"; src/handler.ts:1:18: Could not resolve \"./missing\""
        );
        assert_eq!(esbuild_errors("boom\n"), "boom");
    }
}
