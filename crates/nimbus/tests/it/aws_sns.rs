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
            lambda: sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint="x")]:
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
        json!(["NotFound", "InvalidParameter", "InvalidParameter"])
    );
    // The escaped message arrived as sent.
    let urgent = app
        .nimbus_until(&["queue", "receive", "urgent", "--max", "10"], |out| {
            out.contains("quoted")
        })
        .await;
    assert!(urgent.contains("<b>&'quoted'</b>"), "{urgent}");
}
