//! Bad manifests: every error names file, line and key, and nothing starts.

use crate::harness::TestApp;

const OK_JS: &str = "exports.handler = async () => ({ statusCode: 200, body: 'ok' });\n";

/// Runs `nimbus validate` on a manifest; returns exit code and stderr.
fn validate(manifest: &str) -> (Option<i32>, String) {
    let app = TestApp::new(&[("serverless.yml", manifest), ("ok.js", OK_JS)]);
    let out = app.nimbus(&["validate"]);
    (out.code, out.stderr)
}

fn assert_error(manifest: &str, expected: &[&str]) {
    let (code, stderr) = validate(manifest);
    assert_eq!(code, Some(1), "non-zero exit; stderr:\n{stderr}");
    for text in expected {
        assert!(stderr.contains(text), "stderr lacks {text:?}:\n{stderr}");
    }
}

const HEAD: &str = "service: bad\nprovider:\n  runtime: nodejs20.x\nfunctions:\n";

#[test]
fn wrong_type_names_file_line_and_key() {
    assert_error(
        &format!("{HEAD}  api:\n    handler: ok.handler\n    memorySize: lots\n"),
        &["serverless.yml:7:", "functions.api.memorySize"],
    );
}

#[test]
fn missing_handler_file_is_an_error() {
    assert_error(
        &format!("{HEAD}  api:\n    handler: missing.handler\n"),
        &["serverless.yml:6:", "functions.api.handler", "missing.js"],
    );
}

#[test]
fn missing_handler_key_is_an_error() {
    assert_error(
        &format!("{HEAD}  api:\n    timeout: 3\n"),
        &["serverless.yml:5:", "functions.api"],
    );
}

#[test]
fn unknown_runtime_is_an_error() {
    assert_error(
        &format!("{HEAD}  api:\n    handler: ok.handler\n    runtime: cobol85\n"),
        &["serverless.yml:7:", "functions.api.runtime", "cobol85"],
    );
}

#[test]
fn duplicate_route_is_an_error() {
    assert_error(
        &format!(
            "{HEAD}  a:\n    handler: ok.handler\n    events:\n      - httpApi: GET /x\n  b:\n    handler: ok.handler\n    events:\n      - httpApi: GET /x\n"
        ),
        &["serverless.yml:12:", "functions.b.events[0]"],
    );
}

#[test]
fn unresolvable_variable_is_an_error() {
    assert_error(
        &format!(
            "{HEAD}  api:\n    handler: ok.handler\n    environment:\n      DB: ${{env:NIMBUS_TEST_SURELY_UNSET_VAR}}\n"
        ),
        &[
            "serverless.yml:8:",
            "functions.api.environment.DB",
            "NIMBUS_TEST_SURELY_UNSET_VAR",
        ],
    );
}

#[test]
fn malformed_yaml_is_an_error() {
    assert_error("service: bad\nprovider: [unclosed\n", &["serverless.yml:"]);
}

#[test]
fn every_error_is_reported_at_once() {
    let (code, stderr) = validate(&format!(
        "{HEAD}  a:\n    handler: missing.handler\n  b:\n    handler: ok.handler\n    timeout: soon\n"
    ));
    assert_eq!(code, Some(1));
    assert!(stderr.contains("functions.b.timeout"), "{stderr}");
}

#[test]
fn cloud_only_keys_are_warnings_not_errors() {
    let manifest = format!(
        "plugins: [serverless-offline]\ncustom: {{ x: 1 }}\nresources:\n  Resources:\n    Table: {{ Type: 'AWS::DynamoDB::Table' }}\n{HEAD}  api:\n    handler: ok.handler\n    events:\n      - websocket: {{ route: $connect }}\n      - httpApi: GET /ok\n"
    );
    let (code, stderr) = validate(&manifest);
    assert_eq!(code, Some(0), "{stderr}");
    for key in ["plugins", "custom", "resources", "functions.api.events[0]"] {
        assert!(
            stderr.contains("warning: serverless.yml:") && stderr.contains(key),
            "no warning for {key}:\n{stderr}"
        );
    }
}

#[test]
fn up_refuses_a_bad_manifest() {
    let app = TestApp::new(&[
        (
            "nimbus.yaml",
            &format!("{HEAD}  api:\n    handler: ok.handler\n    runtime: java8\n"),
        ),
        ("ok.js", OK_JS),
    ]);
    let out = app.nimbus(&["up", ".", "--port", "0"]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("functions.api.runtime"),
        "{}",
        out.stderr
    );
}

#[test]
fn variables_resolve_from_env_self_and_stage() {
    let manifest = r#"
service: vars
custom:
  mem: 256
provider:
  runtime: nodejs20.x
  environment:
    STAGE: ${sls:stage}
    FROM_ENV: ${env:NIMBUS_TEST_SURELY_UNSET_VAR, 'fallback'}
functions:
  env:
    handler: env.handler
    memorySize: ${self:custom.mem}
"#;
    let env_js = "exports.handler = async () => ({ stage: process.env.STAGE, fromEnv: process.env.FROM_ENV, mem: process.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE });\n";
    let app = TestApp::new(&[("nimbus.yaml", manifest), ("env.js", env_js)]);
    let out = app.nimbus(&["invoke", "env", "--stage", "prod"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let result: serde_json::Value = serde_json::from_str(out.stdout.trim()).expect("json result");
    assert_eq!(result["stage"], "prod");
    assert_eq!(result["fromEnv"], "fallback");
    assert_eq!(result["mem"], "256");
}
