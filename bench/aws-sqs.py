#!/usr/bin/env python3
"""SQS through boto3 from one keep-alive client: nimbus's AWS endpoint vs moto in server
mode, measured in the same run, and nimbus's own services API for the same operations.
Results are recorded in BENCHMARKS.md.

    cargo build --release -p nimbus && python3 bench/aws-sqs.py

Per server, REPS rounds interleaved (boto3 for nimbus's AWS endpoint and moto; http.client
for nimbus's services API and, for the same comparison, its AWS endpoint): N SendMessage
calls, then ReceiveMessage (1 message) + DeleteMessage until the queue is empty; ops/s of
each phase. The services API is driven with the same keep-alive discipline (http.client,
one connection). Servers are started and stopped by bench/awsbench.py.
Needs boto3 and moto[server] (pip). Talks only to 127.0.0.1.
Knobs: NIMBUS (binary), N (messages per round), REPS.
"""

import http.client
import json
import os
import time

from awsbench import Servers, client, print_table, timed, unverified_auth

N = int(os.environ.get("N", "2000"))
REPS = int(os.environ.get("REPS", "3"))

APP = """service: bench
provider: { runtime: nodejs20.x }
queues: { jobs: {} }
functions:
  f: { handler: f.handler }
"""


def drain(receive_one):
    """Receives and deletes one message at a time until the queue is empty; returns
    messages per second."""
    start = time.perf_counter()
    n = 0
    while receive_one():
        n += 1
    return n / (time.perf_counter() - start)


def sdk_round(sqs, url):
    send = timed(N, lambda i: sqs.send_message(QueueUrl=url, MessageBody=f"message {i}"))

    def receive_one():
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1).get("Messages", [])
        if got:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=got[0]["ReceiptHandle"])
        return bool(got)

    return send, drain(receive_one)


def api_round(port, token):
    conn = http.client.HTTPConnection("127.0.0.1", port)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def call(path, body):
        conn.request("POST", path, body=json.dumps(body), headers=headers)
        res = conn.getresponse()
        data = res.read()
        assert res.status == 200, (res.status, data)
        return json.loads(data)

    send = timed(N, lambda i: call("/v1/queues/jobs/messages", {"body": f"message {i}"}))

    def receive_one():
        got = call("/v1/queues/jobs/receive", {"maxMessages": 1})["messages"]
        if got:
            call("/v1/queues/jobs/delete", {"receiptHandle": got[0]["receiptHandle"]})
        return bool(got)

    return send, drain(receive_one)


def raw_round(port, url):
    """SQS's JSON protocol from http.client, as the services API is driven: what the
    endpoint costs apart from boto3's own work (signing, parsing). The operator's
    unverified key is what `nimbus up` accepts from local tools."""
    conn = http.client.HTTPConnection("127.0.0.1", port)
    auth = unverified_auth("sqs")

    def call(op, body):
        conn.request("POST", "/", body=json.dumps(body), headers={
            **auth, "X-Amz-Target": f"AmazonSQS.{op}",
            "Content-Type": "application/x-amz-json-1.0"})
        res = conn.getresponse()
        data = res.read()
        assert res.status == 200, (res.status, data)
        return json.loads(data)

    send = timed(N, lambda i: call("SendMessage", {"QueueUrl": url, "MessageBody": f"message {i}"}))

    def receive_one():
        got = call("ReceiveMessage", {"QueueUrl": url, "MaxNumberOfMessages": 1}).get("Messages", [])
        if got:
            call("DeleteMessage", {"QueueUrl": url, "ReceiptHandle": got[0]["ReceiptHandle"]})
        return bool(got)

    return send, drain(receive_one)


def main():
    with Servers(APP, prefix="nimbus-bench-sqs.") as servers:
        nimbus = client("sqs", servers.nimbus_port)
        moto = client("sqs", servers.moto_port)
        nimbus_url = nimbus.get_queue_url(QueueName="jobs")["QueueUrl"]
        moto_url = moto.create_queue(QueueName="jobs")["QueueUrl"]
        results = {
            "nimbus (AWS endpoint)": [],
            "moto server": [],
            "nimbus (services API)": [],
            "nimbus (AWS, raw HTTP)": [],
        }
        for _ in range(REPS):
            results["nimbus (AWS endpoint)"].append(sdk_round(nimbus, nimbus_url))
            results["moto server"].append(sdk_round(moto, moto_url))
            results["nimbus (services API)"].append(api_round(servers.admin_port, servers.token))
            results["nimbus (AWS, raw HTTP)"].append(raw_round(servers.nimbus_port, nimbus_url))
        print_table(f"N={N} messages per round, {REPS} rounds, one keep-alive client",
                    ["SendMessage/s", "Receive+Delete/s"], results)


if __name__ == "__main__":
    main()
