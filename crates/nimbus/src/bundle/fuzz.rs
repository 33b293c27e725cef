//! Fuzzing the bundle unpacker: mutated tar archives (gzipped as deploys send them, and
//! raw bytes as a hostile client might) either unpack or fail, never panic, and never put
//! a file outside the target folder.

use std::io::Write as _;
use std::path::Path;

use super::unpack;

/// Tokens of tar headers and of paths that try to escape.
const DICTIONARY: &[&[u8]] = &[
    b"../",
    b"/",
    b"..",
    b"ustar\0",
    b"ustar  \0",
    b"0000644\0",
    b"00000000777\0",
    b".nimbus/",
    b"\0\0\0\0",
    b"5",
    b"2",
    b"1",
    b"L",
];

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let _ = gz.write_all(bytes);
    gz.finish().unwrap_or_default()
}

/// Every path under `root`, as text.
fn everything_under(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            out.push(path.display().to_string());
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn fuzz_bundle_unpack_stays_inside_its_folder() {
    let scratch = tempfile::tempdir().expect("temp dir");
    nimbus_fuzz::fuzz("bundle", DICTIONARY, |tar| {
        // A fresh folder inside an outer one: anything escaping lands beside `dest`.
        let outer = tempfile::tempdir_in(scratch.path()).expect("temp dir");
        let dest = outer.path().join("dest");
        std::fs::create_dir(&dest).expect("dest");
        let _ = unpack(&gzip(tar), &dest);
        let _ = unpack(tar, &dest);
        let escaped: Vec<String> = everything_under(outer.path())
            .into_iter()
            .filter(|path| !Path::new(path).starts_with(&dest))
            .collect();
        assert!(
            escaped.is_empty(),
            "written outside the bundle's folder: {escaped:?}"
        );
    });
}
