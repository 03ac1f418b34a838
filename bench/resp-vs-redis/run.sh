#!/bin/bash
# usage: run.sh [NAME:BINARY ...] — INCR over RESP with redis-benchmark against countd (sync
# durability, the default) and two Redis servers, one with appendfsync always and one without
# persistence, back to back in each round (issue 11, acceptance 1).
#
# Each round FLUSHALLs both Redis servers and starts each countd named fresh (empty data
# directory), then runs, on each server in turn, both modes (c50 on what P64 left):
#   P64: redis-benchmark -t incr -P 64 -r 1000000 -n $NP     (pipelined)
#   c50: redis-benchmark -t incr -c 50 -r 1000000 -n $NC     (unpipelined, 50 clients)
# It prints requests per second and the server's CPU time per INCR (utime+stime from /proc).
#
#   go build -o /tmp/resp-vs-redis/countd ./cmd/countd
#   bench/resp-vs-redis/run.sh now:/tmp/resp-vs-redis/countd
#
# Environment: W (work directory, /tmp/resp-vs-redis), ROUNDS (3), NP (2000000), NC (200000),
# PROFILE=1 (a 10 s CPU profile of each countd during its P64 run, in $W/cpu-NAME-ROUND.pprof).
# A countd's c50 CPU time includes the checkpoint and compactions its P64 run left running.
# Ports 18501-18503 and 18510-18511 on 127.0.0.1; every server it starts is stopped by PID.
set -u
W=${W:-/tmp/resp-vs-redis}
ROUNDS=${ROUNDS:-3} NP=${NP:-2000000} NC=${NC:-200000} PROFILE=${PROFILE:-0}
[ $# -gt 0 ] || set -- "countd:$W/countd"
mkdir -p $W; : > $W/log.txt
rm -rf $W/aof $W/none; mkdir -p $W/aof $W/none
redis-server --port 18510 --appendonly yes --appendfsync always --save '' --dir $W/aof > $W/redis-aof.log 2>&1 &
AOF=$!
redis-server --port 18511 --appendonly no --save '' --dir $W/none > $W/redis-none.log 2>&1 &
NONE=$!
trap 'kill $AOF $NONE 2>/dev/null' EXIT
sleep 0.5
ticks() { awk '{print $14+$15}' /proc/$1/stat; }
# bench LABEL PID PORT MODE N: one redis-benchmark run, one line of the log.
bench() {
  local args
  if [ $4 = P64 ]; then args="-P 64"; else args="-c 50"; fi
  local t=$(date -u +%T) l=$(uptime | sed 's/.*average: //') c0=$(ticks $2)
  local r=$(redis-benchmark -p $3 -t incr $args -r 1000000 -n $5 -q 2>&1 | tr '\r' '\n' | grep 'requests per second' | tail -1 | awk '{print $2}')
  local c1=$(ticks $2)
  echo "$t load $l $4 $1 $r INCR/s cpu $(awk -v c=$((c1-c0)) -v n=$5 'BEGIN{printf "%.2f", c*1e4/n}') us/INCR" | tee -a $W/log.txt
}
for round in $(seq $ROUNDS); do
  redis-cli -p 18510 flushall > /dev/null; redis-cli -p 18511 flushall > /dev/null
  for r in "$@"; do
    IFS=: read -r name bin <<< "$r"
    rm -rf $W/d-$name
    $bin --data-dir $W/d-$name --http-addr 127.0.0.1:18501 --resp-addr 127.0.0.1:18502 --gossip-addr off \
      --admin-addr 127.0.0.1:18503 --log-level warn > $W/countd-$name.log 2>&1 &
    pid=$!
    for i in $(seq 100); do redis-cli -p 18502 ping > /dev/null 2>&1 && break; sleep 0.1; done
    PP=""
    if [ $PROFILE = 1 ]; then
      ( sleep 2; curl -s -o $W/cpu-$name-$round.pprof "127.0.0.1:18503/debug/pprof/profile?seconds=10" ) & PP=$!
    fi
    bench $name $pid 18502 P64 $NP
    [ -n "$PP" ] && wait $PP
    bench $name $pid 18502 c50 $NC   # on the counters of the P64 run, as for Redis
    kill $pid; wait $pid 2>/dev/null
  done
  for mode in P64 c50; do
    n=$NP; [ $mode = c50 ] && n=$NC
    bench redis-aof $AOF 18510 $mode $n
    bench redis-none $NONE 18511 $mode $n
  done
done
