package node

import (
	"context"
	"errors"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// A node that is not ready (after a restart, before it caught up with its
// peers) may have lost what it acknowledged: it refuses quorum and all
// reads, even when it is the whole quorum. Found by the chaos campaign
// (seed 20261201): a wiped node of a one-node region answered a quorum
// read with 0 before it had caught up. Local reads still answer.
func TestRegressUnreadyNodeRefusesQuorumReads(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t, vfs.NewMem())
	cfg.StartUnready = true
	n := openTest(t, cfg)
	for _, level := range []string{ConsistencyQuorum, ConsistencyAll} {
		_, err := n.Get(ctx, "ns", "k", ReadOptions{Consistency: level})
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("%s read on a node that is not ready: %v, want ErrUnavailable", level, err)
		}
	}
	if _, err := n.Get(ctx, "ns", "k", ReadOptions{Consistency: ConsistencyLocal}); err != nil {
		t.Fatalf("local read on a node that is not ready: %v", err)
	}
	n.MarkReady()
	if _, err := n.Get(ctx, "ns", "k", ReadOptions{Consistency: ConsistencyQuorum}); err != nil {
		t.Fatalf("quorum read once ready: %v", err)
	}
}
