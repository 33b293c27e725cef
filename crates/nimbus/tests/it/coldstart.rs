//! Cold starts near zero: several invocations at once per Node.js instance
//! (`concurrency`), pre-started runtimes and predictive pre-warming.

use std::collections::BTreeMap;

use crate::harness::{TestApp, TestServer, request};

/// A handler that meets other invocations of its own process: `?wait=N` holds it until
/// N invocations run in this process at once (or 8 s pass), so a test sees concurrency
/// without timing anything; it reports its process and the most it saw at once.
/// `?crash=1` throws an uncaught exception once the others are in, while it is still in
/// flight; `?hold=MS` keeps an
/// invocation in flight that long after meeting them.
const MEET_JS: &str = r#"
let active = 0;
let peak = 0;
const waiters = [];
exports.handler = async (event, context) => {
  const q = event.queryStringParameters || {};
  active += 1;
  peak = Math.max(peak, active);
  for (const wake of waiters.splice(0)) wake();
  const wanted = Number(q.wait || 1);
  const until = Date.now() + 8000;
  while (active < wanted && peak < wanted && Date.now() < until) {
    await new Promise((resolve) => { waiters.push(resolve); setTimeout(resolve, 100); });
  }
  console.log(`met ${peak}`);
  if (q.crash) {
    setTimeout(() => { throw new Error('boom in one invocation'); }, 0);
    await new Promise(() => {});
  }
  if (q.hold) await new Promise((resolve) => setTimeout(resolve, Number(q.hold)));
  active -= 1;
  return {
    statusCode: 200,
    body: JSON.stringify({ pid: process.pid, peak, requestId: context.awsRequestId }),
  };
};
"#;

fn app(functions: &str) -> TestApp {
    let manifest = format!(
        "service: coldstart\nprovider:\n  runtime: nodejs20.x\n  memorySize: 256\n  timeout: 15\nfunctions:\n{functions}"
    );
    TestApp::new(&[("nimbus.yaml", &manifest), ("meet.js", MEET_JS)])
}

async fn join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
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

#[tokio::test]
async fn concurrency_8_serves_8_invocations_at_once_in_one_process() {
    let app = app(
        "  meet:\n    handler: meet.handler\n    concurrency: 8\n    events:\n      - httpApi: GET /meet\n",
    );
    let server = TestServer::start(app.path(), &[]);
    // One instance is warm; the eight that follow fit in its slots.
    let first = server.get("/meet").await;
    assert_eq!(first.status, 200, "{}", first.text());
    let pid = first.json()["pid"].clone();
    let addr = server.addr;
    let responses =
        join_all((0..8).map(|_| request(addr, "GET", "/meet?wait=8&hold=500", &[], Vec::new())))
            .await;
    for res in &responses {
        assert_eq!(res.status, 200, "{}\n{}", res.text(), server.logs());
        let body = res.json();
        assert_eq!(body["pid"], pid, "one process served all: {body}");
        assert_eq!(
            body["peak"],
            8,
            "all eight ran in it at once: {body}\n{}",
            server.logs()
        );
    }
    let ids: std::collections::BTreeSet<String> = responses
        .iter()
        .map(|r| r.json()["requestId"].to_string())
        .collect();
    assert_eq!(ids.len(), 8, "each had its own request id");
    // Each line is tagged with the invocation whose code wrote it, not the latest one.
    let records = app
        .nimbus_until(&["logs", "meet", "--json"], |out| {
            out.lines().filter(|l| l.contains("met 8")).count() == 8
        })
        .await;
    let tagged: BTreeMap<String, usize> = records
        .lines()
        .filter(|l| l.contains("met 8"))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["requestId"].as_str().map(str::to_owned))
        .fold(BTreeMap::new(), |mut counts, id| {
            *counts.entry(id).or_default() += 1;
            counts
        });
    assert_eq!(tagged.len(), 8, "eight lines, eight request ids: {records}");
}

#[tokio::test]
async fn a_crash_fails_only_the_invocations_in_its_process() {
    let app = app(
        "  meet:\n    handler: meet.handler\n    concurrency: 2\n    events:\n      - httpApi: GET /meet\n",
    );
    let server = TestServer::start(app.path(), &[]);
    let addr = server.addr;
    // Four invocations need two processes of two slots; one invocation crashes its
    // process while its neighbour is still in flight.
    let paths = [
        "/meet?wait=2&crash=1",
        "/meet?wait=2&hold=1500",
        "/meet?wait=2&hold=1500",
        "/meet?wait=2&hold=1500",
    ];
    let responses = join_all(
        paths
            .iter()
            .map(|path| request(addr, "GET", path, &[], Vec::new())),
    )
    .await;
    let ok: Vec<_> = responses.iter().filter(|r| r.status == 200).collect();
    let failed: Vec<_> = responses.iter().filter(|r| r.status == 502).collect();
    assert_eq!(
        (ok.len(), failed.len()),
        (2, 2),
        "the crashed process's two invocations failed, the other process's two did not: {responses:?}\n{}",
        server.logs()
    );
    assert_eq!(
        ok[0].json()["pid"],
        ok[1].json()["pid"],
        "the survivors shared a process"
    );
    let records = app
        .nimbus_until(&["invocations", "meet", "--json"], |out| {
            out.lines().count() >= 4
        })
        .await;
    let errors: Vec<serde_json::Value> = records
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["outcome"] != "ok")
        .collect();
    assert_eq!(errors.len(), 2, "{records}");
    for error in &errors {
        assert_eq!(error["errorType"], "Runtime.ExitError", "{error}");
        let message = error["errorMessage"].as_str().unwrap_or_default();
        assert!(
            message.contains("boom in one invocation")
                && message.contains("up to 2 invocations at once"),
            "the documented message names the error and the concurrency: {message}"
        );
    }
    // The function serves on.
    let after = server.get("/meet").await;
    assert_eq!(after.status, 200, "{}", after.text());
}

const HELLO_JS: &str = r#"
exports.handler = async (event, context) => ({
  pid: process.pid,
  greeting: process.env.GREETING,
  name: context.functionName,
  initType: process.env.AWS_LAMBDA_INITIALIZATION_TYPE,
  prestart: process.env.NIMBUS_PRESTART || null,
  cwd: process.cwd(),
});
"#;

const HELLO_PY: &str = r#"
import os

def handler(event, context):
    return {
        "pid": os.getpid(),
        "greeting": os.environ.get("GREETING"),
        "name": context.function_name,
        "prestart": os.environ.get("NIMBUS_PRESTART"),
        "cwd": os.getcwd(),
    }
"#;

/// The pids of the server's descendants whose environment holds `NIMBUS_PRESTART`:
/// the pre-started runtimes waiting for a function.
fn spares_of(server_pid: u32) -> Vec<u32> {
    let mut parents: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            parents.entry(ppid).or_default().push(pid);
        }
    }
    let mut found = Vec::new();
    let mut pending = vec![server_pid];
    while let Some(pid) = pending.pop() {
        for &child in parents.get(&pid).into_iter().flatten() {
            let environ = std::fs::read(format!("/proc/{child}/environ")).unwrap_or_default();
            if environ
                .split(|b| *b == 0)
                .any(|var| var == b"NIMBUS_PRESTART=1")
            {
                found.push(child);
            }
            pending.push(child);
        }
    }
    found
}

#[tokio::test]
async fn a_first_request_is_answered_by_a_pre_started_runtime() {
    let manifest = "service: prestart\nprovider:\n  runtime: nodejs20.x\n  memorySize: 256\n  environment:\n    GREETING: hi\nfunctions:\n  hello:\n    handler: hello.handler\n  hello-py:\n    handler: hello_py.handler\n    runtime: python3.12\n";
    let app = TestApp::new(&[
        ("nimbus.yaml", manifest),
        ("hello.js", HELLO_JS),
        ("hello_py.py", HELLO_PY),
    ]);
    let server = TestServer::start(app.path(), &[]);
    // One pre-started runtime per shape (here: a Node.js and a Python one) loads while
    // the app starts; wait until both wait for a function.
    let mut spares = Vec::new();
    for _ in 0..200 {
        spares = spares_of(server.pid());
        if spares.len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        spares.len() >= 2,
        "pre-started runtimes: {spares:?}\n{}",
        server.logs()
    );
    for (function, expected_name) in [
        ("hello", "prestart-dev-hello"),
        ("hello-py", "prestart-dev-hello-py"),
    ] {
        let res = server
            .admin_json(
                app.path(),
                "POST",
                &format!("/2015-03-31/functions/{function}/invocations"),
                "{}",
            )
            .await;
        assert_eq!(res.status, 200, "{function}: {}", res.text());
        assert_eq!(
            res.header("x-nimbus-cold-start"),
            Some("true"),
            "{function}"
        );
        assert_eq!(
            res.header("x-nimbus-prestarted"),
            Some("true"),
            "{function}'s first request was served by a pre-started runtime\n{}",
            server.logs()
        );
        let body = res.json();
        // The process took on the function's environment, none of its own.
        assert_eq!(body["greeting"], "hi", "{function}: {body}");
        assert_eq!(body["name"], expected_name, "{function}: {body}");
        assert_eq!(
            body["prestart"],
            serde_json::Value::Null,
            "{function}: {body}"
        );
        assert_eq!(
            std::path::Path::new(body["cwd"].as_str().unwrap_or_default()),
            app.path()
                .canonicalize()
                .unwrap_or_else(|_| app.path().to_owned()),
            "{function}: {body}"
        );
        let pid = body["pid"].as_u64().and_then(|p| u32::try_from(p).ok());
        assert!(
            pid.is_some_and(|pid| spares.contains(&pid)),
            "{function} ran in one of the pre-started processes {spares:?}: {body}"
        );
        let again = server
            .admin_json(
                app.path(),
                "POST",
                &format!("/2015-03-31/functions/{function}/invocations"),
                "{}",
            )
            .await;
        assert_eq!(
            again.header("x-nimbus-cold-start"),
            Some("false"),
            "{function}"
        );
        assert_eq!(
            again.header("x-nimbus-prestarted"),
            Some("false"),
            "{function}"
        );
        // The invocation records keep it too (issue 18, part 4): oldest last.
        let listed = app
            .nimbus_until(&["invocations", function, "--json"], |out| {
                out.lines().count() == 2
            })
            .await;
        let records: Vec<serde_json::Value> = listed
            .lines()
            .map(|line| serde_json::from_str(line).expect("json"))
            .collect();
        assert_eq!(
            (
                records[1]["coldStart"].clone(),
                records[1]["prestarted"].clone()
            ),
            (serde_json::json!(true), serde_json::json!(true)),
            "{function}: {listed}"
        );
        assert_eq!(records[0]["prestarted"], false, "{function}: {listed}");
    }
}

/// A handler that says which process answered and how many invocations it ran; with
/// `OUT` set it also appends that as a line to the file (for schedule fires).
const WHO_JS: &str = r#"
const fs = require('fs');
let n = 0;
exports.handler = async () => {
  n += 1;
  const seen = { pid: process.pid, n, initType: process.env.AWS_LAMBDA_INITIALIZATION_TYPE };
  if (process.env.OUT) fs.appendFileSync(process.env.OUT, JSON.stringify(seen) + '\n');
  return seen;
};
"#;

/// Invokes `function` through the Invoke API: (cold start header, answer).
async fn invoke_who(
    server: &TestServer,
    app: &TestApp,
    function: &str,
) -> (Option<String>, serde_json::Value) {
    let res = server
        .admin_json(
            app.path(),
            "POST",
            &format!("/2015-03-31/functions/{function}/invocations"),
            "{}",
        )
        .await;
    assert_eq!(res.status, 200, "{function}: {}", res.text());
    (
        res.header("x-nimbus-cold-start").map(str::to_owned),
        res.json(),
    )
}

/// Why `function`'s instances are warm, from the control API (`nimbus top`'s source).
async fn warm_reasons(server: &TestServer, app: &TestApp, function: &str) -> serde_json::Value {
    let res = server.admin(app.path(), "GET", "/functions", None).await;
    assert_eq!(res.status, 200, "{}", res.text());
    let functions = res.json()["functions"].clone();
    functions
        .as_array()
        .and_then(|list| list.iter().find(|f| f["name"] == function))
        .map(|f| f["warm"].clone())
        .unwrap_or_default()
}

/// Waits (up to 10 s) until `function` has one instance warm for `reason`, then checks
/// that `nimbus top` says so too.
async fn assert_warmed_for(server: &TestServer, app: &TestApp, function: &str, reason: &str) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut warm = warm_reasons(server, app, function).await;
    while warm[reason] != 1 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        warm = warm_reasons(server, app, function).await;
    }
    assert_eq!(warm[reason], 1, "{warm}\n{}", server.logs());
    let top = app.nimbus(&["top", "--once"]);
    assert!(
        top.stdout.contains(&format!("1 {reason}")),
        "{}",
        top.stdout
    );
}

/// The hybrid histogram policy, in compressed time (100 ms bins): a function invoked
/// every 2 s learns its idle time, after which each instance stops right after its
/// invocation and a new one is pre-warmed before the next, which then finds it warm.
#[tokio::test]
async fn a_function_invoked_on_a_rhythm_is_pre_warmed_before_each_invocation() {
    let app = TestApp::new(&[
        (
            "nimbus.yaml",
            "service: rhythm\nprovider:\n  runtime: nodejs20.x\nfunctions:\n  beat:\n    handler: who.handler\n",
        ),
        ("who.js", WHO_JS),
    ]);
    let server = TestServer::start(
        app.path(),
        &[
            "--prewarm-bin",
            "100ms",
            "--prewarm-min-samples",
            "8",
            "--idle-timeout",
            "60s",
        ],
    );
    let period = std::time::Duration::from_secs(2);
    // Eight idle times teach the histogram (until then: the fixed keep-alive, one warm
    // instance answering them all).
    for _ in 0..9 {
        invoke_who(&server, &app, "beat").await;
        tokio::time::sleep(period).await;
    }
    let mut last_pid = None;
    for round in 0..4 {
        let (cold, seen) = invoke_who(&server, &app, "beat").await;
        let ended = tokio::time::Instant::now();
        if round > 0 {
            assert_eq!(
                cold.as_deref(),
                Some("false"),
                "round {round}: the pre-warmed instance answered without a cold start: {seen}\n{}",
                server.logs()
            );
            assert_eq!(
                seen["n"], 1,
                "round {round}: a new instance, started ahead of the invocation: {seen}"
            );
            assert_ne!(Some(&seen["pid"]), last_pid.as_ref());
        }
        last_pid = Some(seen["pid"].clone());
        if round == 2 {
            // Between invocations the instance is stopped, then one is pre-warmed (by
            // about 1.7 s): the control API and `nimbus top` say why it is warm.
            tokio::time::sleep_until(ended + std::time::Duration::from_millis(1700)).await;
            let mut warm = warm_reasons(&server, &app, "beat").await;
            while warm["pre-warmed-histogram"] != 1
                && tokio::time::Instant::now() < ended + std::time::Duration::from_millis(2100)
            {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                warm = warm_reasons(&server, &app, "beat").await;
            }
            assert_eq!(warm["pre-warmed-histogram"], 1, "{warm}\n{}", server.logs());
            let top = app.nimbus(&["top", "--once"]);
            let stdout = top.stdout.clone();
            assert!(stdout.contains("1 pre-warmed-histogram"), "{stdout}");
        }
        tokio::time::sleep_until(ended + period).await;
    }
}

/// A function on a schedule is pre-warmed just before each fire: the fire's invocation
/// is no cold start. The schedule (rate(1 minute)) last fired 55 s ago, so it fires about
/// 5 s after start-up.
#[tokio::test]
async fn a_scheduled_function_is_warm_when_its_schedule_fires() {
    let out_dir = tempfile::tempdir().expect("tempdir");
    let out = out_dir.path().join("ticks.jsonl");
    let manifest = format!(
        "service: ticking\nprovider:\n  runtime: nodejs20.x\n  environment: {{ OUT: \"{}\" }}\nfunctions:\n  tick:\n    handler: who.handler\n    events:\n      - schedule:\n          rate: rate(1 minute)\n          name: tick-every-minute\n",
        out.display()
    );
    let app = TestApp::new(&[("nimbus.yaml", &manifest), ("who.js", WHO_JS)]);
    {
        let store = nimbus_store::Store::open(&app.path().join(".nimbus")).expect("store");
        let fired = std::time::SystemTime::now() - std::time::Duration::from_secs(55);
        store
            .fire_schedule("tick-every-minute", fired, fired, Vec::new())
            .expect("seed schedule state");
    }
    // Unsandboxed: the handler writes outside the app folder.
    let server = TestServer::start_with_env(
        app.path(),
        &["--idle-timeout", "200ms"],
        &[("NIMBUS_SANDBOX", "off")],
    );
    // Before the fire: one instance is warm for the schedule, none ran yet.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let warm = warm_reasons(&server, &app, "tick").await;
        if warm["pre-warmed-schedule"] == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline && !out.exists(),
            "no instance was pre-warmed before the fire: {warm}\n{}",
            server.logs()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let top = app.nimbus(&["top", "--once"]);
    let stdout = top.stdout.clone();
    assert!(stdout.contains("1 pre-warmed-schedule"), "{stdout}");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while !out.exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the schedule never fired\n{}",
            server.logs()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let seen: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&out)
            .expect("read")
            .lines()
            .next()
            .unwrap_or_default(),
    )
    .expect("json");
    assert_eq!(
        seen["n"], 1,
        "the fire ran on the pre-warmed instance: {seen}"
    );
    // The invocation record says the fire was no cold start.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let listed = app.nimbus(&["invocations", "tick", "--json"]);
        let text = listed.stdout.clone();
        if let Some(line) = text.lines().next() {
            let record: serde_json::Value = serde_json::from_str(line).expect("json");
            assert_eq!(record["coldStart"], false, "{record}\n{}", server.logs());
            assert_eq!(
                record["initDurationMs"],
                serde_json::Value::Null,
                "{record}"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no invocation record"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A pre-warm budget smaller than a function is a warning at start-up, not an error:
/// the function is served as under the fixed keep-alive.
#[tokio::test]
async fn a_prewarm_budget_too_small_is_a_warning_and_nimbus_still_serves() {
    let app = TestApp::new(&[
        (
            "nimbus.yaml",
            "service: tight\nprovider:\n  runtime: nodejs20.x\n  memorySize: 256\nfunctions:\n  tick:\n    handler: who.handler\n    events:\n      - schedule: rate(1 hour)\n",
        ),
        ("who.js", WHO_JS),
    ]);
    let server = TestServer::start(app.path(), &["--prewarm-budget", "64MB"]);
    let (cold, seen) = invoke_who(&server, &app, "tick").await;
    assert_eq!(cold.as_deref(), Some("true"), "{seen}");
    assert_eq!(seen["n"], 1);
    let logs = server.logs();
    assert!(
        logs.contains("--prewarm-budget 64 MB is smaller than function tick's memorySize 256 MB")
            && logs.contains("not even before its schedule")
            && logs.contains("raise --prewarm-budget to at least 256 MB"),
        "{logs}"
    );
}

/// A handler that takes `SLOW_MS` (from its environment) to answer, then says which
/// process answered and how many invocations that process has served.
const STEP_JS: &str = r#"
let n = 0;
exports.handler = async (event) => {
  n += 1;
  await new Promise((resolve) => setTimeout(resolve, Number(process.env.SLOW_MS || 0)));
  return { ...event, [process.env.STEP]: { pid: process.pid, n } };
};
"#;

/// Workflow-aware pre-warming (issue 18): while a workflow's first Task runs, the function
/// of the Task after it is started, so the second step finds it warm — `nimbus top` says
/// why it is warm, and its invocation is no cold start.
#[tokio::test]
async fn the_next_task_of_a_running_workflow_is_pre_warmed() {
    let manifest = r#"
service: pipeline
plugins: [serverless-step-functions]
provider:
  runtime: nodejs20.x
  memorySize: 256
functions:
  extract:
    handler: step.handler
    environment: { STEP: extract, SLOW_MS: "2500" }
  load:
    handler: step.handler
    environment: { STEP: load }
stepFunctions:
  stateMachines:
    etl:
      definition:
        StartAt: Extract
        States:
          Extract:
            Type: Task
            Resource: { Fn::GetAtt: [extract, Arn] }
            Next: Tidy
          Tidy:
            Type: Pass
            Next: Load
          Load:
            Type: Task
            Resource: arn:aws:states:::lambda:invoke
            Parameters:
              FunctionName: { Ref: LoadLambdaFunction }
              Payload.$: $
            OutputPath: $.Payload
            End: true
"#;
    let app = TestApp::new(&[("nimbus.yaml", manifest), ("step.js", STEP_JS)]);
    let server = TestServer::start(app.path(), &[]);
    let started = app.nimbus(&["workflow", "start", "etl", "--name", "run-1"]);
    assert_eq!(
        started.code,
        Some(0),
        "{}{}",
        started.stdout,
        started.stderr
    );
    // While Extract runs (2.5 s), Load gets an instance warm for the workflow.
    assert_warmed_for(&server, &app, "load", "pre-warmed-workflow").await;
    // Load's invocation, after Extract's, took the warm instance: no cold start.
    let listed = app
        .nimbus_until(&["invocations", "load", "--json"], |out| !out.is_empty())
        .await;
    let record: serde_json::Value =
        serde_json::from_str(listed.lines().next().unwrap_or_default()).expect("json");
    assert_eq!(record["coldStart"], false, "{record}\n{}", server.logs());
    let extract = app.nimbus(&["invocations", "extract", "--json"]);
    let record: serde_json::Value =
        serde_json::from_str(extract.stdout.lines().next().unwrap_or_default()).expect("json");
    assert_eq!(
        record["coldStart"], true,
        "nothing warmed the first step: {record}"
    );
}

/// Backlog-aware pre-warming (issue 18): a batch of queue messages waiting for its
/// `maximumBatchingWindow` to fill has an instance of its function started meanwhile, so
/// the batch's invocation is no cold start; `nimbus top` says why the instance is warm.
#[tokio::test]
async fn a_batch_waiting_for_its_window_finds_its_function_warm() {
    let manifest = "service: drain\nprovider:\n  runtime: nodejs20.x\n  memorySize: 256\nqueues:\n  jobs: {}\nfunctions:\n  worker:\n    handler: step.handler\n    environment: { STEP: worker }\n    events:\n      - sqs: { arn: jobs, batchSize: 10, maximumBatchingWindow: 3 }\n";
    let app = TestApp::new(&[("nimbus.yaml", manifest), ("step.js", STEP_JS)]);
    let server = TestServer::start(app.path(), &[]);
    let sent = app.nimbus(&["queue", "send", "jobs", "one job"]);
    assert_eq!(sent.code, Some(0), "{}{}", sent.stdout, sent.stderr);
    assert_warmed_for(&server, &app, "worker", "pre-warmed-backlog").await;
    let listed = app
        .nimbus_until(&["invocations", "worker", "--json"], |out| !out.is_empty())
        .await;
    let record: serde_json::Value =
        serde_json::from_str(listed.lines().next().unwrap_or_default()).expect("json");
    assert_eq!(record["coldStart"], false, "{record}\n{}", server.logs());
}
