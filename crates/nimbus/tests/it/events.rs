//! Events and state through the real binary: queues, topics, buckets, KV, schedules and
//! asynchronous invocation, with real node functions and the durable store.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use crate::harness::{Response, TestApp, TestServer};

/// Calls the app's control API with the admin token.
async fn api(server: &TestServer, app: &Path, method: &str, path: &str, body: &str) -> Response {
    server.admin_json(app, method, path, body).await
}

async fn send(server: &TestServer, app: &Path, queue: &str, body: &str) -> Response {
    let request = serde_json::json!({ "body": body }).to_string();
    api(
        server,
        app,
        "POST",
        &format!("/v1/queues/{queue}/messages"),
        &request,
    )
    .await
}

/// The functions of these tests append what they saw to a file of the test's (`$OUT`); a
/// sandboxed function writes only its own /tmp (issue 14), so those run unsandboxed.
const UNSANDBOXED: &[(&str, &str)] = &[("NIMBUS_SANDBOX", "off")];

/// Lines of a file the functions append to, once it has at least `n` of them.
async fn lines_when(path: &Path, n: usize) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {n} lines in {}:\n{text}",
            lines.len(),
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A handler that appends each event it gets (one JSON line) to `$OUT`.
const RECORDER_JS: &str = r#"
const fs = require('fs');
exports.handler = async (event) => {
  fs.appendFileSync(process.env.OUT, JSON.stringify(event) + '\n');
  return { ok: true };
};
"#;

#[tokio::test]
async fn sqs_events_deliver_records_and_delete_them() {
    let out_dir = tempfile::tempdir().expect("tempdir");
    let out = out_dir.path().join("events.jsonl");
    let manifest = format!(
        r#"
service: q
provider:
  runtime: nodejs20.x
  environment: {{ OUT: "{}" }}
queues:
  orders: {{ visibilityTimeout: 5 }}
functions:
  consume:
    handler: recorder.handler
    events:
      - sqs: {{ arn: arn:aws:sqs:us-east-1:123456789012:orders, batchSize: 10 }}
"#,
        out.display()
    );
    let app = TestApp::new(&[("nimbus.yaml", &manifest), ("recorder.js", RECORDER_JS)]);
    let server = TestServer::start_with_env(app.path(), &[], UNSANDBOXED);
    let res = send(&server, app.path(), "orders", r#"{"order":1}"#).await;
    assert_eq!(res.status, 200, "{}", res.text());
    let message_id = res.json()["messageId"]
        .as_str()
        .expect("message id")
        .to_owned();
    let lines = lines_when(&out, 1).await;
    let event: serde_json::Value = serde_json::from_str(&lines[0]).expect("json");
    let record = &event["Records"][0];
    assert_eq!(record["messageId"], message_id.as_str());
    assert_eq!(record["body"], r#"{"order":1}"#);
    assert_eq!(record["eventSource"], "aws:sqs");
    assert_eq!(
        record["eventSourceARN"],
        "arn:aws:sqs:us-east-1:123456789012:orders"
    );
    assert_eq!(record["attributes"]["ApproximateReceiveCount"], "1");
    assert!(
        record["receiptHandle"]
            .as_str()
            .is_some_and(|h| !h.is_empty())
    );
    // Deleted after the successful invocation: nothing left to receive.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let listed = api(&server, app.path(), "GET", "/v1/queues", "")
        .await
        .json();
    let orders = listed["queues"]
        .as_array()
        .expect("queues")
        .iter()
        .find(|q| q["name"] == "orders")
        .cloned()
        .expect("orders listed");
    assert_eq!(orders["visible"], 0);
    assert_eq!(orders["inFlight"], 0);
}

#[tokio::test]
async fn failing_messages_move_to_the_dead_letter_queue_after_max_receives() {
    let manifest = r#"
service: dlq
provider:
  runtime: nodejs20.x
queues:
  work:
    visibilityTimeout: 1
    deadLetterQueue: { name: work-dlq, maxReceiveCount: 2 }
functions:
  fail:
    handler: fail.handler
    events:
      - sqs: { arn: work, batchSize: 1 }
"#;
    let fail_js = "exports.handler = async () => { throw new Error('always'); };\n";
    let app = TestApp::new(&[("nimbus.yaml", manifest), ("fail.js", fail_js)]);
    let server = TestServer::start(app.path(), &[]);
    assert_eq!(
        send(&server, app.path(), "work", "poison").await.status,
        200
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let res = api(
            &server,
            app.path(),
            "POST",
            "/v1/queues/work-dlq/receive",
            r#"{"maxMessages": 1}"#,
        )
        .await;
        let messages = res.json()["messages"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if let Some(message) = messages.first() {
            assert_eq!(message["body"], "poison");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never reached the DLQ"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    app.nimbus_until(&["invocations", "fail", "--json"], |out| {
        out.lines().count() >= 2
    })
    .await;
    // Anything beyond the second would have been committed with it or just after.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let records = app.nimbus(&["invocations", "fail", "--json"]).stdout;
    assert_eq!(
        records.lines().count(),
        2,
        "invoked exactly maxReceiveCount times:\n{records}"
    );
}

#[tokio::test]
async fn a_partial_batch_failure_redelivers_only_the_failed_messages() {
    let out_dir = tempfile::tempdir().expect("tempdir");
    let out = out_dir.path().join("seen.txt");
    let manifest = format!(
        r#"
service: partial
provider:
  runtime: nodejs20.x
  environment: {{ OUT: "{}" }}
queues:
  jobs: {{ visibilityTimeout: 2 }}
functions:
  worker:
    handler: worker.handler
    reservedConcurrency: 1
    events:
      - sqs: {{ arn: jobs, batchSize: 10, functionResponseType: ReportBatchItemFailures }}
"#,
        out.display()
    );
    // Odd-numbered jobs fail on their first delivery only.
    let worker_js = r#"
const fs = require('fs');
exports.handler = async (event) => {
  const batchItemFailures = [];
  for (const record of event.Records) {
    const n = Number(record.body);
    const attempt = Number(record.attributes.ApproximateReceiveCount);
    fs.appendFileSync(process.env.OUT, `${n} ${attempt}\n`);
    if (n % 2 === 1 && attempt === 1) batchItemFailures.push({ itemIdentifier: record.messageId });
  }
  return { batchItemFailures };
};
"#;
    let app = TestApp::new(&[("nimbus.yaml", &manifest), ("worker.js", worker_js)]);
    let server = TestServer::start_with_env(app.path(), &[], UNSANDBOXED);
    for n in 0..6 {
        assert_eq!(
            send(&server, app.path(), "jobs", &n.to_string())
                .await
                .status,
            200
        );
    }
    // 6 first deliveries + 3 redeliveries of the odd ones, and nothing more.
    let lines = lines_when(&out, 9).await;
    // Long enough for a wrongly kept message to come back once more.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let lines_after = std::fs::read_to_string(&out).expect("read").lines().count();
    assert_eq!(lines_after, 9, "{lines:?}");
    let seen: BTreeSet<&str> = lines.iter().map(String::as_str).collect();
    for expected in [
        "0 1", "1 1", "1 2", "2 1", "3 1", "3 2", "4 1", "5 1", "5 2",
    ] {
        assert!(seen.contains(expected), "missing {expected:?} in {lines:?}");
    }
}

#[tokio::test]
async fn fifo_queues_keep_order_within_a_group() {
    let out_dir = tempfile::tempdir().expect("tempdir");
    let out = out_dir.path().join("order.txt");
    let manifest = format!(
        r#"
service: fifo
provider:
  runtime: nodejs20.x
  environment: {{ OUT: "{}" }}
queues:
  steps.fifo: {{ contentBasedDeduplication: true }}
functions:
  step:
    handler: step.handler
    events:
      - sqs: {{ arn: steps.fifo, batchSize: 3 }}
"#,
        out.display()
    );
    let step_js = r#"
const fs = require('fs');
exports.handler = async (event) => {
  for (const r of event.Records) {
    await new Promise((resolve) => setTimeout(resolve, 5));
    fs.appendFileSync(process.env.OUT, `${r.attributes.MessageGroupId} ${r.body.split(':')[1]}\n`);
  }
};
"#;
    let app = TestApp::new(&[("nimbus.yaml", &manifest), ("step.js", step_js)]);
    let server = TestServer::start_with_env(app.path(), &[], UNSANDBOXED);
    for n in 0..10 {
        for group in ["a", "b"] {
            let request =
                serde_json::json!({ "body": format!("{group}:{n}"), "groupId": group }).to_string();
            let res = api(
                &server,
                app.path(),
                "POST",
                "/v1/queues/steps.fifo/messages",
                &request,
            )
            .await;
            assert_eq!(res.status, 200, "{}", res.text());
        }
    }
    // A duplicate body in the dedup window is accepted but not enqueued again.
    let request = serde_json::json!({ "body": "a:9", "groupId": "a" }).to_string();
    assert_eq!(
        api(
            &server,
            app.path(),
            "POST",
            "/v1/queues/steps.fifo/messages",
            &request
        )
        .await
        .status,
        200
    );
    let lines = lines_when(&out, 20).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        std::fs::read_to_string(&out).expect("read").lines().count(),
        20,
        "deduplicated"
    );
    let mut by_group: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for line in &lines {
        let (group, n) = line.split_once(' ').expect("group and body");
        by_group
            .entry(group.to_owned())
            .or_default()
            .push(n.parse().expect("number"));
    }
    for (group, order) in by_group {
        assert_eq!(order, (0..10).collect::<Vec<_>>(), "group {group} in order");
    }
}

#[tokio::test]
async fn topics_fan_out_to_functions_and_queues_by_filter_policy() {
    let out_dir = tempfile::tempdir().expect("tempdir");
    let out = out_dir.path().join("sns.jsonl");
    let manifest = format!(
        r#"
service: fanout
provider:
  runtime: nodejs20.x
  environment: {{ OUT: "{}" }}
queues:
  blue-orders: {{}}
topics:
  orders:
    subscriptions:
      - queue: blue-orders
        filterPolicy: {{ color: [blue] }}
functions:
  red:
    handler: recorder.handler
    events:
      - sns:
          topicName: orders
          filterPolicy: {{ color: [red] }}
"#,
        out.display()
    );
    let app = TestApp::new(&[("nimbus.yaml", &manifest), ("recorder.js", RECORDER_JS)]);
    let server = TestServer::start_with_env(app.path(), &[], UNSANDBOXED);
    for color in ["red", "blue", "green"] {
        let request = serde_json::json!({ "message": format!("{color} order"), "subject": "new", "attributes": { "color": color } }).to_string();
        let res = api(
            &server,
            app.path(),
            "POST",
            "/v1/topics/orders/publish",
            &request,
        )
        .await;
        assert_eq!(res.status, 200, "{}", res.text());
    }
    let lines = lines_when(&out, 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let lines_after: Vec<String> = std::fs::read_to_string(&out)
        .expect("read")
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        lines_after.len(),
        1,
        "only the red message reaches the function: {lines_after:?}"
    );
    let event: serde_json::Value = serde_json::from_str(&lines[0]).expect("json");
    let sns = &event["Records"][0]["Sns"];
    assert_eq!(event["Records"][0]["EventSource"], "aws:sns");
    assert_eq!(sns["Message"], "red order");
    assert_eq!(sns["Subject"], "new");
    assert_eq!(sns["MessageAttributes"]["color"]["Value"], "red");
    assert_eq!(sns["TopicArn"], "arn:aws:sns:us-east-1:123456789012:orders");
    let received = api(
        &server,
        app.path(),
        "POST",
        "/v1/queues/blue-orders/receive",
        r#"{"maxMessages": 10}"#,
    )
    .await
    .json();
    let messages = received["messages"].as_array().cloned().unwrap_or_default();
    assert_eq!(messages.len(), 1, "{received}");
    let envelope: serde_json::Value =
        serde_json::from_str(messages[0]["body"].as_str().expect("body")).expect("envelope");
    assert_eq!(envelope["Type"], "Notification");
    assert_eq!(envelope["Message"], "blue order");
}

#[tokio::test]
async fn an_upload_triggers_a_function_that_writes_a_derived_object() {
    let manifest = r#"
service: pipeline
provider:
  runtime: nodejs20.x
  iam:
    role:
      statements:
        - Effect: Allow
          Action: [s3:GetObject]
          Resource: arn:aws:s3:::uploads/*
        - Effect: Allow
          Action: [s3:PutObject]
          Resource: arn:aws:s3:::derived/*
buckets: [derived]
functions:
  derive:
    handler: derive.handler
    events:
      - s3: { bucket: uploads, event: "s3:ObjectCreated:*", rules: [{ prefix: incoming/ }, { suffix: .txt }] }
  snoop:
    handler: snoop.handler
"#;
    let derive_js = r#"
const nimbus = require('nimbus');
exports.handler = async (event) => {
  for (const record of event.Records) {
    const key = decodeURIComponent(record.s3.object.key.replace(/\+/g, ' '));
    const object = await nimbus.bucket(record.s3.bucket.name).get(key);
    const out = key.replace('incoming/', 'upper/');
    await nimbus.bucket('derived').put(out, object.body.toString().toUpperCase(), { contentType: 'text/plain' });
  }
};
"#;
    let snoop_js = r#"
const nimbus = require('nimbus');
exports.handler = async () => {
  try {
    await nimbus.bucket('derived').get('upper/a file.txt');
    return 'read it';
  } catch (e) {
    return `${e.status} ${e.type}`;
  }
};
"#;
    let app = TestApp::new(&[
        ("nimbus.yaml", manifest),
        ("derive.js", derive_js),
        ("snoop.js", snoop_js),
    ]);
    let server = TestServer::start(app.path(), &[]);
    let source = app.path().join("a file.txt");
    std::fs::write(&source, "hello pipeline").expect("write");
    let put = app.nimbus(&[
        "bucket",
        "put",
        "uploads",
        "incoming/a file.txt",
        source.to_str().expect("path"),
        "--content-type",
        "text/plain",
    ]);
    assert_eq!(put.code, Some(0), "{}", put.stderr);
    // Not matching the rules: no derived object.
    let other = app.nimbus(&[
        "bucket",
        "put",
        "uploads",
        "elsewhere/b.txt",
        source.to_str().expect("path"),
    ]);
    assert_eq!(other.code, Some(0), "{}", other.stderr);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let got = app.nimbus(&["bucket", "get", "derived", "upper/a file.txt"]);
        if got.code == Some(0) {
            assert_eq!(got.stdout, "HELLO PIPELINE");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no derived object: {}",
            got.stderr
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let listed = app.nimbus(&["bucket", "ls", "derived"]);
    let listed: serde_json::Value = serde_json::from_str(&listed.stdout).expect("json");
    assert_eq!(
        listed["objects"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );
    // A function without a grant is refused, clearly.
    let snoop = app.nimbus(&["invoke", "snoop"]);
    assert_eq!(
        snoop.stdout.trim(),
        "\"403 AccessDenied\"",
        "{}",
        snoop.stderr
    );
    drop(server);
}

#[tokio::test]
async fn kv_keys_expire_and_list_by_prefix_with_cursors() {
    let manifest = "service: kv\nprovider:\n  runtime: nodejs20.x\nkv: [sessions]\nfunctions:\n  noop:\n    handler: noop.handler\n";
    let app = TestApp::new(&[
        ("nimbus.yaml", manifest),
        ("noop.js", "exports.handler = async () => null;\n"),
    ]);
    let _server = TestServer::start(app.path(), &[]);
    let put = app.nimbus(&["kv", "put", "sessions", "short", "lived", "--ttl", "2"]);
    assert_eq!(put.code, Some(0), "{}", put.stderr);
    for n in 0..5 {
        let put = app.nimbus(&[
            "kv",
            "put",
            "sessions",
            &format!("user:{n}"),
            "v",
            "--metadata",
            r#"{"n":1}"#,
        ]);
        assert_eq!(put.code, Some(0), "{}", put.stderr);
    }
    assert_eq!(
        app.nimbus(&["kv", "get", "sessions", "short"])
            .stdout
            .trim(),
        "lived"
    );
    let listed: serde_json::Value = serde_json::from_str(
        &app.nimbus(&["kv", "ls", "sessions", "--prefix", "user:"])
            .stdout,
    )
    .expect("json");
    assert_eq!(listed["keys"].as_array().map(Vec::len), Some(5));
    assert_eq!(listed["keys"][0]["metadata"]["n"], 1);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let expired = app.nimbus(&["kv", "get", "sessions", "short"]);
    assert_eq!(
        expired.code,
        Some(1),
        "expired keys are gone: {}",
        expired.stdout
    );
    assert!(expired.stderr.contains("no key"), "{}", expired.stderr);
}

#[tokio::test]
async fn async_invocations_retry_then_go_to_the_failure_destination() {
    let manifest = r#"
service: async
provider:
  runtime: nodejs20.x
queues:
  failures: {}
functions:
  flaky:
    handler: flaky.handler
    maximumRetryAttempts: 1
    destinations:
      onFailure: arn:aws:sqs:us-east-1:123456789012:failures
"#;
    let flaky_js = "exports.handler = async (event) => { throw new Error('nope ' + event.n); };\n";
    let app = TestApp::new(&[("nimbus.yaml", manifest), ("flaky.js", flaky_js)]);
    let server = TestServer::start(app.path(), &["--async-retry-delay", "100ms"]);
    let queued = app.nimbus(&["invoke", "flaky", "--async", "--data", r#"{"n": 7}"#]);
    assert_eq!(queued.code, Some(0), "{}", queued.stderr);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let record = loop {
        let res = api(
            &server,
            app.path(),
            "POST",
            "/v1/queues/failures/receive",
            r#"{"maxMessages": 1}"#,
        )
        .await;
        if let Some(message) = res.json()["messages"]
            .as_array()
            .and_then(|m| m.first().cloned())
        {
            break serde_json::from_str::<serde_json::Value>(
                message["body"].as_str().expect("body"),
            )
            .expect("record");
        }
        assert!(tokio::time::Instant::now() < deadline, "no failure record");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(record["requestContext"]["condition"], "RetriesExhausted");
    assert_eq!(record["requestContext"]["approximateInvokeCount"], 2);
    assert_eq!(record["requestPayload"]["n"], 7);
    assert_eq!(record["responseContext"]["functionError"], "Unhandled");
    assert_eq!(record["responsePayload"]["errorMessage"], "nope 7");
    app.nimbus_until(&["invocations", "flaky", "--json"], |out| {
        out.lines().count() >= 2
    })
    .await;
    // A third try would have been committed with the second or just after.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let records = app.nimbus(&["invocations", "flaky", "--json"]).stdout;
    let ids: BTreeSet<String> = records
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("json")["requestId"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(
        records.lines().count(),
        2,
        "one try and one retry:\n{records}"
    );
    assert_eq!(ids.len(), 1, "retries keep the request id, as on Lambda");
}

#[tokio::test]
async fn bad_requests_get_clear_errors_and_lose_nothing() {
    let manifest = "service: bad\nprovider:\n  runtime: nodejs20.x\nqueues:\n  real: {}\nbuckets: [files]\nfunctions:\n  noop:\n    handler: noop.handler\n";
    let app = TestApp::new(&[
        ("nimbus.yaml", manifest),
        ("noop.js", "exports.handler = async () => null;\n"),
    ]);
    let server = TestServer::start(app.path(), &[]);
    assert_eq!(
        send(&server, app.path(), "real", "keep me").await.status,
        200
    );
    let res = send(&server, app.path(), "nope", "x").await;
    assert_eq!(res.status, 404, "{}", res.text());
    assert!(
        res.json()["message"]
            .as_str()
            .is_some_and(|m| m.contains("nope")),
        "{}",
        res.text()
    );
    let big = "x".repeat(256 * 1024 + 1);
    let res = send(&server, app.path(), "real", &big).await;
    assert!(
        res.status == 400 || res.status == 413,
        "{} {}",
        res.status,
        res.text()
    );
    let res = api(
        &server,
        app.path(),
        "PUT",
        "/v1/buckets/files/objects/a/../../escape",
        "x",
    )
    .await;
    assert_eq!(res.status, 400, "{}", res.text());
    let res = api(
        &server,
        app.path(),
        "POST",
        "/v1/queues/real/messages",
        "{not json",
    )
    .await;
    assert_eq!(res.status, 400);
    let res = crate::harness::request(server.addr, "GET", "/v1/queues", &[], Vec::new()).await;
    assert_eq!(
        res.status, 404,
        "the services API is not on the public gateway"
    );
    // What was accepted before is still there.
    let received = api(
        &server,
        app.path(),
        "POST",
        "/v1/queues/real/receive",
        r#"{"maxMessages": 10}"#,
    )
    .await
    .json();
    assert_eq!(received["messages"][0]["body"], "keep me");
}

#[tokio::test]
async fn a_batch_send_commits_the_valid_entries_and_reports_the_others() {
    let out_dir = tempfile::tempdir().expect("tempdir");
    let out = out_dir.path().join("seen.txt");
    let manifest = format!(
        r#"
service: batches
provider:
  runtime: nodejs20.x
  iam:
    role:
      statements:
        - Effect: Allow
          Action: [sqs:SendMessage]
          Resource: arn:aws:sqs:*:*:jobs
queues:
  jobs: {{}}
functions:
  producer:
    handler: producer.handler
    events:
      - httpApi: POST /jobs
  worker:
    handler: worker.handler
    environment:
      OUT: {out}
    events:
      - sqs: {{ arn: jobs, batchSize: 10, maximumBatchingWindow: 1 }}
"#,
        out = out.display()
    );
    let producer_js = r#"
const nimbus = require('nimbus');
exports.handler = async () => {
  const res = await nimbus.queue('jobs').sendBatch([
    { id: 'a', body: 'one' },
    { id: 'b', body: { n: 2 }, attributes: { kind: 'json' } },
    { id: 'c', body: 'reserved', attributes: { 'nimbus.sneaky': 'x' } },
    { id: 'd', body: 'x'.repeat(256 * 1024 + 1) },
    { id: 'e', body: 'three', delaySeconds: 1 },
  ]);
  return { statusCode: 200, body: JSON.stringify(res) };
};
"#;
    let worker_js = r#"
const fs = require('fs');
exports.handler = async (event) => {
  for (const r of event.Records) fs.appendFileSync(process.env.OUT, r.body + '\n');
};
"#;
    let app = TestApp::new(&[
        ("nimbus.yaml", &manifest),
        ("producer.js", producer_js),
        ("worker.js", worker_js),
    ]);
    let server = TestServer::start_with_env(app.path(), &[], UNSANDBOXED);
    let res = server.request("POST", "/jobs", &[], Vec::new()).await;
    assert_eq!(res.status, 200, "{}", res.text());
    let answer = res.json();
    let ids = |list: &str| -> Vec<String> {
        answer[list]
            .as_array()
            .map(|entries| {
                entries
                    .iter()
                    .map(|e| e["id"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(ids("successful"), ["a", "b", "e"], "{answer}");
    assert_eq!(ids("failed"), ["c", "d"], "{answer}");
    assert_eq!(answer["failed"][0]["senderFault"], true);
    assert_eq!(answer["failed"][1]["code"], "MessageTooLong", "{answer}");
    assert!(answer["successful"][0]["messageId"].is_string());

    let mut seen = lines_when(&out, 3).await;
    seen.sort();
    assert_eq!(seen, ["one", "three", r#"{"n":2}"#]);

    // Whole-request errors, through the control API.
    let batch = |entries: serde_json::Value| serde_json::json!({ "entries": entries }).to_string();
    for (queue, body, status, error_type) in [
        (
            "jobs",
            batch(serde_json::json!([])),
            400,
            "EmptyBatchRequest",
        ),
        (
            "jobs",
            batch(
                (0..11)
                    .map(|i| serde_json::json!({"id": format!("m{i}"), "body": "x"}))
                    .collect(),
            ),
            400,
            "TooManyEntriesInBatchRequest",
        ),
        (
            "jobs",
            batch(serde_json::json!([{"id": "same", "body": "1"}, {"id": "same", "body": "2"}])),
            400,
            "BatchEntryIdsNotDistinct",
        ),
        (
            "nope",
            batch(serde_json::json!([{"id": "a", "body": "1"}])),
            404,
            "QueueDoesNotExist",
        ),
    ] {
        let res = api(
            &server,
            app.path(),
            "POST",
            &format!("/v1/queues/{queue}/messages/batch"),
            &body,
        )
        .await;
        assert_eq!(res.status, status, "{}", res.text());
        assert_eq!(res.json()["type"], error_type, "{}", res.text());
    }
    let res = api(
        &server,
        app.path(),
        "POST",
        "/v1/queues/jobs/messages/batch",
        &batch(serde_json::json!([{"id": "has space", "body": "1"}])),
    )
    .await;
    assert_eq!(res.status, 400, "{}", res.text());
    assert!(res.text().contains("entries[0].id"), "{}", res.text());
    // None of the refused requests sent anything.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .count(),
        3
    );
}

#[test]
fn a_malformed_cron_is_a_manifest_error() {
    let manifest = "service: cron\nprovider:\n  runtime: nodejs20.x\nfunctions:\n  tick:\n    handler: noop.handler\n    events:\n      - schedule: cron(0 12 * * * *)\n";
    let app = TestApp::new(&[
        ("nimbus.yaml", manifest),
        ("noop.js", "exports.handler = async () => null;\n"),
    ]);
    let out = app.nimbus(&["validate"]);
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains("nimbus.yaml:8:") && out.stderr.contains("functions.tick.events[0]"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn a_schedule_missed_while_down_fires_once_at_start_up() {
    let out_dir = tempfile::tempdir().expect("tempdir");
    let out = out_dir.path().join("ticks.jsonl");
    let manifest = format!(
        "service: sched\nprovider:\n  runtime: nodejs20.x\n  environment: {{ OUT: \"{}\" }}\nfunctions:\n  tick:\n    handler: recorder.handler\n    events:\n      - schedule:\n          rate: rate(1 minute)\n          name: every-minute\n",
        out.display()
    );
    let app = TestApp::new(&[("nimbus.yaml", &manifest), ("recorder.js", RECORDER_JS)]);
    // The schedule last fired ten minutes ago: nine slots were missed while "down".
    {
        let store = nimbus_store::Store::open(&app.path().join(".nimbus")).expect("store");
        let ten_minutes_ago = std::time::SystemTime::now() - Duration::from_secs(600);
        store
            .fire_schedule("every-minute", ten_minutes_ago, ten_minutes_ago, Vec::new())
            .expect("seed schedule state");
    }
    let _server = TestServer::start_with_env(app.path(), &[], UNSANDBOXED);
    let lines = lines_when(&out, 1).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        std::fs::read_to_string(&out).expect("read").lines().count(),
        1,
        "one fire, not nine"
    );
    let event: serde_json::Value = serde_json::from_str(&lines[0]).expect("json");
    assert_eq!(event["detail-type"], "Scheduled Event");
    assert_eq!(event["source"], "aws.events");
    assert_eq!(
        event["resources"][0],
        "arn:aws:events:us-east-1:123456789012:rule/every-minute"
    );
}

/// The issue's crash test: accept 10,000 messages, kill -9 nimbus mid-processing,
/// restart it, and every message is processed at least once.
#[tokio::test]
async fn kill_9_mid_processing_loses_no_accepted_message() {
    const N: usize = 10_000;
    let out_dir = tempfile::tempdir().expect("tempdir");
    let out = out_dir.path().join("processed.txt");
    let manifest = format!(
        r#"
service: crash
provider:
  runtime: nodejs20.x
  environment: {{ OUT: "{}" }}
queues:
  bulk: {{ visibilityTimeout: 2 }}
functions:
  work:
    handler: work.handler
    reservedConcurrency: 4
    events:
      - sqs: {{ arn: bulk, batchSize: 10 }}
"#,
        out.display()
    );
    let work_js = r#"
const fs = require('fs');
exports.handler = async (event) => {
  await new Promise((resolve) => setTimeout(resolve, 20));
  fs.appendFileSync(process.env.OUT, event.Records.map((r) => r.body + '\n').join(''));
};
"#;
    let app = TestApp::new(&[("nimbus.yaml", &manifest), ("work.js", work_js)]);
    let server = TestServer::start_with_env(app.path(), &[], UNSANDBOXED);
    // Senders stop at the first refused send: only answered sends count as accepted.
    let accepted = std::sync::Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    let send_all = |accepted: std::sync::Arc<std::sync::Mutex<BTreeSet<usize>>>,
                    app_dir: std::path::PathBuf| async move {
        let text = std::fs::read_to_string(app_dir.join(".nimbus/up.json")).expect("up.json");
        let record: serde_json::Value = serde_json::from_str(&text).expect("json");
        let admin: std::net::SocketAddr = record["admin"]
            .as_str()
            .expect("admin")
            .parse()
            .expect("addr");
        let auth = format!("Bearer {}", record["token"].as_str().expect("token"));
        let mut senders = tokio::task::JoinSet::new();
        for sender in 0..8 {
            let (auth, accepted) = (auth.clone(), accepted.clone());
            senders.spawn(async move {
                for n in (sender..N).step_by(8) {
                    if accepted.lock().expect("lock").contains(&n) {
                        continue;
                    }
                    let body = serde_json::json!({ "body": format!("m{n}") }).to_string();
                    // A refused connection panics this sender's task, which ends it.
                    let res = crate::harness::request(
                        admin,
                        "POST",
                        "/v1/queues/bulk/messages",
                        &[("authorization", &auth)],
                        body.into_bytes(),
                    )
                    .await;
                    if res.status != 200 {
                        return;
                    }
                    accepted.lock().expect("lock").insert(n);
                }
            });
        }
        while senders.join_next().await.is_some() {}
    };
    let sending = tokio::spawn(send_all(accepted.clone(), app.path().to_owned()));
    // kill -9 in the middle of processing (and perhaps of sending).
    lines_when(&out, 1000).await;
    crate::harness::signal(server.pid(), libc::SIGKILL);
    drop(server);
    let _ = sending.await;
    let before_restart = std::fs::read_to_string(&out).expect("read").lines().count();
    let n_accepted = accepted.lock().expect("lock").len();
    assert!(
        before_restart < N,
        "killed before the end ({before_restart} processed)"
    );
    let _server = TestServer::start_with_env(app.path(), &[], UNSANDBOXED);
    // Send what was not accepted before the kill, so 10,000 are accepted in all.
    send_all(accepted.clone(), app.path().to_owned()).await;
    assert_eq!(accepted.lock().expect("lock").len(), N);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let text = std::fs::read_to_string(&out).expect("read");
        let unique: BTreeSet<&str> = text.lines().collect();
        if unique.len() == N {
            let total = text.lines().count();
            eprintln!(
                "crash test: {N} messages, {n_accepted} accepted and {before_restart} processed before kill -9, {} duplicates",
                total - N
            );
            for n in 0..N {
                assert!(unique.contains(format!("m{n}").as_str()));
            }
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {N} processed after restart",
            unique.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
