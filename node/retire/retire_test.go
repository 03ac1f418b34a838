package retire

import (
	"errors"
	"testing"

	"github.com/countmesh/countmesh/crdt"
)

const self = crdt.NodeID(1 << 40)

func entry(name string, ids ...crdt.NodeID) Entry {
	return Entry{Name: name, IDs: ids, Cut: []OriginSeq{{Origin: ids[0], Seq: 4}}}
}

func newList(t *testing.T) (*List, *[]State) {
	t.Helper()
	var saved []State
	l, err := New(self, State{}, func(st State) error {
		saved = append(saved, st)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return l, &saved
}

// The acceptor keeps its promises: a lower or equal ballot is refused
// after a higher one, an accepted entry is reported to the next prepare,
// and a decided index answers with the decided entries.
func TestAcceptorPromises(t *testing.T) {
	l, saved := newList(t)
	b1, b2 := Ballot{Round: 1, Node: 5}, Ballot{Round: 2, Node: 3}
	p, err := l.Prepare(0, b2, nil)
	if err != nil || !p.OK || p.Accepted != nil {
		t.Fatalf("first prepare: %+v, %v", p, err)
	}
	if p, _ := l.Prepare(0, b1, nil); p.OK || p.Promised != b2 {
		t.Fatalf("a lower ballot after a higher one: %+v, want refused naming %+v", p, b2)
	}
	if ok, _, _ := l.Accept(0, b1, entry("a", 1<<33)); ok {
		t.Fatal("accept under a lower ballot than promised")
	}
	e := entry("a", 1<<33)
	if ok, _, err := l.Accept(0, b2, e); !ok || err != nil {
		t.Fatalf("accept under the promised ballot: %v, %v", ok, err)
	}
	b3 := Ballot{Round: 3, Node: 1}
	p, _ = l.Prepare(0, b3, nil)
	if !p.OK || p.Accepted == nil || !p.Accepted.Equal(e) || p.AccBallot != b2 {
		t.Fatalf("the next prepare does not report the accepted entry: %+v", p)
	}
	if len(*saved) != 3 {
		t.Fatalf("%d saves, want 3 (each promise and accept before answering)", len(*saved))
	}
	// Decided: the entry is installed as stable.
	if n, err := l.Install([]Entry{e}); n != 1 || err != nil {
		t.Fatalf("install: %d, %v", n, err)
	}
	if len(l.IDs()) != 1 || l.IDs()[0] != 1<<33 {
		t.Fatalf("after install: ids %v", l.IDs())
	}
	p, _ = l.Prepare(0, Ballot{Round: 9}, nil)
	if len(p.Decided) != 1 || !p.Decided[0].Equal(e) {
		t.Fatalf("a prepare for a decided index: %+v", p)
	}
	if ok, decided, _ := l.Accept(0, Ballot{Round: 9}, entry("b", 1<<34)); ok || len(decided) != 1 {
		t.Fatalf("an accept for a decided index: %v, %v", ok, decided)
	}
	if _, err := l.Prepare(2, Ballot{Round: 10}, nil); err == nil {
		t.Fatal("a prepare past the end without the coordinator's entries")
	}
}

// Install refuses, changing nothing, a list that disagrees at some index,
// one that names this node, and malformed entries.
func TestInstallRefusesWhatDisagrees(t *testing.T) {
	l, _ := newList(t)
	a, b := entry("a", 1<<33), entry("b", 1<<34, 1<<34+1)
	if _, err := l.Install([]Entry{a, b}); err != nil {
		t.Fatal(err)
	}
	for name, list := range map[string][]Entry{
		"another entry at 1": {a, entry("c", 1<<35)},
		"this node":          {a, b, entry("me", self)},
		"unsorted ids":       {a, b, {Name: "d", IDs: []crdt.NodeID{1 << 36, 1 << 35}}},
		"a retired id":       {a, b, {Name: "d", IDs: []crdt.NodeID{crdt.RetiredID(3)}}},
		"no name":            {a, b, {IDs: []crdt.NodeID{1 << 36}}},
	} {
		if _, err := l.Install(list); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	if got := l.IDs(); len(got) != 3 {
		t.Fatalf("refused installs changed the list: %v", got)
	}
	// A shorter list that agrees adds nothing.
	if n, err := l.Install([]Entry{a}); n != 0 || err != nil {
		t.Fatalf("a shorter list: %d, %v", n, err)
	}
}

// Covered counts the ids of the leading entries whose cuts are covered,
// and stops at the first that is not.
func TestCoveredStopsAtTheFirstUncoveredCut(t *testing.T) {
	l, _ := newList(t)
	a, b, c := entry("a", 1<<33), entry("b", 1<<34, 1<<34+1), entry("c", 1<<35)
	if _, err := l.Install([]Entry{a, b, c}); err != nil {
		t.Fatal(err)
	}
	held := map[crdt.NodeID]uint64{1 << 33: 4, 1 << 34: 3, 1 << 35: 4}
	covers := func(cut []OriginSeq) bool {
		for _, o := range cut {
			if held[o.Origin] < o.Seq {
				return false
			}
		}
		return true
	}
	if got := l.Covered(covers); got != 1 {
		t.Fatalf("covered %d, want 1 (b's cut is not covered, c's is but comes after)", got)
	}
	held[1<<34] = 4
	if got := l.Covered(covers); got != 4 {
		t.Fatalf("covered %d, want 4", got)
	}
}

// Merge folds the lower side of two states up to the higher one's
// generation, and refuses a generation beyond the ids.
func TestMergeAcrossGenerations(t *testing.T) {
	f, live := crdt.NodeID(1<<33), crdt.NodeID(1<<40+7)
	ids := []crdt.NodeID{f}
	var old crdt.Counter
	old.Slots = []crdt.Slot{{Node: f, P: 5}, {Node: live, P: 1}}
	folded := old.Clone()
	if err := folded.Fold(ids, 1); err != nil {
		t.Fatal(err)
	}
	if !NeedsFold(&old, ids, 1) || NeedsFold(&folded, ids, 1) {
		t.Fatal("NeedsFold")
	}
	dst := old.Clone()
	if err := Merge(&dst, folded, ids); err != nil {
		t.Fatal(err)
	}
	if dst.Gen() != 1 || dst.Value() != 6 || len(dst.Slots) != 2 {
		t.Fatalf("merged %+v (gen %d, value %d)", dst, dst.Gen(), dst.Value())
	}
	dst = old.Clone()
	if err := Merge(&dst, folded, nil); err == nil {
		t.Fatal("a generation beyond the ids merged")
	}
	if dst.Gen() != 0 || dst.Value() != 6 {
		t.Fatal("a refused merge changed the state")
	}
}
