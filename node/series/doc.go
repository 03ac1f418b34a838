// Package series owns a node's time buckets and label series: the key
// layout of bucket keys (KindBucket, granularity, start, series) and label
// series keys (KindSeries, key, labels), the windows a namespace keeps and
// their retention, the counting of an increment into the buckets of its
// event time and its label series (Windows.Count), the jumps of resets and
// deletes (Windows.RecordJump), series queries (Windows.Series), reads as
// of a time (Windows.ReadAt), the retention pass that range-deletes expired
// buckets (Windows.DropExpired), the cap on label series per key (Caps),
// and the expiry of counters idle past their namespace's ttl (TTL, Idle).
//
// Buckets and series are ordinary internal counters of the hot set: this
// package reads and adds to them through the function values of Config and
// never holds a stripe lock. It does not import package node; node builds
// a Windows in Open and wires it to its hot set.
//
// Guarantees: a bucket past its window's retention is never counted into
// again and reads as dropped; a read as of a time sums buckets of the
// finest window whose retention covers it, and retries when the value moved
// while it read; Caps errs on the side of refusing a new series.
package series
