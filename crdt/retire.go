package crdt

import (
	"errors"
	"fmt"
	"slices"
)

// Slot retirement: the slots of nodes that have left the mesh for good are
// folded into one retired slot, so that a counter's size follows its live
// writers rather than every node (and every incarnation) that ever wrote it.
//
// The cluster agrees, outside this package, on an append-only list of
// forgotten node ids (the retired list). A state's retired generation
// (Counter.Gen) is how many entries of that list it has folded: their slots
// are gone, and their totals, summed per component, are the slot of
// RetiredNode; their reset floor entries are summed into the floor entry of
// RetiredNode likewise. The value formula is unchanged, and so is the value.

// RetiredNode is the id of the retired slot of a state whose Gen is above 0.
// The id 0 is reserved: package node already reads a member id of 0 as "no
// id" (the member gets the slot of its name) and never vouches for origin 0,
// and a node name hashes to 0 (NodeIDFromName, NodeIDOf) with probability
// 2^-64. At generation 0 a slot of node 0 is an ordinary slot, as it always
// was, but such a state cannot be folded (ErrRetired).
const RetiredNode NodeID = 0

// ErrRetired is returned when a state and a retired list do not fit
// together: a generation beyond the list, a list naming RetiredNode, a state
// of generation 0 that holds the reserved id as a writer, or an update of
// the retired slot.
var ErrRetired = errors.New("crdt: state does not fit the retired list")

// Fold brings c from its retired generation up to gen: the slot and the
// reset floor entry of each id of retired[c.Gen:gen] are removed and added
// into the retired slot and its floor entry. The value does not change. A
// gen at or below c.Gen changes nothing. It refuses, changing nothing, a gen
// beyond len(retired) or any of the cases of ErrRetired, and a retired total
// past MaxSlotTotal (ErrOverflow).
//
// Precondition (what makes the per-component maximum of MergeRetired exact):
// every id f of the list has a cut, the moment the cluster appended f, such
// that
//
//   - f changes nothing after its cut, and every reset made after the cut,
//     by any replica (a node that joins later included), is made by one that
//     holds f's final slot or has folded f; and
//   - c has merged every reset made before the cut of each id it folds (so
//     it holds f's final slot and the highest floor entry of f recorded
//     before the cut).
//
// It is not enough that c has merged all of f's own changes: two resets that
// observed different parts of two folded nodes would be summed separately
// and merged by maximum, which counts the difference twice.
func (c *Counter) Fold(retired []NodeID, gen uint64) error {
	if gen <= c.Gen {
		return nil
	}
	if gen > uint64(len(retired)) {
		return fmt.Errorf("%w: generation %d is beyond the %d retired ids known", ErrRetired, gen, len(retired))
	}
	if c.Gen == 0 {
		if _, ok := findSlot(c.Slots, RetiredNode); ok {
			return fmt.Errorf("%w: generation 0 state holds a slot of the reserved id %d", ErrRetired, RetiredNode)
		}
	}
	ids := slices.Clone(retired[c.Gen:gen])
	slices.Sort(ids)
	if len(ids) > 0 && ids[0] == RetiredNode {
		return fmt.Errorf("%w: the retired list names the reserved id %d", ErrRetired, RetiredNode)
	}
	slots, err := foldSlots(c.Slots, ids)
	if err != nil {
		return err
	}
	if c.Reset != nil {
		floor, err := foldSlots(c.Reset.Floor, ids)
		if err != nil {
			return err
		}
		r := *c.Reset
		r.Floor = floor
		c.Reset = &r
	}
	c.Slots = slots
	c.Gen = gen
	return nil
}

// foldSlots returns slots without the slots of ids (sorted), their totals
// added into the slot of RetiredNode (created when one of them is present).
func foldSlots(slots []Slot, ids []NodeID) ([]Slot, error) {
	sum := Slot{Node: RetiredNode}
	had := false
	out := make([]Slot, 1, len(slots)+1)
	for _, s := range slots {
		_, folded := slices.BinarySearch(ids, s.Node)
		if !folded && s.Node != RetiredNode {
			out = append(out, s)
			continue
		}
		if s.P > MaxSlotTotal || s.N > MaxSlotTotal ||
			sum.P > MaxSlotTotal-s.P || sum.N > MaxSlotTotal-s.N {
			return nil, fmt.Errorf("%w: the retired slot's totals would pass %d", ErrOverflow, uint64(MaxSlotTotal))
		}
		sum.P += s.P
		sum.N += s.N
		had = true
	}
	if !had {
		return out[1:], nil
	}
	out[0] = sum
	return out, nil
}

// MergeRetired joins other into c across retired generations: the state of
// the lower generation is first folded up to the higher one (Fold), then the
// two merge as Merge does. A slot of an id folded at the merged generation
// (a late delta of a forgotten node) is folded on its side; under Fold's
// precondition the other side's retired slot is at least as high, so
// nothing is counted twice. It is commutative, associative and idempotent
// over states that keep the precondition. It refuses, changing nothing, the
// cases Fold refuses.
func (c *Counter) MergeRetired(other Counter, retired []NodeID) error {
	gen := max(c.Gen, other.Gen)
	if gen > uint64(len(retired)) {
		return fmt.Errorf("%w: generation %d is beyond the %d retired ids known", ErrRetired, gen, len(retired))
	}
	if other.Gen < gen {
		other = other.Clone()
		if err := other.Fold(retired, gen); err != nil {
			return err
		}
	}
	if c.Gen < gen {
		up := c.Clone()
		if err := up.Fold(retired, gen); err != nil {
			return err
		}
		*c = up
	}
	c.Merge(other)
	return nil
}

// ValidateRetired checks c as Validate does, and against the retired list:
// c.Gen within the list (beyond it: ErrRetired, the list is not known yet
// here), no slot or floor entry of an id the state has folded, none of
// RetiredNode at generation 0, and no RetiredNode in the list's folded part.
// A state that fails with ErrInvalid would count a folded node twice, or a
// writer as retired.
func (c Counter) ValidateRetired(lim Limits, retired []NodeID) error {
	if err := c.Validate(lim); err != nil {
		return err
	}
	if c.Gen > uint64(len(retired)) {
		return fmt.Errorf("%w: generation %d is beyond the %d retired ids known", ErrRetired, c.Gen, len(retired))
	}
	folded := make(map[NodeID]struct{}, c.Gen)
	for _, id := range retired[:c.Gen] {
		if id == RetiredNode {
			return fmt.Errorf("%w: the retired list names the reserved id %d", ErrRetired, RetiredNode)
		}
		folded[id] = struct{}{}
	}
	check := func(what string, slots []Slot) error {
		for _, s := range slots {
			if s.Node == RetiredNode && c.Gen == 0 {
				return fmt.Errorf("%w: %s of the reserved id %d at generation 0", ErrInvalid, what, RetiredNode)
			}
			if _, ok := folded[s.Node]; ok {
				return fmt.Errorf("%w: %s of node %d, folded into the retired slot at generation %d", ErrInvalid, what, s.Node, c.Gen)
			}
		}
		return nil
	}
	if err := check("slot", c.Slots); err != nil {
		return err
	}
	if c.Reset != nil {
		return check("reset floor entry", c.Reset.Floor)
	}
	return nil
}
