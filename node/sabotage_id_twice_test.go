//go:build sabotage_id_twice

package node

import (
	"context"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Under sabotage_id_twice a retry with an id this node has seen counts
// again, alone and in a batch, instead of being answered as a duplicate.
func TestSabotageIDTwiceCountsRetries(t *testing.T) {
	n := openTest(t, testConfig(t, vfs.NewMem()))
	ctx := context.Background()
	if r, err := n.Incr(ctx, "likes", "p1", 1, WriteOptions{ID: "u1"}); err != nil || r.Value != 1 || r.Duplicate {
		t.Fatalf("first: %+v %v", r, err)
	}
	if r, err := n.Incr(ctx, "likes", "p1", 1, WriteOptions{ID: "u1"}); err != nil || r.Value != 2 || r.Duplicate {
		t.Fatalf("retry: %+v %v, want counted again (2, not a duplicate)", r, err)
	}
	res, err := n.Batch(ctx, []BatchOp{{NS: "likes", Key: "p1", By: 1, ID: "u1"}}, "", true)
	if err != nil || res.Applied != 1 || res.Duplicates != 0 {
		t.Fatalf("batch retry: %+v %v, want applied again", res, err)
	}
	if got := mustGet(t, n, "likes", "p1"); got != 3 {
		t.Fatalf("p1 = %d after one increment and two retries, want 3 (counted thrice)", got)
	}
}
