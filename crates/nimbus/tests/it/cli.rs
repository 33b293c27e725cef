//! `nimbus invoke`, in process and against a running `nimbus up`.

use crate::harness::{TestApp, TestServer};

const COUNTER_JS: &str = r#"
let count = 0;
exports.handler = async (event, context) => {
  count += 1;
  if (event.fail) throw new RangeError('bad input: ' + event.fail);
  return { got: event, count, requestId: context.awsRequestId };
};
"#;

const MANIFEST: &str = r#"
service: cli
provider:
  runtime: nodejs20.x
functions:
  counter:
    handler: counter.handler
    events:
      - httpApi: GET /counter
  broken:
    handler: broken.handler
"#;

fn app() -> TestApp {
    TestApp::new(&[
        ("nimbus.yaml", MANIFEST),
        ("counter.js", COUNTER_JS),
        ("broken.js", "exports.handler = async () => { return 1 +;\n"),
    ])
}

#[test]
fn invoke_in_process_prints_the_result() {
    let app = app();
    let out = app.nimbus(&["invoke", "counter", "--data", r#"{"a":1}"#]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let result: serde_json::Value = serde_json::from_str(out.stdout.trim()).expect("json");
    assert_eq!(result["got"]["a"], 1);
    assert_eq!(result["count"], 1);
}

#[test]
fn invoke_reports_function_errors_with_a_non_zero_exit() {
    let app = app();
    let out = app.nimbus(&["invoke", "counter", "--data", r#"{"fail":"x"}"#]);
    assert_eq!(out.code, Some(1));
    let error: serde_json::Value = serde_json::from_str(out.stdout.trim()).expect("json");
    assert_eq!(error["errorType"], "RangeError");
    assert_eq!(error["errorMessage"], "bad input: x");
    let out = app.nimbus(&["invoke", "broken"]);
    assert_eq!(out.code, Some(1));
    assert!(
        out.stdout.contains("Runtime.UserCodeSyntaxError"),
        "{}",
        out.stdout
    );
}

#[test]
fn invoke_rejects_bad_input_clearly() {
    let app = app();
    let out = app.nimbus(&["invoke", "nope"]);
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains("no function named \"nope\"") && out.stderr.contains("counter"),
        "{}",
        out.stderr
    );
    let out = app.nimbus(&["invoke", "counter", "--data", "{not json"]);
    assert_eq!(out.code, Some(1));
    assert!(out.stderr.contains("not valid JSON"), "{}", out.stderr);
    let out = app.nimbus(&["invoke", "counter", "--file", "missing.json"]);
    assert_eq!(out.code, Some(1));
    assert!(out.stderr.contains("missing.json"), "{}", out.stderr);
}

#[tokio::test]
async fn invoke_goes_through_a_running_up_and_shares_its_warm_instance() {
    let app = app();
    let server = TestServer::start(app.path(), &[]);
    let first = server.get("/counter").await;
    assert_eq!(first.status, 200);
    let dir = app.path().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(crate::harness::NIMBUS)
            .args(["invoke", "counter", "--data", r#"{"b":2}"#])
            .current_dir(dir)
            .output()
            .expect("running nimbus invoke")
    })
    .await
    .expect("joining");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(result["got"]["b"], 2);
    assert_eq!(
        result["count"], 2,
        "the running app's warm instance answered"
    );
}
