#!/usr/bin/env bash
# The cost of the function sandbox (SECURITY.md) on examples/hello: the same app served by
# two `nimbus up`, one with NIMBUS_SANDBOX=off and one sandboxed (the default), measured
# interleaved in the same run. Results are recorded in BENCHMARKS.md.
#
#   cargo build --release -p nimbus && bench/sandbox.sh
#
# 1. cold: first request after scale-to-zero (--idle-timeout 1s, wait 2.5 s, one curl),
#    COLD_N times, alternating which server goes first, for four functions: examples/hello's
#    Node and Python functions (answered by a pre-started runtime, whose sandbox was set up
#    before the request) and twins of them that cannot be pre-started (their environment
#    sets a variable the interpreter reads as it starts), so the request pays the whole
#    spawn of a fresh process in its sandbox: spawn-to-first-response.
# 2. warm: bench/sandbox-load.js with 1 and 32 keep-alive connections for DURATION
#    seconds, REPS times, alternating; req/s, p50, p99.
# Needs curl, node, python3 (and bubblewrap when not root). Only talks to 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

NIMBUS=$(realpath "${NIMBUS:-target/release/nimbus}")
PORT=${PORT:-18180}
DURATION=${DURATION:-5}
REPS=${REPS:-3}
COLD_N=${COLD_N:-15}
export NIMBUS_LOG=${NIMBUS_LOG:-warn}
# The real python3 first on PATH: a pyenv shim would measure pyenv.
PATH="$(dirname "$(python3 -c 'import sys; print(sys.executable)')"):$PATH"
OUT=$(mktemp -d /tmp/nimbus-sandbox-bench.XXXXXX)

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# Cold starts are what this measures: no keep-alive learned from the bench's own rhythm.
KEEP_ALIVE=()
"$NIMBUS" up --help | grep -q -- '--keep-alive' && KEEP_ALIVE=(--keep-alive fixed)
declare -A BASE
for mode in off auto; do
  port=$PORT; [ "$mode" = auto ] && port=$((PORT + 1))
  mkdir -p "$OUT/app-$mode"
  cp examples/hello/handler.js examples/hello/handler.py "$OUT/app-$mode"/
  cat > "$OUT/app-$mode/nimbus.yaml" <<'YAML'
service: hello
provider: { runtime: nodejs20.x, memorySize: 256, timeout: 10 }
functions:
  hello: { handler: handler.handler, events: [ { httpApi: GET /hello } ] }
  hello-python:
    handler: handler.handler
    runtime: python3.12
    events: [ { httpApi: GET /python/hello } ]
  hello-fresh:
    handler: handler.handler
    environment: { NODE_OPTIONS: "" }
    events: [ { httpApi: GET /fresh/hello } ]
  hello-python-fresh:
    handler: handler.handler
    runtime: python3.12
    environment: { PYTHONDONTWRITEBYTECODE: "1" }
    events: [ { httpApi: GET /fresh/python/hello } ]
YAML
  NIMBUS_SANDBOX=$mode "$NIMBUS" up "$OUT/app-$mode" --port "$port" --idle-timeout 1s "${KEEP_ALIVE[@]}" \
    > "$OUT/$mode.out" 2> "$OUT/$mode.err" &
  PIDS+=($!)
  BASE[$mode]="http://127.0.0.1:$port"
done
for mode in off auto; do
  for _ in $(seq 400); do curl -sf -o /dev/null "${BASE[$mode]}/hello?name=Ada" && break; sleep 0.05; done
done
echo "# $NIMBUS, repo at $(git rev-parse --short HEAD), load average $(cut -d' ' -f1-3 /proc/loadavg)"
grep -h "isolation:" "$OUT/auto.out" || { echo "the sandboxed server printed no isolation line" >&2; exit 1; }

# stdin: numbers -> "median (min–max)"
stats() { sort -g | awk '{ a[NR] = $1 } END {
  m = NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
  printf "%.1f (%.1f–%.1f)", m, a[1], a[NR] }'; }

cold_one() { # mode path -> ms
  curl -s -o /dev/null -w '%{time_total}\n' "${BASE[$1]}$2" | awk '{ printf "%.2f\n", $1 * 1000 }'
}
for i in $(seq "$COLD_N"); do
  sleep 2.5
  order="off auto"; [ $((i % 2)) = 0 ] && order="auto off"
  for mode in $order; do
    # The fresh ones first: a pre-started runtime handed out starts another behind it.
    cold_one "$mode" '/fresh/hello?name=Ada' >> "$OUT/cold-node-fresh-$mode"
    cold_one "$mode" '/fresh/python/hello?name=Ada' >> "$OUT/cold-python-fresh-$mode"
    cold_one "$mode" '/hello?name=Ada' >> "$OUT/cold-node-$mode"
    cold_one "$mode" '/python/hello?name=Ada' >> "$OUT/cold-python-$mode"
  done
done

for rep in $(seq "$REPS"); do
  for conns in 1 32; do
    order="off auto"; [ $((rep % 2)) = 0 ] && order="auto off"
    for mode in $order; do
      node bench/sandbox-load.js "${BASE[$mode]}/hello?name=Ada" "$conns" "$DURATION" >> "$OUT/warm-$conns-$mode"
    done
  done
done

echo
echo "| cold start, ms, median (min–max) of $COLD_N | NIMBUS_SANDBOX=off | sandboxed |"
echo "|---|---|---|"
for rt in node-fresh python-fresh node python; do
  case $rt in
    *-fresh) what="${rt%-fresh}: a fresh process, spawn to first response" ;;
    *) what="$rt: a pre-started runtime" ;;
  esac
  echo "| $what | $(stats < "$OUT/cold-$rt-off") | $(stats < "$OUT/cold-$rt-auto") |"
done
echo
echo "| warm, median (min–max) of $REPS | NIMBUS_SANDBOX=off | sandboxed |"
echo "|---|---|---|"
for conns in 1 32; do
  for col in 1 2 3; do
    name=$(echo "req/s p50_ms p99_ms" | cut -d' ' -f$col)
    echo "| $conns conn: $name | $(cut -d' ' -f$col < "$OUT/warm-$conns-off" | stats) | $(cut -d' ' -f$col < "$OUT/warm-$conns-auto" | stats) |"
  done
done
echo "| errors | $(awk '{ s += $4 } END { print s + 0 }' "$OUT"/warm-*-off) | $(awk '{ s += $4 } END { print s + 0 }' "$OUT"/warm-*-auto) |"

# What the sandbox's start costs by itself: a live instance's own bubblewrap command line
# (from /proc) run with /bin/true or `node -e 0` in place of the runtime. As root nimbus
# sets the sandbox up itself, with no command line to replay: bench/sandbox-parts.sh
# times its system calls and bubblewrap's parts.
bwrap_pid=""
if command -v hyperfine >/dev/null; then
  curl -s -o /dev/null "${BASE[auto]}/hello?name=Ada"
  # The sandboxed server's own instance (other nimbus processes may run on this machine).
  bwrap_pid=$(pgrep -x -P "${PIDS[1]}" bwrap | head -1 || true)
fi
if [ -z "$bwrap_pid" ]; then
  echo
  echo "(no bubblewrap process: the sandbox is set up by nimbus's forked child; see bench/sandbox-parts.sh)"
else
  python3 - "$bwrap_pid" "$OUT" <<'PY'
import shlex, sys
args = open(f"/proc/{sys.argv[1]}/cmdline", "rb").read().decode().split("\0")[:-1]
# The seccomp filters came on descriptors of nimbus's; the parts measure the rest.
while "--add-seccomp-fd" in args:
    at = args.index("--add-seccomp-fd")
    del args[at:at + 2]
cut = len(args) - 1 - args[::-1].index("--")  # after the last "--", before the runtime
for name, payload in [("sandbox-true", ["/bin/true"]), ("sandbox-node", ["/usr/bin/node", "-e", "0"])]:
    with open(f"{sys.argv[2]}/{name}.sh", "w") as f:
        f.write("#!/bin/sh\nexec " + " ".join(shlex.quote(a) for a in args[:cut + 1] + payload) + "\n")
PY
  chmod +x "$OUT"/sandbox-*.sh
  echo
  env -i PATH=/usr/bin:/bin hyperfine -N --warmup 5 -r 40 --export-markdown "$OUT/parts.md" \
    /bin/true "$OUT/sandbox-true.sh" "/usr/bin/node -e 0" "$OUT/sandbox-node.sh" > /dev/null
  sed "s|$OUT/||g" "$OUT/parts.md"
fi
echo
echo "raw figures: $OUT"
