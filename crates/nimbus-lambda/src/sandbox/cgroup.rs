//! A cgroup per instance, where the machine lets nimbus make them: its memory (the
//! function's `memorySize` plus its `/tmp`, which is RAM), Lambda's 1024 processes and
//! threads, and a CPU weight in proportion to its memory, as Lambda gives CPU, all
//! enforced by the kernel for every process the instance starts, wherever it goes.
//!
//! cgroup v2 (the unified hierarchy) is used where nimbus's own cgroup has the memory and
//! pids controllers; as cgroup v2 lets only leaves hold processes, nimbus then moves itself
//! into a leaf `nimbus-<pid>/supervisor` beside its instances (`nimbus-<pid>/i<n>`), which
//! needs the cgroup to hold nimbus alone (a systemd unit with `Delegate=yes`, a container
//! whose first process is nimbus). Hosts with the controllers in cgroup v1 hierarchies
//! (older distributions, many container hosts) get the same limits there, as root.
//! A process enters its cgroup before its sandbox is set up: the forked child writes `0`
//! (itself) into the cgroup, on descriptors opened before the fork. On cgroup v1 it writes
//! to `tasks`, which moves the one thread it has (a forked child has one) and so the whole
//! process: a write to `cgroup.procs` takes the kernel's threadgroup lock for writing,
//! which waits for an RCU grace period (7-27 ms measured on an idle 2-core machine, on every
//! cold start), while a thread moving itself skips that lock (0.05 ms).

use std::io::Write as _;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The cgroups nimbus may make instances in, found at start-up.
#[derive(Debug)]
pub(crate) struct Cgroups {
    layout: Layout,
}

/// One instance's cgroup: a folder per hierarchy, removed (with whatever is left in it)
/// when the instance ends.
#[derive(Debug)]
pub(crate) struct InstanceCgroup {
    layout: Layout,
}

/// The limits of one instance's cgroup.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CgroupLimits {
    pub(crate) memory_bytes: u64,
    pub(crate) max_processes: u64,
    /// The function's `memorySize`, which its CPU weight follows.
    pub(crate) memory_mb: u32,
}

#[derive(Debug, Clone)]
enum Layout {
    /// The unified hierarchy: one folder with every controller.
    V2 { dir: PathBuf, cpu: bool },
    /// cgroup v1: a folder in each controller's hierarchy.
    V1 {
        memory: PathBuf,
        pids: PathBuf,
        cpu: Option<PathBuf>,
    },
}

/// Lambda gives a function one vCPU at 1,769 MB, and CPU in proportion below and above.
const MB_PER_VCPU: u64 = 1769;

/// The name of nimbus's own leaf under cgroup v2.
const SUPERVISOR: &str = "supervisor";

impl Cgroups {
    /// Sets up the cgroups of this nimbus process, or says why it cannot. What it can
    /// enforce without the cpu controller is still used; the second value names what
    /// is missing.
    pub(crate) fn set_up() -> Result<(Cgroups, Vec<String>), String> {
        let mounts = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| format!("reading /proc/self/mountinfo: {e}"))?;
        let own = std::fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| format!("reading /proc/self/cgroup: {e}"))?;
        let place = |hierarchy: Hierarchy<'_>| cgroup_dir(&mounts, &own, hierarchy);
        let name = format!("nimbus-{}", std::process::id());
        if let Some(dir) = place(Hierarchy::Unified) {
            let controllers = read_words(&dir.join("cgroup.controllers"));
            if controllers.iter().any(|c| c == "memory") && controllers.iter().any(|c| c == "pids")
            {
                let cpu = controllers.iter().any(|c| c == "cpu");
                let parent = set_up_v2(&dir, &name, cpu)?;
                let missing = if cpu {
                    vec![]
                } else {
                    vec!["CPU weight (no cpu controller in nimbus's cgroup)".to_owned()]
                };
                return Ok((
                    Cgroups {
                        layout: Layout::V2 { dir: parent, cpu },
                    },
                    missing,
                ));
            }
        }
        let v1 = |controller: &str| -> Result<PathBuf, String> {
            let dir = place(Hierarchy::V1(controller))
                .ok_or_else(|| format!("no {controller} controller, in cgroup v2 or v1"))?;
            let parent = dir.join(&name);
            remove_stale(&dir);
            create_cgroup(&parent).map_err(|e| format!("cannot make {}: {e}", parent.display()))?;
            if controller == "cpu" {
                // The instances together weigh what as many busy processes as the machine
                // has cores would, as they did before they had cgroups; among themselves,
                // by their memory.
                write(&parent, "cpu.shares", 1024 * n_cpus()).map_err(|e| e.to_string())?;
            }
            Ok(parent)
        };
        let memory = v1("memory")?;
        let pids = v1("pids")?;
        let cpu = v1("cpu");
        let missing = match &cpu {
            Ok(_) => Vec::new(),
            Err(e) => vec![format!("CPU weight ({e})")],
        };
        Ok((
            Cgroups {
                layout: Layout::V1 {
                    memory,
                    pids,
                    cpu: cpu.ok(),
                },
            },
            missing,
        ))
    }

    /// A few words for `nimbus validate` and `nimbus up`.
    pub(crate) fn describe(&self) -> &'static str {
        match &self.layout {
            Layout::V2 { cpu: true, .. } => "cgroup v2",
            Layout::V2 { cpu: false, .. } => "cgroup v2 (memory, pids)",
            Layout::V1 { cpu: Some(_), .. } => "cgroup v1",
            Layout::V1 { cpu: None, .. } => "cgroup v1 (memory, pids)",
        }
    }

    /// Makes a cgroup with `limits` for a new instance.
    pub(crate) fn create(&self, limits: CgroupLimits) -> std::io::Result<InstanceCgroup> {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let name = format!("i{}", NEXT.fetch_add(1, Ordering::Relaxed));
        let layout = match &self.layout {
            Layout::V2 { dir, cpu } => Layout::V2 {
                dir: dir.join(&name),
                cpu: *cpu,
            },
            Layout::V1 { memory, pids, cpu } => Layout::V1 {
                memory: memory.join(&name),
                pids: pids.join(&name),
                cpu: cpu.as_ref().map(|cpu| cpu.join(&name)),
            },
        };
        let cgroup = InstanceCgroup { layout };
        for dir in cgroup.dirs() {
            if let Err(e) = create_cgroup(dir) {
                cgroup.remove_dirs();
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("making the instance's cgroup {}: {e}", dir.display()),
                ));
            }
        }
        if let Err(e) = cgroup.limit(limits) {
            cgroup.remove_dirs();
            return Err(e);
        }
        Ok(cgroup)
    }
}

impl InstanceCgroup {
    /// Each hierarchy's file a process enters the cgroup through, open for writing: a
    /// single-threaded process that writes `0` to each enters the cgroup (the spawner's
    /// child does, before it sets up the sandbox). `tasks` on cgroup v1 (see the module's
    /// notes), `cgroup.procs` on v2, where only threaded cgroups take single threads.
    pub(crate) fn procs_files(&self) -> std::io::Result<Vec<OwnedFd>> {
        let entry = match self.layout {
            Layout::V2 { .. } => "cgroup.procs",
            Layout::V1 { .. } => "tasks",
        };
        self.dirs()
            .map(|dir| {
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(dir.join(entry))?;
                Ok(OwnedFd::from(file))
            })
            .collect()
    }

    /// Whether the kernel's OOM killer stopped a process of this cgroup: it went over its
    /// memory limit faster than the resident-memory watch could see.
    pub(crate) fn oom_killed(&self) -> bool {
        let (dir, file) = match &self.layout {
            Layout::V2 { dir, .. } => (dir, "memory.events"),
            Layout::V1 { memory, .. } => (memory, "memory.oom_control"),
        };
        std::fs::read_to_string(dir.join(file)).is_ok_and(|text| count_of(&text, "oom_kill") > 0)
    }

    /// Kills every process left in the cgroup and removes it; blocking, for a blocking
    /// thread. A cgroup still busy after a second (a process stuck in the kernel) is left
    /// for the next start of nimbus to remove.
    pub(crate) fn remove(self) {
        for _ in 0..100 {
            if self.remove_dirs() {
                return;
            }
            self.kill_all();
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn limit(&self, limits: CgroupLimits) -> std::io::Result<()> {
        let weight = (u64::from(limits.memory_mb) * 100 / MB_PER_VCPU).clamp(1, 10_000);
        match &self.layout {
            Layout::V2 { dir, cpu } => {
                write(dir, "memory.max", limits.memory_bytes)?;
                // No swap, and an OOM kill takes the whole instance, as Lambda's does.
                let _ = write(dir, "memory.swap.max", 0);
                let _ = write(dir, "memory.oom.group", 1);
                write(dir, "pids.max", limits.max_processes)?;
                if *cpu {
                    write(dir, "cpu.weight", weight)?;
                }
            }
            Layout::V1 { memory, pids, cpu } => {
                write(memory, "memory.limit_in_bytes", limits.memory_bytes)?;
                // Present only where swap is accounted.
                let _ = write(memory, "memory.memsw.limit_in_bytes", limits.memory_bytes);
                write(pids, "pids.max", limits.max_processes)?;
                if let Some(cpu) = cpu {
                    // cpu.shares is 1024 where cpu.weight is 100.
                    write(cpu, "cpu.shares", (weight * 1024 / 100).max(2))?;
                }
            }
        }
        Ok(())
    }

    fn dirs(&self) -> impl Iterator<Item = &PathBuf> {
        let (first, second, third) = match &self.layout {
            Layout::V2 { dir, .. } => (dir, None, None),
            Layout::V1 { memory, pids, cpu } => (memory, Some(pids), cpu.as_ref()),
        };
        std::iter::once(first).chain(second).chain(third)
    }

    /// Removes every folder of the cgroup; false while one still holds a process.
    fn remove_dirs(&self) -> bool {
        self.dirs().fold(true, |removed, dir| {
            let gone = match std::fs::remove_dir(dir) {
                Ok(()) => true,
                Err(e) => e.kind() == std::io::ErrorKind::NotFound,
            };
            removed && gone
        })
    }

    fn kill_all(&self) {
        if let Layout::V2 { dir, .. } = &self.layout
            && write(dir, "cgroup.kill", 1).is_ok()
        {
            return;
        }
        for dir in self.dirs() {
            for pid in read_words(&dir.join("cgroup.procs")) {
                if let Ok(pid) = pid.parse::<libc::pid_t>()
                    && pid > 0
                {
                    // SAFETY: kill(2) takes plain integers; the pid is one the kernel
                    // listed in the instance's cgroup.
                    unsafe {
                        libc::kill(pid, libc::SIGKILL);
                    }
                }
            }
        }
    }
}

/// Which hierarchy to look for.
#[derive(Clone, Copy)]
enum Hierarchy<'a> {
    Unified,
    V1(&'a str),
}

/// The folder of nimbus's own cgroup in `hierarchy`, from `/proc/self/mountinfo` (where
/// the hierarchy is mounted, and which of its cgroups the mount shows) and
/// `/proc/self/cgroup` (which cgroup nimbus is in).
fn cgroup_dir(mountinfo: &str, own: &str, hierarchy: Hierarchy<'_>) -> Option<PathBuf> {
    let path = own.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (_id, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        let wanted = match hierarchy {
            Hierarchy::Unified => controllers.is_empty(),
            Hierarchy::V1(name) => controllers.split(',').any(|c| c == name),
        };
        wanted.then_some(path)
    })?;
    mountinfo.lines().find_map(|line| {
        // mountinfo(5): id parent major:minor root mount-point options... - type source
        // super-options.
        let (left, right) = line.split_once(" - ")?;
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        let (root, mount_point) = (*left.get(3)?, *left.get(4)?);
        let (fs_type, options) = (*right.first()?, *right.get(2)?);
        let matches = match hierarchy {
            Hierarchy::Unified => fs_type == "cgroup2",
            Hierarchy::V1(name) => fs_type == "cgroup" && options.split(',').any(|o| o == name),
        };
        if !matches {
            return None;
        }
        let inside = Path::new(path).strip_prefix(root).ok()?;
        Some(Path::new(mount_point).join(inside))
    })
}

/// Makes `dir/<name>` the parent of this process's instances in the unified hierarchy,
/// with the controllers on for its children, moving nimbus into a leaf of it when its
/// own cgroup must give up its processes first.
fn set_up_v2(dir: &Path, name: &str, cpu: bool) -> Result<PathBuf, String> {
    let controllers = if cpu {
        "+memory +pids +cpu"
    } else {
        "+memory +pids"
    };
    remove_stale(dir);
    let parent = dir.join(name);
    create_cgroup(&parent).map_err(|e| format!("cannot make {}: {e}", parent.display()))?;
    let enabled = read_words(&dir.join("cgroup.subtree_control"));
    if !(enabled.iter().any(|c| c == "memory") && enabled.iter().any(|c| c == "pids")) {
        // Only a cgroup without processes may hand controllers to its children: nimbus
        // moves to a leaf of its own first, and back if others share its cgroup.
        let supervisor = parent.join(SUPERVISOR);
        let moved = create_cgroup(&supervisor)
            .and_then(|()| write(&supervisor, "cgroup.procs", std::process::id()))
            .and_then(|()| write(dir, "cgroup.subtree_control", controllers));
        if let Err(e) = moved {
            let _ = write(dir, "cgroup.procs", std::process::id());
            let _ = std::fs::remove_dir(&supervisor);
            let _ = std::fs::remove_dir(&parent);
            return Err(format!(
                "nimbus's cgroup {} holds other processes, so it cannot hand the memory and pids controllers to instances ({e}); run nimbus in a cgroup of its own (systemd-run --scope -p Delegate=yes, or as a container's first process)",
                dir.display()
            ));
        }
    }
    write(&parent, "cgroup.subtree_control", controllers)
        .map_err(|e| format!("cannot turn on {controllers} in {}: {e}", parent.display()))?;
    if cpu {
        // As under v1: the instances and nimbus together weigh as many busy processes as
        // the machine has cores; nimbus (100) outweighs any instance below 1,769 MB.
        let _ = write(&parent, "cpu.weight", (100 * n_cpus()).min(10_000));
    }
    Ok(parent)
}

fn n_cpus() -> u64 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u64)
}

/// Removes what nimbus processes that are gone left in `dir`: their `nimbus-<pid>`
/// folders and the instance cgroups in them (empty once their processes ended).
fn remove_stale(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|name| name.strip_prefix("nimbus-"))
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        if let Ok(children) = std::fs::read_dir(entry.path()) {
            for child in children.flatten() {
                if child.file_type().is_ok_and(|t| t.is_dir()) {
                    let _ = std::fs::remove_dir(child.path());
                }
            }
        }
        let _ = std::fs::remove_dir(entry.path());
    }
}

fn create_cgroup(dir: &Path) -> std::io::Result<()> {
    match std::fs::create_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        res => res,
    }
}

/// Writes one value to a cgroup file, in a single write(2) as the kernel wants it. (A
/// file the kernel does not offer cannot be created in a cgroup folder; `create` lets
/// the tests stand a plain folder in for one.)
fn write(dir: &Path, file: &str, value: impl std::fmt::Display) -> std::io::Result<()> {
    let path = dir.join(file);
    let mut handle = std::fs::OpenOptions::new()
        .write(true)
        .create(cfg!(test))
        .truncate(false)
        .open(&path)?;
    handle
        .write_all(value.to_string().as_bytes())
        .map_err(|e| std::io::Error::new(e.kind(), format!("writing {}: {e}", path.display())))
}

fn read_words(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|text| text.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// The number after `key` in a flat keyed file (`memory.events`, `memory.oom_control`).
fn count_of(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|line| {
            let (name, value) = line.split_once(' ')?;
            (name == key).then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 /docker/abc /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    const OWN: &str = "\
9:name=systemd:/
8:pids:/
4:memory:/docker/abc/app
2:cpu,cpuacct:/
0::/user.slice/session-1.scope
";

    #[test]
    fn the_own_cgroup_is_found_in_each_hierarchy() {
        let dir = |h| cgroup_dir(MOUNTINFO, OWN, h).map(|p| p.display().to_string());
        assert_eq!(
            dir(Hierarchy::V1("memory")).as_deref(),
            Some("/sys/fs/cgroup/memory/app"),
            "a mount showing a cgroup below the root"
        );
        assert_eq!(
            dir(Hierarchy::V1("cpu")).as_deref(),
            Some("/sys/fs/cgroup/cpu,cpuacct/")
        );
        assert_eq!(
            dir(Hierarchy::V1("pids")).as_deref(),
            Some("/sys/fs/cgroup/pids/")
        );
        assert_eq!(
            dir(Hierarchy::Unified).as_deref(),
            Some("/sys/fs/cgroup/unified/user.slice/session-1.scope")
        );
        assert_eq!(dir(Hierarchy::V1("blkio")), None);
    }

    #[test]
    fn oom_kills_are_read_from_either_hierarchy() {
        assert_eq!(
            count_of("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n", "oom_kill"),
            2
        );
        assert_eq!(
            count_of(
                "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 1\n",
                "oom_kill"
            ),
            1
        );
        assert_eq!(count_of("oom_kill_disable 0\n", "oom_kill"), 0);
    }

    /// An instance's cgroup, made in a plain folder standing for the hierarchy: the files
    /// the kernel would have are written as nimbus writes them.
    #[test]
    fn an_instance_cgroup_gets_its_limits_and_is_removed() {
        let root = tempfile::tempdir().expect("temp dir");
        let check = |layout: Layout, expect: expect_test::Expect| {
            let cgroups = Cgroups { layout };
            let cgroup = cgroups.create(CgroupLimits {
                memory_bytes: 640 * 1024 * 1024,
                max_processes: 1024,
                memory_mb: 1024,
            });
            let cgroup = match cgroup {
                Ok(cgroup) => cgroup,
                Err(e) => panic!("{e}"),
            };
            let mut written = Vec::new();
            for dir in cgroup.dirs() {
                let mut files: Vec<String> = std::fs::read_dir(dir)
                    .expect("cgroup folder")
                    .flatten()
                    .map(|e| {
                        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                        format!("{}={text}", e.file_name().to_string_lossy())
                    })
                    .collect();
                files.sort();
                written.push(files.join(" "));
            }
            expect.assert_eq(&written.join("\n"));
            for dir in cgroup.dirs() {
                for file in std::fs::read_dir(dir).expect("folder").flatten() {
                    std::fs::remove_file(file.path()).expect("file");
                }
            }
            cgroup.remove();
        };
        let v2 = root.path().join("v2");
        std::fs::create_dir(&v2).expect("folder");
        check(
            Layout::V2 {
                dir: v2.clone(),
                cpu: true,
            },
            expect_test::expect![
                "cpu.weight=57 memory.max=671088640 memory.oom.group=1 memory.swap.max=0 pids.max=1024"
            ],
        );
        let v1 = ["memory", "pids", "cpu"].map(|c| {
            let dir = root.path().join(c);
            std::fs::create_dir(&dir).expect("folder");
            dir
        });
        let [memory, pids, cpu] = v1;
        check(
            Layout::V1 {
                memory,
                pids,
                cpu: Some(cpu),
            },
            expect_test::expect![[r#"
                memory.limit_in_bytes=671088640 memory.memsw.limit_in_bytes=671088640
                pids.max=1024
                cpu.shares=583"#]],
        );
        assert_eq!(
            std::fs::read_dir(&v2).expect("folder").count(),
            0,
            "the instance's cgroup is gone"
        );
    }
}
