package node

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/zap"

	"github.com/countmesh/countmesh/change"
)

// BenchmarkCatchUp measures the node's side of a new node's catch-up:
// ScanSince on the source and Apply of 10,000-delta chunks on the target.
func BenchmarkCatchUp(b *testing.B) {
	const counters = 200_000
	ctx := context.Background()
	cfg := testConfig(b, vfs.NewMem())
	cfg.Name, cfg.Logger = "src", zap.NewNop()
	src := openTest(b, cfg)
	ops := make([]BatchOp, 0, MaxBatchOps)
	for i := 0; i < counters; i++ {
		ops = append(ops, BatchOp{NS: "c", Key: fmt.Sprintf("k%08d", i), By: 1})
		if len(ops) == MaxBatchOps {
			if _, err := src.Batch(ctx, ops, "", false); err != nil {
				b.Fatal(err)
			}
			ops = ops[:0]
		}
	}
	b.ResetTimer()
	for range b.N {
		dcfg := testConfig(b, vfs.NewMem())
		dcfg.Name, dcfg.Logger = fmt.Sprintf("dst%d", time.Now().UnixNano()), zap.NewNop()
		dst := openTest(b, dcfg)
		var scan, apply time.Duration
		t0 := time.Now()
		vv := src.Replica().VersionVector()
		var chunk change.Batch
		last := uint64(0)
		flush := func(upto uint64) {
			chunk.Ranges = []change.Range{{Origin: src.ID(), After: last, Upto: upto}}
			last = upto
			t1 := time.Now()
			if err := dst.Replica().Apply(chunk); err != nil {
				b.Fatal(err)
			}
			apply += time.Since(t1)
			chunk.Deltas = chunk.Deltas[:0]
		}
		err := src.Replica().ScanSince(src.ID(), 0, func(d change.Delta) bool {
			chunk.Deltas = append(chunk.Deltas, d)
			if len(chunk.Deltas) == 10_000 {
				flush(d.Seq)
			}
			return true
		})
		if err != nil {
			b.Fatal(err)
		}
		flush(vv[src.ID()])
		scan = time.Since(t0) - apply
		b.ReportMetric(float64(counters)/time.Since(t0).Seconds(), "counters/s")
		b.ReportMetric(scan.Seconds()*1e6/counters, "scan-µs/counter")
		b.ReportMetric(apply.Seconds()*1e6/counters, "apply-µs/counter")
		if got := mustGet(b, dst, "c", "k00199999"); got != 1 {
			b.Fatalf("last counter = %d after catch-up", got)
		}
	}
}
