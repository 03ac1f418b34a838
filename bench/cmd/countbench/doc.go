// Command countbench is the countmesh load generator. It drives one running
// node over the public HTTP API (only the --addr given) and prints progress
// every second on stderr and, as the last line on stdout, a JSON summary:
//
//	{"mode","duration_s","ops","ops_per_s","requests","requests_per_s",
//	 "errors","errors_by_code","latency_ms":{"p50","p90","p99","p999","max","mean"},"config"}
//
// Modes (--mode):
//
//	batch    closed loop: --concurrency workers each send batches of
//	         --batch-size increments (msgpack, or --format json), cycling
//	         through --pool bodies encoded before the run. ops are increments.
//	batchget closed loop as batch: POST /v1/batch/get bodies (JSON) of
//	         --batch-size keys each. ops are counters read.
//	incr     single increments at --rate requests/s in an open loop: requests
//	         are scheduled at fixed intervals whatever the answers, latency is
//	         measured from the scheduled time (no coordinated omission), up to
//	         --concurrency requests in flight. --rate 0: closed loop.
//	read     GET at --rate requests/s, open loop as incr; --rate 0 runs a
//	         closed loop of --concurrency workers to find the maximum.
//	prefill  write --keys distinct counters once by batches and stop.
//	simulate no server: for each size of --nodes (default 10,25,50,100),
//	         a mesh of that many in-process nodes over the fake network
//	         (package bench/simulate) in --regions regions, under --rate
//	         changes/s in all, for --duration; then a table and one JSON line
//	         per size: {"nodes","replicas","applied_per_node_per_s",
//	         "bytes_per_node_per_s","convergence_p50_ms","convergence_p99_ms",
//	         "counters_per_node",...}. It has flags of its own
//	         (countbench --mode simulate -h). --replicas R above 0 shards
//	         the namespace over R nodes per region (gossip's sharding).
//
// --plot PREFIX keeps a per-second timeline of the run and, when it ends,
// writes PREFIX-latency.png (p50, p99 and max of each second, in ms on a log
// scale) and PREFIX-throughput.png (operations per second, and failed
// requests per second when there were any), --plot-size pixels each
// (default 800x400); the warm-up is drawn too, up to a dashed line.
//
// --prefill N writes N counters the same way before any mode runs. Every
// run stops by itself after --warmup plus --duration (prefill when done, or
// after --prefill-timeout).
//
// Exit status: 0 when the run completed, 1 when no request succeeded, a
// prefill failed or the --plot PNGs could not be written (the summary is
// still printed), 2 on bad usage.
package main
