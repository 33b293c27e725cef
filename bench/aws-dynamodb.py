#!/usr/bin/env python3
"""DynamoDB through boto3 from one keep-alive client: nimbus's AWS endpoint vs moto in
server mode, measured in the same run, beside nimbus KV through the services API; then the
latency from a table write to the invocation of the function consuming the table's stream.
Results are recorded in BENCHMARKS.md.

    cargo build --release -p nimbus && python3 bench/aws-dynamodb.py

Per server, REPS rounds interleaved: N PutItem of 1 KB items (N distinct keys in 10
partitions), N GetItem of them, and N/10 Query calls of 10 items each; ops/s of each phase.
KV: N PUT and N GET of 1 KB values through the services API (http.client, one connection),
the nearest thing nimbus has to a table without expressions. Stream latency: LAT writes,
one every 20 ms, each carrying its client time; a Python function consuming the table's
stream (batchSize 1, batchWindow 0) writes now − that time to another table; p50/p99.
Needs boto3 and moto[server] (pip). Talks only to 127.0.0.1.
Knobs: NIMBUS (binary), N, REPS, LAT.
"""

import http.client
import json
import os
import statistics
import time

from awsbench import Servers, client, print_table, timed, unverified_auth

N = int(os.environ.get("N", "1000"))
REPS = int(os.environ.get("REPS", "3"))
LAT = int(os.environ.get("LAT", "300"))

APP = """service: bench
provider: { runtime: nodejs20.x }
kv: [bench]
tables:
  items: { partitionKey: p, sortKey: { name: s, type: N } }
functions:
  f: { handler: f.handler }
"""

STREAM_APP = """service: bench
provider:
  runtime: python3.12
  iam: { role: { statements: [{ Effect: Allow, Action: ['dynamodb:PutItem'], Resource: 'arn:aws:dynamodb:*:*:table/latency' }] } }
tables:
  writes: { partitionKey: id, stream: NEW_IMAGE }
  latency: { partitionKey: id }
functions:
  measure:
    handler: measure.handler
    events:
      - stream: { type: dynamodb, arn: writes, batchSize: 1, startingPosition: LATEST }
"""

MEASURE_PY = """import time
import boto3

latency = boto3.client("dynamodb")


def handler(event, context):
    now = time.time()
    for record in event["Records"]:
        image = record["dynamodb"]["NewImage"]
        took = now - float(image["t"]["N"])
        latency.put_item(TableName="latency", Item={"id": image["id"], "ms": {"N": str(took * 1000)}})
"""

VALUE = "x" * 1000


def create_table(ddb):
    try:
        ddb.create_table(
            TableName="items",
            AttributeDefinitions=[{"AttributeName": "p", "AttributeType": "S"},
                                  {"AttributeName": "s", "AttributeType": "N"}],
            KeySchema=[{"AttributeName": "p", "KeyType": "HASH"},
                       {"AttributeName": "s", "KeyType": "RANGE"}],
            BillingMode="PAY_PER_REQUEST")
    except ddb.exceptions.ResourceInUseException:
        pass


def table_round(ddb):
    def key(i):
        return {"p": {"S": f"p{i % 10}"}, "s": {"N": str(i)}}
    put = timed(N, lambda i: ddb.put_item(TableName="items", Item={**key(i), "v": {"S": VALUE}}))
    get = timed(N, lambda i: ddb.get_item(TableName="items", Key=key(i)))
    query = timed(N // 10, lambda i: ddb.query(
        TableName="items", KeyConditionExpression="p = :p AND s >= :s", Limit=10,
        ExpressionAttributeValues={":p": {"S": f"p{i % 10}"}, ":s": {"N": str(i)}}))
    return put, get, query


def http_round(port):
    """The same three operations through http.client: the server's share without boto3's
    (neither nimbus up with an operator's key nor moto checks the made-up signature)."""
    conn = http.client.HTTPConnection("127.0.0.1", port)
    headers = dict(unverified_auth("dynamodb"))
    headers["Content-Type"] = "application/x-amz-json-1.0"

    def call(operation, body):
        conn.request("POST", "/", body=json.dumps(body),
                     headers={**headers, "X-Amz-Target": f"DynamoDB_20120810.{operation}"})
        res = conn.getresponse()
        res.read()
        assert res.status == 200, res.status

    def key(i):
        return {"p": {"S": f"h{i % 10}"}, "s": {"N": str(i)}}
    put = timed(N, lambda i: call("PutItem", {"TableName": "items", "Item": {**key(i), "v": {"S": VALUE}}}))
    get = timed(N, lambda i: call("GetItem", {"TableName": "items", "Key": key(i)}))
    query = timed(N // 10, lambda i: call("Query", {
        "TableName": "items", "KeyConditionExpression": "p = :p AND s >= :s", "Limit": 10,
        "ExpressionAttributeValues": {":p": {"S": f"h{i % 10}"}, ":s": {"N": str(i)}}}))
    return put, get, query


def kv_round(servers):
    conn = http.client.HTTPConnection("127.0.0.1", servers.admin_port)
    auth = {"Authorization": f"Bearer {servers.token}"}

    def call(method, path, body=None):
        conn.request(method, path, body=body, headers=auth)
        res = conn.getresponse()
        res.read()
        assert res.status in (200, 204), res.status
    put = timed(N, lambda i: call("PUT", f"/v1/kv/bench/keys/k{i}", VALUE))
    get = timed(N, lambda i: call("GET", f"/v1/kv/bench/keys/k{i}"))
    return put, get, float("nan")


def stream_latency():
    with Servers(STREAM_APP, files={"measure.py": MEASURE_PY}) as servers:
        ddb = client("dynamodb", servers.nimbus_port)
        time.sleep(1)  # the consumer's lanes take their LATEST position at start
        # Warm up: every shard's first invocations start the function's instances (a
        # Python cold start with boto3 takes most of a second), which is not the latency
        # of a stream.
        for i in range(40):
            ddb.put_item(TableName="writes", Item={"id": {"S": f"warm{i}"}, "t": {"N": repr(time.time())}})
        time.sleep(5)
        for i in range(LAT):
            ddb.put_item(TableName="writes", Item={"id": {"S": f"w{i}"}, "t": {"N": repr(time.time())}})
            time.sleep(0.02)
        deadline = time.time() + 60
        while time.time() < deadline:
            items = [i for i in ddb.scan(TableName="latency")["Items"] if not i["id"]["S"].startswith("warm")]
            if len(items) >= LAT:
                break
            time.sleep(0.5)
        ms = sorted(float(item["ms"]["N"]) for item in items)
        return ms


def main():
    results = {"nimbus AWS endpoint": [], "moto server": [],
               "nimbus AWS endpoint, http.client": [], "moto server, http.client": [],
               "nimbus KV, http.client": []}
    with Servers(APP) as servers:
        nimbus = client("dynamodb", servers.nimbus_port)
        moto = client("dynamodb", servers.moto_port)
        create_table(moto)
        for _ in range(REPS):
            results["nimbus AWS endpoint"].append(table_round(nimbus))
            results["moto server"].append(table_round(moto))
            results["nimbus AWS endpoint, http.client"].append(http_round(servers.nimbus_port))
            results["moto server, http.client"].append(http_round(servers.moto_port))
            results["nimbus KV, http.client"].append(kv_round(servers))
    print_table(f"DynamoDB, 1 KB items, {N} per round, {REPS} rounds",
                ["PutItem/s", "GetItem/s", "Query/s"], results)
    ms = stream_latency()
    if ms:
        p50 = statistics.median(ms)
        p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
        print(f"write -> stream-triggered function: {len(ms)} of {LAT} writes, "
              f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {ms[-1]:.1f} ms; "
              f"slowest {', '.join(f'{m:.0f}' for m in ms[-5:])} ms")
    else:
        print("write -> stream-triggered function: no invocation recorded")


if __name__ == "__main__":
    main()
