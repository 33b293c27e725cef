//! Cluster mode's shared state beyond queues (issue 17): a deploy, a new version and a
//! rollback made through one `nimbus server --cluster` reach another, and KV written
//! through one `nimbus up --cluster` node is read, listed and deleted through another,
//! over a real nats-server.

use std::time::{Duration, Instant};

use crate::cluster::NatsServer;
use crate::deploy::{Host, admin_command, app, deploy, ok};
use crate::harness::{TestApp, TestServer};

/// GETs `/svc/dev/hello` from `host` until it answers `text` (30 s at most); the answer's
/// version header.
async fn until_answers(host: &Host, text: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let res = host.get("/svc/dev/hello").await;
        if res.status == 200 && res.text() == text {
            return res
                .header("x-nimbus-version")
                .unwrap_or_default()
                .to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "still {} {:?} instead of {text}; logs:\n{}",
            res.status,
            res.text(),
            host.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn deploys_canaries_rollbacks_and_promotes_through_one_server_reach_the_others() {
    let nats = NatsServer::start();
    let cluster = ["--cluster", nats.url.as_str()];
    let (a, b) = (Host::start_with(&cluster), Host::start_with(&cluster));
    let (token_a, token_b) = (a.new_token(), b.new_token());
    let app = app("v1");

    ok(&deploy(&app, &a, &token_a, "v1", &[]));
    assert_eq!(until_answers(&a, "v1").await, "1");
    assert_eq!(
        until_answers(&b, "v1").await,
        "1",
        "node b fetched version 1"
    );

    ok(&deploy(&app, &a, &token_a, "v2", &[]));
    assert_eq!(until_answers(&b, "v2").await, "2");

    // A rollback through node b moves node a too.
    ok(&admin_command(&app, &b, &token_b, &["rollback"]));
    assert_eq!(until_answers(&a, "v1").await, "1");

    // A canary deployed through node a splits node b's answers too.
    ok(&deploy(&app, &a, &token_a, "v3", &["--canary", "50%"]));
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 2 {
        let res = b.get("/svc/dev/hello").await;
        assert_eq!(res.status, 200, "{}", b.logs());
        seen.insert(res.text());
        assert!(Instant::now() < deadline, "node b answered only {seen:?}");
    }
    assert_eq!(seen, ["v1".to_owned(), "v3".to_owned()].into());

    // A third node joining later catches up from the shared records.
    let c = Host::start_with(&cluster);
    ok(&admin_command(&app, &b, &token_b, &["promote"]));
    assert_eq!(until_answers(&c, "v3").await, "3");
}

#[tokio::test]
async fn kv_written_through_one_node_is_read_listed_and_deleted_through_another() {
    let nats = NatsServer::start();
    let manifest = "service: shop\nprovider:\n  runtime: nodejs20.x\nkv: [cache]\nfunctions:\n  noop:\n    handler: noop.handler\n";
    let files = [
        ("nimbus.yaml", manifest),
        ("noop.js", "exports.handler = async () => null;\n"),
    ];
    let (app_a, app_b) = (TestApp::new(&files), TestApp::new(&files));
    let cluster = ["--cluster", nats.url.as_str()];
    let _a = TestServer::start(app_a.path(), &cluster);
    let _b = TestServer::start(app_b.path(), &cluster);

    let put = app_a.nimbus(&[
        "kv",
        "put",
        "cache",
        "greeting",
        "hello",
        "--metadata",
        r#"{"n":1}"#,
    ]);
    assert_eq!(put.code, Some(0), "{}", put.stderr);
    let got = app_b.nimbus(&["kv", "get", "cache", "greeting"]);
    assert_eq!(
        (got.code, got.stdout.trim()),
        (Some(0), "hello"),
        "{}",
        got.stderr
    );
    let listed: serde_json::Value =
        serde_json::from_str(&app_b.nimbus(&["kv", "ls", "cache"]).stdout).expect("json");
    assert_eq!(listed["keys"][0]["name"], "greeting", "{listed}");
    assert_eq!(listed["keys"][0]["metadata"]["n"], 1, "{listed}");

    let rm = app_b.nimbus(&["kv", "rm", "cache", "greeting"]);
    assert_eq!(rm.code, Some(0), "{}", rm.stderr);
    let gone = app_a.nimbus(&["kv", "get", "cache", "greeting"]);
    assert_eq!(gone.code, Some(1), "{}", gone.stdout);
    assert!(gone.stderr.contains("no key"), "{}", gone.stderr);
}

#[tokio::test]
async fn invocations_and_logs_of_one_node_are_shown_by_another() {
    let nats = NatsServer::start();
    let manifest = "service: shop\nprovider:\n  runtime: nodejs20.x\nfunctions:\n  hello:\n    handler: hello.handler\n    events:\n      - httpApi: GET /hello\n";
    let handler = "exports.handler = async (event) => { console.log('served ' + event.queryStringParameters.n); return { statusCode: 200, body: 'hi' }; };\n";
    let files = [("nimbus.yaml", manifest), ("hello.js", handler)];
    let (app_a, app_b) = (TestApp::new(&files), TestApp::new(&files));
    let cluster = ["--cluster", nats.url.as_str()];
    let a = TestServer::start(app_a.path(), &cluster);
    let _b = TestServer::start(app_b.path(), &cluster);

    let res = a.get("/hello?n=cluster-42").await;
    assert_eq!(res.status, 200, "{}", a.logs());
    let invocations = app_b
        .nimbus_until(&["invocations", "--json"], |out| out.contains("\"hello\""))
        .await;
    let record: serde_json::Value = invocations
        .lines()
        .find_map(|line| serde_json::from_str(line).ok())
        .expect("an invocation record on node b");
    assert_eq!(record["function"], "hello", "{record}");
    assert_eq!(record["outcome"], "ok", "{record}");
    let logs = app_b
        .nimbus_until(&["logs", "hello"], |out| out.contains("served cluster-42"))
        .await;
    assert!(logs.contains("REPORT"), "{logs}");
}
