//! Which runtime-provided packages an app's code imports: a scan of its source for
//! `@aws-sdk/*`, `aws-sdk` and `boto3` imports that its own packages do not satisfy.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use nimbus_core::{FunctionSpec, Runtime};

use crate::packages::{AWS_SDK_V3_PACKAGES, PackageCache, PackageSet};

/// What the source of an app imports from the packages Lambda provides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProvidedImports {
    /// Each import the app's own packages do not satisfy, in file order.
    pub uses: Vec<ImportUse>,
}

/// One file importing one provided package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportUse {
    /// The importing file, relative to the app folder.
    pub file: PathBuf,
    /// The package, for example `@aws-sdk/client-s3`, `aws-sdk` or `boto3`.
    pub package: String,
    /// The set that provides it; `None` for an `@aws-sdk/*` package outside the list.
    pub set: Option<PackageSet>,
}

/// Bounds of the scan, so an app folder holding far more than code (a data set, a
/// vendored tree) does not slow every load.
const MAX_FILES: usize = 20_000;
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Scans the code of an app whose functions are `specs` for imports of provided
/// packages: JavaScript and TypeScript files when it has Node.js functions, Python files
/// when it has Python functions. `node_modules`, hidden folders and `__pycache__` are
/// skipped; an import is left out when a `node_modules` folder between the file and the
/// app folder (or, for Python, the app folder itself) has the package, since the
/// function's own copy wins, as on Lambda.
pub fn scan_imports(app_dir: &Path, specs: &[FunctionSpec]) -> ProvidedImports {
    let node = specs
        .iter()
        .any(|s| matches!(s.runtime, Runtime::Node { .. }));
    let python = specs
        .iter()
        .any(|s| matches!(s.runtime, Runtime::Python { .. }));
    let mut uses = Vec::new();
    if !node && !python {
        return ProvidedImports { uses };
    }
    let mut n_files = 0;
    let mut pending = vec![app_dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let path = entry.path();
            let Ok(file_type) = entry.file_type() else {
                continue;
            };
            if file_type.is_dir() {
                if !is_installed_packages(&name, &path) {
                    pending.push(path);
                }
                continue;
            }
            if !file_type.is_file() {
                continue;
            }
            let ext = name.rsplit_once('.').map(|(_, ext)| ext).unwrap_or("");
            let language = match ext {
                "js" | "mjs" | "cjs" | "ts" | "mts" | "cts" | "tsx" | "jsx" if node => {
                    Language::JavaScript
                }
                "py" if python => Language::Python,
                _ => continue,
            };
            n_files += 1;
            if n_files > MAX_FILES {
                tracing::debug!(
                    "stopped scanning {} for AWS SDK imports after {MAX_FILES} files",
                    app_dir.display()
                );
                return ProvidedImports { uses };
            }
            if entry.metadata().map_or(true, |m| m.len() > MAX_FILE_BYTES) {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let relative = path.strip_prefix(app_dir).unwrap_or(&path).to_path_buf();
            let packages = match language {
                Language::JavaScript => javascript_imports(&text),
                Language::Python => python_imports(&text),
            };
            for package in packages {
                if has_own_copy(app_dir, &relative, language, &package) {
                    continue;
                }
                let set = provider(&package);
                uses.push(ImportUse {
                    file: relative.clone(),
                    package,
                    set,
                });
            }
        }
    }
    ProvidedImports { uses }
}

impl ProvidedImports {
    /// The sets the app needs from the cache.
    pub fn sets(&self) -> BTreeSet<PackageSet> {
        self.uses.iter().filter_map(|u| u.set).collect()
    }

    /// Warnings about imports that run here but differ from Lambda or from what nimbus
    /// provides: `aws-sdk` (v2) on runtimes whose Lambda counterpart lacks it, and
    /// `@aws-sdk/*` packages outside the provided list that the cache does not hold
    /// either. `specs` are the app's functions, `cache` the cache after installing.
    pub fn warnings(&self, specs: &[FunctionSpec], cache: &PackageCache) -> Vec<String> {
        let mut warnings = Vec::new();
        // Lambda's Node.js runtimes ship v2 up to nodejs16.x and v3 from nodejs18.x.
        let mut without_v2: Vec<String> = specs
            .iter()
            .filter_map(|s| match s.runtime {
                Runtime::Node { major } if major >= 18 => Some(s.runtime.to_string()),
                _ => None,
            })
            .collect();
        without_v2.sort();
        without_v2.dedup();
        let v2_files = self.files_of(|u| u.set == Some(PackageSet::AwsSdkV2));
        if !without_v2.is_empty() && !v2_files.is_empty() {
            warnings.push(format!(
                "{} require{} `aws-sdk` (the v2 SDK), which Lambda's {} runtime{} do{} not provide: nimbus provides it here, but on Lambda bundle it with the function or move to the v3 clients (@aws-sdk/*)",
                v2_files.join(", "),
                if v2_files.len() == 1 { "s" } else { "" },
                without_v2.join(", "),
                if without_v2.len() == 1 { "" } else { "s" },
                if without_v2.len() == 1 { "es" } else { "" },
            ));
        }
        let v3_modules = cache.modules_dir(PackageSet::AwsSdkV3);
        let mut seen = BTreeSet::new();
        for import in &self.uses {
            if import.set.is_some()
                || import.package.starts_with("@aws-sdk/")
                    && v3_modules.join(&import.package).is_dir()
                || !seen.insert(import.package.as_str())
            {
                continue;
            }
            let files = self.files_of(|u| u.package == import.package);
            warnings.push(format!(
                "{} import{} {}, which is not among the AWS SDK v3 packages nimbus provides ({}): add it to the app's package.json and run `npm install`",
                files.join(", "),
                if files.len() == 1 { "s" } else { "" },
                import.package,
                AWS_SDK_V3_PACKAGES
                    .iter()
                    .map(|p| p.trim_start_matches("@aws-sdk/"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ));
        }
        warnings
    }

    fn files_of(&self, filter: impl Fn(&ImportUse) -> bool) -> Vec<String> {
        let files: BTreeSet<String> = self
            .uses
            .iter()
            .filter(|u| filter(u))
            .map(|u| u.file.display().to_string())
            .collect();
        files.into_iter().collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Language {
    JavaScript,
    Python,
}

/// Whether a folder holds installed packages or tool state rather than the app's code:
/// hidden folders (`.nimbus`, `.git`, `.venv`), `node_modules`, `__pycache__`,
/// `site-packages`, and virtual environments (a `pyvenv.cfg` inside).
fn is_installed_packages(name: &str, path: &Path) -> bool {
    name.starts_with('.')
        || matches!(
            name,
            "node_modules" | "__pycache__" | "site-packages" | "dist-packages"
        )
        || path.join("pyvenv.cfg").is_file()
}

/// The set providing `package`, if nimbus provides it.
fn provider(package: &str) -> Option<PackageSet> {
    match package {
        "aws-sdk" => Some(PackageSet::AwsSdkV2),
        "boto3" | "botocore" => Some(PackageSet::Boto3),
        _ if AWS_SDK_V3_PACKAGES.contains(&package) => Some(PackageSet::AwsSdkV3),
        _ => None,
    }
}

/// Whether the function's own packages hold `package` for `file`: a `node_modules`
/// folder in the file's folder or one above it, up to the app folder, or for Python a
/// package folder at the app's root (the first entry of `sys.path`).
fn has_own_copy(app_dir: &Path, file: &Path, language: Language, package: &str) -> bool {
    match language {
        Language::JavaScript => {
            let mut dir = file.parent();
            while let Some(d) = dir {
                if app_dir
                    .join(d)
                    .join("node_modules")
                    .join(package)
                    .join("package.json")
                    .is_file()
                {
                    return true;
                }
                dir = d.parent();
            }
            false
        }
        Language::Python => app_dir.join(package).join("__init__.py").is_file(),
    }
}

/// The provided packages a JavaScript or TypeScript file names in a string: `aws-sdk`
/// (also `aws-sdk/clients/s3`) and `@aws-sdk/NAME`, each once. A mention in a comment
/// counts too, which at worst fetches a package that is not used.
fn javascript_imports(text: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let bytes = text.as_bytes();
    let mut idx = 0;
    while let Some(pos) = text[idx..].find("aws-sdk") {
        let start = idx + pos;
        idx = start + "aws-sdk".len();
        let scoped = start >= 1 && bytes[start - 1] == b'@';
        let quote_at = if scoped {
            start.checked_sub(2)
        } else {
            start.checked_sub(1)
        };
        let Some(quote_at) = quote_at else { continue };
        if !matches!(bytes[quote_at], b'\'' | b'"' | b'`') {
            continue;
        }
        let package = if scoped {
            if bytes.get(idx) != Some(&b'/') {
                continue;
            }
            let name: String = text[idx + 1..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                .collect();
            if name.is_empty() {
                continue;
            }
            format!("@aws-sdk/{name}")
        } else {
            if !matches!(bytes.get(idx), Some(b'\'' | b'"' | b'`' | b'/')) {
                continue;
            }
            "aws-sdk".to_owned()
        };
        if !found.contains(&package) {
            found.push(package);
        }
    }
    found
}

/// The provided packages a Python file imports: `import boto3`, `import os, boto3`,
/// `from boto3.session import Session`, and the same for `botocore`, each once.
fn python_imports(text: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    for line in text.lines() {
        let line = line.trim_start();
        let modules: Vec<&str> = if let Some(rest) = line.strip_prefix("import ") {
            rest.split(',')
                .map(|m| m.split_whitespace().next().unwrap_or(""))
                .collect()
        } else if let Some(rest) = line.strip_prefix("from ") {
            rest.split_whitespace().next().into_iter().collect()
        } else {
            continue;
        };
        for module in modules {
            let top = module.split('.').next().unwrap_or("");
            if matches!(top, "boto3" | "botocore") && !found.iter().any(|f| f == top) {
                found.push(top.to_owned());
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_sdk_packages_named_in_javascript_strings() {
        let check = |text: &str, expect: &[&str]| assert_eq!(javascript_imports(text), expect);
        check(
            "import { S3Client } from '@aws-sdk/client-s3';",
            &["@aws-sdk/client-s3"],
        );
        check(
            "const { DynamoDBDocumentClient } = require(\"@aws-sdk/lib-dynamodb\");\nimport '@aws-sdk/lib-dynamodb'",
            &["@aws-sdk/lib-dynamodb"],
        );
        check("const AWS = require('aws-sdk');", &["aws-sdk"]);
        check("const S3 = require('aws-sdk/clients/s3');", &["aws-sdk"]);
        check(
            "const x = await import(`@aws-sdk/client-sqs`)",
            &["@aws-sdk/client-sqs"],
        );
        check("// uses my-aws-sdk-wrapper\nrequire('my-aws-sdk')", &[]);
        check("require('aws-sdk-mock')", &[]);
        check("'@aws-sdk'", &[]);
    }

    #[test]
    fn finds_boto3_and_botocore_imports_in_python() {
        let check = |text: &str, expect: &[&str]| assert_eq!(python_imports(text), expect);
        check("import boto3\n", &["boto3"]);
        check("import os, boto3 as b\n", &["boto3"]);
        check(
            "    from botocore.exceptions import ClientError\n",
            &["botocore"],
        );
        check(
            "from boto3.session import Session\nimport boto3\n",
            &["boto3"],
        );
        check("import boto3_helpers\n# import boto3 is in a comment", &[]);
    }
}
