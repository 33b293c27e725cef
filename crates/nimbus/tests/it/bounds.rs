//! Bounded under hostile and careless input (issue 20): a manifest over a limit is refused
//! fast and small, and nothing in it is dropped without a word.

use std::process::Command;
use std::time::Duration;

use crate::harness::{NIMBUS, TestApp};

const OK_JS: &str = "exports.handler = async () => ({ statusCode: 200, body: 'ok' });\n";

const HEAD: &str = "service: bounds\nprovider:\n  runtime: nodejs20.x\nfunctions:\n  api:\n    handler: ok.handler\n";

/// What one run of `nimbus validate` took.
struct Run {
    code: Option<i32>,
    stderr: String,
    elapsed: Duration,
    max_rss_kb: u64,
}

/// Runs `nimbus validate` on an app holding `manifest`, measuring its wall time and peak
/// resident memory. A small python3 starts it and reports its `ru_maxrss`: a child forked
/// from this test process would count this process's memory (vfork shares it, and Linux
/// keeps the peak across exec).
fn validate(manifest: &str) -> Run {
    let app = TestApp::new(&[("serverless.yml", manifest), ("ok.js", OK_JS)]);
    let out = Command::new("python3")
        .args(["-c", MEASURE_PY, NIMBUS, "validate"])
        .current_dir(app.path())
        .output()
        .expect("running python3");
    let report = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<&str> = report.split_whitespace().collect();
    let [code, max_rss_kb, elapsed_s] = fields.as_slice() else {
        panic!(
            "unexpected report {report:?}; stderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    Run {
        code: code.parse().ok(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed: Duration::from_secs_f64(elapsed_s.parse().expect("elapsed seconds")),
        max_rss_kb: max_rss_kb.parse().expect("max rss"),
    }
}

/// Runs argv with stdout discarded and prints its exit code, peak RSS (kB) and wall time.
const MEASURE_PY: &str = "
import resource, subprocess, sys, time
started = time.monotonic()
res = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL)
elapsed = time.monotonic() - started
print(res.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, elapsed)
";

/// Asserts the run was refused with an error holding each of `expected`, in well under a
/// second (the bound; the binary's own start is part of it) and under 100 MB.
fn assert_refused(run: &Run, expected: &[&str]) {
    assert_eq!(run.code, Some(1), "exit 1; stderr:\n{}", run.stderr);
    for text in expected {
        assert!(
            run.stderr.contains(text),
            "stderr lacks {text:?}:\n{}",
            run.stderr
        );
    }
    assert!(
        run.elapsed < Duration::from_secs(1),
        "refused after {:?}",
        run.elapsed
    );
    assert!(
        run.max_rss_kb < 100 * 1024,
        "peak RSS {} kB while refusing",
        run.max_rss_kb
    );
}

#[test]
fn an_anchor_bomb_is_refused_in_under_a_second_and_100_mb() {
    let mut manifest = format!("{HEAD}custom:\n  l0: &l0 lol\n");
    for level in 1..10 {
        let items = vec![format!("*l{}", level - 1); 10].join(", ");
        manifest.push_str(&format!("  l{level}: &l{level} [{items}]\n"));
    }
    let run = validate(&manifest);
    assert_refused(&run, &["serverless.yml:", "custom.l5", "at most 100000"]);
}

#[test]
fn a_variable_chain_doubling_40_times_is_refused_in_under_a_second_and_100_mb() {
    let mut manifest =
        format!("{HEAD}    environment:\n      BIG: ${{self:custom.a40}}\ncustom:\n  a0: xx\n");
    for step in 1..=40 {
        let prev = step - 1;
        manifest.push_str(&format!(
            "  a{step}: ${{self:custom.a{prev}}}${{self:custom.a{prev}}}\n"
        ));
    }
    let run = validate(&manifest);
    assert_refused(&run, &["serverless.yml:", "custom.a", "at most 32 long"]);
    // Short of the depth limit, the size limit stops it.
    let mut manifest =
        format!("{HEAD}    environment:\n      BIG: ${{self:custom.a25}}\ncustom:\n  a0: xx\n");
    for step in 1..=25 {
        let prev = step - 1;
        manifest.push_str(&format!(
            "  a{step}: ${{self:custom.a{prev}}}${{self:custom.a{prev}}}\n"
        ));
    }
    let run = validate(&manifest);
    assert_refused(&run, &["custom.a20", "more than 1048576 bytes"]);
}

#[test]
fn a_manifest_over_1_mib_is_refused_without_reading_it_whole() {
    let manifest = format!("{HEAD}# {}\n", "x".repeat(64 << 20));
    let run = validate(&manifest);
    assert_refused(&run, &["serverless.yml:1:1:", "larger than 1048576 bytes"]);
}

#[test]
fn a_duplicate_key_is_an_error_naming_both_lines() {
    let manifest =
        format!("{HEAD}    events:\n      - httpApi: GET /a\n  api:\n    handler: ok.handler\n");
    let run = validate(&manifest);
    assert_refused(
        &run,
        &["serverless.yml:9:3: functions.api: duplicate key `api` (also on line 5)"],
    );
}

#[test]
fn a_nul_in_a_value_is_an_error_naming_the_key() {
    let manifest = format!(
        "{HEAD}    events:\n      - httpApi: \"GET /a\0\"\n  other:\n    handler: ok.handler\n"
    );
    let run = validate(&manifest);
    assert_refused(
        &run,
        &["serverless.yml:8:18: functions.api.events[0].httpApi: control character U+0000"],
    );
}
