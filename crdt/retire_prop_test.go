package crdt_test

import (
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"slices"
	"testing"

	"pgregory.net/rapid"

	"github.com/countmesh/countmesh/crdt"
)

// Property tests for slot retirement (Fold, MergeRetired), against the
// event-set model of counter_prop_test.go. The model knows nothing of
// retirement: a folded node's increments stay individual events there, and
// the retired slot's totals are compared with the sums of those events.
//
// The simulation keeps Fold's precondition the way the cluster will: a node
// leaves after handing its state to a live replica; it is appended to the
// retired list (its cut) only once every live replica holds all its
// increments; a replica folds it only once it knows every reset made before
// the cut. Messages sent before a node left stay in the pool and may be
// delivered, stale, at any time after it was folded.

type ropKind uint8

const (
	ropNop     ropKind = iota
	ropAdd             // live replica R adds Amount to its own slot
	ropReset           // live replica R resets to Amount (a delete with Deleted)
	ropMerge           // live replica R merges live replica S's full state
	ropSend            // live replica S's full state or a delta enters the pool
	ropDeliver         // pooled message Msg is merged into live replica R
	ropLeave           // replica R hands its state to a live replica and leaves for good
	ropRetire          // departed node R is appended to the retired list, if every live replica has all its increments (with Full, its slot is first sent to every live replica)
	ropFold            // live replica R folds up to a random generation its knowledge allows
	ropSync            // every live replica learns every other's state
)

type rop struct {
	Kind      ropKind
	R, S      int
	Amount    int64
	Deleted   bool
	Full      bool
	WithReset bool
	Nodes     uint8
	Msg       int
	Gen       int // ropFold: how far to fold, modulo the allowed steps plus one; -1: as far as allowed
}

func (o rop) GoString() string {
	switch o.Kind {
	case ropNop:
		return "nop"
	case ropAdd:
		return fmt.Sprintf("add(r%d, %d)", o.R, o.Amount)
	case ropReset:
		return fmt.Sprintf("reset(r%d, %d, deleted=%v)", o.R, o.Amount, o.Deleted)
	case ropMerge:
		return fmt.Sprintf("merge(r%d <- r%d)", o.R, o.S)
	case ropSend:
		if o.Full {
			return fmt.Sprintf("send(full r%d)", o.S)
		}
		return fmt.Sprintf("send(delta r%d, withReset=%v, nodes=%06b)", o.S, o.WithReset, o.Nodes)
	case ropDeliver:
		return fmt.Sprintf("deliver(msg %d -> r%d)", o.Msg, o.R)
	case ropLeave:
		return fmt.Sprintf("leave(r%d)", o.R)
	case ropRetire:
		return fmt.Sprintf("retire(r%d, spread=%v)", o.R, o.Full)
	case ropFold:
		return fmt.Sprintf("fold(r%d, %d)", o.R, o.Gen)
	case ropSync:
		return "sync"
	}
	return fmt.Sprintf("rop(%d)", o.Kind)
}

// ropWeights are the relative weights of the op kinds, indexed by ropKind.
type ropWeights [ropSync + 1]int

var (
	// mixedOps exchange full states often, so that resets spread.
	mixedOps = ropWeights{ropNop: 2, ropAdd: 26, ropReset: 10, ropMerge: 12, ropSend: 10,
		ropDeliver: 11, ropLeave: 7, ropRetire: 9, ropFold: 10, ropSync: 3}
	// sparseOps exchange mostly single slots and seldom full states, so
	// that replicas hold different parts of departed nodes when they
	// reset, and folds race with resets that have not spread.
	sparseOps = ropWeights{ropAdd: 26, ropReset: 14, ropMerge: 2, ropSend: 16,
		ropDeliver: 16, ropLeave: 7, ropRetire: 9, ropFold: 10}
)

func ropGen(weights ropWeights, sparse bool) *rapid.Generator[rop] {
	total := 0
	for _, w := range weights {
		total += w
	}
	return rapid.Custom(func(t *rapid.T) rop {
		w := rapid.IntRange(0, total-1).Draw(t, "kind")
		var k ropKind
		for w >= weights[k] {
			w -= weights[k]
			k++
		}
		o := rop{Kind: k, R: rapid.IntRange(0, 5).Draw(t, "r")}
		switch k {
		case ropAdd:
			o.Amount = rapid.Int64Range(-20, 20).Draw(t, "by")
		case ropReset:
			o.Amount = rapid.Int64Range(-20, 20).Draw(t, "value")
			o.Deleted = rapid.Bool().Draw(t, "deleted")
		case ropMerge:
			o.S = rapid.IntRange(0, 5).Draw(t, "s")
		case ropSend:
			o.S = rapid.IntRange(0, 5).Draw(t, "s")
			if sparse {
				o.Nodes = 1 << rapid.IntRange(0, 5).Draw(t, "node")
				o.WithReset = rapid.IntRange(0, 3).Draw(t, "withReset") == 0
			} else {
				o.Full = rapid.Bool().Draw(t, "full")
				o.WithReset = rapid.Bool().Draw(t, "withReset")
				o.Nodes = rapid.Uint8().Draw(t, "nodes")
			}
		case ropDeliver:
			o.Msg = rapid.IntRange(0, 63).Draw(t, "msg")
		case ropRetire:
			o.Full = sparse || rapid.Bool().Draw(t, "spread")
		case ropFold:
			o.Gen = rapid.IntRange(0, 7).Draw(t, "gen")
		}
		return o
	})
}

// retirePool holds the candidate node ids: never a retired id (1..
// MaxRetiredGen), the lowest ids above them and the top of the range, 0 (an
// ordinary slot, sorted before the retired slot, but never retired: its
// replica does not leave), and hashed names.
var retirePool = []crdt.NodeID{
	0, crdt.NodeID(crdt.MaxRetiredGen) + 1, crdt.NodeID(crdt.MaxRetiredGen) + 2, math.MaxUint64, math.MaxUint64 - 1,
	crdt.NodeIDFromName("a"), crdt.NodeIDFromName("b"), crdt.NodeIDFromName("c"),
	crdt.NodeIDOf("a", 1), crdt.NodeIDOf("a", 2),
}

type rsim struct {
	h       *history
	ids     []crdt.NodeID // node of replica i
	reps    []crdt.Counter
	know    []knowledge
	left    []bool
	retired []crdt.NodeID
	cut     []int // resets with an id below cut[j] were made before retired[j] was appended
	pool    []message
	states  []crdt.Counter // every state reached, messages included
}

func drawRsim(t *rapid.T) *rsim {
	ids := rapid.SliceOfNDistinct(rapid.SampledFrom(retirePool), 3, 6, rapid.ID[crdt.NodeID]).Draw(t, "nodes")
	s := &rsim{h: &history{}, ids: ids}
	s.reps = make([]crdt.Counter, len(ids))
	s.know = make([]knowledge, len(ids))
	s.left = make([]bool, len(ids))
	for i := range ids {
		s.know[i] = newKnowledge()
	}
	s.states = append(s.states, crdt.Counter{})
	return s
}

func (s *rsim) live() []int {
	var out []int
	for i := range s.reps {
		if !s.left[i] {
			out = append(out, i)
		}
	}
	return out
}

// liveIndex maps a drawn index to a live replica (there is always one).
func (s *rsim) liveIndex(i int) int {
	l := s.live()
	return l[i%len(l)]
}

func (s *rsim) isRetired(id crdt.NodeID) bool { return slices.Contains(s.retired, id) }

// folded reports whether a state of generation gen has folded id.
func (s *rsim) folded(gen uint64, id crdt.NodeID) bool {
	return slices.Contains(s.retired[:gen], id)
}

// knowsAllIncs reports whether k holds every increment node made.
func (s *rsim) knowsAllIncs(k knowledge, node crdt.NodeID) bool {
	for id, e := range s.h.incs {
		if _, ok := k.incs[id]; e.node == node && !ok {
			return false
		}
	}
	return true
}

// knowsResetsBefore reports whether k holds every reset with an id below n.
func (s *rsim) knowsResetsBefore(k knowledge, n int) bool {
	for id := range n {
		if _, ok := k.resets[id]; !ok {
			return false
		}
	}
	return true
}

// maxFold is the highest generation replica r may fold up to under Fold's
// precondition. Without its second half (every reset made before the cut),
// TestPropRetireMatchesModel fails within a few thousand cases: folded
// floors are summed per state, and two states' sums built from different
// resets merge by maximum below the per-node maxima
// (TestFoldNeedsEveryResetBeforeTheCut spells one case out).
func (s *rsim) maxFold(r int) uint64 {
	// A state that folded ids none of which it held a slot of is at
	// generation 0 (Counter.Gen); its knowledge has only grown since, so
	// counting again from its Gen gets as far.
	g := s.reps[r].Gen()
	for g < uint64(len(s.retired)) && s.knowsAllIncs(s.know[r], s.retired[g]) && s.knowsResetsBefore(s.know[r], s.cut[g]) {
		g++
	}
	return g
}

// mergeInto merges a state and its knowledge into replica r.
func (s *rsim) mergeInto(t *rapid.T, r int, c crdt.Counter, k knowledge, what string) {
	arg := c.Clone()
	if err := s.reps[r].MergeRetired(c, s.retired); err != nil {
		t.Fatalf("%s: MergeRetired: %v", what, err)
	}
	if !c.Equal(arg) {
		t.Fatalf("%s: MergeRetired modified its argument: %s became %s", what, describe(arg), describe(c))
	}
	s.know[r].union(k)
}

func (s *rsim) step(t *rapid.T, o rop) {
	n := len(s.reps)
	switch o.Kind {
	case ropNop:
		return
	case ropAdd:
		r := s.liveIndex(o.R)
		node := s.ids[r]
		got, err := s.reps[r].Add(node, o.Amount)
		if err != nil {
			t.Fatalf("Add(%d): %v", o.Amount, err)
		}
		id := len(s.h.incs)
		s.h.incs = append(s.h.incs, incEvent{node: node, by: o.Amount})
		s.know[r].incs[id] = struct{}{}
		if want := clamp(s.h.value(s.know[r])); got != want {
			t.Fatalf("Add(%d) returned %d, model %d", o.Amount, got, want)
		}
		s.check(t, r)
	case ropReset:
		r := s.liveIndex(o.R)
		k := s.know[r]
		ev := resetEvent{epoch: s.h.nextEpoch(k), node: s.ids[r], value: o.Amount, deleted: o.Deleted, observed: k.incs.clone()}
		rec := s.reps[r].SetReset(s.ids[r], o.Amount, o.Deleted)
		if rec.Epoch != ev.epoch {
			t.Fatalf("SetReset epoch %d, model %d", rec.Epoch, ev.epoch)
		}
		k.resets[len(s.h.resets)] = struct{}{}
		s.h.resets = append(s.h.resets, ev)
		s.check(t, r)
	case ropMerge:
		r, src := s.liveIndex(o.R), s.liveIndex(o.S)
		s.mergeInto(t, r, s.reps[src], s.know[src], fmt.Sprintf("merge r%d <- r%d", r, src))
		s.check(t, r)
	case ropSend:
		src := s.liveIndex(o.S)
		s.send(t, src, o.Full, o.WithReset, o.Nodes)
		return
	case ropDeliver:
		if len(s.pool) == 0 {
			return
		}
		r := s.liveIndex(o.R)
		m := s.pool[o.Msg%len(s.pool)]
		s.mergeInto(t, r, m.c, m.k, fmt.Sprintf("deliver to r%d", r))
		s.check(t, r)
	case ropLeave:
		r := o.R % n
		l := s.live()
		if s.left[r] || len(l) < 2 || s.ids[r] == 0 {
			return // node 0 never leaves: a retired list may not name it
		}
		// Messages of the departing node stay pooled: its last state and a
		// delta of its own slot may arrive anywhere, late.
		s.send(t, r, true, false, 0)
		s.send(t, r, false, rapid.Bool().Draw(t, "leave withReset"), 1<<r)
		heir := l[(slices.Index(l, r)+1)%len(l)]
		s.mergeInto(t, heir, s.reps[r], s.know[r], fmt.Sprintf("hand-off r%d -> r%d", r, heir))
		s.left[r] = true
		s.check(t, heir)
	case ropRetire:
		r := o.R % n
		if o.Full && s.left[r] && !s.isRetired(s.ids[r]) {
			// The cluster's forget step: a replica that holds the node's
			// final slot sends it (and nothing else) to every live replica.
			for _, h := range s.live() {
				if s.knowsAllIncs(s.know[h], s.ids[r]) {
					s.send(t, h, false, false, 1<<r)
					m := s.pool[len(s.pool)-1]
					for _, l := range s.live() {
						s.mergeInto(t, l, m.c, m.k, fmt.Sprintf("spread r%d's slot to r%d", r, l))
						s.check(t, l)
					}
					break
				}
			}
		}
		s.retire(r)
		return
	case ropFold:
		r := s.liveIndex(o.R)
		cur, top := s.reps[r].Gen(), s.maxFold(r)
		gen := top
		if o.Gen >= 0 {
			gen = cur + uint64(o.Gen)%(top-cur+1)
		}
		want := gen
		if cur == 0 && !slices.ContainsFunc(s.reps[r].Slots, func(sl crdt.Slot) bool { return s.folded(gen, sl.Node) }) {
			want = 0 // nothing to fold: no retired slot is made
		}
		before := s.reps[r].Value()
		if err := s.reps[r].Fold(s.retired, gen); err != nil {
			t.Fatalf("Fold(%d) of r%d at generation %d: %v", gen, r, cur, err)
		}
		if got := s.reps[r].Gen(); got != want {
			t.Fatalf("Fold(%d) from generation %d left generation %d, want %d\nstate %s", gen, cur, got, want, describe(s.reps[r]))
		}
		if after := s.reps[r].Value(); after != before {
			t.Fatalf("Fold(%d) changed the value from %d to %d", gen, before, after)
		}
		s.check(t, r)
	case ropSync:
		s.syncAll(t)
		return
	}
}

// send pools replica src's full state, or a delta of the nodes the bits
// select.
func (s *rsim) send(t *rapid.T, src int, full, withReset bool, bits uint8) {
	var m message
	if full {
		m = message{c: s.reps[src].Clone(), k: s.know[src].clone()}
	} else {
		var nodes []crdt.NodeID
		for i, id := range s.ids {
			if bits&(1<<i) != 0 {
				nodes = append(nodes, id)
			}
		}
		c := s.reps[src]
		// The delta carries the retired slot: the model learns every
		// increment of the nodes folded at the state's generation.
		m = message{
			c: c.Delta(withReset, nodes...),
			k: s.h.delta(s.know[src], withReset, append(nodes, s.retired[:c.Gen()]...)),
		}
	}
	s.pool = append(s.pool, m)
	s.checkState(t, fmt.Sprintf("message %d", len(s.pool)-1), m.c, m.k)
}

// retire appends the departed node of replica r to the retired list when the
// cluster would: every live replica holds all its increments.
func (s *rsim) retire(r int) bool {
	id := s.ids[r]
	if !s.left[r] || s.isRetired(id) {
		return false
	}
	for _, l := range s.live() {
		if !s.knowsAllIncs(s.know[l], id) {
			return false
		}
	}
	s.retired = append(s.retired, id)
	s.cut = append(s.cut, len(s.h.resets))
	return true
}

func (s *rsim) syncAll(t *rapid.T) {
	l := s.live()
	for _, i := range l[1:] {
		s.step(t, rop{Kind: ropMerge, R: slices.Index(l, l[0]), S: slices.Index(l, i)})
	}
	for _, i := range l[1:] {
		s.step(t, rop{Kind: ropMerge, R: slices.Index(l, i), S: slices.Index(l, l[0])})
	}
}

func (s *rsim) check(t *rapid.T, r int) {
	s.checkState(t, fmt.Sprintf("replica %d", r), s.reps[r], s.know[r])
}

// checkState compares a state with the model of what it knows: value, Live,
// every unfolded node's slot, and the retired slot against the sums of the
// folded nodes' known increments.
func (s *rsim) checkState(t *rapid.T, what string, c crdt.Counter, k knowledge) {
	t.Helper()
	if len(s.states) == 0 || !s.states[len(s.states)-1].Equal(c) {
		s.states = append(s.states, c.Clone())
	}
	checkInvariants(t, c)
	if err := c.ValidateRetired(crdt.Limits{}, s.retired); err != nil {
		t.Fatalf("%s: ValidateRetired: %v\nstate %s", what, err, describe(c))
	}
	if got, want := c.Value(), clamp(s.h.value(k)); got != want {
		t.Fatalf("%s: Value() = %d, model %d (exact %v)\nretired %v\nstate %s", what, got, want, s.h.value(k), s.retired, describe(c))
	}
	if got, want := c.Live(), s.h.live(k); got != want {
		t.Fatalf("%s: Live() = %v, model %v\nstate %s", what, got, want, describe(c))
	}
	gen := c.Gen()
	sumP, sumN := new(big.Int), new(big.Int)
	anyFolded := false
	for _, id := range s.ids {
		p, n := s.h.totals(k, id)
		if s.folded(gen, id) {
			if slices.ContainsFunc(c.Slots, func(sl crdt.Slot) bool { return sl.Node == id }) {
				t.Fatalf("%s: slot of node %d, folded at generation %d\nstate %s", what, id, gen, describe(c))
			}
			sumP.Add(sumP, p)
			sumN.Add(sumN, n)
			anyFolded = anyFolded || s.hasIncs(k, id)
			continue
		}
		sl := c.Slot(id)
		if new(big.Int).SetUint64(sl.P).Cmp(p) != 0 || new(big.Int).SetUint64(sl.N).Cmp(n) != 0 {
			t.Fatalf("%s: Slot(%d) = %+v, model P=%v N=%v\nstate %s", what, id, sl, p, n, describe(c))
		}
	}
	if hasRetired := gen > 0; hasRetired != anyFolded {
		t.Fatalf("%s: retired slot present %v, folded nodes with increments %v\nstate %s", what, hasRetired, anyFolded, describe(c))
	}
	if gen > uint64(len(s.retired)) {
		t.Fatalf("%s: generation %d beyond the %d retired ids\nstate %s", what, gen, len(s.retired), describe(c))
	}
	if gen > 0 {
		rs := c.Slot(crdt.RetiredID(gen))
		if new(big.Int).SetUint64(rs.P).Cmp(sumP) != 0 || new(big.Int).SetUint64(rs.N).Cmp(sumN) != 0 {
			t.Fatalf("%s: retired slot %+v, model sums P=%v N=%v\nstate %s", what, rs, sumP, sumN, describe(c))
		}
	}
	for _, sl := range c.Slots {
		if sl.Node != crdt.RetiredID(gen) && !slices.Contains(s.ids, sl.Node) {
			t.Fatalf("%s: slot of unknown node %d\nstate %s", what, sl.Node, describe(c))
		}
	}
}

func (s *rsim) hasIncs(k knowledge, node crdt.NodeID) bool {
	for id := range k.incs {
		if s.h.incs[id].node == node {
			return true
		}
	}
	return false
}

func drawRops(t *rapid.T, maxOps int, label string) []rop {
	weights, sparse := mixedOps, rapid.Bool().Draw(t, label+" sparse")
	if sparse {
		weights = sparseOps
	}
	lo := 0
	if rapid.Bool().Draw(t, label+" long") {
		lo = maxOps / 2
	}
	n := rapid.IntRange(lo, maxOps).Draw(t, label+" length")
	ops := rapid.SliceOfN(ropGen(weights, sparse), n, n).Draw(t, label)
	var effective []rop
	for _, o := range ops {
		if o.Kind != ropNop {
			effective = append(effective, o)
		}
	}
	t.Logf("%s without nops: %#v", label, effective)
	return ops
}

// runToEnd runs a random history, then delivers every pooled message
// everywhere, exchanges states, retires every departed node and lets some
// replicas fold while others stay behind. It returns the simulation with
// the live replicas not yet converged.
func runToEnd(t *rapid.T) *rsim {
	s := drawRsim(t)
	for _, o := range drawRops(t, 80, "ops") {
		s.step(t, o)
	}
	// Replicas that fold as far as they may before the messages in flight
	// reach them.
	for i := range s.live() {
		if rapid.Bool().Draw(t, fmt.Sprintf("live %d folds before delivery", i)) {
			s.step(t, rop{Kind: ropFold, R: i, Gen: -1})
		}
	}
	var deliveries []rop
	for m := range s.pool {
		for r := range s.live() {
			deliveries = append(deliveries, rop{Kind: ropDeliver, R: r, Msg: m})
		}
	}
	for _, o := range rapid.Permutation(deliveries).Draw(t, "final deliveries") {
		s.step(t, o)
	}
	s.syncAll(t)
	order := rapid.Permutation(s.ids).Draw(t, "retire order")
	for _, id := range order {
		r := slices.Index(s.ids, id)
		if s.left[r] && !s.isRetired(id) && !s.retire(r) {
			t.Fatalf("node %d cannot be retired after a full exchange", id)
		}
	}
	for _, r := range s.live() {
		if rapid.Bool().Draw(t, fmt.Sprintf("r%d folds early", r)) {
			s.step(t, rop{Kind: ropFold, R: slices.Index(s.live(), r), Gen: rapid.IntRange(0, 7).Draw(t, "gen")})
		}
	}
	return s
}

// Every replica agrees with the model after every step, whether it folds
// early, late or never, and whatever stale messages of departed nodes it
// receives after folding them. After a full exchange in a random order the
// live replicas converge; folded up to the whole list, a state holds one
// retired slot (when a departed node wrote) and the slots of the live
// writers only; stale messages delivered again change nothing.
func TestPropRetireMatchesModel(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) {
		s := runToEnd(t)
		live := s.live()

		// Pairwise merges in a random order, then a full exchange.
		pairs := rapid.SliceOfN(rapid.Custom(func(t *rapid.T) rop {
			return rop{Kind: ropMerge, R: rapid.IntRange(0, 5).Draw(t, "r"), S: rapid.IntRange(0, 5).Draw(t, "s")}
		}), 0, 10).Draw(t, "pairwise merges")
		for _, o := range pairs {
			s.step(t, o)
		}
		s.syncAll(t)
		for _, r := range live[1:] {
			if !s.reps[r].Equal(s.reps[live[0]]) {
				t.Fatalf("replica %d did not converge with replica %d:\n%s\n%s", r, live[0], describe(s.reps[r]), describe(s.reps[live[0]]))
			}
		}

		all := uint64(len(s.retired))
		for _, r := range live {
			if err := s.reps[r].Fold(s.retired, all); err != nil {
				t.Fatalf("Fold(%d) of r%d: %v", all, r, err)
			}
			s.check(t, r)
			c := s.reps[r]
			var want []crdt.NodeID
			if slices.ContainsFunc(s.retired, func(id crdt.NodeID) bool { return s.hasIncs(s.know[r], id) }) {
				want = append(want, crdt.RetiredID(all))
				if c.Gen() != all {
					t.Fatalf("replica %d folded up to %d is at generation %d: %s", r, all, c.Gen(), describe(c))
				}
			} else if c.Gen() != 0 {
				t.Fatalf("replica %d folded up to %d without a departed writer's increments is at generation %d: %s", r, all, c.Gen(), describe(c))
			}
			for _, l := range live {
				if s.hasIncs(s.know[r], s.ids[l]) {
					want = append(want, s.ids[l])
				}
			}
			slices.Sort(want)
			var got []crdt.NodeID
			for _, sl := range c.Slots {
				got = append(got, sl.Node)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("replica %d folded up to %d holds slots of %v, want %v (retired %v)", r, all, got, want, s.retired)
			}
		}

		// Every message again, stale now: nothing changes.
		for m := range s.pool {
			r := live[rapid.IntRange(0, len(live)-1).Draw(t, "stale to")]
			before := s.reps[r].Clone()
			s.step(t, rop{Kind: ropDeliver, R: slices.Index(live, r), Msg: m})
			if !s.reps[r].Equal(before) {
				t.Fatalf("stale message %d changed replica %d:\n%s\nbecame\n%s", m, r, describe(before), describe(s.reps[r]))
			}
		}
	})
}

// pickState draws a copy of one of states.
func pickState(t *rapid.T, states []crdt.Counter, label string) crdt.Counter {
	return states[rapid.IntRange(0, len(states)-1).Draw(t, label)].Clone()
}

func mergedRetired(t *rapid.T, a, b crdt.Counter, retired []crdt.NodeID) crdt.Counter {
	t.Helper()
	out := a.Clone()
	if err := out.MergeRetired(b, retired); err != nil {
		t.Fatalf("MergeRetired: %v\n%s\n%s", err, describe(a), describe(b))
	}
	return out
}

// MergeRetired is commutative, associative and idempotent over the states of
// one history at mixed generations (messages included), and the merge of
// two states reads what the merge of their normalised forms reads.
func TestPropMergeRetiredLaws(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) {
		s := runToEnd(t)
		ret := s.retired
		pick := func(label string) crdt.Counter { return pickState(t, s.states, label) }
		a, b, c := pick("a"), pick("b"), pick("c")
		t.Logf("generations %d %d %d of %d", a.Gen(), b.Gen(), c.Gen(), len(ret))
		a0 := a.Clone()
		requireEqual(t, "a⊔b != b⊔a", mergedRetired(t, a, b, ret), mergedRetired(t, b, a, ret))
		requireEqual(t, "MergeRetired modified its receiver's source", a, a0)
		requireEqual(t, "(a⊔b)⊔c != a⊔(b⊔c)",
			mergedRetired(t, mergedRetired(t, a, b, ret), c, ret), mergedRetired(t, a, mergedRetired(t, b, c, ret), ret))
		requireEqual(t, "a⊔a != a", mergedRetired(t, a, a, ret), a)
		ab := mergedRetired(t, a, b, ret)
		if got, want := ab.Gen(), max(a.Gen(), b.Gen()); got != want {
			t.Fatalf("a⊔b at generation %d, want %d (the higher side's)\n%s", got, want, describe(ab))
		}
		requireEqual(t, "(a⊔b)⊔b != a⊔b", mergedRetired(t, ab, b, ret), ab)
		requireEqual(t, "(a⊔b)⊔a != a⊔b", mergedRetired(t, ab, a, ret), ab)
		if err := ab.ValidateRetired(crdt.Limits{}, ret); err != nil {
			t.Fatalf("a⊔b does not validate: %v", err)
		}
	})
}

// plainCopy is what every codec keeps of a state: its slots and its reset,
// copied field by field into a fresh Counter.
func plainCopy(c crdt.Counter) crdt.Counter {
	out := crdt.Counter{Slots: make([]crdt.Slot, 0, len(c.Slots))}
	for _, s := range c.Slots {
		out.Slots = append(out.Slots, crdt.Slot{Node: s.Node, P: s.P, N: s.N})
	}
	if r := c.Reset; r != nil {
		out.Reset = &crdt.Reset{Epoch: r.Epoch, Node: r.Node, Value: r.Value, Deleted: r.Deleted, Floor: slices.Clone(r.Floor)}
	}
	return out
}

// The retired generation travels with the slots: a state rebuilt from its
// slots and reset alone (as every codec carries them), or through JSON, is
// at the same generation, validates against the list as the original does,
// and merges across generations (MergeRetired, either side copied) exactly
// as the original.
func TestPropRetiredGenTravelsWithTheSlots(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) {
		s := runToEnd(t)
		ret := s.retired
		pick := func(label string) crdt.Counter { return pickState(t, s.states, label) }
		a, b := pick("a"), pick("b")
		fromJSON := func(c crdt.Counter) crdt.Counter {
			data, err := json.Marshal(c)
			if err != nil {
				t.Fatalf("json.Marshal: %v", err)
			}
			var out crdt.Counter
			if err := json.Unmarshal(data, &out); err != nil {
				t.Fatalf("json.Unmarshal(%s): %v", data, err)
			}
			return out
		}
		for name, cp := range map[string]func(crdt.Counter) crdt.Counter{"plain copy": plainCopy, "JSON": fromJSON} {
			ca, cb := cp(a), cp(b)
			if ca.Gen() != a.Gen() || !ca.Equal(a) {
				t.Fatalf("%s: generation %d, state %s; the original is at %d, %s", name, ca.Gen(), describe(ca), a.Gen(), describe(a))
			}
			if (ca.ValidateRetired(crdt.Limits{}, ret) == nil) != (a.ValidateRetired(crdt.Limits{}, ret) == nil) {
				t.Fatalf("%s: ValidateRetired %v, the original %v", name, ca.ValidateRetired(crdt.Limits{}, ret), a.ValidateRetired(crdt.Limits{}, ret))
			}
			want := mergedRetired(t, a, b, ret)
			requireEqual(t, name+": copy(a)⊔copy(b) != a⊔b", mergedRetired(t, ca, cb, ret), want)
			requireEqual(t, name+": copy(a)⊔b != a⊔b", mergedRetired(t, ca, b, ret), want)
			requireEqual(t, name+": a⊔copy(b) != a⊔b", mergedRetired(t, a, cb, ret), want)
			requireEqual(t, name+": copy(b)⊔copy(a) != a⊔b", mergedRetired(t, cb, ca, ret), want)
			if got := cp(want); got.Gen() != want.Gen() {
				t.Fatalf("%s of a⊔b at generation %d, a⊔b at %d", name, got.Gen(), want.Gen())
			}
		}
	})
}
