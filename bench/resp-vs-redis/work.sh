#!/bin/bash
# usage: work.sh NAME:BINARY ... — the whole work countd does for one pipelined INCR run.
#
# For each build named, in the order given (name them twice or more to alternate builds):
# start a fresh countd (sync durability, as run.sh does), run
#   redis-benchmark -t incr -P 64 -r 1000000 -n $N
# then wait $AFTER seconds, and print the INCRs per second, countd's CPU time (utime+stime from
# /proc, in ticks of 10 ms) during the run and up to $AFTER seconds after it (its checkpoints
# and compactions go on after the load ends), and the bytes it allocated and the collections it
# ran (from /metrics). On this shared box the INCRs per second of one build move by 20-30 %
# from run to run; the CPU including what follows the run moves much less.
#
# Environment: W (work directory, /tmp/resp-vs-redis), N (2000000), AFTER (12).
# Ports 18501-18502 on 127.0.0.1; every countd it starts is stopped by PID.
set -u
W=${W:-/tmp/resp-vs-redis} N=${N:-2000000} AFTER=${AFTER:-12}
mkdir -p "$W"
ticks() { awk '{print $14+$15}' /proc/$1/stat; }
for r in "$@"; do
  IFS=: read -r name bin <<< "$r"
  rm -rf "$W/d-work"
  "$bin" --data-dir "$W/d-work" --http-addr 127.0.0.1:18501 --resp-addr 127.0.0.1:18502 --gossip-addr off \
    --log-level warn > "$W/work-$name.log" 2>&1 &
  pid=$!
  for i in $(seq 100); do redis-cli -p 18502 ping > /dev/null 2>&1 && break; sleep 0.1; done
  c0=$(ticks $pid)
  rps=$(redis-benchmark -p 18502 -t incr -P 64 -r 1000000 -n "$N" -q 2>&1 | tr '\r' '\n' | grep 'requests per second' | tail -1 | awk '{print $2}')
  c1=$(ticks $pid)
  sleep "$AFTER"
  c2=$(ticks $pid)
  m=$(curl -s 127.0.0.1:18501/metrics | awk '/^go_memstats_alloc_bytes_total/{a=$2} /^go_gc_duration_seconds_count/{g=$2} END{printf "allocated %.0f MB, %d collections", a/1e6, g}')
  echo "$(date -u +%T) $name: $rps INCR/s; CPU ticks $((c1-c0)) in the run, $((c2-c0)) with ${AFTER} s after ($(awk -v c=$((c2-c0)) -v n=$N 'BEGIN{printf "%.2f", c*1e4/n}') us/INCR); $m"
  kill $pid; wait $pid 2>/dev/null
done
