package node

import (
	"context"
	"errors"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// A node that is not ready (after a restart, before it caught up with its
// peers) may have lost what it acknowledged: it refuses quorum and all
// reads, even when it is the whole quorum, and local reads. Found by the
// chaos campaign: (seed 20261201) a wiped node of a one-node region
// answered a quorum read with 0 before it had caught up; (seed
// 3722273669189070260) a wiped node answered a local read with -1 for a
// counter whose minimum is 0, from the part of the state that had reached
// it.
func TestRegressUnreadyNodeRefusesReads(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t, vfs.NewMem())
	cfg.StartUnready = true
	n := openTest(t, cfg)
	for _, level := range []string{ConsistencyLocal, ConsistencyQuorum, ConsistencyAll} {
		_, err := n.Get(ctx, "ns", "k", ReadOptions{Consistency: level})
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("%s read on a node that is not ready: %v, want ErrUnavailable", level, err)
		}
	}
	n.MarkReady()
	for _, level := range []string{ConsistencyLocal, ConsistencyQuorum} {
		if _, err := n.Get(ctx, "ns", "k", ReadOptions{Consistency: level}); err != nil {
			t.Fatalf("%s read once ready: %v", level, err)
		}
	}
}
