//! The sandbox of an instance as nimbus sets it up itself when it is root: in the forked
//! child, between fork and exec, the same view bubblewrap would mount, then the switch to
//! the instance's uid and the seccomp filters, so the runtime is the one program started.
//!
//! bubblewrap and `setpriv` cost two more programs' starts on every cold start (measured
//! in BENCHMARKS.md: ~7 ms of bubblewrap's own, most of it not its mounts, and ~3 ms of
//! `setpriv`, which loads the locale and looks the uid up through NSS), where the system
//! calls themselves take well under a millisecond. Everything the child runs here is a
//! system call on values prepared before the fork (`Setup::new`), as only
//! async-signal-safe calls may run in the child of a multi-threaded process.
//! Not as root, bubblewrap keeps doing it (a user namespace needs its helper process).

use std::collections::BTreeSet;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

/// Where the child mounts the new root before it becomes `/`: an empty folder of the
/// host, made at start-up; each child mounts there in a mount namespace of its own.
pub(crate) const ROOT_DIR: &str = "/run/nimbus/root";

/// One part of an instance's view, in the order it is mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Mount {
    /// A folder of mode 0755 (its missing ancestors made first, each once).
    Dir(PathBuf),
    /// The host's `source` at `target`, read-only, `nosuid` and `nodev`, with everything
    /// mounted below it; a `source` the host lacks is skipped unless `required`.
    ReadOnly {
        source: PathBuf,
        target: PathBuf,
        required: bool,
    },
    /// A symbolic link at `link` pointing to `target`.
    Symlink { target: PathBuf, link: PathBuf },
    /// A tmpfs of `mode` and at most `size` bytes.
    Tmpfs { path: PathBuf, mode: u32, size: u64 },
    /// A fresh `/dev`: the usual pseudo-devices of the host, a `devpts` of its own, and
    /// `/dev/tty` as `/dev/null` (as bubblewrap's `--dev` plus `--dev-bind`).
    Dev,
    /// The host's `/proc`, read-only (a uid of its own keeps other processes' secrets).
    HostProc,
}

/// The view and credentials of one instance, ready for the forked child (`apply`).
pub(crate) struct Setup {
    root: CString,
    steps: Vec<Step>,
    workdir: CString,
    uid: libc::uid_t,
    /// nimbus's pid: the child stops if its parent is gone before it is set to die with it.
    parent: libc::pid_t,
    seccomp: Vec<&'static [u8]>,
}

/// One system call's worth of `Setup`, paths already under the new root.
enum Step {
    Dir(CString, libc::mode_t),
    /// An empty file to mount a file on.
    File(CString),
    Symlink {
        target: CString,
        link: CString,
    },
    ReadOnly {
        source: CString,
        target: CString,
        required: bool,
    },
    /// A device node of the host, bound as it is.
    Device {
        source: CString,
        target: CString,
    },
    Tmpfs {
        target: CString,
        options: CString,
    },
    Devpts(CString),
}

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const AT_RECURSIVE: libc::c_int = 0x8000;

/// prctl(2) reads its arguments as `unsigned long`: a plain `0` would leave the upper
/// half of the register unset.
const ZERO: libc::c_ulong = 0;

/// The host's pseudo-devices every program may use.
const DEVICES: [&str; 5] = ["null", "zero", "full", "random", "urandom"];

impl Setup {
    /// Prepares `mounts` under `root`, then a working folder `workdir` and the switch to
    /// `uid`, with the seccomp `filters` (raw `struct sock_filter` arrays) installed last.
    pub(crate) fn new(
        root: &Path,
        mounts: &[Mount],
        workdir: &Path,
        uid: u32,
        filters: Vec<&'static [u8]>,
    ) -> std::io::Result<Setup> {
        let mut plan = Plan {
            root: root.to_owned(),
            made: BTreeSet::new(),
            steps: Vec::new(),
        };
        for mount in mounts {
            plan.add(mount)?;
        }
        Ok(Setup {
            root: c_path(root)?,
            steps: plan.steps,
            workdir: c_path(workdir)?,
            uid,
            parent: libc::pid_t::try_from(std::process::id()).unwrap_or(0),
            seccomp: filters,
        })
    }

    /// Mounts the view in new mount, IPC, UTS and cgroup namespaces, makes it `/`, enters
    /// the working folder, becomes the instance's uid with no groups, capabilities or way
    /// to gain them, dies with nimbus, and installs the seccomp filters.
    ///
    /// # Safety
    ///
    /// For the child between fork and exec: it makes only system calls, on memory
    /// prepared before the fork, and allocates nothing.
    pub(crate) unsafe fn apply(&self) -> std::io::Result<()> {
        // SAFETY: each call below is a plain system call wrapper taking pointers into
        // `self`, which outlives the call; none allocates or takes a lock.
        unsafe {
            let old_umask = libc::umask(0);
            check(
                libc::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS),
                b"unshare",
                None,
            )?;
            // A kernel without cgroup namespaces still shows the instance its cgroup's
            // path; nothing more.
            libc::unshare(libc::CLONE_NEWCGROUP);
            // Nothing mounted here reaches the host's namespace.
            check(
                libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_SLAVE,
                    std::ptr::null(),
                ),
                b"making / a slave",
                None,
            )?;
            check(
                libc::mount(
                    c"tmpfs".as_ptr(),
                    self.root.as_ptr(),
                    c"tmpfs".as_ptr(),
                    libc::MS_NOSUID | libc::MS_NODEV,
                    c"mode=0755".as_ptr().cast(),
                ),
                b"mounting the new root",
                Some(&self.root),
            )?;
            for step in &self.steps {
                step.apply()?;
            }
            // The new root's own folders and links are fixed from here on.
            read_only(&self.root, false)?;
            check(libc::chdir(self.root.as_ptr()), b"chdir", Some(&self.root))?;
            // pivot_root(2)'s own recipe: the old root lands on top of the new one and
            // is detached at once.
            check(
                libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()),
                b"pivot_root",
                None,
            )?;
            check(
                libc::umount2(c".".as_ptr(), libc::MNT_DETACH),
                b"detaching the old root",
                None,
            )?;
            check(
                libc::chdir(self.workdir.as_ptr()),
                b"chdir",
                Some(&self.workdir),
            )?;
            libc::umask(old_umask);
            // Drop every capability from the bounding set while still allowed to (a
            // number past the kernel's last capability fails, harmlessly).
            for cap in 0..64 as libc::c_ulong {
                libc::prctl(libc::PR_CAPBSET_DROP, cap, ZERO, ZERO, ZERO);
            }
            check(libc::setgroups(0, std::ptr::null()), b"setgroups", None)?;
            check(
                libc::setresgid(self.uid, self.uid, self.uid),
                b"setresgid",
                None,
            )?;
            // Leaving uid 0 clears the permitted, effective and ambient capabilities.
            check(
                libc::setresuid(self.uid, self.uid, self.uid),
                b"setresuid",
                None,
            )?;
            check(
                libc::prctl(
                    libc::PR_SET_NO_NEW_PRIVS,
                    1 as libc::c_ulong,
                    ZERO,
                    ZERO,
                    ZERO,
                ),
                b"no_new_privs",
                None,
            )?;
            // Set after the uid change, which clears it; then make sure the parent did
            // not end before it was set.
            check(
                libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGKILL as libc::c_ulong,
                    ZERO,
                    ZERO,
                    ZERO,
                ),
                b"PR_SET_PDEATHSIG",
                None,
            )?;
            if libc::getppid() != self.parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            for filter in &self.seccomp {
                let program = libc::sock_fprog {
                    len: u16::try_from(filter.len() / 8).unwrap_or(0),
                    filter: filter.as_ptr().cast_mut().cast(),
                };
                check(
                    libc::prctl(
                        libc::PR_SET_SECCOMP,
                        libc::SECCOMP_MODE_FILTER as libc::c_ulong,
                        &raw const program,
                    ),
                    b"installing the seccomp filter",
                    None,
                )?;
            }
        }
        Ok(())
    }
}

impl Step {
    /// # Safety
    ///
    /// As `Setup::apply`.
    unsafe fn apply(&self) -> std::io::Result<()> {
        // SAFETY: system calls on strings owned by `self`.
        unsafe {
            match self {
                Step::Dir(path, mode) => {
                    if libc::mkdir(path.as_ptr(), *mode) < 0
                        && std::io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST)
                    {
                        return check(-1, b"mkdir", Some(path));
                    }
                }
                Step::File(path) => {
                    let fd = libc::open(
                        path.as_ptr(),
                        libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                        0o444,
                    );
                    // Inside a read-only bind the file may exist already.
                    if fd < 0 && libc::access(path.as_ptr(), libc::F_OK) == 0 {
                        return Ok(());
                    }
                    check(fd, b"making a mount point", Some(path))?;
                    libc::close(fd);
                }
                Step::Symlink { target, link } => {
                    check(
                        libc::symlink(target.as_ptr(), link.as_ptr()),
                        b"symlink",
                        Some(link),
                    )?;
                }
                Step::ReadOnly {
                    source,
                    target,
                    required,
                } => {
                    let bound = libc::mount(
                        source.as_ptr(),
                        target.as_ptr(),
                        std::ptr::null(),
                        libc::MS_BIND | libc::MS_REC,
                        std::ptr::null(),
                    );
                    if bound < 0
                        && !required
                        && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOENT)
                    {
                        return Ok(());
                    }
                    check(bound, b"binding", Some(source))?;
                    read_only(target, true)?;
                }
                Step::Device { source, target } => {
                    check(
                        libc::mount(
                            source.as_ptr(),
                            target.as_ptr(),
                            std::ptr::null(),
                            libc::MS_BIND,
                            std::ptr::null(),
                        ),
                        b"binding",
                        Some(source),
                    )?;
                }
                Step::Tmpfs { target, options } => {
                    check(
                        libc::mount(
                            c"tmpfs".as_ptr(),
                            target.as_ptr(),
                            c"tmpfs".as_ptr(),
                            libc::MS_NOSUID | libc::MS_NODEV,
                            options.as_ptr().cast(),
                        ),
                        b"mounting a tmpfs on",
                        Some(target),
                    )?;
                }
                Step::Devpts(target) => {
                    check(
                        libc::mount(
                            c"devpts".as_ptr(),
                            target.as_ptr(),
                            c"devpts".as_ptr(),
                            libc::MS_NOSUID | libc::MS_NOEXEC,
                            c"newinstance,ptmxmode=0666,mode=620".as_ptr().cast(),
                        ),
                        b"mounting devpts on",
                        Some(target),
                    )?;
                }
            }
        }
        Ok(())
    }
}

/// Makes the mount at `path` read-only, `nosuid` and `nodev`, and with `recursive` every
/// mount below it too (mount_setattr(2), Linux 5.12); older kernels get the one mount
/// remounted.
///
/// # Safety
///
/// As `Setup::apply`.
unsafe fn read_only(path: &CString, recursive: bool) -> std::io::Result<()> {
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: system calls on `path` and `attr`, which outlive them.
    unsafe {
        let flags = if recursive { AT_RECURSIVE } else { 0 };
        let set = libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            flags,
            &raw const attr,
            std::mem::size_of::<MountAttr>(),
        );
        if set == 0 {
            return Ok(());
        }
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::ENOSYS) {
            return check(-1, b"making read-only", Some(path));
        }
        check(
            libc::mount(
                std::ptr::null(),
                path.as_ptr(),
                std::ptr::null(),
                libc::MS_REMOUNT
                    | libc::MS_BIND
                    | libc::MS_RDONLY
                    | libc::MS_NOSUID
                    | libc::MS_NODEV,
                std::ptr::null(),
            ),
            b"remounting read-only",
            Some(path),
        )
    }
}

/// The error of a failed system call (`res` < 0), said on the child's stderr first: the
/// spawner learns only the errno.
fn check<T: Into<i64>>(res: T, what: &[u8], path: Option<&CString>) -> std::io::Result<()> {
    if res.into() >= 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    let write = |bytes: &[u8]| {
        // SAFETY: write(2) of a live buffer; a failed write is ignored.
        unsafe { libc::write(2, bytes.as_ptr().cast(), bytes.len()) };
    };
    write(b"nimbus: setting up the sandbox: ");
    write(what);
    if let Some(path) = path {
        write(b" ");
        write(path.as_bytes());
    }
    write(b" failed\n");
    Err(err)
}

/// The steps of a view, built mount by mount.
struct Plan {
    root: PathBuf,
    /// The folders already made (paths as the instance sees them).
    made: BTreeSet<PathBuf>,
    steps: Vec<Step>,
}

impl Plan {
    fn add(&mut self, mount: &Mount) -> std::io::Result<()> {
        match mount {
            Mount::Dir(path) => self.dir(path)?,
            Mount::ReadOnly {
                source,
                target,
                required,
            } => {
                // Mounting needs a folder for a folder and a file for anything else; the
                // kind is the one the host has now (following links, as mount(2) does).
                let is_dir = match std::fs::metadata(source) {
                    Ok(meta) => meta.is_dir(),
                    Err(_) if !required => return Ok(()),
                    Err(e) => {
                        return Err(std::io::Error::new(
                            e.kind(),
                            format!("{} for the sandbox: {e}", source.display()),
                        ));
                    }
                };
                self.mount_point(target, is_dir)?;
                self.steps.push(Step::ReadOnly {
                    source: c_path(source)?,
                    target: self.inside(target)?,
                    required: *required,
                });
            }
            Mount::Symlink { target, link } => {
                if let Some(parent) = link.parent() {
                    self.dir(parent)?;
                }
                self.steps.push(Step::Symlink {
                    target: c_path(target)?,
                    link: self.inside(link)?,
                });
            }
            Mount::Tmpfs { path, mode, size } => {
                self.dir(path)?;
                self.steps.push(Step::Tmpfs {
                    target: self.inside(path)?,
                    options: CString::new(format!("mode={mode:o},size={size}"))?,
                });
            }
            Mount::Dev => {
                let dev = Path::new("/dev");
                self.dir(dev)?;
                self.steps.push(Step::Tmpfs {
                    target: self.inside(dev)?,
                    options: CString::new("mode=0755")?,
                });
                for (name, source) in DEVICES
                    .iter()
                    .map(|name| (*name, *name))
                    .chain([("tty", "null")])
                {
                    let target = dev.join(name);
                    self.steps.push(Step::File(self.inside(&target)?));
                    self.steps.push(Step::Device {
                        source: c_path(&dev.join(source))?,
                        target: self.inside(&target)?,
                    });
                }
                for (link, target) in [
                    ("fd", "/proc/self/fd"),
                    ("stdin", "/proc/self/fd/0"),
                    ("stdout", "/proc/self/fd/1"),
                    ("stderr", "/proc/self/fd/2"),
                    ("ptmx", "pts/ptmx"),
                ] {
                    self.steps.push(Step::Symlink {
                        target: CString::new(target)?,
                        link: self.inside(&dev.join(link))?,
                    });
                }
                self.dir(&dev.join("shm"))?;
                self.dir(&dev.join("pts"))?;
                self.steps
                    .push(Step::Devpts(self.inside(&dev.join("pts"))?));
            }
            Mount::HostProc => self.add(&Mount::ReadOnly {
                source: PathBuf::from("/proc"),
                target: PathBuf::from("/proc"),
                required: true,
            })?,
        }
        Ok(())
    }

    /// A folder of mode 0755, its missing ancestors first, each once.
    fn dir(&mut self, path: &Path) -> std::io::Result<()> {
        if path.parent().is_none() || self.made.contains(path) {
            return Ok(());
        }
        if let Some(parent) = path.parent() {
            self.dir(parent)?;
        }
        self.made.insert(path.to_owned());
        self.steps.push(Step::Dir(self.inside(path)?, 0o755));
        Ok(())
    }

    /// A folder or an empty file at `path` to mount on.
    fn mount_point(&mut self, path: &Path, is_dir: bool) -> std::io::Result<()> {
        if is_dir {
            return self.dir(path);
        }
        if let Some(parent) = path.parent() {
            self.dir(parent)?;
        }
        self.steps.push(Step::File(self.inside(path)?));
        Ok(())
    }

    /// Where `path` of the view is before the new root becomes `/`.
    fn inside(&self, path: &Path) -> std::io::Result<CString> {
        let relative = path.strip_prefix("/").map_err(|_| {
            std::io::Error::other(format!("{} in the sandbox is not absolute", path.display()))
        })?;
        c_path(&self.root.join(relative))
    }
}

fn c_path(path: &Path) -> std::io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::other(format!("{} holds a NUL byte", path.display())))
}
