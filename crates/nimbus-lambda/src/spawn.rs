//! The one place nimbus starts and signals processes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Mutex, OnceLock};

/// A process to start: program, arguments, working directory and the full environment.
pub(crate) struct ProcessSpec<'a> {
    pub(crate) program: &'a Path,
    pub(crate) args: Vec<String>,
    pub(crate) cwd: &'a Path,
    pub(crate) env: Vec<(String, String)>,
}

/// Starts an instance process in a process group of its own, so that stopping it also
/// stops anything it started, with piped stdout/stderr and a clean environment.
pub(crate) fn spawn_instance(spec: ProcessSpec<'_>) -> std::io::Result<tokio::process::Child> {
    let mut cmd = tokio::process::Command::new(spec.program);
    cmd.args(&spec.args)
        .current_dir(spec.cwd)
        // Functions see only the Lambda environment, never the host's secrets; PATH and
        // LANG are kept so interpreters and custom runtimes find their tools.
        .env_clear()
        .envs(
            std::env::vars_os()
                .filter(|(k, _)| k == "PATH" || k == "LANG" || k == "HOME")
                .collect::<Vec<_>>(),
        )
        .envs(spec.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    cmd.spawn()
}

/// Sends SIGKILL to the process group led by `pid`.
pub(crate) fn kill_group(pid: u32) {
    let Ok(pgid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) takes plain integers and has no memory-safety preconditions; a
    // negative pid addresses the process group created by `process_group(0)` above.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

/// The interpreter's real executable, found once per process: `python3` and `node` on
/// PATH are often version-manager shims (pyenv, nvm) that cost hundreds of milliseconds
/// per start, which every cold start would pay.
pub(crate) fn interpreter(program: &str) -> PathBuf {
    static RESOLVED: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let cache = RESOLVED.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(path) = cache.lock().ok().and_then(|c| c.get(program).cloned()) {
        return path;
    }
    let script = match program {
        "node" => ["-e", "process.stdout.write(process.execPath)"],
        _ => ["-c", "import sys; sys.stdout.write(sys.executable)"],
    };
    let resolved = std::process::Command::new(program)
        .args(script)
        .stdin(Stdio::null())
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        .filter(|path| path.is_file())
        .unwrap_or_else(|| PathBuf::from(program));
    if let Ok(mut cache) = cache.lock() {
        cache.insert(program.to_owned(), resolved.clone());
    }
    resolved
}

/// Runs a tool to completion (a package client such as `npm` or `pip`, or `esbuild`) in
/// `cwd` and returns what it printed. Unlike instances, tools see the whole environment of
/// nimbus: package clients read their registry, proxy and certificate settings from it.
pub(crate) fn run_tool(
    program: &Path,
    args: &[String],
    cwd: &Path,
) -> std::io::Result<std::process::Output> {
    std::process::Command::new(program)
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
}

/// `<program> --version`, trimmed, or `None` when the program cannot be run; asked once
/// per process.
pub(crate) fn interpreter_version(program: &str) -> Option<String> {
    static VERSIONS: OnceLock<Mutex<HashMap<String, Option<String>>>> = OnceLock::new();
    let cache = VERSIONS.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(version) = cache.lock().ok().and_then(|c| c.get(program).cloned()) {
        return version;
    }
    let version = ask_version(program);
    if let Ok(mut cache) = cache.lock() {
        cache.insert(program.to_owned(), version.clone());
    }
    version
}

fn ask_version(program: &str) -> Option<String> {
    let output = std::process::Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    // Python 3 before 3.4 printed its version to stderr; take whichever has text.
    let text = if output.stdout.is_empty() {
        output.stderr
    } else {
        output.stdout
    };
    Some(String::from_utf8_lossy(&text).trim().to_owned())
}

/// Resident set size and its peak of a process, in KiB, from `/proc/<pid>/status`.
pub(crate) fn memory_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:").unwrap_or(0)))
}
