#!/usr/bin/env bash
# Benchmark of wasm functions: nimbus vs `wasmtime serve` on the same component
# (examples/wasm-hello), measured in the same run. Results go in BENCHMARKS.md.
#
#   cargo build --release -p nimbus && bench/wasm.sh
#
# 1. cold: N_COLD functions sharing the compiled component, each invoked once: the first
#    request to a function never instantiated. Server side: REPORT's Init Duration
#    (instantiation); client side: curl's time_total. wasmtime serve makes a fresh
#    instance for every request, so its first request after start is its cold start.
# 2. warm: wrk -t1 at 1, 32 and 64 connections, -d$DURATION, nimbus / wasmtime serve
#    interleaved, REPS times; medians and (min–max) of req/s, p50, p99.
# 3. idle memory: RSS of `nimbus up` with 1 and with N_IDLE wasm functions, never invoked.
# Needs wrk, curl, and wasmtime-cli 48 (WASMTIME, default /work/tools/wasmtime/bin/wasmtime:
#   cargo install wasmtime-cli --locked --version 48.0.8 --root /work/tools/wasmtime).
# Knobs: NIMBUS, WASMTIME, COMPONENT (a built wasm-hello.wasm), PORT, DURATION, REPS,
# N_COLD, N_IDLE. Only talks to 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

NIMBUS=${NIMBUS:-target/release/nimbus}
WASMTIME=${WASMTIME:-/work/tools/wasmtime/bin/wasmtime}
PORT=${PORT:-18180}
DURATION=${DURATION:-10s}
REPS=${REPS:-3}
N_COLD=${N_COLD:-50}
N_IDLE=${N_IDLE:-200}
OUT=$(mktemp -d /tmp/nimbus-wasm-bench.XXXXXX)

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

wait_up() { # URL: poll until it answers 200
  for _ in $(seq 600); do curl -sf -o /dev/null "$1" && return; sleep 0.05; done
  echo "no answer from $1" >&2; exit 1
}
wait_listening() { # PORT: poll until something listens
  for _ in $(seq 600); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.05; done
  echo "nothing listens on $1" >&2; exit 1
}

# stdin: numbers -> "median (min–max)", each printed with format $1
stats() { sort -g | awk -v f="$1" '{ a[NR] = $1 } END {
  m = NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
  printf f " (" f "–" f ")", m, a[1], a[NR] }'; }
# stdin: numbers -> "p50 p99"
pcts() { sort -g | awk '{ a[NR] = $1 } END { printf "%.3f %.3f", a[int(NR * 0.5 + 0.5)], a[int(NR * 0.99 + 0.5)] }'; }

# name conns url -> "name conns req/s p50_ms p99_ms status"
run_wrk() {
  wrk -t1 -c"$2" -d"$DURATION" --timeout 10s --latency "$3" | awk -v name="$1" -v c="$2" '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; return v * 1000 }
    $1 == "50%" { p50 = ms($2) }  $1 == "99%" { p99 = ms($2) }
    /^Requests\/sec/ { rps = $2 }
    /Non-2xx|Socket errors/ { err = err $0 }
    END { printf "%s %s %.0f %.3f %.3f %s\n", name, c, rps, p50, p99, (err ? "ERR:" err : "ok") }'
}

rss_kb() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }

HAVE_WASMTIME=$([ -x "$WASMTIME" ] && echo yes || echo no)
echo "# $NIMBUS ($("$NIMBUS" --version)), $([ "$HAVE_WASMTIME" = yes ] && "$WASMTIME" --version || echo "no wasmtime at $WASMTIME: nimbus only"), repo at $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "# $(nproc) cores, $(date -u +%FT%TZ), results in $OUT"

if [ -z "${COMPONENT:-}" ]; then
  (cd examples/wasm-hello && cargo build --quiet --release --target wasm32-wasip2)
  COMPONENT=$PWD/examples/wasm-hello/target/wasm32-wasip2/release/wasm-hello.wasm
fi

# An app with $2 functions f0..f(N-1), all on the hello component.
make_app() { # dir n
  mkdir -p "$1"
  cp "$COMPONENT" "$1/hello.wasm"
  {
    echo "service: bench"
    echo "provider: { runtime: wasm, memorySize: 128, timeout: 10 }"
    echo "functions:"
    for i in $(seq 0 $(($2 - 1))); do
      echo "  f$i: { handler: hello.wasm, events: [ { httpApi: 'GET /f$i' } ] }"
    done
  } > "$1/nimbus.yaml"
}

# --- 1. cold start ---------------------------------------------------------------------
make_app "$OUT/cold" "$N_COLD"
"$NIMBUS" validate "$OUT/cold" >/dev/null 2>&1   # compile once into .nimbus/wasm-cache
NIMBUS_LOG=debug "$NIMBUS" up "$OUT/cold" --port "$PORT" >/dev/null 2>"$OUT/cold.log" &
NIMBUS_PID=$!; PIDS+=("$NIMBUS_PID")
wait_listening "$PORT"
for i in $(seq 0 $((N_COLD - 1))); do
  curl -s -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:$PORT/f$i?name=Ada" | awk '{ print $1 * 1000 }'
done > "$OUT/cold-client.txt"
sleep 0.5
kill "$NIMBUS_PID"; wait "$NIMBUS_PID" 2>/dev/null || true
grep -o 'Init Duration: [0-9.]*' "$OUT/cold.log" | awk '{ print $3 }' > "$OUT/cold-init.txt"
echo "nimbus cold: instantiation (Init Duration) p50/p99 ms: $(pcts < "$OUT/cold-init.txt") over $(wc -l < "$OUT/cold-init.txt") functions"
echo "nimbus cold: first request, client time_total p50/p99 ms: $(pcts < "$OUT/cold-client.txt")"

[ "$HAVE_WASMTIME" = yes ] && for rep in $(seq "$REPS"); do
  "$WASMTIME" serve -S cli=y --addr "127.0.0.1:$((PORT + 1))" "$COMPONENT" >/dev/null 2>&1 &
  W_PID=$!; PIDS+=("$W_PID")
  wait_listening "$((PORT + 1))"
  curl -s -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:$((PORT + 1))/?name=Ada" | awk '{ print $1 * 1000 }'
  kill "$W_PID"; wait "$W_PID" 2>/dev/null || true
done > "$OUT/cold-wasmtime.txt"
[ "$HAVE_WASMTIME" = yes ] && echo "wasmtime serve: first request after start, client time_total ms: $(stats '%.3f' < "$OUT/cold-wasmtime.txt")"

# --- 2. warm throughput ----------------------------------------------------------------
make_app "$OUT/warm" 1
"$NIMBUS" up "$OUT/warm" --port "$PORT" >/dev/null 2>"$OUT/warm.log" &
PIDS+=("$!")
wait_up "http://127.0.0.1:$PORT/f0?name=Ada"
if [ "$HAVE_WASMTIME" = yes ]; then
  "$WASMTIME" serve -S cli=y --addr "127.0.0.1:$((PORT + 1))" "$COMPONENT" >/dev/null 2>"$OUT/wasmtime.log" &
  PIDS+=("$!")
  wait_up "http://127.0.0.1:$((PORT + 1))/?name=Ada"
fi
for conns in 1 32 64; do
  for rep in $(seq "$REPS"); do
    run_wrk nimbus "$conns" "http://127.0.0.1:$PORT/f0?name=Ada"
    if [ "$HAVE_WASMTIME" = yes ]; then
      run_wrk wasmtime-serve "$conns" "http://127.0.0.1:$((PORT + 1))/?name=Ada"
    fi
  done
done | tee "$OUT/warm.txt"
echo
echo "| server | conns | req/s | p50 ms | p99 ms |"
echo "|---|---|---|---|---|"
for conns in 1 32 64; do
  for name in nimbus wasmtime-serve; do
    rows=$(awk -v n="$name" -v c="$conns" '$1 == n && $2 == c' "$OUT/warm.txt")
    echo "| $name | $conns | $(awk '{ print $3 }' <<< "$rows" | stats '%.0f') | $(awk '{ print $4 }' <<< "$rows" | stats '%.2f') | $(awk '{ print $5 }' <<< "$rows" | stats '%.2f') |"
  done
done
cleanup; PIDS=()

# --- 3. idle memory --------------------------------------------------------------------
for n in 1 "$N_IDLE"; do
  make_app "$OUT/idle$n" "$n"
  "$NIMBUS" validate "$OUT/idle$n" >/dev/null 2>&1
  "$NIMBUS" up "$OUT/idle$n" --port "$PORT" >/dev/null 2>&1 &
  pid=$!; PIDS+=("$pid")
  wait_listening "$PORT"
  sleep 1
  echo "$n $(rss_kb "$pid")" >> "$OUT/idle.txt"
  kill "$pid"; wait "$pid" 2>/dev/null || true
done
awk -v n="$N_IDLE" 'NR == 1 { one = $2 } NR == 2 { many = $2 }
  END { printf "idle RSS: 1 function %.1f MB, %d functions %.1f MB: %.1f KB per extra function\n",
        one / 1024, n, many / 1024, (many - one) / (n - 1) }' "$OUT/idle.txt"
