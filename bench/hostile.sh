#!/usr/bin/env bash
# A healthy function beside a hostile one in the same app (issue 14): its latency while
# quiet and while the hostile function runs every attack of tests/it/isolation.rs (read
# secrets.key, open nimbus.db, read /etc/shadow, write its code, signal nimbus, fork
# 10,000 processes, allocate 4x memorySize, escape the process tree and grow, allocate
# until stopped, fill /tmp, loop past its timeout) and writes 1 GiB to stdout. The peer
# is the same function's quiet latency, measured in the same run. Results are recorded in
# BENCHMARKS.md.
#
#   cargo build --release -p nimbus && bench/hostile.sh
#
# Needs root (a uid per instance), curl, node, python3. The attacks are only
# safe sandboxed: there is no NIMBUS_SANDBOX=off run. Only talks to 127.0.0.1.
# Knobs: NIMBUS (binary), PORT, REPS (rounds of all the attacks), QUIET_N (quiet requests).
set -euo pipefail
cd "$(dirname "$0")/.."

NIMBUS=$(realpath "${NIMBUS:-target/release/nimbus}")
PORT=${PORT:-18190}
REPS=${REPS:-3}
QUIET_N=${QUIET_N:-300}
export NIMBUS_LOG=${NIMBUS_LOG:-warn}
OUT=$(mktemp -d /tmp/nimbus-hostile-bench.XXXXXX)
HOSTILE=crates/nimbus/tests/it/hostile

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

mkdir -p "$OUT/app" "$OUT/other"
echo "another app's data" > "$OUT/other/private.txt"
cp "$HOSTILE/attack.js" "$HOSTILE/healthy.js" "$OUT/app/"
cat > "$OUT/app/nimbus.yaml" <<YAML
service: hostile
provider:
  runtime: nodejs20.x
  memorySize: 128
  timeout: 10
  environment:
    OTHER_APP: $OUT/other/private.txt
functions:
  attack: { handler: attack.handler, events: [ { httpApi: "GET /attack/{what}" } ] }
  loop: { handler: attack.loop, timeout: 1, events: [ { httpApi: GET /loop } ] }
  healthy: { handler: healthy.handler, events: [ { httpApi: GET /healthy } ] }
YAML
printf 's3cr3t-value' | (cd "$OUT/app" && "$NIMBUS" secret set API_KEY >/dev/null)
"$NIMBUS" up "$OUT/app" --port "$PORT" > "$OUT/nimbus.out" 2> "$OUT/nimbus.err" &
NIMBUS_PID=$!
PIDS+=($NIMBUS_PID)
BASE=http://127.0.0.1:$PORT
for _ in $(seq 400); do curl -sf -o /dev/null "$BASE/healthy" && break; sleep 0.05; done
echo "# $NIMBUS, repo at $(git rev-parse --short HEAD), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
grep -h "isolation:" "$OUT/nimbus.out" || { echo "no isolation line: is the sandbox on?" >&2; exit 1; }

# The healthy client: one request at a time on a kept-alive connection, a pause of 20 ms
# between them (as the E2E test's), each time written to $1 until $2 exists.
sampler() {
  python3 - "$PORT" "$1" "$2" <<'PY'
import http.client, os, sys, time
port, out, stop = int(sys.argv[1]), sys.argv[2], sys.argv[3]
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
with open(out, "w") as f:
    while not os.path.exists(stop):
        t0 = time.perf_counter()
        try:
            conn.request("GET", "/healthy")
            res = conn.getresponse()
            res.read()
            status = res.status
        except OSError:
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            status = 0
        f.write(f"{(time.perf_counter() - t0) * 1000:.3f} {status} {time.time():.3f}\n")
        f.flush()
        time.sleep(0.02)
PY
}

# Each attack's line: name, status, seconds, and its start and end (Unix time), so each
# healthy request can be put beside the attack it overlapped.
attacks() {
  for what in secrets db other_app shadow code "signal?pid=$NIMBUS_PID" fork alloc escape hog tmp stdout loop; do
    path="/attack/$what"; [ "$what" = loop ] && path=/loop
    start=$(date +%s.%N)
    curl -s -o /dev/null -w "attack ${what%%\?*} %{http_code} %{time_total}" "$BASE$path"
    echo " $start $(date +%s.%N)"
  done
}

# stdin: numbers -> "p50 / p99 / max"
pcts() { sort -g | awk '{ a[NR] = $1 } END {
  i50 = int(NR * 0.5 + 0.999); i99 = int(NR * 0.99 + 0.999)
  printf "%.2f / %.2f / %.2f", a[i50], a[i99], a[NR] }'; }

for rep in $(seq "$REPS"); do
  # Quiet: QUIET_N requests with nothing else running.
  rm -f "$OUT/stop"
  sampler "$OUT/quiet-$rep" "$OUT/stop" & S=$!
  while [ "$( (wc -l < "$OUT/quiet-$rep") 2>/dev/null || echo 0)" -lt "$QUIET_N" ]; do sleep 0.2; done
  touch "$OUT/stop"; wait $S
  # Beside the attacks, one round of all of them.
  rm -f "$OUT/stop"
  sampler "$OUT/busy-$rep" "$OUT/stop" & S=$!
  attacks >> "$OUT/attacks.txt"
  touch "$OUT/stop"; wait $S
  sleep 2 # the escaped process and the fork bomb's sleeps are gone
done

echo
echo "| healthy GET /healthy, ms | requests | non-200 | p50 / p99 / max |"
echo "|---|---|---|---|"
for rep in $(seq "$REPS"); do
  for phase in quiet busy; do
    f="$OUT/$phase-$rep"
    what="quiet"; [ "$phase" = busy ] && what="beside the attacks"
    echo "| round $rep, $what | $(wc -l < "$f") | $(awk '$2 != 200' "$f" | wc -l) | $(cut -d' ' -f1 < "$f" | pcts) |"
  done
done
echo "| all rounds, quiet | $(cat "$OUT"/quiet-* | wc -l) | $(cat "$OUT"/quiet-* | awk '$2 != 200' | wc -l) | $(cat "$OUT"/quiet-* | cut -d' ' -f1 | pcts) |"
echo "| all rounds, beside the attacks | $(cat "$OUT"/busy-* | wc -l) | $(cat "$OUT"/busy-* | awk '$2 != 200' | wc -l) | $(cat "$OUT"/busy-* | cut -d' ' -f1 | pcts) |"
echo
echo "| healthy GET /healthy beside each attack, all rounds, ms | requests | p50 / p99 / max |"
echo "|---|---|---|"
python3 - "$OUT" <<'PY'
import glob, sys
out = sys.argv[1]
attacks = [line.split() for line in open(f"{out}/attacks.txt")]
samples = [line.split() for f in glob.glob(f"{out}/busy-*") for line in open(f)]
def pcts(xs):
    xs = sorted(xs)
    at = lambda q: xs[min(len(xs) - 1, max(0, int(len(xs) * q + 0.999) - 1))]
    return f"{at(0.5):.2f} / {at(0.99):.2f} / {xs[-1]:.2f}" if xs else "-"
names = list(dict.fromkeys(a[1] for a in attacks))
for name in names:
    spans = [(float(a[4]), float(a[5])) for a in attacks if a[1] == name]
    # A request overlaps the attack when it ended inside the span (its start is end - latency).
    lat = [float(s[0]) for s in samples
           if any(start <= float(s[2]) and float(s[2]) - float(s[0]) / 1000 <= end for start, end in spans)]
    print(f"| {name} | {len(lat)} | {pcts(lat)} |")
PY
echo
echo "attacks (status and seconds, per round):"
awk '{ s[$2] = s[$2] " " $3 "/" $4 } END { for (k in s) print "  " k ":" s[k] }' "$OUT/attacks.txt" | sort
echo "raw figures: $OUT"
