//! Python dependencies in serverless-python-requirements' layout: a `requirements.txt`
//! installed with pip into `.nimbus/requirements/`, once per content of the file, and
//! first on the function's `PYTHONPATH` (issue 11, part 5).

use serde_json::json;

use crate::harness::{TestApp, TestServer};

const MANIFEST: &str = "service: reports
provider:
  runtime: python3.12
  timeout: 10
plugins:
  - serverless-python-requirements
functions:
  daily:
    handler: handler.daily
  weekly:
    handler: jobs/weekly.run
";

const HANDLER_PY: &str = "import six


def daily(event, context):
    return {\"version\": six.__version__, \"from\": six.__file__}
";

fn app() -> TestApp {
    TestApp::new(&[
        ("serverless.yml", MANIFEST),
        // Pinned below the newest six, which this machine's own Python may have: the
        // function must get the pinned one.
        ("requirements.txt", "six==1.16.0\n"),
        ("handler.py", HANDLER_PY),
        (
            "jobs/weekly.py",
            "import six\n\ndef run(event, context):\n    return {\"version\": six.__version__}\n",
        ),
    ])
}

#[tokio::test]
async fn python_functions_import_their_requirements_installed_once_per_content() {
    let app = app();
    let server = TestServer::start(app.path(), &[]);
    let daily = server.invoke_ok(app.path(), "daily", &json!({})).await;
    assert_eq!(daily["version"], "1.16.0", "{daily}");
    let from = daily["from"].as_str().expect("a path");
    assert!(from.contains("/.nimbus/requirements/python3."), "{from}");
    // A function in a folder of its own uses the root's file, as the plugin does.
    assert_eq!(
        server.invoke_ok(app.path(), "weekly", &json!({})).await,
        json!({ "version": "1.16.0" })
    );
    let logs = server.logs();
    assert_eq!(
        logs.matches("nimbus: installing requirements.txt for ")
            .count(),
        1,
        "one install for both functions: {logs}"
    );
    drop(server);

    let again = app.nimbus(&["validate"]);
    assert_eq!(again.code, Some(0), "{}", again.stderr);
    assert!(!again.stderr.contains("installing"), "{}", again.stderr);
}

#[test]
fn an_unreachable_package_index_fails_the_function_naming_its_requirements_file() {
    let app = app();
    let no_wheels = tempfile::tempdir().expect("a temp dir");
    let out = app.nimbus_with_env(
        &["up", ".", "--port", "0"],
        &[
            ("PIP_INDEX_URL", "http://127.0.0.1:9/simple"),
            ("PIP_FIND_LINKS", no_wheels.path().to_str().expect("UTF-8")),
            ("PIP_RETRIES", "0"),
            ("PIP_TIMEOUT", "2"),
            ("PIP_NO_CACHE_DIR", "1"),
        ],
    );
    assert_eq!(out.code, Some(1), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("error: serverless.yml:9:1: functions.daily.handler: installing requirements.txt: `pip install -r "),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("No matching distribution found for six==1.16.0"),
        "{}",
        out.stderr
    );
    assert!(
        !app.path().join(".nimbus/requirements").exists()
            || std::fs::read_dir(app.path().join(".nimbus/requirements"))
                .map(|d| {
                    d.filter_map(Result::ok)
                        .all(|e| e.file_name().to_string_lossy().ends_with(".lock"))
                })
                .unwrap_or(true),
        "no half-installed folder is left"
    );
}
