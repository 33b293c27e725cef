#!/usr/bin/env python3
"""S3 PutObject and GetObject of 4 KiB objects from one keep-alive client: nimbus's AWS
endpoint vs moto in server mode, measured in the same run, and nimbus's own services API
for the same operations. Results are recorded in BENCHMARKS.md.

    cargo build --release -p nimbus && N=1000 REPS=3 python3 bench/aws-s3.py

Per server, REPS rounds interleaved (boto3 for nimbus's AWS endpoint and moto; http.client
for nimbus's services API and, for the same comparison, for nimbus's AWS endpoint and
moto): N PutObject of new keys, then N GetObject of those keys; ops/s of each phase. Every
object is the same 4 KiB of random bytes; each row and round writes keys of its own, so
every put creates an object. One connection per client, kept alive (moto's server answers
`Connection: close`, so its clients reconnect for every call). Servers are started and
stopped by bench/awsbench.py. A second table gives, for the http.client rows, the server's
own CPU time per call (user + system, from /proc), which the load of a shared machine moves
far less than calls per second.
Needs boto3 and moto[server] (pip). Talks only to 127.0.0.1.
Knobs: NIMBUS (binary), N (objects per round), REPS.
"""

import base64
import hashlib
import http.client
import os
import zlib

from awsbench import Servers, client, cpu_seconds, print_table, timed, unverified_auth

N = int(os.environ.get("N", "1000"))
REPS = int(os.environ.get("REPS", "3"))
SIZE = 4096
BUCKET = "objects"

APP = f"""service: bench
provider: {{ runtime: nodejs20.x }}
buckets: [{BUCKET}]
functions:
  f: {{ handler: f.handler }}
"""

BODY = os.urandom(SIZE)


def key(row, rep, i):
    return f"{row}/{rep}/{i:05d}"


def sdk_round(s3, row, rep):
    def put(i):
        s3.put_object(Bucket=BUCKET, Key=key(row, rep, i), Body=BODY)

    def get(i):
        data = s3.get_object(Bucket=BUCKET, Key=key(row, rep, i))["Body"].read()
        assert data == BODY, len(data)

    return timed(N, put), timed(N, get)


# {row name: [per round, (server CPU microseconds per put, per get)]}, filled by http_round.
CPU = {}


def http_round(port, path, put_headers, get_headers, pid, row):
    """PUT then GET path(i) on one http.client connection; records the server's CPU per call
    (process `pid`) under `row` in CPU."""
    conn = http.client.HTTPConnection("127.0.0.1", port)

    def call(method, path, headers, body=None):
        conn.request(method, path, body=body, headers=headers)
        res = conn.getresponse()
        data = res.read()
        assert res.status == 200, (res.status, data)
        return data

    def put(i):
        call("PUT", path(i), put_headers, BODY)

    def get(i):
        data = call("GET", path(i), get_headers)
        assert data == BODY, len(data)

    def cpu_timed(op):
        before = cpu_seconds(pid)
        rate = timed(N, op)
        return rate, (cpu_seconds(pid) - before) / N * 1e6

    try:
        (put_rate, put_cpu), (get_rate, get_cpu) = cpu_timed(put), cpu_timed(get)
        CPU.setdefault(row, []).append((put_cpu, get_cpu))
        return put_rate, get_rate
    finally:
        conn.close()


def api_round(port, token, rep, pid):
    headers = {"Authorization": f"Bearer {token}"}
    return http_round(port, lambda i: f"/v1/buckets/{BUCKET}/objects/{key('api', rep, i)}",
                      headers, headers, pid, "nimbus (services API)")


def raw_round(port, row, rep, pid, name):
    """S3's REST protocol from http.client, as the services API is driven: what the
    endpoint costs apart from boto3's own work (signing, checksums, parsing). The headers
    are boto3's for the same calls (a payload hash and a CRC32 the server checks, computed
    once here as the body never changes); the operator's unverified key is what `nimbus up`
    accepts from local tools, and moto checks no signature by default."""
    auth = unverified_auth("s3")
    put_headers = {
        **auth,
        "X-Amz-Content-SHA256": hashlib.sha256(BODY).hexdigest(),
        "x-amz-checksum-crc32": base64.b64encode(zlib.crc32(BODY).to_bytes(4, "big")).decode(),
        "x-amz-sdk-checksum-algorithm": "CRC32",
    }
    get_headers = {
        **auth,
        "X-Amz-Content-SHA256": hashlib.sha256(b"").hexdigest(),
        "x-amz-checksum-mode": "ENABLED",
    }
    return http_round(port, lambda i: f"/{BUCKET}/{key(row, rep, i)}", put_headers, get_headers,
                      pid, name)


def main():
    with Servers(APP, prefix="nimbus-bench-s3.") as servers:
        nimbus = client("s3", servers.nimbus_port)
        moto = client("s3", servers.moto_port)
        moto.create_bucket(Bucket=BUCKET)
        results = {
            "nimbus (AWS endpoint)": [],
            "moto server": [],
            "nimbus (services API)": [],
            "nimbus (AWS, raw HTTP)": [],
            "moto server (raw HTTP)": [],
        }
        for rep in range(REPS):
            results["nimbus (AWS endpoint)"].append(sdk_round(nimbus, "sdk", rep))
            results["moto server"].append(sdk_round(moto, "sdk", rep))
            results["nimbus (services API)"].append(
                api_round(servers.admin_port, servers.token, rep, servers.nimbus_pid))
            results["nimbus (AWS, raw HTTP)"].append(raw_round(
                servers.nimbus_port, "raw", rep, servers.nimbus_pid, "nimbus (AWS, raw HTTP)"))
            results["moto server (raw HTTP)"].append(raw_round(
                servers.moto_port, "raw", rep, servers.moto_pid, "moto server (raw HTTP)"))
        print_table(f"N={N} objects of {SIZE} bytes per round, {REPS} rounds, one keep-alive client",
                    ["PutObject/s", "GetObject/s"], results)
        print()
        print_table("Server CPU time per call, microseconds (http.client rows)",
                    ["PutObject", "GetObject"], CPU)


if __name__ == "__main__":
    main()
