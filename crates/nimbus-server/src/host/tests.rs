//! The admin API over a real apps table with a fake loader: tokens, deploys, refusals,
//! canaries, promote and rollback, aliases, and a restart that restores what was live.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;

use super::*;
use crate::apps::AppsConfig;
use crate::generation::tests::{FakeExecutor, app, get};

/// A bundle is its answer as text: `bad` is refused with a diagnostic, `crash` fails to
/// start, anything else answers `GET /x` with itself.
struct FakeLoader;

impl VersionLoader for FakeLoader {
    fn unpack(&self, bundle: &[u8], dir: &Path) -> anyhow::Result<()> {
        anyhow::ensure!(!bundle.is_empty(), "the bundle is empty");
        std::fs::write(dir.join("answer"), bundle)?;
        Ok(())
    }

    fn check(&self, dir: &Path, target: &LoadTarget) -> Result<AppName, Refusal> {
        let answer = std::fs::read_to_string(dir.join("answer")).unwrap_or_default();
        if answer == "bad" {
            return Err(Refusal {
                message: "the manifest has 1 error".to_owned(),
                diagnostics: vec!["nimbus.yaml:1: functions: expected a map".to_owned()],
            });
        }
        let service = if answer == "other" { "other" } else { "svc" };
        Ok(AppName {
            service: service.to_owned(),
            stage: target.stage.clone(),
        })
    }

    fn launch(&self, req: LaunchRequest) -> BoxFuture<'static, anyhow::Result<App>> {
        Box::pin(async move {
            let answer = std::fs::read_to_string(req.dir.join("answer"))?;
            let answer: &'static str = match answer.as_str() {
                "v1" => "v1",
                "v2" => "v2",
                "v3" => "v3",
                other => anyhow::bail!("cannot start {other}"),
            };
            Ok(app(
                &req.store,
                &req.telemetry,
                &[("x", FakeExecutor::new(answer))],
            ))
        })
    }
}

struct Fixture {
    host: Arc<Host>,
    router: Router,
    gateway: SocketAddr,
    token: String,
    _stop: crate::ShutdownTrigger,
}

async fn fixture(state: &Path) -> Fixture {
    let server = AppsServer::bind(AppsConfig {
        gateway_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        control_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        listener: crate::ListenerConfig::internal(),
        drain_timeout: Duration::from_secs(1),
    })
    .await
    .expect("binding");
    let (trigger, shutdown) = crate::Shutdown::new();
    let cfg = HostConfig {
        state: state.to_owned(),
        retention_size: 1 << 30,
        max_concurrency: 10,
    };
    let host = Host::new(cfg, &server, Arc::new(FakeLoader), shutdown.clone()).expect("a host");
    let gateway = server.gateway_addr().expect("an address");
    tokio::spawn(server.run(shutdown));
    host.restore().await;
    let token = match tokens::read(state).expect("tokens").first() {
        Some(_) => std::fs::read_to_string(state.join("token.txt")).expect("the test's token"),
        None => {
            let token = tokens::create(state).expect("a token");
            std::fs::write(state.join("token.txt"), &token).expect("keeping the token");
            token
        }
    };
    Fixture {
        router: host.router(),
        host,
        gateway,
        token,
        _stop: trigger,
    }
}

impl Fixture {
    /// One admin call: status and body.
    async fn call(
        &self,
        method: &str,
        uri: &str,
        token: Option<&str>,
        body: &str,
    ) -> (u16, String) {
        let mut req = http::Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let req = req.body(Body::from(body.to_owned())).expect("a request");
        let res = match tower_service::Service::call(&mut self.router.clone(), req).await {
            Ok(res) => res,
            Err(infallible) => match infallible {},
        };
        let status = res.status().as_u16();
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .expect("a body");
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    async fn admin(&self, method: &str, uri: &str, body: &str) -> (u16, String) {
        self.call(method, uri, Some(&self.token.clone()), body)
            .await
    }

    async fn live(&self) -> Vec<(u64, u32)> {
        let (status, text) = self.admin("GET", "/v1/apps/svc/dev/versions", "").await;
        assert_eq!(status, 200, "{text}");
        let view: StageView = serde_json::from_str(&text).expect("a stage");
        view.aliases["live"]
            .iter()
            .map(|t| (t.version, t.weight))
            .collect()
    }
}

#[tokio::test]
async fn calls_need_a_token_and_unknown_calls_are_named() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let fx = fixture(dir.path()).await;
    for token in [None, Some("nmb_nope_nope")] {
        let (status, text) = fx.call("GET", "/v1/apps", token, "").await;
        assert_eq!(
            (status, text.as_str()),
            (401, r#"{"message":"Unauthorized"}"#)
        );
        let (status, _) = fx.call("DELETE", "/v1/nope", token, "").await;
        assert_eq!(status, 401);
    }
    assert_eq!(
        fx.admin("DELETE", "/v1/nope", "").await,
        (
            404,
            r#"{"message":"no admin call DELETE /v1/nope"}"#.to_owned()
        )
    );
    assert_eq!(
        fx.admin("DELETE", "/v1/apps", "").await,
        (
            404,
            r#"{"message":"no admin call DELETE /v1/apps"}"#.to_owned()
        )
    );
    assert_eq!(
        fx.admin("GET", "/v1/apps", "").await,
        (200, r#"{"apps":[]}"#.to_owned())
    );
    let (status, text) = fx.admin("GET", "/v1/apps/svc/dev/versions", "").await;
    assert_eq!(
        (status, text.as_str()),
        (404, r#"{"message":"nothing is deployed as svc (dev)"}"#)
    );
}

#[tokio::test]
async fn deploys_canaries_promote_rollback_and_aliases_move_the_routes() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let fx = fixture(dir.path()).await;
    let deploy = "/v1/deployments?service=svc&stage=dev";
    let (status, text) = fx.admin("POST", deploy, "v1").await;
    assert_eq!(status, 200, "{text}");
    let deployed: wire::Deployed = serde_json::from_str(&text).expect("an answer");
    assert_eq!(deployed.deployed, 1);
    assert_eq!(get(fx.gateway, "/svc/dev/x").await.1, "v1");

    // Refused bundles leave no version behind and live where it was.
    let (status, text) = fx.admin("POST", deploy, "bad").await;
    assert_eq!(status, 422, "{text}");
    let error: ErrorBody = serde_json::from_str(&text).expect("an error");
    assert_eq!(
        error.diagnostics,
        ["nimbus.yaml:1: functions: expected a map"]
    );
    let (status, text) = fx.admin("POST", deploy, "other").await;
    assert_eq!(
        (status, text.as_str()),
        (
            400,
            r#"{"message":"the bundle is other (dev), not svc (dev)"}"#
        )
    );
    let (status, text) = fx.admin("POST", deploy, "crash").await;
    assert_eq!(status, 422, "{text}");
    assert!(text.contains("version 2 did not start"), "{text}");
    let (status, _) = fx.admin("POST", deploy, "").await;
    assert_eq!(status, 400);
    let (status, text) = fx
        .admin("POST", "/v1/deployments?service=../x&stage=dev", "v1")
        .await;
    assert_eq!(status, 400, "{text}");
    let (status, text) = fx
        .admin("POST", &format!("{deploy}&canary=100"), "v2")
        .await;
    assert_eq!(status, 400, "{text}");
    assert_eq!(fx.live().await, [(1, 100)]);

    let (status, text) = fx
        .admin("POST", &format!("{deploy}&canary=10%25"), "v2")
        .await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(fx.live().await, [(1, 90), (2, 10)]);
    let (status, _) = fx.admin("POST", "/v1/apps/svc/dev/promote", "").await;
    assert_eq!(status, 200);
    assert_eq!(fx.live().await, [(2, 100)]);
    assert_eq!(get(fx.gateway, "/svc/dev/x").await.1, "v2");
    let (status, text) = fx.admin("POST", "/v1/apps/svc/dev/promote", "").await;
    assert_eq!(
        (status, text.as_str()),
        (409, r#"{"message":"live has no canary to promote"}"#)
    );
    let (status, _) = fx.admin("POST", "/v1/apps/svc/dev/rollback", "").await;
    assert_eq!(status, 200);
    assert_eq!(get(fx.gateway, "/svc/dev/x").await.1, "v1");

    let alias = "/v1/apps/svc/dev/aliases/beta";
    let (status, text) = fx
        .admin("PUT", alias, r#"{"targets":[{"version":2}]}"#)
        .await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(get(fx.gateway, "/svc/dev@beta/x").await.1, "v2");
    for (body, expected) in [
        ("nope", "the body is not JSON"),
        (r#"{"targets":"x"}"#, "expected {\\\"targets\\\""),
        (r#"{"targets":[{"version":9}]}"#, "there is no version 9"),
    ] {
        let (status, text) = fx.admin("PUT", alias, body).await;
        assert!(status == 400 || status == 409, "{body}: {status} {text}");
        assert!(text.contains(expected), "{body}: {text}");
    }
    let (status, _) = fx
        .admin(
            "PUT",
            "/v1/apps/svc/dev/aliases/a.b",
            r#"{"targets":[{"version":1}]}"#,
        )
        .await;
    assert_eq!(status, 400);
    fx.host.shutdown().await;
}

#[tokio::test]
async fn a_new_host_on_the_same_state_serves_what_the_aliases_point_at() {
    let dir = tempfile::tempdir().expect("a temp dir");
    {
        let fx = fixture(dir.path()).await;
        for bundle in ["v1", "v2", "v3"] {
            let res = fx
                .admin("POST", "/v1/deployments?service=svc&stage=dev", bundle)
                .await;
            assert_eq!(res.0, 200, "{}", res.1);
        }
        let (status, _) = fx.admin("POST", "/v1/apps/svc/dev/rollback", "").await;
        assert_eq!(status, 200);
        fx.host.shutdown().await;
    }
    let fx = fixture(dir.path()).await;
    assert_eq!(fx.live().await, [(2, 100)]);
    assert_eq!(get(fx.gateway, "/svc/dev/x").await.1, "v2");
    let (status, text) = fx.admin("GET", "/v1/apps", "").await;
    assert_eq!(
        (status, text.as_str()),
        (200, r#"{"apps":[{"service":"svc","stage":"dev"}]}"#)
    );
    fx.host.shutdown().await;
}

#[test]
fn percentages_and_names_are_checked() {
    assert_eq!(parse_percent("10%"), Ok(10));
    assert_eq!(parse_percent("5"), Ok(5));
    assert!(parse_percent("0%").is_err());
    assert!(parse_percent("100%").is_err());
    assert!(check_name("my-app_2").is_ok());
    assert!(check_name("../x").is_err());
    assert!(check_name("").is_err());
}
