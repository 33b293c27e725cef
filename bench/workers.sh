#!/usr/bin/env bash
# Benchmark of a hello-world Worker (bench/workers-hello): nimbus's Workers host vs
# workerd (npm) serving the same module, and examples/hello as a Lambda-style Node
# function on the same nimbus, measured in the same run. Results go to BENCHMARKS.md.
#
#   cargo build --release -p nimbus && bench/workers.sh
#
# 1. warm: wrk -t1 -c1 and -c32, -d$DURATION --latency, interleaved, REPS times; medians.
# 2. first request: nimbus after scale-to-zero (--idle-timeout 1s, wait 2.5 s, one curl,
#    which starts the host and loads the module); nimbus after deploy (a fresh `nimbus up`
#    has printed its banner; the host was started with the worker); workerd from process
#    start to first answer.
# 3. idle memory: RSS of nimbus's worker host process and of workerd after the runs.
# 4. a Durable Object counter (bench/workers-counter): req/s and p50/p99 of increments.
# Needs wrk, curl, node, npm (workerd is installed once into ~/.cache/nimbus/test-tools).
# Only talks to 127.0.0.1. Knobs: NIMBUS, PORT (first of 3), DURATION, REPS, COLD_N.
set -euo pipefail
cd "$(dirname "$0")/.."

NIMBUS=${NIMBUS:-target/release/nimbus}
PORT=${PORT:-18280}
DURATION=${DURATION:-5s}
REPS=${REPS:-3}
COLD_N=${COLD_N:-10}
export NIMBUS_LOG=${NIMBUS_LOG:-warn}
OUT=$(mktemp -d /tmp/nimbus-bench.XXXXXX)
TOOLS="$HOME/.cache/nimbus/test-tools/workerd-1"
WORKERD="$TOOLS/node_modules/@cloudflare/workerd-linux-64/bin/workerd"
if [ ! -x "$WORKERD" ]; then
  mkdir -p "$TOOLS" && npm install --no-audit --no-fund --silent --prefix "$TOOLS" workerd@1.20261123.1
fi

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

wait_up() { for _ in $(seq 400); do curl -sf -o /dev/null "$1" && return; sleep 0.01; done; echo "no answer from $1" >&2; exit 1; }

run_wrk() { # name conns url
  wrk -t1 -c"$2" -d"$DURATION" --timeout 10s --latency "$3" | awk -v name="$1" -v c="$2" '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; return v * 1000 }
    $1 == "50%" { p50 = ms($2) }  $1 == "99%" { p99 = ms($2) }
    /^Requests\/sec/ { rps = $2 }
    /Non-2xx|Socket errors/ { err = err $0 }
    END { printf "%s %s %.0f %.3f %.3f %s\n", name, c, rps, p50, p99, (err ? "ERR:" err : "ok") }'
}
median() { sort -g | awk '{ a[NR] = $1 } END { print NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

workerd_config() { # port -> config file in $OUT (workerd embeds files relative to it)
  cp bench/workers-hello/worker.js "$OUT/worker.js"
  cat > "$OUT/workerd-$1.capnp" <<CAPNP
using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [ (name = "main", worker = .worker) ],
  sockets = [ ( name = "http", address = "127.0.0.1:$1", http = (), service = "main" ) ]
);
const worker :Workerd.Worker = (
  modules = [ (name = "worker", esModule = embed "worker.js") ],
  compatibilityDate = "2024-09-23",
);
CAPNP
  echo "$OUT/workerd-$1.capnp"
}

echo "# $NIMBUS ($("$NIMBUS" --version)), workerd $("$WORKERD" --version), node $(node --version), $(nproc) cores"
echo "# $(date -u +%FT%TZ), load average $(cut -d' ' -f1-3 /proc/loadavg), results in $OUT"

APP=$(mktemp -d /tmp/nimbus-workers-app.XXXXXX)
cp bench/workers-hello/* "$APP/"
"$NIMBUS" up "$APP" --port "$PORT" --idle-timeout 1s 2>"$OUT/nimbus.log" & NIMBUS_PID=$!; PIDS+=($!)
"$NIMBUS" up examples/hello --port $((PORT + 2)) 2>"$OUT/nimbus-lambda.log" & PIDS+=($!)
"$WORKERD" serve "$(workerd_config $((PORT + 1)))" 2>"$OUT/workerd.log" & WORKERD_PID=$!; PIDS+=($!)
declare -A URL=(
  [nimbus-workers]="http://127.0.0.1:$PORT/hello?name=Ada"
  [workerd]="http://127.0.0.1:$((PORT + 1))/hello?name=Ada"
  [nimbus-lambda-node]="http://127.0.0.1:$((PORT + 2))/hello?name=Ada"
)
SERVERS=(nimbus-workers workerd nimbus-lambda-node)

# ---- 2a. nimbus: first request after scale-to-zero ---------------------------------------
wait_up "${URL[nimbus-workers]}"
for _ in $(seq "$COLD_N"); do
  sleep 2.5
  curl -s -o /dev/null -w '%{time_total}\n' "${URL[nimbus-workers]}" >> "$OUT/cold-nimbus.txt"
done
echo "first request after scale-to-zero, nimbus-workers: median $(awk '{ print $1 * 1000 }' "$OUT/cold-nimbus.txt" | median) ms of $COLD_N"

# ---- 2c. nimbus: first request after deploy (once `nimbus up` printed its banner) ---------
APP2=$(mktemp -d /tmp/nimbus-workers-app.XXXXXX)
cp bench/workers-hello/* "$APP2/"
for _ in $(seq "$COLD_N"); do
  "$NIMBUS" up "$APP2" --port $((PORT + 3)) >"$OUT/deploy.out" 2>>"$OUT/deploy.log" & p=$!
  for _ in $(seq 2000); do grep -q "listening on" "$OUT/deploy.out" 2>/dev/null && break; sleep 0.005; done
  curl -s -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:$((PORT + 3))/hello?name=Ada" >> "$OUT/deploy-nimbus.txt"
  kill "$p"; wait "$p" 2>/dev/null || true
  sleep 0.5 # its host and state file go before the next one starts
done
echo "first request after deploy, nimbus-workers: median $(awk '{ print $1 * 1000 }' "$OUT/deploy-nimbus.txt" | median) ms of $COLD_N"

# ---- 1. warm -----------------------------------------------------------------------------
for s in "${SERVERS[@]}"; do wait_up "${URL[$s]}"; wrk -t1 -c32 -d2s "${URL[$s]}" >/dev/null; done
for _ in $(seq "$REPS"); do
  for c in 1 32; do
    for s in "${SERVERS[@]}"; do run_wrk "$s" "$c" "${URL[$s]}" | tee -a "$OUT/warm.txt"; done
  done
done
echo "# medians over $REPS runs: server conns req/s p50_ms p99_ms"
for c in 1 32; do
  for s in "${SERVERS[@]}"; do
    rps=$(awk -v s="$s" -v c="$c" '$1 == s && $2 == c { print $3 }' "$OUT/warm.txt" | median)
    p50=$(awk -v s="$s" -v c="$c" '$1 == s && $2 == c { print $4 }' "$OUT/warm.txt" | median)
    p99=$(awk -v s="$s" -v c="$c" '$1 == s && $2 == c { print $5 }' "$OUT/warm.txt" | median)
    echo "$s c=$c req/s=$rps p50=${p50}ms p99=${p99}ms"
  done
done

# ---- 4. Durable Object increment round trip (one committed write per request) -------------
COUNTER=$(mktemp -d /tmp/nimbus-workers-counter.XXXXXX)
cp bench/workers-counter/* "$COUNTER/"
"$NIMBUS" up "$COUNTER" --port $((PORT + 4)) 2>"$OUT/nimbus-counter.log" & PIDS+=($!)
wait_up "http://127.0.0.1:$((PORT + 4))/"
for c in 1 32; do run_wrk nimbus-durable-object-increment "$c" "http://127.0.0.1:$((PORT + 4))/"; done
echo "counter after the runs: $(curl -s "http://127.0.0.1:$((PORT + 4))/") (one more than the requests answered)"

# ---- 3. idle memory ----------------------------------------------------------------------
sleep 0.5
# The host is node, a child of nimbus or of the sandbox's bwrap under it.
host_pid=$(pgrep -x node -P "$NIMBUS_PID" || pgrep -x node -P "$(pgrep -x bwrap -P "$NIMBUS_PID" | head -1)" 2>/dev/null || true)
rss() { awk '/VmRSS/ { print $2 / 1024 " MB" }' "/proc/$1/status" 2>/dev/null || echo "?"; }
echo "idle RSS: nimbus worker host $( [ -n "$host_pid" ] && rss "$host_pid" || echo '(stopped)'), nimbus itself $(rss "$NIMBUS_PID"), workerd $(rss "$WORKERD_PID")"

# ---- 2b. workerd: process start to first answer -------------------------------------------
kill "$WORKERD_PID"; wait "$WORKERD_PID" 2>/dev/null || true
CFG=$(workerd_config $((PORT + 1)))
for _ in $(seq "$COLD_N"); do
  start=$(date +%s%N)
  "$WORKERD" serve "$CFG" 2>/dev/null & p=$!
  until curl -sf -o /dev/null "${URL[workerd]}"; do sleep 0.002; done
  echo $(( ($(date +%s%N) - start) / 1000 )) >> "$OUT/cold-workerd.txt"
  kill "$p"; wait "$p" 2>/dev/null || true
done
echo "workerd process start to first answer: median $(awk '{ print $1 / 1000 }' "$OUT/cold-workerd.txt" | median) ms of $COLD_N"
