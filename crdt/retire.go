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
// are gone, and their totals, summed per component, are the retired slot;
// their reset floor entries are summed into the retired slot's floor entry
// likewise. The value formula is unchanged, and so is the value.
//
// The retired slot of generation g has the id g (RetiredID): the generation
// is carried by the slots themselves, so every codec that carries a state's
// slots and reset carries its generation too, with no format change. The ids
// 1..MaxRetiredGen are therefore never a node's (NodeIDFromName, NodeIDOf);
// Add refuses them.

// MaxRetiredGen is the highest retired generation: generations are
// 1..MaxRetiredGen, and so are the ids of retired slots (RetiredID). 2^20
// forgotten nodes are far beyond what a mesh retires in its life.
const MaxRetiredGen uint64 = 1 << 20

// RetiredID is the id of the retired slot of a state at generation gen,
// NodeID(gen). gen must be in 1..MaxRetiredGen: RetiredID(0) is 0, which is
// no retired id (a state of generation 0 has no retired slot), and beyond
// MaxRetiredGen the result is not a retired id either (IsRetiredID).
//
// The id 0 is not a retired id: package node reads a member id of 0 as "no
// id" (the member gets the slot of its name) and never vouches for origin 0,
// and no name maps to it (NodeIDFromName, NodeIDOf). Here a slot of node 0
// is an ordinary slot, as it always was; a retired list may not name it.
func RetiredID(gen uint64) NodeID { return NodeID(gen) }

// IsRetiredID reports whether id is the id of a retired slot, of some
// generation: 1 <= id <= MaxRetiredGen.
func IsRetiredID(id NodeID) bool { return id >= 1 && uint64(id) <= MaxRetiredGen }

// ErrRetired is returned when a state and a retired list do not fit
// together: a generation beyond the list (or beyond MaxRetiredGen), a list
// naming a retired id or 0, a state holding more than one retired slot or a
// floor entry of another retired id than its own, or an update of a retired
// id.
var ErrRetired = errors.New("crdt: state does not fit the retired list")

// Gen returns c's retired generation: the id of its retired slot, the first
// slot with an id in 1..MaxRetiredGen (slots are sorted by node, so it is the
// first or, after a slot of node 0, the second), or 0 when it has none.
//
// A state that has folded ids none of which had a slot in it has no retired
// slot, and is at generation 0. That is exact: it holds no slot (and so, by
// Counter's invariant, no floor entry) of any id it folded, so folding those
// ids again changes nothing, and merging it as a state of generation 0
// (MergeRetired folds it up to the other side's generation first) gives what
// merging it at its folded generation would. The generation is therefore
// never stored beside the slots: a copy of the slots and the reset is a copy
// of the generation.
func (c Counter) Gen() uint64 {
	first, _ := retiredIn(c.Slots)
	return uint64(first)
}

// retiredIn returns the first and second retired ids among slots, sorted by
// node (0: none).
func retiredIn(slots []Slot) (first, second NodeID) {
	for _, s := range slots {
		if uint64(s.Node) > MaxRetiredGen {
			break
		}
		if s.Node == 0 {
			continue
		}
		if first != 0 {
			return first, s.Node
		}
		first = s.Node
	}
	return first, 0
}

// retiredShape checks that c holds at most one retired slot, and floor
// entries of no retired id but that slot's. It returns what is wrong, for
// the caller to wrap.
func (c Counter) retiredShape() error {
	own, second := retiredIn(c.Slots)
	if second != 0 {
		return fmt.Errorf("slots hold two retired slots (ids %d and %d)", own, second)
	}
	if c.Reset == nil {
		return nil
	}
	f, g := retiredIn(c.Reset.Floor)
	if g != 0 || (f != 0 && f != own) {
		if g != 0 && f == own {
			f = g
		}
		return fmt.Errorf("reset floor entry of the retired id %d, not the state's retired slot (%d)", f, own)
	}
	return nil
}

// checkRetiredList refuses a retired list whose folded part names a retired
// id or 0.
func checkRetiredList(retired []NodeID) error {
	for _, id := range retired {
		if id == 0 || IsRetiredID(id) {
			return fmt.Errorf("%w: the retired list names the id %d, which is 0 or a retired slot's (1..%d)", ErrRetired, id, MaxRetiredGen)
		}
	}
	return nil
}

// Fold brings c from its retired generation up to gen: the slot and the
// reset floor entry of each id of retired[c.Gen():gen] are removed and added
// into the retired slot and its floor entry, which take the id RetiredID(gen)
// (the previous retired slot's totals, and its floor entry's, are carried
// over into them). When c holds no slot of any id of retired[:gen] and no
// retired slot, nothing is created and c stays at generation 0 (see Gen).
// The value does not change. A gen at or below c.Gen() changes nothing. It
// refuses with ErrRetired, changing nothing, a gen beyond len(retired) or
// beyond MaxRetiredGen, a list whose first gen entries name a retired id or
// 0, a state holding more than one retired slot or a floor entry of another
// retired id than its own; a retired total past MaxSlotTotal
// (ErrOverflow); and floor entries of folded ids without their slots
// (ErrInvalid, a state Validate refuses).
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
	cur := c.Gen()
	if gen <= cur {
		return nil
	}
	if gen > MaxRetiredGen {
		return fmt.Errorf("%w: generation %d is beyond the highest, %d", ErrRetired, gen, MaxRetiredGen)
	}
	if gen > uint64(len(retired)) {
		return fmt.Errorf("%w: generation %d is beyond the %d retired ids known", ErrRetired, gen, len(retired))
	}
	if err := c.retiredShape(); err != nil {
		return fmt.Errorf("%w: %v", ErrRetired, err)
	}
	if err := checkRetiredList(retired[:gen]); err != nil {
		return err
	}
	ids := slices.Clone(retired[cur:gen])
	slices.Sort(ids)
	from, to := RetiredID(cur), RetiredID(gen) // from is 0, no retired slot, at generation 0
	slots, had, err := foldSlots(c.Slots, ids, from, to)
	if err != nil {
		return err
	}
	var reset *Reset
	if c.Reset != nil {
		floor, floorHad, err := foldSlots(c.Reset.Floor, ids, from, to)
		if err != nil {
			return err
		}
		if floorHad && !had {
			return fmt.Errorf("%w: reset floor entries of folded nodes without their slots", ErrInvalid)
		}
		r := *c.Reset
		r.Floor = floor
		reset = &r
	}
	if !had {
		return nil // no slot of a folded id, no retired slot: generation 0 still
	}
	c.Slots = slots
	c.Reset = reset
	return nil
}

// foldSlots returns slots without the slots of ids (sorted) and of from (a
// retired id, or 0 for none), their totals added into a slot of to, created
// when one of them is present; had says whether one was.
func foldSlots(slots []Slot, ids []NodeID, from, to NodeID) (out []Slot, had bool, err error) {
	sum := Slot{Node: to}
	out = make([]Slot, 0, len(slots)+1)
	for _, s := range slots {
		_, folded := slices.BinarySearch(ids, s.Node)
		if !folded && (from == 0 || s.Node != from) {
			out = append(out, s)
			continue
		}
		if s.P > MaxSlotTotal || s.N > MaxSlotTotal ||
			sum.P > MaxSlotTotal-s.P || sum.N > MaxSlotTotal-s.N {
			return nil, false, fmt.Errorf("%w: the retired slot's totals would pass %d", ErrOverflow, uint64(MaxSlotTotal))
		}
		sum.P += s.P
		sum.N += s.N
		had = true
	}
	if !had {
		return out, false, nil
	}
	i, _ := findSlot(out, to)
	return slices.Insert(out, i, sum), true, nil
}

// MergeRetired joins other into c across retired generations (Gen): the
// state of the lower generation is first folded up to the higher one (Fold),
// then the two merge as Merge does. A slot of an id folded at the merged
// generation (a late delta of a forgotten node) is folded on its side; under
// Fold's precondition the other side's retired slot is at least as high, so
// nothing is counted twice. It is commutative, associative and idempotent
// over states that keep the precondition. It refuses, changing nothing, a
// generation beyond len(retired), a state (either) of more than one retired
// slot or of a floor entry of another retired id than its own, and the
// cases Fold refuses.
func (c *Counter) MergeRetired(other Counter, retired []NodeID) error {
	for _, s := range []Counter{*c, other} {
		if err := s.retiredShape(); err != nil {
			return fmt.Errorf("%w: %v", ErrRetired, err)
		}
	}
	cg, og := c.Gen(), other.Gen()
	gen := max(cg, og)
	if gen > uint64(len(retired)) {
		return fmt.Errorf("%w: generation %d is beyond the %d retired ids known", ErrRetired, gen, len(retired))
	}
	if og < gen {
		other = other.Clone()
		if err := other.Fold(retired, gen); err != nil {
			return err
		}
	}
	if cg < gen {
		up := c.Clone()
		if err := up.Fold(retired, gen); err != nil {
			return err
		}
		*c = up
	}
	c.Merge(other)
	return nil
}

// ValidateRetired checks c as Validate does (which already refuses more than
// one retired slot, and a floor entry of a retired id other than the
// state's own), and against the retired list: c.Gen() within the list
// (beyond it: ErrRetired, the list is not known yet here), no retired id or
// 0 in the list's folded part (ErrRetired), and no slot or floor entry of an
// id the state has folded (ErrInvalid). A state that fails with ErrInvalid
// would count a folded node twice.
func (c Counter) ValidateRetired(lim Limits, retired []NodeID) error {
	if err := c.Validate(lim); err != nil {
		return err
	}
	gen := c.Gen()
	if gen > uint64(len(retired)) {
		return fmt.Errorf("%w: generation %d is beyond the %d retired ids known", ErrRetired, gen, len(retired))
	}
	if err := checkRetiredList(retired[:gen]); err != nil {
		return err
	}
	folded := make(map[NodeID]struct{}, gen)
	for _, id := range retired[:gen] {
		folded[id] = struct{}{}
	}
	check := func(what string, slots []Slot) error {
		for _, s := range slots {
			if _, ok := folded[s.Node]; ok {
				return fmt.Errorf("%w: %s of node %d, folded into the retired slot at generation %d", ErrInvalid, what, s.Node, gen)
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
