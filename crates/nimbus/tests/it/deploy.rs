//! `nimbus server` and `nimbus deploy`: tokens, numbered versions, `live` and other
//! aliases, canaries, rollback, and deploys that drop no request.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::harness::{NIMBUS, Output, Response, TestApp, request, signal};

/// A running `nimbus server` on a fresh state folder. Dropping it stops the process.
pub(crate) struct Host {
    child: Child,
    pub(crate) gateway: SocketAddr,
    admin: SocketAddr,
    state: tempfile::TempDir,
    stderr_path: PathBuf,
}

impl Host {
    pub(crate) fn start() -> Host {
        Host::start_with(&[])
    }

    /// Starts a server on a fresh state folder with `extra` flags (`--cluster URL`).
    pub(crate) fn start_with(extra: &[&str]) -> Host {
        Host::start_in_with(tempfile::tempdir().expect("creating a temp dir"), extra)
    }

    /// Starts a server on the state folder `state/server`.
    fn start_in(state: tempfile::TempDir) -> Host {
        Host::start_in_with(state, &[])
    }

    fn start_in_with(state: tempfile::TempDir, extra: &[&str]) -> Host {
        let stderr_path = state.path().join("stderr.log");
        let stderr = std::fs::File::create(&stderr_path).expect("creating stderr log");
        let mut child = Command::new(NIMBUS)
            .arg("server")
            .arg("--state")
            .arg(state.path().join("server"))
            .args(["--port", "0", "--admin-port", "0", "--idle-timeout", "30s"])
            .args(extra)
            .env("NIMBUS_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("starting nimbus server");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut address = |marker: &str| -> SocketAddr {
            match lines.next() {
                Some(Ok(line)) => line
                    .split(marker)
                    .nth(1)
                    .unwrap_or_else(|| panic!("unexpected banner line {line:?}"))
                    .trim()
                    .parse()
                    .expect("banner address"),
                _ => panic!(
                    "nimbus server exited before listening; stderr:\n{}",
                    std::fs::read_to_string(&stderr_path).unwrap_or_default()
                ),
            }
        };
        let gateway = address("listening on http://");
        let admin = address("admin API on http://");
        std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
        Host {
            child,
            gateway,
            admin,
            state,
            stderr_path,
        }
    }

    fn state_arg(&self) -> String {
        self.state.path().join("server").display().to_string()
    }

    /// Runs `nimbus server token <args> --state DIR`.
    fn token(&self, args: &[&str]) -> Output {
        let state = self.state_arg();
        let mut all = vec!["server", "token"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--state", &state]);
        run(&all, None)
    }

    pub(crate) fn new_token(&self) -> String {
        let out = self.token(&["create"]);
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        out.stdout.trim().to_owned()
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.admin)
    }

    pub(crate) async fn get(&self, path: &str) -> Response {
        request(self.gateway, "GET", path, &[], Vec::new()).await
    }

    async fn admin(&self, method: &str, path: &str, token: Option<&str>) -> Response {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| vec![("authorization", a)])
            .unwrap_or_default();
        request(self.admin, method, path, &headers, b"{}".to_vec()).await
    }

    pub(crate) fn logs(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

impl Host {
    /// Stops the server and hands back its state folder.
    fn stop(mut self) -> tempfile::TempDir {
        self.terminate();
        let placeholder = tempfile::tempdir().expect("creating a temp dir");
        std::mem::replace(&mut self.state, placeholder)
    }

    fn terminate(&mut self) {
        // Signal only a process still running: its pid is not anyone else's yet.
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        signal(self.child.id(), libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.terminate();
    }
}

fn run(args: &[&str], dir: Option<&std::path::Path>) -> Output {
    let mut command = Command::new(NIMBUS);
    command.args(args).env_remove("NIMBUS_TOKEN");
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    let output = command.output().expect("running nimbus");
    Output {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// An app `svc` whose one function answers `text` on GET /hello.
pub(crate) fn app(text: &str) -> TestApp {
    TestApp::new(&[("nimbus.yaml", MANIFEST), ("hello.js", &hello_js(text))])
}

const MANIFEST: &str = "service: svc
provider:
  runtime: nodejs20.x
  memorySize: 128
  timeout: 5
functions:
  hello:
    handler: hello.handler
    events:
      - httpApi: GET /hello
";

fn hello_js(text: &str) -> String {
    format!("exports.handler = async () => ({{ statusCode: 200, body: '{text}' }});\n")
}

/// Writes a new handler answering `text`, then deploys with `extra` flags.
pub(crate) fn deploy(
    app: &TestApp,
    host: &Host,
    token: &str,
    text: &str,
    extra: &[&str],
) -> Output {
    std::fs::write(app.path().join("hello.js"), hello_js(text)).expect("writing the handler");
    let url = host.url();
    let mut args = vec!["deploy", ".", "--to", &url, "--token", token];
    args.extend_from_slice(extra);
    run(&args, Some(app.path()))
}

pub(crate) fn ok(out: &Output) {
    assert_eq!(
        out.code,
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
}

/// `nimbus <command> --to URL --token T` run in the app folder.
pub(crate) fn admin_command(app: &TestApp, host: &Host, token: &str, command: &[&str]) -> Output {
    let url = host.url();
    let mut args = command.to_vec();
    args.extend_from_slice(&["--to", &url, "--token", token]);
    run(&args, Some(app.path()))
}

#[tokio::test]
async fn admin_calls_need_a_valid_token_and_change_nothing_without_one() {
    let host = Host::start();
    let token = host.new_token();
    let revoked = host.new_token();
    let listed = host.token(&["ls"]);
    ok(&listed);
    assert_eq!(listed.stdout.lines().count(), 2, "{}", listed.stdout);
    let state =
        std::fs::read_to_string(host.state.path().join("server/tokens.json")).expect("tokens.json");
    assert!(!state.contains(&token), "tokens are stored hashed: {state}");
    let app = app("v1");
    ok(&deploy(&app, &host, &token, "v1", &[]));
    ok(&deploy(&app, &host, &token, "v2", &["--canary", "50%"]));
    // Revoked by id: the part between `nmb_` and the next `_`.
    let revoked_id = revoked.split('_').nth(1).expect("token id");
    ok(&host.token(&["revoke", revoked_id]));
    let versions = |token: &str| {
        let out = admin_command(&app, &host, token, &["versions"]);
        ok(&out);
        out.stdout
    };
    let before = versions(&token);
    let calls = [
        ("POST", "/v1/deployments?service=svc&stage=dev"),
        ("GET", "/v1/apps"),
        ("GET", "/v1/apps/svc/dev/versions"),
        ("PUT", "/v1/apps/svc/dev/aliases/live"),
        ("POST", "/v1/apps/svc/dev/promote"),
        ("POST", "/v1/apps/svc/dev/rollback"),
    ];
    for (method, path) in calls {
        for bad in [None, Some("nmb_nope_nope"), Some(revoked.as_str())] {
            let res = host.admin(method, path, bad).await;
            assert_eq!(
                res.status,
                401,
                "{method} {path} with {bad:?}: {}",
                res.text()
            );
        }
    }
    // The CLI says so too, and changes nothing.
    for command in [
        &["rollback"][..],
        &["promote"],
        &["alias", "set", "staging", "1"],
    ] {
        let out = admin_command(&app, &host, &revoked, command);
        assert_eq!(out.code, Some(1), "{command:?}");
        assert!(out.stderr.contains("401"), "{command:?}: {}", out.stderr);
    }
    let out = deploy(&app, &host, &revoked, "v3", &[]);
    assert!(out.stderr.contains("401"), "{}", out.stderr);
    assert_eq!(versions(&token), before);
    assert_eq!(host.get("/svc/dev/hello").await.status, 200);
    // Revoking the whole token works too.
    ok(&host.token(&["revoke", &token]));
    let res = host.admin("GET", "/v1/apps", Some(&token)).await;
    assert_eq!(res.status, 401);
}

#[tokio::test]
async fn live_follows_deploys_rollback_canary_and_promote() {
    let host = Host::start();
    let token = host.new_token();
    let app = app("v1");
    let out = deploy(&app, &host, &token, "v1", &[]);
    ok(&out);
    assert!(out.stdout.contains("version 1"), "{}", out.stdout);
    ok(&deploy(&app, &host, &token, "v2", &[]));
    let res = host.get("/svc/dev/hello").await;
    assert_eq!(
        (res.status, res.text().as_str()),
        (200, "v2"),
        "{}",
        host.logs()
    );
    assert_eq!(res.header("x-nimbus-version"), Some("2"));

    let out = admin_command(&app, &host, &token, &["rollback"]);
    ok(&out);
    assert_eq!(out.stdout.trim(), "live -> 1");
    assert_eq!(host.get("/svc/dev/hello").await.text(), "v1");

    ok(&deploy(&app, &host, &token, "v3", &["--canary", "10%"]));
    let mut n_canary = 0;
    for _ in 0..1000 {
        let res = host.get("/svc/dev/hello").await;
        assert_eq!(res.status, 200, "{}", res.text());
        match res.text().as_str() {
            "v3" => n_canary += 1,
            "v1" => {}
            other => panic!("unexpected answer {other}"),
        }
    }
    assert!(
        (50..=150).contains(&n_canary),
        "{n_canary} of 1000 went to the canary"
    );
    let versions = admin_command(&app, &host, &token, &["versions"]);
    ok(&versions);
    let line = |v: &str| {
        versions
            .stdout
            .lines()
            .find(|l| l.starts_with(v))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(line("1 ").contains("live (90%)"), "{}", versions.stdout);
    assert!(line("3 ").contains("live (10%)"), "{}", versions.stdout);
    assert!(!line("2 ").contains("live"), "{}", versions.stdout);

    let out = admin_command(&app, &host, &token, &["promote"]);
    ok(&out);
    assert_eq!(out.stdout.trim(), "live -> 3");
    for _ in 0..100 {
        assert_eq!(host.get("/svc/dev/hello").await.text(), "v3");
    }

    // Another alias, by header or by path.
    ok(&admin_command(
        &app,
        &host,
        &token,
        &["alias", "set", "staging", "2"],
    ));
    let res = request(
        host.gateway,
        "GET",
        "/svc/dev/hello",
        &[("x-nimbus-alias", "staging")],
        Vec::new(),
    )
    .await;
    assert_eq!(res.text(), "v2");
    assert_eq!(host.get("/svc/dev@staging/hello").await.text(), "v2");
    assert_eq!(host.get("/svc/dev/hello").await.text(), "v3");
    assert_eq!(host.get("/svc/dev@nope/hello").await.status, 404);
    assert_eq!(host.get("/other/dev/hello").await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploys_under_steady_traffic_fail_no_request() {
    let host = Arc::new(Host::start());
    let token = host.new_token();
    let app = Arc::new(app("v0"));
    ok(&deploy(&app, &host, &token, "v0", &[]));
    let stop = Arc::new(AtomicBool::new(false));
    let (n_ok, n_failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut load = Vec::new();
    for _ in 0..2 {
        let (host, stop, n_ok, n_failed, failures) = (
            host.gateway,
            stop.clone(),
            n_ok.clone(),
            n_failed.clone(),
            failures.clone(),
        );
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let res = request(host, "GET", "/svc/dev/hello", &[], Vec::new()).await;
                if res.status == 200 {
                    n_ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    n_failed.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut failures) = failures.lock() {
                        failures.push(format!("{} {}", res.status, res.text()));
                    }
                }
            }
        }));
    }
    for version in 1..=5 {
        let (app, host2, token) = (app.clone(), host.clone(), token.clone());
        let out = tokio::task::spawn_blocking(move || {
            deploy(&app, &host2, &token, &format!("v{version}"), &[])
        })
        .await
        .expect("deploy task");
        ok(&out);
    }
    // Keep the load on while the last replaced version drains.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.expect("load task");
    }
    assert_eq!(host.get("/svc/dev/hello").await.text(), "v5");
    let failed = n_failed.load(Ordering::Relaxed);
    assert_eq!(
        failed,
        0,
        "{:?}\n{}",
        failures.lock().map(|f| f.clone()).unwrap_or_default(),
        host.logs()
    );
    assert!(n_ok.load(Ordering::Relaxed) > 50);
    // Replaced versions are stopped once drained (a generous bound: on a loaded machine
    // the stop of four versions' instances can take seconds).
    let deadline = Instant::now() + Duration::from_secs(60);
    while !host.logs().contains("version 4 drained; stopping it") {
        assert!(Instant::now() < deadline, "{}", host.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn deploy_region_resolves_the_versions_region_across_a_restart() {
    let host = Host::start();
    let token = host.new_token();
    let app = TestApp::new(&[
        (
            "serverless.yml",
            "service: svc\nprovider:\n  runtime: nodejs20.x\n  region: ${opt:region, 'us-east-1'}\n  environment:\n    WHERE: ${aws:region}\nfunctions:\n  hello:\n    handler: hello.handler\n    events:\n      - httpApi: GET /hello\n",
        ),
        (
            "hello.js",
            "exports.handler = async () => ({ statusCode: 200, body: `${process.env.WHERE} ${process.env.AWS_REGION}` });\n",
        ),
    ]);
    let url = host.url();
    let deploy = |extra: &[&str]| {
        let mut args = vec!["deploy", ".", "--to", &url, "--token", &token];
        args.extend_from_slice(extra);
        run(&args, Some(app.path()))
    };
    ok(&deploy(&["--region", "eu-west-1"]));
    assert_eq!(
        host.get("/svc/dev/hello").await.text(),
        "eu-west-1 eu-west-1"
    );
    let bad = deploy(&["--region", "Not A Region"]);
    assert_eq!(bad.code, Some(1), "{}", bad.stderr);
    assert!(bad.stderr.contains("--region"), "{}", bad.stderr);
    // The version keeps its region when the server starts again.
    let state = host.stop();
    let host = Host::start_in(state);
    assert_eq!(
        host.get("/svc/dev/hello").await.text(),
        "eu-west-1 eu-west-1",
        "{}",
        host.logs()
    );
}

#[tokio::test]
async fn two_stages_of_one_app_answer_independently() {
    let host = Host::start();
    let token = host.new_token();
    let app = app("a");
    ok(&deploy(&app, &host, &token, "prod-1", &["--stage", "prod"]));
    ok(&deploy(&app, &host, &token, "beta-1", &["--stage", "beta"]));
    ok(&deploy(&app, &host, &token, "beta-2", &["--stage", "beta"]));
    assert_eq!(host.get("/svc/prod/hello").await.text(), "prod-1");
    assert_eq!(host.get("/svc/beta/hello").await.text(), "beta-2");
    let out = admin_command(&app, &host, &token, &["rollback", "--stage", "beta"]);
    ok(&out);
    assert_eq!(host.get("/svc/beta/hello").await.text(), "beta-1");
    assert_eq!(host.get("/svc/prod/hello").await.text(), "prod-1");
    // Each stage keeps its own versions and state folder.
    let prod = admin_command(&app, &host, &token, &["versions", "--stage", "prod"]);
    ok(&prod);
    assert_eq!(prod.stdout.lines().count(), 2, "{}", prod.stdout);
    let apps = host.state.path().join("server/apps/svc");
    assert!(apps.join("prod/state").is_dir());
    assert!(apps.join("beta/state").is_dir());
}

#[tokio::test]
async fn a_bad_manifest_is_refused_with_its_diagnostics_and_live_stays() {
    let host = Host::start();
    let token = host.new_token();
    let app = app("v1");
    ok(&deploy(&app, &host, &token, "v1", &[]));
    let url = host.url();

    // Caught before upload, with `nimbus validate`'s diagnostics.
    std::fs::write(
        app.path().join("nimbus.yaml"),
        MANIFEST.replace("hello.handler", "missing.handler"),
    )
    .expect("writing the manifest");
    let out = run(
        &["deploy", ".", "--to", &url, "--token", &token],
        Some(app.path()),
    );
    assert_eq!(out.code, Some(1));
    assert!(out.stderr.contains("error: nimbus.yaml:"), "{}", out.stderr);
    assert!(
        out.stderr.contains("functions.hello.handler"),
        "{}",
        out.stderr
    );

    // Valid here but not on the server (its environment lacks the variable): the server
    // checks again and sends the diagnostics back.
    std::fs::write(
        app.path().join("nimbus.yaml"),
        MANIFEST.replace(
            "  timeout: 5\n",
            "  timeout: 5\n  environment:\n    NEEDED: ${env:NIMBUS_TEST_ONLY_HERE}\n",
        ),
    )
    .expect("writing the manifest");
    let output = Command::new(NIMBUS)
        .args(["deploy", ".", "--to", &url, "--token", &token])
        .env("NIMBUS_TEST_ONLY_HERE", "1")
        .current_dir(app.path())
        .output()
        .expect("running nimbus");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("422"), "{stderr}");
    assert!(stderr.contains("NIMBUS_TEST_ONLY_HERE"), "{stderr}");
    assert!(stderr.contains("error: nimbus.yaml:"), "{stderr}");

    let versions = admin_command(
        &app,
        &host,
        &token,
        &["versions", "--service", "svc", "--stage", "dev"],
    );
    ok(&versions);
    assert_eq!(versions.stdout.lines().count(), 2, "{}", versions.stdout);
    assert_eq!(host.get("/svc/dev/hello").await.text(), "v1");
}

#[tokio::test]
async fn a_restarted_server_serves_what_its_aliases_point_at() {
    let host = Host::start();
    let token = host.new_token();
    let app = app("v1");
    ok(&deploy(&app, &host, &token, "v1", &[]));
    ok(&deploy(&app, &host, &token, "v2", &[]));
    ok(&admin_command(
        &app,
        &host,
        &token,
        &["alias", "set", "staging", "1"],
    ));
    let state = host.stop();
    let host = Host::start_in(state);
    assert_eq!(
        host.get("/svc/dev/hello").await.text(),
        "v2",
        "{}",
        host.logs()
    );
    assert_eq!(host.get("/svc/dev@staging/hello").await.text(), "v1");
    let out = admin_command(&app, &host, &token, &["rollback"]);
    ok(&out);
    assert_eq!(host.get("/svc/dev/hello").await.text(), "v1");
}

/// While a canary runs, both versions run the stage's schedules against one store; each
/// slot still fires once. The second version starts a moment after the first, yet counts
/// the `rate(1 minute)` slots from the same start, and the two race for the first slot.
/// (This test waits for that slot: about a minute.)
#[tokio::test]
async fn a_schedule_fires_once_per_slot_while_two_versions_run() {
    // Each fire prints a line (a sandboxed function cannot write a file of the test's).
    let manifest = format!(
        "{MANIFEST}  tick:\n    handler: tick.handler\n    events:\n      - schedule:\n          rate: rate(1 minute)\n          name: every-minute\n"
    );
    let tick = "exports.handler = async () => { console.log('schedule-tick'); };\n";
    let app = TestApp::new(&[
        ("nimbus.yaml", &manifest),
        ("hello.js", &hello_js("v1")),
        ("tick.js", tick),
    ]);
    let host = Host::start();
    let token = host.new_token();
    ok(&deploy(&app, &host, &token, "v1", &[]));
    ok(&deploy(&app, &host, &token, "v2", &["--canary", "50%"]));
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..40 {
        seen.insert(host.get("/svc/dev/hello").await.text());
    }
    assert_eq!(seen.len(), 2, "both versions serve: {seen:?}");

    let deadline = Instant::now() + Duration::from_secs(90);
    while !host.logs().contains("schedule-tick") {
        assert!(Instant::now() < deadline, "no tick; logs:\n{}", host.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Give a second fire (from the other version) time to show up, then count.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let logs = host.logs();
    let n_ticks = logs.matches("schedule-tick").count();
    assert_eq!(n_ticks, 1, "one fire for the slot:\n{logs}");
}

#[tokio::test]
async fn each_deployed_version_runs_its_own_compiled_typescript() {
    // Versions of a stage share one state folder, so their compiled handlers must not
    // share a build folder: after a rollback the old version's code answers again.
    let host = Host::start();
    let token = host.new_token();
    let manifest = MANIFEST.replace("hello.handler", "src/hello.handler");
    let ts = |text: &str| {
        format!(
            "export const handler = async (): Promise<object> => ({{ statusCode: 200, body: '{text}' as string }});\n"
        )
    };
    let app = TestApp::new(&[("nimbus.yaml", &manifest), ("src/hello.ts", &ts("one"))]);
    let url = host.url();
    let deploy_ts = |text: &str| {
        std::fs::write(app.path().join("src/hello.ts"), ts(text)).expect("writing the handler");
        run(
            &["deploy", ".", "--to", &url, "--token", &token],
            Some(app.path()),
        )
    };
    ok(&deploy_ts("one"));
    assert_eq!(host.get("/svc/dev/hello").await.text(), "one");
    ok(&deploy_ts("two"));
    assert_eq!(host.get("/svc/dev/hello").await.text(), "two");
    ok(&admin_command(&app, &host, &token, &["rollback"]));
    assert_eq!(host.get("/svc/dev/hello").await.text(), "one");
}

const STATEFUL_MANIFEST: &str = r#"service: svc
provider:
  runtime: nodejs20.x
  timeout: 20
  iam:
    role:
      statements:
        - Effect: Allow
          Action: [s3:PutObject, s3:GetObject]
          Resource: [arn:aws:s3:::files/*]
        - Effect: Allow
          Action: ["kv:*"]
          Resource: "kv:notes"
buckets: [files]
kv: [notes]
functions:
  note:
    handler: note.handler
    events:
      - httpApi: GET /note
"#;

/// Writes (with `?write=`) and reads a note in the stage's bucket through the AWS SDK and
/// in its KV through the `nimbus` client, neither with an endpoint in the code.
const NOTE_JS: &str = r#"
const { S3Client, PutObjectCommand, GetObjectCommand } = require('@aws-sdk/client-s3');
const nimbus = require('nimbus');
const s3 = new S3Client({});

exports.handler = async (event) => {
  const write = (event.queryStringParameters || {}).write;
  if (write) {
    await s3.send(new PutObjectCommand({ Bucket: 'files', Key: 'note', Body: write }));
    await nimbus.kv('notes').put('note', write);
  }
  let object;
  try {
    const got = await s3.send(new GetObjectCommand({ Bucket: 'files', Key: 'note' }));
    object = await got.Body.transformToString();
  } catch (e) {
    object = e.name;
  }
  const kv = await nimbus.kv('notes').get('note');
  return { statusCode: 200, body: `${object} ${kv}` };
};
"#;

/// A deployed function's own calls (the AWS SDK on the one shared endpoint, the `nimbus`
/// client on the one control API) carry no stage in their path: its access key and token
/// find its version, so each stage reaches its own bucket and KV (issue 17).
#[tokio::test]
async fn each_stages_functions_reach_their_own_state_through_the_shared_endpoints() {
    let host = Host::start();
    let token = host.new_token();
    let app = TestApp::new(&[("nimbus.yaml", STATEFUL_MANIFEST), ("note.js", NOTE_JS)]);
    let url = host.url();
    for stage in ["prod", "beta"] {
        ok(&run(
            &[
                "deploy", ".", "--to", &url, "--token", &token, "--stage", stage,
            ],
            Some(app.path()),
        ));
    }
    let res = host.get("/svc/prod/note?write=p1").await;
    assert_eq!(
        (res.status, res.text().as_str()),
        (200, "p1 p1"),
        "{}",
        host.logs()
    );
    assert_eq!(host.get("/svc/beta/note").await.text(), "NoSuchKey null");
    assert_eq!(host.get("/svc/beta/note?write=b1").await.text(), "b1 b1");
    assert_eq!(host.get("/svc/prod/note").await.text(), "p1 p1");
    // A new version of a stage shares its state.
    ok(&run(
        &[
            "deploy", ".", "--to", &url, "--token", &token, "--stage", "prod",
        ],
        Some(app.path()),
    ));
    let res = host.get("/svc/prod/note").await;
    assert_eq!(res.header("x-nimbus-version"), Some("2"));
    assert_eq!(res.text(), "p1 p1");
    // From outside, a key no deployed function has is refused in S3's words.
    let res = request(
        host.gateway,
        "GET",
        "/files/note",
        &[(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00",
        )],
        Vec::new(),
    )
    .await;
    assert_eq!(res.status, 403, "{}", res.text());
    assert!(
        res.text().contains("InvalidClientTokenId"),
        "{}",
        res.text()
    );
}

/// Reads the stage's note with an operator's key from outside, writes another, and checks
/// that a wrong secret is refused; prints what it saw as JSON.
const OPERATOR_SCRIPT: &str = r#"
import json, os
import boto3
from botocore.exceptions import ClientError

def client(secret):
    return boto3.client("s3", endpoint_url=os.environ["ENDPOINT"], region_name="us-east-1",
                        aws_access_key_id=os.environ["KEY"], aws_secret_access_key=secret)

def code(call):
    try:
        call()
        return "accepted"
    except ClientError as e:
        return e.response["Error"]["Code"]

s3 = client(os.environ["SECRET"])
out = {}
try:
    out["read"] = s3.get_object(Bucket="files", Key="note")["Body"].read().decode()
    s3.put_object(Bucket="files", Key="note", Body=b"op")
except ClientError as e:
    out["read"] = e.response["Error"]["Code"]
out["wrong_secret"] = code(lambda: client("wrong").put_object(Bucket="files", Key="note", Body=b"x"))
print(json.dumps(out))
"#;

/// An operator's access key (`nimbus credentials create`) reaches the bucket of the
/// (service, stage) it is for through the server's one AWS endpoint, from outside with
/// boto3; a wrong secret, another stage and a revoked key change nothing (issue 12).
#[tokio::test]
async fn an_operators_access_key_reaches_its_stages_bucket_until_revoked() {
    let host = Host::start();
    let token = host.new_token();
    let app = TestApp::new(&[("nimbus.yaml", STATEFUL_MANIFEST), ("note.js", NOTE_JS)]);
    let url = host.url();
    for stage in ["prod", "beta"] {
        ok(&run(
            &[
                "deploy", ".", "--to", &url, "--token", &token, "--stage", stage,
            ],
            Some(app.path()),
        ));
    }
    assert_eq!(host.get("/svc/prod/note?write=p1").await.text(), "p1 p1");
    let state = host.state_arg();
    let created = run(
        &[
            "credentials",
            "create",
            "--service",
            "svc",
            "--stage",
            "prod",
            "--state",
            &state,
        ],
        None,
    );
    ok(&created);
    let value = |name: &str| {
        created
            .stdout
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name} in {}", created.stdout))
            .to_owned()
    };
    let (key, secret) = (value("AWS_ACCESS_KEY_ID"), value("AWS_SECRET_ACCESS_KEY"));
    let listed = run(&["credentials", "ls", "--state", &state], None);
    ok(&listed);
    assert!(
        listed.stdout.contains(&format!("{key}  svc (prod)")),
        "{}",
        listed.stdout
    );
    assert!(!listed.stdout.contains(&secret));
    let sealed = std::fs::read(host.state.path().join("server/operator/nimbus.db"))
        .expect("the credentials' store");
    assert!(
        !String::from_utf8_lossy(&sealed).contains(&secret),
        "secrets are stored sealed"
    );

    let boto3 = crate::aws_sqs::boto3_path(&app);
    let script = |key: &str, secret: &str| -> serde_json::Value {
        let out = Command::new("python3")
            .args(["-c", OPERATOR_SCRIPT])
            .env("PYTHONPATH", &boto3)
            .env("ENDPOINT", format!("http://{}", host.gateway))
            .env("KEY", key)
            .env("SECRET", secret)
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .output()
            .expect("running python3");
        assert!(
            out.status.success(),
            "{}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            host.logs()
        );
        serde_json::from_slice(&out.stdout).expect("the script prints JSON")
    };
    let seen = script(&key, &secret);
    assert_eq!(seen["read"], "p1", "{seen}\n{}", host.logs());
    assert_eq!(seen["wrong_secret"], "SignatureDoesNotMatch", "{seen}");
    assert_eq!(host.get("/svc/prod/note").await.text(), "op p1");
    assert_eq!(host.get("/svc/beta/note").await.text(), "NoSuchKey null");

    ok(&run(
        &["credentials", "revoke", &key, "--state", &state],
        None,
    ));
    let seen = script(&key, &secret);
    assert_eq!(seen["read"], "InvalidClientTokenId", "{seen}");
    assert_eq!(host.get("/svc/prod/note").await.text(), "op p1");
    let again = run(&["credentials", "revoke", &key, "--state", &state], None);
    assert_eq!(again.code, Some(1));
    assert!(
        again.stderr.contains("nimbus credentials ls"),
        "{}",
        again.stderr
    );
    let bad = run(
        &[
            "credentials",
            "create",
            "--service",
            "../x",
            "--stage",
            "prod",
            "--state",
            &state,
        ],
        None,
    );
    assert_eq!(bad.code, Some(1));
    assert!(bad.stderr.contains("not a valid name"), "{}", bad.stderr);
}

const SOCKETS_MANIFEST: &str = "service: svc
provider:
  runtime: nodejs20.x
  memorySize: 128
  timeout: 5
  websocketsApiRouteSelectionExpression: $request.body.action
  iam:
    role:
      statements:
        - Effect: Allow
          Action: execute-api:ManageConnections
          Resource: arn:aws:execute-api:*:*:*/@connections/*
functions:
  connect:
    handler: ws.connect
    events:
      - websocket: $connect
  echo:
    handler: ws.echo
    events:
      - websocket: { route: $default, routeResponseSelectionExpression: $default }
  post:
    handler: ws.post
    events:
      - websocket: { route: post }
";

/// `$connect` refuses `?reject`; `$default` answers with a route response naming the
/// version; `post` answers through the @connections API with the SDK the runtime provides.
fn sockets_js(version: &str) -> String {
    format!(
        r#"
const {{ ApiGatewayManagementApiClient, PostToConnectionCommand }} = require('@aws-sdk/client-apigatewaymanagementapi');
exports.connect = async (event) => ({{ statusCode: (event.queryStringParameters || {{}}).reject ? 403 : 200 }});
exports.echo = async (event) => ({{ statusCode: 200, body: '{version} ' + event.body }});
exports.post = async (event) => {{
  const ctx = event.requestContext;
  const api = new ApiGatewayManagementApiClient({{ endpoint: 'http://' + ctx.domainName + '/' + ctx.stage }});
  await api.send(new PostToConnectionCommand({{ ConnectionId: ctx.connectionId, Data: '{version} posted' }}));
  return {{ statusCode: 200 }};
}};
"#
    )
}

/// One client with the `ws` package: a refused upgrade, then a connection that sends
/// `hello` and `{{"action":"post"}}`; prints what it saw as JSON.
const SOCKETS_DRIVER_JS: &str = r#"
const WebSocket = require('ws');
const url = process.env.WS_URL;
function open(query) {
  return new Promise((resolve) => {
    const ws = new WebSocket(url + query);
    const messages = [];
    ws.on('unexpected-response', (req, res) => resolve({ refused: res.statusCode }));
    ws.on('error', (e) => resolve({ error: String(e) }));
    ws.on('message', (data) => messages.push(data.toString()));
    ws.on('open', () => resolve({ ws, messages }));
  });
}
const until = (c, n) => new Promise((resolve, reject) => {
  const started = Date.now();
  const tick = () => {
    if (c.messages.length >= n) return resolve();
    if (Date.now() - started > 20000) return reject(new Error('timed out; got ' + JSON.stringify(c.messages)));
    setTimeout(tick, 10);
  };
  tick();
});
(async () => {
  const out = { refused: await open('?reject=1') };
  const c = await open('');
  if (!c.ws) throw new Error('no connection: ' + JSON.stringify(c));
  c.ws.send('hello');
  await until(c, 1);
  c.ws.send(JSON.stringify({ action: 'post' }));
  await until(c, 2);
  out.messages = c.messages;
  c.ws.close(1000);
  console.log(JSON.stringify(out));
  process.exit(0);
})().catch((e) => { console.error(e.stack || String(e)); process.exit(1); });
"#;

/// Runs the sockets driver against `ws://{gateway}{path}`; its JSON.
fn drive_sockets(app: &TestApp, host: &Host, path: &str) -> serde_json::Value {
    let mut node = Command::new("node");
    node.arg(app.path().join("driver.js"))
        .env(
            "NODE_PATH",
            crate::websocket::ws_package().join("node_modules"),
        )
        .env("WS_URL", format!("ws://{}{path}", host.gateway));
    crate::harness::json_output(&mut node, || host.logs())
}

/// A deployed version serves its WebSocket API on the server's gateway at
/// `ws://HOST/{service}/{stage}`, @connections included, and a new deploy's connections
/// reach the new version (issue 15).
#[tokio::test]
async fn deployed_versions_serve_their_websocket_apis() {
    let host = Host::start();
    let token = host.new_token();
    let app = TestApp::new(&[
        ("nimbus.yaml", SOCKETS_MANIFEST),
        ("ws.js", &sockets_js("v1")),
        ("driver.js", SOCKETS_DRIVER_JS),
    ]);
    let url = host.url();
    let deploy = || {
        run(
            &["deploy", ".", "--to", &url, "--token", &token],
            Some(app.path()),
        )
    };
    ok(&deploy());
    let out = drive_sockets(&app, &host, "/svc/dev");
    assert_eq!(out["refused"]["refused"], 403, "{out}");
    assert_eq!(
        out["messages"],
        serde_json::json!(["v1 hello", "v1 posted"]),
        "{out}\n{}",
        host.logs()
    );

    std::fs::write(app.path().join("ws.js"), sockets_js("v2")).expect("writing the handler");
    ok(&deploy());
    let out = drive_sockets(&app, &host, "/svc/dev");
    assert_eq!(
        out["messages"],
        serde_json::json!(["v2 hello", "v2 posted"]),
        "{out}"
    );
}
