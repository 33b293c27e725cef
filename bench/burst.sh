#!/usr/bin/env bash
# Bursts from zero: N concurrent requests to a function scaled to zero, ROUNDS times.
# Prints, per round, the median and the slowest of the requests' curl time_total.
#
#   cargo build --release -p nimbus && bench/burst.sh
#
# The function is examples/hello's Node handler; HANDLER_MS=1000 makes it wait that long
# before answering (an instance then stays busy, so the burst needs N instances).
# Knobs: NIMBUS (binary), PORT, N (32), ROUNDS (5), HANDLER_MS (0). Only talks to 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
NIMBUS=${NIMBUS:-target/release/nimbus}
PORT=${PORT:-18400}
N=${N:-32}
ROUNDS=${ROUNDS:-5}
HANDLER_MS=${HANDLER_MS:-0}
export NIMBUS_LOG=${NIMBUS_LOG:-warn}

APP=$(mktemp -d /tmp/nimbus-burst.XXXXXX)
cp examples/hello/nimbus.yaml examples/hello/handler.js examples/hello/handler.py "$APP/"
if [ "$HANDLER_MS" != 0 ]; then
  cat >"$APP/handler.js" <<JS
exports.handler = async () => {
  await new Promise((resolve) => setTimeout(resolve, $HANDLER_MS));
  return { statusCode: 200, body: 'ok' };
};
JS
fi
"$NIMBUS" up "$APP" --port "$PORT" --idle-timeout 1s --keep-alive fixed >/dev/null 2>"$APP/nimbus.log" & PID=$!
trap 'kill $PID 2>/dev/null || true; wait 2>/dev/null || true' EXIT
for _ in $(seq 200); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/hello" && break; sleep 0.05; done

echo "# $NIMBUS, N=$N, HANDLER_MS=$HANDLER_MS, $(nproc) cores, $(date -u +%FT%TZ)"
for _ in $(seq "$ROUNDS"); do
  sleep 2.5 # idle timeout 1 s + reaper period: scaled to zero
  seq "$N" | xargs -P "$N" -I{} curl -s -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:$PORT/hello?name=Ada" |
    sort -g | awk '{ a[NR] = $1 * 1000 } END { printf "p50 %.0f ms  slowest %.0f ms\n", a[int((NR + 1) / 2)], a[NR] }'
done
