#!/usr/bin/env python3
"""GetObject of 4 KiB objects on one `nimbus up`: the services API and the AWS endpoint
interleaved, round by round, from one keep-alive http.client connection each, with the
headers bench/aws-s3.py's raw rows send. Recorded in BENCHMARKS.md.

    cargo build --release -p nimbus && python3 bench/aws-s3-gets.py

Knobs: NIMBUS (binary), N (objects per round), REPS. Talks only to 127.0.0.1.
"""

import hashlib
import http.client
import os
import time

from awsbench import Servers, unverified_auth

N = int(os.environ.get("N", "3000"))
REPS = int(os.environ.get("REPS", "3"))
BUCKET = "objects"
APP = f"""service: bench
provider: {{ runtime: nodejs20.x }}
buckets: [{BUCKET}]
functions:
  f: {{ handler: f.handler }}
"""
BODY = os.urandom(4096)


def gets_per_second(port, path, headers):
    """Puts N objects, then times N gets of them; gets/s."""
    conn = http.client.HTTPConnection("127.0.0.1", port)

    def call(method, p, body=None, extra=None):
        conn.request(method, p, body=body, headers={**headers, **(extra or {})})
        res = conn.getresponse()
        data = res.read()
        assert res.status == 200, (res.status, data)
        return data

    for i in range(N):
        call("PUT", path(i), BODY, {"X-Amz-Content-SHA256": hashlib.sha256(BODY).hexdigest()})
    start = time.perf_counter()
    for i in range(N):
        assert call("GET", path(i), extra={"X-Amz-Content-SHA256": hashlib.sha256(b"").hexdigest()}) == BODY
    conn.close()
    return N / (time.perf_counter() - start)


def main():
    with Servers(APP, prefix="nimbus-bench-gets.") as servers:
        api = {"Authorization": f"Bearer {servers.token}"}
        aws = {**unverified_auth("s3"), "x-amz-checksum-mode": "ENABLED"}
        for rep in range(REPS):
            a = gets_per_second(servers.admin_port, lambda i: f"/v1/buckets/{BUCKET}/objects/a{rep}-{i}", api)
            b = gets_per_second(servers.nimbus_port, lambda i: f"/{BUCKET}/b{rep}-{i}", aws)
            print(f"round {rep + 1}: services API {a:.0f} gets/s, AWS endpoint {b:.0f} gets/s ({b / a:.2f}x)")


if __name__ == "__main__":
    main()
