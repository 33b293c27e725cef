//! The shipped Node.js and Python runtimes: the handler styles Lambda's own runtimes
//! accept, the context object, and the error shapes, invoked through the Lambda Invoke API
//! of a running `nimbus up`.

use serde_json::{Value, json};

use crate::harness::{TestApp, TestServer};

const MANIFEST: &str = r#"
service: runtimes
provider:
  runtime: nodejs20.x
  memorySize: 256
  timeout: 7
functions:
  esm:
    handler: esm.handler
  esm-package:
    handler: pkg/main.handler
  callback:
    handler: callback.handler
  sync:
    handler: sync.handler
  legacy-done:
    handler: legacy.handler
  no-export:
    handler: sync.missing
  top-level-throw:
    handler: throws.handler
  py:
    handler: ctx.handler
    runtime: python3.12
    memorySize: 512
  py-no-export:
    handler: ctx.missing
    runtime: python3.12
  py-import-error:
    handler: needs_missing.handler
    runtime: python3.12
"#;

/// Reports the context every style gets, so each test can check it.
const CONTEXT_FIELDS: &str = r#"({
  functionName: context.functionName,
  functionVersion: context.functionVersion,
  memoryLimitInMB: context.memoryLimitInMB,
  invokedFunctionArn: context.invokedFunctionArn,
  awsRequestId: context.awsRequestId,
  remaining: context.getRemainingTimeInMillis(),
})"#;

fn app() -> TestApp {
    let esm = format!(
        "let calls = 0;\nexport const handler = async (event, context) => {{\n  calls += 1;\n  if (event.fail) throw new RangeError(`refused ${{event.fail}}`);\n  return {{ style: 'esm', calls, context: {CONTEXT_FIELDS} }};\n}};\n"
    );
    let package = "import { basename } from 'node:path';\nexport async function handler(event) {\n  return { style: 'package-module', file: basename(import.meta.url) };\n}\n";
    let callback = format!(
        "exports.handler = (event, context, callback) => {{\n  setTimeout(() => {{\n    if (event.fail) callback(new TypeError('callback refused'));\n    else callback(null, {{ style: 'callback', context: {CONTEXT_FIELDS} }});\n  }}, 10);\n}};\n"
    );
    let legacy = "exports.handler = (event, context) => {\n  if (event.fail) context.fail(new Error('done with an error'));\n  else context.done(null, { style: 'context.done' });\n};\n";
    let ctx_py = r#"
import json

calls = 0

class Refused(Exception):
    pass

def handler(event, context):
    global calls
    calls += 1
    if event.get("fail"):
        raise Refused("refused " + event["fail"])
    if event.get("decimals"):
        import decimal

        return {"price": decimal.Decimal("1.50"), "count": decimal.Decimal("3")}
    return {
        "style": "python",
        "calls": calls,
        "context": {
            "functionName": context.function_name,
            "functionVersion": context.function_version,
            "memoryLimitInMB": context.memory_limit_in_mb,
            "invokedFunctionArn": context.invoked_function_arn,
            "awsRequestId": context.aws_request_id,
            "remaining": context.get_remaining_time_in_millis(),
        },
    }
"#;
    TestApp::new(&[
        ("nimbus.yaml", MANIFEST),
        ("esm.mjs", &esm),
        ("pkg/package.json", r#"{ "type": "module" }"#),
        ("pkg/main.js", package),
        ("callback.js", &callback),
        (
            "sync.js",
            "exports.handler = (event) => ({ style: 'sync', echo: event });\n",
        ),
        ("legacy.js", legacy),
        ("throws.js", "throw new Error('cannot start');\n"),
        ("ctx.py", ctx_py),
        ("needs_missing.py", "import module_that_is_not_there\n"),
    ])
}

/// POST /2015-03-31/functions/{name}/invocations: (function error header, payload).
async fn invoke(server: &TestServer, app: &TestApp, name: &str, event: Value) -> (bool, Value) {
    let res = server
        .admin_json(
            app.path(),
            "POST",
            &format!("/2015-03-31/functions/{name}/invocations"),
            &event.to_string(),
        )
        .await;
    assert_eq!(res.status, 200, "{name}: {}", res.text());
    (res.header("x-amz-function-error").is_some(), res.json())
}

fn assert_context(name: &str, context: &Value, memory: u64) {
    assert_eq!(context["functionName"], format!("runtimes-dev-{name}"));
    assert_eq!(context["functionVersion"], "$LATEST");
    assert_eq!(
        context["memoryLimitInMB"].to_string().trim_matches('"'),
        memory.to_string()
    );
    let arn = context["invokedFunctionArn"].as_str().unwrap_or_default();
    assert!(
        arn.starts_with("arn:aws:lambda:")
            && arn.ends_with(&format!(":function:runtimes-dev-{name}")),
        "{name}: {arn}"
    );
    assert_eq!(
        context["awsRequestId"].as_str().map(str::len),
        Some(36),
        "{name}"
    );
    let remaining = context["remaining"].as_i64().unwrap_or(-1);
    assert!(
        (1..=7000).contains(&remaining),
        "{name}: {remaining} ms left of 7 s"
    );
}

#[tokio::test]
async fn node_handlers_of_every_style_answer_with_the_lambda_context() {
    let app = app();
    let server = TestServer::start(app.path(), &[]);

    for round in 1..=2 {
        let (failed, out) = invoke(&server, &app, "esm", json!({})).await;
        assert!(!failed, "{out}");
        assert_eq!(out["style"], "esm");
        assert_eq!(
            out["calls"], round,
            "module state survives between invocations"
        );
        assert_context("esm", &out["context"], 256);
    }
    let (failed, out) = invoke(&server, &app, "esm-package", json!({})).await;
    assert!(!failed, "{out}");
    assert_eq!(out, json!({ "style": "package-module", "file": "main.js" }));

    let (failed, out) = invoke(&server, &app, "callback", json!({})).await;
    assert!(!failed, "{out}");
    assert_eq!(out["style"], "callback");
    assert_context("callback", &out["context"], 256);

    let (failed, out) = invoke(&server, &app, "sync", json!({ "n": [1, 2] })).await;
    assert!(!failed, "{out}");
    assert_eq!(out, json!({ "style": "sync", "echo": { "n": [1, 2] } }));

    let (failed, out) = invoke(&server, &app, "legacy-done", json!({})).await;
    assert!(!failed, "{out}");
    assert_eq!(out["style"], "context.done");
}

#[tokio::test]
async fn node_errors_have_lambdas_shape_and_init_errors_name_the_cause() {
    let app = app();
    let server = TestServer::start(app.path(), &[]);

    let (failed, out) = invoke(&server, &app, "esm", json!({ "fail": "x" })).await;
    assert!(failed);
    assert_eq!(out["errorType"], "RangeError");
    assert_eq!(out["errorMessage"], "refused x");
    let stack = out["stackTrace"]
        .as_array()
        .expect("stackTrace is a list of lines");
    assert!(
        stack
            .iter()
            .any(|l| l.as_str().is_some_and(|l| l.contains("esm.mjs"))),
        "{out}"
    );

    let (failed, out) = invoke(&server, &app, "callback", json!({ "fail": true })).await;
    assert!(failed);
    assert_eq!(
        (out["errorType"].as_str(), out["errorMessage"].as_str()),
        (Some("TypeError"), Some("callback refused"))
    );

    let (failed, out) = invoke(&server, &app, "legacy-done", json!({ "fail": true })).await;
    assert!(failed);
    assert_eq!(out["errorMessage"], "done with an error");

    let (failed, out) = invoke(&server, &app, "no-export", json!({})).await;
    assert!(failed);
    assert_eq!(out["errorType"], "Runtime.HandlerNotFound", "{out}");
    assert!(
        out["errorMessage"]
            .as_str()
            .unwrap_or_default()
            .contains("sync.missing"),
        "{out}"
    );

    let (failed, out) = invoke(&server, &app, "top-level-throw", json!({})).await;
    assert!(failed);
    assert_eq!(out["errorMessage"], "cannot start", "{out}");

    // The instance that failed its request is replaced; the warm one still answers.
    let (failed, out) = invoke(&server, &app, "esm", json!({})).await;
    assert!(!failed, "{out}");
}

#[tokio::test]
async fn python_handlers_get_the_context_and_report_errors_like_lambda() {
    let app = app();
    let server = TestServer::start(app.path(), &[]);

    for round in 1..=2 {
        let (failed, out) = invoke(&server, &app, "py", json!({})).await;
        assert!(!failed, "{out}");
        assert_eq!(
            out["calls"], round,
            "module state survives between invocations"
        );
        assert_context("py", &out["context"], 512);
    }
    // DynamoDB hands Python handlers Decimals; they serialise as numbers, as on Lambda.
    let (failed, out) = invoke(&server, &app, "py", json!({ "decimals": true })).await;
    assert!(!failed, "{out}");
    assert_eq!(out, json!({ "price": 1.5, "count": 3 }));

    let (failed, out) = invoke(&server, &app, "py", json!({ "fail": "y" })).await;
    assert!(failed);
    assert_eq!(out["errorType"], "Refused");
    assert_eq!(out["errorMessage"], "refused y");
    assert!(out["stackTrace"].is_array(), "{out}");

    let (failed, out) = invoke(&server, &app, "py-no-export", json!({})).await;
    assert!(failed);
    assert_eq!(out["errorType"], "Runtime.HandlerNotFound", "{out}");

    let (failed, out) = invoke(&server, &app, "py-import-error", json!({})).await;
    assert!(failed);
    assert_eq!(out["errorType"], "Runtime.ImportModuleError", "{out}");
    assert!(
        out["errorMessage"]
            .as_str()
            .unwrap_or_default()
            .contains("module_that_is_not_there"),
        "{out}"
    );
}
