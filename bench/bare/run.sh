#!/usr/bin/env bash
# countd's HTTP API against bench/bare (net/http answering a fixed JSON body after
# bumping an atomic), one process each on loopback, the same load generator, back to back so
# that each ratio compares runs of the same minute.
#
# Per round: wrk closed loop on POST /v1/counters/bench/k{1..1000}/incr ({"by":1}, the
# namespace's default durability: sync) and on GET /v1/counters/bench/k{1..1000}, countd then
# bare; then countbench open loop at RATE req/s (incr) for the p99, countd then bare.
#
# Settings (environment): ROUNDS (3), THREADS (2), CONNS (64), DURATION (10s), RATE (10000),
# OPEN_DURATION (10s), WARMUP (3s), BENCH_KEYS (1000), HTTP (127.0.0.1:18470, countd),
# ADMIN (127.0.0.1:18460), BARE (127.0.0.1:18471), PROFILE=1 for an 8 s CPU profile of countd
# during round 1's incr and get runs, OUT (output directory, default a new one under /tmp),
# BASE_BIN (a countd binary built from another commit, e.g. before a change: measured too, on
# BASE_HTTP, default 127.0.0.1:18472, right before this tree's countd).
# BARE_FLAGS (flags of bare, e.g. --countd-timeouts), DURABILITY (countd --durability: sync, the
# default, or async).
# Needs wrk. Builds countd, bare and countbench into a temporary directory under /tmp and
# stops what it started by PID on exit.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
ROUNDS=${ROUNDS:-3}
THREADS=${THREADS:-2}
CONNS=${CONNS:-64}
DURATION=${DURATION:-10s}
RATE=${RATE:-10000}
OPEN_DURATION=${OPEN_DURATION:-10s}
WARMUP=${WARMUP:-3s}
export BENCH_KEYS=${BENCH_KEYS:-1000}
HTTP=${HTTP:-127.0.0.1:18470}
ADMIN=${ADMIN:-127.0.0.1:18460}
BARE=${BARE:-127.0.0.1:18471}
BASE_HTTP=${BASE_HTTP:-127.0.0.1:18472}
BASE_BIN=${BASE_BIN:-}
DURABILITY=${DURABILITY:-sync}

WORK=$(mktemp -d /tmp/bare-bench.XXXXXX)
OUT=${OUT:-$(mktemp -d /tmp/bare-bench-out.XXXXXX)}
mkdir -p "$OUT"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

command -v wrk >/dev/null || { echo "wrk not found: apt-get install -y wrk" >&2; exit 1; }
(cd "$ROOT" && go build -o "$WORK/countd" ./cmd/countd && go build -o "$WORK/bare" ./bench/bare &&
  go build -o "$WORK/countbench" ./bench/cmd/countbench)

"$WORK/countd" --data-dir "$WORK/countd-data" --http-addr "$HTTP" --admin-addr "$ADMIN" \
  --gossip-addr off --resp-addr off --log-level warn --durability "$DURABILITY" >"$OUT/countd.log" 2>&1 &
PIDS+=($!)
"$WORK/bare" --addr "$BARE" ${BARE_FLAGS:-} >"$OUT/bare.log" 2>&1 &
PIDS+=($!)
ADDRS=("$HTTP" "$BARE")
if [[ -n $BASE_BIN ]]; then
  "$BASE_BIN" --data-dir "$WORK/base-data" --http-addr "$BASE_HTTP" --admin-addr off \
    --gossip-addr off --resp-addr off --log-level warn --durability "$DURABILITY" >"$OUT/base.log" 2>&1 &
  PIDS+=($!)
  ADDRS+=("$BASE_HTTP")
fi
for addr in "${ADDRS[@]}"; do
  for _ in $(seq 1 100); do
    curl -sf -o /dev/null -X POST "http://$addr/v1/counters/bench/k1/incr" && break
    sleep 0.1
  done
done

load() { uptime | sed 's/.*load average: //'; }

closed() { # label, side (countd|bare), addr, script
  local label=$1 side=$2 addr=$3 script=$4
  wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -s "$HERE/$script.lua" "http://$addr" >"$OUT/$label-$script-$side.txt"
  awk -v what="$script $side" -v at="$(date -u +%H:%M:%S)" -v load="$(load)" \
    '/Requests\/sec/ {rps=$2} / 50%/ {p50=$2} / 99%/ {p99=$2} /Non-2xx/ {bad=$NF}
     END {printf "   %-12s %s req/s %8.0f  p50 %-8s p99 %-8s non-2xx %d  load %s\n", what, at, rps, p50, p99, bad+0, load}' \
    "$OUT/$label-$script-$side.txt"
}

open() { # label, side, addr
  local label=$1 side=$2 addr=$3
  "$WORK/countbench" --addr "http://$addr" --mode incr --rate "$RATE" --duration "$OPEN_DURATION" \
    --warmup 1s --keys "$BENCH_KEYS" --progress 0 >"$OUT/$label-open-$side.json" 2>"$OUT/$label-open-$side.err" || true
  tail -1 "$OUT/$label-open-$side.json" | python3 -c '
import json, sys
s = json.load(sys.stdin)
l = s["latency_ms"]
print("   %-12s %s req/s %8.0f  p50 %.2fms p99 %.2fms max %.2fms errors %d  load %s" % (
    sys.argv[1], sys.argv[2], s["requests_per_s"], l["p50"], l["p99"], l["max"], s["errors"], sys.argv[3]))
' "open $side" "$(date -u +%H:%M:%S)" "$(load)"
}

echo "machine: $(nproc) cores; commit $(git -C "$ROOT" rev-parse --short HEAD); output in $OUT"
echo "wrk -t$THREADS -c$CONNS -d$DURATION --latency; countbench --mode incr --rate $RATE --duration $OPEN_DURATION; durability $DURABILITY"
for addr in "${ADDRS[@]}"; do
  wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" -s "$HERE/incr.lua" "http://$addr" >/dev/null
done
for r in $(seq 1 "$ROUNDS"); do
  echo "== round $r"
  for script in incr get; do
    if [[ ${PROFILE:-0} == 1 && $r == 1 ]]; then
      (sleep 1; curl -s -o "$OUT/countd-$script.pprof" "http://$ADMIN/debug/pprof/profile?seconds=8") &
      PIDS+=($!)
    fi
    [[ -n $BASE_BIN ]] && closed "round$r" base "$BASE_HTTP" "$script"
    closed "round$r" countd "$HTTP" "$script"
    closed "round$r" bare "$BARE" "$script"
  done
  [[ -n $BASE_BIN ]] && open "round$r" base "$BASE_HTTP"
  open "round$r" countd "$HTTP"
  open "round$r" bare "$BARE"
done
# The group commit of this tree's countd over the whole run: a sync increment waits for a WAL fsync.
curl -s "http://$HTTP/metrics" | awk '/^countmesh_fsyncs_total/ {n=$2} /^countmesh_fsync_seconds_total/ {s=$2}
  /^countmesh_increments_total/ {i=$2} /^countmesh_commits_total/ {c=$2}
  END {if (n > 0 && c > 0) printf "countd: %d increments, %d commits (%.1f per commit), %d fsyncs, %.2f ms per fsync\n", i, c, i/c, n, s*1000/n}'
