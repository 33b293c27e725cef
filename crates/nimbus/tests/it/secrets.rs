//! Secrets: `nimbus secret set|ls|rm`, `${secret:NAME}` in environments, and values never shown.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::harness::{NIMBUS, Output, TestApp, TestServer};

const VALUE: &str = "hunter2-correct-horse-battery";

const MANIFEST: &str = r#"
service: vault
provider:
  runtime: nodejs20.x
  timeout: 3
  environment:
    DB_URL: 'postgres://app:${secret:DB_PASSWORD}@localhost/app'
functions:
  reveal:
    handler: reveal.handler
    environment:
      DB_PASSWORD: ${secret:DB_PASSWORD}
    events:
      - httpApi: GET /reveal
  leak:
    handler: leak.handler
    environment:
      DB_PASSWORD: ${secret:DB_PASSWORD}
    events:
      - httpApi: GET /leak
"#;

const REVEAL_JS: &str = r#"
exports.handler = async () => ({
  statusCode: 200,
  body: JSON.stringify({ password: process.env.DB_PASSWORD, url: process.env.DB_URL }),
});
"#;

const LEAK_JS: &str = r#"
exports.handler = async (event) => {
  if (event.queryStringParameters?.fail) throw new Error(`login refused for ${process.env.DB_PASSWORD}`);
  console.log(`connecting with ${process.env.DB_PASSWORD} now`);
  console.error(`url is ${process.env.DB_URL}`);
  return { statusCode: 200, body: 'leaked' };
};
"#;

fn app() -> TestApp {
    TestApp::new(&[
        ("nimbus.yaml", MANIFEST),
        ("reveal.js", REVEAL_JS),
        ("leak.js", LEAK_JS),
    ])
}

/// Runs `nimbus <args>` in `dir` with `stdin` as its standard input.
fn nimbus_with_stdin(dir: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(NIMBUS)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running nimbus");
    // nimbus may exit without reading stdin (a bad name); the broken pipe is then expected.
    let _ = child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(stdin.as_bytes());
    let output = child.wait_with_output().expect("waiting for nimbus");
    Output {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if let Ok(bytes) = std::fs::read(&path)
            && bytes
                .windows(needle.len())
                .any(|window| window == needle.as_bytes())
        {
            found.push(path.display().to_string());
        }
    }
    found
}

#[tokio::test]
async fn functions_get_secrets_set_on_stdin_and_nothing_else_shows_them() {
    let app = app();
    let dir = app.path();
    // A trailing newline, as `echo` leaves, is not part of the value.
    let out = nimbus_with_stdin(
        dir,
        &["secret", "set", "DB_PASSWORD"],
        &format!("{VALUE}\n"),
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(!out.stdout.contains(VALUE) && !out.stderr.contains(VALUE));

    let key_mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.join(".nimbus/secrets.key"))
            .expect("the key file exists")
            .permissions(),
    );
    assert_eq!(key_mode & 0o777, 0o600);

    let ls = app.nimbus(&["secret", "ls"]);
    assert_eq!(ls.code, Some(0), "{}", ls.stderr);
    assert!(ls.stdout.contains("DB_PASSWORD"), "{}", ls.stdout);
    assert!(ls.stdout.contains("UPDATED"), "{}", ls.stdout);
    assert!(
        !ls.stdout.contains(VALUE),
        "ls shows no values:\n{}",
        ls.stdout
    );

    let validate = app.nimbus(&["validate"]);
    assert_eq!(validate.code, Some(0), "{}", validate.stderr);
    assert!(!validate.stdout.contains(VALUE) && !validate.stderr.contains(VALUE));

    let server = TestServer::start(dir, &[]);
    let res = server.get("/reveal").await;
    assert_eq!(res.status, 200, "{}", res.text());
    let body = res.json();
    assert_eq!(body["password"], VALUE, "the function sees the value");
    assert_eq!(
        body["url"],
        format!("postgres://app:{VALUE}@localhost/app"),
        "a secret inside a longer value"
    );

    let res = server.get("/leak").await;
    assert_eq!(res.status, 200, "{}", res.text());
    let request_id = res
        .header("apigw-requestid")
        .expect("request id header")
        .to_owned();
    let logs = app
        .nimbus_until(&["logs", "leak", "--request", &request_id], |out| {
            out.contains("REPORT")
        })
        .await;
    assert!(logs.contains("connecting with **** now"), "{logs}");
    assert!(
        logs.contains("url is postgres://app:****@localhost/app"),
        "{logs}"
    );
    assert!(!logs.contains(VALUE), "stored logs hold the value:\n{logs}");
    let echoed = server.logs();
    assert!(echoed.contains("connecting with **** now"), "{echoed}");
    assert!(
        !echoed.contains(VALUE),
        "echoed logs hold the value:\n{echoed}"
    );

    // An error message holding the value is recorded with it hidden.
    let res = server.get("/leak?fail=1").await;
    assert_eq!(res.status, 502, "{}", res.text());
    let failed = app
        .nimbus_until(&["invocations", "leak", "--failed", "--json"], |out| {
            out.contains("login refused")
        })
        .await;
    assert!(failed.contains("login refused for ****"), "{failed}");
    assert!(
        !failed.contains(VALUE),
        "the recorded error holds the value:\n{failed}"
    );

    let functions = server.admin(dir, "GET", "/functions", None).await;
    assert_eq!(functions.status, 200);
    assert!(!functions.text().contains(VALUE), "{}", functions.text());

    // Invoked in this process (no server runs now), the output is redacted too.
    drop(server);
    let out = app.nimbus(&["invoke", "leak"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stderr.contains("connecting with **** now"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains(VALUE), "{}", out.stderr);

    // Nothing nimbus wrote (database, WAL, logs, key) holds the value in the clear.
    let leaks = files_containing(&dir.join(".nimbus"), VALUE);
    assert!(leaks.is_empty(), "plaintext found in {leaks:?}");
}

#[test]
fn an_unknown_secret_fails_validate_and_says_how_to_set_it() {
    let app = app();
    let out = app.nimbus(&["validate"]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    for text in [
        "nimbus.yaml:7:13: provider.environment.DB_URL:",
        "nimbus.yaml:12:20: functions.reveal.environment.DB_PASSWORD:",
        "secret `DB_PASSWORD` is not set",
        "`nimbus secret set DB_PASSWORD` creates it",
    ] {
        assert!(
            out.stderr.contains(text),
            "stderr lacks {text:?}:\n{}",
            out.stderr
        );
    }
    assert!(
        !app.path().join(".nimbus").exists(),
        "validate creates no state"
    );
}

#[test]
fn secret_set_with_empty_stdin_fails_clearly() {
    let app = app();
    for stdin in ["", "\n"] {
        let out = nimbus_with_stdin(app.path(), &["secret", "set", "DB_PASSWORD"], stdin);
        assert_eq!(out.code, Some(1), "{stdin:?}: {}", out.stderr);
        assert!(
            out.stderr
                .contains("no value on stdin for secret DB_PASSWORD"),
            "{}",
            out.stderr
        );
    }
    let out = nimbus_with_stdin(app.path(), &["secret", "set", "bad name"], VALUE);
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains("invalid secret `bad name`"),
        "{}",
        out.stderr
    );
    let ls = app.nimbus(&["secret", "ls"]);
    assert_eq!(ls.code, Some(0), "{}", ls.stderr);
    assert_eq!(ls.stdout, "", "nothing was set");
}

#[test]
fn secret_rm_removes_and_a_wrong_key_is_a_clear_error() {
    let app = app();
    let dir = app.path();
    for name in ["DB_PASSWORD", "OTHER"] {
        let out = nimbus_with_stdin(dir, &["secret", "set", name], VALUE);
        assert_eq!(out.code, Some(0), "{}", out.stderr);
    }
    let out = app.nimbus(&["secret", "rm", "OTHER"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let out = app.nimbus(&["secret", "rm", "OTHER"]);
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains("no secret named OTHER"),
        "{}",
        out.stderr
    );
    let ls = app.nimbus(&["secret", "ls"]);
    assert!(
        ls.stdout.contains("DB_PASSWORD") && !ls.stdout.contains("OTHER"),
        "{}",
        ls.stdout
    );

    std::fs::write(
        dir.join(".nimbus/secrets.key"),
        format!("{}\n", "00".repeat(32)),
    )
    .expect("replacing the key");
    let out = app.nimbus(&["validate"]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("secret `DB_PASSWORD` cannot be decrypted with the key in"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains(VALUE));
}
