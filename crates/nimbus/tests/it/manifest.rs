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
        "plugins: [serverless-offline, serverless-domain-manager]\ncustom: {{ x: 1 }}\nresources:\n  Resources:\n    Cdn: {{ Type: 'AWS::CloudFront::Distribution' }}\n{HEAD}  api:\n    handler: ok.handler\n    events:\n      - alexaSkill: amzn1.ask.skill.x\n      - httpApi: GET /ok\n"
    );
    let (code, stderr) = validate(&manifest);
    assert_eq!(code, Some(0), "{stderr}");
    // Plugins nimbus stands in for (serverless-offline) and `custom` are not warned about.
    for key in [
        "plugins[1]: the Serverless plugin `serverless-domain-manager`",
        "resources",
        "functions.api.events[0]",
    ] {
        assert!(
            stderr.contains("warning: serverless.yml:") && stderr.contains(key),
            "no warning for {key}:\n{stderr}"
        );
    }
    assert!(!stderr.contains("serverless-offline"), "{stderr}");
    assert!(!stderr.contains("custom"), "{stderr}");
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

/// `node --version` / `python3 --version` of this machine, as the runtimes see them.
fn installed(program: &str) -> String {
    let out = std::process::Command::new(program)
        .arg("--version")
        .output()
        .expect("running --version");
    String::from_utf8_lossy(if out.stdout.is_empty() {
        &out.stderr
    } else {
        &out.stdout
    })
    .trim()
    .to_owned()
}

#[test]
fn a_runtime_version_other_than_the_machines_is_a_warning_naming_its_functions() {
    let node = installed("node");
    let node_major = node.trim_start_matches('v').split('.').next().unwrap_or("");
    let other_node = if node_major == "18" {
        "nodejs20.x"
    } else {
        "nodejs18.x"
    };
    // The machine's own version, when nimbus knows it as a runtime name.
    let same_node = match node_major {
        "18" | "20" | "22" => format!("nodejs{node_major}.x"),
        _ => other_node.to_owned(),
    };
    let python = installed("python3");
    let python_minor = python.split('.').nth(1).unwrap_or("");
    let other_python = if python_minor == "9" {
        "python3.12"
    } else {
        "python3.9"
    };
    let manifest = format!(
        "service: versions\nfunctions:\n  a:\n    handler: ok.handler\n    runtime: {other_node}\n  b:\n    handler: ok.handler\n    runtime: {other_node}\n  c:\n    handler: ok.handler\n    runtime: {same_node}\n  p:\n    handler: ok.handler\n    runtime: {other_python}\n"
    );
    let app = TestApp::new(&[
        ("nimbus.yaml", &manifest),
        ("ok.js", OK_JS),
        ("ok.py", "def handler(e, c):\n    return 1\n"),
    ]);
    let out = app.nimbus(&["validate"]);
    assert_eq!(
        out.code,
        Some(0),
        "a version difference is not an error: {}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&format!(
            "warning: a, b ask for {other_node}, but node on this machine is {node}; running them with that"
        )),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&format!(
            "warning: p asks for {other_python}, but python3 on this machine is {python}; running it with that"
        )),
        "{}",
        out.stderr
    );
    if same_node != other_node {
        assert!(
            !out.stderr.contains(&same_node),
            "no warning for the machine's own version: {}",
            out.stderr
        );
    }
}
