#!/usr/bin/env bash
# Load test of the demo API: /health and /api/me through the whole tower-shield stack
# (examples/demo_api) against the same routes with no tower-shield layer at all
# (benches/fixtures/bare_api.rs), back to back, with wrk; /health also behind only RequestId +
# SecurityHeaders + Cors (`LAYERS=shield`) and behind tower-http's equivalent layers
# (`LAYERS=tower-http`). Prints requests/s, latency percentiles, the server's CPU time per
# request and the ratios to bare per route (medians of ROUNDS alternating runs).
#
#   apt-get install -y wrk      # Debian's wrk
#   benches/load.sh             # DURATION=10s CONNECTIONS=32 THREADS=1 ROUNDS=3 to change
#
# The demo runs with the memory store, DEMO_RATE_LIMIT_SCALE=1000000 (every quota a million
# times larger, so the limiter still decides on every request but never refuses) and
# DEMO_ACCESS_LOG=false (the per-request log line is not what is measured; set
# ACCESS_LOG=true to include it). /api/me uses one signed-in user's token, which is verified
# once and then served from the JWT cache, as a real client's would be.
set -euo pipefail

cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-1}
ROUNDS=${ROUNDS:-3}
ACCESS_LOG=${ACCESS_LOG:-false}
# SERVER_CPUS / WRK_CPUS (e.g. 1 and 0) pin the servers and wrk with taskset, so wrk does not
# steal the server's CPU; leave them unset on a shared machine, where a pinned CPU may be busy.
SERVER_PIN=()
WRK_PIN=()
[ -n "${SERVER_CPUS:-}" ] && SERVER_PIN=(taskset -c "$SERVER_CPUS")
[ -n "${WRK_CPUS:-}" ] && WRK_PIN=(taskset -c "$WRK_CPUS")

command -v wrk >/dev/null || { echo "wrk not found: apt-get install -y wrk" >&2; exit 1; }
cargo build --release --example demo_api --example bare_api >&2
BIN=target/release/examples

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# start NAME BINARY [ENV...]: runs it on a free port, sets $ADDR.
start() {
  local name=$1 bin=$2; shift 2
  env BIND_ADDR=127.0.0.1:0 "$@" "${SERVER_PIN[@]}" "$bin" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  PIDS+=($!)
  for _ in $(seq 1 200); do
    ADDR=$(sed -n 's/^listening on //p' "$WORK/$name.out")
    [ -n "$ADDR" ] && return 0
    sleep 0.05
  done
  echo "$name did not start:" >&2; cat "$WORK/$name.err" >&2; exit 1
}

start demo "$BIN/demo_api" DEMO_RATE_LIMIT_SCALE=1000000 DEMO_ACCESS_LOG="$ACCESS_LOG" \
  COOKIE_SECURE=false STORE_URL=memory
DEMO=$ADDR
DEMO_PID=${PIDS[-1]}
start bare "$BIN/bare_api"
BARE=$ADDR
BARE_PID=${PIDS[-1]}
# The issue's /health goal names RequestId + SecurityHeaders + Cors: the same routes behind
# exactly those three layers, and behind tower-http's equivalent (the anchor), in the same run.
start edge "$BIN/bare_api" LAYERS=shield
EDGE=$ADDR
EDGE_PID=${PIDS[-1]}
start edgefive "$BIN/bare_api" LAYERS=shield-five
EDGEFIVE=$ADDR
EDGEFIVE_PID=${PIDS[-1]}
start towerhttp "$BIN/bare_api" LAYERS=tower-http
TOWERHTTP=$ADDR
TOWERHTTP_PID=${PIDS[-1]}
# And the floor: no layer logic, the same response header lines set from static values.
start bytes "$BIN/bare_api" LAYERS=same-bytes
BYTES=$ADDR
BYTES_PID=${PIDS[-1]}

curl -sf -o /dev/null -X POST "$DEMO/auth/register" -H 'content-type: application/json' \
  -d '{"email":"load@example.com","password":"load test password"}'
TOKEN=$(curl -sf -X POST "$DEMO/auth/login" -H 'content-type: application/json' \
  -d '{"email":"load@example.com","password":"load test password"}' |
  sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')
[ -n "$TOKEN" ] || { echo "no token" >&2; exit 1; }
# Both servers get the same request headers.
AUTH="authorization: Bearer $TOKEN"
curl -sf -o /dev/null -H "$AUTH" "$DEMO/api/me"

# CPU time (user + system, clock ticks) the process has used.
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)

# run URL PID -> "rps p50 p99 cpu_us_per_request" (latencies in ms). The server's CPU time
# per request is the steadier figure on a shared machine: it does not depend on how much
# CPU wrk and other processes left to the server.
run() {
  local before after
  before=$(ticks "$2")
  "${WRK_PIN[@]}" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -H "$AUTH" "$1" >"$WORK/wrk.txt" </dev/null
  after=$(ticks "$2")
  if grep -q "Non-2xx" "$WORK/wrk.txt"; then
    echo "non-2xx answers from $1:" >&2; cat "$WORK/wrk.txt" >&2; exit 1
  fi
  awk -v cpu=$((after - before)) -v hz="$HZ" '
    function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
    /requests in/ { n=$1 }
    /Requests\/sec/ { rps=$2 }
    $1=="50%" { p50=ms($2) }
    $1=="99%" { p99=ms($2) }
    END { printf "%s %.3f %.3f %.2f\n", rps, p50, p99, cpu * 1000000 / hz / n }' "$WORK/wrk.txt"
}

median() { sort -g | awk '{ v[NR]=$1 } END { print v[int((NR+1)/2)] }'; }

echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION, $ROUNDS alternating rounds, access log: $ACCESS_LOG, server CPUs: ${SERVER_CPUS:-any}, wrk CPUs: ${WRK_CPUS:-any}"
printf '%-9s %-11s %10s %9s %9s %12s %8s %8s\n' route stack 'req/s' 'p50 ms' 'p99 ms' 'CPU us/req' 'ratio' 'CPU ratio'
# Stacks per route: "name url-prefix pid". bare first: the ratios are to it.
health_stacks="bare $BARE $BARE_PID
same-bytes $BYTES $BYTES_PID
edge $EDGE $EDGE_PID
edge-five $EDGEFIVE $EDGEFIVE_PID
tower-http $TOWERHTTP $TOWERHTTP_PID
demo $DEMO $DEMO_PID"
me_stacks="bare $BARE $BARE_PID
same-bytes $BYTES $BYTES_PID
demo $DEMO $DEMO_PID"
for route in /health /api/me; do
  if [ "$route" = /health ]; then stacks=$health_stacks; else stacks=$me_stacks; fi
  while read -r name _ _; do : >"$WORK/res.$name"; done <<<"$stacks"
  # Alternate the stacks round by round so a slow phase of the machine hits them all alike.
  for round in $(seq 1 "$ROUNDS"); do
    while read -r name url pid; do
      run "$url$route" "$pid" >>"$WORK/res.$name"
    done <<<"$stacks"
  done
  while read -r name _ _; do
    rps=$(cut -d' ' -f1 "$WORK/res.$name" | median)
    p50=$(cut -d' ' -f2 "$WORK/res.$name" | median)
    p99=$(cut -d' ' -f3 "$WORK/res.$name" | median)
    cpu=$(cut -d' ' -f4 "$WORK/res.$name" | median)
    if [ "$name" = bare ]; then bare_rps=$rps bare_cpu=$cpu; fi
    awk -v r="$route" -v n="$name" -v rps="$rps" -v p50="$p50" -v p99="$p99" -v cpu="$cpu" \
      -v brps="$bare_rps" -v bcpu="$bare_cpu" \
      'BEGIN { printf "%-9s %-11s %10.0f %9s %9s %12s %8.3f %8.3f\n", r, n, rps, p50, p99, cpu, rps/brps, bcpu/cpu }'
  done <<<"$stacks"
done
echo "ratio: throughput / bare's; CPU ratio: bare's CPU per request / this stack's (the steadier one)."
echo "same-bytes: edge's response header lines from static values (on /api/me also the demo's two"
echo "RateLimit fields), no layer logic; edge: RequestId +"
echo "SecurityHeaders::api() + Cors only; edge-five: the same with tower-http's five security headers"
echo "(HSTS is sent over HTTPS only, so four here); tower-http: its request id, CORS and five header layers;"
echo "demo: the whole demo stack (on /health: also the 'default' rate limit)."
