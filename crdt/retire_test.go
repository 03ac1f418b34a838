package crdt_test

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/countmesh/countmesh/crdt"
)

func mustMergeRetired(t *testing.T, c *crdt.Counter, other crdt.Counter, retired []crdt.NodeID) {
	t.Helper()
	if err := c.MergeRetired(other, retired); err != nil {
		t.Fatalf("MergeRetired: %v", err)
	}
}

func mustAdd(t *testing.T, c *crdt.Counter, node crdt.NodeID, by int64) {
	t.Helper()
	if _, err := c.Add(node, by); err != nil {
		t.Fatalf("Add(%d, %d): %v", node, by, err)
	}
}

// A counter written by 50 nodes that then leave for good reads the same
// value, on every replica, with one retired slot plus the live writers'
// slots once they are folded; replicas that fold early, late or not at all
// converge; late deltas of a departed node change nothing.
func TestRetireFiftyDepartedWriters(t *testing.T) {
	live := []crdt.NodeID{crdt.NodeIDFromName("live-0"), crdt.NodeIDFromName("live-1"), crdt.NodeIDFromName("live-2")}
	reps := make([]crdt.Counter, len(live))
	var gone []crdt.NodeID
	var lateOld, lateFinal, lateFull crdt.Counter
	for i := range 50 {
		id := crdt.NodeIDOf("gone", uint64(i))
		gone = append(gone, id)
		var w crdt.Counter
		mustAdd(t, &w, id, int64(i+1))
		if i == 7 {
			lateOld = w.Delta(false, id)
		}
		mustAdd(t, &w, id, -1)
		if i == 7 {
			lateFinal, lateFull = w.Delta(true, id), w.Clone()
		}
		reps[i%3].Merge(w) // the departing node hands its state to a live one
	}
	// A reset by live-0, which has seen only the writers it received (net
	// i for writer i, i = 0, 3, ..., 48: 408); then the live writers write.
	reps[0].SetReset(live[0], 100, false)
	mustAdd(t, &reps[1], live[1], 5)
	mustAdd(t, &reps[2], live[2], -2)
	mustAdd(t, &reps[0], live[0], 1)
	want := int64(100 + (1225 - 408) + 5 - 2 + 1)

	// A full exchange, at generation 0: every live replica now holds every
	// change, the reset included, so every departed node may be retired.
	for _, r := range []int{1, 2} {
		mustMergeRetired(t, &reps[0], reps[r], nil)
	}
	for _, r := range []int{1, 2} {
		mustMergeRetired(t, &reps[r], reps[0], nil)
	}
	unfolded := reps[0].Clone()
	if got := unfolded.Value(); got != want || len(unfolded.Slots) != 53 {
		t.Fatalf("before folding: value %d with %d slots, want %d with 53", got, len(unfolded.Slots), want)
	}

	// The cluster retires the 50 in some order; live-0 folds them all,
	// live-1 half of them, live-2 none.
	retired := slices.Clone(gone)
	slices.Reverse(retired[10:])
	if err := reps[0].Fold(retired, 50); err != nil {
		t.Fatal(err)
	}
	if err := reps[1].Fold(retired, 25); err != nil {
		t.Fatal(err)
	}
	for i, c := range reps {
		if got := c.Value(); got != want {
			t.Fatalf("replica %d at generation %d reads %d, want %d", i, c.Gen, got, want)
		}
	}
	mustAdd(t, &reps[1], live[1], 3)
	want += 3

	mustMergeRetired(t, &reps[2], reps[1], retired)
	mustMergeRetired(t, &reps[0], reps[2], retired)
	mustMergeRetired(t, &reps[1], reps[0], retired)
	mustMergeRetired(t, &reps[2], reps[0], retired)

	wantNodes := append([]crdt.NodeID{crdt.RetiredNode}, live...)
	slices.Sort(wantNodes)
	for i, c := range reps {
		if c.Gen != 50 || c.Value() != want {
			t.Fatalf("replica %d: generation %d, value %d; want 50, %d", i, c.Gen, c.Value(), want)
		}
		var nodes []crdt.NodeID
		for _, s := range c.Slots {
			nodes = append(nodes, s.Node)
		}
		if !slices.Equal(nodes, wantNodes) {
			t.Fatalf("replica %d holds slots of %v, want the retired slot and the live writers %v", i, nodes, wantNodes)
		}
		if rs := c.Slot(crdt.RetiredNode); rs.P != 1275 || rs.N != 50 {
			t.Fatalf("replica %d: retired slot %+v, want P 1275 (1+...+50) and N 50", i, rs)
		}
		if err := c.ValidateRetired(crdt.Limits{}, retired); err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
		if !c.Equal(reps[0]) {
			t.Fatalf("replica %d = %s, replica 0 = %s", i, describe(c), describe(reps[0]))
		}
	}

	// Late deltas of writer 7, and its last full state, all at generation
	// 0: folded on their side, dominated by the retired slot.
	for name, late := range map[string]crdt.Counter{"old delta": lateOld, "final delta": lateFinal, "full state": lateFull} {
		c := reps[2].Clone()
		mustMergeRetired(t, &c, late, retired)
		if !c.Equal(reps[2]) || c.Value() != want {
			t.Errorf("late %s of a departed writer changed the state: %s, value %d (want %d)", name, describe(c), c.Value(), want)
		}
	}
	// The unfolded state of before the fold merges in the same way.
	c := reps[1].Clone()
	mustMergeRetired(t, &c, unfolded, retired)
	if !c.Equal(reps[1]) {
		t.Errorf("the unfolded state changed a folded one: %s", describe(c))
	}
}

// Fold's precondition asks a replica to hold every reset made before a
// node's cut, not only the node's own changes. Two departed nodes f1 and f2;
// A resets having seen f1 in part and f2 whole, B resets after f1's cut
// having seen f1 whole and f2 in part. Folded separately, the two floors
// are sums (3+4 and 5+2) whose maximum undercounts the per-node maxima (5+4),
// so a fold of f2 before A has B's reset reads 2 too many.
func TestFoldNeedsEveryResetBeforeTheCut(t *testing.T) {
	f1, f2 := crdt.NodeIDFromName("f1"), crdt.NodeIDFromName("f2")
	a, b := crdt.NodeIDFromName("a"), crdt.NodeIDFromName("b")
	var w1, w2 crdt.Counter
	mustAdd(t, &w1, f1, 3)
	f1Part := w1.Clone()
	mustAdd(t, &w1, f1, 2)
	mustAdd(t, &w2, f2, 2)
	f2Part := w2.Clone()
	mustAdd(t, &w2, f2, 2)

	var ra, rb crdt.Counter
	ra.Merge(f1Part)
	ra.Merge(w2)
	ra.SetReset(a, 0, false) // floor f1 3, f2 4
	rb.Merge(w1)
	rb.Merge(f2Part)
	ra.Merge(w1.Delta(false, f1)) // every live replica holds f1's final slot: f1's cut
	retired := []crdt.NodeID{f1}
	rb.SetReset(b, 0, false) // after f1's cut: floor f1 5, f2 2
	rb.Merge(w2.Delta(false, f2))
	ra.Merge(w2.Delta(false, f2)) // f2's cut
	retired = append(retired, f2)

	truth := ra.Clone()
	truth.Merge(rb)
	if truth.Value() != 0 {
		t.Fatalf("unfolded merge reads %d, want 0", truth.Value())
	}

	// A folds f2 without B's reset, which was made before f2's cut.
	early := ra.Clone()
	if err := early.Fold(retired, 2); err != nil {
		t.Fatal(err)
	}
	mustMergeRetired(t, &early, rb, retired)
	if got := early.Value(); got != 2 {
		t.Fatalf("fold against the precondition reads %d; this test expects 2, the double count the precondition prevents", got)
	}

	// Keeping it: A folds f1 (it holds every reset before f1's cut) but not
	// f2 until it has B's reset.
	kept := ra.Clone()
	if err := kept.Fold(retired, 1); err != nil {
		t.Fatal(err)
	}
	mustMergeRetired(t, &kept, rb, retired)
	if err := kept.Fold(retired, 2); err != nil {
		t.Fatal(err)
	}
	if got := kept.Value(); got != 0 || len(kept.Slots) != 1 {
		t.Fatalf("fold under the precondition: value %d, state %s; want 0 with only the retired slot", got, describe(kept))
	}
}

func TestFoldRefusesChangingNothing(t *testing.T) {
	a, b := crdt.NodeIDFromName("a"), crdt.NodeIDFromName("b")
	tests := []struct {
		name    string
		c       func() crdt.Counter
		retired []crdt.NodeID
		gen     uint64
		want    error
	}{
		{"beyond the list", func() crdt.Counter { return crdt.Counter{} }, []crdt.NodeID{a}, 2, crdt.ErrRetired},
		{"list names the reserved id", func() crdt.Counter { return crdt.Counter{} }, []crdt.NodeID{a, crdt.RetiredNode}, 2, crdt.ErrRetired},
		{"reserved id written at generation 0", func() crdt.Counter {
			var c crdt.Counter
			c.Add(crdt.RetiredNode, 1)
			return c
		}, []crdt.NodeID{a}, 1, crdt.ErrRetired},
		{"retired total past MaxSlotTotal", func() crdt.Counter {
			var c crdt.Counter
			c.Add(a, math.MaxInt64)
			c.SetReset(a, 0, false)
			c.Add(b, math.MaxInt64)
			c.Add(b, 2)
			return c
		}, []crdt.NodeID{a, b}, 2, crdt.ErrOverflow},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.c()
			before := c.Clone()
			if err := c.Fold(tt.retired, tt.gen); !errors.Is(err, tt.want) {
				t.Fatalf("Fold = %v, want %v", err, tt.want)
			}
			if !c.Equal(before) {
				t.Fatalf("refused Fold changed the state: %s -> %s", describe(before), describe(c))
			}
			other := crdt.Counter{Gen: tt.gen}
			if err := c.MergeRetired(other, tt.retired); !errors.Is(err, tt.want) {
				t.Fatalf("MergeRetired = %v, want %v", err, tt.want)
			}
			if !c.Equal(before) {
				t.Fatalf("refused MergeRetired changed the state: %s -> %s", describe(before), describe(c))
			}
		})
	}
}

func TestFoldKeepsValueAndFloor(t *testing.T) {
	a, b, l := crdt.NodeIDFromName("a"), crdt.NodeIDFromName("b"), crdt.NodeIDFromName("l")
	var c crdt.Counter
	mustAdd(t, &c, a, 7)
	mustAdd(t, &c, b, -3)
	mustAdd(t, &c, l, 1)
	c.SetReset(l, 10, true)
	mustAdd(t, &c, a, 4)
	before := c.Clone()
	if err := c.Fold([]crdt.NodeID{b, a}, 2); err != nil {
		t.Fatal(err)
	}
	if c.Value() != before.Value() || c.Live() != before.Live() {
		t.Fatalf("fold changed value/live: %d/%v -> %d/%v", before.Value(), before.Live(), c.Value(), c.Live())
	}
	want := crdt.Counter{
		Slots: []crdt.Slot{{Node: crdt.RetiredNode, P: 11, N: 3}, {Node: l, P: 1}},
		Reset: &crdt.Reset{Epoch: 1, Node: l, Value: 10, Deleted: true,
			Floor: []crdt.Slot{{Node: crdt.RetiredNode, P: 7, N: 3}, {Node: l, P: 1}}},
		Gen: 2,
	}
	if !c.Equal(want) {
		t.Fatalf("folded state %s, want %s", describe(c), describe(want))
	}
	if before.Reset.Floor[0].Node == crdt.RetiredNode {
		t.Fatalf("Fold changed the floor of a copy it shares nothing with")
	}
	// A second fold to the same or a lower generation changes nothing.
	for _, g := range []uint64{0, 1, 2} {
		d := c.Clone()
		if err := d.Fold([]crdt.NodeID{b, a}, g); err != nil || !d.Equal(c) {
			t.Fatalf("Fold(%d) at generation 2: err %v, state %s", g, err, describe(d))
		}
	}
	if _, err := c.Add(crdt.RetiredNode, 1); !errors.Is(err, crdt.ErrRetired) {
		t.Fatalf("Add to the retired slot: err %v, want ErrRetired", err)
	}
	d := c.Delta(false, l)
	if d.Gen != 2 || len(d.Slots) != 2 || d.Slots[0].Node != crdt.RetiredNode {
		t.Fatalf("Delta(false, l) of a folded state = %s, want the retired slot and l's at generation 2", describe(d))
	}
	if c.Equal(crdt.Counter{Slots: c.Slots, Reset: c.Reset}) {
		t.Fatalf("Equal ignores the generation")
	}
}

func TestValidateRetired(t *testing.T) {
	a, b := crdt.NodeIDFromName("a"), crdt.NodeIDFromName("b")
	retired := []crdt.NodeID{a}
	tests := []struct {
		name string
		c    crdt.Counter
		want error // nil: valid
	}{
		{"generation 0", crdt.Counter{Slots: []crdt.Slot{{Node: a, P: 1}}}, nil},
		{"folded", crdt.Counter{Slots: []crdt.Slot{{Node: crdt.RetiredNode, P: 1}, {Node: b, P: 2}}, Gen: 1}, nil},
		{"folded, no retired slot", crdt.Counter{Slots: []crdt.Slot{{Node: b, P: 2}}, Gen: 1}, nil},
		{"beyond the list", crdt.Counter{Gen: 2}, crdt.ErrRetired},
		{"folded node's slot", crdt.Counter{Slots: []crdt.Slot{{Node: crdt.RetiredNode, P: 1}, {Node: a, P: 2}}, Gen: 1}, crdt.ErrInvalid},
		{"folded node's floor entry", crdt.Counter{Slots: []crdt.Slot{{Node: a, P: 2}},
			Reset: &crdt.Reset{Epoch: 1, Floor: []crdt.Slot{{Node: a, P: 1}}}, Gen: 1}, crdt.ErrInvalid},
		{"reserved id at generation 0", crdt.Counter{Slots: []crdt.Slot{{Node: crdt.RetiredNode, P: 1}}}, crdt.ErrInvalid},
		{"retired floor above its slot", crdt.Counter{Slots: []crdt.Slot{{Node: crdt.RetiredNode, P: 1}},
			Reset: &crdt.Reset{Epoch: 1, Floor: []crdt.Slot{{Node: crdt.RetiredNode, P: 2}}}, Gen: 1}, crdt.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.c.ValidateRetired(crdt.Limits{}, retired)
			if (tt.want == nil) != (err == nil) || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Fatalf("ValidateRetired = %v, want %v", err, tt.want)
			}
		})
	}
	if err := (crdt.Counter{Gen: 1}).ValidateRetired(crdt.Limits{}, []crdt.NodeID{crdt.RetiredNode}); !errors.Is(err, crdt.ErrRetired) {
		t.Fatalf("a list naming the reserved id: %v, want ErrRetired", err)
	}
}

// Two live replicas and a node that left; once it is retired and folded, the
// counter keeps one slot per live writer and one for everything retired.
func ExampleCounter_MergeRetired() {
	gone, a, b := crdt.NodeIDFromName("gone"), crdt.NodeIDFromName("a"), crdt.NodeIDFromName("b")
	var ra, rb crdt.Counter
	ra.Add(gone, 40) // written by the departed node, merged everywhere
	rb.Merge(ra)
	late := ra.Delta(false, gone) // a delta of it still in flight
	ra.Add(a, 1)
	rb.Add(b, 2)

	retired := []crdt.NodeID{gone} // agreed by the cluster
	ra.Fold(retired, 1)
	ra.MergeRetired(rb, retired) // rb is folded up on the way
	rb.MergeRetired(ra, retired)
	rb.MergeRetired(late, retired) // counted once
	fmt.Println(ra.Value(), rb.Value(), len(rb.Slots), ra.Equal(rb))
	// Output: 43 43 3 true
}
