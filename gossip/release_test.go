package gossip_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/countmesh/countmesh/change"
	"github.com/countmesh/countmesh/gossip"
)

// A node that released changes it no longer holds (a writer's copies of a
// sharded namespace's counters, once their owners hold them) gives a peer
// whose vector is below the release mark only the changes above the mark,
// which the peer holds past its gap: a range from below the mark would move
// the peer's vector over changes it never got. Once the peer has the rest
// from elsewhere, its vector covers everything.
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
	x.rep.Release(id, shardOwnedBy(t, "y", []string{"x", "y"}), 5) // a shard x does not own: it takes nothing back
	c.start(y)
	if _, err := y.mesh.Join([]string{x.host.GossipAddr()}); err != nil {
		t.Fatal(err)
	}
	c.waitMembership(10 * time.Second)
	time.Sleep(time.Second) // about ten anti-entropy rounds each way
	if got := y.rep.VersionVector()[id]; got != 0 {
		t.Fatalf("y's vector of x is at %d after exchanges with x, which released changes 1-5; want 0", got)
	}
	// The changes above the floor did go, held past y's gap: x may be
	// their only holder (a leaving node's hand-over).
	if held := y.rep.Held(id); !slices.Equal(held, []uint64{6, 7, 8, 9, 10}) {
		t.Fatalf("y holds x's changes %v past its gap, want 6-10", held)
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

// shardOwnedBy returns a shard with one replica that owner alone owns
// among members.
func shardOwnedBy(t *testing.T, owner string, members []string) change.Shard {
	t.Helper()
	for part := range change.Partitions {
		s := change.Shard{Replicas: 1, Part: part}
		if os := gossip.ShardOwners(s, members); len(os) == 1 && os[0] == owner {
			return s
		}
	}
	t.Fatalf("%s owns no shard among %v", owner, members)
	return change.Shard{}
}

// A node that released changes of a shard it owns now advertises 0 for
// their origin in anti-entropy: a peer hands every change of it back, and
// the range from 0 clears the release.
func TestExchangeHandsReleasedShardBack(t *testing.T) {
	c := newCluster(t, 9, []string{"x@A", "y@A"}, nil)
	x, y := c.nodes[0], c.nodes[1]
	c.startAll()
	for j := range 10 {
		c.add(x, "ns", fmt.Sprintf("k%d", j), int64(j+1))
	}
	c.waitConverged(10 * time.Second)
	id := x.rep.Self()
	y.rep.Release(id, shardOwnedBy(t, "y", []string{"x", "y"}), 10)
	if y.rep.Counter("ns", "k3").Value() != 0 || y.rep.ReleasedThrough(id) != 10 {
		t.Fatal("the release did not drop y's copies")
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(y.rep.ReleasedShards()) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("y still has released changes of x after 10 s of exchanges: %v", y.rep.ReleasedShards())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for j := range 10 {
		if v := y.rep.Counter("ns", fmt.Sprintf("k%d", j)).Value(); v != int64(j+1) {
			t.Fatalf("y reads k%d = %d after taking x's changes back, want %d", j, v, j+1)
		}
	}
	if y.rep.ReleasedThrough(id) != 0 {
		t.Fatalf("y's floor for x is %d after the refill, want 0", y.rep.ReleasedThrough(id))
	}
}
