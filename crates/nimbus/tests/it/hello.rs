//! The seed example, examples/hello, answered by Node.js and by Python.

use crate::harness::{TestApp, TestServer};

fn example_app() -> TestApp {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/hello");
    let read = |name: &str| {
        std::fs::read_to_string(format!("{example}/{name}")).expect("reading examples/hello")
    };
    let (manifest, js, py) = (read("nimbus.yaml"), read("handler.js"), read("handler.py"));
    TestApp::new(&[
        ("nimbus.yaml", &manifest),
        ("handler.js", &js),
        ("handler.py", &py),
    ])
}

#[tokio::test]
async fn hello_example_greets_by_name_from_node_and_python() {
    let app = example_app();
    let server = TestServer::start(app.path(), &[]);
    for path in ["/hello?name=Ada", "/python/hello?name=Ada"] {
        let res = server.get(path).await;
        assert_eq!(res.status, 200, "{path}: {}", res.text());
        assert_eq!(res.header("content-type"), Some("application/json"));
        assert_eq!(res.header("access-control-allow-origin"), Some("*"));
        let body = res.json();
        assert_eq!(body["message"], "Hello, Ada!", "{path}");
        let timestamp = body["timestamp"].as_str().expect("timestamp");
        assert!(
            timestamp.ends_with('Z') && timestamp.contains('T'),
            "{timestamp}"
        );
    }
    let res = server.get("/hello").await;
    assert_eq!(res.json()["message"], "Hello, World!");
}

const ECHO_JS: &str = r#"
exports.handler = async (event, context) => ({
  statusCode: 201,
  headers: { 'content-type': 'application/json', 'x-runtime': 'node' },
  body: JSON.stringify({ event, requestId: context.awsRequestId, fn: context.functionName }),
});
"#;

const ECHO_PY: &str = r#"
import json

def handler(event, context):
    return {
        "statusCode": 201,
        "headers": {"content-type": "application/json", "x-runtime": "python"},
        "body": json.dumps({"event": event, "requestId": context.aws_request_id, "fn": context.function_name}),
    }
"#;

#[tokio::test]
async fn post_with_json_body_and_path_params_round_trips_through_both_event_formats() {
    let manifest = r#"
service: echo
provider:
  runtime: nodejs20.x
functions:
  node-rest:
    handler: echo.handler
    events:
      - http: { method: POST, path: "rest/node/{id}" }
  node-http:
    handler: echo.handler
    events:
      - httpApi: { method: POST, path: "/http/node/{id}" }
  py-rest:
    handler: echo.handler
    runtime: python3.12
    events:
      - http: POST rest/py/{id}
  py-http:
    handler: echo.handler
    runtime: python3.12
    events:
      - httpApi: POST /http/py/{id}
"#;
    let app = TestApp::new(&[
        ("nimbus.yaml", manifest),
        ("echo.js", ECHO_JS),
        ("echo.py", ECHO_PY),
    ]);
    let server = TestServer::start(app.path(), &["--stage", "test"]);
    let body = br#"{"item":"apple","qty":3}"#.to_vec();
    for (path, runtime, v2) in [
        ("/rest/node/42?color=red", "node", false),
        ("/http/node/42?color=red", "node", true),
        ("/rest/py/42?color=red", "python", false),
        ("/http/py/42?color=red", "python", true),
    ] {
        let res = server
            .request(
                "POST",
                path,
                &[("content-type", "application/json")],
                body.clone(),
            )
            .await;
        assert_eq!(res.status, 201, "{path}: {}", res.text());
        assert_eq!(res.header("x-runtime"), Some(runtime));
        let echoed = res.json();
        let event = &echoed["event"];
        assert_eq!(event["pathParameters"]["id"], "42", "{path}");
        assert_eq!(event["queryStringParameters"]["color"], "red", "{path}");
        let sent: serde_json::Value =
            serde_json::from_str(event["body"].as_str().expect("body")).expect("json body");
        assert_eq!(sent["qty"], 3, "{path}");
        assert_eq!(event["isBase64Encoded"], false);
        assert_eq!(
            echoed["requestId"], event["requestContext"]["requestId"],
            "{path}"
        );
        if v2 {
            assert_eq!(event["version"], "2.0", "{path}");
            assert_eq!(
                event["routeKey"],
                format!(
                    "POST {}",
                    path.split('?')
                        .next()
                        .unwrap_or_default()
                        .replace("42", "{id}")
                )
            );
            assert_eq!(event["rawQueryString"], "color=red");
            assert_eq!(event["requestContext"]["http"]["method"], "POST");
        } else {
            assert_eq!(event["httpMethod"], "POST", "{path}");
            assert_eq!(
                event["resource"],
                path.split('?')
                    .next()
                    .unwrap_or_default()
                    .replace("42", "{id}")
            );
            assert_eq!(event["requestContext"]["stage"], "test");
            assert_eq!(event["multiValueQueryStringParameters"]["color"][0], "red");
        }
        let fn_name = echoed["fn"].as_str().expect("function name");
        assert!(fn_name.starts_with("echo-test-"), "{fn_name}");
    }
}

const MIRROR_JS: &str = r#"
exports.handler = async (event) => ({ statusCode: 200, headers: { 'content-type': 'text/plain; charset=utf-8' }, body: event.body });
"#;

const MIRROR_PY: &str = r#"
def handler(event, context):
    return {"statusCode": 200, "headers": {"content-type": "text/plain; charset=utf-8"}, "body": event["body"]}
"#;

/// Both runtimes read the invocation and post the answer over their own Runtime API
/// client: a multi-megabyte body of multi-byte characters, arriving in many socket reads
/// that split characters, comes back byte for byte, request after request.
#[tokio::test]
async fn large_unicode_bodies_round_trip_through_node_and_python() {
    let manifest = r#"
service: mirror
functions:
  node:
    handler: mirror.handler
    runtime: nodejs20.x
    events:
      - httpApi: POST /node
  py:
    handler: mirror.handler
    runtime: python3.12
    events:
      - httpApi: POST /py
"#;
    let app = TestApp::new(&[
        ("nimbus.yaml", manifest),
        ("mirror.js", MIRROR_JS),
        ("mirror.py", MIRROR_PY),
    ]);
    let server = TestServer::start(app.path(), &[]);
    // ~2.5 MB: the event (body JSON-escaped) and the answer both stay under 6 MB.
    let body = "héllo wörld ✓ 😀 \"quoted\" \\ new\nline ".repeat(60_000);
    for path in ["/node", "/py"] {
        for round in 0..3 {
            let sent = format!("{round}{body}");
            let res = server
                .request(
                    "POST",
                    path,
                    &[("content-type", "text/plain; charset=utf-8")],
                    sent.clone().into_bytes(),
                )
                .await;
            assert_eq!(res.status, 200, "{path} round {round}");
            assert!(
                res.text() == sent,
                "{path} round {round}: {} bytes back for {} sent",
                res.text().len(),
                sent.len()
            );
        }
        let small = server
            .request(
                "POST",
                path,
                &[("content-type", "text/plain")],
                b"tiny".to_vec(),
            )
            .await;
        assert_eq!(
            small.text(),
            "tiny",
            "{path}: a small body after the large ones"
        );
    }
}
