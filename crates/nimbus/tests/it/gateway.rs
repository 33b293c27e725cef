//! The gateway's HTTP behaviour: errors, CORS, binary bodies, response mapping.

use crate::harness::{TestApp, TestServer};

const RESPONDER_JS: &str = r#"
exports.handler = async (event) => {
  const q = event.queryStringParameters || {};
  switch (q.kind) {
    case 'malformed': return 'not a proxy response';
    case 'badstatus': return { statusCode: 'teapot', body: 'x' };
    case 'binary': return { statusCode: 200, headers: { 'content-type': 'image/png' }, body: Buffer.from([0, 1, 2, 255]).toString('base64'), isBase64Encoded: true };
    case 'multi': return { statusCode: 200, multiValueHeaders: { 'x-many': ['a', 'b'] }, body: 'multi' };
    case 'cookies': return { statusCode: 200, cookies: ['a=1', 'b=2; Path=/'], body: 'cookies' };
    case 'bare': return { hello: 'world' };
    case 'echo': return { statusCode: 200, body: JSON.stringify(event) };
    default: return { statusCode: 200, body: 'ok' };
  }
};
"#;

fn app() -> TestApp {
    let manifest = r#"
service: gw
provider:
  runtime: nodejs20.x
  httpApi:
    cors: true
functions:
  rest:
    handler: responder.handler
    events:
      - http: { path: "/rest/{proxy+}", method: ANY, cors: true }
  api:
    handler: responder.handler
    events:
      - httpApi: "GET /api"
      - httpApi: "POST /api/upload"
"#;
    TestApp::new(&[("nimbus.yaml", manifest), ("responder.js", RESPONDER_JS)])
}

#[tokio::test]
async fn unknown_routes_get_404_and_malformed_responses_502() {
    let app = app();
    let server = TestServer::start(app.path(), &[]);
    let res = server.get("/nowhere").await;
    assert_eq!(res.status, 404);
    assert_eq!(res.json()["message"], "Not Found");
    let res = server.request("DELETE", "/api", &[], Vec::new()).await;
    assert_eq!(res.status, 404, "no DELETE route");
    for kind in ["malformed", "badstatus"] {
        let res = server.get(&format!("/rest/x?kind={kind}")).await;
        assert_eq!(res.status, 502, "{kind}");
        assert_eq!(res.json()["message"], "Internal server error");
    }
    assert!(
        server.logs().contains("malformed Lambda proxy response"),
        "{}",
        server.logs()
    );
}

#[tokio::test]
async fn payloads_over_6_mb_get_413_and_the_server_stays_up() {
    let app = app();
    let server = TestServer::start(app.path(), &[]);
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    // A declared length over the limit is refused before the body is sent.
    let mut stream = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    let head = format!(
        "POST /api/upload HTTP/1.1\r\nhost: x\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n",
        6 * 1024 * 1024 + 1
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut answer = vec![0u8; 12];
    stream.read_exact(&mut answer).await.expect("read");
    assert_eq!(&answer, b"HTTP/1.1 413");
    // A chunked body with no declared length is cut off at the limit too.
    let mut stream = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    stream
        .write_all(b"POST /api/upload HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n")
        .await
        .expect("write");
    let chunk = vec![b'a'; 1024 * 1024];
    for _ in 0..7 {
        let sent = async {
            stream
                .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .await?;
            stream.write_all(&chunk).await?;
            stream.write_all(b"\r\n").await
        };
        if sent.await.is_err() {
            break;
        }
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 413"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let res = server
        .request(
            "POST",
            "/api/upload",
            &[("content-type", "text/plain")],
            b"small".to_vec(),
        )
        .await;
    assert_eq!(res.status, 200);
}

#[tokio::test]
async fn malformed_http_gets_400() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let app = app();
    let server = TestServer::start(app.path(), &[]);
    let mut stream = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    stream
        .write_all(b"THIS IS NOT HTTP\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(server.get("/api").await.status, 200, "still serving");
}

#[tokio::test]
async fn cors_preflight_and_response_headers() {
    let app = app();
    let server = TestServer::start(app.path(), &[]);
    let res = server
        .request(
            "OPTIONS",
            "/rest/things",
            &[
                ("origin", "http://example.test"),
                ("access-control-request-method", "PUT"),
            ],
            Vec::new(),
        )
        .await;
    assert!(
        res.status == 200 || res.status == 204,
        "preflight status {}",
        res.status
    );
    assert_eq!(res.header("access-control-allow-origin"), Some("*"));
    let methods = res
        .header("access-control-allow-methods")
        .unwrap_or_default();
    assert!(methods.contains("PUT"), "{methods}");
    let res = server.get("/rest/things").await;
    assert_eq!(res.header("access-control-allow-origin"), Some("*"));
}

#[tokio::test]
async fn binary_bodies_and_header_mapping_round_trip() {
    let app = app();
    let server = TestServer::start(app.path(), &[]);
    let res = server.get("/rest/x?kind=binary").await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("content-type"), Some("image/png"));
    assert_eq!(res.body.as_ref(), &[0u8, 1, 2, 255]);

    let res = server.get("/rest/x?kind=multi").await;
    let many: Vec<_> = res
        .headers
        .get_all("x-many")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert_eq!(many, ["a", "b"]);

    let res = server.get("/api?kind=cookies").await;
    let cookies: Vec<_> = res
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert_eq!(cookies, ["a=1", "b=2; Path=/"]);

    let res = server.get("/api?kind=bare").await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("content-type"), Some("application/json"));
    assert_eq!(res.json()["hello"], "world");

    let bytes = vec![0u8, 159, 146, 150, 255];
    let res = server
        .request(
            "POST",
            "/rest/upload?kind=echo",
            &[("content-type", "application/octet-stream")],
            bytes.clone(),
        )
        .await;
    let event = res.json();
    assert_eq!(event["isBase64Encoded"], true);
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(event["body"].as_str().expect("body"))
        .expect("base64 body");
    assert_eq!(decoded, bytes);
}
