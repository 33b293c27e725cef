//! The `aws` CLI (awscli from PyPI, installed once into a cache by the test itself) against
//! `nimbus up` with `--endpoint-url` (issue 12): `s3 cp|ls|sync|rm` and
//! `sqs send-message|receive-message` on the app's bucket and queue.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::harness::{TestApp, TestServer};

const MANIFEST: &str = "service: site
provider: { runtime: nodejs20.x }
buckets: [site]
queues: { jobs: {} }
functions:
  f: { handler: f.handler }
";

/// The folder awscli is installed in: `pip install --target` once per machine, into a
/// temporary folder renamed into place, so concurrent tests never see half an install.
fn awscli() -> PathBuf {
    let home = std::env::var_os("HOME").map_or_else(std::env::temp_dir, PathBuf::from);
    let dir = home.join(".cache/nimbus/test-tools/awscli-1");
    if dir.join("bin/aws").exists() {
        return dir;
    }
    let parent = dir.parent().expect("the cache folder has a parent");
    std::fs::create_dir_all(parent).expect("creating the test-tools cache");
    let staging = parent.join(format!("awscli-staging-{}", std::process::id()));
    let out = Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(["--target", &staging.to_string_lossy(), "awscli>=1.36,<2"])
        .output()
        .expect("running pip");
    assert!(
        out.status.success(),
        "pip install awscli: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Another test may have won the race; its install is as good as this one.
    if std::fs::rename(&staging, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    dir
}

struct Aws<'a> {
    install: PathBuf,
    endpoint: String,
    cwd: &'a Path,
}

impl Aws<'_> {
    /// Runs `aws ARGS` and answers its stdout; panics with its stderr when it fails.
    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("python3")
            .arg(self.install.join("bin/aws"))
            .args(["--endpoint-url", &self.endpoint])
            .args(args)
            .current_dir(self.cwd)
            .env("PYTHONPATH", &self.install)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .output()
            .expect("running aws");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "aws {args:?}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }
}

#[tokio::test]
async fn the_aws_cli_copies_lists_syncs_and_queues_through_the_endpoint() {
    let app = TestApp::new(&[
        ("serverless.yml", MANIFEST),
        ("f.js", "exports.handler = async () => 1;\n"),
        ("local/a.txt", "alpha"),
        ("local/sub/b.txt", "beta"),
        ("local/sub/c.json", "{\"c\":1}"),
    ]);
    let install = awscli();
    let server = TestServer::start(app.path(), &[]);
    let aws = Aws {
        install,
        endpoint: format!("http://{}", server.addr),
        cwd: app.path(),
    };

    aws.run(&["s3", "cp", "local/a.txt", "s3://site/a.txt"]);
    assert_eq!(aws.run(&["s3", "cp", "s3://site/a.txt", "-"]), "alpha");

    let synced = aws.run(&["s3", "sync", "local", "s3://site/synced"]);
    assert_eq!(synced.matches("upload:").count(), 3, "{synced}");
    // A second sync finds every file there, same size and not newer: nothing to do.
    let again = aws.run(&["s3", "sync", "local", "s3://site/synced"]);
    assert!(!again.contains("upload:"), "{again}");

    let listing = aws.run(&["s3", "ls", "s3://site/synced/sub/"]);
    assert!(listing.contains(" 4 b.txt"), "{listing}");
    assert!(listing.contains(" 7 c.json"), "{listing}");
    let top = aws.run(&["s3", "ls", "s3://site/"]);
    assert!(top.contains("PRE synced/"), "{top}");
    assert!(top.contains(" 5 a.txt"), "{top}");
    let buckets = aws.run(&["s3", "ls"]);
    assert!(buckets.contains(" site"), "{buckets}");

    let removed = aws.run(&["s3", "rm", "--recursive", "s3://site/synced"]);
    assert_eq!(removed.matches("delete:").count(), 3, "{removed}");
    let gone = aws.run(&["s3", "ls", "--recursive", "s3://site/"]);
    assert!(!gone.contains("synced"), "{gone}");

    let url = format!("http://{}/123456789012/jobs", server.addr);
    let sent: Value = serde_json::from_str(&aws.run(&[
        "sqs",
        "send-message",
        "--queue-url",
        &url,
        "--message-body",
        "from the cli",
    ]))
    .expect("send-message prints JSON");
    assert!(sent["MessageId"].is_string(), "{sent}");
    let got: Value = serde_json::from_str(&aws.run(&[
        "sqs",
        "receive-message",
        "--queue-url",
        &url,
        "--wait-time-seconds",
        "1",
    ]))
    .expect("receive-message prints JSON");
    assert_eq!(got["Messages"][0]["Body"], "from the cli", "{got}");
    assert_eq!(got["Messages"][0]["MessageId"], sent["MessageId"]);
}
