package crdt

import (
	"errors"
	"fmt"
)

// ErrInvalid is returned by Validate for a state that breaks Counter's
// invariants or the given limits. Merging such a state could corrupt a
// replica (an unsorted slot list merges wrongly, a floor above its slot
// makes the value wrap) or poison it for good (a slot total or epoch at the
// top of its range blocks every later update), so a replica refuses it.
var ErrInvalid = errors.New("crdt: invalid state")

// MaxSlotTotal bounds a slot's P and N: Add refuses an update that would
// take either past it. It leaves one bit of headroom below a uint64, so that
// P−N of one slot, and the sum of two totals, never wrap in uint64
// arithmetic, and a single increment of math.MinInt64 (|by| = 2^63) fits.
const MaxSlotTotal = 1 << 63

// MaxEpoch bounds a reset's epoch. SetReset never goes past it (a counter
// reset at MaxEpoch keeps that epoch; ties then break on node and value), so
// epoch arithmetic never wraps. 2^62 resets are out of reach at any rate a
// real counter is reset; a replica also bounds how far one received state
// may move the epoch ahead of its own (package node), so a forged state
// cannot reach this bound in one step either.
const MaxEpoch = 1 << 62

// DefaultMaxSlots is Limits.MaxSlots when zero: more nodes than a counter
// of a real mesh is ever written by.
const DefaultMaxSlots = 4096

// Limits bound a state that Validate accepts. The zero value means the
// defaults.
type Limits struct {
	// MaxSlots bounds the slots, and separately the reset's floor entries,
	// of one state (0: DefaultMaxSlots).
	MaxSlots int
	// MaxTotal bounds every slot's P and N (0, or anything above it:
	// MaxSlotTotal).
	MaxTotal uint64
	// MaxEpoch bounds the reset's epoch (0, or anything above it: MaxEpoch).
	MaxEpoch uint64
}

func (l Limits) withDefaults() Limits {
	if l.MaxSlots <= 0 {
		l.MaxSlots = DefaultMaxSlots
	}
	if l.MaxTotal == 0 || l.MaxTotal > MaxSlotTotal {
		l.MaxTotal = MaxSlotTotal
	}
	if l.MaxEpoch == 0 || l.MaxEpoch > MaxEpoch {
		l.MaxEpoch = MaxEpoch
	}
	return l
}

// Validate checks that c is a state this package could have produced, within
// lim: slots strictly sorted by node (so no duplicates), every total within
// lim.MaxTotal, and a reset record with an epoch within lim.MaxEpoch and a
// floor strictly sorted by node, each entry dominated by the slot of the same
// node (Merge and Delta keep that invariant; without it the value wraps);
// and at most one retired slot (an id in 1..MaxRetiredGen, see Gen), the
// only retired id a floor entry may name. It returns an error wrapping
// ErrInvalid that says what is wrong. It never panics, whatever c holds.
// Merging two states that pass Validate yields one that passes it too, given
// room for both states' slots, when they are of the same retired generation
// or one of them is of generation 0 (as Merge requires). Validate does not
// know the retired list: the retired slot is held to the same rules as any
// slot, and ValidateRetired adds the checks that need the list.
func (c Counter) Validate(lim Limits) error {
	lim = lim.withDefaults()
	if err := validSlots("slot", c.Slots, lim); err != nil {
		return err
	}
	r := c.Reset
	if r == nil {
		if err := c.retiredShape(); err != nil {
			return fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		return nil
	}
	if r.Epoch > lim.MaxEpoch {
		return fmt.Errorf("%w: reset epoch %d is above the bound %d", ErrInvalid, r.Epoch, lim.MaxEpoch)
	}
	if err := validSlots("reset floor entry", r.Floor, lim); err != nil {
		return err
	}
	for _, f := range r.Floor {
		s, ok := findSlot(c.Slots, f.Node)
		if !ok {
			return fmt.Errorf("%w: reset floor entry of node %d has no slot", ErrInvalid, f.Node)
		}
		if c.Slots[s].P < f.P || c.Slots[s].N < f.N {
			return fmt.Errorf("%w: reset floor entry of node %d (P %d, N %d) is above its slot (P %d, N %d)",
				ErrInvalid, f.Node, f.P, f.N, c.Slots[s].P, c.Slots[s].N)
		}
	}
	if err := c.retiredShape(); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return nil
}

func validSlots(what string, slots []Slot, lim Limits) error {
	if len(slots) > lim.MaxSlots {
		return fmt.Errorf("%w: %d %ss, more than the bound %d", ErrInvalid, len(slots), what, lim.MaxSlots)
	}
	for i, s := range slots {
		if i > 0 && s.Node <= slots[i-1].Node {
			if s.Node == slots[i-1].Node {
				return fmt.Errorf("%w: %ss hold node %d twice", ErrInvalid, what, s.Node)
			}
			return fmt.Errorf("%w: %ss not sorted by node (%d after %d)", ErrInvalid, what, s.Node, slots[i-1].Node)
		}
		if s.P > lim.MaxTotal || s.N > lim.MaxTotal {
			return fmt.Errorf("%w: %s of node %d (P %d, N %d) is above the bound %d", ErrInvalid, what, s.Node, s.P, s.N, lim.MaxTotal)
		}
	}
	return nil
}
