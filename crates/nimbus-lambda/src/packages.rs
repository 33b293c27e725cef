//! The packages Lambda's runtimes provide to functions that do not bundle them (the AWS
//! SDKs), and esbuild for TypeScript handlers, fetched once with npm and pip into a cache
//! that every app of the user shares.

use std::fmt;
use std::path::{Path, PathBuf};

/// The AWS SDK for JavaScript v3 packages nimbus provides, as Lambda's nodejs18.x and
/// later runtimes do; an `@aws-sdk/*` package outside this list must come from the
/// function's own `node_modules`.
pub const AWS_SDK_V3_PACKAGES: [&str; 13] = [
    "@aws-sdk/client-s3",
    "@aws-sdk/client-sqs",
    "@aws-sdk/client-sns",
    "@aws-sdk/client-lambda",
    "@aws-sdk/client-dynamodb",
    "@aws-sdk/lib-dynamodb",
    "@aws-sdk/client-sfn",
    "@aws-sdk/client-kinesis",
    "@aws-sdk/client-eventbridge",
    "@aws-sdk/client-ssm",
    "@aws-sdk/client-secrets-manager",
    "@aws-sdk/s3-request-presigner",
    "@aws-sdk/client-apigatewaymanagementapi",
];

/// The esbuild release TypeScript handlers are compiled with; pinned so that the same
/// source compiles to the same output on every machine.
const ESBUILD_VERSION: &str = "0.28.2";

/// One group of packages, installed together into a folder of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PackageSet {
    /// The `@aws-sdk/*` v3 clients in [`AWS_SDK_V3_PACKAGES`].
    AwsSdkV3,
    /// `aws-sdk`, the v2 SDK, which Lambda shipped up to nodejs16.x.
    AwsSdkV2,
    /// `boto3` and `botocore`, which every Python runtime of Lambda ships.
    Boto3,
    /// esbuild, which compiles TypeScript handlers.
    Esbuild,
}

/// The cache of package sets: one folder per set, complete or absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageCache {
    root: PathBuf,
}

/// What a set in the cache holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledSet {
    /// The set.
    pub set: PackageSet,
    /// Its folder in the cache.
    pub dir: PathBuf,
    /// `name version` of its main packages, as installed.
    pub versions: Vec<(String, String)>,
}

/// Fetching a set failed.
#[derive(Debug)]
pub struct InstallError {
    /// The set that could not be fetched.
    pub set: PackageSet,
    /// What failed, with the package client's own message, and what to do.
    pub message: String,
}

impl fmt::Display for InstallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "fetching {}: {}", self.set, self.message)
    }
}

impl std::error::Error for InstallError {}

impl fmt::Display for PackageSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PackageSet::AwsSdkV3 => "the AWS SDK for JavaScript v3 (@aws-sdk/*)",
            PackageSet::AwsSdkV2 => "the AWS SDK for JavaScript v2 (aws-sdk)",
            PackageSet::Boto3 => "the AWS SDK for Python (boto3)",
            PackageSet::Esbuild => "esbuild",
        })
    }
}

impl PackageSet {
    /// Every set, in the order `nimbus runtimes install` fetches them.
    pub const ALL: [PackageSet; 4] = [
        PackageSet::AwsSdkV3,
        PackageSet::AwsSdkV2,
        PackageSet::Boto3,
        PackageSet::Esbuild,
    ];

    /// The short name used on the command line and in folder names.
    pub fn id(self) -> &'static str {
        match self {
            PackageSet::AwsSdkV3 => "aws-sdk-v3",
            PackageSet::AwsSdkV2 => "aws-sdk-v2",
            PackageSet::Boto3 => "boto3",
            PackageSet::Esbuild => "esbuild",
        }
    }

    /// The set named `id` (see [`PackageSet::id`]).
    pub fn from_id(id: &str) -> Option<PackageSet> {
        PackageSet::ALL.into_iter().find(|set| set.id() == id)
    }

    fn client(self) -> Client {
        match self {
            PackageSet::Boto3 => Client::Pip,
            _ => Client::Npm,
        }
    }

    /// What the package client is asked to install.
    fn specs(self) -> Vec<String> {
        match self {
            // The v3 packages are not released at one version; each gets its newest.
            PackageSet::AwsSdkV3 => AWS_SDK_V3_PACKAGES.iter().map(|p| p.to_string()).collect(),
            PackageSet::AwsSdkV2 => vec!["aws-sdk@2".to_owned()],
            PackageSet::Boto3 => vec!["boto3".to_owned()],
            PackageSet::Esbuild => vec![format!("esbuild@{ESBUILD_VERSION}")],
        }
    }

    /// The packages whose versions are reported.
    fn reported(self) -> Vec<&'static str> {
        match self {
            PackageSet::AwsSdkV3 => AWS_SDK_V3_PACKAGES.to_vec(),
            PackageSet::AwsSdkV2 => vec!["aws-sdk"],
            PackageSet::Boto3 => vec!["boto3", "botocore"],
            PackageSet::Esbuild => vec!["esbuild"],
        }
    }
}

/// The package client that installs a set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Client {
    /// `npm install --prefix DIR`: the packages land in `DIR/node_modules`.
    Npm,
    /// `python3 -m pip install --target DIR`: the packages land in `DIR`.
    Pip,
}

impl PackageCache {
    /// The cache in `root`; the binary picks it (`NIMBUS_SDK_CACHE`, else the user's cache
    /// folder).
    pub fn new(root: PathBuf) -> PackageCache {
        PackageCache { root }
    }

    /// The cache folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The folder of `set`. Python packages are kept per Python minor version, since pip
    /// picks what it installs for the interpreter that runs it.
    pub fn dir(&self, set: PackageSet) -> PathBuf {
        match set.client() {
            Client::Npm => self.root.join("node").join(set.id()),
            Client::Pip => self.root.join(python_tag()).join(set.id()),
        }
    }

    /// Where the set's modules are found: the folder for `NODE_PATH` or `PYTHONPATH`.
    pub fn modules_dir(&self, set: PackageSet) -> PathBuf {
        match set.client() {
            Client::Npm => self.dir(set).join("node_modules"),
            Client::Pip => self.dir(set),
        }
    }

    /// Whether the set is in the cache. A set's folder appears whole, by a rename, once
    /// its install succeeded.
    pub fn is_installed(&self, set: PackageSet) -> bool {
        // The marker holds what was asked for: a set an older nimbus installed with fewer
        // packages is not this one.
        std::fs::read_to_string(self.dir(set).join(MARKER))
            .is_ok_and(|text| text == set.specs().join("\n"))
    }

    /// What the cache holds, set by set.
    pub fn installed(&self) -> Vec<InstalledSet> {
        PackageSet::ALL
            .into_iter()
            .filter(|set| self.is_installed(*set))
            .map(|set| InstalledSet {
                set,
                dir: self.dir(set),
                versions: set
                    .reported()
                    .into_iter()
                    .filter_map(|name| {
                        let version = self.version_of(set, name)?;
                        Some((name.to_owned(), version))
                    })
                    .collect(),
            })
            .collect()
    }

    /// The installed version of package `name` of `set`.
    pub(crate) fn version_of(&self, set: PackageSet, name: &str) -> Option<String> {
        let modules = self.modules_dir(set);
        match set.client() {
            Client::Npm => {
                let text = std::fs::read_to_string(modules.join(name).join("package.json")).ok()?;
                let doc: serde_json::Value = serde_json::from_str(&text).ok()?;
                doc["version"].as_str().map(str::to_owned)
            }
            // pip leaves a `NAME-VERSION.dist-info` folder beside each package.
            Client::Pip => std::fs::read_dir(&modules).ok()?.find_map(|entry| {
                let file_name = entry.ok()?.file_name();
                let rest = file_name
                    .to_str()?
                    .strip_suffix(".dist-info")?
                    .strip_prefix(name)?
                    .strip_prefix('-')?;
                Some(rest.to_owned())
            }),
        }
    }

    /// Fetches `set` into the cache unless it is there. Two processes may install at
    /// once: each installs into a temporary folder of its own and renames it into place,
    /// and a lock file makes the second wait for the first rather than fetch again.
    pub fn install(&self, set: PackageSet) -> Result<(), InstallError> {
        let marker = self.dir(set).join(MARKER);
        if marker.is_file() && !self.is_installed(set) {
            // Installed for another list of packages: installed again, and replaced.
            let _ = std::fs::remove_file(&marker);
        }
        install_atomically(&self.dir(set), &set.specs().join("\n"), |tmp| {
            run_client(set, tmp)
        })
        .map_err(|message| InstallError { set, message })
    }
}

/// The Python packages a `requirements.txt` names (serverless-python-requirements'
/// layout), installed with `pip install --target` into a folder of `root` named after
/// the interpreter and the file's content, so functions with the same file share it and
/// an edit installs afresh. `python` runs pip: the function's interpreter (`python3`, or
/// serverless-wsgi's `pythonBin`). Returns that folder, which goes first on `PYTHONPATH`.
pub fn install_requirements(
    requirements: &Path,
    root: &Path,
    python: &str,
) -> Result<PathBuf, String> {
    let dir = requirements_dir(requirements, root, python)?;
    let args = [
        "-m",
        "pip",
        "install",
        "--no-input",
        "--disable-pip-version-check",
        "--quiet",
        "--target",
    ];
    install_atomically(&dir, &requirements.display().to_string(), |tmp| {
        let mut args: Vec<String> = args.map(str::to_owned).to_vec();
        args.push(tmp.display().to_string());
        args.push("-r".to_owned());
        args.push(requirements.display().to_string());
        run_pip(
            python,
            &args,
            tmp,
            &format!("pip install -r {}", requirements.display()),
        )
    })?;
    Ok(dir)
}

/// The folder `install_requirements` installs `requirements` into, and whether it is
/// complete.
pub fn requirements_installed(requirements: &Path, root: &Path, python: &str) -> Option<PathBuf> {
    let dir = requirements_dir(requirements, root, python).ok()?;
    dir.join(MARKER).is_file().then_some(dir)
}

fn requirements_dir(requirements: &Path, root: &Path, python: &str) -> Result<PathBuf, String> {
    use sha2::Digest as _;
    let text = std::fs::read(requirements)
        .map_err(|e| format!("reading {}: {e}", requirements.display()))?;
    let digest = sha2::Sha256::digest(&text);
    let hash: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    Ok(root.join(format!("{}-{hash}", python_tag_of(python))))
}

/// Makes `dir` by running `install` into a temporary folder beside it and renaming that
/// into place with a marker holding `marker_text`; does nothing when `dir` is complete.
/// A lock file beside it makes a second process wait for the first.
fn install_atomically(
    dir: &Path,
    marker_text: &str,
    install: impl FnOnce(&Path) -> Result<(), String>,
) -> Result<(), String> {
    let complete = |dir: &Path| dir.join(MARKER).is_file();
    if complete(dir) {
        return Ok(());
    }
    let parent = dir
        .parent()
        .expect("an install folder has a parent")
        .to_path_buf();
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    std::fs::create_dir_all(&parent).map_err(|e| format!("creating {}: {e}", parent.display()))?;
    let _lock = FileLock::acquire(&parent.join(format!(".{name}.lock")));
    if complete(dir) {
        return Ok(());
    }
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| format!("creating {}: {e}", tmp.display()))?;
    let res = install(&tmp).and_then(|()| {
        std::fs::write(tmp.join(MARKER), marker_text)
            .map_err(|e| format!("writing {}: {e}", tmp.join(MARKER).display()))?;
        // A folder left by an install that stopped halfway has no marker; it goes.
        if dir.exists() && !complete(dir) {
            let _ = std::fs::remove_dir_all(dir);
        }
        match std::fs::rename(&tmp, dir) {
            Ok(()) => Ok(()),
            // Another process renamed its copy into place first: use that one.
            Err(_) if complete(dir) => Ok(()),
            Err(e) => Err(format!("moving {} into place: {e}", dir.display())),
        }
    });
    let _ = std::fs::remove_dir_all(&tmp);
    res
}

/// The file a complete set's folder holds: the specs it was installed from.
const MARKER: &str = ".nimbus-packages";

/// `python3.N` for the `python3` that runs functions, or `python3` when it cannot say.
fn python_tag() -> String {
    python_tag_of("python3")
}

/// `python3.12` for the interpreter `python` runs, or `python3` when it cannot say.
fn python_tag_of(python: &str) -> String {
    crate::spawn::interpreter_version(python)
        .and_then(|version| {
            let mut parts = version.trim_start_matches("Python ").split('.');
            let major = parts.next()?;
            let minor = parts.next()?;
            Some(format!("python{major}.{minor}"))
        })
        .unwrap_or_else(|| "python3".to_owned())
}

/// Runs the package client of `set` to install it into `dir`.
fn run_client(set: PackageSet, dir: &Path) -> Result<(), String> {
    let (program, mut args, what) = match set.client() {
        Client::Npm => (
            PathBuf::from("npm"),
            [
                "install",
                "--prefix",
                &dir.display().to_string(),
                "--no-save",
                "--no-package-lock",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
            ]
            .map(str::to_owned)
            .to_vec(),
            "npm install",
        ),
        Client::Pip => (
            crate::spawn::interpreter("python3"),
            [
                "-m",
                "pip",
                "install",
                "--target",
                &dir.display().to_string(),
                "--no-input",
                "--disable-pip-version-check",
                "--quiet",
            ]
            .map(str::to_owned)
            .to_vec(),
            "pip install",
        ),
    };
    args.extend(set.specs());
    let what = format!("{what} {}", set.specs().join(" "));
    let needed = match set.client() {
        Client::Npm => "install Node.js with npm",
        Client::Pip => "install Python 3 with pip",
    };
    run_reporting(
        &program,
        &args,
        dir,
        &what,
        needed,
        "nimbus runtimes install",
    )
}

/// Runs pip with `args` in `cwd`; `what` is the command as the user would type it.
fn run_pip(python: &str, args: &[String], cwd: &Path, what: &str) -> Result<(), String> {
    let python = crate::spawn::interpreter(python);
    run_reporting(
        &python,
        args,
        cwd,
        what,
        "install Python 3 with pip",
        "nimbus up",
    )
}

/// Runs a package client; on failure, says what it said went wrong, and that `retry` is
/// the command to run once the registry is reachable.
fn run_reporting(
    program: &Path,
    args: &[String],
    cwd: &Path,
    what: &str,
    needed: &str,
    retry: &str,
) -> Result<(), String> {
    let output = match crate::spawn::run_tool(program, args, cwd) {
        Ok(output) => output,
        Err(e) => {
            return Err(format!(
                "cannot run {}: {e}; {needed}, then run `{retry}`",
                program.display()
            ));
        }
    };
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let said = client_message(if stderr.trim().is_empty() {
        &stdout
    } else {
        &stderr
    });
    Err(format!(
        "`{what}` failed ({}): {said}; run `{retry}` when the registry is reachable",
        output.status
    ))
}

/// The lines of a package client's output that say what went wrong: npm's `code` and
/// the error itself (not its stack trace or the pointer to its log), pip's `ERROR:`
/// lines; else its last lines.
fn client_message(text: &str) -> String {
    let telling: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| {
            l.starts_with("npm error code")
                || l.starts_with("npm ERR! code")
                || l.contains("Error: ")
                || l.starts_with("ERROR:")
                || l.starts_with("npm error 404")
        })
        .take(4)
        .collect();
    if telling.is_empty() {
        return last_lines(text, 6);
    }
    telling.join(" | ")
}

/// The last `n` non-empty lines of `text`, joined with " | ".
fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// An exclusive `flock(2)` on a file, released when dropped; best effort (a cache on a
/// file system without locks still works, through the rename).
struct FileLock {
    file: Option<std::fs::File>,
}

impl FileLock {
    fn acquire(path: &Path) -> FileLock {
        use std::os::fd::AsRawFd as _;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .ok();
        if let Some(file) = &file {
            // SAFETY: flock(2) on a descriptor this struct owns; no memory is shared.
            unsafe {
                libc::flock(file.as_raw_fd(), libc::LOCK_EX);
            }
        }
        FileLock { file }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd as _;
        if let Some(file) = &self.file {
            // SAFETY: as in `acquire`.
            unsafe {
                libc::flock(file.as_raw_fd(), libc::LOCK_UN);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_round_trip_through_their_ids() {
        for set in PackageSet::ALL {
            assert_eq!(PackageSet::from_id(set.id()), Some(set));
        }
        assert_eq!(PackageSet::from_id("left-pad"), None);
    }

    #[test]
    fn keeps_what_npm_and_pip_say_went_wrong() {
        let npm = "npm error code ECONNREFUSED\nnpm error syscall connect\nnpm error FetchError: request to http://127.0.0.1:9/esbuild failed, reason: connect ECONNREFUSED 127.0.0.1:9\nnpm error     at ClientRequest.<anonymous> (index.js:130:14)\nnpm error A complete log of this run can be found in: /x.log\n";
        assert_eq!(
            client_message(npm),
            "npm error code ECONNREFUSED | npm error FetchError: request to http://127.0.0.1:9/esbuild failed, reason: connect ECONNREFUSED 127.0.0.1:9"
        );
        let pip = "WARNING: Retrying...\nERROR: Could not find a version that satisfies the requirement boto3 (from versions: none)\nERROR: No matching distribution found for boto3\n";
        assert_eq!(
            client_message(pip),
            "ERROR: Could not find a version that satisfies the requirement boto3 (from versions: none) | ERROR: No matching distribution found for boto3"
        );
        assert_eq!(client_message("a\nb\n"), "a | b");
    }

    #[test]
    fn keeps_the_last_lines_of_a_client_message() {
        assert_eq!(last_lines("a\n\n b \nc\n", 2), "b | c");
        assert_eq!(last_lines("", 3), "");
    }
}
