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
    quick:
      type: EXPRESS
      definition:
        StartAt: Greet
        States:
          Greet:
            Type: Pass
            Parameters: { greeting.$: "States.Format('hello {}', $.who)" }
            End: true
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
    until_ended(server, arn, || {
        server.request(
            "POST",
            "/orders/status",
            JSON,
            json!({ "executionArn": arn }).to_string().into_bytes(),
        )
    })
    .await
}

/// Asks `describe` for the execution (60 s at most) until it is no longer RUNNING.
async fn until_ended<F, Fut>(server: &TestServer, arn: &str, describe: F) -> Value
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = crate::harness::Response>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let res = describe().await;
        assert_eq!(res.status, 200, "{}\n{}", res.text(), server.logs());
        let described = res.json();
        if described["status"] != "RUNNING" {
            return described;
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

quick = [m["stateMachineArn"] for m in machines if m["name"] == "quick"][0]
synced = sync.start_sync_execution(stateMachineArn=quick, input=json.dumps({"who": "sdk"}))
out["sync"] = [synced["status"], json.loads(synced["output"])]

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

    // The CLI: list, start and wait, history, and a clear error for an unknown execution.
    let ls = app.nimbus(&["workflow", "ls"]);
    assert!(
        ls.stdout.contains("orderSaga"),
        "{}{}",
        ls.stdout,
        ls.stderr
    );
    let input = json!({ "orderId": "cli-1", "amount": 5, "items": ["pen"], "address": "home" });
    let started = app.nimbus(&[
        "workflow",
        "start",
        "orderSaga",
        "--name",
        "cli-1",
        "--input",
        &input.to_string(),
        "--wait",
    ]);
    assert_eq!(
        started.code,
        Some(0),
        "{}{}",
        started.stdout,
        started.stderr
    );
    assert!(
        started.stdout.contains("T-cli-1"),
        "{}{}",
        started.stdout,
        started.stderr
    );
    let history = app.nimbus(&["workflow", "history", "orderSaga:cli-1"]);
    assert!(
        history.stdout.contains("ExecutionSucceeded") && history.stdout.contains("Ship"),
        "{}{}",
        history.stdout,
        history.stderr
    );
    let executions = app.nimbus(&["workflow", "ls", "orderSaga", "--status", "failed"]);
    assert!(
        executions.stdout.contains("declined-1"),
        "{}{}",
        executions.stdout,
        executions.stderr
    );
    assert!(
        !executions.stdout.contains("cli-1"),
        "{}{}",
        executions.stdout,
        executions.stderr
    );
    let missing = app.nimbus(&["workflow", "describe", "orderSaga:nope"]);
    assert_eq!(
        missing.code,
        Some(1),
        "{}{}",
        missing.stdout,
        missing.stderr
    );
    assert!(
        missing.stderr.contains("Execution Does Not Exist"),
        "{}{}",
        missing.stdout,
        missing.stderr
    );
    let bad = app.nimbus(&["workflow", "start", "orderSaga", "--input", "{nope"]);
    assert_eq!(bad.code, Some(1), "{}{}", bad.stdout, bad.stderr);
    assert!(
        bad.stderr.contains("the input is not JSON"),
        "{}{}",
        bad.stdout,
        bad.stderr
    );

    let out = run_boto3_with(&boto3, HISTORY_SCRIPT, &server, &[]);
    assert_eq!(
        out["machines"],
        json!([["orderSaga", "STANDARD"], ["quick", "EXPRESS"]])
    );
    // A machine of Pass states ends in its first transition, answered at once.
    assert_eq!(
        out["sync"],
        json!(["SUCCEEDED", { "greeting": "hello sdk" }])
    );
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
        json!([
            "cli-1:SUCCEEDED",
            "declined-1:FAILED",
            "lost-1:FAILED",
            "ok-1:SUCCEEDED"
        ])
    );
    assert_eq!(out["pages"], json!([2, 2, false]));
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

/// The States Language's control flow through the host: a Map of 100 items at most 10 at a
/// time, a Parallel whose failing branch is caught, a Wait, a Retry with backoff, and a
/// `.waitForTaskToken` task that a queue consumer resumes through boto3.
const FLOW_MANIFEST: &str = r#"
service: flow
plugins: [serverless-step-functions]
provider:
  name: aws
  runtime: python3.12
  timeout: 10
functions:
  square: { handler: flow.square }
  broken: { handler: flow.broken }
  flaky: { handler: flow.flaky }
  approve:
    handler: flow.approve
    events: [{ sqs: { arn: { Fn::GetAtt: [ApprovalsQueue, Arn] } } }]
    iamRoleStatements:
      - Effect: Allow
        Action: [states:SendTaskSuccess]
        Resource: { Ref: Pipeline }
resources:
  Resources:
    ApprovalsQueue:
      Type: AWS::SQS::Queue
      Properties: { QueueName: approvals }
stepFunctions:
  stateMachines:
    pipeline:
      id: Pipeline
      definition:
        StartAt: Fan
        States:
          Fan:
            Type: Map
            ItemsPath: $.items
            MaxConcurrency: 10
            ItemProcessor:
              ProcessorConfig: { Mode: INLINE }
              StartAt: Square
              States:
                Square: { Type: Task, Resource: { Fn::GetAtt: [square, Arn] }, End: true }
            ResultPath: $.squares
            Next: Both
          Both:
            Type: Parallel
            Branches:
              - StartAt: Fine
                States: { Fine: { Type: Pass, Result: fine, End: true } }
              - StartAt: Broken
                States: { Broken: { Type: Task, Resource: { Fn::GetAtt: [broken, Arn] }, End: true } }
            Catch: [{ ErrorEquals: [BranchBroke], ResultPath: $.parallelError, Next: Pause }]
            Next: Pause
          Pause: { Type: Wait, Seconds: 2, Next: Flaky }
          Flaky:
            Type: Task
            Resource: { Fn::GetAtt: [flaky, Arn] }
            Parameters: { attempt.$: $$.State.RetryCount }
            Retry: [{ ErrorEquals: [Flake], IntervalSeconds: 1, MaxAttempts: 3, BackoffRate: 2 }]
            ResultPath: $.flaky
            Next: Approval
          Approval:
            Type: Task
            Resource: arn:aws:states:::sqs:sendMessage.waitForTaskToken
            Parameters:
              QueueUrl: { Ref: ApprovalsQueue }
              MessageBody: { token.$: $$.Task.Token, count.$: States.ArrayLength($.squares) }
            ResultPath: $.approval
            End: true
"#;

const FLOW_PY: &str = r#"
import json
import time

import boto3


class BranchBroke(Exception):
    pass


class Flake(Exception):
    pass


def square(n, context):
    time.sleep(0.05)
    return n * n


def broken(event, context):
    raise BranchBroke("this branch always breaks")


def flaky(event, context):
    if event["attempt"] < 2:
        raise Flake(f"attempt {event['attempt']} flaked")
    return {"attempt": event["attempt"]}


sfn = boto3.client("stepfunctions")


def approve(event, context):
    for record in event["Records"]:
        body = json.loads(record["body"])
        sfn.send_task_success(taskToken=body["token"],
                              output=json.dumps({"approved": True, "count": body["count"]}))
"#;

const FLOW_SCRIPT: &str = r#"
import json, os, time

import boto3

sfn = boto3.client("stepfunctions", endpoint_url=os.environ["ENDPOINT"], region_name="us-east-1",
                   aws_access_key_id="test", aws_secret_access_key="test")
machine = sfn.list_state_machines()["stateMachines"][0]["stateMachineArn"]
started = sfn.start_execution(stateMachineArn=machine, name="run-1",
                              input=json.dumps({"items": list(range(100))}))
# While it runs, the same name and input answer with the same execution.
again = sfn.start_execution(stateMachineArn=machine, name="run-1",
                            input=json.dumps({"items": list(range(100))}))
out = {"idempotent": again["executionArn"] == started["executionArn"]}
deadline = time.time() + 90
while True:
    described = sfn.describe_execution(executionArn=started["executionArn"])
    if described["status"] != "RUNNING" or time.time() > deadline:
        break
    time.sleep(0.2)
out["status"] = described["status"]
out["output"] = json.loads(described.get("output", "null"))
out["error"] = [described.get("error"), described.get("cause")]

events = []
kwargs = {}
while True:
    page = sfn.get_execution_history(executionArn=started["executionArn"], maxResults=200, **kwargs)
    events += page["events"]
    if "nextToken" not in page:
        break
    kwargs = {"nextToken": page["nextToken"]}
out["n_events"] = len(events)

# Map tasks in flight at once, from the history.
running, most = 0, 0
for e in events:
    if e["type"] == "MapStateExited":
        break
    if e["type"] == "TaskScheduled":
        running += 1
        most = max(most, running)
    elif e["type"] == "TaskSucceeded":
        running -= 1
out["map_most_in_flight"] = most
out["map_iterations"] = sum(1 for e in events if e["type"] == "MapIterationSucceeded")

entered = {e["stateEnteredEventDetails"]["name"]: e["timestamp"] for e in events if e["type"].endswith("StateEntered")}
exited = {e["stateExitedEventDetails"]["name"]: e["timestamp"] for e in events if e["type"].endswith("StateExited")}
out["wait_seconds"] = (exited["Pause"] - entered["Pause"]).total_seconds()
flaky_failures = [e["timestamp"] for e in events if e["type"] == "TaskFailed"
                  and e["taskFailedEventDetails"]["error"] == "Flake"]
flaky_scheduled = [e["timestamp"] for e in events if e["type"] == "TaskScheduled"
                   and "flaky" in e["taskScheduledEventDetails"]["resource"]]
out["flaky_attempts"] = len(flaky_scheduled)
out["retry_gaps"] = [(s - f).total_seconds() for f, s in zip(flaky_failures, flaky_scheduled[1:])]
print(json.dumps(out))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn map_parallel_wait_retry_and_task_tokens_run_as_step_functions_runs_them() {
    let app = TestApp::new(&[("serverless.yml", FLOW_MANIFEST), ("flow.py", FLOW_PY)]);
    let boto3 = boto3_path(&app);
    let server = TestServer::start(app.path(), &[]);
    let out = run_boto3_with(&boto3, FLOW_SCRIPT, &server, &[]);
    assert_eq!(out["status"], "SUCCEEDED", "{out}\n{}", server.logs());
    assert_eq!(out["idempotent"], true);
    let output = &out["output"];
    let squares: Vec<i64> = (0..100).map(|n| n * n).collect();
    assert_eq!(output["squares"], json!(squares));
    assert_eq!(output["parallelError"]["Error"], "BranchBroke", "{output}");
    assert_eq!(output["flaky"], json!({ "attempt": 2 }));
    assert_eq!(
        output["approval"],
        json!({ "approved": true, "count": 100 })
    );
    assert_eq!(out["map_iterations"], 100);
    let most = out["map_most_in_flight"].as_u64().unwrap_or(0);
    assert!(
        (2..=10).contains(&most),
        "{most} map tasks in flight at once"
    );
    assert!(out["wait_seconds"].as_f64().unwrap_or(0.0) >= 1.9, "{out}");
    assert_eq!(out["flaky_attempts"], 3);
    // IntervalSeconds 1, BackoffRate 2: the retries wait about 1 s, then 2 s.
    let gaps: Vec<f64> = out["retry_gaps"]
        .as_array()
        .map(|gaps| gaps.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    assert_eq!(gaps.len(), 2, "{out}");
    assert!(gaps[0] >= 0.9 && gaps[1] >= 1.9, "{gaps:?}");
}

/// Executions that outlive nimbus: every Task records its invocation in a table, so the
/// test counts what a kill -9 made run twice.
const DURABLE_MANIFEST: &str = r#"
service: durable
provider:
  name: aws
  runtime: python3.12
  timeout: 10
  iam:
    role:
      statements:
        - Effect: Allow
          Action: [dynamodb:PutItem]
          Resource: arn:aws:dynamodb:*:*:table/calls
functions:
  first: { handler: steps.first }
  second: { handler: steps.second }
tables:
  calls: { partitionKey: id }
workflows:
  chain:
    definition:
      StartAt: First
      States:
        First:
          Type: Task
          Resource: { Fn::GetAtt: [first, Arn] }
          ResultPath: $.first
          Retry: &retry
            # What Workflow Studio adds to a Lambda task, plus Lambda.Unknown: on a loaded
            # 2-core machine 40 cold starts at once can pass the 10 s init bound.
            - ErrorEquals: [Lambda.ServiceException, Lambda.TooManyRequestsException, Lambda.Unknown]
              IntervalSeconds: 1
              MaxAttempts: 3
              BackoffRate: 2
          Next: Pause
        Pause: { Type: Wait, Seconds: 1, Next: Second }
        Second:
          Type: Task
          Resource: { Fn::GetAtt: [second, Arn] }
          ResultPath: $.second
          Retry: *retry
          Next: Done
        Done: { Type: Pass, Parameters: { n.$: $.n, total.$: 'States.MathAdd($.first.value, $.second.value)' }, End: true }
"#;

const STEPS_PY: &str = r#"
import time
import uuid

import boto3

calls = boto3.resource("dynamodb").Table("calls")


def record(state, event):
    calls.put_item(Item={"id": str(uuid.uuid4()), "execution": event["name"], "state": state})


def first(event, context):
    record("First", event)
    time.sleep(0.2)
    return {"value": event["n"] * 10}


def second(event, context):
    record("Second", event)
    time.sleep(0.2)
    return {"value": 1}
"#;

const DURABLE_SCRIPT: &str = r#"
import json, os, time
from collections import Counter

import boto3

kw = dict(endpoint_url=os.environ["ENDPOINT"], region_name="us-east-1",
          aws_access_key_id="test", aws_secret_access_key="test")
sfn = boto3.client("stepfunctions", **kw)
machine = sfn.list_state_machines()["stateMachines"][0]["stateMachineArn"]
executions = int(os.environ["EXECUTIONS"])
out = {}
if os.environ["PHASE"] == "start":
    for i in range(executions):
        sfn.start_execution(stateMachineArn=machine, name=f"e-{i}",
                            input=json.dumps({"n": i, "name": f"e-{i}"}))
    out["started"] = executions
else:
    deadline = time.time() + 180
    while True:
        listed = []
        kwargs = {}
        while True:
            page = sfn.list_executions(stateMachineArn=machine, maxResults=1000, **kwargs)
            listed += page["executions"]
            if "nextToken" not in page:
                break
            kwargs = {"nextToken": page["nextToken"]}
        running = [e for e in listed if e["status"] == "RUNNING"]
        if not running or time.time() > deadline:
            break
        time.sleep(0.5)
    out["statuses"] = dict(Counter(e["status"] for e in listed))
    wrong = []
    for e in listed:
        d = sfn.describe_execution(executionArn=e["executionArn"])
        n = int(e["name"].split("-")[1])
        if d["status"] != "SUCCEEDED" or json.loads(d["output"]) != {"n": n, "total": n * 10 + 1}:
            wrong.append([e["name"], d["status"], d.get("output"), d.get("error"), d.get("cause")])
    out["wrong"] = wrong[:5]
    items = boto3.resource("dynamodb", **kw).Table("calls").scan()["Items"]
    counts = Counter((i["execution"], i["state"]) for i in items)
    out["missing"] = [f"e-{i}:{s}" for i in range(executions) for s in ("First", "Second")
                      if counts[(f"e-{i}", s)] == 0][:5]
    out["duplicates"] = sum(c - 1 for c in counts.values())
    out["most_per_task"] = max(counts.values()) if counts else 0
print(json.dumps(out))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executions_reach_their_end_across_kill_9_with_tasks_rerun_at_most_once_per_kill() {
    // 40 executions and 4 kills by default; NIMBUS_WORKFLOW_EXECUTIONS and
    // NIMBUS_WORKFLOW_KILLS scale it up (the issue's 200 and 20).
    let executions: usize = std::env::var("NIMBUS_WORKFLOW_EXECUTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let kills: u64 = std::env::var("NIMBUS_WORKFLOW_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let app = TestApp::new(&[("serverless.yml", DURABLE_MANIFEST), ("steps.py", STEPS_PY)]);
    let boto3 = boto3_path(&app);
    let env = |phase: &str| {
        vec![
            ("PHASE", phase.to_owned()),
            ("EXECUTIONS", executions.to_string()),
        ]
    };
    let mut server = TestServer::start(app.path(), &[]);
    let started = run_boto3_with(&boto3, DURABLE_SCRIPT, &server, &env("start"));
    assert_eq!(started["started"], executions);
    let mut seed = u64::from(std::process::id());
    for _ in 0..kills {
        // A pseudo-random pause of 0.3 to 1.5 s between kills, so they land in Tasks,
        // Waits and journal writes alike.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        tokio::time::sleep(Duration::from_millis(300 + seed % 1200)).await;
        crate::harness::signal(server.pid(), libc::SIGKILL);
        drop(server);
        server = TestServer::start(app.path(), &[]);
    }
    let out = run_boto3_with(&boto3, DURABLE_SCRIPT, &server, &env("check"));
    assert_eq!(
        out["statuses"],
        json!({ "SUCCEEDED": executions }),
        "{out}\n{}",
        server.logs()
    );
    assert_eq!(out["wrong"], json!([]), "{out}");
    assert_eq!(out["missing"], json!([]), "{out}");
    let duplicates = out["duplicates"].as_u64().unwrap_or(u64::MAX);
    eprintln!(
        "workflow crash test: {executions} executions, {kills} kill -9s, {duplicates} Task invocations run twice"
    );
    // A kill re-runs at most the Task each execution had in flight.
    assert!(
        out["most_per_task"].as_u64().unwrap_or(u64::MAX) <= 1 + kills,
        "{out}"
    );
    assert!(duplicates <= kills * executions as u64, "{out}");
}

/// State machines started by their own events (an `http` event, StartSyncExecution over
/// `http` for an EXPRESS machine, a `schedule`) and executions that fail on bad input the
/// way Step Functions fails them.
const EVENTS_MANIFEST: &str = r#"
service: intake
plugins: [serverless-step-functions]
provider:
  name: aws
  runtime: python3.12
  timeout: 10
functions:
  greet: { handler: steps.greet }
  raw:
    handler: bootstrap
    runtime: provided.al2
  legacy:
    handler: legacy.handler
    runtime: nodejs20.x
    environment:
      INTAKE_ARN: { Ref: IntakeStepFunctionsStateMachine }
    iamRoleStatements:
      - Effect: Allow
        Action: [states:StartExecution, states:DescribeExecution]
        Resource: '*'
stepFunctions:
  stateMachines:
    intake:
      events:
        - http: { path: intake, method: post, cors: true }
        - schedule:
            rate: rate(1 hour)
            name: hourly-intake
            input: { source: schedule }
      definition:
        StartAt: Greet
        States:
          Greet: { Type: Task, Resource: { Fn::GetAtt: [greet, Arn] }, End: true }
    quote:
      type: EXPRESS
      events:
        - http: { path: quote, method: post, action: StartSyncExecution }
      definition:
        StartAt: Price
        States:
          Price: { Type: Pass, Parameters: { total.$: "States.MathAdd($.a, $.b)" }, End: true }
    picky:
      definition:
        StartAt: Pick
        States:
          Pick: { Type: Pass, InputPath: $.missing, End: true }
    rawResult:
      definition:
        StartAt: Raw
        States:
          Raw: { Type: Task, Resource: { Fn::GetAtt: [raw, Arn] }, End: true }
"#;

const STEPS_EVENTS_PY: &str = r#"
def greet(event, context):
    return {"hello": event.get("source", "http"), "input": event}
"#;

/// aws-sdk v2, as Lambda's older Node runtimes provide it, with no endpoint configured:
/// starts an execution and waits for its output.
const LEGACY_JS: &str = r#"
const AWS = require('aws-sdk');
const sfn = new AWS.StepFunctions();
exports.handler = async (event) => {
  const { executionArn } = await sfn.startExecution({
    stateMachineArn: process.env.INTAKE_ARN,
    name: event.name,
    input: JSON.stringify({ who: 'sdk v2' }),
  }).promise();
  for (;;) {
    const run = await sfn.describeExecution({ executionArn }).promise();
    if (run.status !== 'RUNNING') return { status: run.status, output: JSON.parse(run.output) };
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
};
"#;

/// A custom runtime whose function answers with a body that is not JSON.
const RAW_BOOTSTRAP: &str = r#"#!/usr/bin/env python3
import os
import urllib.request

api = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime/invocation/"
while True:
    with urllib.request.urlopen(api + "next") as res:
        request_id = res.headers["Lambda-Runtime-Aws-Request-Id"]
    answer = urllib.request.Request(api + request_id + "/response", data=b"<b>not json</b>", method="POST")
    urllib.request.urlopen(answer).read()
"#;

/// Polls the control API until the execution ends; its description.
async fn execution_end(server: &TestServer, app: &TestApp, arn: &str) -> Value {
    let path = format!("/v1/executions/{arn}");
    until_ended(server, arn, || server.admin(app.path(), "GET", &path, None)).await
}

/// The executions of `machine`, newest first.
async fn executions_of(server: &TestServer, app: &TestApp, machine: &str) -> Vec<Value> {
    let res = server
        .admin(
            app.path(),
            "GET",
            &format!("/v1/workflows/{machine}/executions"),
            None,
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text());
    res.json()["executions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn http_and_schedule_events_start_executions_and_bad_input_fails_as_step_functions_does() {
    let app = TestApp::new(&[
        ("serverless.yml", EVENTS_MANIFEST),
        ("steps.py", STEPS_EVENTS_PY),
        ("bootstrap", RAW_BOOTSTRAP),
        ("legacy.js", LEGACY_JS),
    ]);
    {
        use std::os::unix::fs::PermissionsExt as _;
        let bootstrap = app.path().join("bootstrap");
        std::fs::set_permissions(&bootstrap, std::fs::Permissions::from_mode(0o755))
            .expect("chmod bootstrap");
        // The schedule last fired two hours ago: the slot missed while "down" fires once at
        // start-up.
        let store = nimbus_store::Store::open(&app.path().join(".nimbus")).expect("store");
        let two_hours_ago = std::time::SystemTime::now() - Duration::from_secs(7200);
        store
            .fire_schedule("hourly-intake", two_hours_ago, two_hours_ago, Vec::new())
            .expect("seed schedule state");
    }
    let server = TestServer::start(app.path(), &[]);

    // An `http` event: the JSON body is the input, the request id the execution's name, and
    // the answer StartExecution's.
    let res = server
        .request("POST", "/dev/intake", JSON, br#"{"who":"ada"}"#.to_vec())
        .await;
    assert_eq!(res.status, 200, "{}\n{}", res.text(), server.logs());
    let started = res.json();
    let arn = started["executionArn"]
        .as_str()
        .expect("an execution ARN")
        .to_owned();
    let request_id = res
        .header("x-amzn-requestid")
        .expect("a request id")
        .to_owned();
    assert_eq!(
        arn,
        format!("arn:aws:states:us-east-1:123456789012:execution:intake:{request_id}")
    );
    assert!(started["startDate"].as_f64().is_some(), "{started}");
    assert_eq!(res.header("access-control-allow-origin"), Some("*"));
    let ended = execution_end(&server, &app, &arn).await;
    assert_eq!(ended["status"], "SUCCEEDED", "{ended}");
    let output: Value =
        serde_json::from_str(ended["output"].as_str().unwrap_or("null")).expect("output");
    assert_eq!(
        output,
        json!({ "hello": "http", "input": { "who": "ada" } })
    );

    // Its trace: the request, the execution under it, each state under the execution, and
    // the Task's invocation under its state.
    let trace_id = res
        .header("x-nimbus-trace-id")
        .expect("trace id")
        .to_owned();
    let tree = app
        .nimbus_until(&["trace", &trace_id], |out| {
            out.contains("greet [internal]")
        })
        .await;
    let depth = |name: &str| {
        tree.lines()
            .find(|line| line.trim_start().starts_with(name))
            .map(|line| line.len() - line.trim_start().len())
            .unwrap_or_else(|| panic!("no span {name:?} in\n{tree}"))
    };
    let (request, execution, state, invocation) = (
        depth("POST /intake [server]"),
        depth("execution intake [internal]"),
        depth("state Greet [internal]"),
        depth("greet [internal]"),
    );
    assert!(
        request < execution && execution < state && state < invocation,
        "{tree}"
    );

    // aws-sdk v2 in a function, with no endpoint in its code.
    let legacy = server
        .invoke_ok(app.path(), "legacy", &json!({ "name": "from-v2" }))
        .await;
    assert_eq!(
        legacy,
        json!({ "status": "SUCCEEDED", "output": { "hello": "http", "input": { "who": "sdk v2" } } })
    );

    // A body that is not JSON: Step Functions' InvalidExecutionInput, nothing started.
    let res = server
        .request("POST", "/intake", JSON, b"{nope".to_vec())
        .await;
    assert_eq!(res.status, 400, "{}", res.text());
    assert!(
        res.text().contains("InvalidExecutionInput"),
        "{}",
        res.text()
    );

    // StartSyncExecution over `http` for an EXPRESS machine answers with the result.
    let res = server
        .request("POST", "/quote", JSON, br#"{"a":2,"b":3}"#.to_vec())
        .await;
    assert_eq!(res.status, 200, "{}", res.text());
    let quote = res.json();
    assert_eq!(quote["status"], "SUCCEEDED", "{quote}");
    assert_eq!(quote["output"], r#"{"total":5}"#);

    // The schedule: one execution for the missed slot, with the schedule's input.
    let deadline = Instant::now() + Duration::from_secs(30);
    let scheduled = loop {
        let executions = executions_of(&server, &app, "intake").await;
        if let Some(scheduled) = executions
            .iter()
            .find(|e| e["executionArn"] != arn.as_str() && e["name"] != "from-v2")
        {
            break scheduled.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no scheduled execution\n{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let scheduled_arn = scheduled["executionArn"].as_str().expect("arn").to_owned();
    let ended = execution_end(&server, &app, &scheduled_arn).await;
    let output: Value =
        serde_json::from_str(ended["output"].as_str().unwrap_or("null")).expect("output");
    assert_eq!(output["hello"], "schedule", "{ended}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        executions_of(&server, &app, "intake").await.len(),
        3,
        "one execution from http, one from aws-sdk v2, one from the schedule's single missed slot"
    );

    // A JSONPath that selects nothing, and a function answering with something that is not
    // JSON: the execution fails with States.Runtime, recorded in its history.
    for (machine, cause) in [
        ("picky", "Invalid path '$.missing'"),
        ("rawResult", "not JSON"),
    ] {
        let res = server
            .admin_json(
                app.path(),
                "POST",
                &format!("/v1/workflows/{machine}/executions"),
                &json!({ "input": r#"{"a":1}"# }).to_string(),
            )
            .await;
        assert_eq!(res.status, 200, "{}", res.text());
        let arn = res.json()["executionArn"].as_str().expect("arn").to_owned();
        let ended = execution_end(&server, &app, &arn).await;
        assert_eq!(ended["status"], "FAILED", "{ended}");
        assert_eq!(ended["error"], "States.Runtime", "{ended}");
        assert!(
            ended["cause"].as_str().unwrap_or_default().contains(cause),
            "{ended}"
        );
        let history = server
            .admin(
                app.path(),
                "GET",
                &format!("/v1/executions/{arn}/history"),
                None,
            )
            .await
            .json();
        let last = history["events"]
            .as_array()
            .and_then(|events| events.last())
            .cloned()
            .unwrap_or_default();
        assert_eq!(last["type"], "ExecutionFailed", "{history}");
        assert_eq!(
            last["executionFailedEventDetails"]["error"],
            "States.Runtime"
        );
    }
    // Transitions and executions in the metrics, and priced by `nimbus cost`.
    let metrics = server
        .admin(app.path(), "GET", "/metrics", None)
        .await
        .text();
    let transitions = crate::observe::metric(
        &metrics,
        "nimbus_workflow_transitions_total",
        &[("state_machine", "intake")],
    );
    assert_eq!(transitions, 3.0, "one Task state per execution:\n{metrics}");
    let failed = crate::observe::metric(
        &metrics,
        "nimbus_workflow_executions_total",
        &[("state_machine", "picky"), ("status", "FAILED")],
    );
    assert_eq!(failed, 1.0, "{metrics}");
    let cost = app.nimbus(&["cost", "--json"]);
    let cost: Value = serde_json::from_str(&cost.stdout).expect("cost JSON");
    let intake = cost["workflows"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["stateMachine"] == "intake"))
        .cloned()
        .unwrap_or_else(|| panic!("no intake row in {cost}"));
    assert_eq!(intake["executions"], 3, "{cost}");
    assert_eq!(intake["transitions"], 3, "{cost}");
    assert!(
        (intake["cost"].as_f64().unwrap_or(0.0) - 0.000075).abs() < 1e-9,
        "{cost}"
    );

    // nimbus is still up and serving.
    let res = server
        .request("POST", "/quote", JSON, br#"{"a":1,"b":1}"#.to_vec())
        .await;
    assert_eq!(res.json()["output"], r#"{"total":2}"#);
}

/// State machines in the shapes of the patterns AWS publishes as sample projects (written
/// for this test, with local stand-in functions): `nimbus validate` takes them without a
/// warning, and each case of `cases.json` ends with the status and output written there.
#[tokio::test]
async fn sample_shaped_state_machines_validate_and_end_as_written_down() {
    let app = TestApp::new(&[
        (
            "serverless.yml",
            include_str!("state_machines/serverless.yml"),
        ),
        ("standins.py", include_str!("state_machines/standins.py")),
    ]);
    let validate = app.nimbus(&["validate", "--no-load"]);
    assert_eq!(
        validate.code,
        Some(0),
        "{}{}",
        validate.stdout,
        validate.stderr
    );
    assert!(
        validate
            .stdout
            .contains("7 functions, 0 routes, 0 warnings"),
        "{}{}",
        validate.stdout,
        validate.stderr
    );
    let cases: Vec<Value> =
        serde_json::from_str(include_str!("state_machines/cases.json")).expect("cases.json");
    let server = TestServer::start(app.path(), &[]);
    let mut started = Vec::new();
    for (idx, case) in cases.iter().enumerate() {
        let machine = case["machine"].as_str().expect("machine");
        let request = json!({ "name": format!("case-{idx}"), "input": case["input"].to_string() });
        let res = server
            .admin_json(
                app.path(),
                "POST",
                &format!("/v1/workflows/{machine}/executions"),
                &request.to_string(),
            )
            .await;
        assert_eq!(res.status, 200, "{machine}: {}", res.text());
        started.push(res.json()["executionArn"].as_str().expect("arn").to_owned());
    }
    let mut wrong = Vec::new();
    for (case, arn) in cases.iter().zip(&started) {
        let ended = execution_end(&server, &app, arn).await;
        let output: Value = ended["output"]
            .as_str()
            .and_then(|text| serde_json::from_str(text).ok())
            .unwrap_or(Value::Null);
        let cause = ended["cause"].as_str().unwrap_or_default();
        let right = ended["status"] == case["status"]
            && case
                .get("output")
                .is_none_or(|expected| output == *expected)
            && case
                .get("error")
                .is_none_or(|expected| ended["error"] == *expected)
            && case
                .get("cause")
                .is_none_or(|expected| ended["cause"] == *expected)
            && case
                .get("cause_contains")
                .and_then(Value::as_str)
                .is_none_or(|part| cause.contains(part));
        if !right {
            wrong.push(format!("{case}\n  ended as {ended}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} cases ended otherwise:\n{}\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n"),
        server.logs()
    );
}
