#!/usr/bin/env bash
# CPU per request of a running `nimbus up` serving a Worker and of its Workers host, under
# wrk: what BENCHMARKS.md's A/B rows of per-request CPU come from (toggle a change in
# place between calls: re-create a SQL trigger, swap .nimbus/runtime/workers/host.mjs and
# stop the host, ...). Only talks to 127.0.0.1.
#
#   bench/workers-cpu.sh NIMBUS_PID CONNS [SECONDS=5] [PORT=18480] [PATH=/hello?name=Ada]
set -euo pipefail
NP=$1; C=$2; D=${3:-5}; PORT=${4:-18480}; URL="http://127.0.0.1:$PORT${5:-/hello?name=Ada}"
curl -s -o /dev/null "$URL" # starts the host if it was stopped
HP=$(ps -eo pid,ppid,comm | awk -v p="$NP" '$2 == p && $3 == "node" { print $1 }' | head -1)
ticks() { awk '{ print $14, $15 }' "/proc/$1/stat"; } # utime, stime in clock ticks
read -r nu0 ns0 < <(ticks "$NP"); read -r hu0 hs0 < <(ticks "$HP")
out=$(wrk -t1 -c"$C" -d"${D}s" "$URL")
read -r nu1 ns1 < <(ticks "$NP"); read -r hu1 hs1 < <(ticks "$HP")
n=$(echo "$out" | awk '/requests in/ { print $1 }')
rps=$(echo "$out" | awk '/Requests\/sec/ { print $2 }')
tick_us=$((1000000 / $(getconf CLK_TCK)))
us() { echo $((($2 - $1) * tick_us / n)); }
echo "c=$C req/s=$rps nimbus us/request user+sys $(us "$nu0" "$nu1")+$(us "$ns0" "$ns1") host $(us "$hu0" "$hu1")+$(us "$hs0" "$hs1")"
