//! Lambda's Invoke API on the AWS endpoint (issue 12): `@aws-sdk/client-lambda` inside a
//! function and boto3 outside invoke functions by name, Lambda name or ARN, sync and
//! async, with Lambda's error shapes.

use serde_json::json;

use crate::harness::{TestApp, TestServer};

const MANIFEST: &str = r#"
service: shop
provider:
  runtime: nodejs20.x
functions:
  caller:
    handler: caller.handler
    iamRoleStatements:
      - Effect: Allow
        Action: [lambda:InvokeFunction]
        Resource: arn:aws:lambda:${aws:region}:*:function:${self:service}-${sls:stage}-worker
  worker:
    handler: worker.handler
  stranger:
    handler: caller.stranger
"#;

const CALLER_JS: &str = r#"
const { LambdaClient, InvokeCommand } = require('@aws-sdk/client-lambda');
const lambda = new LambdaClient({});
const decode = (bytes) => JSON.parse(Buffer.from(bytes).toString());

exports.handler = async () => {
  const sync = await lambda.send(new InvokeCommand({
    FunctionName: 'shop-dev-worker', Payload: JSON.stringify({ n: 20 }) }));
  const failed = await lambda.send(new InvokeCommand({
    FunctionName: 'worker', Payload: JSON.stringify({ fail: true }) }));
  const queued = await lambda.send(new InvokeCommand({
    FunctionName: 'worker', InvocationType: 'Event', Payload: JSON.stringify({ n: 1 }) }));
  return {
    sync: decode(sync.Payload), status: sync.StatusCode,
    failed: { error: failed.FunctionError, type: decode(failed.Payload).errorType },
    queued: queued.StatusCode,
  };
};

exports.stranger = async () => {
  try {
    await lambda.send(new InvokeCommand({ FunctionName: 'worker', Payload: '{}' }));
    return { invoked: true };
  } catch (e) {
    return { name: e.name, status: e.$metadata.httpStatusCode };
  }
};
"#;

const WORKER_JS: &str = r#"
exports.handler = async (event) => {
  if (event.chatty) console.log('line %d of the worker', event.n);
  if (event.fail) throw new TypeError('bad order');
  return { doubled: event.n * 2 };
};
"#;

#[tokio::test]
async fn functions_invoke_functions_through_the_lambda_sdk_within_their_grants() {
    let app = TestApp::new(&[
        ("serverless.yml", MANIFEST),
        ("caller.js", CALLER_JS),
        ("worker.js", WORKER_JS),
    ]);
    let server = TestServer::start(app.path(), &[]);
    let out = server.invoke_ok(app.path(), "caller", &json!({})).await;
    assert_eq!(
        out,
        json!({
            "sync": { "doubled": 40 }, "status": 200,
            "failed": { "error": "Unhandled", "type": "TypeError" },
            "queued": 202,
        })
    );
    let refused = server.invoke_ok(app.path(), "stranger", &json!({})).await;
    assert_eq!(
        refused,
        json!({ "name": "AccessDeniedException", "status": 403 })
    );
}

const SCRIPT: &str = r#"
import json, os
import boto3
from botocore.exceptions import ClientError

lam = boto3.client("lambda", endpoint_url=os.environ["ENDPOINT"], region_name="us-east-1",
                   aws_access_key_id="test", aws_secret_access_key="test")
out = {}
res = lam.invoke(FunctionName="arn:aws:lambda:us-east-1:123456789012:function:worker",
                 Payload=json.dumps({"n": 4}))
out["result"] = json.loads(res["Payload"].read())
# LogType Tail: the end of the invocation's log, base64, as Lambda answers it.
import base64
tail = lam.invoke(FunctionName="worker", LogType="Tail",
                  Payload=json.dumps({"n": 5, "chatty": True}))
out["tail"] = base64.b64decode(tail["LogResult"]).decode()
out["tail_id"] = tail["ResponseMetadata"]["RequestId"]
out["no_tail"] = "LogResult" in res
out["names"] = sorted(f["FunctionName"] for f in lam.list_functions()["Functions"])
out["runtime"] = lam.get_function(FunctionName="worker")["Configuration"]["Runtime"]
for bad in [lambda: lam.invoke(FunctionName="nope", Payload=b"{}"),
            lambda: lam.invoke(FunctionName="worker", Payload=b"not json")]:
    try:
        bad()
        out.setdefault("errors", []).append(None)
    except ClientError as e:
        out.setdefault("errors", []).append(e.response["Error"]["Code"])
print(json.dumps(out))
"#;

#[tokio::test]
async fn boto3_invokes_lists_and_gets_lambdas_errors_from_outside() {
    let app = TestApp::new(&[
        ("serverless.yml", MANIFEST),
        ("caller.js", CALLER_JS),
        ("worker.js", WORKER_JS),
    ]);
    let boto3 = crate::aws_sqs::boto3_path(&app);
    let server = TestServer::start(app.path(), &[]);
    let out = crate::aws_sqs::run_boto3(&boto3, SCRIPT, &server);
    assert_eq!(out["result"], json!({ "doubled": 8 }));
    let tail = out["tail"].as_str().expect("a log tail");
    let id = out["tail_id"].as_str().expect("a request id");
    assert!(
        tail.starts_with(&format!("START RequestId: {id}")),
        "{tail}"
    );
    assert!(tail.contains("line 5 of the worker"), "{tail}");
    assert!(tail.contains(&format!("REPORT RequestId: {id}")), "{tail}");
    assert_eq!(out["no_tail"], false);
    assert_eq!(out["names"], json!(["caller", "stranger", "worker"]));
    assert_eq!(out["runtime"], "nodejs20.x");
    assert_eq!(
        out["errors"],
        json!([
            "ResourceNotFoundException",
            "InvalidRequestContentException"
        ])
    );
}
