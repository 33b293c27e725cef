//! Bounded mutation fuzzing for the parsers that take untrusted input (manifests, AWS wire
//! formats, API Gateway requests, deploy bundles), run by `cargo test` on stable Rust.
//!
//! cargo-fuzz needs a nightly compiler, which this project cannot use; proptest runs on
//! stable and shrinks a failing input to a small one. A target is a seed corpus (files in
//! `fuzz/corpus/<target>/` at the repository root, kept in the repo), a dictionary of
//! tokens the format is made of, and a check that must neither panic nor take longer than
//! [`MAX_INPUT_TIME`] on any input. Each case takes a seed and applies a few mutations
//! (insert a token, insert bytes, delete, duplicate, flip, truncate), so the inputs stay
//! close enough to the format to reach deep into the parser, as libFuzzer's dictionary
//! mutations do.
//!
//! Budget: `NIMBUS_FUZZ_CASES` cases per target (default 2,000), so CI's run is bounded;
//! raise it for a longer session (`NIMBUS_FUZZ_CASES=200000 cargo test fuzz_`). A failure
//! prints the shrunk input and proptest records it under `proptest-regressions/` next to
//! the test, so it is replayed first from then on.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// The most one input may take; a parser slower than this has a complexity bug.
pub const MAX_INPUT_TIME: Duration = Duration::from_secs(1);

/// One mutation of a seed.
#[derive(Debug, Clone)]
enum Mutation {
    /// Insert a dictionary token at a position (both taken modulo their ranges).
    Token(usize, usize),
    /// Insert these bytes.
    Bytes(usize, Vec<u8>),
    /// Delete up to `len` bytes.
    Delete(usize, usize),
    /// Copy a range to another place.
    Duplicate(usize, usize, usize),
    /// Flip bits of one byte.
    Flip(usize, u8),
    /// Keep only the first bytes.
    Truncate(usize),
}

/// Runs `check` on mutated seeds of `target`; panics (failing the test) with the smallest
/// input found that makes `check` panic or run longer than [`MAX_INPUT_TIME`].
pub fn fuzz(target: &str, dictionary: &[&[u8]], check: impl Fn(&[u8])) {
    let seeds = corpus(target);
    assert!(!seeds.is_empty(), "fuzz/corpus/{target}/ holds no seed");
    let dictionary: Vec<Vec<u8>> = dictionary.iter().map(|t| t.to_vec()).collect();
    let mutation = prop_oneof![
        4 => (any::<usize>(), any::<usize>()).prop_map(|(t, at)| Mutation::Token(t, at)),
        2 => (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(at, bytes)| Mutation::Bytes(at, bytes)),
        2 => (any::<usize>(), 1usize..16).prop_map(|(at, len)| Mutation::Delete(at, len)),
        1 => (any::<usize>(), 1usize..32, any::<usize>())
            .prop_map(|(at, len, to)| Mutation::Duplicate(at, len, to)),
        1 => (any::<usize>(), 1u8..=255).prop_map(|(at, bits)| Mutation::Flip(at, bits)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
    ];
    let strategy = (0..seeds.len(), prop::collection::vec(mutation, 0..6));
    let cases = std::env::var("NIMBUS_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2_000);
    let mut runner = TestRunner::new(Config {
        cases,
        // Regressions are kept by the caller's test file; the runner here has none.
        failure_persistence: None,
        ..Config::default()
    });
    let res = runner.run(&strategy, |(seed, mutations)| {
        let input = mutate(&seeds[seed], &mutations, &dictionary);
        let started = Instant::now();
        let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&input)));
        let took = started.elapsed();
        if let Err(panic) = res {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            return Err(TestCaseError::fail(format!(
                "panicked ({message}) on {:?}",
                String::from_utf8_lossy(&input)
            )));
        }
        if took > MAX_INPUT_TIME {
            return Err(TestCaseError::fail(format!(
                "took {took:?} on {:?}",
                String::from_utf8_lossy(&input)
            )));
        }
        Ok(())
    });
    if let Err(e) = res {
        panic!("fuzz target {target}: {e}");
    }
}

/// The seeds of a target: every file in `fuzz/corpus/<target>/`.
pub fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = corpus_dir().join(target);
    let mut paths: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(e) => panic!("reading {}: {e}", dir.display()),
    };
    paths.sort();
    paths
        .iter()
        .filter_map(|path| std::fs::read(path).ok())
        .collect()
}

fn corpus_dir() -> PathBuf {
    // This crate sits at crates/nimbus-fuzz; the corpus at the repository root.
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus")
}

fn mutate(seed: &[u8], mutations: &[Mutation], dictionary: &[Vec<u8>]) -> Vec<u8> {
    let mut input = seed.to_vec();
    for mutation in mutations {
        let at = |n: usize, input: &Vec<u8>| n % (input.len() + 1);
        match mutation {
            Mutation::Token(token, pos) if !dictionary.is_empty() => {
                let pos = at(*pos, &input);
                let token = &dictionary[token % dictionary.len()];
                input.splice(pos..pos, token.iter().copied());
            }
            Mutation::Token(..) => {}
            Mutation::Bytes(pos, bytes) => {
                let pos = at(*pos, &input);
                input.splice(pos..pos, bytes.iter().copied());
            }
            Mutation::Delete(pos, len) => {
                let pos = at(*pos, &input);
                let end = (pos + len).min(input.len());
                input.drain(pos..end);
            }
            Mutation::Duplicate(from, len, to) => {
                let from = at(*from, &input);
                let end = (from + len).min(input.len());
                let copy = input[from..end].to_vec();
                let to = at(*to, &input);
                input.splice(to..to, copy);
            }
            Mutation::Flip(pos, bits) if !input.is_empty() => {
                let pos = pos % input.len();
                input[pos] ^= bits;
            }
            Mutation::Flip(..) => {}
            Mutation::Truncate(len) => {
                let len = at(*len, &input);
                input.truncate(len);
            }
        }
    }
    input
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_stay_in_bounds() {
        let dictionary = vec![b"tok".to_vec()];
        let all = [
            Mutation::Token(7, 100),
            Mutation::Bytes(3, vec![0, 1]),
            Mutation::Delete(1, 100),
            Mutation::Duplicate(0, 100, 100),
            Mutation::Flip(100, 1),
            Mutation::Truncate(100),
        ];
        for seed in [&b""[..], b"a", b"hello world"] {
            let out = mutate(seed, &all, &dictionary);
            assert!(out.len() <= seed.len() + 3 + 2 + 2 * (seed.len() + 5));
        }
        assert_eq!(
            mutate(b"ab", &[Mutation::Token(0, 1)], &dictionary),
            b"atokb"
        );
    }
}
