package crdt_test

import (
	"errors"
	"math"
	"testing"

	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/crdt/crdtfuzz"
)

func TestValidate(t *testing.T) {
	// The lowest ids above the retired ones (1..MaxRetiredGen).
	a, b, c := crdt.NodeID(crdt.MaxRetiredGen)+1, crdt.NodeID(crdt.MaxRetiredGen)+2, crdt.NodeID(crdt.MaxRetiredGen)+3
	r1, r2 := crdt.RetiredID(1), crdt.RetiredID(2)
	tests := []struct {
		name    string
		c       crdt.Counter
		lim     crdt.Limits
		wantErr bool
	}{
		{"zero", crdt.Counter{}, crdt.Limits{}, false},
		{"sorted", crdt.Counter{Slots: []crdt.Slot{{a, 1, 2}, {b, 3, 4}}}, crdt.Limits{}, false},
		{"unsorted", crdt.Counter{Slots: []crdt.Slot{{b, 1, 0}, {a, 1, 0}}}, crdt.Limits{}, true},
		{"duplicate", crdt.Counter{Slots: []crdt.Slot{{a, 1, 0}, {a, 2, 0}}}, crdt.Limits{}, true},
		{"P at the bound", crdt.Counter{Slots: []crdt.Slot{{a, crdt.MaxSlotTotal, 0}}}, crdt.Limits{}, false},
		{"P past the bound", crdt.Counter{Slots: []crdt.Slot{{a, crdt.MaxSlotTotal + 1, 0}}}, crdt.Limits{}, true},
		{"N max uint64", crdt.Counter{Slots: []crdt.Slot{{a, 0, math.MaxUint64}}}, crdt.Limits{}, true},
		{"P past a tighter bound", crdt.Counter{Slots: []crdt.Slot{{a, 11, 0}}}, crdt.Limits{MaxTotal: 10}, true},
		{"too many slots", crdt.Counter{Slots: []crdt.Slot{{a, 1, 0}, {b, 1, 0}, {c, 1, 0}}}, crdt.Limits{MaxSlots: 2}, true},
		{"reset", crdt.Counter{Slots: []crdt.Slot{{a, 5, 1}}, Reset: &crdt.Reset{Epoch: 3, Node: a, Floor: []crdt.Slot{{a, 5, 1}}}}, crdt.Limits{}, false},
		{"epoch at the bound", crdt.Counter{Reset: &crdt.Reset{Epoch: crdt.MaxEpoch}}, crdt.Limits{}, false},
		{"epoch max uint64", crdt.Counter{Reset: &crdt.Reset{Epoch: math.MaxUint64}}, crdt.Limits{}, true},
		{"epoch past a tighter bound", crdt.Counter{Reset: &crdt.Reset{Epoch: 11}}, crdt.Limits{MaxEpoch: 10}, true},
		{"floor unsorted", crdt.Counter{Slots: []crdt.Slot{{a, 5, 0}, {b, 5, 0}}, Reset: &crdt.Reset{Epoch: 1, Floor: []crdt.Slot{{b, 1, 0}, {a, 1, 0}}}}, crdt.Limits{}, true},
		{"floor above its slot", crdt.Counter{Slots: []crdt.Slot{{a, 5, 0}}, Reset: &crdt.Reset{Epoch: 1, Floor: []crdt.Slot{{a, 6, 0}}}}, crdt.Limits{}, true},
		{"floor without a slot", crdt.Counter{Reset: &crdt.Reset{Epoch: 1, Floor: []crdt.Slot{{a, 1, 0}}}}, crdt.Limits{}, true},
		{"node 0", crdt.Counter{Slots: []crdt.Slot{{0, 1, 0}, {a, 1, 0}}}, crdt.Limits{}, false},
		{"a retired slot", crdt.Counter{Slots: []crdt.Slot{{0, 1, 0}, {r2, 1, 0}, {a, 1, 0}}, Reset: &crdt.Reset{Epoch: 1, Floor: []crdt.Slot{{r2, 1, 0}}}}, crdt.Limits{}, false},
		{"two retired slots", crdt.Counter{Slots: []crdt.Slot{{r1, 1, 0}, {r2, 1, 0}, {a, 1, 0}}}, crdt.Limits{}, true},
		{"two retired slots after node 0", crdt.Counter{Slots: []crdt.Slot{{0, 1, 0}, {r1, 1, 0}, {crdt.NodeID(crdt.MaxRetiredGen), 1, 0}}}, crdt.Limits{}, true},
		{"retired floor entry without its slot", crdt.Counter{Slots: []crdt.Slot{{a, 1, 0}}, Reset: &crdt.Reset{Epoch: 1, Floor: []crdt.Slot{{r1, 1, 0}}}}, crdt.Limits{}, true},
		{"floor entry of another retired id", crdt.Counter{Slots: []crdt.Slot{{r2, 1, 0}}, Reset: &crdt.Reset{Epoch: 1, Floor: []crdt.Slot{{r1, 1, 0}}}}, crdt.Limits{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.c.Validate(tt.lim)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Validate = %v, want error %v", err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, crdt.ErrInvalid) {
				t.Fatalf("Validate = %v, want it to wrap ErrInvalid", err)
			}
		})
	}
}

// SetReset never wraps the epoch: at MaxEpoch it stays there, and the state
// still validates.
func TestSetResetEpochDoesNotWrap(t *testing.T) {
	c := crdt.Counter{Reset: &crdt.Reset{Epoch: crdt.MaxEpoch}}
	r := c.SetReset(crdt.NodeIDFromName("a"), 7, false)
	if r.Epoch != crdt.MaxEpoch {
		t.Fatalf("epoch after a reset at MaxEpoch = %d, want %d", r.Epoch, uint64(crdt.MaxEpoch))
	}
	if err := c.Validate(crdt.Limits{}); err != nil {
		t.Fatalf("Validate after the reset: %v", err)
	}
}

// Add never takes a slot total past MaxSlotTotal, so a node's own states
// always validate.
func TestAddStopsAtMaxSlotTotal(t *testing.T) {
	var c crdt.Counter
	a := crdt.NodeIDFromName("a")
	if _, err := c.Add(a, math.MinInt64); err != nil { // N = 2^63, exactly the bound
		t.Fatalf("Add(MinInt64): %v", err)
	}
	c.SetReset(a, 0, false)
	if _, err := c.Add(a, -1); !errors.Is(err, crdt.ErrOverflow) {
		t.Fatalf("Add past MaxSlotTotal: err = %v, want ErrOverflow", err)
	}
	if err := c.Validate(crdt.Limits{}); err != nil {
		t.Fatalf("Validate: %v", err)
	}
}

// fuzzNodes are the node ids of fuzzed states: 0, the retired ids of
// generations 1 and 2, and the lowest node ids above the retired ones (so
// that states share nodes), the last two of which fuzzRetired lists.
var fuzzNodes = []crdt.NodeID{0, crdt.RetiredID(1), crdt.RetiredID(2),
	crdt.NodeID(crdt.MaxRetiredGen) + 1, crdt.NodeID(crdt.MaxRetiredGen) + 2, crdt.NodeID(crdt.MaxRetiredGen) + 3,
	crdt.NodeID(crdt.MaxRetiredGen) + 4, crdt.NodeID(crdt.MaxRetiredGen) + 5}

// fuzzRetired is the retired list MergeRetired is fuzzed with.
var fuzzRetired = fuzzNodes[6:]

// fuzzReader decodes counters from fuzz bytes: node ids of fuzzNodes, and
// totals and epochs that hit the bounds often.
func fuzzReader(data []byte) *crdtfuzz.Reader {
	return &crdtfuzz.Reader{B: data, MaxSlots: 6,
		Nodes: fuzzNodes,
		Edges: []uint64{
			crdt.MaxSlotTotal - 1, crdt.MaxSlotTotal, crdt.MaxSlotTotal + 1, math.MaxUint64,
			crdt.MaxEpoch - 1, crdt.MaxEpoch, crdt.MaxEpoch + 1, math.MaxInt64,
			1 << 32, 1 << 53, 300, 65536, 1e12, 1e15, math.MaxUint64 - 1, 2,
		}}
}

func mergedCopy(a, b crdt.Counter) crdt.Counter {
	m := a.Clone()
	m.Merge(b.Clone())
	return m
}

// FuzzValidateMerge: Validate never panics and refuses with ErrInvalid;
// on states it accepts, of one retired generation or one of them of
// generation 0 (as Merge requires), Merge is commutative and idempotent,
// its result validates (given room for both states' slots), and updates on
// it neither panic nor produce a state that fails Validate. Valid states of
// two retired generations merge with MergeRetired instead, commutatively
// and into a state that validates, or are refused alike in both orders
// (a retired total that would overflow).
func FuzzValidateMerge(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{2, 1, 5, 0, 2, 3, 0, 1, 0, 1, 1, 1, 1, 4, 0})
	f.Add([]byte{2, 2, 5, 0, 1, 3, 0, 0, 1, 1, 0xf1, 0xf2})
	f.Add([]byte{1, 1, 0xf1, 0xf3, 1, 0xf5, 1, 0, 0, 1, 1, 0xf1, 0, 1, 1, 0xf5, 2, 0, 0, 0})
	f.Add([]byte{3, 1, 1, 1, 2, 2, 2, 3, 3, 3, 1, 0xf6, 1, 7, 1, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := fuzzReader(data)
		a, b := r.Counter(), r.Counter()
		lim := crdt.Limits{MaxSlots: 6}
		errA, errB := a.Validate(lim), b.Validate(lim)
		for _, err := range []error{errA, errB} {
			if err != nil && !errors.Is(err, crdt.ErrInvalid) {
				t.Fatalf("Validate = %v, want it to wrap ErrInvalid", err)
			}
		}
		if errA != nil || errB != nil {
			return
		}
		if g, h := a.Gen(), b.Gen(); g != h && g != 0 && h != 0 {
			ab, ba := a.Clone(), b.Clone()
			errAB, errBA := ab.MergeRetired(b, fuzzRetired), ba.MergeRetired(a, fuzzRetired)
			if (errAB == nil) != (errBA == nil) {
				t.Fatalf("MergeRetired in one order %v, in the other %v", errAB, errBA)
			}
			if errAB != nil {
				if !errors.Is(errAB, crdt.ErrOverflow) {
					t.Fatalf("MergeRetired = %v, want nil or ErrOverflow", errAB)
				}
				return
			}
			if !ab.Equal(ba) {
				t.Fatalf("MergeRetired not commutative:\n a⊔b = %+v\n b⊔a = %+v", ab, ba)
			}
			if err := ab.Validate(crdt.Limits{MaxSlots: 2 * lim.MaxSlots}); err != nil {
				t.Fatalf("MergeRetired of valid states does not validate: %v\n%+v", err, ab)
			}
			if ab.Gen() != max(g, h) {
				t.Fatalf("MergeRetired of generations %d and %d is at %d", g, h, ab.Gen())
			}
			return
		}
		ab, ba := mergedCopy(a, b), mergedCopy(b, a)
		if !ab.Equal(ba) {
			t.Fatalf("merge not commutative:\n a⊔b = %+v\n b⊔a = %+v", ab, ba)
		}
		if err := ab.Validate(crdt.Limits{MaxSlots: 2 * lim.MaxSlots}); err != nil {
			t.Fatalf("merge of valid states does not validate: %v\n%+v", err, ab)
		}
		if m := mergedCopy(ab, ab); !m.Equal(ab) {
			t.Fatalf("merge not idempotent:\n m = %+v\n m⊔m = %+v", ab, m)
		}
		if m := mergedCopy(ab, a); !m.Equal(ab) {
			t.Fatalf("merging a part again changed the state:\n %+v\n %+v", ab, m)
		}
		if ab.Value() != ba.Value() {
			t.Fatalf("values differ: %d and %d", ab.Value(), ba.Value())
		}
		up := ab.Clone()
		_, _ = up.Add(r.Node(), int64(r.U64()))
		up.SetReset(crdt.NodeID(1), 0, false)
		if err := up.Validate(crdt.Limits{MaxSlots: 2*lim.MaxSlots + 1}); err != nil {
			t.Fatalf("updates on a valid state made it invalid: %v\n%+v", err, up)
		}
	})
}
