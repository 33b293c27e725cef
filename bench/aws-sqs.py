#!/usr/bin/env python3
"""SQS through boto3 from one keep-alive client: nimbus's AWS endpoint vs moto in server
mode, measured in the same run, and nimbus's own services API for the same operations.
Results are recorded in BENCHMARKS.md.

    cargo build --release -p nimbus && python3 bench/aws-sqs.py

Per server, REPS rounds interleaved (boto3 for nimbus's AWS endpoint and moto; http.client
for nimbus's services API and, for the same comparison, its AWS endpoint): N SendMessage calls, then ReceiveMessage (1 message)
+ DeleteMessage until the queue is empty; ops/s of each phase. The services API is
driven with the same keep-alive discipline (http.client, one connection).
Needs boto3 and moto[server] (pip). Talks only to 127.0.0.1.
Knobs: NIMBUS (binary), N (messages per round), REPS.
"""

import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import boto3
from botocore.config import Config

NIMBUS = os.environ.get("NIMBUS", "target/release/nimbus")
N = int(os.environ.get("N", "2000"))
REPS = int(os.environ.get("REPS", "3"))

APP = """service: bench
provider: { runtime: nodejs20.x }
queues: { jobs: {} }
functions:
  f: { handler: f.handler }
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port):
    for _ in range(400):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listens on {port}")


def client(endpoint):
    return boto3.client(
        "sqs",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        config=Config(retries={"max_attempts": 1}, max_pool_connections=1),
    )


def sdk_round(sqs, url):
    start = time.perf_counter()
    for i in range(N):
        sqs.send_message(QueueUrl=url, MessageBody=f"message {i}")
    send = N / (time.perf_counter() - start)
    start = time.perf_counter()
    n = 0
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1).get("Messages", [])
        if not got:
            break
        sqs.delete_message(QueueUrl=url, ReceiptHandle=got[0]["ReceiptHandle"])
        n += 1
    recv = n / (time.perf_counter() - start)
    return send, recv


def api_round(port, token):
    conn = http.client.HTTPConnection("127.0.0.1", port)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def call(path, body):
        conn.request("POST", path, body=json.dumps(body), headers=headers)
        res = conn.getresponse()
        data = res.read()
        assert res.status == 200, (res.status, data)
        return json.loads(data)

    start = time.perf_counter()
    for i in range(N):
        call("/v1/queues/jobs/messages", {"body": f"message {i}"})
    send = N / (time.perf_counter() - start)
    start = time.perf_counter()
    n = 0
    while True:
        got = call("/v1/queues/jobs/receive", {"maxMessages": 1})["messages"]
        if not got:
            break
        call("/v1/queues/jobs/delete", {"receiptHandle": got[0]["receiptHandle"]})
        n += 1
    recv = n / (time.perf_counter() - start)
    return send, recv


def raw_round(port, url):
    """SQS's JSON protocol from http.client, as the services API is driven: what the
    endpoint costs apart from boto3's own work (signing, parsing). The operator's
    unverified key is what `nimbus up` accepts from local tools."""
    conn = http.client.HTTPConnection("127.0.0.1", port)
    auth = ("AWS4-HMAC-SHA256 Credential=bench/20261204/us-east-1/sqs/aws4_request, "
            "SignedHeaders=host;x-amz-date, Signature=0")

    def call(op, body):
        conn.request("POST", "/", body=json.dumps(body), headers={
            "Authorization": auth, "X-Amz-Target": f"AmazonSQS.{op}",
            "Content-Type": "application/x-amz-json-1.0", "X-Amz-Date": "20261204T000000Z"})
        res = conn.getresponse()
        data = res.read()
        assert res.status == 200, (res.status, data)
        return json.loads(data)

    start = time.perf_counter()
    for i in range(N):
        call("SendMessage", {"QueueUrl": url, "MessageBody": f"message {i}"})
    send = N / (time.perf_counter() - start)
    start = time.perf_counter()
    n = 0
    while True:
        got = call("ReceiveMessage", {"QueueUrl": url, "MaxNumberOfMessages": 1}).get("Messages", [])
        if not got:
            break
        call("DeleteMessage", {"QueueUrl": url, "ReceiptHandle": got[0]["ReceiptHandle"]})
        n += 1
    recv = n / (time.perf_counter() - start)
    return send, recv


def main():
    app = tempfile.mkdtemp(prefix="nimbus-bench-sqs.")
    with open(os.path.join(app, "nimbus.yaml"), "w") as f:
        f.write(APP)
    with open(os.path.join(app, "f.js"), "w") as f:
        f.write("exports.handler = async () => 1;\n")
    nimbus_port, moto_port = free_port(), free_port()
    env = dict(os.environ, NIMBUS_LOG="warn")
    procs = [
        subprocess.Popen(
            [NIMBUS, "up", app, "--port", str(nimbus_port), "--telemetry", "off"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ),
        subprocess.Popen(
            ["moto_server", "-H", "127.0.0.1", "-p", str(moto_port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ),
    ]
    try:
        wait_port(nimbus_port)
        wait_port(moto_port)
        for _ in range(200):
            if os.path.exists(os.path.join(app, ".nimbus", "up.json")):
                break
            time.sleep(0.05)
        with open(os.path.join(app, ".nimbus", "up.json")) as f:
            up = json.load(f)
        admin_port = int(up["admin"].rsplit(":", 1)[1])
        nimbus = client(f"http://127.0.0.1:{nimbus_port}")
        moto = client(f"http://127.0.0.1:{moto_port}")
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
            results["nimbus (services API)"].append(api_round(admin_port, up["token"]))
            results["nimbus (AWS, raw HTTP)"].append(raw_round(nimbus_port, nimbus_url))
        print(f"N={N} messages per round, {REPS} rounds, one keep-alive client")
        print(f"{'':24} {'SendMessage/s':>24} {'Receive+Delete/s':>24}")
        for name, rounds in results.items():
            cells = []
            for phase in (0, 1):
                values = [r[phase] for r in rounds]
                cells.append(
                    f"{statistics.median(values):8.0f} ({min(values):.0f}-{max(values):.0f})"
                )
            print(f"{name:24} {cells[0]:>24} {cells[1]:>24}")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(app, ignore_errors=True)


if __name__ == "__main__":
    main()
