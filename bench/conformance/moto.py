#!/usr/bin/env python3
"""moto's own test files, unchanged, against a live `nimbus up` (issue 12's conformance
run). Results are recorded in COMPAT.md ("Conformance: moto's own tests against nimbus").

    python3 bench/conformance/moto.py                  # the default files below
    python3 bench/conformance/moto.py --suite dynamodb --budget 900   # DynamoDB's files
    python3 bench/conformance/moto.py tests/test_sqs/test_sqs.py   # chosen files

What it does, all under ~/.cache/nimbus/conformance/ (kept between runs):
- `pip download --no-deps --no-binary :all: moto==VERSION` and unpacks the sdist, which
  ships moto's tests;
- a venv with moto[server]==VERSION, pytest, pytest-timeout and freezegun, from PyPI;
- a scratch app (one trivial Node function, nothing declared: the tests make their
  buckets, queues, topics and tables at run time), served by `NIMBUS up APP --port P` on a free
  loopback port;
- pytest on each file from the sdist's root with moto's server mode:
  TEST_SERVER_MODE=true and TEST_SERVER_MODE_ENDPOINT=http://127.0.0.1:P, which make
  moto's `mock_aws` point every boto3.client/resource that has no endpoint_url at nimbus.
  In that mode moto POSTs /moto-api/reset when a mock starts and ends; nimbus answers 404
  and moto ignores the status, so nothing would be reset between tests. Unless --no-reset,
  a small pytest plugin does the reset through the AWS API instead (before each test:
  every bucket emptied and deleted, every queue and topic deleted; DynamoDB tables are
  deleted when a test module starts and, after each test, those the test made) and
  MOTO_CALL_RESET_API=false stops the POST. The test files are not changed;
- a JSON and a Markdown summary in ~/.cache/nimbus/conformance/results/
  (moto-VERSION.{json,md}, moto-VERSION-dynamodb.{json,md} for --suite dynamodb): per file the
  passed/failed/errors/skipped counts, and every failing test with the first line of its
  error and a cause (the AWS error code and operation, or the exception's type).

nimbus is stopped by its own pid at the end, also on failure or Ctrl-C. Everything talks
to 127.0.0.1 only (the downloads go through pip).
Knobs: NIMBUS (binary, default target/debug/nimbus), MOTO_VERSION (default 5.2.6),
--budget SECONDS for the whole pytest part (default 600), --per-test SECONDS (60),
--suite s3-sqs-sns|dynamodb|kinesis|all picks the default files (issue 12's, issue 13's
tables or streams, or all).
"""

import argparse
import datetime
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ET

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE = os.path.expanduser("~/.cache/nimbus/conformance")
VERSION = os.environ.get("MOTO_VERSION", "5.2.6")
NIMBUS = os.environ.get("NIMBUS", os.path.join(ROOT, "target/debug/nimbus"))

DEFAULT_FILES = [
    "tests/test_s3/test_s3.py",
    "tests/test_s3/test_s3_multipart.py",
    "tests/test_s3/test_s3_copyobject.py",
    "tests/test_s3/test_s3_list_objects.py",
    "tests/test_s3/test_s3_conditionals.py",
    "tests/test_sqs/test_sqs.py",
    "tests/test_sqs/test_sqs_message_attributes.py",
    "tests/test_sns/test_publishing.py",
    "tests/test_sns/test_publish_batch.py",
    "tests/test_sns/test_topics.py",
]

# Issue 13: tables, items, expressions, queries and scans, batches, transactions, TTL.
# Left out: moto's own parser unit tests (no requests), backups, global tables, PartiQL,
# import/export, resource policies, CloudFormation and IAM.
DYNAMODB_FILES = [
    "tests/test_dynamodb/test_dynamodb.py",
    "tests/test_dynamodb/test_dynamodb_create_table.py",
    "tests/test_dynamodb/test_dynamodb_update_table.py",
    "tests/test_dynamodb/test_dynamodb_table_without_range_key.py",
    "tests/test_dynamodb/test_dynamodb_table_with_range_key.py",
    "tests/test_dynamodb/test_dynamodb_query.py",
    "tests/test_dynamodb/test_dynamodb_scan.py",
    "tests/test_dynamodb/test_dynamodb_select.py",
    "tests/test_dynamodb/test_dynamodb_batch_get_item.py",
    "tests/test_dynamodb/test_dynamodb_batch_write.py",
    "tests/test_dynamodb/test_dynamodb_transact.py",
    "tests/test_dynamodb/test_dynamodb_condition_expressions.py",
    "tests/test_dynamodb/test_dynamodb_update_expressions.py",
    "tests/test_dynamodb/test_dynamodb_consumedcapacity.py",
    "tests/test_dynamodb/exceptions/test_dynamodb_exceptions.py",
    "tests/test_dynamodb/exceptions/test_dynamodb_transactions.py",
    "tests/test_dynamodb/exceptions/test_key_length_exceptions.py",
]

# Issue 13: Kinesis data streams and DynamoDB Streams. Left out: enhanced fan-out
# consumers, encryption, monitoring, resource policies, limits and CloudFormation.
KINESIS_FILES = [
    "tests/test_kinesis/test_kinesis.py",
    "tests/test_kinesis/test_kinesis_boto3.py",
    "tests/test_dynamodbstreams/test_dynamodbstreams.py",
]

SUITES = {
    "s3-sqs-sns": DEFAULT_FILES,
    "dynamodb": DYNAMODB_FILES,
    "kinesis": KINESIS_FILES,
    "all": DEFAULT_FILES + DYNAMODB_FILES + KINESIS_FILES,
}

VENV_PACKAGES = [f"moto[server]=={VERSION}", "pytest", "pytest-timeout", "freezegun"]

FUNCTION_JS = "exports.handler = async () => 1;\n"

# The reset moto's server mode asks of /moto-api/reset, done through the AWS API.
RESET_PLUGIN = '''
"""pytest plugin from bench/conformance/moto.py: resets nimbus before each test."""
import os

import botocore.session
import pytest
from botocore.config import Config


def _client(service):
    return botocore.session.get_session().create_client(
        service, region_name="us-east-1", endpoint_url=os.environ["NIMBUS_ENDPOINT"],
        aws_access_key_id="reset", aws_secret_access_key="reset",
        config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}))


def _quietly(call, *args, **kwargs):
    try:
        return call(*args, **kwargs)
    except Exception:
        return {}


def reset():
    s3 = _client("s3")
    for bucket in _quietly(s3.list_buckets).get("Buckets", []):
        name = bucket["Name"]
        uploads = _quietly(s3.list_multipart_uploads, Bucket=name).get("Uploads", [])
        for u in uploads:
            _quietly(s3.abort_multipart_upload, Bucket=name, Key=u["Key"],
                     UploadId=u["UploadId"])
        for _ in range(100):
            keys = [{"Key": o["Key"]} for o in
                    _quietly(s3.list_objects_v2, Bucket=name).get("Contents", [])]
            if not keys:
                break
            _quietly(s3.delete_objects, Bucket=name, Delete={"Objects": keys, "Quiet": True})
        _quietly(s3.delete_bucket, Bucket=name)
    sqs = _client("sqs")
    for url in _quietly(sqs.list_queues).get("QueueUrls", []):
        try:
            sqs.delete_queue(QueueUrl=url)
        except Exception:
            _quietly(sqs.purge_queue, QueueUrl=url)
    sns = _client("sns")
    for topic in _quietly(sns.list_topics).get("Topics", []):
        _quietly(sns.delete_topic, TopicArn=topic["TopicArn"])
    kinesis = _client("kinesis")
    for _ in range(100):
        streams = _quietly(kinesis.list_streams).get("StreamNames", [])
        if not streams:
            break
        for name in streams:
            _quietly(kinesis.delete_stream, StreamName=name)


def _tables():
    dynamodb = _client("dynamodb")
    names, start = [], None
    for _ in range(100):
        page = _quietly(dynamodb.list_tables,
                        **({"ExclusiveStartTableName": start} if start else {}))
        names += page.get("TableNames", [])
        start = page.get("LastEvaluatedTableName")
        if not start:
            break
    return dynamodb, names


def _delete_tables(keep=()):
    dynamodb, names = _tables()
    for name in names:
        if name not in keep:
            _quietly(dynamodb.delete_table, TableName=name)


# moto's DynamoDB files make tables in module- and class-scoped fixtures that their tests
# share, so tables are deleted when a module starts (autouse fixtures come first in their
# scope) and, after each test, those the test made.
@pytest.fixture(autouse=True, scope="module")
def _nimbus_reset_tables():
    _delete_tables()
    yield


@pytest.fixture(autouse=True)
def _nimbus_reset():
    reset()
    _, before = _tables()
    yield
    _delete_tables(keep=set(before))
'''


def log(msg):
    print(f"[moto-conformance] {msg}", file=sys.stderr, flush=True)


def run(cmd, **kw):
    log(" ".join(cmd))
    subprocess.run(cmd, check=True, **kw)


def sdist():
    """The unpacked moto sdist (its tests/ and moto/ beside each other)."""
    src = os.path.join(CACHE, f"moto-{VERSION}")
    if os.path.isdir(os.path.join(src, "tests")):
        return src
    os.makedirs(CACHE, exist_ok=True)
    archive = os.path.join(CACHE, f"moto-{VERSION}.tar.gz")
    if not os.path.exists(archive):
        run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
             "-d", CACHE, f"moto=={VERSION}"])
    with tarfile.open(archive) as tar:
        tar.extractall(CACHE, filter="data")
    return src


def venv():
    """The venv's python, with moto[server], pytest and the tests' extra packages."""
    env_dir = os.path.join(CACHE, f"venv-{VERSION}")
    python = os.path.join(env_dir, "bin", "python")
    stamp = os.path.join(env_dir, ".nimbus-installed")
    wanted = "\n".join(VENV_PACKAGES)
    if os.path.exists(stamp) and open(stamp).read() == wanted:
        return python
    if not os.path.exists(python):
        run([sys.executable, "-m", "venv", env_dir])
    run([python, "-m", "pip", "install", "-q", *VENV_PACKAGES])
    with open(stamp, "w") as f:
        f.write(wanted)
    return python


def write_app(app):
    manifest = ("service: conformance\nprovider: { runtime: nodejs20.x }\n"
                "functions:\n  f: { handler: f.handler }\n")
    with open(os.path.join(app, "serverless.yml"), "w") as f:
        f.write(manifest)
    with open(os.path.join(app, "f.js"), "w") as f:
        f.write(FUNCTION_JS)
    return manifest


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"nimbus up exited with {proc.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port} after {seconds}s")


def cause_of(message):
    """A short cause for grouping: `Operation: Code` for an AWS error, else the start of
    the message."""
    m = re.search(r"An error occurred \(([^)]*)\) when calling the (\w+) operation", message)
    if m:
        return f"{m.group(2)}: {m.group(1)}"
    m = re.search(r"Unable to parse response.*?(b'.{0,60})", message)
    if m:
        return f"ResponseParserError {m.group(1)}"
    first = message.strip().splitlines()[0] if message.strip() else "(no message)"
    return first[:120]


def parse_junit(path):
    """Counts and failing tests from pytest's junit XML."""
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    failing = []
    root = ET.parse(path).getroot()
    for case in root.iter("testcase"):
        name = case.get("name")
        kinds = {child.tag: child for child in case}
        if "error" in kinds or "failure" in kinds:
            # A test that failed and then errored in teardown counts once, as failed.
            tag = "failure" if "failure" in kinds else "error"
            counts["failed" if tag == "failure" else "errors"] += 1
            node = kinds[tag]
            message = node.get("message") or node.text or ""
            failing.append({
                "test": name,
                "outcome": tag,
                "message": message.strip().splitlines()[0][:300] if message.strip() else "",
                "cause": cause_of(message + "\n" + (node.text or "")),
            })
        elif "skipped" in kinds:
            counts["skipped"] += 1
        else:
            counts["passed"] += 1
    return counts, failing


def markdown(summary):
    lines = [
        f"# moto {summary['moto']} tests against nimbus up",
        "",
        f"{summary['date']}; nimbus built {summary['nimbus_built']} (HEAD {summary['head']}); "
        f"reset between tests: {summary['reset']}; {summary['seconds']:.0f} s",
        "",
        "| file | passed | failed | errors | skipped |",
        "|---|---|---|---|---|",
    ]
    for f in summary["files"]:
        c = f["counts"]
        note = f" ({f['note']})" if f.get("note") else ""
        lines.append(f"| {f['file']}{note} | {c['passed']} | {c['failed']} | "
                     f"{c['errors']} | {c['skipped']} |")
    causes = {}
    for f in summary["files"]:
        for t in f["failing"]:
            causes.setdefault(t["cause"], []).append(f"{os.path.basename(f['file'])}::{t['test']}")
    lines += ["", "## Failures by cause", ""]
    for cause, tests in sorted(causes.items(), key=lambda kv: -len(kv[1])):
        lines.append(f"- {len(tests)} × `{cause}`: " + ", ".join(tests[:8])
                     + (" ..." if len(tests) > 8 else ""))
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="*", help="test files, relative to the sdist's root")
    ap.add_argument("--suite", choices=sorted(SUITES), default="s3-sqs-sns",
                    help="the default files when none are named")
    ap.add_argument("--budget", type=float, default=600, help="seconds for all pytest runs")
    ap.add_argument("--per-test", type=float, default=60, help="pytest-timeout per test")
    ap.add_argument("--no-reset", action="store_true",
                    help="no reset between tests (moto's POST /moto-api/reset gets a 404)")
    ap.add_argument("--out", default=os.path.join(CACHE, "results"))
    args = ap.parse_args()
    files = args.files or SUITES[args.suite]
    suffix = "" if args.files or args.suite == "s3-sqs-sns" else f"-{args.suite}"

    if not os.path.exists(NIMBUS):
        raise SystemExit(f"{NIMBUS} is missing: cargo build -p nimbus")
    src = sdist()
    python = venv()
    files = [f for f in files if os.path.exists(os.path.join(src, f)) or log(f"no {f}")]

    work = tempfile.mkdtemp(prefix="nimbus-moto.")
    app = os.path.join(work, "app")
    os.makedirs(app)
    plugin_dir = os.path.join(work, "plugin")
    os.makedirs(plugin_dir)
    with open(os.path.join(plugin_dir, "nimbus_reset.py"), "w") as f:
        f.write(RESET_PLUGIN)
    manifest = write_app(app)
    os.makedirs(args.out, exist_ok=True)
    nimbus_log = os.path.join(args.out, f"nimbus-{VERSION}{suffix}.log")

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    nimbus = None
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    built = datetime.datetime.fromtimestamp(os.path.getmtime(NIMBUS)).isoformat(timespec="seconds")
    summary = {"moto": VERSION, "date": datetime.date.today().isoformat(),
               "reset": "none" if args.no_reset else
               "plugin (S3 buckets, SQS queues, SNS topics, DynamoDB tables)",
               "nimbus": NIMBUS, "nimbus_built": built, "head": commit,
               "manifest": manifest, "files": []}

    def stop(*_):
        if nimbus is not None and nimbus.poll() is None:
            nimbus.terminate()
            try:
                nimbus.wait(timeout=10)
            except subprocess.TimeoutExpired:
                nimbus.kill()
                nimbus.wait()

    def on_signal(signum, _frame):
        stop()
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    started = time.monotonic()
    try:
        with open(nimbus_log, "w") as logf:
            nimbus = subprocess.Popen(
                [NIMBUS, "up", app, "--port", str(port), "--telemetry", "off"],
                env=dict(os.environ, NIMBUS_LOG="warn"), stdout=logf, stderr=logf,
                stdin=subprocess.DEVNULL)
        wait_port(port, nimbus)
        time.sleep(0.5)
        if nimbus.poll() is not None:  # something else held the port
            raise SystemExit(f"nimbus up exited with {nimbus.returncode}; see {nimbus_log}")
        log(f"nimbus up (pid {nimbus.pid}) on {endpoint}; moto {VERSION} in {src}")

        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOTO_"))}
        env.update(TEST_SERVER_MODE="true", TEST_SERVER_MODE_ENDPOINT=endpoint,
                   NIMBUS_ENDPOINT=endpoint, AWS_DEFAULT_REGION="us-east-1",
                   NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
        for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            env.pop(k, None)
        reset_args = []
        if not args.no_reset:
            env["MOTO_CALL_RESET_API"] = "false"
            env["PYTHONPATH"] = plugin_dir
            reset_args = ["-p", "nimbus_reset"]

        deadline = started + args.budget
        for path in files:
            left = deadline - time.monotonic()
            entry = {"file": path, "counts": {"passed": 0, "failed": 0, "errors": 0,
                                              "skipped": 0}, "failing": []}
            summary["files"].append(entry)
            if left < 5:
                entry["note"] = "not run: budget spent"
                continue
            junit = os.path.join(work, os.path.basename(path) + ".xml")
            cmd = [python, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rN", "--color=no",
                   "--timeout", str(args.per_test), f"--junitxml={junit}", *reset_args, path]
            t0 = time.monotonic()
            try:
                proc = subprocess.run(cmd, cwd=src, env=env, timeout=left,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                tail = proc.stdout.decode(errors="replace").strip().splitlines()[-1:]
            except subprocess.TimeoutExpired:
                entry["note"] = "cut short: budget spent"
                tail = ["(timed out)"]
            entry["seconds"] = round(time.monotonic() - t0, 1)
            if os.path.exists(junit):
                entry["counts"], entry["failing"] = parse_junit(junit)
            log(f"{path}: {entry['counts']} in {entry['seconds']} s; {' '.join(tail)}")
            if nimbus.poll() is not None:
                log(f"nimbus exited ({nimbus.returncode}); see {nimbus_log}")
                entry["note"] = f"nimbus exited with {nimbus.returncode}"
                break
    finally:
        stop()
        shutil.rmtree(work, ignore_errors=True)

    summary["seconds"] = time.monotonic() - started
    totals = {k: sum(f["counts"][k] for f in summary["files"])
              for k in ("passed", "failed", "errors", "skipped")}
    summary["totals"] = totals
    stem = os.path.join(args.out, f"moto-{VERSION}{suffix}")
    with open(stem + ".json", "w") as f:
        json.dump(summary, f, indent=1)
    md = markdown(summary)
    with open(stem + ".md", "w") as f:
        f.write(md)
    print(md)
    log(f"totals {totals}; wrote {stem}.json and {stem}.md; nimbus log {nimbus_log}")


if __name__ == "__main__":
    main()
