//! WebAssembly components: both worlds through the gateway and `nimbus invoke`, limits,
//! traps, bad components, outbound HTTP, a JavaScript component, a burst from zero, the
//! services through WIT imports, and guests of the older 0.1 world.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::harness::{TestApp, TestServer};

/// The guests the tests use, built once from source for wasm32-wasip2.
pub(crate) struct Guests {
    pub(crate) http_behave: PathBuf,
    events_behave: PathBuf,
    services_behave: PathBuf,
    events_v0_1: PathBuf,
    wasm_hello: PathBuf,
    wasm_events: PathBuf,
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Builds the fixture workspace and the two examples into one target dir, so they
/// share compiled dependencies.
pub(crate) fn guests() -> &'static Guests {
    static BUILT: OnceLock<Guests> = OnceLock::new();
    BUILT.get_or_init(|| {
        let target_dir = repo().join("target/wasm-guests");
        for manifest in [
            "tests/fixtures/wasm-guests/Cargo.toml",
            "examples/wasm-hello/Cargo.toml",
            "examples/wasm-events/Cargo.toml",
        ] {
            cargo_build_wasm(&repo().join(manifest), &target_dir);
        }
        let out = target_dir.join("wasm32-wasip2/release");
        let guests = Guests {
            http_behave: out.join("http-behave.wasm"),
            events_behave: out.join("events_behave.wasm"),
            services_behave: out.join("services_behave.wasm"),
            events_v0_1: out.join("events_v0_1.wasm"),
            wasm_hello: out.join("wasm-hello.wasm"),
            wasm_events: out.join("wasm_events.wasm"),
        };
        for path in [
            &guests.http_behave,
            &guests.events_behave,
            &guests.services_behave,
            &guests.events_v0_1,
            &guests.wasm_hello,
            &guests.wasm_events,
        ] {
            assert!(path.is_file(), "{} was not built", path.display());
        }
        guests
    })
}

fn cargo_build_wasm(manifest: &Path, target_dir: &Path) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(&cargo)
        .args(["build", "--quiet", "--release", "--target", "wasm32-wasip2"])
        .arg("--manifest-path")
        .arg(manifest)
        .env("CARGO_TARGET_DIR", target_dir)
        .output()
        .expect("running cargo build for a wasm guest");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("target may not be installed") && !stderr.contains("can't find crate"),
        "the wasm32-wasip2 target is missing: run `rustup target add wasm32-wasip2`\n{stderr}"
    );
    assert!(
        output.status.success(),
        "building {} failed: run `cargo build --release --target wasm32-wasip2 --manifest-path {}`\n{stderr}",
        manifest.display(),
        manifest.display()
    );
}

/// An app folder holding `manifest` and copies of components at the given paths.
pub(crate) fn wasm_app(manifest: &str, components: &[(&str, &Path)]) -> TestApp {
    let app = TestApp::new(&[("nimbus.yaml", manifest)]);
    for (name, source) in components {
        let dest = app.path().join(name);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).expect("creating the component folder");
        }
        std::fs::copy(source, &dest).expect("copying a component");
    }
    app
}

/// An HTTP API (payload 2.0) event for `nimbus invoke`.
fn http_api_event(path: &str, query: &str) -> String {
    serde_json::json!({
        "version": "2.0",
        "routeKey": format!("GET {path}"),
        "rawPath": path,
        "rawQueryString": query,
        "headers": { "host": "invoke.local" },
        "requestContext": { "http": { "method": "GET", "path": path }, "requestId": "r1" },
        "isBase64Encoded": false,
    })
    .to_string()
}

#[tokio::test]
async fn wasi_http_example_answers_through_the_gateway_and_invoke() {
    let guests = guests();
    let manifest = std::fs::read_to_string(repo().join("examples/wasm-hello/nimbus.yaml"))
        .expect("reading the example manifest");
    let app = wasm_app(
        &manifest,
        &[(
            "target/wasm32-wasip2/release/wasm-hello.wasm",
            &guests.wasm_hello,
        )],
    );
    let server = TestServer::start(app.path(), &[]);
    let res = server.get("/hello?name=Ada").await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.json()["message"], "Hello, Ada!");
    assert_eq!(res.header("content-type"), Some("application/json"));
    drop(server);

    let event = http_api_event("/hello", "name=Grace");
    let out = app.nimbus(&["invoke", "hello", "--data", &event]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let response: serde_json::Value =
        serde_json::from_str(&out.stdout).expect("invoke prints JSON");
    assert_eq!(response["statusCode"], 200);
    let body: serde_json::Value =
        serde_json::from_str(response["body"].as_str().expect("a body")).expect("JSON body");
    assert_eq!(body["message"], "Hello, Grace!");
}

#[tokio::test]
async fn nimbus_world_example_takes_http_and_any_other_event() {
    let guests = guests();
    let manifest = std::fs::read_to_string(repo().join("examples/wasm-events/nimbus.yaml"))
        .expect("reading the example manifest");
    let app = wasm_app(
        &manifest,
        &[(
            "target/wasm32-wasip2/release/wasm_events.wasm",
            &guests.wasm_events,
        )],
    );
    let server = TestServer::start(app.path(), &[]);
    let res = server.get("/events").await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.json()["kind"], "http");
    assert_eq!(res.json()["visits"], 1, "counted in KV");
    let res = server.request("POST", "/events", &[], b"{}".to_vec()).await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.json()["kind"], "http");
    assert_eq!(res.json()["visits"], 2, "counted in KV");
    drop(server);

    let out = app.nimbus(&[
        "invoke",
        "events",
        "--data",
        r#"{"Records":[{"body":"hi"}]}"#,
    ]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let result: serde_json::Value = serde_json::from_str(&out.stdout).expect("invoke prints JSON");
    assert_eq!(result["kind"], "records");
    assert_eq!(result["functionName"], "wasm-events-dev-events");
    assert!(out.stderr.contains("handling 27 bytes"), "{}", out.stderr);

    let out = app.nimbus(&["invoke", "events", "--data", "[1]"]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    let error: serde_json::Value = serde_json::from_str(&out.stdout).expect("invoke prints JSON");
    assert_eq!(error["errorType"], "InvalidEvent");
    assert_eq!(error["errorMessage"], "expected a JSON object");
}

/// HTTP APIs pass JSON bodies as text (other bodies arrive base64-encoded).
const JSON: &[(&str, &str)] = &[("content-type", "application/json")];

const BEHAVE_MANIFEST: &str = r#"
service: behave
provider:
  runtime: wasm
  memorySize: 64
  timeout: 1
  environment: { GREETING: hola }
functions:
  http:
    handler: http-behave.wasm
    events:
      - httpApi: "ANY /h/{proxy+}"
      - http: "ANY /rest/{proxy+}"
  events:
    handler: events-behave.wasm
    events:
      - httpApi: "ANY /e/{proxy+}"
"#;

fn behave_app() -> TestApp {
    let guests = guests();
    wasm_app(
        BEHAVE_MANIFEST,
        &[
            ("http-behave.wasm", &guests.http_behave),
            ("events-behave.wasm", &guests.events_behave),
        ],
    )
}

#[tokio::test]
async fn http_component_sees_the_request_and_its_answer_maps_for_both_apis() {
    let app = behave_app();
    let server = TestServer::start(app.path(), &[]);
    // The request path reaches the component as the gateway received it.
    let res = server
        .request(
            "POST",
            "/h/echo?x=1",
            &[("cookie", "a=1; b=2"), ("content-type", "text/plain")],
            b"ping".to_vec(),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(
        res.text(),
        "wasi:http POST /h/echo?x=1 cookie=a=1; b=2 body=ping"
    );
    for prefix in ["/h", "/rest"] {
        let res = server.get(&format!("{prefix}/cookies")).await;
        assert_eq!(res.status, 200, "{prefix}: {}", res.text());
        let cookies: Vec<&str> = res
            .headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        assert_eq!(cookies, ["a=1; Path=/", "b=2; Path=/"], "{prefix}");
        let res = server.get(&format!("{prefix}/binary")).await;
        assert_eq!(res.status, 200, "{prefix}");
        assert_eq!(&res.body[..], &[0xff, 0x00, 0xfe], "{prefix}");
    }
    let res = server.get("/h/env").await;
    assert_eq!(res.text(), "behave-dev-http hola");
    let res = server.get("/h/log").await;
    assert_eq!(res.status, 200);
    let request_id = res.header("apigw-requestid").unwrap_or_default().to_owned();
    wait_for_log(&server, "hello from the http guest");
    let logs = server.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("hello from the http guest"))
        .unwrap_or_default();
    assert!(
        request_id.is_empty() || line.contains(&request_id),
        "log line without request id {request_id}: {line}"
    );
}

#[tokio::test]
async fn memory_bomb_is_stopped_at_the_limit_and_the_next_request_is_fine() {
    let app = behave_app();
    let server = TestServer::start(app.path(), &[]);
    for (bomb, ok) in [("/h/oom", "/h/echo"), ("/e/x?action=oom", "/e/x")] {
        let started = Instant::now();
        let res = server
            .request("POST", bomb, JSON, br#"{"action":"oom"}"#.to_vec())
            .await;
        assert_eq!(res.status, 502, "{bomb}: {}", res.text());
        assert!(started.elapsed() < Duration::from_secs(5), "{bomb}");
        let res = server.get(ok).await;
        assert_eq!(res.status, 200, "{ok}: {}", res.text());
    }
    let out = app.nimbus(&["invoke", "events", "--data", r#"{"action":"oom"}"#]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    let error: serde_json::Value = serde_json::from_str(&out.stdout).expect("invoke prints JSON");
    assert_eq!(error["errorType"], "Runtime.OutOfMemory", "{error}");
    assert!(
        error["errorMessage"]
            .as_str()
            .unwrap_or_default()
            .contains("memory limit of 64 MB exceeded"),
        "{error}"
    );
}

#[tokio::test]
async fn infinite_loop_times_out_while_other_requests_to_the_function_are_served() {
    let app = behave_app();
    let server = std::sync::Arc::new(TestServer::start(app.path(), &[]));
    let loops: Vec<_> = (0..2)
        .map(|_| {
            let server = server.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let res = server.get("/h/loop").await;
                (res.status, started.elapsed())
            })
        })
        .collect();
    // While both loops spin, the same function keeps answering.
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..10 {
        let started = Instant::now();
        let res = server.get("/h/echo").await;
        assert_eq!(res.status, 200, "{}", res.text());
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "an echo took {:?} beside looping guests",
            started.elapsed()
        );
    }
    for handle in loops {
        let (status, elapsed) = handle.await.expect("loop request task");
        assert_eq!(status, 504);
        assert!(
            elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(3),
            "timed out after {elapsed:?}"
        );
    }
    wait_for_log(&server, "Task timed out after 1.00 seconds");
    // The nimbus world times out the same way.
    let res = server
        .request("POST", "/e/x", JSON, br#"{"action":"loop"}"#.to_vec())
        .await;
    assert_eq!(res.status, 504, "{}", res.text());
    let res = server.get("/h/echo").await;
    assert_eq!(res.status, 200);
}

#[tokio::test]
async fn trap_answers_500_with_the_trap_logged_and_the_server_keeps_serving() {
    let app = behave_app();
    let server = TestServer::start(app.path(), &[]);
    let res = server.get("/h/panic").await;
    assert_eq!(res.status, 500, "{}", res.text());
    let res = server
        .request("POST", "/e/x", JSON, br#"{"action":"panic"}"#.to_vec())
        .await;
    assert_eq!(res.status, 500, "{}", res.text());
    wait_for_log(&server, "wasm trap:");
    let logs = server.logs();
    assert!(
        logs.contains("the request asked for a panic"),
        "the guest's panic message is logged:\n{logs}"
    );
    for _ in 0..3 {
        assert_eq!(server.get("/h/echo").await.status, 200);
        assert_eq!(server.get("/e/x").await.status, 200);
    }
}

#[test]
fn invalid_components_are_rejected_by_validate_with_what_was_expected() {
    let manifest = r#"
service: bad
provider: { runtime: wasm }
functions:
  core:
    handler: core.wasm
  empty:
    handler: empty.wasm
  text:
    handler: text.wasm
  missing:
    handler: missing.wasm
"#;
    let app = TestApp::new(&[("nimbus.yaml", manifest), ("text.wasm", "hello")]);
    // The smallest core module and the smallest component (which exports nothing).
    std::fs::write(app.path().join("core.wasm"), b"\0asm\x01\0\0\0").expect("writing");
    std::fs::write(app.path().join("empty.wasm"), b"\0asm\x0d\0\x01\0").expect("writing");
    let out = app.nimbus(&["validate"]);
    assert_eq!(out.code, Some(1), "{}", out.stdout);
    let dir = app.path().canonicalize().expect("app dir");
    let stderr = out.stderr.replace(&dir.display().to_string(), "APP");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
    expect_test::expect![[r#"
        error: nimbus.yaml:6:1: functions.core.handler: expected a WebAssembly component exporting wasi:http/incoming-handler@0.2 or nimbus:function/handler@0.2; APP/core.wasm is a core module: build with --target wasm32-wasip2 or wrap it with `wasm-tools component new`
        error: nimbus.yaml:8:1: functions.empty.handler: expected a WebAssembly component exporting wasi:http/incoming-handler@0.2 or nimbus:function/handler@0.2; this component exports nothing
        error: nimbus.yaml:10:1: functions.text.handler: expected a WebAssembly component exporting wasi:http/incoming-handler@0.2 or nimbus:function/handler@0.2; APP/text.wasm is not WebAssembly at all
        error: nimbus.yaml:12:1: functions.missing.handler: component not found: APP/missing.wasm; build it first (for Rust: cargo build --release --target wasm32-wasip2)
        error: the manifest has 4 errors; fix them and try again"#]].assert_eq(&errors.join("\n"));
}

#[tokio::test]
async fn outbound_http_is_denied_by_default_and_allowed_for_listed_hosts() {
    let guests = guests();
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding the upstream");
    let upstream_addr = upstream.local_addr().expect("upstream address");
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        while let Ok((mut stream, _)) = upstream.accept().await {
            tokio::spawn(async move {
                // Read the whole head before answering: closing a socket with unread
                // input resets the connection before the client reads the answer.
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\npong")
                    .await;
                // Keep the connection until the client is done with it.
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
            });
        }
    });
    let manifest = format!(
        r#"
service: out
provider: {{ runtime: wasm }}
functions:
  closed:
    handler: http-behave.wasm
    events:
      - httpApi: "GET /closed/{{proxy+}}"
  open:
    handler: http-behave.wasm
    allowedOutboundHosts: ["http://{upstream_addr}"]
    events:
      - httpApi: "GET /open/{{proxy+}}"
"#
    );
    let app = wasm_app(&manifest, &[("http-behave.wasm", &guests.http_behave)]);
    let server = TestServer::start(app.path(), &[]);
    let url = format!("http://{upstream_addr}/ping");
    let res = server.get(&format!("/open/outbound?url={url}")).await;
    assert_eq!(res.text(), "outbound 200: pong", "{}", server.logs());
    let res = server.get(&format!("/closed/outbound?url={url}")).await;
    assert_eq!(res.status, 502, "{}", res.text());
    assert!(res.text().contains("HttpRequestDenied"), "{}", res.text());
    wait_for_log(
        &server,
        "denied: add it to the function's allowedOutboundHosts",
    );
}

#[tokio::test]
async fn javascript_component_from_componentize_js_answers() {
    let component = componentize_js();
    let manifest = r#"
service: js
provider: { runtime: wasm, memorySize: 256 }
functions:
  js:
    handler: handler.wasm
    events:
      - httpApi: GET /js
"#;
    let app = wasm_app(manifest, &[("handler.wasm", &component)]);
    let server = TestServer::start(app.path(), &[]);
    let res = server.get("/js").await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.json()["language"], "javascript");
    drop(server);
    let out = app.nimbus(&["invoke", "js", "--data", r#"{"n":1}"#]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let result: serde_json::Value = serde_json::from_str(&out.stdout).expect("invoke prints JSON");
    assert_eq!(result["got"]["n"], 1);
    assert_eq!(result["functionName"], "js-dev-js");
}

/// Componentizes tests/fixtures/wasm-js/handler.js with npm's componentize-js, installed
/// into target/ on first use.
fn componentize_js() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let fixture = repo().join("tests/fixtures/wasm-js");
            let work = repo().join("target/wasm-js");
            std::fs::create_dir_all(&work).expect("creating target/wasm-js");
            for file in ["package.json", "handler.js"] {
                std::fs::copy(fixture.join(file), work.join(file)).expect("copying the fixture");
            }
            let out = work.join("handler.wasm");
            let source_newer = std::fs::metadata(work.join("handler.js"))
                .and_then(|m| m.modified())
                .ok();
            let built = std::fs::metadata(&out).and_then(|m| m.modified()).ok();
            if built.is_some() && built >= source_newer {
                return out;
            }
            if !work.join("node_modules/.bin/componentize-js").exists() {
                let status = Command::new("npm")
                    .args(["install", "--no-audit", "--no-fund", "--silent"])
                    .current_dir(&work)
                    .status()
                    .expect("running npm install");
                assert!(
                    status.success(),
                    "npm install of componentize-js failed: run `npm install` in {}",
                    work.display()
                );
            }
            let status = Command::new(work.join("node_modules/.bin/componentize-js"))
                .arg("--wit")
                .arg(repo().join("wit"))
                .args([
                    "--world-name",
                    "function",
                    "-o",
                    "handler.wasm",
                    "handler.js",
                ])
                .current_dir(&work)
                .status()
                .expect("running componentize-js");
            assert!(status.success(), "componentize-js failed");
            out
        })
        .clone()
}

#[tokio::test]
async fn a_thousand_concurrent_requests_from_zero_all_answer_200() {
    let guests = guests();
    let manifest = r#"
service: burst
provider: { runtime: wasm, memorySize: 128, timeout: 30 }
functions:
  hello:
    handler: hello.wasm
    events:
      - httpApi: GET /hello
"#;
    let app = wasm_app(manifest, &[("hello.wasm", &guests.wasm_hello)]);
    let server = std::sync::Arc::new(TestServer::start(app.path(), &[]));
    let started = Instant::now();
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(1000));
    let requests: Vec<_> = (0..1000)
        .map(|idx| {
            let server = server.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                // Connect first, so all 1,000 requests are in flight together.
                let stream = tokio::net::TcpStream::connect(server.addr)
                    .await
                    .expect("connecting");
                barrier.wait().await;
                crate::harness::request_on(stream, server.addr, &format!("/hello?name=n{idx}"))
                    .await
            })
        })
        .collect();
    let mut n_ok = 0;
    for (idx, handle) in requests.into_iter().enumerate() {
        let res = handle.await.expect("request task");
        assert_eq!(res.status, 200, "request {idx}: {}", res.text());
        assert_eq!(res.json()["message"], format!("Hello, n{idx}!"));
        n_ok += 1;
    }
    assert_eq!(n_ok, 1000);
    eprintln!(
        "1,000 concurrent requests answered in {:?}",
        started.elapsed()
    );
}

const SERVICES_MANIFEST: &str = r#"
service: svc
provider:
  runtime: wasm
  memorySize: 64
  timeout: 5
queues:
  orders: {}
  secret: {}
  audit: {}
topics:
  events:
    subscriptions:
      - queue: audit
        rawMessageDelivery: true
kv: [sessions, seen, other]
buckets: [receipts]
functions:
  front:
    handler: services-behave.wasm
    iamRoleStatements:
      - Effect: Allow
        Action: [sqs:SendMessage]
        Resource: arn:aws:sqs:*:*:orders
      - Effect: Allow
        Action: [sqs:ReceiveMessage, sqs:DeleteMessage]
        Resource: queue:audit
      - Effect: Allow
        Action: [sns:Publish]
        Resource: topic:events
      - Effect: Allow
        Action: ["kv:*"]
        Resource: kv:sessions
      - Effect: Allow
        Action: [s3:PutObject, s3:GetObject, s3:ListBucket]
        Resource: [arn:aws:s3:::receipts, arn:aws:s3:::receipts/*]
    events:
      - httpApi: POST /svc
  back:
    handler: services-behave.wasm
    iamRoleStatements:
      - Effect: Allow
        Action: [kv:Put]
        Resource: kv:seen
    events:
      - sqs: { arn: orders, batchSize: 1 }
"#;

fn services_app() -> TestApp {
    let guests = guests();
    wasm_app(
        SERVICES_MANIFEST,
        &[("services-behave.wasm", &guests.services_behave)],
    )
}

/// Asks the `front` function to do `action` over HTTP.
async fn svc(server: &TestServer, action: serde_json::Value) -> crate::harness::Response {
    server
        .request("POST", "/svc", JSON, action.to_string().into_bytes())
        .await
}

#[tokio::test]
async fn wasm_functions_reach_queues_topics_kv_and_buckets_through_their_imports() {
    let app = services_app();
    let dir = app.path();
    let server = TestServer::start(dir, &[]);

    // A send from one wasm function is consumed by another, in the sender's trace.
    let res = svc(
        &server,
        serde_json::json!({ "action": "send", "body": "o1" }),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.json()["md5OfBody"], "f1584b995a4770986ad75bb8d29e9734");
    let trace_id = res
        .header("x-nimbus-trace-id")
        .expect("trace id")
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = server
            .admin(dir, "GET", "/v1/kv/seen/keys/order/o1", None)
            .await;
        if got.status == 200 {
            assert_eq!(got.text(), "o1");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the consumer never stored the order: {} {}
{}",
            got.status,
            got.text(),
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The gateway records its span after it answers, which may be after the consumer's:
    // wait for both.
    let tree = nimbus_until(&app, &["trace", &trace_id], |out| {
        out.contains("back [internal]") && out.contains("POST /svc [server]")
    })
    .await;
    let lines: Vec<&str> = tree.lines().collect();
    assert!(lines[1].starts_with("  POST /svc [server]"), "{tree}");
    assert!(lines[2].starts_with("    front [internal]"), "{tree}");
    assert!(
        lines[3].starts_with("      back [internal]"),
        "the consumer's span is a child of the sender's:\n{tree}"
    );

    // KV: put with a TTL and metadata, get, list by prefix, delete.
    let res = svc(
        &server,
        serde_json::json!({ "action": "kv", "key": "user1", "value": "alice" }),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    let kv = res.json();
    assert_eq!(kv["value"], "alice", "{kv}");
    assert_eq!(kv["metadata"], r#"{"by":"wasm"}"#, "{kv}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let expiration = kv["expiration"].as_u64().expect("an expiration");
    assert!(
        (now + 3500..=now + 3700).contains(&expiration),
        "{expiration} vs {now}"
    );
    assert_eq!(kv["listed"], serde_json::json!(["user1", "user1-plain"]));
    assert_eq!(kv["afterDelete"], serde_json::Value::Null);
    // The same key through the HTTP API: one store behind both.
    let got = server
        .admin(dir, "GET", "/v1/kv/sessions/keys/user1", None)
        .await;
    assert_eq!(got.text(), "alice");
    assert_eq!(got.header("x-nimbus-metadata"), Some(r#"{"by":"wasm"}"#));

    // Buckets: put, get back, list, and a missing key is none rather than an error.
    let res = svc(
        &server,
        serde_json::json!({ "action": "put-object", "key": "r/1.txt", "body": "receipt" }),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    let object = res.json();
    assert_eq!(object["size"], 7, "{object}");
    assert_eq!(object["body"], "receipt");
    assert_eq!(object["contentType"], "text/plain");
    assert_eq!(object["listed"], serde_json::json!(["r/1.txt"]));
    assert_eq!(object["missing"], true);
    let got = server
        .admin(dir, "GET", "/v1/buckets/receipts/objects/r/1.txt", None)
        .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.text(), "receipt");
    assert_eq!(
        got.header("etag"),
        Some(format!("\"{}\"", object["etag"].as_str().expect("etag")).as_str())
    );

    // Topics fan out; the subscribed queue is read back by the function.
    let res = svc(
        &server,
        serde_json::json!({ "action": "publish", "message": "created" }),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    let res = svc(
        &server,
        serde_json::json!({ "action": "receive", "queue": "audit" }),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(
        res.json()["messages"],
        serde_json::json!([{ "body": "created", "from": null }])
    );
}

#[tokio::test]
async fn a_wasm_call_to_a_resource_not_granted_is_refused_and_logged() {
    let app = services_app();
    let dir = app.path();
    let server = TestServer::start(dir, &[]);
    let res = svc(
        &server,
        serde_json::json!({ "action": "send", "queue": "secret" }),
    )
    .await;
    assert_eq!(res.status, 403, "{}", res.text());
    let error = res.json();
    assert_eq!(error["errorType"], "AccessDenied", "{error}");
    assert_eq!(error["action"], "sqs:SendMessage");
    assert_eq!(error["resource"], "queue:secret");
    assert_eq!(
        error["message"],
        "function `front` may not sqs:SendMessage on queue:secret; grant it in provider.iam.role.statements"
    );
    wait_for_log(
        &server,
        "nimbus:function/queue.send refused (access denied): sqs:SendMessage on queue:secret",
    );
    let secret = server.admin(dir, "GET", "/v1/queues", None).await.json();
    let secret = secret["queues"]
        .as_array()
        .and_then(|queues| queues.iter().find(|q| q["name"] == "secret"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(secret["visible"], 0, "nothing was sent: {secret}");

    // A KV namespace the function is not granted, through `nimbus invoke` (the control
    // API): the function's error names the action and resource.
    let out = app.nimbus(&[
        "invoke",
        "front",
        "--data",
        r#"{"action":"kv","namespace":"other"}"#,
    ]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    let error: serde_json::Value = serde_json::from_str(&out.stdout).expect("invoke prints JSON");
    assert_eq!(error["errorType"], "AccessDenied", "{error}");
    assert_eq!(
        error["errorMessage"],
        "kv:Put on kv:other: function `front` may not kv:Put on kv:other; grant it in provider.iam.role.statements"
    );
    // The consumer may write `seen` but not read `sessions`.
    let out = app.nimbus(&["invoke", "back", "--data", r#"{"action":"kv"}"#]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(out.stdout.contains("AccessDenied"), "{}", out.stdout);
}

#[test]
fn a_guest_of_the_0_1_world_is_still_invoked_and_services_need_a_server() {
    let guests = guests();
    let manifest = r#"
service: old
provider: { runtime: wasm, memorySize: 64 }
kv: [sessions]
functions:
  old:
    handler: old.wasm
  svc:
    handler: services-behave.wasm
    iamRoleStatements:
      - { Effect: Allow, Action: ["kv:*"], Resource: kv:sessions }
"#;
    let app = wasm_app(
        manifest,
        &[
            ("old.wasm", &guests.events_v0_1),
            ("services-behave.wasm", &guests.services_behave),
        ],
    );
    let out = app.nimbus(&["invoke", "old", "--data", r#"{"n":1}"#]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let result: serde_json::Value = serde_json::from_str(&out.stdout).expect("invoke prints JSON");
    assert_eq!(result["world"], "0.1");
    assert_eq!(result["functionName"], "old-dev-old");
    let out = app.nimbus(&["invoke", "old", "--data", r#"{"fail":true}"#]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    let error: serde_json::Value = serde_json::from_str(&out.stdout).expect("invoke prints JSON");
    assert_eq!(error["errorType"], "OldError");

    // Without `nimbus up` there is no store to reach: the call fails, saying so.
    let out = app.nimbus(&["invoke", "svc", "--data", r#"{"action":"kv"}"#]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    let error: serde_json::Value = serde_json::from_str(&out.stdout).expect("invoke prints JSON");
    assert_eq!(error["errorType"], "Unavailable", "{error}");
    assert!(
        error["errorMessage"]
            .as_str()
            .unwrap_or_default()
            .contains("only while `nimbus up` serves the app"),
        "{error}"
    );
}

/// Runs a nimbus command in the app folder until `accept` likes its stdout (records are
/// written in the background, a moment after the response).
async fn nimbus_until(app: &TestApp, args: &[&str], accept: impl Fn(&str) -> bool) -> String {
    let mut last = String::new();
    for _ in 0..200 {
        let out = app.nimbus(args);
        if out.code == Some(0) && accept(&out.stdout) {
            return out.stdout;
        }
        last = format!("exit {:?}\n{}{}", out.code, out.stdout, out.stderr);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nimbus {args:?} never printed what was expected; last:\n{last}");
}

fn wait_for_log(server: &TestServer, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !server.logs().contains(needle) {
        assert!(
            Instant::now() < deadline,
            "no log line with {needle:?}:\n{}",
            server.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
