//! Serverless Framework apps as people write them (issue 11): the framework's defaults,
//! stage parameters, variable files, `${cf:..}` and Lift constructs, run unchanged.

use std::time::Duration;

use crate::harness::{TestApp, TestServer};

/// A Lift app in the style of the Lift docs' examples: an HTTP function queues jobs, a
/// worker takes them, stores a result in a storage construct and fails the poison one
/// (which reaches the dead-letter queue after `maxRetries`).
const MANIFEST: &str = r#"
service: jobs
frameworkVersion: '3'
plugins:
  - serverless-lift
params:
  default:
    greeting: hello
provider:
  name: aws
  runtime: nodejs20.x
  environment:
    STAGE: ${opt:stage, self:provider.stage}
    REGION: ${opt:region, self:provider.region}
    QUEUE_URL: ${construct:jobs.queueUrl}
    BUCKET: ${construct:results.bucketName}
    GREETING: ${param:greeting}
    LIMIT: ${file(./config.${sls:stage}.json):limit}
constructs:
  jobs:
    type: queue
    maxRetries: 1
    worker:
      handler: worker.handler
      # Lift sets the queue's visibility timeout to 6x this: a failed job is retried
      # (and here dead-lettered) after 6 s.
      timeout: 1
  results:
    type: storage
functions:
  submit:
    handler: api.submit
    events:
      - http: { path: jobs, method: post }
  result:
    handler: api.result
    events:
      - http: { path: 'jobs/{id}', method: get }
"#;

const API_JS: &str = r#"
const nimbus = require('nimbus');
exports.submit = async (event) => {
  const job = JSON.parse(event.body);
  await nimbus.queue(process.env.QUEUE_URL).send(job);
  return {
    statusCode: 202,
    body: JSON.stringify({
      queued: job.id,
      stage: process.env.STAGE,
      region: process.env.REGION,
      greeting: process.env.GREETING,
      limit: process.env.LIMIT,
    }),
  };
};
exports.result = async (event) => {
  // The client answers a missing key with null.
  const obj = await nimbus.bucket(process.env.BUCKET).get(`results/${event.pathParameters.id}`);
  if (!obj) return { statusCode: 404, body: JSON.stringify({ message: 'not yet' }) };
  return { statusCode: 200, body: obj.body.toString() };
};
"#;

const WORKER_JS: &str = r#"
const nimbus = require('nimbus');
exports.handler = async (event) => {
  for (const record of event.Records) {
    const job = JSON.parse(record.body);
    if (job.poison) throw new Error('poison job');
    await nimbus.bucket(process.env.BUCKET).put(`results/${job.id}`, JSON.stringify({ done: job.id, twice: job.n * 2 }));
  }
};
"#;

fn app() -> TestApp {
    TestApp::new(&[
        ("serverless.yml", MANIFEST),
        ("api.js", API_JS),
        ("worker.js", WORKER_JS),
        ("config.dev.json", r#"{ "limit": 25 }"#),
    ])
}

#[tokio::test]
async fn a_lift_queue_app_runs_unchanged_with_the_frameworks_defaults() {
    let app = app();
    let validate = app.nimbus(&["validate"]);
    assert_eq!(
        validate.code,
        Some(0),
        "{}{}",
        validate.stdout,
        validate.stderr
    );
    assert!(
        !validate.stderr.contains("serverless-lift"),
        "Lift is stood in for, not warned about: {}",
        validate.stderr
    );
    let server = TestServer::start(app.path(), &[]);
    let res = server
        .request("POST", "/dev/jobs", &[], br#"{"id":"j1","n":21}"#.to_vec())
        .await;
    assert_eq!(res.status, 202, "{}", res.text());
    let body = res.json();
    assert_eq!(body["stage"], "dev");
    assert_eq!(body["region"], "us-east-1");
    assert_eq!(body["greeting"], "hello");
    assert_eq!(body["limit"], "25");
    let mut result = None;
    for _ in 0..200 {
        let res = server.get("/dev/jobs/j1").await;
        if res.status == 200 {
            result = Some(res.json());
            break;
        }
        assert_eq!(res.status, 404, "{}", res.text());
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let result = result.expect("the worker stored the result");
    assert_eq!(result["done"], "j1");
    assert_eq!(result["twice"], 42);

    // A job that always fails goes to the construct's dead-letter queue after maxRetries.
    let res = server
        .request(
            "POST",
            "/jobs",
            &[],
            br#"{"id":"bad","poison":true}"#.to_vec(),
        )
        .await;
    assert_eq!(res.status, 202, "{}", res.text());
    let dlq = app
        .nimbus_until(&["queue", "receive", "jobs-dev-jobs-dlq"], |out| {
            out.contains("poison")
        })
        .await;
    assert!(dlq.contains("bad"), "{dlq}");
}

#[test]
fn framework_errors_keep_their_meaning() {
    // The Framework refuses an option that is not given and has no fallback; so does nimbus.
    let app = TestApp::new(&[
        (
            "serverless.yml",
            "service: s\nprovider:\n  runtime: nodejs20.x\n  environment:\n    KEY: ${opt:apiKey}\nfunctions:\n  f: { handler: f.handler }\n",
        ),
        ("f.js", "exports.handler = async () => 1;\n"),
    ]);
    let out = app.nimbus(&["validate"]);
    assert_eq!(out.code, Some(1), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr
            .contains("cannot resolve `${opt:apiKey}`: option `--apiKey` was not given"),
        "{}",
        out.stderr
    );
    let out = app.nimbus(&["validate", "--region", "eu-west-1"]);
    assert_eq!(out.code, Some(1), "--region is accepted: {}", out.stderr);
}

// Lift's static-website and single-page-app constructs: files where no route matches.
#[tokio::test]
async fn static_website_and_single_page_app_constructs_serve_their_folders() {
    let manifest = r#"
service: site
plugins: [serverless-lift]
provider:
  runtime: nodejs20.x
constructs:
  landing:
    type: static-website
    path: public
  app:
    type: single-page-app
    path: dist
functions:
  api:
    handler: api.handler
    events:
      - httpApi: GET /api/hello
"#;
    let app = TestApp::new(&[
        ("serverless.yml", manifest),
        (
            "api.js",
            "exports.handler = async () => ({ statusCode: 200, body: 'from the function' });\n",
        ),
        ("public/index.html", "<h1>landing</h1>"),
        ("public/css/site.css", "body { color: red }"),
        ("dist/index.html", "<div id=app></div>"),
        ("dist/main.js", "console.log('app')"),
        ("secret.txt", "outside the sites"),
    ]);
    let server = TestServer::start(app.path(), &[]);
    let res = server.get("/").await;
    assert_eq!((res.status, res.text().as_str()), (200, "<h1>landing</h1>"));
    assert_eq!(res.header("content-type"), Some("text/html; charset=utf-8"));
    let res = server.get("/css/site.css").await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("content-type"), Some("text/css; charset=utf-8"));
    assert_eq!(server.get("/api/hello").await.text(), "from the function");
    assert_eq!(server.get("/nope.html").await.status, 404);
    // The single-page app at /app: files, and its page for every other path.
    assert_eq!(
        server.get("/app/main.js").await.text(),
        "console.log('app')"
    );
    let res = server.get("/app/orders/42").await;
    assert_eq!(
        (res.status, res.text().as_str()),
        (200, "<div id=app></div>")
    );
    for path in [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/css/..%2F..%2Fsecret.txt",
    ] {
        let res = server.get(path).await;
        assert!(
            !res.text().contains("outside"),
            "{path} leaked: {}",
            res.text()
        );
    }
    assert_eq!(
        server.request("POST", "/", &[], Vec::new()).await.status,
        404
    );

    let missing = TestApp::new(&[
        ("serverless.yml", manifest),
        (
            "api.js",
            "exports.handler = async () => ({ statusCode: 200 });\n",
        ),
        ("public/index.html", "x"),
    ]);
    let out = missing.nimbus(&["validate"]);
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr
            .contains("serverless.yml:12:1: constructs.app.path: the folder"),
        "{}",
        out.stderr
    );
}
