//! `nimbus dev`: `nimbus up` plus a watch of the app folder; a change reloads the app
//! without dropping a request.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use nimbus_core::{Executor, FunctionSpec};
use nimbus_server::Reloader;
use notify::Watcher as _;
use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
use tokio::sync::mpsc;

use crate::app::{self, FunctionCode, LoadOptions};
use crate::commands::up::{Launched, Launcher, Mode, UpCommand};

/// Serve an app as `nimbus up` does, reloading it whenever its files change.
///
/// New requests go to the new code while requests under way finish on the old; a
/// manifest error is printed and the last good version keeps serving.
#[derive(clap::Args)]
pub(crate) struct DevCommand {
    #[command(flatten)]
    up: UpCommand,
}

/// What `nimbus dev` keeps between reloads.
pub(crate) struct Session {
    opts: LoadOptions,
    launcher: Launcher,
    /// The last version that loaded and started: it serves until one after it does.
    launched: Launched,
    reloader: Reloader,
    /// Changes seen by reloads that failed; the next reload takes them into account.
    unapplied: BTreeSet<PathBuf>,
}

/// What the watch loop waits for.
enum Event {
    /// The file system reported a change (or a watch error).
    Changed(notify::Result<notify::Event>),
    /// No change arrived for the settle time: reload.
    Settled,
}

/// How long the folder must stay quiet before a reload: an editor's save is several
/// events (write a temp file, rename, change attributes).
const SETTLE: Duration = Duration::from_millis(200);
/// The same while `node_modules` changes: a package install writes for seconds, and one
/// reload at its end is what is wanted.
const SETTLE_NODE_MODULES: Duration = Duration::from_secs(1);

impl DevCommand {
    pub(crate) fn execute(self) -> anyhow::Result<ExitCode> {
        crate::runtime()?.block_on(self.up.serve(Mode::Dev))?;
        Ok(ExitCode::SUCCESS)
    }
}

impl Session {
    pub(crate) fn new(
        opts: LoadOptions,
        launcher: Launcher,
        launched: Launched,
        reloader: Reloader,
    ) -> Session {
        Session {
            opts,
            launcher,
            launched,
            reloader,
            unapplied: BTreeSet::new(),
        }
    }

    /// Starts watching the app folder: before the banner says the server is ready, so an
    /// edit made right after it is not missed. `None` (after a warning) when the folder
    /// cannot be watched; the app is then served without reloads.
    pub(crate) fn start(self) -> Option<Watching> {
        let dir = self.launched.app.dir.clone();
        let (tx, rx) = mpsc::unbounded_channel();
        let mut watcher = match notify::recommended_watcher(move |res| {
            let _ = tx.send(res);
        }) {
            Ok(watcher) => watcher,
            Err(e) => {
                eprintln!(
                    "warning: cannot watch {}: {e}; serving without reloads",
                    dir.display()
                );
                return None;
            }
        };
        if let Err(e) = watch_folder(&mut watcher, &dir) {
            eprintln!(
                "warning: cannot watch {}: {e}; serving without reloads",
                dir.display()
            );
            return None;
        }
        Some(Watching {
            session: self,
            watcher,
            rx,
        })
    }
}

/// A session whose folder is watched.
pub(crate) struct Watching {
    session: Session,
    watcher: notify::RecommendedWatcher,
    rx: mpsc::UnboundedReceiver<notify::Result<notify::Event>>,
}

impl Watching {
    /// Reloads after each burst of changes, until aborted.
    pub(crate) async fn run(self) {
        let Watching {
            session: mut this,
            mut watcher,
            mut rx,
        } = self;
        let dir = this.launched.app.dir.clone();
        let own_output = own_output(&dir);
        let mut pending: BTreeSet<PathBuf> = BTreeSet::new();
        let mut settle = SETTLE;
        let mut due: Option<tokio::time::Instant> = None;
        loop {
            let event = tokio::select! {
                Some(res) = rx.recv() => Event::Changed(res),
                () = tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)), if due.is_some() => Event::Settled,
                else => return,
            };
            match event {
                Event::Changed(Ok(event)) => {
                    if !is_change(&event.kind) {
                        continue;
                    }
                    let mut relevant = false;
                    for path in &event.paths {
                        let Ok(relative) = path.strip_prefix(&dir) else {
                            continue;
                        };
                        if relative.as_os_str().is_empty()
                            || ignored(relative)
                            || own_output.iter().any(|p| p == relative)
                        {
                            continue;
                        }
                        // A folder made at the top level is watched from now on; deeper
                        // ones are covered by the recursive watch of their parent.
                        if relative.components().count() == 1
                            && path.is_dir()
                            && let Err(e) = watcher.watch(path, notify::RecursiveMode::Recursive)
                        {
                            eprintln!("warning: cannot watch {}: {e}", path.display());
                        }
                        if relative
                            .components()
                            .any(|c| c.as_os_str() == "node_modules")
                        {
                            settle = SETTLE_NODE_MODULES;
                        }
                        pending.insert(relative.to_path_buf());
                        relevant = true;
                    }
                    if relevant {
                        due = Some(tokio::time::Instant::now() + settle);
                    }
                }
                Event::Changed(Err(e)) => {
                    eprintln!("warning: watching {}: {e}", dir.display());
                }
                Event::Settled => {
                    due = None;
                    settle = SETTLE;
                    let changed = std::mem::take(&mut pending);
                    this.reload(changed).await;
                }
            }
        }
    }
}

impl Session {
    /// Loads the app again and hands it to the server; functions whose spec and code did
    /// not change keep their executor (and warm instances). Prints one line saying what
    /// changed, or the errors and that the previous version keeps serving.
    async fn reload(&mut self, changed: BTreeSet<PathBuf>) {
        let what = describe(&changed);
        let mut changed = changed;
        changed.append(&mut self.unapplied);
        let dir = self.launched.app.dir.clone();
        let opts = self.opts.clone();
        let engine = self.launched.app.wasm_engine.clone();
        // Loading compiles wasm components: off the async workers.
        let loaded =
            tokio::task::spawn_blocking(move || app::load_with_engine(&dir, &opts, engine)).await;
        let app = match loaded {
            Ok(Ok(app)) => app,
            Ok(Err(e)) => return self.failed(&what, &e, changed),
            Err(e) => return self.failed(&what, &anyhow::anyhow!("loading failed: {e}"), changed),
        };
        let candidates = unchanged_code(&self.launched, &app, &changed);
        let previous = &self.launched;
        let same_settings = previous.app.manifest.service == app.manifest.service
            && previous.app.manifest.stage == app.manifest.stage
            && previous.app.manifest.region == app.manifest.region;
        // The spec compared is the final one, with the environment nimbus adds, which
        // stays the same from one reload to the next.
        let keep = |idx: usize, spec: &FunctionSpec| -> Option<Arc<dyn Executor>> {
            let previous_idx = candidates[idx]?;
            let unchanged = same_settings
                && same_for_executor(&previous.app.manifest.functions[previous_idx], spec);
            unchanged.then(|| previous.executors[previous_idx].clone())
        };
        let launch = match self.launcher.launch(app, keep).await {
            Ok(launch) => launch,
            Err(e) => return self.failed(&what, &e, changed),
        };
        if let Err(e) = self.reloader.reload(launch.served).await {
            return self.failed(&what, &e, changed);
        }
        let line = summary(&self.launched, &launch.launched, &launch.generated_keys);
        println!("nimbus: reload ({what}): {line}");
        self.launched = launch.launched;
    }

    fn failed(&mut self, what: &str, e: &anyhow::Error, changed: BTreeSet<PathBuf>) {
        eprintln!("error: {e:#}");
        eprintln!("nimbus: reload ({what}) failed; still serving the previous version");
        self.unapplied = changed;
    }
}

/// Watches the folder itself, and each folder in it (recursively) except nimbus's own
/// state and version control, whose churn is not the app's.
fn watch_folder(watcher: &mut impl notify::Watcher, dir: &Path) -> anyhow::Result<()> {
    watcher.watch(dir, notify::RecursiveMode::NonRecursive)?;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let Ok(relative) = path.strip_prefix(dir) else {
            continue;
        };
        if path.is_dir()
            && !ignored(relative)
            && let Err(e) = watcher.watch(&path, notify::RecursiveMode::Recursive)
        {
            // Most likely the inotify watch limit (fs.inotify.max_user_watches).
            eprintln!("warning: cannot watch {}: {e}", path.display());
        }
    }
    Ok(())
}

/// The files in the app folder that nimbus's own stdout and stderr go to (`nimbus dev >
/// dev.log`), whose every line would otherwise cause another reload. Linux only.
fn own_output(dir: &Path) -> Vec<PathBuf> {
    [1, 2]
        .iter()
        .filter_map(|fd| std::fs::read_link(format!("/proc/self/fd/{fd}")).ok())
        .filter_map(|path| path.strip_prefix(dir).ok().map(Path::to_path_buf))
        .collect()
}

/// Whether an event is a change of content or of the tree, rather than a read: every
/// new instance reads the handler, which must not cause another reload. Attribute
/// changes are left out too, since a read may update the access time.
fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Create(_) | EventKind::Remove(_) | EventKind::Any => true,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Modify(_) => true,
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) | EventKind::Other => false,
    }
}

/// Paths (relative to the app folder) whose changes never reload: nimbus's state,
/// version control, Python's bytecode caches (written when a function first imports a
/// module), and editors' swap and backup files.
fn ignored(relative: &Path) -> bool {
    let in_ignored_folder = relative.components().any(|c| match c {
        Component::Normal(name) => name == ".nimbus" || name == ".git" || name == "__pycache__",
        _ => false,
    });
    let Some(name) = relative.file_name().map(|n| n.to_string_lossy()) else {
        return in_ignored_folder;
    };
    in_ignored_folder
        || name.ends_with('~')
        || name.ends_with(".swp")
        || name.ends_with(".swx")
        || name.ends_with(".swo")
        || name.ends_with(".pyc")
        || name.starts_with(".#")
        // Vim writes this file to test whether it may create files in the folder.
        || name == "4913"
}

fn is_manifest(relative: &Path) -> bool {
    relative.components().count() == 1
        && relative
            .to_str()
            .is_some_and(|name| app::MANIFEST_NAMES.contains(&name))
}

/// For each function of `app`, the index of the same-named function of `previous` when
/// its code cannot have changed: for a process function no file but the manifest
/// changed (any file may be a module it imports), for a wasm function its component did
/// not change.
fn unchanged_code(
    previous: &Launched,
    app: &app::App,
    changed: &BTreeSet<PathBuf>,
) -> Vec<Option<usize>> {
    let code_changed = changed.iter().any(|p| !is_manifest(p));
    app.manifest
        .functions
        .iter()
        .zip(&app.codes)
        .map(|(spec, code)| {
            let idx = previous
                .app
                .manifest
                .functions
                .iter()
                .position(|f| f.name == spec.name)?;
            let unchanged = match (&previous.app.codes[idx], code) {
                (FunctionCode::Process(before), FunctionCode::Process(after)) => {
                    before == after && !code_changed
                }
                (FunctionCode::Wasm(_), FunctionCode::Wasm(_)) => {
                    !changed.contains(&normalize(Path::new(&spec.handler)))
                }
                _ => false,
            };
            unchanged.then_some(idx)
        })
        .collect()
}

/// Whether an executor started for `before` serves `after` as well: what only the server
/// uses (routes, events, asynchronous settings, grants, the concurrency limit, and the
/// line the handler is on) may change under running instances; anything else, known to
/// the executor or added later, may not.
fn same_for_executor(before: &FunctionSpec, after: &FunctionSpec) -> bool {
    let mut before = before.clone();
    before.handler_line = after.handler_line;
    before.http_routes.clone_from(&after.http_routes);
    before.events.clone_from(&after.events);
    before.async_config.clone_from(&after.async_config);
    before.grants.clone_from(&after.grants);
    before.reserved_concurrency = after.reserved_concurrency;
    before == *after
}

/// `./a/b.wasm` as `a/b.wasm`, to compare with watched paths.
fn normalize(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect()
}

/// The changed files, for the reload line: a few names, then a count.
fn describe(changed: &BTreeSet<PathBuf>) -> String {
    const SHOWN: usize = 3;
    let mut names: Vec<String> = changed
        .iter()
        .take(SHOWN)
        .map(|p| p.display().to_string())
        .collect();
    if changed.len() > SHOWN {
        names.push(format!("{} more", changed.len() - SHOWN));
    }
    names.join(", ")
}

/// What a reload changed: functions added, removed and reloaded, routes added and
/// removed, API keys generated.
fn summary(before: &Launched, after: &Launched, generated_keys: &[String]) -> String {
    let functions = |launched: &Launched| -> Vec<(String, Arc<dyn Executor>)> {
        launched
            .app
            .manifest
            .functions
            .iter()
            .map(|f| f.name.clone())
            .zip(launched.executors.iter().cloned())
            .collect()
    };
    let (old, new) = (functions(before), functions(after));
    let find = |list: &[(String, Arc<dyn Executor>)], name: &str| {
        list.iter().find(|(n, _)| n == name).map(|(_, e)| e.clone())
    };
    let added: Vec<&str> = new
        .iter()
        .filter(|(name, _)| find(&old, name).is_none())
        .map(|(name, _)| name.as_str())
        .collect();
    let removed: Vec<&str> = old
        .iter()
        .filter(|(name, _)| find(&new, name).is_none())
        .map(|(name, _)| name.as_str())
        .collect();
    let reloaded: Vec<&str> = new
        .iter()
        .filter(|(name, executor)| find(&old, name).is_some_and(|e| !Arc::ptr_eq(&e, executor)))
        .map(|(name, _)| name.as_str())
        .collect();
    let routes = |launched: &Launched| -> BTreeSet<String> {
        nimbus_server::route_lines(&launched.app.manifest.functions)
            .iter()
            .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect()
    };
    let (old_routes, new_routes) = (routes(before), routes(after));
    let mut route_changes: Vec<String> = new_routes
        .difference(&old_routes)
        .map(|r| format!("+{r}"))
        .collect();
    route_changes.extend(old_routes.difference(&new_routes).map(|r| format!("-{r}")));
    let mut parts = Vec::new();
    for (label, names) in [
        ("added", &added),
        ("removed", &removed),
        ("reloaded", &reloaded),
    ] {
        if !names.is_empty() {
            parts.push(format!("{label} {}", names.join(", ")));
        }
    }
    if !route_changes.is_empty() {
        parts.push(format!("routes {}", route_changes.join(", ")));
    }
    parts.extend(generated_keys.iter().cloned());
    if parts.is_empty() {
        return "no function changed".to_owned();
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignores_state_version_control_caches_and_editor_files() {
        let check = |path: &str| ignored(Path::new(path));
        assert!(check(".nimbus/nimbus.db-wal"));
        assert!(check(".git/index"));
        assert!(check("src/__pycache__/api.cpython-312.pyc"));
        assert!(check("src/.api.js.swp"));
        assert!(check("src/api.js~"));
        assert!(check("4913"));
        assert!(!check("src/api.js"));
        assert!(!check("nimbus.yaml"));
        assert!(!check("node_modules/left-pad/index.js"));
    }

    #[test]
    fn describes_a_few_changed_files_then_a_count() {
        let changed =
            |paths: &[&str]| -> BTreeSet<PathBuf> { paths.iter().map(PathBuf::from).collect() };
        assert_eq!(describe(&changed(&["nimbus.yaml"])), "nimbus.yaml");
        assert_eq!(
            describe(&changed(&["a.js", "b.js", "c.js", "d.js", "e.js"])),
            "a.js, b.js, c.js, 2 more"
        );
    }

    #[test]
    fn only_the_top_level_manifest_is_the_manifest() {
        assert!(is_manifest(Path::new("nimbus.yaml")));
        assert!(is_manifest(Path::new("serverless.yml")));
        assert!(!is_manifest(Path::new("sub/nimbus.yaml")));
        assert!(!is_manifest(Path::new("api.js")));
    }
}
