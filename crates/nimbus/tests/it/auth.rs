//! Gateway policies through the real binary: JWT authorizers (HS256 secret, RS256 from a
//! JWKS file and URL), Lambda authorizers (HTTP API simple and IAM policy responses, REST
//! TOKEN and REQUEST), API keys with a usage plan, and rate limits.

use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::harness::{TestApp, TestServer};

/// Answers with the request context it was given, so tests see the authorizer's claims.
const ECHO_JS: &str = r#"
exports.handler = async (event) => ({ statusCode: 200, body: JSON.stringify(event.requestContext) });
"#;

const SECRET: &str = "a-test-secret-of-reasonable-length";
const ISSUER: &str = "https://issuer.test";
const JWKS: &str = include_str!("../../../../tests/fixtures/jwt/jwks.json");
const RSA_PEM: &str = include_str!("../../../../tests/fixtures/jwt/rsa-private.pem");

fn now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Claims valid for an hour, for audience `api`, with `scope: read`.
fn claims() -> Value {
    json!({ "iss": ISSUER, "aud": "api", "sub": "user-1", "exp": now() + 3600, "scope": "read" })
}

fn hs256(claims: &Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("signing a token")
}

fn rs256(claims: &Value, kid: &str) -> String {
    let body: String = RSA_PEM
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("the test key is base64");
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_rsa_der(&der)).expect("signing")
}

async fn get_with(server: &TestServer, path: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let res = server.request("GET", path, headers, Vec::new()).await;
    let body = serde_json::from_slice(&res.body).unwrap_or(Value::Null);
    (res.status, body)
}

async fn bearer(server: &TestServer, path: &str, token: &str) -> (u16, Value) {
    let auth = format!("Bearer {token}");
    get_with(server, path, &[("authorization", &auth)]).await
}

fn jwt_app(jwks_url: &str) -> TestApp {
    let manifest = format!(
        r#"
service: auth
provider:
  runtime: nodejs20.x
  httpApi:
    authorizers:
      hs:
        identitySource: $request.header.Authorization
        issuerUrl: {ISSUER}
        audience: [api, other]
        secret: ${{env:JWT_SECRET}}
      rsFile:
        type: jwt
        issuerUrl: {ISSUER}
        audience: [api]
        jwksFile: keys/jwks.json
      rsUrl:
        issuerUrl: {ISSUER}
        audience: [api]
        jwksUrl: {jwks_url}
functions:
  echo:
    handler: echo.handler
    events:
      - httpApi: {{ method: GET, path: /hs, authorizer: {{ name: hs, scopes: [read, admin] }} }}
      - httpApi: {{ method: GET, path: /admin, authorizer: {{ name: hs, scopes: [admin] }} }}
      - httpApi: {{ method: GET, path: /rs, authorizer: {{ name: rsFile }} }}
      - httpApi: {{ method: GET, path: /rs-url, authorizer: rsUrl }}
      - httpApi: GET /public
"#
    );
    TestApp::new(&[
        ("nimbus.yaml", &manifest),
        ("echo.js", ECHO_JS),
        ("keys/jwks.json", JWKS),
    ])
}

/// Serves the JWKS on 127.0.0.1 and counts how often it is fetched.
async fn serve_jwks() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding the JWKS server");
    let addr = listener.local_addr().expect("address");
    let fetches = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = fetches.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf).await;
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{JWKS}",
                JWKS.len()
            );
            let _ = stream.write_all(answer.as_bytes()).await;
        }
    });
    (format!("http://{addr}/.well-known/jwks.json"), fetches)
}

#[tokio::test]
async fn jwt_authorizers_allow_valid_tokens_and_refuse_the_rest() {
    let (jwks_url, fetches) = serve_jwks().await;
    let app = jwt_app(&jwks_url);
    let server = TestServer::start_with_env(app.path(), &[], &[("JWT_SECRET", SECRET)]);

    // Allowed: the claims reach the function, as strings, with the scopes.
    let (status, ctx) = bearer(&server, "/hs", &hs256(&claims(), SECRET)).await;
    assert_eq!(status, 200, "{ctx}");
    assert_eq!(ctx["authorizer"]["jwt"]["claims"]["sub"], "user-1");
    assert_eq!(ctx["authorizer"]["jwt"]["claims"]["iss"], ISSUER);
    assert!(ctx["authorizer"]["jwt"]["claims"]["exp"].is_string());
    assert_eq!(ctx["authorizer"]["jwt"]["scopes"], json!(["read"]));
    // A public route needs nothing and gets no authorizer context.
    let (status, ctx) = get_with(&server, "/public", &[]).await;
    assert_eq!(status, 200);
    assert!(ctx.get("authorizer").is_none(), "{ctx}");

    // Denied with 401: no token, expired, not yet valid, wrong audience, wrong issuer,
    // bad signature, garbage.
    let (status, body) = get_with(&server, "/hs", &[]).await;
    assert_eq!((status, body), (401, json!({ "message": "Unauthorized" })));
    let mut expired = claims();
    expired["exp"] = json!(now() - 120);
    let mut early = claims();
    early["nbf"] = json!(now() + 600);
    let mut wrong_aud = claims();
    wrong_aud["aud"] = json!("someone-else");
    let mut wrong_iss = claims();
    wrong_iss["iss"] = json!("https://evil.test");
    let cases = [
        ("expired", hs256(&expired, SECRET)),
        ("not yet valid", hs256(&early, SECRET)),
        ("wrong audience", hs256(&wrong_aud, SECRET)),
        ("wrong issuer", hs256(&wrong_iss, SECRET)),
        ("bad signature", hs256(&claims(), "another-secret-entirely")),
        ("RS256 at an HS256 authorizer", rs256(&claims(), "test-rsa")),
        ("garbage", "not.a.jwt".to_owned()),
    ];
    for (what, token) in &cases {
        let (status, body) = bearer(&server, "/hs", token).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(body["message"], "Unauthorized", "{what}");
    }
    // An audience list: `aud` may be a list that intersects it.
    let mut multi_aud = claims();
    multi_aud["aud"] = json!(["x", "other"]);
    assert_eq!(
        bearer(&server, "/hs", &hs256(&multi_aud, SECRET)).await.0,
        200
    );

    // Denied with 403: a valid token without the route's scope; `scp` counts too.
    let (status, body) = bearer(&server, "/admin", &hs256(&claims(), SECRET)).await;
    assert_eq!((status, body), (403, json!({ "message": "Forbidden" })));
    let mut admin = claims();
    admin["scp"] = json!(["admin"]);
    assert_eq!(
        bearer(&server, "/admin", &hs256(&admin, SECRET)).await.0,
        200
    );

    // RS256 with keys from a JWKS file.
    let (status, ctx) = bearer(&server, "/rs", &rs256(&claims(), "test-rsa")).await;
    assert_eq!(status, 200, "{ctx}");
    assert_eq!(ctx["authorizer"]["jwt"]["claims"]["sub"], "user-1");
    assert_eq!(
        bearer(&server, "/rs", &rs256(&claims(), "unknown-kid"))
            .await
            .0,
        401
    );
    assert_eq!(
        bearer(&server, "/rs", &rs256(&expired, "test-rsa")).await.0,
        401
    );
    assert_eq!(
        bearer(&server, "/rs", &hs256(&claims(), SECRET)).await.0,
        401
    );

    // RS256 with keys from a JWKS URL, fetched once and cached.
    for _ in 0..3 {
        let (status, ctx) = bearer(&server, "/rs-url", &rs256(&claims(), "test-rsa")).await;
        assert_eq!(status, 200, "{ctx}");
    }
    assert_eq!(
        bearer(&server, "/rs-url", &rs256(&wrong_aud, "test-rsa"))
            .await
            .0,
        401
    );
    assert_eq!(
        fetches.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the JWKS is cached"
    );
}

const KEY_A: &str = "key-a-0123456789abcdefghij";
const KEY_B: &str = "key-b-0123456789abcdefghij";

#[tokio::test]
async fn api_keys_and_usage_plans_answer_403_and_429() {
    let manifest = r#"
service: keys
provider:
  runtime: nodejs20.x
  apiGateway:
    apiKeys:
      - name: a
        value: ${env:KEY_A}
      - { name: b, value: key-b-0123456789abcdefghij }
      - generated
    usagePlan:
      quota: { limit: 5, period: DAY }
      throttle: { rateLimit: 5, burstLimit: 3 }
functions:
  echo:
    handler: echo.handler
    events:
      - http: { method: GET, path: /private, private: true }
      - http: GET /open
"#;
    let app = TestApp::new(&[("nimbus.yaml", manifest), ("echo.js", ECHO_JS)]);
    let server = TestServer::start_with_env(app.path(), &[], &[("KEY_A", KEY_A)]);

    let (status, body) = get_with(&server, "/private", &[]).await;
    assert_eq!(
        (status, body),
        (403, json!({ "message": "Forbidden" })),
        "no key"
    );
    let (status, body) = get_with(
        &server,
        "/private",
        &[("x-api-key", "wrong-key-0123456789abc")],
    )
    .await;
    assert_eq!(
        (status, body),
        (403, json!({ "message": "Forbidden" })),
        "unknown key"
    );
    assert_eq!(get_with(&server, "/open", &[]).await.0, 200, "public route");

    // Key a: the burst of 3 passes, the 4th at once is throttled.
    for n in 0..3 {
        let (status, ctx) = get_with(&server, "/private", &[("x-api-key", KEY_A)]).await;
        assert_eq!(status, 200, "request {n}: {ctx}");
        assert_eq!(ctx["identity"]["apiKey"], KEY_A);
        assert_eq!(ctx["identity"]["apiKeyId"], "a");
    }
    let res = server
        .request("GET", "/private", &[("x-api-key", KEY_A)], Vec::new())
        .await;
    assert_eq!(res.status, 429);
    assert_eq!(res.json(), json!({ "message": "Too Many Requests" }));
    assert!(res.header("retry-after").is_some());

    // Key b has its own bucket; its quota of 5 a day runs out at the 6th request.
    let mut ok = 0;
    for _ in 0..3 {
        ok += u32::from(
            get_with(&server, "/private", &[("x-api-key", KEY_B)])
                .await
                .0
                == 200,
        );
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    for _ in 0..2 {
        ok += u32::from(
            get_with(&server, "/private", &[("x-api-key", KEY_B)])
                .await
                .0
                == 200,
        );
    }
    assert_eq!(ok, 5);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (status, body) = get_with(&server, "/private", &[("x-api-key", KEY_B)]).await;
    assert_eq!(
        (status, body),
        (429, json!({ "message": "Limit Exceeded" }))
    );
}

#[tokio::test]
async fn generated_api_keys_are_printed_at_start() {
    let manifest = r#"
service: keys
provider:
  runtime: nodejs20.x
  apiGateway:
    apiKeys: [generated]
functions:
  echo:
    handler: echo.handler
    events:
      - http: { method: GET, path: /private, private: true }
"#;
    let app = TestApp::new(&[("nimbus.yaml", manifest), ("echo.js", ECHO_JS)]);
    let mut child = std::process::Command::new(crate::harness::NIMBUS)
        .args(["up", "--port", "0"])
        .arg(app.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starting nimbus up");
    let stdout = child.stdout.take().expect("stdout");
    let mut line_of_key = None;
    use std::io::BufRead as _;
    for line in std::io::BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .take(10)
    {
        if line.contains("api key generated:") {
            line_of_key = Some(line);
            break;
        }
    }
    crate::harness::signal(child.id(), libc::SIGTERM);
    let _ = child.wait();
    let line = line_of_key.expect("the generated key is printed");
    assert!(
        line.trim().len() > "api key generated: ".len() + 20,
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_holds_within_ten_percent() {
    let manifest = r#"
service: limits
provider:
  runtime: nodejs20.x
functions:
  echo:
    handler: echo.handler
    events:
      - httpApi: { method: GET, path: /limited, rateLimit: { rate: 20, burst: 5, per: route } }
"#;
    let app = TestApp::new(&[("nimbus.yaml", manifest), ("echo.js", ECHO_JS)]);
    let server = std::sync::Arc::new(TestServer::start(app.path(), &[]));
    // Warm the function so cold starts do not hold connections, then let the bucket refill.
    assert_eq!(server.get("/limited").await.status, 200);
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Steady requests, one every 10 ms (5 times the rate), for about 3 s.
    let start = Instant::now();
    let mut tasks = Vec::new();
    let mut ticker = tokio::time::interval(Duration::from_millis(10));
    let mut last_send = start;
    while start.elapsed() < Duration::from_secs(3) {
        ticker.tick().await;
        last_send = Instant::now();
        let server = server.clone();
        tasks.push(tokio::spawn(async move {
            let res = server.get("/limited").await;
            (res.status, res.header("retry-after").map(str::to_owned))
        }));
    }
    let elapsed = last_send.duration_since(start).as_secs_f64();
    let mut accepted = 0;
    let mut refused = 0;
    for task in tasks {
        let (status, retry_after) = task.await.expect("request task");
        match status {
            200 => accepted += 1,
            429 => {
                refused += 1;
                assert_eq!(retry_after.as_deref(), Some("1"));
            }
            other => panic!("unexpected status {other}"),
        }
    }
    // The burst of 5 plus 20 a second over the span in which requests reached the
    // gateway: at least the time they were sent over, at most until the last answer (on a
    // loaded machine arrivals trail the sends). A burst of 5 (250 ms of tokens) absorbs
    // the arrival jitter.
    let elapsed_done = start.elapsed().as_secs_f64();
    let low = (5.0 + 20.0 * elapsed) * 0.90;
    let high = (5.0 + 20.0 * elapsed_done) * 1.10;
    let accepted_f = f64::from(accepted);
    assert!(
        (low..=high).contains(&accepted_f),
        "accepted {accepted} (refused {refused}) over {elapsed:.2}–{elapsed_done:.2} s; expected {low:.1} to {high:.1}"
    );
    assert!(refused > accepted, "the limit refused most requests");
}

/// `nimbus validate` on a manifest; exit code and stderr.
fn validate(manifest: &str) -> (Option<i32>, String) {
    let app = TestApp::new(&[("serverless.yml", manifest), ("echo.js", ECHO_JS)]);
    let out = app.nimbus(&["validate"]);
    (out.code, out.stderr)
}

#[test]
fn bad_auth_config_names_file_line_and_key() {
    let manifest = r#"service: bad
provider:
  runtime: nodejs20.x
  httpApi:
    authorizers:
      noIssuer:
        audience: [api]
        secret: s
      fromFile:
        issuerUrl: https://issuer.test
        audience: [api]
        jwksFile: missing/jwks.json
functions:
  echo:
    handler: echo.handler
    events:
      - httpApi: { method: GET, path: /a, authorizer: { name: nobody } }
      - http: { method: GET, path: /b, private: true }
"#;
    let (code, stderr) = validate(manifest);
    assert_eq!(code, Some(1), "{stderr}");
    for expected in [
        "serverless.yml:7:9: provider.httpApi.authorizers.noIssuer.issuerUrl: missing `issuerUrl`",
        "serverless.yml:17:",
        "functions.echo.events[0].httpApi.authorizer.name: unknown authorizer `nobody`",
        "functions.echo.events[1].http.private: a private route needs API keys",
    ] {
        assert!(
            stderr.contains(expected),
            "stderr lacks {expected:?}:\n{stderr}"
        );
    }
    // The file is checked once the manifest itself is valid.
    let manifest = r#"service: bad
provider:
  runtime: nodejs20.x
  httpApi:
    authorizers:
      fromFile:
        issuerUrl: https://issuer.test
        audience: [api]
        jwksFile: missing/jwks.json
functions:
  echo:
    handler: echo.handler
    events:
      - httpApi: { method: GET, path: /a, authorizer: { name: fromFile } }
"#;
    let (code, stderr) = validate(manifest);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("serverless.yml:9:1: provider.httpApi.authorizers.fromFile.jwksFile: cannot read the JWKS file"),
        "{stderr}"
    );
}

/// Authorizers of the Lambda authorizer tests. `calls` counts the invocations of each
/// function (one warm instance serves them all), so a test sees whether an answer came
/// from the cache.
const HTTP_AUTH_JS: &str = r#"
let calls = 0;
const policy = (principalId, effect, resource, context) => ({
  principalId,
  policyDocument: { Version: '2012-10-17', Statement: [{ Action: 'execute-api:Invoke', Effect: effect, Resource: resource }] },
  context,
});
exports.simple = async (event) => {
  calls += 1;
  const token = event.headers.authorization;
  return {
    isAuthorized: token.startsWith('allow'),
    context: { user: token, calls, type: event.type, routeArn: event.routeArn, identity: event.identitySource, roles: ['a', 'b'] },
  };
};
exports.policy = async (event) => {
  calls += 1;
  const token = event.identitySource[0];
  if (token === 'allow-all') return policy('user-1', 'Allow', 'arn:aws:execute-api:*:*:*/$default/GET/*', { calls });
  if (token === 'allow-one') return policy('user-1', 'Allow', event.routeArn.replace(/\/items\/.*$/, '/items/1'), { calls });
  return policy('user-1', 'Deny', event.routeArn, { calls });
};
exports.failing = async (event) => {
  const token = event.headers.authorization;
  if (token === 'throw') throw new Error('authorizer exploded');
  if (token === 'slow') await new Promise((resolve) => setTimeout(resolve, 5000));
  return { hello: 'world' };
};
"#;

fn http_lambda_app() -> TestApp {
    let manifest = r#"
service: lauth
provider:
  runtime: nodejs20.x
  httpApi:
    authorizers:
      simple:
        type: request
        functionName: simpleAuth
        identitySource: $request.header.Authorization
        enableSimpleResponses: true
      policy:
        type: request
        functionName: policyAuth
        identitySource: [$request.header.Authorization]
        resultTtlInSeconds: 0
        payloadVersion: '2.0'
      failing:
        type: request
        functionName: failingAuth
        identitySource: $request.header.Authorization
        resultTtlInSeconds: 0
        enableSimpleResponses: true
functions:
  simpleAuth:
    handler: auth.simple
  policyAuth:
    handler: auth.policy
  failingAuth:
    handler: auth.failing
    timeout: 1
  echo:
    handler: echo.handler
    events:
      - httpApi: { method: GET, path: /simple, authorizer: { name: simple } }
      - httpApi: { method: GET, path: /items/{id}, authorizer: policy }
      - httpApi: { method: GET, path: /failing, authorizer: { name: failing } }
"#;
    TestApp::new(&[
        ("serverless.yml", manifest),
        ("echo.js", ECHO_JS),
        ("auth.js", HTTP_AUTH_JS),
    ])
}

async fn with_auth(server: &TestServer, path: &str, token: &str) -> (u16, Value) {
    get_with(server, path, &[("authorization", token)]).await
}

/// How many invocation records `function` has, once the store has them all: waits
/// (records are written in batches) until there are `expected`, then checks that no
/// more arrive.
async fn invocation_count(app: &TestApp, function: &str, expected: usize) -> usize {
    let count = || {
        let out = app.nimbus(&["invocations", function, "--json", "--limit", "1000"]);
        out.stdout.lines().filter(|l| !l.trim().is_empty()).count()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while count() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    count()
}

#[tokio::test]
async fn http_api_lambda_authorizers_allow_deny_and_cache_answers() {
    let app = http_lambda_app();
    let server = TestServer::start(app.path(), &[]);

    // No identity: 401 without invoking the authorizer.
    let (status, body) = get_with(&server, "/simple", &[]).await;
    assert_eq!((status, body), (401, json!({ "message": "Unauthorized" })));

    // Simple response, allowed: the context reaches the function as `lambda`, whatever
    // its shape.
    let (status, ctx) = with_auth(&server, "/simple", "allow-1").await;
    assert_eq!(status, 200, "{ctx}");
    let lambda = &ctx["authorizer"]["lambda"];
    assert_eq!(lambda["user"], "allow-1");
    assert_eq!(
        lambda["calls"], 1,
        "the request without identity invoked nothing"
    );
    assert_eq!(lambda["type"], "REQUEST");
    assert_eq!(lambda["identity"], json!(["allow-1"]));
    assert_eq!(lambda["roles"], json!(["a", "b"]));
    assert_eq!(
        lambda["routeArn"],
        "arn:aws:execute-api:us-east-1:123456789012:nimbus/$default/GET/simple"
    );
    // The same token again: the cached answer, no invocation.
    let (status, ctx) = with_auth(&server, "/simple", "allow-1").await;
    assert_eq!(status, 200, "{ctx}");
    assert_eq!(
        ctx["authorizer"]["lambda"]["calls"], 1,
        "answered from the cache"
    );
    // Denied: 403; a denial is cached too.
    for _ in 0..2 {
        let (status, body) = with_auth(&server, "/simple", "deny-1").await;
        assert_eq!((status, body), (403, json!({ "message": "Forbidden" })));
    }
    let (status, ctx) = with_auth(&server, "/simple", "allow-2").await;
    assert_eq!(status, 200, "{ctx}");
    assert_eq!(
        ctx["authorizer"]["lambda"]["calls"], 3,
        "allow-1, deny-1, allow-2"
    );

    // IAM policy responses, not cached (`resultTtlInSeconds: 0`): matched against the
    // route's ARN, with wildcards.
    let (status, ctx) = with_auth(&server, "/items/1", "allow-one").await;
    assert_eq!(status, 200, "{ctx}");
    assert_eq!(ctx["authorizer"]["lambda"]["calls"], 1);
    let (status, body) = with_auth(&server, "/items/2", "allow-one").await;
    assert_eq!((status, body), (403, json!({ "message": "Forbidden" })));
    for expected_calls in [3, 4, 5] {
        let (status, ctx) = with_auth(&server, "/items/7", "allow-all").await;
        assert_eq!(status, 200, "{ctx}");
        assert_eq!(
            ctx["authorizer"]["lambda"]["calls"], expected_calls,
            "a TTL of 0 invokes the authorizer every time"
        );
    }
    let (status, body) = with_auth(&server, "/items/1", "deny").await;
    assert_eq!((status, body), (403, json!({ "message": "Forbidden" })));

    // The store agrees: 3 invocations of the cached authorizer, 6 of the other.
    assert_eq!(invocation_count(&app, "simpleAuth", 3).await, 3);
    assert_eq!(invocation_count(&app, "policyAuth", 6).await, 6);
}

#[tokio::test]
async fn failing_http_api_authorizers_answer_500_and_say_why_in_the_log() {
    let app = http_lambda_app();
    let server = TestServer::start(app.path(), &[]);
    let cases = [
        ("throw", "the function failed: Error: authorizer exploded"),
        ("garbage", "a simple response needs `isAuthorized`"),
        ("slow", "the function timed out after 1.0 s"),
    ];
    for (token, why) in cases {
        let (status, body) = with_auth(&server, "/failing", token).await;
        assert_eq!(
            (status, body),
            (500, json!({ "message": "Internal Server Error" })),
            "{token}"
        );
        let logs = server.logs();
        assert!(
            logs.lines()
                .any(|l| l.contains("authorizer `failing` failed") && l.contains(why)),
            "no log line for {token} saying {why:?}:\n{logs}"
        );
    }
}

const REST_AUTH_JS: &str = r#"
let calls = 0;
const policy = (principalId, effect, resource, context) => ({
  principalId,
  policyDocument: { Version: '2012-10-17', Statement: [{ Action: 'execute-api:Invoke', Effect: effect, Resource: resource }] },
  context,
});
exports.token = async (event) => {
  calls += 1;
  const token = event.authorizationToken.replace(/^Bearer /, '');
  if (token === 'unauthorized') throw new Error('Unauthorized');
  if (token === 'boom') throw new Error('token store unreachable');
  const effect = token.startsWith('allow') ? 'Allow' : 'Deny';
  return policy('user-' + token, effect, event.methodArn, { calls, admin: false, type: event.type });
};
exports.request = async (event) => {
  calls += 1;
  const user = event.headers['x-user'];
  const effect = user === 'alice' ? 'Allow' : 'Deny';
  return policy(user, effect, event.methodArn.replace(/GET\/.*$/, 'GET/*'), {
    calls,
    tenant: event.queryStringParameters.tenant,
    type: event.type,
    resource: event.resource,
    path: event.path,
  });
};
"#;

fn rest_lambda_app() -> TestApp {
    let manifest = r#"
service: rauth
provider:
  runtime: nodejs20.x
functions:
  tokenAuth:
    handler: auth.token
  requestAuth:
    handler: auth.request
  echo:
    handler: echo.handler
    events:
      - http: { method: GET, path: /token, authorizer: tokenAuth }
      - http: { method: GET, path: /other, authorizer: tokenAuth }
      - http:
          method: GET
          path: /validated
          authorizer:
            name: strict
            arn: arn:aws:lambda:us-east-1:123456789012:function:rauth-dev-tokenAuth
            identityValidationExpression: '^Bearer [a-z0-9-]+$'
            resultTtlInSeconds: 0
      - http:
          method: GET
          path: /request/{id}
          authorizer:
            name: requestAuth
            type: request
            identitySource: method.request.header.X-User, method.request.querystring.tenant
            resultTtlInSeconds: 0
"#;
    TestApp::new(&[
        ("serverless.yml", manifest),
        ("echo.js", ECHO_JS),
        ("auth.js", REST_AUTH_JS),
    ])
}

#[tokio::test]
async fn rest_token_authorizers_answer_with_iam_policies() {
    let app = rest_lambda_app();
    let server = TestServer::start(app.path(), &[]);

    let (status, body) = get_with(&server, "/token", &[]).await;
    assert_eq!((status, body), (401, json!({ "message": "Unauthorized" })));

    // Allowed: the principal and the context reach the function, values as strings.
    let (status, ctx) = with_auth(&server, "/token", "Bearer allow-1").await;
    assert_eq!(status, 200, "{ctx}");
    let authorizer = &ctx["authorizer"];
    assert_eq!(authorizer["principalId"], "user-allow-1");
    assert_eq!(authorizer["calls"], "1");
    assert_eq!(authorizer["admin"], "false");
    assert_eq!(authorizer["type"], "TOKEN");
    assert!(authorizer["integrationLatency"].is_u64(), "{authorizer}");
    // Cached for the default 300 s...
    let (status, ctx) = with_auth(&server, "/token", "Bearer allow-1").await;
    assert_eq!(status, 200, "{ctx}");
    assert_eq!(ctx["authorizer"]["calls"], "1", "answered from the cache");
    assert_eq!(ctx["authorizer"]["integrationLatency"], 0);
    // ...and, as on API Gateway, the cached policy is evaluated for each method: it
    // names /token only, so /other is refused without a new invocation.
    let res = server
        .request(
            "GET",
            "/other",
            &[("authorization", "Bearer allow-1")],
            Vec::new(),
        )
        .await;
    assert_eq!(res.status, 403);
    assert_eq!(
        res.json(),
        json!({ "Message": "User is not authorized to access this resource" })
    );

    // Deny: 403 with API Gateway's wording; the error "Unauthorized": 401.
    let (status, body) = with_auth(&server, "/token", "Bearer deny-1").await;
    assert_eq!(
        (status, body),
        (
            403,
            json!({ "Message": "User is not authorized to access this resource with an explicit deny" })
        )
    );
    let (status, body) = with_auth(&server, "/token", "Bearer unauthorized").await;
    assert_eq!((status, body), (401, json!({ "message": "Unauthorized" })));
    // Any other error: 500, and a log line naming the authorizer.
    let res = server
        .request(
            "GET",
            "/token",
            &[("authorization", "Bearer boom")],
            Vec::new(),
        )
        .await;
    assert_eq!(res.status, 500);
    assert_eq!(res.json(), json!({ "message": null }));
    assert_eq!(
        res.header("x-amzn-errortype"),
        Some("AuthorizerConfigurationException")
    );
    let logs = server.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("authorizer `tokenAuth` failed")
                && l.contains("token store unreachable")),
        "{logs}"
    );

    // identityValidationExpression: a token that does not match is refused before the
    // authorizer is invoked.
    for token in ["Bearer ALLOW!", "allow-3"] {
        let (status, body) = with_auth(&server, "/validated", token).await;
        assert_eq!(
            (status, body),
            (401, json!({ "message": "Unauthorized" })),
            "{token}"
        );
    }
    let (status, ctx) = with_auth(&server, "/validated", "Bearer allow-3").await;
    assert_eq!(status, 200, "{ctx}");
    assert_eq!(ctx["authorizer"]["principalId"], "user-allow-3");

    // allow-1, deny-1, unauthorized, boom, allow-3: the cache hit and the refused tokens
    // invoked nothing.
    assert_eq!(invocation_count(&app, "tokenAuth", 5).await, 5);
}

#[tokio::test]
async fn rest_request_authorizers_see_the_request() {
    let app = rest_lambda_app();
    let server = TestServer::start(app.path(), &[]);
    let alice = [("x-user", "alice")];

    // Every identity source is required.
    let (status, body) = get_with(&server, "/request/7", &alice).await;
    assert_eq!((status, body), (401, json!({ "message": "Unauthorized" })));
    let (status, body) = get_with(&server, "/request/7?tenant=t1", &[]).await;
    assert_eq!((status, body), (401, json!({ "message": "Unauthorized" })));

    for expected_calls in ["1", "2"] {
        let (status, ctx) = get_with(&server, "/request/7?tenant=t1", &alice).await;
        assert_eq!(status, 200, "{ctx}");
        let authorizer = &ctx["authorizer"];
        assert_eq!(authorizer["principalId"], "alice");
        assert_eq!(authorizer["tenant"], "t1");
        assert_eq!(authorizer["type"], "REQUEST");
        assert_eq!(authorizer["resource"], "/request/{id}");
        assert_eq!(authorizer["path"], "/request/7");
        assert_eq!(
            authorizer["calls"], expected_calls,
            "no cache with a TTL of 0"
        );
    }
    let (status, body) = get_with(&server, "/request/7?tenant=t1", &[("x-user", "bob")]).await;
    assert_eq!(
        (status, body),
        (
            403,
            json!({ "Message": "User is not authorized to access this resource with an explicit deny" })
        )
    );
}

#[test]
fn bad_lambda_authorizer_config_names_file_line_and_key() {
    let manifest = r#"service: bad
provider:
  runtime: nodejs20.x
  httpApi:
    authorizers:
      custom:
        type: request
        functionName: missingFn
        identitySource: $request.body.token
functions:
  echo:
    handler: echo.handler
    events:
      - httpApi: { method: GET, path: /a, authorizer: { name: custom } }
      - http: { method: GET, path: /b, authorizer: { name: echo, type: magic } }
"#;
    let (code, stderr) = validate(manifest);
    assert_eq!(code, Some(1), "{stderr}");
    for expected in [
        "serverless.yml:8:23: provider.httpApi.authorizers.custom.functionName: unknown function `missingFn`",
        "serverless.yml:9:25: provider.httpApi.authorizers.custom.identitySource: expected `$request.header.NAME`",
        "serverless.yml:15:72: functions.echo.events[1].http.authorizer.type: unknown authorizer type \"magic\"",
    ] {
        assert!(
            stderr.contains(expected),
            "stderr lacks {expected:?}:\n{stderr}"
        );
    }
}
