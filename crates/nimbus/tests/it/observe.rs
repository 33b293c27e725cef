//! Observability through the real binary: metrics, logs, invocation records, traces, cost.

use std::time::Duration;

use crate::harness::{TestApp, TestServer};

const OBSERVED_JS: &str = r#"
let count = 0;
exports.handler = async (event, context) => {
  count += 1;
  const q = event.queryStringParameters || {};
  console.log(`handling ${q.tag || 'plain'} #${count}`);
  console.log(JSON.stringify({ level: 'warn', msg: 'structured', count }));
  if (q.emf) {
    console.log(JSON.stringify({
      _aws: { Timestamp: Date.now(), CloudWatchMetrics: [{ Namespace: 'shop', Dimensions: [['Service']], Metrics: [{ Name: 'Orders', Unit: 'Count' }] }] },
      Service: 'cart',
      Orders: Number(q.emf),
    }));
  }
  if (q.sleep) await new Promise((resolve) => setTimeout(resolve, Number(q.sleep)));
  if (q.loop) { for (;;) {} }
  if (q.fail) throw new Error('asked to fail');
  return { statusCode: 200, body: JSON.stringify({ trace: process.env._X_AMZN_TRACE_ID }) };
};
"#;

fn app() -> TestApp {
    let manifest = r#"
service: observed
provider:
  runtime: nodejs20.x
  memorySize: 256
  timeout: 1
functions:
  node:
    handler: observed.handler
    reservedConcurrency: 1
    events:
      - httpApi: GET /node
"#;
    TestApp::new(&[("nimbus.yaml", manifest), ("observed.js", OBSERVED_JS)])
}

/// The value of the sample `name{labels...}` in a Prometheus text exposition.
pub(crate) fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .find(|(series, _)| {
            let (series_name, series_labels) = series.split_once('{').unwrap_or((series, ""));
            series_name == name
                && labels
                    .iter()
                    .all(|(k, v)| series_labels.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_move_by_exactly_the_expected_amounts() {
    let app = app();
    let server = TestServer::start(app.path(), &["--queue-wait", "50ms"]);
    let dir = app.path();
    let res = server.admin(dir, "GET", "/metrics", Some("wrong")).await;
    assert_eq!(res.status, 401, "no metrics without the token");
    let before = server.admin(dir, "GET", "/metrics", None).await.text();
    assert_eq!(
        metric(
            &before,
            "nimbus_invocations_total",
            &[("function", "node"), ("outcome", "ok")]
        ),
        0.0
    );

    // 3 ok (1 cold, 2 warm), 1 error, 1 timeout, then 1 ok on a new instance (cold).
    for _ in 0..3 {
        assert_eq!(server.get("/node?emf=2").await.status, 200);
    }
    assert_eq!(server.get("/node?fail=1").await.status, 502);
    assert_eq!(server.get("/node?loop=1").await.status, 504);
    assert_eq!(server.get("/node").await.status, 200);
    // Two at once at reservedConcurrency 1: one runs, one is throttled after 50 ms.
    let addr = server.addr;
    let slow = tokio::spawn(crate::harness::request(
        addr,
        "GET",
        "/node?sleep=400",
        &[],
        Vec::new(),
    ));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.get("/node").await.status, 429);
    assert_eq!(slow.await.expect("joining").status, 200);

    let after = server.admin(dir, "GET", "/metrics", None).await.text();
    let node = ("function", "node");
    let check = |name: &str, labels: &[(&str, &str)], expected: f64| {
        assert_eq!(
            metric(&after, name, labels),
            expected,
            "{name} {labels:?}\n{after}"
        );
    };
    check("nimbus_invocations_total", &[node, ("outcome", "ok")], 5.0);
    check(
        "nimbus_invocations_total",
        &[node, ("outcome", "error")],
        1.0,
    );
    check(
        "nimbus_invocations_total",
        &[node, ("outcome", "timeout")],
        1.0,
    );
    check(
        "nimbus_invocations_total",
        &[node, ("outcome", "throttled")],
        1.0,
    );
    check("nimbus_invocation_errors_total", &[node], 2.0);
    check("nimbus_timeouts_total", &[node], 1.0);
    check("nimbus_throttles_total", &[node], 1.0);
    check("nimbus_cold_starts_total", &[node], 2.0);
    check("nimbus_invocation_duration_seconds_count", &[node], 7.0);
    check("nimbus_concurrent_executions", &[node], 0.0);
    check("nimbus_instances", &[node, ("state", "warm")], 1.0);
    check("nimbus_instances", &[node, ("state", "busy")], 0.0);
    check(
        "nimbus_http_requests_total",
        &[("route", "GET /node"), ("status", "200")],
        5.0,
    );
    check(
        "nimbus_http_requests_total",
        &[("route", "GET /node"), ("status", "502")],
        1.0,
    );
    check(
        "nimbus_http_requests_total",
        &[("route", "GET /node"), ("status", "504")],
        1.0,
    );
    check(
        "nimbus_http_requests_total",
        &[("route", "GET /node"), ("status", "429")],
        1.0,
    );
    check(
        "nimbus_custom_metric_sum_total",
        &[node, ("metric", "Orders"), ("Service", "cart")],
        6.0,
    );
    check(
        "nimbus_custom_metric_samples_total",
        &[node, ("metric", "Orders"), ("Service", "cart")],
        3.0,
    );
}

#[tokio::test]
async fn logs_are_found_by_request_id_with_start_end_and_report_lines() {
    let app = app();
    let server = TestServer::start(app.path(), &[]);
    let first = server.get("/node?tag=first").await;
    let second = server.get("/node?tag=second").await;
    let request_id = second
        .header("apigw-requestid")
        .expect("request id header")
        .to_owned();
    let other_id = first
        .header("apigw-requestid")
        .expect("request id header")
        .to_owned();
    let logs = app
        .nimbus_until(&["logs", "node", "--request", &request_id], |out| {
            out.contains("REPORT")
        })
        .await;
    let lines: Vec<&str> = logs.lines().collect();
    assert!(
        lines[0].contains(&format!("START RequestId: {request_id}")),
        "{logs}"
    );
    assert!(logs.contains("handling second #2"), "{logs}");
    assert!(
        !logs.contains("handling first"),
        "only this invocation's lines:\n{logs}"
    );
    assert!(!logs.contains(&other_id));
    assert!(
        logs.contains(&format!("END RequestId: {request_id}")),
        "{logs}"
    );
    let report = lines
        .iter()
        .find(|l| l.contains("REPORT"))
        .expect("REPORT line");
    for field in [
        "Duration:",
        "Billed Duration:",
        "Memory Size: 256 MB",
        "Max Memory Used:",
    ] {
        assert!(report.contains(field), "{report}");
    }
    assert!(
        !report.contains("Init Duration"),
        "a warm invocation has no init: {report}"
    );

    let json = app
        .nimbus(&["logs", "--request", &request_id, "--json"])
        .stdout;
    let structured: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .filter(|v: &serde_json::Value| v.get("fields").is_some())
        .collect();
    assert_eq!(structured.len(), 1, "{json}");
    assert_eq!(structured[0]["fields"]["msg"], "structured");
    assert_eq!(structured[0]["level"], "WARN");

    let records = app
        .nimbus_until(&["invocations", "node", "--json"], |out| {
            out.lines().count() >= 2
        })
        .await;
    let records: Vec<serde_json::Value> = records
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0]["requestId"], request_id.as_str(), "newest first");
    assert_eq!(records[0]["coldStart"], false);
    assert_eq!(records[1]["coldStart"], true);
    assert!(records[1]["initDurationMs"].as_f64().is_some());
    assert_eq!(records[0]["memoryMb"], 256);
    assert_eq!(records[0]["trigger"], "http");
}

#[tokio::test]
async fn failed_invocations_are_listed_with_their_errors() {
    let app = app();
    let server = TestServer::start(app.path(), &[]);
    assert_eq!(server.get("/node").await.status, 200);
    assert_eq!(server.get("/node?fail=1").await.status, 502);
    let failed = app
        .nimbus_until(&["invocations", "--failed", "--json"], |out| {
            !out.is_empty()
        })
        .await;
    let records: Vec<serde_json::Value> = failed
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(records.len(), 1, "{failed}");
    assert_eq!(records[0]["outcome"], "error");
    assert_eq!(records[0]["errorType"], "Error");
    assert_eq!(records[0]["errorMessage"], "asked to fail");
    let top = app.nimbus(&["top", "--once"]);
    assert_eq!(top.code, Some(0), "{}", top.stderr);
    let row = top
        .stdout
        .lines()
        .find(|l| l.starts_with("node"))
        .expect("a row for node");
    let columns: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(columns[4], "1", "one error in the last minute: {row}");
    assert_eq!(columns[6], "1", "one warm instance: {row}");
}

#[tokio::test]
async fn one_trace_spans_the_gateway_and_the_function_and_is_exported_over_otlp() {
    use http_body_util::BodyExt as _;
    // A collector on loopback that keeps what it receives.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind collector");
    let collector = listener.local_addr().expect("collector address");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<serde_json::Value>();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let tx = tx.clone();
                        async move {
                            let path = req.uri().path().to_owned();
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            if path == "/v1/traces"
                                && let Ok(value) = serde_json::from_slice(&body)
                            {
                                let _ = tx.send(value);
                            }
                            Ok::<_, std::convert::Infallible>(http::Response::new(
                                http_body_util::Full::new(bytes::Bytes::from_static(b"{}")),
                            ))
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    let app = app();
    let endpoint = format!("http://{collector}");
    let server = TestServer::start_with_env(
        app.path(),
        &[],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)],
    );
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let res = server
        .request(
            "GET",
            "/node",
            &[("traceparent", &format!("00-{trace_id}-00f067aa0ba902b7-01"))],
            Vec::new(),
        )
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("x-nimbus-trace-id"), Some(trace_id));
    let seen = res.json()["trace"]
        .as_str()
        .expect("_X_AMZN_TRACE_ID")
        .to_owned();
    assert!(
        seen.starts_with("Root=1-4bf92f35-77b34da6a3ce929d0e0e4736;Parent="),
        "{seen}"
    );

    let tree = app
        .nimbus_until(&["trace", trace_id], |out| out.lines().count() >= 3)
        .await;
    let lines: Vec<&str> = tree.lines().collect();
    assert!(lines[1].starts_with("  GET /node"), "{tree}");
    assert!(lines[1].contains("[server]"), "{tree}");
    assert!(
        lines[2].starts_with("    node [internal]"),
        "the function span is the gateway span's child:\n{tree}"
    );
    let function_span = lines[2]
        .split("span=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .expect("span id");
    assert!(
        seen.contains(&format!("Parent={function_span}")),
        "the function sees its own span as parent: {seen} vs {tree}"
    );

    // Both spans reach the collector, with the caller's span as the gateway span's parent.
    let mut exported = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while exported.len() < 2 {
        let batch = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("spans exported within 10 s")
            .expect("collector alive");
        for span in batch["resourceSpans"][0]["scopeSpans"][0]["spans"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            exported.push(span);
        }
    }
    assert!(
        exported.iter().all(|s| s["traceId"] == trace_id),
        "{exported:?}"
    );
    assert!(
        exported
            .iter()
            .any(|s| s["parentSpanId"] == "00f067aa0ba902b7" && s["kind"] == 2),
        "{exported:?}"
    );
}

#[tokio::test]
async fn cost_matches_a_hand_computation_of_the_recorded_workload() {
    let app = app();
    let server = TestServer::start(app.path(), &[]);
    for _ in 0..20 {
        assert_eq!(server.get("/node").await.status, 200);
    }
    let records = app
        .nimbus_until(&["invocations", "--json", "--limit", "1000"], |out| {
            out.lines().count() == 20
        })
        .await;
    let gb_seconds: f64 = records
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json"))
        .map(|r| {
            r["billedMs"].as_f64().expect("billed") / 1000.0
                * r["memoryMb"].as_f64().expect("memory")
                / 1024.0
        })
        .sum();
    let expected = 20.0 * 0.20 / 1_000_000.0 + gb_seconds * 0.000_016_666_7;
    let cost = app.nimbus(&["cost", "--json"]);
    assert_eq!(cost.code, Some(0), "{}", cost.stderr);
    let cost: serde_json::Value = serde_json::from_str(cost.stdout.trim()).expect("json");
    let total = &cost["total"];
    assert_eq!(total["requests"], 20.0);
    assert!((total["gbSeconds"].as_f64().expect("gb-s") - gb_seconds).abs() < 1e-12);
    assert!(
        (total["cost"].as_f64().expect("cost") - expected).abs() < 1e-15,
        "{cost} vs {expected}"
    );
    assert_eq!(cost["functions"][0]["peakConcurrency"], 1);
    // Sequential requests at 256 MB need 0.25 GB always on: 0.25 * $0.012 * 730 h.
    assert!(
        (cost["functions"][0]["monthlyAlwaysOn"]
            .as_f64()
            .expect("always on")
            - 0.25 * 0.012 * 730.0)
            .abs()
            < 1e-9
    );

    std::fs::write(
        app.path().join("prices.json"),
        r#"{"requestPerMillion": 1.0, "gbSecond": 0.0}"#,
    )
    .expect("write prices");
    let custom = app.nimbus(&["cost", "--json", "--prices", "prices.json"]);
    let custom: serde_json::Value = serde_json::from_str(custom.stdout.trim()).expect("json");
    assert!((custom["total"]["cost"].as_f64().expect("cost") - 20.0 / 1_000_000.0).abs() < 1e-15);

    std::fs::write(app.path().join("bad.json"), r#"{"perRequest": 1}"#).expect("write prices");
    let bad = app.nimbus(&["cost", "--prices", "bad.json"]);
    assert_eq!(bad.code, Some(1));
    assert!(
        bad.stderr.contains("unknown key \"perRequest\""),
        "{}",
        bad.stderr
    );
}

#[test]
fn commands_on_an_app_never_served_say_what_to_do() {
    let app = app();
    let out = app.nimbus(&["logs"]);
    assert_eq!(out.code, Some(1));
    assert!(out.stderr.contains("nimbus up"), "{}", out.stderr);
}

#[tokio::test]
async fn one_trace_spans_gateway_function_queue_function_and_queues_have_depth_metrics() {
    let manifest = r#"
service: chain
provider:
  runtime: nodejs20.x
  iam:
    role:
      statements:
        - Effect: Allow
          Action: [sqs:SendMessage]
          Resource: arn:aws:sqs:*:*:work
queues:
  work: {}
  parked: {}
functions:
  front:
    handler: chain.front
    events:
      - httpApi: GET /front
  back:
    handler: chain.back
    events:
      - sqs: { arn: work, batchSize: 1 }
"#;
    let chain_js = r#"
const nimbus = require('nimbus');
exports.front = async () => {
  await nimbus.queue('work').send('from the front');
  return { statusCode: 202, body: 'queued' };
};
exports.back = async (event) => {
  console.log('back got ' + event.Records[0].body);
};
"#;
    let app = TestApp::new(&[("nimbus.yaml", manifest), ("chain.js", chain_js)]);
    let server = TestServer::start(app.path(), &[]);
    let res = server.get("/front").await;
    assert_eq!(res.status, 202, "{}", res.text());
    let trace_id = res
        .header("x-nimbus-trace-id")
        .expect("trace id")
        .to_owned();
    let tree = app
        .nimbus_until(&["trace", &trace_id], |out| out.contains("back [internal]"))
        .await;
    let lines: Vec<&str> = tree.lines().collect();
    assert!(lines[1].starts_with("  GET /front [server]"), "{tree}");
    assert!(lines[2].starts_with("    front [internal]"), "{tree}");
    assert!(
        lines[3].starts_with("      back [internal]"),
        "the consumer's span is a child of the sender's:\n{tree}"
    );

    let dir = app.path();
    for body in ["a", "b"] {
        let request = serde_json::json!({ "body": body }).to_string();
        let res = server
            .admin_json(dir, "POST", "/v1/queues/parked/messages", &request)
            .await;
        assert_eq!(res.status, 200);
    }
    let metrics = server.admin(dir, "GET", "/metrics", None).await.text();
    assert_eq!(
        metric(
            &metrics,
            "nimbus_queue_messages",
            &[("queue", "parked"), ("state", "visible")]
        ),
        2.0,
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            "nimbus_queue_messages",
            &[("queue", "work"), ("state", "visible")]
        ),
        0.0
    );
    assert!(
        metric(
            &metrics,
            "nimbus_queue_oldest_message_age_seconds",
            &[("queue", "parked")]
        ) >= 0.0
    );
}

/// The services API's telemetry endpoints give what `nimbus invocations --json` and
/// `nimbus logs --json` print, filtered as asked; bad filters and unknown ids are errors
/// that say so, and nothing answers without the admin token.
#[tokio::test]
async fn invocations_logs_and_traces_are_served_as_json_by_the_services_api() {
    let app = app();
    let server = TestServer::start(app.path(), &[]);
    for tag in ["a", "b", "c"] {
        assert_eq!(server.get(&format!("/node?tag={tag}")).await.status, 200);
    }
    assert_eq!(server.get("/node?fail=1&tag=d").await.status, 502);
    let cli = app
        .nimbus_until(&["invocations", "--json"], |out| out.lines().count() >= 4)
        .await;
    let get = |path: String| {
        let server = &server;
        let dir = app.path().to_owned();
        async move {
            let res = server.admin(&dir, "GET", &path, None).await;
            (res.status, res.json())
        }
    };

    // Newest first, as the CLI lists them, field for field.
    let (status, all) = get("/v1/invocations?function=node".to_owned()).await;
    assert_eq!(status, 200, "{all}");
    let listed: Vec<serde_json::Value> = cli
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(all["invocations"].as_array().expect("a list"), &listed);
    let (_, failed) = get("/v1/invocations?outcome=failed".to_owned()).await;
    let failed = failed["invocations"].as_array().expect("a list").clone();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["errorMessage"], "asked to fail");
    let (_, errors) = get("/v1/invocations?outcome=error&since=600".to_owned()).await;
    assert_eq!(errors["invocations"], serde_json::json!(failed));
    let (_, ok) = get("/v1/invocations?outcome=ok&limit=2".to_owned()).await;
    assert_eq!(ok["invocations"].as_array().map(Vec::len), Some(2));
    let (_, none) = get("/v1/invocations?function=nope".to_owned()).await;
    assert_eq!(none["invocations"], serde_json::json!([]));

    // One invocation: its lines (with START/END/REPORT) and its trace.
    let request_id = failed[0]["requestId"].as_str().expect("a request id");
    let (status, detail) = get(format!("/v1/invocations/{request_id}")).await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["invocation"], failed[0]);
    let messages: Vec<&str> = detail["logs"]
        .as_array()
        .expect("lines")
        .iter()
        .filter_map(|l| l["message"].as_str())
        .collect();
    assert!(
        messages.iter().any(|m| m.contains("handling d")),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.starts_with("REPORT RequestId")),
        "{messages:?}"
    );
    let spans = detail["spans"].as_array().expect("spans");
    assert_eq!(spans.len(), 2, "the gateway's and the function's: {detail}");
    assert!(
        spans
            .iter()
            .any(|s| s["name"] == "node" && s["status"] == "error"),
        "{detail}"
    );
    let trace_id = failed[0]["traceId"].as_str().expect("a trace id");
    let (status, trace) = get(format!("/v1/traces/{trace_id}")).await;
    assert_eq!(status, 200, "{trace}");
    assert_eq!(trace["spans"], detail["spans"]);

    // Recent lines, as `nimbus logs --json` prints them.
    let (status, logs) = get("/v1/logs?function=node&since=600".to_owned()).await;
    assert_eq!(status, 200, "{logs}");
    let lines = logs["lines"].as_array().expect("lines");
    let cli_logs = app.nimbus(&["logs", "node", "--json", "--since", "10m"]);
    let cli_lines: Vec<serde_json::Value> = cli_logs
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(lines, &cli_lines);
    assert!(
        lines.iter().any(|l| l["fields"]["msg"] == "structured"),
        "{logs}"
    );

    // Bad input and unknown ids.
    for (path, status, message) in [
        (
            "/v1/invocations?outcome=meh",
            400,
            "outcome `meh` is not one of failed, ok",
        ),
        (
            "/v1/invocations?limit=0",
            400,
            "limit 0 is not between 1 and 1000",
        ),
        (
            "/v1/invocations?since=-5",
            400,
            "since -5 is not a number of seconds ago",
        ),
        (
            "/v1/invocations/nope",
            404,
            "no invocation with request id `nope`",
        ),
        (
            "/v1/traces/0af7651916cd43dd8448eb211c80319c",
            404,
            "no span of trace",
        ),
    ] {
        let (got, body) = get(path.to_owned()).await;
        assert_eq!(got, status, "{path}: {body}");
        assert!(
            body["message"]
                .as_str()
                .is_some_and(|m| m.contains(message)),
            "{path}: {body}"
        );
    }
    let res = server
        .admin(app.path(), "GET", "/v1/invocations", Some("wrong"))
        .await;
    assert_eq!(res.status, 401);
}
