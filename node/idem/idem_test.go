package idem

import (
	"math"
	"testing"

	"github.com/countmesh/countmesh/crdt"
)

func TestKeyRoundTrip(t *testing.T) {
	id, key, ok := ParseKey(Key("order-17", "page/home"))
	if !ok || id != "order-17" || key != "page/home" {
		t.Fatalf("parse = %q %q %v", id, key, ok)
	}
	if _, _, ok := ParseKey("page/home"); ok {
		t.Fatal("a user key parsed as an id record key")
	}
}

func TestZigzag(t *testing.T) {
	for _, by := range []int64{0, 1, -1, 2, -2, 1<<53 - 1, -(1<<53 - 1), math.MaxInt64, math.MinInt64} {
		if got := Unzigzag(Zigzag(by)); got != by {
			t.Errorf("Unzigzag(Zigzag(%d)) = %d", by, got)
		}
	}
}

func TestReadPicksTheSmallestApplier(t *testing.T) {
	const self, lo, hi = crdt.NodeID(crdt.MaxRetiredGen) + 50, crdt.NodeID(crdt.MaxRetiredGen) + 10, crdt.NodeID(crdt.MaxRetiredGen) + 90
	c := crdt.Counter{Slots: []crdt.Slot{
		{Node: hi, P: Zigzag(4) + 1, N: 300 << 1},
		{Node: self, P: Zigzag(4) + 1, N: 200<<1 | 1},
		{Node: lo, P: Zigzag(4) + 1, N: 100 << 1},
	}}
	st := Read(&c, self)
	if !st.Seen || st.Winner != lo || st.By != 4 || st.LastSec != 300 || !st.SelfSeen || st.Self.N&1 != 1 {
		t.Fatalf("Read = %+v", st)
	}
	if st := Read(&crdt.Counter{}, self); st.Seen {
		t.Fatalf("an empty record reads as seen: %+v", st)
	}
}
