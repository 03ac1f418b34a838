package change

import (
	"fmt"
	"testing"

	"github.com/countmesh/countmesh/crdt"
)

func TestSpaceRoundTripsAndSeparatesShards(t *testing.T) {
	origins := []crdt.NodeID{1, crdt.NodeIDFromName("a1"), crdt.NodeIDFromName("b2"), ^crdt.NodeID(0)}
	seen := make(map[crdt.NodeID]string)
	for _, o := range origins {
		seen[o] = fmt.Sprintf("origin %d", o)
	}
	for _, r := range []int{1, 2, 3} {
		for p := range Partitions {
			s := Shard{Replicas: r, Part: p}
			for _, o := range origins {
				sp := s.Space(o)
				if sp == o {
					t.Fatalf("%+v: space of %d is the origin itself", s, o)
				}
				if got := s.Origin(sp); got != o {
					t.Fatalf("%+v: Origin(Space(%d)) = %d", s, o, got)
				}
				name := fmt.Sprintf("space of %d in %+v", o, s)
				if prev, dup := seen[sp]; dup {
					t.Fatalf("%s equals %s", name, prev)
				}
				seen[sp] = name
			}
		}
	}
}

func TestPartitionOfSpreadsKeys(t *testing.T) {
	const n = 64_000
	counts := make([]int, Partitions)
	for i := range n {
		p := PartitionOf("ns", fmt.Sprintf("key-%d", i))
		if p < 0 || p >= Partitions {
			t.Fatalf("partition %d out of range", p)
		}
		counts[p]++
	}
	// 1,000 expected per partition; a fair hash stays within 15 %.
	for p, c := range counts {
		if c < 850 || c > 1150 {
			t.Errorf("partition %d got %d of %d keys", p, c, n)
		}
	}
	if PartitionOf("a", "bc") == PartitionOf("ab", "c") && PartitionOf("x", "yz") == PartitionOf("xy", "z") {
		t.Error("the namespace and key are not separated in the hash")
	}
}

func TestWriterAndSpaceOwner(t *testing.T) {
	w := crdt.NodeIDFromName("w1")
	c := crdt.Counter{}
	if _, err := c.Add(w, 3); err != nil {
		t.Fatal(err)
	}
	for _, r := range []int{1, 3, MaxReplicas} {
		sp := ShardOf("ns", "k", r).Space(w)
		for _, guess := range []int{0, r, 2} {
			if got, ok := Writer("ns", "k", sp, guess, &c); !ok || got != w {
				t.Errorf("replicas %d, guessed %d: Writer = %d, %v; want %d", r, guess, got, ok, w)
			}
		}
		if got, ok := SpaceOwner(sp, func(id crdt.NodeID) bool { return id == w }); !ok || got != w {
			t.Errorf("replicas %d: SpaceOwner = %d, %v", r, got, ok)
		}
	}
	if got, ok := Writer("ns", "k", w, 3, &c); !ok || got != w {
		t.Errorf("the writer's own id: Writer = %d, %v", got, ok)
	}
	if _, ok := Writer("ns", "k", crdt.NodeIDFromName("stranger"), 3, &c); ok {
		t.Error("an origin that is neither a slot nor a space of one was resolved")
	}
	if _, ok := SpaceOwner(crdt.NodeIDFromName("stranger"), func(id crdt.NodeID) bool { return id == w }); ok {
		t.Error("a random id was taken for a space of a known node")
	}
	r := c.SetReset(crdt.NodeIDFromName("w2"), 0, false)
	if !CarriesWriter(&c, r.Node) {
		t.Error("a reset's node is a writer of the state")
	}
}
