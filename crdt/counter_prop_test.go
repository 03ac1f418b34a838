package crdt_test

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"slices"
	"testing"

	"pgregory.net/rapid"

	"github.com/countmesh/countmesh/crdt"
)

// Property tests for Counter. States are never generated as arbitrary
// structs (they could break the invariants every method keeps); they are
// reached by running random operations on a few replicas: Add, SetReset,
// Merge of full states, and deltas that travel through a message pool where
// they may be delivered late, out of order and any number of times.
//
// Every replica is shadowed by a naive reference model (below), in the
// spirit of raft's quorum/quick_test.go, which checks the optimised majority
// computation against a dumb one.

// ---------------------------------------------------------------------------
// Reference model.
//
// The model keeps the whole history: every increment and every reset is an
// event with a unique id (its index). A replica, or a message, is the set of
// event ids it has learnt. There are no slots, no per-node totals, no
// maxima and no floors; the implementation's summaries (a node's events as
// two totals, the observations of all resets as one per-slot floor, one
// winning reset) are exactly what the comparison puts to the test.
//
//   - A reset records the ids of the increments the resetting replica knew.
//   - Its epoch is one more than the largest epoch among the resets the
//     replica knew (a Lamport clock).
//   - The winning reset among those known is the greatest by (epoch, node,
//     value, deleted), false < true.
//   - value = winner's value (0 without resets) + the sum of the known
//     increments that no known reset observed, computed exactly.
//   - Live = no winner, or the winner is not a delete, or some known
//     non-zero increment was observed by no known reset.
//   - Knowing a reset means knowing what it observed: a replica learns a
//     reset only from a replica that knew the reset's observations.

type set map[int]struct{}

func (s set) clone() set {
	out := make(set, len(s))
	for id := range s {
		out[id] = struct{}{}
	}
	return out
}

func (s set) addAll(o set) {
	for id := range o {
		s[id] = struct{}{}
	}
}

type incEvent struct {
	node crdt.NodeID
	by   int64
}

type resetEvent struct {
	epoch    uint64
	node     crdt.NodeID
	value    int64
	deleted  bool
	observed set // ids of the increments the resetting replica knew
}

// knowledge is what a replica or a message holds: ids of known events.
type knowledge struct {
	incs, resets set
}

func newKnowledge() knowledge { return knowledge{incs: set{}, resets: set{}} }

func (k knowledge) clone() knowledge {
	return knowledge{incs: k.incs.clone(), resets: k.resets.clone()}
}

func (k knowledge) union(o knowledge) {
	k.incs.addAll(o.incs)
	k.resets.addAll(o.resets)
}

// history is the global log of events; ids index its slices.
type history struct {
	incs   []incEvent
	resets []resetEvent
}

// resetBefore reports whether reset a loses to reset b.
func resetBefore(a, b resetEvent) bool {
	switch {
	case a.epoch != b.epoch:
		return a.epoch < b.epoch
	case a.node != b.node:
		return a.node < b.node
	case a.value != b.value:
		return a.value < b.value
	}
	return !a.deleted && b.deleted
}

func (h *history) winner(k knowledge) (resetEvent, bool) {
	var best resetEvent
	found := false
	for id := range k.resets {
		r := h.resets[id]
		if !found || resetBefore(best, r) {
			best, found = r, true
		}
	}
	return best, found
}

// observedByAny reports whether some reset known in k observed increment id.
func (h *history) observedByAny(k knowledge, id int) bool {
	for rid := range k.resets {
		if _, ok := h.resets[rid].observed[id]; ok {
			return true
		}
	}
	return false
}

// value is the exact (unclamped) model value.
func (h *history) value(k knowledge) *big.Int {
	v := new(big.Int)
	if w, ok := h.winner(k); ok {
		v.SetInt64(w.value)
	}
	for id := range k.incs {
		if !h.observedByAny(k, id) {
			v.Add(v, big.NewInt(h.incs[id].by))
		}
	}
	return v
}

func (h *history) live(k knowledge) bool {
	w, ok := h.winner(k)
	if !ok || !w.deleted {
		return true
	}
	for id := range k.incs {
		if h.incs[id].by != 0 && !h.observedByAny(k, id) {
			return true
		}
	}
	return false
}

// totals returns the sums of the known increments and of the known
// decrements (as a magnitude) of node.
func (h *history) totals(k knowledge, node crdt.NodeID) (p, n *big.Int) {
	p, n = new(big.Int), new(big.Int)
	for id := range k.incs {
		e := h.incs[id]
		if e.node != node {
			continue
		}
		if e.by >= 0 {
			p.Add(p, big.NewInt(e.by))
		} else {
			n.Sub(n, big.NewInt(e.by))
		}
	}
	return p, n
}

func (h *history) nextEpoch(k knowledge) uint64 {
	var e uint64
	for id := range k.resets {
		e = max(e, h.resets[id].epoch)
	}
	return e + 1
}

// delta is what c.Delta(withReset, nodes...) carries in the model: the
// known increments of the given nodes and, with withReset, every known reset
// together with what it observed.
func (h *history) delta(k knowledge, withReset bool, nodes []crdt.NodeID) knowledge {
	out := newKnowledge()
	for id := range k.incs {
		if slices.Contains(nodes, h.incs[id].node) {
			out.incs[id] = struct{}{}
		}
	}
	if withReset {
		for id := range k.resets {
			out.resets[id] = struct{}{}
			out.incs.addAll(h.resets[id].observed)
		}
	}
	return out
}

var (
	bigMaxInt64     = big.NewInt(math.MaxInt64)
	bigMinInt64     = big.NewInt(math.MinInt64)
	bigMaxSlotTotal = new(big.Int).SetUint64(crdt.MaxSlotTotal)
)

func inInt64(v *big.Int) bool { return v.Cmp(bigMinInt64) >= 0 && v.Cmp(bigMaxInt64) <= 0 }

func clamp(v *big.Int) int64 {
	switch {
	case v.Cmp(bigMaxInt64) > 0:
		return math.MaxInt64
	case v.Cmp(bigMinInt64) < 0:
		return math.MinInt64
	}
	return v.Int64()
}

// addRefused is the model of Add's overflow rule: an update is refused when
// it takes an in-range value out of range, moves an already out-of-range
// value (reachable by merging concurrent updates) further out, or takes a
// slot total past crdt.MaxSlotTotal.
func (h *history) addRefused(k knowledge, node crdt.NodeID, by int64) bool {
	v := h.value(k)
	if inInt64(v) {
		if !inInt64(new(big.Int).Add(v, big.NewInt(by))) {
			return true
		}
	} else if (v.Sign() > 0 && by > 0) || (v.Sign() < 0 && by < 0) {
		return true
	}
	p, n := h.totals(k, node)
	if by > 0 {
		return p.Add(p, big.NewInt(by)).Cmp(bigMaxSlotTotal) > 0
	}
	return n.Sub(n, big.NewInt(by)).Cmp(bigMaxSlotTotal) > 0
}

// ---------------------------------------------------------------------------
// Operations and their generators.

type opKind uint8

const (
	opNop     opKind = iota // nothing: what shrinking turns irrelevant steps into
	opAdd                   // replica R adds Amount to its own slot
	opReset                 // replica R resets to Amount (a delete with Deleted)
	opMerge                 // replica R merges replica S's full state
	opSend                  // replica S's full state or a delta enters the pool
	opDeliver               // pooled message Msg is merged into R (and stays pooled)
)

type op struct {
	Kind      opKind
	R, S      int   // replica indices, taken modulo the number of replicas
	Amount    int64 // Add's by, SetReset's value
	Deleted   bool  // opReset
	Full      bool  // opSend: the full state rather than a delta
	WithReset bool  // opSend delta: include the reset record
	Nodes     uint8 // opSend delta: bit i selects replica i's node
	Msg       int   // opDeliver: message index, modulo the pool size
}

// GoString keeps rapid's counterexamples readable.
func (o op) GoString() string {
	switch o.Kind {
	case opNop:
		return "nop"
	case opAdd:
		return fmt.Sprintf("add(r%d, %d)", o.R, o.Amount)
	case opReset:
		return fmt.Sprintf("reset(r%d, %d, deleted=%v)", o.R, o.Amount, o.Deleted)
	case opMerge:
		return fmt.Sprintf("merge(r%d <- r%d)", o.R, o.S)
	case opSend:
		if o.Full {
			return fmt.Sprintf("send(full r%d)", o.S)
		}
		return fmt.Sprintf("send(delta r%d, withReset=%v, nodes=%04b)", o.S, o.WithReset, o.Nodes)
	case opDeliver:
		return fmt.Sprintf("deliver(msg %d -> r%d)", o.Msg, o.R)
	}
	return fmt.Sprintf("op(%d)", o.Kind)
}

var extremes = []int64{
	math.MaxInt64, math.MinInt64, math.MaxInt64 - 1, math.MinInt64 + 1,
	1 << 62, -(1 << 62), 1<<63 - 1<<61, -(1<<63 - 1<<61),
}

// amountGen draws mostly small amounts, so that sums stay meaningful, and
// sometimes extreme ones, so that the overflow rules are exercised.
func amountGen(extremeWeight int) *rapid.Generator[int64] {
	return rapid.Custom(func(t *rapid.T) int64 {
		w := rapid.IntRange(0, 9).Draw(t, "scale")
		switch {
		case w < 10-extremeWeight:
			return rapid.Int64Range(-20, 20).Draw(t, "small")
		case w%3 == 0:
			return rapid.SampledFrom(extremes).Draw(t, "extreme")
		case w%3 == 1:
			d := rapid.Int64Range(0, 40).Draw(t, "offset")
			if rapid.Bool().Draw(t, "negative") {
				return math.MinInt64 + d
			}
			return math.MaxInt64 - d
		default:
			return rapid.Int64().Draw(t, "any")
		}
	})
}

func opGen(amount *rapid.Generator[int64]) *rapid.Generator[op] {
	return rapid.Custom(func(t *rapid.T) op {
		w := rapid.IntRange(0, 99).Draw(t, "kind")
		o := op{R: rapid.IntRange(0, 3).Draw(t, "r")}
		switch {
		case w < 3:
			o.Kind = opNop
		case w < 35:
			o.Kind = opAdd
			o.Amount = amount.Draw(t, "by")
		case w < 45:
			o.Kind = opReset
			o.Amount = amount.Draw(t, "value")
			o.Deleted = rapid.Bool().Draw(t, "deleted")
		case w < 65:
			o.Kind = opMerge
			o.S = rapid.IntRange(0, 3).Draw(t, "s")
		case w < 80:
			o.Kind = opSend
			o.S = rapid.IntRange(0, 3).Draw(t, "s")
			o.Full = rapid.Bool().Draw(t, "full")
			o.WithReset = rapid.Bool().Draw(t, "withReset")
			o.Nodes = rapid.Uint8().Draw(t, "nodes")
		default:
			o.Kind = opDeliver
			o.Msg = rapid.IntRange(0, 63).Draw(t, "msg")
		}
		return o
	})
}

// drawOps draws a history of up to maxOps operations. The length is drawn
// first (rapid's slices average only a handful of elements), half of the
// time from the upper half of the range.
func drawOps(t *rapid.T, amount *rapid.Generator[int64], maxOps int, label string) []op {
	lo := 0
	if rapid.Bool().Draw(t, label+" long") {
		lo = maxOps / 2
	}
	n := rapid.IntRange(lo, maxOps).Draw(t, label+" length")
	ops := rapid.SliceOfN(opGen(amount), n, n).Draw(t, label)
	var effective []op
	for _, o := range ops {
		if o.Kind != opNop {
			effective = append(effective, o)
		}
	}
	t.Logf("%s without nops: %#v", label, effective) // shown with a counterexample
	return ops
}

// nodePool holds the candidate node ids: both ends of the range (ties
// between concurrent resets break on node) and hashed names. The low end is
// 0 and the lowest id above the retired ones (1..MaxRetiredGen), which no
// node writes (Add refuses them).
var nodePool = []crdt.NodeID{
	0, crdt.NodeID(crdt.MaxRetiredGen) + 1, math.MaxUint64, math.MaxUint64 - 1,
	crdt.NodeIDFromName("a"), crdt.NodeIDFromName("b"), crdt.NodeIDFromName("c"),
}

// ---------------------------------------------------------------------------
// The simulation: replicas, their model shadows, and the message pool.

type message struct {
	c crdt.Counter
	k knowledge
}

type sim struct {
	h    *history
	ids  []crdt.NodeID
	reps []crdt.Counter
	know []knowledge
	pool []message

	// checkModel compares the changed replica with the model after every
	// step.
	checkModel bool
	// onChange, when set, sees each replica state before and after a step
	// that may have changed it.
	onChange func(before, after crdt.Counter)
	// states collects every state reached (clones), when collect is set;
	// with collectDeltas, delta messages too.
	collect, collectDeltas bool
	states                 []crdt.Counter
}

func drawSim(t *rapid.T, checkModel bool) *sim {
	ids := rapid.SliceOfNDistinct(rapid.SampledFrom(nodePool), 2, 4, rapid.ID[crdt.NodeID]).Draw(t, "nodes")
	s := &sim{h: &history{}, ids: ids, checkModel: checkModel}
	s.reps = make([]crdt.Counter, len(ids))
	s.know = make([]knowledge, len(ids))
	for i := range ids {
		s.know[i] = newKnowledge()
	}
	s.states = append(s.states, crdt.Counter{})
	return s
}

func (s *sim) run(t *rapid.T, ops []op) {
	for _, o := range ops {
		s.step(t, o)
	}
}

// step applies o and reports, for an Add, whether it was accepted. Every Add
// is checked against the model's overflow rule, with or without checkModel.
func (s *sim) step(t *rapid.T, o op) bool {
	n := len(s.reps)
	r, src := o.R%n, o.S%n
	before := s.reps[r].Clone()
	accepted := true
	switch o.Kind {
	case opNop:
		return true
	case opAdd:
		accepted = s.add(t, r, o.Amount)
	case opReset:
		s.reset(t, r, o.Amount, o.Deleted)
	case opMerge:
		arg := s.reps[src]
		argBefore := arg.Clone()
		s.reps[r].Merge(arg)
		if r != src && !s.reps[src].Equal(argBefore) {
			t.Fatalf("Merge modified its argument: %s became %s", describe(argBefore), describe(s.reps[src]))
		}
		s.know[r].union(s.know[src])
	case opSend:
		var m message
		if o.Full {
			m = message{c: s.reps[src].Clone(), k: s.know[src].clone()}
		} else {
			var nodes []crdt.NodeID
			for i, id := range s.ids {
				if o.Nodes&(1<<i) != 0 {
					nodes = append(nodes, id)
				}
			}
			m = message{
				c: s.reps[src].Delta(o.WithReset, nodes...),
				k: s.h.delta(s.know[src], o.WithReset, nodes),
			}
			if s.collectDeltas {
				s.states = append(s.states, m.c.Clone())
			}
		}
		s.pool = append(s.pool, m)
		if s.checkModel {
			// A message is a state too: what it reads is what it carries.
			s.checkState(t, fmt.Sprintf("message %d", len(s.pool)-1), m.c, m.k)
		}
		return true
	case opDeliver:
		if len(s.pool) == 0 {
			return true
		}
		m := s.pool[o.Msg%len(s.pool)]
		s.reps[r].Merge(m.c)
		s.know[r].union(m.k)
	}
	if s.onChange != nil {
		s.onChange(before, s.reps[r])
	}
	if s.collect {
		s.states = append(s.states, s.reps[r].Clone())
	}
	if s.checkModel {
		s.check(t, r)
	}
	return accepted
}

func (s *sim) add(t *rapid.T, r int, by int64) bool {
	node := s.ids[r]
	k := s.know[r]
	cur := s.h.value(k)
	before := s.reps[r].Clone()
	refused := s.h.addRefused(k, node, by)
	got, err := s.reps[r].Add(node, by)
	if refused {
		if !errors.Is(err, crdt.ErrOverflow) {
			t.Fatalf("Add(%d) at model value %v: err = %v, want ErrOverflow", by, cur, err)
		}
		if !s.reps[r].Equal(before) {
			t.Fatalf("refused Add(%d) changed the state:\n%+v\nbecame\n%+v", by, before, s.reps[r])
		}
		if want := clamp(cur); got != want {
			t.Fatalf("refused Add(%d) returned %d, want the current value %d", by, got, want)
		}
		return false
	}
	if err != nil {
		t.Fatalf("Add(%d) at model value %v: unexpected error %v", by, cur, err)
	}
	id := len(s.h.incs)
	s.h.incs = append(s.h.incs, incEvent{node: node, by: by})
	k.incs[id] = struct{}{}
	if want := clamp(s.h.value(k)); got != want {
		t.Fatalf("Add(%d) returned %d, model value %d", by, got, want)
	}
	return true
}

func (s *sim) reset(t *rapid.T, r int, value int64, deleted bool) {
	node := s.ids[r]
	k := s.know[r]
	ev := resetEvent{
		epoch:    s.h.nextEpoch(k),
		node:     node,
		value:    value,
		deleted:  deleted,
		observed: k.incs.clone(),
	}
	rec := s.reps[r].SetReset(node, value, deleted)
	if rec == nil || rec.Epoch != ev.epoch || rec.Node != node || rec.Value != value || rec.Deleted != deleted {
		t.Fatalf("SetReset(%d, %d, %v) = %+v, want epoch %d", node, value, deleted, rec, ev.epoch)
	}
	id := len(s.h.resets)
	s.h.resets = append(s.h.resets, ev)
	k.resets[id] = struct{}{}
}

// check compares replica r with its model.
func (s *sim) check(t *rapid.T, r int) {
	s.checkState(t, fmt.Sprintf("replica %d", r), s.reps[r], s.know[r])
}

// checkState compares a state (a replica's, or a message's) with the model
// of what it knows, and checks the documented invariants of the
// representation.
func (s *sim) checkState(t *rapid.T, what string, c crdt.Counter, k knowledge) {
	checkInvariants(t, c)
	if got, want := c.Value(), clamp(s.h.value(k)); got != want {
		t.Fatalf("%s: Value() = %d, model %d (exact %v)\nstate %s", what, got, want, s.h.value(k), describe(c))
	}
	if got, want := c.Live(), s.h.live(k); got != want {
		t.Fatalf("%s: Live() = %v, model %v\nstate %s", what, got, want, describe(c))
	}
	for _, id := range s.ids {
		sl := c.Slot(id)
		p, n := s.h.totals(k, id)
		if sl.Node != id || new(big.Int).SetUint64(sl.P).Cmp(p) != 0 || new(big.Int).SetUint64(sl.N).Cmp(n) != 0 {
			t.Fatalf("%s: Slot(%d) = %+v, model P=%v N=%v\nstate %s", what, id, sl, p, n, describe(c))
		}
	}
	for _, sl := range c.Slots {
		if !slices.Contains(s.ids, sl.Node) {
			t.Fatalf("%s: slot for unknown node %d", what, sl.Node)
		}
	}
}

// checkInvariants checks what Counter documents about every state its
// methods produce: slots sorted by node without duplicates, the floor too,
// and every floor entry dominated by the slot of its node.
func checkInvariants(t *rapid.T, c crdt.Counter) {
	t.Helper()
	sorted := func(ss []crdt.Slot) bool {
		for i := 1; i < len(ss); i++ {
			if ss[i-1].Node >= ss[i].Node {
				return false
			}
		}
		return true
	}
	if !sorted(c.Slots) {
		t.Fatalf("slots not sorted and distinct: %+v", describe(c))
	}
	if c.Reset == nil {
		return
	}
	if !sorted(c.Reset.Floor) {
		t.Fatalf("floor not sorted and distinct: %+v", describe(c))
	}
	for _, f := range c.Reset.Floor {
		sl := c.Slot(f.Node)
		if sl.P < f.P || sl.N < f.N {
			t.Fatalf("floor entry %+v above its slot %+v: %s", f, sl, describe(c))
		}
	}
}

func describe(c crdt.Counter) string {
	if c.Reset == nil {
		return fmt.Sprintf("{Slots:%+v Reset:nil}", c.Slots)
	}
	return fmt.Sprintf("{Slots:%+v Reset:%+v}", c.Slots, *c.Reset)
}

// syncAll makes every replica learn every other's state (through replica
// 0), as anti-entropy eventually does.
func (s *sim) syncAll(t *rapid.T) {
	for i := 1; i < len(s.reps); i++ {
		s.step(t, op{Kind: opMerge, R: 0, S: i})
	}
	for i := 1; i < len(s.reps); i++ {
		s.step(t, op{Kind: opMerge, R: i, S: 0})
	}
}

// drawStates runs a random history and returns every state it reached.
func drawStates(t *rapid.T, withDeltas bool) []crdt.Counter {
	s := drawSim(t, false)
	s.collect, s.collectDeltas = true, withDeltas
	s.run(t, drawOps(t, amountGen(2), 40, "ops"))
	return s.states
}

func pick(t *rapid.T, states []crdt.Counter, label string) crdt.Counter {
	return states[rapid.IntRange(0, len(states)-1).Draw(t, label)].Clone()
}

func merged(a, b crdt.Counter) crdt.Counter {
	out := a.Clone()
	out.Merge(b)
	return out
}

func requireEqual(t *rapid.T, what string, got, want crdt.Counter) {
	t.Helper()
	if !got.Equal(want) {
		t.Fatalf("%s:\n got  %s\n want %s", what, describe(got), describe(want))
	}
}

// ---------------------------------------------------------------------------
// Lattice laws.

func TestPropMergeCommutative(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) {
		states := drawStates(t, false)
		a, b := pick(t, states, "a"), pick(t, states, "b")
		a0, b0 := a.Clone(), b.Clone()
		ab, ba := merged(a, b), merged(b, a)
		requireEqual(t, "a⊔b != b⊔a", ab, ba)
		requireEqual(t, "Merge modified its argument", b, b0)
		requireEqual(t, "Merge modified its argument", a, a0)
	})
}

func TestPropMergeAssociative(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) {
		states := drawStates(t, false)
		a, b, c := pick(t, states, "a"), pick(t, states, "b"), pick(t, states, "c")
		requireEqual(t, "(a⊔b)⊔c != a⊔(b⊔c)", merged(merged(a, b), c), merged(a, merged(b, c)))
	})
}

func TestPropMergeIdempotent(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) {
		states := drawStates(t, false)
		a, b := pick(t, states, "a"), pick(t, states, "b")
		requireEqual(t, "a⊔a != a", merged(a, a), a)
		ab := merged(a, b)
		requireEqual(t, "(a⊔b)⊔b != a⊔b", merged(ab, b), ab)
		// Merging a value that shares the receiver's storage.
		self := a.Clone()
		self.Merge(self)
		requireEqual(t, "self-merge changed the state", self, a)
	})
}

// Deltas travel and may be coalesced with each other before they reach a
// replica, so they must be lattice states too.
func TestPropMergeLawsIncludingDeltas(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) {
		states := drawStates(t, true)
		a, b, c := pick(t, states, "a"), pick(t, states, "b"), pick(t, states, "c")
		for _, x := range []crdt.Counter{a, b, c} {
			checkInvariants(t, x)
		}
		requireEqual(t, "a⊔b != b⊔a", merged(a, b), merged(b, a))
		requireEqual(t, "(a⊔b)⊔c != a⊔(b⊔c)", merged(merged(a, b), c), merged(a, merged(b, c)))
		requireEqual(t, "a⊔a != a", merged(a, a), a)
		checkInvariants(t, merged(a, b))
	})
}

// Every update inflates: the old state is below the new one, old⊔new = new.
func TestPropUpdatesInflate(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) {
		s := drawSim(t, false)
		s.onChange = func(before, after crdt.Counter) {
			requireEqual(t, "new⊔old != new", merged(after, before), after)
			requireEqual(t, "old⊔new != new", merged(before, after), after)
		}
		s.run(t, drawOps(t, amountGen(2), 40, "ops"))
	})
}

// ---------------------------------------------------------------------------
// The model.

// Every replica agrees with the model after every step, whatever the order
// and duplication of merges of full states and deltas; once everything is
// exchanged, all replicas hold the same state.
func TestPropValueMatchesModel(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) {
		s := drawSim(t, true)
		s.run(t, drawOps(t, amountGen(2), 40, "ops"))

		// Deliver every pooled message to every replica, in a random order,
		// then exchange full states.
		var deliveries []op
		for m := range s.pool {
			for r := range s.reps {
				deliveries = append(deliveries, op{Kind: opDeliver, R: r, Msg: m})
			}
		}
		for _, o := range rapid.Permutation(deliveries).Draw(t, "final deliveries") {
			s.step(t, o)
		}
		s.syncAll(t)
		for r := 1; r < len(s.reps); r++ {
			requireEqual(t, fmt.Sprintf("replica %d did not converge with replica 0", r), s.reps[r], s.reps[0])
		}
	})
}

// Merging c.Delta(true, every node) into a replica equals merging c; a
// delta of some nodes updates those nodes' slots as merging c does, and a
// delta without the reset followed by the rest with the reset equals c.
func TestPropDelta(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) {
		states := drawStates(t, false)
		c, r := pick(t, states, "c"), pick(t, states, "replica")
		want := merged(r, c)

		var all []crdt.NodeID
		for _, sl := range c.Slots {
			all = append(all, sl.Node, sl.Node) // duplicates are allowed
		}
		all = append(all, rapid.SliceOfN(rapid.SampledFrom(nodePool), 0, 3).Draw(t, "extra nodes")...)
		all = rapid.Permutation(all).Draw(t, "node order")
		c0 := c.Clone()
		requireEqual(t, "r⊔Delta(true, all) != r⊔c", merged(r, c.Delta(true, all...)), want)
		requireEqual(t, "Delta modified its receiver", c, c0)

		some := rapid.SliceOfN(rapid.SampledFrom(nodePool), 0, 4).Draw(t, "some nodes")
		withReset := rapid.Bool().Draw(t, "withReset")
		part := merged(r, c.Delta(withReset, some...))
		for _, n := range some {
			if got, w := part.Slot(n), want.Slot(n); got != w {
				t.Fatalf("r⊔Delta(%v, %v): Slot(%d) = %+v, want %+v", withReset, some, n, got, w)
			}
		}
		var rest []crdt.NodeID
		for _, sl := range c.Slots {
			if !slices.Contains(some, sl.Node) {
				rest = append(rest, sl.Node)
			}
		}
		requireEqual(t, "r⊔Delta(false, some)⊔Delta(true, rest) != r⊔c",
			merged(merged(r, c.Delta(false, some...)), c.Delta(true, rest...)), want)
	})
}

// ---------------------------------------------------------------------------
// Observed-reset semantics, stated directly rather than through the model.

func smallAdds(t *rapid.T, label string) []op {
	return rapid.SliceOfN(rapid.Custom(func(t *rapid.T) op {
		return op{
			Kind:   opAdd,
			R:      rapid.IntRange(0, 3).Draw(t, "r"),
			Amount: rapid.Int64Range(-1000, 1000).Draw(t, "by"),
		}
	}), 0, 12).Draw(t, label)
}

// drawSyncedSim draws a simulation, runs a short history of increments on
// it and delivers everything everywhere.
func drawSyncedSim(t *rapid.T) *sim {
	s := drawSim(t, true)
	s.run(t, drawOps(t, amountGen(1), 20, "history"))
	s.syncAll(t)
	return s
}

// stepAll runs the ops that keep accepts (nil: all) and returns the sum of
// the amounts that applied.
func (s *sim) stepAll(t *rapid.T, ops []op, keep func(op) bool) int64 {
	var sum int64
	for _, o := range ops {
		if (keep == nil || keep(o)) && s.step(t, o) {
			sum += o.Amount
		}
	}
	return sum
}

// requireValue fails unless every replica reads want (what explains it).
func (s *sim) requireValue(t *rapid.T, want int64, what string) {
	for i, c := range s.reps {
		if got := c.Value(); got != want {
			t.Fatalf("replica %d reads %d, want %s", i, got, what)
		}
	}
}

// A reset to V keeps the increments the resetting node had not seen: after
// a full exchange every replica reads V + (increments made concurrently with
// or after the reset).
func TestPropResetKeepsUnseenIncrements(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) {
		s := drawSyncedSim(t)

		n := len(s.reps)
		r := rapid.IntRange(0, n-1).Draw(t, "resetter")
		v := rapid.Int64Range(-1e12, 1e12).Draw(t, "value")
		sum := s.stepAll(t, smallAdds(t, "concurrent adds"), func(o op) bool { return o.R%n != r })
		s.step(t, op{Kind: opReset, R: r, Amount: v})
		if got := s.reps[r].Value(); got != v {
			t.Fatalf("right after the reset to %d the resetter reads %d", v, got)
		}
		sum += s.stepAll(t, smallAdds(t, "later adds"), nil)
		s.syncAll(t)
		s.requireValue(t, v+sum, fmt.Sprintf("reset value %d + unseen increments %d", v, sum))
	})
}

// Two concurrent resets that observed the same increments subtract them
// once: after the exchange the value is the winning reset's value plus the
// increments neither reset saw. The winner has the larger node id (the
// epochs are equal).
func TestPropConcurrentResetsSubtractOnce(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) {
		s := drawSyncedSim(t)

		n := len(s.reps)
		r1 := rapid.IntRange(0, n-1).Draw(t, "r1")
		r2 := (r1 + rapid.IntRange(1, n-1).Draw(t, "r2 offset")) % n
		v1 := rapid.Int64Range(-3, 3).Draw(t, "v1")
		v2 := rapid.Int64Range(-3, 3).Draw(t, "v2")
		s.step(t, op{Kind: opReset, R: r1, Amount: v1})
		s.step(t, op{Kind: opReset, R: r2, Amount: v2})
		e1, e2 := s.reps[r1].Reset.Epoch, s.reps[r2].Reset.Epoch
		if e1 != e2 {
			t.Fatalf("concurrent resets after the same history have epochs %d and %d", e1, e2)
		}
		sum := s.stepAll(t, smallAdds(t, "concurrent adds"), nil)
		s.syncAll(t)
		win := v1
		if s.ids[r2] > s.ids[r1] {
			win = v2
		}
		s.requireValue(t, win+sum, fmt.Sprintf("winning reset %d + unseen increments %d", win, sum))
	})
}

// A delete makes Live() false, everywhere it reaches, until an Add that it
// did not observe arrives.
func TestPropDeleteHidesUntilNextAdd(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) {
		s := drawSyncedSim(t)

		n := len(s.reps)
		r := rapid.IntRange(0, n-1).Draw(t, "deleter")
		nonZero := rapid.Int64Range(-1000, 1000).Filter(func(v int64) bool { return v != 0 })

		// Optionally, another replica adds concurrently with the delete.
		concurrent := rapid.Bool().Draw(t, "concurrent add")
		var by int64
		if concurrent {
			o := op{Kind: opAdd, R: (r + 1) % n, Amount: nonZero.Draw(t, "concurrent by")}
			if s.step(t, o) {
				by = o.Amount
			} else {
				concurrent = false
			}
		}
		s.step(t, op{Kind: opReset, R: r, Deleted: true})
		if s.reps[r].Live() || s.reps[r].Value() != 0 {
			t.Fatalf("right after the delete: Live() = %v, Value() = %d", s.reps[r].Live(), s.reps[r].Value())
		}
		s.syncAll(t)
		for i, c := range s.reps {
			if c.Live() != concurrent || c.Value() != by {
				t.Fatalf("replica %d after the delete reached it: Live() = %v, Value() = %d; want %v, %d",
					i, c.Live(), c.Value(), concurrent, by)
			}
		}
		if concurrent {
			return
		}

		// An Add of 0 changes nothing, so it does not revive the counter.
		a := rapid.IntRange(0, n-1).Draw(t, "adder")
		s.step(t, op{Kind: opAdd, R: a, Amount: 0})
		if s.reps[a].Live() {
			t.Fatalf("Add(0) revived a deleted counter")
		}
		o := op{Kind: opAdd, R: a, Amount: nonZero.Draw(t, "later by")}
		if !s.step(t, o) {
			return // a slot total at the edge of uint64: refusal checked by the model
		}
		for i, c := range s.reps {
			if want := i == a; c.Live() != want {
				t.Fatalf("replica %d: Live() = %v before merging the new Add (adder %d)", i, c.Live(), a)
			}
		}
		s.syncAll(t)
		for i, c := range s.reps {
			if !c.Live() || c.Value() != o.Amount {
				t.Fatalf("replica %d after the new Add: Live() = %v, Value() = %d, want true, %d", i, c.Live(), c.Value(), o.Amount)
			}
		}
	})
}

// Add refuses, leaving the state unchanged, an update that would take the
// value out of the int64 range. The sim checks every Add against the model's
// rule; this property steers values to the edges of the range.
func TestPropAddRefusesOverflow(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) {
		s := drawSim(t, true)
		s.run(t, drawOps(t, amountGen(6), 30, "history"))

		n := len(s.reps)
		r := rapid.IntRange(0, n-1).Draw(t, "replica")
		base := amountGen(8).Draw(t, "reset to")
		s.step(t, op{Kind: opReset, R: r, Amount: base})
		by := amountGen(5).Draw(t, "by")
		sum := new(big.Int).Add(big.NewInt(base), big.NewInt(by))
		p, nn := s.h.totals(s.know[r], s.ids[r])
		slotFull := (by > 0 && p.Add(p, big.NewInt(by)).Cmp(bigMaxSlotTotal) > 0) ||
			(by < 0 && nn.Sub(nn, big.NewInt(by)).Cmp(bigMaxSlotTotal) > 0)
		before := s.reps[r].Clone()
		accepted := s.step(t, op{Kind: opAdd, R: r, Amount: by})
		// Stated without the model's value: right after the reset the value
		// is base, so base+by out of range is refused, and in range it is
		// accepted unless the node's slot total would pass MaxSlotTotal.
		if want := inInt64(sum) && !slotFull; accepted != want {
			t.Fatalf("reset to %d then Add(%d): accepted = %v, want %v (slot full %v)", base, by, accepted, want, slotFull)
		}
		if !accepted {
			requireEqual(t, "refused Add changed the state", s.reps[r], before)
		}
	})
}

// A few overflow cases spelled out.
func TestAddOverflowCases(t *testing.T) {
	a, b := crdt.NodeIDFromName("a"), crdt.NodeIDFromName("b")
	tests := []struct {
		name    string
		setup   func(c *crdt.Counter)
		node    crdt.NodeID
		by      int64
		wantErr bool
		want    int64
	}{
		{"max fits", func(c *crdt.Counter) {}, a, math.MaxInt64, false, math.MaxInt64},
		{"min fits", func(c *crdt.Counter) {}, a, math.MinInt64, false, math.MinInt64},
		{"past max", func(c *crdt.Counter) { c.Add(a, math.MaxInt64) }, b, 1, true, math.MaxInt64},
		{"past min", func(c *crdt.Counter) { c.Add(a, math.MinInt64) }, a, -1, true, math.MinInt64},
		{"reset near max", func(c *crdt.Counter) { c.SetReset(a, math.MaxInt64-5, false) }, b, 6, true, math.MaxInt64 - 5},
		{"reset near max, fits", func(c *crdt.Counter) { c.SetReset(a, math.MaxInt64-5, false) }, b, 5, false, math.MaxInt64},
		{"merged beyond max, away", func(c *crdt.Counter) {
			c.Add(a, math.MaxInt64)
			var o crdt.Counter
			o.Add(b, math.MaxInt64)
			c.Merge(o)
		}, a, 1, true, math.MaxInt64},
		{"merged beyond max, back", func(c *crdt.Counter) {
			c.Add(a, math.MaxInt64)
			var o crdt.Counter
			o.Add(b, math.MaxInt64)
			c.Merge(o)
		}, a, math.MinInt64, false, math.MaxInt64 - 1},
		{"slot total full", func(c *crdt.Counter) {
			for range 2 {
				c.Add(a, math.MaxInt64)
				c.SetReset(a, 0, false)
			}
		}, a, 2, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c crdt.Counter
			tt.setup(&c)
			before := c.Clone()
			got, err := c.Add(tt.node, tt.by)
			if gotErr := errors.Is(err, crdt.ErrOverflow); gotErr != tt.wantErr || (!tt.wantErr && err != nil) {
				t.Fatalf("Add(%d) error = %v, want overflow %v", tt.by, err, tt.wantErr)
			}
			if got != tt.want {
				t.Fatalf("Add(%d) = %d, want %d", tt.by, got, tt.want)
			}
			if tt.wantErr && !c.Equal(before) {
				t.Fatalf("refused Add changed the state: %+v -> %+v", before, c)
			}
		})
	}
}

// Regression: Delta(true, ...) used to carry the reset's floor without slots
// for the floor's nodes, so the delta broke Counter's invariant (every floor
// entry dominated by its slot). Two deltas coalesced in one order then read
// garbage (the floor subtracted from a lower slot wrapped around) and
// differed from the other order.
func TestDeltasCoalesce(t *testing.T) {
	a := crdt.NodeIDFromName("a")
	var c crdt.Counter
	if _, err := c.Add(a, -1); err != nil {
		t.Fatal(err)
	}
	older := c.Delta(false, a) // a: P=0 N=1
	if _, err := c.Add(a, 1); err != nil {
		t.Fatal(err)
	}
	c.SetReset(a, 0, false) // floor a: P=1 N=1
	reset := c.Delta(true)  // the reset alone

	buf := reset.Clone()
	buf.Merge(older)
	other := older.Clone()
	other.Merge(reset)
	if !buf.Equal(other) {
		t.Errorf("reset⊔older = %s, older⊔reset = %s", describe(buf), describe(other))
	}
	if buf.Value() != 0 || other.Value() != 0 {
		t.Errorf("coalesced deltas read %d and %d, want 0 (the reset's value)", buf.Value(), other.Value())
	}
	var replica crdt.Counter
	replica.Merge(buf)
	if !replica.Equal(c) {
		t.Errorf("replica after the coalesced deltas = %s, want %s", describe(replica), describe(c))
	}
}
