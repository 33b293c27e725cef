//! `nimbus dev`: edits to handlers and to the manifest reload the app without dropping a
//! request; a broken manifest is reported and the last good version keeps serving.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::{TestApp, TestServer, process_running, request};

const MANIFEST: &str = "service: dev
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

const BYE_FN: &str = "  bye:
    handler: bye.handler
    events:
      - httpApi: GET /bye
";

const BYE_JS: &str = "exports.handler = async () => ({ statusCode: 200, body: 'bye' });\n";

/// A handler answering `text` (and its process id in `x-pid`), after `?sleep=MS` if
/// asked.
fn hello_js(text: &str) -> String {
    format!(
        "exports.handler = async (event) => {{
  const q = event.queryStringParameters || {{}};
  if (q.sleep) await new Promise((resolve) => setTimeout(resolve, Number(q.sleep)));
  return {{ statusCode: 200, headers: {{ 'x-pid': String(process.pid) }}, body: '{text}' }};
}};
"
    )
}

fn dev(app: &TestApp) -> TestServer {
    TestServer::start_command("dev", app.path(), &[], &[])
}

fn write(app: &TestApp, path: &str, text: &str) {
    std::fs::write(app.path().join(path), text).expect("writing an app file");
}

/// Waits until `accept` likes what the server printed (stdout, or stderr's log).
async fn wait_for_output(server: &TestServer, what: &str, accept: impl Fn(&str, &str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (stdout, stderr) = (server.stdout(), server.logs());
        if accept(&stdout, &stderr) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "nimbus dev never printed {what}; stdout:\n{stdout}\nstderr:\n{stderr}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `GET path` answers `status` with `body`.
async fn wait_for_answer(server: &TestServer, path: &str, status: u16, body: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let res = server.get(path).await;
        if res.status == status && res.text() == body {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "GET {path} never answered {status} {body:?}; last {} {:?}; stdout:\n{}\nstderr:\n{}",
            res.status,
            res.text(),
            server.stdout(),
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn n_reloads(stdout: &str) -> usize {
    stdout
        .lines()
        .filter(|l| l.starts_with("nimbus: reload ("))
        .count()
}

#[tokio::test]
async fn an_edited_handler_serves_new_requests_while_one_under_way_finishes_on_the_old_code() {
    let app = TestApp::new(&[("nimbus.yaml", MANIFEST), ("hello.js", &hello_js("v1"))]);
    let server = dev(&app);
    let first = server.get("/hello").await;
    assert_eq!((first.status, first.text().as_str()), (200, "v1"));
    // The warm instance, with v1 loaded, takes this one and sleeps through the reload.
    let addr = server.addr;
    let slow =
        tokio::spawn(
            async move { request(addr, "GET", "/hello?sleep=1500", &[], Vec::new()).await },
        );
    tokio::time::sleep(Duration::from_millis(200)).await;
    write(&app, "hello.js", &hello_js("v2"));
    wait_for_output(&server, "a reload line", |stdout, _| {
        stdout.contains("nimbus: reload (hello.js): reloaded hello\n")
    })
    .await;
    wait_for_answer(&server, "/hello", 200, "v2").await;
    let slow = slow.await.expect("the slow request's task");
    assert_eq!(
        (slow.status, slow.text().as_str()),
        (200, "v1"),
        "the request under way finishes on the old code"
    );
    assert_eq!(slow.header("x-pid"), first.header("x-pid"));
    // Drained, the old version's instances stop.
    let old_pid: u32 = first
        .header("x-pid")
        .and_then(|pid| pid.parse().ok())
        .expect("the handler reports its pid");
    let deadline = Instant::now() + Duration::from_secs(10);
    while process_running(old_pid) {
        assert!(
            Instant::now() < deadline,
            "the old instance {old_pid} still runs after the reload drained"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(n_reloads(&server.stdout()), 1, "{}", server.stdout());
}

#[tokio::test]
async fn manifest_edits_add_and_remove_functions_and_a_broken_manifest_keeps_the_last_good_one() {
    let app = TestApp::new(&[
        ("nimbus.yaml", MANIFEST),
        ("hello.js", &hello_js("hi")),
        ("bye.js", BYE_JS),
    ]);
    let server = dev(&app);
    assert_eq!(server.get("/bye").await.status, 404);

    write(&app, "nimbus.yaml", &format!("{MANIFEST}{BYE_FN}"));
    wait_for_answer(&server, "/bye", 200, "bye").await;
    wait_for_output(&server, "the added function and route", |stdout, _| {
        stdout.contains("nimbus: reload (nimbus.yaml): added bye; routes +GET /bye -> bye\n")
    })
    .await;

    // A new route for `hello` only: its warm instance keeps serving.
    let warm = server.get("/hello").await;
    let with_route = format!("{MANIFEST}{BYE_FN}").replace(
        "      - httpApi: GET /hello\n",
        "      - httpApi: GET /hello\n      - httpApi: GET /hi\n",
    );
    write(&app, "nimbus.yaml", &with_route);
    wait_for_answer(&server, "/hi", 200, "hi").await;
    wait_for_output(&server, "the added route", |stdout, _| {
        stdout.contains("nimbus: reload (nimbus.yaml): routes +GET /hi -> hello\n")
    })
    .await;
    assert_eq!(
        server.get("/hi").await.header("x-pid"),
        warm.header("x-pid")
    );

    // Not YAML at all: the parser's error, with its position.
    write(
        &app,
        "nimbus.yaml",
        "service: dev\nprovider:\n  runtime: [nodejs20.x\n",
    );
    wait_for_output(&server, "the YAML error", |_, stderr| {
        stderr.contains("nimbus: reload (nimbus.yaml) failed; still serving the previous version")
    })
    .await;
    let stderr = server.logs();
    assert!(stderr.contains("error: nimbus.yaml:"), "{stderr}");
    assert_eq!(server.get("/hello").await.text(), "hi");
    assert_eq!(server.get("/bye").await.text(), "bye");

    // Valid YAML, unknown runtime: the same diagnostic as `nimbus validate`.
    let unknown = format!("{MANIFEST}{BYE_FN}").replace(
        "    handler: hello.handler\n",
        "    handler: hello.handler\n    runtime: cobol85\n",
    );
    write(&app, "nimbus.yaml", &unknown);
    wait_for_output(&server, "the unknown runtime", |_, stderr| {
        stderr.contains(
            "error: nimbus.yaml:9:14: functions.hello.runtime: unknown runtime \"cobol85\"",
        )
    })
    .await;
    for _ in 0..5 {
        let res = server.get("/hello").await;
        assert_eq!((res.status, res.text().as_str()), (200, "hi"));
    }

    // Fixed, and without `bye`: the reload works again, measured from the last good one.
    write(&app, "nimbus.yaml", MANIFEST);
    wait_for_answer(&server, "/bye", 404, r#"{"message":"Not Found"}"#).await;
    wait_for_output(&server, "the removed function", |stdout, _| {
        stdout.contains(
            "nimbus: reload (nimbus.yaml): removed bye; routes -GET /bye -> bye, -GET /hi -> hello\n",
        )
    })
    .await;
    assert_eq!(server.get("/hello").await.text(), "hi");
    assert_eq!(n_reloads(&server.stdout()), 3, "{}", server.stdout());
}

#[tokio::test]
async fn five_reloads_under_steady_load_fail_no_request() {
    let app = TestApp::new(&[("nimbus.yaml", MANIFEST), ("hello.js", &hello_js("v1"))]);
    let server = dev(&app);
    assert_eq!(server.get("/hello").await.status, 200);
    let stop = Arc::new(AtomicBool::new(false));
    let n_ok = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let mut load = tokio::task::JoinSet::new();
    // One client asks for quick answers, one for slow ones, so that reloads land while
    // invocations are under way.
    for path in ["/hello", "/hello?sleep=300"] {
        let (stop, n_ok, failures, addr) =
            (stop.clone(), n_ok.clone(), failures.clone(), server.addr);
        load.spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let res = request(addr, "GET", path, &[], Vec::new()).await;
                if (200..300).contains(&res.status) {
                    n_ok.fetch_add(1, Ordering::Relaxed);
                } else if let Ok(mut failures) = failures.lock() {
                    failures.push(format!("{path}: {} {}", res.status, res.text()));
                }
            }
        });
    }
    for version in 2..=6 {
        write(&app, "hello.js", &hello_js(&format!("v{version}")));
        wait_for_output(&server, "one more reload", |stdout, _| {
            n_reloads(stdout) == version - 1
        })
        .await;
        wait_for_answer(&server, "/hello", 200, &format!("v{version}")).await;
    }
    stop.store(true, Ordering::Relaxed);
    while let Some(res) = load.join_next().await {
        res.expect("a load client");
    }
    let failures = failures.lock().map(|f| f.clone()).unwrap_or_default();
    assert_eq!(
        failures,
        Vec::<String>::new(),
        "non-2xx answers during reloads"
    );
    assert!(n_ok.load(Ordering::Relaxed) > 10, "the load ran");
}
