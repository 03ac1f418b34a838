package chaos

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

var base = time.Unix(1_700_000_000, 0)

func at(ms float64) time.Time { return base.Add(time.Duration(ms * float64(time.Millisecond))) }

func i64p(v int64) *int64 { return &v }

// op builds an Op of key "ns/key" from from to to milliseconds after base.
func op(client int, kind Kind, node, key, cons string, from, to float64, out Outcome) Op {
	ns, k, _ := strings.Cut(key, "/")
	return Op{Client: client, Kind: kind, Node: node, NS: ns, Key: k, Consistency: cons, Invoke: at(from), Complete: at(to), Outcome: out}
}

func incr(client int, node, key, cons string, by int64, from, to float64, out Outcome) Op {
	o := op(client, Incr, node, key, cons, from, to, out)
	o.By = by
	return o
}

func idIncr(client int, node, key, id string, from, to float64, out Outcome, dup bool) Op {
	o := incr(client, node, key, "quorum", 1, from, to, out)
	o.ID, o.Duplicate = id, dup
	return o
}

func read(client int, node, key, cons string, from, to float64, v int64) Op {
	o := op(client, Read, node, key, cons, from, to, OK)
	o.Value = v
	return o
}

func admit(client int, key string, limit int64, window time.Duration, from, to float64) Op {
	o := op(client, RateLimit, "n1", key, "", from, to, OK)
	o.Limit, o.Window, o.Cost, o.Allowed = limit, window, 1, true
	return o
}

// everywhere is a Final with the same values on nodes n1..n3.
func everywhere(kv map[string]int64) map[string]map[string]int64 {
	return map[string]map[string]int64{"n1": kv, "n2": kv, "n3": kv}
}

func hist(ops []Op, final map[string]map[string]int64) *History {
	return &History{Seed: 42, Ops: ops, Nodes: []string{"n1", "n2", "n3"}, Final: final, LossWindow: 50 * time.Millisecond, RateLimitSlack: 1}
}

// simulate builds a valid history: clients run operations with random
// overlap against one sequential counter per key, each operation taking
// effect at a point within its call (an Unknown increment at a point
// within or after it, or never; a Fail never), so that every answer is
// one a correct mesh could give.
func simulate(seed uint64) *History {
	rng := rand.New(rand.NewPCG(seed, 7))
	nodes := []string{"n1", "n2", "n3"}
	h := hist(nil, nil)
	h.Seed = seed
	h.Bounds = map[string]Bounds{"b": {Min: i64p(0), Max: i64p(1000)}}
	const rlWindow = 50 * time.Millisecond
	type pending struct {
		op    Op
		point time.Time // when it takes effect; zero: never
	}
	var ps []pending
	pointIn := func(o Op, out Outcome) time.Time {
		switch out {
		case Fail:
			return time.Time{}
		case Unknown:
			if rng.IntN(2) == 0 {
				return time.Time{}
			}
			return o.Invoke.Add(time.Duration(rng.Int64N(int64(3 * o.Complete.Sub(o.Invoke)))))
		}
		return o.Invoke.Add(time.Duration(rng.Int64N(int64(o.Complete.Sub(o.Invoke)) + 1)))
	}
	outcome := func() Outcome {
		switch r := rng.IntN(10); {
		case r < 7:
			return OK
		case r < 8:
			return Fail
		}
		return Unknown
	}
	ids := 0
	for client := range 5 {
		cursor := 0.0
		for range 40 {
			from := cursor + rng.Float64()*5
			to := from + 1 + rng.Float64()*20
			cursor = to
			node := nodes[rng.IntN(len(nodes))]
			out := outcome()
			strongC := []string{"quorum", "quorum", "all"}[rng.IntN(3)]
			var o Op
			switch rng.IntN(8) {
			case 0:
				o = incr(client, node, "q/a", strongC, 1, from, to, out)
			case 1:
				o = incr(client, node, "q/d", strongC, rng.Int64N(7)-3, from, to, out)
			case 2:
				o = incr(client, node, "local/c", "local", rng.Int64N(6)-2, from, to, out)
			case 3:
				ids++
				id := fmt.Sprintf("c%d-%d", client, ids)
				o = idIncr(client, node, "ids/x", id, from, to, out, false)
				if out != OK { // the client retries at another node
					ps = append(ps, pending{o, pointIn(o, out)})
					from, to = to+1, to+2+rng.Float64()*10
					cursor = to
					out = outcome()
					o = idIncr(client, nodes[rng.IntN(len(nodes))], "ids/x", id, from, to, out, false)
				}
			case 4:
				o = incr(client, node, "b/k", "quorum", 1-2*rng.Int64N(2), from, to, out)
			case 5:
				o = incr(client, node, "w/k", "local", 1, from, to, out)
			case 6:
				o = admit(client, "rl/k", 3, rlWindow, from, to)
			default:
				key := []string{"q/a", "q/d", "local/c", "ids/x", "b/k", "w/k"}[rng.IntN(6)]
				cons := "local"
				if strings.HasPrefix(key, "q/") || key == "b/k" {
					cons = strongC
				}
				o = read(client, node, key, cons, from, to, 0)
				o.Outcome = outcome()
			}
			ps = append(ps, pending{o, pointIn(o, o.Outcome)})
		}
	}
	// Apply in order of the points, as a sequential counter would.
	slices.SortStableFunc(ps, func(a, b pending) int { return a.point.Compare(b.point) })
	state := map[string]int64{}
	applied := map[string]bool{}
	admitted := map[int64]int64{}
	for _, p := range ps {
		o := p.op
		k := opKey(o)
		switch {
		case p.point.IsZero():
		case o.Kind == Read:
			o.Value = state[k]
		case o.Kind == RateLimit:
			w := p.point.UnixNano() / int64(rlWindow)
			o.Allowed = admitted[w]+o.Cost <= o.Limit
			if o.Allowed {
				admitted[w] += o.Cost
			}
		case o.ID != "" && applied[o.ID]:
			o.Duplicate = o.Outcome == OK // an answer says so
			o.Value = state[k]
		case h.Bounds[o.NS].Min != nil && state[k]+o.By < *h.Bounds[o.NS].Min:
			o.Outcome, o.Status, o.Error = Fail, 409, "bound_crossed"
		default:
			state[k] += o.By
			applied[o.ID] = o.ID != ""
			o.Value = state[k]
		}
		h.Ops = append(h.Ops, o)
	}
	// An increment acked just before its node was wiped, lost with it.
	wipe := at(5000)
	lost := incr(9, "n3", "local/c", "local", 5, 4980, 4990, OK)
	h.Ops = append(h.Ops, lost)
	h.Faults = []Fault{
		{Kind: PartitionRegions, Groups: [][]string{{"n1"}, {"n2", "n3"}}, Start: at(10), End: at(60)},
		{Kind: Kill, Nodes: []string{"n2"}, Start: at(70), End: at(90)},
		{Kind: Wipe, Nodes: []string{"n3"}, Start: wipe, End: at(5100)},
	}
	h.Final = everywhere(state)
	h.FinalSeries = map[string]int64{"w/k": state["w/k"]}
	return h
}

func TestCheckAcceptsValidHistories(t *testing.T) {
	for seed := uint64(1); seed <= 12; seed++ {
		h := simulate(seed)
		r := Check(h)
		if !r.OK() {
			t.Fatalf("seed %d: a valid history failed:\n%s", seed, r)
		}
		for _, v := range r.Verdicts {
			if v.Checked == 0 || v.Unknown {
				t.Errorf("seed %d: %s checked %d (unknown %v): %s", seed, v.Name, v.Checked, v.Unknown, v.Detail)
			}
		}
		if got := r.OpsByOutcome[OK] + r.OpsByOutcome[Fail] + r.OpsByOutcome[Unknown]; got != len(h.Ops) {
			t.Errorf("seed %d: ops by outcome add up to %d, want %d", seed, got, len(h.Ops))
		}
		if r.FaultsByKind[Wipe] != 1 || r.FaultsByKind[Kill] != 1 {
			t.Errorf("seed %d: faults by kind %v", seed, r.FaultsByKind)
		}
	}
}

// TestCheckAcceptsEdgeCases holds small histories that are right for a
// reason a careless checker would miss.
func TestCheckAcceptsEdgeCases(t *testing.T) {
	tests := []struct {
		name string
		h    *History
	}{
		{"a local read elsewhere need not see an acked write (replication lag)", hist([]Op{
			incr(0, "n1", "l/k", "local", 1, 0, 10, OK),
			read(1, "n2", "l/k", "local", 20, 30, 0),
		}, everywhere(map[string]int64{"l/k": 1}))},
		{"an unknown increment may count or not", hist([]Op{
			incr(0, "n1", "q/k", "quorum", 1, 0, 10, Unknown),
			read(1, "n2", "q/k", "quorum", 20, 30, 1),
			read(1, "n2", "q/k", "quorum", 40, 50, 1),
		}, everywhere(map[string]int64{"q/k": 1}))},
		{"a failed increment never counts, a concurrent one may", hist([]Op{
			incr(0, "n1", "q/k", "quorum", 1, 0, 10, Fail),
			incr(0, "n1", "q/k", "quorum", 1, 20, 40, OK),
			read(1, "n2", "q/k", "quorum", 25, 30, 1),
		}, everywhere(map[string]int64{"q/k": 1}))},
		{"a write acked just before its node was wiped may be lost", func() *History {
			h := hist([]Op{incr(0, "n3", "l/k", "local", 1, 0, 10, OK)}, everywhere(map[string]int64{"l/k": 0}))
			h.Faults = []Fault{{Kind: Wipe, Nodes: []string{"n3"}, Start: at(40), End: at(100)}}
			return h
		}()},
		{"a write acked by a node cut off until its wipe may be lost, however long the cut lasted", func() *History {
			// Found by a 1,000-cycle campaign (seed 20261203): n19, a region
			// of one, acknowledged quorum writes while partitioned alone,
			// and was wiped 3.04 s later (LossWindow 3 s) without the
			// partition ever healing.
			h := hist([]Op{incr(0, "n3", "q/k", "quorum", 1, 0, 10, OK)}, everywhere(map[string]int64{"q/k": 0}))
			h.Faults = []Fault{
				{Kind: PartitionNodes, Groups: [][]string{{"n3"}, {"n1", "n2"}}, Start: at(5), End: at(100)},
				{Kind: Pause, Nodes: []string{"n3"}, Start: at(100), End: at(150)},
				{Kind: PartitionRegions, Groups: [][]string{{"n1"}, {"n2"}, {"n3"}}, Start: at(150), End: at(235)},
				{Kind: Wipe, Nodes: []string{"n3"}, Start: at(240), End: at(300)},
			}
			return h
		}()},
		{"a strong read by a node wiped just after proves nothing (a region of one lost what it showed)", func() *History {
			h := hist([]Op{
				incr(0, "n3", "q/k", "quorum", 1, 0, 10, OK),
				read(1, "n3", "q/k", "quorum", 12, 14, 1),
				incr(0, "n3", "q/k", "quorum", 1, 100, 110, OK),
				read(1, "n3", "q/k", "quorum", 120, 130, 1),
			}, everywhere(map[string]int64{"q/k": 1}))
			h.Faults = []Fault{{Kind: Wipe, Nodes: []string{"n3"}, Start: at(40), End: at(90)}}
			return h
		}()},
		{"a retried id counted once, the retry answered duplicate", hist([]Op{
			idIncr(0, "n1", "i/k", "x", 0, 10, Unknown, false),
			idIncr(0, "n2", "i/k", "x", 20, 30, OK, true),
		}, everywhere(map[string]int64{"i/k": 1}))},
		{"an id applied on two nodes may read twice until the records meet", hist([]Op{
			// The CI run of seed 1504608422373074219: n2 applied the id and
			// failed its quorum (503: unknown); the retry at n5 applied it
			// too, and n5 read it twice until it took its copy back.
			idIncr(0, "n1", "i/k", "x", 0, 10, Unknown, false),
			idIncr(0, "n2", "i/k", "x", 20, 30, OK, false),
			read(1, "n2", "i/k", "local", 100, 110, 2),
			read(1, "n3", "i/k", "local", 4000, 4010, 2),
		}, everywhere(map[string]int64{"i/k": 1}))},
		{"an id applied on two nodes split by a partition may read twice until it heals and the records meet", func() *History {
			h := hist([]Op{
				idIncr(0, "n1", "i/k", "x", 0, 10, Unknown, false),
				idIncr(0, "n2", "i/k", "x", 20, 30, OK, false),
				read(1, "n3", "i/k", "local", 9000, 9010, 2),
			}, everywhere(map[string]int64{"i/k": 1}))
			h.Faults = []Fault{{Kind: PartitionNodes, Groups: [][]string{{"n1", "n4"}, {"n2", "n3"}}, Start: at(5), End: at(6000)}}
			return h
		}()},
		{"rate-limit admissions straddling a window edge may belong to the previous window", hist([]Op{
			admit(0, "r/k", 1, time.Second, 900, 950),
			admit(1, "r/k", 1, time.Second, 990, 1010),
			admit(2, "r/k", 1, time.Second, 1020, 1030),
		}, nil)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if r := Check(tt.h); !r.OK() {
				t.Fatalf("a valid history failed:\n%s", r)
			}
		})
	}
}

func TestCheckCatchesBrokenHistories(t *testing.T) {
	tests := []struct {
		name    string
		check   string
		h       *History
		culprit int // index in h.Ops of an op the slice must show
	}{
		{"a lost acked write (acknowledged before fsync)", CheckFinal, hist([]Op{
			incr(0, "n1", "q/k", "quorum", 1, 0, 10, OK),
			incr(1, "n2", "q/k", "quorum", 1, 20, 30, OK),
		}, everywhere(map[string]int64{"q/k": 1})), 1},
		{"a write lost to a wipe after its node had been connected for longer than the loss window", CheckFinal, func() *History {
			h := hist([]Op{incr(0, "n3", "q/k", "quorum", 1, 0, 10, OK)}, everywhere(map[string]int64{"q/k": 0}))
			h.Faults = []Fault{
				{Kind: PartitionNodes, Groups: [][]string{{"n3"}, {"n1", "n2"}}, Start: at(5), End: at(100)},
				// Healed from 100 to 200: 100 ms connected, LossWindow 50 ms.
				{Kind: PartitionNodes, Groups: [][]string{{"n3", "n1"}, {"n2"}}, Start: at(200), End: at(240)},
				{Kind: Wipe, Nodes: []string{"n3"}, Start: at(240), End: at(300)},
			}
			return h
		}(), 0},
		{"a diverged node (a dropped delta)", CheckFinal, hist([]Op{
			incr(0, "n1", "q/k", "local", 1, 0, 10, OK),
		}, map[string]map[string]int64{"n1": {"q/k": 1}, "n2": {"q/k": 1}, "n3": {}}), 0},
		{"an id counted twice", CheckIDs, hist([]Op{
			idIncr(0, "n1", "i/k", "x", 0, 10, Unknown, false),
			idIncr(0, "n2", "i/k", "x", 20, 30, OK, false),
			idIncr(1, "n2", "i/k", "y", 20, 30, OK, false),
		}, everywhere(map[string]int64{"i/k": 3})), 1},
		{"a duplicate answer for an id never sent before", CheckIDs, hist([]Op{
			idIncr(0, "n1", "i/k", "x", 0, 10, Fail, false),
			idIncr(0, "n2", "i/k", "x", 20, 30, OK, true),
		}, everywhere(map[string]int64{"i/k": 1})), 1},
		{"a bound crossed (a decrement through without rights)", CheckBounds, func() *History {
			h := hist([]Op{
				incr(0, "n1", "b/k", "quorum", -1, 0, 10, OK),
				read(1, "n2", "b/k", "quorum", 20, 30, -1),
			}, everywhere(map[string]int64{"b/k": -1}))
			h.Ops[0].Value = -1
			h.Bounds = map[string]Bounds{"b": {Min: i64p(0)}}
			return h
		}(), 0},
		{"a stale quorum read", CheckLinearizable, hist([]Op{
			incr(0, "n1", "q/k", "quorum", 1, 0, 100, OK),
			read(1, "n2", "q/k", "quorum", 10, 20, 1),
			read(2, "n3", "q/k", "quorum", 30, 40, 0),
		}, everywhere(map[string]int64{"q/k": 1})), 2},
		{"a window total that differs", CheckWindows, func() *History {
			h := hist([]Op{incr(0, "n1", "w/k", "local", 1, 0, 10, OK)}, everywhere(map[string]int64{"w/k": 1}))
			h.FinalSeries = map[string]int64{"w/k": 2}
			return h
		}(), 0},
		{"a rate limit over its bound", CheckRateLimit, hist([]Op{
			admit(0, "r/k", 2, time.Second, 100, 110),
			admit(1, "r/k", 2, time.Second, 200, 210),
			admit(2, "r/k", 2, time.Second, 300, 310),
		}, nil), 2},
		{"a read above everything attempted", CheckReads, hist([]Op{
			incr(0, "n1", "l/k", "local", 1, 0, 10, OK),
			incr(0, "n1", "l/k", "local", 1, 50, 60, Unknown),
			read(1, "n2", "l/k", "local", 20, 30, 2),
		}, everywhere(map[string]int64{"l/k": 1})), 2},
		{"an id read twice long after its two applications could meet", CheckReads, hist([]Op{
			idIncr(0, "n1", "i/k", "x", 0, 10, Unknown, false),
			idIncr(0, "n2", "i/k", "x", 20, 30, OK, false),
			read(1, "n3", "i/k", "local", 100, 110, 2),
			read(1, "n3", "i/k", "local", 5100, 5110, 2),
		}, everywhere(map[string]int64{"i/k": 1})), 3},
		{"an id read twice on the one node that applied it", CheckReads, hist([]Op{
			idIncr(0, "n1", "i/k", "x", 0, 10, Unknown, false),
			idIncr(0, "n1", "i/k", "x", 20, 30, OK, false),
			read(1, "n1", "i/k", "local", 40, 50, 2),
		}, everywhere(map[string]int64{"i/k": 1})), 2},
		{"a read that misses its own node's acked write", CheckReads, hist([]Op{
			incr(0, "n1", "l/k", "local", 1, 0, 10, OK),
			read(0, "n1", "l/k", "local", 20, 30, 0),
		}, everywhere(map[string]int64{"l/k": 1})), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Check(tt.h)
			if r.OK() {
				t.Fatalf("a broken history passed:\n%s", r)
			}
			i := slices.IndexFunc(r.Verdicts, func(v Verdict) bool { return v.Name == tt.check })
			if i < 0 || r.Verdicts[i].OK {
				t.Errorf("check %s did not fail:\n%s", tt.check, r)
			}
			f := r.Failure
			if f == nil || f.Check != tt.check || f.Seed != tt.h.Seed {
				t.Fatalf("failure %+v, want check %s seed %d:\n%s", f, tt.check, tt.h.Seed, r)
			}
			if !slices.Contains(f.Slice, tt.h.Ops[tt.culprit]) {
				t.Errorf("the slice lacks the culprit op %d:\n%s", tt.culprit, r)
			}
			if len(f.Slice) > len(tt.h.Ops) {
				t.Errorf("the slice has %d ops, the history %d", len(f.Slice), len(tt.h.Ops))
			}
			s := r.String()
			if !strings.Contains(s, "seed=42") || !strings.Contains(s, "FAIL "+tt.check) {
				t.Errorf("String() lacks the seed or the check:\n%s", s)
			}
			assertSummary(t, r)
			if !strings.Contains(r.Summary(), tt.check+"=FAIL") {
				t.Errorf("summary %q does not say %s failed", r.Summary(), tt.check)
			}
		})
	}
}

func assertSummary(t *testing.T, r Report) {
	t.Helper()
	s := r.Summary()
	if strings.Contains(s, "\n") {
		t.Errorf("summary is more than one line: %q", s)
	}
	for _, name := range []string{CheckReads, CheckFinal, CheckIDs, CheckBounds, CheckLinearizable, CheckWindows, CheckRateLimit} {
		if !strings.Contains(s, " "+name+"=") {
			t.Errorf("summary %q does not name %s", s, name)
		}
	}
	if !strings.HasPrefix(s, "chaos: seed=") || !strings.Contains(s, " ops: ok=") {
		t.Errorf("summary %q lacks the seed or the ops", s)
	}
}

func TestSummaryValid(t *testing.T) {
	r := Check(simulate(3))
	assertSummary(t, r)
	for _, want := range []string{"seed=3 ", "partition-regions=1", "kill=1", "wipe=1", "reads=ok", "linearizable=ok", "ratelimit=ok"} {
		if !strings.Contains(r.Summary(), want) {
			t.Errorf("summary %q lacks %q", r.Summary(), want)
		}
	}
	if r.Failure != nil || strings.Contains(r.String(), "FAIL") {
		t.Errorf("a valid history has a failure:\n%s", r)
	}
}

func TestSummaryEmptyHistorySaysNone(t *testing.T) {
	r := Check(hist(nil, nil))
	if !r.OK() {
		t.Fatalf("an empty history failed:\n%s", r)
	}
	if !strings.Contains(r.Summary(), "faults: none") || !strings.Contains(r.Summary(), "reads=none") {
		t.Errorf("summary %q should say that nothing was checked", r.Summary())
	}
}

// TestLinearizableSliceIsSmall hides a stale quorum read at the end of a
// long valid history: the slice must show it with fewer ops than the key
// had, and still be a history porcupine rejects.
func TestLinearizableSliceIsSmall(t *testing.T) {
	for seed := uint64(1); seed <= 4; seed++ {
		h := simulate(seed)
		v := h.Final["n1"]["q/a"]
		stale := read(7, "n2", "q/a", "quorum", 3020, 3030, v-1)
		h.Ops = append(h.Ops, read(7, "n1", "q/a", "quorum", 3000, 3010, v), stale)
		r := Check(h)
		f := r.Failure
		if r.OK() || f == nil || f.Check != CheckLinearizable {
			t.Fatalf("seed %d: the stale read was not reported as not linearizable:\n%s", seed, r)
		}
		keyOps := 0
		for _, o := range h.Ops {
			if opKey(o) == "q/a" && o.Outcome != Fail {
				keyOps++
			}
		}
		if !slices.Contains(f.Slice, stale) || len(f.Slice) >= keyOps || len(f.Slice) > maxSlice {
			t.Errorf("seed %d: slice of %d ops (key had %d) should be smaller and hold the stale read:\n%s", seed, len(f.Slice), keyOps, r)
		}
		var ops []porcupine.Operation
		for _, o := range f.Slice {
			in, ret := linInput{incr: o.Kind == Incr, by: o.By}, int64(o.Complete.Sub(base))
			if o.Outcome != OK {
				ret = math.MaxInt64
			}
			ops = append(ops, porcupine.Operation{Input: in, Call: int64(o.Invoke.Sub(base)), Output: o.Value, Return: ret})
		}
		if porcupine.CheckOperations(counterModel, ops) {
			t.Errorf("seed %d: the slice alone is linearizable, so it shows nothing:\n%s", seed, r)
		}
	}
}

// Quorum is a majority of one region: a quorum read need not see a quorum
// write made in another region (the seed-11 campaign's first "failure"),
// but must see one made in its own.
func TestQuorumIsPerRegion(t *testing.T) {
	ops := []Op{
		incr(0, "n5", "q/k", "quorum", 1, 0, 10, OK),
		read(1, "n3", "q/k", "quorum", 20, 30, 0),
	}
	h := hist(ops, map[string]map[string]int64{"n3": {"q/k": 1}, "n5": {"q/k": 1}})
	h.Nodes = []string{"n3", "n5"}
	h.Regions = map[string]string{"n3": "r2", "n5": "r3"}
	if r := Check(h); !r.OK() {
		t.Fatalf("a quorum read in r2 that missed a quorum write of r3 was reported:\n%s", r)
	}
	h.Regions = map[string]string{"n3": "r2", "n5": "r2"}
	r := Check(h)
	if r.OK() || r.Failure == nil || (r.Failure.Check != CheckLinearizable && r.Failure.Check != CheckReads) {
		t.Fatalf("a quorum read that missed its own region's quorum write was not reported:\n%s", r)
	}
}

func TestHistoryRoundTrip(t *testing.T) {
	h := simulate(3)
	h.Faults = []Fault{{Kind: PartitionNodes, Groups: [][]string{{"n1"}, {"n2", "n3"}}, Start: at(1), End: at(2)}, {Kind: Leave, Nodes: []string{"n3"}, Start: at(3)}}
	var buf strings.Builder
	if err := WriteHistory(&buf, h); err != nil {
		t.Fatal(err)
	}
	got, err := ReadHistory(strings.NewReader(buf.String()))
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Ops) != len(h.Ops) || len(got.Faults) != 2 || got.Seed != h.Seed || !got.Faults[1].End.IsZero() {
		t.Fatalf("read back %d ops, %d faults, seed %d; wrote %d, 2, %d", len(got.Ops), len(got.Faults), got.Seed, len(h.Ops), h.Seed)
	}
	if a, b := Check(h).Summary(), Check(got).Summary(); a != b {
		t.Fatalf("the checker's verdicts differ after a round trip:\n%s\n%s", a, b)
	}
	for _, bad := range []string{"", `{"op":{}}` + "\n", `{"history":{}}` + "\n" + `{}` + "\n", "{"} {
		if _, err := ReadHistory(strings.NewReader(bad)); err == nil {
			t.Errorf("ReadHistory(%q) = nil error", bad)
		}
	}
}

// TestReadsSaysWhenCopiesWereCounted: a run whose reads needed the
// allowance for an id's unmet copies says how many did.
func TestReadsSaysWhenCopiesWereCounted(t *testing.T) {
	h := hist([]Op{
		idIncr(0, "n1", "i/k", "x", 0, 10, Unknown, false),
		idIncr(0, "n2", "i/k", "x", 20, 30, OK, false),
		read(1, "n2", "i/k", "local", 100, 110, 2),
		read(1, "n2", "i/k", "local", 120, 130, 1),
	}, everywhere(map[string]int64{"i/k": 1}))
	r := Check(h)
	i := slices.IndexFunc(r.Verdicts, func(v Verdict) bool { return v.Name == CheckReads })
	if !r.OK() || !strings.Contains(r.Verdicts[i].Detail, "; 1 of them counted an id's copies") {
		t.Fatalf("want reads ok with 1 read counting copies:\n%s", r)
	}
}
