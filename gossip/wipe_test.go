package gossip_test

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/gossip/gossiptest"
)

// An owner of a sharded namespace that loses its disk and is back, as a
// new incarnation on the same address, before the others notice it was
// gone still gets every change of the counters it owns: those written
// before (from the other owners) and after (from every writer). The chaos
// campaign saw such an owner take none of some nodes' changes for more
// than a minute (docs/chaos.md, fourteenth stop).
func TestShardedOwnerWipedBeforeItsFailureIsSeen(t *testing.T) {
	c := newShardedCluster(t, 61, []string{"a1@A", "a2@A", "b1@B", "b2@B", "a3@A"}, nil)
	late := c.node("a3")
	rng := rand.New(rand.NewPCG(61, 1))
	want, writers, owned := shardedWithLateJoiner(t, c, late, rng)

	// a3's disk is lost; it is back at once, as a new incarnation.
	c.stop(late, true)
	late.rep = gossiptest.NewReplica(crdt.NodeIDOf("a3", 1))
	late.rep.SetReplicas(replicasOf)
	c.restart(late)
	c.waitMembership(10 * time.Second)
	shardedWrites(c, rng, "sh", 150, 150, want, writers)
	waitShardedHeld(t, c, want, 15*time.Second)
	t.Logf("a3, wiped and back at once, holds the %d of %d counters it owns", owned, len(want))
}
