//! Kinesis and DynamoDB Streams through boto3, unchanged (issue 13): streams created,
//! written and read in order per partition key; a table's change records read back after
//! its writes; Kinesis's errors; a function's grants on a stream; and the `nimbus stream`
//! and `nimbus table` commands on a running app.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::aws_sqs::{boto3_path, run_boto3};
use crate::harness::{TestApp, TestServer};

/// An app whose function may put records on `clicks` only, through boto3 in its handler.
const MANIFEST: &str = r#"
service: s
provider:
  name: aws
  runtime: python3.12
  timeout: 10
  iam:
    role:
      statements:
        - Effect: Allow
          Action: [kinesis:PutRecord]
          Resource: arn:aws:kinesis:*:*:stream/clicks
functions:
  produce:
    handler: produce.handler
    events: [{ httpApi: { path: /produce, method: post } }]
"#;

const PRODUCE_PY: &str = r#"
import json

import boto3
from botocore.exceptions import ClientError

kinesis = boto3.client("kinesis")


def handler(event, context):
    stream = json.loads(event["body"])["stream"]
    try:
        res = kinesis.put_record(StreamName=stream, PartitionKey="fn", Data=b"from a function")
        return {"statusCode": 200, "body": json.dumps({"shard": res["ShardId"]})}
    except ClientError as e:
        return {"statusCode": 403, "body": json.dumps({"error": e.response["Error"]["Code"]})}
"#;

fn producer_app() -> TestApp {
    TestApp::new(&[("serverless.yml", MANIFEST), ("produce.py", PRODUCE_PY)])
}

const KINESIS_SCRIPT: &str = r#"
import base64, json, os, time

import boto3
from botocore.exceptions import ClientError

kw = dict(endpoint_url=os.environ["ENDPOINT"], region_name="us-east-1",
          aws_access_key_id="test", aws_secret_access_key="test")
kinesis = boto3.client("kinesis", **kw)
out = {}

def error(call):
    try:
        call()
        return None
    except ClientError as e:
        return [e.response["Error"]["Code"], e.response["Error"]["Message"]]

kinesis.create_stream(StreamName="clicks", ShardCount=2)
kinesis.create_stream(StreamName="views", StreamModeDetails={"StreamMode": "ON_DEMAND"})
kinesis.get_waiter("stream_exists").wait(StreamName="clicks", WaiterConfig={"Delay": 0.1})
out["streams"] = kinesis.list_streams()["StreamNames"]
summary = kinesis.describe_stream_summary(StreamName="clicks")["StreamDescriptionSummary"]
out["summary"] = [summary["StreamStatus"], summary["OpenShardCount"], summary["RetentionPeriodHours"],
                  summary["StreamARN"]]
out["views_shards"] = len(kinesis.list_shards(StreamName="views")["Shards"])

shards = kinesis.list_shards(StreamName="clicks")["Shards"]
out["ranges"] = [[s["ShardId"], s["HashKeyRange"]["StartingHashKey"], s["HashKeyRange"]["EndingHashKey"]]
                 for s in shards]
page = kinesis.list_shards(StreamName="clicks", MaxResults=1)
rest = kinesis.list_shards(NextToken=page["NextToken"])
assert kinesis.list_shards(StreamName="clicks", NextToken=page["NextToken"])["Shards"] == rest["Shards"]
out["shard_pages"] = [[s["ShardId"] for s in page["Shards"]], [s["ShardId"] for s in rest["Shards"]],
                      "NextToken" in rest]

# 10 keys, 30 records each: one at a time, then in batches.
placed = {}
for i in range(10):
    for k in range(10):
        res = kinesis.put_record(StreamName="clicks", PartitionKey=f"user-{k}", Data=f"user-{k}:{i}".encode())
        placed.setdefault(f"user-{k}", set()).add(res["ShardId"])
for start in (10, 20):
    res = kinesis.put_records(StreamName="clicks", Records=[
        {"PartitionKey": f"user-{k}", "Data": f"user-{k}:{i}".encode()}
        for i in range(start, start + 10) for k in range(10)])
    assert res["FailedRecordCount"] == 0
    assert len(res["Records"]) == 100
    for r in res["Records"]:
        assert r["SequenceNumber"] and r["ShardId"]
out["one_shard_per_key"] = all(len(s) == 1 for s in placed.values())

seen = {}
sequences = []
behind = []
for shard in shards:
    it = kinesis.get_shard_iterator(StreamName="clicks", ShardId=shard["ShardId"],
                                    ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    while True:
        res = kinesis.get_records(ShardIterator=it, Limit=7)
        behind.append(res["MillisBehindLatest"])
        it = res["NextShardIterator"]
        if not res["Records"]:
            break
        for r in res["Records"]:
            key, i = r["Data"].decode().split(":")
            assert r["PartitionKey"] == key
            assert placed[key] == {shard["ShardId"]}
            assert r["ApproximateArrivalTimestamp"].year >= 2024
            seen.setdefault(key, []).append(int(i))
            sequences.append(int(r["SequenceNumber"]))
out["records"] = sum(len(v) for v in seen.values())
out["in_order"] = all(v == list(range(30)) for v in seen.values())
out["at_tip"] = behind[-1]

# LATEST sees only what comes after it; AT_/AFTER_SEQUENCE_NUMBER and AT_TIMESTAMP.
shard_id = kinesis.put_record(StreamName="clicks", PartitionKey="user-0", Data=b"before")["ShardId"]
latest = kinesis.get_shard_iterator(StreamName="clicks", ShardId=shard_id,
                                    ShardIteratorType="LATEST")["ShardIterator"]
time.sleep(0.01)
stamp = time.time()
after = kinesis.put_record(StreamName="clicks", PartitionKey="user-0", Data=b"after")
kinesis.put_record(StreamName="clicks", PartitionKey="user-0", Data=b"last")
def read(**kw):
    it = kinesis.get_shard_iterator(StreamName="clicks", ShardId=shard_id, **kw)["ShardIterator"]
    return [r["Data"].decode() for r in kinesis.get_records(ShardIterator=it)["Records"]]
out["latest"] = [r["Data"].decode() for r in kinesis.get_records(ShardIterator=latest)["Records"]]
out["at_seq"] = read(ShardIteratorType="AT_SEQUENCE_NUMBER", StartingSequenceNumber=after["SequenceNumber"])
out["after_seq"] = read(ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=after["SequenceNumber"])
out["at_time"] = read(ShardIteratorType="AT_TIMESTAMP", Timestamp=stamp)

# Binary data and a stream named by ARN.
res = kinesis.put_record(StreamARN=summary["StreamARN"], PartitionKey="bin", Data=bytes(range(256)))
it = kinesis.get_shard_iterator(StreamName="clicks", ShardId=res["ShardId"], ShardIteratorType="AT_SEQUENCE_NUMBER",
                                StartingSequenceNumber=res["SequenceNumber"])["ShardIterator"]
out["binary"] = kinesis.get_records(ShardIterator=it, Limit=1)["Records"][0]["Data"] == bytes(range(256))

out["errors"] = {
    "unknown": error(lambda: kinesis.put_record(StreamName="nope", PartitionKey="k", Data=b"x")),
    "unknown_shard": error(lambda: kinesis.get_shard_iterator(
        StreamName="clicks", ShardId="shardId-000000000009", ShardIteratorType="LATEST")),
    "exists": error(lambda: kinesis.create_stream(StreamName="clicks", ShardCount=1)),
    "iterator": error(lambda: kinesis.get_records(ShardIterator="AAAAAAAAAAFakeIterator")),
    "oversize": error(lambda: kinesis.put_record(StreamName="clicks", PartitionKey="k", Data=b"x" * (1024 * 1024 + 1))),
    "oversize_batch": error(lambda: kinesis.put_records(StreamName="clicks", Records=[
        {"PartitionKey": "k", "Data": b"x"}, {"PartitionKey": "k", "Data": b"x" * (1024 * 1024 + 1)}])),
    "name": error(lambda: kinesis.create_stream(StreamName="bad name", ShardCount=1)),
    "table_stream": error(lambda: kinesis.describe_stream(StreamName="table/orders")),
    "seq": error(lambda: kinesis.get_shard_iterator(StreamName="clicks", ShardId=shard_id,
                                                    ShardIteratorType="AT_SEQUENCE_NUMBER")),
}
kinesis.increase_stream_retention_period(StreamName="clicks", RetentionPeriodHours=48)
kinesis.decrease_stream_retention_period(StreamName="clicks", RetentionPeriodHours=36)
out["retention"] = kinesis.describe_stream_summary(StreamName="clicks")["StreamDescriptionSummary"]["RetentionPeriodHours"]
out["retention_errors"] = [
    error(lambda: kinesis.increase_stream_retention_period(StreamName="clicks", RetentionPeriodHours=30)),
    error(lambda: kinesis.decrease_stream_retention_period(StreamName="clicks", RetentionPeriodHours=4)),
]
out["intact"] = kinesis.describe_stream(StreamName="clicks")["StreamDescription"]["StreamStatus"]
kinesis.delete_stream(StreamName="views")
out["after_delete"] = kinesis.list_streams()["StreamNames"]
out["deleted"] = error(lambda: kinesis.describe_stream(StreamName="views"))[0]
print(json.dumps(out))
"#;

#[tokio::test]
async fn boto3_puts_and_reads_kinesis_records_in_order_per_partition_key() {
    let app = producer_app();
    let boto3 = boto3_path(&app);
    let server = TestServer::start(app.path(), &[]);
    let out = run_boto3(&boto3, KINESIS_SCRIPT, &server);
    assert_eq!(out["streams"], json!(["clicks", "views"]), "{out}");
    assert_eq!(
        out["summary"],
        json!([
            "ACTIVE",
            2,
            24,
            "arn:aws:kinesis:us-east-1:123456789012:stream/clicks"
        ])
    );
    assert_eq!(out["views_shards"], 4);
    assert_eq!(
        out["ranges"],
        json!([
            [
                "shardId-000000000000",
                "0",
                "170141183460469231731687303715884105727"
            ],
            [
                "shardId-000000000001",
                "170141183460469231731687303715884105728",
                "340282366920938463463374607431768211455"
            ]
        ])
    );
    assert_eq!(
        out["shard_pages"],
        json!([["shardId-000000000000"], ["shardId-000000000001"], false])
    );
    assert_eq!(out["one_shard_per_key"], true);
    assert_eq!(out["records"], 300);
    assert_eq!(out["in_order"], true);
    assert_eq!(out["at_tip"], 0);
    assert_eq!(out["latest"], json!(["after", "last"]));
    assert_eq!(out["at_seq"], json!(["after", "last"]));
    assert_eq!(out["after_seq"], json!(["last"]));
    assert_eq!(out["at_time"], json!(["after", "last"]));
    assert_eq!(out["binary"], true);
    let errors = &out["errors"];
    assert_eq!(
        errors["unknown"],
        json!([
            "ResourceNotFoundException",
            "Stream nope under account 123456789012 not found."
        ])
    );
    assert_eq!(errors["unknown_shard"][0], "ResourceNotFoundException");
    assert_eq!(
        errors["exists"],
        json!([
            "ResourceInUseException",
            "Stream clicks under account 123456789012 already exists."
        ])
    );
    assert_eq!(
        errors["iterator"],
        json!(["InvalidArgumentException", "Invalid ShardIterator."])
    );
    assert_eq!(
        errors["oversize"],
        json!([
            "ValidationException",
            "1 validation error detected: Value 'java.nio.HeapByteBuffer[pos=0 lim=1048577 cap=1048577]' at 'data' failed to satisfy constraint: Member must have length less than or equal to 1048576"
        ])
    );
    assert_eq!(errors["oversize_batch"][0], "ValidationException");
    assert!(
        errors["oversize_batch"][1]
            .as_str()
            .is_some_and(|m| m.contains("'records.2.member.data'")),
        "{errors}"
    );
    assert_eq!(errors["name"][0], "ValidationException");
    assert_eq!(errors["seq"][0], "InvalidArgumentException");
    assert_eq!(errors["table_stream"][0], "ValidationException");
    assert_eq!(out["retention"], 36);
    assert_eq!(
        out["retention_errors"],
        json!([
            [
                "InvalidArgumentException",
                "Requested retention period (30 hours) for stream clicks can not be shorter than existing retention period (36 hours). Use DecreaseRetentionPeriod API."
            ],
            [
                "InvalidArgumentException",
                "Minimum allowed retention period is 24 hours. Requested retention period (4 hours) is too short."
            ]
        ])
    );
    assert_eq!(out["intact"], "ACTIVE");
    assert_eq!(out["after_delete"], json!(["clicks"]));
    assert_eq!(out["deleted"], "ResourceNotFoundException");

    // A function signs with its own key, so its grants apply: `clicks` only.
    let produce = |stream: &str| {
        let body = json!({ "stream": stream }).to_string();
        let server = &server;
        async move {
            let res = server
                .request(
                    "POST",
                    "/produce",
                    &[("content-type", "application/json")],
                    body.into_bytes(),
                )
                .await;
            (res.status, res.json())
        }
    };
    let (status, body) = produce("clicks").await;
    assert_eq!(status, 200, "{body}\n{}", server.logs());
    assert!(
        body["shard"]
            .as_str()
            .is_some_and(|s| s.starts_with("shardId-"))
    );
    assert_eq!(
        produce("views").await,
        (403, json!({ "error": "AccessDeniedException" }))
    );
}

const TABLE_STREAM_SCRIPT: &str = r#"
import json, os

import boto3
from botocore.exceptions import ClientError

kw = dict(endpoint_url=os.environ["ENDPOINT"], region_name="us-east-1",
          aws_access_key_id="test", aws_secret_access_key="test")
db = boto3.client("dynamodb", **kw)
streams = boto3.client("dynamodbstreams", **kw)
out = {}

created = db.create_table(
    TableName="orders",
    AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
    KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
    BillingMode="PAY_PER_REQUEST",
    StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
)["TableDescription"]
db.create_table(
    TableName="plain",
    AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
    KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
    BillingMode="PAY_PER_REQUEST",
)
table = db.describe_table(TableName="orders")["Table"]
arn = table["LatestStreamArn"]
out["arn_stable"] = created["LatestStreamArn"] == arn
out["arn"] = arn.rsplit("/stream/", 1)[0]
out["label"] = table["LatestStreamLabel"] == arn.rsplit("/", 1)[1]
out["plain_has_stream"] = "LatestStreamArn" in db.describe_table(TableName="plain")["Table"]

db.put_item(TableName="orders", Item={"id": {"S": "a"}, "qty": {"N": "1"}})
db.put_item(TableName="orders", Item={"id": {"S": "b"}, "qty": {"N": "5"}})
db.update_item(TableName="orders", Key={"id": {"S": "a"}}, UpdateExpression="SET qty = qty + :one",
               ExpressionAttributeValues={":one": {"N": "1"}})
try:
    db.put_item(TableName="orders", Item={"id": {"S": "a"}}, ConditionExpression="attribute_not_exists(id)")
except ClientError:
    pass
db.delete_item(TableName="orders", Key={"id": {"S": "a"}})

listed = streams.list_streams(TableName="orders")["Streams"]
out["listed"] = [[s["StreamArn"] == arn, s["TableName"]] for s in listed]
out["all_listed"] = [s["TableName"] for s in streams.list_streams()["Streams"]]
desc = streams.describe_stream(StreamArn=arn)["StreamDescription"]
out["desc"] = [desc["StreamStatus"], desc["StreamViewType"], desc["TableName"], desc["KeySchema"], len(desc["Shards"])]

records = []
for shard in desc["Shards"]:
    it = streams.get_shard_iterator(StreamArn=arn, ShardId=shard["ShardId"],
                                    ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    while it:
        res = streams.get_records(ShardIterator=it, Limit=2)
        records.extend(res["Records"])
        if not res["Records"]:
            break
        it = res.get("NextShardIterator")
for r in records:
    assert r["eventVersion"] == "1.1" and r["eventSource"] == "aws:dynamodb" and r["awsRegion"] == "us-east-1"
    assert len(r["eventID"]) == 32 and r["dynamodb"]["SizeBytes"] > 0
    assert r["dynamodb"]["StreamViewType"] == "NEW_AND_OLD_IMAGES"
out["a"] = [[r["eventName"], r["dynamodb"].get("OldImage", {}).get("qty"), r["dynamodb"].get("NewImage", {}).get("qty")]
            for r in records if r["dynamodb"]["Keys"] == {"id": {"S": "a"}}]
out["b"] = [r["eventName"] for r in records if r["dynamodb"]["Keys"] == {"id": {"S": "b"}}]
seqs = [int(r["dynamodb"]["SequenceNumber"]) for r in records if r["dynamodb"]["Keys"] == {"id": {"S": "a"}}]
out["a_seq_increasing"] = seqs == sorted(seqs)

def error(call):
    try:
        call()
        return None
    except ClientError as e:
        return [e.response["Error"]["Code"], e.response["Error"]["Message"]]
other = arn.replace("table/orders/", "table/nope/")
out["errors"] = {
    "unknown": error(lambda: streams.describe_stream(StreamArn=other)),
    "bad_arn": error(lambda: streams.describe_stream(StreamArn="arn:aws:dynamodb:us-east-1:123456789012:table/orders")),
    "iterator": error(lambda: streams.get_records(ShardIterator="x" * 40)),
}
print(json.dumps(out))
"#;

#[tokio::test]
async fn boto3_reads_a_tables_change_records_through_dynamodb_streams() {
    let app = producer_app();
    let boto3 = boto3_path(&app);
    let server = TestServer::start(app.path(), &[]);
    let out = run_boto3(&boto3, TABLE_STREAM_SCRIPT, &server);
    assert_eq!(out["arn_stable"], true, "{out}");
    assert_eq!(
        out["arn"],
        "arn:aws:dynamodb:us-east-1:123456789012:table/orders"
    );
    assert_eq!(out["label"], true);
    assert_eq!(out["plain_has_stream"], false);
    assert_eq!(out["listed"], json!([[true, "orders"]]));
    assert_eq!(out["all_listed"], json!(["orders"]));
    assert_eq!(
        out["desc"],
        json!([
            "ENABLED",
            "NEW_AND_OLD_IMAGES",
            "orders",
            [{ "AttributeName": "id", "KeyType": "HASH" }],
            1
        ])
    );
    // The failed conditional put wrote nothing, so it appended nothing.
    assert_eq!(
        out["a"],
        json!([
            ["INSERT", null, { "N": "1" }],
            ["MODIFY", { "N": "1" }, { "N": "2" }],
            ["REMOVE", { "N": "2" }, null]
        ])
    );
    assert_eq!(out["b"], json!(["INSERT"]));
    assert_eq!(out["a_seq_increasing"], true);
    let errors = &out["errors"];
    assert_eq!(
        errors["unknown"][0], "ResourceNotFoundException",
        "{errors}"
    );
    assert_eq!(errors["bad_arn"][0], "ValidationException");
    assert_eq!(
        errors["iterator"],
        json!(["ValidationException", "Invalid ShardIterator"])
    );
}

const CLI_MANIFEST: &str = r#"
service: s
provider: { name: aws, runtime: python3.12 }
functions:
  f: { handler: f.handler }
resources:
  Resources:
    Orders:
      Type: AWS::DynamoDB::Table
      Properties:
        TableName: orders
        AttributeDefinitions: [{ AttributeName: id, AttributeType: S }, { AttributeName: n, AttributeType: N }]
        KeySchema: [{ AttributeName: id, KeyType: HASH }, { AttributeName: n, KeyType: RANGE }]
        StreamSpecification: { StreamViewType: NEW_IMAGE }
"#;

#[tokio::test]
async fn nimbus_stream_and_table_commands_put_follow_and_query_a_running_app() {
    let app = TestApp::new(&[
        ("serverless.yml", CLI_MANIFEST),
        ("f.py", "def handler(event, context):\n    return {}\n"),
    ]);
    let server = TestServer::start(app.path(), &[]);
    // An unsigned request is the operator's under `nimbus up`.
    let created = server
        .request(
            "POST",
            "/",
            &[
                ("x-amz-target", "Kinesis_20131202.CreateStream"),
                ("content-type", "application/x-amz-json-1.1"),
            ],
            br#"{"StreamName":"clicks","ShardCount":2}"#.to_vec(),
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.text());

    let put = app.nimbus(&["stream", "put", "clicks", "early", "-k", "user-0"]);
    assert_eq!(put.code, Some(0), "{}", put.stderr);
    // Only new records, by default: none yet.
    let tail = app.nimbus(&["stream", "tail", "clicks", "--no-follow"]);
    assert_eq!(
        (tail.code, tail.stdout.as_str()),
        (Some(0), ""),
        "{}",
        tail.stderr
    );

    let mut follow = Command::new(crate::harness::NIMBUS)
        .args(["stream", "tail", "clicks", "--from-start"])
        .current_dir(app.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting nimbus stream tail");
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    let stdout = follow.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let put = app.nimbus(&["stream", "put", "clicks", "a", "b", "c", "-k", "user-1"]);
    assert_eq!(put.code, Some(0), "{}", put.stderr);
    let put: Value = serde_json::from_str(&put.stdout).expect("put prints JSON");
    assert_eq!(put["records"].as_array().map(Vec::len), Some(3), "{put}");
    let put = app.nimbus(&["stream", "put", "clicks", "d", "-k", "user-2"]);
    assert_eq!(put.code, Some(0), "{}", put.stderr);
    let mut lines = Vec::new();
    while lines.len() < 5 {
        match lines_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(line) => lines.push(line),
            Err(e) => panic!("tail printed {lines:?}, then {e}"),
        }
    }
    follow.kill().expect("stopping tail");
    let _ = follow.wait();
    let _ = reader.join();
    assert_eq!(
        lines,
        [
            "user-0\tearly",
            "user-1\ta",
            "user-1\tb",
            "user-1\tc",
            "user-2\td"
        ]
    );

    let put = |item: &str| {
        let out = app.nimbus(&["table", "put", "orders", item]);
        assert_eq!(out.code, Some(0), "{}", out.stderr);
    };
    put(r#"{"id": "a", "n": 1, "qty": 3, "tags": ["x"]}"#);
    put(r#"{"id": "a", "n": 2, "qty": 5}"#);
    put(r#"{"id": "b", "n": 1, "qty": 3}"#);
    let get = app.nimbus(&["table", "get", "orders", r#"{"id": "a", "n": 1}"#]);
    assert_eq!(get.code, Some(0), "{}", get.stderr);
    assert_eq!(
        serde_json::from_str::<Value>(&get.stdout).ok(),
        Some(json!({ "id": "a", "n": 1, "qty": 3, "tags": ["x"] }))
    );
    let query = app.nimbus(&[
        "table",
        "query",
        "orders",
        "id = :id",
        "--values",
        r#"{":id": "a"}"#,
        "--desc",
    ]);
    assert_eq!(query.code, Some(0), "{}", query.stderr);
    let ns: Vec<Value> = query
        .stdout
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("one item a line")["n"].clone())
        .collect();
    assert_eq!(ns, [json!(2), json!(1)]);
    let scan = app.nimbus(&[
        "table",
        "scan",
        "orders",
        "--filter",
        "qty = :q",
        "--values",
        r#"{":q": 3}"#,
    ]);
    assert_eq!(
        scan.stdout.lines().count(),
        2,
        "{}{}",
        scan.stdout,
        scan.stderr
    );
    let rm = app.nimbus(&["table", "rm", "orders", r#"{"id": "b", "n": 1}"#]);
    assert_eq!(rm.code, Some(0), "{}", rm.stderr);
    let missing = app.nimbus(&["table", "get", "orders", r#"{"id": "b", "n": 1}"#]);
    assert_eq!(missing.code, Some(1));
    assert!(
        missing.stderr.contains("no item in table orders"),
        "{}",
        missing.stderr
    );
    let bad = app.nimbus(&["table", "get", "orders", r#"{"id": "b"}"#]);
    assert_eq!(bad.code, Some(1));
    assert_eq!(
        bad.stderr,
        "error: The provided key element does not match the schema (400 Bad Request)\n"
    );

    let ls: Value = serde_json::from_str(&app.nimbus(&["table", "ls"]).stdout).expect("JSON");
    assert_eq!(
        ls,
        json!({ "tables": [{
            "itemCount": 2, "name": "orders", "partitionKey": "id", "sizeBytes": ls["tables"][0]["sizeBytes"],
            "sortKey": "n", "streamViewType": "NEW_IMAGE",
        }] })
    );
    let ls: Value = serde_json::from_str(&app.nimbus(&["stream", "ls"]).stdout).expect("JSON");
    let streams: Vec<(String, String, u64)> = ls["streams"]
        .as_array()
        .expect("streams")
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap_or_default().to_owned(),
                s["kind"].as_str().unwrap_or_default().to_owned(),
                s["shards"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        streams,
        [
            ("clicks".to_owned(), "data".to_owned(), 2),
            ("table/orders".to_owned(), "table".to_owned(), 4)
        ]
    );

    // The table's change records, read through the same command.
    let changes = app.nimbus(&[
        "stream",
        "tail",
        "table/orders",
        "--from-start",
        "--no-follow",
    ]);
    assert_eq!(changes.code, Some(0), "{}", changes.stderr);
    let mut events: Vec<(String, Value)> = changes
        .stdout
        .lines()
        .map(|line| {
            let (_, data) = line.split_once('\t').expect("key and data");
            let record: Value = serde_json::from_str(data).expect("a change record");
            (
                record["eventName"].as_str().unwrap_or_default().to_owned(),
                record["Keys"].clone(),
            )
        })
        .collect();
    events.sort_by_key(|(name, keys)| format!("{keys}{name}"));
    assert_eq!(
        events,
        [
            (
                "INSERT".to_owned(),
                json!({ "id": { "S": "a" }, "n": { "N": "1" } })
            ),
            (
                "INSERT".to_owned(),
                json!({ "id": { "S": "a" }, "n": { "N": "2" } })
            ),
            (
                "INSERT".to_owned(),
                json!({ "id": { "S": "b" }, "n": { "N": "1" } })
            ),
            (
                "REMOVE".to_owned(),
                json!({ "id": { "S": "b" }, "n": { "N": "1" } })
            ),
        ]
    );
    let refused = app.nimbus(&["stream", "put", "table/orders", "x"]);
    assert_eq!(refused.code, Some(1));
    let unknown = app.nimbus(&["stream", "tail", "nope", "--no-follow"]);
    assert_eq!(unknown.code, Some(1));
    assert!(unknown.stderr.contains("not found"), "{}", unknown.stderr);
}
