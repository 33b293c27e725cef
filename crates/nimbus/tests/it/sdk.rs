//! The AWS SDKs Lambda's runtimes provide: Node.js functions find `@aws-sdk/*` (v3) and
//! `aws-sdk` (v2), Python functions `boto3`, without bundling them; nimbus fetches them
//! once into the user's package cache (issue 11, part 3).
//!
//! These tests use the real cache (`NIMBUS_SDK_CACHE` or `~/.cache/nimbus/sdk`), so only
//! the first run on a machine reaches the registries; the tests of failures use empty
//! caches of their own and a registry address on loopback that nothing answers.

use serde_json::{Value, json};

use crate::harness::{TestApp, TestServer};

/// POST /2015-03-31/functions/{name}/invocations: (function error header, payload).
async fn invoke(server: &TestServer, app: &TestApp, name: &str, event: Value) -> (bool, Value) {
    let res = server
        .admin_json(
            app.path(),
            "POST",
            &format!("/2015-03-31/functions/{name}/invocations"),
            &event.to_string(),
        )
        .await;
    assert_eq!(res.status, 200, "{name}: {}", res.text());
    (res.header("x-amz-function-error").is_some(), res.json())
}

const SDK_MANIFEST: &str = r#"
service: orders
provider:
  runtime: nodejs20.x
  memorySize: 256
  timeout: 10
functions:
  store:
    handler: src/store.handler
  notify:
    handler: src/notify.handler
  legacy:
    handler: legacy/archive.handler
  report:
    handler: reports/daily.handler
    runtime: python3.12
"#;

/// An order service as people write one for Lambda: SDK clients made at module scope,
/// no package.json of its own.
fn sdk_app() -> TestApp {
    TestApp::new(&[
        ("serverless.yml", SDK_MANIFEST),
        (
            "src/store.js",
            r#"const { S3Client, PutObjectCommand } = require('@aws-sdk/client-s3');
const { DynamoDBClient } = require('@aws-sdk/client-dynamodb');
const { DynamoDBDocumentClient } = require('@aws-sdk/lib-dynamodb');

const s3 = new S3Client({ region: process.env.AWS_REGION });
const db = DynamoDBDocumentClient.from(new DynamoDBClient({}));

exports.handler = async (event) => {
  const command = new PutObjectCommand({ Bucket: 'orders', Key: `${event.id}.json`, Body: '{}' });
  return {
    region: await s3.config.region(),
    command: command.constructor.name,
    canSend: typeof db.send,
    from: require.resolve('@aws-sdk/client-s3'),
  };
};
"#,
        ),
        (
            "src/notify.mjs",
            r#"import { SNSClient, PublishCommand } from '@aws-sdk/client-sns';
import { SQSClient } from '@aws-sdk/client-sqs';

const sns = new SNSClient({});
const sqs = new SQSClient({ region: 'eu-west-1' });

export const handler = async () => ({
  command: new PublishCommand({ TopicArn: 'arn:aws:sns:us-east-1:123456789012:orders', Message: 'hi' }).constructor.name,
  snsRegion: await sns.config.region(),
  sqsRegion: await sqs.config.region(),
  from: import.meta.resolve('@aws-sdk/client-sns'),
});
"#,
        ),
        (
            "legacy/archive.js",
            r#"const AWS = require('aws-sdk');

exports.handler = async () => {
  const s3 = new AWS.S3({ apiVersion: '2006-03-01' });
  return { version: AWS.VERSION, canPut: typeof s3.putObject, from: require.resolve('aws-sdk') };
};
"#,
        ),
        // The app brings its own SQS client (a stand-in): it wins over the cache's, in an
        // ES module too, where the resolve hook is on.
        (
            "node_modules/@aws-sdk/client-sqs/package.json",
            r#"{ "name": "@aws-sdk/client-sqs", "version": "3.0.0-own", "main": "index.js" }"#,
        ),
        (
            "node_modules/@aws-sdk/client-sqs/index.js",
            "class SQSClient { constructor(cfg) { this.config = { region: async () => `own-${cfg.region}` }; } }\nmodule.exports = { SQSClient };\n",
        ),
        (
            "reports/daily.py",
            r#"import os

import boto3
from botocore.exceptions import ClientError

s3 = boto3.client("s3")


def handler(event, context):
    return {
        "region": s3.meta.region_name,
        "service": s3.meta.service_model.service_name,
        "error": ClientError.__name__,
        "from": boto3.__file__,
        "version": boto3.__version__,
    }
"#,
        ),
    ])
}

#[tokio::test]
async fn functions_construct_sdk_v3_v2_and_boto3_clients_without_bringing_the_sdks() {
    let app = sdk_app();
    let server = TestServer::start(app.path(), &[]);

    let (failed, store) = invoke(&server, &app, "store", json!({ "id": 7 })).await;
    assert!(!failed, "{store}");
    assert_eq!(store["region"], "us-east-1");
    assert_eq!(store["command"], "PutObjectCommand");
    assert_eq!(store["canSend"], "function");
    let from = store["from"].as_str().expect("a path");
    assert!(
        from.contains("/node/aws-sdk-v3/node_modules/@aws-sdk/client-s3/"),
        "{from}"
    );

    // ES modules ignore NODE_PATH; the bootstrap's resolve hook finds the cache.
    let (failed, notify) = invoke(&server, &app, "notify", json!({})).await;
    assert!(!failed, "{notify}");
    assert_eq!(notify["command"], "PublishCommand");
    assert_eq!(notify["snsRegion"], "us-east-1");
    assert_eq!(notify["sqsRegion"], "own-eu-west-1");
    let from = notify["from"].as_str().expect("a URL");
    assert!(
        from.contains("/node/aws-sdk-v3/node_modules/@aws-sdk/client-sns/"),
        "{from}"
    );

    let (failed, legacy) = invoke(&server, &app, "legacy", json!({})).await;
    assert!(!failed, "{legacy}");
    assert!(
        legacy["version"]
            .as_str()
            .is_some_and(|v| v.starts_with("2.")),
        "{legacy}"
    );
    assert_eq!(legacy["canPut"], "function");

    // This machine's python3 may have a boto3 of its own; the function gets the cache's.
    let (failed, report) = invoke(&server, &app, "report", json!({})).await;
    assert!(!failed, "{report}");
    assert_eq!(report["region"], "us-east-1");
    assert_eq!(report["service"], "s3");
    assert_eq!(report["error"], "ClientError");
    let from = report["from"].as_str().expect("a path");
    assert!(from.contains("/boto3/boto3/__init__.py"), "{from}");

    let logs = server.logs();
    assert!(
        logs.contains("warning: legacy/archive.js requires `aws-sdk` (the v2 SDK), which Lambda's nodejs20.x runtime does not provide"),
        "{logs}"
    );
}

#[tokio::test]
async fn a_functions_own_packages_win_over_the_provided_sdks() {
    // Vendored copies, as `npm install` and `pip install -t .` leave them: nothing needs
    // fetching, and the function's own copy is the one it gets.
    let manifest = "service: own
provider:
  runtime: nodejs20.x
  timeout: 10
functions:
  cjs:
    handler: api.handler
  esm:
    handler: worker.handler
  py:
    handler: job.handler
    runtime: python3.12
";
    let own_s3 =
        "class S3Client { constructor() { this.own = true; } }\nmodule.exports = { S3Client };\n";
    let app = TestApp::new(&[
        ("nimbus.yaml", manifest),
        (
            "api.js",
            "const { S3Client } = require('@aws-sdk/client-s3');\nexports.handler = async () => ({ own: new S3Client({}).own === true });\n",
        ),
        (
            "worker.mjs",
            "import { S3Client } from '@aws-sdk/client-s3';\nexport const handler = async () => ({ own: new S3Client({}).own === true });\n",
        ),
        (
            "job.py",
            "import boto3\n\ndef handler(event, context):\n    return {'own': boto3.OWN}\n",
        ),
        (
            "node_modules/@aws-sdk/client-s3/package.json",
            r#"{ "name": "@aws-sdk/client-s3", "version": "3.0.0-own", "main": "index.js" }"#,
        ),
        ("node_modules/@aws-sdk/client-s3/index.js", own_s3),
        ("boto3/__init__.py", "OWN = True\n"),
    ]);
    let empty_cache = tempfile::tempdir().expect("a temp dir");
    let cache = empty_cache.path().to_str().expect("a UTF-8 path");
    let server = TestServer::start_with_env(app.path(), &[], &[("NIMBUS_SDK_CACHE", cache)]);
    for name in ["cjs", "esm", "py"] {
        let (failed, res) = invoke(&server, &app, name, json!({})).await;
        assert!(!failed, "{name}: {res}");
        assert_eq!(res["own"], true, "{name}: {res}");
    }
    assert!(!server.logs().contains("fetching"), "{}", server.logs());
    assert_eq!(
        std::fs::read_dir(empty_cache.path())
            .map(|d| d.count())
            .unwrap_or(0),
        0,
        "nothing was fetched into the cache"
    );
}

#[tokio::test]
async fn functions_that_import_no_sdk_get_no_fallback_paths() {
    // The cold start of a function that imports no provided package stays as it was: no
    // extra NODE_PATH entries and no resolve hook (NIMBUS_NODE_FALLBACK unset).
    let app = TestApp::new(&[
        (
            "nimbus.yaml",
            "service: plain\nprovider:\n  runtime: nodejs20.x\nfunctions:\n  env:\n    handler: env.handler\n",
        ),
        (
            "env.mjs",
            "export const handler = async () => ({ nodePath: process.env.NODE_PATH, fallback: process.env.NIMBUS_NODE_FALLBACK ?? null });\n",
        ),
    ]);
    let server = TestServer::start(app.path(), &[]);
    let (failed, res) = invoke(&server, &app, "env", json!({})).await;
    assert!(!failed, "{res}");
    assert_eq!(res["fallback"], Value::Null);
    let node_path = res["nodePath"].as_str().expect("NODE_PATH");
    assert!(!node_path.contains(':'), "{node_path}");
    assert!(
        node_path.ends_with(".nimbus/runtime/node_modules"),
        "{node_path}"
    );
}

#[test]
fn an_unreachable_npm_registry_fails_the_load_with_npms_message_and_what_to_do() {
    let app = TestApp::new(&[
        (
            "nimbus.yaml",
            "service: offline\nprovider:\n  runtime: nodejs20.x\nfunctions:\n  api:\n    handler: api.handler\n",
        ),
        (
            "api.js",
            "const { SQSClient } = require('@aws-sdk/client-sqs');\nexports.handler = async () => 'ok';\n",
        ),
    ]);
    let cache = tempfile::tempdir().expect("a temp dir");
    let out = app.nimbus_with_env(
        &["up", ".", "--port", "0"],
        &[
            ("NIMBUS_SDK_CACHE", cache.path().to_str().expect("UTF-8")),
            // Port 9 (discard) on loopback: refused at once, no traffic leaves the machine.
            ("npm_config_registry", "http://127.0.0.1:9/"),
            ("npm_config_fetch_retries", "0"),
            (
                "npm_config_cache",
                cache.path().join("npm").to_str().expect("UTF-8"),
            ),
            ("npm_config_prefer_online", "true"),
        ],
    );
    assert_eq!(out.code, Some(1), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr
            .contains("nimbus: fetching the AWS SDK for JavaScript v3 (@aws-sdk/*) into "),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("`npm install @aws-sdk/client-s3 "),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("ECONNREFUSED"), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("run `nimbus runtimes install` when the registry is reachable"),
        "{}",
        out.stderr
    );
    // Nothing half-installed is left to be taken for a complete set later.
    let node_dir = cache.path().join("node");
    let leftovers: Vec<String> = std::fs::read_dir(&node_dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.ends_with(".lock"))
                .collect()
        })
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn an_unreachable_package_index_fails_the_load_with_pips_message() {
    let app = TestApp::new(&[
        (
            "nimbus.yaml",
            "service: offline\nprovider:\n  runtime: python3.12\nfunctions:\n  job:\n    handler: job.handler\n",
        ),
        (
            "job.py",
            "import boto3\n\ndef handler(event, context):\n    return 1\n",
        ),
    ]);
    let cache = tempfile::tempdir().expect("a temp dir");
    let no_wheels = tempfile::tempdir().expect("a temp dir");
    let out = app.nimbus_with_env(
        &["up", ".", "--port", "0"],
        &[
            ("NIMBUS_SDK_CACHE", cache.path().to_str().expect("UTF-8")),
            ("PIP_INDEX_URL", "http://127.0.0.1:9/simple"),
            ("PIP_FIND_LINKS", no_wheels.path().to_str().expect("UTF-8")),
            ("PIP_RETRIES", "0"),
            ("PIP_TIMEOUT", "2"),
            ("PIP_NO_CACHE_DIR", "1"),
        ],
    );
    assert_eq!(out.code, Some(1), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr
            .contains("fetching the AWS SDK for Python (boto3)"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("`pip install boto3` failed"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("No matching distribution found for boto3"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("nimbus runtimes install"),
        "{}",
        out.stderr
    );
}

#[test]
fn validate_warns_about_sdk_packages_nimbus_does_not_provide() {
    let app = TestApp::new(&[
        (
            "nimbus.yaml",
            "service: metrics\nprovider:\n  runtime: nodejs20.x\nfunctions:\n  put:\n    handler: put.handler\n  rollup:\n    handler: rollup.handler\n    runtime: python3.12\n",
        ),
        ("rollup.py", "def handler(event, context):\n    return 1\n"),
        // A virtual environment in the app folder is not the app's code: the boto3 its
        // packages import needs nothing from the cache.
        ("venv/pyvenv.cfg", "home = /usr/bin\n"),
        (
            "venv/lib/python3.12/site-packages/tool/cli.py",
            "import boto3\n",
        ),
        (
            "put.js",
            "const { CloudWatchClient } = require('@aws-sdk/client-cloudwatch');\nexports.handler = async () => 'ok';\n",
        ),
    ]);
    let cache = tempfile::tempdir().expect("a temp dir");
    // Without `--no-load`, validate also loads put.js, whose import then fails (an error).
    let out = app.nimbus_with_env(
        &["validate", "--no-load"],
        &[("NIMBUS_SDK_CACHE", cache.path().to_str().expect("UTF-8"))],
    );
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("warning: put.js imports @aws-sdk/client-cloudwatch, which is not among the AWS SDK v3 packages nimbus provides (client-s3, client-sqs"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("add it to the app's package.json and run `npm install`"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("fetching"), "{}", out.stderr);
    assert!(!out.stderr.contains("boto3"), "{}", out.stderr);
    assert!(out.stdout.contains(": empty"), "{}", out.stdout);
}

#[test]
fn two_installs_at_once_leave_one_complete_set_and_validate_reports_its_version() {
    let app = TestApp::new(&[
        (
            "nimbus.yaml",
            "service: tools\nprovider:\n  runtime: nodejs20.x\nfunctions:\n  api:\n    handler: api.handler\n",
        ),
        ("api.js", "exports.handler = async () => 'ok';\n"),
    ]);
    let cache = tempfile::tempdir().expect("a temp dir");
    let cache_dir = cache.path().to_str().expect("UTF-8");
    let env = [("NIMBUS_SDK_CACHE", cache_dir)];
    let outs: Vec<_> = std::thread::scope(|scope| {
        let runs: Vec<_> = (0..2)
            .map(|_| scope.spawn(|| app.nimbus_with_env(&["runtimes", "install", "esbuild"], &env)))
            .collect();
        runs.into_iter()
            .map(|run| run.join().expect("the install thread"))
            .collect()
    });
    for out in &outs {
        assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
        assert!(out.stdout.contains("esbuild: esbuild 0."), "{}", out.stdout);
    }
    let fetched = outs
        .iter()
        .filter(|o| o.stderr.contains("nimbus: fetching esbuild into"))
        .count();
    assert!(fetched >= 1, "one of them fetched");
    let entries: Vec<String> = std::fs::read_dir(cache.path().join("node"))
        .expect("the node folder")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".lock"))
        .collect();
    assert_eq!(entries, ["esbuild"]);

    let out = app.nimbus_with_env(&["validate"], &env);
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains(&format!("package cache {cache_dir}:")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("  esbuild: esbuild 0."),
        "{}",
        out.stdout
    );

    let out = app.nimbus_with_env(&["runtimes", "install", "left-pad"], &env);
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains(
            "unknown package set `left-pad`: expected one of aws-sdk-v3, aws-sdk-v2, boto3, esbuild"
        ),
        "{}",
        out.stderr
    );
}
