#!/usr/bin/env bash
# Benchmark of examples/hello: nimbus vs the same handler in a bare Node `http` server
# (bench/bare-node.js), measured in the same run. Results are recorded in BENCHMARKS.md.
#
#   cargo build --release -p nimbus && bench/hello.sh
#
# 1. warm: wrk -t1 -c1 and -t1 -c32, -d10s --timeout 10s --latency, nimbus / bare node / nimbus python
#    interleaved, REPS times; medians and (min–max) of req/s, p50, p99.
# 2. cold: first request after scale-to-zero (nimbus up --idle-timeout 1s, wait 2.5 s,
#    one curl), against node's own start-up (`node -e 0`, and a fresh bare-node.js
#    process until it answers its first request); the Python function's first request
#    after scale-to-zero beside `python3 -c 0`.
# Needs wrk, hyperfine, curl, node, python3. Only talks to 127.0.0.1.
# Knobs: NIMBUS (binary), PORT (first of 3 ports), DURATION, REPS, COLD_N, NIMBUS_LOG.
set -euo pipefail
cd "$(dirname "$0")/.."

NIMBUS=${NIMBUS:-target/release/nimbus}
PORT=${PORT:-18080}
DURATION=${DURATION:-10s}
REPS=${REPS:-3}
COLD_N=${COLD_N:-15}
export NIMBUS_LOG=${NIMBUS_LOG:-warn}
# Put the real python3 first on PATH: a pyenv shim (a bash script) adds ~0.4 s to every
# Python cold start, which would measure pyenv rather than nimbus.
PATH="$(dirname "$(python3 -c 'import sys; print(sys.executable)')"):$PATH"
# Bare node runs in the environment nimbus gives functions (PATH, HOME, LANG only): a
# NODE_EXTRA_CA_CERTS in the caller's environment alone adds ~30 ms to node's start-up.
CLEAN_ENV=(env -i "PATH=$PATH" "HOME=$HOME" ${LANG:+"LANG=$LANG"})
OUT=$(mktemp -d /tmp/nimbus-bench.XXXXXX)
Q='/hello?name=Ada'

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

wait_up() { # URL: poll until it answers 200
  for _ in $(seq 400); do curl -sf -o /dev/null "$1" && return; sleep 0.05; done
  echo "no answer from $1" >&2; exit 1
}

# name conns url -> one line: name conns req/s p50_ms p99_ms errors instances-before-run
# (nimbus's node+python processes; a client closing its connection mid-request stops
# the instance serving it, so wrk's last in-flight requests cost cold starts in the next run)
run_wrk() {
  local n; n=$(pgrep -c -P "$NIMBUS_PID" || true)
  wrk -t1 -c"$2" -d"$DURATION" --timeout 10s --latency "$3" | awk -v name="$1" -v c="$2" -v n="$n" '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; return v * 1000 }
    $1 == "50%" { p50 = ms($2) }  $1 == "99%" { p99 = ms($2) }
    /^Requests\/sec/ { rps = $2 }
    /Non-2xx|Socket errors/ { err = err $0 }
    END { printf "%s %s %.0f %.3f %.3f %s instances=%s\n", name, c, rps, p50, p99, (err ? "ERR:" err : "ok"), n }'
}

# stdin: numbers -> "median (min–max)", each printed with format $1
stats() { sort -g | awk -v f="$1" '{ a[NR] = $1 } END {
  m = NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
  printf f " (" f "–" f ")", m, a[1], a[NR] }'; }

echo "# $NIMBUS ($("$NIMBUS" --version)), repo at $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "# node $(node --version), $(nproc) cores, $(date -u +%FT%TZ), NIMBUS_LOG=$NIMBUS_LOG, results in $OUT"

# ---- 1. warm ---------------------------------------------------------------------------
"$NIMBUS" up examples/hello --port "$PORT" 2>"$OUT/nimbus.log" & NIMBUS_PID=$!; PIDS+=($!)
"${CLEAN_ENV[@]}" node bench/bare-node.js $((PORT + 1)) & PIDS+=($!)
declare -A URL=(
  [nimbus]="http://127.0.0.1:$PORT$Q"
  [bare-node]="http://127.0.0.1:$((PORT + 1))$Q"
  [nimbus-python]="http://127.0.0.1:$PORT/python$Q"
)
SERVERS=(nimbus bare-node nimbus-python)
for s in "${SERVERS[@]}"; do
  wait_up "${URL[$s]}"
  for _ in 1 2; do wrk -t1 -c32 -d3s --timeout 10s "${URL[$s]}" >/dev/null; done # warm-up: nimbus scales out here
done
echo "# nimbus instances after warm-up: $(pgrep -c -P "$NIMBUS_PID" || true)"

for rep in $(seq "$REPS"); do
  for c in 1 32; do
    for s in "${SERVERS[@]}"; do run_wrk "$s" "$c" "${URL[$s]}" | tee -a "$OUT/warm.txt"; done
  done
done
cleanup; PIDS=()

echo
echo "| server | conns | req/s | p50 ms | p99 ms |"
echo "|---|---|---|---|---|"
for c in 1 32; do
  for s in "${SERVERS[@]}"; do
    rows=$(awk -v s="$s" -v c="$c" '$1 == s && $2 == c' "$OUT/warm.txt")
    echo "| $s | $c | $(cut -d' ' -f3 <<<"$rows" | stats %.0f) | $(cut -d' ' -f4 <<<"$rows" | stats %.3f) | $(cut -d' ' -f5 <<<"$rows" | stats %.2f) |"
  done
done
p50() { awk -v s="$1" '$1 == s && $2 == 1 { print $4 }' "$OUT/warm.txt" | stats %.3f | cut -d' ' -f1; }
echo "warm overhead at 1 conn (median p50 nimbus - bare node): $(awk -v a="$(p50 nimbus)" -v b="$(p50 bare-node)" 'BEGIN { printf "%.3f ms", a - b }') (target <= 1 ms)"

# ---- 2. cold ---------------------------------------------------------------------------
# node's own start-up: a fresh bare-node.js process, from spawn until it answers a request
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

echo
CURL=(curl -s -o /dev/null -w '%{http_code} %{time_total}\n' "http://127.0.0.1:$((PORT + 2))$Q")
CURL_PY=(curl -s -o /dev/null -w '%{http_code} %{time_total}\n' "http://127.0.0.1:$((PORT + 2))/python$Q")
"$NIMBUS" up examples/hello --port $((PORT + 2)) --idle-timeout 1s --keep-alive fixed 2>"$OUT/nimbus-cold.log" & NIMBUS_PID=$!; PIDS+=($!)
wait_up "http://127.0.0.1:$((PORT + 2))$Q"
for _ in $(seq "$COLD_N"); do # nimbus and bare node interleaved, as the load here drifts
  node_first >>"$OUT/node-first.txt"
  sleep 2.5 # idle timeout 1 s + reaper period 250 ms: the instance is gone
  alive=$(pgrep -c -P "$NIMBUS_PID" || true)
  read -r code cold < <("${CURL[@]}")
  read -r _ warm < <("${CURL[@]}") # a warm request over a fresh connection, for scale
  read -r pycode pycold < <("${CURL_PY[@]}") # the Python function scaled to zero too
  echo "$alive $code $cold $warm $pycode $pycold" >>"$OUT/cold.txt"
done
cleanup; PIDS=()
awk '$1 != 0 || $2 != 200 || $5 != 200 { bad++ } END { if (bad) print "WARNING: " bad " cold runs had a live instance or non-200" }' "$OUT/cold.txt"
hyperfine -N --warmup 3 --runs 30 --export-json "$OUT/node-e0.json" "${CLEAN_ENV[*]} node -e 0" >/dev/null 2>&1
hyperfine -N --warmup 3 --runs 30 --export-json "$OUT/python-c0.json" "${CLEAN_ENV[*]} $(command -v python3) -c 0" >/dev/null 2>&1

ms() { awk '{ print $1 * 1000 }'; }
echo "| cold start, ms | p50 (min–max) |"
echo "|---|---|"
echo "| nimbus: first request after scale-to-zero (n=$COLD_N) | $(cut -d' ' -f3 "$OUT/cold.txt" | ms | stats %.1f) |"
echo "| nimbus: warm request, fresh connection (same curl) | $(cut -d' ' -f4 "$OUT/cold.txt" | ms | stats %.1f) |"
echo "| node bench/bare-node.js, clean env: spawn to first response (n=$COLD_N) | $(ms <"$OUT/node-first.txt" | stats %.1f) |"
echo "| node -e 0, clean env (hyperfine -N, n=30) | $(jq -r '.results[0].times[]' "$OUT/node-e0.json" | ms | stats %.1f) |"
echo "| nimbus (Python): first request after scale-to-zero (n=$COLD_N) | $(cut -d' ' -f6 "$OUT/cold.txt" | ms | stats %.1f) |"
echo "| python3 -c 0, clean env (hyperfine -N, n=30) | $(jq -r '.results[0].times[]' "$OUT/python-c0.json" | ms | stats %.1f) |"
med() { ms | stats %.1f | cut -d' ' -f1; }
cold=$(cut -d' ' -f3 "$OUT/cold.txt" | med); first=$(med <"$OUT/node-first.txt")
echo "cold start overhead (p50 nimbus cold - p50 bare-node first response): $(awk -v a="$cold" -v b="$first" 'BEGIN { printf "%.1f ms", a - b }') (target <= 20 ms)"
echo "  paired, per iteration: $(paste -d' ' "$OUT/cold.txt" "$OUT/node-first.txt" | awk '{ print $3 - $7 }' | ms | stats %.1f) ms"
