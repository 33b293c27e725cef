#!/usr/bin/env bash
# A deployed hello function through `nimbus server` against the same app under `nimbus up`,
# measured in the same run; with NIMBUS_BEFORE set, also the `nimbus server` of another
# build (before a change), so the change's effect on the server's request path shows
# beside the peer. Results are recorded in BENCHMARKS.md.
#
#   cargo build --release -p nimbus && NIMBUS_BEFORE=/path/to/old/nimbus bench/server.sh
#
# wrk -t1 -c1 and -t1 -c32, -d$DURATION --latency on GET /hello?name=Ada (examples/hello's
# Node function): `nimbus up` at /hello, each server at /hello/dev/hello; interleaved, REPS
# times; medians and (min–max) of req/s, p50, p99. Every server gets 2 × 3 s at 32
# connections first, so its instances have scaled out.
# Needs wrk, curl, node. Only talks to 127.0.0.1.
# Knobs: NIMBUS (binary), NIMBUS_BEFORE (optional), PORT (first of 5 ports), DURATION, REPS.
set -euo pipefail
cd "$(dirname "$0")/.."

NIMBUS=${NIMBUS:-target/release/nimbus}
NIMBUS_BEFORE=${NIMBUS_BEFORE:-}
PORT=${PORT:-18280}
DURATION=${DURATION:-5s}
REPS=${REPS:-3}
export NIMBUS_LOG=${NIMBUS_LOG:-warn}
OUT=$(mktemp -d /tmp/nimbus-server-bench.XXXXXX)
Q='hello?name=Ada'

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

wait_up() { # URL: poll until it answers 200
  for _ in $(seq 600); do curl -sf -o /dev/null "$1" && return; sleep 0.05; done
  echo "no answer from $1" >&2; exit 1
}

# name conns url -> one line: name conns req/s p50_ms p99_ms errors
run_wrk() {
  wrk -t1 -c"$2" -d"$DURATION" --timeout 10s --latency "$3" | awk -v name="$1" -v c="$2" '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; return v * 1000 }
    $1 == "50%" { p50 = ms($2) }  $1 == "99%" { p99 = ms($2) }
    /^Requests\/sec/ { rps = $2 }
    /Non-2xx|Socket errors/ { err = err $0 }
    END { printf "%s %s %.0f %.3f %.3f %s\n", name, c, rps, p50, p99, (err ? "ERR:" err : "ok") }'
}

# stdin: numbers -> "median (min–max)", each printed with format $1
stats() { sort -g | awk -v f="$1" '{ a[NR] = $1 } END {
  m = NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
  printf f " (" f "–" f ")", m, a[1], a[NR] }'; }

# binary state-dir gateway-port admin-port label: start a server, deploy a copy of
# examples/hello, and set URL[label] (not in a subshell: PIDS must keep the server's pid)
start_server() {
  local bin=$1 state=$2 port=$3 admin=$4 label=$5
  local token
  token=$("$bin" server token create --state "$state")
  "$bin" server --state "$state" --port "$port" --admin-port "$admin" \
    >"$OUT/$label.out" 2>"$OUT/$label.log" & PIDS+=($!)
  for _ in $(seq 200); do grep -q "admin API on" "$OUT/$label.out" 2>/dev/null && break; sleep 0.05; done
  grep -q "admin API on" "$OUT/$label.out" || { echo "$label did not start:" >&2; cat "$OUT/$label.log" >&2; exit 1; }
  cp -r examples/hello "$OUT/app-$label"
  rm -rf "$OUT/app-$label/.nimbus"
  (cd "$OUT/app-$label" && "$bin" deploy . --to "http://127.0.0.1:$admin" --token "$token" >/dev/null)
  URL[$label]="http://127.0.0.1:$port/hello/dev/$Q"
}

echo "# $NIMBUS ($("$NIMBUS" --version)), repo at $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
[ -n "$NIMBUS_BEFORE" ] && echo "# before: $NIMBUS_BEFORE ($("$NIMBUS_BEFORE" --version))"
echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

NAMES=(up server)
cp -r examples/hello "$OUT/app-up"
rm -rf "$OUT/app-up/.nimbus"
"$NIMBUS" up "$OUT/app-up" --port "$PORT" >"$OUT/up.out" 2>"$OUT/up.log" & PIDS+=($!)
declare -A URL
URL[up]="http://127.0.0.1:$PORT/$Q"
start_server "$NIMBUS" "$OUT/state" $((PORT + 1)) $((PORT + 2)) server
if [ -n "$NIMBUS_BEFORE" ]; then
  NAMES+=(server-before)
  start_server "$NIMBUS_BEFORE" "$OUT/state-before" $((PORT + 3)) $((PORT + 4)) server-before
fi
for s in "${NAMES[@]}"; do
  wait_up "${URL[$s]}"
  for _ in 1 2; do wrk -t1 -c32 -d3s "${URL[$s]}" >/dev/null; done
done

for rep in $(seq "$REPS"); do
  for c in 1 32; do
    for s in "${NAMES[@]}"; do
      run_wrk "$s" "$c" "${URL[$s]}" | tee -a "$OUT/warm.txt"
    done
  done
done
echo "# load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"

echo
echo "| path | conns | req/s | p50 | p99 |"
echo "|---|---|---|---|---|"
for c in 1 32; do
  for s in "${NAMES[@]}"; do
    rows=$(awk -v s="$s" -v c="$c" '$1 == s && $2 == c' "$OUT/warm.txt")
    printf "| %s | %s | %s | %s ms | %s ms |\n" "$s" "$c" \
      "$(echo "$rows" | awk '{print $3}' | stats %.0f)" \
      "$(echo "$rows" | awk '{print $4}' | stats %.3f)" \
      "$(echo "$rows" | awk '{print $5}' | stats %.2f)"
  done
done
echo "raw figures: $OUT"
