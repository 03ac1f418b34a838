package node

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// BenchmarkListUnderIngest lists a namespace of 1,000 counters while two
// writers apply batches of 10,000 increments over 100,000 other counters (an
// async namespace) as fast as they can, on a real disk. It reports the
// listing's latency (ns/op) and the ingest rate the writers kept up during
// the run (incr/s). Every listing must see all 1,000 counters.
func BenchmarkListUnderIngest(b *testing.B) {
	cfg := testConfig(b, vfs.Default)
	cfg.Store.Dir = b.TempDir()
	n := openTest(b, cfg)
	ctx := context.Background()
	async := DurabilityAsync
	if _, err := n.PutNamespace(ctx, "ingest", NamespacePatch{Durability: &async}); err != nil {
		b.Fatal(err)
	}
	listed := make([]BatchOp, 1000)
	for i := range listed {
		listed[i] = BatchOp{NS: "list", Key: fmt.Sprintf("k%04d", i), By: 1}
	}
	if _, err := n.Batch(ctx, listed, "", false); err != nil {
		b.Fatal(err)
	}
	stop := make(chan struct{})
	var applied atomic.Int64
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ops := make([]BatchOp, MaxBatchOps)
			for round := 0; ; round++ {
				select {
				case <-stop:
					return
				default:
				}
				for i := range ops {
					ops[i] = BatchOp{NS: "ingest", Key: fmt.Sprintf("i%06d", (w*50_000+round*7919+i*13)%100_000), By: 1}
				}
				if _, err := n.Batch(ctx, ops, "", false); err != nil {
					b.Error(err)
					return
				}
				applied.Add(int64(len(ops)))
			}
		}()
	}
	// Let the ingest reach its pace before measuring.
	for applied.Load() < 4*MaxBatchOps {
		runtime.Gosched()
	}
	b.ResetTimer()
	start, from := time.Now(), applied.Load()
	for range b.N {
		page, err := n.List(ctx, "list", "", "", MaxListLimit)
		if err != nil {
			b.Fatal(err)
		}
		if len(page.Items) != len(listed) {
			b.Fatalf("listed %d counters, want %d", len(page.Items), len(listed))
		}
	}
	b.StopTimer()
	rate := float64(applied.Load()-from) / time.Since(start).Seconds()
	close(stop)
	wg.Wait()
	b.ReportMetric(rate, "incr/s")
}
