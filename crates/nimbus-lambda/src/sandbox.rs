//! The sandbox of process functions: what an instance sees, which user it runs as, and
//! its limits, applied before any of the function's code runs.
//!
//! As root (nimbus's usual way to run in containers and CI), every instance gets a uid
//! of its own from a range, so an instance cannot signal, trace or read the environment
//! of nimbus or of another instance, and the Runtime API can tell its instance's
//! connections from anyone else's by the uid owning the socket. The forked child mounts
//! the view in namespaces of its own and switches to that uid itself (`setup`), so the
//! runtime is the one program a cold start runs.
//! Not as root, bubblewrap puts each instance in a user and a pid namespace of its own
//! instead: it runs under nimbus's uid, so the Runtime API cannot tell callers apart.
//!
//! The view (`View`) is built of read-only binds: the system's `/usr` and the few files
//! of `/etc` programs need, the interpreter's installation, the app folder's entries
//! except `.nimbus/` and `.git/`, and the folders nimbus prepared for the function
//! (bootstraps, compiled TypeScript, installed requirements, the package cache); `/tmp`
//! is a tmpfs of its own capped at the function's ephemeral storage.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use nimbus_core::FunctionSpec;

use crate::LambdaConfig;
use crate::code::Code;

mod cgroup;
mod peer;
pub(crate) mod seccomp;
mod setup;

pub(crate) use peer::socket_owner;
use setup::Mount;
pub(crate) use setup::Setup;

/// How the operator wants process functions isolated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxMode {
    /// Sandbox every instance with what the machine offers, and say what it lacks.
    Auto,
    /// Run instances as plain child processes of nimbus, as before the sandbox existed.
    Off,
}

/// The uids instances get when nimbus runs as root, one per live instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UidRange {
    first: u32,
    last: u32,
}

/// What the operator chose, before the machine is asked what it can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SandboxSettings {
    pub mode: SandboxMode,
    pub uids: UidRange,
}

/// The sandbox in force for this process, probed once (`Sandbox::probe`) and shared by
/// every function of every app.
pub struct Sandbox {
    kind: Kind,
    uids: UidRange,
    /// The next uid to try, so a uid given back is the last to be taken again.
    next_uid: Mutex<u32>,
    /// Where instances get cgroups of their own, when the machine lets nimbus make them.
    cgroups: Option<cgroup::Cgroups>,
    /// Each thing the machine does not let nimbus enforce, in a few words.
    not_enforced: Vec<String>,
}

/// What one instance holds of the sandbox while it lives: a uid of its own (as root) and
/// a cgroup (where the machine lets nimbus make one). Made before its process starts
/// (`Sandbox::confine`), handed to the spawner (`spawn::spawn_instance`), and given back
/// once the process has ended (`Confinement::end`).
pub(crate) struct Confinement {
    lease: Option<UidLease>,
    cgroup: Option<cgroup::InstanceCgroup>,
    memory_mb: u32,
}

/// A uid lent to one instance: an exclusive lock on its file in the lock folder, which
/// every nimbus process on the host shares, so two never hand out the same uid. The file
/// holds a mark while the uid may have processes; `release` removes it once they are
/// gone. A file left behind (its holder died) still has the mark, and whoever takes that
/// uid next kills what is left first.
pub(crate) struct UidLease {
    pub(crate) uid: u32,
    file: std::fs::File,
    path: PathBuf,
}

/// What one instance may see and use: built by the pool from its function's code.
pub(crate) struct View {
    pub(crate) sandbox: Arc<Sandbox>,
    app_dir: PathBuf,
    /// Folders and files outside the app folder's entries the instance reads.
    read_only: Vec<PathBuf>,
    /// The size of its `/tmp`.
    tmp_bytes: u64,
}

enum Kind {
    /// No sandbox; the reason says why, for `describe`.
    Off(String),
    /// nimbus is root: the forked child mounts the view under `root` and drops to the
    /// instance's uid itself (`setup`).
    Root {
        root: PathBuf,
        system: Vec<SystemPath>,
        /// The shared folder of uid lock files.
        uid_dir: PathBuf,
    },
    /// nimbus is not root: a user and pid namespace per instance, under nimbus's uid.
    User {
        bwrap: PathBuf,
        system: Vec<SystemPath>,
    },
}

/// One top-level system path as the host has it: merged-/usr systems have `/bin` and
/// `/lib` as links into `/usr`, others as folders.
#[derive(Debug, Clone)]
enum SystemPath {
    Folder(PathBuf),
    Link {
        path: PathBuf,
        target: PathBuf,
    },
    /// A copy of `ETC_PATHS` made at start-up, bound as `/etc` in one mount.
    Etc(PathBuf),
}

/// Where uid lock files live: root's, like the uids.
const UID_LOCK_DIR: &str = "/run/nimbus/uids";

/// Where a nimbus process running as root keeps its copy of `ETC_PATHS`, in a folder
/// named after its pid.
const ETC_COPY_DIR: &str = "/run/nimbus/etc";

/// Lambda's limit on processes and threads of one execution environment.
pub(crate) const MAX_PROCESSES: u64 = 1024;

/// Top-level folders of the system every runtime needs, read-only.
const SYSTEM_PATHS: [&str; 5] = ["/usr", "/bin", "/sbin", "/lib", "/lib64"];

/// Files and folders of `/etc` that programs read to link, resolve names, check TLS
/// certificates and know the time zone; nothing else of `/etc` (no `shadow`, no host
/// configuration) is in the view.
const ETC_PATHS: [&str; 20] = [
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "ssl",
    "ca-certificates",
    "ca-certificates.conf",
    "pki",
    "resolv.conf",
    "hosts",
    "host.conf",
    "nsswitch.conf",
    "gai.conf",
    "services",
    "protocols",
    "localtime",
    "passwd",
    "group",
    "alternatives",
    "mime.types",
    "os-release",
];

impl UidRange {
    /// 200000-265535: far above the uids distributions hand out to people and services,
    /// and the 65536 of one subordinate range.
    pub const DEFAULT: UidRange = UidRange {
        first: 200_000,
        last: 265_535,
    };

    /// Parses `FIRST-LAST` (inclusive); uid 0 and ranges of fewer than 16 uids are refused.
    pub fn parse(text: &str) -> Result<UidRange, String> {
        let (first, last) = text
            .split_once('-')
            .ok_or_else(|| format!("`{text}` is not a uid range like 200000-265535"))?;
        let parse = |s: &str| {
            s.trim()
                .parse::<u32>()
                .map_err(|_| format!("`{s}` in `{text}` is not a uid"))
        };
        let (first, last) = (parse(first)?, parse(last)?);
        if first == 0 || last < first.saturating_add(15) || last == u32::MAX {
            return Err(format!(
                "`{text}` must be at least 16 uids above 0, such as 200000-265535"
            ));
        }
        Ok(UidRange { first, last })
    }
}

impl std::fmt::Display for UidRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

impl Sandbox {
    /// Finds out what this machine lets nimbus enforce: whether bubblewrap is installed
    /// and can make namespaces here (it is run once), whether nimbus is root, and whether
    /// cgroup v2 controllers are delegated.
    pub fn probe(settings: SandboxSettings) -> Arc<Sandbox> {
        let (kind, mut not_enforced) = match settings.mode {
            SandboxMode::Off => (
                Kind::Off("turned off by the operator".to_owned()),
                vec!["the function sandbox (turned off): functions run as nimbus's user and read what it can".to_owned()],
            ),
            SandboxMode::Auto => probe_namespaces(settings.uids),
        };
        let mut cgroups = None;
        if !matches!(kind, Kind::Off(_)) {
            match cgroup::Cgroups::set_up() {
                Ok((set_up, missing)) => {
                    not_enforced.extend(missing);
                    cgroups = Some(set_up);
                }
                Err(reason) => not_enforced.push(format!(
                    "cgroup limits ({reason}): memory is watched by sampling and capped by RLIMIT_DATA, processes by RLIMIT_NPROC (only with a uid per instance), CPU not at all"
                )),
            }
            if let Err(e) = seccomp::programs() {
                not_enforced.push(format!("the seccomp filter ({e})"));
            }
        }
        let mut sandbox = Sandbox::new(kind, settings.uids, not_enforced);
        if let Some(inner) = Arc::get_mut(&mut sandbox) {
            inner.cgroups = cgroups;
        }
        sandbox
    }

    fn new(kind: Kind, uids: UidRange, not_enforced: Vec<String>) -> Arc<Sandbox> {
        // Processes start at different places in the range, so they seldom try the
        // same uids.
        let offset = std::process::id() % (uids.last - uids.first + 1);
        Arc::new(Sandbox {
            kind,
            uids,
            next_uid: Mutex::new(uids.first + offset),
            cgroups: None,
            not_enforced,
        })
    }

    /// One line saying the isolation in force, for `nimbus validate` and `nimbus up`.
    pub fn describe(&self) -> String {
        let limits = match (&self.cgroups, &self.kind) {
            (Some(cgroups), _) => format!(
                "limits ({}): memory memorySize + /tmp, {MAX_PROCESSES} processes, CPU weight by memorySize; resident memory over memorySize stopped",
                cgroups.describe()
            ),
            (None, Kind::Root { .. }) => format!(
                "limits (rlimits): {MAX_PROCESSES} processes, data 2x memorySize; resident memory over memorySize stopped"
            ),
            (None, _) => {
                "limits (rlimits): data 2x memorySize; resident memory over memorySize stopped"
                    .to_owned()
            }
        };
        match &self.kind {
            Kind::Off(reason) => format!(
                "none ({reason}): functions run as nimbus's user with the app folder as working directory"
            ),
            Kind::Root { .. } => format!(
                "namespaces, a uid per instance from {}, code read-only, no .nimbus/, a private /tmp (ephemeralStorageSize, 512 MB by default), Runtime API for its own instance only, a seccomp filter; {limits}",
                self.uids
            ),
            Kind::User { .. } => format!(
                "bubblewrap, a user and pid namespace per instance (nimbus's uid), code read-only, no .nimbus/, a private /tmp (ephemeralStorageSize, 512 MB by default), a seccomp filter; {limits}"
            ),
        }
    }

    /// The one warning naming what this machine does not let nimbus enforce, if any.
    pub fn warning(&self) -> Option<String> {
        if self.not_enforced.is_empty() {
            return None;
        }
        Some(format!(
            "function isolation: not enforced on this machine: {}",
            self.not_enforced.join("; ")
        ))
    }

    /// Whether instances are sandboxed at all.
    pub fn is_enabled(&self) -> bool {
        !matches!(self.kind, Kind::Off(_))
    }

    /// What a new instance of a function with `memory_mb` and a `/tmp` of `tmp_bytes`
    /// holds while it lives: its uid and its cgroup, as this machine allows. An error
    /// when every uid of the range is in use or the cgroup cannot be made.
    pub(crate) fn confine(&self, memory_mb: u32, tmp_bytes: u64) -> std::io::Result<Confinement> {
        let lease = self.lease()?;
        let cgroup = match &self.cgroups {
            Some(cgroups) if self.is_enabled() => Some(cgroups.create(cgroup::CgroupLimits {
                memory_bytes: (u64::from(memory_mb) * 1024 * 1024).saturating_add(tmp_bytes),
                // A little above RLIMIT_NPROC's, which fails a fork at its start: the
                // kernel checks pids.max only after copying the parent's memory map,
                // which makes each refused fork of a large runtime cost milliseconds.
                max_processes: MAX_PROCESSES + 64,
                memory_mb,
            })?),
            _ => None,
        };
        Ok(Confinement {
            lease,
            cgroup,
            memory_mb,
        })
    }

    /// A uid for a new instance when each gets its own (nimbus is root), else `None`; an
    /// error when every uid of the range is in use.
    fn lease(&self) -> std::io::Result<Option<UidLease>> {
        let Kind::Root { uid_dir, .. } = &self.kind else {
            return Ok(None);
        };
        let mut next_uid = self
            .next_uid
            .lock()
            .map_err(|_| std::io::Error::other("the uid cursor is poisoned"))?;
        let n_uids = u64::from(self.uids.last - self.uids.first) + 1;
        for _ in 0..n_uids {
            let uid = *next_uid;
            *next_uid = if uid >= self.uids.last {
                self.uids.first
            } else {
                uid + 1
            };
            if let Some(lease) = UidLease::take(uid_dir, uid)? {
                return Ok(Some(lease));
            }
        }
        Err(std::io::Error::other(format!(
            "every uid of the sandbox range {} is in use by an instance",
            self.uids
        )))
    }

    /// How `program args` starts inside the sandbox, or `None` when the sandbox is off.
    /// `uid` is the instance's lease under `Kind::Root`.
    pub(crate) fn command(
        &self,
        view: &View,
        uid: Option<u32>,
        program: &Path,
        args: &[String],
    ) -> std::io::Result<Option<Start>> {
        command(&self.kind, view, uid, program, args)
    }
}

/// How an instance's process starts in its sandbox.
pub(crate) enum Start {
    /// bubblewrap (`program`) with these arguments, which starts the runtime in the view.
    Bubblewrap {
        program: PathBuf,
        args: Vec<OsString>,
    },
    /// The runtime itself, its sandbox set up by the forked child before exec.
    Direct(Setup),
}

/// `Sandbox::command` for a sandbox of this kind.
fn command(
    kind: &Kind,
    view: &View,
    uid: Option<u32>,
    program: &Path,
    args: &[String],
) -> std::io::Result<Option<Start>> {
    match (kind, uid) {
        (Kind::Off(_), _) => Ok(None),
        (Kind::Root { system, root, .. }, Some(uid)) => {
            let mut mounts = vec![Mount::HostProc, Mount::Dev];
            mounts.extend(view_mounts(system, view, program));
            let filters = match seccomp::programs() {
                Ok(programs) => vec![programs.refused.as_slice(), programs.clone3.as_slice()],
                Err(_) => Vec::new(),
            };
            let setup = Setup::new(root, &mounts, &view.app_dir, uid, filters)?;
            Ok(Some(Start::Direct(setup)))
        }
        (Kind::Root { .. }, None) => Err(std::io::Error::other(
            "a sandboxed instance of a root nimbus has no uid of its own",
        )),
        (Kind::User { bwrap, system }, _) => Ok(Some(Start::Bubblewrap {
            program: bwrap.clone(),
            args: bubblewrap_args(system, view, program, args),
        })),
    }
}

/// bubblewrap's command line for an instance of a nimbus that is not root: a user and pid
/// namespace of its own, then the view.
fn bubblewrap_args(
    system: &[SystemPath],
    view: &View,
    program: &Path,
    args: &[String],
) -> Vec<OsString> {
    let mut cmd = Args::default();
    cmd.flag("--die-with-parent");
    cmd.flag("--unshare-ipc");
    cmd.flag("--unshare-uts");
    cmd.flag("--unshare-cgroup-try");
    // Under nimbus's own uid, only a pid namespace keeps the function from signalling or
    // tracing nimbus and the other instances.
    cmd.flag("--unshare-user");
    cmd.flag("--disable-userns");
    cmd.flag("--unshare-pid");
    cmd.flag("--proc");
    cmd.path("/proc");
    cmd.flag("--dev");
    cmd.path("/dev");
    // The instance shares nimbus's session, and so its controlling terminal when an
    // operator runs `nimbus up` in one; /dev/tty is the one way to open it (TIOCSTI
    // could type into the operator's shell), so it is /dev/null here.
    cmd.flag("--dev-bind");
    cmd.path("/dev/null");
    cmd.path("/dev/tty");
    for mount in view_mounts(system, view, program) {
        match mount {
            Mount::Dir(path) => cmd.dir(&path),
            Mount::ReadOnly {
                source,
                target,
                required,
            } => {
                if let Some(parent) = target.parent() {
                    cmd.dir(parent);
                }
                cmd.flag(if required {
                    "--ro-bind"
                } else {
                    "--ro-bind-try"
                });
                cmd.path(&source);
                cmd.path(&target);
                if source != target {
                    // The /etc copy: a folder of its own, not to be made again.
                    cmd.1.insert(target);
                }
            }
            Mount::Symlink { target, link } => {
                cmd.flag("--symlink");
                cmd.path(&target);
                cmd.path(&link);
            }
            Mount::Tmpfs { path, mode, size } => {
                cmd.perms(&format!("{mode:04o}"));
                cmd.flag("--size");
                cmd.flag(&size.to_string());
                cmd.flag("--tmpfs");
                cmd.path(&path);
                cmd.1.insert(path);
            }
            Mount::Dev | Mount::HostProc => {}
        }
    }
    cmd.flag("--chdir");
    cmd.path(&view.app_dir);
    cmd.flag("--");
    cmd.path(program);
    for arg in args {
        cmd.flag(arg);
    }
    cmd.0
}

/// What an instance sees besides `/proc` and `/dev`, in mount order: the system's
/// folders, `/etc`'s few files, its `/tmp`, the interpreter's installation, the app
/// folder's entries but `.nimbus/` and `.git/`, and the folders nimbus prepared for it.
fn view_mounts(system: &[SystemPath], view: &View, program: &Path) -> Vec<Mount> {
    let mut mounts = Vec::new();
    let read_only = |path: &Path, required: bool| Mount::ReadOnly {
        source: path.to_owned(),
        target: path.to_owned(),
        required,
    };
    let mut etc_copied = false;
    for path in system {
        match path {
            SystemPath::Folder(path) => mounts.push(read_only(path, true)),
            SystemPath::Link { path, target } => mounts.push(Mount::Symlink {
                target: target.clone(),
                link: path.clone(),
            }),
            SystemPath::Etc(copy) => {
                // One mount instead of one per file: each costs a few hundred
                // microseconds of every cold start.
                mounts.push(Mount::ReadOnly {
                    source: copy.clone(),
                    target: PathBuf::from("/etc"),
                    required: true,
                });
                etc_copied = true;
            }
        }
    }
    if !etc_copied {
        mounts.push(Mount::Dir(PathBuf::from("/etc")));
        for name in ETC_PATHS {
            let path = Path::new("/etc").join(name);
            // As in the copy (`copy_etc`): a link into the system's folders stays a link.
            match std::fs::read_link(&path) {
                Ok(target) if is_system(&in_etc(&target)) => {
                    mounts.push(Mount::Symlink { target, link: path })
                }
                _ => mounts.push(read_only(&path, false)),
            }
        }
    }
    // A /tmp of its own, writable by any uid and capped like Lambda's ephemeral storage.
    mounts.push(Mount::Tmpfs {
        path: PathBuf::from("/tmp"),
        mode: 0o1777,
        size: view.tmp_bytes,
    });
    for path in interpreter_paths(program) {
        mounts.push(read_only(&path, true));
    }
    // The app folder's own mode may keep other uids out (a 0700 temp folder); the
    // instance sees it as a fresh 0755 folder holding its entries.
    mounts.push(Mount::Dir(view.app_dir.clone()));
    if let Ok(entries) = std::fs::read_dir(&view.app_dir) {
        let mut names: Vec<OsString> = entries.flatten().map(|e| e.file_name()).collect();
        names.sort();
        for name in names {
            // The state folder holds the database, the secrets key and every other
            // function's data; `.git` is never part of a deployment.
            if name == ".nimbus" || name == ".git" {
                continue;
            }
            mounts.push(read_only(&view.app_dir.join(name), true));
        }
    }
    for path in &view.read_only {
        mounts.push(read_only(path, false));
    }
    mounts
}

impl UidLease {
    /// Locks `uid`'s file, unless another instance (of any nimbus process) holds it.
    fn take(uid_dir: &Path, uid: u32) -> std::io::Result<Option<UidLease>> {
        use std::io::{Read as _, Seek as _, Write as _};
        let path = uid_dir.join(uid.to_string());
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
        // The holder before us removes the file before it unlocks it: a lock taken on a
        // removed file (opened just before) is no lease, as someone else may lock the
        // new file at that path.
        if !is_same_file(&file, &path) {
            return Ok(None);
        }
        let mut mark = Vec::new();
        file.read_to_end(&mut mark)?;
        if !mark.is_empty() {
            // Its last holder died before cleaning up: what it left must not share the
            // uid with a new instance.
            crate::spawn::kill_uid(uid);
        }
        file.rewind()?;
        file.write_all(b"in use")?;
        Ok(Some(UidLease { uid, file, path }))
    }

    /// Removes the file, mark and all, once no process of the uid is left; dropping the
    /// lease then unlocks it.
    pub(crate) fn release(self) {
        let _ = std::fs::remove_file(&self.path);
        // Unlocked only now, once the file is gone (see `take`).
        drop(self.file);
    }
}

/// Whether `path` is still the file `file` was opened from.
fn is_same_file(file: &std::fs::File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(open), Ok(named)) => open.dev() == named.dev() && open.ino() == named.ino(),
        _ => false,
    }
}

/// Removes the lock files of uids no instance holds and whose processes are gone (files
/// without a mark: older nimbus versions kept one per uid ever lent).
fn remove_free_uid_files(uid_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(uid_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(file) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
        else {
            continue;
        };
        if file.try_lock().is_ok()
            && is_same_file(&file, &path)
            && file.metadata().is_ok_and(|meta| meta.len() == 0)
        {
            let _ = std::fs::remove_file(&path);
        }
    }
}

impl Confinement {
    /// The instance's own uid, when it has one.
    pub(crate) fn uid(&self) -> Option<u32> {
        self.lease.as_ref().map(|lease| lease.uid)
    }

    /// The function's `memorySize`.
    pub(crate) fn memory_mb(&self) -> u32 {
        self.memory_mb
    }

    /// Whether the kernel limits the instance's memory (its cgroup), so rlimits need not.
    pub(crate) fn has_cgroup(&self) -> bool {
        self.cgroup.is_some()
    }

    /// The instance's cgroup's files its process enters through (one per hierarchy), open
    /// for writing.
    pub(crate) fn cgroup_procs(&self) -> std::io::Result<Vec<std::os::fd::OwnedFd>> {
        self.cgroup
            .as_ref()
            .map_or_else(|| Ok(Vec::new()), cgroup::InstanceCgroup::procs_files)
    }

    /// Once the instance's process (`pid`) has ended: stops whatever it left (its process
    /// group, its cgroup, every process of its uid), gives the uid and the cgroup back,
    /// and says whether the kernel's OOM killer stopped it.
    pub(crate) async fn end(self, pid: u32) -> bool {
        crate::spawn::kill_group(pid);
        let oom_killed = self
            .cgroup
            .as_ref()
            .is_some_and(cgroup::InstanceCgroup::oom_killed);
        let Confinement { lease, cgroup, .. } = self;
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(cgroup) = cgroup {
                cgroup.remove();
            }
            // Only once nothing of the uid is left may another instance have it.
            if let Some(lease) = lease {
                crate::spawn::kill_uid(lease.uid);
                lease.release();
            }
        })
        .await;
        oom_killed
    }
}

impl View {
    /// The view of an instance of `spec`, whose code is `code`, in the app `cfg` describes.
    pub(crate) fn new(cfg: &LambdaConfig, code: &Code, spec: &FunctionSpec) -> View {
        let mut read_only = vec![cfg.runtime_dir.clone()];
        match code {
            Code::NodeBuilt {
                built, module_dirs, ..
            } => {
                if let Some(dir) = built.parent() {
                    read_only.push(dir.to_owned());
                }
                read_only.extend(module_dirs.iter().cloned());
            }
            Code::Python {
                dependencies: Some(dependencies),
                ..
            } => read_only.push(dependencies.clone()),
            Code::Provided(bootstrap) if !bootstrap.starts_with(&cfg.app_dir) => {
                read_only.push(bootstrap.clone());
            }
            _ => {}
        }
        read_only.extend(cfg.packages.node.iter().cloned());
        read_only.extend(cfg.packages.python.iter().cloned());
        View {
            sandbox: cfg.sandbox.clone(),
            app_dir: cfg.app_dir.clone(),
            read_only,
            tmp_bytes: u64::from(spec.ephemeral_storage_mb) * 1024 * 1024,
        }
    }

    /// The view of a Workers host: the app folder and the runtime folder (the host and
    /// the service client), with `spec`'s `/tmp`.
    pub(crate) fn for_worker(cfg: &LambdaConfig, spec: &FunctionSpec) -> View {
        View {
            sandbox: cfg.sandbox.clone(),
            app_dir: cfg.app_dir.clone(),
            read_only: vec![cfg.runtime_dir.clone()],
            tmp_bytes: u64::from(spec.ephemeral_storage_mb) * 1024 * 1024,
        }
    }

    /// The size of the instance's `/tmp`, in bytes.
    pub(crate) fn tmp_bytes(&self) -> u64 {
        self.tmp_bytes
    }
}

/// bubblewrap's command line, built flag by flag, with the folders it was told to make.
#[derive(Default)]
struct Args(Vec<OsString>, BTreeSet<PathBuf>);

impl Args {
    fn flag(&mut self, flag: &str) {
        self.0.push(flag.into());
    }

    fn path(&mut self, path: impl AsRef<Path>) {
        self.0.push(path.as_ref().as_os_str().to_owned());
    }

    /// `--dir PATH` with mode 0755, once per path, ancestors first: bubblewrap would make
    /// missing ancestors 0700, which only root could pass.
    fn dir(&mut self, path: &Path) {
        if path.parent().is_none() || self.1.contains(path) {
            return;
        }
        if let Some(parent) = path.parent() {
            self.dir(parent);
        }
        self.1.insert(path.to_owned());
        self.perms("0755");
        self.flag("--dir");
        self.path(path);
    }

    /// The mode of the next folder or tmpfs bubblewrap creates.
    fn perms(&mut self, mode: &str) {
        self.flag("--perms");
        self.flag(mode);
    }
}

/// The installation an interpreter outside the system folders needs (pyenv, nvm, a
/// virtualenv): the folder above its `bin/`, for the path as given and as resolved.
/// A folder too close to `/` (`/root`, `/opt`) is never bound whole; only the program.
fn interpreter_paths(program: &Path) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    let resolved = std::fs::canonicalize(program).ok();
    for program in std::iter::once(program.to_owned()).chain(resolved) {
        if !program.is_absolute() || is_system(&program) {
            continue;
        }
        let prefix = program
            .parent()
            .filter(|bin| bin.file_name().is_some_and(|n| n == "bin"))
            .and_then(Path::parent)
            .filter(|prefix| prefix.components().count() >= 4);
        let path = prefix.map_or_else(|| program.clone(), Path::to_owned);
        if !paths.contains(&path) {
            paths.push(path);
        }
    }
    paths
}

fn is_system(path: &Path) -> bool {
    SYSTEM_PATHS.iter().any(|system| path.starts_with(system))
}

/// The top-level system paths of this host, as folders or links.
fn system_paths() -> Vec<SystemPath> {
    SYSTEM_PATHS
        .iter()
        .filter_map(|path| {
            let path = PathBuf::from(path);
            let meta = std::fs::symlink_metadata(&path).ok()?;
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).ok()?;
                Some(SystemPath::Link { path, target })
            } else if meta.is_dir() {
                Some(SystemPath::Folder(path))
            } else {
                None
            }
        })
        .collect()
}

/// Copies `ETC_PATHS` into `ETC_COPY_DIR/<pid>` (links inside folders kept as links,
/// modes kept), after removing the copies of nimbus processes that are gone. A copy is
/// as fresh as the process: a changed `resolv.conf` reaches functions at the next start.
fn copy_etc() -> std::io::Result<PathBuf> {
    let root = Path::new(ETC_COPY_DIR);
    create_private_dir(root)?;
    for entry in std::fs::read_dir(root)?.flatten() {
        let name = entry.file_name();
        let alive = name
            .to_str()
            .and_then(|pid| pid.parse::<u32>().ok())
            .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if !alive {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    let copy = root.join(std::process::id().to_string());
    if copy.exists() {
        std::fs::remove_dir_all(&copy)?;
    }
    create_dir(&copy)?;
    copy_etc_entries(Path::new("/etc"), &copy)?;
    Ok(copy)
}

/// Copies the `ETC_PATHS` entries of `etc` into the folder `copy`, which the view binds
/// as `/etc`.
fn copy_etc_entries(etc: &Path, copy: &Path) -> std::io::Result<()> {
    for name in ETC_PATHS {
        let source = etc.join(name);
        // A link into the system's folders stays a link, which the view resolves as the
        // host does: programs read the time zone's name from where `localtime` points
        // (Node's ICU, given a plain file, compares it with every file of
        // /usr/share/zoneinfo instead: ~1,400 opens, 9 ms of a cold start).
        if let Ok(target) = std::fs::read_link(&source)
            && is_system(&in_etc(&target))
        {
            std::os::unix::fs::symlink(&target, copy.join(name))?;
            continue;
        }
        let Ok(meta) = std::fs::metadata(&source) else {
            continue;
        };
        if meta.is_dir() {
            copy_tree(&source, &copy.join(name), 0)?;
        } else if meta.is_file() {
            std::fs::copy(&source, copy.join(name))?;
        }
    }
    Ok(())
}

/// Where a link in `/etc` with this target points, `..` folded away (`/etc` itself is no
/// link, so folding by the text is exact).
fn in_etc(target: &Path) -> PathBuf {
    let mut path = PathBuf::from("/etc");
    for part in target.components() {
        match part {
            std::path::Component::RootDir => path = PathBuf::from("/"),
            std::path::Component::ParentDir => {
                path.pop();
            }
            std::path::Component::Normal(name) => path.push(name),
            std::path::Component::CurDir | std::path::Component::Prefix(_) => {}
        }
    }
    path
}

/// Copies a folder of `/etc` (certificates, alternatives): files, folders and links as
/// they are, at most a few levels deep.
fn copy_tree(source: &Path, target: &Path, depth: usize) -> std::io::Result<()> {
    if depth > 4 {
        return Ok(());
    }
    create_dir(target)?;
    for entry in std::fs::read_dir(source)?.flatten() {
        let file_type = entry.file_type()?;
        let to = target.join(entry.file_name());
        if file_type.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path())?, &to)?;
        } else if file_type.is_dir() {
            copy_tree(&entry.path(), &to, depth + 1)?;
        } else if file_type.is_file() {
            std::fs::copy(entry.path(), &to)?;
        }
    }
    Ok(())
}

/// Makes a folder every uid may enter and read.
fn create_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new().mode(0o755).create(dir)
}

/// Which sandbox this machine allows, and what it lacks.
fn probe_namespaces(uids: UidRange) -> (Kind, Vec<String>) {
    let mut system = system_paths();
    let kind = if crate::spawn::is_root() {
        // Only root's copy is safe: one in a shared temp folder could be planted by
        // another user. Without it, /etc's files are bound one by one.
        if let Ok(copy) = copy_etc() {
            system.push(SystemPath::Etc(copy));
        }
        let uid_dir = PathBuf::from(UID_LOCK_DIR);
        let root = PathBuf::from(setup::ROOT_DIR);
        for dir in [&uid_dir, &root] {
            if let Err(e) = create_private_dir(dir) {
                return (
                    Kind::Off(format!("{} cannot be made: {e}", dir.display())),
                    vec![format!(
                        "the function sandbox ({} cannot be made: {e}); functions run as root",
                        dir.display()
                    )],
                );
            }
        }
        remove_free_uid_files(&uid_dir);
        Kind::Root {
            root,
            system,
            uid_dir,
        }
    } else {
        let Some(bwrap) = crate::spawn::find_program("bwrap") else {
            return (
                Kind::Off("bubblewrap is not installed".to_owned()),
                vec!["the function sandbox (bubblewrap `bwrap` is not installed: apt-get install bubblewrap; or run nimbus as root); functions run as nimbus's user and read what it can".to_owned()],
            );
        };
        Kind::User { bwrap, system }
    };
    let mut not_enforced = Vec::new();
    if let Kind::User { .. } = kind {
        not_enforced.push(
            "a uid per instance (nimbus is not root), so an instance could reach another's Runtime API port".to_owned(),
        );
    }
    // Try the real thing once: a container may forbid the namespaces the sandbox needs.
    let view = View {
        sandbox: Sandbox::new(Kind::Off(String::new()), uids, Vec::new()),
        // Not a real folder: the view holds nothing of the host but the system.
        app_dir: PathBuf::from("/nimbus-sandbox-probe"),
        read_only: Vec::new(),
        tmp_bytes: 1024 * 1024,
    };
    let program = Path::new("/bin/sh");
    let args = ["-c".to_owned(), "exit 0".to_owned()];
    let probed = match command(&kind, &view, Some(uids.first), program, &args) {
        Ok(Some(start)) => crate::spawn::run_probe(start, program, &args),
        Ok(None) => return (kind, not_enforced),
        Err(e) => Err(e.to_string()),
    };
    match probed {
        Ok(()) => (kind, not_enforced),
        Err(detail) => (
            Kind::Off(format!("the sandbox cannot be set up here: {detail}")),
            vec![format!(
                "the function sandbox (its namespaces cannot be made here: {detail}); functions run as nimbus's user and read what it can"
            )],
        ),
    }
}

/// Makes `dir` and its parents, readable by root alone.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_ranges_parse_and_refuse_root_and_tiny_ranges() {
        assert_eq!(UidRange::parse("200000-265535"), Ok(UidRange::DEFAULT));
        assert!(UidRange::parse("0-100").is_err());
        assert!(UidRange::parse("1000-1001").is_err());
        assert!(UidRange::parse("abc").is_err());
        assert!(UidRange::parse("5-x").is_err());
    }

    #[test]
    fn interpreters_outside_the_system_bring_their_installation_only() {
        assert_eq!(
            interpreter_paths(Path::new("/usr/bin/node-does-not-exist")),
            Vec::<PathBuf>::new()
        );
        assert_eq!(
            interpreter_paths(Path::new("/root/.pyenv/versions/3.11.7/bin/python3-x")),
            vec![PathBuf::from("/root/.pyenv/versions/3.11.7")]
        );
        // Never a whole home folder.
        assert_eq!(
            interpreter_paths(Path::new("/root/bin/python3-x")),
            vec![PathBuf::from("/root/bin/python3-x")]
        );
    }

    /// An app folder with a handler, dependencies, a state folder and a `.git`.
    fn sample_app() -> tempfile::TempDir {
        let app = tempfile::tempdir().expect("temp dir");
        for dir in [".nimbus/runtime", ".git", "node_modules"] {
            std::fs::create_dir_all(app.path().join(dir)).expect("folder");
        }
        std::fs::write(app.path().join("handler.js"), "exports.handler = 1;\n").expect("file");
        std::fs::write(app.path().join(".nimbus/secrets.key"), "secret").expect("file");
        app
    }

    fn sample_view(app: &Path) -> View {
        View {
            sandbox: Sandbox::new(Kind::Off(String::new()), UidRange::DEFAULT, Vec::new()),
            app_dir: app.to_owned(),
            read_only: vec![app.join(".nimbus/runtime")],
            tmp_bytes: 512 * 1024 * 1024,
        }
    }

    #[test]
    fn the_view_binds_the_system_and_the_app_entries_read_only_and_leaves_out_the_state() {
        let app = sample_app();
        let system = vec![
            SystemPath::Folder(PathBuf::from("/usr")),
            SystemPath::Link {
                path: PathBuf::from("/bin"),
                target: PathBuf::from("usr/bin"),
            },
            SystemPath::Etc(PathBuf::from("/run/nimbus/etc/1")),
        ];
        let view = sample_view(app.path());
        let mounts = view_mounts(&system, &view, Path::new("/usr/bin/node"));
        let app_path = app.path().display().to_string();
        let listing = mounts
            .iter()
            .map(|mount| format!("{mount:?}").replace(&app_path, "APP"))
            .collect::<Vec<_>>()
            .join("\n");
        expect_test::expect![[r#"
            ReadOnly { source: "/usr", target: "/usr", required: true }
            Symlink { target: "usr/bin", link: "/bin" }
            ReadOnly { source: "/run/nimbus/etc/1", target: "/etc", required: true }
            Tmpfs { path: "/tmp", mode: 1023, size: 536870912 }
            Dir("APP")
            ReadOnly { source: "APP/handler.js", target: "APP/handler.js", required: true }
            ReadOnly { source: "APP/node_modules", target: "APP/node_modules", required: true }
            ReadOnly { source: "APP/.nimbus/runtime", target: "APP/.nimbus/runtime", required: false }"#]].assert_eq(&listing);
    }

    #[test]
    fn not_as_root_bubblewrap_gets_the_view_in_a_user_and_pid_namespace() {
        let app = sample_app();
        let kind = Kind::User {
            bwrap: PathBuf::from("/usr/bin/bwrap"),
            system: vec![
                SystemPath::Folder(PathBuf::from("/usr")),
                SystemPath::Link {
                    path: PathBuf::from("/bin"),
                    target: PathBuf::from("usr/bin"),
                },
            ],
        };
        let view = sample_view(app.path());
        let Ok(Some(Start::Bubblewrap { program, args })) = command(
            &kind,
            &view,
            None,
            Path::new("/usr/bin/node"),
            &["bootstrap.cjs".to_owned()],
        ) else {
            panic!("bubblewrap for a nimbus that is not root");
        };
        let app_path = app.path().display().to_string();
        let line = std::iter::once(program.into_os_string())
            .chain(args)
            .map(|arg| arg.to_string_lossy().replace(&app_path, "APP"))
            .collect::<Vec<_>>()
            .join(" ")
            .replace(" --", "\n--");
        expect_test::expect![[r#"
            /usr/bin/bwrap
            --die-with-parent
            --unshare-ipc
            --unshare-uts
            --unshare-cgroup-try
            --unshare-user
            --disable-userns
            --unshare-pid
            --proc /proc
            --dev /dev
            --dev-bind /dev/null /dev/tty
            --ro-bind /usr /usr
            --symlink usr/bin /bin
            --perms 0755
            --dir /etc
            --ro-bind-try /etc/ld.so.cache /etc/ld.so.cache
            --ro-bind-try /etc/ld.so.conf /etc/ld.so.conf
            --ro-bind-try /etc/ld.so.conf.d /etc/ld.so.conf.d
            --ro-bind-try /etc/ssl /etc/ssl
            --ro-bind-try /etc/ca-certificates /etc/ca-certificates
            --ro-bind-try /etc/ca-certificates.conf /etc/ca-certificates.conf
            --ro-bind-try /etc/pki /etc/pki
            --ro-bind-try /etc/resolv.conf /etc/resolv.conf
            --ro-bind-try /etc/hosts /etc/hosts
            --ro-bind-try /etc/host.conf /etc/host.conf
            --ro-bind-try /etc/nsswitch.conf /etc/nsswitch.conf
            --ro-bind-try /etc/gai.conf /etc/gai.conf
            --ro-bind-try /etc/services /etc/services
            --ro-bind-try /etc/protocols /etc/protocols
            --symlink /usr/share/zoneinfo/Etc/UTC /etc/localtime
            --ro-bind-try /etc/passwd /etc/passwd
            --ro-bind-try /etc/group /etc/group
            --ro-bind-try /etc/alternatives /etc/alternatives
            --ro-bind-try /etc/mime.types /etc/mime.types
            --symlink ../usr/lib/os-release /etc/os-release
            --perms 1777
            --size 536870912
            --tmpfs /tmp
            --perms 0755
            --dir APP
            --ro-bind APP/handler.js APP/handler.js
            --ro-bind APP/node_modules APP/node_modules
            --perms 0755
            --dir APP/.nimbus
            --ro-bind-try APP/.nimbus/runtime APP/.nimbus/runtime
            --chdir APP
            -- /usr/bin/node bootstrap.cjs"#]]
        .assert_eq(&line);
    }

    #[test]
    fn as_root_the_child_mounts_the_view_and_runs_as_the_instance_uid() {
        if !crate::spawn::is_root() {
            eprintln!("skipped: the sandbox's own set-up needs root");
            return;
        }
        let app = sample_app();
        let root = tempfile::tempdir().expect("a mount point");
        let kind = Kind::Root {
            root: root.path().to_owned(),
            system: system_paths(),
            uid_dir: PathBuf::from(UID_LOCK_DIR),
        };
        let view = sample_view(app.path());
        let script = "id -u; id -G; cat handler.js; ls -A; cat /etc/shadow .nimbus/secrets.key; \
            touch handler2.js; echo written > /tmp/t && cat /tmp/t; ls /dev/tty /dev/null; \
            test -w /usr || echo usr-read-only";
        let args = ["-c".to_owned(), script.to_owned()];
        let start = command(&kind, &view, Some(265_000), Path::new("/bin/sh"), &args)
            .expect("a plan")
            .expect("a sandbox");
        let output =
            crate::spawn::run_sandboxed(start, Path::new("/bin/sh"), &args).expect("running");
        let text = format!(
            "{}---\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        expect_test::expect![[r#"
            265000
            265000
            exports.handler = 1;
            .nimbus
            handler.js
            node_modules
            written
            /dev/null
            /dev/tty
            usr-read-only
            ---
            cat: /etc/shadow: No such file or directory
            cat: .nimbus/secrets.key: No such file or directory
            touch: cannot touch 'handler2.js': Permission denied
        "#]]
        .assert_eq(&text);
    }

    #[test]
    fn the_etc_copy_keeps_links_into_the_system_folders_and_copies_the_rest() {
        let host = tempfile::tempdir().expect("a temp folder");
        let etc = host.path().join("etc");
        std::fs::create_dir(&etc).expect("etc");
        let link = |target: &str, name: &str| {
            std::os::unix::fs::symlink(target, etc.join(name)).expect("a link");
        };
        link("/usr/share/zoneinfo/Etc/UTC", "localtime");
        link("../usr/lib/os-release", "os-release");
        std::fs::write(host.path().join("hosts"), "127.0.0.1 localhost\n").expect("hosts");
        link(&host.path().join("hosts").display().to_string(), "hosts");
        std::fs::write(etc.join("passwd"), "root:x:0:0::/root:/bin/sh\n").expect("passwd");
        let copy = host.path().join("copy");
        create_dir(&copy).expect("the copy's folder");
        copy_etc_entries(&etc, &copy).expect("copying");

        let read_link = |name: &str| std::fs::read_link(copy.join(name)).ok();
        assert_eq!(
            read_link("localtime"),
            Some(PathBuf::from("/usr/share/zoneinfo/Etc/UTC")),
            "the time zone's name stays readable from the link"
        );
        assert_eq!(
            read_link("os-release"),
            Some(PathBuf::from("../usr/lib/os-release")),
            "a relative link into /usr stays as it is"
        );
        assert_eq!(
            in_etc(Path::new("../../../usr/x/../y")),
            PathBuf::from("/usr/y")
        );
        assert_eq!(read_link("hosts"), None);
        assert_eq!(
            std::fs::read_to_string(copy.join("hosts")).ok().as_deref(),
            Some("127.0.0.1 localhost\n"),
            "a link out of the system's folders is copied as the file it points to"
        );
        assert!(copy.join("passwd").is_file());
    }

    #[test]
    fn a_uid_is_lent_to_one_instance_at_a_time_across_processes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let sandbox = Sandbox::new(
            Kind::Root {
                root: PathBuf::from(setup::ROOT_DIR),
                system: Vec::new(),
                uid_dir: dir.path().to_owned(),
            },
            UidRange {
                first: 1000,
                last: 1015,
            },
            Vec::new(),
        );
        let mut held: Vec<UidLease> = (0..16)
            .filter_map(|_| sandbox.lease().ok().flatten())
            .collect();
        assert_eq!(held.len(), 16);
        assert!(sandbox.lease().is_err(), "all 16 uids are in use");
        // Free uid 1015 (leases go out in any order; uid 1000 stays held for the check below).
        let freed_at = held.iter().position(|lease| lease.uid == 1015);
        let freed = held.remove(freed_at.expect("uid 1015 is lent"));
        let uid = freed.uid;
        freed.release();
        assert!(
            !dir.path().join(uid.to_string()).exists(),
            "a released uid leaves no file"
        );
        assert_eq!(
            sandbox.lease().ok().flatten().map(|lease| lease.uid),
            Some(uid)
        );
        // A lock taken on a file its holder removed meanwhile is no lease.
        let path = dir.path().join("1000");
        let stale = std::fs::File::open(&path).expect("uid 1000 is held");
        let holder = held.iter().position(|lease| lease.uid == 1000);
        drop(held.remove(holder.expect("uid 1000 is lent")));
        std::fs::remove_file(&path).expect("removing");
        assert!(stale.try_lock().is_ok());
        assert!(!is_same_file(&stale, &path));
        drop(held);
        std::fs::write(dir.path().join("1001"), "").expect("a free uid's old file");
        std::fs::write(dir.path().join("1002"), "in use").expect("a marked uid's file");
        remove_free_uid_files(dir.path());
        assert!(!dir.path().join("1001").exists());
        assert!(
            dir.path().join("1002").exists(),
            "a marked uid waits for its kill"
        );
    }
}
