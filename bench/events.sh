#!/usr/bin/env bash
# Queue and KV throughput through nimbus's control API (issue 4's benchmark).
# Results are recorded in BENCHMARKS.md.
#
#   cargo build --release -p nimbus && bench/events.sh
#
# 1. queues: `nimbus up bench/events-app` (a node function consuming queue q1 with
#    batchSize 1, another consuming q10 with batchSize 10 and reservedConcurrency 4; each
#    only counts its records). bench/events-send.js sends N messages (to q10 in batches of
#    10 through POST /v1/queues/{q}/messages/batch, to q1 one a request through
#    POST /v1/queues/{q}/messages) over CONC keep-alive connections as fast as it can and
#    polls GET /v1/queues until the queue is empty (every message received, processed,
#    deleted). Live: end-to-end rate = N / (first send -> queue empty). Delayed: every
#    message sent with a delay that makes them visible together after the sends, then the
#    backlog / time to empty = the consumers' rate alone. REPS repetitions, interleaved.
# 2. KV: wrk -t1 -c1 / -c32, GET of one key and PUT of 10,000 keys (100-byte values)
#    through /v1/kv/bench/keys/..., REPS repetitions interleaved.
# 3. store level (no HTTP): the rates `cargo test -p nimbus-store` prints (if STORE=1).
# Needs wrk, node, curl, jq. Only talks to 127.0.0.1.
# Knobs: NIMBUS (binary), PORT, N, CONC, REPS, DURATION, STORE, NIMBUS_LOG.
set -euo pipefail
cd "$(dirname "$0")/.."

NIMBUS=${NIMBUS:-target/release/nimbus}
PORT=${PORT:-18180}
N=${N:-20000}
CONC=${CONC:-16}
REPS=${REPS:-3}
DURATION=${DURATION:-10s}
STORE=${STORE:-1}
export NIMBUS_LOG=${NIMBUS_LOG:-warn}
OUT=$(mktemp -d /tmp/nimbus-events.XXXXXX)
APP=$OUT/app
cp -r bench/events-app "$APP"

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

stats() { sort -g | awk -v f="$1" '{ a[NR] = $1 } END {
  m = NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
  printf f " (" f "–" f ")", m, a[1], a[NR] }'; }

echo "# $NIMBUS ($("$NIMBUS" --version)), repo at $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "# node $(node --version), $(nproc) cores, $(date -u +%FT%TZ), N=$N CONC=$CONC, results in $OUT"

"$NIMBUS" up "$APP" --port "$PORT" 2>"$OUT/nimbus.log" & NIMBUS_PID=$!; PIDS+=($!)
for _ in $(seq 400); do [ -s "$APP/.nimbus/up.json" ] && break; sleep 0.05; done
ADMIN=$(jq -r .admin "$APP/.nimbus/up.json"); ADMIN=${ADMIN#http://}
export NIMBUS_TOKEN; NIMBUS_TOKEN=$(jq -r .token "$APP/.nimbus/up.json")
case $ADMIN in 127.0.0.1:*) ;; *) echo "admin address $ADMIN is not loopback" >&2; exit 1 ;; esac
for _ in $(seq 400); do curl -sf -o /dev/null -H "Authorization: Bearer $NIMBUS_TOKEN" "http://$ADMIN/v1/queues" && break; sleep 0.05; done

# ---- 1. queues -------------------------------------------------------------------------
node bench/events-send.js "$APP" q1 1000 "$CONC" >/dev/null  # warm-up: instances started
node bench/events-send.js "$APP" q10 1000 "$CONC" >/dev/null
for _ in $(seq "$REPS"); do
  for q in q1 q10; do for mode in live delayed; do
    # q10 is fed with SendMessageBatch (10 per request, one commit), q1 one message a request.
    batch=1; [ "$q" = q10 ] && batch=10
    BATCH=$batch node bench/events-send.js "$APP" "$q" "$N" "$CONC" "$mode" | tee -a "$OUT/queues.jsonl"
  done; done
done
echo
echo "| queue (sends) | live: msg/s end to end (first send -> empty) | live: send rate, msg/s | delayed: backlog drain, msg/s (consumers alone) |"
echo "|---|---|---|---|"
for q in q1 q10; do
  sel() { jq -r --arg q "$q" --arg m "$1" "select(.queue == \$q and .mode == \$m) | $2" "$OUT/queues.jsonl"; }
  label="$q, single sends"; [ "$q" = q10 ] && label="$q, batch sends of 10"
  echo "| $label | $(sel live .e2e_per_s | stats %.0f) | $(sel live .send_per_s | stats %.0f) | $(sel delayed .drain_per_s | stats %.0f) |"
done

# ---- 2. KV -----------------------------------------------------------------------------
curl -sf -X PUT -H "Authorization: Bearer $NIMBUS_TOKEN" --data-binary 'hello' "http://$ADMIN/v1/kv/bench/keys/k1" >/dev/null
run_wrk() { # op conns
  wrk -t1 -c"$2" -d"$DURATION" --latency -s "bench/kv-$1.lua" "http://$ADMIN" | awk -v op="$1" -v c="$2" '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; return v * 1000 }
    $1 == "50%" { p50 = ms($2) }  $1 == "99%" { p99 = ms($2) }
    /^Requests\/sec/ { rps = $2 }
    /Non-2xx|Socket errors/ { err = err $0 }
    END { printf "%s %s %.0f %.3f %.3f %s\n", op, c, rps, p50, p99, (err ? "ERR:" err : "ok") }'
}
for _ in $(seq "$REPS"); do
  for c in 1 32; do for op in get put; do run_wrk "$op" "$c" | tee -a "$OUT/kv.txt"; done; done
done
cleanup; PIDS=()
echo
echo "| KV through the API | conns | ops/s | p50 ms | p99 ms |"
echo "|---|---|---|---|---|"
for op in get put; do for c in 1 32; do
  rows=$(awk -v o="$op" -v c="$c" '$1 == o && $2 == c' "$OUT/kv.txt")
  echo "| $op | $c | $(cut -d' ' -f3 <<<"$rows" | stats %.0f) | $(cut -d' ' -f4 <<<"$rows" | stats %.3f) | $(cut -d' ' -f5 <<<"$rows" | stats %.2f) |"
done; done

# ---- 3. store level --------------------------------------------------------------------
if [ "$STORE" = 1 ]; then
  echo
  echo "# store level, no HTTP (cargo test -p nimbus-store -- --nocapture throughput):"
  cargo test -q -p nimbus-store -- --nocapture throughput 2>&1 | grep -i 'throughput,' || true
fi
