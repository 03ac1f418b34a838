// Package bench is the library behind countbench, the countmesh load
// generator. It drives a running node over the public HTTP API only (through
// package client) and measures it.
//
// It provides:
//
//   - key distributions (uniform and Zipf) over a key space named k%08d;
//   - Run, which drives an Op either in a closed loop (a fixed number of
//     workers, each sending its next request when the previous one
//     answered) or in an open loop (requests scheduled at a fixed rate
//     whatever the answers, with latency measured from each request's
//     scheduled send time, so that a stalled server shows up in the
//     latency of every request it delayed: no coordinated omission; only
//     the up to ~1ms by which Go's timers wake the dispatcher late is not
//     charged to the server);
//   - a Recorder of latencies in HDR histograms and of errors by status;
//   - Prefill, which writes N distinct counters once with batches;
//   - the JSON Summary that countbench prints as its last line.
//
// The generator shares its machine with the server, so the hot paths keep
// their CPU cost low: request bodies are encoded before the timed run and
// reused, answers are discarded undecoded, and connections are kept alive.
package bench
