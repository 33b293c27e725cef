//! The one place nimbus starts and signals processes.

use std::collections::HashMap;
use std::io::Write as _;
use std::os::fd::{AsRawFd, FromRawFd as _, OwnedFd, RawFd};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Mutex, OnceLock};

use crate::sandbox::{self, Confinement, Setup, Start, View};

/// A process to start: program, arguments, working directory, the full environment, and
/// the sandbox view it runs in.
pub(crate) struct ProcessSpec<'a> {
    pub(crate) program: &'a Path,
    pub(crate) args: Vec<String>,
    pub(crate) cwd: &'a Path,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) view: View,
    pub(crate) stdin: StdinMode,
}

/// What an instance's standard input is.
pub(crate) enum StdinMode {
    /// Nothing: a Lambda instance takes its invocations from the Runtime API.
    Null,
    /// A pipe nimbus writes to: the Workers host takes its invocations from it.
    Piped,
}

/// Starts an instance process in a process group of its own, so that stopping it also
/// stops anything it started, with piped stdout/stderr and a clean environment. When the
/// sandbox is on, the forked child enters the instance's cgroup and sets its rlimits,
/// then either sets up the sandbox itself and execs the runtime (as root) or execs
/// bubblewrap, which starts the runtime inside the view.
pub(crate) fn spawn_instance(
    spec: ProcessSpec<'_>,
    confinement: &Confinement,
) -> std::io::Result<tokio::process::Child> {
    let sandboxed =
        spec.view
            .sandbox
            .command(&spec.view, confinement.uid(), spec.program, &spec.args)?;
    let is_sandboxed = sandboxed.is_some();
    // The seccomp filters go to bubblewrap on pipes it reads before starting the runtime;
    // their read ends stay open here until the child has them.
    let seccomp = match (&sandboxed, sandbox::seccomp::programs()) {
        (Some(Start::Bubblewrap { .. }), Ok(programs)) => seccomp_pipes(programs)?,
        _ => Vec::new(),
    };
    let seccomp_fds: Vec<RawFd> = seccomp.iter().map(AsRawFd::as_raw_fd).collect();
    let (mut cmd, setup) = match sandboxed {
        Some(Start::Bubblewrap { program, args }) => {
            let mut cmd = tokio::process::Command::new(program);
            for fd in &seccomp_fds {
                cmd.arg("--add-seccomp-fd").arg(fd.to_string());
            }
            cmd.args(args);
            (cmd, None)
        }
        Some(Start::Direct(setup)) => {
            // The child chdirs into the view's app folder itself, once it is `/`.
            let mut cmd = tokio::process::Command::new(spec.program);
            cmd.args(&spec.args);
            (cmd, Some(setup))
        }
        None => {
            let mut cmd = tokio::process::Command::new(spec.program);
            cmd.args(&spec.args).current_dir(spec.cwd);
            (cmd, None)
        }
    };
    // Functions see only the Lambda environment, never the host's secrets; PATH and
    // LANG are kept so interpreters and custom runtimes find their tools.
    cmd.env_clear().envs(
        std::env::vars_os()
            .filter(|(k, _)| k == "PATH" || k == "LANG" || k == "HOME")
            .collect::<Vec<_>>(),
    );
    if is_sandboxed {
        // The host's home is not in the view; /tmp is the one writable folder.
        cmd.env("HOME", "/tmp");
    }
    let stdin = match spec.stdin {
        StdinMode::Null => Stdio::null(),
        StdinMode::Piped => Stdio::piped(),
    };
    cmd.envs(spec.env)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // A process group of its own, so that stopping it also stops anything it started.
    // Not a session of its own: the scheduler's autogroups would then treat it as a
    // separate desktop session, which (measured) triples the tail latency of a warm
    // invocation under load; the sandbox keeps the terminal out instead.
    cmd.process_group(0);
    if is_sandboxed {
        let rlimits = rlimits(confinement, spec.view.tmp_bytes());
        // Open here, close-on-exec: the child writes itself into each before it execs.
        let cgroup_procs = confinement.cgroup_procs()?;
        let cgroup_fds: Vec<RawFd> = cgroup_procs.iter().map(AsRawFd::as_raw_fd).collect();
        // SAFETY: the closure runs in the forked child before exec and calls only
        // write(2), setrlimit(2), fcntl(2) and the system calls of `Setup::apply`, which
        // are async-signal-safe, on values computed before the fork; it allocates
        // nothing.
        unsafe {
            cmd.pre_exec(move || {
                // `0` is the writer itself: the child enters the instance's cgroup, and
                // so does everything it starts.
                for &fd in &cgroup_fds {
                    if libc::write(fd, b"0".as_ptr().cast(), 1) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                // The pipes were made close-on-exec, so no other child inherits them;
                // bubblewrap must.
                for &fd in &seccomp_fds {
                    if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                for &(resource, limit) in &rlimits {
                    let limit = libc::rlimit {
                        rlim_cur: limit,
                        rlim_max: limit,
                    };
                    if libc::setrlimit(resource, &limit) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                match &setup {
                    Some(setup) => setup.apply(),
                    None => Ok(()),
                }
            });
        }
        let child = cmd.spawn().map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("starting the instance in its sandbox: {e}"),
            )
        });
        drop((seccomp, cgroup_procs));
        return child;
    }
    cmd.spawn()
}

/// A pipe per seccomp program, holding it whole (a few hundred bytes, well within a
/// pipe's buffer), its write end closed: the read ends, close-on-exec.
fn seccomp_pipes(programs: &sandbox::seccomp::Programs) -> std::io::Result<Vec<OwnedFd>> {
    let mut read_ends = Vec::new();
    for program in [&programs.refused, &programs.clone3] {
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two descriptors into the array it is given.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both are open descriptors that nothing else owns.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        std::fs::File::from(write).write_all(program)?;
        read_ends.push(read);
    }
    Ok(read_ends)
}

/// The rlimits of a sandboxed instance: no core files; files no larger than its /tmp
/// (and a little more, so a function filling /tmp sees ENOSPC rather than SIGXFSZ);
/// without a cgroup, private writable memory (RLIMIT_DATA, which counts anonymous
/// mappings too) at twice the memory size, so a runaway allocation fails in the function
/// while the resident-memory watch stops what stays under it (with a cgroup, the kernel
/// bounds the instance's memory and the watch stops it as Lambda does); and, when the
/// instance has a uid of its own, Lambda's 1024 processes and threads.
fn rlimits(
    confinement: &Confinement,
    tmp_bytes: u64,
) -> Vec<(libc::__rlimit_resource_t, libc::rlim_t)> {
    let mut rlimits = vec![
        (libc::RLIMIT_CORE, 0),
        (libc::RLIMIT_FSIZE, tmp_bytes + 1024 * 1024),
    ];
    if !confinement.has_cgroup() {
        let data = (u64::from(confinement.memory_mb()) * 2 * 1024 * 1024).max(256 * 1024 * 1024);
        rlimits.push((libc::RLIMIT_DATA, data));
    }
    if confinement.uid().is_some() {
        rlimits.push((libc::RLIMIT_NPROC, sandbox::MAX_PROCESSES));
    }
    rlimits
}

/// Kills every process of `uid`, wherever it is: what an instance left behind in a
/// session or group of its own. A child switches to the uid and signals everything it
/// may signal (kill(2) with -1 spares the caller), then exits.
pub(crate) fn kill_uid(uid: u32) {
    let mut cmd = std::process::Command::new("/bin/true");
    cmd.uid(uid)
        .gid(uid)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: runs in the forked child after it switched to `uid`; kill(2) and _exit(2)
    // are async-signal-safe, and the child never returns to Rust code.
    unsafe {
        cmd.pre_exec(|| {
            libc::kill(-1, libc::SIGKILL);
            libc::_exit(0)
        });
    }
    if let Ok(mut child) = cmd.spawn() {
        let _ = child.wait();
    }
}

/// Whether nimbus runs as root, and so may give instances uids of their own.
pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The path of `program` on nimbus's PATH, if it is there.
pub(crate) fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// Runs `program args` once in the sandbox `start` describes, to completion; its stderr
/// is the error.
pub(crate) fn run_probe(start: Start, program: &Path, args: &[String]) -> Result<(), String> {
    let output = run_sandboxed(start, program, args)
        .map_err(|e| format!("running {}: {e}", program.display()))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    Err(stderr
        .trim()
        .lines()
        .last()
        .unwrap_or("no output")
        .to_owned())
}

/// Runs `program args` in the sandbox `start` describes, without limits, and returns what
/// it printed.
pub(crate) fn run_sandboxed(
    start: Start,
    program: &Path,
    args: &[String],
) -> std::io::Result<std::process::Output> {
    let mut cmd = match start {
        Start::Bubblewrap { program, args } => {
            let mut cmd = std::process::Command::new(program);
            cmd.args(args);
            cmd
        }
        Start::Direct(setup) => {
            let mut cmd = std::process::Command::new(program);
            cmd.args(args);
            // SAFETY: as in `spawn_instance`: only the system calls of `Setup::apply`.
            unsafe {
                cmd.pre_exec(move || setup_apply(&setup));
            }
            cmd
        }
    };
    cmd.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .stdin(Stdio::null())
        .output()
}

/// `Setup::apply`, for a forked child.
fn setup_apply(setup: &Setup) -> std::io::Result<()> {
    // SAFETY: called only between fork and exec (`pre_exec` closures).
    unsafe { setup.apply() }
}

/// Sends SIGKILL to the process group led by `pid`.
pub(crate) fn kill_group(pid: u32) {
    // 0 (a child whose pid was never known) would address nimbus's own group.
    let Ok(pgid) = libc::pid_t::try_from(pid) else {
        return;
    };
    if pgid <= 0 {
        return;
    }
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

/// The most processes of one instance whose memory is added up; a tree this large is
/// already at its rlimits, and reading more would cost the watch too much.
const MAX_TREE: usize = 64;

/// Resident memory and its peak, in KiB, of a process and its descendants (bubblewrap,
/// the runtime, anything it started), from `/proc/<pid>/status` and the `children` of
/// each. Private memory (`RssAnon`, `RssShmem`) is added up; mapped files (binaries,
/// libraries), which processes share, count once, as the largest process maps them, much
/// as a cgroup charges a shared page once.
pub(crate) fn tree_memory_kib(pid: u32) -> Option<(u64, u64)> {
    let root = memory_kib(pid)?;
    let (mut private, mut file, mut peak) = (root.private, root.file, root.peak);
    let mut pending = children(pid);
    let mut n_seen = 1;
    while let Some(child) = pending.pop() {
        if n_seen >= MAX_TREE {
            break;
        }
        n_seen += 1;
        if let Some(memory) = memory_kib(child) {
            private += memory.private;
            file = file.max(memory.file);
            peak = peak.max(memory.peak);
        }
        pending.extend(children(child));
    }
    Some((private + file, peak))
}

/// The CPU time (user and system) of a process and its descendants, in milliseconds,
/// from the `utime` and `stime` fields of each `/proc/<pid>/stat`.
pub(crate) fn tree_cpu_ms(pid: u32) -> Option<u64> {
    // SAFETY: sysconf(3) only reads a constant of the system.
    let ticks_per_second = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
        .ok()
        .filter(|t| *t > 0)?;
    let cpu_ticks = |pid: u32| -> Option<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name may hold spaces and parentheses; the fields follow the last `)`.
        let rest = stat.get(stat.rfind(')')? + 1..)?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // `state` is field 3 of stat(5), so `utime` (14) and `stime` (15) are 11 and 12 here.
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        Some(utime + stime)
    };
    let mut total = cpu_ticks(pid)?;
    let mut pending = children(pid);
    let mut n_seen = 1;
    while let Some(child) = pending.pop() {
        if n_seen >= MAX_TREE {
            break;
        }
        n_seen += 1;
        total += cpu_ticks(child).unwrap_or(0);
        pending.extend(children(child));
    }
    Some(total * 1000 / ticks_per_second)
}

/// The children of a process's main thread.
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .map(|text| {
            text.split_whitespace()
                .filter_map(|pid| pid.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The resident memory of one process, in KiB.
struct Memory {
    private: u64,
    file: u64,
    peak: u64,
}

/// One process's memory from `/proc/<pid>/status`; kernels without the `Rss*` split count
/// all of `VmRSS` as private.
fn memory_kib(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    };
    let rss = field("VmRSS:")?;
    let peak = field("VmHWM:").unwrap_or(0);
    Some(
        match (field("RssAnon:"), field("RssFile:"), field("RssShmem:")) {
            (Some(anon), Some(file), Some(shmem)) => Memory {
                private: anon + shmem,
                file,
                peak,
            },
            _ => Memory {
                private: rss,
                file: 0,
                peak,
            },
        },
    )
}
