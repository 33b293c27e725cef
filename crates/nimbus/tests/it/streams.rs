//! Stream event sources (issue 13): functions invoked with a table's change records, per
//! item in order, written through the AWS SDKs unchanged; and the hard cases of Lambda's
//! stream semantics — ordering per key across lanes, a poison record isolated by bisecting
//! and sent to onFailure, and a kill -9 in the middle that loses nothing.

use serde_json::{Value, json};

use crate::aws_sqs::{boto3_path, run_boto3_with};
use crate::harness::{TestApp, TestServer};

/// Runs a boto3 script against `server` with `PHASE` set; its printed JSON.
fn boto3(boto3: &str, script: &str, server: &TestServer, phase: &str) -> Value {
    boto3_with(boto3, script, server, phase, &[])
}

/// As [`boto3`], with more environment variables for the script.
fn boto3_with(
    boto3: &str,
    script: &str,
    server: &TestServer,
    phase: &str,
    env: &[(&str, String)],
) -> Value {
    let mut env = env.to_vec();
    env.push(("PHASE", phase.to_owned()));
    run_boto3_with(boto3, script, server, &env)
}

const CHANGES_MANIFEST: &str = r#"
service: shop
provider:
  name: aws
  runtime: python3.12
  timeout: 10
  iam:
    role:
      statements:
        - Effect: Allow
          Action: [dynamodb:PutItem]
          Resource: ['arn:aws:dynamodb:*:*:table/changes', 'arn:aws:dynamodb:*:*:table/inserts']
functions:
  record:
    handler: record.handler
    events:
      - stream:
          type: dynamodb
          arn: { Fn::GetAtt: [OrdersTable, StreamArn] }
          batchSize: 5
          startingPosition: TRIM_HORIZON
  updateInventory:
    handler: inventory.handler
    runtime: nodejs20.x
    events:
      - dynamodb:
          stream: ${cf:shop-dev.OrdersTableStreamArn}
          startingPosition: TRIM_HORIZON
          filterPatterns: [{ eventName: [INSERT] }]
resources:
  Resources:
    OrdersTable:
      Type: AWS::DynamoDB::Table
      Properties:
        TableName: orders
        AttributeDefinitions: [{ AttributeName: id, AttributeType: S }]
        KeySchema: [{ AttributeName: id, KeyType: HASH }]
        BillingMode: PAY_PER_REQUEST
        StreamSpecification: { StreamViewType: NEW_AND_OLD_IMAGES }
tables:
  changes: { partitionKey: id, sortKey: seq }
  inserts: { partitionKey: id }
"#;

const RECORD_PY: &str = r#"
import boto3

changes = boto3.resource("dynamodb").Table("changes")


def qty(image):
    return image.get("qty", {}).get("N", "-") if image else "-"


def handler(event, context):
    for record in event["Records"]:
        change = record["dynamodb"]
        changes.put_item(Item={
            "id": change["Keys"]["id"]["S"],
            "seq": change["SequenceNumber"],
            "event": record["eventName"],
            "new": qty(change.get("NewImage")),
            "old": qty(change.get("OldImage")),
            "source": record["eventSource"],
            "arn": record["eventSourceARN"],
            "view": change["StreamViewType"],
        })
"#;

const INVENTORY_JS: &str = r#"
const { DynamoDBClient, PutItemCommand } = require('@aws-sdk/client-dynamodb');

const db = new DynamoDBClient({});

exports.handler = async (event) => {
  for (const record of event.Records) {
    const image = record.dynamodb.NewImage;
    await db.send(new PutItemCommand({
      TableName: 'inserts',
      Item: { id: image.id, event: { S: record.eventName } },
    }));
  }
};
"#;

const CHANGES_SCRIPT: &str = r#"
import json, os, time

import boto3
from botocore.exceptions import ClientError

kw = dict(endpoint_url=os.environ["ENDPOINT"], region_name="us-east-1",
          aws_access_key_id="test", aws_secret_access_key="test")
orders = boto3.resource("dynamodb", **kw).Table("orders")
changes = boto3.resource("dynamodb", **kw).Table("changes")
inserts = boto3.resource("dynamodb", **kw).Table("inserts")

orders.put_item(Item={"id": "o1", "qty": 1})
orders.update_item(Key={"id": "o1"}, UpdateExpression="SET qty = :q", ExpressionAttributeValues={":q": 2})
try:
    orders.put_item(Item={"id": "o1", "qty": 9}, ConditionExpression="attribute_not_exists(id)")
except ClientError:
    pass
orders.put_item(Item={"id": "o1", "qty": 2})  # unchanged: no record
orders.delete_item(Key={"id": "o1"})
orders.put_item(Item={"id": "o2", "qty": 5})

deadline = time.time() + 30
while time.time() < deadline:
    items = changes.scan()["Items"]
    if len(items) >= 4 and len(inserts.scan()["Items"]) >= 2:
        break
    time.sleep(0.2)
time.sleep(1)  # anything extra would show up now
items = sorted(changes.scan()["Items"], key=lambda i: i["seq"])
print(json.dumps({
    "changes": [[i["id"], i["event"], i["new"], i["old"]] for i in items],
    "sources": sorted({i["source"] for i in items}),
    "arns": sorted({i["arn"].split("/stream/")[0] for i in items}),
    "views": sorted({i["view"] for i in items}),
    "seq_digits": sorted({len(i["seq"]) for i in items}),
    "inserts": sorted([i["id"], i["event"]] for i in inserts.scan()["Items"]),
}))
"#;

#[tokio::test]
async fn table_writes_invoke_stream_functions_with_each_change_in_order() {
    let app = TestApp::new(&[
        ("serverless.yml", CHANGES_MANIFEST),
        ("record.py", RECORD_PY),
        ("inventory.js", INVENTORY_JS),
    ]);
    let boto3_dir = boto3_path(&app);
    let server = TestServer::start(app.path(), &[]);
    let out = boto3(&boto3_dir, CHANGES_SCRIPT, &server, "");
    assert_eq!(
        out["changes"],
        json!([
            ["o1", "INSERT", "1", "-"],
            ["o1", "MODIFY", "2", "1"],
            ["o1", "REMOVE", "-", "2"],
            ["o2", "INSERT", "5", "-"],
        ]),
        "{out}"
    );
    assert_eq!(out["sources"], json!(["aws:dynamodb"]));
    assert_eq!(
        out["arns"],
        json!(["arn:aws:dynamodb:us-east-1:123456789012:table/orders"])
    );
    assert_eq!(out["views"], json!(["NEW_AND_OLD_IMAGES"]));
    assert_eq!(out["seq_digits"], json!([21]));
    // The filtered consumer saw only the inserts.
    assert_eq!(out["inserts"], json!([["o1", "INSERT"], ["o2", "INSERT"]]));
    let banner = server.stdout();
    assert!(banner.contains("dynamodb orders"), "{banner}");
    let metrics = server
        .admin(app.path(), "GET", "/metrics", None)
        .await
        .text();
    let records = |function: &str, outcome: &str| {
        crate::observe::metric(
            &metrics,
            "nimbus_stream_records_total",
            &[
                ("function", function),
                ("stream", "table/orders"),
                ("outcome", outcome),
            ],
        )
    };
    assert_eq!(records("record", "invoked"), 4.0, "{metrics}");
    assert_eq!(records("updateInventory", "invoked"), 2.0);
    assert_eq!(records("updateInventory", "filtered"), 2.0);
    let age = crate::observe::metric(
        &metrics,
        "nimbus_stream_iterator_age_seconds",
        &[("function", "record")],
    );
    assert!(
        metrics.contains("nimbus_stream_iterator_age_seconds{"),
        "{metrics}"
    );
    assert!((0.0..5.0).contains(&age), "iterator age {age}");
}

const ORDER_MANIFEST: &str = r#"
service: clicks
provider:
  name: aws
  runtime: nodejs20.x
  timeout: 30
  iam:
    role:
      statements:
        - Effect: Allow
          Action: [dynamodb:UpdateItem, dynamodb:PutItem]
          Resource: ['arn:aws:dynamodb:*:*:table/seen', 'arn:aws:dynamodb:*:*:table/progress', 'arn:aws:dynamodb:*:*:table/violations']
functions:
  track:
    handler: track.handler
    events:
      - stream:
          type: dynamodb
          arn: events
          batchSize: 50
          startingPosition: TRIM_HORIZON
          parallelizationFactor: 2
          bisectBatchOnFunctionError: true
          maximumRetryAttempts: 1
          destinations: { onFailure: failed }
queues: [failed]
tables:
  events: { partitionKey: k, sortKey: { name: n, type: N }, stream: NEW_IMAGE }
  seen: { partitionKey: k, sortKey: { name: n, type: N } }
  progress: { partitionKey: k }
  violations: { partitionKey: k, sortKey: { name: n, type: N } }
"#;

/// Counts each record it sees and checks, the first time, that the key's records arrive
/// in order; the poison key always fails.
const TRACK_JS: &str = r#"
const { DynamoDBClient, UpdateItemCommand, PutItemCommand } = require('@aws-sdk/client-dynamodb');

const db = new DynamoDBClient({});

exports.handler = async (event) => {
  for (const record of event.Records) {
    const image = record.dynamodb.NewImage;
    const key = { k: image.k, n: image.n };
    if (image.k.S === 'poison') {
      throw new Error(`poison record ${record.dynamodb.SequenceNumber}`);
    }
    const seen = await db.send(new UpdateItemCommand({
      TableName: 'seen', Key: key, UpdateExpression: 'ADD times :one',
      ExpressionAttributeValues: { ':one': { N: '1' } }, ReturnValues: 'UPDATED_NEW',
    }));
    if (seen.Attributes.times.N !== '1') continue;
    try {
      await db.send(new UpdateItemCommand({
        TableName: 'progress', Key: { k: image.k }, UpdateExpression: 'SET #last = :n',
        ConditionExpression: 'attribute_not_exists(#last) OR #last < :n',
        ExpressionAttributeNames: { '#last': 'last' }, ExpressionAttributeValues: { ':n': image.n },
      }));
    } catch (e) {
      if (e.name !== 'ConditionalCheckFailedException') throw e;
      await db.send(new PutItemCommand({ TableName: 'violations', Item: key }));
    }
  }
};
"#;

const ORDER_SCRIPT: &str = r#"
import json, os, time

import boto3

kw = dict(endpoint_url=os.environ["ENDPOINT"], region_name="us-east-1",
          aws_access_key_id="test", aws_secret_access_key="test")
client = boto3.client("dynamodb", **kw)
sqs = boto3.client("sqs", **kw)
KEYS = int(os.environ["KEYS"])
PER_KEY = int(os.environ["PER_KEY"])


def write(numbers):
    items = [{"PutRequest": {"Item": {"k": {"S": f"k{k}"}, "n": {"N": str(n)}}}}
             for n in numbers for k in range(KEYS)]
    for start in range(0, len(items), 25):
        client.batch_write_item(RequestItems={"events": items[start:start + 25]})


def count(table):
    total, start = 0, None
    while True:
        args = {"TableName": table, "Select": "COUNT"}
        if start:
            args["ExclusiveStartKey"] = start
        page = client.scan(**args)
        total += page["Count"]
        start = page.get("LastEvaluatedKey")
        if not start:
            return total


phase = os.environ["PHASE"]
if phase == "first":
    write(range(1, PER_KEY // 2 + 1))
    client.put_item(TableName="events", Item={"k": {"S": "poison"}, "n": {"N": "0"}})
    # Wait until the consumer is well under way, then let the test kill nimbus.
    deadline = time.time() + 60
    while count("seen") < 100 and time.time() < deadline:
        time.sleep(0.05)
    print(json.dumps({"seen": count("seen")}))
else:
    write(range(PER_KEY // 2 + 1, PER_KEY + 1))
    deadline = time.time() + 150 + KEYS * PER_KEY / 50
    while count("seen") < KEYS * PER_KEY and time.time() < deadline:
        time.sleep(0.25)
    seen = []
    start = None
    while True:
        args = {"TableName": "seen"}
        if start:
            args["ExclusiveStartKey"] = start
        page = client.scan(**args)
        seen += page["Items"]
        start = page.get("LastEvaluatedKey")
        if not start:
            break
    progress, start = [], None
    while True:
        args = {"TableName": "progress"}
        if start:
            args["ExclusiveStartKey"] = start
        page = client.scan(**args)
        progress += page["Items"]
        start = page.get("LastEvaluatedKey")
        if not start:
            break
    failed = []
    deadline = time.time() + 30
    while not failed and time.time() < deadline:
        url = sqs.get_queue_url(QueueName="failed")["QueueUrl"]
        failed = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
    records = [json.loads(m["Body"]) for m in failed]
    print(json.dumps({
        "seen": len(seen),
        "times": sum(int(i["times"]["N"]) for i in seen),
        "violations": count("violations"),
        "last": sorted({i["last"]["N"] for i in progress}),
        "n_keys": len(progress),
        "failed": [[r["requestContext"]["condition"], r["DDBStreamBatchInfo"]["batchSize"],
                    r["DDBStreamBatchInfo"]["startSequenceNumber"] == r["DDBStreamBatchInfo"]["endSequenceNumber"],
                    r["responseContext"].get("functionError")] for r in records],
    }))
"#;

#[tokio::test]
async fn stream_order_holds_per_key_across_a_kill_and_a_poison_record_goes_to_on_failure() {
    // 1,000 records over 20 keys in CI; NIMBUS_STREAM_KEYS=100 NIMBUS_STREAM_PER_KEY=100 runs
    // the issue's 10,000 over 100 (about two minutes).
    let number = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(default)
    };
    let (keys, per_key) = (
        number("NIMBUS_STREAM_KEYS", 20),
        number("NIMBUS_STREAM_PER_KEY", 50),
    );
    let total = keys * per_key;
    let env = [("KEYS", keys.to_string()), ("PER_KEY", per_key.to_string())];
    let app = TestApp::new(&[("serverless.yml", ORDER_MANIFEST), ("track.js", TRACK_JS)]);
    let boto3_dir = boto3_path(&app);
    let server = TestServer::start(app.path(), &[]);
    let first = boto3_with(&boto3_dir, ORDER_SCRIPT, &server, "first", &env);
    assert!(first["seen"].as_u64().unwrap_or(0) >= 100, "{first}");
    // kill -9 in the middle of consuming.
    crate::harness::signal(server.pid(), libc::SIGKILL);
    drop(server);
    let server = TestServer::start(app.path(), &[]);
    let out = boto3_with(&boto3_dir, ORDER_SCRIPT, &server, "second", &env);
    assert_eq!(out["seen"], total, "no record lost: {out}");
    assert_eq!(out["violations"], 0, "order per key kept: {out}");
    assert_eq!(out["n_keys"], keys);
    assert_eq!(out["last"], json!([per_key.to_string()]));
    let duplicates = out["times"].as_u64().unwrap_or(0) - total;
    eprintln!(
        "stream crash test: {total} records over {keys} keys, {duplicates} delivered twice after kill -9"
    );
    // At most the batches in flight at the kill: 50 records × 2 lanes × 4 shards.
    assert!(duplicates <= 400, "{out}");
    assert_eq!(
        out["failed"],
        json!([["RetryAttemptsExhausted", 1, true, "Unhandled"]]),
        "{out}"
    );
}

const UPDATE_SCRIPT: &str = r#"
import json, os

import boto3
from botocore.exceptions import ClientError

kw = dict(endpoint_url=os.environ["ENDPOINT"], region_name="us-east-1",
          aws_access_key_id="test", aws_secret_access_key="test")
client = boto3.client("dynamodb", **kw)
client.create_table(TableName="late", AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                    KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}], BillingMode="PAY_PER_REQUEST")
client.put_item(TableName="late", Item={"id": {"S": "before"}})
out = {"before": "LatestStreamArn" in client.describe_table(TableName="late")["Table"]}
table = client.update_table(TableName="late", StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"})["TableDescription"]
out["arn"] = table["LatestStreamArn"].split("/stream/")[0]
out["spec"] = table["StreamSpecification"]
out["ttl"] = client.update_time_to_live(TableName="late", TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires"})["TimeToLiveSpecification"]
out["described"] = client.describe_time_to_live(TableName="late")["TimeToLiveDescription"]
client.put_item(TableName="late", Item={"id": {"S": "after"}})
out["items"] = client.describe_table(TableName="late")["Table"]["ItemCount"]
errors = {}
for name, call in [
    ("twice", lambda: client.update_table(TableName="late", StreamSpecification={"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"})),
    ("no_view", lambda: client.update_table(TableName="late", StreamSpecification={"StreamEnabled": True})),
    ("ttl_twice", lambda: client.update_time_to_live(TableName="late", TimeToLiveSpecification={"Enabled": True, "AttributeName": "other"})),
    ("missing", lambda: client.update_table(TableName="nope", StreamSpecification={"StreamEnabled": False})),
]:
    try:
        call()
        errors[name] = None
    except ClientError as e:
        errors[name] = e.response["Error"]["Code"]
out["errors"] = errors
print(json.dumps(out))
"#;

#[tokio::test]
async fn update_table_turns_a_stream_on_and_update_time_to_live_sets_the_ttl_attribute() {
    let app = TestApp::new(&[
        (
            "serverless.yml",
            "service: s\nprovider: { runtime: nodejs20.x }\nfunctions:\n  f: { handler: f.handler }\n",
        ),
        ("f.js", "exports.handler = async () => ({});\n"),
    ]);
    let boto3_dir = boto3_path(&app);
    let server = TestServer::start(app.path(), &[]);
    let out = boto3(&boto3_dir, UPDATE_SCRIPT, &server, "");
    assert_eq!(out["before"], false, "{out}");
    assert_eq!(
        out["arn"],
        "arn:aws:dynamodb:us-east-1:123456789012:table/late"
    );
    assert_eq!(
        out["spec"],
        json!({ "StreamEnabled": true, "StreamViewType": "NEW_IMAGE" })
    );
    assert_eq!(
        out["ttl"],
        json!({ "Enabled": true, "AttributeName": "expires" })
    );
    assert_eq!(
        out["described"],
        json!({ "TimeToLiveStatus": "ENABLED", "AttributeName": "expires" })
    );
    assert_eq!(out["items"], 2, "items are kept: {out}");
    assert_eq!(
        out["errors"],
        json!({
            "twice": "ValidationException",
            "no_view": "ValidationException",
            "ttl_twice": "ValidationException",
            "missing": "ResourceNotFoundException",
        })
    );
}

const KINESIS_MANIFEST: &str = r#"
service: analytics
provider:
  name: aws
  runtime: nodejs20.x
  timeout: 10
  environment:
    STREAM: { Ref: ClickStream }
  iam:
    role:
      statements:
        - Effect: Allow
          Action: [kinesis:PutRecord]
          Resource: { Fn::GetAtt: [ClickStream, Arn] }
        - Effect: Allow
          Action: [dynamodb:UpdateItem]
          Resource: 'arn:aws:dynamodb:*:*:table/clicks'
functions:
  collect:
    handler: src/collect.handler
    events:
      - httpApi: POST /clicks
  count:
    handler: src/count.handler
    events:
      - stream:
          type: kinesis
          arn: { Fn::GetAtt: [ClickStream, Arn] }
          batchSize: 100
          startingPosition: LATEST
          functionResponseType: ReportBatchItemFailures
resources:
  Resources:
    ClickStream:
      Type: AWS::Kinesis::Stream
      Properties:
        Name: clicks-${sls:stage}
        ShardCount: 2
tables:
  clicks: { partitionKey: user, sortKey: { name: n, type: N } }
"#;

const COLLECT_TS: &str = r#"
import { KinesisClient, PutRecordCommand } from '@aws-sdk/client-kinesis';
import type { APIGatewayProxyEventV2, APIGatewayProxyResultV2 } from 'aws-lambda';

const kinesis = new KinesisClient({});

interface Click { user: string; n: number; failOnce?: boolean }

export const handler = async (event: APIGatewayProxyEventV2): Promise<APIGatewayProxyResultV2> => {
  const click: Click = JSON.parse(event.body ?? '{}');
  const res = await kinesis.send(new PutRecordCommand({
    StreamName: process.env.STREAM,
    PartitionKey: click.user,
    Data: Buffer.from(JSON.stringify(click)),
  }));
  return { statusCode: 202, body: JSON.stringify({ shard: res.ShardId, seq: res.SequenceNumber }) };
};
"#;

const COUNT_TS: &str = r#"
import { DynamoDBClient, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import type { KinesisStreamEvent, KinesisStreamBatchResponse } from 'aws-lambda';

const db = new DynamoDBClient({});

export const handler = async (event: KinesisStreamEvent): Promise<KinesisStreamBatchResponse> => {
  for (const record of event.Records) {
    const click = JSON.parse(Buffer.from(record.kinesis.data, 'base64').toString('utf8'));
    const res = await db.send(new UpdateItemCommand({
      TableName: 'clicks',
      Key: { user: { S: click.user }, n: { N: String(click.n) } },
      UpdateExpression: 'ADD times :one SET #source = :source',
      ExpressionAttributeNames: { '#source': 'source' },
      ExpressionAttributeValues: { ':one': { N: '1' }, ':source': { S: record.eventSource } },
      ReturnValues: 'UPDATED_NEW',
    }));
    if (click.failOnce && res.Attributes?.times?.N === '1') {
      return { batchItemFailures: [{ itemIdentifier: record.kinesis.sequenceNumber }] };
    }
  }
  return { batchItemFailures: [] };
};
"#;

const CLICKS_SCRIPT: &str = r#"
import json, os, time

import boto3

kw = dict(endpoint_url=os.environ["ENDPOINT"], region_name="us-east-1",
          aws_access_key_id="test", aws_secret_access_key="test")
table = boto3.resource("dynamodb", **kw).Table("clicks")
deadline = time.time() + 30
items = []
while time.time() < deadline:
    items = table.scan()["Items"]
    if len(items) >= 40:
        break
    time.sleep(0.2)
time.sleep(0.5)
items = table.scan()["Items"]
print(json.dumps({
    "n": len(items),
    "sources": sorted({i["source"] for i in items}),
    "times": sorted([i["user"], int(i["n"]), int(i["times"])] for i in items if int(i["times"]) != 1),
}))
"#;

#[tokio::test]
async fn a_typescript_kinesis_producer_and_consumer_run_unchanged() {
    let app = TestApp::new(&[
        ("serverless.yml", KINESIS_MANIFEST),
        ("src/collect.ts", COLLECT_TS),
        ("src/count.ts", COUNT_TS),
    ]);
    let boto3_dir = boto3_path(&app);
    let server = TestServer::start(app.path(), &[]);
    let mut shards = std::collections::BTreeSet::new();
    for n in 0..10 {
        for user in ["ann", "bob", "cy", "dee"] {
            let click = json!({ "user": user, "n": n, "failOnce": user == "bob" && n == 4 });
            let res = server
                .request(
                    "POST",
                    "/clicks",
                    &[("content-type", "application/json")],
                    click.to_string().into_bytes(),
                )
                .await;
            assert_eq!(res.status, 202, "{}\n{}", res.text(), server.logs());
            let body = res.json();
            shards.insert(body["shard"].as_str().unwrap_or_default().to_owned());
            assert_eq!(body["seq"].as_str().map(str::len), Some(21), "{body}");
        }
    }
    assert!(
        shards.iter().all(|s| s.starts_with("shardId-")),
        "{shards:?}"
    );
    let out = boto3(&boto3_dir, CLICKS_SCRIPT, &server, "");
    assert_eq!(
        out["n"],
        40,
        "every click counted: {out}\n{}",
        server.logs()
    );
    assert_eq!(out["sources"], json!(["aws:kinesis"]));
    // The reported record was delivered again, and nothing before it was.
    assert_eq!(out["times"], json!([["bob", 4, 2]]), "{out}");
}
