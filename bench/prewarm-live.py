#!/usr/bin/env python3
"""Live check of the keep-alive policies (issue 18): a short trace in compressed time
(one minute of the real policy = 100 ms here) replayed against a running `nimbus up`,
once per policy, with the same arrivals:

  fixed "5 min"   --keep-alive fixed  --idle-timeout 500ms
  fixed "10 min"  --keep-alive fixed  --idle-timeout 1s
  hybrid          --keep-alive hybrid --idle-timeout 500ms --prewarm-bin 100ms
                  --prewarm-min-samples 8

Functions (Node.js, answer at once): two periodic (every 2 s and 5 s, like timers of 20
and 50 "minutes"), one Poisson (mean 1 s apart), one bursty (bursts of 5 every 6 s).
Cold starts come from the invocation records (`nimbus invocations --json`), idle
instance-seconds from sampling GET /functions (instances - busy) every 50 ms. The first
SKIP seconds teach the histograms and are not counted.

  NIMBUS=target/debug/nimbus DURATION=90 bench/prewarm-live.py

Only talks to 127.0.0.1."""
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

NIMBUS = os.environ.get("NIMBUS", "target/release/nimbus")
DURATION = float(os.environ.get("DURATION", "90"))
SKIP = float(os.environ.get("SKIP", "30"))
PORT = int(os.environ.get("PORT", "18290"))
SEED = int(os.environ.get("SEED", "7"))

MANIFEST = """service: live
provider:
  runtime: nodejs20.x
  memorySize: 128
functions:
""" + "".join(
    f"  {name}:\n    handler: h.handler\n    events:\n      - httpApi: GET /{name}\n"
    for name in ["p2", "p5", "poisson", "bursty"]
)
HANDLER = "exports.handler = async () => ({ statusCode: 200, body: 'ok' });\n"

POLICIES = [
    ("fixed 5 min (500 ms)", ["--keep-alive", "fixed", "--idle-timeout", "500ms"]),
    ("fixed 10 min (1 s)", ["--keep-alive", "fixed", "--idle-timeout", "1s"]),
    ("hybrid (fallback 500 ms)", ["--keep-alive", "hybrid", "--idle-timeout", "500ms",
                                  "--prewarm-bin", "100ms", "--prewarm-min-samples", "8"]),
]


def trace():
    rng = random.Random(SEED)
    arrivals = []
    for name, period in [("p2", 2.0), ("p5", 5.0)]:
        t = rng.uniform(0, period)
        while t < DURATION:
            arrivals.append((t, name))
            t += period
    t = rng.expovariate(1.0)
    while t < DURATION:
        arrivals.append((t, "poisson"))
        t += rng.expovariate(1.0)
    t = rng.uniform(0, 6)
    while t < DURATION:
        for i in range(5):
            arrivals.append((t + 0.01 * i, "bursty"))
        t += 6.0
    return sorted(arrivals)


def get(url, headers=None):
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=10) as res:
        return res.read()


def run(label, flags, arrivals):
    app = tempfile.mkdtemp(prefix="nimbus-prewarm-live.")
    with open(os.path.join(app, "nimbus.yaml"), "w") as f:
        f.write(MANIFEST)
    with open(os.path.join(app, "h.js"), "w") as f:
        f.write(HANDLER)
    log = open(os.path.join(app, "nimbus.log"), "w")
    env = dict(os.environ, NIMBUS_LOG="warn")
    proc = subprocess.Popen([NIMBUS, "up", app, "--port", str(PORT)] + flags,
                            stdout=subprocess.DEVNULL, stderr=log, env=env)
    try:
        record = None
        for _ in range(400):
            try:
                with open(os.path.join(app, ".nimbus", "up.json")) as f:
                    record = json.load(f)
                get(f"http://127.0.0.1:{PORT}/p2")
                break
            except Exception:
                time.sleep(0.05)
        if record is None:
            sys.exit(f"{label}: nimbus did not start (see {app}/nimbus.log)")
        admin = f"http://{record['admin']}/functions"
        auth = {"authorization": f"Bearer {record['token']}"}
        idle_s = [0.0]
        done = threading.Event()
        start = time.monotonic()

        def sample():
            last = time.monotonic()
            while not done.is_set():
                time.sleep(0.05)
                now = time.monotonic()
                try:
                    functions = json.loads(get(admin, auth))["functions"]
                except Exception:
                    continue
                if now - start >= SKIP:
                    idle = sum(f["instances"] - f["busy"] for f in functions)
                    idle_s[0] += idle * (now - last)
                last = now

        sampler = threading.Thread(target=sample)
        sampler.start()
        threads = []
        for at, name in arrivals:
            delay = start + at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            th = threading.Thread(target=lambda n=name: get(f"http://127.0.0.1:{PORT}/{n}"))
            th.start()
            threads.append(th)
        for th in threads:
            th.join()
        done.set()
        sampler.join()
        out = subprocess.run([NIMBUS, "invocations", "--json", "--limit", "100000", "--dir", app],
                             capture_output=True, text=True, check=True).stdout
        records = [json.loads(line) for line in out.splitlines() if line.strip()]
        first = min(r["start"] for r in records) if records and "start" in records[0] else None
        counted = [r for r in records if r.get("function") in ("p2", "p5", "poisson", "bursty")]
        # Records after the warm-up: by arrival order, the last ones of the trace.
        n_skip = sum(1 for at, _ in arrivals if at < SKIP) + 1  # +1: the readiness probe
        counted.sort(key=lambda r: r.get("start", ""))
        measured = counted[n_skip:]
        cold = sum(1 for r in measured if r["coldStart"])
        by_fn = {}
        for r in measured:
            by_fn.setdefault(r["function"], [0, 0])
            by_fn[r["function"]][0] += 1
            by_fn[r["function"]][1] += int(r["coldStart"])
        return len(measured), cold, idle_s[0], by_fn, first
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        shutil.rmtree(app, ignore_errors=True)


def main():
    arrivals = trace()
    print(f"{len(arrivals)} arrivals over {DURATION:.0f} s, first {SKIP:.0f} s not counted; {NIMBUS}")
    print(f"{'policy':<28} {'invocations':>11} {'cold':>6} {'cold %':>8} {'idle inst-s':>12}  per function (cold/invocations)")
    for label, flags in POLICIES:
        n, cold, idle, by_fn, _ = run(label, flags, arrivals)
        per = ", ".join(f"{k} {v[1]}/{v[0]}" for k, v in sorted(by_fn.items()))
        print(f"{label:<28} {n:>11} {cold:>6} {100.0 * cold / max(n, 1):>7.1f}% {idle:>12.1f}  {per}")


if __name__ == "__main__":
    main()
