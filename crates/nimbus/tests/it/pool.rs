//! The instance pool seen from outside: cold and warm starts, limits, kills, scale to zero.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::harness::{TestApp, TestServer, process_running};

/// A handler whose behaviour the query string picks; it reports its process and a
/// module-scope counter so tests can see which instance answered.
const BEHAVE_JS: &str = r#"
let count = 0;
exports.handler = async (event, context) => {
  count += 1;
  const q = event.queryStringParameters || {};
  if (q.sleep) await new Promise((resolve) => setTimeout(resolve, Number(q.sleep)));
  if (q.crash) process.exit(3);
  if (q.loop) { for (;;) {} }
  if (q.hog) { const keep = []; for (;;) keep.push(Buffer.alloc(8 * 1024 * 1024, 1)); }
  if (q.fail) throw new TypeError('asked to fail');
  return {
    statusCode: 200,
    body: JSON.stringify({
      count,
      pid: process.pid,
      initType: process.env.AWS_LAMBDA_INITIALIZATION_TYPE,
      remaining: context.getRemainingTimeInMillis(),
      memory: context.memoryLimitInMB,
    }),
  };
};
"#;

const BEHAVE_PY: &str = r#"
import json, os, time

count = 0

def handler(event, context):
    global count
    count += 1
    q = event.get("queryStringParameters") or {}
    if "sleep" in q:
        time.sleep(int(q["sleep"]) / 1000)
    if "hog" in q:
        keep = []
        while True:
            keep.append(bytearray(8 * 1024 * 1024))
    return {"statusCode": 200, "body": json.dumps({"count": count, "pid": os.getpid()})}
"#;

fn app(function_yaml: &str) -> TestApp {
    let manifest = format!(
        "service: pool\nprovider:\n  runtime: nodejs20.x\n  memorySize: 128\n  timeout: 1\nfunctions:\n{function_yaml}"
    );
    TestApp::new(&[
        ("nimbus.yaml", &manifest),
        ("behave.js", BEHAVE_JS),
        ("behave.py", BEHAVE_PY),
    ])
}

const NODE_FN: &str =
    "  node:\n    handler: behave.handler\n    events:\n      - httpApi: GET /node\n";
const PY_FN: &str = "  py:\n    handler: behave.handler\n    runtime: python3.12\n    events:\n      - httpApi: GET /py\n";

#[tokio::test]
async fn scales_from_zero_then_reuses_the_warm_instance() {
    let app = app(&format!("{NODE_FN}{PY_FN}"));
    let server = TestServer::start(app.path(), &[]);
    for path in ["/node", "/py"] {
        let first = server.get(path).await.json();
        let second = server.get(path).await.json();
        let third = server.get(path).await.json();
        assert_eq!(
            first["count"], 1,
            "{path}: a fresh instance starts counting at 1"
        );
        assert_eq!(
            second["count"], 2,
            "{path}: module state survives warm invocations"
        );
        assert_eq!(third["count"], 3, "{path}");
        assert_eq!(
            first["pid"], third["pid"],
            "{path}: one warm instance served all three"
        );
    }
    let node = server.get("/node").await.json();
    assert_eq!(node["initType"], "on-demand");
    assert_eq!(node["memory"], "128");
    let remaining = node["remaining"].as_i64().expect("remaining time");
    assert!(
        (0..=1000).contains(&remaining),
        "remaining {remaining} ms of a 1 s timeout"
    );
}

#[tokio::test]
async fn reserved_concurrency_caps_instances_and_throttles_with_429() {
    let app = app(
        "  node:\n    handler: behave.handler\n    timeout: 5\n    reservedConcurrency: 2\n    events:\n      - httpApi: GET /node\n",
    );
    let server = TestServer::start(app.path(), &["--queue-wait", "300ms"]);
    let addr = server.addr;
    let requests =
        (0..10).map(|_| crate::harness::request(addr, "GET", "/node?sleep=1500", &[], Vec::new()));
    let responses = futures_join_all(requests).await;
    let ok: Vec<_> = responses.iter().filter(|r| r.status == 200).collect();
    let throttled: Vec<_> = responses.iter().filter(|r| r.status == 429).collect();
    assert_eq!(
        ok.len() + throttled.len(),
        10,
        "only 200 or 429: {responses:?}"
    );
    assert_eq!(
        ok.len(),
        2,
        "two instances serve, the rest wait 300 ms and give up"
    );
    let pids: BTreeSet<String> = ok.iter().map(|r| r.json()["pid"].to_string()).collect();
    assert!(pids.len() <= 2, "at most 2 instances: {pids:?}");
    assert_eq!(throttled[0].json()["message"], "Too Many Requests");
    assert_eq!(
        throttled[0].header("x-amzn-errortype"),
        Some("TooManyRequestsException")
    );
    // Once the burst is over the function serves again, from the same warm instances.
    let after = server.get("/node").await;
    assert_eq!(after.status, 200);
    assert!(pids.contains(&after.json()["pid"].to_string()));
}

#[tokio::test]
async fn a_timed_out_invocation_gets_504_and_the_next_one_a_new_instance() {
    let app = app(NODE_FN);
    let server = TestServer::start(app.path(), &[]);
    let before = server.get("/node").await.json();
    let res = server.get("/node?loop=1").await;
    assert_eq!(res.status, 504);
    assert_eq!(res.json()["message"], "Endpoint request timed out");
    let pid = before["pid"].as_u64().expect("pid") as u32;
    wait_until(|| !process_running(pid), "the looping instance is stopped").await;
    let after = server.get("/node").await;
    assert_eq!(after.status, 200);
    assert_eq!(after.json()["count"], 1, "a fresh instance");
    assert!(
        server.logs().contains("Task timed out after 1.00 seconds"),
        "{}",
        server.logs()
    );
}

#[tokio::test]
async fn an_instance_over_its_memory_limit_is_stopped() {
    let app = app(&format!("{NODE_FN}{PY_FN}"));
    let server = TestServer::start(app.path(), &[]);
    for path in ["/node", "/py"] {
        let before = server.get(path).await.json();
        let res = server.get(&format!("{path}?hog=1")).await;
        assert_eq!(res.status, 502, "{path}: {}", res.text());
        let pid = before["pid"].as_u64().expect("pid") as u32;
        wait_until(|| !process_running(pid), "the hog is stopped").await;
        let after = server.get(path).await;
        assert_eq!(after.status, 200, "{path}");
        assert_eq!(after.json()["count"], 1, "{path}: a fresh instance");
    }
    let logs = server.logs();
    assert!(logs.matches("Runtime.OutOfMemory").count() >= 2, "{logs}");
}

#[tokio::test]
async fn a_crashed_instance_is_replaced_and_others_keep_serving() {
    let app = app(&format!("{NODE_FN}{PY_FN}"));
    let server = TestServer::start(app.path(), &[]);
    let py_before = server.get("/py").await.json();
    let before = server.get("/node").await.json();
    let res = server.get("/node?crash=1").await;
    assert_eq!(res.status, 502);
    assert_eq!(res.json()["message"], "Internal server error");
    let after = server.get("/node").await;
    assert_eq!(after.status, 200);
    assert_ne!(
        after.json()["pid"],
        before["pid"],
        "a new instance replaced the crashed one"
    );
    let py_after = server.get("/py").await.json();
    assert_eq!(
        py_after["pid"], py_before["pid"],
        "the python instance was not touched"
    );
    assert_eq!(py_after["count"], 2);
    assert!(server.logs().contains("exit status 3"), "{}", server.logs());
}

#[tokio::test]
async fn a_handled_error_answers_502_and_keeps_the_instance_warm() {
    let app = app(NODE_FN);
    let server = TestServer::start(app.path(), &[]);
    let before = server.get("/node").await.json();
    let res = server.get("/node?fail=1").await;
    assert_eq!(res.status, 502);
    let after = server.get("/node").await.json();
    assert_eq!(after["pid"], before["pid"]);
    assert_eq!(after["count"], 3);
    assert!(server.logs().contains("asked to fail"), "{}", server.logs());
}

#[tokio::test]
async fn idle_instances_scale_to_zero() {
    let app = app(NODE_FN);
    let server = TestServer::start(app.path(), &["--idle-timeout", "300ms"]);
    let first = server.get("/node").await.json();
    let pid = first["pid"].as_u64().expect("pid") as u32;
    assert!(process_running(pid));
    wait_until(|| !process_running(pid), "the idle instance is stopped").await;
    let next = server.get("/node").await.json();
    assert_eq!(next["count"], 1, "scaled from zero again");
    assert_ne!(next["pid"], first["pid"]);
}

#[tokio::test]
async fn provisioned_instances_start_at_boot_and_stay_warm() {
    let app = app(
        "  node:\n    handler: behave.handler\n    provisionedConcurrency: 1\n    events:\n      - httpApi: GET /node\n",
    );
    let server = TestServer::start(app.path(), &["--idle-timeout", "200ms"]);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let first = server.get("/node").await.json();
    assert_eq!(first["initType"], "provisioned-concurrency");
    tokio::time::sleep(Duration::from_millis(700)).await;
    let second = server.get("/node").await.json();
    assert_eq!(
        second["pid"], first["pid"],
        "the provisioned instance outlives the idle timeout"
    );
    assert_eq!(second["count"], 2);
}

#[tokio::test]
async fn ctrl_c_stops_every_instance() {
    let app = app(&format!("{NODE_FN}{PY_FN}"));
    let server = TestServer::start(app.path(), &[]);
    let mut pids = Vec::new();
    for path in ["/node", "/py"] {
        pids.push(server.get(path).await.json()["pid"].as_u64().expect("pid") as u32);
    }
    // One instance busy at the moment of Ctrl-C: it is drained, not cut off.
    let addr = server.addr;
    let busy = tokio::spawn(crate::harness::request(
        addr,
        "GET",
        "/node?sleep=300",
        &[],
        Vec::new(),
    ));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let nimbus_pid = server.pid();
    let status = tokio::task::spawn_blocking(move || server.interrupt())
        .await
        .expect("joining");
    assert!(
        status.success(),
        "nimbus exits cleanly on Ctrl-C: {status:?}"
    );
    assert!(!process_running(nimbus_pid));
    let busy = busy.await.expect("joining");
    assert_eq!(busy.status, 200, "the in-flight request finished");
    pids.push(busy.json()["pid"].as_u64().expect("pid") as u32);
    for pid in pids {
        assert!(!process_running(pid), "instance {pid} outlived nimbus");
    }
    assert!(
        !app.path().join(".nimbus/up.json").exists(),
        "up.json removed"
    );
}

async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut outputs = Vec::new();
    for handle in handles {
        outputs.push(handle.await.expect("joining a request"));
    }
    outputs
}

pub(crate) async fn wait_until(mut condition: impl FnMut() -> bool, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

// A client that gives up mid-request used to cancel the invocation and kill its instance.
#[tokio::test]
async fn a_client_that_goes_away_does_not_kill_the_instance() {
    let app = app(NODE_FN);
    let server = TestServer::start(app.path(), &[]);
    let before = server.get("/node").await.json();
    let addr = server.addr;
    let abandoned = tokio::spawn(crate::harness::request(
        addr,
        "GET",
        "/node?sleep=400",
        &[],
        Vec::new(),
    ));
    tokio::time::sleep(Duration::from_millis(100)).await;
    abandoned.abort();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = server.get("/node").await.json();
    assert_eq!(after["pid"], before["pid"], "the same warm instance");
    assert_eq!(after["count"], 3, "the abandoned invocation ran to its end");
}

/// A handler that answers at once, behind an init that takes 2 s.
const SLOW_INIT_JS: &str = r#"
Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 2000);
let count = 0;
exports.handler = async (event) => {
  count += 1;
  const q = event.queryStringParameters || {};
  if (q.sleep) await new Promise((resolve) => setTimeout(resolve, Number(q.sleep)));
  return { statusCode: 200, body: JSON.stringify({ pid: process.pid, count }) };
};
"#;

/// A request that finds every instance busy starts a new one, but is served by whichever
/// is ready first: here the warm instance, freed within milliseconds, long before the new
/// one's 2 s init ends. The new instance then joins the pool warm.
#[tokio::test]
async fn a_request_takes_an_instance_freed_before_its_cold_start_ends() {
    let manifest = "service: race\nprovider:\n  runtime: nodejs20.x\n  timeout: 10\nfunctions:\n  slow:\n    handler: slow.handler\n    events:\n      - httpApi: GET /slow\n";
    let app = TestApp::new(&[("nimbus.yaml", manifest), ("slow.js", SLOW_INIT_JS)]);
    let server = TestServer::start(app.path(), &[]);
    let first = server.get("/slow").await.json();
    let warm_pid = first["pid"].clone();

    // Two at once: one finds the warm instance, the other starts a new one and takes the
    // warm instance as soon as it is free.
    let addr = server.addr;
    let burst = futures_join_all(
        (0..2).map(|_| crate::harness::request(addr, "GET", "/slow", &[], Vec::new())),
    )
    .await;
    for res in &burst {
        assert_eq!(res.status, 200, "{}", res.text());
        assert_eq!(res.json()["pid"], warm_pid, "served by the warm instance");
    }

    // The instance started for the burst joins the pool: two slow requests now run on two
    // instances without a new start.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let pids = loop {
        let pair = futures_join_all(
            (0..2)
                .map(|_| crate::harness::request(addr, "GET", "/slow?sleep=300", &[], Vec::new())),
        )
        .await;
        let pids: BTreeSet<String> = pair.iter().map(|r| r.json()["pid"].to_string()).collect();
        if pids.len() == 2 || std::time::Instant::now() > deadline {
            break pids;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(pids.len(), 2, "{pids:?}");
    let records = app
        .nimbus_until(&["invocations", "slow", "--json"], |out| {
            out.lines().count() >= 5
        })
        .await;
    let cold: Vec<&str> = records
        .lines()
        .filter(|l| l.contains("\"coldStart\":true"))
        .collect();
    assert_eq!(
        cold.len(),
        1,
        "only the very first request was a cold start:\n{records}"
    );
}

/// A burst from zero does not start a process per request: at most two starts per core
/// run at once, and the requests are served by the first instances ready.
#[tokio::test]
async fn a_burst_from_zero_starts_a_few_instances_not_one_per_request() {
    let manifest = "service: burst\nprovider:\n  runtime: nodejs20.x\n  timeout: 20\nfunctions:\n  slow:\n    handler: slow.handler\n    events:\n      - httpApi: GET /slow\n";
    let app = TestApp::new(&[("nimbus.yaml", manifest), ("slow.js", SLOW_INIT_JS)]);
    let server = TestServer::start(app.path(), &[]);
    let addr = server.addr;
    let max_starts = std::thread::available_parallelism()
        .map_or(2, |n| n.get() * 2)
        .max(2);
    let n_requests = max_starts * 4;
    let burst = futures_join_all(
        (0..n_requests).map(|_| crate::harness::request(addr, "GET", "/slow", &[], Vec::new())),
    )
    .await;
    let mut pids = BTreeSet::new();
    for res in &burst {
        assert_eq!(res.status, 200, "{}", res.text());
        pids.insert(res.json()["pid"].to_string());
    }
    let max_starts = std::thread::available_parallelism()
        .map_or(2, |n| n.get() * 2)
        .max(2);
    assert!(
        pids.len() <= max_starts.min(23),
        "{} instances served 24 requests (at most {max_starts} start at once)",
        pids.len()
    );
}
