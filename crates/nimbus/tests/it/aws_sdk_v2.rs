//! The AWS SDK for JavaScript v2 (`aws-sdk`), which ignores `AWS_ENDPOINT_URL` (issue 12):
//! a function written for Lambda, whose clients name no endpoint, reaches nimbus's SQS,
//! SNS and Lambda unchanged, because the Node bootstrap points each loaded copy of
//! `aws-sdk` at the endpoint; it signs as itself, so its grants apply.

use serde_json::json;

use crate::harness::{TestApp, TestServer};

const MANIFEST: &str = r#"
service: legacy
provider:
  runtime: nodejs20.x
  timeout: 15
  environment:
    TOPIC_ARN: arn:aws:sns:${aws:region}:${aws:accountId}:alerts
    WORKER: ${self:service}-${sls:stage}-worker
kv: [seen]
functions:
  app:
    handler: app.handler
    iamRoleStatements:
      - Effect: Allow
        Action: [sqs:GetQueueUrl, sqs:SendMessage, sqs:ReceiveMessage, sqs:DeleteMessage]
        Resource: !GetAtt Jobs.Arn
      - Effect: Allow
        Action: [sns:Publish]
        Resource: arn:aws:sns:*:*:alerts
      - Effect: Allow
        Action: [lambda:InvokeFunction]
        Resource: arn:aws:lambda:${aws:region}:*:function:${self:service}-${sls:stage}-worker
  worker:
    handler: app.worker
  listener:
    handler: app.listen
    iamRoleStatements:
      - { Effect: Allow, Action: ["kv:*"], Resource: "kv:seen" }
    events:
      - sns: alerts
  outsider:
    handler: app.outsider
resources:
  Resources:
    Jobs:
      Type: AWS::SQS::Queue
      Properties: { QueueName: jobs }
"#;

/// Written as for Lambda's nodejs16.x: the v2 SDK, clients at module scope, no endpoint.
const APP_JS: &str = r#"
const AWS = require('aws-sdk');
const SNS = require('aws-sdk/clients/sns');
const nimbus = require('nimbus');

const sqs = new AWS.SQS();
const sns = new SNS();
const lambda = new AWS.Lambda();

exports.handler = async (event) => {
  const { QueueUrl } = await sqs.getQueueUrl({ QueueName: 'jobs' }).promise();
  const sent = await sqs.sendMessage({
    QueueUrl, MessageBody: JSON.stringify({ id: event.id }),
    MessageAttributes: { kind: { DataType: 'String', StringValue: 'order' } },
  }).promise();
  const got = await sqs.receiveMessage({
    QueueUrl, WaitTimeSeconds: 1, MaxNumberOfMessages: 10,
    MessageAttributeNames: ['All'], AttributeNames: ['ApproximateReceiveCount'],
  }).promise();
  const messages = got.Messages || [];
  for (const m of messages) {
    await sqs.deleteMessage({ QueueUrl, ReceiptHandle: m.ReceiptHandle }).promise();
  }
  const published = await sns.publish({
    TopicArn: process.env.TOPIC_ARN, Message: `order ${event.id}`,
    MessageAttributes: { kind: { DataType: 'String', StringValue: 'order' } },
  }).promise();
  const invoked = await lambda.invoke({
    FunctionName: process.env.WORKER, Payload: JSON.stringify({ n: event.id }),
  }).promise();
  return {
    QueueUrl, md5: sent.MD5OfMessageBody,
    received: messages.map((m) => ({ body: m.Body, kind: m.MessageAttributes.kind.StringValue,
      count: m.Attributes.ApproximateReceiveCount })),
    published: typeof published.MessageId,
    invoked: { status: invoked.StatusCode, payload: JSON.parse(invoked.Payload.toString()) },
    endpoint: sqs.endpoint.href,
  };
};

exports.worker = async (event) => ({ doubled: event.n * 2 });

exports.listen = async (event) => {
  for (const r of event.Records) {
    await nimbus.kv('seen').put(r.Sns.Message, r.Sns.MessageAttributes.kind.Value);
  }
};

// No grants: every service refuses it with its own error.
exports.outsider = async () => {
  const refused = async (request) => {
    try {
      await request.promise();
      return 'allowed';
    } catch (e) {
      return [e.code, e.statusCode];
    }
  };
  return {
    sqs: await refused(sqs.sendMessage({
      QueueUrl: `${process.env.AWS_ENDPOINT_URL}/123456789012/jobs`, MessageBody: 'x' })),
    sns: await refused(sns.publish({ TopicArn: process.env.TOPIC_ARN, Message: 'x' })),
    lambda: await refused(lambda.invoke({ FunctionName: process.env.WORKER, Payload: '{}' })),
  };
};
"#;

fn app() -> TestApp {
    TestApp::new(&[("serverless.yml", MANIFEST), ("app.js", APP_JS)])
}

#[tokio::test]
async fn aws_sdk_v2_functions_reach_sqs_sns_and_lambda_with_no_endpoint_in_their_code() {
    let app = app();
    let server = TestServer::start(app.path(), &[]);
    let out = server
        .invoke_ok(app.path(), "app", &json!({ "id": 7 }))
        .await;
    assert_eq!(
        out["QueueUrl"],
        format!("http://{}/123456789012/jobs", server.addr)
    );
    assert_eq!(out["endpoint"], format!("http://{}/", server.addr));
    // The SDK checks MD5OfMessageBody and MD5OfMessageAttributes itself; this is the MD5
    // of `{"id":7}`.
    assert_eq!(out["md5"], "f909686c4adf64f7a8c468b29e6e66aa");
    assert_eq!(
        out["received"],
        json!([{ "body": "{\"id\":7}", "kind": "order", "count": "1" }])
    );
    assert_eq!(out["published"], "string");
    assert_eq!(
        out["invoked"],
        json!({ "status": 200, "payload": { "doubled": 14 } })
    );
    // The publish reached the topic's subscriber.
    let seen = app
        .nimbus_until(&["kv", "get", "seen", "order 7"], |out| {
            out.contains("order")
        })
        .await;
    assert_eq!(seen.trim(), "order");

    let refused = server.invoke_ok(app.path(), "outsider", &json!({})).await;
    assert_eq!(
        refused,
        json!({
            "sqs": ["AccessDenied", 403],
            "sns": ["AuthorizationError", 403],
            "lambda": ["AccessDeniedException", 403],
        })
    );
}
