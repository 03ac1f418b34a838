package node

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestPackedCountersReadBackAndExpire: with 16 entries in memory and room
// for thousands of packed records, counters and their id records leave the
// map for the compact tier and come back with their values; retries of
// packed id records are still duplicates; and id expiry deletes a packed
// record from memory as well as from Pebble, so that a retry after the
// window counts again (a record left in the tier would keep answering
// "duplicate" for a counter Pebble no longer has).
func TestPackedCountersReadBackAndExpire(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)}
	cfg := testConfig(t, vfs.NewMem())
	cfg.Now = clock.Now
	cfg.CacheCounters, cfg.HotCounters, cfg.Stripes = 5000, 16, 4
	n := openTest(t, cfg)
	ctx := context.Background()
	if _, err := n.PutNamespace(ctx, "likes", NamespacePatch{IdempotencyWindow: ptr("1h")}); err != nil {
		t.Fatal(err)
	}
	const keys = 400
	for i := range keys {
		if _, err := n.Incr(ctx, "likes", fmt.Sprintf("p%d", i), int64(i%5+1), WriteOptions{ID: fmt.Sprintf("u%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	// Push everything out of the map: other counters, then a checkpoint,
	// which trims the map to its 16 entries.
	for i := range 200 {
		if _, err := n.Incr(ctx, "other", fmt.Sprintf("x%d", i), 1, WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	if got := n.keys.Count(""); got < 2*keys {
		t.Fatalf("%d counters in memory, want the %d likes and their id records packed", got, keys)
	}
	reads := testutil.ToFloat64(n.metrics.ReadThrough)
	for i := range keys {
		if r, err := n.Incr(ctx, "likes", fmt.Sprintf("p%d", i), int64(i%5+1), WriteOptions{ID: fmt.Sprintf("u%d", i)}); err != nil || !r.Duplicate {
			t.Fatalf("retry of u%d: %+v %v; want a duplicate", i, r, err)
		}
		if got, want := mustGet(t, n, "likes", fmt.Sprintf("p%d", i)), int64(i%5+1); got != want {
			t.Fatalf("likes/p%d = %d, want %d", i, got, want)
		}
	}
	if got := testutil.ToFloat64(n.metrics.ReadThrough) - reads; got != 0 {
		t.Errorf("%v reads from Pebble for counters held packed, want 0", got)
	}
	// Pack them again, then let the window pass.
	if err := n.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	clock.Set(clock.Now().Add(2 * time.Hour))
	if err := n.DropExpired(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range keys {
		r, err := n.Incr(ctx, "likes", fmt.Sprintf("p%d", i), 1, WriteOptions{ID: fmt.Sprintf("u%d", i)})
		if err != nil || r.Duplicate {
			t.Fatalf("retry of u%d after its window: %+v %v; want counted", i, r, err)
		}
	}
}
