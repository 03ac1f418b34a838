package node

import (
	"context"
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/zap"

	"github.com/countmesh/countmesh/change"
	"github.com/countmesh/countmesh/crdt"
)

// BenchmarkExchangeScans measures the replica's side of one anti-entropy
// exchange on a node with sharded namespaces: one read of the vector, then
// a scan of each sequence space (192 here: 64 partitions of three replica
// counts), while writes go on between the scans (each leaves a checkpoint
// something to do). It reports the checkpoints each exchange took.
func BenchmarkExchangeScans(b *testing.B) {
	ctx := context.Background()
	cfg := testConfig(b, vfs.Default)
	cfg.Store.Dir = b.TempDir()
	cfg.Logger = zap.NewNop()
	n := openTest(b, cfg)
	spaces := map[crdt.NodeID]bool{}
	for r := 1; r <= 3; r++ {
		ns := fmt.Sprintf("sh%d", r)
		if _, err := n.PutNamespace(ctx, ns, NamespacePatch{Replicas: ptr(r)}); err != nil {
			b.Fatal(err)
		}
		var ops []BatchOp
		for i := range 20_000 {
			k := fmt.Sprintf("k%d", i)
			ops = append(ops, BatchOp{NS: ns, Key: k, By: 1})
			spaces[change.ShardOf(ns, k, r).Space(n.ID())] = true
			if len(ops) == MaxBatchOps {
				if _, err := n.Batch(ctx, ops, "", false); err != nil {
					b.Fatal(err)
				}
				ops = ops[:0]
			}
		}
	}
	// The writes between the scans need not wait for the disk.
	if _, err := n.PutNamespace(ctx, "other", NamespacePatch{Durability: ptr("async")}); err != nil {
		b.Fatal(err)
	}
	rep := n.Replica()
	before := n.ckpt.Done()
	scanned := 0
	b.ResetTimer()
	for i := range b.N {
		rep.VersionVector()
		for sp := range spaces {
			if _, err := n.Incr(ctx, "other", fmt.Sprintf("w%d", i%1000), 1, WriteOptions{}); err != nil {
				b.Fatal(err)
			}
			if err := rep.ScanSince(sp, 0, func(change.Delta) bool { scanned++; return true }); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(len(spaces)), "spaces")
	b.ReportMetric(float64(n.ckpt.Done()-before)/float64(b.N), "checkpoints/op")
	if scanned < b.N*60_000 {
		b.Fatalf("scanned %d changes in %d exchanges, want every one of the 60,000 counters each time", scanned, b.N)
	}
}
