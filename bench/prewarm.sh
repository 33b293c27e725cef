#!/usr/bin/env bash
# Trace replay of keep-alive policies (issue 18): a synthetic trace shaped by the Azure
# Functions 2019 trace's published statistics (research note workflows-streams-prewarm.md,
# C2), replayed through nimbus-core::prewarm (the code the pool's reaper runs) on a
# virtual clock: fixed keep-alive 5, 10 and 20 minutes against the hybrid histogram policy
# with and without schedule-aware pre-warming. Cold-start percentage, p75 per-function
# cold-start percentage and idle instance-hours, for two instance models (one instance per
# function serving all its invocations, as the paper models an app; one invocation per
# instance, as the pool by default). Results are recorded in BENCHMARKS.md.
#
#   bench/prewarm.sh                      # 500 functions, 7 days, the first 2 warm-up
#   FUNCTIONS=1000 DAYS=14 bench/prewarm.sh
#   TRACE=/tmp/trace.csv bench/prewarm.sh # also write the trace (app,func,end_timestamp,duration,trigger)
#
# REPLAY_MIN_CV, REPLAY_TAIL and REPLAY_MIN_SAMPLES try other hybrid settings. Nothing is
# served: no network.
set -euo pipefail
cd "$(dirname "$0")/.."

FUNCTIONS=${FUNCTIONS:-500}
DAYS=${DAYS:-7}
WARMUP=${WARMUP:-2}
SEED=${SEED:-42}
cargo build --release -q -p nimbus-core --example prewarm_replay
args=(--functions "$FUNCTIONS" --days "$DAYS" --warmup-days "$WARMUP" --seed "$SEED" --by-trigger)
if [[ -n ${TRACE:-} ]]; then
  args+=(--trace "$TRACE")
fi
target/release/examples/prewarm_replay "${args[@]}"
