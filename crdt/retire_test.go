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
	for i, g := range []uint64{50, 25, 0} {
		if got := reps[i].Gen(); got != g {
			t.Fatalf("replica %d at generation %d, want %d: %s", i, got, g, describe(reps[i]))
		}
	}
	for i, c := range reps {
		if got := c.Value(); got != want {
			t.Fatalf("replica %d at generation %d reads %d, want %d", i, c.Gen(), got, want)
		}
	}
	mustAdd(t, &reps[1], live[1], 3)
	want += 3

	mustMergeRetired(t, &reps[2], reps[1], retired)
	mustMergeRetired(t, &reps[0], reps[2], retired)
	mustMergeRetired(t, &reps[1], reps[0], retired)
	mustMergeRetired(t, &reps[2], reps[0], retired)

	wantNodes := append([]crdt.NodeID{crdt.RetiredID(50)}, live...)
	slices.Sort(wantNodes)
	for i, c := range reps {
		if c.Gen() != 50 || c.Value() != want {
			t.Fatalf("replica %d: generation %d, value %d; want 50, %d", i, c.Gen(), c.Value(), want)
		}
		var nodes []crdt.NodeID
		for _, s := range c.Slots {
			nodes = append(nodes, s.Node)
		}
		if !slices.Equal(nodes, wantNodes) {
			t.Fatalf("replica %d holds slots of %v, want the retired slot and the live writers %v", i, nodes, wantNodes)
		}
		if rs := c.Slot(crdt.RetiredID(50)); rs.P != 1275 || rs.N != 50 {
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

func TestRetiredIDs(t *testing.T) {
	for _, tt := range []struct {
		id      crdt.NodeID
		retired bool
	}{
		{0, false}, {1, true}, {2, true}, {crdt.NodeID(crdt.MaxRetiredGen), true},
		{crdt.NodeID(crdt.MaxRetiredGen) + 1, false}, {crdt.NodeIDFromName("a"), false}, {math.MaxUint64, false},
	} {
		if got := crdt.IsRetiredID(tt.id); got != tt.retired {
			t.Errorf("IsRetiredID(%d) = %v, want %v", tt.id, got, tt.retired)
		}
	}
	for _, g := range []uint64{0, 1, 7, crdt.MaxRetiredGen} {
		if got := crdt.RetiredID(g); got != crdt.NodeID(g) {
			t.Errorf("RetiredID(%d) = %d", g, got)
		}
		c := crdt.Counter{Slots: []crdt.Slot{{Node: 0, P: 1}, {Node: crdt.RetiredID(g), P: 2}, {Node: crdt.NodeIDFromName("a"), P: 3}}}
		if g == 0 {
			c.Slots = c.Slots[1:]
		}
		if got := c.Gen(); got != g {
			t.Errorf("Gen() of %s = %d, want %d", describe(c), got, g)
		}
	}
	if crdt.IsRetiredID(crdt.RetiredID(crdt.MaxRetiredGen + 1)) {
		t.Errorf("RetiredID beyond MaxRetiredGen is a retired id")
	}
	if g := (crdt.Counter{Slots: []crdt.Slot{{Node: 0, P: 1}}}).Gen(); g != 0 {
		t.Errorf("a slot of node 0 reads as generation %d", g)
	}
}

func TestFoldRefusesChangingNothing(t *testing.T) {
	a, b := crdt.NodeIDFromName("a"), crdt.NodeIDFromName("b")
	x, y := crdt.NodeIDFromName("x"), crdt.NodeIDFromName("y")
	at := func(gen uint64) func() crdt.Counter { // a state of generation gen
		return func() crdt.Counter { return crdt.Counter{Slots: []crdt.Slot{{Node: crdt.RetiredID(gen), P: 1}}} }
	}
	withA := func() crdt.Counter {
		var c crdt.Counter
		c.Add(a, 1)
		return c
	}
	tooLong := slices.Repeat([]crdt.NodeID{a}, int(crdt.MaxRetiredGen)+1)
	tests := []struct {
		name    string
		c       func() crdt.Counter
		retired []crdt.NodeID
		gen     uint64
		other   func() crdt.Counter // a state MergeRetired refuses with c; nil: none
		want    error
	}{
		{"beyond the list", withA, []crdt.NodeID{a}, 2, at(2), crdt.ErrRetired},
		{"beyond MaxRetiredGen", withA, tooLong, crdt.MaxRetiredGen + 1, nil, crdt.ErrRetired},
		{"list names 0", withA, []crdt.NodeID{a, 0}, 2, at(2), crdt.ErrRetired},
		{"list names a retired id", withA, []crdt.NodeID{crdt.RetiredID(3), a}, 2, at(2), crdt.ErrRetired},
		{"list names a retired id already folded", at(1), []crdt.NodeID{crdt.RetiredID(1), a}, 2, at(2), crdt.ErrRetired},
		{"two retired slots", func() crdt.Counter {
			return crdt.Counter{Slots: []crdt.Slot{{Node: crdt.RetiredID(1), P: 1}, {Node: crdt.RetiredID(2), P: 1}, {Node: a, P: 1}}}
		}, []crdt.NodeID{x, y, a}, 3, at(3), crdt.ErrRetired},
		{"floor entry of another retired id", func() crdt.Counter {
			return crdt.Counter{Slots: []crdt.Slot{{Node: crdt.RetiredID(2), P: 3}, {Node: a, P: 1}},
				Reset: &crdt.Reset{Epoch: 1, Floor: []crdt.Slot{{Node: crdt.RetiredID(1), P: 1}}}}
		}, []crdt.NodeID{x, y, a}, 3, at(3), crdt.ErrRetired},
		{"retired floor entry at generation 0", func() crdt.Counter {
			return crdt.Counter{Slots: []crdt.Slot{{Node: a, P: 1}},
				Reset: &crdt.Reset{Epoch: 1, Floor: []crdt.Slot{{Node: crdt.RetiredID(1), P: 1}}}}
		}, []crdt.NodeID{a}, 1, at(1), crdt.ErrRetired},
		{"retired total past MaxSlotTotal", func() crdt.Counter {
			var c crdt.Counter
			c.Add(a, math.MaxInt64)
			c.SetReset(a, 0, false)
			c.Add(b, math.MaxInt64)
			c.Add(b, 2)
			return c
		}, []crdt.NodeID{a, b}, 2, at(2), crdt.ErrOverflow},
		{"carried-over total past MaxSlotTotal", func() crdt.Counter {
			return crdt.Counter{Slots: []crdt.Slot{{Node: crdt.RetiredID(1), P: crdt.MaxSlotTotal}, {Node: b, P: 1}}}
		}, []crdt.NodeID{a, b}, 2, at(2), crdt.ErrOverflow},
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
			if tt.other == nil {
				return
			}
			other := tt.other()
			if err := c.MergeRetired(other, tt.retired); !errors.Is(err, tt.want) {
				t.Fatalf("MergeRetired = %v, want %v", err, tt.want)
			}
			if !c.Equal(before) {
				t.Fatalf("refused MergeRetired changed the state: %s -> %s", describe(before), describe(c))
			}
			if !other.Equal(tt.other()) {
				t.Fatalf("refused MergeRetired changed its argument: %s", describe(other))
			}
		})
	}
	// Either side of more than one retired slot is refused, whatever the
	// generations.
	two := crdt.Counter{Slots: []crdt.Slot{{Node: crdt.RetiredID(1), P: 1}, {Node: crdt.RetiredID(2), P: 1}}}
	for _, tt := range []struct{ c, other crdt.Counter }{{two, at(1)()}, {at(1)(), two}, {crdt.Counter{}, two}} {
		c := tt.c.Clone()
		if err := c.MergeRetired(tt.other, []crdt.NodeID{a, b}); !errors.Is(err, crdt.ErrRetired) || !c.Equal(tt.c) {
			t.Errorf("MergeRetired(%s into %s) = %v, state %s; want ErrRetired, unchanged", describe(tt.other), describe(tt.c), err, describe(c))
		}
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
	retired := []crdt.NodeID{b, a, crdt.NodeIDFromName("never wrote")}
	if err := c.Fold(retired, 2); err != nil {
		t.Fatal(err)
	}
	if c.Value() != before.Value() || c.Live() != before.Live() {
		t.Fatalf("fold changed value/live: %d/%v -> %d/%v", before.Value(), before.Live(), c.Value(), c.Live())
	}
	want := crdt.Counter{
		Slots: []crdt.Slot{{Node: crdt.RetiredID(2), P: 11, N: 3}, {Node: l, P: 1}},
		Reset: &crdt.Reset{Epoch: 1, Node: l, Value: 10, Deleted: true,
			Floor: []crdt.Slot{{Node: crdt.RetiredID(2), P: 7, N: 3}, {Node: l, P: 1}}},
	}
	if !c.Equal(want) || c.Gen() != 2 {
		t.Fatalf("folded state %s at generation %d, want %s at 2", describe(c), c.Gen(), describe(want))
	}
	if crdt.IsRetiredID(before.Reset.Floor[0].Node) {
		t.Fatalf("Fold changed the floor of a copy it shares nothing with")
	}
	// A second fold to the same or a lower generation changes nothing.
	for _, g := range []uint64{0, 1, 2} {
		d := c.Clone()
		if err := d.Fold(retired, g); err != nil || !d.Equal(c) {
			t.Fatalf("Fold(%d) at generation 2: err %v, state %s", g, err, describe(d))
		}
	}
	// A fold of an id that has no slot here renames the retired slot and
	// its floor entry, totals carried over.
	up := c.Clone()
	if err := up.Fold(retired, 3); err != nil {
		t.Fatal(err)
	}
	want3 := crdt.Counter{
		Slots: []crdt.Slot{{Node: crdt.RetiredID(3), P: 11, N: 3}, {Node: l, P: 1}},
		Reset: &crdt.Reset{Epoch: 1, Node: l, Value: 10, Deleted: true,
			Floor: []crdt.Slot{{Node: crdt.RetiredID(3), P: 7, N: 3}, {Node: l, P: 1}}},
	}
	if !up.Equal(want3) || up.Gen() != 3 || up.Value() != c.Value() {
		t.Fatalf("Fold(3) = %s at generation %d, want %s at 3", describe(up), up.Gen(), describe(want3))
	}
	if !c.Equal(want) {
		t.Fatalf("Fold of a clone changed the original: %s", describe(c))
	}

	for _, id := range []crdt.NodeID{crdt.RetiredID(2), crdt.RetiredID(1), crdt.RetiredID(3), crdt.NodeID(crdt.MaxRetiredGen)} {
		d := c.Clone()
		if _, err := d.Add(id, 1); !errors.Is(err, crdt.ErrRetired) || !d.Equal(c) {
			t.Fatalf("Add to the retired id %d: err %v, state %s; want ErrRetired, unchanged", id, err, describe(d))
		}
	}
	for _, id := range []crdt.NodeID{0, crdt.NodeID(crdt.MaxRetiredGen) + 1} {
		d := c.Clone()
		mustAdd(t, &d, id, 1)
		if d.Gen() != 2 {
			t.Fatalf("Add to node %d moved the generation to %d", id, d.Gen())
		}
	}
	d := c.Delta(false, l)
	if d.Gen() != 2 || len(d.Slots) != 2 || d.Slots[0].Node != crdt.RetiredID(2) {
		t.Fatalf("Delta(false, l) of a folded state = %s, want the retired slot and l's at generation 2", describe(d))
	}
	if d := c.Delta(false); d.Gen() != 2 || len(d.Slots) != 1 {
		t.Fatalf("Delta(false) of a folded state = %s, want the retired slot alone", describe(d))
	}
	if d := c.Delta(true); !d.Equal(c) {
		t.Fatalf("Delta(true) = %s, want the whole state %s", describe(d), describe(c))
	}
	if c.Equal(up) || c.Equal(before) {
		t.Fatalf("Equal ignores the generation")
	}
}

// A state holding no slot of the ids it folds stays at generation 0 and
// unchanged; merging it across generations gives what merging its folded
// form would. A slot of node 0 is an ordinary slot, before the retired one.
func TestFoldWithNothingToFold(t *testing.T) {
	a, b, l := crdt.NodeIDFromName("a"), crdt.NodeIDFromName("b"), crdt.NodeIDFromName("l")
	retired := []crdt.NodeID{a, b}
	var gone, c crdt.Counter
	mustAdd(t, &gone, a, 5)
	late := gone.Delta(false, a)
	mustAdd(t, &gone, b, 2)
	mustAdd(t, &c, l, 1)
	mustAdd(t, &c, 0, 3)
	before := c.Clone()
	if err := c.Fold(retired, 2); err != nil || !c.Equal(before) || c.Gen() != 0 {
		t.Fatalf("Fold with nothing to fold: err %v, state %s at generation %d; want unchanged at 0", err, describe(c), c.Gen())
	}

	folded := gone.Clone()
	mustMergeRetired(t, &folded, c, nil)
	if err := folded.Fold(retired, 2); err != nil {
		t.Fatal(err)
	}
	wantNodes := []crdt.NodeID{0, crdt.RetiredID(2), l}
	var got []crdt.NodeID
	for _, s := range folded.Slots {
		got = append(got, s.Node)
	}
	if !slices.Equal(got, wantNodes) || folded.Gen() != 2 || folded.Value() != 11 {
		t.Fatalf("folded state %s at generation %d, value %d; want slots of %v at 2, value 11", describe(folded), folded.Gen(), folded.Value(), wantNodes)
	}
	if err := folded.ValidateRetired(crdt.Limits{}, retired); err != nil {
		t.Fatal(err)
	}

	// c, with or without the late delta of a, merges into the folded state
	// in either order and adds nothing.
	withLate := c.Clone()
	mustMergeRetired(t, &withLate, late, retired)
	for _, x := range []crdt.Counter{c, withLate, late} {
		ab, ba := folded.Clone(), x.Clone()
		mustMergeRetired(t, &ab, x, retired)
		mustMergeRetired(t, &ba, folded, retired)
		if !ab.Equal(folded) || !ba.Equal(folded) {
			t.Fatalf("merging %s: %s and %s, want %s", describe(x), describe(ab), describe(ba), describe(folded))
		}
	}
}

// Two replicas folded to different generations, one not folded at all, and
// late deltas (and a last full state) of forgotten nodes: MergeRetired gives
// the same state in both orders for every pair, and the same final state in
// every order of all of them, at the highest generation.
func TestMergeRetiredAcrossGenerationsBothOrders(t *testing.T) {
	a, b := crdt.NodeIDFromName("live-a"), crdt.NodeIDFromName("live-b")
	var fs []crdt.NodeID
	for i := range 4 {
		fs = append(fs, crdt.NodeIDOf("gone", uint64(i)))
	}
	var whole crdt.Counter // every change, exchanged everywhere before any cut
	var lates []crdt.Counter
	for i, f := range fs {
		var w crdt.Counter
		mustAdd(t, &w, f, int64(10*(i+1)))
		lates = append(lates, w.Delta(false, f)) // a stale delta, at generation 0
		mustAdd(t, &w, f, -int64(i))
		if i == 2 {
			lates = append(lates, w.Clone()) // its last full state
		}
		whole.Merge(w)
	}
	mustAdd(t, &whole, a, 1)
	whole.SetReset(a, 40, false) // before every cut, merged everywhere
	mustAdd(t, &whole, b, 2)
	retired := slices.Clone(fs)
	slices.Reverse(retired)

	ra, rb, rc := whole.Clone(), whole.Clone(), whole.Clone()
	if err := ra.Fold(retired, 2); err != nil {
		t.Fatal(err)
	}
	if err := rb.Fold(retired, 4); err != nil {
		t.Fatal(err)
	}
	mustAdd(t, &ra, a, 3)
	mustAdd(t, &rb, b, -1)
	mustAdd(t, &rc, b, 5) // b's slot merges to P 2+5, N 1
	if ra.Gen() != 2 || rb.Gen() != 4 || rc.Gen() != 0 {
		t.Fatalf("generations %d %d %d, want 2 4 0", ra.Gen(), rb.Gen(), rc.Gen())
	}
	want := whole.Value() + 3 + 5 - 1

	states := append([]crdt.Counter{ra, rb, rc}, lates...)
	for i, x := range states {
		for _, y := range states[i+1:] {
			xy, yx := x.Clone(), y.Clone()
			mustMergeRetired(t, &xy, y, retired)
			mustMergeRetired(t, &yx, x, retired)
			if !xy.Equal(yx) {
				t.Fatalf("x⊔y != y⊔x:\n x   %s\n y   %s\n x⊔y %s\n y⊔x %s", describe(x), describe(y), describe(xy), describe(yx))
			}
			if g := xy.Gen(); g != max(x.Gen(), y.Gen()) {
				t.Fatalf("x⊔y at generation %d, x at %d, y at %d", g, x.Gen(), y.Gen())
			}
		}
	}
	var final crdt.Counter
	first := true
	for perm := range permutations(len(states)) {
		var m crdt.Counter
		for _, i := range perm {
			mustMergeRetired(t, &m, states[i], retired)
		}
		if first {
			final, first = m, false
			continue
		}
		if !m.Equal(final) {
			t.Fatalf("merge in order %v = %s, want %s", perm, describe(m), describe(final))
		}
	}
	if final.Gen() != 4 || final.Value() != want || len(final.Slots) != 3 || final.Slots[0].Node != crdt.RetiredID(4) {
		t.Fatalf("final state %s at generation %d reads %d; want the retired slot of generation 4 and a, b, reading %d", describe(final), final.Gen(), final.Value(), want)
	}
	if rs := final.Slot(crdt.RetiredID(4)); rs.P != 100 || rs.N != 6 {
		t.Fatalf("retired slot %+v, want P 100 (10+20+30+40), N 6 (0+1+2+3)", rs)
	}
	if err := final.ValidateRetired(crdt.Limits{}, retired); err != nil {
		t.Fatal(err)
	}
}

// permutations yields every order of 0..n-1 (Heap's algorithm).
func permutations(n int) func(yield func([]int) bool) {
	return func(yield func([]int) bool) {
		p := make([]int, n)
		for i := range p {
			p[i] = i
		}
		var gen func(k int) bool
		gen = func(k int) bool {
			if k <= 1 {
				return yield(slices.Clone(p))
			}
			for i := range k - 1 {
				if !gen(k - 1) {
					return false
				}
				if k%2 == 0 {
					p[i], p[k-1] = p[k-1], p[i]
				} else {
					p[0], p[k-1] = p[k-1], p[0]
				}
			}
			return gen(k - 1)
		}
		gen(n)
	}
}

func TestValidateRetired(t *testing.T) {
	a, b := crdt.NodeIDFromName("a"), crdt.NodeIDFromName("b")
	r1, r2 := crdt.RetiredID(1), crdt.RetiredID(2)
	retired := []crdt.NodeID{a}
	tests := []struct {
		name string
		c    crdt.Counter
		want error // nil: valid
	}{
		{"generation 0", crdt.Counter{Slots: []crdt.Slot{{Node: a, P: 1}}}, nil},
		{"folded", crdt.Counter{Slots: []crdt.Slot{{Node: r1, P: 1}, {Node: b, P: 2}}}, nil},
		{"folded, with a floor", crdt.Counter{Slots: []crdt.Slot{{Node: r1, P: 1}, {Node: b, P: 2}},
			Reset: &crdt.Reset{Epoch: 1, Floor: []crdt.Slot{{Node: r1, P: 1}}}}, nil},
		{"node 0 at generation 0", crdt.Counter{Slots: []crdt.Slot{{Node: 0, P: 1}}}, nil},
		{"node 0 beside the retired slot", crdt.Counter{Slots: []crdt.Slot{{Node: 0, P: 1}, {Node: r1, P: 1}}}, nil},
		{"beyond the list", crdt.Counter{Slots: []crdt.Slot{{Node: r2, P: 1}}}, crdt.ErrRetired},
		{"folded node's slot", crdt.Counter{Slots: []crdt.Slot{{Node: r1, P: 1}, {Node: a, P: 2}}}, crdt.ErrInvalid},
		{"folded node's floor entry", crdt.Counter{Slots: []crdt.Slot{{Node: r1, P: 1}, {Node: a, P: 2}},
			Reset: &crdt.Reset{Epoch: 1, Floor: []crdt.Slot{{Node: a, P: 1}}}}, crdt.ErrInvalid},
		{"two retired slots", crdt.Counter{Slots: []crdt.Slot{{Node: r1, P: 1}, {Node: r2, P: 1}}}, crdt.ErrInvalid},
		{"floor entry of another retired id", crdt.Counter{Slots: []crdt.Slot{{Node: r1, P: 1}},
			Reset: &crdt.Reset{Epoch: 1, Floor: []crdt.Slot{{Node: r2, P: 1}}}}, crdt.ErrInvalid},
		{"retired floor above its slot", crdt.Counter{Slots: []crdt.Slot{{Node: r1, P: 1}},
			Reset: &crdt.Reset{Epoch: 1, Floor: []crdt.Slot{{Node: r1, P: 2}}}}, crdt.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.c.ValidateRetired(crdt.Limits{}, retired)
			if (tt.want == nil) != (err == nil) || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Fatalf("ValidateRetired = %v, want %v", err, tt.want)
			}
		})
	}
	at1 := crdt.Counter{Slots: []crdt.Slot{{Node: r1, P: 1}}}
	for _, list := range [][]crdt.NodeID{{0}, {r1}, {crdt.NodeID(crdt.MaxRetiredGen)}} {
		if err := at1.ValidateRetired(crdt.Limits{}, list); !errors.Is(err, crdt.ErrRetired) {
			t.Fatalf("a list naming %d: %v, want ErrRetired", list[0], err)
		}
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
