package node

import (
	"context"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/countmesh/countmesh/change"
	"github.com/countmesh/countmesh/crdt"
)

// TestIncrAndBatchClampAlike: Incr and Batch share one write path, so for a
// bounded counter whose merged state is below its minimum (a peer's
// decrement arrived before the rights that allowed it) both answer the value
// clamped to the bounds, as a read does.
func TestIncrAndBatchClampAlike(t *testing.T) {
	ctx := context.Background()
	n := openTest(t, testConfig(t, vfs.NewMem()))
	if _, err := n.PutNamespace(ctx, "q", NamespacePatch{Type: ptr(TypeExact), Min: NullableInt{Set: true, Value: ptr(int64(0))}}); err != nil {
		t.Fatal(err)
	}
	peer := crdt.NodeIDFromName("peer")
	for _, key := range []string{"a", "b"} {
		err := n.Replica().Apply(change.Batch{
			Ranges: []change.Range{{Origin: peer, After: 0, Upto: 2}},
			Deltas: []change.Delta{{NS: "q", Key: key, Origin: peer, Seq: 1, State: crdt.Counter{Slots: []crdt.Slot{{Node: peer, N: 5}}}}},
		})
		if err != nil {
			t.Fatalf("apply the peer's decrement of %s: %v", key, err)
		}
	}
	steps := []struct {
		by, want int64 // the merged value goes -5, -3, -1, 1, 3
	}{{2, 0}, {2, 0}, {2, 1}, {2, 3}}
	for i, s := range steps {
		r, err := n.Incr(ctx, "q", "a", s.by, WriteOptions{Consistency: ConsistencyLocal})
		if err != nil {
			t.Fatalf("step %d: Incr: %v", i, err)
		}
		b, err := n.Batch(ctx, []BatchOp{{NS: "q", Key: "b", By: s.by}}, ConsistencyLocal, true)
		if err != nil {
			t.Fatalf("step %d: Batch: %v", i, err)
		}
		if r.Value != s.want || b.Values[0] != s.want {
			t.Fatalf("step %d: Incr answered %d, Batch %d; want %d from both", i, r.Value, b.Values[0], s.want)
		}
	}
}
