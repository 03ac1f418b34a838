#!/usr/bin/env bash
# Writes N (default 100,000,000) new counters into one fresh countd with the
# default cache, and records what a node of that size costs: the
# new-counter ingest rate as the node grows (from countbench's per-second
# progress lines), the hot-counter rate at the end, RSS, disk bytes per
# counter, restart to ready, and the p99 of random reads. Everything goes
# to $OUT (default /tmp/hundred-million); the data directory is deleted at
# the end. Usage: bench/hundred-million/run.sh [N]
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-100000000}
OUT=${OUT:-/tmp/hundred-million}
DATA=$OUT/data
HTTP=127.0.0.1:18700
mkdir -p "$OUT"
rm -rf "$DATA"
go build -o "$OUT/countd" ./cmd/countd
go build -o "$OUT/countbench" ./bench/cmd/countbench
log() { echo "$(date -u +%H:%M:%S) $*" | tee -a "$OUT/summary.txt"; }

start() {
	"$OUT/countd" --data-dir "$DATA" --http-addr $HTTP --resp-addr off --gossip-addr off --admin-addr 127.0.0.1:18701 \
		--log-level info >>"$OUT/countd.log" 2>&1 &
	PID=$!
}
ready() { # seconds until /readyz answers 200
	local t0
	t0=$(date +%s.%N)
	until curl -fs "http://$HTTP/readyz" >/dev/null 2>&1; do sleep 0.01; done
	echo "$(date +%s.%N) - $t0" | bc
}
rss() { awk '/VmRSS/ {print $2 * 1024}' /proc/$PID/status; }
cleanup() { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; rm -rf "$DATA"; }
trap cleanup EXIT

log "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; load $(cut -d' ' -f1-3 /proc/loadavg); commit $(git rev-parse --short HEAD)"
start
log "fresh node ready after $(ready) s; RSS $(rss) bytes"
log "prefill of $N new counters starts"
"$OUT/countbench" --addr "http://$HTTP" --mode prefill --keys "$N" --batch-size 10000 --concurrency 4 \
	--progress 1s --prefill-timeout 3h >"$OUT/prefill.json" 2>"$OUT/prefill-progress.txt"
log "prefill done: $(tail -1 "$OUT/prefill.json" | head -c 300)"
# New-counter rate around each size: the mean of the per-second rates
# while the node grew from 0.75x to 1x of it.
awk -v sizes="1000000 10000000 100000000" '
	/ops\/s=/ { match($0, /ops\/s=[0-9]+/); r = substr($0, RSTART + 6, RLENGTH - 6) + 0; total += r; n = split(sizes, s, " ");
		for (i = 1; i <= n; i++) if (total >= 0.75 * s[i] && total <= s[i]) { sum[i] += r; cnt[i]++ } }
	END { for (i = 1; i <= n; i++) if (cnt[i]) printf "new-counter rate near %d counters: %.0f/s (%d seconds)\n", s[i], sum[i] / cnt[i], cnt[i] }
' "$OUT/prefill-progress.txt" | tee -a "$OUT/summary.txt"
sleep 10 # let the last checkpoint run
log "RSS after prefill (default cache): $(rss) bytes; cached: $(curl -s http://$HTTP/metrics | awk '/^countmesh_cached_counters / {print $2}')"
log "hot-counter batch ingest (Zipf over the first 1,000 keys):"
"$OUT/countbench" --addr "http://$HTTP" --mode batch --dist zipf --keys 1000 --concurrency 4 --duration 15s \
	--warmup 3s 2>/dev/null | tail -1 | head -c 400 | tee -a "$OUT/summary.txt"; echo
log "random reads over all $N counters, open loop 2,000/s:"
"$OUT/countbench" --addr "http://$HTTP" --mode read --dist uniform --keys "$N" --rate 2000 --duration 20s \
	--warmup 2s 2>/dev/null | tail -1 | head -c 400 | tee -a "$OUT/summary.txt"; echo
log "RSS after reads: $(rss) bytes"
kill -TERM "$PID"; wait "$PID" || true
log "data directory after a clean shutdown: $(du -sb "$DATA" | cut -f1) bytes"
start
log "restart: ready after $(ready) s; RSS $(rss) bytes"
sleep 5
log "RSS 5 s after the restart: $(rss) bytes; $(grep -o '"msg":"key filter ready".*' "$OUT/countd.log" | tail -1)"
"$OUT/countbench" --addr "http://$HTTP" --mode read --dist uniform --keys "$N" --rate 2000 --duration 20s \
	--warmup 2s 2>/dev/null | tail -1 | head -c 400 | tee -a "$OUT/summary.txt"; echo
log "done; load $(cut -d' ' -f1-3 /proc/loadavg)"
