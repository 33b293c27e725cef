//! Fuzzing the manifest loader and variable resolver (issue 20): mutated manifests parse or
//! fail, never panic, and each takes well under `nimbus_fuzz::MAX_INPUT_TIME`; the seeds
//! include an anchor bomb and a doubling `${self:}` chain, which the limits refuse.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Variables, parse};

/// Tokens of YAML structure and of the variable syntax.
const DICTIONARY: &[&[u8]] = &[
    b"&a ",
    b"*a",
    b"<<: ",
    b"${self:custom.a}",
    b"${self:",
    b"${file(./config.yml):a}",
    b"${env:X, 'd'}",
    b"${opt:stage}",
    b"}",
    b"[",
    b"]",
    b"{",
    b": ",
    b"\n  ",
    b"\n- ",
    b"!Ref ",
    b"!GetAtt ",
    b"\0",
    b"\"\\u0000\"",
    b"---\n",
];

#[test]
fn fuzz_manifests_parse_or_fail_without_panicking_or_hanging() {
    let vars = Variables {
        env: BTreeMap::from([("X".to_owned(), "x".to_owned())]),
        options: BTreeMap::new(),
        secrets: None,
        // A variable file that refers back to the manifest, so chains can cross files.
        files: Some(Arc::new(BTreeMap::from([(
            "config.yml".to_owned(),
            "a: ${self:custom.a}\nb: [1, 2]\n".to_owned(),
        )]))),
        instance_id: Some("1".to_owned()),
    };
    nimbus_fuzz::fuzz("manifest", DICTIONARY, |input| {
        let source = String::from_utf8_lossy(input);
        let _ = parse(&source, "serverless.yml", &vars);
    });
}
