#!/usr/bin/env bash
# Cold starts and concurrency per instance (issue 18), with their peers in the same run.
# Results are recorded in BENCHMARKS.md.
#
#   cargo build --release -p nimbus && bench/coldstart.sh
#
# 1. cold: examples/hello copied into a temp folder with a twin Node function that cannot
#    be pre-started (its environment sets NODE_OPTIONS, which node reads only as it
#    starts); nimbus up --idle-timeout 1s --keep-alive fixed; per iteration: a fresh bare-node.js process
#    from spawn to first response, wait 2.5 s (every instance gone), then the first
#    request to the Node function (served by a pre-started runtime), to its twin (a fresh
#    process) and to the Python function (pre-started). COLD_N iterations; p50 and p99.
# 2. concurrency: the same handler with `concurrency: 16` and with the default 1 beside a
#    bare Node http server (bench/bare-node.js): wrk -t1 -c32 -dDURATION, interleaved,
#    REPS times; medians and (min–max).
# Needs wrk, curl, node, python3. Only talks to 127.0.0.1.
# Knobs: NIMBUS (binary), PORT (first of 4 ports), DURATION, REPS, COLD_N.
set -euo pipefail
cd "$(dirname "$0")/.."

NIMBUS=${NIMBUS:-target/release/nimbus}
PORT=${PORT:-18180}
DURATION=${DURATION:-10s}
REPS=${REPS:-3}
COLD_N=${COLD_N:-30}
export NIMBUS_LOG=${NIMBUS_LOG:-warn}
PATH="$(dirname "$(python3 -c 'import sys; print(sys.executable)')"):$PATH"
CLEAN_ENV=(env -i "PATH=$PATH" "HOME=$HOME" ${LANG:+"LANG=$LANG"})
OUT=$(mktemp -d /tmp/nimbus-coldstart.XXXXXX)
Q='/hello?name=Ada'

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

wait_up() {
  for _ in $(seq 400); do curl -sf -o /dev/null "$1" && return; sleep 0.05; done
  echo "no answer from $1" >&2; exit 1
}

# stdin: numbers -> "median (min–max)" with format $1
stats() { sort -g | awk -v f="$1" '{ a[NR] = $1 } END {
  m = NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
  printf f " (" f "–" f ")", m, a[1], a[NR] }'; }
# stdin: numbers -> the 99th percentile (nearest rank)
p99() { sort -g | awk '{ a[NR] = $1 } END { i = int(NR * 0.99 + 0.999); if (i > NR) i = NR; printf "%.1f", a[i] }'; }
ms() { awk '{ print $1 * 1000 }'; }

app_copy() { # DIR FUNCTIONS_YAML: examples/hello's handlers with another manifest
  mkdir -p "$1"
  cp examples/hello/handler.js examples/hello/handler.py "$1"/
  printf 'service: hello\nprovider:\n  runtime: nodejs20.x\n  memorySize: 256\n  timeout: 10\nfunctions:\n%s' "$2" >"$1/nimbus.yaml"
}

echo "# $NIMBUS ($("$NIMBUS" --version)), repo at $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "# node $(node --version), $(nproc) cores, $(date -u +%FT%TZ), results in $OUT"

# ---- 1. cold ---------------------------------------------------------------------------
node_first() {
  python3 - $((PORT + 3)) "${CLEAN_ENV[@]}" <<'PY'
import socket, subprocess, sys, time
port, clean_env = int(sys.argv[1]), sys.argv[2:]
req = b"GET /hello?name=Ada HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
t0 = time.perf_counter()
p = subprocess.Popen(clean_env + ["node", "bench/bare-node.js", str(port)])
while True:
    try:
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(req)
            if s.recv(4096).startswith(b"HTTP/1.1 200"):
                break
    except ConnectionRefusedError:
        time.sleep(0.001)
print(f"{time.perf_counter() - t0:.4f}")
p.kill()
p.wait()
PY
}

app_copy "$OUT/cold" '  hello:
    handler: handler.handler
    events:
      - httpApi: GET /hello
  hello-spawned:
    handler: handler.handler
    environment: { NODE_OPTIONS: "" }
    events:
      - httpApi: GET /spawned/hello
  hello-python:
    handler: handler.handler
    runtime: python3.12
    events:
      - httpApi: GET /python/hello
'
C=http://127.0.0.1:$PORT
curl_t() { curl -s -o /dev/null -w '%{http_code} %{time_total}\n' "$1"; }
"$NIMBUS" up "$OUT/cold" --port "$PORT" --idle-timeout 1s --keep-alive fixed 2>"$OUT/nimbus-cold.log" & NIMBUS_PID=$!; PIDS+=($!)
wait_up "$C$Q"
for _ in $(seq "$COLD_N"); do
  node_first >>"$OUT/node-first.txt"
  sleep 2.5 # idle timeout 1 s + reaper period 250 ms: every instance is gone
  read -r c1 t1 < <(curl_t "$C$Q")
  read -r c2 t2 < <(curl_t "$C/spawned$Q")
  read -r c3 t3 < <(curl_t "$C/python$Q")
  echo "$c1 $t1 $c2 $t2 $c3 $t3" >>"$OUT/cold.txt"
done
cleanup; PIDS=()
awk '$1 != 200 || $3 != 200 || $5 != 200 { bad++ } END { if (bad) print "WARNING: " bad " cold runs had a non-200" }' "$OUT/cold.txt"
row() { echo "| $1 | $(ms <"$2" | stats %.1f) | $(ms <"$2" | p99) |"; }
cut -d' ' -f2 "$OUT/cold.txt" >"$OUT/prestarted.txt"
cut -d' ' -f4 "$OUT/cold.txt" >"$OUT/spawned.txt"
cut -d' ' -f6 "$OUT/cold.txt" >"$OUT/python.txt"
echo
echo "| first request after scale-to-zero, ms (n=$COLD_N) | p50 (min–max) | p99 |"
echo "|---|---|---|"
row "nimbus, Node: pre-started runtime" "$OUT/prestarted.txt"
row "nimbus, Node: fresh process (NODE_OPTIONS set)" "$OUT/spawned.txt"
row "bare node: spawn bench/bare-node.js to first response" "$OUT/node-first.txt"
row "nimbus, Python: pre-started runtime" "$OUT/python.txt"

# ---- 2. concurrency ----------------------------------------------------------------------
app_copy "$OUT/warm" '  hello:
    handler: handler.handler
    concurrency: 16
    events:
      - httpApi: GET /hello
  hello-one:
    handler: handler.handler
    events:
      - httpApi: GET /one/hello
'
"$NIMBUS" up "$OUT/warm" --port $((PORT + 1)) 2>"$OUT/nimbus-warm.log" & PIDS+=($!)
"${CLEAN_ENV[@]}" node bench/bare-node.js $((PORT + 2)) & PIDS+=($!)
declare -A URL=(
  [concurrency-16]="http://127.0.0.1:$((PORT + 1))$Q"
  [concurrency-1]="http://127.0.0.1:$((PORT + 1))/one$Q"
  [bare-node]="http://127.0.0.1:$((PORT + 2))$Q"
)
SERVERS=(concurrency-16 concurrency-1 bare-node)
for s in "${SERVERS[@]}"; do
  wait_up "${URL[$s]}"
  for _ in 1 2; do wrk -t1 -c32 -d3s --timeout 10s "${URL[$s]}" >/dev/null; done
done
for _ in $(seq "$REPS"); do
  for s in "${SERVERS[@]}"; do
    wrk -t1 -c32 -d"$DURATION" --timeout 10s --latency "${URL[$s]}" | awk -v name="$s" '
      function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; return v * 1000 }
      $1 == "99%" { p99 = ms($2) }  /^Requests\/sec/ { rps = $2 }
      /Non-2xx|Socket errors/ { err = err $0 }
      END { printf "%s %.0f %.3f %s\n", name, rps, p99, (err ? "ERR:" err : "ok") }' | tee -a "$OUT/warm.txt"
  done
done
cleanup; PIDS=()
echo
echo "| wrk -t1 -c32 -d$DURATION, REPS=$REPS | req/s | p99 ms |"
echo "|---|---|---|"
for s in "${SERVERS[@]}"; do
  rows=$(awk -v s="$s" '$1 == s' "$OUT/warm.txt")
  echo "| $s | $(cut -d' ' -f2 <<<"$rows" | stats %.0f) | $(cut -d' ' -f3 <<<"$rows" | stats %.2f) |"
done
med() { awk -v s="$1" '$1 == s { print $2 }' "$OUT/warm.txt" | stats %.0f | cut -d' ' -f1; }
echo "concurrency-16 / bare node: $(awk -v a="$(med concurrency-16)" -v b="$(med bare-node)" 'BEGIN { printf "%.2f", a / b }')x (target >= 0.7x)"
