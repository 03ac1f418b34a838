package node

import (
	"context"
	"errors"
	"math"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/countmesh/countmesh/change"
	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/crdt/crdtfuzz"
	"github.com/countmesh/countmesh/node/exact"
)

// peerFuzz decodes peer input from fuzz bytes: node ids, keys and numbers
// from small pools that hit the rules' edges often.
type peerFuzz struct {
	*crdtfuzz.Reader
	keys []struct{ ns, key string }
}

// peerEdges are the numbers at the edges of the peer-input rules.
var peerEdges = []uint64{
	crdt.MaxSlotTotal, crdt.MaxSlotTotal + 1, math.MaxUint64, math.MaxInt64,
	crdt.MaxEpoch, crdt.MaxEpoch + 1, 1 << 32, 1<<32 + 1,
	2*MaxBy + 1, 2*MaxBy + 2, 1e12, 1 << 53, 3, 300, 65536, 1 << 40,
}

// FuzzPeerInput feeds fuzzed states to MergeStates and Apply of a real
// in-memory node: nothing panics, a refused input wraps ErrInvalidPeerData
// and leaves every counter as it was, and what is accepted is stored as a
// valid state.
func FuzzPeerInput(f *testing.F) {
	n := openTest(f, testConfig(f, vfs.NewMem()))
	ctx := context.Background()
	if _, err := n.Incr(ctx, "ns", "k", 5, WriteOptions{ID: "i"}); err != nil {
		f.Fatal(err)
	}
	zero := int64(0)
	if _, err := n.PutNamespace(ctx, "ex", NamespacePatch{Type: ptr(TypeExact), Min: NullableInt{Set: true, Value: &zero}}); err != nil {
		f.Fatal(err)
	}
	if _, err := n.Incr(ctx, "ex", "k", 10, WriteOptions{}); err != nil {
		f.Fatal(err)
	}
	pool := &peerFuzz{
		Reader: &crdtfuzz.Reader{MaxSlots: 4, Edges: peerEdges,
			Nodes: []crdt.NodeID{n.ID(), crdt.NodeIDFromName("n2"), crdt.NodeIDFromName("n3"), 0xdeadbeef, 0, math.MaxUint64}},
		keys: []struct{ ns, key string }{
			{"ns", "k"}, {"ns", "k2"}, {"ns", idKey("i", "k")}, {"ns", idKey("j", "k")},
			{"ex", "k"}, {"ex", exact.RightsKey(exact.GivenToAll, "k")}, {"ex", exact.RightsKey(n.ID(), "k")},
		},
	}
	snapshot := func(t *testing.T) []crdt.Counter {
		out := make([]crdt.Counter, len(pool.keys))
		for i, k := range pool.keys {
			c, _, err := n.rep.CounterState(k.ns, k.key)
			if err != nil {
				t.Fatalf("read %s/%q: %v", k.ns, k.key, err)
			}
			out[i] = c
		}
		return out
	}
	f.Add([]byte{0, 0, 1, 1, 3, 0, 1})
	f.Add([]byte{1, 2, 1, 1, 0, 0, 0xf2, 0, 1, 0})
	f.Add([]byte{0, 2, 2, 1, 0xf0, 0, 2, 0xf0, 0, 0, 0xf5, 1, 0, 1, 0})
	f.Add([]byte{1, 3, 1, 1, 9, 0xf4, 1, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := *pool.Reader
		r.B = data
		door := r.Byte() % 2
		k := pool.keys[int(r.Byte())%len(pool.keys)]
		origin := r.Node()
		state := r.Counter()
		before := snapshot(t)
		var err error
		if door == 0 {
			err = n.MergeStates(ctx, []CounterState{{NS: k.ns, Key: k.key, State: state}})
		} else {
			err = n.Replica().Apply(change.Batch{Deltas: []change.Delta{{NS: k.ns, Key: k.key, Origin: origin, Seq: 1, State: state}}})
		}
		after := snapshot(t)
		if err != nil {
			if !errors.Is(err, ErrInvalidPeerData) {
				t.Fatalf("refused with %v, want ErrInvalidPeerData", err)
			}
			for i := range before {
				if !before[i].Equal(after[i]) {
					t.Fatalf("refused input (%v) changed %s/%q: %+v -> %+v", err, pool.keys[i].ns, pool.keys[i].key, before[i], after[i])
				}
			}
			return
		}
		for i, c := range after {
			if verr := c.Validate(crdt.Limits{}); verr != nil {
				t.Fatalf("accepted input left %s/%q invalid: %v", pool.keys[i].ns, pool.keys[i].key, verr)
			}
		}
		if own, was := after[0].Slot(n.ID()), before[0].Slot(n.ID()); own != was {
			t.Fatalf("accepted input moved this node's own slot: %+v -> %+v", was, own)
		}
	})
}
