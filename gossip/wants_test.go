package gossip

import (
	"testing"

	"github.com/countmesh/countmesh/change"
	"github.com/countmesh/countmesh/crdt"
)

// A peer this node does not count alive (restarted, not seen back or not
// verified yet) is given, in the exchange it catches up with, the shards
// it owns once it is counted; a peer it counts alive, only those it owns
// now; and a peer it never heard of, none.
func TestWantsCountsARestartedPeer(t *testing.T) {
	const replicas = 1
	// a1 (this node) and b2 alive; b1, of region B, known but not alive.
	alive := map[string]peerInfo{"b2": {name: "b2", region: "B"}}
	m := &Mesh{cfg: Config{Name: "a1", Region: "A", Replicas: func(string) int { return replicas }}}
	m.routes.Store(buildRoutes("a1", "A", crdt.NodeIDFromName("a1"), alive, FanOutBridge))
	m.members.m = map[string]*memberRecord{
		"b1": {info: Member{Name: "b1", Region: "B", ID: crdt.NodeIDFromName("b1")}, state: StateDead},
		"b2": {info: Member{Name: "b2", Region: "B", ID: crdt.NodeIDFromName("b2")}, state: StateAlive},
	}
	writer := crdt.NodeIDFromName("w") // a writer that left
	b1Owns := 0
	for part := range change.Partitions {
		s := change.Shard{Replicas: replicas, Part: part}
		space := s.Space(writer)
		m.spaces.note(space, s)
		// With b1 counted, region B's one owner is b1 or b2.
		owner := ShardOwners(s, []string{"b1", "b2"})[0]
		if got := m.wants("b1", space); got != (owner == "b1") {
			t.Fatalf("shard %d (owner in B once b1 is counted: %s): wants(b1) = %v", part, owner, got)
		}
		if owner == "b1" {
			b1Owns++
		}
		// b2 is alive: what it owns now, which is every shard of B.
		if !m.wants("b2", space) {
			t.Fatalf("shard %d: wants(b2) = false; b2 is region B's only alive member", part)
		}
		if m.wants("stranger", space) {
			t.Fatalf("shard %d: a peer this node never heard of is given a space", part)
		}
	}
	if b1Owns == 0 || b1Owns == change.Partitions {
		t.Fatalf("b1 owns %d of %d shards once counted; the test proves nothing", b1Owns, change.Partitions)
	}
	// A restarted writer still gets its own space back, whoever owns it.
	s := change.Shard{Replicas: replicas, Part: 0}
	own := s.Space(crdt.NodeIDFromName("b1"))
	m.spaces.note(own, s)
	if !m.wants("b1", own) {
		t.Fatal("b1 is not given its own space")
	}
	t.Logf("b1 is given %d of %d shards while not counted alive; b2 all of them", b1Owns, change.Partitions)
}
