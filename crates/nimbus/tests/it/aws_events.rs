//! EventBridge: functions' `eventBridge` rules (a bus from `resources`, or `default`; a
//! pattern; `inputPath`) fire on events put with `@aws-sdk/client-eventbridge` inside a
//! function and with boto3 from outside, within the putter's grants.

use serde_json::json;

use crate::harness::{TestApp, TestServer};

const MANIFEST: &str = r#"
service: shop
provider:
  runtime: nodejs20.x
kv: [seen]
functions:
  checkout:
    handler: fns.checkout
    iamRoleStatements:
      - Effect: Allow
        Action: [events:PutEvents]
        Resource: !GetAtt OrdersBus.Arn
  onOrder:
    handler: fns.onOrder
    iamRoleStatements:
      - { Effect: Allow, Action: ["kv:*"], Resource: "kv:seen" }
    events:
      - eventBridge:
          eventBus: !GetAtt OrdersBus.Arn
          pattern:
            source: [shop.orders]
            detail-type: [OrderPlaced]
            detail:
              total: [{ numeric: [">", 100] }]
  onDetail:
    handler: fns.onDetail
    iamRoleStatements:
      - { Effect: Allow, Action: ["kv:*"], Resource: "kv:seen" }
    events:
      - eventBridge:
          eventBus: orders-bus
          pattern: { source: [shop.orders] }
          inputPath: $.detail
  onDefault:
    handler: fns.onDefault
    iamRoleStatements:
      - { Effect: Allow, Action: ["kv:*"], Resource: "kv:seen" }
    events:
      - eventBridge:
          pattern: { source: [{ prefix: "tests." }] }
  outsider:
    handler: fns.outsider
resources:
  Resources:
    OrdersBus:
      Type: AWS::Events::EventBus
      Properties: { Name: orders-bus }
"#;

const FNS_JS: &str = r#"
const { EventBridgeClient, PutEventsCommand } = require('@aws-sdk/client-eventbridge');
const nimbus = require('nimbus');
const eb = new EventBridgeClient({});

exports.checkout = async () => {
  const out = await eb.send(new PutEventsCommand({ Entries: [
    { EventBusName: 'orders-bus', Source: 'shop.orders', DetailType: 'OrderPlaced',
      Detail: JSON.stringify({ id: 'big', total: 250 }) },
    { EventBusName: 'orders-bus', Source: 'shop.orders', DetailType: 'OrderPlaced',
      Detail: JSON.stringify({ id: 'small', total: 5 }) },
  ] }));
  return { failed: out.FailedEntryCount, ids: out.Entries.filter((e) => e.EventId).length };
};

exports.onOrder = async (event) => {
  await nimbus.kv('seen').put(`order:${event.detail.id}`,
    `${event['detail-type']} ${event.source} ${event.account} ${typeof event.id}`);
};

exports.onDetail = async (detail) => {
  await nimbus.kv('seen').put(`detail:${detail.id}`, JSON.stringify(detail));
};

exports.onDefault = async (event) => {
  await nimbus.kv('seen').put(`default:${event.source}`, event['detail-type']);
};

exports.outsider = async () => {
  try {
    await eb.send(new PutEventsCommand({ Entries: [
      { EventBusName: 'orders-bus', Source: 'shop.orders', DetailType: 'OrderPlaced', Detail: '{}' }] }));
    return 'put';
  } catch (e) {
    return `${e.name} ${e.$metadata?.httpStatusCode}`;
  }
};
"#;

const SCRIPT: &str = r#"
import json, os
import boto3
from botocore.exceptions import ClientError

events = boto3.client("events", endpoint_url=os.environ["ENDPOINT"], region_name="us-east-1",
                      aws_access_key_id="test", aws_secret_access_key="test")
out = events.put_events(Entries=[
    {"Source": "tests.cli", "DetailType": "Ping", "Detail": json.dumps({"n": 1})},
    {"Source": "other", "DetailType": "Ping", "Detail": "{}"},
    {"EventBusName": "nope", "Source": "tests.cli", "DetailType": "Ping", "Detail": "{}"},
    {"Source": "tests.cli", "DetailType": "Ping", "Detail": "[1, 2]"},
])
result = {"failed": out["FailedEntryCount"],
          "codes": [e.get("ErrorCode") for e in out["Entries"]]}
try:
    events.put_events(Entries=[{"Source": "tests.cli", "DetailType": "Ping", "Detail": "{}"}] * 11)
    result["eleven"] = None
except ClientError as e:
    result["eleven"] = e.response["Error"]["Code"]
print(json.dumps(result))
"#;

#[tokio::test]
async fn eventbridge_rules_fire_on_events_put_through_the_sdks() {
    let app = TestApp::new(&[("serverless.yml", MANIFEST), ("fns.js", FNS_JS)]);
    let boto3 = crate::aws_sqs::boto3_path(&app);
    let server = TestServer::start(app.path(), &[]);

    let put = server.invoke_ok(app.path(), "checkout", &json!({})).await;
    assert_eq!(put, json!({ "failed": 0, "ids": 2 }));
    // The pattern with a numeric condition lets only the big order through.
    let big = app
        .nimbus_until(&["kv", "get", "seen", "order:big"], |out| {
            out.contains("OrderPlaced")
        })
        .await;
    assert!(
        big.contains("OrderPlaced shop.orders 123456789012 string"),
        "{big}"
    );
    // `inputPath: $.detail` sends the detail alone, for both orders.
    for id in ["big", "small"] {
        let detail = app
            .nimbus_until(&["kv", "get", "seen", &format!("detail:{id}")], |out| {
                out.contains(id)
            })
            .await;
        assert!(detail.contains("\"total\""), "{detail}");
    }
    let small = app.nimbus(&["kv", "get", "seen", "order:small"]);
    assert_ne!(small.code, Some(0), "{}", small.stdout);

    let refused = server.invoke_ok(app.path(), "outsider", &json!({})).await;
    assert_eq!(refused, "AccessDeniedException 400");

    // From outside, on the default bus: one match, one that matches no rule, and the
    // entries EventBridge refuses one by one.
    let out = crate::aws_sqs::run_boto3(&boto3, SCRIPT, &server);
    assert_eq!(
        out,
        json!({
            "failed": 2,
            "codes": [null, null, "ResourceNotFoundException", "MalformedDetail"],
            "eleven": "ValidationException",
        })
    );
    let ping = app
        .nimbus_until(&["kv", "get", "seen", "default:tests.cli"], |out| {
            out.contains("Ping")
        })
        .await;
    assert!(ping.contains("Ping"), "{ping}");
}

const WEBHOOK_MANIFEST: &str = r#"
service: hooks
provider:
  runtime: nodejs20.x
kv: [seen]
constructs:
  stripe:
    type: webhook
    path: /webhooks/stripe
    eventType: $request.body.type
    authorizer:
      handler: hooks.authorize
  open:
    type: webhook
    insecure: true
    path: /webhooks/open
functions:
  onInvoice:
    handler: hooks.onInvoice
    iamRoleStatements:
      - { Effect: Allow, Action: ["kv:*"], Resource: "kv:seen" }
    events:
      - eventBridge:
          eventBus: ${construct:stripe.busName}
          pattern: { source: [stripe], detail-type: [invoice.paid] }
  onOpen:
    handler: hooks.onOpen
    iamRoleStatements:
      - { Effect: Allow, Action: ["kv:*"], Resource: "kv:seen" }
    events:
      - eventBridge:
          eventBus: ${construct:open.busName}
          pattern: { source: [open] }
plugins: [serverless-lift]
"#;

const HOOKS_JS: &str = r#"
const nimbus = require('nimbus');

// As a Lift webhook authorizer: an HTTP API simple response, from the headers alone.
exports.authorize = async (event) => ({
  isAuthorized: event.headers['stripe-signature'] === 'good' && event.routeKey === 'POST /webhooks/stripe',
});

exports.onInvoice = async (event) => {
  await nimbus.kv('seen').put(`invoice:${event.detail.id}`, `${event.source} ${event['detail-type']}`);
};

exports.onOpen = async (event) => {
  await nimbus.kv('seen').put(`open:${event.detail.n}`, event['detail-type']);
};
"#;

#[tokio::test]
async fn lift_webhooks_put_authorized_requests_on_their_bus() {
    let app = TestApp::new(&[("serverless.yml", WEBHOOK_MANIFEST), ("hooks.js", HOOKS_JS)]);
    let server = TestServer::start(app.path(), &[]);
    let post = |path: &'static str, signature: &'static str, body: &'static str| {
        let server = &server;
        async move {
            let res = server
                .request(
                    "POST",
                    path,
                    &[
                        ("content-type", "application/json"),
                        ("stripe-signature", signature),
                    ],
                    body.as_bytes().to_vec(),
                )
                .await;
            (res.status, String::from_utf8_lossy(&res.body).into_owned())
        }
    };
    let (status, body) = post(
        "/webhooks/stripe",
        "good",
        r#"{"type": "invoice.paid", "id": "in_1"}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"FailedEntryCount\":0"), "{body}");
    let seen = app
        .nimbus_until(&["kv", "get", "seen", "invoice:in_1"], |out| {
            out.contains("stripe")
        })
        .await;
    assert!(seen.contains("stripe invoice.paid"), "{seen}");

    // The authorizer refuses a bad signature; nothing is put.
    let (status, body) = post(
        "/webhooks/stripe",
        "bad",
        r#"{"type": "invoice.paid", "id": "in_2"}"#,
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = post("/webhooks/stripe", "good", "not json").await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = post("/webhooks/stripe", "good", r#"{"id": "no type"}"#).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("$request.body.type"), "{body}");

    // An insecure webhook takes any request; its events are typed `Webhook`.
    let (status, body) = post("/webhooks/open", "", r#"{"n": 7}"#).await;
    assert_eq!(status, 200, "{body}");
    let seen = app
        .nimbus_until(&["kv", "get", "seen", "open:7"], |out| {
            out.contains("Webhook")
        })
        .await;
    assert!(seen.contains("Webhook"), "{seen}");
    let refused = app.nimbus(&["kv", "get", "seen", "invoice:in_2"]);
    assert_ne!(refused.code, Some(0), "{}", refused.stdout);
}
