#!/bin/bash
# usage: ab.sh LABEL [runs...] — runs NAME:BINARY:FORMAT[:profile] in order, redis-benchmark between them.
# Prints throughput, and work per CPU-second of the server (countd: increments applied / its CPU seconds;
# redis: INCRs / redis-server CPU seconds), which the load of other processes on the box disturbs less.
#
# Before a run: W=/tmp/batch-vs-redis (the default) must hold countbench and the countd binaries
# named in the runs, e.g.
#   go build -o $W/countbench ./bench/cmd/countbench && go build -o $W/countd-after ./cmd/countd
#   W=$W bench/batch-vs-redis/ab.sh 1 after-json:$W/countd-after:json after-mp:$W/countd-after:msgpack
# DIST=uniform draws the keys uniformly instead of from Zipf(1.1).
# Ports 18481, 18482 and 18490 on 127.0.0.1; every server it starts is stopped by PID.
set -u
W=${W:-/tmp/batch-vs-redis}
L=$1; shift; OUT=${W}/ab-$L; mkdir -p $OUT; : > $OUT/log.txt
rm -rf ${W}/redis; mkdir -p ${W}/redis
redis-server --port 18490 --appendonly no --save '' --dir ${W}/redis > $OUT/redis.log 2>&1 &
RPID=$!
sleep 0.5
CB="${W}/countbench --addr http://127.0.0.1:18481 --mode batch --dist ${DIST:-zipf} --keys 1000000 --concurrency 4 --duration 15s --warmup 3s --progress 0"
ticks() { awk '{print $14+$15}' /proc/$1/stat; }
redis() {
  local t=$(date -u +%T) l=$(uptime | sed 's/.*average: //') c0=$(ticks $RPID) s0=$(date +%s.%N)
  local r=$(redis-benchmark -p 18490 -t incr -P 64 -r 1000000 -n 2000000 -q 2>&1 | tr '\r' '\n' | grep 'requests per second' | tail -1)
  local c1=$(ticks $RPID) s1=$(date +%s.%N)
  echo "$t load $l redis $r | $(awk -v c=$((c1-c0)) -v w=$(echo "$s1-$s0" | bc -l) 'BEGIN{printf "redis-server cpu %.2fs of %.2fs: %.0f INCR per cpu-s", c/100, w, 2000000/(c/100)}')" >> $OUT/log.txt
}
metric() { curl -s 127.0.0.1:18481/metrics | awk -v m=$1 '$1==m{print $2}'; }
run() { # NAME BINARY FORMAT [profile]
  rm -rf ${W}/d
  $2 --data-dir ${W}/d --http-addr 127.0.0.1:18481 --resp-addr off --gossip-addr off --admin-addr 127.0.0.1:18482 --log-level warn > $OUT/countd-$1.log 2>&1 &
  local CPID=$!
  for i in $(seq 100); do curl -s -o /dev/null 127.0.0.1:18481/metrics && break; sleep 0.1; done
  local t=$(date -u +%T) l=$(uptime | sed 's/.*average: //')
  local PP=""
  if [ "${4:-}" = profile ]; then ( sleep 9; curl -s -o $OUT/cpu-$1.pprof "127.0.0.1:18482/debug/pprof/profile?seconds=10" ) & PP=$!; fi
  local i0=$(metric countmesh_increments_total) c0=$(ticks $CPID)
  $CB --format $3 > $OUT/$1.json 2> $OUT/$1.err
  local i1=$(metric countmesh_increments_total) c1=$(ticks $CPID)
  [ -n "$PP" ] && wait $PP
  kill $CPID; wait $CPID 2>/dev/null
  echo "$t load $l $1 $(grep -o '"ops_per_s":[0-9.]*' $OUT/$1.json) $(grep -o '"errors":[0-9]*' $OUT/$1.json) $(grep -o '"p50":[0-9.]*' $OUT/$1.json) | $(awk -v c=$((c1-c0)) -v i0=$i0 -v i1=$i1 'BEGIN{printf "countd cpu %.2fs for %.0f incr: %.0f incr per cpu-s", c/100, i1-i0, (i1-i0)/(c/100)}')" >> $OUT/log.txt
}
redis
for r in "$@"; do IFS=: read -r n b f p <<< "$r"; run "$n" "$b" "$f" "${p:-}"; redis; done
kill $RPID; wait $RPID 2>/dev/null
cat $OUT/log.txt
