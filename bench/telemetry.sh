#!/usr/bin/env bash
# Cost of telemetry (issue 5): warm GET /hello on examples/hello served by
# `nimbus up --telemetry on` (the default: invocation records, logs and spans written to
# SQLite) and by `nimbus up --telemetry off`, both running, measured interleaved.
# Results are recorded in BENCHMARKS.md.
#
#   cargo build --release -p nimbus && bench/telemetry.sh
#
# wrk -t1 -c1 and -c32, -d10s --latency; REPS repetitions, on/off alternating (the order
# flips every repetition); medians and (min–max). Each app is a copy of examples/hello in
# a temporary folder, so the two servers have state folders of their own. Besides req/s,
# each run records the CPU time the server and its function processes used per request
# (from /proc), which other load on the machine disturbs far less than req/s.
# Needs wrk. Only talks to 127.0.0.1. Knobs: NIMBUS, PORT, DURATION, REPS, NIMBUS_LOG.
set -euo pipefail
cd "$(dirname "$0")/.."

NIMBUS=${NIMBUS:-target/release/nimbus}
PORT=${PORT:-18280}
DURATION=${DURATION:-10s}
REPS=${REPS:-3}
export NIMBUS_LOG=${NIMBUS_LOG:-warn}
PATH="$(dirname "$(python3 -c 'import sys; print(sys.executable)')"):$PATH"
OUT=$(mktemp -d /tmp/nimbus-telemetry.XXXXXX)
Q='/hello?name=Ada'

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

stats() { sort -g | awk -v f="$1" '{ a[NR] = $1 } END {
  m = NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
  printf f " (" f "–" f ")", m, a[1], a[NR] }'; }

echo "# $NIMBUS ($("$NIMBUS" --version)), repo at $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "# $(nproc) cores, $(date -u +%FT%TZ), NIMBUS_LOG=$NIMBUS_LOG, results in $OUT"

declare -A URL PID
i=0
for t in on off; do
  mkdir -p "$OUT/app-$t"; find examples/hello -maxdepth 1 -type f -exec cp {} "$OUT/app-$t/" \;
  "$NIMBUS" up "$OUT/app-$t" --port $((PORT + i)) --telemetry "$t" 2>"$OUT/nimbus-$t.log" & PIDS+=($!)
  PID[$t]=$!
  URL[$t]="http://127.0.0.1:$((PORT + i))$Q"
  i=$((i + 1))
done
for t in on off; do
  for _ in $(seq 400); do curl -sf -o /dev/null "${URL[$t]}" && break; sleep 0.05; done
  # Warm-up: scale out to 32 instances and give their JITs time, so neither server is
  # measured while its functions are still warming up.
  for _ in 1 2 3 4; do wrk -t1 -c32 -d5s --timeout 10s "${URL[$t]}" >/dev/null; done
done

# CPU time (clock ticks) used so far by a server and its function processes: its own, that
# of children it has reaped, and that of the live ones.
# "all own": CPU time (clock ticks) used so far by a server with its function processes
# (its own, that of children it has reaped, that of the live ones), and by the server alone.
cpu_ticks() { # pid
  local own all kid
  own=$(awk '{ print $14 + $15 }' "/proc/$1/stat")
  all=$(awk '{ print $14 + $15 + $16 + $17 }' "/proc/$1/stat")
  for kid in $(pgrep -P "$1"); do
    all=$((all + $(awk '{ print $14 + $15 }' "/proc/$kid/stat" 2>/dev/null || echo 0)))
  done
  echo "$all $own"
}
run_wrk() { # telemetry conns
  local before after
  before=$(cpu_ticks "${PID[$1]}")
  wrk -t1 -c"$2" -d"$DURATION" --timeout 10s --latency "${URL[$1]}" > "$OUT/wrk.tmp"
  after=$(cpu_ticks "${PID[$1]}")
  awk -v t="$1" -v c="$2" -v before="$before" -v after="$after" -v hz="$(getconf CLK_TCK)" '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; return v * 1000 }
    $1 == "50%" { p50 = ms($2) }  $1 == "99%" { p99 = ms($2) }
    /^Requests\/sec/ { rps = $2 }
    / requests in / { n = $1 }
    /Non-2xx|Socket errors/ { err = err $0 }
    END {
      split(before, b, " "); split(after, a, " ")
      printf "%s %s %.0f %.3f %.3f %.1f %.1f %s\n", t, c, rps, p50, p99,
        (a[1] - b[1]) / hz * 1e6 / n, (a[2] - b[2]) / hz * 1e6 / n, (err ? "ERR:" err : "ok")
    }' "$OUT/wrk.tmp"
}
for rep in $(seq "$REPS"); do
  order=(on off); [ $((rep % 2)) = 0 ] && order=(off on)
  for c in 1 32; do for t in "${order[@]}"; do run_wrk "$t" "$c" | tee -a "$OUT/warm.txt"; done; done
done
cleanup; PIDS=()
rows_on=$(sqlite3 "$OUT/app-on/.nimbus/nimbus.db" 'select count(*) from invocations' 2>/dev/null || echo '?')
echo "# invocation records written with telemetry on: $rows_on"

echo
echo "| telemetry | conns | req/s | p50 ms | p99 ms | CPU µs/request: nimbus + functions | of which nimbus |"
echo "|---|---|---|---|---|---|---|"
for c in 1 32; do for t in on off; do
  rows=$(awk -v t="$t" -v c="$c" '$1 == t && $2 == c' "$OUT/warm.txt")
  echo "| $t | $c | $(cut -d' ' -f3 <<<"$rows" | stats %.0f) | $(cut -d' ' -f4 <<<"$rows" | stats %.3f) | $(cut -d' ' -f5 <<<"$rows" | stats %.2f) | $(cut -d' ' -f6 <<<"$rows" | stats %.0f) | $(cut -d' ' -f7 <<<"$rows" | stats %.0f) |"
done; done
for c in 1 32; do
  med() { awk -v t="$1" -v c="$c" '$1 == t && $2 == c { print $3 }' "$OUT/warm.txt" | stats %.0f | cut -d' ' -f1; }
  # paired per repetition: rows come in on/off pairs for the same rep and conns
  paired=$(awk -v c="$c" '$2 == c { r[$1] = $3; if (("on" in r) && ("off" in r)) { print (r["off"] - r["on"]) / r["off"] * 100; delete r } }' "$OUT/warm.txt" | stats %.1f)
  echo "telemetry cost at $c conns: $(awk -v a="$(med on)" -v b="$(med off)" 'BEGIN { printf "%.1f %%", (b - a) / b * 100 }') of req/s (medians); paired per repetition $paired % (target <= 5 %)"
  # CPU per request is what throughput is made of on a saturated machine, and it does not
  # move with other work competing for the cores the way req/s does.
  cpu() { awk -v t="$1" -v c="$c" -v f="$2" '$1 == t && $2 == c { print $f }' "$OUT/warm.txt" | stats %.1f | cut -d' ' -f1; }
  echo "telemetry cost at $c conns in CPU per request: $(awk -v a="$(cpu on 6)" -v b="$(cpu off 6)" 'BEGIN { printf "%.1f %%", (a - b) / b * 100 }') (medians: $(cpu on 6) vs $(cpu off 6) µs)"
  # Telemetry runs in the nimbus process only; the function processes do the same work either
  # way but are the noisiest part (how far each of 32 node processes has warmed its JIT).
  echo "telemetry cost at $c conns, nimbus's extra CPU over all CPU with it off: $(awk -v a="$(cpu on 7)" -v b="$(cpu off 7)" -v t="$(cpu off 6)" 'BEGIN { printf "%.1f %%", (a - b) / t * 100 }') ($(cpu on 7) vs $(cpu off 7) µs of $(cpu off 6))"
done
