package crdt

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
)

// ErrOverflow is returned when an update would take a counter's value, or one
// of its slot totals, outside the representable range.
var ErrOverflow = errors.New("crdt: value would overflow int64")

// NodeID identifies a node's slot. It is derived from the node's name, so a
// node restarted under the same name writes to the same slot.
type NodeID uint64

// Slot is one node's contribution to a counter: the sum of its increments (P)
// and of its decrements (N). Both only grow.
type Slot struct {
	Node NodeID
	P    uint64
	N    uint64
}

// Reset records the latest reset (or delete) of a counter.
type Reset struct {
	// Epoch is a Lamport time: a reset issued after observing reset e has an
	// epoch greater than e. Ties between concurrent resets break on Node,
	// then on Value, so every replica picks the same winner.
	Epoch uint64
	Node  NodeID
	Value int64
	// Deleted marks the reset as a delete: the counter is hidden from
	// listings while no slot has moved past the floor.
	Deleted bool
	// Floor holds the slot totals the resetting nodes had observed, sorted by
	// Node. It merges by per-slot maximum, independently of which reset wins.
	Floor []Slot
}

// Counter is a PN-counter with per-node slots and an observed reset. The zero
// value is a counter that reads 0. Slots are sorted by Node with no
// duplicates; every method keeps that invariant, and every floor entry is
// dominated by the slot of the same node.
//
// A state's retired generation (Gen, see Fold) is not a field: it is the id
// of the state's retired slot, one of the slots, so whatever carries the
// slots carries it. At generation 0 (no slot of an id in 1..MaxRetiredGen)
// the state is exactly what it was before retirement existed.
type Counter struct {
	Slots []Slot
	Reset *Reset
}

// Clone returns a deep copy of c.
func (c Counter) Clone() Counter {
	out := Counter{Slots: slices.Clone(c.Slots)}
	if c.Reset != nil {
		r := *c.Reset
		r.Floor = slices.Clone(c.Reset.Floor)
		out.Reset = &r
	}
	return out
}

// Slot returns node's slot, or a zero slot for that node when it has none.
func (c Counter) Slot(node NodeID) Slot {
	if i, ok := findSlot(c.Slots, node); ok {
		return c.Slots[i]
	}
	return Slot{Node: node}
}

// Value returns the counter's value, clamped to the int64 range when merged
// concurrent updates carried it beyond (the node refuses local updates that
// would do so; see Add).
func (c Counter) Value() int64 {
	v, _ := c.value()
	return v
}

// value returns the exact value and whether it fits in an int64; when it does
// not, the clamped bound is returned.
func (c Counter) value() (int64, bool) {
	// Accumulate in a 128-bit signed integer (hi:lo, two's complement).
	var hi int64
	var lo uint64
	add := func(v int64) {
		var carry uint64
		lo, carry = addU64(lo, uint64(v))
		hi += carryHi(v) + int64(carry)
	}
	var base int64
	var floor []Slot
	if c.Reset != nil {
		base = c.Reset.Value
		floor = c.Reset.Floor
	}
	add(base)
	for _, s := range c.Slots {
		f := slotIn(floor, s.Node)
		addUnsigned(&hi, &lo, s.P-f.P)
		subUnsigned(&hi, &lo, s.N-f.N)
	}
	switch {
	case hi == 0 && lo <= math.MaxInt64:
		return int64(lo), true
	case hi == -1 && lo > math.MaxInt64:
		return int64(lo), true
	case hi < 0:
		return math.MinInt64, false
	default:
		return math.MaxInt64, false
	}
}

// Live reports whether the counter should appear in listings: false only
// for a deleted counter that has not been incremented or decremented since.
func (c Counter) Live() bool {
	if c.Reset == nil || !c.Reset.Deleted {
		return true
	}
	for _, s := range c.Slots {
		f := slotIn(c.Reset.Floor, s.Node)
		if s.P != f.P || s.N != f.N {
			return true
		}
	}
	return false
}

// Add applies an increment of by (a decrement when negative) to node's slot
// and returns the resulting value. It refuses, changing nothing, an update
// that would take the value out of the int64 range or a slot total past
// MaxSlotTotal, and, with ErrRetired, an update of a retired id (IsRetiredID,
// 1..MaxRetiredGen): no node has one, and a slot of one is a retired slot,
// which would set (or change) the state's generation. Node 0 is an ordinary
// slot.
func (c *Counter) Add(node NodeID, by int64) (int64, error) {
	cur, ok := c.value()
	if IsRetiredID(node) {
		return cur, fmt.Errorf("%w: node %d is a retired slot's id (1..%d), which no node writes", ErrRetired, node, MaxRetiredGen)
	}
	if !ok {
		// The merged state is already out of range; allow only updates
		// that move it back towards zero.
		if (cur > 0 && by > 0) || (cur < 0 && by < 0) {
			return cur, ErrOverflow
		}
	} else if (by > 0 && cur > math.MaxInt64-by) || (by < 0 && cur < math.MinInt64-by) {
		return cur, ErrOverflow
	}
	i, found := findSlot(c.Slots, node)
	if !found {
		c.Slots = slices.Insert(c.Slots, i, Slot{Node: node})
	}
	s := &c.Slots[i]
	if by >= 0 {
		if s.P > MaxSlotTotal-uint64(by) {
			return cur, ErrOverflow
		}
		s.P += uint64(by)
	} else {
		mag := uint64(-(by + 1)) + 1 // |by| without overflowing at MinInt64
		if s.N > MaxSlotTotal-mag {
			return cur, ErrOverflow
		}
		s.N += mag
	}
	if ok {
		// In range before, and the check above kept cur+by in range: the
		// value moved by exactly by, so there is no need to sum the slots
		// again.
		return cur + by, nil
	}
	return c.Value(), nil
}

// SetReset resets the counter to value, as seen from node: every increment
// merged so far is covered; increments not yet seen will count on top of
// value when they arrive. With deleted, the counter also leaves listings
// until it is next updated. It returns the new reset record. The epoch
// stops at MaxEpoch rather than wrap (see MaxEpoch).
func (c *Counter) SetReset(node NodeID, value int64, deleted bool) *Reset {
	var epoch uint64 = 1
	if c.Reset != nil {
		epoch = min(c.Reset.Epoch, MaxEpoch-1) + 1
	}
	r := &Reset{
		Epoch:   epoch,
		Node:    node,
		Value:   value,
		Deleted: deleted,
		Floor:   slices.Clone(c.Slots),
	}
	c.Reset = r
	return r
}

// Merge joins other into c. It is commutative, associative and idempotent,
// and never moves any slot total backwards. Both states must be at the same
// retired generation (Gen), or one of them at generation 0 and holding no
// slot of an id the other has folded; MergeRetired joins states of any
// generations. Merge does not check it: two states of different retired
// slots merge into one that holds both, which Validate refuses.
func (c *Counter) Merge(other Counter) {
	c.Slots = mergeSlots(c.Slots, other.Slots)
	if other.Reset == nil {
		return
	}
	if c.Reset == nil {
		r := *other.Reset
		r.Floor = slices.Clone(other.Reset.Floor)
		c.Reset = &r
	} else {
		floor := mergeSlots(c.Reset.Floor, other.Reset.Floor)
		if c.Reset.Before(other.Reset) {
			r := *other.Reset
			c.Reset = &r
		}
		c.Reset.Floor = floor
	}
	// A floor records totals that were observed, so the slots are at
	// least that high.
	c.Slots = mergeSlots(c.Slots, c.Reset.Floor)
}

// Delta returns the part of c that a replica needs to learn the given nodes'
// slots, plus the reset record when withReset is set. Merging the delta into
// a replica has the same effect on those slots as merging all of c. The
// delta is itself a Counter state below c, so deltas may be merged with each
// other before they are sent: with the reset it also holds, for every node
// of the reset's floor, a slot at least as high as the floor entry.
//
// A delta has c's retired generation: above generation 0 it always carries
// the retired slot, RetiredID(c.Gen()), which is what says the generation,
// and a state of generation g holds the whole total of the ids folded up to
// g, which MergeRetired relies on.
func (c Counter) Delta(withReset bool, nodes ...NodeID) Counter {
	var d Counter
	if g := c.Gen(); g > 0 {
		nodes = append(slices.Clip(nodes), RetiredID(g))
	}
	for _, n := range nodes {
		if i, ok := findSlot(c.Slots, n); ok {
			d.Slots = append(d.Slots, c.Slots[i])
		}
	}
	sort.Slice(d.Slots, func(i, j int) bool { return d.Slots[i].Node < d.Slots[j].Node })
	d.Slots = slices.CompactFunc(d.Slots, func(a, b Slot) bool { return a.Node == b.Node })
	if withReset && c.Reset != nil {
		r := *c.Reset
		r.Floor = slices.Clone(c.Reset.Floor)
		d.Reset = &r
		// Keep the invariant that every floor entry is dominated by its
		// slot; without it, merging this delta with an older one for the
		// same node would read the floor above the slot (the subtraction
		// in value wraps) and depend on the order of the merges.
		d.Slots = mergeSlots(d.Slots, r.Floor)
	}
	return d
}

// Equal reports whether c and other hold the same state (the same retired
// generation included: it is the id of a slot).
func (c Counter) Equal(other Counter) bool {
	if !slices.Equal(c.Slots, other.Slots) {
		return false
	}
	if (c.Reset == nil) != (other.Reset == nil) {
		return false
	}
	if c.Reset == nil {
		return true
	}
	a, b := c.Reset, other.Reset
	return a.Epoch == b.Epoch && a.Node == b.Node && a.Value == b.Value &&
		a.Deleted == b.Deleted && slices.Equal(a.Floor, b.Floor)
}

// Before reports whether reset a loses to reset b: resets are ordered by
// epoch, then node, then value, then deleted, and the greater one wins a
// merge.
func (a *Reset) Before(b *Reset) bool {
	if a.Epoch != b.Epoch {
		return a.Epoch < b.Epoch
	}
	if a.Node != b.Node {
		return a.Node < b.Node
	}
	if a.Value != b.Value {
		return a.Value < b.Value
	}
	return !a.Deleted && b.Deleted
}

// mergeSlots returns the per-node maximum of two sorted slot lists. It reuses
// a's storage when b adds nothing new.
func mergeSlots(a, b []Slot) []Slot {
	if len(b) == 0 {
		return a
	}
	// Fast path: every node of b is already in a.
	contained := len(b) <= len(a)
	if contained {
		j := 0
		for _, s := range b {
			for j < len(a) && a[j].Node < s.Node {
				j++
			}
			if j == len(a) || a[j].Node != s.Node {
				contained = false
				break
			}
			a[j].P = max(a[j].P, s.P)
			a[j].N = max(a[j].N, s.N)
		}
		if contained {
			return a
		}
	}
	out := make([]Slot, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b) || (i < len(a) && a[i].Node < b[j].Node):
			out = append(out, a[i])
			i++
		case i == len(a) || b[j].Node < a[i].Node:
			out = append(out, b[j])
			j++
		default:
			out = append(out, Slot{Node: a[i].Node, P: max(a[i].P, b[j].P), N: max(a[i].N, b[j].N)})
			i++
			j++
		}
	}
	return out
}

func findSlot(slots []Slot, node NodeID) (int, bool) {
	return slices.BinarySearchFunc(slots, node, func(s Slot, n NodeID) int {
		switch {
		case s.Node < n:
			return -1
		case s.Node > n:
			return 1
		}
		return 0
	})
}

func slotIn(slots []Slot, node NodeID) Slot {
	if i, ok := findSlot(slots, node); ok {
		return slots[i]
	}
	return Slot{Node: node}
}
