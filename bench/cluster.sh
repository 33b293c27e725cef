#!/usr/bin/env bash
# Queue send+consume through the embedded store vs through NATS JetStream (cluster mode,
# one node), same run, interleaved (issue 17's benchmark). Results go in BENCHMARKS.md.
#
#   cargo build --release -p nimbus && bench/cluster.sh
#
# Each repetition starts `nimbus up bench/events-app` (a fresh copy) twice: as is
# (embedded), and with --cluster pointing at a nats-server this script starts (JetStream,
# file storage in a temp dir, loopback, a random port). bench/events-send.js then sends N
# messages over CONC keep-alive connections to q1 (one message a request, consumer batch
# size 1) and to q10 (SendMessageBatch of 10, consumer batch size 10, reservedConcurrency
# 4) and polls until the queue is empty: "live" is N / (first send -> empty), "delayed"
# sends them all visible at once and times the consumers alone on the backlog.
# Needs nats-server (Debian's package), node, jq. Only talks to 127.0.0.1.
# Knobs: NIMBUS (binary), PORT, N, CONC, REPS, NIMBUS_LOG.
set -euo pipefail
cd "$(dirname "$0")/.."

NIMBUS=${NIMBUS:-target/release/nimbus}
PORT=${PORT:-18190}
N=${N:-10000}
CONC=${CONC:-16}
REPS=${REPS:-3}
export NIMBUS_LOG=${NIMBUS_LOG:-warn}
OUT=$(mktemp -d /tmp/nimbus-cluster.XXXXXX)

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

stats() { sort -g | awk -v f="$1" '{ a[NR] = $1 } END {
  m = NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
  printf f " (" f "–" f ")", m, a[1], a[NR] }'; }

echo "# $NIMBUS ($("$NIMBUS" --version)), $(nats-server --version), repo at $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "# node $(node --version), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ), N=$N CONC=$CONC REPS=$REPS, results in $OUT"

nats-server -js -a 127.0.0.1 -p -1 -sd "$OUT/js" --ports_file_dir "$OUT" 2>"$OUT/nats.log" & NATS_PID=$!; PIDS+=($!)
for _ in $(seq 200); do [ -s "$OUT/nats-server_$NATS_PID.ports" ] && break; sleep 0.05; done
NATS_URL=$(jq -r '.nats[0]' "$OUT/nats-server_$NATS_PID.ports")

run() { # mode rep
  local mode=$1 app=$OUT/app-$1-$2
  cp -r bench/events-app "$app"
  local flags=()
  [ "$mode" = jetstream ] && flags=(--cluster "$NATS_URL")
  "$NIMBUS" up "$app" --port "$PORT" "${flags[@]}" >"$OUT/nimbus-$mode-$2.out" 2>"$OUT/nimbus-$mode-$2.log" & local pid=$!
  for _ in $(seq 400); do [ -s "$app/.nimbus/up.json" ] && break; sleep 0.05; done
  local admin token
  admin=$(jq -r .admin "$app/.nimbus/up.json"); admin=${admin#http://}
  token=$(jq -r .token "$app/.nimbus/up.json")
  for _ in $(seq 400); do curl -sf -o /dev/null -H "Authorization: Bearer $token" "http://$admin/v1/queues" && break; sleep 0.05; done
  node bench/events-send.js "$app" q1 500 "$CONC" >/dev/null   # warm-up: instances started
  BATCH=10 node bench/events-send.js "$app" q10 1000 "$CONC" >/dev/null
  for q in q1 q10; do for m in live delayed; do
    batch=1; [ "$q" = q10 ] && batch=10
    BATCH=$batch node bench/events-send.js "$app" "$q" "$N" "$CONC" "$m" \
      | jq -c --arg mode "$mode" '. + {backend: $mode}' | tee -a "$OUT/queues.jsonl"
  done; done
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

for rep in $(seq "$REPS"); do
  run embedded "$rep"
  run jetstream "$rep"
done

echo
echo "| backend | queue (sends) | live: msg/s end to end | live: send rate, msg/s | delayed: backlog drain, msg/s |"
echo "|---|---|---|---|---|"
for backend in embedded jetstream; do for q in q1 q10; do
  sel() { jq -r --arg b "$backend" --arg q "$q" --arg m "$1" "select(.backend == \$b and .queue == \$q and .mode == \$m) | $2" "$OUT/queues.jsonl"; }
  label="$q, single sends"; [ "$q" = q10 ] && label="$q, batch sends of 10"
  echo "| $backend | $label | $(sel live .e2e_per_s | stats %.0f) | $(sel live .send_per_s | stats %.0f) | $(sel delayed .drain_per_s | stats %.0f) |"
done; done
