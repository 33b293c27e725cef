#!/usr/bin/env bash
# The dashboard's server time with 100,000 invocation records in the store (issue 19):
# seeds the records straight into a fresh app's .nimbus/nimbus.db with sqlite3 (all within
# the overview's last hour, 2% failed, 0.1% cold), then times the overview and a function
# page with curl on loopback, beside `nimbus top --once` and `nimbus invocations` on the
# same store. Knobs: NIMBUS (the binary), N (records), REPS.
set -euo pipefail
NIMBUS=${NIMBUS:-target/release/nimbus}
N=${N:-100000}
REPS=${REPS:-7}
dir=$(mktemp -d /tmp/nimbus-dashboard-bench.XXXXXX)
cat > "$dir/nimbus.yaml" <<'YAML'
service: bench
provider:
  runtime: nodejs20.x
functions:
  api:
    handler: api.handler
    events:
      - httpApi: GET /
YAML
echo "exports.handler = async () => ({ statusCode: 200, body: 'ok' });" > "$dir/api.js"

start() {
  "$NIMBUS" up "$dir" --port 0 > "$dir/up.log" 2>&1 &
  for _ in $(seq 100); do [ -s "$dir/.nimbus/up.json" ] && break; sleep 0.1; done
  admin=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['admin'])" "$dir/.nimbus/up.json")
  token=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['token'])" "$dir/.nimbus/up.json")
  pid=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['pid'])" "$dir/.nimbus/up.json")
}
stop() { kill "$pid"; while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done; }

start; stop   # creates the store and its schema
now=$(python3 -c "import time; print(int(time.time() * 1e6))")
sqlite3 "$dir/.nimbus/nimbus.db" "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < $N - 1)
INSERT INTO invocations (request_id, function, version, trigger, start_us, duration_us, billed_ms,
  memory_mb, max_memory_mb, cold_start, init_duration_us, outcome, error_type, error_message,
  trace_id, span_id, parent_span_id, log_lines_dropped)
SELECT printf('00000000-0000-4000-8000-%012d', i), 'api', '\$LATEST', 'http',
  $now - 3000000000 + i * (3000000000 / $N), 1000 + (i % 97) * 50, 2 + (i % 97) / 20, 1024, 60,
  (i % 1000) = 0, CASE WHEN i % 1000 = 0 THEN 80000 END,
  CASE WHEN i % 50 = 0 THEN 'error' ELSE 'ok' END, CASE WHEN i % 50 = 0 THEN 'Error' END, NULL,
  printf('%032x', i), printf('%016x', i), NULL, 0 FROM n;
-- The per-minute rollups nimbus's writer adds with each batch it commits.
INSERT INTO invocation_minutes (minute, function, lower_us, n, n_errors, n_throttles, n_cold, sum_us)
SELECT start_us / 60000000, function,
  (SELECT lower_us FROM duration_buckets WHERE lower_us <= duration_us ORDER BY lower_us DESC LIMIT 1),
  count(*), sum(outcome <> 'ok'), 0, sum(cold_start), sum(duration_us)
FROM invocations GROUP BY 1, 2, 3;"
start
time_page() {
  for _ in $(seq "$REPS"); do
    curl -s -o /dev/null -w "%{time_total}\n" -H "authorization: Bearer $token" "http://$admin/_nimbus$1"
  done | sort -n | awk -v p="$1" '{a[NR] = $1 * 1000} END {printf "%-26s median %7.1f ms  (min %.1f, max %.1f)\n", p, a[int((NR + 1) / 2)], a[1], a[NR]}'
}
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
curl -s -H "authorization: Bearer $token" "http://$admin/_nimbus/" | grep -o 'The last hour: [^<]*'
time_page /
time_page /functions/api
time_page '/functions/api?failed=1'
peer() {
  for _ in $(seq "$REPS"); do
    /usr/bin/time -f "%e" "$NIMBUS" "$@" --dir "$dir" > /dev/null 2>> "$dir/times"
    tail -1 "$dir/times"
  done | sort -n | awk -v p="nimbus $*" '{a[NR] = $1 * 1000} END {printf "%-26s median %7.1f ms  (min %.1f, max %.1f)\n", p, a[int((NR + 1) / 2)], a[1], a[NR]}'
}
peer top --once
peer invocations api --limit 100
stop
rm -rf "$dir"
