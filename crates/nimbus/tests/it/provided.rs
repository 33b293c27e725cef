//! A `provided.al2` custom runtime built with the official `lambda_runtime` crate.

use std::path::PathBuf;
use std::sync::OnceLock;

use crate::harness::{TestApp, TestServer};

/// Builds tests/fixtures/provided-hello once and returns the binary's path.
fn provided_hello() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
            let status = std::process::Command::new(&cargo)
                .args(["build", "--quiet", "-p", "provided-hello"])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .status()
                .expect("running cargo build -p provided-hello");
            assert!(
                status.success(),
                "building the fixture failed: run `cargo build -p provided-hello`"
            );
            let nimbus = PathBuf::from(crate::harness::NIMBUS);
            let bin = nimbus.parent().expect("target dir").join("provided-hello");
            assert!(
                bin.is_file(),
                "{} missing: run `cargo build -p provided-hello`",
                bin.display()
            );
            bin
        })
        .clone()
}

#[tokio::test]
async fn a_lambda_runtime_crate_function_answers_through_the_gateway() {
    let manifest = r#"
service: custom
provider:
  runtime: provided.al2
functions:
  hello:
    handler: bootstrap
    events:
      - httpApi: GET /hello
"#;
    let app = TestApp::new(&[("nimbus.yaml", manifest)]);
    std::fs::copy(provided_hello(), app.path().join("bootstrap")).expect("copying bootstrap");
    let server = TestServer::start(app.path(), &[]);
    let res = server.get("/hello?name=Ada").await;
    assert_eq!(res.status, 200, "{}", res.text());
    let body = res.json();
    assert_eq!(body["message"], "Hello, Ada!");
    assert_eq!(body["runtime"], "provided");
    assert_eq!(body["functionName"], "custom-dev-hello");
    assert_eq!(res.header("apigw-requestid"), body["requestId"].as_str());
}
