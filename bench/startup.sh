#!/usr/bin/env bash
# Start-up to first served request (issue 11's benchmark), results in BENCHMARKS.md.
#
#   cargo build --release -p nimbus && bench/startup.sh
#
# 1. A TypeScript app of 10 functions (httpApi routes GET /fn0../fn9, handlers in src/*.ts
#    importing src/shared.ts), written into a temp folder: from spawning the server until
#    GET /fn0 answers 200, and until all 10 have answered once. Interleaved, REPS times:
#    - `nimbus up` with a cold compile cache (rm -rf .nimbus/build: esbuild runs),
#    - `nimbus up` with a warm one (the build is reused),
#    - `serverless offline start` (serverless@3 + serverless-offline + serverless-esbuild,
#      rm -rf .esbuild first; the plugin builds on every start).
# 2. A Python function with a requirements.txt (six pinned): the first start (pip
#    installs), then REPS second starts (the install is cached) against the same app
#    without requirements.txt, interleaved: what the cached install adds.
# The peer's packages are installed once with npm into PEER_DIR (never into the repo).
# The esbuild nimbus uses is fetched into its package cache by a warm-up start first.
# Needs node, npm, python3, curl. Only talks to 127.0.0.1 (npm and pip to their registries).
# Knobs: NIMBUS (binary), PORT, REPS (5), PEER_DIR, NIMBUS_LOG.
set -euo pipefail
cd "$(dirname "$0")/.."

NIMBUS=$(realpath "${NIMBUS:-target/release/nimbus}")
PORT=${PORT:-18500}
REPS=${REPS:-5}
PEER_DIR=${PEER_DIR:-/tmp/nimbus-sls-peer}
export NIMBUS_LOG=${NIMBUS_LOG:-warn}
# As bench/hello.sh: the real python3 first on PATH, not a pyenv shim.
PATH="$(dirname "$(python3 -c 'import sys; print(sys.executable)')"):$PATH"
OUT=$(mktemp -d /tmp/nimbus-startup.XXXXXX)

if [ ! -x "$PEER_DIR/node_modules/.bin/serverless" ]; then
  mkdir -p "$PEER_DIR"
  (cd "$PEER_DIR" && npm init -y >/dev/null && npm install --no-audit --no-fund --loglevel=error \
    serverless@3.40.0 serverless-offline@13.9.0 serverless-esbuild@1.57.2 esbuild@0.28.2)
fi

# ---- the TypeScript app ------------------------------------------------------------------
APP="$OUT/ts-app"
mkdir -p "$APP/src"
{
  echo "service: ts-bench"
  echo "frameworkVersion: '3'"
  echo "provider:"
  echo "  name: aws"
  echo "  runtime: nodejs20.x"
  echo "plugins:"
  echo "  - serverless-esbuild"
  echo "  - serverless-offline"
  echo "functions:"
  for i in $(seq 0 9); do
    echo "  fn$i:"
    echo "    handler: src/fn$i.handler"
    echo "    events:"
    echo "      - httpApi: GET /fn$i"
  done
} >"$APP/serverless.yml"
cat >"$APP/src/shared.ts" <<'TS'
export interface Reply {
  statusCode: number;
  headers: Record<string, string>;
  body: string;
}

export function reply(name: string, query: Record<string, string | undefined> | undefined): Reply {
  const who = query?.name ?? "world";
  return {
    statusCode: 200,
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ from: name, greeting: `hello ${who}` }),
  };
}
TS
for i in $(seq 0 9); do
  cat >"$APP/src/fn$i.ts" <<TS
import { reply, type Reply } from "./shared";

export const handler = async (event: { queryStringParameters?: Record<string, string> }): Promise<Reply> =>
  reply("fn$i", event.queryStringParameters);
TS
done
ln -s "$PEER_DIR/node_modules" "$APP/node_modules"

# spawn-to-first-200: prints "<first GET /fn0 ms> <all 10 answered ms>", then stops the
# server's process group (the one this script's child made).
time_start() { # port cmd...
  python3 - "$@" <<'PY'
import os, signal, socket, subprocess, sys, time
port, cmd = int(sys.argv[1]), sys.argv[2:]

def get(path):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            return s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False

t0 = time.perf_counter()
p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(os.environ["LOG"], "a"), start_new_session=True)
first = None
try:
    while first is None:
        if p.poll() is not None:
            sys.exit("server exited with %s; see %s" % (p.returncode, os.environ["LOG"]))
        if get("/fn0"):
            first = time.perf_counter() - t0
        elif time.perf_counter() - t0 > 120:
            sys.exit("no answer after 120 s; see %s" % os.environ["LOG"])
        else:
            time.sleep(0.002)
    for i in range(1, int(os.environ.get("N_ROUTES", "10"))):
        while not get("/fn%d" % i):
            time.sleep(0.002)
    done = time.perf_counter() - t0
    print("%.1f %.1f" % (first * 1000, done * 1000))
finally:
    os.killpg(p.pid, signal.SIGTERM)
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
PY
}

stats() { sort -g | awk -v f="$1" '{ a[NR] = $1 } END {
  m = NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
  printf f " (" f "–" f ")", m, a[1], a[NR] }'; }

SLS_ENV=(env SLS_TELEMETRY_DISABLED=1 SLS_NOTIFICATIONS_MODE=off AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x)
echo "# $NIMBUS ($("$NIMBUS" --version)), repo at $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "# node $(node --version), serverless $(cd "$APP" && "${SLS_ENV[@]}" node_modules/.bin/serverless --version 2>/dev/null | tr '\n' ' ')"
echo "# $(nproc) cores, $(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg), results in $OUT"

# Warm-up: esbuild into nimbus's package cache, node and python files into the page cache.
LOG="$OUT/nimbus.log" time_start "$PORT" "$NIMBUS" up "$APP" --port "$PORT" >/dev/null
export LOG
for rep in $(seq "$REPS"); do
  rm -rf "$APP/.nimbus/build"
  LOG="$OUT/nimbus.log" time_start "$PORT" "$NIMBUS" up "$APP" --port "$PORT" | sed 's/^/nimbus-cold /' | tee -a "$OUT/ts.txt"
  LOG="$OUT/nimbus.log" time_start "$PORT" "$NIMBUS" up "$APP" --port "$PORT" | sed 's/^/nimbus-warm /' | tee -a "$OUT/ts.txt"
  rm -rf "$APP/.esbuild" "$APP/.serverless"
  (cd "$APP" && LOG="$OUT/sls.log" time_start $((PORT + 1)) "${SLS_ENV[@]}" node_modules/.bin/serverless offline start \
    --httpPort $((PORT + 1)) --lambdaPort $((PORT + 2)) --host 127.0.0.1) \
    | sed 's/^/serverless-offline /' | tee -a "$OUT/ts.txt"
done

echo
echo "| server | spawn → first GET /fn0 answered, ms | spawn → all 10 routes answered once, ms |"
echo "|---|---|---|"
for s in nimbus-cold nimbus-warm serverless-offline; do
  echo "| $s | $(awk -v s="$s" '$1 == s { print $2 }' "$OUT/ts.txt" | stats %.0f) | $(awk -v s="$s" '$1 == s { print $3 }' "$OUT/ts.txt" | stats %.0f) |"
done
med() { awk -v s="$1" -v c="$2" '$1 == s { print $c }' "$OUT/ts.txt" | stats %.1f | cut -d' ' -f1; }
sls=$(med serverless-offline 2)
for s in nimbus-cold nimbus-warm; do
  echo "$s / serverless-offline, first request, medians: $(awk -v a="$(med "$s" 2)" -v b="$sls" 'BEGIN { printf "%.3f", a / b }') (target <= 0.2)"
done

# ---- 2. requirements.txt: what a cached install adds to a start -------------------------
PY_APP="$OUT/py-app"
mkdir -p "$PY_APP"
printf 'service: py-bench\nprovider:\n  runtime: python3.12\nfunctions:\n  fn0:\n    handler: handler.main\n    events:\n      - httpApi: GET /fn0\n' >"$PY_APP/serverless.yml"
printf 'import six\n\n\ndef main(event, context):\n    return {"six": six.__version__}\n' >"$PY_APP/handler.py"
echo 'six==1.16.0' >"$OUT/requirements.txt"
cp "$OUT/requirements.txt" "$PY_APP/requirements.txt"
rm -rf "$PY_APP/.nimbus/requirements"
export N_ROUTES=1
first_install=$(LOG="$OUT/nimbus-py.log" time_start "$PORT" "$NIMBUS" up "$PY_APP" --port "$PORT" | cut -d' ' -f1)
for rep in $(seq "$REPS"); do
  cp "$OUT/requirements.txt" "$PY_APP/requirements.txt"
  LOG="$OUT/nimbus-py.log" time_start "$PORT" "$NIMBUS" up "$PY_APP" --port "$PORT" | sed 's/^/cached /' | tee -a "$OUT/py.txt"
  rm "$PY_APP/requirements.txt"
  LOG="$OUT/nimbus-py.log" time_start "$PORT" "$NIMBUS" up "$PY_APP" --port "$PORT" | sed 's/^/none /' | tee -a "$OUT/py.txt"
done
echo
echo "| Python function, spawn → first request answered | ms |"
echo "|---|---|"
echo "| first start with requirements.txt (pip installs six==1.16.0) | $first_install |"
echo "| second and later starts (install cached), n=$REPS | $(awk '$1 == "cached" { print $2 }' "$OUT/py.txt" | stats %.1f) |"
echo "| the same app without requirements.txt, n=$REPS | $(awk '$1 == "none" { print $2 }' "$OUT/py.txt" | stats %.1f) |"
echo "cached install adds, medians: $(awk -v a="$(awk '$1 == "cached" { print $2 }' "$OUT/py.txt" | stats %.1f | cut -d' ' -f1)" -v b="$(awk '$1 == "none" { print $2 }' "$OUT/py.txt" | stats %.1f | cut -d' ' -f1)" 'BEGIN { printf "%.1f ms", a - b }') (target < 100 ms)"
echo "  paired, per repetition: $(paste -d' ' <(awk '$1 == "cached" { print $2 }' "$OUT/py.txt") <(awk '$1 == "none" { print $2 }' "$OUT/py.txt") | awk '{ print $1 - $2 }' | stats %.1f) ms"
