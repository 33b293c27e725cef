#!/usr/bin/env python3
"""Step Functions workflows on nimbus: what a journaled transition costs, and executions/s
of a 3-Task workflow against the same three invokes made directly (the peer, measured in
the same run on the same server). Results are recorded in BENCHMARKS.md.

    cargo build --release -p nimbus && python3 bench/workflows.py

Transition cost: CHAIN executions of a 1,000-state Pass chain, one after another; each
StartExecution's round trip over its 1,001 transitions (the chain's states and the start):
the engine runs the whole chain in the start's own step and journals its 2,000-odd history
events, with the ending, in one transaction before answering.
Throughput: EXECS executions of Task → Task → Task (a Node function adding 1), started
from THREADS threads, each waiting for its execution to end (DescribeExecution polled
every 5 ms); then EXECS × 3 RequestResponse invokes of the same function through Lambda's
Invoke API from the same threads, three per "execution", in order. REPS rounds.
Needs boto3 (pip) and moto (awsbench starts moto_server, unused here). Talks only to
127.0.0.1. Knobs: NIMBUS (binary), CHAIN, EXECS, THREADS, REPS.
"""

import json
import os
import statistics
import threading
import time

from awsbench import Servers, client

CHAIN = int(os.environ.get("CHAIN", "5"))
EXECS = int(os.environ.get("EXECS", "200"))
THREADS = int(os.environ.get("THREADS", "8"))
REPS = int(os.environ.get("REPS", "3"))


def app():
    states = {f"S{i}": {"Type": "Pass", "Next": f"S{i + 1}"} for i in range(999)}
    states["S999"] = {"Type": "Pass", "End": True}
    chain = {"StartAt": "S0", "States": states}
    three = {
        "StartAt": "A",
        "States": {
            "A": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:step", "Next": "B"},
            "B": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:step", "Next": "C"},
            "C": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:step", "End": True},
        },
    }
    return (
        "service: bench\n"
        "provider: { runtime: nodejs20.x }\n"
        "functions:\n"
        "  f: { handler: f.handler }\n"
        "  step: { handler: step.handler }\n"
        "workflows:\n"
        f"  chain: {{ definition: '{json.dumps(chain)}' }}\n"
        f"  three: {{ definition: '{json.dumps(three)}' }}\n"
    )


STEP_JS = "exports.handler = async (n) => (typeof n === 'number' ? n : 0) + 1;\n"


def wait(sfn, arn):
    while True:
        d = sfn.describe_execution(executionArn=arn)
        if d["status"] != "RUNNING":
            return d
        time.sleep(0.005)


def in_threads(n, work):
    """Runs work(i) for i in range(n) on THREADS threads; calls per second."""
    next_i = iter(range(n))
    lock = threading.Lock()

    def run():
        while True:
            with lock:
                i = next(next_i, None)
            if i is None:
                return
            work(i)

    threads = [threading.Thread(target=run) for _ in range(THREADS)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return n / (time.perf_counter() - start)


def main():
    with Servers(app(), files={"step.js": STEP_JS}) as servers:
        port = servers.nimbus_port
        sfn = client("stepfunctions", port)
        machines = {m["name"]: m["stateMachineArn"] for m in sfn.list_state_machines()["stateMachines"]}
        per_transition = []
        for i in range(CHAIN):
            # A chain of Pass states runs within StartExecution's own transition, so the
            # call's round trip (HTTP and boto3 included) bounds its transitions' cost.
            start = time.perf_counter()
            arn = sfn.start_execution(stateMachineArn=machines["chain"], name=f"chain-{i}", input="{}")["executionArn"]
            per_transition.append((time.perf_counter() - start) * 1000 / 1001)
            d = wait(sfn, arn)
            assert d["status"] == "SUCCEEDED", d
        n_events = len(sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"])
        print(f"1,000-state Pass chain: {statistics.median(per_transition):.3f} ms per transition "
              f"(min {min(per_transition):.3f}, max {max(per_transition):.3f}; {CHAIN} runs; "
              f"{n_events}+ history events each)")

        local = threading.local()

        def clients():
            if not hasattr(local, "sfn"):
                local.sfn = client("stepfunctions", port)
                local.lam = client("lambda", port)
            return local

        # Warm the function's instances first.
        in_threads(THREADS * 4, lambda i: clients().lam.invoke(FunctionName="step", Payload=b"1"))
        rounds = []
        for rep in range(REPS):
            def workflow(i, rep=rep):
                c = clients()
                arn = c.sfn.start_execution(stateMachineArn=machines["three"], name=f"r{rep}-{i}", input=str(i))["executionArn"]
                d = wait(c.sfn, arn)
                assert d["status"] == "SUCCEEDED" and json.loads(d["output"]) == i + 3, d

            def direct(i):
                c = clients()
                value = i
                for _ in range(3):
                    value = json.loads(c.lam.invoke(FunctionName="step", Payload=json.dumps(value).encode())["Payload"].read())
                assert value == i + 3

            rounds.append((in_threads(EXECS, workflow), in_threads(EXECS, direct)))
        wf = [r[0] for r in rounds]
        direct_rates = [r[1] for r in rounds]
        print(f"3-Task workflow, {THREADS} threads: {statistics.median(wf):.0f} executions/s "
              f"({min(wf):.0f}-{max(wf):.0f}); the same 3 invokes directly: "
              f"{statistics.median(direct_rates):.0f}/s ({min(direct_rates):.0f}-{max(direct_rates):.0f}); "
              f"ratio {statistics.median(wf) / statistics.median(direct_rates):.2f}")


if __name__ == "__main__":
    main()
