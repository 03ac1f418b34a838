package node

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/countmesh/countmesh/crdt"
	"github.com/countmesh/countmesh/internal/kinderr"
	"github.com/countmesh/countmesh/node/exact"
	"github.com/countmesh/countmesh/node/idem"
	"github.com/countmesh/countmesh/node/keyspace"
	"github.com/countmesh/countmesh/node/nsconfig"
)

// MaxBatchOps bounds the operations of one batch.
const MaxBatchOps = 10_000

// BatchOp is one increment of a batch.
type BatchOp struct {
	NS  string
	Key string
	By  int64
	ID  string
}

// BatchResult is the answer to a batch.
type BatchResult struct {
	Applied    int
	Duplicates int
	Values     []int64 // value after each op, in op order, when asked for
}

// batchOp is a validated op with its place in the hot set.
type batchOp struct {
	ck     string
	rck    string // the op's id record, when it has an id
	stripe int
}

// Batch applies ops atomically with respect to validation: either every op
// is applied, or (bad input, overflow, overload) none is. It returns once the
// changes are as durable as the strictest namespace involved asks.
func (n *Node) Batch(ctx context.Context, ops []BatchOp, consistency string, returnValues bool) (BatchResult, error) {
	if len(ops) > MaxBatchOps {
		return BatchResult{}, fmt.Errorf("%w: a batch holds at most %d ops, got %d; split it", ErrTooLarge, MaxBatchOps, len(ops))
	}
	if err := validateConsistency(consistency); err != nil {
		return BatchResult{}, err
	}
	for i, op := range ops {
		if err := validateWrite(op.NS, op.Key, op.By, WriteOptions{ID: op.ID}); err != nil {
			return BatchResult{}, fmt.Errorf("op %d: %w", i, err)
		}
	}
	if err := n.checkWritable(len(ops)); err != nil {
		return BatchResult{}, err
	}
	if res, done, err := n.batchWithApprox(ctx, ops, consistency, returnValues); done {
		return res, err
	}
	w := writeReq{ops: make([]writeOp, len(ops)), consistency: consistency, values: returnValues, numbered: true}
	for i, op := range ops {
		w.ops[i] = writeOp{BatchOp: op}
	}
	res, err := n.apply(ctx, w)
	if err == nil {
		n.metrics.batches.Inc()
	}
	return res, err
}

// writeOp is one increment on the write path: a batch's op, or Incr's
// increment with its labels and event time.
type writeOp struct {
	BatchOp
	Labels map[string]string
	At     time.Time // the event time, for the window buckets; zero is now
}

// writeReq is what apply applies: validated ops, and how to answer.
type writeReq struct {
	ops         []writeOp
	consistency string
	values      bool // answer the value after each op
	numbered    bool // errors name the op ("op 3: ..."), as a batch's do
}

// opErr names op i in err when the request's errors are numbered.
func (w *writeReq) opErr(i int, err error) error {
	if !w.numbered {
		return err
	}
	return fmt.Errorf("op %d: %w", i, err)
}

// apply is the write path of Incr and Batch: it applies validated ops on
// non-approximate namespaces at most once per id, within their namespaces'
// bounds (collecting rights from peers when this node lacks them), counts
// them in their derived counters (label series, window buckets), waits until
// they are as durable as the strictest namespace asks, and replicates them
// to the nodes their consistency level asks for. Values are clamped to the
// namespace's bounds, as reads are. Either every op is applied or none is.
func (n *Node) apply(ctx context.Context, w writeReq) (BatchResult, error) {
	sync := false
	lastNS := ""
	recs := make(map[string]*namespaceRecord, 1)
	for _, op := range w.ops {
		if op.NS == lastNS {
			continue
		}
		lastNS = op.NS
		if recs[op.NS] != nil {
			continue
		}
		rec, err := n.ns.ForWrite(op.NS)
		if err != nil {
			return BatchResult{}, err
		}
		sync = sync || rec.Config.Durability == DurabilitySync
		recs[op.NS] = rec
	}
	for i, op := range w.ops {
		if err := n.seriesCaps.Reserve(op.NS, op.Key, op.Labels); err != nil {
			return BatchResult{}, w.opErr(i, err)
		}
	}

	// Each attempt may lack rights on one more bounded counter: allow one
	// acquisition per bounded counter, and a few more for rights that move.
	bounded := 0
	for _, op := range w.ops {
		if b := recs[op.NS].Bounds(); b.Exact && b.Any() {
			bounded++
		}
	}
	for attempt := 0; ; attempt++ {
		res, err := n.applyOnce(ctx, w, recs, sync)
		var need *exact.NeedRights
		if !errors.As(err, &need) {
			if err == nil {
				err = n.replicateBatch(ctx, w.ops, w.consistency)
			}
			return res, err
		}
		if attempt == 3+bounded {
			return BatchResult{}, fmt.Errorf("%w: the rights for the bounded counters written moved away while this node was collecting them; retry", ErrUnavailable)
		}
		// Without the ids' locks: the peers' round trips must not hold up
		// other ids (a retry of one of them meanwhile is seen on the next
		// attempt, which checks the ids again).
		if err := n.rights.Acquire(ctx, need.NS, need.Key, need); err != nil {
			return BatchResult{}, err
		}
	}
}

// applyOnce is one attempt of apply.
func (n *Node) applyOnce(ctx context.Context, w writeReq, recs map[string]*namespaceRecord, sync bool) (BatchResult, error) {
	ops := w.ops
	// Ops with ids: each id names one increment, within the batch too.
	idOps := make([]idem.Op, len(w.ops))
	for i, op := range w.ops {
		idOps[i] = idem.Op{NS: op.NS, Key: op.Key, ID: op.ID, By: op.By}
	}
	repeatOf, unlockIDs, err := n.ids.LockBatch(idOps, w.opErr)
	if err != nil {
		return BatchResult{}, err
	}
	idsLocked := true
	releaseIDs := func() {
		if idsLocked {
			idsLocked = false
			unlockIDs()
		}
	}
	defer releaseIDs()

	// Bring every counter into memory, one stripe lock at a time, so that
	// the all-stripes critical section below does no I/O.
	prepared := make([]batchOp, len(ops))
	var touched []int // stripe indexes, locked in ascending order
	buf := make([]byte, 0, 600)
	for i, op := range ops {
		buf = keyspace.Composite(buf[:0], op.NS, op.Key)
		si := n.keys.StripeIndex(buf)
		s := n.keys.Stripe(si)
		s.Lock()
		e, err := n.keys.Lookup(s, buf, op.NS, op.Key, true)
		var re *keyspace.Entry
		if err == nil && op.ID != "" {
			rk := idKey(op.ID, op.Key)
			re, err = n.keys.LookupEvict(s, keyspace.Composite(nil, op.NS, rk), op.NS, rk, true, false)
		}
		s.Unlock()
		if err != nil {
			return BatchResult{}, kinderr.New(ErrUnavailable, err, "read counter: %v", err)
		}
		prepared[i] = batchOp{ck: e.CK(), stripe: si}
		if re != nil {
			prepared[i].rck = re.CK()
		}
		if j, found := slices.BinarySearch(touched, si); !found {
			touched = slices.Insert(touched, j, si)
		}
	}

	for _, si := range touched {
		n.keys.Stripe(si).Lock()
	}
	entries, err := n.batchEntriesLocked(ops, prepared)
	var records []*keyspace.Entry
	var dup []bool
	if err == nil {
		records, dup, err = n.batchDuplicatesLocked(w, prepared, repeatOf)
	}
	if err == nil {
		err = n.batchCheckLocked(w, entries, dup, recs)
	}
	if err == nil {
		err = n.batchBoundsLocked(w, prepared, entries, dup, recs)
	}
	var res BatchResult
	if err == nil {
		now := n.cfg.Now()
		ms := now.UnixMilli()
		if w.values {
			res.Values = make([]int64, len(ops))
		}
		for i, op := range ops {
			e := entries[i]
			if dup[i] {
				res.Duplicates++
				if w.values {
					res.Values[i] = nsconfig.Clamp(recs[op.NS], e.C.Value())
				}
				continue
			}
			if n.idle(recs[op.NS].Runtime().TTL, e.Updated) && e.C.Live() {
				e.C.SetReset(n.id, 0, true) // idle past its ttl: counts from 0
			}
			before := e.C.Value()
			v, addErr := e.C.Add(n.id, op.By)
			if addErr != nil {
				// batchCheckLocked ran these very updates on copies, so
				// this cannot happen; were it to, refuse rather than crash
				// with every touched stripe locked.
				n.log.Error("write op failed after its check", zap.Int("op", i), zap.Error(addErr))
				err = w.opErr(i, kinderr.New(ErrOverflow, addErr, "%s/%s: %v", op.NS, op.Key, addErr))
				break
			}
			e.Updated = ms
			e.Own = true
			s := n.keys.Stripe(prepared[i].stripe)
			n.keys.MarkDirty(s, e)
			n.changedLocked(op.NS, op.Key, before, e)
			if re := records[i]; re != nil {
				n.ids.SetLocked(s, re, op.By, now)
				n.recent.add(op.NS, op.ID, op.Key)
			}
			if w.values {
				res.Values[i] = nsconfig.Clamp(recs[op.NS], v)
			}
		}
		res.Applied = len(ops) - res.Duplicates
	}
	for _, si := range touched {
		n.keys.Stripe(si).Unlock()
	}
	releaseIDs() // applied with their records: other writes of these ids may go on
	if err != nil {
		return BatchResult{}, err
	}
	for i, op := range ops {
		if dup[i] {
			continue
		}
		if rt := recs[op.NS].Runtime(); len(rt.Windows) > 0 || len(op.Labels) > 0 {
			at := op.At
			if at.IsZero() {
				at = n.cfg.Now()
			}
			n.windows.Count(rt.Windows, op.NS, op.Key, op.Labels, at, op.By)
		}
	}
	n.metrics.increments.Add(float64(res.Applied))
	n.metrics.duplicates.Add(float64(res.Duplicates))
	// A duplicate waits too: the first attempt may not be durable yet.
	return res, n.durable(ctx, sync)
}

// batchEntriesLocked resolves each op's entry; the caller holds every
// touched stripe. An entry evicted since it was prepared is read again.
func (n *Node) batchEntriesLocked(ops []writeOp, prepared []batchOp) ([]*keyspace.Entry, error) {
	entries := make([]*keyspace.Entry, len(ops))
	for i, p := range prepared {
		s := n.keys.Stripe(p.stripe)
		e := s.Get(p.ck)
		if e == nil {
			var err error
			e, err = n.keys.LookupEvict(s, []byte(p.ck), ops[i].NS, ops[i].Key, true, false)
			if err != nil {
				return nil, kinderr.New(ErrUnavailable, err, "read counter: %v", err)
			}
		}
		entries[i] = e
	}
	return entries, nil
}

// batchCheckLocked refuses a batch any of whose ops would overflow, before
// anything is applied.
func (n *Node) batchCheckLocked(w writeReq, entries []*keyspace.Entry, dup []bool, recs map[string]*namespaceRecord) error {
	ops := w.ops
	index := func(i int) int { return i }
	if slices.Contains(dup, true) {
		var kept []int
		var keepOps []writeOp
		var keepEntries []*keyspace.Entry
		for i := range ops {
			if !dup[i] {
				kept = append(kept, i)
				keepOps = append(keepOps, ops[i])
				keepEntries = append(keepEntries, entries[i])
			}
		}
		ops, entries = keepOps, keepEntries
		index = func(i int) int { return kept[i] }
	}
	// Fast path: when every counter is far from the int64 bounds and the
	// batch's total magnitude is small, no op can overflow.
	var total uint64
	for _, op := range ops {
		total += uint64(abs(op.By))
	}
	safe := total < 1<<61
	for _, e := range entries {
		if !safe {
			break
		}
		own := e.C.Slot(n.id)
		v := e.C.Value()
		safe = abs(v) < 1<<61 && own.P < 1<<62 && own.N < 1<<62
	}
	if safe {
		return nil
	}
	// Slow path: run the ops in order on copies of the counters, exactly as
	// the apply loop will (the idle reset included): the value's range and
	// this node's slot totals are Add's to judge, out-of-range merged states
	// included.
	sims := make(map[*keyspace.Entry]*crdt.Counter, len(ops))
	for i, op := range ops {
		e := entries[i]
		c, ok := sims[e]
		if !ok {
			cp := e.C.Clone()
			if n.idle(recs[op.NS].Runtime().TTL, e.Updated) && cp.Live() {
				cp.SetReset(n.id, 0, true)
			}
			c = &cp
			sims[e] = c
		}
		if v, err := c.Add(n.id, op.By); err != nil {
			return w.opErr(index(i), fmt.Errorf("%w: %s/%s is %d; adding %d would leave the int64 range (or this node's count of its changes to it is full)", ErrOverflow, op.NS, op.Key, v, op.By))
		}
	}
	return nil
}

func abs(v int64) int64 {
	if v < 0 {
		if v == math.MinInt64 {
			return math.MaxInt64
		}
		return -v
	}
	return v
}

// batchBoundsLocked checks the batch's net change of each counter of a
// namespace with bounds (the batch applies at once, so only the net change
// matters). The caller holds every touched stripe.
func (n *Node) batchBoundsLocked(w writeReq, prepared []batchOp, entries []*keyspace.Entry, dup []bool, recs map[string]*namespaceRecord) error {
	ops := w.ops
	var net map[*keyspace.Entry]int64
	var at map[*keyspace.Entry]int
	for i, op := range ops {
		if dup[i] || !recs[op.NS].Bounds().Any() {
			continue
		}
		if net == nil {
			net, at = make(map[*keyspace.Entry]int64), make(map[*keyspace.Entry]int)
		}
		net[entries[i]] += op.By
		at[entries[i]] = i
	}
	for e, by := range net {
		i := at[e]
		op := ops[i]
		if err := n.rights.CheckLocked(n.keys.Stripe(prepared[i].stripe), recs[op.NS].Bounds(), op.NS, op.Key, e, by); err != nil {
			var need *exact.NeedRights
			if errors.As(err, &need) {
				need.NS, need.Key = op.NS, op.Key
				return need
			}
			return w.opErr(i, err)
		}
	}
	return nil
}

// batchWithApprox serves a batch with ops on approximate namespaces: the
// other ops as a batch, then the sketch ops (checked up front, so that only
// an int64 overflow of a sketch total could fail after the rest applied).
// done is false when the batch has no such op.
func (n *Node) batchWithApprox(ctx context.Context, ops []BatchOp, consistency string, returnValues bool) (BatchResult, bool, error) {
	var approx []int
	for i, op := range ops {
		rec := n.ns.Approx(op.NS)
		if rec == nil {
			continue
		}
		switch {
		case op.By < 0:
			return BatchResult{}, true, fmt.Errorf("op %d: %w", i, errApproxRefused(op.NS, "decrements are refused because a sketch keeps its error bound only for non-negative counts"))
		case op.ID != "":
			return BatchResult{}, true, fmt.Errorf("op %d: %w", i, errApproxRefused(op.NS, "increment ids are not remembered there; send the op without an id"))
		case consistency != "" && consistency != ConsistencyLocal:
			return BatchResult{}, true, fmt.Errorf("op %d: %w", i, errApproxRefused(op.NS, "only consistency local is served there; leave consistency out"))
		}
		approx = append(approx, i)
	}
	if len(approx) == 0 {
		return BatchResult{}, false, nil
	}
	rest := make([]BatchOp, 0, len(ops)-len(approx))
	for i, op := range ops {
		if !slices.Contains(approx, i) {
			rest = append(rest, op)
		}
	}
	var res BatchResult
	if len(rest) > 0 {
		var err error
		if res, err = n.Batch(ctx, rest, consistency, returnValues); err != nil {
			return BatchResult{}, true, err
		}
	}
	var values []int64
	if returnValues {
		values = make([]int64, len(ops))
		j := 0
		for i := range ops {
			if !slices.Contains(approx, i) {
				values[i] = res.Values[j]
				j++
			}
		}
	}
	sync := false
	for _, i := range approx {
		op := ops[i]
		p, err := sketchParamsOf(op.NS, n.ns.Approx(op.NS))
		var est int64
		var s bool
		if err == nil {
			est, s, err = n.sketches.Add(op.NS, p, op.Key, op.By)
		}
		if err != nil {
			return BatchResult{}, true, fmt.Errorf("op %d: %w", i, err)
		}
		n.metrics.increments.Inc()
		sync = sync || s
		if returnValues {
			values[i] = est
		}
	}
	res.Applied += len(approx)
	res.Values = values
	return res, true, n.durable(ctx, sync)
}

// replicateBatch brings a batch's counters (and id records) to the nodes
// the consistency level of each namespace asks for.
func (n *Node) replicateBatch(ctx context.Context, ops []writeOp, consistency string) error {
	type group struct {
		level string
		keys  []string
		seen  map[string]bool
	}
	var groups map[string]*group
	for _, op := range ops {
		g := groups[op.NS]
		if g == nil {
			lvl := n.ns.ConsistencyFor(op.NS, consistency)
			if lvl == ConsistencyLocal {
				continue
			}
			if groups == nil {
				groups = make(map[string]*group)
			}
			g = &group{level: lvl, seen: make(map[string]bool)}
			groups[op.NS] = g
		}
		for _, k := range []string{op.Key, idKeyOrEmpty(op.ID, op.Key)} {
			if k != "" && !g.seen[k] {
				g.seen[k] = true
				g.keys = append(g.keys, k)
			}
		}
	}
	for ns, g := range groups {
		if err := n.quorum.Replicate(ctx, g.level, ns, g.keys...); err != nil {
			return err
		}
	}
	return nil
}

func idKeyOrEmpty(id, key string) string {
	if id == "" {
		return ""
	}
	return idKey(id, key)
}
