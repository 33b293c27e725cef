//! DynamoDB through the AWS SDKs, unchanged (issue 13): a todos app in the Serverless
//! style (a table under `resources`, `@aws-sdk/lib-dynamodb` in Node and boto3's `Table`
//! in Python) driven over HTTP through the gateway, and boto3 from outside for the edge
//! cases: a conditional put race, a GSI query, paging, number precision and bad input.

use serde_json::{Value, json};

use crate::aws_sqs::{boto3_path, run_boto3};
use crate::harness::{TestApp, TestServer};

const MANIFEST: &str = r#"
service: todos
provider:
  name: aws
  runtime: nodejs20.x
  timeout: 10
  environment:
    DYNAMODB_TABLE: ${self:service}-${sls:stage}
  iam:
    role:
      statements:
        - Effect: Allow
          Action: [dynamodb:Query, dynamodb:Scan, dynamodb:GetItem, dynamodb:PutItem, dynamodb:UpdateItem, dynamodb:DeleteItem]
          Resource:
            - { Fn::GetAtt: [TodosDynamoDbTable, Arn] }
functions:
  create:
    handler: todos/create.create
    events: [{ http: { path: todos, method: post, cors: true } }]
  list:
    handler: todos/list.list
    events: [{ http: { path: todos, method: get, cors: true } }]
  get:
    handler: todos/get.get
    runtime: python3.12
    events: [{ http: { path: 'todos/{id}', method: get, cors: true } }]
  update:
    handler: todos/update.update
    events: [{ http: { path: 'todos/{id}', method: put, cors: true } }]
  delete:
    handler: todos/delete.delete
    events: [{ http: { path: 'todos/{id}', method: delete, cors: true } }]
  audit:
    handler: todos/audit.audit
    events: [{ http: { path: audit, method: post } }]
  legacy:
    handler: todos/legacy.handler
    events: [{ http: { path: legacy, method: post } }]
resources:
  Resources:
    TodosDynamoDbTable:
      Type: 'AWS::DynamoDB::Table'
      DeletionPolicy: Retain
      Properties:
        AttributeDefinitions:
          - { AttributeName: id, AttributeType: S }
        KeySchema:
          - { AttributeName: id, KeyType: HASH }
        BillingMode: PAY_PER_REQUEST
        TableName: ${self:provider.environment.DYNAMODB_TABLE}
    AuditTable:
      Type: 'AWS::DynamoDB::Table'
      Properties:
        TableName: audit
        AttributeDefinitions: [{ AttributeName: id, AttributeType: S }]
        KeySchema: [{ AttributeName: id, KeyType: HASH }]
        ProvisionedThroughput: { ReadCapacityUnits: 1, WriteCapacityUnits: 1 }
"#;

const CREATE_JS: &str = r#"
const { DynamoDBClient } = require('@aws-sdk/client-dynamodb');
const { DynamoDBDocumentClient, PutCommand } = require('@aws-sdk/lib-dynamodb');
const { randomUUID } = require('node:crypto');

const doc = DynamoDBDocumentClient.from(new DynamoDBClient({}));

module.exports.create = async (event) => {
  const data = JSON.parse(event.body);
  if (typeof data.text !== 'string') {
    return { statusCode: 400, body: JSON.stringify({ error: "Couldn't create the todo item." }) };
  }
  const timestamp = new Date().getTime();
  const item = { id: randomUUID(), text: data.text, checked: false, createdAt: timestamp, updatedAt: timestamp,
    tags: new Set(['new']), meta: { source: 'http', list: [1, 'two', null] } };
  await doc.send(new PutCommand({
    TableName: process.env.DYNAMODB_TABLE, Item: item, ConditionExpression: 'attribute_not_exists(id)',
  }));
  return { statusCode: 200, body: JSON.stringify({ ...item, tags: [...item.tags] }) };
};
"#;

const LIST_JS: &str = r#"
const { DynamoDBClient } = require('@aws-sdk/client-dynamodb');
const { DynamoDBDocumentClient, ScanCommand } = require('@aws-sdk/lib-dynamodb');

const doc = DynamoDBDocumentClient.from(new DynamoDBClient({}));

module.exports.list = async () => {
  const res = await doc.send(new ScanCommand({ TableName: process.env.DYNAMODB_TABLE }));
  const items = res.Items.map((item) => ({ ...item, tags: item.tags ? [...item.tags] : [] }));
  return { statusCode: 200, body: JSON.stringify(items) };
};
"#;

const GET_PY: &str = r#"
import json
import os
from decimal import Decimal

import boto3

table = boto3.resource("dynamodb").Table(os.environ["DYNAMODB_TABLE"])


def plain(value):
    if isinstance(value, Decimal):
        return int(value) if value == int(value) else float(value)
    if isinstance(value, set):
        return sorted(value)
    raise TypeError(type(value))


def get(event, context):
    res = table.get_item(Key={"id": event["pathParameters"]["id"]})
    item = res.get("Item")
    if item is None:
        return {"statusCode": 404, "body": json.dumps({"error": "not found"})}
    return {"statusCode": 200, "body": json.dumps(item, default=plain)}
"#;

const UPDATE_JS: &str = r#"
const { DynamoDBClient } = require('@aws-sdk/client-dynamodb');
const { DynamoDBDocumentClient, UpdateCommand } = require('@aws-sdk/lib-dynamodb');

const doc = DynamoDBDocumentClient.from(new DynamoDBClient({}));

module.exports.update = async (event) => {
  const data = JSON.parse(event.body);
  try {
    const res = await doc.send(new UpdateCommand({
      TableName: process.env.DYNAMODB_TABLE,
      Key: { id: event.pathParameters.id },
      ExpressionAttributeNames: { '#todo_text': 'text' },
      ExpressionAttributeValues: { ':text': data.text, ':checked': data.checked, ':updatedAt': Date.now(),
        ':one': 1, ':zero': 0, ':tag': new Set(['edited']) },
      UpdateExpression: 'SET #todo_text = :text, checked = :checked, updatedAt = :updatedAt, '
        + 'edits = if_not_exists(edits, :zero) + :one ADD tags :tag',
      ConditionExpression: 'attribute_exists(id)',
      ReturnValues: 'ALL_NEW',
    }));
    const item = { ...res.Attributes, tags: [...res.Attributes.tags].sort() };
    return { statusCode: 200, body: JSON.stringify(item) };
  } catch (e) {
    if (e.name === 'ConditionalCheckFailedException') {
      return { statusCode: 404, body: JSON.stringify({ error: e.name }) };
    }
    throw e;
  }
};
"#;

const DELETE_JS: &str = r#"
const { DynamoDBClient } = require('@aws-sdk/client-dynamodb');
const { DynamoDBDocumentClient, DeleteCommand } = require('@aws-sdk/lib-dynamodb');

const doc = DynamoDBDocumentClient.from(new DynamoDBClient({}));

module.exports.delete = async (event) => {
  const res = await doc.send(new DeleteCommand({
    TableName: process.env.DYNAMODB_TABLE, Key: { id: event.pathParameters.id }, ReturnValues: 'ALL_OLD',
  }));
  return { statusCode: 200, body: JSON.stringify({ deleted: res.Attributes ? res.Attributes.id : null }) };
};
"#;

// No statement grants any function the audit table.
const AUDIT_JS: &str = r#"
const { DynamoDBClient } = require('@aws-sdk/client-dynamodb');
const { DynamoDBDocumentClient, PutCommand } = require('@aws-sdk/lib-dynamodb');

const doc = DynamoDBDocumentClient.from(new DynamoDBClient({}));

module.exports.audit = async () => {
  try {
    await doc.send(new PutCommand({ TableName: 'audit', Item: { id: 'x' } }));
    return { statusCode: 200, body: JSON.stringify({ written: true }) };
  } catch (e) {
    return { statusCode: 200, body: JSON.stringify({ name: e.name, status: e.$metadata?.httpStatusCode }) };
  }
};
"#;

// aws-sdk v2's DocumentClient, as Lambda's nodejs16.x functions use it (no endpoint given).
const LEGACY_JS: &str = r#"
const AWS = require('aws-sdk');
const doc = new AWS.DynamoDB.DocumentClient();
const TableName = process.env.DYNAMODB_TABLE;

module.exports.handler = async () => {
  const id = `v2-${Date.now()}`;
  const Item = { id, text: 'from v2', checked: false, tags: doc.createSet(['b', 'a']), n: 10 };
  await doc.put({ TableName, Item, ConditionExpression: 'attribute_not_exists(id)' }).promise();
  const got = await doc.get({ TableName, Key: { id } }).promise();
  const updated = await doc.update({
    TableName, Key: { id }, ReturnValues: 'ALL_NEW',
    UpdateExpression: 'SET n = n + :one, checked = :yes',
    ExpressionAttributeValues: { ':one': 1, ':yes': true },
  }).promise();
  let conflict = null;
  try {
    await doc.put({ TableName, Item, ConditionExpression: 'attribute_not_exists(id)' }).promise();
  } catch (e) {
    conflict = e.code;
  }
  const scanned = await doc.scan({
    TableName, FilterExpression: 'begins_with(id, :p)', ExpressionAttributeValues: { ':p': 'v2-' },
  }).promise();
  return { statusCode: 200, body: JSON.stringify({
    text: got.Item.text, tags: got.Item.tags.values.sort(), n: updated.Attributes.n,
    checked: updated.Attributes.checked, conflict, count: scanned.Count,
  }) };
};
"#;

#[tokio::test]
async fn aws_sdk_v2_document_client_reads_and_writes_the_same_table() {
    let app = todos_app();
    let server = TestServer::start(app.path(), &[]);
    let (status, out) = call(&server, "POST", "/legacy", None).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(
        out,
        json!({
            "text": "from v2",
            "tags": ["a", "b"],
            "n": 11,
            "checked": true,
            "conflict": "ConditionalCheckFailedException",
            "count": 1,
        })
    );
}

/// The todos app with all its handlers.
fn todos_app() -> TestApp {
    TestApp::new(&[
        ("serverless.yml", MANIFEST),
        ("todos/create.js", CREATE_JS),
        ("todos/list.js", LIST_JS),
        ("todos/get.py", GET_PY),
        ("todos/update.js", UPDATE_JS),
        ("todos/delete.js", DELETE_JS),
        ("todos/audit.js", AUDIT_JS),
        ("todos/legacy.js", LEGACY_JS),
    ])
}

async fn call(server: &TestServer, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    let res = server
        .request(method, path, &[("content-type", "application/json")], body)
        .await;
    let json = serde_json::from_slice(&res.body)
        .unwrap_or_else(|_| json!(String::from_utf8_lossy(&res.body)));
    (res.status, json)
}

#[tokio::test]
async fn a_serverless_todos_app_keeps_its_items_in_a_dynamodb_table() {
    let app = todos_app();
    let server = TestServer::start(app.path(), &[]);
    let (status, created) = call(&server, "POST", "/todos", Some(json!({ "text": "milk" }))).await;
    assert_eq!(status, 200, "{created}");
    let id = created["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {created}"))
        .to_owned();
    let (status, second) = call(&server, "POST", "/todos", Some(json!({ "text": "eggs" }))).await;
    assert_eq!(status, 200, "{second}");

    let (status, listed) = call(&server, "GET", "/todos", None).await;
    assert_eq!(status, 200, "{listed}");
    let mut texts: Vec<&str> = listed
        .as_array()
        .map(|items| items.iter().filter_map(|i| i["text"].as_str()).collect())
        .unwrap_or_default();
    texts.sort();
    assert_eq!(texts, ["eggs", "milk"], "{listed}");

    // The Python handler reads what Node wrote, through boto3's Table resource.
    let (status, got) = call(&server, "GET", &format!("/todos/{id}"), None).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(
        (&got["text"], &got["checked"], &got["tags"], &got["meta"]),
        (
            &json!("milk"),
            &json!(false),
            &json!(["new"]),
            &json!({ "source": "http", "list": [1, "two", null] })
        ),
        "{got}"
    );
    assert_eq!(got["createdAt"], created["createdAt"]);

    let (status, updated) = call(
        &server,
        "PUT",
        &format!("/todos/{id}"),
        Some(json!({ "text": "oat milk", "checked": true })),
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(
        (
            &updated["text"],
            &updated["checked"],
            &updated["edits"],
            &updated["tags"]
        ),
        (
            &json!("oat milk"),
            &json!(true),
            &json!(1),
            &json!(["edited", "new"])
        ),
        "{updated}"
    );
    let (status, missing) = call(
        &server,
        "PUT",
        "/todos/nope",
        Some(json!({ "text": "x", "checked": false })),
    )
    .await;
    assert_eq!(
        (status, &missing["error"]),
        (404, &json!("ConditionalCheckFailedException")),
        "{missing}"
    );

    let (status, deleted) = call(&server, "DELETE", &format!("/todos/{id}"), None).await;
    assert_eq!(
        (status, &deleted["deleted"]),
        (200, &json!(id)),
        "{deleted}"
    );
    let (status, _) = call(&server, "GET", &format!("/todos/{id}"), None).await;
    assert_eq!(status, 404);

    // A function whose grants leave out the audit table is refused through its SDK.
    let (status, refused) = call(&server, "POST", "/audit", Some(json!({}))).await;
    assert_eq!(status, 200, "{refused}");
    assert_eq!(
        refused,
        json!({ "name": "AccessDeniedException", "status": 400 })
    );
}

const SCRIPT: &str = r##"
import json, os, threading
from decimal import Decimal

import boto3
from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

kw = dict(endpoint_url=os.environ["ENDPOINT"], region_name="us-east-1",
          aws_access_key_id="test", aws_secret_access_key="test")
client = boto3.client("dynamodb", **kw)
db = boto3.resource("dynamodb", **kw)
out = {}

client.create_table(
    TableName="events",
    AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                          {"AttributeName": "n", "AttributeType": "N"},
                          {"AttributeName": "kind", "AttributeType": "S"}],
    KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "n", "KeyType": "RANGE"}],
    GlobalSecondaryIndexes=[{"IndexName": "byKind",
                             "KeySchema": [{"AttributeName": "kind", "KeyType": "HASH"},
                                           {"AttributeName": "n", "KeyType": "RANGE"}],
                             "Projection": {"ProjectionType": "KEYS_ONLY"}}],
    BillingMode="PAY_PER_REQUEST")
out["tables"] = client.list_tables()["TableNames"]
table = db.Table("events")
out["status"] = table.table_status

# Two writers race to create one item; exactly one wins.
results = []
def race(who):
    try:
        table.put_item(Item={"pk": "race", "n": 1, "who": who}, ConditionExpression="attribute_not_exists(pk)")
        results.append("won")
    except ClientError as e:
        results.append(e.response["Error"]["Code"])
threads = [threading.Thread(target=race, args=(i,)) for i in range(2)]
[t.start() for t in threads]
[t.join() for t in threads]
out["race"] = sorted(results)

# 1,000 items in batches of 25, then paged 100 at a time.
with table.batch_writer() as batch:
    for i in range(1000):
        batch.put_item(Item={"pk": "page", "n": i, "kind": "even" if i % 2 == 0 else "odd", "pad": "x" * 10})
pages, seen, start = 0, [], None
while True:
    args = {"KeyConditionExpression": Key("pk").eq("page"), "Limit": 100}
    if start:
        args["ExclusiveStartKey"] = start
    res = table.query(**args)
    pages += 1
    seen.extend(int(i["n"]) for i in res["Items"])
    start = res.get("LastEvaluatedKey")
    if not start:
        break
out["paging"] = [pages, len(seen), seen == list(range(1000))]

# The GSI: odd items between 10 and 20, newest first, keys only.
res = table.query(IndexName="byKind", KeyConditionExpression=Key("kind").eq("odd") & Key("n").between(10, 20),
                  ScanIndexForward=False)
out["gsi"] = [int(i["n"]) for i in res["Items"]]
out["gsi_keys"] = sorted(res["Items"][0].keys())
out["count"] = table.query(KeyConditionExpression=Key("pk").eq("page") & Key("n").lt(10), Select="COUNT")["Count"]

# Numbers: 38 digits exactly, tiny and huge magnitudes, arithmetic without rounding.
big = Decimal("12345678901234567890123456789012345678")
table.put_item(Item={"pk": "num", "n": 0, "big": big, "tiny": Decimal("1E-130"), "huge": Decimal("9.9999999999999999999999999999999999999E+125"), "f": Decimal("0.1")})
item = table.update_item(Key={"pk": "num", "n": 0}, UpdateExpression="SET f = f + :x", ExpressionAttributeValues={":x": Decimal("0.2")}, ReturnValues="ALL_NEW")["Attributes"]
out["numbers"] = [str(item["big"]), str(item["tiny"]), str(item["huge"]), str(item["f"])]
raw = client.get_item(TableName="events", Key={"pk": {"S": "num"}, "n": {"N": "0"}})["Item"]
out["raw_f"] = raw["f"]

errors = {}
def error(name, call):
    try:
        call()
        errors[name] = None
    except ClientError as e:
        errors[name] = [e.response["Error"]["Code"], e.response["Error"]["Message"]]
error("digits", lambda: client.put_item(TableName="events", Item={"pk": {"S": "x"}, "n": {"N": "123456789012345678901234567890123456789"}}))
error("overflow", lambda: client.put_item(TableName="events", Item={"pk": {"S": "x"}, "n": {"N": "1E+126"}}))
error("syntax", lambda: table.put_item(Item={"pk": "x", "n": 1}, ConditionExpression="attribute_not_exists(pk) AND AND"))
error("undefined", lambda: table.update_item(Key={"pk": "x", "n": 1}, UpdateExpression="SET a = :nope"))
error("type", lambda: table.update_item(Key={"pk": "num", "n": 0}, UpdateExpression="SET big = big + :s", ExpressionAttributeValues={":s": "text"}))
error("key", lambda: table.put_item(Item={"pk": "x"}))
error("oversize", lambda: table.put_item(Item={"pk": "x", "n": 2, "blob": "x" * (400 * 1024)}))
error("missing", lambda: client.get_item(TableName="nope", Key={"pk": {"S": "x"}}))
error("condition", lambda: table.delete_item(Key={"pk": "race", "n": 1}, ConditionExpression="who = :w", ExpressionAttributeValues={":w": 7}))
out["errors"] = errors
out["intact"] = table.get_item(Key={"pk": "race", "n": 1}).get("Item") is not None
out["items"] = client.describe_table(TableName="events")["Table"]["ItemCount"]

# A transaction with one failing condition writes nothing.
try:
    client.transact_write_items(TransactItems=[
        {"Put": {"TableName": "events", "Item": {"pk": {"S": "tx"}, "n": {"N": "1"}}}},
        {"ConditionCheck": {"TableName": "events", "Key": {"pk": {"S": "race"}, "n": {"N": "1"}},
                            "ConditionExpression": "attribute_not_exists(pk)"}}])
    out["tx"] = None
except ClientError as e:
    out["tx"] = [e.response["Error"]["Code"], [r["Code"] for r in e.response["CancellationReasons"]]]
out["tx_written"] = "Item" in client.get_item(TableName="events", Key={"pk": {"S": "tx"}, "n": {"N": "1"}})

# Issue 13, from moto's tests: a table's ARN names it; capacity is reported when asked.
arn = client.describe_table(TableName="events")["Table"]["TableArn"]
out["by_arn"] = client.get_item(TableName=arn, Key={"pk": {"S": "race"}, "n": {"N": "1"}},
                                ReturnConsumedCapacity="TOTAL")["ConsumedCapacity"]
error("reserved", lambda: table.update_item(Key={"pk": "x", "n": 1}, UpdateExpression="SET name = :v",
                                            ExpressionAttributeValues={":v": "a"}))
error("select", lambda: table.query(KeyConditionExpression=Key("pk").eq("page"), Select="ALL_PROJECTED_ATTRIBUTES"))
error("gsi_consistent", lambda: table.query(IndexName="byKind", KeyConditionExpression=Key("kind").eq("odd"),
                                            ConsistentRead=True))
error("return_values", lambda: table.put_item(Item={"pk": "x", "n": 1}, ReturnValues="ALL_NEW"))
error("duplicates", lambda: client.batch_get_item(
    RequestItems={"events": {"Keys": [{"pk": {"S": "x"}, "n": {"N": "1"}}] * 2}}))
# A transaction retried with its ClientRequestToken writes once; another request with it fails.
def counter(by):
    return [{"Update": {"TableName": "events", "Key": {"pk": {"S": "tok"}, "n": {"N": "1"}},
                        "UpdateExpression": "ADD hits :by", "ExpressionAttributeValues": {":by": {"N": by}}}}]
client.transact_write_items(TransactItems=counter("1"), ClientRequestToken="token-1")
client.transact_write_items(TransactItems=counter("1"), ClientRequestToken="token-1")
error("token", lambda: client.transact_write_items(TransactItems=counter("5"), ClientRequestToken="token-1"))
out["hits"] = int(table.get_item(Key={"pk": "tok", "n": 1})["Item"]["hits"])
# `<>` holds against a missing attribute, so a new item goes in under `#pk <> :v`.
client.transact_write_items(TransactItems=[{"Put": {
    "TableName": "events", "Item": {"pk": {"S": "ne"}, "n": {"N": "1"}}, "ConditionExpression": "#pk <> :v",
    "ExpressionAttributeNames": {"#pk": "pk"}, "ExpressionAttributeValues": {":v": {"S": "ne"}}}}])
out["ne_written"] = "Item" in table.get_item(Key={"pk": "ne", "n": 1})
# The legacy parameters: AttributeUpdates, Expected, KeyConditions, QueryFilter, AttributesToGet.
legacy_key = {"pk": {"S": "legacy"}, "n": {"N": "1"}}
client.update_item(TableName="events", Key=legacy_key, AttributeUpdates={
    "hits": {"Action": "ADD", "Value": {"N": "2"}}, "log": {"Action": "ADD", "Value": {"L": [{"S": "x"}]}},
    "who": {"Value": {"S": "me"}}})
error("expected", lambda: client.put_item(TableName="events", Item=legacy_key, Expected={"pk": {"Exists": False}}))
out["legacy"] = client.query(
    TableName="events", KeyConditions={"pk": {"ComparisonOperator": "EQ", "AttributeValueList": [{"S": "legacy"}]}},
    QueryFilter={"hits": {"ComparisonOperator": "GE", "AttributeValueList": [{"N": "2"}]}},
    AttributesToGet=["who", "log"])["Items"]
error("segment", lambda: client.scan(TableName="events", Segment=0))
error("key_paths", lambda: client.query(TableName="events", KeyConditionExpression="pk = n"))
error("clauses", lambda: table.update_item(Key={"pk": "x", "n": 1}, UpdateExpression="SET a = :v SET b = :v",
                                           ExpressionAttributeValues={":v": 1}))
error("billing", lambda: client.create_table(
    TableName="nobill", AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
    KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}]))
error("definitions", lambda: client.create_table(
    TableName="extra", AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"},
                                             {"AttributeName": "x", "AttributeType": "S"}],
    KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}], BillingMode="PAY_PER_REQUEST"))
error("key_type", lambda: client.create_table(
    TableName="sorted", AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
    KeySchema=[{"AttributeName": "nope", "KeyType": "HASH"}, {"AttributeName": "id", "KeyType": "SORT"}],
    BillingMode="PAY_PER_REQUEST"))
error("empty_key", lambda: table.query(KeyConditionExpression=Key("pk").eq("")))
error("overlap", lambda: table.get_item(Key={"pk": "x", "n": 1}, ProjectionExpression="a, a"))
out["updated_old_none"] = "Attributes" in table.update_item(
    Key={"pk": "fresh", "n": 1}, UpdateExpression="SET a = :v", ExpressionAttributeValues={":v": 1},
    ReturnValues="UPDATED_OLD")
error("value_key", lambda: table.scan(FilterExpression="a = :v", ExpressionAttributeValues={":v": 1, "v2": 2}))
error("mixed", lambda: client.get_item(TableName="events", Key=legacy_key, ProjectionExpression="pk",
                                       AttributesToGet=["pk"]))
print(json.dumps(out))
"##;

#[tokio::test]
async fn boto3_from_outside_races_pages_queries_indexes_and_gets_dynamodb_errors() {
    let app = TestApp::new(&[
        (
            "serverless.yml",
            "service: s\nprovider: { runtime: nodejs20.x }\nfunctions:\n  f: { handler: f.handler }\n",
        ),
        ("f.js", "exports.handler = async () => ({});\n"),
    ]);
    let boto3 = boto3_path(&app);
    let server = TestServer::start(app.path(), &[]);
    let out = run_boto3(&boto3, SCRIPT, &server);
    assert_eq!(out["tables"], json!(["events"]), "{out}");
    assert_eq!(out["status"], "ACTIVE");
    assert_eq!(
        out["race"],
        json!(["ConditionalCheckFailedException", "won"])
    );
    assert_eq!(out["paging"], json!([10, 1000, true]));
    assert_eq!(out["gsi"], json!([19, 17, 15, 13, 11]));
    assert_eq!(out["gsi_keys"], json!(["kind", "n", "pk"]));
    assert_eq!(out["count"], 10);
    assert_eq!(
        out["numbers"],
        json!([
            "12345678901234567890123456789012345678",
            "1E-130",
            "9.9999999999999999999999999999999999999E+125",
            "0.3"
        ]),
        "{out}"
    );
    assert_eq!(out["raw_f"], json!({ "N": "0.3" }));
    assert_eq!(
        out["errors"],
        json!({
            "digits": ["ValidationException", "Attempting to store more than 38 significant digits in a Number"],
            "overflow": ["ValidationException", "Number overflow. Attempting to store a number with magnitude larger than supported range"],
            "syntax": ["ValidationException", "Invalid ConditionExpression: Syntax error; token: \"AND\", near: \"AND AND\""],
            "undefined": ["ValidationException", "Invalid UpdateExpression: An expression attribute value used in expression is not defined; attribute value: :nope"],
            "type": ["ValidationException", "Invalid UpdateExpression: Incorrect operand type for operator or function; operator: +, operand type: STRING"],
            "key": ["ValidationException", "One or more parameter values were invalid: Missing the key n in the item"],
            "oversize": ["ValidationException", "Item size has exceeded the maximum allowed size"],
            "missing": ["ResourceNotFoundException", "Requested resource not found"],
            "condition": ["ConditionalCheckFailedException", "The conditional request failed"],
            "reserved": ["ValidationException", "Invalid UpdateExpression: Attribute name is a reserved keyword; reserved keyword: name"],
            "select": ["ValidationException", "1 validation error detected: ALL_PROJECTED_ATTRIBUTES can be used only when Querying using an IndexName"],
            "gsi_consistent": ["ValidationException", "Consistent reads are not supported on global secondary indexes"],
            "return_values": ["ValidationException", "Return values set to invalid value"],
            "duplicates": ["ValidationException", "Provided list of item keys contains duplicates"],
            "expected": ["ConditionalCheckFailedException", "The conditional request failed"],
            "segment": ["ValidationException", "The TotalSegments parameter is required but was not present in the request when Segment parameter is present"],
            "key_paths": ["ValidationException", "Invalid KeyConditionExpression: Invalid condition in KeyConditionExpression: Multiple attribute names used in one condition"],
            "clauses": ["ValidationException", "1 validation error detected: Invalid UpdateExpression: The \"SET\" section can only be used once in an update expression;"],
            "billing": ["ValidationException", "One or more parameter values were invalid: ReadCapacityUnits and WriteCapacityUnits must both be specified when BillingMode is PROVISIONED"],
            "definitions": ["ValidationException", "One or more parameter values were invalid: Number of attributes in KeySchema does not exactly match number of attributes defined in AttributeDefinitions"],
            "key_type": ["ValidationException", "1 validation error detected: Value 'SORT' at 'keySchema.2.member.keyType' failed to satisfy constraint: Member must satisfy enum value set: [HASH, RANGE]"],
            "empty_key": ["ValidationException", "One or more parameter values are not valid. The AttributeValue for a key attribute cannot contain an empty string value. Key: pk"],
            "overlap": ["ValidationException", "Invalid ProjectionExpression: Two document paths overlap with each other; must remove or rewrite one of these paths; path one: [a], path two: [a]"],
            "value_key": ["ValidationException", "ExpressionAttributeValues contains invalid key: Syntax error; key: \"v2\""],
            "mixed": ["ValidationException", "Can not use both expression and non-expression parameters in the same request: Non-expression parameters: {AttributesToGet} Expression parameters: {ProjectionExpression}"],
            "token": ["IdempotentParameterMismatchException", "DynamoDB rejected the request because you retried a request with a different payload but with an idempotent token that was already used."],
        }),
        "{out}"
    );
    assert_eq!(out["intact"], true);
    assert_eq!(out["items"], 1002);
    assert_eq!(
        out["tx"],
        json!([
            "TransactionCanceledException",
            ["None", "ConditionalCheckFailed"]
        ])
    );
    assert_eq!(out["tx_written"], false);
    assert_eq!(
        out["by_arn"],
        json!({ "TableName": "events", "CapacityUnits": 0.5 })
    );
    assert_eq!(out["hits"], 1);
    assert_eq!(out["ne_written"], true);
    assert_eq!(out["updated_old_none"], false);
    assert_eq!(
        out["legacy"],
        json!([{ "who": { "S": "me" }, "log": { "L": [{ "S": "x" }] } }])
    );
}
