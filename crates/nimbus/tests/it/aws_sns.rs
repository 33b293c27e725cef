//! SNS through the AWS SDKs (issue 12): `@aws-sdk/client-sns` in a function and boto3
//! outside publish to manifest topics, which fan out to functions and to queues through
//! filter policies, with SNS's own errors.

use serde_json::json;

use crate::harness::{TestApp, TestServer};

const MANIFEST: &str = r#"
service: alerts
provider:
  runtime: nodejs20.x
  iam:
    role:
      statements:
        - Effect: Allow
          Action: [sns:Publish]
          Resource: arn:aws:sns:*:*:alerts
queues:
  urgent: {}
topics:
  alerts:
    subscriptions:
      - queue: urgent
        filterPolicy: { level: [high] }
functions:
  publisher:
    handler: fns.publish
  listener:
    handler: fns.listen
    iamRoleStatements:
      - { Effect: Allow, Action: ["kv:*"], Resource: "kv:seen" }
    events:
      - sns: alerts
"#;

const FNS_JS: &str = r#"
const { SNSClient, PublishCommand } = require('@aws-sdk/client-sns');
const nimbus = require('nimbus');
const sns = new SNSClient({});

exports.publish = async (event) => {
  const out = await sns.send(new PublishCommand({
    TopicArn: `arn:aws:sns:${process.env.AWS_REGION}:123456789012:alerts`,
    Message: event.message,
    Subject: 'from node',
    MessageAttributes: { level: { DataType: 'String', StringValue: event.level } },
  }));
  return { id: out.MessageId };
};

exports.listen = async (event) => {
  for (const r of event.Records) {
    await nimbus.kv('seen').put(r.Sns.Message, JSON.stringify({
      subject: r.Sns.Subject, level: r.Sns.MessageAttributes.level.Value }));
  }
};
"#;

#[tokio::test]
async fn publishes_through_the_sns_sdk_reach_functions_and_filtered_queues() {
    let manifest = format!("{MANIFEST}kv: [seen]\n");
    let app = TestApp::new(&[("serverless.yml", &manifest), ("fns.js", FNS_JS)]);
    let server = TestServer::start(app.path(), &[]);
    for (message, level) in [("disk full", "high"), ("cpu warm", "low")] {
        let published = server
            .invoke_ok(
                app.path(),
                "publisher",
                &json!({ "message": message, "level": level }),
            )
            .await;
        assert!(published["id"].is_string(), "{published}");
    }
    // The function subscriber sees both, with the subject and attributes.
    let seen = app
        .nimbus_until(&["kv", "get", "seen", "cpu warm"], |out| {
            out.contains("low")
        })
        .await;
    assert!(seen.contains("from node"), "{seen}");
    // Only the high one passes the queue's filter policy.
    let urgent = app
        .nimbus_until(&["queue", "receive", "urgent", "--max", "10"], |out| {
            out.contains("disk full")
        })
        .await;
    assert!(!urgent.contains("cpu warm"), "{urgent}");
}

const SCRIPT: &str = r#"
import json, os
import boto3
from botocore.exceptions import ClientError

sns = boto3.client("sns", endpoint_url=os.environ["ENDPOINT"], region_name="us-east-1",
                   aws_access_key_id="test", aws_secret_access_key="test")
out = {}
arn = sns.create_topic(Name="alerts")["TopicArn"]
out["arn"] = arn
out["topics"] = [t["TopicArn"] for t in sns.list_topics()["Topics"]]
out["id"] = bool(sns.publish(TopicArn=arn, Message="<b>&'quoted'</b>", MessageAttributes={
    "level": {"DataType": "String", "StringValue": "high"}})["MessageId"])
batch = sns.publish_batch(TopicArn=arn, PublishBatchRequestEntries=[
    {"Id": "one", "Message": "first"}, {"Id": "two", "Message": "second"}])
out["batch"] = sorted(e["Id"] for e in batch["Successful"])
for bad in [lambda: sns.publish(TopicArn="arn:aws:sns:us-east-1:123456789012:nope", Message="x"),
            lambda: sns.publish(TopicArn=arn, Message="x" * (256 * 1024 + 1)),
            lambda: sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint="x"),
            lambda: sns.publish_batch(TopicArn=arn, PublishBatchRequestEntries=[
                {"Id": "a", "Message": "1"}, {"Id": "a", "Message": "2"}]),
            lambda: sns.publish_batch(TopicArn=arn, PublishBatchRequestEntries=[
                {"Id": str(n), "Message": "x"} for n in range(11)])]:
    try:
        bad()
        out.setdefault("errors", []).append(None)
    except ClientError as e:
        out.setdefault("errors", []).append(e.response["Error"]["Code"])
print(json.dumps(out))
"#;

#[tokio::test]
async fn boto3_publishes_and_lists_topics_and_gets_sns_errors() {
    let manifest = format!("{MANIFEST}kv: [seen]\n");
    let app = TestApp::new(&[("serverless.yml", &manifest), ("fns.js", FNS_JS)]);
    let boto3 = crate::aws_sqs::boto3_path(&app);
    let server = TestServer::start(app.path(), &[]);
    let out = crate::aws_sqs::run_boto3(&boto3, SCRIPT, &server);
    assert_eq!(out["arn"], "arn:aws:sns:us-east-1:123456789012:alerts");
    assert_eq!(
        out["topics"],
        json!(["arn:aws:sns:us-east-1:123456789012:alerts"])
    );
    assert_eq!(out["id"], true);
    assert_eq!(out["batch"], json!(["one", "two"]));
    assert_eq!(
        out["errors"],
        json!([
            "NotFound",
            "InvalidParameter",
            "InvalidParameter",
            "BatchEntryIdsNotDistinct",
            "TooManyEntriesInBatchRequest"
        ])
    );
    // The escaped message arrived as sent.
    let urgent = app
        .nimbus_until(&["queue", "receive", "urgent", "--max", "10"], |out| {
            out.contains("quoted")
        })
        .await;
    assert!(urgent.contains("<b>&'quoted'</b>"), "{urgent}");
}

const RUNTIME_SCRIPT: &str = r#"
import json, os
import boto3
from botocore.exceptions import ClientError

kw = dict(endpoint_url=os.environ["ENDPOINT"], region_name="us-east-1",
          aws_access_key_id="test", aws_secret_access_key="test")
sns, sqs = boto3.client("sns", **kw), boto3.client("sqs", **kw)
out = {}
topic = sns.create_topic(Name="orders")["TopicArn"]
inbox = sqs.create_queue(QueueName="inbox")["QueueUrl"]
inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
queue_sub = sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=inbox_arn, Attributes={
    "FilterPolicy": json.dumps({"level": ["high"]}), "RawMessageDelivery": "true"},
    ReturnSubscriptionArn=True)["SubscriptionArn"]
again = sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=inbox_arn)["SubscriptionArn"]
out["idempotent"] = again == queue_sub
fn_sub = sns.subscribe(TopicArn=topic, Protocol="lambda",
                       Endpoint="arn:aws:lambda:us-east-1:123456789012:function:alerts-dev-listener")["SubscriptionArn"]
out["listed"] = sorted(s["Protocol"] for s in sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"])
out["all"] = len(sns.list_subscriptions()["Subscriptions"])
out["confirmed"] = sns.get_topic_attributes(TopicArn=topic)["Attributes"]["SubscriptionsConfirmed"]
out["topics"] = sorted(t["TopicArn"].rsplit(":", 1)[1] for t in sns.list_topics()["Topics"])
attrs = sns.get_subscription_attributes(SubscriptionArn=queue_sub)["Attributes"]
out["attrs"] = [attrs["RawMessageDelivery"], json.loads(attrs["FilterPolicy"])]
for message, level in [("runtime high", "high"), ("runtime low", "low")]:
    sns.publish(TopicArn=topic, Message=message, MessageAttributes={
        "level": {"DataType": "String", "StringValue": level}})
got = sqs.receive_message(QueueUrl=inbox, MaxNumberOfMessages=10, WaitTimeSeconds=2).get("Messages", [])
out["inbox"] = [m["Body"] for m in got]
for m in got:
    sqs.delete_message(QueueUrl=inbox, ReceiptHandle=m["ReceiptHandle"])
# Without the filter and raw delivery, the queue gets both, in SNS's envelope.
sns.set_subscription_attributes(SubscriptionArn=queue_sub, AttributeName="FilterPolicy", AttributeValue="")
sns.set_subscription_attributes(SubscriptionArn=queue_sub, AttributeName="RawMessageDelivery", AttributeValue="false")
sns.publish(TopicArn=topic, Message="enveloped", MessageAttributes={
    "level": {"DataType": "String", "StringValue": "low"}})
got = sqs.receive_message(QueueUrl=inbox, MaxNumberOfMessages=10, WaitTimeSeconds=2).get("Messages", [])
out["enveloped"] = [json.loads(m["Body"])["Message"] for m in got]
for m in got:
    sqs.delete_message(QueueUrl=inbox, ReceiptHandle=m["ReceiptHandle"])
# MessageStructure json: the queue gets the `sqs` message, the function the default.
sns.publish(TopicArn=topic, MessageStructure="json",
            Message=json.dumps({"default": "structured default", "sqs": "for queues"}),
            MessageAttributes={"level": {"DataType": "String", "StringValue": "low"}})
got = sqs.receive_message(QueueUrl=inbox, MaxNumberOfMessages=10, WaitTimeSeconds=2).get("Messages", [])
out["structured"] = [json.loads(m["Body"])["Message"] for m in got]
for m in got:
    sqs.delete_message(QueueUrl=inbox, ReceiptHandle=m["ReceiptHandle"])
sns.unsubscribe(SubscriptionArn=queue_sub)
sns.publish(TopicArn=topic, Message="after unsubscribe", MessageAttributes={
    "level": {"DataType": "String", "StringValue": "high"}})
out["after"] = sqs.receive_message(QueueUrl=inbox, WaitTimeSeconds=1).get("Messages", [])
errors = []
for bad in [lambda: sns.publish(TopicArn=topic, MessageStructure="json",
                                Message=json.dumps({"sqs": "no default"})),
            lambda: sns.subscribe(TopicArn=topic, Protocol="email", Endpoint="a@b.c"),
            lambda: sns.subscribe(TopicArn=topic, Protocol="lambda", Endpoint="nope"),
            lambda: sns.create_topic(Name="bad name!"),
            lambda: sns.delete_topic(TopicArn=topic.replace("orders", "alerts")),
            lambda: sns.set_subscription_attributes(SubscriptionArn=fn_sub,
                                                    AttributeName="FilterPolicy", AttributeValue="[1]")]:
    try:
        bad()
        errors.append(None)
    except ClientError as e:
        errors.append(e.response["Error"]["Code"])
out["errors"] = errors
# A FIFO topic fans out to a FIFO queue with its message groups kept.
fifo_topic = sns.create_topic(Name="ledger.fifo", Attributes={"FifoTopic": "true"})["TopicArn"]
fifo_queue = sqs.create_queue(QueueName="ledger.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
sns.subscribe(TopicArn=fifo_topic, Protocol="sqs", Endpoint=sqs.get_queue_attributes(
    QueueUrl=fifo_queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"],
    Attributes={"RawMessageDelivery": "true"})
for n in range(3):
    sns.publish(TopicArn=fifo_topic, Message=f"entry {n}", MessageGroupId="acct-1",
                MessageDeduplicationId=f"d{n}")
sns.publish(TopicArn=fifo_topic, Message="entry 1 again", MessageGroupId="acct-1",
            MessageDeduplicationId="d1")
got = sqs.receive_message(QueueUrl=fifo_queue, MaxNumberOfMessages=10, WaitTimeSeconds=2,
                          AttributeNames=["MessageGroupId"]).get("Messages", [])
out["fifo"] = [[m["Body"], m["Attributes"]["MessageGroupId"]] for m in got]
for bad in [lambda: sns.publish(TopicArn=fifo_topic, Message="no group"),
            lambda: sns.publish(TopicArn=topic, Message="x", MessageDeduplicationId="d")]:
    try:
        bad()
        out.setdefault("fifo_errors", []).append(None)
    except ClientError as e:
        out.setdefault("fifo_errors", []).append(e.response["Error"]["Code"])
sns.delete_topic(TopicArn=topic)
try:
    sns.publish(TopicArn=topic, Message="gone")
    out["deleted"] = None
except ClientError as e:
    out["deleted"] = e.response["Error"]["Code"]
print(json.dumps(out))
"#;

#[tokio::test]
async fn boto3_creates_topics_and_subscribes_queues_and_functions_at_run_time() {
    let manifest = format!("{MANIFEST}kv: [seen]\n");
    let app = TestApp::new(&[("serverless.yml", &manifest), ("fns.js", FNS_JS)]);
    let boto3 = crate::aws_sqs::boto3_path(&app);
    let server = TestServer::start(app.path(), &[]);
    let out = crate::aws_sqs::run_boto3(&boto3, RUNTIME_SCRIPT, &server);
    assert_eq!(out["idempotent"], true, "{out}");
    assert_eq!(out["listed"], json!(["lambda", "sqs"]), "{out}");
    // The manifest's queue subscription of `alerts` and the two made here.
    assert_eq!(out["all"], 3, "{out}");
    assert_eq!(out["confirmed"], "2", "{out}");
    assert_eq!(out["topics"], json!(["alerts", "orders"]), "{out}");
    assert_eq!(
        out["attrs"],
        json!(["true", { "level": ["high"] }]),
        "{out}"
    );
    assert_eq!(out["inbox"], json!(["runtime high"]), "{out}");
    assert_eq!(out["enveloped"], json!(["enveloped"]), "{out}");
    assert_eq!(out["structured"], json!(["for queues"]), "{out}");
    assert_eq!(out["after"], json!([]), "{out}");
    assert_eq!(
        out["errors"],
        json!([
            "InvalidParameter",
            "InvalidParameter",
            "NotFound",
            "InvalidParameter",
            "InvalidParameter",
            "InvalidParameter"
        ]),
        "{out}"
    );
    assert_eq!(out["deleted"], "NotFound", "{out}");
    assert_eq!(
        out["fifo"],
        json!([
            ["entry 0", "acct-1"],
            ["entry 1", "acct-1"],
            ["entry 2", "acct-1"]
        ]),
        "{out}"
    );
    assert_eq!(
        out["fifo_errors"],
        json!(["InvalidParameter", "InvalidParameter"]),
        "{out}"
    );
    // The function subscribed at run time got every message, filter or not.
    for (message, level) in [
        ("runtime high", "high"),
        ("runtime low", "low"),
        ("enveloped", "low"),
        ("structured default", "low"),
        ("after unsubscribe", "high"),
    ] {
        let seen = app
            .nimbus_until(&["kv", "get", "seen", message], |out| out.contains("level"))
            .await;
        assert!(seen.contains(&format!("\"level\":\"{level}\"")), "{seen}");
    }
}

const PY_PUBLISHER: &str = r#"
import json

import boto3

sns = boto3.client("sns")
lam = boto3.client("lambda")


def handler(event, context):
    topic = sns.create_topic(Name="alerts")["TopicArn"]
    published = sns.publish(TopicArn=topic, Message="from python", Subject="py",
                            MessageAttributes={"level": {"DataType": "String", "StringValue": "high"}})
    invoked = lam.invoke(FunctionName="listener", InvocationType="RequestResponse",
                         Payload=json.dumps({"Records": [{"Sns": {"Message": "invoked directly",
                             "Subject": "direct", "MessageAttributes": {"level": {"Value": "none"}}}}]}))
    return {"published": bool(published["MessageId"]), "status": invoked["StatusCode"],
            "error": invoked.get("FunctionError")}
"#;

#[tokio::test]
async fn a_python_function_publishes_and_invokes_through_boto3() {
    let manifest = format!(
        "{MANIFEST}  pyPublisher:\n    handler: py_publisher.handler\n    runtime: python3.12\n    iamRoleStatements:\n      - {{ Effect: Allow, Action: [sns:CreateTopic, lambda:InvokeFunction], Resource: '*' }}\nkv: [seen]\n"
    );
    let app = TestApp::new(&[
        ("serverless.yml", &manifest),
        ("fns.js", FNS_JS),
        ("py_publisher.py", PY_PUBLISHER),
    ]);
    let server = TestServer::start(app.path(), &[]);
    let out = server
        .invoke_ok(app.path(), "pyPublisher", &json!({}))
        .await;
    assert_eq!(
        out,
        json!({ "published": true, "status": 200, "error": null })
    );
    // The listener saw the published message through its subscription, and the direct
    // invocation's made-up record.
    for (message, level) in [("from python", "high"), ("invoked directly", "none")] {
        let seen = app
            .nimbus_until(&["kv", "get", "seen", message], |out| out.contains("level"))
            .await;
        assert!(seen.contains(&format!("\"level\":\"{level}\"")), "{seen}");
    }
}
