//go:build sabotage_drop_delta

package node

import (
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/countmesh/countmesh/change"
	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/node/replica"
)

// Under sabotage_drop_delta a batch of 200 replicated deltas leaves some
// counters unapplied while the version vector moves over the whole range,
// so anti-entropy (which sends only what lies beyond it) never repairs them.
func TestSabotageDropDeltaLeavesCountersUnapplied(t *testing.T) {
	n := openTest(t, testConfig(t, vfs.NewMem()))
	const origin = crdt.NodeID(crdt.MaxRetiredGen) + 7777
	var b change.Batch
	wantDropped := 0
	for i := range 200 {
		d := change.Delta{NS: "likes", Key: fmt.Sprintf("k%03d", i), Origin: origin, Seq: uint64(i + 1),
			State: crdt.Counter{Slots: []crdt.Slot{{Node: origin, P: 1}}}}
		if replica.SabotageDrops(&d) {
			wantDropped++
		}
		b.Deltas = append(b.Deltas, d)
	}
	b.Ranges = []change.Range{{Origin: origin, After: 0, Upto: 200}}
	if wantDropped == 0 {
		t.Fatal("the sabotage's hash drops none of these 200 deltas; pick other keys")
	}
	if err := n.Replica().Apply(b); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if got := n.Replica().VersionVector()[origin]; got != 200 {
		t.Fatalf("version vector of the origin %d, want 200 (advanced over the dropped deltas)", got)
	}
	missing := 0
	for _, d := range b.Deltas {
		st, _, err := n.rep.CounterState(d.NS, d.Key)
		if err != nil {
			t.Fatal(err)
		}
		if st.Value() != 1 {
			missing++
		}
	}
	if missing != wantDropped {
		t.Fatalf("%d of 200 counters unapplied, want %d (the dropped deltas)", missing, wantDropped)
	}
	t.Logf("%d of 200 deltas dropped, version vector at 200", missing)
}
