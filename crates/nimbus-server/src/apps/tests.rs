//! Many versions behind one gateway, with fake executors: aliases and weights route,
//! functions' own calls find their version by token, and a stopped version finishes what
//! is in flight before its executors stop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::*;
use crate::generation::tests::{FakeExecutor, app, get, until};
use crate::{Telemetry, TelemetryConfig};

struct Fixture {
    apps: Arc<Apps>,
    gateway: SocketAddr,
    control: SocketAddr,
    store: nimbus_store::Store,
    telemetry: Arc<Telemetry>,
    _dir: tempfile::TempDir,
}

async fn fixture() -> (Fixture, crate::ShutdownTrigger) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let store = nimbus_store::Store::open(dir.path()).expect("opening the store");
    let telemetry = Arc::new(Telemetry::new(TelemetryConfig {
        store: None,
        otlp_endpoint: None,
        echo_function_output: false,
    }));
    let server = AppsServer::bind(AppsConfig {
        gateway_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        control_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        listener: crate::ListenerConfig::internal(),
        drain_timeout: Duration::from_secs(1),
    })
    .await
    .expect("binding");
    let (trigger, shutdown) = crate::Shutdown::new();
    let fixture = Fixture {
        apps: server.apps(),
        gateway: server.gateway_addr().expect("an address"),
        control: server.control_addr().expect("an address"),
        store,
        telemetry,
        _dir: dir,
    };
    tokio::spawn(server.run(shutdown));
    (fixture, trigger)
}

impl Fixture {
    /// Starts version `number` of (svc, dev) whose `x` answers through `executor`; its
    /// function's token is `v{number}`.
    async fn start(&self, number: u64, executor: Arc<FakeExecutor>) -> Version {
        let mut app = app(&self.store, &self.telemetry, &[("x", executor)]);
        app.functions[0].token = format!("v{number}");
        // It may invoke itself: the control API's Invoke shows which version answers.
        app.functions[0].spec.grants = vec![nimbus_core::events::Grant {
            actions: vec!["lambda:InvokeFunction".to_owned()],
            resources: vec!["*".to_owned()],
        }];
        let cfg = VersionConfig {
            number,
            stage: "dev".to_owned(),
            queue_wait: Duration::from_millis(100),
            max_queued: 10,
            max_concurrency: 100,
        };
        self.apps
            .start(self.apps.slot(), cfg, app)
            .await
            .expect("the version starts")
    }

    fn publish(&self, alias: &str, targets: &[(&Version, u32)]) {
        self.apps.publish(vec![AliasTargets {
            service: "svc".to_owned(),
            stage: "dev".to_owned(),
            alias: alias.to_owned(),
            targets: targets.iter().map(|(v, w)| (v.target(), *w)).collect(),
        }]);
    }
}

/// `POST /2015-03-31/functions/x/invocations` on the control API with `token`: status line
/// and body.
async fn invoke(control: SocketAddr, token: &str) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(control)
        .await
        .expect("connecting");
    let req = format!(
        "POST /2015-03-31/functions/x/invocations HTTP/1.1\r\nhost: test\r\nauthorization: Bearer {token}\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}"
    );
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

#[tokio::test]
async fn aliases_route_by_prefix_and_weight_and_tokens_find_their_version() {
    let (fx, _stop) = fixture().await;
    let (x1, x2) = (FakeExecutor::new("x1"), FakeExecutor::new("x2"));
    let v1 = fx.start(1, x1).await;
    let v2 = fx.start(2, x2).await;
    assert_eq!(
        get(fx.gateway, "/svc/dev/x").await.0,
        "HTTP/1.1 404 Not Found"
    );
    fx.publish(LIVE, &[(&v1, 100)]);
    assert_eq!(get(fx.gateway, "/svc/dev/x").await.1, "x1");
    assert_eq!(get(fx.gateway, "/svc/dev/x?a=b").await.1, "x1");
    assert_eq!(get(fx.gateway, "/svc/dev@live/x").await.1, "x1");
    assert_eq!(
        get(fx.gateway, "/svc/dev/nope").await.0,
        "HTTP/1.1 404 Not Found"
    );
    assert_eq!(
        get(fx.gateway, "/svc/prod/x").await.0,
        "HTTP/1.1 404 Not Found"
    );
    assert_eq!(
        get(fx.gateway, "/svc/dev@beta/x").await.0,
        "HTTP/1.1 404 Not Found"
    );
    assert_eq!(get(fx.gateway, "/svc").await.0, "HTTP/1.1 404 Not Found");

    fx.apps.publish(vec![
        AliasTargets {
            service: "svc".to_owned(),
            stage: "dev".to_owned(),
            alias: LIVE.to_owned(),
            targets: vec![(v1.target(), 50), (v2.target(), 50)],
        },
        AliasTargets {
            service: "svc".to_owned(),
            stage: "dev".to_owned(),
            alias: "beta".to_owned(),
            targets: vec![(v2.target(), 100)],
        },
    ]);
    let mut n_x2 = 0;
    for _ in 0..200 {
        if get(fx.gateway, "/svc/dev/x").await.1 == "x2" {
            n_x2 += 1;
        }
    }
    assert!((60..=140).contains(&n_x2), "{n_x2} of 200 went to x2");
    assert_eq!(get(fx.gateway, "/svc/dev@beta/x").await.1, "x2");

    // The control API serves each call with the caller's own version, whatever is live.
    let (status, body) = invoke(fx.control, "v1").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(body.contains("x1"), "{body}");
    assert!(invoke(fx.control, "v2").await.1.contains("x2"));
    assert_eq!(
        invoke(fx.control, "nope").await.0,
        "HTTP/1.1 401 Unauthorized"
    );
}

#[tokio::test]
async fn a_stopped_version_finishes_what_is_in_flight_then_stops_its_executors() {
    let (fx, _stop) = fixture().await;
    let (x1, x2) = (FakeExecutor::new("x1"), FakeExecutor::new("x2"));
    let v1 = fx.start(1, x1.clone()).await;
    let v2 = fx.start(2, x2.clone()).await;
    fx.publish(LIVE, &[(&v1, 100)]);
    let slow = tokio::spawn(get(fx.gateway, "/svc/dev/x?slow=1"));
    until("the slow request is under way", || {
        x1.n_in_flight.load(Ordering::Acquire) == 1
    })
    .await;
    fx.publish(LIVE, &[(&v2, 100)]);
    let stopping = tokio::spawn(v1.stop());
    assert_eq!(get(fx.gateway, "/svc/dev/x").await.1, "x2");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !x1.stopped.load(Ordering::Acquire),
        "the stopped version still serves the request under way"
    );
    // Its function's own calls still reach it while the request is under way.
    assert!(invoke(fx.control, "v1").await.1.contains("x1"));
    x1.release.notify_one();
    let (status, body) = slow.await.expect("the slow request");
    assert_eq!((status.as_str(), body.as_str()), ("HTTP/1.1 200 OK", "x1"));
    stopping.await.expect("the version stops");
    assert!(x1.stopped.load(Ordering::Acquire));
    assert!(!x2.stopped.load(Ordering::Acquire));
    assert_eq!(
        invoke(fx.control, "v1").await.0,
        "HTTP/1.1 401 Unauthorized",
        "a stopped version's token is gone"
    );
}

#[test]
fn routes_split_into_service_stage_alias_and_rest() {
    assert_eq!(
        split_route("/shop/prod/a/b"),
        Some(("shop", "prod", None, "/a/b"))
    );
    assert_eq!(split_route("/shop/prod"), Some(("shop", "prod", None, "/")));
    assert_eq!(
        split_route("/shop/prod@staging/x"),
        Some(("shop", "prod", Some("staging"), "/x"))
    );
    assert_eq!(split_route("/shop"), None);
    assert_eq!(split_route("/shop//x"), None);
}
