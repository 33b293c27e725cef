"""What bench/aws-sqs.py and bench/aws-s3.py share: starting `nimbus up` and `moto_server`
on loopback ports and stopping them (by their own pids), boto3 clients with one keep-alive
connection and no retries, the headers of an unverified AWS request for http.client, and
the results table (medians with min-max). Talks only to 127.0.0.1.
"""

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

# A function, so the app is like any other; the benchmarks call only the AWS endpoint and
# the services API.
FUNCTION_JS = "exports.handler = async () => 1;\n"


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


class Servers:
    """`nimbus up` on an app made of `manifest`, and `moto_server`, each on a free loopback
    port; both stopped, and the app removed, on exit. Attributes: nimbus_port (the gateway,
    which serves the AWS endpoint), admin_port and token (the services API, from
    .nimbus/up.json), moto_port."""

    def __init__(self, manifest, prefix="nimbus-bench.", files=None):
        self.manifest = manifest
        self.prefix = prefix
        # More files of the app: {relative path: content}.
        self.files = files or {}
        self.procs = []

    @property
    def nimbus_pid(self):
        return self.procs[0].pid

    @property
    def moto_pid(self):
        return self.procs[1].pid

    def __enter__(self):
        self.app = tempfile.mkdtemp(prefix=self.prefix)
        with open(os.path.join(self.app, "nimbus.yaml"), "w") as f:
            f.write(self.manifest)
        with open(os.path.join(self.app, "f.js"), "w") as f:
            f.write(FUNCTION_JS)
        for path, content in self.files.items():
            with open(os.path.join(self.app, path), "w") as f:
                f.write(content)
        self.nimbus_port, self.moto_port = free_port(), free_port()
        env = dict(os.environ, NIMBUS_LOG="warn")
        try:
            self.procs.append(subprocess.Popen(
                [NIMBUS, "up", self.app, "--port", str(self.nimbus_port), "--telemetry", "off"],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ))
            self.procs.append(subprocess.Popen(
                ["moto_server", "-H", "127.0.0.1", "-p", str(self.moto_port)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ))
            wait_port(self.nimbus_port)
            wait_port(self.moto_port)
            up_json = os.path.join(self.app, ".nimbus", "up.json")
            for _ in range(200):
                if os.path.exists(up_json):
                    break
                time.sleep(0.05)
            with open(up_json) as f:
                up = json.load(f)
            self.admin_port = int(up["admin"].rsplit(":", 1)[1])
            self.token = up["token"]
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        shutil.rmtree(self.app, ignore_errors=True)
        return False


def client(service, port):
    """A boto3 client for 127.0.0.1:port: any key (nimbus up takes it as the operator's),
    one pooled connection, no retries."""
    return boto3.client(
        service,
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        config=Config(retries={"max_attempts": 1}, max_pool_connections=1),
    )


def unverified_auth(service):
    """The headers of a SigV4 request with a made-up signature: nimbus up takes a key that
    is not a function's as the operator's without checking its signature, which is what
    lets http.client call the AWS endpoint with no signing work."""
    return {
        "Authorization": (f"AWS4-HMAC-SHA256 Credential=bench/20261204/us-east-1/{service}/"
                          "aws4_request, SignedHeaders=host;x-amz-date, Signature=0"),
        "X-Amz-Date": "20261204T000000Z",
    }


def cpu_seconds(pid):
    """User + system CPU time the process `pid` has used so far, in seconds (/proc)."""
    with open(f"/proc/{pid}/stat") as f:
        # Fields after the command name (which may hold spaces), from its closing paren.
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(n, op):
    """Calls op(i) for i in range(n); returns calls per second."""
    start = time.perf_counter()
    for i in range(n):
        op(i)
    return n / (time.perf_counter() - start)


def print_table(title, columns, results):
    """results: {row name: [per round, a tuple of one rate per column]}."""
    print(title)
    print(f"{'':26} " + " ".join(f"{c:>24}" for c in columns))
    for name, rounds in results.items():
        cells = []
        for i in range(len(columns)):
            values = [r[i] for r in rounds]
            cells.append(
                f"{statistics.median(values):8.0f} ({min(values):.0f}-{max(values):.0f})"
            )
        print(f"{name:26} " + " ".join(f"{c:>24}" for c in cells))
