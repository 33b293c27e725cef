//! API Gateway WebSocket APIs (issue 15): a Serverless Framework app with `websocket`
//! events served on the gateway at `ws://HOST/{stage}`, driven by the `ws` npm package,
//! its functions talking back through the @connections API with the SDKs Lambda ships
//! (`@aws-sdk/client-apigatewaymanagementapi`, aws-sdk v2, boto3), unchanged.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{TestApp, TestServer};

const MANIFEST: &str = r#"
service: chat
provider:
  name: aws
  runtime: nodejs20.x
  websocketsApiRouteSelectionExpression: $request.body.action
  environment:
    TABLE: ${self:service}-connections
  iam:
    role:
      statements:
        - Effect: Allow
          Action: execute-api:ManageConnections
          Resource: arn:aws:execute-api:*:*:*/@connections/*
        - Effect: Allow
          Action: [dynamodb:PutItem, dynamodb:DeleteItem, dynamodb:Scan]
          Resource: { Fn::GetAtt: [ConnectionsTable, Arn] }
functions:
  auth:
    handler: ws.auth
  connect:
    handler: ws.connect
    events:
      - websocket:
          route: $connect
          authorizer:
            name: auth
            identitySource: [route.request.querystring.token]
  disconnect:
    handler: ws.disconnect
    events:
      - websocket: $disconnect
  echo:
    handler: ws.echo
    events:
      - websocket: $default
  whoami:
    handler: ws.whoami
    events:
      - websocket: { route: whoami, routeResponseSelectionExpression: $default }
  broadcast:
    handler: ws.broadcast
    events:
      - websocket: { route: broadcast }
  manage:
    handler: manage.handler
    events:
      - websocket: { route: manage, routeResponseSelectionExpression: $default }
  py:
    handler: py.handler
    runtime: python3.12
    events:
      - websocket: { route: py }
resources:
  Resources:
    ConnectionsTable:
      Type: AWS::DynamoDB::Table
      Properties:
        TableName: ${self:provider.environment.TABLE}
        AttributeDefinitions: [{ AttributeName: connectionId, AttributeType: S }]
        KeySchema: [{ AttributeName: connectionId, KeyType: HASH }]
        BillingMode: PAY_PER_REQUEST
"#;

/// The handlers: an authorizer allowing one token, a `$connect` that keeps the connection
/// in a table, an echo through postToConnection, a route response, a broadcast to every
/// connection in the table.
const WS_JS: &str = r#"
const {
  ApiGatewayManagementApiClient, PostToConnectionCommand,
} = require('@aws-sdk/client-apigatewaymanagementapi');
const { DynamoDBClient } = require('@aws-sdk/client-dynamodb');
const { DynamoDBDocumentClient, PutCommand, DeleteCommand, ScanCommand } = require('@aws-sdk/lib-dynamodb');

const doc = DynamoDBDocumentClient.from(new DynamoDBClient({}));
const table = process.env.TABLE;
const api = (event) => new ApiGatewayManagementApiClient({
  endpoint: 'http://' + event.requestContext.domainName + '/' + event.requestContext.stage,
});

exports.auth = async (event) => {
  const token = event.queryStringParameters && event.queryStringParameters.token;
  if (event.type !== 'REQUEST' || !event.methodArn.endsWith('/$connect')) {
    throw new Error('not a WebSocket REQUEST authorizer event: ' + JSON.stringify(event));
  }
  if (token !== 'let-me-in' && token !== 'deny') {
    throw new Error('Unauthorized');
  }
  return {
    principalId: 'ada',
    policyDocument: {
      Version: '2012-10-17',
      Statement: [{ Action: 'execute-api:Invoke', Effect: token === 'deny' ? 'Deny' : 'Allow', Resource: event.methodArn }],
    },
    context: { room: 'lobby', level: 3 },
  };
};

exports.connect = async (event) => {
  if (event.queryStringParameters.reject) {
    return { statusCode: 403 };
  }
  await doc.send(new PutCommand({
    TableName: table,
    Item: { connectionId: event.requestContext.connectionId, user: event.requestContext.authorizer.principalId },
  }));
  return { statusCode: 200 };
};

exports.disconnect = async (event) => {
  const ctx = event.requestContext;
  await doc.send(new DeleteCommand({ TableName: table, Key: { connectionId: ctx.connectionId } }));
  console.log(`disconnected ${ctx.connectionId} ${ctx.disconnectStatusCode} ${ctx.eventType}`);
  return { statusCode: 200 };
};

exports.echo = async (event) => {
  const ctx = event.requestContext;
  await api(event).send(new PostToConnectionCommand({
    ConnectionId: ctx.connectionId,
    Data: JSON.stringify({
      type: 'echo', route: ctx.routeKey, eventType: ctx.eventType, base64: event.isBase64Encoded,
      length: event.body.length, body: event.body.length < 100 ? event.body : undefined,
    }),
  }));
  return { statusCode: 200 };
};

exports.whoami = async (event) => {
  const ctx = event.requestContext;
  return {
    statusCode: 200,
    body: JSON.stringify({ type: 'whoami', route: ctx.routeKey, connectionId: ctx.connectionId, authorizer: ctx.authorizer }),
  };
};

exports.broadcast = async (event) => {
  const text = JSON.parse(event.body).text;
  const { Items } = await doc.send(new ScanCommand({ TableName: table }));
  const client = api(event);
  await Promise.all(Items.map((item) => client.send(new PostToConnectionCommand({
    ConnectionId: item.connectionId, Data: JSON.stringify({ type: 'broadcast', text }),
  })).catch((e) => { if (e.name !== 'GoneException') throw e; })));
  return { statusCode: 200 };
};
"#;

/// getConnection, deleteConnection and a gone connection through aws-sdk v2 (and the
/// gone one through v3 too), answered as a route response.
const MANAGE_JS: &str = r#"
const AWS = require('aws-sdk');
const {
  ApiGatewayManagementApiClient, PostToConnectionCommand,
} = require('@aws-sdk/client-apigatewaymanagementapi');

exports.handler = async (event) => {
  const ctx = event.requestContext;
  const endpoint = 'http://' + ctx.domainName + '/' + ctx.stage;
  const v2 = new AWS.ApiGatewayManagementApi({ apiVersion: '2018-11-29', endpoint });
  const { op, target } = JSON.parse(event.body);
  let result;
  if (op === 'get') {
    const c = await v2.getConnection({ ConnectionId: target }).promise();
    result = { connectedAt: c.ConnectedAt.toISOString(), lastActiveAt: c.LastActiveAt.toISOString(), identity: c.Identity };
  } else if (op === 'delete') {
    await v2.deleteConnection({ ConnectionId: target }).promise();
    result = { deleted: target };
  } else if (op === 'gone') {
    try {
      await v2.postToConnection({ ConnectionId: 'Nobody0Here0000=', Data: 'x' }).promise();
      result = { posted: true };
    } catch (e) {
      result = { v2: { code: e.code, status: e.statusCode } };
    }
    try {
      await new ApiGatewayManagementApiClient({ endpoint }).send(new PostToConnectionCommand({ ConnectionId: target, Data: 'x' }));
      result.v3 = { posted: true };
    } catch (e) {
      result.v3 = { name: e.name, status: e.$metadata.httpStatusCode };
    }
  }
  return { statusCode: 200, body: JSON.stringify({ type: 'manage', op, result }) };
};
"#;

const PY: &str = r#"
import json

import boto3


def handler(event, context):
    ctx = event["requestContext"]
    client = boto3.client(
        "apigatewaymanagementapi",
        endpoint_url="http://%s/%s" % (ctx["domainName"], ctx["stage"]),
    )
    text = json.loads(event["body"])["text"]
    try:
        client.post_to_connection(ConnectionId="Nobody0Here0000=", Data=b"x")
        gone = None
    except client.exceptions.GoneException as e:
        gone = e.response["ResponseMetadata"]["HTTPStatusCode"]
    client.post_to_connection(
        ConnectionId=ctx["connectionId"],
        Data=json.dumps({"type": "py", "text": text, "gone": gone}).encode(),
    )
    return {"statusCode": 200}
"#;

/// The client side: every case in one run of Node with the `ws` package, printing what
/// it saw as JSON.
const DRIVER_JS: &str = r#"
const fs = require('fs');
const WebSocket = require('ws');
const base = process.env.WS_URL;
const up = JSON.parse(fs.readFileSync(process.env.APP_DIR + '/.nimbus/up.json', 'utf8'));

function open(query) {
  return new Promise((resolve) => {
    const ws = new WebSocket(base + query, { headers: { 'user-agent': 'ws-driver' } });
    const client = { ws, messages: [], waiters: [], closed: null };
    ws.on('unexpected-response', (req, res) => resolve({ refused: res.statusCode }));
    ws.on('error', (e) => resolve({ error: String(e) }));
    ws.on('open', () => resolve(client));
    ws.on('message', (data) => {
      const text = data.toString();
      let value;
      try { value = JSON.parse(text); } catch (e) { value = { text }; }
      client.messages.push(value);
      client.waiters = client.waiters.filter((w) => !w());
    });
    ws.on('close', (code) => {
      client.closed = code;
      client.waiters = client.waiters.filter((w) => !w());
    });
  });
}

function until(client, test, what) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('timed out waiting for ' + what + '; got ' + JSON.stringify(client.messages) + ' closed ' + client.closed)), 20000);
    const check = () => {
      const found = test(client);
      if (found !== undefined && found !== false) {
        clearTimeout(timer);
        resolve(found);
        return true;
      }
      return false;
    };
    if (!check()) client.waiters.push(check);
  });
}

const next = (client, type) => until(client, (c) => {
  const idx = c.messages.findIndex((m) => m.type === type || (type === 'error' && m.message));
  return idx >= 0 ? c.messages.splice(idx, 1)[0] : undefined;
}, type);

(async () => {
  const out = {};
  out.noToken = await open('');
  out.badToken = await open('?token=wrong');
  out.denied = await open('?token=deny');
  out.rejectedByConnect = await open('?token=let-me-in&reject=1');

  const a = await open('?token=let-me-in');
  if (!a.ws) throw new Error('a did not connect: ' + JSON.stringify(a));
  a.ws.send('hello');
  out.echoText = await next(a, 'echo');
  a.ws.send(JSON.stringify({ action: 'whoami' }));
  out.whoami = await next(a, 'whoami');
  a.ws.send(JSON.stringify({ action: 'nothing-like-it', x: 1 }));
  out.echoUnknownAction = await next(a, 'echo');
  a.ws.send(Buffer.from([0, 1, 2, 255]));
  out.echoBinary = await next(a, 'echo');
  a.ws.send('x'.repeat(20 * 1024));
  out.echo20k = await next(a, 'echo');
  a.ws.send(JSON.stringify({ action: 'py', text: 'from python' }));
  out.py = await next(a, 'py');

  const b = await open('?token=let-me-in');
  b.ws.send(JSON.stringify({ action: 'whoami' }));
  const bId = (await next(b, 'whoami')).connectionId;
  out.bId = bId;
  a.ws.send(JSON.stringify({ action: 'manage', op: 'get', target: bId }));
  out.get = await next(a, 'manage');

  // The services API reaches the same connection.
  const control = 'http://' + up.admin + '/v1/connections/';
  const auth = { authorization: 'Bearer ' + up.token };
  let res = await fetch(control + encodeURIComponent(bId), { method: 'POST', headers: auth, body: JSON.stringify({ type: 'api', text: 'from the services API' }) });
  out.apiPostStatus = res.status;
  out.apiPost = await next(b, 'api');
  res = await fetch(control + encodeURIComponent(bId), { headers: auth });
  out.apiGet = { status: res.status, body: await res.json() };
  res = await fetch(control + 'Nobody0Here0000=', { method: 'POST', headers: auth, body: 'x' });
  out.apiGone = { status: res.status, body: await res.json() };

  a.ws.send(JSON.stringify({ action: 'manage', op: 'delete', target: bId }));
  out.deleted = await next(a, 'manage');
  out.bClosed = await until(b, (c) => (c.closed === null ? undefined : c.closed), 'b to close');
  a.ws.send(JSON.stringify({ action: 'manage', op: 'gone', target: bId }));
  out.gone = await next(a, 'manage');

  // Twenty clients; each broadcasts once, and each must receive all twenty.
  const clients = [];
  for (let i = 0; i < 20; i++) {
    const c = await open('?token=let-me-in');
    if (!c.ws) throw new Error('client ' + i + ' did not connect: ' + JSON.stringify(c));
    clients.push(c);
  }
  // One broadcast at a time (each reaching the first client before the next is sent), so
  // twenty instances are not started at once on a small machine.
  for (let i = 0; i < clients.length; i++) {
    clients[i].ws.send(JSON.stringify({ action: 'broadcast', text: 'm' + i }));
    await until(clients[0], (c) => c.messages.filter((m) => m.type === 'broadcast').length > i, 'broadcast ' + i);
  }
  const seen = await Promise.all(clients.map((c) => until(c, (cl) => {
    const texts = cl.messages.filter((m) => m.type === 'broadcast').map((m) => m.text);
    return texts.length >= 20 ? texts.sort() : undefined;
  }, 'twenty broadcasts')));
  out.broadcastsPerClient = seen.map((texts) => texts.length);
  out.broadcastsAllSame = seen.every((texts) => JSON.stringify(texts) === JSON.stringify(seen[0]));
  for (const c of clients) c.ws.close(1000);

  // A message over API Gateway's 128 KB limit closes the connection with 1009.
  const big = await open('?token=let-me-in');
  big.ws.send('y'.repeat(200 * 1024));
  out.oversizedClose = await until(big, (c) => (c.closed === null ? undefined : c.closed), 'the oversized close');

  out.aId = (await (async () => { a.ws.send(JSON.stringify({ action: 'whoami' })); return (await next(a, 'whoami')).connectionId; })());
  a.ws.close(1000, 'bye');
  out.aClosed = await until(a, (c) => (c.closed === null ? undefined : c.closed), 'a to close');
  console.log(JSON.stringify(out));
  process.exit(0);
})().catch((e) => { console.error(e.stack || String(e)); process.exit(1); });
"#;

/// The `ws` package from the npm registry, installed once into the test-tools cache; the
/// folder holding its `node_modules`.
pub(crate) fn ws_package() -> PathBuf {
    let home = std::env::var_os("HOME").map_or_else(std::env::temp_dir, PathBuf::from);
    let dir = home.join(".cache/nimbus/test-tools/ws-8");
    if dir.join("node_modules/ws/package.json").exists() {
        return dir;
    }
    let parent = dir.parent().expect("the cache folder has a parent");
    std::fs::create_dir_all(parent).expect("creating the test-tools cache");
    let staging = parent.join(format!("ws-staging-{}", std::process::id()));
    std::fs::create_dir_all(&staging).expect("creating the staging folder");
    let out = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--silent", "--prefix"])
        .arg(&staging)
        .arg("ws@8")
        .output()
        .expect("running npm");
    assert!(
        out.status.success(),
        "npm install ws: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Another test may have won the race; its install is as good as this one.
    if std::fs::rename(&staging, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    dir
}

/// Waits until the server's log has a line holding every one of `parts`.
async fn wait_for_log(server: &TestServer, parts: &[&str]) -> String {
    for _ in 0..200 {
        let logs = server.logs();
        if let Some(line) = logs
            .lines()
            .find(|line| parts.iter().all(|part| line.contains(part)))
        {
            return line.to_owned();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no log line with {parts:?}:\n{}", server.logs());
}

#[tokio::test]
async fn a_lambda_websocket_api_with_an_authorizer_echoes_routes_and_broadcasts() {
    let ws = ws_package();
    let app = TestApp::new(&[
        ("serverless.yml", MANIFEST),
        ("ws.js", WS_JS),
        ("manage.js", MANAGE_JS),
        ("py.py", PY),
        ("driver.js", DRIVER_JS),
    ]);
    let server = TestServer::start(app.path(), &[]);
    let out = tokio::task::spawn_blocking({
        let app_dir = app.path().to_owned();
        let url = format!("ws://{}/dev", server.addr);
        let node_path = ws.join("node_modules");
        move || {
            Command::new("node")
                .arg(app_dir.join("driver.js"))
                .env("NODE_PATH", node_path)
                .env("WS_URL", url)
                .env("APP_DIR", &app_dir)
                .output()
                .expect("running node")
        }
    })
    .await
    .expect("the driver task");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}\nnimbus logs:\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.logs()
    );
    let out: Value = serde_json::from_str(stdout.trim()).expect("the driver prints JSON");

    // The authorizer refuses a connection without the token before it runs (401), and
    // with a bad one by failing with "Unauthorized" (401); its Deny is 403; `$connect`'s
    // own 403 refuses the upgrade too.
    assert_eq!(out["noToken"]["refused"], 401, "{out}");
    assert_eq!(out["badToken"]["refused"], 401, "{out}");
    assert_eq!(out["denied"]["refused"], 403, "{out}");
    assert_eq!(out["rejectedByConnect"]["refused"], 403, "{out}");

    // A body that is not JSON, and JSON naming no route, go to `$default`.
    assert_eq!(out["echoText"]["route"], "$default");
    assert_eq!(out["echoText"]["eventType"], "MESSAGE");
    assert_eq!(out["echoText"]["body"], "hello");
    assert_eq!(out["echoUnknownAction"]["route"], "$default");
    assert_eq!(out["echoBinary"]["base64"], true);
    assert_eq!(out["echoBinary"]["body"], "AAEC/w==");
    assert_eq!(out["echo20k"]["length"], 20 * 1024);

    // A custom route picked by `action`, with a route response carrying the authorizer's
    // context (REST-style: strings, the principal, the latency).
    let whoami = &out["whoami"];
    assert_eq!(whoami["route"], "whoami");
    assert_eq!(whoami["authorizer"]["principalId"], "ada");
    assert_eq!(whoami["authorizer"]["room"], "lobby");
    assert_eq!(whoami["authorizer"]["level"], "3");
    assert_eq!(whoami["connectionId"].as_str().map(str::len), Some(16));

    // boto3 posts back, and sees a gone connection as GoneException (410).
    assert_eq!(out["py"]["text"], "from python");
    assert_eq!(out["py"]["gone"], 410);

    // getConnection through aws-sdk v2.
    let get = &out["get"]["result"];
    assert_eq!(get["identity"]["SourceIp"], "127.0.0.1", "{out}");
    assert_eq!(get["identity"]["UserAgent"], "ws-driver");
    assert!(
        get["connectedAt"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );

    // The services API: post, get, and 410 for an unknown connection.
    assert_eq!(out["apiPostStatus"], 204);
    assert_eq!(out["apiPost"]["text"], "from the services API");
    assert_eq!(out["apiGet"]["status"], 200);
    assert_eq!(out["apiGet"]["body"]["identity"]["userAgent"], "ws-driver");
    assert_eq!(out["apiGone"]["status"], 410);
    assert_eq!(out["apiGone"]["body"]["type"], "GoneException");

    // deleteConnection closes the client's socket; the connection is then gone for both
    // SDKs.
    assert_eq!(out["bClosed"], 1000);
    assert_eq!(out["gone"]["result"]["v2"]["code"], "GoneException");
    assert_eq!(out["gone"]["result"]["v2"]["status"], 410);
    assert_eq!(out["gone"]["result"]["v3"]["name"], "GoneException");
    assert_eq!(out["gone"]["result"]["v3"]["status"], 410);

    // Twenty clients each received all twenty broadcasts.
    assert_eq!(
        out["broadcastsPerClient"],
        serde_json::json!(vec![20; 20]),
        "{out}"
    );
    assert_eq!(out["broadcastsAllSame"], true);

    assert_eq!(out["oversizedClose"], 1009);
    assert_eq!(out["aClosed"], 1000);

    // `$disconnect` ran for the deleted connection and for the one the client closed.
    let b_id = out["bId"].as_str().expect("b's id");
    wait_for_log(&server, &["disconnected", b_id, "1000 DISCONNECT"]).await;
    let a_id = out["aId"].as_str().expect("a's id");
    wait_for_log(&server, &["disconnected", a_id, "1000 DISCONNECT"]).await;

    // The banner gives the API's URL at its stage, as `serverless deploy` does.
    let banner = server.stdout();
    assert!(
        banner.contains(&format!("ws://{}/dev ($connect -> connect", server.addr)),
        "{banner}"
    );

    // Every connection is closed, and the gauge says so.
    let mut metrics = String::new();
    for _ in 0..100 {
        metrics = server
            .admin(app.path(), "GET", "/metrics", None)
            .await
            .text();
        if metrics.contains("\nnimbus_websocket_connections 0\n") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        metrics.contains("\nnimbus_websocket_connections 0\n"),
        "{metrics}"
    );
}
