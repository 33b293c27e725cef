//! A tiny harness: write an app into a temp folder, run `nimbus up` on it, talk HTTP.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;

pub(crate) const NIMBUS: &str = env!("CARGO_BIN_EXE_nimbus");

/// An app folder in a fresh temp dir.
pub(crate) struct TestApp {
    pub(crate) dir: tempfile::TempDir,
}

impl TestApp {
    /// Writes `files` (relative path, contents) into a new temp folder.
    pub(crate) fn new(files: &[(&str, &str)]) -> TestApp {
        let dir = tempfile::tempdir().expect("creating a temp dir");
        for (path, text) in files {
            let path = dir.path().join(path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).expect("creating app folders");
            }
            std::fs::write(&path, text).expect("writing an app file");
        }
        TestApp { dir }
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `nimbus <args>` to completion in this app folder.
    pub(crate) fn nimbus(&self, args: &[&str]) -> Output {
        self.nimbus_with_env(args, &[])
    }

    /// As `nimbus`, with extra environment variables.
    pub(crate) fn nimbus_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let output = Command::new(NIMBUS)
            .args(args)
            .current_dir(self.path())
            .envs(env.iter().copied())
            .output()
            .expect("running nimbus");
        Output {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Runs `nimbus <args>` until it succeeds and `accept` likes its stdout, and returns that
    /// stdout: records are committed in batches, a moment after the response. Until they
    /// land a command may also fail (`trace` exits 1 while no span of the trace is stored).
    pub(crate) async fn nimbus_until(
        &self,
        args: &[&str],
        accept: impl Fn(&str) -> bool,
    ) -> String {
        let mut last = String::new();
        for _ in 0..200 {
            let out = self.nimbus(args);
            if out.code == Some(0) && accept(&out.stdout) {
                return out.stdout;
            }
            last = format!("exit {:?}\n{}{}", out.code, out.stdout, out.stderr);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("nimbus {args:?} never printed what was expected; last:\n{last}");
    }
}

pub(crate) struct Output {
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// A running `nimbus up` (or `nimbus dev`). Dropping it kills the process.
pub(crate) struct TestServer {
    child: Child,
    pub(crate) addr: SocketAddr,
    stderr_path: PathBuf,
    _stderr_dir: tempfile::TempDir,
    /// What it printed to stdout after the banner.
    stdout: Arc<Mutex<String>>,
}

impl TestServer {
    /// Starts `nimbus up <dir> --port 0 <extra>` and waits for its banner.
    pub(crate) fn start(dir: &Path, extra: &[&str]) -> TestServer {
        TestServer::start_with_env(dir, extra, &[])
    }

    /// As `start`, with extra environment variables for nimbus.
    pub(crate) fn start_with_env(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> TestServer {
        TestServer::start_command("up", dir, extra, env)
    }

    /// Starts `nimbus <command> <dir> --port 0 <extra>` (`up` or `dev`) and waits for its
    /// banner.
    pub(crate) fn start_command(
        command: &str,
        dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> TestServer {
        let stderr_dir = tempfile::tempdir().expect("creating a temp dir");
        let stderr_path = stderr_dir.path().join("stderr.log");
        let stderr = std::fs::File::create(&stderr_path).expect("creating stderr log");
        let mut child = Command::new(NIMBUS)
            .arg(command)
            .arg(dir)
            .args(["--port", "0"])
            .args(extra)
            .env("NIMBUS_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("starting nimbus {command}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    let url = line.split("listening on ").nth(1);
                    let rest = url.and_then(|url| {
                        url.strip_prefix("http://")
                            .or_else(|| url.strip_prefix("https://"))
                    });
                    if let Some(rest) = rest {
                        break rest.trim().parse().expect("banner address");
                    }
                }
                _ => {
                    let _ = child.wait();
                    panic!(
                        "nimbus {command} exited before listening; stderr:\n{}",
                        std::fs::read_to_string(&stderr_path).unwrap_or_default()
                    );
                }
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        let stdout = Arc::new(Mutex::new(String::new()));
        let printed = stdout.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if let Ok(mut printed) = printed.lock() {
                    printed.push_str(&line);
                    printed.push('\n');
                }
            }
        });
        TestServer {
            child,
            addr,
            stderr_path,
            _stderr_dir: stderr_dir,
            stdout,
        }
    }

    /// What the server printed to stdout after its banner so far.
    pub(crate) fn stdout(&self) -> String {
        self.stdout.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// A request to the control API, with the token from `.nimbus/up.json` unless
    /// `token` overrides it.
    pub(crate) async fn admin(
        &self,
        app_dir: &Path,
        method: &str,
        path: &str,
        token: Option<&str>,
    ) -> Response {
        admin_request(app_dir, method, path, token, Vec::new()).await
    }

    /// A JSON request to the control API with the admin token.
    pub(crate) async fn admin_json(
        &self,
        app_dir: &Path,
        method: &str,
        path: &str,
        body: &str,
    ) -> Response {
        admin_request(app_dir, method, path, None, body.as_bytes().to_vec()).await
    }

    /// Invokes `name` with `event` through Lambda's Invoke API and returns its result,
    /// failing the test (with the server's log) if the function failed.
    pub(crate) async fn invoke_ok(
        &self,
        app_dir: &Path,
        name: &str,
        event: &serde_json::Value,
    ) -> serde_json::Value {
        let res = self
            .admin_json(
                app_dir,
                "POST",
                &format!("/2015-03-31/functions/{name}/invocations"),
                &event.to_string(),
            )
            .await;
        assert_eq!(res.status, 200, "{name}: {}", res.text());
        assert!(
            res.header("x-amz-function-error").is_none(),
            "{name} failed: {}\n{}",
            res.text(),
            self.logs()
        );
        res.json()
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the server logged so far.
    pub(crate) fn logs(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub(crate) async fn get(&self, path: &str) -> Response {
        self.request("GET", path, &[], Vec::new()).await
    }

    pub(crate) async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Response {
        request(self.addr, method, path, headers, body).await
    }

    /// Sends SIGINT (Ctrl-C) and waits for the process to exit.
    pub(crate) fn interrupt(mut self) -> std::process::ExitStatus {
        signal(self.child.id(), libc::SIGINT);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for nimbus") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "nimbus did not stop after Ctrl-C"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // SIGTERM lets nimbus stop its instances; SIGKILL after a grace period.
        signal(self.child.id(), libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
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

/// A request to the control API of the app in `app_dir`, found through its up.json.
async fn admin_request(
    app_dir: &Path,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Vec<u8>,
) -> Response {
    let text = std::fs::read_to_string(app_dir.join(".nimbus/up.json")).expect("reading up.json");
    let record: serde_json::Value = serde_json::from_str(&text).expect("up.json is JSON");
    let addr: SocketAddr = record["admin"]
        .as_str()
        .expect("admin address")
        .parse()
        .expect("address");
    let token = token
        .map(str::to_owned)
        .unwrap_or_else(|| record["token"].as_str().expect("token").to_owned());
    let auth = format!("Bearer {token}");
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    request(addr, method, path, &headers, body).await
}

/// Runs `command` (a script printing one JSON value) to its end and parses what it printed;
/// a failure panics with its output and the server's `logs`.
pub(crate) fn json_output(command: &mut Command, logs: impl Fn() -> String) -> serde_json::Value {
    let out = command.output().expect("running the script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}\nnimbus logs:\n{}",
        String::from_utf8_lossy(&out.stderr),
        logs()
    );
    serde_json::from_str(stdout.trim()).expect("the script prints JSON")
}

pub(crate) fn signal(pid: u32, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(pid).expect("pid fits");
    // SAFETY: kill(2) on a pid this test started.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// Whether a process exists and is not a zombie.
pub(crate) fn process_running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Ok(status) => !status.lines().any(|l| {
            l.starts_with("State:") && (l.contains("Z (zombie)") || l.contains("X (dead)"))
        }),
        Err(_) => false,
    }
}

#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) headers: http::HeaderMap,
    pub(crate) body: Bytes,
}

impl Response {
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// One HTTP/1.1 request on a new connection.
pub(crate) async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Response {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connecting to nimbus");
    send(stream, addr, method, path, headers, body).await
}

/// One HTTP/1.1 request on a connected stream.
async fn send(
    stream: tokio::net::TcpStream,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Response {
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP handshake");
    tokio::spawn(connection);
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = req
        .body(Full::new(Bytes::from(body)))
        .expect("building a request");
    let res = sender.send_request(req).await.expect("sending a request");
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res
        .into_body()
        .collect()
        .await
        .expect("reading a body")
        .to_bytes();
    Response {
        status,
        headers,
        body,
    }
}

/// A GET on an already connected stream, so a test can open many connections before
/// sending any request.
pub(crate) async fn request_on(
    stream: tokio::net::TcpStream,
    addr: SocketAddr,
    path: &str,
) -> Response {
    send(stream, addr, "GET", path, &[], Vec::new()).await
}
