#!/usr/bin/env bash
# Memory per counter: countd against Redis, for the same key names.
#
# What it measures: the growth of the server's resident memory (VmRSS from
# /proc/PID/status) per counter while new counters are written, on a fresh
# countd (every counter held in memory: --cache-counters C) and on a fresh
# Redis (INCR, no persistence). Three points per side: before any write,
# after keys k00000000..k(N1-1), after keys k00000000..k(N2-1). For Redis it
# also reads INFO memory used_memory; for countd it reads /metrics
# (countmesh_cached_counters, go_memstats_heap_inuse_bytes, ...). It prints
# the numbers and a table for docs/benchmarks.md.
#
# Command (from the repository root; these are the defaults):
#   N1=1000000 N2=10000000 C=12000000 SETTLE=15 W=/tmp/memory-vs-redis \
#     bench/memory-vs-redis/run.sh
# A quick check: N1=100000 N2=300000 SETTLE=6 bench/memory-vs-redis/run.sh
#
# The writes, the same on both sides:
#   step 1: keys 0..N1-1, each incremented by 1 (N1 new counters);
#   step 2: keys 0..N2-1, each incremented by 1. countbench --mode prefill
#           cannot start at an offset, so step 2 writes keys 0..N1-1 once
#           more (no new counters: increments of existing keys) and adds the
#           N2-N1 new counters N1..N2-1. Redis is given the same INCRs. The
#           per-counter growth of step 2 divides by the N2-N1 new counters
#           only.
# Key names are bench.KeyName: "k" and at least 8 digits (k00000042); on
# countd they live in namespace "bench" (the namespace is not part of the
# Redis key).
#
# After each step the script sleeps SETTLE seconds before reading memory
# (countd checkpoints every 5 s), on both sides alike.
#
# Needs go, curl, redis-server and redis-cli. Ports: countd HTTP 17170,
# Redis 16390, both on 127.0.0.1. Binaries are built into a temp dir; every
# process it starts is stopped by PID on exit; the data dirs and binaries
# are deleted at the end; the log stays in $W/log.txt (and countd.log,
# redis.log, the countbench outputs).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)

N1=${N1:-1000000}
N2=${N2:-10000000}
C=${C:-12000000}
SETTLE=${SETTLE:-15}
W=${W:-/tmp/memory-vs-redis}
HTTP=127.0.0.1:17170
RPORT=16390
STEP_TIMEOUT=${STEP_TIMEOUT:-1800} # seconds: bound on each write step

for v in N1 N2 C SETTLE STEP_TIMEOUT; do
	[[ ${!v} =~ ^[0-9]+$ ]] || { echo "$v=${!v} is not a whole number" >&2; exit 2; }
done
((N1 > 0 && N2 > N1)) || { echo "want 0 < N1 < N2 (N1=$N1 N2=$N2)" >&2; exit 2; }
((C >= N2)) || echo "warning: C=$C < N2=$N2: countd will evict counters from memory" >&2
for t in go curl redis-server redis-cli awk timeout; do
	command -v "$t" >/dev/null || { echo "missing: $t" >&2; exit 2; }
done

mkdir -p "$W"
W=$(cd "$W" && pwd) # absolute, for the pid files
LOG=$W/log.txt
CDATA=$W/countd-data
RDATA=$W/redis-data
CPIDF=$W/countd.pid
RPIDF=$W/redis.pid
: >"$LOG"
BIN=$(mktemp -d "$W/bin.XXXXXX")

log() { echo "$(date -u +%H:%M:%S) $*" | tee -a "$LOG"; }

# stop PIDFILE: TERM the process named in it, wait up to 20 s, then KILL.
stop() {
	local pf=$1 pid
	[[ -s $pf ]] || return 0
	pid=$(cat "$pf")
	if kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		if kill -0 "$pid" 2>/dev/null; then
			log "pid $pid did not stop in 20 s; KILL"
			kill -KILL "$pid" 2>/dev/null || true
		fi
		wait "$pid" 2>/dev/null || true
	fi
	rm -f "$pf"
}
cleanup() {
	stop "$CPIDF"
	stop "$RPIDF"
	rm -rf "$CDATA" "$RDATA" "$BIN"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rss() { awk '/^VmRSS:/ {print $2 * 1024}' "/proc/$1/status"; } # bytes
alive() { kill -0 "$1" 2>/dev/null || { log "process $1 ($2) is gone; see $W/$2.log"; exit 1; }; }

# --- build -----------------------------------------------------------------
log "machine: $(nproc) cores, $(free -m | awk '/Mem:/ {print $2}') MiB; load $(cut -d' ' -f1-3 /proc/loadavg); commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
log "N1=$N1 N2=$N2 C=$C SETTLE=$SETTLE W=$W; $(redis-server --version | head -c 80)"
CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$BIN/countd" "$ROOT/cmd/countd"
CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$BIN/countbench" "$ROOT/bench/cmd/countbench"

# --- countd ----------------------------------------------------------------
rm -rf "$CDATA"
"$BIN/countd" --data-dir "$CDATA" --http-addr $HTTP --resp-addr off --gossip-addr off --admin-addr off \
	--log-level warn --cache-counters "$C" >"$W/countd.log" 2>&1 &
CPID=$!
echo "$CPID" >"$CPIDF"
ok=
for _ in $(seq 600); do # 60 s
	alive "$CPID" countd
	if curl -fs -o /dev/null "http://$HTTP/readyz"; then ok=1; break; fi
	sleep 0.1
done
[[ -n $ok ]] || { log "countd not ready after 60 s"; exit 1; }

# metric NAME: its value as an integer from the scrape in $M.
metric() { awk -v m="$1" '$1 == m {printf "%.0f", $2; f = 1} END {if (!f) printf "-"}' <<<"$M"; }
# cpoint LABEL: reads countd's RSS and metrics into C_RSS_LABEL etc.
cpoint() {
	alive "$CPID" countd
	M=$(curl -fs --max-time 10 "http://$HTTP/metrics") || { log "GET /metrics failed"; exit 1; }
	local r
	r=$(rss "$CPID")
	printf -v "C_RSS_$1" %s "$r"
	printf -v "C_HEAP_$1" %s "$(metric go_memstats_heap_inuse_bytes)"
	printf -v "C_CACHED_$1" %s "$(metric countmesh_cached_counters)"
	log "countd $1: VmRSS $r; cached_counters $(metric countmesh_cached_counters)" \
		"unsaved_counters $(metric countmesh_unsaved_counters)" \
		"go_memstats_heap_inuse_bytes $(metric go_memstats_heap_inuse_bytes)" \
		"heap_alloc_bytes $(metric go_memstats_heap_alloc_bytes)" \
		"heap_released_bytes $(metric go_memstats_heap_released_bytes)" \
		"sys_bytes $(metric go_memstats_sys_bytes)" \
		"process_resident_memory_bytes $(metric process_resident_memory_bytes)" \
		"disk_bytes $(metric countmesh_disk_bytes)"
}
# cwrite N LABEL: prefill keys 0..N-1 (each +1), then settle.
cwrite() {
	local t0=$SECONDS
	if ! timeout "$STEP_TIMEOUT" "$BIN/countbench" --addr "http://$HTTP" --mode prefill --keys "$1" --ns bench \
		--batch-size 10000 --concurrency 4 --progress 0 --prefill-timeout "${STEP_TIMEOUT}s" \
		>"$W/countbench-$2.json" 2>"$W/countbench-$2.err"; then
		log "countbench prefill --keys $1 failed: $(tail -c 400 "$W/countbench-$2.err") $(tail -c 400 "$W/countbench-$2.json")"
		exit 1
	fi
	log "countd: wrote keys 0..$(($1 - 1)) in $((SECONDS - t0)) s: $(tail -1 "$W/countbench-$2.json" | grep -o '"ops":[0-9]*,"ops_per_s":[0-9.]*' || true) $(tail -1 "$W/countbench-$2.json" | grep -o '"errors":[0-9]*' || true)"
	sleep "$SETTLE"
}
cpoint before
cwrite "$N1" n1
cpoint n1
cwrite "$N2" n2
cpoint n2
last=$(printf 'k%08d' $((N2 - 1)))
log "countd check: bench/k00000000 $(curl -fs "http://$HTTP/v1/counters/bench/k00000000" | grep -o '"value":[0-9]*' || echo missing)," \
	"bench/$last $(curl -fs "http://$HTTP/v1/counters/bench/$last" | grep -o '"value":[0-9]*' || echo missing) (want 2 and 1)"
stop "$CPIDF"
rm -rf "$CDATA"

# --- Redis -----------------------------------------------------------------
rm -rf "$RDATA"
mkdir -p "$RDATA"
redis-server --port $RPORT --bind 127.0.0.1 --save '' --appendonly no --dir "$RDATA" >"$W/redis.log" 2>&1 &
RPID=$!
echo "$RPID" >"$RPIDF"
RCLI=(redis-cli -h 127.0.0.1 -p $RPORT)
ok=
for _ in $(seq 300); do # 30 s
	alive "$RPID" redis
	if [[ $(timeout 5 "${RCLI[@]}" ping 2>/dev/null) == PONG ]]; then ok=1; break; fi
	sleep 0.1
done
[[ -n $ok ]] || { log "redis-server not answering after 30 s"; exit 1; }

rpoint() {
	alive "$RPID" redis
	local r um
	r=$(rss "$RPID")
	um=$(timeout 10 "${RCLI[@]}" info memory | tr -d '\r' | awk -F: '$1 == "used_memory" {print $2}')
	printf -v "R_RSS_$1" %s "$r"
	printf -v "R_UM_$1" %s "$um"
	log "redis $1: VmRSS $r; used_memory $um; dbsize $(timeout 10 "${RCLI[@]}" dbsize)" \
		"$(timeout 10 "${RCLI[@]}" info memory | tr -d '\r' | grep -E '^(used_memory_rss|mem_fragmentation_ratio|mem_allocator):' | tr '\n' ' ')"
}
# rwrite N LABEL: INCR keys 0..N-1 through redis-cli --pipe, then settle.
rwrite() {
	local t0=$SECONDS out
	out=$(awk -v n="$1" 'BEGIN { for (i = 0; i < n; i++) { k = sprintf("k%08d", i)
		printf "*2\r\n$4\r\nINCR\r\n$%d\r\n%s\r\n", length(k), k } }' |
		timeout "$STEP_TIMEOUT" "${RCLI[@]}" --pipe 2>&1) || { log "redis-cli --pipe failed: $out"; exit 1; }
	log "redis: INCR keys 0..$(($1 - 1)) in $((SECONDS - t0)) s: $(grep -o 'errors: .*' <<<"$out")"
	grep -q "errors: 0, replies: $1" <<<"$out" || { log "redis-cli --pipe: unexpected result: $out"; exit 1; }
	sleep "$SETTLE"
}
rpoint before
rwrite "$N1" n1
rpoint n1
rwrite "$N2" n2
rpoint n2
log "redis check: k00000000 $(timeout 5 "${RCLI[@]}" get k00000000), $last $(timeout 5 "${RCLI[@]}" get "$last") (want 2 and 1)"
stop "$RPIDF"
rm -rf "$RDATA"

# --- table -----------------------------------------------------------------
# per A B COUNT: (B-A)/COUNT rounded to an integer.
per() { awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN { if (a == "-" || b == "-") print "-"; else printf "%.0f", (b - a) / n }'; }
row() { # SIDE WHAT V0 V1 V2
	printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$1" "$2" "$3" "$4" "$5" \
		"$(per "$3" "$4" "$N1")" "$(per "$4" "$5" $((N2 - N1)))" "$(per "$3" "$5" "$N2")"
}
{
	echo
	echo "Memory per counter, $N1 then $N2 counters (bytes; growth per new counter); load $(cut -d' ' -f1-3 /proc/loadavg)"
	echo
	echo "| side | measure | before | after $N1 | after $N2 | per counter 0..$N1 | per counter $N1..$N2 | per counter 0..$N2 |"
	echo "|---|---|---:|---:|---:|---:|---:|---:|"
	row "countd (--cache-counters $C)" VmRSS "$C_RSS_before" "$C_RSS_n1" "$C_RSS_n2"
	row "countd" "go heap in use" "$C_HEAP_before" "$C_HEAP_n1" "$C_HEAP_n2"
	row "redis $(redis-server --version | grep -o 'v=[0-9.]*' | cut -c3-)" VmRSS "$R_RSS_before" "$R_RSS_n1" "$R_RSS_n2"
	row "redis" used_memory "$R_UM_before" "$R_UM_n1" "$R_UM_n2"
	echo
	echo "countd cached counters: $C_CACHED_before, $C_CACHED_n1, $C_CACHED_n2"
} | tee -a "$LOG"
log "done; log in $LOG"
