//! An Express app on one catch-all route with its data in DynamoDB (issue 13): the shape of
//! the Serverless Framework's Express + DynamoDB examples — `serverless-http` wrapping an
//! Express app, `@aws-sdk/lib-dynamodb` against a table under `resources` — with express
//! and serverless-http from the npm registry in the app's own `node_modules`.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::harness::{TestApp, TestServer};

const MANIFEST: &str = r#"
service: users-api
frameworkVersion: '3'
provider:
  name: aws
  runtime: nodejs20.x
  environment:
    USERS_TABLE: users-${sls:stage}
  iam:
    role:
      statements:
        - Effect: Allow
          Action: [dynamodb:GetItem, dynamodb:PutItem, dynamodb:UpdateItem, dynamodb:DeleteItem, dynamodb:Scan]
          Resource: { Fn::GetAtt: [UsersTable, Arn] }
functions:
  api:
    handler: handler.handler
    events:
      - httpApi: '*'
resources:
  Resources:
    UsersTable:
      Type: AWS::DynamoDB::Table
      Properties:
        AttributeDefinitions: [{ AttributeName: userId, AttributeType: S }]
        KeySchema: [{ AttributeName: userId, KeyType: HASH }]
        BillingMode: PAY_PER_REQUEST
        TableName: ${self:provider.environment.USERS_TABLE}
"#;

const HANDLER_JS: &str = r#"
const express = require('express');
const serverless = require('serverless-http');
const { DynamoDBClient } = require('@aws-sdk/client-dynamodb');
const {
  DynamoDBDocumentClient, GetCommand, PutCommand, UpdateCommand, DeleteCommand, ScanCommand,
} = require('@aws-sdk/lib-dynamodb');

const table = process.env.USERS_TABLE;
const doc = DynamoDBDocumentClient.from(new DynamoDBClient({}));
const app = express();
app.use(express.json());

app.get('/users', async (req, res) => {
  const { Items } = await doc.send(new ScanCommand({ TableName: table }));
  res.json(Items.sort((a, b) => a.userId.localeCompare(b.userId)));
});

app.get('/users/:userId', async (req, res) => {
  const { Item } = await doc.send(new GetCommand({ TableName: table, Key: { userId: req.params.userId } }));
  if (!Item) {
    return res.status(404).json({ error: 'Could not find a user with that "userId"' });
  }
  res.json(Item);
});

app.post('/users', async (req, res) => {
  const { userId, name } = req.body;
  if (typeof userId !== 'string' || typeof name !== 'string') {
    return res.status(400).json({ error: '"userId" and "name" must be strings' });
  }
  try {
    await doc.send(new PutCommand({
      TableName: table, Item: { userId, name, visits: 0 }, ConditionExpression: 'attribute_not_exists(userId)',
    }));
  } catch (e) {
    if (e.name === 'ConditionalCheckFailedException') {
      return res.status(409).json({ error: 'That user exists already' });
    }
    throw e;
  }
  res.status(201).json({ userId, name });
});

app.put('/users/:userId', async (req, res) => {
  const { Attributes } = await doc.send(new UpdateCommand({
    TableName: table, Key: { userId: req.params.userId },
    UpdateExpression: 'SET #name = :name ADD visits :one',
    ExpressionAttributeNames: { '#name': 'name' },
    ExpressionAttributeValues: { ':name': req.body.name, ':one': 1 },
    ReturnValues: 'ALL_NEW',
  }));
  res.json(Attributes);
});

app.delete('/users/:userId', async (req, res) => {
  await doc.send(new DeleteCommand({ TableName: table, Key: { userId: req.params.userId } }));
  res.status(204).end();
});

app.use((req, res) => res.status(404).json({ error: 'Not Found' }));

module.exports.handler = serverless(app);
"#;

/// express 4 and serverless-http 3 from the npm registry, installed once into the test-tools
/// cache; the folder holding their `node_modules`.
fn express_packages() -> PathBuf {
    let home = std::env::var_os("HOME").map_or_else(std::env::temp_dir, PathBuf::from);
    let dir = home.join(".cache/nimbus/test-tools/express-4");
    if dir.join("node_modules/serverless-http").exists() {
        return dir;
    }
    let parent = dir.parent().expect("the cache folder has a parent");
    std::fs::create_dir_all(parent).expect("creating the test-tools cache");
    let staging = parent.join(format!("express-staging-{}", std::process::id()));
    std::fs::create_dir_all(&staging).expect("creating the staging folder");
    let out = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--silent", "--prefix"])
        .arg(&staging)
        .args(["express@4", "serverless-http@3"])
        .output()
        .expect("running npm");
    assert!(
        out.status.success(),
        "npm install express serverless-http: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Another test may have won the race; its install is as good as this one.
    if std::fs::rename(&staging, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    dir
}

/// Copies a folder tree (the app's own `node_modules`, as `npm install` would leave it).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("creating a folder");
    for entry in std::fs::read_dir(from).expect("reading a folder").flatten() {
        let target = to.join(entry.file_name());
        let kind = entry.file_type().expect("a file type");
        if kind.is_dir() {
            copy_tree(&entry.path(), &target);
        } else if kind.is_symlink() {
            let link = std::fs::read_link(entry.path()).expect("reading a link");
            let _ = std::os::unix::fs::symlink(link, &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copying a file");
        }
    }
}

async fn call(server: &TestServer, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    let res = server
        .request(method, path, &[("content-type", "application/json")], body)
        .await;
    let text = res.text();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    (res.status, json)
}

#[tokio::test]
async fn an_express_app_with_serverless_http_keeps_its_users_in_dynamodb() {
    let packages = express_packages();
    let app = TestApp::new(&[("serverless.yml", MANIFEST), ("handler.js", HANDLER_JS)]);
    copy_tree(
        &packages.join("node_modules"),
        &app.path().join("node_modules"),
    );
    let server = TestServer::start(app.path(), &[]);

    let (status, body) = call(
        &server,
        "POST",
        "/users",
        Some(json!({ "userId": "ada", "name": "Ada" })),
    )
    .await;
    assert_eq!(status, 201, "{body}\n{}", server.logs());
    let (status, _) = call(
        &server,
        "POST",
        "/users",
        Some(json!({ "userId": "ada", "name": "Again" })),
    )
    .await;
    assert_eq!(status, 409);
    let (status, body) = call(&server, "POST", "/users", Some(json!({ "userId": 7 }))).await;
    assert_eq!(status, 400, "{body}");
    call(
        &server,
        "POST",
        "/users",
        Some(json!({ "userId": "bob", "name": "Bob" })),
    )
    .await;

    let (status, body) = call(&server, "GET", "/users/ada", None).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({ "userId": "ada", "name": "Ada", "visits": 0 }));
    let (status, body) = call(
        &server,
        "PUT",
        "/users/ada",
        Some(json!({ "name": "Ada L." })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({ "userId": "ada", "name": "Ada L.", "visits": 1 })
    );
    let (_, body) = call(&server, "GET", "/users", None).await;
    let ids: Vec<&str> = body
        .as_array()
        .map(|items| items.iter().filter_map(|i| i["userId"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(ids, ["ada", "bob"], "{body}");

    let (status, _) = call(&server, "DELETE", "/users/bob", None).await;
    assert_eq!(status, 204);
    let (status, body) = call(&server, "GET", "/users/bob", None).await;
    assert_eq!(status, 404);
    assert_eq!(
        body,
        json!({ "error": "Could not find a user with that \"userId\"" })
    );
    let (status, _) = call(&server, "GET", "/nowhere", None).await;
    assert_eq!(status, 404);
}
