//! The AWS SDK for JavaScript v2 (`aws-sdk`), which ignores `AWS_ENDPOINT_URL` (issue 12):
//! a function written for Lambda, whose clients name no endpoint, reaches nimbus's SQS,
//! SNS, Lambda and S3 unchanged, because the Node bootstrap points each loaded copy of
//! `aws-sdk` at the endpoint; it signs as itself, so its grants apply. Releases from before
//! SQS's move to JSON (Lambda's nodejs16.x ships 2.1374.0) speak SQS's query protocol,
//! which the endpoint serves too.

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
      - Effect: Allow
        Action: [s3:PutObject, s3:GetObject]
        Resource: arn:aws:s3:::uploads/*
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
  legacy:
    handler: legacy.handler
    iamRoleStatements:
      - { Effect: Allow, Action: ["sqs:*"], Resource: "*" }
  byref:
    handler: legacy.byRef
    environment:
      QUEUE_URL: !Ref Jobs
    iamRoleStatements:
      - { Effect: Allow, Action: ["sqs:*"], Resource: !Ref Jobs }
resources:
  Resources:
    Jobs:
      Type: AWS::SQS::Queue
      Properties: { QueueName: jobs }
    Uploads:
      Type: AWS::S3::Bucket
      Properties: { BucketName: uploads }
"#;

/// Written as for Lambda's nodejs16.x: the v2 SDK, clients at module scope, no endpoint.
const APP_JS: &str = r#"
const AWS = require('aws-sdk');
const SNS = require('aws-sdk/clients/sns');
const nimbus = require('nimbus');
const querySqs = require('./query-sqs');

const sqs = new AWS.SQS();
const sns = new SNS();
const lambda = new AWS.Lambda();
const s3 = new AWS.S3();

exports.handler = async (event) => {
  if (event.s3) {
    const put = await s3.putObject({
      Bucket: 'uploads', Key: 'v2/hello.txt', Body: 'hello from v2', ContentType: 'text/plain',
    }).promise();
    const got = await s3.getObject({ Bucket: 'uploads', Key: 'v2/hello.txt' }).promise();
    return { etag: put.ETag, body: got.Body.toString(), type: got.ContentType };
  }
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
    sqsQuery: await refused(querySqs().sendMessage({
      QueueUrl: `${process.env.AWS_ENDPOINT_URL}/123456789012/jobs`, MessageBody: 'x' })),
    sns: await refused(sns.publish({ TopicArn: process.env.TOPIC_ARN, Message: 'x' })),
    lambda: await refused(lambda.invoke({ FunctionName: process.env.WORKER, Payload: '{}' })),
    s3: await refused(s3.putObject({ Bucket: 'uploads', Key: 'outsider.txt', Body: 'x' })),
  };
};
"#;

/// An SQS client of the cache's aws-sdk v2 with SQS's model as the releases before late
/// 2023 had it: the query protocol. The JSON model keeps the shapes; the query protocol
/// also needs the XML names of list members and map entries and each output's result
/// element. (Checked against 2.1374.0: the same request bodies and parsed answers.)
const QUERY_SQS_JS: &str = r#"
const AWS = require('aws-sdk');

function queryModel(json) {
  const model = JSON.parse(JSON.stringify(json));
  model.metadata = { ...model.metadata, protocol: 'query', protocols: ['query'],
    xmlNamespace: 'http://queue.amazonaws.com/doc/2012-11-05/' };
  for (const key of ['jsonVersion', 'targetPrefix', 'awsQueryCompatible']) delete model.metadata[key];
  const lists = { AttributeNames: 'AttributeName', MessageAttributeNames: 'MessageAttributeName',
    MessageSystemAttributeNames: 'MessageSystemAttributeName', QueueUrls: 'QueueUrl',
    queueUrls: 'QueueUrl', Messages: 'Message', Failed: 'BatchResultErrorEntry',
    StringListValues: 'StringListValue', BinaryListValues: 'BinaryListValue', TagKeys: 'TagKey',
    AWSAccountIds: 'AWSAccountId', Actions: 'ActionName' };
  const maps = { Attributes: 'Attribute', MessageAttributes: 'MessageAttribute',
    MessageSystemAttributes: 'MessageSystemAttribute', Tags: 'Tag', tags: 'Tag' };
  const resolve = (ref) => (ref && ref.shape ? model.shapes[ref.shape] : ref);
  const name = (op, ref, member) => {
    const shape = resolve(ref);
    if (shape.type === 'list') {
      const item = member === 'Entries' ? `${op}RequestEntry`
        : member === 'Successful' ? `${op}ResultEntry` : lists[member];
      if (item) {
        if (shape.flattened || ref.flattened) ref.locationName = item;
        shape.member.locationName = item;
      }
      walk(op, shape.member);
    } else if (shape.type === 'map') {
      if (maps[member]) ref.locationName = maps[member];
      shape.key.locationName = member === 'Tags' || member === 'tags' ? 'Key' : 'Name';
      shape.value.locationName = 'Value';
      walk(op, shape.value);
    } else walk(op, ref);
  };
  const walk = (op, ref) => {
    const shape = resolve(ref);
    if (shape && shape.type === 'structure') for (const m in shape.members) name(op, shape.members[m], m);
  };
  for (const op in model.operations) {
    const operation = model.operations[op];
    walk(op, operation.input);
    if (operation.output) {
      operation.output.resultWrapper = `${op}Result`;
      walk(op, operation.output);
    }
  }
  return model;
}

module.exports = (options = {}) => new AWS.SQS({
  ...options, apiConfig: queryModel(require('aws-sdk/apis/sqs-2012-11-05.min.json')) });
"#;

/// Every SQS operation nimbus serves, over the query protocol, with no endpoint given.
const LEGACY_JS: &str = r#"
const sqs = require('./query-sqs')();

const failure = (request) => request.promise().then(() => null, (e) => [e.code, e.statusCode]);

// `Ref` of a queue is its URL, which aws-sdk v2 sends to (the query protocol's client takes
// the QueueUrl as its endpoint), so it must lead to nimbus.
exports.byRef = async () => {
  const QueueUrl = process.env.QUEUE_URL;
  await sqs.sendMessage({ QueueUrl, MessageBody: 'sent by Ref' }).promise();
  const got = await sqs.receiveMessage({ QueueUrl, WaitTimeSeconds: 1 }).promise();
  await sqs.deleteMessage({ QueueUrl, ReceiptHandle: got.Messages[0].ReceiptHandle }).promise();
  return { QueueUrl, body: got.Messages[0].Body };
};

exports.handler = async () => {
  const { QueueUrl } = await sqs.getQueueUrl({ QueueName: 'jobs' }).promise();
  const made = await sqs.createQueue({ QueueName: 'made', Attributes: { VisibilityTimeout: '5' } }).promise();
  const listed = await sqs.listQueues({ QueueNamePrefix: 'ma' }).promise();
  // A carriage return and XML's special characters survive the XML answer: the SDK checks
  // the body's MD5.
  const sent = await sqs.sendMessage({
    QueueUrl, MessageBody: 'line 1\r\n<line 2> & "3"', DelaySeconds: 0,
    MessageAttributes: {
      kind: { DataType: 'String', StringValue: 'order' },
      n: { DataType: 'Number', StringValue: '42' },
      raw: { DataType: 'Binary', BinaryValue: Buffer.from([0, 1, 2]) },
    },
  }).promise();
  const batch = await sqs.sendMessageBatch({ QueueUrl, Entries: [
    { Id: 'a', MessageBody: 'batch-a' },
    { Id: 'b', MessageBody: 'batch-b', MessageAttributes: { kind: { DataType: 'String', StringValue: 'b' } } },
  ] }).promise();
  const duplicate = await failure(sqs.sendMessageBatch({ QueueUrl, Entries: [
    { Id: 'x', MessageBody: '1' }, { Id: 'x', MessageBody: '2' }] }));
  const got = await sqs.receiveMessage({
    QueueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1, VisibilityTimeout: 0,
    AttributeNames: ['ApproximateReceiveCount', 'AWSTraceHeader'], MessageAttributeNames: ['All'],
  }).promise();
  const received = got.Messages.map((m) => ({
    body: m.Body,
    attributes: Object.fromEntries(Object.entries(m.MessageAttributes || {}).map(([name, a]) =>
      [name, a.StringValue ?? a.BinaryValue.toString('base64')])),
    count: m.Attributes.ApproximateReceiveCount,
    traced: typeof m.Attributes.AWSTraceHeader,
  })).sort((x, y) => x.body.localeCompare(y.body));
  const again = await sqs.receiveMessage({ QueueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1 }).promise();
  const [first, ...rest] = again.Messages;
  await sqs.changeMessageVisibility({ QueueUrl, ReceiptHandle: first.ReceiptHandle, VisibilityTimeout: 0 }).promise();
  await sqs.deleteMessage({ QueueUrl, ReceiptHandle: first.ReceiptHandle }).promise();
  const deleted = await sqs.deleteMessageBatch({ QueueUrl, Entries: [
    ...rest.map((m, i) => ({ Id: `m${i}`, ReceiptHandle: m.ReceiptHandle })),
    { Id: 'bad', ReceiptHandle: 'not-a-handle' },
  ] }).promise();
  await sqs.sendMessage({ QueueUrl, MessageBody: 'purged' }).promise();
  const before = await sqs.getQueueAttributes({ QueueUrl, AttributeNames: ['ApproximateNumberOfMessages'] }).promise();
  await sqs.purgeQueue({ QueueUrl }).promise();
  const after = await sqs.getQueueAttributes({ QueueUrl, AttributeNames: ['All'] }).promise();
  // SetQueueAttributes, ChangeMessageVisibilityBatch and DeleteQueue.
  await sqs.setQueueAttributes({ QueueUrl: made.QueueUrl, Attributes: { VisibilityTimeout: '9' } }).promise();
  const set = await sqs.getQueueAttributes({ QueueUrl: made.QueueUrl, AttributeNames: ['VisibilityTimeout'] }).promise();
  await sqs.sendMessage({ QueueUrl: made.QueueUrl, MessageBody: 'held' }).promise();
  const held = await sqs.receiveMessage({ QueueUrl: made.QueueUrl, WaitTimeSeconds: 1 }).promise();
  const changed = await sqs.changeMessageVisibilityBatch({ QueueUrl: made.QueueUrl, Entries: [
    { Id: 'h', ReceiptHandle: held.Messages[0].ReceiptHandle, VisibilityTimeout: 0 },
    { Id: 'bad', ReceiptHandle: 'nope', VisibilityTimeout: 0 },
  ] }).promise();
  await sqs.deleteQueue({ QueueUrl: made.QueueUrl }).promise();
  const remaining = await sqs.listQueues({ QueueNamePrefix: 'ma' }).promise();
  const managed = {
    visibility: set.Attributes.VisibilityTimeout,
    changed: [changed.Successful.map((s) => s.Id), changed.Failed.map((f) => f.Id)],
    remaining: remaining.QueueUrls || [],
  };
  return {
    managed, protocol: sqs.api.protocol, QueueUrl, made: made.QueueUrl, listed: listed.QueueUrls,
    md5: sent.MD5OfMessageBody, batch: batch.Successful.map((s) => s.Id), duplicate, received,
    deleted: { ok: deleted.Successful.length, failed: deleted.Failed.map((f) => [f.Id, f.Code, f.SenderFault]) },
    before: before.Attributes, after: [after.Attributes.ApproximateNumberOfMessages, after.Attributes.QueueArn],
    errors: [
      await failure(sqs.getQueueUrl({ QueueName: 'missing' })),
      await failure(sqs.receiveMessage({ QueueUrl, MaxNumberOfMessages: 11 })),
      // Refused before SQS: the error still comes in the query protocol's XML.
      await failure(require('./query-sqs')({
        accessKeyId: process.env.AWS_ACCESS_KEY_ID, secretAccessKey: 'not-the-secret',
      }).getQueueUrl({ QueueName: 'jobs' })),
    ],
  };
};
"#;

fn app() -> TestApp {
    TestApp::new(&[
        ("serverless.yml", MANIFEST),
        ("app.js", APP_JS),
        ("query-sqs.js", QUERY_SQS_JS),
        ("legacy.js", LEGACY_JS),
    ])
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
            "sqsQuery": ["AccessDenied", 403],
            "sns": ["AuthorizationError", 403],
            "lambda": ["AccessDeniedException", 403],
            "s3": ["AccessDenied", 403],
        })
    );
}

#[tokio::test]
async fn aws_sdk_v2_functions_put_and_get_s3_objects_with_no_endpoint_in_their_code() {
    let app = app();
    let server = TestServer::start(app.path(), &[]);
    let out = server
        .invoke_ok(app.path(), "app", &json!({ "s3": true }))
        .await;
    assert_eq!(
        out,
        json!({
            // The MD5 of `hello from v2`.
            "etag": "\"98520327eb33afb0378950cf95b778cf\"",
            "body": "hello from v2",
            "type": "text/plain",
        })
    );
}

#[tokio::test]
async fn aws_sdk_v2_releases_before_sqs_json_reach_queues_over_the_query_protocol() {
    let app = app();
    let server = TestServer::start(app.path(), &[]);
    let url = |queue: &str| format!("http://{}/123456789012/{queue}", server.addr);
    let by_ref = server.invoke_ok(app.path(), "byref", &json!({})).await;
    assert_eq!(by_ref["QueueUrl"], url("jobs"), "{by_ref}");
    assert_eq!(by_ref["body"], "sent by Ref", "{by_ref}");
    let out = server.invoke_ok(app.path(), "legacy", &json!({})).await;
    assert_eq!(out["protocol"], "query");
    assert_eq!(
        out["managed"],
        json!({ "visibility": "9", "changed": [["h"], ["bad"]], "remaining": [] })
    );
    assert_eq!(out["QueueUrl"], url("jobs"));
    assert_eq!(out["made"], url("made"));
    assert_eq!(out["listed"], json!([url("made")]));
    // The MD5 of `line 1\r\n<line 2> & "3"`.
    assert_eq!(out["md5"], "ff2862400c1193e57a7aa2a5e2cdda35");
    assert_eq!(out["batch"], json!(["a", "b"]));
    assert_eq!(
        out["duplicate"],
        json!(["AWS.SimpleQueueService.BatchEntryIdsNotDistinct", 400])
    );
    // The trace nimbus carries is the system attribute AWSTraceHeader, as on SQS, not a
    // message attribute.
    assert_eq!(
        out["received"],
        json!([
            { "body": "batch-a", "attributes": {}, "count": "1", "traced": "string" },
            { "body": "batch-b", "attributes": { "kind": "b" }, "count": "1", "traced": "string" },
            {
                "body": "line 1\r\n<line 2> & \"3\"",
                "attributes": { "kind": "order", "n": "42", "raw": "AAEC" },
                "count": "1",
                "traced": "string",
            },
        ])
    );
    assert_eq!(
        out["deleted"],
        json!({ "ok": 2, "failed": [["bad", "ReceiptHandleIsInvalid", true]] })
    );
    assert_eq!(out["before"], json!({ "ApproximateNumberOfMessages": "1" }));
    assert_eq!(
        out["after"],
        json!(["0", "arn:aws:sqs:us-east-1:123456789012:jobs"])
    );
    assert_eq!(
        out["errors"],
        json!([
            ["AWS.SimpleQueueService.NonExistentQueue", 400],
            ["InvalidParameterValue", 400],
            ["SignatureDoesNotMatch", 403],
        ])
    );
}
