//! Deploy bundles: an app folder as a gzipped tar, and unpacking one without letting any
//! entry land outside the target folder.

use std::io::{Read, Write as _};
use std::path::{Component, Path, PathBuf};

use anyhow::Context as _;

/// Folders that never go into a bundle: nimbus's own state and version control.
/// `node_modules` does go in: functions import from it.
const EXCLUDED: [&str; 2] = [".nimbus", ".git"];

/// At most this many bytes, unpacked, in one bundle.
pub(crate) const MAX_UNPACKED_BYTES: u64 = 1 << 30;

/// Packs the app folder `dir` into a `.tar.gz` in memory. Symbolic links stay links.
pub(crate) fn pack(dir: &Path) -> anyhow::Result<Vec<u8>> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut builder = tar::Builder::new(gz);
    builder.follow_symlinks(false);
    append_folder(&mut builder, dir, Path::new(""))?;
    let gz = builder.into_inner().context("finishing the bundle")?;
    let mut bytes = gz.finish().context("compressing the bundle")?;
    bytes.flush()?;
    Ok(bytes)
}

/// Unpacks a `.tar.gz` into `dest` (which must exist). Refuses absolute paths, `..`,
/// links that point outside the bundle, and more than `MAX_UNPACKED_BYTES`; skips
/// `.nimbus/` and anything that is not a file, a folder or a link. On error `dest` may
/// hold part of the bundle: the caller removes it.
pub(crate) fn unpack(bundle: &[u8], dest: &Path) -> anyhow::Result<()> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bundle));
    let mut total: u64 = 0;
    let mut links: Vec<(PathBuf, PathBuf)> = Vec::new();
    for entry in archive.entries().context("reading the bundle")? {
        let mut entry = entry.context("reading the bundle")?;
        let path = entry
            .path()
            .context("reading a path in the bundle")?
            .into_owned();
        let relative = safe_relative(&path)
            .with_context(|| format!("the bundle holds an unsafe path {}", path.display()))?;
        if relative.as_os_str().is_empty()
            || relative
                .components()
                .next()
                .is_some_and(|c| EXCLUDED.iter().any(|e| c.as_os_str() == *e))
        {
            continue;
        }
        let target = dest.join(&relative);
        match entry.header().entry_type() {
            tar::EntryType::Directory => {
                std::fs::create_dir_all(&target)
                    .with_context(|| format!("creating {}", relative.display()))?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                total = total.saturating_add(entry.header().size().unwrap_or(u64::MAX));
                anyhow::ensure!(
                    total <= MAX_UNPACKED_BYTES,
                    "the bundle unpacks to more than {} MB",
                    MAX_UNPACKED_BYTES >> 20
                );
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent)
                        .with_context(|| format!("creating {}", parent.display()))?;
                }
                let mode = entry.header().mode().unwrap_or(0o644) & 0o755;
                let mut bytes = Vec::new();
                entry
                    .read_to_end(&mut bytes)
                    .with_context(|| format!("reading {} from the bundle", relative.display()))?;
                write_new_file(&target, &bytes, mode)
                    .with_context(|| format!("writing {}", relative.display()))?;
            }
            tar::EntryType::Symlink => {
                let link = entry
                    .link_name()
                    .context("reading a link in the bundle")?
                    .context("a link in the bundle has no target")?
                    .into_owned();
                anyhow::ensure!(
                    link_stays_inside(&relative, &link),
                    "the bundle holds a link {} -> {} that leaves the app folder",
                    relative.display(),
                    link.display()
                );
                links.push((relative, link));
            }
            _ => {}
        }
    }
    // Links come last, so no file or folder of the bundle is ever written through one.
    let root = dest
        .canonicalize()
        .with_context(|| format!("opening {}", dest.display()))?;
    for (relative, link) in links {
        let target = dest.join(&relative);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::os::unix::fs::symlink(&link, &target)
            .with_context(|| format!("linking {}", relative.display()))?;
        // Lexically inside is not enough when the path goes through another link.
        if let Ok(resolved) = target.canonicalize() {
            anyhow::ensure!(
                resolved.starts_with(&root),
                "the bundle holds a link {} -> {} that leaves the app folder",
                relative.display(),
                link.display()
            );
        }
    }
    Ok(())
}

fn append_folder(
    builder: &mut tar::Builder<flate2::write::GzEncoder<Vec<u8>>>,
    root: &Path,
    relative: &Path,
) -> anyhow::Result<()> {
    let folder = root.join(relative);
    let mut entries: Vec<_> = std::fs::read_dir(&folder)
        .with_context(|| format!("reading {}", folder.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("reading {}", folder.display()))?;
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        let name = entry.file_name();
        if EXCLUDED.iter().any(|e| name == *e) {
            continue;
        }
        let path = entry.path();
        let inner = relative.join(&name);
        let metadata = std::fs::symlink_metadata(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        if metadata.is_dir() {
            builder
                .append_dir(&inner, &path)
                .with_context(|| format!("packing {}", path.display()))?;
            append_folder(builder, root, &inner)?;
        } else if metadata.is_file() || metadata.is_symlink() {
            builder
                .append_path_with_name(&path, &inner)
                .with_context(|| format!("packing {}", path.display()))?;
        }
    }
    Ok(())
}

/// `path` made only of plain names (no root, no `..`), with `.` dropped.
fn safe_relative(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => out.push(name),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Whether a link at `at` (relative to the bundle's root) pointing to `target` resolves,
/// lexically, inside the bundle.
fn link_stays_inside(at: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth: usize = at.components().count().saturating_sub(1);
    for component in target.components() {
        match component {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return false,
            },
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

/// Writes a file that must not exist yet (a bundle naming a path twice, or a path
/// through an earlier link to a file, fails rather than overwriting).
fn write_new_file(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode | 0o600)
        .open(path)?;
    file.write_all(bytes)
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_paths_are_safe() {
        assert_eq!(
            safe_relative(Path::new("a/./b")),
            Some(PathBuf::from("a/b"))
        );
        assert_eq!(safe_relative(Path::new("../x")), None);
        assert_eq!(safe_relative(Path::new("a/../../x")), None);
        assert_eq!(safe_relative(Path::new("/etc/passwd")), None);
    }

    #[test]
    fn links_may_point_only_inside_the_bundle() {
        let check = |at: &str, target: &str| link_stays_inside(Path::new(at), Path::new(target));
        assert!(check("node_modules/.bin/x", "../x/bin.js"));
        assert!(check("a", "b/c"));
        assert!(!check("a", "../b"));
        assert!(!check("node_modules/.bin/x", "../../../etc"));
        assert!(!check("a", "/etc/passwd"));
    }

    #[test]
    fn a_packed_folder_unpacks_without_state_or_version_control() {
        let src = tempfile::tempdir().expect("temp dir");
        let write = |path: &str, text: &str| {
            let path = src.path().join(path);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, text).expect("write");
        };
        write("nimbus.yaml", "service: s\n");
        write("node_modules/dep/index.js", "module.exports = 1;\n");
        write(".nimbus/nimbus.db", "state");
        write(".git/HEAD", "ref");
        std::os::unix::fs::symlink("../dep/index.js", src.path().join("node_modules/dep.js"))
            .expect("symlink");
        let bundle = pack(src.path()).expect("pack");
        let dest = tempfile::tempdir().expect("temp dir");
        unpack(&bundle, dest.path()).expect("unpack");
        assert!(dest.path().join("nimbus.yaml").is_file());
        assert!(dest.path().join("node_modules/dep/index.js").is_file());
        assert!(!dest.path().join(".nimbus").exists());
        assert!(!dest.path().join(".git").exists());
        assert!(
            std::fs::symlink_metadata(dest.path().join("node_modules/dep.js"))
                .expect("link")
                .is_symlink()
        );
    }

    #[test]
    fn a_link_escaping_through_another_link_is_refused() {
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ));
        for (path, target) in [("s", "."), ("e", "s/..")] {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            header.set_mode(0o777);
            builder
                .append_link(&mut header, path, target)
                .expect("append");
        }
        let bundle = builder.into_inner().expect("tar").finish().expect("gzip");
        let outer = tempfile::tempdir().expect("temp dir");
        let dest = outer.path().join("app");
        std::fs::create_dir(&dest).expect("mkdir");
        let err = unpack(&bundle, &dest).expect_err("refused");
        assert!(
            format!("{err:#}").contains("leaves the app folder"),
            "{err:#}"
        );
    }

    #[test]
    fn a_bundle_escaping_its_folder_is_refused() {
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ));
        let mut header = tar::Header::new_gnu();
        header.set_size(1);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        builder
            .append_link(&mut header, "evil", "../../outside")
            .expect("append");
        let bundle = builder.into_inner().expect("tar").finish().expect("gzip");
        let dest = tempfile::tempdir().expect("temp dir");
        let err = unpack(&bundle, dest.path()).expect_err("refused");
        assert!(
            format!("{err:#}").contains("leaves the app folder"),
            "{err:#}"
        );
    }
}
