// Package benchplot draws a countbench run's timeline (bench.Result.Timeline)
// as two PNG charts: latency over time (p50, p99 and max of each interval, in
// milliseconds on a log scale) and throughput over time (operations per
// second of each interval, and failed requests per second when there were
// any).
//
// Each point sits at the end of its interval, in seconds from the start of
// the run; the warm-up, when the run had one, is drawn too and a vertical
// line marks where the measurement began. Requests count in the interval in
// which they completed.
//
// Usage:
//
//	res, _ := bench.Run(ctx, bench.RunConfig{..., SampleEvery: time.Second}, newOp)
//	paths, err := benchplot.WriteFiles("out/incr", res.Timeline, benchplot.DefaultOptions())
package benchplot
