//! Reloads through the real server with fake executors: requests under way finish on
//! the replaced app, new ones reach the new app, and executors stop once unused.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use nimbus_core::{
    BoxFuture, Executor, Invocation, InvocationReport, InvokeError, Outcome, manifest,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::Notify;

use crate::{App, EventsConfig, ServedFunction, Server, ServerConfig, Shutdown, Telemetry};

/// Answers `answer`; an event that mentions `slow` waits for `release` first.
pub(crate) struct FakeExecutor {
    answer: &'static str,
    pub(crate) release: Notify,
    pub(crate) n_in_flight: AtomicUsize,
    pub(crate) stopped: AtomicBool,
}

impl FakeExecutor {
    pub(crate) fn new(answer: &'static str) -> Arc<FakeExecutor> {
        Arc::new(FakeExecutor {
            answer,
            release: Notify::new(),
            n_in_flight: AtomicUsize::new(0),
            stopped: AtomicBool::new(false),
        })
    }
}

impl Executor for FakeExecutor {
    fn invoke(
        &self,
        invocation: Invocation,
    ) -> BoxFuture<'_, Result<InvocationReport, InvokeError>> {
        Box::pin(async move {
            if self.stopped.load(Ordering::Acquire) {
                return Err(InvokeError::ShuttingDown {
                    function: self.answer.to_owned(),
                });
            }
            self.n_in_flight.fetch_add(1, Ordering::AcqRel);
            if String::from_utf8_lossy(&invocation.payload).contains("slow") {
                self.release.notified().await;
            }
            self.n_in_flight.fetch_sub(1, Ordering::AcqRel);
            let body = serde_json::json!({ "statusCode": 200, "body": self.answer });
            Ok(InvocationReport {
                outcome: Outcome::Ok(body.to_string().into_bytes()),
                cold_start: false,
                prestarted: false,
                init_duration: None,
                duration: Duration::ZERO,
                max_memory_mb: 0,
            })
        })
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        self.stopped.store(true, Ordering::Release);
        Box::pin(async {})
    }
}

const FUNCTIONS: [(&str, &str); 2] = [
    (
        "x",
        "  x:\n    handler: x.handler\n    events:\n      - httpApi: GET /x\n",
    ),
    (
        "y",
        "  y:\n    handler: y.handler\n    events:\n      - httpApi: GET /y\n",
    ),
];

/// An app of the named functions, each with its executor.
pub(crate) fn app(
    store: &nimbus_store::Store,
    telemetry: &Arc<Telemetry>,
    functions: &[(&str, Arc<FakeExecutor>)],
) -> App {
    let mut yaml = "service: reload\nprovider:\n  runtime: nodejs20.x\nfunctions:\n".to_owned();
    for (name, _) in functions {
        let (_, text) = FUNCTIONS
            .iter()
            .find(|(n, _)| n == name)
            .expect("a known function");
        yaml.push_str(text);
    }
    let vars = manifest::Variables {
        env: BTreeMap::new(),
        options: BTreeMap::new(),
        secrets: None,
        ..manifest::Variables::default()
    };
    let manifest = manifest::parse(&yaml, "nimbus.yaml", &vars).expect("a valid manifest");
    App {
        functions: manifest
            .functions
            .iter()
            .zip(functions)
            .map(|(spec, (_, executor))| ServedFunction {
                spec: spec.clone(),
                executor: executor.clone(),
                token: format!("token-{}", spec.name),
                redactor: None,
            })
            .collect(),
        telemetry: telemetry.clone(),
        events: EventsConfig {
            store: store.clone(),
            queues: crate::Queues::Embedded,
            kv: None,
            resources: manifest.resources.clone(),
            region: "us-east-1".to_owned(),
            async_retry_delay: Duration::from_secs(1),
        },
        policies: manifest.policies.clone(),
    }
}

/// `GET path`, answered with status line and body.
pub(crate) async fn get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connecting");
    let req = format!("GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.expect("sending");
    let mut text = String::new();
    stream.read_to_string(&mut text).await.expect("reading");
    let status = text.lines().next().unwrap_or_default().to_owned();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

pub(crate) async fn until(what: &str, check: impl Fn() -> bool) {
    for _ in 0..500 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never happened: {what}");
}

#[tokio::test]
async fn reload_lets_invocations_under_way_finish_and_stops_executors_once_unused() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let store = nimbus_store::Store::open(dir.path()).expect("opening the store");
    let telemetry = Arc::new(Telemetry::new(crate::TelemetryConfig {
        store: None,
        otlp_endpoint: None,
        echo_function_output: false,
    }));
    let server = Server::bind(ServerConfig {
        gateway_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        stage: "dev".to_owned(),
        queue_wait: Duration::from_millis(100),
        max_queued: 10,
        max_concurrency: 1000,
        admin_token: "admin".to_owned(),
        drain_timeout: Duration::from_secs(5),
        aws_keys: crate::AwsKeys::FunctionsOnly,
        listener: crate::ListenerConfig::internal(),
    })
    .await
    .expect("binding");
    let addr = server.gateway_addr().expect("an address");
    let reloader = server.reloader();
    let (x1, x2, y) = (
        FakeExecutor::new("x1"),
        FakeExecutor::new("x2"),
        FakeExecutor::new("y"),
    );
    let first = app(&store, &telemetry, &[("x", x1.clone()), ("y", y.clone())]);
    let (trigger, shutdown) = Shutdown::new();
    let running = tokio::spawn(server.run(first, shutdown));

    let slow = tokio::spawn(get(addr, "/x?slow=1"));
    until("the slow request is under way", || {
        x1.n_in_flight.load(Ordering::Acquire) == 1
    })
    .await;
    // `x` gets a new executor; `y` hands its running one over.
    let second = app(&store, &telemetry, &[("x", x2.clone()), ("y", y.clone())]);
    reloader.reload(second).await.expect("the reload");
    assert_eq!(get(addr, "/x").await.1, "x2");
    assert_eq!(get(addr, "/y").await.1, "y");
    assert!(
        !x1.stopped.load(Ordering::Acquire),
        "the replaced executor still serves the request under way"
    );
    x1.release.notify_one();
    let (status, body) = slow.await.expect("the slow request");
    assert_eq!((status.as_str(), body.as_str()), ("HTTP/1.1 200 OK", "x1"));
    until("the drained executor stops", || {
        x1.stopped.load(Ordering::Acquire)
    })
    .await;
    assert!(
        !y.stopped.load(Ordering::Acquire),
        "an executor handed over keeps running"
    );

    // Without `y`, its executor stops once the replaced app drained; its route is gone.
    let third = app(&store, &telemetry, &[("x", x2.clone())]);
    reloader.reload(third).await.expect("the reload");
    until("the removed function's executor stops", || {
        y.stopped.load(Ordering::Acquire)
    })
    .await;
    assert_eq!(get(addr, "/y").await.0, "HTTP/1.1 404 Not Found");
    assert!(!x2.stopped.load(Ordering::Acquire));

    trigger.trigger();
    running
        .await
        .expect("the server task")
        .expect("the server stops cleanly");
    assert!(
        x2.stopped.load(Ordering::Acquire),
        "shutdown stops the rest"
    );
    let after = app(&store, &telemetry, &[("x", FakeExecutor::new("late"))]);
    assert!(
        reloader.reload(after).await.is_err(),
        "a stopped server takes no reload"
    );
}
