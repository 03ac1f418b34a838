package chaos

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// The names of the checks, in the order of Report.Verdicts.
const (
	CheckReads        = "reads"
	CheckFinal        = "final"
	CheckIDs          = "ids"
	CheckBounds       = "bounds"
	CheckLinearizable = "linearizable"
	CheckWindows      = "windows"
	CheckRateLimit    = "ratelimit"
)

// failurePriority is the order in which a failing check is chosen for
// Report.Failure: the most specific first.
var failurePriority = []string{CheckIDs, CheckBounds, CheckLinearizable, CheckRateLimit, CheckWindows, CheckReads, CheckFinal}

// maxSlice caps a failure's slice at its most recent ops.
const maxSlice = 40

// linTimeout bounds porcupine per key.
const linTimeout = 10 * time.Second

// shrinkBudget bounds the search for a small slice of a history that is
// not linearizable; past it the slice is the key's whole history.
const shrinkBudget = 30 * time.Second

// Verdict is the result of one check.
type Verdict struct {
	Name string
	// OK: no violation found. A check that could not decide (Unknown)
	// is OK too.
	OK bool
	// Unknown: the check could not decide (porcupine timed out).
	Unknown bool
	// Checked is how many items the check looked at, so that a check
	// that saw nothing is visible.
	Checked int
	Detail  string
}

// Report is the verdict of every check on one history.
type Report struct {
	Seed     uint64
	Verdicts []Verdict
	// Failure is the evidence of one failing check (see the order in the
	// package's checker doc), nil when all hold.
	Failure      *Failure
	FaultsByKind map[FaultKind]int
	OpsByOutcome map[Outcome]int
}

// Failure is the evidence of a failing check.
type Failure struct {
	Check string
	Seed  uint64
	Why   string
	// Slice is the smallest history slice that shows the violation, in
	// invoke order, at most the 40 most recent ops.
	Slice []Op
	// Faults are the faults active during the slice.
	Faults []Fault
	// Finals holds the final value of the key per node, for the checks
	// on final values (final, ids, bounds, windows); nil otherwise.
	Finals map[string]int64
	// Start is the invoke time of the history's first op: String shows
	// times relative to it.
	Start time.Time
}

// OK reports whether every check held.
func (r Report) OK() bool {
	for _, v := range r.Verdicts {
		if !v.OK {
			return false
		}
	}
	return r.Failure == nil
}

// Summary is one line: the seed, the faults by kind, the ops by outcome
// and each check's verdict (ok, FAIL, unknown, or none when it saw
// nothing).
func (r Report) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "chaos: seed=%d faults:", r.Seed)
	if len(r.FaultsByKind) == 0 {
		b.WriteString(" none")
	}
	for _, k := range slices.Sorted(maps.Keys(r.FaultsByKind)) {
		fmt.Fprintf(&b, " %s=%d", k, r.FaultsByKind[k])
	}
	fmt.Fprintf(&b, " ops: ok=%d fail=%d unknown=%d", r.OpsByOutcome[OK], r.OpsByOutcome[Fail], r.OpsByOutcome[Unknown])
	for o, n := range r.OpsByOutcome {
		if o != OK && o != Fail && o != Unknown && n > 0 {
			fmt.Fprintf(&b, " outcome%d=%d", o, n)
		}
	}
	b.WriteString(" checks:")
	for _, v := range r.Verdicts {
		word := "ok"
		switch {
		case !v.OK:
			word = "FAIL"
		case v.Unknown:
			word = "unknown"
		case v.Checked == 0:
			word = "none"
		}
		fmt.Fprintf(&b, " %s=%s", v.Name, word)
	}
	return b.String()
}

// String is the summary, each check's detail, and on a failure the seed,
// the reason, the faults active and the slice, one op per line.
func (r Report) String() string {
	var b strings.Builder
	b.WriteString(r.Summary())
	for _, v := range r.Verdicts {
		fmt.Fprintf(&b, "\n  %s: checked %d: %s", v.Name, v.Checked, v.Detail)
	}
	f := r.Failure
	if f == nil {
		return b.String()
	}
	fmt.Fprintf(&b, "\nFAIL %s seed=%d: %s", f.Check, f.Seed, f.Why)
	t0 := f.Start
	for _, fl := range f.Faults {
		fmt.Fprintf(&b, "\n  fault %s", faultLine(fl, t0))
	}
	for _, n := range slices.Sorted(maps.Keys(f.Finals)) {
		fmt.Fprintf(&b, "\n  final %s=%d", n, f.Finals[n])
	}
	for _, op := range f.Slice {
		fmt.Fprintf(&b, "\n  %s", opLine(op, t0))
	}
	return b.String()
}

func rel(t, t0 time.Time) string {
	return fmt.Sprintf("%+.6fs", t.Sub(t0).Seconds())
}

func faultLine(f Fault, t0 time.Time) string {
	end := "never"
	if !f.End.IsZero() {
		end = rel(f.End, t0)
	}
	s := fmt.Sprintf("%s %s..%s", f.Kind, rel(f.Start, t0), end)
	if len(f.Nodes) > 0 {
		s += fmt.Sprintf(" nodes=%v", f.Nodes)
	}
	if len(f.Groups) > 0 {
		s += fmt.Sprintf(" groups=%v", f.Groups)
	}
	if f.Skew != 0 {
		s += fmt.Sprintf(" skew=%v", f.Skew)
	}
	return s
}

func opLine(op Op, t0 time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s..%s client=%d node=%s %s %s/%s", rel(op.Invoke, t0), rel(op.Complete, t0), op.Client, op.Node, op.Kind, op.NS, op.Key)
	switch op.Kind {
	case Incr:
		fmt.Fprintf(&b, " by=%+d", op.By)
		if op.ID != "" {
			fmt.Fprintf(&b, " id=%s", op.ID)
		}
	case RateLimit:
		fmt.Fprintf(&b, " limit=%d window=%v cost=%d", op.Limit, op.Window, op.Cost)
	}
	if op.Consistency != "" {
		fmt.Fprintf(&b, " %s", op.Consistency)
	}
	fmt.Fprintf(&b, " -> %s", op.Outcome)
	if op.Outcome == OK {
		switch op.Kind {
		case RateLimit:
			fmt.Fprintf(&b, " allowed=%v", op.Allowed)
		default:
			fmt.Fprintf(&b, " value=%d", op.Value)
		}
	}
	if op.Duplicate {
		b.WriteString(" duplicate")
	}
	if op.Error != "" {
		fmt.Fprintf(&b, " (%d %s)", op.Status, op.Error)
	}
	return b.String()
}

// group is one logical increment: an Incr without ID, or every attempt of
// one (ns, key, ID).
type group struct {
	id       string
	by       int64
	attempts []int // indices into h.Ops, in invoke order
	first    time.Time
	acked    bool
	possible bool
}

// checker holds what the checks share.
type checker struct {
	h   *History
	cut map[string][]span // per node, when it could send to no one (cutOff)
	eff []Outcome         // the outcome of each op after the wipe exception
	// groups by key, in order of first invoke.
	groups map[string][]*group
	// ops holds the indices of each key's ops, in invoke order.
	ops      map[string][]int
	incrKeys []string  // every key an Incr touched, sorted
	t0       time.Time // the invoke time of the first op
	fail     map[string]*Failure
}

func opKey(op Op) string { return op.NS + "/" + op.Key }

func strong(consistency string) bool { return consistency == "quorum" || consistency == "all" }

// Check reads a whole history and returns the verdict of every check.
//
// Words used below. An op's key is "ns/key". An Incr op is "acked" when its
// Outcome is OK, "possible" when it is OK or Unknown; a Fail changed
// nothing and counts nowhere. Increments with an idempotency ID are one
// logical increment per (ns, key, ID), a "group" whose effect is its By
// (every attempt carries the same By); a group is acked when any attempt
// is, possible when any attempt is, and "invoked" when its first attempt
// was. An Incr without ID is a group of its own. A Duplicate answer with
// Outcome OK acks its group (the node says the ID is already counted).
//
// The wipe exception, applied before every check: an Incr acknowledged by
// node n (Outcome OK, Complete) that n had not been able to pass on for
// h.LossWindow before a Wipe fault of n started is counted as Unknown:
// possible, never required. "Able to pass on" is the time from the ack to
// the wipe less the time n was cut off from every other node (alone on its
// side of a partition of nodes or regions, paused, or killed): a write that
// a region of one acknowledged while cut off stays on its disk alone until
// the partition heals. A strong Read answered by n in that window is no
// evidence for linearizability either: it may show increments the wipe then
// lost (a region of one acknowledges quorum writes that live on its disk
// and in its streams only). Local reads are judged as before (their bounds
// allow it).
//
// Consistency "quorum" and "all" are "strong"; anything else ("local",
// or "" when the client did not record it) is local.
//
// The checks, in the order of Report.Verdicts:
//
//   - reads: every Read with Outcome OK of key k answered v with
//     lower <= v <= upper, where over the possible groups of k
//     upper = (Σ By>0 of groups invoked before the read completed) plus
//     (Σ By<0 of groups that must be visible to the read), and
//     lower = (Σ By>0 of groups that must be visible to the read) plus
//     (Σ By<0 of groups invoked before the read completed).
//     A group must be visible to a read when one of its acked attempts
//     completed before the read was invoked and either both that attempt
//     and the read are strong and went to nodes of one region (a quorum
//     read sees every acked quorum write of its region: quorum is a
//     majority of the node's region, h.Regions) or that attempt was acked
//     by the node the read went to (read-your-writes on one node). A local read at another node need
//     not see a write made elsewhere (replication lag). An id'd group
//     attempted on m distinct nodes may count m times (upper bound; lower
//     for a decrement) until its records must have met (unmetCopies,
//     MeetWindow): each of those nodes may apply it once before it learns
//     of the others, and docs/exact.md says the value may include the
//     duplicate until then; final and ids still require exactly one.
//   - final: for every key any Incr touched, h.Final[node][k] (missing: 0)
//     is the same on every node of h.Nodes, and lies within
//     [A + Σ By<0 of U, A + Σ By>0 of U], A the sum of the acked groups
//     and U the possible groups that were never acked.
//   - ids: only keys whose Incr ops all carry an ID and By = 1 (keys that
//     mix id'd and plain increments are left to final): every node's final
//     value lies within [#groups acked, #groups possible], so no ID was
//     counted twice. And on every key, an attempt answered Duplicate has an
//     earlier-invoked attempt of the same (ns, key, ID) that was OK or
//     Unknown.
//   - bounds: for every namespace of h.Bounds, every OK Read's Value,
//     every OK Incr's Value and every node's Final value of its keys lies
//     within [Min, Max].
//   - linearizable: per key, the strong Incr ops without ID and the strong
//     OK Reads are checked with porcupine against a sequential counter
//     (an increment adds By and returns nothing; a read returns the
//     state). Unknown increments return "infinitely late" (they may take
//     effect any time after their call); Fail ops and non-OK reads are
//     left out. Keys with a non-Fail local or id'd Incr are skipped (not
//     linearizable by design, or not in the model) and counted in Detail,
//     and so are keys whose strong operations went to nodes of several
//     regions (each region's quorum is its own). A porcupine timeout (10 s per key) gives Unknown, not a failure.
//   - windows: for every key of h.FinalSeries, the series total equals
//     the final value of that key at h.Nodes[0] (final checks that the
//     nodes agree).
//   - ratelimit: RateLimit ops with Outcome OK and Allowed, by (ns, key,
//     Window) and fixed window index (epoch-aligned, as the limiter names
//     windows). An op's window is the one of its Complete time; an op whose
//     Invoke falls in an earlier window may have been decided there, so a
//     window fails only when the cost of the ops certainly in it (Invoke
//     and Complete both inside) exceeds Limit × max(1, h.RateLimitSlack)
//     (Cost 0 counts as 1, the API's default; with several limits in one
//     window the largest applies). Detail names the worst window.
//
// On a failure, Report.Failure holds the evidence of one failing check:
// the most specific one first (ids, bounds, linearizable, ratelimit,
// windows, reads, final), because an id counted twice or a stale quorum
// read usually breaks the sums of reads or final too, and the specific
// check names the cause.
func Check(h *History) Report {
	c := newChecker(h)
	r := Report{
		Seed:         h.Seed,
		FaultsByKind: map[FaultKind]int{},
		OpsByOutcome: map[Outcome]int{},
	}
	for _, f := range h.Faults {
		r.FaultsByKind[f.Kind]++
	}
	for _, op := range h.Ops {
		r.OpsByOutcome[op.Outcome]++
	}
	r.Verdicts = []Verdict{c.reads(), c.final(), c.ids(), c.bounds(), c.linearizable(), c.windows(), c.rateLimit()}
	for _, name := range failurePriority {
		if f := c.fail[name]; f != nil {
			r.Failure = f
			break
		}
	}
	return r
}

func newChecker(h *History) *checker {
	c := &checker{h: h, cut: cutOff(h.Faults), eff: make([]Outcome, len(h.Ops)), groups: map[string][]*group{}, ops: map[string][]int{}, fail: map[string]*Failure{}}
	for i, op := range h.Ops {
		if i == 0 || op.Invoke.Before(c.t0) {
			c.t0 = op.Invoke
		}
		c.eff[i] = op.Outcome
		if op.Outcome != OK && op.Outcome != Fail {
			c.eff[i] = Unknown
		}
		if op.Kind == Incr && op.Outcome == OK && c.mayBeLost(op) {
			c.eff[i] = Unknown
		}
	}
	order := make([]int, len(h.Ops))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return h.Ops[a].Invoke.Compare(h.Ops[b].Invoke) })
	byID := map[string]*group{}
	for _, i := range order {
		op := h.Ops[i]
		k := opKey(op)
		c.ops[k] = append(c.ops[k], i)
		if op.Kind != Incr {
			continue
		}
		var g *group
		if op.ID != "" {
			g = byID[k+"\x00"+op.ID]
		}
		if g == nil {
			g = &group{id: op.ID, by: op.By, first: op.Invoke}
			c.groups[k] = append(c.groups[k], g)
			if op.ID != "" {
				byID[k+"\x00"+op.ID] = g
			}
		}
		g.attempts = append(g.attempts, i)
		g.acked = g.acked || c.eff[i] == OK
		g.possible = g.possible || c.eff[i] != Fail
	}
	c.incrKeys = slices.Sorted(maps.Keys(c.groups))
	return c
}

// mayBeLost reports whether an acked op falls under the wipe exception:
// its node was wiped before it had been connected for LossWindow since the
// ack (cutOff).
func (c *checker) mayBeLost(op Op) bool {
	for _, f := range c.h.Faults {
		if f.Kind != Wipe || !slices.Contains(f.Nodes, op.Node) || op.Complete.After(f.Start) {
			continue
		}
		if connectedFor(c.cut[op.Node], op.Complete, f.Start) <= c.h.LossWindow {
			return true
		}
	}
	return false
}

// span is a time interval [from, to).
type span struct{ from, to time.Time }

// cutOff returns, per node, the times it could send nothing to any other
// node, merged and sorted: alone on its side of a partition of nodes or
// regions, paused, or killed (until restarted). A one-way partition leaves
// the node some direction to send in, so it does not count.
func cutOff(faults []Fault) map[string][]span {
	out := map[string][]span{}
	for _, f := range faults {
		end := f.End
		if end.IsZero() {
			end = time.Unix(1<<40, 0) // never healed
		}
		switch f.Kind {
		case PartitionNodes, PartitionRegions:
			for _, g := range f.Groups {
				if len(g) == 1 {
					out[g[0]] = append(out[g[0]], span{f.Start, end})
				}
			}
		case Pause, Kill:
			for _, n := range f.Nodes {
				out[n] = append(out[n], span{f.Start, end})
			}
		}
	}
	for n, ss := range out {
		out[n] = mergeSpans(ss)
	}
	return out
}

// mergeSpans sorts ss and joins the spans that overlap (in place).
func mergeSpans(ss []span) []span {
	if len(ss) == 0 {
		return nil
	}
	slices.SortFunc(ss, func(a, b span) int { return a.from.Compare(b.from) })
	merged := ss[:1]
	for _, s := range ss[1:] {
		last := &merged[len(merged)-1]
		if s.from.After(last.to) {
			merged = append(merged, s)
		} else if s.to.After(last.to) {
			last.to = s.to
		}
	}
	return merged
}

// connectedFor returns how much of [from, to) lies outside the sorted,
// disjoint spans cut: how long a node could pass a change on.
func connectedFor(cut []span, from, to time.Time) time.Duration {
	d := to.Sub(from)
	for _, s := range cut {
		lo, hi := s.from, s.to
		if lo.Before(from) {
			lo = from
		}
		if hi.After(to) {
			hi = to
		}
		if hi.After(lo) {
			d -= hi.Sub(lo)
		}
	}
	return d
}

// sameRegion reports whether two nodes are in one region (a strong read
// sees the strong writes of its own region: quorum is a majority of the
// node's region). Without History.Regions every node is in one region.
func (c *checker) sameRegion(a, b string) bool {
	if c.h.Regions == nil {
		return true
	}
	return c.h.Regions[a] == c.h.Regions[b]
}

// visibleAttempt returns an acked attempt of g that read r must see, or -1.
func (c *checker) visibleAttempt(g *group, r Op) int {
	for _, i := range g.attempts {
		a := c.h.Ops[i]
		if c.eff[i] != OK || !a.Complete.Before(r.Invoke) {
			continue
		}
		if (strong(a.Consistency) && strong(r.Consistency) && c.sameRegion(a.Node, r.Node)) || a.Node == r.Node {
			return i
		}
	}
	return -1
}

// possibleAttempts returns g's attempts that may have been applied and
// were invoked before t.
func (c *checker) possibleAttempts(g *group, t time.Time) []int {
	var out []int
	for _, i := range g.attempts {
		if c.eff[i] != Fail && c.h.Ops[i].Invoke.Before(t) {
			out = append(out, i)
		}
	}
	return out
}

// MeetWindow is how long the records of an increment id applied on two
// nodes take to meet once the nodes can talk (docs/exact.md: until they
// meet, the value may include the duplicate). The stream brings a record
// in 100-300 ms (docs/exact.md); one the stream lost waits for
// anti-entropy, a round a second with one random peer, so 5 s leaves room
// for several rounds. The CI run that showed the window took 380 ms.
const MeetWindow = 5 * time.Second

// unmetCopies returns how many applications of g beyond one read r may
// count: an id'd increment attempted (not refused) on m distinct nodes
// before r completed may be applied once on each of them, and a node
// reading between the applications and the take-back counts every copy
// it holds. They must have met, and the count be one, once every two of
// those nodes and the reader have been able to talk for MeetWindow since
// the last of the attempts completed, before r was invoked.
func (c *checker) unmetCopies(g *group, r Op) int64 {
	if g.id == "" {
		return 0
	}
	var nodes []string
	var last time.Time
	for _, i := range c.possibleAttempts(g, r.Complete) {
		a := c.h.Ops[i]
		if !slices.Contains(nodes, a.Node) {
			nodes = append(nodes, a.Node)
		}
		if a.Complete.After(last) {
			last = a.Complete
		}
	}
	if len(nodes) < 2 {
		return 0
	}
	copies := int64(len(nodes) - 1)
	if !r.Invoke.After(last) {
		return copies
	}
	involved := nodes
	if !slices.Contains(involved, r.Node) {
		involved = append(slices.Clone(nodes), r.Node)
	}
	for i, a := range involved {
		for _, b := range involved[i+1:] {
			if connectedFor(c.apart(a, b), last, r.Invoke) < MeetWindow {
				return copies
			}
		}
	}
	return 0
}

// apart returns the sorted, disjoint times nodes a and b could not talk:
// either was cut off from every node (cutOff), or a partition put them on
// different sides, or a one-way partition stopped one hearing the other.
func (c *checker) apart(a, b string) []span {
	ss := append(slices.Clone(c.cut[a]), c.cut[b]...)
	for _, f := range c.h.Faults {
		end := f.End
		if end.IsZero() {
			end = time.Unix(1<<40, 0)
		}
		switch f.Kind {
		case PartitionNodes, PartitionRegions:
			ga := slices.IndexFunc(f.Groups, func(g []string) bool { return slices.Contains(g, a) })
			gb := slices.IndexFunc(f.Groups, func(g []string) bool { return slices.Contains(g, b) })
			if ga != gb {
				ss = append(ss, span{f.Start, end})
			}
		case PartitionOneWay:
			if len(f.Nodes) > 0 && (f.Nodes[0] == a && slices.Contains(f.Nodes[1:], b) || f.Nodes[0] == b && slices.Contains(f.Nodes[1:], a)) {
				ss = append(ss, span{f.Start, end})
			}
		}
	}
	return mergeSpans(ss)
}

func (c *checker) reads() Verdict {
	v := Verdict{Name: CheckReads, OK: true}
	bad, copies := 0, 0
	for _, k := range slices.Sorted(maps.Keys(c.ops)) {
		for _, ri := range c.ops[k] {
			r := c.h.Ops[ri]
			if r.Kind != Read || r.Outcome != OK {
				continue
			}
			v.Checked++
			var lo, hi int64
			var loX, hiX int64     // of which unmet copies
			var loWhy, hiWhy []int // the attempts that make each bound
			for _, g := range c.groups[k] {
				if !g.possible || !g.first.Before(r.Complete) {
					continue
				}
				vis := c.visibleAttempt(g, r)
				// Copies of an id'd increment applied on other nodes before
				// their records met: the read may count them as well.
				if extra := c.unmetCopies(g, r); extra > 0 {
					if g.by > 0 {
						hiX += extra * g.by
					} else {
						loX += extra * g.by
					}
				}
				if g.by > 0 {
					hi += g.by
					hiWhy = append(hiWhy, c.possibleAttempts(g, r.Complete)...)
					if vis >= 0 {
						lo += g.by
						loWhy = append(loWhy, vis)
					}
				} else {
					lo += g.by
					loWhy = append(loWhy, c.possibleAttempts(g, r.Complete)...)
					if vis >= 0 {
						hi += g.by
						hiWhy = append(hiWhy, vis)
					}
				}
			}
			if lo <= r.Value && r.Value <= hi {
				continue
			}
			lo, hi = lo+loX, hi+hiX
			if lo <= r.Value && r.Value <= hi {
				copies++
				continue
			}
			bad++
			if bad > 1 {
				continue
			}
			why, culprits := "below", loWhy
			if r.Value > hi {
				why, culprits = "above", hiWhy
			}
			v.Detail = fmt.Sprintf("%s read %d at %s (%s), %s [%d, %d]", k, r.Value, r.Node, consistencyOr(r.Consistency), why, lo, hi)
			c.fail[CheckReads] = c.failure(CheckReads, v.Detail, append(culprits, ri), nil)
		}
	}
	if bad > 0 {
		v.OK = false
		v.Detail = fmt.Sprintf("%d reads out of bounds; first: %s", bad, v.Detail)
	} else {
		v.Detail = "every read within [must be visible, attempted]"
		if copies > 0 {
			v.Detail += fmt.Sprintf("; %d of them counted an id's copies on other nodes before the records met", copies)
		}
	}
	return v
}

func consistencyOr(s string) string {
	if s == "" {
		return "local"
	}
	return s
}

// finalOf returns the final value of key k at node n (missing: 0).
func (c *checker) finalOf(n, k string) int64 { return c.h.Final[n][k] }

func (c *checker) finals(k string) map[string]int64 {
	m := map[string]int64{}
	for _, n := range c.h.Nodes {
		m[n] = c.finalOf(n, k)
	}
	return m
}

// attemptsOf returns the attempts of k's groups for which keep holds.
func (c *checker) attemptsOf(k string, keep func(g *group, i int) bool) []int {
	var out []int
	for _, g := range c.groups[k] {
		for _, i := range g.attempts {
			if keep(g, i) {
				out = append(out, i)
			}
		}
	}
	return out
}

func (c *checker) final() Verdict {
	v := Verdict{Name: CheckFinal, OK: true, Detail: "every node agrees, within [acked, acked + unknown]"}
	if len(c.h.Nodes) == 0 {
		v.Detail = "no nodes at the end"
		return v
	}
	bad := 0
	for _, k := range c.incrKeys {
		v.Checked++
		var acked, neg, pos int64
		for _, g := range c.groups[k] {
			switch {
			case g.acked:
				acked += g.by
			case g.possible && g.by < 0:
				neg += g.by
			case g.possible:
				pos += g.by
			}
		}
		lo, hi := acked+neg, acked+pos
		first := c.h.Nodes[0]
		val := c.finalOf(first, k)
		var why string
		var culprits []int
		for _, n := range c.h.Nodes[1:] {
			if w := c.finalOf(n, k); w != val {
				why = fmt.Sprintf("%s diverged: %s=%d, %s=%d", k, first, val, n, w)
				culprits = c.attemptsOf(k, func(_ *group, i int) bool { return c.eff[i] != Fail })
				break
			}
		}
		if why == "" && (val < lo || val > hi) {
			why = fmt.Sprintf("%s final %d outside [%d, %d] (acked %d)", k, val, lo, hi, acked)
			if val < lo {
				// The acked increments and the possible decrements show it.
				culprits = c.attemptsOf(k, func(g *group, i int) bool {
					return (g.acked && g.by > 0 && c.eff[i] == OK) || (g.by < 0 && c.eff[i] != Fail)
				})
			} else {
				culprits = c.attemptsOf(k, func(g *group, i int) bool {
					return (g.by > 0 && c.eff[i] != Fail) || (g.acked && g.by < 0 && c.eff[i] == OK)
				})
			}
		}
		if why == "" {
			continue
		}
		bad++
		if bad == 1 {
			v.Detail = why
			c.fail[CheckFinal] = c.failure(CheckFinal, why, culprits, c.finals(k))
		}
	}
	if bad > 0 {
		v.OK = false
		v.Detail = fmt.Sprintf("%d keys wrong; first: %s", bad, v.Detail)
	}
	return v
}

func (c *checker) ids() Verdict {
	v := Verdict{Name: CheckIDs, OK: true}
	bad, keys, dups := 0, 0, 0
	note := func(why string, culprits []int, finals map[string]int64) {
		bad++
		if bad == 1 {
			v.Detail = why
			c.fail[CheckIDs] = c.failure(CheckIDs, why, culprits, finals)
		}
	}
	for _, k := range c.incrKeys {
		idOnly := true
		var acked, possible int64
		for _, g := range c.groups[k] {
			if g.id == "" || g.by != 1 {
				idOnly = false
			}
			if g.acked {
				acked++
			}
			if g.possible {
				possible++
			}
			// A Duplicate answer needs an earlier attempt that may have
			// counted the ID.
			for j, i := range g.attempts {
				if !c.h.Ops[i].Duplicate {
					continue
				}
				dups++
				earlier := slices.ContainsFunc(g.attempts[:j], func(e int) bool {
					return c.h.Ops[e].Outcome != Fail && c.h.Ops[e].Invoke.Before(c.h.Ops[i].Invoke)
				})
				if !earlier {
					note(fmt.Sprintf("%s id %s answered duplicate with no earlier attempt that may have counted it", k, g.id), g.attempts, nil)
				}
			}
		}
		if !idOnly || len(c.h.Nodes) == 0 {
			continue
		}
		keys++
		for _, n := range c.h.Nodes {
			if val := c.finalOf(n, k); val < acked || val > possible {
				culprits := c.attemptsOf(k, func(_ *group, i int) bool { return c.eff[i] != Fail })
				note(fmt.Sprintf("%s final %d at %s outside [%d ids acked, %d ids attempted]", k, val, n, acked, possible), culprits, c.finals(k))
				break
			}
		}
	}
	v.Checked = keys + dups
	if bad > 0 {
		v.OK = false
		v.Detail = fmt.Sprintf("%d violations; first: %s", bad, v.Detail)
	} else {
		v.Detail = fmt.Sprintf("%d id-only keys counted each id at most once, %d duplicate answers had an earlier attempt", keys, dups)
	}
	return v
}

func (c *checker) bounds() Verdict {
	v := Verdict{Name: CheckBounds, OK: true}
	bad := 0
	outside := func(b Bounds, x int64) bool {
		return (b.Min != nil && x < *b.Min) || (b.Max != nil && x > *b.Max)
	}
	describe := func(b Bounds) string {
		lo, hi := "-inf", "+inf"
		if b.Min != nil {
			lo = fmt.Sprint(*b.Min)
		}
		if b.Max != nil {
			hi = fmt.Sprint(*b.Max)
		}
		return "[" + lo + ", " + hi + "]"
	}
	for _, k := range slices.Sorted(maps.Keys(c.ops)) {
		idx := c.ops[k]
		ns := c.h.Ops[idx[0]].NS
		b, ok := c.h.Bounds[ns]
		if !ok {
			continue
		}
		for _, i := range idx {
			op := c.h.Ops[i]
			if (op.Kind != Read && op.Kind != Incr) || op.Outcome != OK {
				continue
			}
			v.Checked++
			if !outside(b, op.Value) {
				continue
			}
			bad++
			if bad == 1 {
				v.Detail = fmt.Sprintf("%s %s answered %d outside %s", k, op.Kind, op.Value, describe(b))
				// The op that shows it, after the increments that led there.
				culprits := c.attemptsOf(k, func(_ *group, j int) bool {
					return c.eff[j] != Fail && c.h.Ops[j].Invoke.Before(op.Complete)
				})
				c.fail[CheckBounds] = c.failure(CheckBounds, v.Detail, append(culprits, i), nil)
			}
		}
		for _, n := range c.h.Nodes {
			v.Checked++
			if val := c.finalOf(n, k); outside(b, val) {
				bad++
				if bad == 1 {
					v.Detail = fmt.Sprintf("%s final %d at %s outside %s", k, val, n, describe(b))
					culprits := c.attemptsOf(k, func(_ *group, j int) bool { return c.eff[j] != Fail })
					c.fail[CheckBounds] = c.failure(CheckBounds, v.Detail, culprits, c.finals(k))
				}
			}
		}
	}
	if bad > 0 {
		v.OK = false
		v.Detail = fmt.Sprintf("%d values out of bounds; first: %s", bad, v.Detail)
	} else {
		v.Detail = fmt.Sprintf("%d bounded namespaces, every value within its bounds", len(c.h.Bounds))
	}
	return v
}

// linInput is the input of a porcupine operation: an increment by by, or
// a read.
type linInput struct {
	incr bool
	by   int64
}

var counterModel = porcupine.Model{
	Init: func() any { return int64(0) },
	Step: func(state, input, output any) (bool, any) {
		st, in := state.(int64), input.(linInput)
		if in.incr {
			return true, st + in.by
		}
		return output.(int64) == st, st
	},
	DescribeOperation: func(input, output any) string {
		if in := input.(linInput); in.incr {
			return fmt.Sprintf("incr %+d", in.by)
		}
		return fmt.Sprintf("read -> %d", output)
	},
}

func (c *checker) linearizable() Verdict {
	v := Verdict{Name: CheckLinearizable, OK: true}
	t0 := c.t0
	keys, skipped, crossRegion, unknown, bad := 0, 0, 0, 0, 0
	for _, k := range slices.Sorted(maps.Keys(c.ops)) {
		var ops []porcupine.Operation
		skip := false
		region, regions := "", 0
		for _, i := range c.ops[k] {
			op := c.h.Ops[i]
			if strong(op.Consistency) && (op.Kind == Read || c.eff[i] != Fail) {
				if r := c.h.Regions[op.Node]; regions == 0 || r != region {
					if regions > 0 {
						regions = 2
					} else {
						regions = 1
					}
					region = r
				}
			}
			switch {
			case op.Kind == Incr && c.eff[i] == Fail:
			case op.Kind == Incr && (op.ID != "" || !strong(op.Consistency)):
				skip = true
			case op.Kind == Incr:
				ret := int64(op.Complete.Sub(t0))
				if c.eff[i] != OK {
					ret = math.MaxInt64
				}
				ops = append(ops, porcupine.Operation{ClientId: op.Client, Input: linInput{incr: true, by: op.By}, Call: int64(op.Invoke.Sub(t0)), Return: ret, Metadata: i})
			case op.Kind == Read && op.Outcome == OK && strong(op.Consistency) && !c.mayBeLost(op):
				ops = append(ops, porcupine.Operation{ClientId: op.Client, Input: linInput{}, Call: int64(op.Invoke.Sub(t0)), Output: op.Value, Return: int64(op.Complete.Sub(t0)), Metadata: i})
			}
		}
		if skip {
			skipped++
			continue
		}
		if regions > 1 && c.h.Regions != nil {
			// Quorum is a majority of one region: strong operations of
			// one key through nodes of several regions are linearizable
			// only within each, and each region's reads see the other
			// regions' writes eventually, so no single history applies.
			crossRegion++
			continue
		}
		if !slices.ContainsFunc(ops, func(o porcupine.Operation) bool { return !o.Input.(linInput).incr }) {
			continue // no strong read: nothing to contradict
		}
		keys++
		v.Checked += len(ops)
		switch porcupine.CheckOperationsTimeout(counterModel, ops, linTimeout) {
		case porcupine.Unknown:
			unknown++
		case porcupine.Illegal:
			bad++
			if bad == 1 {
				slice := shrinkLin(ops)
				idx := make([]int, len(slice))
				for j, o := range slice {
					idx[j] = o.Metadata.(int)
				}
				v.Detail = fmt.Sprintf("%s: strong increments and reads not linearizable (%d of %d ops show it)", k, len(slice), len(ops))
				c.fail[CheckLinearizable] = c.failure(CheckLinearizable, v.Detail, idx, nil)
			}
		}
	}
	switch {
	case bad > 0:
		v.OK = false
		v.Detail = fmt.Sprintf("%d of %d keys not linearizable; first: %s", bad, keys, v.Detail)
	case unknown > 0:
		v.Unknown = true
		v.Detail = fmt.Sprintf("unknown: porcupine timed out on %d of %d keys (%v each)", unknown, keys, linTimeout)
	default:
		v.Detail = fmt.Sprintf("%d keys linearizable", keys)
	}
	v.Detail += fmt.Sprintf("; %d keys skipped (local or id'd increments), %d with strong operations in several regions (quorum is per region)", skipped, crossRegion)
	return v
}

// shrinkLin returns a small sub-history of the illegal history ops that is
// still illegal and still proves ops illegal: a set of reads and every
// increment called before the last of those reads returned (an increment
// called after every kept read returned can be linearized last, so leaving
// it out changes nothing; leaving out an increment called earlier could
// make a legal history illegal, so they all stay). Removing a read only
// removes a constraint, so a sub-history illegal this way shows the whole
// is.
func shrinkLin(ops []porcupine.Operation) []porcupine.Operation {
	var reads []porcupine.Operation
	for _, o := range ops {
		if !o.Input.(linInput).incr {
			reads = append(reads, o)
		}
	}
	slices.SortFunc(reads, func(a, b porcupine.Operation) int { return cmp.Compare(a.Return, b.Return) })
	build := func(rs []porcupine.Operation) []porcupine.Operation {
		last := rs[len(rs)-1].Return
		out := slices.Clone(rs)
		for _, o := range ops {
			if o.Input.(linInput).incr && o.Call < last {
				out = append(out, o)
			}
		}
		return out
	}
	deadline := time.Now().Add(shrinkBudget)
	illegal := func(rs []porcupine.Operation) bool {
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		return porcupine.CheckOperationsTimeout(counterModel, build(rs), min(left, linTimeout)) == porcupine.Illegal
	}
	// A short illegal prefix of the reads by return time: exponential
	// then binary search (legality is not monotone in the prefix, as a
	// longer prefix brings increments too, so the result is checked).
	hi := 1
	for hi < len(reads) && !illegal(reads[:hi]) {
		hi *= 2
	}
	hi = min(hi, len(reads))
	lo := hi / 2 // reads[:lo] was found legal (or lo is 0)
	for lo+1 < hi {
		mid := (lo + hi) / 2
		if illegal(reads[:mid]) {
			hi = mid
		} else {
			lo = mid
		}
	}
	if !illegal(reads[:hi]) {
		return ops // out of time or not monotone: the whole history shows it
	}
	kept := slices.Clone(reads[:hi])
	// Drop the earlier reads that are not needed (the last one fixes the
	// increments kept).
	for j := len(kept) - 2; j >= 0 && time.Now().Before(deadline); j-- {
		try := slices.Delete(slices.Clone(kept), j, j+1)
		if illegal(try) {
			kept = try
		}
	}
	return build(kept)
}

func (c *checker) windows() Verdict {
	v := Verdict{Name: CheckWindows, OK: true}
	if len(c.h.Nodes) == 0 {
		v.Detail = "no nodes at the end"
		return v
	}
	first := c.h.Nodes[0]
	bad := 0
	for _, k := range slices.Sorted(maps.Keys(c.h.FinalSeries)) {
		v.Checked++
		total, val := c.h.FinalSeries[k], c.finalOf(first, k)
		if total == val {
			continue
		}
		bad++
		if bad == 1 {
			v.Detail = fmt.Sprintf("%s series total %d != final %d at %s", k, total, val, first)
			var culprits []int
			for _, i := range c.ops[k] {
				if c.h.Ops[i].Outcome != Fail && (c.h.Ops[i].Kind == Incr || c.h.Ops[i].Kind == Series) {
					culprits = append(culprits, i)
				}
			}
			c.fail[CheckWindows] = c.failure(CheckWindows, v.Detail, culprits, c.finals(k))
		}
	}
	if bad > 0 {
		v.OK = false
		v.Detail = fmt.Sprintf("%d keys wrong; first: %s", bad, v.Detail)
	} else {
		v.Detail = fmt.Sprintf("%d series totals equal their counters", v.Checked)
	}
	return v
}

func (c *checker) rateLimit() Verdict {
	v := Verdict{Name: CheckRateLimit, OK: true}
	type win struct {
		key    string
		window time.Duration
		index  int64
	}
	type tally struct {
		cost, certain, limit int64
		ops                  []int
	}
	tallies := map[win]*tally{}
	for i, op := range c.h.Ops {
		if op.Kind != RateLimit || op.Outcome != OK || !op.Allowed || op.Window <= 0 {
			continue
		}
		v.Checked++
		w := win{opKey(op), op.Window, op.Complete.UnixNano() / int64(op.Window)}
		t := tallies[w]
		if t == nil {
			t = &tally{}
			tallies[w] = t
		}
		cost := max(op.Cost, 1)
		t.cost += cost
		if op.Invoke.UnixNano()/int64(op.Window) == w.index {
			t.certain += cost
		}
		t.limit = max(t.limit, op.Limit)
		t.ops = append(t.ops, i)
	}
	slack := max(1, c.h.RateLimitSlack)
	var worst win
	worstRatio := -1.0
	for _, w := range slices.SortedFunc(maps.Keys(tallies), func(a, b win) int {
		return cmp.Or(cmp.Compare(a.key, b.key), cmp.Compare(a.window, b.window), cmp.Compare(a.index, b.index))
	}) {
		t := tallies[w]
		if r := float64(t.certain) / float64(max(1, t.limit*slack)); r > worstRatio {
			worst, worstRatio = w, r
		}
	}
	if len(tallies) == 0 {
		v.Detail = "no admitted rate-limit requests"
		return v
	}
	t := tallies[worst]
	bound := t.limit * slack
	v.Detail = fmt.Sprintf("worst window: %s per %v #%d admitted %d (%d certainly in it) of bound %d (limit %d x slack %d)",
		worst.key, worst.window, worst.index, t.cost, t.certain, bound, t.limit, slack)
	if t.certain > bound {
		v.OK = false
		start := time.Unix(0, worst.index*int64(worst.window))
		var culprits []int
		for _, i := range t.ops {
			if !c.h.Ops[i].Invoke.Before(start) {
				culprits = append(culprits, i)
			}
		}
		c.fail[CheckRateLimit] = c.failure(CheckRateLimit, v.Detail, culprits, nil)
	}
	return v
}

// failure builds a Failure from op indices: sorted by invoke, without
// repeats, capped at the most recent maxSlice, with the faults active
// during the slice.
func (c *checker) failure(check, why string, idx []int, finals map[string]int64) *Failure {
	idx = slices.Clone(idx)
	slices.Sort(idx)
	idx = slices.Compact(idx)
	slices.SortStableFunc(idx, func(a, b int) int { return c.h.Ops[a].Invoke.Compare(c.h.Ops[b].Invoke) })
	if len(idx) > maxSlice {
		why += fmt.Sprintf(" (%d earlier ops of the slice left out)", len(idx)-maxSlice)
		idx = idx[len(idx)-maxSlice:]
	}
	f := &Failure{Check: check, Seed: c.h.Seed, Why: why, Finals: finals, Start: c.t0}
	var from, to time.Time
	for j, i := range idx {
		op := c.h.Ops[i]
		f.Slice = append(f.Slice, op)
		if j == 0 || op.Invoke.Before(from) {
			from = op.Invoke
		}
		if op.Complete.After(to) {
			to = op.Complete
		}
	}
	for _, fl := range c.h.Faults {
		if len(idx) == 0 || (fl.Start.Before(to) && (fl.End.IsZero() || fl.End.After(from))) {
			f.Faults = append(f.Faults, fl)
		}
	}
	return f
}
