//! Step Functions workflows (issue 16): state machines from serverless.yml run on nimbus's
//! journaled engine, started and watched through the AWS SDKs unchanged — a saga with
//! compensation started from an HTTP function through @aws-sdk/client-sfn, and its history
//! read back with boto3.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::aws_sqs::{boto3_path, run_boto3_with};
use crate::harness::{TestApp, TestServer};

/// An order saga, as the Serverless Framework and serverless-step-functions write one:
/// reserve → charge → ship, and a failure compensated in reverse (refund, release).
const SAGA_MANIFEST: &str = r#"
service: shop
plugins: [serverless-step-functions]
provider:
  name: aws
  runtime: nodejs20.x
  timeout: 10
  environment:
    STATE_MACHINE_ARN: { Ref: OrderSagaStepFunctionsStateMachine }
  iam:
    role:
      statements:
        - Effect: Allow
          Action: [states:StartExecution, states:DescribeExecution]
          Resource: '*'
functions:
  placeOrder:
    handler: api.place
    events: [{ httpApi: { path: /orders, method: post } }]
  orderStatus:
    handler: api.status
    events: [{ httpApi: { path: /orders/status, method: post } }]
  reserve: { handler: saga.reserve }
  charge: { handler: saga.charge }
  ship: { handler: saga.ship }
  refund: { handler: saga.refund }
  release: { handler: saga.release }
stepFunctions:
  stateMachines:
    orderSaga:
      definition:
        Comment: reserve, charge and ship; compensate in reverse
        StartAt: Reserve
        States:
          Reserve:
            Type: Task
            Resource: { Fn::GetAtt: [reserve, Arn] }
            ResultPath: $.reservation
            Next: Charge
          Charge:
            Type: Task
            Resource: arn:aws:states:::lambda:invoke
            Parameters:
              FunctionName: { Ref: ChargeLambdaFunction }
              Payload.$: $
            ResultSelector: { payment.$: $.Payload }
            ResultPath: $.charge
            Catch:
              - ErrorEquals: [PaymentDeclined]
                ResultPath: $.error
                Next: Release
            Next: Ship
          Ship:
            Type: Task
            Resource: { Fn::GetAtt: [ship, Arn] }
            ResultPath: $.shipment
            Catch:
              - ErrorEquals: [States.ALL]
                ResultPath: $.error
                Next: Refund
            End: true
          Refund:
            Type: Task
            Resource: { Fn::GetAtt: [refund, Arn] }
            ResultPath: $.refund
            Next: Release
          Release:
            Type: Task
            Resource: { Fn::GetAtt: [release, Arn] }
            ResultPath: $.release
            Next: Compensated
          Compensated:
            Type: Fail
            Error: OrderFailed
            Cause: the order was compensated
"#;

const API_JS: &str = r#"
const { SFNClient, StartExecutionCommand, DescribeExecutionCommand } = require('@aws-sdk/client-sfn');

const sfn = new SFNClient({});

exports.place = async (event) => {
  const order = JSON.parse(event.body);
  try {
    const res = await sfn.send(new StartExecutionCommand({
      stateMachineArn: process.env.STATE_MACHINE_ARN,
      name: order.orderId,
      input: JSON.stringify(order),
    }));
    return { statusCode: 202, body: JSON.stringify({ executionArn: res.executionArn }) };
  } catch (e) {
    return { statusCode: 409, body: JSON.stringify({ error: e.name, message: e.message }) };
  }
};

exports.status = async (event) => {
  const { executionArn } = JSON.parse(event.body);
  const res = await sfn.send(new DescribeExecutionCommand({ executionArn }));
  return {
    statusCode: 200,
    body: JSON.stringify({
      status: res.status,
      output: res.output ? JSON.parse(res.output) : null,
      error: res.error || null,
      cause: res.cause || null,
    }),
  };
};
"#;

const SAGA_JS: &str = r#"
exports.reserve = async (order) => ({ reservationId: `R-${order.orderId}`, items: order.items });

exports.charge = async (order) => {
  if (order.amount > 100) {
    const e = new Error(`card declined for ${order.amount}`);
    e.name = 'PaymentDeclined';
    throw e;
  }
  return { paymentId: `P-${order.orderId}`, amount: order.amount };
};

exports.ship = async (order) => {
  if (order.address === 'nowhere') throw new Error('no carrier goes there');
  return { tracking: `T-${order.orderId}`, reservation: order.reservation.reservationId };
};

exports.refund = async (order) => ({ refunded: order.charge.payment.paymentId });

exports.release = async (order) => ({ released: order.reservation.reservationId });
"#;

const JSON: &[(&str, &str)] = &[("content-type", "application/json")];

/// Starts an order through the HTTP function; the execution ARN.
async fn place(server: &TestServer, order: Value) -> String {
    let res = server
        .request("POST", "/orders", JSON, order.to_string().into_bytes())
        .await;
    assert_eq!(res.status, 202, "{}\n{}", res.text(), server.logs());
    res.json()["executionArn"]
        .as_str()
        .expect("an execution ARN")
        .to_owned()
}

/// Polls the execution through the HTTP function until it ends.
async fn finished(server: &TestServer, arn: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let res = server
            .request(
                "POST",
                "/orders/status",
                JSON,
                json!({ "executionArn": arn }).to_string().into_bytes(),
            )
            .await;
        assert_eq!(res.status, 200, "{}\n{}", res.text(), server.logs());
        let status = res.json();
        if status["status"] != "RUNNING" {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "{arn} still running\n{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const HISTORY_SCRIPT: &str = r#"
import json, os

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

kw = dict(endpoint_url=os.environ["ENDPOINT"], region_name="us-east-1",
          aws_access_key_id="test", aws_secret_access_key="test")
sfn = boto3.client("stepfunctions", **kw)
# StartSyncExecution's endpoint is `sync-<host>`, which no local address has: clients
# pointed at nimbus turn the host prefix off, as with any local endpoint.
sync = boto3.client("stepfunctions", config=Config(inject_host_prefix=False), **kw)
out = {}
machines = sfn.list_state_machines()["stateMachines"]
out["machines"] = [[m["name"], m["type"]] for m in machines]
arn = machines[0]["stateMachineArn"]
out["definition_states"] = sorted(json.loads(sfn.describe_state_machine(stateMachineArn=arn)["definition"])["States"])
out["executions"] = sorted(e["name"] + ":" + e["status"] for e in sfn.list_executions(stateMachineArn=arn)["executions"])
page = sfn.list_executions(stateMachineArn=arn, maxResults=2)
rest = sfn.list_executions(stateMachineArn=arn, maxResults=2, nextToken=page["nextToken"])
out["pages"] = [len(page["executions"]), len(rest["executions"]), "nextToken" in rest]
out["failed"] = [e["name"] for e in sfn.list_executions(stateMachineArn=arn, statusFilter="FAILED")["executions"]]

def entered(execution):
    events = sfn.get_execution_history(executionArn=execution)["events"]
    return [e["stateEnteredEventDetails"]["name"] for e in events if e["type"].endswith("StateEntered")]

for name in ["ok-1", "declined-1", "lost-1"]:
    out["path:" + name] = entered(arn.replace(":stateMachine:", ":execution:") + ":" + name)

history = sfn.get_execution_history(executionArn=arn.replace(":stateMachine:", ":execution:") + ":declined-1")["events"]
types = [e["type"] for e in history]
out["declined_first_last"] = [types[0], types[-1]]
failed_task = [e for e in history if e["type"] == "TaskFailed"]
out["declined_error"] = [failed_task[0]["taskFailedEventDetails"]["error"], json.loads(failed_task[0]["taskFailedEventDetails"]["cause"])["errorMessage"]] if failed_task else None
out["ids_contiguous"] = [e["id"] for e in history] == list(range(1, len(history) + 1))
backwards = sfn.get_execution_history(executionArn=arn.replace(":stateMachine:", ":execution:") + ":declined-1", reverseOrder=True, maxResults=3)
out["reverse"] = [e["id"] for e in backwards["events"]]

def error(call):
    try:
        call()
        return None
    except ClientError as e:
        return e.response["Error"]["Code"]

out["errors"] = {
    "no_execution": error(lambda: sfn.describe_execution(executionArn=arn.replace(":stateMachine:", ":execution:") + ":nope")),
    "bad_arn": error(lambda: sfn.describe_execution(executionArn="orders")),
    "no_machine": error(lambda: sfn.start_execution(stateMachineArn=arn + "-nope", input="{}")),
    "bad_input": error(lambda: sfn.start_execution(stateMachineArn=arn, input="{not json")),
    "bad_name": error(lambda: sfn.start_execution(stateMachineArn=arn, name="a b", input="{}")),
    "sync_on_standard": error(lambda: sync.start_sync_execution(stateMachineArn=arn, input="{}")),
    "unknown_token": error(lambda: sfn.send_task_success(taskToken="nope", output="{}")),
}
print(json.dumps(out))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saga_started_through_the_sdk_runs_and_compensates_in_reverse() {
    let app = TestApp::new(&[
        ("serverless.yml", SAGA_MANIFEST),
        ("api.js", API_JS),
        ("saga.js", SAGA_JS),
    ]);
    let boto3 = boto3_path(&app);
    let server = TestServer::start(app.path(), &[]);

    let ok = place(
        &server,
        json!({ "orderId": "ok-1", "amount": 40, "items": ["tea"], "address": "home" }),
    )
    .await;
    let declined = place(
        &server,
        json!({ "orderId": "declined-1", "amount": 400, "items": ["car"], "address": "home" }),
    )
    .await;
    let lost = place(
        &server,
        json!({ "orderId": "lost-1", "amount": 10, "items": ["map"], "address": "nowhere" }),
    )
    .await;

    let ok_status = finished(&server, &ok).await;
    assert_eq!(ok_status["status"], "SUCCEEDED", "{ok_status}");
    let output = &ok_status["output"];
    assert_eq!(output["reservation"]["reservationId"], "R-ok-1");
    assert_eq!(output["charge"]["payment"]["paymentId"], "P-ok-1");
    assert_eq!(output["shipment"]["tracking"], "T-ok-1");
    assert_eq!(output["shipment"]["reservation"], "R-ok-1");

    let declined_status = finished(&server, &declined).await;
    assert_eq!(declined_status["status"], "FAILED", "{declined_status}");
    assert_eq!(declined_status["error"], "OrderFailed");
    assert_eq!(declined_status["cause"], "the order was compensated");

    let lost_status = finished(&server, &lost).await;
    assert_eq!(lost_status["status"], "FAILED", "{lost_status}");

    // A name is taken once an execution ended, whatever the input (Step Functions answers a
    // repeat with the same input only while the execution runs).
    for order in [
        json!({ "orderId": "ok-1", "amount": 40, "items": ["tea"], "address": "home" }),
        json!({ "orderId": "ok-1", "amount": 41 }),
    ] {
        let res = server
            .request("POST", "/orders", JSON, order.to_string().into_bytes())
            .await;
        assert_eq!(res.status, 409, "{}", res.text());
        assert_eq!(res.json()["error"], "ExecutionAlreadyExists");
    }

    let out = run_boto3_with(&boto3, HISTORY_SCRIPT, &server, &[]);
    assert_eq!(out["machines"], json!([["orderSaga", "STANDARD"]]));
    assert_eq!(
        out["definition_states"],
        json!([
            "Charge",
            "Compensated",
            "Refund",
            "Release",
            "Reserve",
            "Ship"
        ])
    );
    assert_eq!(
        out["executions"],
        json!(["declined-1:FAILED", "lost-1:FAILED", "ok-1:SUCCEEDED"])
    );
    assert_eq!(out["pages"], json!([2, 1, false]));
    assert_eq!(out["failed"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        out["path:ok-1"],
        json!(["Reserve", "Charge", "Ship"]),
        "{out}"
    );
    assert_eq!(
        out["path:declined-1"],
        json!(["Reserve", "Charge", "Release", "Compensated"])
    );
    assert_eq!(
        out["path:lost-1"],
        json!([
            "Reserve",
            "Charge",
            "Ship",
            "Refund",
            "Release",
            "Compensated"
        ])
    );
    assert_eq!(
        out["declined_first_last"],
        json!(["ExecutionStarted", "ExecutionFailed"])
    );
    assert_eq!(
        out["declined_error"],
        json!(["PaymentDeclined", "card declined for 400"])
    );
    assert_eq!(out["ids_contiguous"], true);
    assert_eq!(out["reverse"].as_array().map(Vec::len), Some(3));
    assert_eq!(
        out["errors"],
        json!({
            "no_execution": "ExecutionDoesNotExist",
            "bad_arn": "InvalidArn",
            "no_machine": "StateMachineDoesNotExist",
            "bad_input": "InvalidExecutionInput",
            "bad_name": "InvalidName",
            "sync_on_standard": "StateMachineTypeNotSupported",
            "unknown_token": "TaskDoesNotExist",
        })
    );
}
