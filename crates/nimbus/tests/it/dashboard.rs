//! The dashboard in a real headless Chromium (Debian's `chromium` and `chromium-driver`),
//! driven over WebDriver with fantoccini: what a user sees after real requests, the live
//! log tail, a redrive, 404 pages and sign-in. Screenshots of every page go to
//! `target/dashboard-screenshots/`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};

use crate::harness::{self, TestApp, TestServer};

const MANIFEST: &str = r#"
service: shop
provider:
  runtime: nodejs20.x
  memorySize: 256
queues:
  jobs:
    visibilityTimeout: 1
    deadLetterQueue: { name: jobs-dlq, maxReceiveCount: 1 }
topics:
  alerts: {}
buckets: [uploads]
kv: [sessions]
tables:
  orders: { partitionKey: id, stream: NEW_IMAGE }
functions:
  api:
    handler: api.handler
    events:
      - httpApi: GET /work
  worker:
    handler: worker.handler
    events:
      - sqs: { arn: jobs, batchSize: 1 }
      - sns: alerts
  tick:
    handler: worker.tick
    events:
      - schedule:
          rate: rate(1 hour)
          name: hourly
"#;

const API_JS: &str = r#"
exports.handler = async (event) => {
  const q = event.queryStringParameters || {};
  console.log(`working on ${q.tag || 'plain'}`);
  if (q.fail) {
    console.error(`about to fail ${q.tag}`);
    throw new Error(`asked to fail ${q.tag}`);
  }
  return { statusCode: 200, body: 'ok' };
};
"#;

/// Fails the first time it sees a body (in this instance), so a message goes to the
/// dead-letter queue once and succeeds when redriven.
const WORKER_JS: &str = r#"
const seen = new Set();
exports.handler = async (event) => {
  for (const record of event.Records || []) {
    const body = record.body || (record.Sns && record.Sns.Message);
    if (!seen.has(body)) {
      seen.add(body);
      throw new Error(`first sight of ${body}`);
    }
    console.log(`processed ${body}`);
  }
};
exports.tick = async () => {};
"#;

/// chromedriver and a headless Chromium, for one test.
struct Browser {
    client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start() -> Browser {
        for (program, package) in [
            ("/usr/bin/chromium", "chromium"),
            ("/usr/bin/chromedriver", "chromium-driver"),
        ] {
            assert!(
                Path::new(program).exists(),
                "{program} is missing: install it with `apt-get install {package}` (.ci/run does)"
            );
        }
        // chromedriver takes no port 0: take a free port and hand it over.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("finding a free port")
            .port();
        let driver = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let profile = tempfile::tempdir().expect("a browser profile folder");
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".to_owned(),
            serde_json::json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new",
                    // CI runs as root, where Chromium's own sandbox cannot start.
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(client) => break client,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("connecting to chromedriver at {url}: {e}"),
            }
        };
        Browser {
            client,
            driver,
            _profile: profile,
        }
    }

    async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("opening {url}: {e}"));
    }

    async fn text(&self, css: &str) -> String {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("finding `{css}`: {e}"))
            .text()
            .await
            .unwrap_or_else(|e| panic!("reading the text of `{css}`: {e}"))
    }

    async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("finding `{css}`: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("clicking `{css}`: {e}"));
    }

    async fn count(&self, css: &str) -> usize {
        self.client
            .find_all(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("finding `{css}`: {e}"))
            .len()
    }

    /// Waits (up to `within`) until `css` matches an element whose text contains `text`;
    /// one script per check, so the check costs one round trip however many elements.
    async fn wait_for_text(&self, css: &str, text: &str, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        let script = "return Array.from(document.querySelectorAll(arguments[0])).some((e) => e.textContent.includes(arguments[1]));";
        loop {
            let found = self
                .client
                .execute(
                    script,
                    vec![serde_json::json!(css), serde_json::json!(text)],
                )
                .await;
            if found.is_ok_and(|v| v == serde_json::Value::Bool(true)) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn url(&self) -> String {
        self.client
            .current_url()
            .await
            .expect("the current URL")
            .to_string()
    }

    /// Saves a PNG of the page as `target/dashboard-screenshots/<name>.png`.
    async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("taking a screenshot");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("creating the screenshot folder");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("writing a screenshot");
    }

    async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// `target/dashboard-screenshots`, beside the binary under test.
fn screenshot_dir() -> PathBuf {
    let binary = Path::new(harness::NIMBUS);
    binary
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("target"))
        .join("dashboard-screenshots")
}

/// The control API's address and admin token from `.nimbus/up.json`.
fn control(app_dir: &Path) -> (SocketAddr, String) {
    let text = std::fs::read_to_string(app_dir.join(".nimbus/up.json")).expect("up.json");
    let record: serde_json::Value = serde_json::from_str(&text).expect("up.json is JSON");
    let admin = record["admin"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .expect("up.json names the control API");
    let token = record["token"].as_str().expect("up.json holds the token");
    (admin, token.to_owned())
}

/// Each dashboard path is the "Not found" page in the browser and a 404 to a request.
async fn assert_not_found(browser: &Browser, admin: SocketAddr, token: &str, paths: &[&str]) {
    for path in paths {
        browser.goto(&format!("http://{admin}/_nimbus{path}")).await;
        assert_eq!(browser.text("h1").await, "Not found", "{path}");
        let res = harness::request(
            admin,
            "GET",
            &format!("/_nimbus{path}"),
            &[("authorization", &format!("Bearer {token}"))],
            Vec::new(),
        )
        .await;
        assert_eq!(res.status, 404, "{path}");
    }
}

async fn wait_until_recorded(app: &TestApp, function: &str, n: usize) {
    app.nimbus_until(&["invocations", function, "--json"], |out| {
        out.lines().count() >= n
    })
    .await;
}

#[tokio::test]
async fn dashboard_shows_what_happened_in_a_real_browser() {
    let app = TestApp::new(&[
        ("nimbus.yaml", MANIFEST),
        ("api.js", API_JS),
        ("worker.js", WORKER_JS),
    ]);
    let server = TestServer::start(app.path(), &[]);
    let (admin, token) = control(app.path());
    let base = format!("http://{admin}/_nimbus");

    // The banner prints the link that signs in.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !server.stdout().contains("dashboard: ") && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let link = server
        .stdout()
        .lines()
        .find_map(|line| line.trim().strip_prefix("dashboard: ").map(str::to_owned))
        .expect("the banner prints the dashboard's link");
    assert_eq!(link, format!("{base}/login?token={token}"));

    // 20 requests, 2 of which fail.
    for idx in 0..20 {
        let path = if idx % 10 == 3 {
            format!("/work?fail=1&tag=req{idx}")
        } else {
            format!("/work?tag=req{idx}")
        };
        let expected = if idx % 10 == 3 { 502 } else { 200 };
        assert_eq!(server.get(&path).await.status, expected, "{path}");
    }
    wait_until_recorded(&app, "api", 20).await;

    let browser = Browser::start().await;

    // Without signing in, every page sends you to the sign-in page.
    browser.goto(&format!("{base}/")).await;
    assert!(browser.url().await.ends_with("/_nimbus/login"));
    browser.screenshot("sign-in").await;
    browser.goto(&link).await;
    assert_eq!(
        browser.url().await,
        format!("{base}/"),
        "signed in, token gone"
    );

    // Overview: 20 invocations and 2 errors.
    let row = "tr[data-function=\"api\"]";
    assert_eq!(browser.text(&format!("{row} td.invocations")).await, "20");
    assert_eq!(browser.text(&format!("{row} td.errors")).await, "2");
    assert_eq!(browser.text(&format!("{row} td.cold")).await, "1");
    assert!(browser.count("figure.chart-box svg.chart").await >= 3);
    browser.screenshot("overview").await;

    // The function, then its failures only, then a failed one: log lines and trace.
    browser
        .client
        .find(Locator::Css(&format!("{row} a")))
        .await
        .expect("the function's link")
        .click()
        .await
        .expect("opening the function");
    assert_eq!(browser.count("table.invocations tbody tr").await, 20);
    browser.screenshot("function").await;
    browser
        .client
        .find(Locator::LinkText("failures only"))
        .await
        .expect("the failures filter")
        .click()
        .await
        .expect("filtering failures");
    assert_eq!(browser.count("table.invocations tbody tr.failed").await, 2);
    assert_eq!(browser.count("table.invocations tbody tr.ok").await, 0);
    browser.screenshot("function-failures").await;
    browser
        .client
        .find(Locator::Css("table.invocations tbody tr.failed td a"))
        .await
        .expect("a failed invocation's link")
        .click()
        .await
        .expect("opening a failed invocation");
    assert!(browser.text("dd.status").await.contains("error"));
    let log = browser.text("ol.log").await;
    assert!(log.contains("about to fail req13"), "{log}");
    assert!(log.contains("START RequestId"), "{log}");
    assert!(log.contains("REPORT RequestId"), "{log}");
    // gateway → function.
    let trace = browser.text("table.waterfall tbody").await;
    assert!(trace.contains("GET /work"), "{trace}");
    assert!(trace.contains("api"), "{trace}");
    assert_eq!(browser.count("table.waterfall tbody tr.span").await, 2);
    browser.screenshot("invocation").await;

    // The live tail shows a new line as it is written.
    browser.goto(&format!("{base}/logs?function=api")).await;
    assert!(
        browser
            .wait_for_text("#tail-status", "Following", Duration::from_secs(10))
            .await,
        "the live tail connects"
    );
    let sent = tokio::time::Instant::now();
    assert_eq!(server.get("/work?tag=live-line").await.status, 200);
    assert!(
        browser
            .wait_for_text("#tail li", "working on live-line", Duration::from_secs(10))
            .await,
        "the new line reaches the live tail"
    );
    // The acceptance bound is 1 s; the test only reports it (no timed assertions).
    eprintln!(
        "live tail: the line appeared {:?} after the request was sent",
        sent.elapsed()
    );
    browser.screenshot("logs").await;

    // Cost: the same numbers as `nimbus cost`.
    browser.goto(&format!("{base}/cost")).await;
    let cli = app.nimbus(&["cost", "--json"]).stdout;
    let cli: serde_json::Value = serde_json::from_str(&cli).expect("nimbus cost --json");
    let requests: f64 = browser
        .text("tfoot td.requests")
        .await
        .parse()
        .expect("a number of requests");
    assert_eq!(Some(requests), cli["total"]["requests"].as_f64());
    browser.screenshot("cost").await;

    // A message that fails once lands in the DLQ; redrive moves it back and the worker
    // runs it.
    let sent = server
        .admin_json(
            app.path(),
            "POST",
            "/v1/queues/jobs/messages",
            r#"{"body": "order-7"}"#,
        )
        .await;
    assert_eq!(sent.status, 200, "{}", sent.text());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        browser.goto(&format!("{base}/queues")).await;
        if browser.text("tr[data-queue=\"jobs-dlq\"] td.visible").await == "1" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the message never reached the dead-letter queue"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    browser.screenshot("queues").await;
    browser
        .client
        .find(Locator::Css("button[data-redrive=\"jobs-dlq\"]"))
        .await
        .expect("the redrive button")
        .click()
        .await
        .expect("redriving");
    assert!(
        browser
            .text("p.notice")
            .await
            .contains("Moved 1 messages back to jobs")
    );
    assert_eq!(
        browser.text("tr[data-queue=\"jobs-dlq\"] td.visible").await,
        "0"
    );
    app.nimbus_until(&["logs", "worker"], |out| out.contains("processed order-7"))
        .await;
    browser.goto(&format!("{base}/functions/worker")).await;
    assert_eq!(browser.count("table.invocations tbody tr.ok").await, 1);
    assert_eq!(browser.count("table.invocations tbody tr.failed").await, 1);

    // The other pages, for the screenshots, with something in them.
    let res = harness::request(
        admin,
        "PUT",
        "/v1/kv/sessions/keys/user-1",
        &[("authorization", &format!("Bearer {token}"))],
        br#"{"cart": 3}"#.to_vec(),
    )
    .await;
    assert!(res.status < 300, "{}", res.text());
    let res = harness::request(
        admin,
        "PUT",
        "/v1/buckets/uploads/objects/reports/2026.csv",
        &[
            ("authorization", &format!("Bearer {token}")),
            ("content-type", "text/csv"),
        ],
        b"day,orders\n1,12\n".to_vec(),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    let res = harness::request(
        admin,
        "PUT",
        "/v1/tables/orders/items",
        &[("authorization", &format!("Bearer {token}"))],
        br#"{"item": {"id": "o-1", "total": 42}}"#.to_vec(),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    for (path, name, expect) in [
        ("/topics", "topics", "alerts"),
        ("/buckets", "buckets", "uploads"),
        ("/buckets/uploads", "bucket", "reports/2026.csv"),
        ("/kv", "kv", "sessions"),
        ("/kv/sessions", "kv-namespace", "user-1"),
        ("/schedules", "schedules", "hourly"),
        ("/tables", "tables", "orders"),
        ("/tables/orders", "table", "o-1"),
        ("/streams", "streams", "table/orders"),
    ] {
        browser.goto(&format!("{base}{path}")).await;
        let page = browser.text("main").await;
        assert!(page.contains(expect), "{path}: {page}");
        browser.screenshot(name).await;
    }

    // Unknown ids are a 404 page, not a blank one.
    assert_not_found(
        &browser,
        admin,
        &token,
        &[
            "/functions/nope",
            "/invocations/00000000-0000-0000-0000-000000000000",
            "/buckets/nope",
            "/no/such/page",
        ],
    )
    .await;
    browser.screenshot("not-found").await;
    browser.close().await;
}

const WORKFLOW_MANIFEST: &str = r#"
service: orders
provider:
  runtime: nodejs20.x
functions:
  ship: { handler: ship.handler }
workflows:
  fulfil:
    definition:
      StartAt: Check
      States:
        Check:
          Type: Choice
          Choices:
            - { Variable: $.order, NumericEquals: 0, Next: NoOrder }
          Default: Ship
        Ship:
          Type: Task
          Resource: { Fn::GetAtt: [ship, Arn] }
          ResultPath: $.shipped
          Next: Pause
        Pause: { Type: Wait, Seconds: 1, Next: Done }
        Done: { Type: Pass, End: true }
        NoOrder: { Type: Fail, Error: NoOrder, Cause: there is no order 0 }
"#;

const SHIP_JS: &str = r#"
exports.handler = async (event) => `shipped ${event.order}`;
"#;

/// Loads `url` again until `css` has an element whose text contains `text`.
async fn reload_until(browser: &Browser, url: &str, css: &str, text: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        browser.goto(url).await;
        if browser.wait_for_text(css, text, Duration::ZERO).await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{url}: no `{text}` in `{css}`: {}",
            browser.text("main").await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn dashboard_shows_workflow_executions_and_their_history() {
    let app = TestApp::new(&[("nimbus.yaml", WORKFLOW_MANIFEST), ("ship.js", SHIP_JS)]);
    let server = TestServer::start(app.path(), &[]);
    let (admin, token) = control(app.path());
    let base = format!("http://{admin}/_nimbus");
    for (name, order) in [("order-7", "7"), ("order-0", "0")] {
        let out = app.nimbus(&[
            "workflow",
            "start",
            "fulfil",
            "--name",
            name,
            "--input",
            &format!("{{\"order\": {order}}}"),
        ]);
        assert!(
            out.code == Some(0),
            "starting {name}: {}\n{}",
            out.stderr,
            server.logs()
        );
    }

    let browser = Browser::start().await;
    browser.goto(&format!("{base}/login?token={token}")).await;

    // The machines, then one machine's executions with their status.
    browser.goto(&format!("{base}/workflows")).await;
    let row = "tr[data-machine=\"fulfil\"]";
    assert_eq!(
        browser.text(&format!("{row} td:nth-of-type(1)")).await,
        "STANDARD"
    );
    assert_eq!(browser.text(&format!("{row} td:nth-of-type(2)")).await, "5");
    browser.screenshot("workflows").await;
    let machine = format!("{base}/workflows/fulfil");
    // order-0 fails at once; order-7 waits a second before it succeeds.
    reload_until(
        &browser,
        &machine,
        "tr[data-execution=\"order-0\"] td.status",
        "FAILED",
    )
    .await;
    reload_until(
        &browser,
        &machine,
        "tr[data-execution=\"order-7\"] td.status",
        "SUCCEEDED",
    )
    .await;
    assert_eq!(browser.count("table.executions tbody tr").await, 2);
    browser.screenshot("workflow").await;
    browser.goto(&format!("{machine}?status=FAILED")).await;
    assert_eq!(browser.count("table.executions tbody tr").await, 1);
    assert_eq!(browser.count("tr[data-execution=\"order-0\"]").await, 1);
    browser.goto(&format!("{base}/workflows")).await;
    assert_eq!(browser.text(&format!("{row} td.succeeded")).await, "1");
    assert_eq!(browser.text(&format!("{row} td.failed")).await, "1");

    // An execution: its output, its states on a time line and every history event.
    browser.goto(&machine).await;
    browser.click("tr[data-execution=\"order-7\"] a").await;
    assert!(browser.text("pre.output").await.contains("shipped 7"));
    let states = browser.text("table.states tbody").await;
    for state in ["Check", "Ship", "Pause", "Done"] {
        assert!(states.contains(state), "{states}");
    }
    for kind in [
        "ExecutionStarted",
        "TaskScheduled",
        "TaskSucceeded",
        "WaitStateExited",
        "ExecutionSucceeded",
    ] {
        assert_eq!(
            browser
                .count(&format!("table.history tr[data-type=\"{kind}\"]"))
                .await,
            1,
            "{kind}"
        );
    }
    browser.screenshot("execution").await;
    // The failed one names its error.
    browser.goto(&format!("{machine}?status=FAILED")).await;
    browser.click("tr[data-execution=\"order-0\"] a").await;
    assert!(browser.text("dl.facts").await.contains("NoOrder"));
    assert_eq!(
        browser
            .count("table.history tr.failed[data-type=\"ExecutionFailed\"]")
            .await,
        1
    );

    // The cost page adds the state transitions, as `nimbus cost` does.
    browser.goto(&format!("{base}/cost")).await;
    assert_eq!(browser.text("table.workflow-cost tbody th").await, "fulfil");
    assert_eq!(
        browser
            .text("table.workflow-cost tbody td:nth-of-type(1)")
            .await,
        "2"
    );

    // Unknown machines and executions are a 404 page.
    assert_not_found(
        &browser,
        admin,
        &token,
        &[
            "/workflows/nope",
            "/executions/arn:aws:states:us-east-1:000000000000:execution:fulfil:nope",
        ],
    )
    .await;
    browser.close().await;
}

const COUNTER_WORKER: &str = r#"
import { DurableObject } from 'cloudflare:workers';

export class Counter extends DurableObject {
  async fetch() {
    const s = this.ctx.storage;
    const count = ((await s.get('count')) || 0) + 1;
    await s.put({ count, name: 'first', nested: { a: 1 } });
    return new Response(String(count));
  }
}

export default {
  async fetch(request, env) {
    return env.COUNTER.get(env.COUNTER.idFromName('one')).fetch(request);
  },
};
"#;

const COUNTER_WRANGLER: &str = r#"name = "counter"
main = "src/index.js"

[[durable_objects.bindings]]
name = "COUNTER"
class_name = "Counter"

[[migrations]]
tag = "v1"
new_classes = ["Counter"]
"#;

#[tokio::test]
async fn dashboard_shows_durable_objects_and_their_storage() {
    let app = TestApp::new(&[
        ("wrangler.toml", COUNTER_WRANGLER),
        ("src/index.js", COUNTER_WORKER),
    ]);
    let server = TestServer::start(app.path(), &[]);
    let (admin, token) = control(app.path());
    let base = format!("http://{admin}/_nimbus");
    for expected in ["1", "2"] {
        let res = server.get("/").await;
        assert_eq!(res.text(), expected, "{}", server.logs());
    }

    let browser = Browser::start().await;
    browser.goto(&format!("{base}/login?token={token}")).await;
    browser.goto(&format!("{base}/durable-objects")).await;
    assert_eq!(browser.count("table.objects tbody tr").await, 1);
    assert_eq!(browser.text("table.objects tbody th").await, "Counter");
    assert_eq!(browser.text("table.objects td.keys").await, "3");
    browser.screenshot("durable-objects").await;
    browser.click("table.objects tbody a").await;
    let value = |key: &str| format!("table.storage tr[data-key=\"{key}\"] td.value");
    assert_eq!(browser.text(&value("count")).await, "2");
    assert_eq!(browser.text(&value("name")).await, "\"first\"");
    assert_eq!(browser.text(&value("nested")).await, "(an object)");
    browser.screenshot("durable-object").await;
    assert_not_found(&browser, admin, &token, &["/durable-objects/Counter/nope"]).await;
    browser.close().await;
}

#[tokio::test]
async fn dashboard_answers_nothing_without_the_token() {
    let app = TestApp::new(&[
        ("nimbus.yaml", MANIFEST),
        ("api.js", API_JS),
        ("worker.js", WORKER_JS),
    ]);
    let _server = TestServer::start(app.path(), &[]);
    let (admin, token) = control(app.path());
    for path in [
        "/",
        "/functions/api",
        "/logs/stream",
        "/cost",
        "/queues",
        "/kv/sessions",
    ] {
        for headers in [
            vec![],
            vec![("authorization", "Bearer wrong".to_owned())],
            vec![("cookie", format!("nimbus_dashboard_{}=wrong", admin.port()))],
        ] {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let res = harness::request(
                admin,
                "GET",
                &format!("/_nimbus{path}"),
                &headers,
                Vec::new(),
            )
            .await;
            assert_eq!(res.status, 303, "{path} {headers:?}");
            assert_eq!(res.header("location"), Some("/_nimbus/login"));
        }
    }
    let res = harness::request(
        admin,
        "POST",
        "/_nimbus/queues/jobs-dlq/redrive",
        &[],
        Vec::new(),
    )
    .await;
    assert_eq!(res.status, 401, "no redrive without the token");
    // A wrong token at the sign-in form is refused; the right one sets the cookie.
    let form = |token: &str| format!("token={token}").into_bytes();
    let res = harness::request(admin, "POST", "/_nimbus/login", &[], form("wrong")).await;
    assert_eq!(res.status, 401);
    assert!(res.header("set-cookie").is_none());
    let res = harness::request(admin, "POST", "/_nimbus/login", &[], form(&token)).await;
    assert_eq!(res.status, 303);
    let cookie = res
        .header("set-cookie")
        .expect("a session cookie")
        .to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().expect("name=value").to_owned();
    let res = harness::request(admin, "GET", "/_nimbus/", &[("cookie", &pair)], Vec::new()).await;
    assert_eq!(res.status, 200);
    assert!(res.text().contains("Overview"));
}

/// `nimbus server` on a temp state folder, until dropped.
struct ServerHost {
    child: Child,
    admin: SocketAddr,
    state: tempfile::TempDir,
}

impl ServerHost {
    fn start() -> ServerHost {
        use std::io::BufRead as _;
        let state = tempfile::tempdir().expect("a state folder");
        let mut child = Command::new(harness::NIMBUS)
            .arg("server")
            .arg("--state")
            .arg(state.path())
            .args(["--port", "0", "--admin-port", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting nimbus server");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = std::io::BufReader::new(stdout).lines();
        let admin = loop {
            let line = lines
                .next()
                .and_then(Result::ok)
                .expect("nimbus server prints its admin address");
            if let Some(rest) = line.split("admin API on http://").nth(1) {
                break rest.trim().parse().expect("the admin address");
            }
        };
        std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
        ServerHost {
            child,
            admin,
            state,
        }
    }

    fn nimbus(&self, args: &[&str], dir: &Path) -> String {
        let out = Command::new(harness::NIMBUS)
            .args(args)
            .current_dir(dir)
            .env_remove("NIMBUS_TOKEN")
            .output()
            .expect("running nimbus");
        assert!(
            out.status.success(),
            "nimbus {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for ServerHost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn nimbus_server_dashboard_answers_nothing_without_an_admin_token() {
    let host = ServerHost::start();
    let state = host.state.path().display().to_string();
    let app = TestApp::new(&[
        (
            "nimbus.yaml",
            "service: svc\nprovider:\n  runtime: nodejs20.x\nfunctions:\n  api:\n    handler: api.handler\n    events:\n      - httpApi: GET /work\n",
        ),
        ("api.js", API_JS),
    ]);
    let token = host.nimbus(
        &["server", "token", "create", "--state", &state],
        app.path(),
    );
    let url = format!("http://{}", host.admin);
    host.nimbus(
        &["deploy", ".", "--to", &url, "--token", &token],
        app.path(),
    );
    let admin = host.admin;
    let get = |path: String, headers: Vec<(String, String)>| async move {
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        harness::request(admin, "GET", &path, &headers, Vec::new()).await
    };
    for path in [
        "/_nimbus/",
        "/_nimbus/apps/svc/dev/",
        "/_nimbus/apps/svc/dev/functions/api",
        "/_nimbus/apps/svc/dev/logs/stream",
        "/_nimbus/functions/api",
    ] {
        for headers in [
            vec![],
            vec![("authorization".to_owned(), "Bearer wrong".to_owned())],
            vec![(
                "cookie".to_owned(),
                format!("nimbus_dashboard_{}=wrong", admin.port()),
            )],
        ] {
            let res = get(path.to_owned(), headers.clone()).await;
            assert_eq!(res.status, 303, "{path} {headers:?}");
            assert_eq!(res.header("location"), Some("/_nimbus/login"));
        }
    }
    let res = harness::request(
        admin,
        "POST",
        "/_nimbus/apps/svc/dev/queues/jobs/redrive",
        &[],
        Vec::new(),
    )
    .await;
    assert_eq!(res.status, 401);
    for action in ["promote", "rollback"] {
        let path = format!("/_nimbus/apps/svc/dev/{action}");
        let cookie = format!("nimbus_dashboard_{}=wrong", admin.port());
        for headers in [vec![], vec![("cookie", cookie.as_str())]] {
            let res = harness::request(admin, "POST", &path, &headers, Vec::new()).await;
            assert_eq!(res.status, 401, "{path}");
        }
    }

    // Signed in with an admin token: the apps, an app's pages, 404 for what is not there.
    let bearer = vec![("authorization".to_owned(), format!("Bearer {token}"))];
    let res = get("/_nimbus/".to_owned(), bearer.clone()).await;
    assert_eq!(res.status, 200);
    assert!(
        res.text().contains("data-app=\"svc/dev\""),
        "{}",
        res.text()
    );
    let res = get("/_nimbus/apps/svc/dev/".to_owned(), bearer.clone()).await;
    assert_eq!(res.status, 200);
    assert!(
        res.text().contains("tr data-function=\"api\""),
        "{}",
        res.text()
    );
    assert!(
        res.text()
            .contains("href=\"/_nimbus/apps/svc/dev/functions/api\"")
    );
    for path in [
        "/_nimbus/apps/svc/dev/functions/nope",
        "/_nimbus/apps/nope/dev/",
        "/_nimbus/functions/api",
    ] {
        let res = get(path.to_owned(), bearer.clone()).await;
        assert_eq!(res.status, 404, "{path}: {}", res.text());
    }

    let browser = Browser::start().await;
    browser.goto(&format!("{url}/_nimbus/")).await;
    assert!(browser.url().await.ends_with("/_nimbus/login"));
    browser
        .client
        .find(Locator::Id("token"))
        .await
        .expect("the token field")
        .send_keys(&token)
        .await
        .expect("typing the token");
    browser
        .client
        .find(Locator::Css("button[type=submit]"))
        .await
        .expect("the sign-in button")
        .click()
        .await
        .expect("signing in");
    assert!(browser.text("main").await.contains("svc"));
    browser.screenshot("server-apps").await;
    browser.goto(&format!("{url}/_nimbus/apps/svc/dev/")).await;
    assert!(browser.count("tr[data-function=\"api\"]").await == 1);
    browser.screenshot("server-app-overview").await;

    // Deploys: a canary, promoted from the page, then rolled back.
    host.nimbus(
        &[
            "deploy", ".", "--to", &url, "--token", &token, "--canary", "50%",
        ],
        app.path(),
    );
    browser.goto(&format!("{url}/_nimbus/")).await;
    let aliases = "tr[data-app=\"svc/dev\"] td.aliases";
    let text = browser.text(aliases).await;
    assert!(
        text.contains("v1 (50%)") && text.contains("v2 (50%)"),
        "{text}"
    );
    browser.screenshot("server-deploys").await;
    browser
        .click("tr[data-app=\"svc/dev\"] button[data-promote]")
        .await;
    // The form posts, then the apps page comes back saying what happened.
    assert!(
        browser
            .wait_for_text("p.notice", "svc/dev promoted", Duration::from_secs(10))
            .await
    );
    assert_eq!(browser.text(aliases).await, "live → v2 (100%)");
    assert_eq!(
        browser
            .count("tr[data-app=\"svc/dev\"] button[data-promote]")
            .await,
        0,
        "no canary left to promote"
    );
    browser
        .click("tr[data-app=\"svc/dev\"] button[data-rollback]")
        .await;
    assert!(
        browser
            .wait_for_text("p.notice", "svc/dev rolled back", Duration::from_secs(10))
            .await
    );
    assert_eq!(browser.text(aliases).await, "live → v1 (100%)");
    browser.close().await;
}
