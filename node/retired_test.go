package node

import (
	"context"
	"errors"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/countmesh/countmesh/change"
	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/node/retire"
)

// A node that lacks some of a forgotten node's changes up to its cut (it
// came back, or joined, since the forget) refuses resets and deletes until
// it holds them: its reset's floor would record the forgotten node's slot
// short of its final total, which once folded counts the difference twice.
// The fold waits for the whole cut; the reset only for the forgotten ids'.
func TestResetWaitsForAForgottenNodesLastChanges(t *testing.T) {
	ctx := context.Background()
	n := openNamed(t, "n1", vfs.NewMem())
	gone := crdt.NodeIDFromName("gone")
	other := crdt.NodeIDFromName("other")
	n.Replica().VouchFor(gone, other)
	apply := func(origin crdt.NodeID, seq, p uint64) {
		t.Helper()
		if err := n.Replica().Apply(change.Batch{
			Ranges: []change.Range{{Origin: origin, After: seq - 1, Upto: seq}},
			Deltas: []change.Delta{{NS: "pv", Key: "k", Origin: origin, Seq: seq, State: crdt.Counter{Slots: []crdt.Slot{{Node: origin, P: p}}}}},
		}); err != nil {
			t.Fatal(err)
		}
	}
	apply(gone, 1, 3)
	cut := []retire.OriginSeq{{Origin: gone, Seq: 2}, {Origin: other, Seq: 1}}
	retire.SortOrigins(cut)
	if _, err := n.RetireSync([]retire.Entry{{Name: "gone", IDs: []crdt.NodeID{gone}, Cut: cut}}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Reset(ctx, "pv", "k", 0); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("reset while gone's change 2 is missing: %v, want ErrUnavailable", err)
	}
	if err := n.Delete(ctx, "pv", "k"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("delete while gone's change 2 is missing: %v, want ErrUnavailable", err)
	}
	if v := mustGet(t, n, "pv", "k"); v != 3 {
		t.Fatalf("refused resets changed the value: %d", v)
	}
	apply(gone, 2, 5)
	// other's change is still missing: no fold yet, but resets may go.
	if _, err := n.Reset(ctx, "pv", "k", 10); err != nil {
		t.Fatalf("reset once gone's changes are held: %v", err)
	}
	if got := n.FoldGen(); got != 0 {
		t.Fatalf("fold generation %d before the cut is covered", got)
	}
}
