// Package retire holds the retired list: the nodes the cluster forgot for
// good (countctl cluster forget), in the order it agreed on, and this
// node's part in agreeing on each entry.
//
// A forgotten node's slots are folded, counter by counter, into one retired
// slot (crdt.Counter.Fold), so that a counter's size follows its live
// writers. Every node must fold the same ids in the same order: the
// generation a state carries (crdt.Counter.Gen, the id of its retired slot)
// counts the ids of the list it has folded. So each index of the list is
// decided once for the whole mesh, by single-decree Paxos in which every
// live member is an acceptor and the quorum is all of them (a forget needs
// the whole mesh anyway: every member's version vector makes the entry's
// cut). The coordinator is whichever node ran the forget (peerrpc.Forget).
//
// An entry is stable once the coordinator has seen every member accept it;
// only stable entries count. A node folds an entry only once its version
// vector covers the entry's cut: it then holds every change, resets
// included, that any live member held when the entry was decided, which is
// the precondition of crdt.Counter.Fold. States folded elsewhere may be
// merged before that (crdt.Counter.MergeRetired): a folded state carries the
// whole totals of the ids it folded.
package retire

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/countmesh/countmesh/crdt"
)

// Limits of an entry, checked on every entry a peer sends.
const (
	MaxNameLen    = 256     // a node name
	MaxIDsPerName = 64      // incarnations of one name
	MaxCut        = 1 << 20 // origins of a cut
)

// ErrInvalid wraps an entry or list that breaks the rules above, or one
// that disagrees with this node's list (a different entry at some index:
// never merged).
var ErrInvalid = errors.New("retire: invalid retired list")

// OriginSeq is one origin's sequence number in a cut.
type OriginSeq struct {
	Origin crdt.NodeID
	Seq    uint64
}

// Entry is one forgotten node: its name, every slot id of that name (its
// incarnations), and the cut: per origin, the highest change any live
// member held when the entry was decided.
type Entry struct {
	Name string
	IDs  []crdt.NodeID // sorted, no duplicates
	Cut  []OriginSeq   // sorted by origin, no duplicates
}

// validate checks e's shape, and that it does not name this node: a node
// alive to receive the list was not forgotten.
func (l *List) validate(e Entry) error {
	if err := e.Validate(); err != nil {
		return err
	}
	if _, ok := slices.BinarySearch(e.IDs, l.self); ok {
		return fmt.Errorf("%w: entry %q names this node's own id %d", ErrInvalid, e.Name, l.self)
	}
	return nil
}

// Equal reports whether e and o are the same entry.
func (e Entry) Equal(o Entry) bool {
	return e.Name == o.Name && slices.Equal(e.IDs, o.IDs) && slices.Equal(e.Cut, o.Cut)
}

// Validate checks e's shape.
func (e Entry) Validate() error {
	if e.Name == "" || len(e.Name) > MaxNameLen {
		return fmt.Errorf("%w: entry name of %d bytes (1 to %d)", ErrInvalid, len(e.Name), MaxNameLen)
	}
	if len(e.IDs) == 0 || len(e.IDs) > MaxIDsPerName {
		return fmt.Errorf("%w: entry %q has %d ids (1 to %d)", ErrInvalid, e.Name, len(e.IDs), MaxIDsPerName)
	}
	for i, id := range e.IDs {
		if id == 0 || crdt.IsRetiredID(id) {
			return fmt.Errorf("%w: entry %q names the reserved id %d", ErrInvalid, e.Name, id)
		}
		if i > 0 && id <= e.IDs[i-1] {
			return fmt.Errorf("%w: entry %q: ids not sorted", ErrInvalid, e.Name)
		}
	}
	if len(e.Cut) > MaxCut {
		return fmt.Errorf("%w: entry %q: a cut of %d origins (at most %d)", ErrInvalid, e.Name, len(e.Cut), MaxCut)
	}
	for i, c := range e.Cut {
		if i > 0 && c.Origin <= e.Cut[i-1].Origin {
			return fmt.Errorf("%w: entry %q: cut not sorted by origin", ErrInvalid, e.Name)
		}
	}
	return nil
}

// Ballot orders the proposals for one index: by round, then by the
// coordinator's id.
type Ballot struct {
	Round uint64
	Node  crdt.NodeID
}

// Less reports whether b is below o.
func (b Ballot) Less(o Ballot) bool {
	if b.Round != o.Round {
		return b.Round < o.Round
	}
	return b.Node < o.Node
}

// State is what a node keeps durably: the stable entries, and its
// acceptor's state for the next index (len(Stable)).
type State struct {
	Stable    []Entry
	Promised  Ballot
	AccBallot Ballot
	Accepted  *Entry
}

// Promise is an acceptor's answer to a prepare.
type Promise struct {
	// OK: the acceptor promised; AccBallot and Accepted are what it
	// accepted for the index (nil: nothing).
	OK        bool
	AccBallot Ballot
	Accepted  *Entry
	// Promised is the ballot the acceptor promised instead, when not OK
	// and Decided is empty.
	Promised Ballot
	// Decided are the acceptor's stable entries from the index on: the
	// index is decided already.
	Decided []Entry
}

// List is a node's retired list. Its methods are safe for concurrent use.
type List struct {
	mu   sync.Mutex
	self crdt.NodeID // this node: no entry may name it
	st   State
	save func(State) error // durably, before an answer leaves

	ids  atomic.Pointer[[]crdt.NodeID]          // the stable entries' ids, in order
	cuts atomic.Pointer[map[crdt.NodeID]Forgot] // each forgotten id's own cut
}

// Forgot is what the list says of one forgotten id: the name of its entry
// and the highest of its own changes the entry's cut holds.
type Forgot struct {
	Name string
	Cut  uint64
}

// New returns the list of node self loaded from st; save persists it
// (synchronously). It refuses a state whose entries break the rules.
func New(self crdt.NodeID, st State, save func(State) error) (*List, error) {
	l := &List{self: self, st: st, save: save}
	for _, e := range st.Stable {
		if err := l.validate(e); err != nil {
			return nil, err
		}
	}
	l.publishLocked()
	return l, nil
}

func (l *List) publishLocked() {
	var ids []crdt.NodeID
	cuts := make(map[crdt.NodeID]Forgot)
	for _, e := range l.st.Stable {
		ids = append(ids, e.IDs...)
		for _, id := range e.IDs {
			cuts[id] = Forgot{Name: e.Name, Cut: CutOf(e, id)}
		}
	}
	l.ids.Store(&ids)
	l.cuts.Store(&cuts)
}

// ForgottenID reports whether id is forgotten, with its entry's name and
// its own cut. It takes no lock (the write path asks it for every change).
func (l *List) ForgottenID(id crdt.NodeID) (Forgot, bool) {
	p := l.cuts.Load()
	if p == nil {
		return Forgot{}, false
	}
	f, ok := (*p)[id]
	return f, ok
}

// IDs returns the ids of the stable entries in list order: the list that
// crdt.Counter.Fold and MergeRetired take. The caller must not modify it.
func (l *List) IDs() []crdt.NodeID {
	if p := l.ids.Load(); p != nil {
		return *p
	}
	return nil
}

// Stable returns a copy of the stable entries.
func (l *List) Stable() []Entry {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.st.Stable)
}

// Len returns how many entries are stable.
func (l *List) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.st.Stable)
}

// CutOf returns, when id is forgotten, the highest sequence of id's own
// changes that its entry's cut holds.
func CutOf(e Entry, id crdt.NodeID) uint64 { return SeqOf(e.Cut, id) }

// SeqOf returns origin's sequence in s (sorted by origin), 0 when absent.
func SeqOf(s []OriginSeq, origin crdt.NodeID) uint64 {
	i, ok := slices.BinarySearchFunc(s, origin, func(x OriginSeq, o crdt.NodeID) int { return cmp.Compare(x.Origin, o) })
	if !ok {
		return 0
	}
	return s[i].Seq
}

// SortOrigins sorts s by origin.
func SortOrigins(s []OriginSeq) {
	slices.SortFunc(s, func(a, b OriginSeq) int { return cmp.Compare(a.Origin, b.Origin) })
}

// Install takes a peer's stable entries (its whole list, from index 0):
// they must agree with this node's entry for entry; the ones past this
// node's end are appended. A list that disagrees at some index is refused,
// changing nothing: two nodes that folded different ids at the same
// generation would count folded totals wrongly, so that is never merged.
// It reports how many entries were added.
func (l *List) Install(entries []Entry) (int, error) {
	for _, e := range entries {
		if err := l.validate(e); err != nil {
			return 0, err
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	n := min(len(entries), len(l.st.Stable))
	for i := range n {
		if !entries[i].Equal(l.st.Stable[i]) {
			return 0, fmt.Errorf("%w: entry %d is %q here and %q at the peer", ErrInvalid, i, l.st.Stable[i].Name, entries[i].Name)
		}
	}
	if len(entries) <= len(l.st.Stable) {
		return 0, nil
	}
	total := len(l.IDs())
	for _, e := range entries[n:] {
		total += len(e.IDs)
	}
	if uint64(total) > crdt.MaxRetiredGen {
		return 0, fmt.Errorf("%w: %d retired ids, more than %d", ErrInvalid, total, crdt.MaxRetiredGen)
	}
	next := l.st
	next.Stable = append(slices.Clone(l.st.Stable), entries[n:]...)
	next.Promised, next.AccBallot, next.Accepted = Ballot{}, Ballot{}, nil
	if err := l.save(next); err != nil {
		return 0, err
	}
	l.st = next
	l.publishLocked()
	return len(entries) - n, nil
}

// Prepare is the acceptor's first phase for index, with the coordinator's
// stable entries (installed first, so that an acceptor that missed a
// commit catches up).
func (l *List) Prepare(index uint64, b Ballot, stable []Entry) (Promise, error) {
	if _, err := l.Install(stable); err != nil {
		return Promise{}, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if index < uint64(len(l.st.Stable)) {
		return Promise{Decided: slices.Clone(l.st.Stable[index:])}, nil
	}
	if index > uint64(len(l.st.Stable)) {
		return Promise{}, fmt.Errorf("%w: prepare for index %d, but %d entries are stable here and the coordinator sent %d", ErrInvalid, index, len(l.st.Stable), len(stable))
	}
	if !l.st.Promised.Less(b) {
		return Promise{Promised: l.st.Promised}, nil
	}
	next := l.st
	next.Promised = b
	if err := l.save(next); err != nil {
		return Promise{}, err
	}
	l.st = next
	return Promise{OK: true, AccBallot: l.st.AccBallot, Accepted: l.st.Accepted}, nil
}

// Accept is the acceptor's second phase: it accepts e for index unless it
// promised a higher ballot. decided is set when the index is decided
// already.
func (l *List) Accept(index uint64, b Ballot, e Entry) (ok bool, decided []Entry, err error) {
	if err := l.validate(e); err != nil {
		return false, nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if index < uint64(len(l.st.Stable)) {
		return false, slices.Clone(l.st.Stable[index:]), nil
	}
	if index > uint64(len(l.st.Stable)) || b.Less(l.st.Promised) {
		return false, nil, nil
	}
	next := l.st
	next.Promised, next.AccBallot = b, b
	next.Accepted = &e
	if err := l.save(next); err != nil {
		return false, nil, err
	}
	l.st = next
	return true, nil, nil
}

// Covered returns the generation up to which this node may fold: the ids
// of the longest run of stable entries, from the first, whose cuts covers
// reports covered.
func (l *List) Covered(covers func(cut []OriginSeq) bool) uint64 {
	l.mu.Lock()
	stable := l.st.Stable
	l.mu.Unlock()
	var gen uint64
	for _, e := range stable {
		if !covers(e.Cut) {
			break
		}
		gen += uint64(len(e.IDs))
	}
	return gen
}

// Merge merges src into dst across retired generations (ids: the list's
// IDs): as crdt.Counter.Merge when both are at generation 0, else
// crdt.Counter.MergeRetired. It fails, changing nothing, when a state's
// generation is beyond ids (the list has not reached this node yet).
func Merge(dst *crdt.Counter, src crdt.Counter, ids []crdt.NodeID) error {
	if dst.Gen() == 0 && src.Gen() == 0 {
		dst.Merge(src)
		return nil
	}
	return dst.MergeRetired(src, ids)
}

// NeedsFold reports whether c holds a slot of one of the ids of
// ids[:gen], or a retired slot below gen: Fold(ids, gen) would change it.
func NeedsFold(c *crdt.Counter, ids []crdt.NodeID, gen uint64) bool {
	if gen == 0 {
		return false
	}
	if g := c.Gen(); g >= gen {
		return false
	}
	folded := ids[:gen]
	for _, s := range c.Slots {
		if crdt.IsRetiredID(s.Node) {
			continue // below gen: renamed only if another slot folds
		}
		if slices.Contains(folded, s.Node) {
			return true
		}
	}
	return false
}
