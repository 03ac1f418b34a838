package gossip_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/countmesh/countmesh/gossip"
)

// A node that released changes it no longer holds (a writer's copies of a
// sharded namespace's counters, once their owners hold them) gives a peer
// whose vector is below the release mark nothing of that origin: a range
// from below the mark would move the peer's vector over changes it never
// got. A peer at the mark gets the rest.
func TestExchangeWithholdsReleasedChanges(t *testing.T) {
	c := newCluster(t, 7, []string{"x@A", "y@A"}, nil)
	x, y := c.nodes[0], c.nodes[1]
	c.start(x)
	for j := range 10 {
		c.add(x, "ns", fmt.Sprintf("k%d", j), 1) // x is alone: published to nobody
	}
	id := x.rep.Self()
	early := gossip.Batch{Ranges: []gossip.Range{{Origin: id, After: 0, Upto: 5}}}
	if err := x.rep.ScanSince(id, 0, func(d gossip.Delta) bool {
		if d.Seq <= 5 {
			early.Deltas = append(early.Deltas, d)
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	x.rep.Release(id, 5)
	c.start(y)
	if _, err := y.mesh.Join([]string{x.host.GossipAddr()}); err != nil {
		t.Fatal(err)
	}
	c.waitMembership(10 * time.Second)
	time.Sleep(time.Second) // about ten anti-entropy rounds each way
	if got := y.rep.VersionVector()[id]; got != 0 {
		t.Fatalf("y's vector of x is at %d after exchanges with x, which released changes 1-5; want 0", got)
	}
	// y gets the released changes elsewhere (from the owners); then x
	// hands it the rest.
	if err := y.rep.Apply(early); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for y.rep.VersionVector()[id] != 10 {
		if time.Now().After(deadline) {
			t.Fatalf("y's vector of x is at %d, want 10", y.rep.VersionVector()[id])
		}
		time.Sleep(20 * time.Millisecond)
	}
	for j := range 10 {
		if v := y.rep.Counter("ns", fmt.Sprintf("k%d", j)).Value(); v != 1 {
			t.Fatalf("y reads k%d = %d, want 1", j, v)
		}
	}
}
