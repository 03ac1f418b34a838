package node

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// BenchmarkBatchNewCounters writes batches of 10,000 counters never
// written before, on a real disk, with a hot set of 100,000 counters (so
// that, once it is full, every new counter also evicts one), and reports
// the cost per new counter. With -cpuprofile it shows where a new counter's
// cost goes; the key filter (keyspace/seen.go) is what spares the Pebble
// point read, and a sub-benchmark measures the node before the filter is
// complete, when every new counter still pays it.
func BenchmarkBatchNewCounters(b *testing.B) {
	for _, filter := range []bool{true, false} {
		b.Run(fmt.Sprintf("filter=%v", filter), func(b *testing.B) {
			cfg := testConfig(b, vfs.Default)
			cfg.Store.Dir = b.TempDir()
			cfg.CacheCounters = 100_000
			n := openTest(b, cfg)
			if filter {
				deadline := time.Now().Add(10 * time.Second)
				for !n.keys.FilterComplete() {
					if time.Now().After(deadline) {
						b.Fatal("key filter not built after 10 s")
					}
					time.Sleep(time.Millisecond)
				}
			} else {
				n.keys.ForgetFilterForTest()
			}
			ctx := context.Background()
			ops := make([]BatchOp, MaxBatchOps)
			next := 0
			b.ResetTimer()
			for range b.N {
				for i := range ops {
					ops[i] = BatchOp{NS: "bench", Key: fmt.Sprintf("k%09d", next), By: 1}
					next++
				}
				if _, err := n.Batch(ctx, ops, "", false); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(next), "ns/counter")
		})
	}
}
