package node

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestBatchesUnderEvictionCountEveryIncrement: with a hot set far smaller
// than the counters, concurrent batches keep evicting each other's
// counters between the moment a batch brings them into memory and the
// moment it locks their stripes; every increment must still land on the
// counter's live entry, not on an evicted copy.
func TestBatchesUnderEvictionCountEveryIncrement(t *testing.T) {
	t.Run("entries", func(t *testing.T) { testBatchesUnderEviction(t, 16, 0) })
	// 8 entries and 92 packed records, for 300 counters.
	t.Run("packed", func(t *testing.T) { testBatchesUnderEviction(t, 100, 8) })
}

func testBatchesUnderEviction(t *testing.T, cache, hot int) {
	cfg := testConfig(t, vfs.NewMem())
	cfg.CacheCounters, cfg.HotCounters = cache, hot
	cfg.Stripes = 4
	n := openTest(t, cfg)
	ctx := context.Background()
	const workers, batches, per, keys = 4, 60, 40, 300
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ops := make([]BatchOp, per)
			for b := range batches {
				for i := range ops {
					ops[i] = BatchOp{NS: "ev", Key: fmt.Sprintf("k%03d", (w*7919+b*per+i)%keys), By: 1}
				}
				if _, err := n.Batch(ctx, ops, "", false); err != nil {
					t.Error(err)
					return
				}
				if b%10 == 9 {
					if err := n.Checkpoint(); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	var total int64
	for k := range keys {
		total += mustGet(t, n, "ev", fmt.Sprintf("k%03d", k))
	}
	if want := int64(workers * batches * per); total != want {
		t.Fatalf("counters sum to %d after %d increments", total, want)
	}
}
