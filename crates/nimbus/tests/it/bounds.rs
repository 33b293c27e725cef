//! Bounded under hostile and careless input (issue 20): a manifest over a limit is refused
//! fast and small, and nothing in it is dropped without a word.

use std::process::Command;
use std::time::Duration;

use crate::harness::{NIMBUS, TestApp, TestServer, process_running, signal};

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

const HELLO_MANIFEST: &str = "service: hygiene\nprovider:\n  runtime: nodejs20.x\nfunctions:\n  hello:\n    handler: ok.handler\n    events:\n      - httpApi: GET /hello\nqueues:\n  jobs: {}\n";

/// Reads what the server sends on `stream` until it closes (or 5 s pass).
async fn read_until_closed(stream: &mut tokio::net::TcpStream) -> (String, Duration) {
    use tokio::io::AsyncReadExt as _;
    let started = std::time::Instant::now();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
        }
    }
    (
        String::from_utf8_lossy(&received).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test]
async fn a_slow_header_connection_is_closed_after_the_timeout_while_others_are_served() {
    use tokio::io::AsyncWriteExt as _;
    let app = TestApp::new(&[("serverless.yml", HELLO_MANIFEST), ("ok.js", OK_JS)]);
    let server = TestServer::start(app.path(), &["--header-timeout", "500ms"]);
    let mut slow = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connecting");
    slow.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("sending half a head");
    // Healthy requests go on meanwhile.
    for _ in 0..3 {
        let res = server.get("/hello").await;
        assert_eq!(res.status, 200, "{}", res.text());
    }
    let (_, waited) = read_until_closed(&mut slow).await;
    assert!(
        waited < Duration::from_secs(3),
        "the slow connection stayed open {waited:?}"
    );
    // The control API has the same deadline.
    let record: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(app.path().join(".nimbus/up.json")).expect("up.json"),
    )
    .expect("up.json is JSON");
    let admin: std::net::SocketAddr = record["admin"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .expect("admin address");
    let mut slow = tokio::net::TcpStream::connect(admin)
        .await
        .expect("connecting");
    slow.write_all(b"GET /functions HTTP/1.1\r\n")
        .await
        .expect("sending half a head");
    let (_, waited) = read_until_closed(&mut slow).await;
    assert!(waited < Duration::from_secs(3), "stayed open {waited:?}");
}

#[tokio::test]
async fn a_bare_lf_in_a_header_is_refused_with_400() {
    use tokio::io::AsyncWriteExt as _;
    let app = TestApp::new(&[("serverless.yml", HELLO_MANIFEST), ("ok.js", OK_JS)]);
    let server = TestServer::start(app.path(), &[]);
    // hyper (httparse) takes a lone LF as a line end (RFC 9112 allows it), which made
    // `X-A: a<LF>X-B: b` two headers.
    let mut stream = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connecting");
    stream
        .write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\nX-A: a\nX-B: b\r\n\r\n")
        .await
        .expect("sending");
    let (received, _) = read_until_closed(&mut stream).await;
    assert!(received.starts_with("HTTP/1.1 400"), "{received:?}");
    // A bare LF inside a body is data, and the next request on the connection is read.
    let mut stream = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connecting");
    stream
        .write_all(b"POST /nothing HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\na\nbGET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("sending");
    let (received, _) = read_until_closed(&mut stream).await;
    assert_eq!(
        received.matches("HTTP/1.1 ").count(),
        2,
        "two answers: {received:?}"
    );
    assert!(received.contains("HTTP/1.1 200"), "{received:?}");
}

#[test]
fn a_store_that_cannot_start_never_prints_listening() {
    let app = TestApp::new(&[("serverless.yml", HELLO_MANIFEST), ("ok.js", OK_JS)]);
    drop(TestServer::start(app.path(), &[]));
    // A store that opens but cannot take the app's queues.
    let db = app.path().join(".nimbus/nimbus.db");
    let out = Command::new("python3")
        .args([
            "-c",
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute('DROP TABLE queues'); c.execute('CREATE TABLE queues (broken INTEGER)'); c.commit()",
        ])
        .arg(&db)
        .output()
        .expect("running python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = app.nimbus(&["up", ".", "--port", "0"]);
    assert_eq!(out.code, Some(1), "stderr:\n{}", out.stderr);
    assert!(!out.stdout.contains("listening"), "stdout:\n{}", out.stdout);
    assert!(
        out.stderr.contains("writing a queue to the store"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn a_restart_right_after_kill_9_serves_at_once() {
    let app = TestApp::new(&[("serverless.yml", HELLO_MANIFEST), ("ok.js", OK_JS)]);
    let first = TestServer::start(app.path(), &[]);
    // Killed and not reaped: the pid stays a zombie while this test holds it.
    signal(first.pid(), libc::SIGKILL);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while process_running(first.pid()) {
        assert!(
            std::time::Instant::now() < deadline,
            "nimbus survived kill -9"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let second = TestServer::start(app.path(), &[]);
    let res = second.get("/hello").await;
    assert_eq!(res.status, 200, "{}", res.text());
    drop(first);
}

const SLOW_JS: &str = "exports.handler = async () => { await new Promise((r) => setTimeout(r, 300)); return { statusCode: 200, body: 'ok' }; };\n";

/// Issue 20: 160 connections to one function without `reservedConcurrency` started 187
/// instances; `--max-instances` bounds them, and what does not fit is throttled as Lambda
/// throttles.
#[tokio::test]
async fn three_hundred_connections_at_a_cap_of_50_get_429s_and_never_more_than_50_instances() {
    let manifest = "service: flood\nprovider:\n  runtime: nodejs20.x\n  memorySize: 128\nfunctions:\n  slow:\n    handler: slow.handler\n    events:\n      - httpApi: GET /slow\n";
    let app = TestApp::new(&[("serverless.yml", manifest), ("slow.js", SLOW_JS)]);
    let server = TestServer::start(app.path(), &["--max-instances", "50"]);
    let addr = server.addr;
    let watching = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let watcher = {
        let watching = watching.clone();
        let dir = app.path().to_owned();
        tokio::spawn(async move {
            let mut max_instances = 0;
            while watching.load(std::sync::atomic::Ordering::Acquire) {
                let res = admin(&dir, "GET", "/functions", "").await;
                for function in res.json()["functions"].as_array().into_iter().flatten() {
                    max_instances = max_instances.max(function["instances"].as_u64().unwrap_or(0));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            max_instances
        })
    };
    // Spawned all at once (collected), so all 300 are in flight together.
    let requests: Vec<_> = (0..300)
        .map(|_| {
            tokio::spawn(async move {
                crate::harness::request(addr, "GET", "/slow", &[], Vec::new()).await
            })
        })
        .collect();
    let mut n_ok = 0;
    let mut throttled = None;
    for request in requests {
        let res = request.await.expect("a request task");
        match res.status {
            200 => n_ok += 1,
            429 => throttled = Some(res),
            status => panic!("unexpected {status}: {}", res.text()),
        }
    }
    watching.store(false, std::sync::atomic::Ordering::Release);
    let max_instances = watcher.await.expect("the watcher");
    let throttled = throttled.expect("some requests are throttled");
    assert_eq!(
        throttled.header("x-amzn-errortype"),
        Some("TooManyRequestsException")
    );
    assert_eq!(throttled.json()["message"], "Too Many Requests");
    assert!(n_ok >= 50, "{n_ok} served");
    assert!(max_instances <= 50, "{max_instances} instances");
    let metrics = admin(app.path(), "GET", "/metrics", "").await.text();
    assert!(
        metrics.lines().any(
            |l| l.starts_with("nimbus_throttles_total{function=\"slow\"}") && !l.ends_with(" 0")
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn lambda_invoke_is_throttled_with_too_many_requests_and_reservations_leave_room() {
    let manifest = "service: flood\nprovider:\n  runtime: nodejs20.x\n  memorySize: 128\nfunctions:\n  slow:\n    handler: slow.handler\n";
    // Two seconds a call, so the two calls overlap however slowly a loaded machine starts
    // them; whichever takes the one instance runs, the other is throttled.
    let sleepy = SLOW_JS.replace("300", "2000");
    let app = TestApp::new(&[("serverless.yml", manifest), ("slow.js", &sleepy)]);
    let _server = TestServer::start(
        app.path(),
        &["--max-instances", "1", "--queue-wait", "10ms"],
    );
    let path = "/2015-03-31/functions/slow/invocations";
    let (first, second) = tokio::join!(admin(app.path(), "POST", path, "{}"), async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        admin(app.path(), "POST", path, "{}").await
    });
    let (ran, throttled) = if first.status == 429 {
        (second, first)
    } else {
        (first, second)
    };
    assert_eq!(ran.status, 200, "{}", ran.text());
    assert_eq!(throttled.status, 429, "{}", throttled.text());
    assert_eq!(throttled.json()["type"], "TooManyRequestsException");
    // Reservations that leave nothing for a function without one are refused at start.
    let manifest = "service: flood\nprovider:\n  runtime: nodejs20.x\nfunctions:\n  slow:\n    handler: slow.handler\n    reservedConcurrency: 2\n  other:\n    handler: slow.handler\n";
    let app = TestApp::new(&[("serverless.yml", manifest), ("slow.js", SLOW_JS)]);
    let out = app.nimbus(&["up", ".", "--port", "0", "--max-instances", "2"]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("leaves no concurrency for other"),
        "{}",
        out.stderr
    );
}

/// A request to the control API of the app in `dir`, with the token from its up.json.
async fn admin(
    dir: &std::path::Path,
    method: &str,
    path: &str,
    body: &str,
) -> crate::harness::Response {
    let text = std::fs::read_to_string(dir.join(".nimbus/up.json")).expect("reading up.json");
    let record: serde_json::Value = serde_json::from_str(&text).expect("up.json is JSON");
    let addr: std::net::SocketAddr = record["admin"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .expect("admin address");
    let auth = format!("Bearer {}", record["token"].as_str().expect("token"));
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    crate::harness::request(addr, method, path, &headers, body.as_bytes().to_vec()).await
}

/// Prints `mb` megabytes to stdout in lines of 1 KiB (1,024 lines a write).
const FLOOD_JS: &str = "
exports.handler = async (event) => {
  const mb = Number(event.queryStringParameters.mb);
  const chunk = ('x'.repeat(1023) + '\\n').repeat(1024);
  for (let i = 0; i < mb; i++) process.stdout.write(chunk);
  return { statusCode: 200, body: 'flooded' };
};
";

/// The newest invocation record once its dropped lines reach `at_least`: a flood's
/// lines are still being read after its record is written, and are added to it as they
/// are dropped.
async fn newest_record_dropping(app: &TestApp, at_least: u64) -> serde_json::Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let out = app
            .nimbus_until(&["invocations", "--json"], |out| !out.is_empty())
            .await;
        let record: serde_json::Value = out
            .lines()
            .next()
            .and_then(|line| serde_json::from_str(line).ok())
            .expect("a JSON record");
        if record["logLinesDropped"].as_u64().unwrap_or(0) >= at_least {
            return record;
        }
        assert!(std::time::Instant::now() < deadline, "{record}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Issue 14: one byte of stdout that was not UTF-8 ended nimbus's reading of the
/// instance's output, closing the pipe: the function's next print failed (BrokenPipeError)
/// and the invocation with it (502), and so did every later one.
#[tokio::test]
async fn output_that_is_not_utf8_is_logged_and_the_function_keeps_printing() {
    let manifest = "service: bytes\nprovider:\n  runtime: python3.12\nfunctions:\n  bytes:\n    handler: handler.handler\n    events:\n      - httpApi: GET /bytes\n";
    let handler = "import sys\n\ndef handler(event, context):\n    sys.stdout.buffer.write(b'bad \\xff byte\\n')\n    sys.stdout.flush()\n    for i in range(20):\n        print('after', i)\n    sys.stdout.flush()\n    return {'statusCode': 200, 'body': 'printed'}\n";
    let app = TestApp::new(&[("nimbus.yaml", manifest), ("handler.py", handler)]);
    let server = TestServer::start(app.path(), &[]);
    for _ in 0..2 {
        let res = server.get("/bytes").await;
        assert_eq!(res.status, 200, "{}", res.text());
        assert_eq!(res.text(), "printed");
    }
    let logs = app
        .nimbus_until(&["logs"], |out| out.contains("after 19"))
        .await;
    assert!(logs.contains("bad \u{fffd} byte"), "{logs}");
}

/// Issue 20: one invocation printing 200 MB grew `.nimbus/` by 168 MB and nimbus's stderr
/// by 240 MB, and about half the lines were dropped without notice.
#[tokio::test]
async fn a_200_mb_stdout_flood_records_its_drops_and_the_store_stays_under_its_quota() {
    let manifest = "service: flood\nprovider:\n  runtime: nodejs20.x\n  timeout: 60\nfunctions:\n  flood:\n    handler: flood.handler\n    events:\n      - httpApi: GET /flood\n";
    let app = TestApp::new(&[("serverless.yml", manifest), ("flood.js", FLOOD_JS)]);
    let server = TestServer::start(app.path(), &["--retention-size", "6MB"]);
    let res = server.get("/flood?mb=200").await;
    assert_eq!(res.status, 200, "{}", res.text());
    // 204,800 lines are printed and 4 MiB of them (4,100 lines) kept.
    let record = newest_record_dropping(&app, 200 * 1024 - 4 * 1024 - 64).await;
    let request_id = record["requestId"]
        .as_str()
        .expect("a request id")
        .to_owned();
    let dropped = record["logLinesDropped"].as_u64().unwrap_or(0);
    assert!(dropped <= 200 * 1024, "{dropped} dropped");
    let logs = app
        .nimbus_until(&["logs", "--request", &request_id], |out| {
            out.contains("REPORT")
        })
        .await;
    let report = logs
        .lines()
        .find(|l| l.contains("REPORT"))
        .unwrap_or_default();
    assert!(report.contains(" log lines dropped"), "{report}");
    // nimbus's own log got at most the kept part too.
    assert!(
        server.logs().len() < 8 << 20,
        "{} bytes of log",
        server.logs().len()
    );

    // A second flood: the store stays within its quota, deleting the oldest lines first.
    let res = server.get("/flood?mb=100").await;
    assert_eq!(res.status, 200, "{}", res.text());
    newest_record_dropping(&app, 100 * 1024 - 4 * 1024 - 64).await;
    let db = app.path().join(".nimbus/nimbus.db");
    let size = std::fs::metadata(&db).map_or(0, |m| m.len());
    assert!(size < 16 << 20, "the store is {size} bytes");
    // Pruning follows the commit of what pushed the store past its quota.
    let n_lines = |out: &str| out.lines().filter(|l| l.contains("xxxx")).count();
    app.nimbus_until(&["logs", "--request", &request_id], |out| {
        n_lines(out) < 3 * 1024
    })
    .await;
}

/// Issue 20: `nimbus validate` said "valid" when the handler's file existed but its export
/// did not.
#[test]
fn validate_loads_each_handler_and_names_a_missing_export_or_a_failed_import() {
    let manifest = "service: exports\nprovider:\n  runtime: nodejs20.x\nfunctions:\n  api:\n    handler: ok.handler\n  py:\n    handler: mod.handler\n    runtime: python3.12\n  imp:\n    handler: broken.handler\n";
    let app = TestApp::new(&[
        ("serverless.yml", manifest),
        ("ok.js", "exports.other = async () => ({});\n"),
        ("mod.py", "def other(event, context):\n    return 1\n"),
        (
            "broken.js",
            "require('no-such-package-anywhere');\nexports.handler = async () => ({});\n",
        ),
    ]);
    let out = app.nimbus(&["validate"]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    for expected in [
        "serverless.yml:6:1: functions.api.handler: Runtime.HandlerNotFound: ok.handler is undefined or not exported",
        "serverless.yml:8:1: functions.py.handler: Runtime.HandlerNotFound: Handler 'handler' missing on module 'mod'",
        "serverless.yml:11:1: functions.imp.handler: Runtime.ImportModuleError: Error: Cannot find module 'no-such-package-anywhere'",
    ] {
        assert!(
            out.stderr.contains(expected),
            "{expected:?} in:\n{}",
            out.stderr
        );
    }
    // Loading runs the module's top-level code; --no-load checks files only.
    let out = app.nimbus(&["validate", "--no-load"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
}
