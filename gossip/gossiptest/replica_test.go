package gossiptest

import (
	"testing"

	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/gossip"
)

func TestReplicaVectorNeedsContiguity(t *testing.T) {
	a := NewReplica(crdt.NodeIDFromName("a"))
	b := NewReplica(crdt.NodeIDFromName("b"))
	var ds []gossip.Delta
	for i := 0; i < 6; i++ {
		d, err := a.Add("ns", "k", 1)
		if err != nil {
			t.Fatal(err)
		}
		ds = append(ds, d)
	}
	origin := a.Self()
	// (3,6] before (0,3]: the gap keeps the vector at 0.
	b.Apply(gossip.Batch{Ranges: []gossip.Range{{Origin: origin, After: 3, Upto: 6}}, Deltas: ds[5:]})
	if got := b.VersionVector()[origin]; got != 0 {
		t.Fatalf("vector after a range with a gap = %d, want 0", got)
	}
	b.Apply(gossip.Batch{Ranges: []gossip.Range{{Origin: origin, After: 0, Upto: 3}}, Deltas: ds[2:3]})
	if got := b.VersionVector()[origin]; got != 3 {
		t.Fatalf("vector = %d, want 3", got)
	}
	// Ranges of one batch apply in order, whatever order they come in.
	c := NewReplica(crdt.NodeIDFromName("c"))
	c.Apply(gossip.Batch{Ranges: []gossip.Range{{Origin: origin, After: 3, Upto: 6}, {Origin: origin, After: 0, Upto: 3}}, Deltas: ds[5:]})
	if got := c.VersionVector()[origin]; got != 6 {
		t.Fatalf("vector = %d, want 6", got)
	}
	if v := c.Counter("ns", "k").Value(); v != 6 {
		t.Fatalf("value = %d, want 6", v)
	}
	// The index holds the latest change per counter, scanned in seq order.
	var seqs []uint64
	a.ScanSince(origin, 0, func(d gossip.Delta) bool { seqs = append(seqs, d.Seq); return true })
	if len(seqs) != 1 || seqs[0] != 6 {
		t.Fatalf("scan = %v, want [6] (earlier changes of k are superseded)", seqs)
	}
}

func TestReplicaApplyDoesNotShareState(t *testing.T) {
	a := NewReplica(crdt.NodeIDFromName("a"))
	b := NewReplica(crdt.NodeIDFromName("b"))
	d, _ := a.Add("ns", "k", 1)
	keep := d.State.Clone()
	b.Apply(gossip.Batch{Deltas: []gossip.Delta{d}})
	d2, _ := b.Add("ns", "k", 5)
	b.Apply(gossip.Batch{Deltas: []gossip.Delta{d2}})
	if !d.State.Equal(keep) {
		t.Fatalf("the replica modified an applied batch: %+v, was %+v", d.State, keep)
	}
}

func TestCommitterPublishesOneRangePerCommit(t *testing.T) {
	r := NewReplica(crdt.NodeIDFromName("a"))
	var got []gossip.Batch
	c := &Committer{Replica: r, Publish: func(b gossip.Batch) { got = append(got, b) }}
	for i := 0; i < 5; i++ {
		d, _ := r.Add("ns", "hot", 1)
		c.Add(d)
	}
	d, _ := r.Add("ns", "cold", 1)
	c.Add(d)
	c.Commit()
	c.Commit() // nothing new: no batch
	if len(got) != 1 {
		t.Fatalf("%d batches, want 1", len(got))
	}
	b := got[0]
	if len(b.Ranges) != 1 || b.Ranges[0] != (gossip.Range{Origin: r.Self(), After: 0, Upto: 6}) {
		t.Fatalf("ranges = %+v", b.Ranges)
	}
	if len(b.Deltas) != 2 {
		t.Fatalf("%d deltas, want 2 (one per counter)", len(b.Deltas))
	}
}
