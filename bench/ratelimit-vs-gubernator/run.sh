#!/usr/bin/env bash
# Rate-limit decisions over HTTP: countd against gubernator's HTTP gateway, one node each on
# loopback, the same wrk settings and key distribution, runs alternating countd, gubernator, ...
#
# Needs wrk (Debian: apt-get install -y wrk) and a gubernator binary: GUB_BIN, default
# /tmp/gub-bin/gubernator. If that is missing the script says so and builds it with
#   GOBIN=/tmp/gub-bin go install github.com/gubernator-io/gubernator/v2/cmd/gubernator@v2.13.0
# (into /tmp only; go.mod is not touched). countd is built into $WORK. Everything the script
# starts is stopped by PID on exit and $WORK is removed.
#
# Settings (environment): ROUNDS (2), THREADS (2), CONNS (64), DURATION (20s), WARMUP (5s),
# BENCH_KEYS (1000), BENCH_LIMIT (1000000000 per minute), PROFILE=1 to take a 10 s CPU profile of
# countd during its first measured run (written to $OUT/countd.pprof), OUT (output directory,
# default a new directory under /tmp).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
ROUNDS=${ROUNDS:-2}
THREADS=${THREADS:-2}
CONNS=${CONNS:-64}
DURATION=${DURATION:-20s}
WARMUP=${WARMUP:-5s}
GUB_BIN=${GUB_BIN:-/tmp/gub-bin/gubernator}
GUB_VERSION=v2.13.0
export BENCH_KEYS=${BENCH_KEYS:-1000}
export BENCH_LIMIT=${BENCH_LIMIT:-1000000000}
export BENCH_DIR=$HERE

CD_HTTP=127.0.0.1:19070
CD_ADMIN=127.0.0.1:19060
GB_HTTP=127.0.0.1:19080
GB_GRPC=127.0.0.1:19081
GB_ML=127.0.0.1:19946

WORK=$(mktemp -d /tmp/rlvg.XXXXXX)
OUT=${OUT:-$(mktemp -d /tmp/rlvg-out.XXXXXX)}
mkdir -p "$OUT"
PIDS=()

cleanup() {
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

command -v wrk >/dev/null || { echo "wrk not found: apt-get install -y wrk" >&2; exit 1; }
if [[ ! -x $GUB_BIN ]]; then
  [[ $GUB_BIN == /tmp/gub-bin/gubernator ]] || { echo "GUB_BIN=$GUB_BIN not found" >&2; exit 1; }
  echo "building gubernator $GUB_VERSION into /tmp/gub-bin (go install)" >&2
  GOBIN=/tmp/gub-bin go install "github.com/gubernator-io/gubernator/v2/cmd/gubernator@$GUB_VERSION"
fi

(cd "$ROOT" && go build -o "$WORK/countd" ./cmd/countd)

"$WORK/countd" --data-dir "$WORK/countd-data" --http-addr "$CD_HTTP" --admin-addr "$CD_ADMIN" \
  --gossip-addr off --resp-addr off --log-level warn >"$OUT/countd.log" 2>&1 &
PIDS+=($!)
PID_countd=$!

# One gubernator node: member-list discovery that knows only itself; traces off.
env GUBER_HTTP_ADDRESS=$GB_HTTP GUBER_GRPC_ADDRESS=$GB_GRPC GUBER_ADVERTISE_ADDRESS=$GB_GRPC \
  GUBER_MEMBERLIST_ADDRESS=$GB_ML GUBER_MEMBERLIST_BIND_ADDRESS=$GB_ML \
  GUBER_MEMBERLIST_KNOWN_NODES=$GB_ML GUBER_LOG_LEVEL=warn OTEL_TRACES_EXPORTER=none \
  "$GUB_BIN" >"$OUT/gubernator.log" 2>&1 &
PIDS+=($!)
PID_gubernator=$!

wait_ok() { # name, curl arguments...
  local name=$1; shift
  for _ in $(seq 1 100); do
    if curl -sf -o /dev/null "$@"; then return 0; fi
    sleep 0.1
  done
  echo "$name did not answer" >&2
  exit 1
}
wait_ok countd -X POST "http://$CD_HTTP/v1/ratelimit/bench/k1" -d '{"limit":10,"window":"1s"}'
wait_ok gubernator "http://$GB_HTTP/v1/HealthCheck"

TIMEFORMAT='%U user + %S sys'
URL_countd=http://$CD_HTTP
URL_gubernator=http://$GB_HTTP

cpu_ticks() { # pid: user + system CPU time of the process so far, in clock ticks
  awk '{print $14 + $15}' "/proc/$1/stat"
}

run() { # side, duration, label
  local side=$1 dur=$2 label=$3 url pid t0 t1
  url=URL_$side
  pid=PID_$side
  echo "== $label $side $(date -u +%H:%M:%S) load: $(uptime | sed 's/.*load average: //')"
  t0=$(cpu_ticks "${!pid}")
  { time wrk -t"$THREADS" -c"$CONNS" -d"$dur" --latency -s "$HERE/$side.lua" "${!url}" \
      >"$OUT/$label-$side.txt"; } 2>"$OUT/$label-$side.time"
  t1=$(cpu_ticks "${!pid}")
  echo "   after: load $(uptime | sed 's/.*load average: //')" >>"$OUT/$label-$side.txt"
  echo "   server CPU: $(((t1 - t0) * 1000 / $(getconf CLK_TCK))) ms" >>"$OUT/$label-$side.txt"
  echo "   wrk CPU: $(cat "$OUT/$label-$side.time") s" >>"$OUT/$label-$side.txt"
  awk '/requests in/ {n=$1} /Requests\/sec/ {rps=$2} / 50%/ {p50=$2} / 99%/ {p99=$2} /Non-2xx/ {bad=$NF}
       /server CPU/ {cpu=$3}
       END {printf "   req/s %s  p50 %s  p99 %s  non-2xx %s  server CPU %.1f s = %.0f req per CPU-second\n",
              rps, p50, p99, bad+0, cpu/1000, (cpu > 0 ? n*1000/cpu : 0)}' \
    "$OUT/$label-$side.txt"
  grep -E 'after|wrk CPU' "$OUT/$label-$side.txt"
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -g | awk '/Mem:/ {print $2}') GiB"
echo "wrk -t$THREADS -c$CONNS -d$DURATION --latency, $BENCH_KEYS keys, limit $BENCH_LIMIT/min; output in $OUT"
# Warm-up: every key created on both sides before anything is measured.
run countd "$WARMUP" warmup
run gubernator "$WARMUP" warmup
for r in $(seq 1 "$ROUNDS"); do
  if [[ ${PROFILE:-0} == 1 && $r == 1 ]]; then
    (sleep 3; curl -s -o "$OUT/countd.pprof" "http://$CD_ADMIN/debug/pprof/profile?seconds=10") &
    PIDS+=($!)
  fi
  run countd "$DURATION" "round$r"
  run gubernator "$DURATION" "round$r"
done
echo "raw wrk output: $OUT"
