//! SQS through the AWS SDKs, unchanged (issue 12): functions use `@aws-sdk/client-sqs` and
//! boto3 with no endpoint in their code, signing as themselves so their grants apply, and
//! a boto3 script from outside reaches the same queues.

use std::process::Command;

use serde_json::{Value, json};

use crate::harness::{TestApp, TestServer};

const MANIFEST: &str = r#"
service: orders
provider:
  runtime: nodejs20.x
  timeout: 10
  iam:
    role:
      statements:
        - Effect: Allow
          Action: [sqs:SendMessage, sqs:GetQueueUrl, sqs:GetQueueAttributes]
          Resource: !GetAtt Orders.Arn
functions:
  node:
    handler: node.handler
  python:
    handler: py.handler
    runtime: python3.12
  reader:
    handler: node.reader
    iamRoleStatements:
      - Effect: Allow
        Action: [sqs:ReceiveMessage, sqs:DeleteMessage, sqs:ChangeMessageVisibility]
        Resource: arn:aws:sqs:*:*:orders
  outsider:
    handler: node.outsider
resources:
  Resources:
    Orders:
      Type: AWS::SQS::Queue
      Properties: { QueueName: orders }
    Other:
      Type: AWS::SQS::Queue
      Properties: { QueueName: other }
"#;

const NODE_JS: &str = r#"
const { SQSClient, GetQueueUrlCommand, SendMessageCommand, SendMessageBatchCommand,
  ReceiveMessageCommand, DeleteMessageCommand } = require('@aws-sdk/client-sqs');
const sqs = new SQSClient({});

exports.handler = async (event) => {
  const { QueueUrl } = await sqs.send(new GetQueueUrlCommand({ QueueName: 'orders' }));
  const one = await sqs.send(new SendMessageCommand({
    QueueUrl,
    MessageBody: JSON.stringify({ id: event.id }),
    MessageAttributes: { kind: { DataType: 'String', StringValue: 'order' } },
  }));
  const batch = await sqs.send(new SendMessageBatchCommand({
    QueueUrl,
    Entries: [{ Id: 'a', MessageBody: 'batch-a' }, { Id: 'b', MessageBody: 'batch-b' }],
  }));
  return { QueueUrl, messageId: one.MessageId, md5: one.MD5OfMessageBody, batch: batch.Successful.length };
};

exports.reader = async () => {
  const { QueueUrl } = { QueueUrl: `${process.env.AWS_ENDPOINT_URL}/123456789012/orders` };
  const bodies = [];
  for (let i = 0; i < 5 && bodies.length < 4; i++) {
    const res = await sqs.send(new ReceiveMessageCommand({
      QueueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1,
      MessageAttributeNames: ['All'], MessageSystemAttributeNames: ['ApproximateReceiveCount'],
    }));
    for (const m of res.Messages || []) {
      bodies.push({ body: m.Body, kind: m.MessageAttributes?.kind?.StringValue ?? null,
        count: m.Attributes?.ApproximateReceiveCount });
      await sqs.send(new DeleteMessageCommand({ QueueUrl, ReceiptHandle: m.ReceiptHandle }));
    }
  }
  return bodies.sort((x, y) => x.body.localeCompare(y.body));
};

exports.outsider = async () => {
  try {
    await sqs.send(new SendMessageCommand({
      QueueUrl: `${process.env.AWS_ENDPOINT_URL}/123456789012/other`, MessageBody: 'x' }));
    return { sent: true };
  } catch (e) {
    return { name: e.name, status: e.$metadata?.httpStatusCode, message: e.message };
  }
};
"#;

const PY: &str = r#"
import os

import boto3

sqs = boto3.client("sqs")


def handler(event, context):
    url = sqs.get_queue_url(QueueName="orders")["QueueUrl"]
    sent = sqs.send_message(QueueUrl=url, MessageBody="from-python")
    try:
        sqs.send_message(QueueUrl=url.replace("/orders", "/nope"), MessageBody="x")
        missing = None
    except sqs.exceptions.ClientError as e:
        missing = e.response["Error"]["Code"]
    # The function's own key with a wrong secret: the signature does not match.
    forged = boto3.client("sqs", aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key="not-the-secret")
    try:
        forged.send_message(QueueUrl=url, MessageBody="forged")
        forged_error = None
    except forged.exceptions.ClientError as e:
        forged_error = [e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]]
    identity = boto3.client("sts").get_caller_identity()
    return {"url": url, "md5": sent["MD5OfMessageBody"], "missing": missing,
            "forged": forged_error, "boto3": boto3.__version__,
            "identity": [identity["Account"], identity["Arn"]]}
"#;

#[tokio::test]
async fn functions_reach_queues_through_the_aws_sdks_with_their_own_grants() {
    let app = TestApp::new(&[
        ("serverless.yml", MANIFEST),
        ("node.js", NODE_JS),
        ("py.py", PY),
    ]);
    let server = TestServer::start(app.path(), &[]);
    let sent = server
        .invoke_ok(app.path(), "node", &json!({ "id": 7 }))
        .await;
    let url = format!("http://{}/123456789012/orders", server.addr);
    assert_eq!(sent["QueueUrl"], url.as_str());
    // The SDK checks MD5OfMessageBody itself; this is the MD5 of `{"id":7}`.
    assert_eq!(sent["md5"], "f909686c4adf64f7a8c468b29e6e66aa");
    assert_eq!(sent["batch"], 2);

    let py = server.invoke_ok(app.path(), "python", &json!({})).await;
    assert_eq!(py["url"], url.as_str());
    // As on AWS, a queue outside the function's grants is refused before anything else.
    assert_eq!(py["missing"], "AccessDenied", "{py}");
    assert_eq!(py["forged"], json!(["SignatureDoesNotMatch", 403]), "{py}");
    // STS's GetCallerIdentity names the function's role session and the account.
    assert_eq!(
        py["identity"],
        json!([
            "123456789012",
            "arn:aws:sts::123456789012:assumed-role/python-role/python"
        ])
    );

    let read = server.invoke_ok(app.path(), "reader", &json!({})).await;
    assert_eq!(
        read,
        json!([
            { "body": "{\"id\":7}", "kind": "order", "count": "1" },
            { "body": "batch-a", "kind": null, "count": "1" },
            { "body": "batch-b", "kind": null, "count": "1" },
            { "body": "from-python", "kind": null, "count": "1" },
        ])
    );

    // A function without the grant is refused through its SDK, and nothing is sent.
    let refused = server.invoke_ok(app.path(), "outsider", &json!({})).await;
    assert_eq!(refused["name"], "AccessDenied", "{refused}");
    assert_eq!(refused["status"], 403);
    let stats = app.nimbus(&["queue", "ls"]);
    let stats: Value = serde_json::from_str(&stats.stdout).expect("queue ls prints JSON");
    let other = stats["queues"]
        .as_array()
        .and_then(|queues| queues.iter().find(|q| q["name"] == "other"))
        .unwrap_or_else(|| panic!("no queue `other` in {stats}"));
    assert_eq!(
        other["visible"], 0,
        "the refused send wrote nothing: {stats}"
    );
}

/// Runs a Python `script` that prints one JSON value, with `boto3` (a folder) on its path
/// and the server's gateway in `ENDPOINT`; no AWS config of the machine's is read.
pub(crate) fn run_boto3(boto3: &str, script: &str, server: &TestServer) -> Value {
    run_boto3_with(boto3, script, server, &[])
}

/// As [`run_boto3`], with more environment variables for the script; a failing script's
/// output comes with nimbus's log.
pub(crate) fn run_boto3_with(
    boto3: &str,
    script: &str,
    server: &TestServer,
    env: &[(&str, String)],
) -> Value {
    let out = Command::new("python3")
        .args(["-c", script])
        .env("PYTHONPATH", boto3)
        .env("ENDPOINT", format!("http://{}", server.addr))
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
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

/// The boto3 the runtime-provided SDK cache holds, for scripts run from outside nimbus:
/// `nimbus runtimes install` fetches it once and then says where it is.
pub(crate) fn boto3_path(app: &TestApp) -> String {
    let mut last = String::new();
    for _ in 0..2 {
        let out = app.nimbus(&["runtimes", "install", "boto3"]);
        assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
        if let Some(dir) = out
            .stderr
            .lines()
            .filter(|line| line.contains("boto3"))
            .find_map(|line| line.split_once(" is in ").map(|(_, rest)| rest))
            .and_then(|rest| rest.strip_suffix(" already"))
        {
            return dir.to_owned();
        }
        last = out.stderr;
    }
    panic!("`nimbus runtimes install boto3` did not say where boto3 is:\n{last}");
}

const SCRIPT: &str = r#"
import json, os, sys
import os

import boto3
from botocore.exceptions import ClientError

sqs = boto3.client("sqs", endpoint_url=os.environ["ENDPOINT"], region_name="us-east-1",
                   aws_access_key_id="test", aws_secret_access_key="test")
out = {}
url = sqs.create_queue(QueueName="jobs", Attributes={"VisibilityTimeout": "1"})["QueueUrl"]
out["url"] = url
out["account"] = boto3.client("sts", endpoint_url=os.environ["ENDPOINT"], region_name="us-east-1",
                              aws_access_key_id="test",
                              aws_secret_access_key="test").get_caller_identity()["Account"]
out["listed"] = [u.rsplit("/", 1)[1] for u in sqs.list_queues()["QueueUrls"]]
for name in ["jobs-b", "jobs-c"]:
    sqs.create_queue(QueueName=name)
page = sqs.list_queues(QueueNamePrefix="jobs", MaxResults=2)
last = sqs.list_queues(QueueNamePrefix="jobs", MaxResults=2, NextToken=page["NextToken"])
out["pages"] = [[u.rsplit("/", 1)[1] for u in page["QueueUrls"]],
                [u.rsplit("/", 1)[1] for u in last["QueueUrls"]], "NextToken" in last]
for name in ["jobs-b", "jobs-c"]:
    sqs.delete_queue(QueueUrl=sqs.get_queue_url(QueueName=name)["QueueUrl"])
sqs.send_message(QueueUrl=url, MessageBody="hello", MessageAttributes={
    "n": {"DataType": "Number", "StringValue": "42"}})
got = sqs.receive_message(QueueUrl=url, MessageAttributeNames=["All"], WaitTimeSeconds=1)["Messages"]
out["body"] = got[0]["Body"]
out["n"] = got[0]["MessageAttributes"]["n"]["StringValue"]
sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=got[0]["ReceiptHandle"], VisibilityTimeout=0)
again = sqs.receive_message(QueueUrl=url, AttributeNames=["All"], WaitTimeSeconds=1)["Messages"]
out["count"] = again[0]["Attributes"]["ApproximateReceiveCount"]
sqs.delete_message_batch(QueueUrl=url, Entries=[{"Id": "x", "ReceiptHandle": again[0]["ReceiptHandle"]}])
out["left"] = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]["ApproximateNumberOfMessages"]
for bad in [lambda: sqs.send_message(QueueUrl=url, MessageBody="x" * (256 * 1024 + 1)),
            lambda: sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=11),
            lambda: sqs.get_queue_url(QueueName="missing")]:
    try:
        bad()
        out.setdefault("errors", []).append(None)
    except ClientError as e:
        out.setdefault("errors", []).append(e.response["Error"]["Code"])
print(json.dumps(out))
"#;

#[tokio::test]
async fn boto3_from_outside_creates_sends_receives_and_gets_sqs_errors() {
    let app = TestApp::new(&[
        (
            "serverless.yml",
            "service: s\nprovider: { runtime: nodejs20.x }\nfunctions:\n  f: { handler: f.handler }\n",
        ),
        ("f.js", "exports.handler = async () => 1;\n"),
    ]);
    let boto3 = boto3_path(&app);
    let server = TestServer::start(app.path(), &[]);
    let out = run_boto3(&boto3, SCRIPT, &server);
    assert_eq!(
        out["url"],
        format!("http://{}/123456789012/jobs", server.addr)
    );
    assert_eq!(out["listed"], json!(["jobs"]));
    assert_eq!(out["pages"], json!([["jobs", "jobs-b"], ["jobs-c"], false]));
    assert_eq!(out["account"], "123456789012");
    assert_eq!(out["body"], "hello");
    assert_eq!(out["n"], "42");
    assert_eq!(out["count"], "2");
    assert_eq!(out["left"], "0");
    assert_eq!(
        out["errors"],
        json!([
            "InvalidParameterValue",
            "InvalidParameterValue",
            "AWS.SimpleQueueService.NonExistentQueue"
        ])
    );
}

const FIFO_AND_REDRIVE: &str = r#"
import json, os, time

import boto3
from botocore.exceptions import ClientError

sqs = boto3.client("sqs", endpoint_url=os.environ["ENDPOINT"], region_name="us-east-1",
                   aws_access_key_id="test", aws_secret_access_key="test")
out = {}
fifo = sqs.create_queue(QueueName="steps.fifo", Attributes={
    "FifoQueue": "true", "ContentBasedDeduplication": "true"})["QueueUrl"]
for group, body in [("a", "a1"), ("b", "b1"), ("a", "a2"), ("a", "a1"), ("b", "b2")]:
    sqs.send_message(QueueUrl=fifo, MessageBody=body, MessageGroupId=group)
sqs.send_message(QueueUrl=fifo, MessageBody="explicit", MessageGroupId="c",
                 MessageDeduplicationId="d-1")
sqs.send_message(QueueUrl=fifo, MessageBody="explicit again", MessageGroupId="c",
                 MessageDeduplicationId="d-1")
# A receive hands out each group's messages in order; while they are in flight, the
# group's later messages wait.
first = sqs.receive_message(QueueUrl=fifo, MaxNumberOfMessages=10).get("Messages", [])
out["first"] = {g: [m["Body"] for m in first if m["Body"].startswith(g)] for g in "abe"}
sqs.send_message(QueueUrl=fifo, MessageBody="a3", MessageGroupId="a")
out["held"] = [m["Body"] for m in sqs.receive_message(QueueUrl=fifo).get("Messages", [])]
for m in first:
    sqs.delete_message(QueueUrl=fifo, ReceiptHandle=m["ReceiptHandle"])
rest = sqs.receive_message(QueueUrl=fifo, MaxNumberOfMessages=10).get("Messages", [])
out["rest"] = [m["Body"] for m in rest]
out["no_group"] = None
try:
    sqs.send_message(QueueUrl=fifo, MessageBody="x")
except ClientError as e:
    out["no_group"] = e.response["Error"]["Code"]
# DelaySeconds 0 on a FIFO queue changes nothing and is accepted, as on SQS.
sqs.send_message(QueueUrl=fifo, MessageBody="no delay", MessageGroupId="z", DelaySeconds=0,
                 MessageDeduplicationId="nd")
got = sqs.receive_message(QueueUrl=fifo, MaxNumberOfMessages=10, WaitTimeSeconds=1)["Messages"]
# A delete retried with the same handle succeeds again; duplicate batch ids are refused.
for _ in range(2):
    sqs.delete_message(QueueUrl=fifo, ReceiptHandle=got[0]["ReceiptHandle"])
try:
    sqs.delete_message_batch(QueueUrl=fifo, Entries=[
        {"Id": "same", "ReceiptHandle": got[0]["ReceiptHandle"]},
        {"Id": "same", "ReceiptHandle": got[0]["ReceiptHandle"]}])
    out["duplicate_ids"] = None
except ClientError as e:
    out["duplicate_ids"] = e.response["Error"]["Code"]
out["no_delay"] = [m["Body"] for m in got]

dlq = sqs.create_queue(QueueName="dead")["QueueUrl"]
dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
work = sqs.create_queue(QueueName="work", Attributes={
    "VisibilityTimeout": "1",
    "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2})})["QueueUrl"]
sqs.send_message(QueueUrl=work, MessageBody="poison")
counts = []
for _ in range(2):
    got = sqs.receive_message(QueueUrl=work, WaitTimeSeconds=2, AttributeNames=["All"])["Messages"]
    counts.append(got[0]["Attributes"]["ApproximateReceiveCount"])
    sqs.change_message_visibility(QueueUrl=work, ReceiptHandle=got[0]["ReceiptHandle"],
                                  VisibilityTimeout=0)
out["counts"] = counts
out["after"] = sqs.receive_message(QueueUrl=work, WaitTimeSeconds=1).get("Messages", [])
dead = sqs.receive_message(QueueUrl=dlq, WaitTimeSeconds=2)["Messages"]
out["dead"] = [m["Body"] for m in dead]

# SetQueueAttributes, ChangeMessageVisibilityBatch and DeleteQueue.
sqs.set_queue_attributes(QueueUrl=work, Attributes={"VisibilityTimeout": "40", "DelaySeconds": "0"})
out["visibility"] = sqs.get_queue_attributes(
    QueueUrl=work, AttributeNames=["VisibilityTimeout"])["Attributes"]["VisibilityTimeout"]
sqs.set_queue_attributes(QueueUrl=work, Attributes={"RedrivePolicy": ""})
out["redrive_removed"] = "RedrivePolicy" not in sqs.get_queue_attributes(
    QueueUrl=work, AttributeNames=["All"])["Attributes"]
sqs.send_message_batch(QueueUrl=work, Entries=[{"Id": i, "MessageBody": i} for i in "xy"])
got = sqs.receive_message(QueueUrl=work, MaxNumberOfMessages=10, WaitTimeSeconds=1)["Messages"]
changed = sqs.change_message_visibility_batch(QueueUrl=work, Entries=[
    {"Id": "e%d" % i, "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
    for i, m in enumerate(got)] + [{"Id": "bad", "ReceiptHandle": "nope", "VisibilityTimeout": 0}])
out["changed"] = [len(changed["Successful"]), [f["Id"] for f in changed["Failed"]]]
out["visible_again"] = len(sqs.receive_message(QueueUrl=work, MaxNumberOfMessages=10,
                                               WaitTimeSeconds=1)["Messages"])
sqs.delete_queue(QueueUrl=work)
out["deleted"] = [u.rsplit("/", 1)[1] for u in sqs.list_queues()["QueueUrls"]]
try:
    sqs.delete_queue(QueueUrl=sqs.get_queue_url(QueueName="declared")["QueueUrl"])
    out["declared"] = None
except ClientError as e:
    out["declared"] = e.response["Error"]["Code"]
print(json.dumps(out))
"#;

#[tokio::test]
async fn boto3_fifo_queues_keep_group_order_and_redrive_moves_poison_to_the_dlq() {
    let app = TestApp::new(&[
        (
            "serverless.yml",
            "service: s\nprovider: { runtime: nodejs20.x }\nqueues: { declared: {} }\nfunctions:\n  f: { handler: f.handler }\n",
        ),
        ("f.js", "exports.handler = async () => 1;\n"),
    ]);
    let boto3 = boto3_path(&app);
    let server = TestServer::start(app.path(), &[]);
    let out = run_boto3(&boto3, FIFO_AND_REDRIVE, &server);
    // Group a's duplicate `a1` is dropped by content-based deduplication, `explicit again`
    // by its deduplication id.
    assert_eq!(
        out["first"],
        json!({ "a": ["a1", "a2"], "b": ["b1", "b2"], "e": ["explicit"] }),
        "{out}"
    );
    assert_eq!(out["held"], json!([]), "{out}");
    assert_eq!(out["rest"], json!(["a3"]), "{out}");
    assert_eq!(out["no_group"], "MissingParameter", "{out}");
    assert_eq!(out["no_delay"], json!(["no delay"]), "{out}");
    assert_eq!(
        out["duplicate_ids"], "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
        "{out}"
    );
    assert_eq!(out["counts"], json!(["1", "2"]), "{out}");
    assert_eq!(out["after"], json!([]), "{out}");
    assert_eq!(out["dead"], json!(["poison"]), "{out}");
    assert_eq!(out["visibility"], "40", "{out}");
    assert_eq!(out["redrive_removed"], true, "{out}");
    assert_eq!(out["changed"], json!([2, ["bad"]]), "{out}");
    assert_eq!(out["visible_again"], 2, "{out}");
    assert_eq!(
        out["deleted"],
        json!(["dead", "declared", "steps.fifo"]),
        "{out}"
    );
    assert_eq!(out["declared"], "InvalidParameterValue", "{out}");
}

#[tokio::test]
async fn malformed_sqs_requests_get_sqs_errors_and_the_queue_keeps_working() {
    let app = TestApp::new(&[
        (
            "serverless.yml",
            "service: s\nprovider: { runtime: nodejs20.x }\nqueues: { jobs: {} }\nfunctions:\n  f: { handler: f.handler }\n",
        ),
        ("f.js", "exports.handler = async () => 1;\n"),
    ]);
    let server = TestServer::start(app.path(), &[]);
    let request = |target: &str, body: &str| {
        crate::aws_s3::raw_request(
            &server,
            &format!(
                "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Amz-Target: AmazonSQS.{target}\r\n\
                 Content-Type: application/x-amz-json-1.0\r\n\
                 Authorization: AWS4-HMAC-SHA256 Credential=operator/20261207/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=00\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            ),
        )
    };
    let url = format!("http://{}/123456789012/jobs", server.addr);
    let cases = [
        (
            "SendMessage",
            "{\"QueueUrl\": ".to_owned(),
            "InvalidParameterValue",
        ),
        ("SendMessage", "[1, 2]".to_owned(), "InvalidParameterValue"),
        ("Explode", "{}".to_owned(), "InvalidAction"),
        (
            "SendMessage",
            format!("{{\"QueueUrl\": \"{url}\", \"MessageBody\": 7}}"),
            "InvalidParameterValue",
        ),
    ];
    for (target, body, code) in cases {
        let answer = request(target, &body);
        assert!(
            answer.starts_with("HTTP/1.1 400"),
            "{target} {body}: {answer}"
        );
        assert!(
            answer.contains(&format!("com.amazonaws.sqs#{code}")),
            "{target} {body}: {answer}"
        );
    }
    let sent = request(
        "SendMessage",
        &format!("{{\"QueueUrl\": \"{url}\", \"MessageBody\": \"fine\"}}"),
    );
    assert!(sent.starts_with("HTTP/1.1 200"), "{sent}");
    let stats = app.nimbus(&["queue", "ls"]);
    let stats: Value = serde_json::from_str(&stats.stdout).expect("queue ls prints JSON");
    assert_eq!(
        stats["queues"][0]["visible"], 1,
        "only the good send landed: {stats}"
    );
}
