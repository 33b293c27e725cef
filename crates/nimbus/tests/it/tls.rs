//! HTTPS on the gateway (issue 14): `--tls-dev` and `--tls-cert/--tls-key` served to
//! curl, Node.js (HTTP/1.1 and HTTP/2), Python, boto3 and the JavaScript SDK v3, each
//! trusting the certificate authority nimbus printed; functions still reach the AWS
//! endpoint over plain loopback.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::aws_sqs::{boto3_path, run_boto3_with};
use crate::harness::{TestApp, TestServer};

const MANIFEST: &str = "service: tls\nprovider:\n  runtime: nodejs20.x\n  memorySize: 128\nfunctions:\n  hello:\n    handler: ok.handler\n    events:\n      - httpApi: GET /hello\n  whoami:\n    handler: whoami.handler\n    runtime: python3.11\n    events:\n      - httpApi: GET /whoami\n";
const OK_JS: &str = "exports.handler = async () => ({ statusCode: 200, body: 'ok' });\n";
const WHOAMI_PY: &str = r#"
import json, os
import boto3

def handler(event, context):
    account = boto3.client("sts").get_caller_identity()["Account"]
    return {"statusCode": 200, "body": json.dumps({
        "endpoint": os.environ["AWS_ENDPOINT_URL"], "account": account})}
"#;

fn tls_app() -> TestApp {
    TestApp::new(&[
        ("serverless.yml", MANIFEST),
        ("ok.js", OK_JS),
        ("whoami.py", WHOAMI_PY),
    ])
}

/// Runs a Node.js script with `env`; what it printed, as JSON.
fn run_node(script: &str, env: &[(&str, String)], server: &TestServer) -> Value {
    let mut node = Command::new("node");
    node.args(["-e", script])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    crate::harness::json_output(&mut node, || server.logs())
}

/// Runs a Python script with `env`; what it printed, as JSON.
fn run_python(script: &str, env: &[(&str, String)], server: &TestServer) -> Value {
    let out = Command::new("python3")
        .args(["-c", script])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("running python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}\nnimbus logs:\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.logs()
    );
    serde_json::from_str(stdout.trim()).expect("the script prints JSON")
}

/// `curl --cacert CA URL` with `extra` flags: the body and the HTTP version, or `None`
/// when this machine has no curl.
fn curl(ca: &Path, url: &str, extra: &[&str]) -> Option<(String, String)> {
    let out = match Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(ca)
        .args(extra)
        .args(["-w", " %{http_version}", url])
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            println!("skipping curl: {e}");
            return None;
        }
    };
    assert!(
        out.status.success(),
        "curl {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let (body, version) = text.rsplit_once(' ').expect("body and version");
    Some((body.to_owned(), version.to_owned()))
}

fn https(server: &TestServer) -> String {
    format!("https://{}", server.addr)
}

const NODE_HTTPS: &str = r#"
const https = require('https'), http2 = require('http2'), fs = require('fs');
const ca = fs.readFileSync(process.env.CA);
const endpoint = process.env.ENDPOINT;
const h1 = () => new Promise((resolve, reject) => {
  https.get(endpoint + '/hello', { ca }, (res) => {
    let body = '';
    res.on('data', (c) => body += c);
    res.on('end', () => resolve({ status: res.statusCode, body }));
  }).on('error', reject);
});
const h2 = () => new Promise((resolve, reject) => {
  const client = http2.connect(endpoint, { ca });
  client.on('error', reject);
  const req = client.request({ ':path': '/hello' });
  let status, body = '';
  req.on('response', (headers) => status = headers[':status']);
  req.setEncoding('utf8');
  req.on('data', (c) => body += c);
  req.on('end', () => { client.close(); resolve({ status, body, alpn: client.alpnProtocol }); });
  req.end();
});
const untrusted = () => new Promise((resolve) => {
  https.get(endpoint + '/hello', (res) => resolve(res.statusCode))
    .on('error', (e) => resolve(e.code));
});
(async () => {
  console.log(JSON.stringify({ h1: await h1(), h2: await h2(), untrusted: await untrusted() }));
})().catch((e) => { console.error(e); process.exit(1); });
"#;

const PYTHON_HTTPS: &str = r#"
import json, os, ssl, urllib.error, urllib.request
ctx = ssl.create_default_context(cafile=os.environ["CA"])
with urllib.request.urlopen(os.environ["ENDPOINT"] + "/hello", context=ctx) as res:
    out = {"status": res.status, "body": res.read().decode()}
try:
    urllib.request.urlopen(os.environ["ENDPOINT"] + "/hello")
    out["untrusted"] = "accepted"
except urllib.error.URLError as e:
    out["untrusted"] = type(e.reason).__name__
print(json.dumps(out))
"#;

#[tokio::test]
async fn tls_dev_serves_https_and_http2_to_curl_node_and_python_trusting_its_ca() {
    let app = tls_app();
    let server = TestServer::start(app.path(), &["--tls-dev"]);
    let ca = app.path().join(".nimbus/tls-dev/ca.pem");
    let ca_pem = std::fs::read_to_string(&ca).expect("the CA is kept in .nimbus/tls-dev");
    assert!(ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
    // The banner names the file and its SHA-256, as `openssl x509 -fingerprint` shows it.
    let fingerprint = pem_sha256(&ca_pem);
    let mut banner = String::new();
    for _ in 0..100 {
        banner = server.stdout();
        if banner.contains("clients trust") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        banner.contains(&format!(
            "clients trust {} (SHA-256 {fingerprint})",
            ca.display()
        )),
        "{banner}"
    );
    let url = format!("{}/hello", https(&server));
    if let Some((body, version)) = curl(&ca, &url, &[]) {
        assert_eq!((body.as_str(), version.as_str()), ("ok", "2"));
        let (body, version) = curl(&ca, &url, &["--http1.1"]).expect("curl ran before");
        assert_eq!((body.as_str(), version.as_str()), ("ok", "1.1"));
        let by_name = format!("https://localhost:{}/hello", server.addr.port());
        let (body, _) = curl(&ca, &by_name, &[]).expect("curl ran before");
        assert_eq!(body, "ok");
    }
    let env = [
        ("CA", ca.display().to_string()),
        ("ENDPOINT", https(&server)),
    ];
    let node = run_node(NODE_HTTPS, &env, &server);
    assert_eq!(
        node["h1"],
        serde_json::json!({ "status": 200, "body": "ok" })
    );
    assert_eq!(
        node["h2"],
        serde_json::json!({ "status": 200, "body": "ok", "alpn": "h2" })
    );
    assert_eq!(node["untrusted"], "SELF_SIGNED_CERT_IN_CHAIN");
    let python = run_python(PYTHON_HTTPS, &env, &server);
    assert_eq!(python["status"], 200);
    assert_eq!(python["body"], "ok");
    assert_eq!(python["untrusted"], "SSLCertVerificationError");

    // Plain HTTP on the TLS port gets no HTTP answer.
    assert!(!plain_http_answer(&server).await.starts_with("HTTP/"));
    // A restart keeps the same authority, so clients keep trusting it.
    drop(server);
    let server = TestServer::start(app.path(), &["--tls-dev"]);
    let again = std::fs::read_to_string(&ca).expect("the CA");
    assert_eq!(again, ca_pem);
    let python = run_python(PYTHON_HTTPS, &env_for(&ca, &server), &server);
    assert_eq!(python["body"], "ok");
}

/// What a plain-HTTP request to the server's port gets back before the connection ends.
async fn plain_http_answer(server: &TestServer) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connecting");
    stream
        .write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("writing");
    let mut received = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(15),
        stream.read_to_end(&mut received),
    )
    .await;
    assert!(read.is_ok(), "the connection stayed open");
    String::from_utf8_lossy(&received).into_owned()
}

/// The SHA-256 of a PEM certificate's DER, as `AB:CD:..`.
fn pem_sha256(pem: &str) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let b64: String = pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("PEM holds base64");
    let digest = sha2::Sha256::digest(der);
    let hex: Vec<String> = digest.iter().map(|b| format!("{b:02X}")).collect();
    hex.join(":")
}

fn env_for(ca: &Path, server: &TestServer) -> Vec<(&'static str, String)> {
    vec![
        ("CA", ca.display().to_string()),
        ("ENDPOINT", https(server)),
    ]
}

const BOTO3_OVER_TLS: &str = r#"
import json, os
import boto3
kw = dict(endpoint_url=os.environ["ENDPOINT"], region_name="us-east-1", verify=os.environ["CA"],
          aws_access_key_id="test", aws_secret_access_key="test")
sqs = boto3.client("sqs", **kw)
url = sqs.create_queue(QueueName="secure")["QueueUrl"]
sqs.send_message(QueueUrl=url, MessageBody="over tls")
got = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)["Messages"]
print(json.dumps({"url": url, "body": got[0]["Body"],
                  "account": boto3.client("sts", **kw).get_caller_identity()["Account"]}))
"#;

const SDK_V3_OVER_TLS: &str = r#"
const { SQSClient, GetQueueUrlCommand, ReceiveMessageCommand, SendMessageCommand } = require('@aws-sdk/client-sqs');
const { KinesisClient, CreateStreamCommand, ListStreamsCommand } = require('@aws-sdk/client-kinesis');
const cfg = { endpoint: process.env.ENDPOINT, region: 'us-east-1',
              credentials: { accessKeyId: 'test', secretAccessKey: 'test' } };
(async () => {
  const sqs = new SQSClient(cfg);
  const { QueueUrl } = await sqs.send(new GetQueueUrlCommand({ QueueName: 'secure' }));
  await sqs.send(new SendMessageCommand({ QueueUrl, MessageBody: 'from node' }));
  const got = await sqs.send(new ReceiveMessageCommand({ QueueUrl, WaitTimeSeconds: 1 }));
  const kinesis = new KinesisClient(cfg);
  await kinesis.send(new CreateStreamCommand({ StreamName: 'secure', ShardCount: 1 }));
  const streams = await kinesis.send(new ListStreamsCommand({}));
  console.log(JSON.stringify({ body: got.Messages[0].Body, streams: streams.StreamNames }));
})().catch((e) => { console.error(e); process.exit(1); });
"#;

/// Where `nimbus runtimes install aws-sdk-v3` keeps the SDK's node_modules: it fetches the
/// SDK once, then says where it is.
fn sdk_v3_path(app: &TestApp) -> PathBuf {
    let mut last = String::new();
    for _ in 0..2 {
        let out = app.nimbus(&["runtimes", "install", "aws-sdk-v3"]);
        assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
        if let Some(dir) = out
            .stderr
            .lines()
            .find_map(|line| line.split_once(" is in ").map(|(_, rest)| rest))
            .and_then(|rest| rest.strip_suffix(" already"))
        {
            return PathBuf::from(dir).join("node_modules");
        }
        last = out.stderr;
    }
    panic!("`nimbus runtimes install aws-sdk-v3` did not say where the SDK is:\n{last}");
}

#[tokio::test]
async fn aws_sdks_reach_the_endpoint_over_https_and_functions_over_plain_loopback() {
    let app = tls_app();
    let boto3 = boto3_path(&app);
    let node_modules = sdk_v3_path(&app);
    let server = TestServer::start(app.path(), &["--tls-dev"]);
    let ca = app.path().join(".nimbus/tls-dev/ca.pem");
    let mut env = env_for(&ca, &server);
    let out = run_boto3_with(&boto3, BOTO3_OVER_TLS, &server, &env);
    assert_eq!(out["body"], "over tls");
    assert_eq!(out["account"].as_str().map(str::len), Some(12), "{out}");
    // The queue URL names the scheme and host the client used.
    let url = out["url"].as_str().expect("a queue URL");
    assert!(url.starts_with(&format!("{}/", https(&server))), "{url}");

    env.push(("NODE_PATH", node_modules.display().to_string()));
    env.push(("NODE_EXTRA_CA_CERTS", ca.display().to_string()));
    let node = run_node(SDK_V3_OVER_TLS, &env, &server);
    assert_eq!(node["body"], "from node");
    assert_eq!(node["streams"], serde_json::json!(["secure"]));

    // A function's SDK reaches the AWS endpoint on the gateway's plain loopback twin.
    let (body, _) = curl(&ca, &format!("{}/whoami", https(&server)), &[])
        .unwrap_or_else(|| {
            let python = run_python(
                "import json, os, ssl, urllib.request\nctx = ssl.create_default_context(cafile=os.environ['CA'])\nprint(json.dumps(urllib.request.urlopen(os.environ['ENDPOINT'] + '/whoami', context=ctx).read().decode()))",
                &env_for(&ca, &server),
                &server,
            );
            (python.as_str().unwrap_or_default().to_owned(), String::new())
        });
    let whoami: Value = serde_json::from_str(&body).expect("JSON from whoami");
    assert_eq!(
        whoami["account"].as_str().map(str::len),
        Some(12),
        "{whoami}\n{}",
        server.logs()
    );
    let endpoint = whoami["endpoint"].as_str().expect("AWS_ENDPOINT_URL");
    assert!(endpoint.starts_with("http://127.0.0.1:"), "{endpoint}");
    assert_ne!(endpoint, format!("http://{}", server.addr));
}

#[tokio::test]
async fn tls_cert_and_key_files_serve_https_and_bad_ones_are_refused_clearly() {
    // A certificate and key made by --tls-dev in one app, given as files to another.
    let maker = tls_app();
    let first = TestServer::start(maker.path(), &["--tls-dev"]);
    drop(first);
    let dev = maker.path().join(".nimbus/tls-dev");
    let app = tls_app();
    let cert = dev.join("cert.pem").display().to_string();
    let key = dev.join("key.pem").display().to_string();
    let server = TestServer::start(app.path(), &["--tls-cert", &cert, "--tls-key", &key]);
    let python = run_python(
        PYTHON_HTTPS,
        &env_for(&dev.join("ca.pem"), &server),
        &server,
    );
    assert_eq!(python["body"], "ok");
    drop(server);

    let ca = dev.join("ca.pem").display().to_string();
    let missing = app.path().join("missing.pem").display().to_string();
    for (args, expected) in [
        (vec!["--tls-cert", &cert], "--tls-key"),
        (
            vec!["--tls-cert", &missing, "--tls-key", &key],
            "reading --tls-cert",
        ),
        (
            vec!["--tls-cert", &cert, "--tls-key", &ca],
            "reading the private key",
        ),
        (
            vec!["--tls-cert", &key, "--tls-key", &key],
            "no certificate",
        ),
        (
            vec!["--tls-dev", "--tls-cert", &cert, "--tls-key", &key],
            "cannot be used with",
        ),
    ] {
        let mut full = vec!["up", ".", "--port", "0"];
        full.extend(args.iter().copied());
        let out = app.nimbus(&full);
        assert_ne!(out.code, Some(0), "{args:?}");
        assert!(out.stderr.contains(expected), "{args:?}: {}", out.stderr);
    }
}

/// A `nimbus server` with `args`, stopped (SIGTERM) when dropped.
struct TlsHost {
    child: std::process::Child,
    gateway: std::net::SocketAddr,
    admin: std::net::SocketAddr,
    state: tempfile::TempDir,
}

impl TlsHost {
    fn start(args: &[&str]) -> TlsHost {
        use std::io::BufRead as _;
        let state = tempfile::tempdir().expect("a temp dir");
        let mut child = Command::new(crate::harness::NIMBUS)
            .args(["server", "--port", "0", "--admin-port", "0", "--state"])
            .arg(state.path())
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("starting nimbus server");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = std::io::BufReader::new(stdout).lines();
        let mut address = |marker: &str| -> std::net::SocketAddr {
            let line = lines
                .next()
                .and_then(Result::ok)
                .expect("nimbus server printed its addresses");
            line.split(marker)
                .nth(1)
                .unwrap_or_else(|| panic!("unexpected banner line {line:?}"))
                .trim()
                .parse()
                .expect("an address")
        };
        let gateway = address("listening on https://");
        let admin = address("admin API on https://");
        std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
        TlsHost {
            child,
            gateway,
            admin,
            state,
        }
    }
}

impl Drop for TlsHost {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            crate::harness::signal(self.child.id(), libc::SIGTERM);
            let _ = self.child.wait();
        }
    }
}

#[tokio::test]
async fn nimbus_server_serves_deployed_apps_over_https_with_tls_dev() {
    let host = TlsHost::start(&["--tls-dev"]);
    let state = host.state.path().display().to_string();
    let token = Command::new(crate::harness::NIMBUS)
        .args(["server", "token", "create", "--state", &state])
        .output()
        .expect("making a token");
    let token = String::from_utf8_lossy(&token.stdout).trim().to_owned();
    let app = tls_app();
    let ca = host.state.path().join("tls-dev/ca.pem");
    // The admin API has the gateway's TLS: curl trusting the authority gets the app
    // list with a token and 401 without; a client that does not trust it is refused.
    let admin = format!("https://{}", host.admin);
    let bearer = format!("Authorization: Bearer {token}");
    if let Some((body, version)) = curl(&ca, &format!("{admin}/v1/apps"), &["-H", &bearer]) {
        assert!(body.starts_with('{') || body.starts_with('['), "{body}");
        assert_eq!(version, "2", "ALPN h2 on the admin port too");
        let no_token = Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
            .arg(&ca)
            .arg(format!("{admin}/v1/apps"))
            .output()
            .expect("curl");
        assert_eq!(String::from_utf8_lossy(&no_token.stdout), "401");
        let untrusted = Command::new("curl")
            .args(["-sS", &format!("{admin}/v1/apps")])
            .output()
            .expect("curl");
        assert!(
            !untrusted.status.success(),
            "curl without --cacert is refused"
        );
    }
    let refused = Command::new(crate::harness::NIMBUS)
        .args(["deploy", ".", "--to", &admin, "--token", &token])
        .current_dir(app.path())
        .env_remove("NIMBUS_TOKEN")
        .env("SSL_CERT_FILE", "/nonexistent")
        .output()
        .expect("running nimbus deploy");
    let refused_err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && refused_err.contains("TLS"),
        "a deploy that does not trust the server's authority fails: {refused_err}"
    );
    let ca_arg = ca.display().to_string();
    let deployed = Command::new(crate::harness::NIMBUS)
        .args([
            "deploy", ".", "--to", &admin, "--cacert", &ca_arg, "--token", &token,
        ])
        .current_dir(app.path())
        .env_remove("NIMBUS_TOKEN")
        .output()
        .expect("running nimbus deploy");
    assert!(
        deployed.status.success(),
        "{}{}",
        String::from_utf8_lossy(&deployed.stdout),
        String::from_utf8_lossy(&deployed.stderr)
    );
    let script = r#"
import json, os, ssl, urllib.request
ctx = ssl.create_default_context(cafile=os.environ["CA"])
def get(path):
    with urllib.request.urlopen(os.environ["ENDPOINT"] + path, context=ctx) as res:
        return res.read().decode()
print(json.dumps({"hello": get("/tls/dev/hello"), "whoami": json.loads(get("/tls/dev/whoami"))}))
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .env("CA", &ca)
        .env("ENDPOINT", format!("https://{}", host.gateway))
        .output()
        .expect("running python3");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(got["hello"], "ok");
    // The deployed function's SDK reaches the AWS endpoint on the plain loopback twin.
    let endpoint = got["whoami"]["endpoint"]
        .as_str()
        .expect("AWS_ENDPOINT_URL");
    assert!(endpoint.starts_with("http://127.0.0.1:"), "{endpoint}");
    assert_eq!(got["whoami"]["account"].as_str().map(str::len), Some(12));
}
